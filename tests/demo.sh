#!/usr/bin/env bash
# slrctl demo: one SLR, three HTTP servers behind one VIP, direct server return.
#   sudo bash tests/demo.sh
# Installs dependencies, builds, builds a namespace topology, runs ~30 requests
# and shows who answered, proves the replies bypass the SLR, prints the SLR's
# status/hosts/flows, and removes everything it made.
# Env: DEMO_REQUESTS (30), DEMO_SKIP_BUILD=1 (use an existing build/slrctl),
#      SLR_FAST_PATH / HOST_DECAP (kernel paths, default eth0; empty = off).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NAME=demo
# shellcheck source=tests/demo_common.sh
. "$ROOT/tests/demo_common.sh"
# The product as an operator would run it: the SLR's kernel fast path on its
# uplink and kernel decapsulation on the hosts (first packet of every flow in
# userspace, the rest in the kernel).  SLR_FAST_PATH= HOST_DECAP= turns them off.
export SLR_FAST_PATH=${SLR_FAST_PATH-eth0} HOST_DECAP=${HOST_DECAP-eth0}

# lib.sh does the topology, PKI, daemons and the cleanup trap.
# shellcheck source=tests/e2e/lib.sh
. "$ROOT/tests/e2e/lib.sh"
e2e_init
# The demo is not a test: no "N passed" line, just a clean exit status.
_SUMMARY_DONE=1
trap 'rc=$?; set +x; section "Cleanup"; cleanup; step "namespaces ${P}* and $RUN_DIR removed"; exit $rc' EXIT

N=3
REQ=${DEMO_REQUESTS:-30}

section "3. Topology (network namespaces, prefix ${P})"
topo_up $N || { echo "topology failed" >&2; exit 1; }
cat <<EOF
    ${P}cli  10.0.1.2 --- 10.0.1.1  ${P}rtr  10.0.2.1 --- 10.0.2.2  ${P}slr   (SLR, control :$CONTROL_PORT)
                                    br0 10.0.3.1
                                     |-- 10.0.3.11 ${P}h1   (host agent + HTTP)
                                     |-- 10.0.3.12 ${P}h2
                                     '-- 10.0.3.13 ${P}h3
    VIP $VIP (subnet $VIP_SUBNET) is routed by rtr to the SLR;
    replies go host -> rtr -> cli directly.
EOF

section "4. PKI (test CA, EC P-256)"
make_pki "$PKI_DIR" $N || { echo "PKI failed" >&2; exit 1; }
step "CA, slr1 and host1..host$N certificates in $PKI_DIR"

section "5. Start the SLR and the hosts"
write_slr_config "$RUN_DIR/slr.toml" host1 host2 host3
start_slr || exit 1
step "slrctl slr --config $RUN_DIR/slr.toml   (pid $SLR_PID)"
for ((i = 1; i <= N; i++)); do
  start_http "$i" || exit 1
  LOAD_SOURCE=connections write_host_config "$RUN_DIR/h$i.toml" "$i"
  start_host "$i" || exit 1
  step "h$i: HTTP server on 0.0.0.0:80 (answers \"h$i\"), slrctl host (pid ${HOST_PID[$i]})"
done
if wait_for 20 hosts_up host1 host2 host3; then
  step "all hosts registered with the SLR (${WAITED_S}s)"
else
  echo "hosts did not come up:" >&2; "$SLRCTL" hosts --socket "$SLR_SOCK" >&2; dump_logs; exit 1
fi

cap_start cli cli eth0 || exit 1
cap_start slr slr any || exit 1

section "6. $REQ requests from the client to http://$VIP/"
http_tally "$REQ"
k=0
while IFS= read -r body; do
  [[ -n "$body" ]] || continue
  k=$((k + 1))
  printf '  request %2d -> %s\n' "$k" "$body"
done <<<"$TALLY_BODIES"
echo
echo "  tally:"
for h in $(printf '%s\n' "${!TALLY[@]}" | sort); do printf '    %-4s %3d  %s\n' "$h" "${TALLY[$h]}" "$(printf '#%.0s' $(seq 1 "${TALLY[$h]}"))"; done
printf '    failed %d\n' "$TALLY_FAILED"

section "7. Direct server return: who sent the replies?"
cap_stop cli; cap_stop slr
echo "  in the client's namespace, first packets FROM the VIP:"
cap_show cli 6 "src host $VIP" | sed 's/^/    /'
printf '  client saw %d packets from %s:80, %d from the hosts'"'"' real addresses\n' \
  "$(cap_count cli "src host $VIP and src port 80")" "$VIP" "$(cap_count cli 'src net 10.0.3.0/24')"
printf '  the SLR namespace saw %d packets with source %s (replies never pass the SLR)\n' \
  "$(cap_count slr "src host $VIP")" "$VIP"
printf '  the SLR namespace received %d packets for %s and sent %d IP-in-IP packets to the hosts\n' \
  "$(cap_count slr "inbound and dst host $VIP")" "$VIP" "$(cap_count slr "outbound and ip proto 4 and src host $SLR_ADDR")"

section "8. slrctl status"
"$SLRCTL" status --socket "$SLR_SOCK"
section "9. slrctl hosts"
"$SLRCTL" hosts --socket "$SLR_SOCK"
section "10. slrctl flows --limit 10"
"$SLRCTL" flows --socket "$SLR_SOCK" --limit 10
section "11. a host's view (slrctl status on h1)"
"$SLRCTL" status --socket "$(host_sock 1)"

((TALLY_OK == REQ)) || { echo "demo: $TALLY_FAILED request(s) failed" >&2; exit 1; }
exit 0
