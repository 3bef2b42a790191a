#!/usr/bin/env bash
# WHOHAS (issue 4): slrA and slrB are independent SLRs (no hot spare), each
# the other's [[neighbor]]; both have the same hosts.  rtr routes the VIP
# subnet via slrA.
#  1. A long download (BIG_MB MiB, sha256) and WH_CONNS slow downloads run
#     through slrA.  Mid-transfer rtr's VIP route is replaced by one via slrB
#     (the client's ingress moves to an SLR with no state).  slrB sees
#     segments without SYN for flows it does not know, asks slrA, which
#     answers with the host; slrB must resolve every one of them (no
#     mid-stream guess) and every transfer must complete byte for byte.
#     Figures: connections lost / total, the longest stall a client saw
#     across the route change, the time until slrB had resolved them all,
#     the WHOHAS counters of both.
#  2. Raw TCP segments of a connection nobody has (client port 40999): slrB
#     asks, slrA does not know it, slrB gives up after the whohas wait
#     (counted), drops during midstream_wait, then forwards to its stateless
#     guess (counted); both daemons keep running and serve new connections,
#     whose SYNs never trigger a WHOHAS.
. "$(dirname "$0")/lib_pair.sh"
require_root
e2e_init
require_slrctl

PAIR_MODE=neighbors
PAIR_VIP_VIA=${PADDR[slrA]}
PAIR_MIDSTREAM_WAIT=${WH_MIDSTREAM_WAIT:-1s}
MIDSTREAM_WAIT_S=$(awk -v v="$PAIR_MIDSTREAM_WAIT" 'BEGIN { if (v ~ /ms$/) print v / 1000; else print v + 0 }')
N_CONNS=${WH_CONNS:-10}
LONG_RATE=$((2 * 1024 * 1024))   # BIG_MB (16) MiB at 2 MiB/s: ~8 s
SLOW_RATE=$((128 * 1024))        # 1 MiB at 128 KiB/s: ~8 s
LONG_PORT=45000
BATCH_PORT=45100
GHOST_PORT=40999
PING_PORT=45200
N_PING=${WH_PINGS:-5}           # interactive connections: a round trip every 20 ms

pair_bring_up 2
pair_add_file mid.bin 1 || die "mid.bin in the web roots"
for i in 1 2; do pair_start_echo "$i" || die "echo server in h$i"; done
MID_SHA=${FILE_SHA[mid.bin]}

nb_state() { pair_get "$1" status "next((n.get('state') for n in d.get('whohas', {}).get('neighbors', []) if n.get('name') == '${POTHER[$1]}'), 'absent')" 2>/dev/null || echo unreachable; }
nb_up() { local s; s=$(nb_state "$1"); [[ "$s" == up || "$s" == connected || "$s" == established ]]; }
if wait_for 15 eval 'nb_up slrA && nb_up slrB'; then
  ok "slrA and slrB each list the other as a connected neighbour (${WAITED_S}s)"
else
  note "slrA whohas: $(pcounter slrA "d.get('whohas')")"
  note "slrB whohas: $(pcounter slrB "d.get('whohas')")"
  not_ok "slrA and slrB each list the other as a connected neighbour (states $(nb_state slrA) / $(nb_state slrB))"
fi
assert_eq "no hot spare configured on either" "false false" "$(hs slrA enabled) $(hs slrB enabled)"

http_tally 10
note "via slrA: $(tally_str)"
assert_eq "10 requests through slrA succeed" 10 "$TALLY_OK"

# --- phase 1: the ingress moves to slrB mid-transfer ------------------------
pair_mix_start pw "$PING_PORT"
PORTS=$MIX_PORTS
N1=$MIX_N
wait_for 5 eval '[[ "$(pair_flows_of slrA $PORTS)" != *none* ]]' || not_ok "slrA's table has all $N1 connections"
FLOWS_A=$(pair_flows_of slrA $PORTS)
assert_eq "slrB has none of them" "$(sed 's/=[^ ]*/=none/g' <<<"$FLOWS_A")" "$(pair_flows_of slrB $PORTS)"
ok "$N1 connections running through slrA: 1 long, $N_CONNS slow downloads, $N_PING interactive ($FLOWS_A)"

ASKED0=$(wh slrB asked); RESOLVED0=$(wh slrB resolved); FOUND0=$(wh slrB answered_found)
SERVED0=$(wh slrA queries_served); SFOUND0=$(wh slrA served_found)
GUESSED0=$(pcounter slrB "d.get('recovery', {}).get('midstream_guessed', 0)")
check "all $N1 connections still running at the route change" eval "dl_running long && [[ \$(dl_get batch \"d['done']\") == 0 ]]"
T_MOVE=$(now_s)
pair_route_vip "${PADDR[slrB]}" || die "rtr's VIP route replaced by one via slrB"
# slrB must learn every flow from slrA (same host in its table) and count
# each as resolved by WHOHAS; read at once, before finished flows expire.
all_resolved() { (( $(wh slrB resolved) - RESOLVED0 >= N1 )); }
same_table() { [[ "$(pair_flows_of slrB $PORTS)" == "$FLOWS_A" ]]; }
if wait_for 15 eval 'all_resolved && same_table'; then
  T_RES=$(elapsed_s "$T_MOVE")
  ok "slrB resolved all $N1 flows by WHOHAS, same hosts as slrA, ${T_RES}s after the route change"
else
  T_RES=none
  FLOWS_B=$(pair_flows_of slrB $PORTS)
  note "slrA: $FLOWS_A"
  note "slrB: $FLOWS_B"
  note "slrB whohas: $(pcounter slrB "d.get('whohas')")"
  note "slrB recovery: $(pcounter slrB "d.get('recovery')")"
  not_ok "slrB resolves all $N1 flows by WHOHAS (resolved $(( $(wh slrB resolved) - RESOLVED0 )), answered_found $(( $(wh slrB answered_found) - FOUND0 )), slrA served_found $(( $(wh slrA served_found) - SFOUND0 )))"
  assert_eq "slrB's table names the same host as slrA's for every transfer" "$FLOWS_A" "$FLOWS_B"
fi
assert_ge "slrB status.whohas.resolved >= 1" "$(wh slrB resolved)" 1

pair_mix_finish pw "the route change"
LOST1=$MIX_LOST
assert_eq "slrB guessed no mid-stream flow (all were resolved)" "$GUESSED0" \
  "$(pcounter slrB "d.get('recovery', {}).get('midstream_guessed', 0)")"
A_LONG=$(dl_block_after long "$T_MOVE"); A_BATCH=$(dl_block_after batch "$T_MOVE")
figure whohas_connections_lost "$LOST1"
figure whohas_connections_total "$N1"
figure whohas_client_stall_ms "$((A_LONG > A_BATCH ? A_LONG : A_BATCH))"
figure whohas_client_stall_long_ms "$A_LONG"
figure whohas_interactive_stall_ms "$(ping_stall_after pw "$T_MOVE")"
figure whohas_route_change_to_all_resolved_s "$T_RES"
figure whohas_asked "$(( $(wh slrB asked) - ASKED0 ))"
figure whohas_answered_found "$(( $(wh slrB answered_found) - FOUND0 ))"
figure whohas_resolved "$(( $(wh slrB resolved) - RESOLVED0 ))"
figure whohas_timeouts "$(wh slrB timeouts)"
figure whohas_served_by_slrA "$(( $(wh slrA queries_served) - SERVED0 ))"
figure whohas_served_found_by_slrA "$(( $(wh slrA served_found) - SFOUND0 ))"
assert_ge "slrA served the queries (served_found >= $N1)" "$(( $(wh slrA served_found) - SFOUND0 ))" "$N1"
note "slrB whohas: $(pcounter slrB "d.get('whohas')")"
note "slrB recovery: $(pcounter slrB "d.get('recovery')")"

# --- phase 2: a flow nobody knows -------------------------------------------
ASKED1=$(wh slrB asked); UNK1=$(wh slrB answered_unknown); TO1=$(wh slrB timeouts)
RES1=$(wh slrB resolved); SFOUND1=$(wh slrA served_found); SERVED1=$(wh slrA queries_served)
HOLD_TO1=$(pcounter slrB "d.get('recovery', {}).get('whohas_timeouts', 0)")
DROPPED1=$(pcounter slrB "d.get('recovery', {}).get('midstream_dropped', 0)")
GUESSED1=$(pcounter slrB "d.get('recovery', {}).get('midstream_guessed', 0)")
# Segments every 0.2 s for midstream_wait + 1 s: the first ones wait, the
# last ones are past the wait.
N_GHOST=$(awk -v w="$MIDSTREAM_WAIT_S" 'BEGIN { printf "%d", (w + 1) / 0.2 + 1 }')
pair_craft_tcp "$GHOST_PORT" "$N_GHOST" 0.2 || not_ok "raw segments sent from cli"
ok "$N_GHOST raw TCP segments (ACK+PSH, no SYN) sent for $CLI_ADDR:$GHOST_PORT -> $VIP:80"
ghost_done() {
  (( $(wh slrB asked) > ASKED1 )) &&
    (( $(wh slrB timeouts) > TO1 )) &&
    (( $(pcounter slrB "d.get('recovery', {}).get('midstream_guessed', 0)") > GUESSED1 ))
}
wait_for 5 ghost_done || true
assert_ge "slrB asked its neighbour about the unknown flow" "$(wh slrB asked)" "$((ASKED1 + 1))"
assert_ge "slrA answered (queries_served +1)" "$(wh slrA queries_served)" "$((SERVED1 + 1))"
assert_eq "slrA did not claim the unknown flow (served_found unchanged)" "$SFOUND1" "$(wh slrA served_found)"
assert_ge "slrB counted the answer 'unknown'" "$(wh slrB answered_unknown)" "$((UNK1 + 1))"
assert_ge "slrB counted the WHOHAS wait running out (status.whohas.timeouts)" "$(wh slrB timeouts)" "$((TO1 + 1))"
assert_ge "slrB's worker stopped holding its packets (recovery.whohas_timeouts)" \
  "$(pcounter slrB "d.get('recovery', {}).get('whohas_timeouts', 0)")" "$((HOLD_TO1 + 1))"
assert_eq "nothing resolved for it" "$RES1" "$(wh slrB resolved)"
assert_ge "segments inside midstream_wait dropped and counted" \
  "$(pcounter slrB "d.get('recovery', {}).get('midstream_dropped', 0)")" "$((DROPPED1 + 1))"
assert_ge "after midstream_wait the stateless guess is used, counted once" \
  "$(pcounter slrB "d.get('recovery', {}).get('midstream_guessed', 0)")" "$((GUESSED1 + 1))"
note "slrB whohas: $(pcounter slrB "d.get('whohas')")"
note "slrB recovery: $(pcounter slrB "d.get('recovery')")"
note "slrB's flow for the ghost: $(pair_flow_host slrB "$CLI_ADDR:$GHOST_PORT")"
check "slrA still running" pair_alive slrA
check "slrB still running" pair_alive slrB

ASKED2=$(wh slrB asked)
http_tally 10
note "via slrB: $(tally_str)"
assert_eq "10 new requests through slrB succeed" 10 "$TALLY_OK"
assert_eq "new connections (SYN) never trigger a WHOHAS" "$ASKED2" "$(wh slrB asked)"
check "slrB still answers status" pair_answers slrB
