#!/usr/bin/env bash
# A full flow table never crashes the SLR and never breaks an established
# flow; what happens to new flows is configurable and counted:
#   on_full = "drop"       new flows are dropped (drops.table_full)
#   on_full = "stateless"  new flows are forwarded by the consistent-hash
#                          table without state (flows.stateless_forwarded)
# The table is filled with real UDP flows from the client (distinct source
# ports), while a long HTTP transfer is running through it.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

CAP=1024
EXTRA=200   # flows beyond the capacity

fill_table() {  # send one UDP datagram from each of N source ports to the VIP
  ns cli "$PY" - "$VIP" "$1" <<'PYEOF'
import socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 20000 + i))
    s.sendto(b"fill", (vip, 9999))
    s.close()
PYEOF
}

# ---- phase 1: on_full = "drop"
SLR_FLOW_CAPACITY=$CAP SLR_ON_FULL=drop BIG_MB=16 bring_up 2

start_long_download || die "long transfer started"

fill_table $((CAP + EXTRA)) || die "UDP filler ran"
table_is_full() { [[ $(slr_get status "d['flows']['active']") -ge $CAP ]]; }
check "flow table reaches its capacity ($CAP)" wait_for 10 table_is_full
assert_eq "active flows never exceed the capacity" "$CAP" "$(slr_get status "d['flows']['active']")"
assert_ge "flows.table_full counted the refused new flows" "$(slr_get status "d['flows']['table_full']")" $((EXTRA - 5))
assert_ge "drops.table_full counted them (on_full = drop)" "$(slr_get status "drop('table_full')")" $((EXTRA - 5))
assert_eq "on_full reported as drop" drop "$(slr_get status "d['flows']['on_full']")"

# A new TCP connection cannot get state: with on_full = drop it fails.
if ns cli curl -sS --fail --max-time 2 -o /dev/null "http://$VIP/" 2>/dev/null; then
  fail "a new connection is refused while the table is full (on_full = drop)"
else
  ok "a new connection is refused while the table is full (on_full = drop)"
fi
check "SLR still running with a full table" slr_alive

wait "$LONG_PID"; RC=$?
assert_eq "established transfer completed while the table was full" 0 "$RC"
assert_eq "established transfer is intact (sha256)" "$BIG_SHA" "$(sha256sum "$RUN_DIR/long.bin" | cut -d' ' -f1)"

# ---- phase 2: on_full = "stateless"
kill -TERM "$SLR_PID"; wait "$SLR_PID" 2>/dev/null
SLR_FLOW_CAPACITY=$CAP SLR_ON_FULL=stateless write_slr_config "$RUN_DIR/slr.toml" host1 host2
start_slr || die "SLR restarts with on_full = stateless"
wait_for 20 hosts_up host1 host2 || die "hosts re-register"
fill_table $((CAP + EXTRA)) || die "UDP filler ran"
check "flow table full again" wait_for 10 table_is_full
http_tally 10
assert_eq "new connections still succeed with a full table (stateless)" 10 "$TALLY_OK"
assert_ge "flows.stateless_forwarded counted them" "$(slr_get status "d['flows']['stateless_forwarded']")" 10
assert_eq "no table_full drops in stateless mode" 0 "$(slr_get status "drop('table_full')")"
check "SLR still running" slr_alive_and_answering

summary
