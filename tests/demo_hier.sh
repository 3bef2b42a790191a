#!/usr/bin/env bash
# slrctl hierarchy demo: a network SLR, two system SLRs (two ASs), four site
# SLRs and eight HTTP servers behind one VIP, with shortcut signalling and the
# kernel paths on, as an operator would run them.
#   sudo bash tests/demo_hier.sh
# Installs dependencies and builds (like tests/demo.sh), builds the
# namespaces, sends requests and a download, then shows what each level
# forwarded (the levels below the network SLR see one packet per connection),
# the network SLR's view of the ASs, `slrctl explain` for a flow, and removes
# everything it made.
# Env: DEMO_REQUESTS (20), DEMO_SKIP_BUILD=1 (use an existing build/slrctl),
#      HIER_SHORTCUT (1), HIER_FAST_PATH / HOST_DECAP (kernel paths, eth0; empty = off).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NAME=demo_hier
# shellcheck source=tests/demo_common.sh
. "$ROOT/tests/demo_common.sh"
export HIER_SHORTCUT=${HIER_SHORTCUT-1} HIER_FAST_PATH=${HIER_FAST_PATH-eth0} HOST_DECAP=${HOST_DECAP-eth0}
export HIER_SHORTCUT_WAIT=20ms HIER_SPREAD=1 HIER_LOG_LEVEL=warn HOST_LOG_LEVEL=warn

# shellcheck source=tests/e2e/lib_hier.sh
. "$ROOT/tests/e2e/lib_hier.sh"
e2e_init
_SUMMARY_DONE=1  # a demo, not a test: no "N passed" line
trap 'rc=$?; set +x; section "Cleanup"; cleanup; step "namespaces ${P}* and $RUN_DIR removed"; exit $rc' EXIT
REQ=${DEMO_REQUESTS:-20}

section "3. Topology (network namespaces, prefix ${P})"
cat <<EOF
    client 10.0.1.2 -- rtr (routes VIP $VIP_SUBNET to net) -- one L2 segment 10.9.0.0/16:
      net 10.9.0.2                         network SLR (chooses an AS)
      |-- sysA 10.9.1.1                    system SLR of AS A (chooses a site)
      |   |-- siteA1 10.9.1.11  -> hA1a 10.9.11.1, hA1b 10.9.11.2   (site SLR -> hosts)
      |   '-- siteA2 10.9.1.12  -> hA2a 10.9.12.1, hA2b 10.9.12.2
      '-- sysB 10.9.2.1                    system SLR of AS B
          |-- siteB1 10.9.2.11  -> hB1a 10.9.21.1, hB1b 10.9.21.2
          '-- siteB2 10.9.2.12  -> hB2a 10.9.22.1, hB2b 10.9.22.2
    Each level registers with the one above (TLS, certificate per name) and
    advertises the VIP subnet with its aggregated load.  Shortcut signalling:
    ${HIER_SHORTCUT}; kernel fast path on every SLR: ${HIER_FAST_PATH:-off};
    kernel decapsulation on the hosts: ${HOST_DECAP:-off}.
EOF

section "4. PKI, configs, 7 SLRs, 8 host agents and HTTP servers"
hier_bring_up >/dev/null || { echo "demo_hier: bring-up failed" >&2; dump_logs; exit 1; }
step "all 7 SLRs list all their children up; configs in $RUN_DIR"

before() { counter "$1" "d['packets']['tx']"; }
declare -A TX0=()
for s in "${HIER_SLRS[@]}"; do TX0[$s]=$(before "$s"); done

section "5. $REQ requests and a ${BIG_MB} MiB download from the client to http://$VIP/"
http_tally "$REQ"
for h in $(printf '%s\n' "${!TALLY[@]}" | sort); do printf '    %-5s %3d  %s\n' "$h" "${TALLY[$h]}" "$(printf '#%.0s' $(seq 1 "${TALLY[$h]}"))"; done
printf '    failed %d\n' "$TALLY_FAILED"
SHA=$(ns cli curl -sS --fail --max-time 60 "http://$VIP/big.bin" | sha256sum | cut -d' ' -f1)
[[ "$SHA" == "$BIG_SHA" ]] && step "download intact (sha256 matches)" || step "download CORRUPT or failed"

section "6. What each level forwarded (packets; $((REQ + 1)) connections)"
for s in "${HIER_SLRS[@]}"; do
  printf '    %-7s %7d   shortcut: %s\n' "$s" $(( $(before "$s") - ${TX0[$s]} )) \
    "$(counter "$s" "'sent %d relayed %d applied %d held %d released %d, delay avg %.1f ms' % tuple(d['shortcut'][k] for k in ('sent','relayed','applied','held_packets','released_packets','delay_ms_avg'))")"
done
echo "  with shortcuts the system and site SLRs forward only each connection's SYN;"
echo "  net tunnels the rest straight to the host the site SLR chose."

section "7. slrctl hosts at the network SLR (its next hops are the system SLRs)"
"$SLRCTL" hosts --socket "$(hsock net)"
section "8. slrctl explain tcp $CLI_ADDR:40000 $VIP:80 at the network SLR"
"$SLRCTL" explain tcp "$CLI_ADDR:40000" "$VIP:80" --socket "$(hsock net)"
section "9. slrctl status at a site SLR (siteA1)"
"$SLRCTL" status --socket "$(hsock siteA1)"

((TALLY_OK == REQ)) && [[ "$SHA" == "$BIG_SHA" ]] || { echo "demo_hier: requests failed" >&2; exit 1; }
exit 0
