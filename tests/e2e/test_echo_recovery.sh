#!/usr/bin/env bash
# Host-originated flow recovery (issue 4, the seed's Fig. 10) and forged
# flow advertisements.
#
# Part 1: ECHO_PER_HOST (3) server-paced downloads per host run through the
# SLR (client ports picked with `slrctl explain`).  The SLR is killed (-9)
# and started again with empty state (no neighbours, no spare).  The client's
# ACKs now reach an SLR that does not know the flows; it drops them while it
# waits (flows.midstream_wait, 3 s) and would then send each to its stateless
# guess (Maglev over the up hosts: about half the flows would go to the wrong
# host, which resets them).  Each host agent sees its connections stall and
# sends ICMP echo requests from the VIP to the client carrying flow
# advertisements; the client's kernel answers; the SLR installs each flow
# from the reply.  Every download must move again and complete byte for
# byte, the new flow table must name each download's host, the SLR must
# count the advertisements it applied and never have fallen back to its
# guess (midstream_guessed 0: no flow was saved by luck), and the agents must
# count echoes sent, replies and connections recovered.  Figures: time from
# the SLR restart to each download moving again (min / max), host
# re-registration, the stall times the agents logged.
#
# Part 2: forged ICMP echo replies sent from the client namespace (raw
# socket) to the SLR: toward an address that is no host (refused: host),
# toward a host for a VIP outside its authorised subnets (refused: subnet),
# re-pointing a live flow to another host (refused: conflict), a bad version
# (malformed), and one well-formed advertisement for a flow nobody has (the
# positive control: applied).  Refused ones install nothing; the live
# download stays on its host and completes; new requests succeed.
#
# Variants: SLR_FAST_PATH (the tc program outlives the killed SLR and keeps
# the flows moving; the restart replaces its map, so the restart is what
# loses the state), SLR_WORKERS=2, HOST_DECAP, ECHO_RESTART_DELAY=S (a longer
# outage).
# Before lib.sh, which defaults BIG_MB to 16.  With the kernel fast path the
# downloads keep moving while no SLR runs; they must not finish before the
# restarted SLR has lost their state.
BIG_MB=${BIG_MB:-32}
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

RATE=${ECHO_RATE:-2097152}   # bytes/s per download, paced by the server: 32 MiB in 16 s
PER_HOST=${ECHO_PER_HOST:-3}
DPORT=8080                   # the paced servers
SUBNET2=10.100.0.0/25        # host2 is authorised (and serves) only this half
VIP_OUTSIDE2=10.100.0.200    # a VIP address host2 is not authorised for

# ---------------------------------------------------------------------------
# Bring-up: like bring_up 2, but host2 serves only SUBNET2 (for the forged
# advertisement outside its subnets) and loads come from files (both 0.1:
# the policy shares new flows between the hosts by hash).
LOAD_SOURCE="file"
topo_up 2 || die "topology with 2 hosts"
make_pki "$PKI_DIR" 2 || die "PKI"
write_slr_config "$RUN_DIR/slr.toml" host1 "host2=$SUBNET2"
"$SLRCTL" check-config "$RUN_DIR/slr.toml" >"$RUN_DIR/check-slr.out" 2>&1 ||
  die "SLR config accepted: $(cat "$RUN_DIR/check-slr.out")"
start_slr || die "SLR starts and answers on its status socket"
for i in 1 2; do
  start_http "$i" || die "HTTP server in h$i"
  start_paced_http "$i" "$DPORT" "$RATE" || die "paced HTTP server in h$i"
done
write_host_config "$RUN_DIR/h1.toml" 1
write_host_config "$RUN_DIR/h2.toml" 2 host2 host2 "$SUBNET2"
for i in 1 2; do
  "$SLRCTL" check-config "$RUN_DIR/h$i.toml" >"$RUN_DIR/check-h$i.out" 2>&1 ||
    die "host config h$i accepted: $(cat "$RUN_DIR/check-h$i.out")"
  start_host "$i" || die "host agent h$i starts"
done
wait_for 20 hosts_up host1 host2 || { slr_json hosts >&2; die "both hosts register (state up at the SLR)"; }
ok "both hosts registered and up after ${WAITED_S}s"

rcount() { slr_get status "(d.get('recovery') or {}).get('$1', -1)"; }

# ---------------------------------------------------------------------------
# Part 1: echo recovery after an SLR restart with empty state
DLS=()                 # download names
declare -A DL_HOST=() DL_PORT=() DL_S=() MOVED=()
from=41000
for h in host1 host2; do
  for ((k = 1; k <= PER_HOST; k++)); do
    port=$(pick_client_port "$h" "$DPORT" "$from") || die "a client port the SLR sends to $h"
    name=d_${h}_$k
    DLS+=("$name"); DL_HOST[$name]=$h; DL_PORT[$name]=$port
    start_download "$name" "$DPORT" "$port" || die "download $name (client port $port) starts"
  done
done
for d in "${DLS[@]}"; do
  assert_eq "$d (client port ${DL_PORT[$d]}) runs on ${DL_HOST[$d]}" "${DL_HOST[$d]}" "$(flow_host "${DL_PORT[$d]}" "$DPORT")"
done
all_past() { local d; for d in "${DLS[@]}"; do (($(dl_bytes "$d") > $1)) || return 1; done; }
wait_for 20 all_past $((3 * 1048576)) || not_ok "every download past 3 MiB before the SLR is killed"

cp "$RUN_DIR/slr.log" "$RUN_DIR/slr-first.log"
kill -KILL "$SLR_PID"
wait "$SLR_PID" 2>/dev/null
T_KILL=$(now_s)
ok "SLR killed with SIGKILL"

_still() { local a b; a=$(dl_bytes "$1"); sleep 0.3; b=$(dl_bytes "$1"); [[ $a == "$b" ]]; }
all_still() { local d; for d in "${DLS[@]}"; do _still "$d" || return 1; done; }
snap_sizes() { local d; for d in "${DLS[@]}"; do DL_S[$d]=$(dl_bytes "$d"); done; }
if [[ -n "${SLR_FAST_PATH:-}" ]]; then
  # The tc program and its flow map outlive the daemon: established flows
  # keep moving in the kernel while no SLR runs.  The restart replaces the
  # map, so the state is lost then: restart at once.
  snap_sizes
  if wait_for 5 all_past $((DL_S[${DLS[0]}] + 262144)); then
    ok "kernel fast path keeps the downloads moving while no SLR runs"
  else
    not_ok "kernel fast path keeps the downloads moving while no SLR runs"
  fi
else
  # Without ACKs the servers stop once their windows are in flight: the
  # client files stop growing.
  wait_for 10 all_still || not_ok "the downloads stall while no SLR runs"
fi

# ECHO_RESTART_DELAY=S keeps the SLR down S seconds longer (an outage, not a
# wait for something: the length of the fault under test).
if [[ -n "${ECHO_RESTART_DELAY:-}" ]]; then sleep "$ECHO_RESTART_DELAY"; fi
start_slr || die "SLR restarts with empty state"
T_RESTART=$(now_s)
note "SLR restarted $(awk -v a="$T_KILL" -v b="$T_RESTART" 'BEGIN { printf "%.2f", b - a }')s after the kill"
if [[ -n "${SLR_FAST_PATH:-}" ]]; then
  # The new fast path map is empty: now the flows stall, once the servers
  # have used up what they may send without ACKs (seconds at 2 MiB/s).
  wait_for 30 all_still || not_ok "the downloads stall after the restart (fast path state lost)"
fi
snap_sizes
note "stalled at: $(for d in "${DLS[@]}"; do printf '%s=%s ' "$d" "${DL_S[$d]}"; done)"
note "restarted SLR: $(slr_get status "d['flows']['active']") flows active"
if wait_for 20 hosts_up host1 host2; then
  ok "both hosts re-registered ${WAITED_S}s after the restart"
  echo "# figure: echo_host_reregister_s $WAITED_S"
else
  slr_json hosts >&2
  not_ok "both hosts re-register after the restart"
fi

# Progress again: clearly past the stall point.  All polled together so each
# time is its own since the restart; the flow table is read at that moment.
declare -A SEEN=()
deadline=$((SECONDS + 40))
while ((SECONDS < deadline)) && ((${#MOVED[@]} < ${#DLS[@]})); do
  for d in "${DLS[@]}"; do
    [[ -z "${MOVED[$d]:-}" ]] || continue
    if (($(dl_bytes "$d") > DL_S[$d] + 262144)); then
      MOVED[$d]=$(elapsed_s "$T_RESTART")
      SEEN[$d]=$(flow_host "${DL_PORT[$d]}" "$DPORT")
    fi
  done
  sleep 0.05
done
for d in "${DLS[@]}"; do
  if [[ -n "${MOVED[$d]:-}" ]]; then
    ok "$d moves again ${MOVED[$d]}s after the restart"
  else
    not_ok "$d moves again after the restart (still $(dl_bytes "$d") bytes)"
  fi
  assert_eq "the restarted SLR's flow table sends $d to ${DL_HOST[$d]}" "${DL_HOST[$d]}" "${SEEN[$d]:-$(flow_host "${DL_PORT[$d]}" "$DPORT")}"
done
if ((${#MOVED[@]} > 0)); then
  echo "# figure: echo_recovery_s_min $(printf '%s\n' "${MOVED[@]}" | sort -n | head -n 1)"
  echo "# figure: echo_recovery_s_max $(printf '%s\n' "${MOVED[@]}" | sort -n | tail -n 1)"
fi
LOST=0
for d in "${DLS[@]}"; do
  check "$d (on ${DL_HOST[$d]}) completes with the right sha256" download_ok "$d" || LOST=$((LOST + 1))
done
echo "# figure: echo_connections_lost ${LOST}/${#DLS[@]}"

slr_json status >"$RUN_DIR/status-after.json" || true
note "SLR recovery: $(json_get "$RUN_DIR/status-after.json" "' '.join('%s=%s' % (k, v) for k, v in sorted((d.get('recovery') or {}).items()) if k.startswith(('echo_', 'midstream_')))")"
assert_ge "SLR applied a flow advertisement for every download (status.recovery.echo_applied)" \
  "$(json_get "$RUN_DIR/status-after.json" "d['recovery']['echo_applied']")" "${#DLS[@]}"
assert_eq "SLR never fell back to its guess: no flow saved by luck (status.recovery.midstream_guessed)" 0 \
  "$(json_get "$RUN_DIR/status-after.json" "d['recovery']['midstream_guessed']")"
note "mid-stream packets dropped while waiting: $(json_get "$RUN_DIR/status-after.json" "d['recovery']['midstream_dropped']")"
for i in 1 2; do
  host_json "$i" >"$RUN_DIR/h$i-after.json" || true
  note "h$i recovery: $(json_get "$RUN_DIR/h$i-after.json" "d.get('recovery')")"
  assert_ge "h$i agent sent flow-advertising echoes (recovery.echoes_sent)" \
    "$(json_get "$RUN_DIR/h$i-after.json" "d['recovery']['echoes_sent']")" "$PER_HOST"
  assert_ge "h$i agent saw echo replies from the client's kernel (recovery.replies_received)" \
    "$(json_get "$RUN_DIR/h$i-after.json" "d['recovery']['replies_received']")" "$PER_HOST"
  assert_ge "h$i agent counted its $PER_HOST connections recovered (recovery.recovered)" \
    "$(json_get "$RUN_DIR/h$i-after.json" "d['recovery']['recovered']")" "$PER_HOST"
  n=$(grep -c "recovered after" "$RUN_DIR/h$i.log" || true)
  assert_ge "h$i agent logged a recovery line per connection" "$n" "$PER_HOST"
  stalls=$(grep -oE 'recovered after [0-9]+ms' "$RUN_DIR/h$i.log" | grep -oE '[0-9]+' | sort -n | tr '\n' ' ')
  [[ -n "$stalls" ]] && echo "# figure: echo_host_stall_ms_h$i ${stalls% }"
done
check "SLR still running" slr_alive

# ECHO_FORGED=0 skips part 2: with several workers the worker that receives a
# forged reply may not own the flow it names; it keeps an unused copy and
# counts it applied while the owner refuses it (a known limitation, see the
# closing notes of issue 4), so part 2's exact counts hold for one worker.
if [[ "${ECHO_FORGED:-1}" == 0 ]]; then
  note "part 2 (forged replies) skipped: ECHO_FORGED=0"
  summary
  exit 0
fi

# ---------------------------------------------------------------------------
# Part 2: forged echo replies from the client namespace.
# forge SERVER CLIENT_PORT [VIP] [VERSION] [VIP_PORT]: one ICMP echo reply
# (type 0) from cli to VIP carrying an advertisement (core/flow_advert.h).
forge() {
  ns_py_raw cli "$CLI_ADDR" "$2" "${3:-$VIP}" "${5:-80}" "$1" 80 "${4:-1}" <<'PYEOF'
import socket, struct, sys
client, cport, vip, vport, server, sport, ver = sys.argv[1:8]
adv = (b"SLRF" + bytes([int(ver), 1, 6, 0]) + socket.inet_aton(client)
       + struct.pack("!HH", int(cport), int(vport)) + socket.inet_aton(vip)
       + socket.inet_aton(server) + struct.pack("!HH", int(sport), 0))
msg = struct.pack("!BBHHH", 0, 0, 0, 0x5eed, 1) + bytes(56) + adv
msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(msg, (vip, 0))
PYEOF
}
counter_reaches() { [[ "$(rcount "$1")" -ge "$2" ]]; }
no_flow_from() { [[ "$(slr_get flows "sum(1 for f in d['flows'] if f['src'] == '$CLI_ADDR:$1')")" == 0 ]]; }

# A live flow to hijack: new flows go to host2 (loads), so this one runs there.
P3=$(pick_client_port host2 "$DPORT" 42000) || die "a client port the SLR sends to host2"
start_download d3 "$DPORT" "$P3" || die "download d3 (client port $P3) starts"
assert_eq "d3 (client port $P3) runs on host2" host2 "$(flow_host "$P3" "$DPORT")"

declare -A R0=()
for k in echo_applied echo_refused_host echo_refused_subnet echo_conflict echo_malformed; do R0[$k]=$(rcount "$k"); done

forge 10.0.3.99 45001
if wait_for 5 counter_reaches echo_refused_host $((R0[echo_refused_host] + 1)); then
  ok "advertisement toward 10.0.3.99 (no host) refused: echo_refused_host +1"
else
  not_ok "advertisement toward 10.0.3.99 (no host) refused: echo_refused_host $(rcount echo_refused_host), was ${R0[echo_refused_host]}"
fi
check "no flow installed for the advertisement toward no host" no_flow_from 45001

forge "$(host_addr 2)" 45002 "$VIP_OUTSIDE2"
if wait_for 5 counter_reaches echo_refused_subnet $((R0[echo_refused_subnet] + 1)); then
  ok "advertisement toward host2 for $VIP_OUTSIDE2 (outside its $SUBNET2) refused: echo_refused_subnet +1"
else
  not_ok "advertisement toward host2 for $VIP_OUTSIDE2 refused: echo_refused_subnet $(rcount echo_refused_subnet), was ${R0[echo_refused_subnet]}"
fi
check "no flow installed for the advertisement outside host2's subnets" no_flow_from 45002

forge "$(host_addr 1)" "$P3" "$VIP" 1 "$DPORT"
if wait_for 5 counter_reaches echo_conflict $((R0[echo_conflict] + 1)); then
  ok "advertisement re-pointing live flow d3 (host2) to host1 refused: echo_conflict +1"
else
  not_ok "advertisement re-pointing d3 to host1 refused: echo_conflict $(rcount echo_conflict), was ${R0[echo_conflict]}"
fi
assert_eq "d3 still goes to host2 at the SLR" host2 "$(flow_host "$P3" "$DPORT")"

forge "$(host_addr 1)" 45004 "$VIP" 2
if wait_for 5 counter_reaches echo_malformed $((R0[echo_malformed] + 1)); then
  ok "advertisement with version 2 counted malformed: echo_malformed +1"
else
  not_ok "advertisement with version 2 counted malformed: echo_malformed $(rcount echo_malformed), was ${R0[echo_malformed]}"
fi
check "no flow installed for the malformed advertisement" no_flow_from 45004

# Positive control: the same packets do reach the SLR and a well-formed
# advertisement for a known host and authorised subnet is applied.
forge "$(host_addr 1)" 45005
if wait_for 5 counter_reaches echo_applied $((R0[echo_applied] + 1)); then
  ok "well-formed advertisement toward host1 applied (control): echo_applied +1"
else
  not_ok "well-formed advertisement toward host1 applied (control): echo_applied $(rcount echo_applied), was ${R0[echo_applied]}"
fi
assert_eq "the control advertisement installed cli:45005 -> host1" host1 "$(flow_host 45005 80)"
for k in echo_refused_host echo_refused_subnet echo_conflict echo_malformed; do
  note "$k: ${R0[$k]} -> $(rcount "$k")"
done
assert_eq "exactly one advertisement applied in part 2" $((R0[echo_applied] + 1)) "$(rcount echo_applied)"

check "d3 completes intact on host2 after the hijack attempt" download_ok d3
http_tally 10
note "tally: $(tally_str)"
assert_eq "10 new requests succeed after the forged replies" 10 "$TALLY_OK"
check "SLR still running" slr_alive
summary
