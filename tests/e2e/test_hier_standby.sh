#!/usr/bin/env bash
# Standby (disaster-recovery) site: at the system SLR sysA, siteA2 is
# `standby = true`; net's route_cost for sysB is high, so every new flow goes
# to AS A.
#   - while siteA1 (the only primary of AS A) is up, no new flow reaches
#     siteA2's hosts: they all land on siteA1's;  `explain` at sysA says so;
#   - siteA1's SLR stopped: siteA2 takes the new flows (and AS A stays
#     available to net: a standby child counts when no primary can);
#   - siteA1 back: new flows return to it, siteA2 idles again.
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

N_REQ=30
HIER_STANDBY[sysA/siteA2]=1
HIER_ROUTE_COST[net/sysB]=10
note "shortcut ${HIER_SHORTCUT:-0}, host decap ${HOST_DECAP:-none}"
hier_bring_up

assert_eq "sysA lists siteA2 as standby" true "$(hier_get sysA hosts "(host('siteA2') or {}).get('standby')")"
assert_eq "sysA lists siteA1 as primary" false "$(hier_get sysA hosts "(host('siteA1') or {}).get('standby')")"
assert_eq "net shows route_cost 10 for sysB" 10.0 "$(hier_get net hosts "float((host('sysB') or {}).get('route_cost', -1))")"

# child_available PARENT CHILD: PARENT's view of CHILD on the VIP subnet says available.
child_available() {
  [[ $(hier_get "$1" hosts "next((s['available'] for s in (host('$2') or {}).get('subnets', []) if s['prefix'] == '$VIP_SUBNET'), False)" 2>/dev/null) == true ]]
}
# phase DESC SITE: N_REQ requests, all succeed, all on SITE's hosts.
phase() {
  local desc=$1 site=$2
  http_tally "$N_REQ"
  note "$desc: $(tally_str)"
  assert_eq "$desc: $N_REQ new connections all succeed" "$N_REQ" "$TALLY_OK"
  assert_eq "$desc: all on $site's hosts" "$N_REQ" "$(tally_of "$site")"
  assert_eq "$desc: none in AS B (net prefers sysA by route cost)" 0 "$(tally_of sysB)"
}

# --- primary up: standby idle ------------------------------------------------
phase "siteA1 up" siteA1
assert_eq "siteA1 up: siteA2's hosts got no new flow" 0 "$(tally_of siteA2)"

EX=$("$SLRCTL" explain tcp "$CLI_ADDR:40000" "$VIP:80" --json --socket "$(hsock sysA)" 2>&1); rc=$?
assert_eq "explain at sysA exits 0" 0 "$rc"
assert_eq "explain at sysA: choice siteA1" siteA1 "$(json_get - "(d.get('choice') or {}).get('next_hop')" <<<"$EX")"
assert_eq "explain at sysA: siteA2 is a standby candidate, not eligible" "true/false" \
  "$(json_get - "'%s/%s' % tuple(str(c.get(k)).lower() for c in d['candidates'] if c['name'] == 'siteA2' for k in ('standby', 'eligible'))" <<<"$EX")"

# --- primary down: standby takes over ----------------------------------------
T0=$(now_s)
hier_stop_slr siteA1
if wait_for 10 eval '! child_is sysA siteA1 up'; then
  ok "sysA no longer lists siteA1 up ($(elapsed_s "$T0")s after SIGTERM)"
else
  not_ok "sysA withdraws siteA1 after its SLR stopped (state $(child_state sysA siteA1))"
fi
wait_rebuilt sysA net || not_ok "sysA and net rebuilt their tables after siteA1 left"
assert_eq "net still lists sysA available (its standby site can take flows)" ok \
  "$(child_available net sysA && echo ok || hier_get net hosts "host('sysA')")"
phase "siteA1 down" siteA2

# --- primary back: standby idle again ----------------------------------------
hier_start_slr siteA1 || die "siteA1 restarts"
T0=$(now_s)
if wait_for 30 eval 'children_up siteA1 && child_is sysA siteA1 up && child_available sysA siteA1'; then
  ok "siteA1 back: its hosts re-registered and sysA lists it up and available ($(elapsed_s "$T0")s)"
else
  not_ok "siteA1 back up with its hosts (sysA: $(child_state sysA siteA1); siteA1: $(child_state siteA1 hA1a)/$(child_state siteA1 hA1b))"
fi
wait_rebuilt sysA || not_ok "sysA rebuilt its tables after siteA1 came back"
phase "siteA1 back" siteA1
assert_eq "siteA1 back: siteA2's hosts got no new flow" 0 "$(tally_of siteA2)"

for s in "${HIER_SLRS[@]}"; do check "SLR $s still running" kill -0 "${SPID[$s]}"; done
