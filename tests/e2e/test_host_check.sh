#!/usr/bin/env bash
# `slrctl host check`: on a working host every point is ok (exit 0); after the
# VIP subnet's `local` route is deleted by hand the check names the failing
# point and exits 4.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

LOAD_SOURCE=connections bring_up 1

run_check() {  # sets HC_OUT, HC_RC, HC_JSON, HC_JRC
  HC_OUT=$(ns h1 "$SLRCTL" host check --config "$RUN_DIR/h1.toml" 2>&1); HC_RC=$?
  HC_JSON=$(ns h1 "$SLRCTL" host check --config "$RUN_DIR/h1.toml" --json 2>/dev/null); HC_JRC=$?
}

run_check
assert_eq "host check on a working host exits 0" 0 "$HC_RC"
[[ $HC_RC == 0 ]] || note "$HC_OUT"
check "host check prints its points" test -n "$HC_OUT"
assert_eq "host check --json exits 0" 0 "$HC_JRC"
is_json() { json_get - "d is not None" >/dev/null <<<"$1"; }
check "host check --json is JSON" is_json "$HC_JSON"

# The agent's local route for the VIP subnet (AnyIP): `local 10.100.0.0/24 dev ...`
LOCAL_ROUTE=$(ns h1 ip -4 route show table all type local "$VIP_SUBNET" | head -n 1)
check "agent installed a local route for $VIP_SUBNET" test -n "$LOCAL_ROUTE"
note "local route: $LOCAL_ROUTE"

# Delete it and check right away.  If the agent repairs routes on its own it
# may win the race, so try a few times; one failing check run is enough.
GOT4=0
for attempt in 1 2 3 4 5; do
  # shellcheck disable=SC2086
  ns h1 ip route del $LOCAL_ROUTE 2>/dev/null || ns h1 ip route del local "$VIP_SUBNET" table local 2>/dev/null
  run_check
  if [[ $HC_RC == 4 && $HC_JRC == 4 ]]; then GOT4=1; break; fi
  note "attempt $attempt: host check exited $HC_RC (route now: $(ns h1 ip -4 route show table all type local "$VIP_SUBNET"))"
done
assert_eq "host check (and --json) exit 4 without the local route" 1 "$GOT4"
note "host check output:"; sed 's/^/#   /' <<<"$HC_OUT"
assert_contains "host check names the failing point (route)" route "$HC_OUT"
assert_contains "host check names the subnet" "$VIP_SUBNET" "$HC_OUT"

# Put the route back the way the agent had it; the check passes again.
if [[ -z $(ns h1 ip -4 route show table all type local "$VIP_SUBNET") ]]; then
  # shellcheck disable=SC2086
  ns h1 ip route add $LOCAL_ROUTE 2>/dev/null || ns h1 ip route add local "$VIP_SUBNET" dev lo table local
fi
run_check
assert_eq "host check exits 0 again once the route is back" 0 "$HC_RC"
