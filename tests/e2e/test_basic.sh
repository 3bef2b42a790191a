#!/usr/bin/env bash
# Two hosts register with one SLR; HTTP to the VIP works and is spread over
# both; replies come from the VIP straight from the hosts (direct server
# return: nothing with the VIP as source ever crosses the SLR's link); every
# packet of one connection goes to one host; the status commands work.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

# Load source "connections": with sequential requests both hosts report
# (nearly) zero load, so under least-cost they are within tie_tolerance of
# each other and share new flows by flow hash.  The same assertions hold for
# consistent-hash and weighted-round-robin (equal weights), and for any number
# of workers: CMake also runs this script with SLR_ALGORITHM / SLR_WORKERS set.
ALGO=${SLR_ALGORITHM:-least-cost}
note "policy $ALGO, workers ${SLR_WORKERS:-1}"
LOAD_SOURCE=connections bring_up 2

# Captures for the whole traffic phase:
#   cli     everything the client sees
#   slrns   every interface of the slr namespace (eth0 and the TUN)
#   slrlink the rtr side of the slr's link (also sees XDP-redirected frames)
#   hI      packets of the long download's client port on host I
DL_PORT=45678
cap_start cli cli eth0 || die "capture in cli"
cap_start slrns slr any || die "capture in slr namespace"
cap_start slrlink rtr vslr || die "capture on rtr vslr"
for i in 1 2; do
  cap_start "h$i" "h$i" any "tcp port $DL_PORT or (ip proto 4 and (ip[40:2] = $DL_PORT or ip[42:2] = $DL_PORT))" ||
    die "capture in h$i"
done

# --- 20 requests, all succeed, both hosts serve some -----------------------
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 requests to http://$VIP/ all succeed" 20 "$TALLY_OK"
assert_eq "only h1/h2 answered" 20 "$(( ${TALLY[h1]:-0} + ${TALLY[h2]:-0} ))"
assert_ge "h1 served some of the 20 ($ALGO spreads equal hosts)" "${TALLY[h1]:-0}" 1
assert_ge "h2 served some of the 20 ($ALGO spreads equal hosts)" "${TALLY[h2]:-0}" 1

# --- one long connection on a known client port: one host sees all of it ---
DL_SHA=$(ns cli curl -sS --fail --max-time 60 --local-port "$DL_PORT" "http://$VIP/big.bin" | sha256sum | cut -d' ' -f1)
assert_eq "download of big.bin (${BIG_MB} MiB) through the VIP is intact" "$BIG_SHA" "$DL_SHA"

# The flow is in the SLR's table right after the download (tcp_closing 10s).
FLOWS_JSON=$RUN_DIR/flows.json
slr_json flows >"$FLOWS_JSON"
check "slrctl flows --json answers" test -s "$FLOWS_JSON"
FLOW_HOST=$(json_get "$FLOWS_JSON" "next((str(f['host']) for f in d['flows'] if f['src'] == '$CLI_ADDR:$DL_PORT'), 'none')")
assert_ne "the download's flow ($CLI_ADDR:$DL_PORT) is in the flow table" none "$FLOW_HOST"

# Stop all captures now: traffic is over.
for c in cli slrns slrlink h1 h2; do cap_stop "$c"; done

H1_N=$(cap_count h1)
H2_N=$(cap_count h2)
note "packets of client port $DL_PORT seen in h1: $H1_N, h2: $H2_N"
if { ((H1_N > 0)) && ((H2_N == 0)); } || { ((H1_N == 0)) && ((H2_N > 0)); }; then
  ok "every packet of the download connection reached exactly one host"
else
  not_ok "every packet of the download connection reached exactly one host (h1=$H1_N h2=$H2_N)"
fi
assert_ge "that host saw the whole connection (>= 100 packets)" "$((H1_N + H2_N))" 100
SERVER=host1; ((H2_N > 0)) && SERVER=host2
# The flow table's host (a name or an id) names the host that saw the packets.
HOSTS_JSON=$RUN_DIR/hosts.json
slr_json hosts >"$HOSTS_JSON"
SERVER_ID=$(json_get "$HOSTS_JSON" "str((host('$SERVER') or {}).get('id', '?'))")
if [[ "$FLOW_HOST" == "$SERVER" || "$FLOW_HOST" == "$SERVER_ID" ]]; then
  ok "flow table names the host that received the connection ($SERVER)"
else
  not_ok "flow table names the host that received the connection (table: '$FLOW_HOST', packets went to $SERVER id $SERVER_ID)"
fi

# --- direct server return ---------------------------------------------------
FROM_VIP=$(cap_count cli "src host $VIP and src port 80")
assert_ge "client received packets FROM $VIP:80" "$FROM_VIP" 20
assert_eq "client never saw a host's real address as source" 0 "$(cap_count cli 'src net 10.0.3.0/24')"
assert_eq "no packet with source $VIP in the slr namespace" 0 "$(cap_count slrns "src host $VIP")"
assert_eq "no packet with source $VIP on the slr's link (rtr side)" 0 "$(cap_count slrlink "src host $VIP")"

# --- SLR counters agree with what crossed the wire ---------------------------
TO_VIP=$(cap_count cli "dst host $VIP")
IPIP_OUT=$(cap_count slrlink "src host $SLR_ADDR and ip proto 4")
note "client->VIP packets: $TO_VIP, IPIP packets leaving the slr: $IPIP_OUT"
counters_settled() {
  local s
  s=$(slr_json status) || return 1
  [[ $(json_get - "d['packets']['rx'] == d['packets']['tx'] + d['drops_total'] and d['packets']['tx'] >= $IPIP_OUT" <<<"$s") == true ]]
}
wait_for 5 counters_settled || true
STATUS_JSON=$RUN_DIR/status.json
slr_json status >"$STATUS_JSON"
RX=$(json_get "$STATUS_JSON" "d['packets']['rx']")
TX=$(json_get "$STATUS_JSON" "d['packets']['tx']")
DROPS=$(json_get "$STATUS_JSON" "d['drops_total']")
note "slr packets rx=$RX tx=$TX drops_total=$DROPS"
assert_eq "SLR: tx == rx - drops_total" "$RX" "$((TX + DROPS))"
assert_ge "SLR rx counts every client packet to the VIP" "$RX" "$TO_VIP"
assert_eq "SLR tx == IPIP packets seen leaving the slr" "$IPIP_OUT" "$TX"
assert_eq "drops_total == sum of drops by reason" "$DROPS" "$(json_get "$STATUS_JSON" "sum(d['drops'].values())")"
assert_ge "VIP 'web' counted the packets" "$(json_get "$STATUS_JSON" "(vip('web') or {}).get('packets', 0)")" "$TO_VIP"
assert_ge "VIP 'web' counted >= 21 flows" "$(json_get "$STATUS_JSON" "(vip('web') or {}).get('flows', 0)")" 21
assert_ge "flows.created >= 21" "$(json_get "$STATUS_JSON" "d['flows']['created']")" 21
assert_eq "status role is slr" slr "$(json_get "$STATUS_JSON" "d['role']")"
assert_eq "status hosts_up is 2" 2 "$(json_get "$STATUS_JSON" "d['hosts_up']")"

# Host side: status JSON is well formed and the tunnel carried packets.
for i in 1 2; do
  HS=$(host_json "$i")
  assert_eq "h$i status: role host" host "$(json_get - "d['role']" <<<"$HS")"
  assert_eq "h$i status: registered with slr1" registered "$(json_get - "next((s['state'] for s in d['slrs'] if s['name'] == 'slr1'), 'absent')" <<<"$HS")"
  assert_ge "h$i status: updates sent" "$(json_get - "d['slrs'][0]['updates_sent']" <<<"$HS")" 1
  note "h$i tunnel_mode=$(json_get - "d['tunnel_mode']" <<<"$HS") device=$(json_get - "d['tunnel_device']" <<<"$HS")"
done
SERVER_I=${SERVER#host}
assert_ge "$SERVER's tunnel counter covers the download" "$(host_get "$SERVER_I" "d['tunnel']['packets']")" 100

# --- human tables -----------------------------------------------------------
for cmd in status hosts flows; do
  out=$("$SLRCTL" "$cmd" --socket "$SLR_SOCK" 2>&1); rc=$?
  assert_eq "slrctl $cmd (table) exits 0" 0 "$rc"
  check "slrctl $cmd (table) prints something" test -n "$out"
  [[ $cmd == hosts ]] && assert_contains "slrctl hosts lists host1" host1 "$out" && assert_contains "slrctl hosts lists host2" host2 "$out"
done
out=$("$SLRCTL" flows --socket "$SLR_SOCK" --limit 1 --json); rc=$?
assert_eq "slrctl flows --limit 1 exits 0" 0 "$rc"
assert_le "slrctl flows --limit 1 returns at most 1 entry" "$(json_get - "len(d['flows'])" <<<"$out")" 1
out=$("$SLRCTL" status --socket "$RUN_DIR/nonexistent.sock" 2>&1); rc=$?
assert_eq "slrctl status on a dead socket exits 3" 3 "$rc"
out=$("$SLRCTL" status --socket "$(host_sock 1)"); rc=$?
assert_eq "slrctl status on a host socket (table) exits 0" 0 "$rc"
check "SLR still running" slr_alive

# --- clean shutdown: everything the daemons put into the kernel goes away ---
txcsum() {  # NS IFACE -> 1/0: transmit checksum offload (ETHTOOL_GTXCSUM)
  ns "$1" "$PY" -c '
import ctypes, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = bytearray(struct.pack("II", 0x16, 0))                      # ETHTOOL_GTXCSUM
buf = bytearray(struct.pack("16sP", sys.argv[1].encode(), 0))
cbuf = (ctypes.c_char * len(data)).from_buffer(data)
struct.pack_into("16sP", buf, 0, sys.argv[1].encode(), ctypes.addressof(cbuf))
fcntl.ioctl(s, 0x8946, buf)                                        # SIOCETHTOOL
print(struct.unpack("II", bytes(data))[1])' "$2"
}
TXCSUM_BEFORE=$(txcsum slr eth0)
kill -TERM "$SLR_PID"
slr_gone() { ! kill -0 "$SLR_PID" 2>/dev/null; }
check "SLR exits on SIGTERM" wait_for 10 slr_gone
wait "$SLR_PID"; assert_eq "SLR exit status after SIGTERM" 0 "$?"
assert_eq "VIP route removed from the slr namespace" "" "$(ip -n "${P}slr" route show "$VIP_SUBNET")"
check_fails "TUN device slr0 removed" ip -n "${P}slr" link show slr0
assert_eq "no tc filter left on the slr uplink" "" "$(tc -n "${P}slr" filter show dev eth0 ingress 2>/dev/null)"
[[ -n "${SLR_FAST_PATH:-}" ]] && note "tx checksum offload on slr eth0 while running: $TXCSUM_BEFORE"
assert_eq "tx checksum offload on the slr uplink is back on" 1 "$(txcsum slr eth0)"
for i in 1 2; do kill -TERM "${HOST_PID[$i]}"; done
hosts_gone() { ! kill -0 "${HOST_PID[1]}" 2>/dev/null && ! kill -0 "${HOST_PID[2]}" 2>/dev/null; }
check "host agents exit on SIGTERM" wait_for 10 hosts_gone
for i in 1 2; do
  assert_eq "h$i: local VIP route removed" "" "$(ip -n "${P}h$i" route show table local "$VIP_SUBNET")"
  check_fails "h$i: nft table removed" ip netns exec "${P}h$i" nft list table inet slrctl_host
  assert_eq "h$i: no tc filter left on the uplink" "" "$(tc -n "${P}h$i" filter show dev eth0 ingress 2>/dev/null)"
done
