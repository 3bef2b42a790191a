#!/usr/bin/env bash
# `slrctl check-config`: exit 0 on good SLR and host configs; exit 2 on bad
# ones, each error naming the file and the key path (SPEC: "FILE: KEY.PATH:
# expected WHAT, got WHAT"), all errors reported, unknown keys rejected.
# No namespaces, no root needed.
. "$(dirname "$0")/lib.sh"
e2e_init
require_slrctl

make_pki "$PKI_DIR" 2 || die "PKI"
GOOD_SLR=$RUN_DIR/slr.toml
GOOD_HOST=$RUN_DIR/h1.toml
write_slr_config "$GOOD_SLR" host1 host2=10.100.0.0/25
write_host_config "$GOOD_HOST" 1
LOAD_SOURCE="file" write_host_config "$RUN_DIR/h2.toml" 2

# run_cc FILE: sets CC_OUT (stdout+stderr) and CC_RC.
run_cc() { CC_OUT=$("$SLRCTL" check-config "$1" 2>&1); CC_RC=$?; }

out=$("$SLRCTL" version 2>&1); rc=$?
assert_eq "slrctl version exits 0" 0 "$rc"
check "slrctl version prints something" test -n "$out"

for f in "$GOOD_SLR" "$GOOD_HOST" "$RUN_DIR/h2.toml"; do
  run_cc "$f"
  assert_eq "good config $(basename "$f") passes (exit 0)" 0 "$CC_RC"
  [[ $CC_RC == 0 ]] || note "$CC_OUT"
done

# bad_case NAME EXPECTED_KEYPATH... : FILE must already be written to $RUN_DIR/NAME.toml
bad_case() {
  local name=$1 f=$RUN_DIR/$1.toml key; shift
  run_cc "$f"
  assert_eq "$name: exit 2" 2 "$CC_RC"
  assert_contains "$name: message names the file" "$f" "$CC_OUT"
  for key in "$@"; do
    assert_contains "$name: message names key path $key" "$key" "$CC_OUT"
  done
}

# 1. A typo'd key (unknown keys are errors).
sed 's/^hold_time = /hold_tme = /' "$GOOD_SLR" >"$RUN_DIR/typo.toml"
bad_case typo "policy.hold_tme"

# 2. A host subnet outside every VIP (the SPEC's own example), on the second host.
sed 's#^subnets = \["10.100.0.0/25"\]#subnets = ["10.9.0.0/24"]#' "$GOOD_SLR" >"$RUN_DIR/subnet.toml"
bad_case subnet "host[1].subnets[0]" "10.9.0.0/24"

# 3. Several errors at once: all are reported.
sed -e 's/^hold_time = .*/hold_time = "2 parsecs"/' \
    -e 's/^algorithm = .*/algorithm = "random"/' \
    -e 's/^capacity = .*/capacity = 12/' "$GOOD_SLR" >"$RUN_DIR/multi.toml"
bad_case multi "policy.hold_time" "policy.algorithm" "flows.capacity"

# 4. Host config: bad address and missing required key.
sed -e 's/^tunnel_address = .*/tunnel_address = "10.0.3.300"/' \
    -e '/^name = "host1"$/d' "$GOOD_HOST" >"$RUN_DIR/hostbad.toml"
bad_case hostbad "host.tunnel_address" "host.name"

# 5. Not TOML at all.
printf '[slr\nname = \n' >"$RUN_DIR/syntax.toml"
bad_case syntax

# 6. Neither [slr] nor [host].
printf '[something]\nx = 1\n' >"$RUN_DIR/norole.toml"
bad_case norole

# 7. Missing file.
run_cc "$RUN_DIR/does-not-exist.toml"
assert_eq "missing file: exit 2" 2 "$CC_RC"
assert_contains "missing file: message names the file" "$RUN_DIR/does-not-exist.toml" "$CC_OUT"

# 8. Usage errors exit 2.
"$SLRCTL" check-config >/dev/null 2>&1; assert_eq "check-config without FILE exits 2" 2 "$?"
"$SLRCTL" no-such-command >/dev/null 2>&1; assert_eq "unknown subcommand exits 2" 2 "$?"

# 9. A bad config makes the daemons refuse to start with exit 2 as well.  Run
# in a throwaway network namespace (root only) so that a daemon that wrongly
# starts cannot touch this machine's network; timeout ends it.
if [[ $(id -u) == 0 ]]; then
  timeout 10 unshare -n "$SLRCTL" slr --config "$RUN_DIR/typo.toml" >/dev/null 2>&1
  assert_eq "slrctl slr with a bad config exits 2" 2 "$?"
  timeout 10 unshare -n "$SLRCTL" host --config "$RUN_DIR/hostbad.toml" >/dev/null 2>&1
  assert_eq "slrctl host with a bad config exits 2" 2 "$?"
else
  note "skip: daemon start with a bad config (needs root for a throwaway netns)"
fi
