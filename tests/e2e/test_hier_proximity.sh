#!/usr/bin/env bash
# Route cost from the kernel and client proximity at the network SLR.
#   net: [policy] route_cost_source = "kernel" (metric x 0.01 added to r_j)
#        [[region]] east = the client's 10.0.1.0/24, 20.0 extra for sysA
#   net's routing table: a /32 to sysB with metric 500 (r = 5.0)
#   - explain for a client in no region picks sysA (0.1 + 0 < 0.1 + 5);
#   - the real client (region east) gets AS B for every new flow
#     (0.1 + 20 > 0.1 + 5), and explain for it says so;
#   - the metric moves to sysA's route: within a rebuild, a client in no
#     region now gets sysB (the kernel is read at every rebuild).
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

N_REQ=20
FAR=192.0.2.7  # a client address in no [[region]]
HIER_POLICY_EXTRA[net]='route_cost_source = "kernel"
route_metric_scale = 0.01

[[region]]
name = "east"
clients = ["10.0.1.0/24"]
cost = { sysA = 20.0 }'
hier_bring_up

# Metric 500 on the route to sysB only.  sysA is reached by the /16 (metric 0).
ns net ip route add "${HADDR[sysB]}/32" dev eth0 metric 500 || die "metric route to sysB in net"

# kernel_cost CHILD: net's kernel route cost term for CHILD.
kernel_cost() { hier_get net hosts "float((host('$1') or {}).get('route_cost_kernel', -1))"; }
# explain_choice SRC: net's choice for a new flow from SRC.
explain_choice() {
  "$SLRCTL" explain tcp "$1:40000" "$VIP:80" --json --socket "$(hsock net)" 2>/dev/null |
    json_get - "(d.get('choice') or {}).get('next_hop')"
}
cost_is() { [[ "$(kernel_cost "$1")" == "$2" ]]; }

if wait_for 5 cost_is sysB 5.0; then ok "net reads the kernel metric: sysB route cost term 5.0"
else not_ok "net reads the kernel metric: sysB route cost term 5.0 (got $(kernel_cost sysB))"; fi
assert_eq "net: sysA route cost term 0 (no metric on its route)" 0.0 "$(kernel_cost sysA)"

EX=$("$SLRCTL" explain tcp "$CLI_ADDR:40000" "$VIP:80" --json --socket "$(hsock net)" 2>&1)
assert_eq "explain for the client: region east" east "$(json_get - "d.get('region')" <<<"$EX")"
assert_eq "explain for the client: sysA carries the region's 20.0" 20.0 \
  "$(json_get - "[c['proximity'] for c in d['candidates'] if c['name'] == 'sysA'][0]" <<<"$EX")"
assert_eq "explain for the client: sysB's route cost includes the kernel's 5.0" 5.0 \
  "$(json_get - "[c['route_cost'] for c in d['candidates'] if c['name'] == 'sysB'][0]" <<<"$EX")"
assert_eq "explain for the client: choice sysB" sysB "$(json_get - "(d.get('choice') or {}).get('next_hop')" <<<"$EX")"
assert_eq "explain for a client in no region: choice sysA" sysA "$(explain_choice "$FAR")"

http_tally "$N_REQ"
note "region east: $(tally_str)"
assert_eq "region east: $N_REQ new connections all succeed" "$N_REQ" "$TALLY_OK"
assert_eq "region east: all in AS B" "$N_REQ" "$(tally_of sysB)"

# Move the metric: now sysA is the far one for a client in no region.
ns net ip route del "${HADDR[sysB]}/32" dev eth0 metric 500 || die "delete metric route"
ns net ip route add "${HADDR[sysA]}/32" dev eth0 metric 500 || die "metric route to sysA"
if wait_for 5 cost_is sysA 5.0; then ok "net follows the routing table: sysA term 5.0"
else not_ok "net follows the routing table: sysA term 5.0 (got $(kernel_cost sysA))"; fi
assert_eq "net follows the routing table: sysB term back to 0" 0.0 "$(kernel_cost sysB)"
assert_eq "explain for a client in no region: choice now sysB" sysB "$(explain_choice "$FAR")"

for s in "${HIER_SLRS[@]}"; do check "SLR $s still running" kill -0 "${SPID[$s]}"; done
