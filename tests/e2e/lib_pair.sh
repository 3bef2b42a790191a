# shellcheck shell=bash
# Helpers for the end-to-end tests with TWO SLRs side by side (issue 4: hot
# spare, WHOHAS).  Source it instead of lib.sh (it sources lib.sh and keeps
# all of it: ok / not_ok / assert_*, wait_for, json_get, captures, the EXIT
# trap, start_http / start_host, the host status helpers):
#   . "$(dirname "$0")/lib_pair.sh"
#
# Topology:
#   cli 10.0.1.2 --- 10.0.1.1 rtr br1 10.0.2.1 --- slrA 10.0.2.2
#                                             \--- slrB 10.0.2.3
#                             rtr br0 10.0.3.1 --- h1 10.0.3.11, h2 10.0.3.12, ...
# rtr routes the VIP subnet 10.100.0.0/24 via PAIR_VIP_VIA (default slrA's
# address; the hot-spare test uses the claimed address 10.0.2.100, which the
# active SLR of the pair holds); `pair_route_vip ADDR` moves it.  Replies go
# host -> rtr -> cli directly.  Every host registers with both SLRs (two
# [[slr]] entries; both tunnel sources accepted); both SLRs list every host
# in the same order (the hot spare compares a digest of the names).
# One CA; certificates slrA, slrB, host1..N (CN = name, PKI_DIR/NAME.pem).
#
# Modes (PAIR_MODE, read by pair_slr_config):
#   plain      two independent SLRs, no issue-4 keys (runs with any binary)
#   hot_spare  [hot_spare] on both: PAIR_ROLE[slrA]=main, PAIR_ROLE[slrB]=spare
#              (defaults), peer = the other, claim_interface eth0,
#              claim_addresses [PAIR_CLAIM/24]
#   neighbors  [[neighbor]] = the other SLR on both, [whohas] wait/scope
# Knobs: PAIR_HEARTBEAT (100ms), PAIR_DEAD_AFTER (500ms), PAIR_SYNC_INTERVAL
# (10ms), PAIR_WHOHAS_WAIT (50ms), PAIR_WHOHAS_SCOPE (1), PAIR_MIDSTREAM_WAIT
# (unset: the key is not written, the daemon's default applies),
# PAIR_LOG_LEVEL (info), and those of lib.sh's write_slr_config and
# write_host_config, which write the configs (SLR_WORKERS, SLR_FAST_PATH,
# HOST_DECAP, ...).
#
# Traffic: pair_dl (a Python HTTP/1.0 client, N parallel connections on fixed
# local ports, client-side rate limit, sha256 per connection, and the longest
# time any recv() blocked: the stall the client saw) and pair_craft_tcp (raw
# TCP segments from the client for a connection nobody has); pair_mix_start /
# pair_mix_finish, the mix of downloads and interactive connections the
# failover tests run across the failover.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PAIR_SLRS=(slrA slrB)
declare -A PADDR=([slrA]=10.0.2.2 [slrB]=10.0.2.3)
declare -A POTHER=([slrA]=slrB [slrB]=slrA)
declare -A PAIR_ROLE=([slrA]=main [slrB]=spare)
declare -A SPID=()
PAIR_CLAIM=10.0.2.100
PAIR_MODE=${PAIR_MODE:-plain}
PAIR_VIP_VIA=${PAIR_VIP_VIA:-${PADDR[slrA]}}

psock() { named_sock "$1"; }
plog()  { named_log "$1"; }

# ---------------------------------------------------------------------------
# Topology

pair_topo_up() {
  local n=${1:-2} i x names=(cli rtr "${PAIR_SLRS[@]}")
  N_HOSTS=$n
  for ((i = 1; i <= n; i++)); do names+=("h$i"); done
  _add_namespaces "${names[@]}" || return 1
  (
    set -e
    R="${P}rtr"
    _cli_port
    ip -n "$R" link add br1 type bridge
    ip -n "$R" addr add 10.0.2.1/24 dev br1
    ip -n "$R" link set br1 up
    for x in "${PAIR_SLRS[@]}"; do _bridge_port "$x" br1 "${PADDR[$x]}/24" 10.0.2.1; done
    ip -n "$R" link add br0 type bridge
    ip -n "$R" addr add 10.0.3.1/24 dev br0
    ip -n "$R" link set br0 up
    for ((i = 1; i <= n; i++)); do _bridge_port "h$i" br0 "$(host_addr "$i")/24" 10.0.3.1; done
    # Replies with the VIP as source arrive on br0 while the VIP route points
    # into br1.
    _rtr_forwarding vcli br1 br0
    ip -n "$R" route add $VIP_SUBNET via "$PAIR_VIP_VIA"
  ) || return 1
}

# pair_route_vip ADDR: rtr routes the VIP subnet via ADDR from now on.
pair_route_vip() { ip -n "${P}rtr" route replace $VIP_SUBNET via "$1"; }
# pair_vip_via: the next hop rtr uses for the VIP subnet now.
pair_vip_via() { ip -n "${P}rtr" route show $VIP_SUBNET | awk '{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}'; }
# pair_neigh_mac ADDR: the MAC rtr's neighbour table holds for ADDR ("none").
pair_neigh_mac() { ip -n "${P}rtr" neigh show "$1" dev br1 | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") { print $(i + 1); exit }} END {}' | grep . || echo none; }
# pair_mac NAME: MAC of NAME's eth0.
pair_mac() { ip -n "${P}$1" link show eth0 | awk '/link\/ether/ {print $2}'; }
# pair_has_addr NAME ADDR: ADDR is configured on NAME's eth0.
pair_has_addr() { ip -n "${P}$1" -4 addr show dev eth0 | grep -q "inet $2/"; }
# pair_where_claim: which namespaces hold the claim address now ("slrA slrB", "none").
pair_where_claim() {
  local x s=""
  for x in "${PAIR_SLRS[@]}"; do pair_has_addr "$x" "$PAIR_CLAIM" && s+="$x "; done
  echo "${s:-none}"
}

# ---------------------------------------------------------------------------
# PKI

pair_make_pki() {
  local dir=$PKI_DIR n=${1:-$N_HOSTS} i x
  mkdir -p "$dir" || return 1
  _pki_ca "$dir" ca "slrctl e2e pair CA" || return 1
  for x in "${PAIR_SLRS[@]}"; do
    _pki_leaf "$dir" "$x" "$x" ca "DNS:$x,IP:${PADDR[$x]}" || return 1
  done
  for ((i = 1; i <= n; i++)); do
    _pki_leaf "$dir" "host$i" "host$i" ca "DNS:host$i,IP:$(host_addr "$i")" || return 1
  done
  _pki_leaf "$dir" stranger stranger ca || return 1
}

# ---------------------------------------------------------------------------
# Configs

# pair_slr_config NAME: NAME's config on stdout: lib.sh's write_slr_config
# for NAME (its knobs apply) with every host, plus what PAIR_MODE adds.
pair_slr_config() {
  local n=$1 i hosts=() extra
  extra=$(_pair_mode_toml "$n") || return 1
  for ((i = 1; i <= N_HOSTS; i++)); do hosts+=("host$i"); done
  SLR_NAME=$n SLR_ADDR=${PADDR[$n]} SLR_SOCK=$(psock "$n") SLR_LOG_LEVEL=${PAIR_LOG_LEVEL:-info} \
    SLR_MIDSTREAM_WAIT=${PAIR_MIDSTREAM_WAIT:-} SLR_EXTRA=$extra write_slr_config /dev/stdout "${hosts[@]}"
}

# _pair_mode_toml NAME: the tables PAIR_MODE adds to NAME's config.
_pair_mode_toml() {
  local n=$1 o=${POTHER[$1]}
  case $PAIR_MODE in
    plain) ;;
    hot_spare)
      cat <<EOF
[hot_spare]
role = "${PAIR_ROLE[$n]}"
peer = "${PADDR[$o]}:$CONTROL_PORT"
peer_name = "$o"
heartbeat = "${PAIR_HEARTBEAT:-100ms}"
dead_after = "${PAIR_DEAD_AFTER:-500ms}"
sync_interval = "${PAIR_SYNC_INTERVAL:-10ms}"
claim_interface = "eth0"
claim_addresses = ["$PAIR_CLAIM/24"]
EOF
      ;;
    neighbors)
      cat <<EOF
[[neighbor]]
address = "${PADDR[$o]}:$CONTROL_PORT"
name = "$o"

[whohas]
wait = "${PAIR_WHOHAS_WAIT:-50ms}"
scope = ${PAIR_WHOHAS_SCOPE:-1}
EOF
      ;;
    *) echo "lib_pair.sh: unknown PAIR_MODE '$PAIR_MODE'" >&2; return 1 ;;
  esac
}

# pair_host_config I: host I's agent config on stdout: lib.sh's
# write_host_config (its knobs apply), registered with both SLRs.
pair_host_config() {
  local x slrs=""
  for x in "${PAIR_SLRS[@]}"; do slrs+="$x=${PADDR[$x]} "; done
  HOST_SLRS=$slrs write_host_config /dev/stdout "$1"
}

pair_write_configs() {
  local x i
  for x in "${PAIR_SLRS[@]}"; do pair_slr_config "$x" >"$RUN_DIR/$x.toml" || return 1; done
  for ((i = 1; i <= N_HOSTS; i++)); do pair_host_config "$i" >"$RUN_DIR/h$i.toml" || return 1; done
}

pair_check_configs() {
  local i files=("$RUN_DIR/slrA.toml" "$RUN_DIR/slrB.toml")
  for ((i = 1; i <= N_HOSTS; i++)); do files+=("$RUN_DIR/h$i.toml"); done
  check_config_files "${files[@]}"
}

# ---------------------------------------------------------------------------
# SLR processes

pair_answers() { named_answers "$1"; }
pair_alive() { [[ -n "${SPID[$1]:-}" ]] && kill -0 "${SPID[$1]}" 2>/dev/null; }

# pair_start_slr NAME [CONFIG]: the SLR in its namespace (log appended, so a
# restarted SLR keeps its earlier log above); waits for its status socket.
pair_start_slr() { start_named_slr "$@"; }

# pair_kill_slr NAME SIGNAL: signal it and reap it (KILL after 10 s), with a
# marker line in its log.  PAIR_STOP_RC = its exit status.
pair_kill_slr() {
  [[ -n "${SPID[$1]:-}" ]] && echo "---- SIG${2:-TERM} $(date +%T.%N)" >>"$(plog "$1")"
  stop_named_slr "$1" "${2:-TERM}" PAIR_STOP_RC
}

# ---------------------------------------------------------------------------
# Status access

pair_json() { named_json "$@"; }   # NAME status|hosts|flows
pair_get()  { named_get "$@"; }
# pcounter NAME EXPR: a value from NAME's status JSON ("0" when unreadable).
pcounter() { named_counter "$@"; }
# hs NAME KEY: status.hot_spare.KEY of NAME ("none" when unreadable).
hs() { pair_get "$1" status "d.get('hot_spare', {}).get('$2')" 2>/dev/null || echo none; }
# wh NAME KEY: status.whohas.KEY of NAME (0 when unreadable).
wh() { pair_get "$1" status "d.get('whohas', {}).get('$2', 0)" 2>/dev/null || echo 0; }
pair_host_state() { named_host_state "$2" "$1"; }  # HOST SLR
pair_hosts_up() {  # SLR: every host up at SLR
  local i
  for ((i = 1; i <= N_HOSTS; i++)); do [[ "$(pair_host_state "host$i" "$1")" == up ]] || return 1; done
}
pair_all_up() { local x; for x in "${PAIR_SLRS[@]}"; do pair_hosts_up "$x" || return 1; done; }

# pair_flow_host SLR SRC: the host SLR's flow table names for client SRC
# (ADDR:PORT; TCP to the VIP), or "none".
pair_flow_host() { named_flow_host "$@"; }
# pair_flows_of SLR PORT...: "port=host ..." for the client ports given (host "none" if absent).
pair_flows_of() {
  local s=$1; shift
  pair_get "$s" flows "' '.join('%s=%s' % (p, next((f['host'] for f in d['flows'] if f['src'] == '$CLI_ADDR:%s' % p), 'none')) for p in '$*'.split())"
}

# ---------------------------------------------------------------------------
# Bring-up: topology, PKI, configs (checked), both SLRs (slrA first), HTTP
# servers and agents; waits until both SLRs list every host up.

pair_bring_up() {
  local n=${1:-2} i x t0
  pair_topo_up "$n" || die "pair topology (cli, rtr, slrA, slrB, $n hosts)"
  pair_make_pki "$n" || die "PKI (one CA, slrA, slrB, host1..$n)"
  pair_write_configs || die "configs written"
  if pair_check_configs; then ok "slrctl check-config accepts both SLR configs ($PAIR_MODE) and $n host configs"
  else die "slrctl check-config accepts both SLR configs ($PAIR_MODE) and $n host configs"; fi
  for x in "${PAIR_SLRS[@]}"; do pair_start_slr "$x" || die "SLR $x starts and answers on its status socket"; done
  for ((i = 1; i <= n; i++)); do
    start_http "$i" || die "HTTP server in h$i"
    start_host "$i" || die "host agent h$i starts"
  done
  t0=$(now_s)
  if wait_for 30 pair_all_up; then
    ok "slrA and slrB list all $n hosts up ($(elapsed_s "$t0")s after the last agent started)"
  else
    for x in "${PAIR_SLRS[@]}"; do note "$x hosts: $(pair_json "$x" hosts 2>&1 | head -c 1500 | tr '\n' ' ')"; done
    die "slrA and slrB list all $n hosts up"
  fi
}

# pair_add_file NAME MB: the same MB MiB random file NAME in every host's
# web root (start_http first); sets FILE_SHA[NAME].
declare -A FILE_SHA=()
pair_add_file() {
  local name=$1 mb=$2 i src=$RUN_DIR/$1
  head -c "$((mb * 1024 * 1024))" /dev/urandom >"$src" || return 1
  FILE_SHA[$name]=$(sha256sum "$src" | cut -d' ' -f1)
  for ((i = 1; i <= N_HOSTS; i++)); do ln -f "$src" "$RUN_DIR/www$i/$name" || return 1; done
}

# ---------------------------------------------------------------------------
# Client: pair_dl TAG PATH N RATE BASE_PORT [SHA]
# N parallel HTTP/1.0 GETs of http://VIP/PATH from cli, local ports
# BASE_PORT..BASE_PORT+N-1, each read at RATE bytes/s (0 = as fast as
# possible), sha256 compared with SHA.  Background (DL_PID[TAG]); progress in
# RUN_DIR/TAG.progress, the result in RUN_DIR/TAG.json once all are done.
# Per connection: ok, bytes, error, max_block_ms (longest recv() wait: the
# stall this client saw) and when it started (epoch s).
declare -A DL_PID=()
_pair_write_dl_py() {
  [[ -f "$RUN_DIR/dl.py" ]] && return 0
  cat >"$RUN_DIR/dl.py" <<'PYEOF'
import hashlib, json, os, socket, sys, threading, time
host, path, n, rate, base, sha, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
timeout = float(os.environ.get("DL_TIMEOUT", "60"))
res = [dict(i=i, port=base + i if base else 0, ok=False, done=False, bytes=0, length=None, error=None,
            max_block_ms=0.0, max_block_at=None, started=None, finished=None) for i in range(n)]

def one(r):
    r["started"] = time.time()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if r["port"]:
            s.bind(("0.0.0.0", r["port"]))
        s.settimeout(timeout)
        s.connect((host, 80))
        r["port"] = s.getsockname()[1]
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise EOFError("connection closed in the header (%d bytes)" % len(buf))
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 200 " not in lines[0] + " ":
            raise ValueError("status line %r" % lines[0])
        clen = next(int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:"))
        r["length"] = clen
        h = hashlib.sha256(body)
        got = len(body)
        t0 = time.monotonic()
        while got < clen:
            if rate > 0:
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            tb = time.monotonic()
            d = s.recv(min(65536, clen - got))
            blk = (time.monotonic() - tb) * 1000.0
            if blk > r["max_block_ms"]:
                r["max_block_ms"] = blk
                r["max_block_at"] = time.time() - blk / 1000.0
            if not d:
                raise EOFError("connection closed after %d of %d bytes" % (got, clen))
            h.update(d)
            got += len(d)
            r["bytes"] = got
        r["sha256"] = h.hexdigest()
        r["ok"] = (sha in ("", "-") or r["sha256"] == sha)
        if not r["ok"]:
            r["error"] = "sha256 mismatch"
        s.close()
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        r["finished"] = time.time()
        r["done"] = True

def dump(fn):
    tmp = fn + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"conns": res, "ok": sum(r["ok"] for r in res), "done": sum(r["done"] for r in res),
                   "n": n, "bytes": sum(r["bytes"] for r in res)}, f)
    os.rename(tmp, fn)

ts = [threading.Thread(target=one, args=(r,), daemon=True) for r in res]
for t in ts:
    t.start()
while any(t.is_alive() for t in ts):
    dump(out + ".progress")
    time.sleep(0.1)
dump(out + ".progress")
dump(out)
PYEOF
}
pair_dl() {
  local tag=$1 path=$2 n=$3 rate=$4 base=$5 sha=${6:--}
  _pair_write_dl_py
  rm -f "$RUN_DIR/$tag.json" "$RUN_DIR/$tag.json.progress"
  ip netns exec "${P}cli" "$PY" "$RUN_DIR/dl.py" "$VIP" "$path" "$n" "$rate" "$base" "$sha" "$RUN_DIR/$tag.json" \
    >"$RUN_DIR/$tag.log" 2>&1 </dev/null &
  DL_PID[$tag]=$!
  _PIDS+=("$!")
}
# dl_get TAG EXPR: EXPR over the progress (or final) JSON of TAG (`d`).
dl_get() {
  local f=$RUN_DIR/$1.json
  [[ -f "$f" ]] || f=$f.progress
  [[ -f "$f" ]] || { echo 0; return 1; }
  json_get "$f" "$2"
}
# dl_all_receiving TAG: every connection of TAG has body bytes.
dl_all_receiving() { [[ "$(dl_get "$1" "all(r['bytes'] > 0 for r in d['conns'])" 2>/dev/null)" == true ]]; }
dl_running() { kill -0 "${DL_PID[$1]}" 2>/dev/null; }
dl_finished() { [[ -f "$RUN_DIR/$1.json" ]]; }
# dl_wait TAG TIMEOUT: until TAG's client exited; 1 on timeout.
dl_wait() { wait_for "$2" dl_finished "$1" && wait "${DL_PID[$1]}" 2>/dev/null; dl_finished "$1"; }
# dl_ports TAG: the local ports of TAG's connections.
dl_ports() { dl_get "$1" "' '.join(str(r['port']) for r in d['conns'])"; }
# dl_failures TAG: "port: error" for every connection that is not ok.
dl_failures() { dl_get "$1" "'; '.join('%s: %s (%s of %s bytes)' % (r['port'], r['error'], r['bytes'], r['length']) for r in d['conns'] if not r['ok']) or 'none'"; }
# dl_max_block_ms TAG: the longest recv() wait over TAG's connections (integer ms).
dl_max_block_ms() { dl_get "$1" "int(max(r['max_block_ms'] for r in d['conns']))"; }
# dl_block_after TAG T: the longest recv() wait that ended after epoch T (ms; the stall across an event).
dl_block_after() {
  dl_get "$1" "int(max([r['max_block_ms'] for r in d['conns'] if r['max_block_at'] and r['max_block_at'] + r['max_block_ms'] / 1000.0 >= $2] or [0]))"
}

# The traffic mix of the failover tests (test_hot_spare, test_whohas), all
# through the SLR that has the VIP route:
# pair_mix_start PING_TAG PING_PORT: `long` (one download of /big.bin at
# LONG_RATE from LONG_PORT, sha BIG_SHA), `batch` (N_CONNS downloads of
# /mid.bin at SLOW_RATE from BATCH_PORT, sha MID_SHA) and PING_TAG (N_PING
# interactive connections, a round trip every 20 ms, from PING_PORT); returns
# once every connection carries data (dies otherwise).  MIX_PORTS = their
# local ports, MIX_N = how many.
pair_mix_start() {
  local tag=$1 port=$2
  pair_dl long /big.bin 1 "$LONG_RATE" "$LONG_PORT" "$BIG_SHA"
  pair_dl batch /mid.bin "$N_CONNS" "$SLOW_RATE" "$BATCH_PORT" "$MID_SHA"
  wait_for 15 dl_all_receiving long || die "the long download receives data"
  wait_for 15 dl_all_receiving batch || die "all $N_CONNS slow downloads receive data"
  pair_ping "$tag" "$N_PING" 20 "$port"
  wait_for 15 ping_all_going "$tag" || die "$N_PING interactive connections echo"
  MIX_PORTS="$(dl_ports long) $(dl_ports batch) $(dl_ports "$tag")"
  MIX_N=$((N_CONNS + 1 + N_PING))
}
# pair_mix_finish PING_TAG ACROSS: waits for the mix to end (90 s) and checks
# that every transfer completed byte for byte and every interactive
# connection survived ACROSS (e.g. "the takeover").  MIX_LOST = connections
# lost.
pair_mix_finish() {
  local tag=$1 across=$2 good
  dl_wait long 90 || not_ok "the long download finished within 90 s"
  dl_wait batch 90 || not_ok "the slow downloads finished within 90 s"
  pair_ping_stop "$tag" || not_ok "the interactive connections finish"
  good=$(( $(dl_get long "d['ok']") + $(dl_get batch "d['ok']") + $(dl_get "$tag" "d['ok']") ))
  MIX_LOST=$((N_CONNS + 1 + N_PING - good))
  assert_eq "the long download completed byte for byte across $across" 1 "$(dl_get long "d['ok']")"
  assert_eq "all $N_CONNS slow downloads completed byte for byte across $across" "$N_CONNS" "$(dl_get batch "d['ok']")"
  assert_eq "all $N_PING interactive connections survived $across" "$N_PING" "$(dl_get "$tag" "d['ok']")"
  ((MIX_LOST == 0)) || note "failed: long: $(dl_failures long); batch: $(dl_failures batch); interactive: $(ping_failures "$tag")"
}

# pair_craft_tcp SPORT COUNT INTERVAL_S: COUNT raw TCP ACK+PSH segments (10
# bytes of payload) from the client's SPORT to VIP:80, INTERVAL_S apart: a
# connection nobody has.  Runs in the foreground.
pair_craft_tcp() {
  ns_py_raw cli "$CLI_ADDR" "$1" "$VIP" 80 "$2" "$3" <<'PYEOF'
import random, socket, struct, sys, time
src, sport, dst, dport, count, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
seq, ack = random.getrandbits(32), random.getrandbits(32)
payload = b"midstream!"
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for k in range(count):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x18, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = csum(pseudo + hdr + payload)
    hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
    s.sendto(hdr + payload, (dst, 0))
    if k + 1 < count:
        time.sleep(interval)
PYEOF
}

# ms_between A B: (B - A) in integer milliseconds (epoch seconds with fractions).
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
# figure NAME VALUE: one line the lead collects.
figure() { echo "# figure: $1 $2"; }

# pair_block_hosts NAME / pair_unblock_hosts NAME: NAME's control port refuses
# (TCP reset) connections from the hosts' segment 10.0.3.0/24: hosts cannot
# register there, everything else is untouched.
pair_block_hosts() {
  ns "$1" nft -f - <<NFT
table inet slr_e2e_block {
  chain input {
    type filter hook input priority -10; policy accept;
    ip saddr 10.0.3.0/24 tcp dport $CONTROL_PORT reject with tcp reset
  }
}
NFT
}
pair_unblock_hosts() { ns "$1" nft delete table inet slr_e2e_block; }
# pair_distinct_flows NAME: distinct flows (by 5-tuple) in NAME's flow dump:
# with several workers a mirrored flow sits in every worker's table.
pair_distinct_flows() { pair_get "$1" flows "len(set((f['proto'], f['src'], f['dst']) for f in d['flows']))"; }

# ---------------------------------------------------------------------------
# Interactive connections: the client sends through the SLR, so a stall of
# the client->VIP path shows up in full (a download's data bypasses the SLR,
# and its receive buffer hides short stalls).
#
# pair_start_echo I: a TCP echo server on hI:ECHO_PORT (threaded Python).
ECHO_PORT=9000
pair_start_echo() {
  local i=$1
  _bg "h$i" "$RUN_DIR/echo$i.log" "$PY" -c '
import socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(4096)
            if not d:
                return
            self.request.sendall(d)
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
' "$ECHO_PORT"
  wait_for 10 ns "h$i" "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $ECHO_PORT), 1).close()" || {
    echo "# echo server in h$i did not come up" >&2; cat "$RUN_DIR/echo$i.log" >&2; return 1; }
}

# pair_ping TAG N INTERVAL_MS BASE_PORT: N connections to VIP:ECHO_PORT from
# local ports BASE_PORT.., each sending 8 bytes every INTERVAL_MS and waiting
# for the echo (timeout 60 s), until pair_ping_stop TAG.  Result in
# RUN_DIR/TAG.json: per connection ok, error, rounds, max_rtt_ms (the longest
# round trip: the stall this connection saw) and when it started (epoch s).
pair_ping() {
  local tag=$1 n=$2 iv=$3 base=$4
  rm -f "$RUN_DIR/$tag.json" "$RUN_DIR/$tag.json.progress" "$RUN_DIR/$tag.stop"
  ip netns exec "${P}cli" "$PY" -c '
import json, os, socket, struct, sys, threading, time
host, port, n, iv, base, out, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000, int(sys.argv[5]), sys.argv[6], sys.argv[7]
res = [dict(i=i, port=base + i, ok=False, done=False, rounds=0, error=None, max_rtt_ms=0.0, max_rtt_at=None, slow=[]) for i in range(n)]
def one(r):
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind(("0.0.0.0", r["port"]))
        s.settimeout(60)
        s.connect((host, port))
        k = 0
        while not os.path.exists(stop):
            t0 = time.monotonic()
            s.sendall(struct.pack("!Q", k))
            got = b""
            while len(got) < 8:
                d = s.recv(8 - len(got))
                if not d:
                    raise EOFError("closed after %d rounds" % k)
                got += d
            if struct.unpack("!Q", got)[0] != k:
                raise ValueError("echo out of order at round %d" % k)
            rtt = (time.monotonic() - t0) * 1000
            if rtt > r["max_rtt_ms"]:
                r["max_rtt_ms"] = rtt
                r["max_rtt_at"] = time.time() - rtt / 1000
            if rtt > 20 and len(r["slow"]) < 500:
                r["slow"].append([time.time() - rtt / 1000, rtt])
            k += 1
            r["rounds"] = k
            time.sleep(iv)
        s.close()
        r["ok"] = True
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        r["done"] = True
def dump(fn):
    with open(fn + ".tmp", "w") as f:
        json.dump({"conns": res, "ok": sum(r["ok"] for r in res), "done": sum(r["done"] for r in res), "n": n}, f)
    os.rename(fn + ".tmp", fn)
ts = [threading.Thread(target=one, args=(r,), daemon=True) for r in res]
for t in ts:
    t.start()
while any(t.is_alive() for t in ts):
    dump(out + ".progress")
    time.sleep(0.1)
dump(out)
' "$VIP" "$ECHO_PORT" "$n" "$iv" "$base" "$RUN_DIR/$tag.json" "$RUN_DIR/$tag.stop" >"$RUN_DIR/$tag.log" 2>&1 </dev/null &
  DL_PID[$tag]=$!
  _PIDS+=("$!")
}
# ping_all_going TAG: every connection of TAG has done a round trip.
ping_all_going() { [[ "$(dl_get "$1" "all(r['rounds'] > 0 for r in d['conns'])" 2>/dev/null)" == true ]]; }
# pair_ping_stop TAG: ask TAG's connections to finish; waits for the result (30 s).
pair_ping_stop() { touch "$RUN_DIR/$1.stop"; dl_wait "$1" 70; }
# ping_stall_after TAG T: the longest round trip (over 20 ms) that ended after epoch T (ms; 0 = none).
ping_stall_after() {
  dl_get "$1" "int(max([rtt for r in d['conns'] for at, rtt in r['slow'] if at + rtt / 1000.0 >= $2] or [0]))"
}
ping_failures() { dl_get "$1" "'; '.join('%s: %s after %s rounds' % (r['port'], r['error'], r['rounds']) for r in d['conns'] if not r['ok']) or 'none'"; }
