# shellcheck shell=bash
# Shared helpers for the end-to-end tests (and tests/demo.sh).  Source it:
#   . "$(dirname "$0")/lib.sh"
#
# Every run gets its own namespace prefix (slrt<pid>-) and run directory
# (/tmp/slrt.XXXXXX: configs, PKI, logs, status sockets, captures), so runs
# never collide with each other or with leftovers.  An EXIT trap kills what
# the run started (by pid), deletes its namespaces and its run directory,
# also when a check fails half way.  Nothing here sleeps "to hope": waits go
# through wait_for, which polls a condition every 0.1 s up to a deadline.
#
# Topology (SPEC.md):
#   cli 10.0.1.2 --- 10.0.1.1 rtr 10.0.2.1 --- slr 10.0.2.2
#                              rtr br0 10.0.3.1 --- h1 10.0.3.11, h2 10.0.3.12, ...
#   rtr routes the VIP subnet 10.100.0.0/24 to the slr; replies go host -> rtr
#   -> cli directly.
#
# Environment knobs: SLRCTL (binary, default build/slrctl relative to the repo
# root), SLR_E2E_KEEP=1 (keep the run directory), SLR_E2E_VERBOSE=1 (trace).

_E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$_E2E_LIB_DIR/../.." && pwd)
HTTP10=$_E2E_LIB_DIR/http10.py   # one HTTP/1.0 GET, the server closes first
SLRCTL=${SLRCTL:-$REPO_ROOT/build/slrctl}
[[ "$SLRCTL" == /* ]] || SLRCTL=$REPO_ROOT/$SLRCTL
if [[ -x /usr/bin/python3 ]]; then PY=${PYTHON:-/usr/bin/python3}; else PY=${PYTHON:-python3}; fi

VIP=10.100.0.10
VIP_SUBNET=10.100.0.0/24
SLR_ADDR=10.0.2.2
CONTROL_PORT=7400
CLI_ADDR=10.0.1.2
# Short timers so failure detection is quick in tests.
HOLD_TIME=2s
UPDATE_INTERVAL=500ms
RECOMPUTE_INTERVAL=250ms

P="slrt$$-"            # namespace prefix, unique per run
RUN_DIR=""
PKI_DIR=""
N_HOSTS=0
_NAMESPACES=()
_PIDS=()               # everything we started in the background
declare -A HOST_PID=() HTTP_PID=() CAP_PID=()
SLR_PID=""
SLR_SOCK=""
PASS=0
FAIL=0
_SUMMARY_DONE=0

[[ "${SLR_E2E_VERBOSE:-0}" == 1 ]] && set -x

# ---------------------------------------------------------------------------
# Reporting

ok()     { PASS=$((PASS + 1)); echo "ok $((PASS + FAIL)) - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok $((PASS + FAIL)) - $*"; }
fail()   { not_ok "$@"; }
note()   { echo "# $*"; }
# die: a setup step failed; nothing after it can be meaningful.
die()    { not_ok "$@"; exit 1; }

# check DESC CMD...: ok if CMD exits 0.
check() {
  local desc=$1; shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; return 1; fi
}
# check_fails DESC CMD...: ok if CMD exits non-zero.
check_fails() {
  local desc=$1; shift
  if "$@"; then not_ok "$desc"; return 1; else ok "$desc"; fi
}
assert_eq() {  # DESC EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then ok "$1"; else not_ok "$1 (expected '$2', got '$3')"; return 1; fi
}
assert_ne() {  # DESC UNEXPECTED ACTUAL
  if [[ "$2" != "$3" ]]; then ok "$1"; else not_ok "$1 (got '$3')"; return 1; fi
}
_num_cmp() { "$PY" -c 'import sys; a,op,b=float(sys.argv[1]),sys.argv[2],float(sys.argv[3]); sys.exit(0 if {">=":a>=b,"<=":a<=b,">":a>b,"<":a<b,"==":a==b}[op] else 1)' "$1" "$2" "$3" 2>/dev/null; }
assert_ge() {  # DESC ACTUAL MIN
  if _num_cmp "$2" ">=" "$3"; then ok "$1"; else not_ok "$1 (expected >= $3, got '$2')"; return 1; fi
}
assert_le() {  # DESC ACTUAL MAX
  if _num_cmp "$2" "<=" "$3"; then ok "$1"; else not_ok "$1 (expected <= $3, got '$2')"; return 1; fi
}
assert_gt() {  # DESC ACTUAL MIN
  if _num_cmp "$2" ">" "$3"; then ok "$1"; else not_ok "$1 (expected > $3, got '$2')"; return 1; fi
}
assert_contains() {  # DESC NEEDLE HAYSTACK (case-insensitive)
  if grep -qiF -- "$2" <<<"$3"; then ok "$1"; else not_ok "$1 (no '$2' in: $(head -c 400 <<<"$3"))"; return 1; fi
}

# The one closing line, printed once from the EXIT trap.
summary() {
  [[ $_SUMMARY_DONE == 1 ]] && return
  _SUMMARY_DONE=1
  echo "$PASS passed, $FAIL failed"
}

require_root() {
  if [[ $(id -u) != 0 ]]; then
    echo "# skip: $(basename "$0") needs root (network namespaces)"
    _SUMMARY_DONE=1
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
  fi
}

require_slrctl() {
  [[ -x "$SLRCTL" ]] || die "slrctl binary not found at $SLRCTL (set SLRCTL=...)"
}

# ---------------------------------------------------------------------------
# Set-up / tear-down

e2e_init() {
  RUN_DIR=$(mktemp -d /tmp/slrt.XXXXXX) || { echo "mktemp failed" >&2; exit 1; }
  chmod 755 "$RUN_DIR"
  PKI_DIR=$RUN_DIR/pki
  SLR_SOCK=$RUN_DIR/slr.sock
  trap _on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

_kill_pids() {
  local pid alive=()
  for pid in "$@"; do
    [[ -n "$pid" ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      kill -CONT "$pid" 2>/dev/null   # a SIGSTOPped process only sees TERM once resumed
      alive+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 3))
  for pid in "${alive[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  for pid in "${alive[@]}"; do wait "$pid" 2>/dev/null; done
  return 0
}

cleanup() {
  set +x
  _kill_pids "${_PIDS[@]}"
  local ns pid
  for ns in "${_NAMESPACES[@]}"; do
    # Anything still inside a namespace this run created was started by it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  _NAMESPACES=()
  if [[ -n "$RUN_DIR" && -d "$RUN_DIR" ]]; then
    if [[ "${SLR_E2E_KEEP:-0}" == 1 ]]; then
      echo "# kept run directory $RUN_DIR" >&2
    else
      rm -rf "$RUN_DIR"
    fi
  fi
}

dump_logs() {
  local f
  [[ -n "$RUN_DIR" && -d "$RUN_DIR" ]] || return 0
  for f in "$RUN_DIR"/*.log; do
    [[ -s "$f" ]] || continue
    echo "# ---- last lines of $(basename "$f") ----" >&2
    tail -n 30 "$f" | sed 's/^/#   /' >&2
  done
}

_on_exit() {
  local rc=$?
  set +x
  # A script that printed its summary itself still fails when a check
  # failed: its last command's status says nothing about the checks.
  if [[ $_SUMMARY_DONE == 1 ]]; then
    ((FAIL > 0)) && dump_logs
    cleanup
    ((FAIL > 0)) && exit 1
    exit "$rc"
  fi
  if ((rc != 0 && FAIL == 0)); then not_ok "script exited early with status $rc"; fi
  ((FAIL > 0)) && dump_logs
  cleanup
  summary
  ((FAIL > 0)) && exit 1
  exit "$rc"
}

# ns NAME CMD...: run CMD in the run's namespace NAME (cli, rtr, slr, h1, ...).
ns() { local n=$1; shift; ip netns exec "${P}${n}" "$@"; }

# ns_py_raw NAME ARG...: the Python program on stdin, run in namespace NAME
# with ARG... as sys.argv[1:] and csum(b), the Internet checksum (RFC 1071)
# of the bytes b, already defined: for programs that build raw packets.
ns_py_raw() {
  local n=$1 prog; shift
  prog=$(cat) || return 1
  ns "$n" "$PY" -c "$_PY_INET_CSUM"$'\n'"$prog" "$@"
}
_PY_INET_CSUM='import struct
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF'

_add_ns() {
  ip netns add "${P}$1" || return 1
  _NAMESPACES+=("${P}$1")
  ip -n "${P}$1" link set lo up
  # IPv6 off: keeps captures and the TUN devices free of autoconf noise.
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
}

# _add_namespaces NAME...: the run's namespaces NAME... (cleanup knows them,
# also when creating one failed half way).
_add_namespaces() {
  local x
  (
    set -e
    for x in "$@"; do _add_ns "$x"; done
  ) || { _adopt_namespaces; return 1; }
  _adopt_namespaces
  return 0
}

# _cli_port: the client's link: rtr vcli 10.0.1.1/24 -- cli eth0 CLI_ADDR/24,
# cli's default route via rtr.
_cli_port() {
  local R="${P}rtr"
  ip -n "$R" link add vcli type veth peer name eth0 netns "${P}cli" || return 1
  ip -n "$R" addr add 10.0.1.1/24 dev vcli || return 1
  ip -n "$R" link set vcli up || return 1
  ip -n "${P}cli" addr add $CLI_ADDR/24 dev eth0 || return 1
  ip -n "${P}cli" link set eth0 up || return 1
  ip -n "${P}cli" route add default via 10.0.1.1
}

# _bridge_port NAME BRIDGE ADDR/LEN GATEWAY: NAME's eth0 (ADDR/LEN, default
# route via GATEWAY) on a veth whose rtr end vNAME is a port of rtr's BRIDGE.
_bridge_port() {
  local n=$1 br=$2 R="${P}rtr"
  ip -n "$R" link add "v$n" type veth peer name eth0 netns "${P}$n" || return 1
  ip -n "$R" link set "v$n" master "$br" || return 1
  ip -n "$R" link set "v$n" up || return 1
  ip -n "${P}$n" addr add "$3" dev eth0 || return 1
  ip -n "${P}$n" link set eth0 up || return 1
  ip -n "${P}$n" route add default via "$4"
}

# _rtr_forwarding IFACE...: rtr forwards, with rp_filter off on all, default
# and IFACE...: direct server return is asymmetric routing by design (replies
# with the VIP as source arrive on another interface than the VIP route's).
_rtr_forwarding() {
  local k
  ns rtr sysctl -qw net.ipv4.ip_forward=1 >/dev/null || return 1
  for k in all default "$@"; do
    ns rtr sysctl -qw "net.ipv4.conf.$k.rp_filter=0" >/dev/null || return 1
  done
}

# topo_up N_HOSTS: the SPEC topology with hosts h1..hN.
topo_up() {
  local n=${1:-2} i names=(cli rtr slr)
  N_HOSTS=$n
  for ((i = 1; i <= n; i++)); do names+=("h$i"); done
  _add_namespaces "${names[@]}" || return 1
  (
    set -e
    local R="${P}rtr"
    _cli_port
    ip -n "$R" link add vslr type veth peer name eth0 netns "${P}slr"
    ip -n "$R" addr add 10.0.2.1/24 dev vslr
    ip -n "$R" link set vslr up
    ip -n "${P}slr" addr add $SLR_ADDR/24 dev eth0
    ip -n "${P}slr" link set eth0 up
    ip -n "${P}slr" route add default via 10.0.2.1
    ip -n "$R" link add br0 type bridge
    ip -n "$R" addr add 10.0.3.1/24 dev br0
    ip -n "$R" link set br0 up
    for ((i = 1; i <= n; i++)); do _bridge_port "h$i" br0 "$(host_addr "$i")/24" 10.0.3.1; done
    # The slr namespace's ip_forward is left alone on purpose: `slrctl slr`
    # must enable it itself (VIP packets are forwarded from eth0 into its TUN).
    # Replies with the VIP as source arrive on br0 while the VIP route points
    # at the slr.
    _rtr_forwarding vcli vslr br0
    ip -n "$R" route add $VIP_SUBNET via $SLR_ADDR
  ) || return 1
}

# Namespaces are created in a subshell; record the ones that exist so cleanup
# finds them even if creation failed half way.
_adopt_namespaces() {
  local x
  _NAMESPACES=()
  for x in $(ip netns list | awk '{print $1}'); do
    [[ "$x" == "$P"* ]] && _NAMESPACES+=("$x")
  done
}

host_addr() { echo "10.0.3.$((10 + $1))"; }

# ---------------------------------------------------------------------------
# PKI (openssl CLI, EC P-256)
#   DIR/ca.pem ca.key            test CA
#   DIR/slr1.pem slr1.key        SLR, CN slr1
#   DIR/hostI.pem hostI.key      hosts, CN hostI, I = 1..N
#   DIR/stranger.pem .key        CN "stranger": right CA, but not configured at the SLR
#   DIR/rogue.pem rogue.key      CN $ROGUE_CN (default host2) signed by DIR/rogue-ca.pem,
#                                a DIFFERENT CA than the SLR trusts

_pki_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null && chmod 600 "$1"; }

_pki_ca() {  # DIR NAME CN
  _pki_key "$1/$2.key" || return 1
  openssl req -x509 -new -key "$1/$2.key" -subj "/CN=$3" -days 3 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1/$2.pem" 2>/dev/null
}

_pki_leaf() {  # DIR FILE CN CA_BASENAME [SAN]
  local dir=$1 file=$2 cn=$3 ca=$4 san=${5:-DNS:$3}
  _pki_key "$dir/$file.key" || return 1
  openssl req -new -key "$dir/$file.key" -subj "/CN=$cn" -out "$dir/$file.csr" 2>/dev/null || return 1
  cat >"$dir/$file.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EOF
  openssl x509 -req -in "$dir/$file.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 3 -sha256 -extfile "$dir/$file.ext" \
    -out "$dir/$file.pem" 2>/dev/null || return 1
  rm -f "$dir/$file.csr" "$dir/$file.ext"
}

make_pki() {  # DIR [N_HOSTS]
  local dir=$1 n=${2:-${N_HOSTS:-3}} i
  ((n > 0)) || n=3
  mkdir -p "$dir" || return 1
  _pki_ca "$dir" ca "slrctl e2e test CA" || return 1
  _pki_ca "$dir" rogue-ca "some other CA" || return 1
  _pki_leaf "$dir" slr1 slr1 ca "DNS:slr1,IP:$SLR_ADDR" || return 1
  for ((i = 1; i <= n; i++)); do
    _pki_leaf "$dir" "host$i" "host$i" ca "DNS:host$i,IP:$(host_addr "$i")" || return 1
  done
  _pki_leaf "$dir" stranger stranger ca || return 1
  _pki_leaf "$dir" rogue "${ROGUE_CN:-host2}" rogue-ca || return 1
}

# ---------------------------------------------------------------------------
# Configs

# write_slr_config FILE HOSTSPEC...
#   HOSTSPEC = NAME[=PREFIX[,PREFIX...]]   (default prefix: the VIP subnet)
# Knobs: SLR_ALGORITHM (least-cost), SLR_FLOW_CAPACITY (65536), SLR_ON_FULL
# (stateless), SLR_WORKERS (1), SLR_LOG_LEVEL (info), TIE_TOLERANCE (0.05),
# SLR_FAST_PATH (an interface for the kernel fast path, e.g. eth0; default none),
# SLR_TCP_SYN_TIMEOUT (10s), SLR_TCP_ESTABLISHED (300s), SLR_TCP_CLOSING (10s), SLR_MIDSTREAM_WAIT
# (flows.midstream_wait; default: not written, the daemon's default),
# SLR_DRAINED (space-separated [[host]] names written with drained = true),
# SLR_EXTRA (TOML appended verbatim at the end; start it with a table header).
# SLR_NAME (slr1: [slr].name and the certificate PKI_DIR/SLR_NAME.pem), with
# SLR_ADDR and SLR_SOCK for an SLR other than the one of the SPEC topology.
write_slr_config() {
  local file=$1 spec name prefixes p list x mw=""; shift
  [[ -n "${SLR_MIDSTREAM_WAIT:-}" ]] && mw=$'\n''midstream_wait = "'"$SLR_MIDSTREAM_WAIT"'"'
  {
    cat <<EOF
# generated by tests/e2e/lib.sh
[slr]
name = "${SLR_NAME:-slr1}"
control_listen = "$SLR_ADDR:$CONTROL_PORT"
tunnel_source = "$SLR_ADDR"
status_socket = "$SLR_SOCK"
tun_name = "slr0"
workers = ${SLR_WORKERS:-1}
log_level = "${SLR_LOG_LEVEL:-info}"
fast_path_interfaces = [${SLR_FAST_PATH:+\"$SLR_FAST_PATH\"}]

[tls]
ca = "$PKI_DIR/ca.pem"
cert = "$PKI_DIR/${SLR_NAME:-slr1}.pem"
key = "$PKI_DIR/${SLR_NAME:-slr1}.key"

[flows]
capacity = ${SLR_FLOW_CAPACITY:-65536}
on_full = "${SLR_ON_FULL:-stateless}"$mw

[flows.timeouts]
tcp_syn = "${SLR_TCP_SYN_TIMEOUT:-10s}"
tcp_established = "${SLR_TCP_ESTABLISHED:-300s}"
tcp_closing = "${SLR_TCP_CLOSING:-10s}"
udp = "30s"
other = "30s"

[policy]
algorithm = "${SLR_ALGORITHM:-least-cost}"
recompute_interval = "$RECOMPUTE_INTERVAL"
hold_time = "$HOLD_TIME"
tie_tolerance = ${TIE_TOLERANCE:-0.05}

[[vip]]
name = "web"
subnet = "$VIP_SUBNET"
EOF
    for spec in "$@"; do
      name=${spec%%=*}
      prefixes=$VIP_SUBNET
      [[ "$spec" == *=* ]] && prefixes=${spec#*=}
      list=""
      IFS=, read -ra p <<<"$prefixes"
      for x in "${p[@]}"; do list+="${list:+, }\"$x\""; done
      printf '\n[[host]]\nname = "%s"\nsubnets = [%s]\nweight = 1\nroute_cost = 0.0\n' "$name" "$list"
      if [[ " ${SLR_DRAINED:-} " == *" $name "* ]]; then echo 'drained = true'; fi
    done
    if [[ -n "${SLR_EXTRA:-}" ]]; then printf '\n%s\n' "$SLR_EXTRA"; fi
  } >"$file"
}

# write_host_config FILE I [NAME] [CERT_BASENAME] [PREFIX]
# Knobs: LOAD_SOURCE (connections | file | cpu | command; file reads
# $RUN_DIR/load_hI), TUNNEL_MODE (auto), HOST_LOG_LEVEL (info), HOST_DECAP (an
# uplink for kernel tunnel decapsulation, e.g. eth0; default none).
# HOST_TOML[I] (TOML appended verbatim to host I's config, e.g. [[check]]
# tables from check_toml), RECOVERY_ENABLED / RECOVERY_STALL_AFTER /
# RECOVERY_GIVE_UP / RECOVERY_INTERVAL / RECOVERY_MAX_ECHOES (a [recovery]
# table with the keys that are set; none set = no table, the defaults).
# HOST_SLRS ("NAME=ADDR ...", default "slr1=$SLR_ADDR"): the [[slr]] entries.
declare -A HOST_TOML=()
write_host_config() {
  local file=$1 i=$2 name=${3:-host$2} cert=${4:-host$2} prefix=${5:-$VIP_SUBNET}
  local src=${LOAD_SOURCE:-connections} slr
  {
    cat <<EOF
# generated by tests/e2e/lib.sh
[host]
name = "$name"
tunnel_address = "$(host_addr "$i")"
status_socket = "$(host_sock "$i")"
tunnel_mode = "${TUNNEL_MODE:-auto}"
tun_name = "slrt0"
update_interval = "$UPDATE_INTERVAL"
log_level = "${HOST_LOG_LEVEL:-info}"
decap_interfaces = [${HOST_DECAP:+\"$HOST_DECAP\"}]

[tls]
ca = "$PKI_DIR/ca.pem"
cert = "$PKI_DIR/$cert.pem"
key = "$PKI_DIR/$cert.key"
EOF
    for slr in ${HOST_SLRS:-slr1=$SLR_ADDR}; do
      printf '\n[[slr]]\naddress = "%s:%s"\nname = "%s"\ntunnel_source = "%s"\n' \
        "${slr#*=}" "$CONTROL_PORT" "${slr%%=*}" "${slr#*=}"
    done
    cat <<EOF

[[subnet]]
prefix = "$prefix"

[load]
source = "$src"
EOF
    case $src in
      connections) echo 'max_connections = 1000' ;;
      file) echo "file = \"$(load_file "$i")\"" ;;
      command) echo "command = \"cat $(load_file "$i")\"" ;;
    esac
    _recovery_toml
    if [[ -n "${HOST_TOML[$i]:-}" ]]; then printf '\n%s\n' "${HOST_TOML[$i]}"; fi
  } >"$file"
  [[ -f "$(load_file "$i")" ]] || echo 0.1 >"$(load_file "$i")"
}

_recovery_toml() {
  local k v out=""
  for k in enabled stall_after give_up interval max_echoes; do
    v=RECOVERY_${k^^}
    v=${!v:-}
    [[ -n "$v" ]] || continue
    if [[ "$v" =~ ^([0-9]+|true|false)$ ]]; then out+="$k = $v"$'\n'; else out+="$k = \"$v\""$'\n'; fi
  done
  if [[ -n "$out" ]]; then printf '\n[recovery]\n%s' "$out"; fi
}

# check_toml NAME TYPE [KEY=VALUE...]: one [[check]] table on stdout, e.g.
#   HOST_TOML[1]=$(check_toml web http address=127.0.0.1:80 interval=200ms)
# Values that are integers, true/false or arrays ([...]) are written bare,
# everything else quoted.
check_toml() {
  local name=$1 type=$2 kv k v; shift 2
  printf '[[check]]\nname = "%s"\ntype = "%s"\n' "$name" "$type"
  for kv in "$@"; do
    k=${kv%%=*} v=${kv#*=}
    if [[ "$v" =~ ^([0-9]+|true|false|\[.*\])$ ]]; then printf '%s = %s\n' "$k" "$v"
    else printf '%s = "%s"\n' "$k" "${v//\"/\\\"}"; fi
  done
  echo
}

host_sock() { echo "$RUN_DIR/h$1.sock"; }
load_file() { echo "$RUN_DIR/load_h$1"; }
# set_load I VALUE: atomically replace host I's load file.
set_load() { echo "$2" >"$(load_file "$1").tmp" && mv -f "$(load_file "$1").tmp" "$(load_file "$1")"; }

# ---------------------------------------------------------------------------
# Processes

_bg() {  # NS LOG CMD... ; sets BG_PID
  local n=$1 log=$2; shift 2
  ip netns exec "${P}$n" "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  _PIDS+=("$BG_PID")
}

# start_slr [CONFIG]: SLR in the slr namespace; waits until its status socket answers.
start_slr() {
  local cfg=${1:-$RUN_DIR/slr.toml}
  _bg slr "$RUN_DIR/slr.log" "$SLRCTL" slr --config "$cfg"
  SLR_PID=$BG_PID
  if ! wait_for 15 slr_alive_and_answering; then
    echo "# slr did not come up; log:" >&2; tail -n 40 "$RUN_DIR/slr.log" | sed 's/^/#   /' >&2
    return 1
  fi
}
slr_alive_and_answering() {
  kill -0 "$SLR_PID" 2>/dev/null || return 1
  "$SLRCTL" status --socket "$SLR_SOCK" --json >/dev/null 2>&1
}
slr_alive() { [[ -n "$SLR_PID" ]] && kill -0 "$SLR_PID" 2>/dev/null; }

# start_host I [CONFIG]: host agent in namespace hI; waits for its status socket.
start_host() {
  local i=$1 cfg=${2:-$RUN_DIR/h$1.toml}
  _bg "h$i" "$RUN_DIR/h$i.log" "$SLRCTL" host --config "$cfg"
  HOST_PID[$i]=$BG_PID
  if ! wait_for 15 host_alive_and_answering "$i"; then
    echo "# host agent h$i did not come up; log:" >&2; tail -n 40 "$RUN_DIR/h$i.log" | sed 's/^/#   /' >&2
    return 1
  fi
}
host_alive_and_answering() {
  kill -0 "${HOST_PID[$1]}" 2>/dev/null || return 1
  "$SLRCTL" status --socket "$(host_sock "$1")" --json >/dev/null 2>&1
}

BIG_MB=${BIG_MB:-16}
BIG_FILE=""
BIG_SHA=""
_make_big() {
  [[ -n "$BIG_FILE" ]] && return 0
  BIG_FILE=$RUN_DIR/big.bin
  head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom >"$BIG_FILE" || return 1
  BIG_SHA=$(sha256sum "$BIG_FILE" | cut -d' ' -f1)
}

# start_http I: a real HTTP server in hI on 0.0.0.0:80.  / answers "hI"; /big.bin
# is the same BIG_MB MiB of random bytes on every host (sha256 in BIG_SHA).
start_http() {
  local i=$1 root
  root=$RUN_DIR/www$i
  _make_big || return 1
  mkdir -p "$root" && echo "h$i" >"$root/index.html" && ln -f "$BIG_FILE" "$root/big.bin" || return 1
  _bg "h$i" "$RUN_DIR/http$i.log" "$PY" -m http.server 80 --bind 0.0.0.0 --directory "$root"
  HTTP_PID[$i]=$BG_PID
  wait_for 10 ns "h$i" curl -s -o /dev/null --max-time 1 http://127.0.0.1/ || {
    echo "# http server in h$i did not come up" >&2; cat "$RUN_DIR/http$i.log" >&2; return 1; }
}

# ---------------------------------------------------------------------------
# Waiting, JSON, status

# wait_for TIMEOUT_S CMD...: polls CMD every 0.1 s until it exits 0.  On
# timeout prints why to stderr and returns 1.  WAITED_S = seconds it took.
wait_for() {
  local timeout=$1; shift
  local start=${EPOCHREALTIME/./} now
  local deadline=$((start + $(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000000 }')))
  while :; do
    if "$@" >/dev/null 2>&1; then
      now=${EPOCHREALTIME/./}
      WAITED_S=$(awk -v us="$((now - start))" 'BEGIN { printf "%.2f", us / 1000000 }')
      return 0
    fi
    now=${EPOCHREALTIME/./}
    if ((now >= deadline)); then
      echo "# wait_for: timed out after ${timeout}s: $*" >&2
      return 1
    fi
    sleep 0.1
  done
}

# now_s: wall clock seconds with microseconds (for measuring intervals).
now_s() { echo "$EPOCHREALTIME"; }
elapsed_s() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# json_get FILE|- EXPR: evaluates a Python expression over the parsed JSON `d`.
# Helpers inside EXPR: host(name) -> entry of d["hosts"] or None,
# vip(name) -> entry of d["vips"] or None, drop(reason) -> d["drops"].get(reason, 0).
# Prints str() of scalars, JSON of lists/dicts, true/false, null.
json_get() {
  "$PY" -c '
import json, sys
src, expr = sys.argv[1], sys.argv[2]
try:
    d = json.load(sys.stdin if src == "-" else open(src))
except Exception as e:
    print("json_get: cannot parse JSON: %r" % (e,), file=sys.stderr); sys.exit(1)
def host(name):
    return next((h for h in d.get("hosts", []) if h.get("name") == name), None)
def vip(name):
    return next((v for v in d.get("vips", []) if v.get("name") == name), None)
def drop(reason):
    return (d.get("drops") or {}).get(reason, 0)
try:
    v = eval(expr, {"d": d, "host": host, "vip": vip, "drop": drop, "json": json})
except Exception as e:
    print("json_get: %s: %r" % (expr, e), file=sys.stderr); sys.exit(1)
if isinstance(v, bool): print("true" if v else "false")
elif v is None: print("null")
elif isinstance(v, (dict, list)): print(json.dumps(v))
else: print(v)
' "$1" "$2"
}

slr_json()  { "$SLRCTL" "$1" --json --socket "$SLR_SOCK" "${@:2}"; }   # status|hosts|flows
host_json() { "$SLRCTL" status --json --socket "$(host_sock "$1")"; }   # I
slr_get()   { local what=$1 expr=$2 out; out=$(slr_json "$what") || return 1; json_get - "$expr" <<<"$out"; }
host_get()  { local out; out=$(host_json "$1") || return 1; json_get - "$2" <<<"$out"; }

# host_state NAME: state of NAME in the SLR's hosts view ("absent" if not listed).
host_state() { slr_get hosts "(host('$1') or {}).get('state', 'absent')"; }
host_is()    { [[ "$(host_state "$1" 2>/dev/null)" == "$2" ]]; }
# slr_avail HOST: "true" when the SLR lists every subnet of HOST available and
# its last tables made HOST eligible for new flows there, "false" when neither
# holds for any subnet, "mixed" in between.  (A host's update or a drain
# reaches the registry a moment before the rebuilt tables do.)
slr_avail() {
  slr_get hosts "(lambda v: 'true' if all(v) else 'false' if not any(v) else 'mixed')(
    [x for s in host('$1')['subnets'] for x in (bool(s.get('available')), bool(s.get('eligible')))])"
}
avail_is() { [[ "$(slr_avail "$1" 2>/dev/null)" == "$2" ]]; }   # HOST true|false|mixed
hosts_up()   { local h; for h in "$@"; do host_is "$h" up || return 1; done; }

# ---------------------------------------------------------------------------
# Daemons by name (lib_pair.sh, lib_hier.sh): daemon NAME runs in namespace
# NAME, its status socket is RUN_DIR/NAME.sock, its log RUN_DIR/NAME.log and,
# for an SLR, its config RUN_DIR/NAME.toml by default and its pid SPID[NAME].

declare -A SPID=()
named_sock() { echo "$RUN_DIR/$1.sock"; }
named_log()  { echo "$RUN_DIR/$1.log"; }
# named_answers NAME: NAME's status socket answers.
named_answers() { "$SLRCTL" status --socket "$(named_sock "$1")" --json >/dev/null 2>&1; }
# _answering_or_dead PID NAME: stop waiting as soon as the daemon answers or exited.
_answering_or_dead() { ! kill -0 "$1" 2>/dev/null || named_answers "$2"; }
_pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# start_named_slr NAME [CONFIG]: the SLR in its namespace; waits for its
# status socket.  The log is appended to (a restarted SLR keeps its earlier
# log above).
start_named_slr() {
  local n=$1 cfg=${2:-$RUN_DIR/$1.toml}
  echo "---- start $(date +%T.%N) $cfg" >>"$(named_log "$n")"
  ip netns exec "${P}$n" "$SLRCTL" slr --config "$cfg" >>"$(named_log "$n")" 2>&1 </dev/null &
  SPID[$n]=$!
  _PIDS+=("$!")
  wait_for 15 _answering_or_dead "${SPID[$n]}" "$n"
  if ! { kill -0 "${SPID[$n]}" 2>/dev/null && named_answers "$n"; }; then
    echo "# SLR $n did not come up; log:" >&2; tail -n 40 "$(named_log "$n")" | sed 's/^/#   /' >&2
    return 1
  fi
}

# stop_named_slr NAME [SIGNAL] [RC_VAR]: signal NAME's SLR (TERM) and reap it
# (KILL after 10 s); its exit status goes into the variable RC_VAR.
stop_named_slr() {
  local n=$1 sig=${2:-TERM} pid=${SPID[$1]:-} rc
  [[ -n "$pid" ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null
  wait_for 10 _pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null; rc=$?
  [[ -z "${3:-}" ]] || printf -v "$3" '%s' "$rc"
  SPID[$n]=""
}

# check_config_files FILE...: `slrctl check-config` on each; prints the failures.
check_config_files() {
  local f out rc=0
  for f in "$@"; do
    if ! out=$("$SLRCTL" check-config "$f" 2>&1); then
      echo "# check-config $(basename "$f") failed:" >&2
      sed 's/^/#   /' <<<"$out" >&2
      rc=1
    fi
  done
  return $rc
}

named_json() { "$SLRCTL" "$2" --json --socket "$(named_sock "$1")" "${@:3}"; }   # NAME status|hosts|flows
named_get()  { local out; out=$(named_json "$1" "$2") || return 1; json_get - "$3" <<<"$out"; }
# named_counter NAME EXPR: a value from NAME's status JSON ("0" when unreadable).
named_counter() {
  local out; out=$(named_json "$1" status 2>/dev/null) || { echo 0; return 1; }
  json_get - "$2" <<<"$out" 2>/dev/null || echo 0
}
# named_host_state SLR HOST: HOST's state in SLR's hosts view ("absent" if
# not listed, "unreachable" if SLR does not answer).
named_host_state() { named_get "$1" hosts "(host('$2') or {}).get('state', 'absent')" 2>/dev/null || echo unreachable; }
# named_flow_host SLR SRC: the next hop SLR's flow table names for client SRC
# (ADDR:PORT), or "none".
named_flow_host() {
  named_get "$1" flows "next((str(f['host']) for f in d['flows'] if f['src'] == '$2'), 'none')" 2>/dev/null || echo none
}

# ---------------------------------------------------------------------------
# Client traffic

# cli_get [PATH] [CURL ARGS...]: body of http://VIP/PATH fetched from cli.
cli_get() {
  local path=${1:-}; shift || true
  ns cli curl -sS --fail --max-time "${CURL_TIMEOUT:-5}" "$@" "http://$VIP/$path"
}

# http_tally N: N sequential requests from cli.  Sets TALLY_OK, TALLY_FAILED,
# TALLY (assoc: body -> count), TALLY_BODIES (one body per line, "FAILED")
# and TALLY_PORTS ("PORT:BODY ...", the client port of each request).
declare -A TALLY=()
http_tally() {
  local n=$1 k out body port
  TALLY=(); TALLY_OK=0; TALLY_FAILED=0; TALLY_BODIES=""; TALLY_PORTS=""
  for ((k = 0; k < n; k++)); do
    body=FAILED; port=0
    if out=$(cli_get "" -w '\n%{local_port}' 2>/dev/null) && [[ "$out" == *$'\n'* ]]; then
      port=${out##*$'\n'}; out=${out%$'\n'*}
      while [[ "$out" == *$'\n' ]]; do out=${out%$'\n'}; done
      [[ -n "$out" ]] && body=$out
    fi
    if [[ "$body" == FAILED ]]; then
      TALLY_FAILED=$((TALLY_FAILED + 1))
    else
      TALLY_OK=$((TALLY_OK + 1)); TALLY[$body]=$((${TALLY[$body]:-0} + 1))
    fi
    TALLY_BODIES+="$body"$'\n'
    TALLY_PORTS+="$port:$body "
  done
}
tally_str() { local k s=""; for k in "${!TALLY[@]}"; do s+="$k=${TALLY[$k]} "; done; echo "${s% } failed=$TALLY_FAILED"; }

# ---------------------------------------------------------------------------
# Captures

# cap_start NAME NS IFACE FILTER...: tcpdump into RUN_DIR/NAME.pcap; returns once it listens.
cap_start() {
  local name=$1 n=$2 ifc=$3; shift 3
  ip netns exec "${P}$n" tcpdump -i "$ifc" -n -U --immediate-mode -s 128 -Z root -w "$RUN_DIR/$name.pcap" "$@" \
    >"$RUN_DIR/cap-$name.out" 2>&1 </dev/null &
  CAP_PID[$name]=$!
  _PIDS+=("$!")
  wait_for 10 grep -q "listening on" "$RUN_DIR/cap-$name.out" || {
    cat "$RUN_DIR/cap-$name.out" >&2; return 1; }
}
# cap_stop NAME: SIGINT so tcpdump flushes; waits for it.
cap_stop() {
  local pid=${CAP_PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  kill -INT "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  CAP_PID[$1]=""
  return 0
}
# cap_count NAME [FILTER...]: packets in NAME.pcap matching FILTER.
cap_count() {
  local name=$1; shift
  tcpdump -r "$RUN_DIR/$name.pcap" -n -Z root "$@" 2>/dev/null | wc -l
}
cap_show() {  # NAME MAX [FILTER...]
  local name=$1 max=$2; shift 2
  tcpdump -r "$RUN_DIR/$name.pcap" -n -Z root "$@" 2>/dev/null | head -n "$max"
}

# start_long_download: a rate-limited download of big.bin (~4 s at 4 MiB/s)
# from the client into $RUN_DIR/long.bin, in the background (LONG_PID); returns
# once bytes are arriving.  Check it with `wait "$LONG_PID"` and $BIG_SHA.
start_long_download() {
  ns cli curl -sS --fail --max-time 60 --limit-rate 4M -o "$RUN_DIR/long.bin" "http://$VIP/big.bin" \
    >"$RUN_DIR/long-curl.log" 2>&1 &
  LONG_PID=$!
  _PIDS+=("$LONG_PID")
  wait_for 10 _long_started
}
_long_started() { [[ -s "$RUN_DIR/long.bin" ]]; }

# start_paced_http I PORT BYTES_PER_S: an HTTP/1.0 server in hI on PORT that
# answers any GET with big.bin (BIG_SHA), paced by the SERVER at BYTES_PER_S
# (bursts of at most 0.2 s after a stall).  Pacing at the sender keeps data in
# flight all the time, so lost ACKs leave unacknowledged data behind (a stall
# the host agent can see) instead of a receive window that closed.
# PACED_PID[I] is its pid.
declare -A PACED_PID=()
start_paced_http() {
  local i=$1 port=$2 rate=$3
  _make_big || return 1
  _bg "h$i" "$RUN_DIR/paced$i.log" "$PY" -u -c '
import socket, sys, threading, time
port, rate, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
data = memoryview(open(path, "rb").read())
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(64)
def serve(c, peer):
    try:
        req = b""
        while b"\r\n\r\n" not in req:
            d = c.recv(4096)
            if not d:
                return
            req += d
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data))
        t0, sent, chunk = time.monotonic(), 0, 16384
        while sent < len(data):
            c.sendall(data[sent:sent + chunk])
            sent = min(sent + chunk, len(data))
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -0.2:
                t0 += -ahead - 0.2   # after a stall: no catch-up burst beyond 0.2 s
        print("served %s:%d %d bytes" % (peer[0], peer[1], sent), flush=True)
    except OSError as e:
        print("aborted %s:%d %r" % (peer[0], peer[1], e), flush=True)
    finally:
        c.close()
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
' "$port" "$rate" "$BIG_FILE"
  PACED_PID[$i]=$BG_PID
  wait_for 10 ns "h$i" "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" || {
    echo "# paced server in h$i did not come up" >&2; cat "$RUN_DIR/paced$i.log" >&2; return 1; }
}

# pick_client_port HOSTNAME DPORT [FROM]: a client port (FROM.. FROM+199,
# default 41000) whose new flow to VIP:DPORT the SLR would send to HOSTNAME
# (`slrctl explain`), never one it returned before in this run (recorded in
# RUN_DIR/used_ports: callers use $(...), a subshell).  Prints it; 1 if none.
pick_client_port() {
  local want=$1 dport=$2 from=${3:-41000} p got used=$RUN_DIR/used_ports
  for ((p = from; p < from + 200; p++)); do
    grep -qx "$p" "$used" 2>/dev/null && continue
    got=$("$SLRCTL" explain tcp "$CLI_ADDR:$p" "$VIP:$dport" --json --socket "$SLR_SOCK" 2>/dev/null |
      json_get - "(d.get('choice') or {}).get('next_hop')") || continue
    if [[ "$got" == "$want" ]]; then echo "$p" >>"$used"; echo "$p"; return 0; fi
  done
  return 1
}

# start_download NAME DPORT LOCAL_PORT [CURL ARGS...]: curl from cli of
# http://VIP:DPORT/big.bin from LOCAL_PORT into RUN_DIR/NAME.bin in the
# background (DL_PID[NAME]); returns once bytes arrive.  download_ok NAME
# waits for it and checks the sha256 against BIG_SHA.
declare -A DL_PID=()
start_download() {
  local name=$1 dport=$2 lport=$3; shift 3
  ns cli curl -sS --fail --max-time "${DL_MAX_TIME:-120}" --local-port "$lport" "$@" \
    -o "$RUN_DIR/$name.bin" "http://$VIP:$dport/big.bin" >"$RUN_DIR/$name-curl.log" 2>&1 &
  DL_PID[$name]=$!
  _PIDS+=("$!")
  wait_for 10 test -s "$RUN_DIR/$name.bin"
}
download_ok() {
  local name=$1 rc=0 sha
  wait "${DL_PID[$name]}" || rc=$?
  if ((rc != 0)); then
    echo "# download $name: curl exit $rc: $(head -c 300 "$RUN_DIR/$name-curl.log")" >&2
    return 1
  fi
  sha=$(sha256sum "$RUN_DIR/$name.bin" | cut -d' ' -f1)
  [[ "$sha" == "$BIG_SHA" ]] || { echo "# download $name: sha256 $sha, expected $BIG_SHA" >&2; return 1; }
}
dl_bytes() { stat -c %s "$RUN_DIR/$1.bin" 2>/dev/null || echo 0; }
# flow_host SRC_PORT [DPORT]: the host the SLR's flow table names for cli:SRC_PORT -> VIP:DPORT ("none").
flow_host() {
  slr_get flows "next((f.get('host') or f.get('endpoint') for f in d['flows'] if f['src'] == '$CLI_ADDR:$1' and f['dst'] == '$VIP:${2:-80}'), 'none')"
}
# assert_flow_host DESC HOST CLIENT_PORT [VIP_PORT]: the SLR's flow for the
# client port goes to HOST, waiting up to 5 s for it to appear (a download
# just started may not have sent its SYN through the SLR yet).
_flow_on() { [[ "$(flow_host "$2" "${3:-80}")" == "$1" ]]; }
assert_flow_host() {
  if wait_for 5 _flow_on "$2" "$3" "${4:-80}"; then ok "$1"; else
    not_ok "$1 (expected '$2', got '$(flow_host "$3" "${4:-80}")')"; fi
}

# ---------------------------------------------------------------------------
# Common bring-up: topology with N hosts, PKI, SLR allowing host1..hostN,
# agents and HTTP servers; waits until the SLR lists every host as up.
bring_up() {
  local n=$1 i specs=()
  topo_up "$n" || die "topology with $n hosts"
  make_pki "$PKI_DIR" "$n" || die "PKI"
  for ((i = 1; i <= n; i++)); do specs+=("host$i"); done
  write_slr_config "$RUN_DIR/slr.toml" "${specs[@]}"
  start_slr || die "SLR starts and answers on its status socket"
  for ((i = 1; i <= n; i++)); do
    start_http "$i" || die "HTTP server in h$i"
    write_host_config "$RUN_DIR/h$i.toml" "$i"
    start_host "$i" || die "host agent h$i starts"
  done
  local names=()
  for ((i = 1; i <= n; i++)); do names+=("host$i"); done
  wait_for 20 hosts_up "${names[@]}" || { slr_json hosts >&2; die "all $n hosts register (state up at the SLR)"; }
  ok "all $n hosts registered and up after ${WAITED_S}s"
}
