#!/usr/bin/env bash
# shellcheck disable=SC2034  # DL_PID[...] is read by lib.sh (download_ok)
# Flow-state re-creation and draining in the three-level hierarchy with
# shortcuts (issue 4, mechanisms 5 and 6).
#
# (a) The ingress loses its shortcuts.  A rate-limited download (BIG_MB MiB,
#     sha256 checked) runs through the hierarchy; net tunnels it straight to
#     the host (a shortcut the site SLR signalled up).  net is SIGKILLed and
#     started again with empty state.  The client's ACKs now reach a net that
#     does not know the flow: it sends them to its stateless guess, the
#     system SLR, which still has the flow (from its SYN) and forwards it to
#     the host by its own shortcut; packets keep coming from above, so it
#     signals the host up again (status.recovery.shortcut_resignalled) and
#     net applies the shortcut again.  Asserted: the download completes byte
#     for byte; a lower SLR counted shortcut_resignalled >= 1; the restarted
#     net counts shortcut.applied >= 1 and `slrctl flows` at net shows the
#     flow going straight to the same host's endpoint.  Figures: outage (kill
#     to the download moving again), restart to shortcut re-applied.
#     net's guess must be the system SLR that has the flow: by default AS B
#     (sysB) is stopped before (a), so net has one system SLR.
#     HIER_RECREATE_BOTH_AS=1 keeps both: the restarted net then guesses the
#     AS by its own (randomly seeded) hash and may send the flow to the AS
#     that never saw it (not in CMake; see the report in the README).
# (b) Draining a site at its system SLR.  A download runs through some site
#     of AS A; `slrctl drain SITE --socket <sysA>`: the answer says drained;
#     `slrctl hosts` at sysA shows SITE drained, up, with its live flow
#     (FLOWS >= 1); 20 new connections all land on the other site's hosts;
#     the download completes intact; `slrctl undrain` -> SITE takes new
#     connections again.
# (c) (with HIER_FAST_PATH=eth0, HOST_DECAP=eth0) net's kernel map loses a
#     shortcut flow: every key of net's map `flows` is deleted from outside
#     (bpf_flows.py, as in test_recreate.sh) while a download runs net ->
#     host; the flow's next packet must put it back (net's
#     recovery.fast_path_reinstalled, the map entry tunnels to the host
#     again); the download completes intact.
# HIER_RECREATE_PARTS (default "a b", with HIER_FAST_PATH "a b c"; spaces or
# commas) selects the parts; (a) and (c) need HIER_SHORTCUT=1.
HIER_SHORTCUT=${HIER_SHORTCUT:-1}
BIG_MB=${BIG_MB:-24}   # before the library, which defaults it to 16
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

declare -A DL_PID   # (lib.sh's; download_ok NAME waits for DL_PID[NAME])
DL_RATE=${RECREATE_RATE:-2M}       # 24 MiB at 2 MiB/s: ~12 s
# (a)'s download must outlive net's restart and the re-signal by seconds on
# a loaded machine: 24 MiB at 1 MiB/s, ~24 s.
A_RATE=${RECREATE_RATE_A:-1M}
DL_PORT=45100
DL2_PORT=45200
figure() { echo "# figure: $1 $2"; }
note "shortcut $HIER_SHORTCUT, download ${BIG_MB} MiB at $DL_RATE ((a): $A_RATE), both ASs: ${HIER_RECREATE_BOTH_AS:-0}"
hier_bring_up

sum_counter() {  # EXPR NAME...: EXPR summed over the SLRs' status
  local e=$1 s t=0 v; shift
  for s in "$@"; do v=$(counter "$s" "$e"); t=$((t + v)); done
  echo "$t"
}
# net_flow EXPR: EXPR over net's flow entry f for client port PORT ("none").
net_flow() { hier_get net flows "next((($2) for f in d['flows'] if f['src'] == '$CLI_ADDR:$1'), 'none')" 2>/dev/null || echo none; }
# dl_site PORT: the site SLR whose flow table has the client port ("" if none).
dl_site() {
  local s
  for s in "${HIER_SITES[@]}"; do
    [[ "$(flow_next_hop "$s" "$CLI_ADDR:$1")" != none ]] && { echo "$s"; return 0; }
  done
  return 1
}
net_shortcut_to() { [[ "$(net_flow "$1" "'%s %s' % (str(f.get('shortcut')).lower(), f.get('endpoint'))")" == "true $2" ]]; }
bytes_above() { (($(dl_bytes "$1") > $2)); }

if [[ "${HIER_RECREATE_BOTH_AS:-0}" != 1 ]]; then
  hier_stop_slr sysB
  wait_for 10 eval '! child_is net sysB up' || die "net no longer lists sysB up after it stopped"
  wait_rebuilt net || not_ok "net rebuilt its tables"
  ok "sysB stopped: net has one system SLR (sysA), so its guess after a restart is the right one"
fi
RESIGNAL_SLRS=(sysA sysB "${HIER_SITES[@]}")

PARTS=${HIER_RECREATE_PARTS:-a b${HIER_FAST_PATH:+ c}}
PARTS=${PARTS//,/ }
if [[ "$HIER_SHORTCUT" != 1 ]]; then
  [[ " $PARTS " == *" a "* || " $PARTS " == *" c "* ]] && note "skip (a) and (c): they need HIER_SHORTCUT=1"
  PARTS=${PARTS//a/}; PARTS=${PARTS//c/}
fi
if [[ " $PARTS " == *" c "* && -z "${HIER_FAST_PATH:-}" ]]; then
  note "skip (c): it needs HIER_FAST_PATH"
  PARTS=${PARTS//c/}
fi

# ===========================================================================
# (a) net loses its shortcut
part_a() {
hier_start_long_download "$DL_PORT" "$A_RATE" || die "long download starts"
DL_SITE=$(wait_for 5 dl_site "$DL_PORT" && dl_site "$DL_PORT") || die "the download's flow is in some site SLR's flow table"
DL_HOST=$(flow_next_hop "$DL_SITE" "$CLI_ADDR:$DL_PORT")
DL_SYS=${HPARENT[$DL_SITE]}
H_ADDR=${HADDR[$DL_HOST]:-?}
ok "download $CLI_ADDR:$DL_PORT runs via $DL_SYS -> $DL_SITE -> $DL_HOST"
if wait_for 5 net_shortcut_to "$DL_PORT" "$H_ADDR"; then
  ok "net tunnels it straight to $DL_HOST ($H_ADDR): shortcut"
else
  die "net's flow is a shortcut to $DL_HOST (got: $(net_flow "$DL_PORT" "f"))"
fi
assert_eq "$DL_SYS's flow is a shortcut to the host too" "true $H_ADDR" \
  "$(hier_get "$DL_SYS" flows "next(('%s %s' % (str(f.get('shortcut')).lower(), f.get('endpoint'))) for f in d['flows'] if f['src'] == '$CLI_ADDR:$DL_PORT')")"
R0=$(sum_counter "d['recovery']['shortcut_resignalled']" "${RESIGNAL_SLRS[@]}")
note "shortcut_resignalled below net before: $R0"

FP0=$(sum_counter "d['fast_path']['packets']" "${RESIGNAL_SLRS[@]}")
B_KILL=$(dl_bytes long)
kill -KILL "${SPID[net]}"
wait "${SPID[net]}" 2>/dev/null
T_KILL=$(now_s)
ok "net SIGKILLed with the download at $((B_KILL / 1048576)) MiB"
echo "---- SIGKILL $(date +%T.%N)" >>"$(hlog net)"
hier_start_slr net || die "net starts again (empty state)"
T_START=$(now_s)
assert_eq "the restarted net knows no flow" 0 "$(counter net "d['flows']['active']")"
if wait_for 15 child_is net sysA up; then
  ok "sysA registered with the restarted net ${WAITED_S}s after its start"
else
  not_ok "sysA registers with the restarted net (state $(child_state net sysA))"
fi
B_START=$(dl_bytes long)
if wait_for 30 bytes_above long "$B_START"; then
  T=$(elapsed_s "$T_KILL")
  ok "the download moves again ${T}s after the kill"
  figure hier_recreate_outage_s "$T"
else
  not_ok "the download moves again after net's restart"
fi
if wait_for 30 net_shortcut_to "$DL_PORT" "$H_ADDR"; then
  T=$(elapsed_s "$T_START")
  ok "the restarted net applied the shortcut again: its flow goes straight to $DL_HOST ($H_ADDR), ${T}s after its start"
  figure hier_recreate_shortcut_reapplied_s "$T"
else
  not_ok "the restarted net sends the flow straight to $DL_HOST again (flow: $(net_flow "$DL_PORT" "f"))"
  note "download at $(($(dl_bytes long) / 1048576)) MiB, curl $(kill -0 "$LONG_PID" 2>/dev/null && echo running || echo done); $DL_SYS's flow: $(hier_get "$DL_SYS" flows "next((f for f in d['flows'] if f['src'] == '$CLI_ADDR:$DL_PORT'), None)"); upstream sessions at $DL_SYS: $(counter "$DL_SYS" "json.dumps((d.get('level') or {}).get('upstreams'))")"
fi
note "net's flow now: $(net_flow "$DL_PORT" "f")"
assert_ge "restarted net: status.shortcut.applied >= 1" "$(counter net "d['shortcut']['applied']")" 1
assert_ge "restarted net: shortcut.received >= 1" "$(counter net "d['shortcut']['received']")" 1
R1=$(sum_counter "d['recovery']['shortcut_resignalled']" "${RESIGNAL_SLRS[@]}")
for s in "${RESIGNAL_SLRS[@]}"; do
  v=$(counter "$s" "d['recovery']['shortcut_resignalled']")
  ((v > 0)) && note "$s: recovery.shortcut_resignalled $v"
done
assert_ge "a lower SLR re-signalled the host (recovery.shortcut_resignalled, sum below net)" "$((R1 - R0))" 1
note "net after restart: shortcut $(counter net "json.dumps(d['shortcut'], sort_keys=True)"), flows.midstream $(counter net "d['flows']['midstream']")"
for s in "${HIER_SLRS[@]}"; do
  [[ -n "${SPID[$s]:-}" ]] || continue
  v=$(counter "$s" "'%d %d' % (d['flows']['midstream'], d['recovery']['midstream_guessed'])")
  [[ "$v" == "0 0" ]] || note "$s: flows.midstream, recovery.midstream_guessed: $v"
done
# With the fast path on the lower SLRs, their kernel re-tunnels the flow's
# packets from above: a worker that never sees them cannot re-signal.
[[ -n "${HIER_FAST_PATH:-}" ]] &&
  note "packets the lower SLRs' kernels re-tunnelled since the kill: $(($(sum_counter "d['fast_path']['packets']" "${RESIGNAL_SLRS[@]}") - FP0))"
figure hier_recreate_net_hold_timeouts "$(counter net "d['shortcut']['hold_timeouts']")"
figure hier_recreate_resignalled "$((R1 - R0))"
if wait "$LONG_PID"; then
  SHA=$(sha256sum "$RUN_DIR/long.bin" | cut -d' ' -f1)
  assert_eq "the download completes byte for byte across net's restart" "$BIG_SHA" "$SHA"
else
  not_ok "the download completes across net's restart (curl: $(head -c 300 "$RUN_DIR/long-curl.log"))"
fi
figure hier_recreate_connections_lost "$([[ "$(sha256sum "$RUN_DIR/long.bin" | cut -d' ' -f1)" == "$BIG_SHA" ]] && echo 0 || echo 1)/1"
}

# ===========================================================================
# (b) drain a site at its system SLR
part_b() {
ns cli curl -sS --fail --max-time 90 --local-port "$DL2_PORT" --limit-rate "$DL_RATE" \
  -o "$RUN_DIR/dl2.bin" "http://$VIP/big.bin" >"$RUN_DIR/dl2-curl.log" 2>&1 &
DL_PID[dl2]=$!
_PIDS+=("$!")
wait_for 10 test -s "$RUN_DIR/dl2.bin" || die "second download starts"
D_SITE=$(wait_for 5 dl_site "$DL2_PORT" && dl_site "$DL2_PORT") || die "the second download's flow is in some site SLR's flow table"
D_HOST=$(flow_next_hop "$D_SITE" "$CLI_ADDR:$DL2_PORT")
D_SYS=${HPARENT[$D_SITE]}
OTHER=""
for s in ${HCHILDREN[$D_SYS]}; do [[ $s != "$D_SITE" ]] && OTHER=$s; done
ok "download $CLI_ADDR:$DL2_PORT runs via $D_SYS -> $D_SITE -> $D_HOST; draining $D_SITE at $D_SYS"
SYS_SOCK=$(hsock "$D_SYS")

OUT=$("$SLRCTL" drain "$D_SITE" --json --socket "$SYS_SOCK" 2>&1); RC=$?
T_DRAIN=$(now_s)
assert_eq "slrctl drain $D_SITE --socket <$D_SYS> exits 0" 0 "$RC"
note "drain: $(tr '\n' ' ' <<<"$OUT")"
assert_eq "drain answer: ok, drained, $D_SITE" "True True $D_SITE" \
  "$(json_get - "'%s %s %s' % (d.get('ok'), d.get('drained'), d.get('host'))" <<<"$OUT")"
hier_json "$D_SYS" hosts >"$RUN_DIR/hosts-drained.json" || true
assert_eq "$D_SYS hosts --json: $D_SITE drained" true "$(json_get "$RUN_DIR/hosts-drained.json" "host('$D_SITE')['drained']")"
assert_eq "$D_SYS hosts --json: $OTHER not drained" false "$(json_get "$RUN_DIR/hosts-drained.json" "host('$OTHER')['drained']")"
assert_eq "$D_SITE stays up while drained" up "$(json_get "$RUN_DIR/hosts-drained.json" "host('$D_SITE')['state']")"
assert_ge "$D_SYS hosts --json: $D_SITE's live flows count the running download (>= 1)" \
  "$(json_get "$RUN_DIR/hosts-drained.json" "host('$D_SITE')['flows']")" 1
note "$D_SYS hosts (name, drained, flows, flows_total): $(json_get "$RUN_DIR/hosts-drained.json" "[(h['name'], h['drained'], h['flows'], h['flows_total']) for h in d['hosts']]")"
note "$D_SYS's flow for the download: $(hier_get "$D_SYS" flows "next((f for f in d['flows'] if f['src'] == '$CLI_ADDR:$DL2_PORT'), 'none')")"
TABLE=$("$SLRCTL" hosts --socket "$SYS_SOCK" 2>&1)
assert_contains "slrctl hosts at $D_SYS has a DRAINED column" DRAINED "$TABLE"
assert_contains "slrctl hosts at $D_SYS has a FLOWS column" FLOWS "$TABLE"
note "$(grep -E "NAME|$D_SITE" <<<"$TABLE" | head -n 2 | tr -s ' ')"
# The drain rebuilds the tables at once; net's view of AS A follows at its next update.
wait_rebuilt "$D_SYS" || not_ok "$D_SYS rebuilt its tables"
http_tally 20
note "with $D_SITE drained: $(tally_str)"
assert_eq "20 new connections succeed with $D_SITE drained" 20 "$TALLY_OK"
assert_eq "none of them on $D_SITE's hosts" 0 "$(tally_of "$D_SITE")"
assert_eq "all of them on $OTHER's hosts" 20 "$(tally_of "$OTHER")"
note "drain to new connections elsewhere: $(elapsed_s "$T_DRAIN")s"
check "the download through drained $D_SITE completes with the right sha256" download_ok dl2
note "after the download: $D_SYS shows $D_SITE flows $(hier_get "$D_SYS" hosts "host('$D_SITE')['flows']")"

OUT=$("$SLRCTL" undrain "$D_SITE" --json --socket "$SYS_SOCK" 2>&1); RC=$?
assert_eq "slrctl undrain $D_SITE exits 0" 0 "$RC"
assert_eq "$D_SITE not drained after undrain" false "$(hier_get "$D_SYS" hosts "host('$D_SITE')['drained']")"
wait_rebuilt "$D_SYS" || not_ok "$D_SYS rebuilt its tables"
http_tally 20
note "after undrain: $(tally_str)"
assert_eq "20 requests succeed after undrain" 20 "$TALLY_OK"
assert_gt "$D_SITE's hosts get new connections again" "$(tally_of "$D_SITE")" 0
}

# ===========================================================================
# (c) net's kernel fast path loses a shortcut flow
part_c() {
local port=45300 out rc r0 ms
ns cli curl -sS --fail --max-time 90 --local-port "$port" --limit-rate "$DL_RATE" \
  -o "$RUN_DIR/dl3.bin" "http://$VIP/big.bin" >"$RUN_DIR/dl3-curl.log" 2>&1 &
DL_PID[dl3]=$!
_PIDS+=("$!")
wait_for 10 test -s "$RUN_DIR/dl3.bin" || die "third download starts"
local site host addr
site=$(wait_for 5 dl_site "$port" && dl_site "$port") || die "the third download's flow is in some site SLR's flow table"
host=$(flow_next_hop "$site" "$CLI_ADDR:$port")
addr=${HADDR[$host]:-?}
wait_for 5 net_shortcut_to "$port" "$addr" || die "net's flow for the third download is a shortcut to $host"
netmap() { "$PY" "$_E2E_LIB_DIR/bpf_flows.py" "$@" --pid "${SPID[net]}"; }
in_net_map() {
  [[ "$(netmap dump | json_get - "next((e['tunnel_dst'] for e in d['entries'] if e['sport'] == $port), 'none')")" == "$addr" ]]
}
if wait_for 5 in_net_map; then
  ok "net's kernel map has the shortcut flow $CLI_ADDR:$port -> $host ($addr)"
else
  die "net's kernel map has the shortcut flow (map: $(netmap dump))"
fi
r0=$(counter net "d['recovery']['fast_path_reinstalled']")
out=$(netmap wipe --watch 10 --sport "$port"); rc=$?
note "net wipe: $(json_get - "{'deleted': len(d['deleted']), 'left': d['left'], 'wipe_ms': d['wipe_ms'], 'reappeared_ms': d.get('reappeared_ms')}" <<<"$out")"
# (The map also holds the finished connections of the tallies: not yet expired.)
assert_eq "net's map: the wipe deleted the download's flow, nothing left right after" "True 0" \
  "$(json_get - "'%s %d' % (any(k['sport'] == $port for k in d['deleted']), d['left'])" <<<"$out")"
if ((rc == 0)); then
  ms=$(json_get - "d['reappeared_ms']" <<<"$out")
  ok "the shortcut flow is back in net's kernel map after $ms ms"
  figure hier_recreate_net_fast_path_reinstall_ms "$ms"
else
  not_ok "the shortcut flow is back in net's kernel map within 10 s (net: reinstalled $(counter net "d['recovery']['fast_path_reinstalled']"), userspace packets $(counter net "d['packets']['userspace']"); flow $(net_flow "$port" "f"))"
fi
assert_ge "net: recovery.fast_path_reinstalled counted it" "$(counter net "d['recovery']['fast_path_reinstalled']")" "$((r0 + 1))"
check "the download after net's map lost its flow completes with the right sha256" download_ok dl3
}

[[ " $PARTS " == *" a "* ]] && part_a
[[ " $PARTS " == *" b "* ]] && part_b
[[ " $PARTS " == *" c "* ]] && part_c

for s in "${HIER_SLRS[@]}"; do
  [[ -n "${SPID[$s]:-}" ]] || continue
  check "SLR $s still running" kill -0 "${SPID[$s]}"
done
# (No explicit summary: the EXIT trap prints it and exits 1 on any failure;
# lib.sh's _on_exit exits with the last status when summary already ran.)
