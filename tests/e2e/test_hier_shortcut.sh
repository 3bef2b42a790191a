#!/usr/bin/env bash
# Shortcut signalling (Fig. 5) through three levels.  N TCP connections, each
# downloading a 1 MiB file (checksummed), with every SLR's status counters
# read before and after.
#   HIER_SHORTCUT=1 (default): the site SLR that picks a host signals the host's
#     tunnel endpoint up (site -> system -> network); net tunnels the rest of
#     the flow straight to the host, holding later packets until the shortcut
#     is there.  So the site SLRs together forward exactly N packets (the SYNs)
#     and so do the system SLRs; shortcut counters show N sent / relayed /
#     applied; net sends IP-in-IP straight to hosts.
#   HIER_SHORTCUT=0: every client packet passes every level: the site and the
#     system SLRs each forwarded >= the client->server packets (>> N); no
#     shortcut is signalled; nothing goes from net straight to a host.
# Transfers byte-for-byte correct either way.
HIER_SHORTCUT=${HIER_SHORTCUT:-1}
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

N=${N_CONN:-30}
BIG_MB=1
note "shortcut $HIER_SHORTCUT (wait ${HIER_SHORTCUT_WAIT:-200ms}), $N connections x ${BIG_MB} MiB, host decap ${HOST_DECAP:-none}"
hier_bring_up

for s in "${HIER_SLRS[@]}"; do
  assert_eq "$s status: shortcut enabled = $(_tf "$HIER_SHORTCUT")" "$(_tf "$HIER_SHORTCUT")" \
    "$(counter "$s" "d['shortcut']['enabled']")"
done

# One warm-up request so every level has built its tables with all children
# (not counted: counters are read after it).
cli_get "" >/dev/null || note "warm-up request failed"

snap() {  # TAG: every SLR's status JSON into RUN_DIR/TAG-NAME.json
  local s
  for s in "${HIER_SLRS[@]}"; do hier_json "$s" status >"$RUN_DIR/$1-$s.json" || return 1; done
}
# delta NAME EXPR: EXPR over the "after" status minus over the "before" one
# (a missing key counts as "missing").
delta() {
  local a b
  a=$(json_get "$RUN_DIR/after-$1.json" "$2" 2>/dev/null) || { echo missing; return; }
  b=$(json_get "$RUN_DIR/before-$1.json" "$2" 2>/dev/null) || { echo missing; return; }
  echo $((a - b))
}
sum_delta() {  # EXPR NAME...
  local e=$1 s v t=0; shift
  for s in "$@"; do v=$(delta "$s" "$e"); [[ $v == missing ]] && { echo missing; return; }; t=$((t + v)); done
  echo "$t"
}

cap_start cli cli eth0 "tcp port 80" || die "capture in cli"
# IP-in-IP leaving net for anything but a system SLR = straight to a host.
cap_start direct net eth0 "ip proto 4 and src host ${HADDR[net]} and not dst host ${HADDR[sysA]} and not dst host ${HADDR[sysB]}" ||
  die "capture in net"
snap before || die "status of every SLR before the batch"

GOOD=0; BAD=0
T0=$(now_s)
for ((k = 0; k < N; k++)); do
  sha=$(ns cli curl -sS --fail --max-time 20 "http://$VIP/big.bin" | sha256sum | cut -d' ' -f1)
  if [[ "$sha" == "$BIG_SHA" ]]; then GOOD=$((GOOD + 1)); else BAD=$((BAD + 1)); fi
done
note "$N downloads in $(elapsed_s "$T0")s"
assert_eq "$N downloads of ${BIG_MB} MiB through the hierarchy are byte-for-byte intact" "$N" "$GOOD"

cap_stop cli
C2S=$(cap_count cli "dst host $VIP and tcp dst port 80")
note "client->server packets on the wire: $C2S"
# Every client packet has reached net once its rx counter covers them all.
net_rx_covers() { (( $(counter net "d['packets']['rx']") - $(json_get "$RUN_DIR/before-net.json" "d['packets']['rx']") >= C2S )); }
wait_for 5 net_rx_covers || note "net's rx delta never reached $C2S"
cap_stop direct
snap after || die "status of every SLR after the batch"
DIRECT=$(cap_count direct)

SITE_TX=$(sum_delta "d['packets']['tx']" "${HIER_SITES[@]}")
SYS_TX=$(sum_delta "d['packets']['tx']" "${HIER_SYS[@]}")
NET_TX=$(delta net "d['packets']['tx']")
note "forwarded during the batch: net $NET_TX, system SLRs $SYS_TX ($(delta sysA "d['packets']['tx']") + $(delta sysB "d['packets']['tx']")), site SLRs $SITE_TX"
for s in "${HIER_SLRS[@]}"; do
  note "$s shortcut: $(json_get "$RUN_DIR/after-$s.json" "json.dumps(d['shortcut'], sort_keys=True)" 2>/dev/null)"
done
note "IP-in-IP from net straight to hosts: $DIRECT"
assert_ge "net forwarded every client packet (tx >= $C2S)" "$NET_TX" "$C2S"

if [[ "$HIER_SHORTCUT" == 1 ]]; then
  assert_eq "site SLRs together forwarded exactly one packet per connection" "$N" "$SITE_TX"
  assert_eq "system SLRs together forwarded exactly one packet per connection" "$N" "$SYS_TX"
  assert_eq "site SLRs sent $N shortcuts" "$N" "$(sum_delta "d['shortcut']['sent']" "${HIER_SITES[@]}")"
  assert_eq "system SLRs received $N shortcuts" "$N" "$(sum_delta "d['shortcut']['received']" "${HIER_SYS[@]}")"
  assert_eq "system SLRs applied $N shortcuts" "$N" "$(sum_delta "d['shortcut']['applied']" "${HIER_SYS[@]}")"
  assert_eq "system SLRs relayed $N shortcuts up (status shortcut.relayed)" "$N" "$(sum_delta "d['shortcut']['relayed']" "${HIER_SYS[@]}")"
  assert_eq "net received $N shortcuts" "$N" "$(delta net "d['shortcut']['received']")"
  assert_eq "net applied $N shortcuts" "$N" "$(delta net "d['shortcut']['applied']")"
  assert_eq "no shortcut refused anywhere" 0 "$(sum_delta "d['shortcut']['refused']" "${HIER_SLRS[@]}")"
  assert_eq "net: no hold timeouts (every shortcut arrived within shortcut_wait)" 0 "$(delta net "d['shortcut']['hold_timeouts']")"
  assert_ge "net held later packets until the shortcut came" "$(delta net "d['shortcut']['held_packets']")" 1
  assert_eq "net released every held packet" "$(delta net "d['shortcut']['held_packets']")" "$(delta net "d['shortcut']['released_packets']")"
  # All but the N SYNs went from net straight to a host.
  assert_ge "net tunnelled the rest straight to the hosts (>= client packets - N)" "$DIRECT" "$((C2S - N))"
else
  assert_gt "client sent many more packets than connections" "$C2S" "$((2 * N))"
  assert_ge "site SLRs forwarded every client packet (>= $C2S)" "$SITE_TX" "$C2S"
  assert_ge "system SLRs forwarded every client packet (>= $C2S)" "$SYS_TX" "$C2S"
  assert_eq "no shortcut sent by any SLR" 0 "$(sum_delta "d['shortcut']['sent']" "${HIER_SLRS[@]}")"
  assert_eq "no shortcut applied by any SLR" 0 "$(sum_delta "d['shortcut']['applied']" "${HIER_SLRS[@]}")"
  assert_eq "nothing tunnelled from net straight to a host" 0 "$DIRECT"
  if [[ -n "${HIER_FAST_PATH:-}" ]]; then
    # The lower levels re-tunnel established flows in the kernel: their
    # workers see only each flow's first packets.
    SYS_FP=$(sum_delta "d['fast_path']['packets']" "${HIER_SYS[@]}")
    SYS_US=$(sum_delta "d['packets']['userspace']" "${HIER_SYS[@]}")
    note "system SLRs: $SYS_FP packets re-tunnelled by the kernel, $SYS_US by the workers"
    assert_gt "system SLRs re-tunnelled most packets in the kernel" "$SYS_FP" "$SYS_US"
    SITE_FP=$(sum_delta "d['fast_path']['packets']" "${HIER_SITES[@]}")
    SITE_US=$(sum_delta "d['packets']['userspace']" "${HIER_SITES[@]}")
    note "site SLRs: $SITE_FP packets re-tunnelled by the kernel, $SITE_US by the workers"
    assert_gt "site SLRs re-tunnelled most packets in the kernel" "$SITE_FP" "$SITE_US"
  fi
fi

# With several workers per SLR, every worker of a system SLR terminates its
# share of the tunnelled flows (a socket filter hashes them over workers).
if ((${SLR_WORKERS:-1} > 1)); then
  for s in sysA sysB; do
    per=$(counter "$s" "' '.join(str(x) for x in d['level']['tunnel_rx_per_worker'])")
    note "$s tunnel packets per worker: $per"
    busy=0
    for x in $per; do ((x > 0)) && busy=$((busy + 1)); done
    assert_eq "$s: all ${SLR_WORKERS} workers terminated tunnelled flows" "${SLR_WORKERS}" "$busy"
  done
fi

for s in "${HIER_SLRS[@]}"; do check "SLR $s still running" kill -0 "${SPID[$s]}"; done
