#!/usr/bin/env bash
# A host that goes silent is withdrawn within its hold time: SIGSTOP host1's
# agent (its TCP connection stays open, so only the hold timer can notice),
# measure the time until the SLR says "withdrawn", check that new connections
# all land on h2, and that host1 comes back after SIGCONT.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

HOLD_S=2          # HOLD_TIME
RECOMPUTE_S=0.25  # RECOMPUTE_INTERVAL
SLACK_S=1
LIMIT_S=$(awk -v h=$HOLD_S -v r=$RECOMPUTE_S -v s=$SLACK_S 'BEGIN { print h + r + s }')

LOAD_SOURCE=connections bring_up 2

http_tally 10
assert_eq "10 requests succeed with both hosts up" 10 "$TALLY_OK"

kill -STOP "${HOST_PID[1]}"
T0=$(now_s)
if wait_for 10 host_is host1 withdrawn; then
  T=$(elapsed_s "$T0")
  ok "SLR marks host1 withdrawn after SIGSTOP of its agent (${T}s)"
  assert_le "withdrawn within hold_time + recompute_interval + ${SLACK_S}s" "$T" "$LIMIT_S"
else
  slr_json hosts >&2
  not_ok "SLR marks host1 withdrawn after SIGSTOP of its agent"
fi
assert_eq "host2 is still up" up "$(host_state host2)"
assert_eq "status hosts_up is 1" 1 "$(slr_get status "d['hosts_up']")"

# Withdrawal reaches the selection tables at the next recompute; the host's
# state above is set by the same timer, so one interval is the bound.
sleep "$(awk -v r=$RECOMPUTE_S 'BEGIN { print 2 * r + 0.1 }')"
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 new connections all succeed while host1 is silent" 20 "$TALLY_OK"
assert_eq "all 20 served by h2" 20 "${TALLY[h2]:-0}"
check "SLR still running" slr_alive
check "SLR still answers status" slr_alive_and_answering

kill -CONT "${HOST_PID[1]}"
if wait_for 20 host_is host1 up; then
  ok "host1 is up again ${WAITED_S}s after SIGCONT"
else
  slr_json hosts >&2
  not_ok "host1 is up again after SIGCONT"
fi
