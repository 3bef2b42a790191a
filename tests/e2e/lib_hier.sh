# shellcheck shell=bash
# Helpers for the end-to-end tests of a THREE-LEVEL SLR hierarchy (issue 3).
# Source it instead of lib.sh (it sources lib.sh and keeps all of it: ok /
# not_ok / assert_*, wait_for, json_get, captures, the EXIT trap):
#   . "$(dirname "$0")/lib_hier.sh"
#
# Topology: one L2 segment.  Namespace rtr holds bridge br0 10.9.0.1/16 and a
# veth to cli (rtr 10.0.1.1/24, client 10.0.1.2/24, default via 10.0.1.1).
# Every other namespace has one veth eth0 enslaved to br0, a /16 address and
# a default route via 10.9.0.1:
#
#   net (network SLR) 10.9.0.2
#   ├── sysA 10.9.1.1 (system SLR, AS A)
#   │   ├── siteA1 10.9.1.11 ── hA1a 10.9.11.1, hA1b 10.9.11.2
#   │   └── siteA2 10.9.1.12 ── hA2a 10.9.12.1, hA2b 10.9.12.2
#   └── sysB 10.9.2.1 (system SLR, AS B)
#       ├── siteB1 10.9.2.11 ── hB1a 10.9.21.1, hB1b 10.9.21.2
#       └── siteB2 10.9.2.12 ── hB2a 10.9.22.1, hB2b 10.9.22.2
#
# rtr routes the VIP subnet 10.100.0.0/24 to net (10.9.0.2); ip_forward on,
# rp_filter off (direct server return is asymmetric).  Every SLR has [[vip]]
# web 10.100.0.0/24, lists its children as [[host]] and (below net) one
# [[upstream]] = its parent.  Control port 7400 everywhere.  One CA; a
# certificate per name (CN = name).  Hosts: load source "file"
# ($RUN_DIR/load_<name>, set with hier_set_load), HTTP server answering its
# own name on / and BIG_MB MiB of random bytes on /big.bin.
#
# Knobs (environment):
#   HIER_SHORTCUT=0|1        [slr].shortcut on every SLR, and the hosts' [host]
#                            shortcut_sources = net + their system SLR (default 0)
#   HIER_SHORTCUT_WAIT=200ms [slr].shortcut_wait (generous: the shortcut test
#                            counts packets exactly, a 2-core box under load
#                            must not turn a late SHORTCUT into a hold timeout)
#   HIER_SPREAD=0|1          [policy].spread_connections on every SLR (default 1:
#                            one client's connections are spread over ASs/sites,
#                            which the tests need to see both ASs from one client)
#   HOST_DECAP=eth0          kernel decapsulation on the hosts (as in lib.sh)
#   HIER_FAST_PATH=eth0      the SLRs' kernel fast path on their uplink (as
#                            lib.sh's SLR_FAST_PATH, on every SLR)
#   HIER_LOG_LEVEL           log_level of the SLRs (default info)
# Per-test config tweaks (associative arrays, set before hier_write_configs):
#   HIER_ROUTE_COST[parent/child]=X   [[host]].route_cost of child at parent
#   HIER_STANDBY[parent/child]=1      [[host]].standby of child at parent
#   HIER_LUA[slr]='...'               [policy].lua of that SLR (inline source)
#   HIER_POLICY_EXTRA[slr]='...'      extra lines appended to its [policy]
#   HIER_TCP_CLOSING[slr]=1s          its [flows.timeouts] tcp_closing

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HIER_BR_ADDR=10.9.0.1
HIER_CONTROL_PORT=7400
HIER_UPSTREAM_UPDATE=500ms
HIER_HOST_UPDATE=500ms
# The same intervals in seconds (for computing bounds in the tests).
HOLD_S=2
RECOMPUTE_S=0.25
UPSTREAM_UPDATE_S=0.5
HOST_UPDATE_S=0.5

HIER_SLRS=(net sysA sysB siteA1 siteA2 siteB1 siteB2)
HIER_SYS=(sysA sysB)
HIER_SITES=(siteA1 siteA2 siteB1 siteB2)
HIER_HOSTS=(hA1a hA1b hA2a hA2b hB1a hB1b hB2a hB2b)
HOSTS_A=(hA1a hA1b hA2a hA2b)
HOSTS_B=(hB1a hB1b hB2a hB2b)

declare -A HADDR=(
  [net]=10.9.0.2
  [sysA]=10.9.1.1 [sysB]=10.9.2.1
  [siteA1]=10.9.1.11 [siteA2]=10.9.1.12 [siteB1]=10.9.2.11 [siteB2]=10.9.2.12
  [hA1a]=10.9.11.1 [hA1b]=10.9.11.2 [hA2a]=10.9.12.1 [hA2b]=10.9.12.2
  [hB1a]=10.9.21.1 [hB1b]=10.9.21.2 [hB2a]=10.9.22.1 [hB2b]=10.9.22.2
)
declare -A HPARENT=(
  [sysA]=net [sysB]=net
  [siteA1]=sysA [siteA2]=sysA [siteB1]=sysB [siteB2]=sysB
  [hA1a]=siteA1 [hA1b]=siteA1 [hA2a]=siteA2 [hA2b]=siteA2
  [hB1a]=siteB1 [hB1b]=siteB1 [hB2a]=siteB2 [hB2b]=siteB2
)
declare -A HCHILDREN=(
  [net]="sysA sysB"
  [sysA]="siteA1 siteA2" [sysB]="siteB1 siteB2"
  [siteA1]="hA1a hA1b" [siteA2]="hA2a hA2b" [siteB1]="hB1a hB1b" [siteB2]="hB2a hB2b"
)

declare -A SPID=() HPID=() WPID=()        # SLR, host agent, HTTP server pids by name
declare -A HIER_ROUTE_COST=() HIER_STANDBY=() HIER_LUA=() HIER_POLICY_EXTRA=() HIER_TCP_CLOSING=()

# Names of the hosts below an SLR (itself if it is a host).
hosts_below() {
  local n=$1 c
  if [[ -z "${HCHILDREN[$n]:-}" ]]; then echo "$n"; return; fi
  for c in ${HCHILDREN[$n]}; do hosts_below "$c"; done
}
# The site SLR / system SLR a host belongs to.
site_of() { echo "${HPARENT[$1]}"; }
sys_of()  { echo "${HPARENT[${HPARENT[$1]}]}"; }

hsock() { named_sock "$1"; }
hlog()  { named_log "$1"; }
hload_file() { echo "$RUN_DIR/load_$1"; }
# hier_set_load HOST VALUE: atomically replace HOST's load file.
hier_set_load() { echo "$2" >"$(hload_file "$1").tmp" && mv -f "$(hload_file "$1").tmp" "$(hload_file "$1")"; }

# ---------------------------------------------------------------------------
# Topology

hier_topo_up() {
  local x
  _add_namespaces cli rtr "${HIER_SLRS[@]}" "${HIER_HOSTS[@]}" || return 1
  (
    set -e
    R="${P}rtr"
    ip -n "$R" link add br0 type bridge
    ip -n "$R" addr add $HIER_BR_ADDR/16 dev br0
    ip -n "$R" link set br0 up
    _cli_port
    for x in "${HIER_SLRS[@]}" "${HIER_HOSTS[@]}"; do _bridge_port "$x" br0 "${HADDR[$x]}/16" $HIER_BR_ADDR; done
    _rtr_forwarding vcli br0
    ip -n "$R" route add $VIP_SUBNET via "${HADDR[net]}"
  ) || return 1
}

# ---------------------------------------------------------------------------
# PKI: one CA (ca.pem/ca.key), a leaf per SLR and host (NAME.pem/NAME.key, CN NAME).

hier_make_pki() {
  local dir=$PKI_DIR x
  mkdir -p "$dir" || return 1
  _pki_ca "$dir" ca "slrctl e2e hierarchy CA" || return 1
  for x in "${HIER_SLRS[@]}" "${HIER_HOSTS[@]}"; do
    _pki_leaf "$dir" "$x" "$x" ca "DNS:$x,IP:${HADDR[$x]}" || return 1
  done
}

# ---------------------------------------------------------------------------
# Configs

_tf() { [[ "${1:-0}" == 1 ]] && echo true || echo false; }

# hier_slr_config NAME: the SLR config on stdout.
hier_slr_config() {
  local n=$1 c parent=${HPARENT[$1]:-}
  cat <<EOF
# generated by tests/e2e/lib_hier.sh ($n)
[slr]
name = "$n"
control_listen = "${HADDR[$n]}:$HIER_CONTROL_PORT"
tunnel_source = "${HADDR[$n]}"
status_socket = "$(hsock "$n")"
tun_name = "slr0"
workers = ${SLR_WORKERS:-1}
log_level = "${HIER_LOG_LEVEL:-info}"
shortcut = $(_tf "${HIER_SHORTCUT:-0}")
shortcut_wait = "${HIER_SHORTCUT_WAIT:-200ms}"
fast_path_interfaces = [${HIER_FAST_PATH:+\"$HIER_FAST_PATH\"}]

[tls]
ca = "$PKI_DIR/ca.pem"
cert = "$PKI_DIR/$n.pem"
key = "$PKI_DIR/$n.key"

[flows]
capacity = 65536
on_full = "stateless"

[flows.timeouts]
tcp_syn = "10s"
tcp_established = "300s"
tcp_closing = "${HIER_TCP_CLOSING[$n]:-10s}"
udp = "30s"
other = "30s"

[policy]
algorithm = "least-cost"
recompute_interval = "$RECOMPUTE_INTERVAL"
hold_time = "$HOLD_TIME"
tie_tolerance = ${TIE_TOLERANCE:-0.05}
spread_connections = $(_tf "${HIER_SPREAD:-1}")
EOF
  if [[ -n "${HIER_LUA[$n]:-}" ]]; then
    printf "lua = '''\n%s\n'''\n" "${HIER_LUA[$n]}"
  fi
  [[ -n "${HIER_POLICY_EXTRA[$n]:-}" ]] && printf '%s\n' "${HIER_POLICY_EXTRA[$n]}"
  cat <<EOF

[[vip]]
name = "web"
subnet = "$VIP_SUBNET"
EOF
  for c in ${HCHILDREN[$n]}; do
    printf '\n[[host]]\nname = "%s"\nsubnets = ["%s"]\nweight = 1\nroute_cost = %s\nstandby = %s\n' \
      "$c" "$VIP_SUBNET" "${HIER_ROUTE_COST[$n/$c]:-0.0}" "$(_tf "${HIER_STANDBY[$n/$c]:-0}")"
  done
  if [[ -n "$parent" ]]; then
    printf '\n[[upstream]]\naddress = "%s:%s"\nname = "%s"\nupdate_interval = "%s"\n' \
      "${HADDR[$parent]}" "$HIER_CONTROL_PORT" "$parent" "$HIER_UPSTREAM_UPDATE"
  fi
}

# hier_host_config NAME: the host agent config on stdout.
hier_host_config() {
  local n=$1 site=${HPARENT[$1]} sys
  sys=${HPARENT[$site]}
  cat <<EOF
# generated by tests/e2e/lib_hier.sh ($n)
[host]
name = "$n"
tunnel_address = "${HADDR[$n]}"
status_socket = "$(hsock "$n")"
tunnel_mode = "${TUNNEL_MODE:-auto}"
tun_name = "slrt0"
update_interval = "$HIER_HOST_UPDATE"
log_level = "${HOST_LOG_LEVEL:-info}"
decap_interfaces = [${HOST_DECAP:+\"$HOST_DECAP\"}]
EOF
  [[ "${HIER_SHORTCUT:-0}" == 1 ]] &&
    echo "shortcut_sources = [\"${HADDR[net]}\", \"${HADDR[$sys]}\"]"
  cat <<EOF

[tls]
ca = "$PKI_DIR/ca.pem"
cert = "$PKI_DIR/$n.pem"
key = "$PKI_DIR/$n.key"

[[slr]]
address = "${HADDR[$site]}:$HIER_CONTROL_PORT"
name = "$site"
tunnel_source = "${HADDR[$site]}"

[[subnet]]
prefix = "$VIP_SUBNET"

[load]
source = "file"
file = "$(hload_file "$n")"
EOF
}

# hier_write_configs: every config into $RUN_DIR/NAME.toml; loads start at 0.1.
hier_write_configs() {
  local x
  for x in "${HIER_SLRS[@]}"; do hier_slr_config "$x" >"$RUN_DIR/$x.toml" || return 1; done
  for x in "${HIER_HOSTS[@]}"; do
    hier_host_config "$x" >"$RUN_DIR/$x.toml" || return 1
    [[ -f "$(hload_file "$x")" ]] || hier_set_load "$x" 0.1
  done
}

# hier_check_configs: `slrctl check-config` on every config; prints failures.
hier_check_configs() {
  local x files=()
  for x in "${HIER_SLRS[@]}" "${HIER_HOSTS[@]}"; do files+=("$RUN_DIR/$x.toml"); done
  check_config_files "${files[@]}"
}

# ---------------------------------------------------------------------------
# Processes

hier_answers() { named_answers "$1"; }
_host_up_and_answering() { kill -0 "${HPID[$1]}" 2>/dev/null && hier_answers "$1"; }

# hier_start_slr NAME [CONFIG]: the SLR in its namespace; waits for its status socket.
# The log is appended to (a restarted SLR keeps its earlier log above).
hier_start_slr() { start_named_slr "$@"; }

# hier_stop_slr NAME: SIGTERM, wait until it exited; HIER_STOP_RC = its exit status.
hier_stop_slr() { stop_named_slr "$1" TERM HIER_STOP_RC; }

hier_start_host() {
  local n=$1
  _bg "$n" "$(hlog "$n")" "$SLRCTL" host --config "$RUN_DIR/$n.toml"
  HPID[$n]=$BG_PID
  wait_for 15 _answering_or_dead "$BG_PID" "$n"
  if ! _host_up_and_answering "$n"; then
    echo "# host agent $n did not come up; log:" >&2; tail -n 40 "$(hlog "$n")" | sed 's/^/#   /' >&2
    return 1
  fi
}

# hier_start_http NAME: HTTP server in NAME on :80; / answers NAME, /big.bin is
# the same BIG_MB MiB everywhere (sha256 BIG_SHA).
hier_start_http() {
  local n=$1 root=$RUN_DIR/www-$1
  _make_big || return 1
  mkdir -p "$root" && echo "$n" >"$root/index.html" && ln -f "$BIG_FILE" "$root/big.bin" || return 1
  _bg "$n" "$RUN_DIR/http-$n.log" "$PY" -m http.server 80 --bind 0.0.0.0 --directory "$root"
  WPID[$n]=$BG_PID
  wait_for 10 ns "$n" curl -s -o /dev/null --max-time 1 http://127.0.0.1/ || {
    echo "# http server in $n did not come up" >&2; cat "$RUN_DIR/http-$n.log" >&2; return 1; }
}

# ---------------------------------------------------------------------------
# Status access

hier_json() { named_json "$@"; }   # NAME status|hosts|flows
hier_get()  { named_get "$@"; }
# child_state PARENT CHILD: CHILD's state in PARENT's hosts view ("absent" if not listed).
# wait_rebuilt NAME...: until each SLR has rebuilt its tables twice since the
# call (so a registry change made before the call is in the published tables).
wait_rebuilt() {
  local s g
  for s in "$@"; do
    g=$(counter "$s" "d['tables']['generation']")
    wait_for 10 eval "(( \$(counter $s \"d['tables']['generation']\") >= $g + 2 ))" || return 1
  done
}
child_state() { named_host_state "$@"; }
child_is()    { [[ "$(child_state "$1" "$2")" == "$3" ]]; }
children_up() { local c; for c in ${HCHILDREN[$1]}; do child_is "$1" "$c" up || return 1; done; }
hier_all_up() { local s; for s in "${HIER_SLRS[@]}"; do children_up "$s" || return 1; done; }
# Which children are not up (for diagnostics).
hier_not_up() {
  local s c st out=""
  for s in "${HIER_SLRS[@]}"; do
    for c in ${HCHILDREN[$s]}; do
      st=$(child_state "$s" "$c"); [[ "$st" == up ]] || out+="$s/$c=$st "
    done
  done
  echo "${out:-none}"
}
# child_load PARENT CHILD: the load PARENT shows for CHILD on the VIP subnet ("none" if absent).
child_load() {
  hier_get "$1" hosts "next((s['load'] for s in (host('$2') or {}).get('subnets', []) if s['prefix'] == '$VIP_SUBNET'), 'none')"
}
child_load_is() {  # PARENT CHILD VALUE: within +-0.01
  local v; v=$(child_load "$1" "$2" 2>/dev/null) || return 1
  [[ "$v" != none ]] && _num_cmp "$(awk -v a="$v" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; print d }')" "<" 0.01
}

# ---------------------------------------------------------------------------
# Bring-up: topology, PKI, configs (validated), SLRs top-down, then HTTP
# servers and host agents; waits until every SLR lists all its children up.

hier_bring_up() {
  local x t0
  hier_topo_up || die "hierarchy topology (17 namespaces)"
  hier_make_pki || die "PKI (one CA, a certificate per SLR and host)"
  hier_write_configs || die "configs written"
  if hier_check_configs; then ok "slrctl check-config accepts all 15 configs"
  else not_ok "slrctl check-config accepts all 15 configs"; fi
  for x in "${HIER_SLRS[@]}"; do hier_start_slr "$x" || die "SLR $x starts and answers on its status socket"; done
  for x in "${HIER_HOSTS[@]}"; do
    hier_start_http "$x" || die "HTTP server in $x"
    hier_start_host "$x" || die "host agent $x starts"
  done
  t0=$(now_s)
  if wait_for 40 hier_all_up; then
    ok "all 7 SLRs list all their children up ($(elapsed_s "$t0")s after the last agent started)"
  else
    note "children not up: $(hier_not_up)"
    for x in "${HIER_SLRS[@]}"; do note "$x: $(hier_json "$x" hosts 2>&1 | head -c 2000 | tr '\n' ' ')"; done
    die "all 7 SLRs list all their children up"
  fi
}

# ---------------------------------------------------------------------------
# Traffic helpers

# tally_of NAME...: sum of TALLY[] over the hosts below the given names.
tally_of() {
  local n h s=0
  for n in "$@"; do for h in $(hosts_below "$n"); do s=$((s + ${TALLY[$h]:-0})); done; done
  echo "$s"
}

# hier_start_long_download PORT RATE: rate-limited download of big.bin from the
# client on a fixed local port into $RUN_DIR/long.bin (LONG_PID); returns once
# bytes arrive.
hier_start_long_download() {
  local port=$1 rate=$2
  ns cli curl -sS --fail --max-time 90 --local-port "$port" --limit-rate "$rate" \
    -o "$RUN_DIR/long.bin" "http://$VIP/big.bin" >"$RUN_DIR/long-curl.log" 2>&1 &
  LONG_PID=$!
  _PIDS+=("$LONG_PID")
  wait_for 10 _long_started
}

# flow_next_hop SLR SRC: the next hop SLR's flow table names for client SRC
# (ADDR:PORT), or "none".
flow_next_hop() { named_flow_host "$@"; }

# counter NAME EXPR: a number from NAME's status JSON ("0" when the key is missing).
counter() { named_counter "$@"; }
