#!/usr/bin/env bash
# Draining (issue 4): `slrctl drain NAME` at the SLR stops new flows to a host
# while its established flows finish; status shows how many remain.
#
# 1. SLR side: a rate-limited download runs on h1; `slrctl drain host1` ->
#    `hosts --json` shows drained and the remaining flows (>= 1); 20 new
#    requests all reach h2 (h1's server log gets no new request); `drain
#    --wait=1` while the download runs exits 4 (timeout); the download
#    completes intact; `drain host1 --wait=30` exits 0 once the flows reach 0
#    (measured); `undrain` -> h1 gets new flows again.  Unknown name -> error.
# 2. Host side: `slrctl drain --socket <h1's agent socket>` while a download
#    runs on h1 -> the agent reports drained and advertises its subnet
#    unavailable, the SLR shows it unavailable (measured), new requests all
#    on h2, the download completes intact; `undrain` -> back.
# 3. Config: [[host]] drained = true -> host1 starts drained after an SLR
#    restart; `undrain` releases it.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

BIG_MB=${BIG_MB:-16}
# Finished connections leave the flow table after tcp_closing: short, so
# `drain --wait` sees zero soon after the download ends.
SLR_TCP_CLOSING=${SLR_TCP_CLOSING:-2s}
export SLR_TCP_CLOSING
bring_up 2

drainctl()   { "$SLRCTL" "$@" --socket "$SLR_SOCK"; }
drained_of() { slr_get hosts "host('$1').get('drained')"; }
flows_of()   { slr_get hosts "host('$1').get('flows')"; }
h1_requests() { grep -c '"GET / HTTP' "$RUN_DIR/http1.log" 2>/dev/null || true; }
flows_zero() { [[ "$(flows_of "$1")" == 0 ]]; }

assert_eq "host1 not drained at start" false "$(drained_of host1)"

# ---------------------------------------------------------------------------
# 1. SLR side
PD=$(pick_client_port host1 80) || die "a client port the SLR sends to host1"
start_download dl1 80 "$PD" --limit-rate 2M || die "rate-limited download on h1 starts"
assert_flow_host "the download (client port $PD) runs on host1" host1 "$PD"

# A connection from client port PR ends on h1 just before the drain; its
# entry lingers (closing) for tcp_closing.  The server closes first, so the
# client may reuse the port at once (Linux does for its own ephemeral ports).
# get_from PORT: GET / from cli's PORT, read to the server's close; the body.
get_from() { ns cli "$PY" "$HTTP10" "$VIP" --port "$1"; }
flow_state() {
  slr_json flows -n 100000 | json_get - "next((f['state'] for f in d['flows'] if f['src'] == '$CLI_ADDR:$1'), 'none')"
}
PR=$(pick_client_port host1 80 44000) || die "a client port the SLR sends to host1"
assert_eq "a request from client port $PR is served by h1" h1 "$(get_from "$PR" 2>&1)"
if wait_for 2 eval '[[ "$(flow_state "$PR")" == closing ]]'; then
  ok "its entry at the SLR is closing (FIN seen)"
else
  not_ok "its entry at the SLR is closing (state $(flow_state "$PR"))"
fi
REUSED0=$(slr_get status "d['flows']['reused']")

OUT=$(drainctl drain host1 --json 2>&1); RC=$?
assert_eq "slrctl drain host1 exits 0" 0 "$RC"
note "drain: $OUT"
assert_eq "drain answer: the rebuilt tables are in use" true "$(json_get - "d.get('applied')" <<<"$OUT")"
# A new connection on the ended one's 5-tuple is a new flow: scheduled
# afresh, not sent to the drained host by the lingering entry.
assert_eq "the same client port again, host1 drained: served by h2" h2 "$(get_from "$PR" 2>&1)"
assert_eq "the SLR's entry for client port $PR now goes to host2" host2 "$(flow_host "$PR")"
assert_ge "status flows.reused counted the reused 5-tuple" \
  "$(slr_get status "d['flows']['reused']")" "$((REUSED0 + 1))"
assert_eq "drain answer: ok, drained, host" "True True host1" \
  "$(json_get - "'%s %s %s' % (d.get('ok'), d.get('drained'), d.get('host'))" <<<"$OUT")"
slr_json hosts >"$RUN_DIR/hosts-drained.json" || true
assert_eq "hosts --json: host1 drained" true "$(json_get "$RUN_DIR/hosts-drained.json" "host('host1')['drained']")"
assert_eq "hosts --json: host2 not drained" false "$(json_get "$RUN_DIR/hosts-drained.json" "host('host2')['drained']")"
assert_ge "hosts --json: host1 still has its flows (the download)" \
  "$(json_get "$RUN_DIR/hosts-drained.json" "host('host1')['flows']")" 1
assert_eq "host1 stays up while drained" up "$(json_get "$RUN_DIR/hosts-drained.json" "host('host1')['state']")"
TABLE=$(drainctl hosts 2>&1)
assert_contains "slrctl hosts has a DRAINED column" DRAINED "$TABLE"
assert_contains "slrctl hosts has a FLOWS column" FLOWS "$TABLE"
note "$(grep -E 'NAME|host1' <<<"$TABLE" | head -n 2 | tr -s ' ')"

R1=$(h1_requests)
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 new requests succeed with host1 drained" 20 "$TALLY_OK"
assert_eq "all 20 served by h2" 20 "${TALLY[h2]:-0}"
assert_eq "h1's web server got no new request" "$R1" "$(h1_requests)"

T0=$(now_s)
OUT=$(drainctl drain host1 --wait=1 2>&1); RC=$?
if (($(dl_bytes dl1) < BIG_MB * 1048576)); then
  assert_eq "drain --wait=1 while the download runs exits 4 (timeout)" 4 "$RC"
  note "drain --wait=1: $(tr '\n' ' ' <<<"$OUT" | head -c 300)"
else
  note "download finished before drain --wait=1 returned (rc $RC): timeout case not checked"
fi
assert_eq "the download's flow still goes to host1" host1 "$(flow_host "$PD")"
check "the download on drained h1 completes with the right sha256" download_ok dl1
T_DONE=$(now_s)
OUT=$(drainctl drain host1 --wait=30 2>&1); RC=$?
assert_eq "drain host1 --wait=30 exits 0 once its flows reach 0" 0 "$RC"
note "drain --wait=30: $(tr '\n' ' ' <<<"$OUT" | head -c 300)"
echo "# figure: drain_flows_zero_after_download_s $(elapsed_s "$T_DONE")"
echo "# figure: drain_total_s $(elapsed_s "$T0")"
assert_eq "hosts --json: host1 has 0 flows" 0 "$(flows_of host1)"

OUT=$(drainctl undrain host1 --json 2>&1); RC=$?
assert_eq "slrctl undrain host1 exits 0" 0 "$RC"
assert_eq "host1 not drained after undrain" false "$(drained_of host1)"
wait_for 5 avail_is host1 true || true
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 requests succeed after undrain" 20 "$TALLY_OK"
assert_gt "h1 gets new flows again after undrain" "${TALLY[h1]:-0}" 0

OUT=$(drainctl drain nosuchhost 2>&1); RC=$?
assert_ne "slrctl drain of an unknown host fails" 0 "$RC"
assert_contains "the error names the host" nosuchhost "$OUT"

# ---------------------------------------------------------------------------
# 2. Host side: the agent drains itself
PD2=$(pick_client_port host1 80 43000) || die "a client port the SLR sends to host1"
start_download dl2 80 "$PD2" --limit-rate 4M || die "second download on h1 starts"
assert_flow_host "the second download (client port $PD2) runs on host1" host1 "$PD2"
OUT=$("$SLRCTL" drain --socket "$(host_sock 1)" 2>&1); RC=$?
T_HD=$(now_s)
assert_eq "slrctl drain --socket <h1 agent> exits 0" 0 "$RC"
note "host-side drain: $(tr '\n' ' ' <<<"$OUT" | head -c 300)"
assert_eq "h1 agent status: drained" true "$(host_get 1 "d.get('drained')")"
assert_eq "h1 agent advertises its subnet unavailable" false "$(host_get 1 "all(s.get('available') for s in d['subnets'])")"
if wait_for 10 avail_is host1 false; then
  T=$(elapsed_s "$T_HD")
  ok "SLR shows host1's subnet unavailable ${T}s after the host-side drain"
  echo "# figure: drain_host_side_unavailable_s $T"
else
  slr_json hosts >&2
  not_ok "SLR shows host1's subnet unavailable after the host-side drain"
fi
R1=$(h1_requests)
http_tally 20
note "tally: $(tally_str)"
assert_eq "20 new requests all on h2 while h1 drains itself" 20 "${TALLY[h2]:-0}"
assert_eq "h1's web server got no new request" "$R1" "$(h1_requests)"
check "the download on self-drained h1 completes with the right sha256" download_ok dl2
OUT=$("$SLRCTL" undrain --socket "$(host_sock 1)" 2>&1); RC=$?
assert_eq "slrctl undrain --socket <h1 agent> exits 0" 0 "$RC"
assert_eq "h1 agent status: not drained" false "$(host_get 1 "d.get('drained')")"
if wait_for 10 avail_is host1 true; then
  ok "SLR shows host1's subnet available ${WAITED_S}s after the host-side undrain"
else
  not_ok "SLR shows host1's subnet available after the host-side undrain"
fi
http_tally 20
note "tally: $(tally_str)"
assert_gt "h1 gets new flows again" "${TALLY[h1]:-0}" 0

# ---------------------------------------------------------------------------
# 3. drained = true in the SLR's config
SLR_DRAINED=host1 write_slr_config "$RUN_DIR/slr-drained.toml" host1 host2
kill -TERM "$SLR_PID"
wait "$SLR_PID" 2>/dev/null
cp "$RUN_DIR/slr.log" "$RUN_DIR/slr-first.log"
start_slr "$RUN_DIR/slr-drained.toml" || die "SLR restarts with host1 drained in its config"
wait_for 20 hosts_up host1 host2 || { slr_json hosts >&2; not_ok "both hosts re-register"; }
assert_eq "host1 starts drained ([[host]] drained = true)" true "$(drained_of host1)"
http_tally 10
assert_eq "10 requests all on h2 with host1 drained by config" 10 "${TALLY[h2]:-0}"
drainctl undrain host1 >/dev/null 2>&1
assert_eq "undrain releases a host drained by config" false "$(drained_of host1)"
http_tally 20
note "tally: $(tally_str)"
assert_gt "h1 gets new flows after undrain" "${TALLY[h1]:-0}" 0
check "SLR still running" slr_alive
summary
