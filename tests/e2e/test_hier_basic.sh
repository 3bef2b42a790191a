#!/usr/bin/env bash
# Three-level hierarchy (lib_hier.sh): net -> sysA/sysB -> 4 site SLRs -> 8
# hosts with real HTTP servers.  Everything registers (every SLR lists its
# children up); 20 requests to the VIP all succeed and land in both ASs;
# replies come straight from the hosts with the VIP as source (nothing with
# the VIP as source on any SLR's link); a load change at one host reaches the
# network SLR's view of that AS within host update + 3 x (recompute + upstream
# update) + slack.
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

N_REQ=20
SLACK_S=1
note "shortcut ${HIER_SHORTCUT:-0}, host decap ${HOST_DECAP:-none}"
hier_bring_up

# Roles as the parents see them: the SLR children registered as role slr.
assert_eq "net sees sysA as role slr" slr "$(hier_get net hosts "(host('sysA') or {}).get('role')")"
assert_eq "sysB sees siteB2 as role slr" slr "$(hier_get sysB hosts "(host('siteB2') or {}).get('role')")"
assert_eq "siteA1 sees hA1a as role host" host "$(hier_get siteA1 hosts "(host('hA1a') or {}).get('role')")"
assert_eq "net status: 2 SLR children" 2 "$(counter net "d['level']['children_slr']")"
UP=$(hier_get siteB1 status "'%s/%s' % (d['level']['upstreams'][0]['name'], d['level']['upstreams'][0]['state'])")
case $UP in
  sysB/up | sysB/registered) ok "siteB1 status: its upstream sysB is $UP" ;;
  *) not_ok "siteB1 status: its upstream sysB is registered (got '$UP')" ;;
esac

# --- captures: client, and the uplink (eth0) of every SLR -------------------
cap_start cli cli eth0 || die "capture in cli"
# (ARP too: the host agent sets arp_announce so no host uses a VIP as the
# sender of its ARP requests, which would be flooded to every port.)
for s in "${HIER_SLRS[@]}"; do cap_start "$s" "$s" eth0 "src host $VIP or arp" || die "capture in $s"; done

http_tally "$N_REQ"
note "tally: $(tally_str)"
assert_eq "$N_REQ requests to http://$VIP/ all succeed" "$N_REQ" "$TALLY_OK"
assert_eq "every answer names one of the 8 hosts" "$N_REQ" "$(tally_of net)"
if [[ "${HIER_SPREAD:-1}" == 1 ]]; then
  assert_ge "AS A (sysA) served some of the $N_REQ" "$(tally_of sysA)" 1
  assert_ge "AS B (sysB) served some of the $N_REQ" "$(tally_of sysB)" 1
else
  # Default policy (spread_connections off): a client's connections stay in
  # one site, chosen by its address at the SLR levels; hosts are per flow.
  SITES_USED=0
  for site in siteA1 siteA2 siteB1 siteB2; do
    (($(tally_of "$site") > 0)) && SITES_USED=$((SITES_USED + 1))
  done
  assert_eq "client affinity: all $N_REQ connections of one client in one site" 1 "$SITES_USED"
  HOSTS_USED=0
  for h in "${!TALLY[@]}"; do ((${TALLY[$h]:-0} > 0)) && HOSTS_USED=$((HOSTS_USED + 1)); done
  assert_eq "client affinity: hosts inside that site are still chosen per flow" 2 "$HOSTS_USED"
fi

# A bigger transfer too: several data packets per connection, byte for byte.
DL_SHA=$(ns cli curl -sS --fail --max-time 60 "http://$VIP/big.bin" | sha256sum | cut -d' ' -f1)
assert_eq "download of big.bin (${BIG_MB} MiB) through 3 levels is intact" "$BIG_SHA" "$DL_SHA"

cap_stop cli
for s in "${HIER_SLRS[@]}"; do cap_stop "$s"; done
FROM_VIP=$(cap_count cli "src host $VIP and src port 80")
assert_ge "client received packets from $VIP:80" "$FROM_VIP" "$N_REQ"
assert_eq "client never saw a host's or an SLR's address as source" 0 "$(cap_count cli 'src net 10.9.0.0/16')"
for s in "${HIER_SLRS[@]}"; do
  assert_eq "no IP packet with source $VIP on $s's eth0" 0 "$(cap_count "$s" "ip and src host $VIP")"
done
for s in "${HIER_SLRS[@]}"; do
  assert_eq "no ARP with sender $VIP on $s's eth0 (hosts' arp_announce)" 0 \
    "$(cap_count "$s" "arp and arp[14:4] = 0x0a64000a")"
done

# Every level forwarded: each SLR's tx grew (counted packets) when shortcut is
# off.  With client affinity only the chosen AS and site did.
if [[ "${HIER_SHORTCUT:-0}" == 0 && "${HIER_SPREAD:-1}" == 1 ]]; then
  for s in "${HIER_SLRS[@]}"; do
    assert_ge "$s forwarded packets (status packets.tx)" "$(counter "$s" "d['packets']['tx']")" 1
  done
elif [[ "${HIER_SHORTCUT:-0}" == 0 ]]; then
  FWD_SYS=0 FWD_SITE=0
  for s in sysA sysB; do (($(counter "$s" "d['packets']['tx']") > 0)) && FWD_SYS=$((FWD_SYS + 1)); done
  for s in siteA1 siteA2 siteB1 siteB2; do
    (($(counter "$s" "d['packets']['tx']") > 0)) && FWD_SITE=$((FWD_SITE + 1))
  done
  assert_eq "client affinity: one system SLR forwarded" 1 "$FWD_SYS"
  assert_eq "client affinity: one site SLR forwarded" 1 "$FWD_SITE"
fi

# --- load propagation: hA1a 0.1 -> 0.9 --------------------------------------
# With every other host at 0.1: siteA1 = mean(0.9, 0.1) = 0.5, sysA =
# mean(0.5, 0.1) = 0.3 (the same whether G weights sites equally or by their
# hosts: 4 hosts, (0.9+0.1+0.1+0.1)/4 = 0.3).
BOUND=$(awk -v h=$HOST_UPDATE_S -v r=$RECOMPUTE_S -v u=$UPSTREAM_UPDATE_S -v s=$SLACK_S 'BEGIN { print h + 3 * (r + u) + s }')
if wait_for 5 child_load_is net sysA 0.1; then
  ok "net shows AS A's load 0.1 before the change"
else
  not_ok "net shows AS A's load 0.1 before the change (got $(child_load net sysA))"
fi
hier_set_load hA1a 0.9
T0=$(now_s)
if wait_for 20 child_load_is net sysA 0.3; then
  T=$(elapsed_s "$T0")
  ok "hA1a's load change reached net's table: sysA load 0.3 after ${T}s"
  note "measured propagation host -> site -> system -> network: ${T}s (bound ${BOUND}s)"
  assert_le "propagation within host update + 3 x (recompute + upstream update) + ${SLACK_S}s" "$T" "$BOUND"
else
  not_ok "hA1a's load change reached net's table (sysA load now $(child_load net sysA), siteA1 at sysA: $(child_load sysA siteA1), hA1a at siteA1: $(child_load siteA1 hA1a))"
fi
assert_eq "intermediate: sysA shows siteA1 at 0.5" ok "$(child_load_is sysA siteA1 0.5 && echo ok || child_load sysA siteA1)"
assert_eq "net's view of AS B unchanged (0.1)" ok "$(child_load_is net sysB 0.1 && echo ok || child_load net sysB)"

for s in "${HIER_SLRS[@]}"; do check "SLR $s still running" kill -0 "${SPID[$s]}"; done
