#!/usr/bin/env bash
# Failure of a site in the three-level hierarchy: a rate-limited download runs
# through one site; the OTHER site of the same AS is stopped: SIGTERM of its
# SLR (HIER_FAIL=term, default: it closes its session, the parent notices at
# once) or SIGSTOP (HIER_FAIL=stop: the session stays open and goes silent,
# only the hold timer can notice; SIGCONT at the end brings it back).  Its system SLR withdraws it within hold_time + recompute + slack
# (measured); new connections then all go to the remaining sites (asserted by
# which host answers) and all succeed; the running download continues and
# completes byte for byte.
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

SLACK_S=1
LIMIT_S=$(awk -v h=$HOLD_S -v r=$RECOMPUTE_S -v s=$SLACK_S 'BEGIN { print h + r + s }')
DL_PORT=45679
DL_RATE=1M          # 16 MiB at 1 MiB/s: ~16 s, outlasts the failover phase
FAIL_MODE=${HIER_FAIL:-term}
[[ $FAIL_MODE == term || $FAIL_MODE == stop ]] || die "HIER_FAIL must be term or stop"
note "failure by SIG${FAIL_MODE^^}, shortcut ${HIER_SHORTCUT:-0}, host decap ${HOST_DECAP:-none}"
hier_bring_up

# --- before: new flows spread over all four sites ---------------------------
http_tally 40
note "before: $(tally_str)"
assert_eq "40 requests succeed with every site up" 40 "$TALLY_OK"

# --- a long download through some site --------------------------------------
hier_start_long_download "$DL_PORT" "$DL_RATE" || die "long download starts"
DL_SITE=""
find_dl_site() {
  local s
  for s in "${HIER_SITES[@]}"; do
    [[ "$(flow_next_hop "$s" "$CLI_ADDR:$DL_PORT")" != none ]] && { DL_SITE=$s; return 0; }
  done
  return 1
}
wait_for 5 find_dl_site || die "the download's flow is in some site SLR's flow table"
find_dl_site
DL_HOST=$(flow_next_hop "$DL_SITE" "$CLI_ADDR:$DL_PORT")
DL_SYS=${HPARENT[$DL_SITE]}
VICTIM=""
for s in ${HCHILDREN[$DL_SYS]}; do [[ $s != "$DL_SITE" ]] && VICTIM=$s; done
ok "download $CLI_ADDR:$DL_PORT runs via $DL_SYS -> $DL_SITE -> $DL_HOST; stopping $VICTIM (same AS)"
note "before, $VICTIM's hosts served $(tally_of "$VICTIM") of 40"
if [[ "${HIER_SHORTCUT:-0}" == 1 ]]; then
  # Shortcut: net tunnels the flow straight to the host.
  assert_eq "net's flow for the download is shortcut to $DL_HOST (${HADDR[$DL_HOST]})" "true ${HADDR[$DL_HOST]}" \
    "$(hier_get net flows "next(('%s %s' % (str(f.get('shortcut')).lower(), f.get('endpoint'))) for f in d['flows'] if f['src'] == '$CLI_ADDR:$DL_PORT')")"
else
  assert_eq "net's flow for the download points at $DL_SYS" "$DL_SYS" "$(flow_next_hop net "$CLI_ADDR:$DL_PORT")"
fi

# --- stop the victim site SLR -----------------------------------------------
check "download still running when $VICTIM is stopped" kill -0 "$LONG_PID"
T0=$(now_s)
kill "-${FAIL_MODE^^}" "${SPID[$VICTIM]}"
not_up() { ! child_is "$DL_SYS" "$VICTIM" up; }
if wait_for 10 not_up; then
  T=$(elapsed_s "$T0")
  ok "$DL_SYS no longer lists $VICTIM up after ${T}s (state $(child_state "$DL_SYS" "$VICTIM"))"
  assert_le "withdrawn within hold_time + recompute_interval + ${SLACK_S}s" "$T" "$LIMIT_S"
else
  not_ok "$DL_SYS withdraws $VICTIM after its SLR was stopped (state $(child_state "$DL_SYS" "$VICTIM"))"
fi
if [[ $FAIL_MODE == term ]]; then
  hier_stop_slr "$VICTIM"
  assert_eq "$VICTIM exited 0 on SIGTERM" 0 "$HIER_STOP_RC"
fi
# The selection tables follow at the next rebuild.
wait_rebuilt "${HIER_SYS[@]}" net || not_ok "the system SLRs and net rebuilt their tables"
note "new flows from $(elapsed_s "$T0")s after SIG${FAIL_MODE^^}"
assert_eq "net still lists $DL_SYS up (it has a site left)" up "$(child_state net "$DL_SYS")"

http_tally 20
note "after: $(tally_str)"
assert_eq "20 new connections all succeed with $VICTIM down" 20 "$TALLY_OK"
assert_eq "none of them reached $VICTIM's hosts ($(hosts_below "$VICTIM" | tr '\n' ' '))" 0 "$(tally_of "$VICTIM")"
assert_eq "all of them on the other three sites" 20 "$(tally_of "${HIER_SITES[@]}")"
check "download still running after the new connections (it outlasted the failover)" kill -0 "$LONG_PID"

# --- the running download completes intact ---------------------------------
wait "$LONG_PID"; RC=$?
assert_eq "the long download via $DL_SITE completed (curl exit 0)" 0 "$RC"
assert_eq "the long download is byte-for-byte intact" "$BIG_SHA" "$(sha256sum "$RUN_DIR/long.bin" | cut -d' ' -f1)"
[[ $RC == 0 ]] || note "curl: $(cat "$RUN_DIR/long-curl.log")"

if [[ $FAIL_MODE == stop ]]; then
  kill -CONT "${SPID[$VICTIM]}"
  if wait_for 20 child_is "$DL_SYS" "$VICTIM" up; then
    ok "$VICTIM is up again at $DL_SYS ${WAITED_S}s after SIGCONT"
  else
    not_ok "$VICTIM is up again at $DL_SYS after SIGCONT (state $(child_state "$DL_SYS" "$VICTIM"))"
  fi
fi
for s in "${HIER_SLRS[@]}"; do
  [[ $s == "$VICTIM" && $FAIL_MODE == term ]] && continue
  check "SLR $s still running" kill -0 "${SPID[$s]}"
done
