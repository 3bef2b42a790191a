#!/usr/bin/env bash
# Shortcuts survive an upper level forgetting a flow the lower levels still
# hold.  With shortcuts on, the system and site SLRs see only a connection's
# SYN, never its FIN, so they keep the entry for tcp_syn (10 s); net sees the
# whole connection and (tcp_closing = 1s here) forgets it soon after it
# closes.  A new connection on the same 5-tuple then reaches the lower levels
# as a SYN for a flow they know: they must signal the host again, or net
# holds the new connection's packets for shortcut_wait for nothing.
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

HIER_SHORTCUT=1
HIER_TCP_CLOSING[net]=1s
PORT=45123
ROUNDS=3
hier_bring_up

net_flows_for_port() {
  hier_json net flows | json_get - "sum(1 for f in d['flows'] if f['src'].endswith(':$PORT'))"
}
applied0=$(counter net "d['shortcut']['applied']")
timeouts0=$(counter net "d['shortcut']['hold_timeouts']")
# One HTTP/1.0 request from CLI_ADDR:PORT.  The client closes with an RST
# (SO_LINGER 0): it must never sit in TIME_WAIT, or the next round could not
# bind the same port (curl closing before the server's FIN would do that).
request_from_port() { ns cli "$PY" "$HTTP10" "$VIP" --src "$CLI_ADDR" --port "$PORT" --rst --timeout 10; }
for ((r = 1; r <= ROUNDS; r++)); do
  body=$(request_from_port 2>&1)
  if [[ " ${HIER_HOSTS[*]} " == *" $body "* ]]; then ok "round $r: request from port $PORT answered by $body"
  else not_ok "round $r: request from port $PORT answered by a host (got '$body')"; fi
  # net forgets the flow (closing timeout 1 s + its sweep); the lower levels do not.
  if wait_for 10 eval '[[ "$(net_flows_for_port)" == 0 ]]'; then
    ok "round $r: net forgot the closed connection"
  else
    not_ok "round $r: net forgot the closed connection (still $(net_flows_for_port))"
  fi
done
applied=$(( $(counter net "d['shortcut']['applied']") - applied0 ))
timeouts=$(( $(counter net "d['shortcut']['hold_timeouts']") - timeouts0 ))
assert_eq "net applied a shortcut for every one of the $ROUNDS connections on the same 5-tuple" "$ROUNDS" "$applied"
assert_eq "net never waited out shortcut_wait" 0 "$timeouts"
for s in "${HIER_SLRS[@]}"; do check "SLR $s still running" kill -0 "${SPID[$s]}"; done
