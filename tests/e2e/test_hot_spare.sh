#!/usr/bin/env bash
# Hot spare SLR (issue 4): slrA is the main, slrB its spare ([hot_spare] on
# both, peer = the other, claim_interface eth0, claim_addresses
# 10.0.2.100/24); rtr routes the VIP subnet via 10.0.2.100, so whichever SLR
# holds that address gets the VIP traffic.
#  1. A long download (BIG_MB MiB, sha256) and HS_CONNS slow downloads run
#     through the main; once the spare's flow table mirrors every one of them
#     (same host as the main's), the main is killed with SIGKILL.  The spare
#     must take over (state active, claimed, the address and rtr's ARP entry
#     move to it) and every transfer must complete byte for byte.  Figures:
#     connections lost / total, takeover time (the spare's last_takeover_ms
#     and the time until its status says active), the longest stall a client
#     saw, the main's sync lag before the kill.
#  2. With a download running on the (now active) spare, the main is started
#     again: it must get the spare's table back before it claims (when it is
#     active its table has that download's flow), end active and claimed with
#     the spare back in standby (address released), and the download must
#     complete intact.
#  3. The spare is killed and restarted while the main is active and flows
#     run: it must come back in standby and get a full resync (its mirrored
#     count reaches the main's active flow count; the main counts a resync);
#     those flows complete.
. "$(dirname "$0")/lib_pair.sh"
require_root
e2e_init
require_slrctl

PAIR_MODE=hot_spare
PAIR_VIP_VIA=$PAIR_CLAIM
N_CONNS=${HS_CONNS:-20}
LONG_RATE=$((1024 * 1024))   # BIG_MB (16) MiB at 1 MiB/s: ~16 s
SLOW_RATE=$((64 * 1024))     # 1 MiB at 64 KiB/s: ~16 s
LONG_PORT=45000
BATCH_PORT=45100
D2_PORT=45300
B3_PORT=45400
N_B3=10
PING1_PORT=45200
PING2_PORT=45310
N_PING=${HS_PINGS:-5}         # interactive connections: a round trip every 20 ms
DEAD_AFTER_MS=500            # PAIR_DEAD_AFTER default
# Takeover bound: dead_after + detection and claim slack.
TAKEOVER_LIMIT_S=${HS_TAKEOVER_LIMIT_S:-3}
# A planned handover (both SLRs alive) should cost the client less than a
# takeover after a crash; 2 s leaves room for one TCP retransmission.
HANDOVER_STALL_LIMIT_MS=${HS_HANDOVER_STALL_LIMIT_MS:-2000}
RESTART_BLOCK_S=${HS_RESTART_BLOCK_S:-3}
D2_RATE=$((512 * 1024))      # 16 MiB at 512 KiB/s: ~32 s, outlasts the handover

pair_bring_up 2
pair_add_file mid.bin 1 || die "mid.bin in the web roots"
for i in 1 2; do pair_start_echo "$i" || die "echo server in h$i"; done
MID_SHA=${FILE_SHA[mid.bin]}

state_is() { [[ "$(hs "$1" state)" == "$2" ]]; }
claimed_is() { [[ "$(hs "$1" claimed)" == "$2" ]]; }
pair_ready() {
  state_is slrA active && claimed_is slrA true && state_is slrB standby && claimed_is slrB false &&
    [[ "$(hs slrB connected)" == true && "$(hs slrA connected)" == true ]]
}
hs_summary() {
  local x
  for x in "$@"; do
    note "$x hot_spare: $(pair_get "$x" status "d.get('hot_spare')" 2>&1 | head -c 800)"
  done
}

# --- the pair forms: main active and claimed, spare standby -----------------
if wait_for 15 pair_ready; then
  ok "main slrA active + claimed, spare slrB standby + connected (${WAITED_S}s)"
else
  hs_summary slrA slrB
  die "main slrA active + claimed, spare slrB standby + connected"
fi
assert_eq "slrA role main, slrB role spare" "main spare" "$(hs slrA role) $(hs slrB role)"
assert_eq "the claim address $PAIR_CLAIM is on slrA only" "slrA " "$(pair_where_claim)"

http_tally 10
note "via the main: $(tally_str)"
assert_eq "10 requests through the main succeed" 10 "$TALLY_OK"
assert_eq "rtr reaches $PAIR_CLAIM at slrA's MAC" "$(pair_mac slrA)" "$(pair_neigh_mac $PAIR_CLAIM)"

# --- phase 1: transfers through the main, then SIGKILL of the main -----------
pair_mix_start p1 "$PING1_PORT"
PORTS1=$MIX_PORTS
N1=$MIX_N
ok "$N1 connections running through the main (1 long, $N_CONNS slow downloads, $N_PING interactive)"

# Sync: the spare's flow table names the same host as the main's for every
# transfer, and its mirrored count covers them.
mirrors_main() {
  local a b
  a=$(pair_flows_of slrA $PORTS1) && b=$(pair_flows_of slrB $PORTS1) || return 1
  [[ "$a" == "$b" && "$a" != *none* ]] && (( $(hs slrB mirrored) >= N1 ))
}
T_SYNC=$(now_s)
if wait_for 10 mirrors_main; then
  ok "the spare mirrors all $N1 connections with the main's next hops ($(elapsed_s "$T_SYNC")s after they all received data)"
else
  note "slrA flows: $(pair_flows_of slrA $PORTS1)"
  note "slrB flows: $(pair_flows_of slrB $PORTS1)"
  hs_summary slrA slrB
  not_ok "the spare mirrors all $N1 connections with the main's next hops"
fi
MAIN_ACTIVE=$(pcounter slrA "d['flows']['active']")
note "main: flows.active $MAIN_ACTIVE, hot_spare.sent $(hs slrA sent); spare: mirrored $(hs slrB mirrored), received $(hs slrB received)"
LAG_AVG=$(hs slrA lag_ms_avg); LAG_MAX=$(hs slrA lag_ms_max); LAG_LAST=$(hs slrA lag_ms_last)
SYNC_IV=$(hs slrA sync_interval_ms)
figure hot_spare_sync_lag_ms_avg "$LAG_AVG"
figure hot_spare_sync_lag_ms_max "$LAG_MAX"
figure hot_spare_sync_lag_ms_last "$LAG_LAST"
figure hot_spare_sync_interval_ms "$SYNC_IV"
assert_ge "the main measured a sync lag (lag_ms_max is a number)" "$LAG_MAX" 0
assert_le "the main's worst sync lag stays under 1 s" "$LAG_MAX" 1000
assert_eq "the main had no sync overflow" 0 "$(hs slrA overflows)"

check "all $N1 connections still running at the kill" eval "dl_running long && dl_running batch && [[ \$(dl_get batch \"d['done']\") == 0 ]]"
T_KILL=$(now_s)
pair_kill_slr slrA KILL
took_over() { state_is slrB active && claimed_is slrB true; }
if wait_for 10 took_over; then
  T_TAKE=$(elapsed_s "$T_KILL")
  ok "the spare is active and claimed ${T_TAKE}s after SIGKILL of the main"
  assert_le "takeover within ${TAKEOVER_LIMIT_S}s (dead_after ${DEAD_AFTER_MS}ms)" "$T_TAKE" "$TAKEOVER_LIMIT_S"
else
  T_TAKE=none
  hs_summary slrB
  not_ok "the spare takes over after SIGKILL of the main"
fi
TAKE_MS=$(hs slrB last_takeover_ms)
figure hot_spare_last_takeover_ms "$TAKE_MS"
figure hot_spare_kill_to_active_s "$T_TAKE"
assert_eq "the spare counted 1 takeover" 1 "$(hs slrB takeovers)"
assert_ge "last_takeover_ms >= dead_after (${DEAD_AFTER_MS})" "$TAKE_MS" "$DEAD_AFTER_MS"
check "the spare's log says 'takeover after N ms'" grep -qiE "takeover after [0-9]+ ?ms" "$(plog slrB)"
check "the spare holds $PAIR_CLAIM" pair_has_addr slrB "$PAIR_CLAIM"
note "claim address now on: $(pair_where_claim)(slrA's namespace outlives its killed process)"
if wait_for 5 eval '! pair_has_addr slrA "$PAIR_CLAIM"'; then
  note "the dead main's copy of $PAIR_CLAIM went away $(elapsed_s "$T_KILL")s after the kill (address lease)"
else
  note "the dead main's namespace still holds $PAIR_CLAIM (it answers ARP for it too)"
fi
neigh_is_b() { [[ "$(pair_neigh_mac $PAIR_CLAIM)" == "$(pair_mac slrB)" ]]; }
if wait_for 5 neigh_is_b; then ok "rtr's ARP entry for $PAIR_CLAIM moved to slrB (gratuitous ARP)"
else not_ok "rtr's ARP entry for $PAIR_CLAIM moved to slrB (has $(pair_neigh_mac $PAIR_CLAIM), slrB is $(pair_mac slrB))"; fi

pair_mix_finish p1 "the takeover"
LOST1=$MIX_LOST
STALL1=$(( $(dl_block_after long "$T_KILL") > $(dl_block_after batch "$T_KILL") ? $(dl_block_after long "$T_KILL") : $(dl_block_after batch "$T_KILL") ))
figure hot_spare_connections_lost "$LOST1"
figure hot_spare_connections_total "$N1"
figure hot_spare_client_stall_ms "$STALL1"
figure hot_spare_client_stall_long_ms "$(dl_block_after long "$T_KILL")"
figure hot_spare_interactive_stall_ms "$(ping_stall_after p1 "$T_KILL")"
note "recovery counters at the spare: $(pcounter slrB "d.get('recovery')")"
note "spare flows: $(pcounter slrB "d['flows']")"

# --- phase 2: the main comes back and gets the state back -------------------
pair_dl d2 /big.bin 1 "$D2_RATE" "$D2_PORT" "$BIG_SHA"
wait_for 15 dl_all_receiving d2 || die "a download through the active spare receives data"
D2_SRC="$CLI_ADDR:$D2_PORT"
wait_for 5 eval '[[ "$(pair_flow_host slrB "$D2_SRC")" != none ]]' || not_ok "the spare's table has the new download"
D2_HOST=$(pair_flow_host slrB "$D2_SRC")
ok "download $D2_SRC runs through the active spare to $D2_HOST"
pair_ping p2 "$N_PING" 20 "$PING2_PORT"
wait_for 15 ping_all_going p2 || die "$N_PING interactive connections through the active spare echo"

# Its hosts re-register only when their agents' reconnect backoff (1..10 s)
# next fires.  To make that window deterministic, slrA's control port refuses
# the hosts for RESTART_BLOCK_S after the restart (nft reject in slrA's
# namespace): a main that took the traffic back before its hosts are up
# would have no next hop for anything (and re-point mirrored flows whose host
# is not up yet).  The spare must keep serving through that window.
pair_block_hosts slrA || die "nft rule refusing the hosts at slrA's control port"
T_RESTART=$(now_s)
pair_start_slr slrA || die "slrA restarts"
FIRST_STATE=$(hs slrA state); FIRST_CLAIMED=$(hs slrA claimed)
note "slrA first seen after restart: state $FIRST_STATE, claimed $FIRST_CLAIMED ($(elapsed_s "$T_RESTART")s)"
# Observe the pair for RESTART_BLOCK_S while the hosts cannot register at slrA.
EARLY=""; SEEN=""
T_OBS=$(now_s)
while [[ $(ms_between "$T_OBS" "$(now_s)") -lt $((RESTART_BLOCK_S * 1000)) ]]; do
  st="$(hs slrA state)/$(hs slrA claimed) hosts $(pair_host_state host1 slrA),$(pair_host_state host2 slrA)"
  [[ "$SEEN" == *"[$st]"* ]] || SEEN+="[$st] "
  [[ "$(hs slrA claimed)" == true && "$(pair_host_state host1 slrA) $(pair_host_state host2 slrA)" != "up up" ]] &&
    [[ -z "$EARLY" ]] && EARLY="$(elapsed_s "$T_RESTART")s after restart: $st"
  sleep 0.1
done
note "slrA while its hosts could not register: $SEEN"
if [[ -z "$EARLY" ]]; then
  ok "the restarted main does not take the traffic back while its hosts are not up"
else
  not_ok "the restarted main does not take the traffic back while its hosts are not up (claimed $EARLY)"
fi
SPARE_NOW="$(hs slrB state) $(hs slrB claimed)"
if [[ "$SPARE_NOW" == "active true" || "$SPARE_NOW" == "handover true" ]]; then
  ok "the spare still holds the claim meanwhile ($SPARE_NOW)"
else
  not_ok "the spare still holds the claim meanwhile (state/claimed: $SPARE_NOW)"
fi
pair_unblock_hosts slrA
T_UNBLOCK=$(now_s)
if wait_for 20 eval 'pair_hosts_up slrA'; then
  ok "the hosts re-register at slrA ${WAITED_S}s after the unblock (agent backoff)"
  T_HOSTS=$(now_s)
else
  not_ok "the hosts re-register at slrA after the unblock"
  T_HOSTS=$(now_s)
fi
main_back() { state_is slrA active && claimed_is slrA true; }
D2_AT_A=none
if wait_for 15 main_back; then
  T_HAND=$(elapsed_s "$T_HOSTS")
  D2_AT_A=$(pair_flow_host slrA "$D2_SRC")
  HOSTS_AT_A="$(pair_host_state host1 slrA) $(pair_host_state host2 slrA)"
  ok "the main is active and claimed again (${T_HAND}s after its hosts were up)"
  # Flows (and new connections) need their hosts: a main that takes the
  # traffic back before its hosts have re-registered drops every packet
  # (no host) and re-points mirrored flows whose host is not up yet.
  assert_eq "when the main takes the traffic back, both hosts are up at it" "up up" "$HOSTS_AT_A"
else
  T_HAND=none
  hs_summary slrA slrB
  not_ok "the restarted main becomes active and claims"
fi
figure hot_spare_handover_s "$T_HAND"
assert_eq "when active, the main's table has the download the spare started (same host)" "$D2_HOST" "$D2_AT_A"
if wait_for 10 eval 'state_is slrB standby && claimed_is slrB false'; then
  ok "the spare is back in standby and released its claim"
else
  hs_summary slrB
  not_ok "the spare is back in standby and released its claim"
fi
wait_for 5 eval '[[ "$(pair_where_claim)" == "slrA " ]]' || true
assert_eq "the claim address is on slrA only" "slrA " "$(pair_where_claim)"
neigh_is_a() { [[ "$(pair_neigh_mac $PAIR_CLAIM)" == "$(pair_mac slrA)" ]]; }
if wait_for 5 neigh_is_a; then ok "rtr's ARP entry for $PAIR_CLAIM is slrA's again"
else not_ok "rtr's ARP entry for $PAIR_CLAIM is slrA's again (has $(pair_neigh_mac $PAIR_CLAIM))"; fi
dl_wait d2 90 || not_ok "the download across the handover finished within 90 s"
assert_eq "the download started on the spare completed byte for byte across the handover" 1 "$(dl_get d2 "d['ok']")"
[[ "$(dl_get d2 "d['ok']")" == 1 ]] || note "d2: $(dl_failures d2)"
HAND_STALL=$(dl_block_after d2 "$T_RESTART")
figure hot_spare_handover_client_stall_ms "$HAND_STALL"
assert_le "the handover stalls the download by at most ${HANDOVER_STALL_LIMIT_MS} ms" "$HAND_STALL" "$HANDOVER_STALL_LIMIT_MS"
note "slrA drops after the handover: no_host $(pcounter slrA "d['drops'].get('no_host', 0)"), total $(pcounter slrA "d['drops_total']"); mid-stream: created $(pcounter slrA "d['flows']['midstream']"), dropped $(pcounter slrA "d['recovery']['midstream_dropped']"), guessed $(pcounter slrA "d['recovery']['midstream_guessed']"); mirror: applied $(pcounter slrA "d['recovery']['mirror_applied']"), failed $(pcounter slrA "d['recovery']['mirror_failed']")"
pair_ping_stop p2 || not_ok "the interactive connections across the handover finish"
assert_eq "all $N_PING interactive connections survived the handover" "$N_PING" "$(dl_get p2 "d['ok']")"
[[ "$(dl_get p2 "d['ok']")" == "$N_PING" ]] || note "interactive: $(ping_failures p2)"
HAND_PING=$(ping_stall_after p2 "$T_RESTART")
figure hot_spare_handover_interactive_stall_ms "$HAND_PING"
assert_le "the handover stalls interactive connections by at most ${HANDOVER_STALL_LIMIT_MS} ms" "$HAND_PING" "$HANDOVER_STALL_LIMIT_MS" || {
  note "interactive round trips over 20 ms after the restart (port: [end epoch, ms]): $(dl_get p2 "'; '.join('%s: %s' % (r['port'], [[round(at + rtt / 1000.0, 3), rtt] for at, rtt in r['slow'] if at + rtt / 1000.0 >= $T_RESTART]) for r in d['conns'])")"
  note "pair log lines: $(grep -h "spare\|resync\|hand" "$(named_log slrA)" "$(named_log slrB)" | tail -n 30 | tr '\n' '|')"
}
figure hot_spare_handover_connections_lost "$((1 + N_PING - $(dl_get d2 "d['ok']") - $(dl_get p2 "d['ok']")))"
figure hot_spare_handover_connections_total "$((1 + N_PING))"
http_tally 10
assert_eq "10 new requests through the main succeed" 10 "$TALLY_OK"

# --- phase 3: the spare restarts and gets a full resync ---------------------
pair_dl b3 /mid.bin "$N_B3" "$SLOW_RATE" "$B3_PORT" "$MID_SHA"
wait_for 15 dl_all_receiving b3 || die "$N_B3 slow downloads through the main receive data"
PORTS3=$(dl_ports b3)
wait_for 5 eval '[[ "$(pair_flows_of slrA $PORTS3)" != *none* ]]' || not_ok "the main's table has the $N_B3 new flows"
RESYNCS0=$(hs slrA resyncs)
pair_kill_slr slrB KILL
ok "spare killed (SIGKILL) with $N_B3 flows running through the main"
T_SP=$(now_s)
pair_start_slr slrB || die "slrB restarts"
resynced() {
  local m a
  state_is slrB standby && [[ "$(hs slrB connected)" == true ]] || return 1
  m=$(hs slrB mirrored); a=$(pair_distinct_flows slrA)
  [[ "$m" == "$a" ]] && [[ "$(pair_flows_of slrB $PORTS3)" == "$(pair_flows_of slrA $PORTS3)" ]]
}
if wait_for 15 resynced; then
  ok "the restarted spare mirrors the main's $(hs slrB mirrored) distinct flows again ($(elapsed_s "$T_SP")s after its restart)"
else
  note "slrA flows.active $(pcounter slrA "d['flows']['active']") (distinct $(pair_distinct_flows slrA)); slrB mirrored $(hs slrB mirrored)"
  note "slrA: $(pair_flows_of slrA $PORTS3)"
  note "slrB: $(pair_flows_of slrB $PORTS3)"
  hs_summary slrA slrB
  not_ok "the restarted spare gets a full resync from the main"
fi
figure hot_spare_spare_resync_s "$(elapsed_s "$T_SP")"
note "main: flows.active $(pcounter slrA "d['flows']['active']"), distinct flows $(pair_distinct_flows slrA), hot_spare.mirrored $(hs slrA mirrored) (${SLR_WORKERS:-1} worker(s))"
assert_ge "the main counted a full resync for the new spare connection" "$(hs slrA resyncs)" "$((RESYNCS0 + 1))"
assert_eq "the main is still active and claimed, the spare standby" "active true standby false" \
  "$(hs slrA state) $(hs slrA claimed) $(hs slrB state) $(hs slrB claimed)"
dl_wait b3 90 || not_ok "the $N_B3 downloads finished within 90 s"
assert_eq "all $N_B3 downloads complete byte for byte" "$N_B3" "$(dl_get b3 "d['ok']")"
[[ "$(dl_get b3 "d['ok']")" == "$N_B3" ]] || note "b3: $(dl_failures b3)"
check "slrA still running" pair_alive slrA
check "slrB still running" pair_alive slrB
