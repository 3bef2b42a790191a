#!/usr/bin/env bash
# Health checks (issue 4): the host agent checks its own services and
# advertises availability per subnet; an unhealthy service stops getting new
# flows within one update interval while established flows are left alone.
#
#   h1: [[check]] web  (http GET http://127.0.0.1/ expecting 200)
#       [[check]] port (tcp connect 127.0.0.1:7000, a listener this test runs)
#   h2: [[check]] web  (http, as h1)
#       [[check]] flag (command: `test ! -e RUN_DIR/h2.down`)
#   all checks every 200 ms, timeout 150 ms, rise 1, fall 1.
#
# 1. http: with a rate-limited download running on h2 and a prober opening a
#    new connection every 20 ms, h1's HTTP server is stopped.  The SLR must
#    show h1's subnet unavailable, and the prober's connections must stop
#    failing (a connection that reaches h1 is refused), both measured from
#    the stop; 20 new requests all land on h2; the download on h2 completes
#    intact.  h1's server back -> h1 available and gets new flows again.
# 2. command: h2's flag file created while a download runs on h2 -> h2
#    unavailable, new requests all on h1, the download on h2 (an established
#    flow of the now-unavailable host) completes intact; file removed -> back.
# 3. tcp: h1's listener on 7000 stopped (its web check still passes) -> h1
#    unavailable; back -> available.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

BIG_MB=${BIG_MB:-16}
CHECK_INTERVAL_S=0.2
CHECK_TIMEOUT_S=0.15
UPDATE_S=0.5      # UPDATE_INTERVAL
RECOMPUTE_S=0.25  # RECOMPUTE_INTERVAL
SLACK_S=${HEALTH_SLACK_S:-0.5}
# Detection (one check interval + its timeout, fall 1) + one update interval
# (the agent sends at once; the interval is the bound the issue promises) +
# one recompute + slack for a busy machine.
LIMIT_S=$(awk -v a=$CHECK_INTERVAL_S -v b=$CHECK_TIMEOUT_S -v u=$UPDATE_S -v r=$RECOMPUTE_S -v s=$SLACK_S \
  'BEGIN { print a + b + u + r + s }')
CK=(interval=200ms timeout=150ms rise=1 fall=1)
FLAG=$RUN_DIR/h2.down   # RUN_DIR is set by e2e_init above

HOST_TOML[1]="$(check_toml web http address=127.0.0.1:80 path=/ expect_status=200 "${CK[@]}")
$(check_toml port tcp address=127.0.0.1:7000 "${CK[@]}")"
HOST_TOML[2]="$(check_toml web http address=127.0.0.1:80 path=/ expect_status=200 "${CK[@]}")
$(check_toml flag command "command=test ! -e $FLAG" "${CK[@]}")"

bring_up 2
for i in 1 2; do
  "$SLRCTL" check-config "$RUN_DIR/h$i.toml" >"$RUN_DIR/check-h$i.out" 2>&1 ||
    not_ok "host config h$i with [[check]] tables accepted: $(cat "$RUN_DIR/check-h$i.out")"
done

start_listener() {  # a TCP listener on 7000 in h1 (the tcp check's target)
  _bg h1 "$RUN_DIR/listener.log" "$PY" -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7000)); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
'
  LISTENER_PID=$BG_PID
}
start_listener

# misrouted GOOD: for each tally request not served by GOOD, what the SLR's
# flow table says of its client port (diagnostics for a failed assertion).
misrouted() {
  local pb port body
  for pb in $TALLY_PORTS; do
    port=${pb%%:*} body=${pb#*:}
    [[ "$body" == "$1" ]] && continue
    note "port $port served by $body; SLR flow: $(slr_json flows -n 100000 | json_get - "[f for f in d['flows'] if f['src'].endswith(':$port')]" 2>&1)"
  done
  note "$(date +%T.%N) availability changes in the agents' logs:"
  grep -h "now available\|now UNAVAILABLE\|session\|HELLO" "$RUN_DIR"/h[12].log | tail -n 20 | sed 's/^/#   /'
}
check_of()    { host_get "$1" "next((c for c in d.get('checks', []) if c['name'] == '$2'), {}).get('$3')"; }
check_is()    { [[ "$(check_of "$1" "$2" healthy 2>/dev/null)" == "$3" ]]; }
agent_avail() { host_get "$1" "all(s.get('available') for s in d['subnets'])"; }

if wait_for 10 eval 'avail_is host1 true && avail_is host2 true'; then
  ok "both hosts' subnets available at the SLR once their checks pass (${WAITED_S}s)"
else
  slr_json hosts >&2; host_json 1 >&2
  not_ok "both hosts' subnets available at the SLR once their checks pass"
fi
host_json 1 >"$RUN_DIR/h1-status.json" || true
note "h1 checks: $(json_get "$RUN_DIR/h1-status.json" "d.get('checks')")"
assert_eq "h1 status lists its checks web (http) and port (tcp)" "web:http port:tcp" \
  "$(json_get "$RUN_DIR/h1-status.json" "' '.join('%s:%s' % (c['name'], c['type']) for c in d.get('checks', []))")"
assert_eq "h1 checks are healthy" "true" \
  "$(json_get "$RUN_DIR/h1-status.json" "all(c['healthy'] for c in d.get('checks', [])) and len(d.get('checks', [])) == 2")"
assert_ge "h1 web check has passed" "$(json_get "$RUN_DIR/h1-status.json" "d['checks'][0]['passes']")" 1
assert_eq "h2 status lists its checks web (http) and flag (command)" "web:http flag:command" \
  "$(host_get 2 "' '.join('%s:%s' % (c['name'], c['type']) for c in d.get('checks', []))")"
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 requests succeed with both hosts healthy" 20 "$TALLY_OK"

# ---------------------------------------------------------------------------
# 1. http check: stop h1's web server
PD=$(pick_client_port host2 80) || die "a client port the SLR sends to host2"
start_download dl_h2 80 "$PD" --limit-rate 2M || die "rate-limited download on h2 starts"
assert_flow_host "the download (client port $PD) runs on host2" host2 "$PD"

# The prober: a new connection every 20 ms, one line per attempt:
# "<epoch seconds> <body or fail:ERROR>".
ns cli "$PY" -u - "$VIP" "$RUN_DIR/probe.stop" "$_E2E_LIB_DIR" >"$RUN_DIR/probe.out" 2>"$RUN_DIR/probe.err" <<'PYEOF' &
import os, sys, time
vip, stop = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from http10 import get
end = time.time() + 60
while time.time() < end and not os.path.exists(stop):
    t = time.time()
    try:
        ok, body = get(vip, timeout=1)
        res = body if ok else "fail:status"
    except Exception as e:
        res = "fail:" + type(e).__name__
    print("%.6f %s" % (t, res or "fail:empty"), flush=True)
    time.sleep(0.02)
PYEOF
PROBE_PID=$!
_PIDS+=("$PROBE_PID")
probe_lines() { [[ $(wc -l <"$RUN_DIR/probe.out") -ge $1 ]]; }
wait_for 10 probe_lines 25 || not_ok "the prober runs"

kill -TERM "${HTTP_PID[1]}"
wait "${HTTP_PID[1]}" 2>/dev/null
T_STOP=$(now_s)
if wait_for 10 avail_is host1 false; then
  T_UNAVAIL=$WAITED_S
  ok "SLR shows host1's subnet unavailable ${T_UNAVAIL}s after its web server stopped"
  echo "# figure: health_unavailable_s $T_UNAVAIL"
  assert_le "within check interval + timeout + update interval + recompute + ${SLACK_S}s" "$T_UNAVAIL" "$LIMIT_S"
else
  slr_json hosts >&2
  not_ok "SLR shows host1's subnet unavailable after its web server stopped"
fi
# The agent's own log says when it saw the failure: from there to the SLR's
# view is the "within one update interval" part (the agent sends at once).
T_SEEN_SLR=$(awk -v a="$T_STOP" -v b="${T_UNAVAIL:-0}" 'BEGIN { printf "%.6f", a + b }')
T_DETECT=$("$PY" -c '
import datetime, re, sys
t = None
for line in open(sys.argv[1]):
    if "now UNAVAILABLE" in line:
        t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
print("%.6f" % t if t else "")' "$RUN_DIR/h1.log")
if [[ -n "$T_DETECT" ]]; then
  D=$(awk -v a="$T_DETECT" -v b="$T_SEEN_SLR" 'BEGIN { printf "%.2f", b - a }')
  echo "# figure: health_detect_to_slr_s $D"
  assert_le "from the agent's detection to the SLR's view within one update interval (${UPDATE_S}s)" "$D" "$UPDATE_S"
else
  not_ok "h1 agent logged its subnet UNAVAILABLE"
fi
assert_eq "h1 agent: web check unhealthy" false "$(check_of 1 web healthy)"
assert_eq "h1 agent: port check still healthy" true "$(check_of 1 port healthy)"
assert_eq "h1 agent advertises its subnet unavailable" false "$(agent_avail 1)"
note "h1 web check: $(host_get 1 "next(c for c in d['checks'] if c['name'] == 'web')")"
assert_eq "host1 stays up at the SLR (registered, just unavailable)" up "$(host_state host1)"

# Let the prober run on for 2 s after the switch, then read its record.
probe_after() { awk -v t="$1" '$1 > t' "$RUN_DIR/probe.out" | grep -q .; }
wait_for 10 probe_after "$(awk -v a="$(now_s)" 'BEGIN { printf "%.6f", a + 2 }')" || true
touch "$RUN_DIR/probe.stop"
wait "$PROBE_PID" 2>/dev/null
read -r P_BEFORE_H1 P_BEFORE_H2 P_FAILS P_LAST_FAIL P_AFTER _ < <("$PY" - "$RUN_DIR/probe.out" "$T_STOP" <<'PYEOF'
import sys
t_stop = float(sys.argv[2])
rows = [l.split(None, 1) for l in open(sys.argv[1]) if l.strip()]
rows = [(float(t), r.strip()) for t, r in rows]
before = [r for t, r in rows if t < t_stop]
after = [(t, r) for t, r in rows if t >= t_stop]
fails = [t for t, r in after if r != "h2"]
last = (max(fails) - t_stop) if fails else 0.0
late = [r for t, r in after if t >= t_stop + last + 0.001]
print(before.count("h1"), before.count("h2"), len(fails), "%.2f" % last, len(late),
      sum(1 for r in late if r != "h2"))
PYEOF
)
note "prober: before the stop h1=$P_BEFORE_H1 h2=$P_BEFORE_H2; after: $P_FAILS attempts not served by h2, the last ${P_LAST_FAIL}s after the stop; $P_AFTER attempts after that"
assert_gt "prober reached h1 before the stop" "${P_BEFORE_H1:-0}" 0
echo "# figure: health_new_conns_elsewhere_s ${P_LAST_FAIL:-nan}"
assert_le "new connections all go to h2 within the same bound (${LIMIT_S}s)" "${P_LAST_FAIL:-99}" "$LIMIT_S" ||
  note "prober attempts after the stop not served by h2 (s after the stop, result): $(awk -v t="$T_STOP" \
    '$1 >= t && $2 != "h2" { printf "%.3f %s; ", $1 - t, $2 }' "$RUN_DIR/probe.out")"
assert_ge "prober kept connecting afterwards (all on h2)" "${P_AFTER:-0}" 20

http_tally 20
note "tally: $(tally_str)"
assert_eq "20 new requests all succeed while h1's web server is down" 20 "$TALLY_OK"
assert_eq "all 20 served by h2" 20 "${TALLY[h2]:-0}" || misrouted h2
assert_eq "the download's flow still goes to host2" host2 "$(flow_host "$PD")"
check "the download on h2 completes with the right sha256" download_ok dl_h2

start_http 1 || die "h1's HTTP server restarts"
if wait_for 10 avail_is host1 true; then
  ok "h1's subnet available again ${WAITED_S}s after its web server restarted"
  echo "# figure: health_available_again_s $WAITED_S"
else
  not_ok "h1's subnet available again after its web server restarted"
fi
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 requests succeed with h1 healthy again" 20 "$TALLY_OK"
assert_gt "h1 gets new flows again" "${TALLY[h1]:-0}" 0

# ---------------------------------------------------------------------------
# 2. command check: h2 flagged down while a download runs on it
PD2=$(pick_client_port host2 80 43000) || die "a client port the SLR sends to host2"
start_download dl2_h2 80 "$PD2" --limit-rate 4M || die "second download on h2 starts"
assert_flow_host "the second download (client port $PD2) runs on host2" host2 "$PD2"
touch "$FLAG"
if wait_for 10 avail_is host2 false; then
  ok "h2's subnet unavailable ${WAITED_S}s after its command check started failing"
  echo "# figure: health_command_unavailable_s $WAITED_S"
else
  not_ok "h2's subnet unavailable after its command check started failing"
fi
assert_eq "h2 agent: flag check unhealthy" false "$(check_of 2 flag healthy)"
assert_eq "h2 agent: web check healthy" true "$(check_of 2 web healthy)"
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 new requests all succeed while h2 is flagged" 20 "$TALLY_OK"
assert_eq "all 20 served by h1" 20 "${TALLY[h1]:-0}" || misrouted h1
check "the established download on the unavailable h2 completes intact" download_ok dl2_h2
rm -f "$FLAG"
if wait_for 10 avail_is host2 true; then
  ok "h2's subnet available again ${WAITED_S}s after the flag was removed"
else
  not_ok "h2's subnet available again after the flag was removed"
fi

# ---------------------------------------------------------------------------
# 3. tcp check: h1's listener on 7000 stopped
kill -TERM "$LISTENER_PID"
wait "$LISTENER_PID" 2>/dev/null
if wait_for 10 avail_is host1 false; then
  ok "h1's subnet unavailable ${WAITED_S}s after the tcp check's listener stopped"
  echo "# figure: health_tcp_unavailable_s $WAITED_S"
else
  not_ok "h1's subnet unavailable after the tcp check's listener stopped"
fi
assert_eq "h1 agent: port check unhealthy" false "$(check_of 1 port healthy)"
assert_eq "h1 agent: web check healthy" true "$(check_of 1 web healthy)"
assert_ge "h1 port check counted failures" "$(check_of 1 port failures)" 1
http_tally 10
assert_eq "10 new requests all on h2 while h1's tcp check fails" 10 "${TALLY[h2]:-0}" || misrouted h2
start_listener
if wait_for 10 avail_is host1 true; then
  ok "h1's subnet available again ${WAITED_S}s after the listener restarted"
else
  not_ok "h1's subnet available again after the listener restarted"
fi
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 requests succeed at the end" 20 "$TALLY_OK"
check "SLR still running" slr_alive
summary
