# shellcheck shell=bash
# Shared start of tests/demo.sh and tests/demo_hier.sh: output helpers, the
# root check, and (unless DEMO_SKIP_BUILD=1) dependencies + Release build in
# build/.  Source it from the repository root with NAME set to the demo's
# name; it sets SLRCTL (default build/slrctl) and exits on failure.
if [[ -t 1 ]]; then B=$'\033[1m' N0=$'\033[0m'; else B="" N0=""; fi
section() { printf '\n%s==== %s ====%s\n' "$B" "$*" "$N0"; }
step()    { printf '  - %s\n' "$*"; }

if [[ $(id -u) != 0 ]]; then echo "$NAME: needs root (network namespaces)" >&2; exit 1; fi

if [[ "${DEMO_SKIP_BUILD:-0}" != 1 ]]; then
  section "1. Dependencies (packaging/install-deps.sh)"
  bash packaging/install-deps.sh || exit 1
  section "2. Build (Release, build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
  cmake --build build -j2 || exit 1
fi
export SLRCTL=${SLRCTL:-$PWD/build/slrctl}
[[ -x "$SLRCTL" ]] || { echo "$NAME: $SLRCTL not built" >&2; exit 1; }
