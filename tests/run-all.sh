#!/usr/bin/env bash
# Builds slrctl with its tests and runs the whole suite (unit + end-to-end).
#   bash tests/run-all.sh            from the repository root (or anywhere)
# Env: BUILD_DIR (build-tests), BUILD_TYPE (RelWithDebInfo), JOBS (2),
#      CTEST_ARGS (extra ctest arguments, e.g. "-L e2e" or "-LE e2e").
# Exits with ctest's status.  The end-to-end tests need root.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-tests}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
JOBS=${JOBS:-2}

section() { printf '\n==== %s ====\n' "$*"; }

section "dependencies"
bash packaging/install-deps.sh

section "configure ($BUILD_TYPE, $BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DSLR_BUILD_TESTS=ON

section "build (-j$JOBS)"
cmake --build "$BUILD_DIR" -j "$JOBS"

section "tests"
# Unit tests may run two at a time; the e2e tests are RUN_SERIAL.
set +e
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 600 -j "$JOBS" ${CTEST_ARGS:-} </dev/null
rc=$?
set -e
exit "$rc"
