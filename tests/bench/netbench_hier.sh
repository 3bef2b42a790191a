#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# netbench_hier.sh: connections/s and bulk throughput through a THREE-LEVEL SLR
# hierarchy (issue 3), with shortcut signalling off and on, next to direct
# routing and HAProxy, on one topology, in one run.
#
#   bash tests/bench/netbench_hier.sh --slrctl build/slrctl --slrbench build/slrbench [--out f.json]
#
# Topology: tests/e2e/lib_hier.sh (network SLR `net` -> system SLRs sysA/sysB
# -> site SLRs siteA1..siteB2 -> 8 hosts, all on one bridge in rtr; rtr routes
# the VIP subnet to net).  `slrbench server` runs on port 80 in all 8 hosts.
# Paths, all measured from the client namespaces (cli, cli2..):
#   direct           cli -> hA1a 10.9.11.1:80   kernel routing only, no balancer
#   haproxy          cli -> VIP 10.100.0.10:80  HAProxy (mode tcp) in the net
#                    namespace, VIP a local address there, round robin to the 8
#                    hosts' real addresses (replies back through HAProxy)
#   hier-off         cli -> VIP   net -> sys -> site -> host, IP-in-IP at every
#                    level, every client packet through three userspace SLRs,
#                    replies straight from the host (DSR)
#   hier-on          the same with [slr].shortcut = true everywhere and the
#                    hosts accepting shortcut_sources: the lower levels see a
#                    flow's first packet, net tunnels the rest straight to the host
#   hier-off-kernel, hier-on-kernel (--kernel): the same with every SLR's
#                    kernel fast path on its uplink (fast_path_interfaces =
#                    ["eth0"]: the network SLR encapsulates, the levels below
#                    re-tunnel) and kernel tunnel decapsulation on the hosts
#                    (decap_interfaces = ["eth0"])
# For each path: `slrbench crr` (one TCP connection per request, from 16
# client namespaces at once so that every connection is a new flow: see
# CLIENTS below) and `slrbench bulk` (from cli), median of --runs runs.  For
# every hierarchy path the status counters of all 7 SLRs and 8 host agents
# are read before and after its runs and checked: net and the hosts carried the client packets, the system and
# site SLRs got every new flow tunnelled, shortcuts were (on) / were not (off)
# applied.  A path whose counters do not add up is reported INVALID (a
# mis-route must not pass as a fast result).
#
# Prints a table with each path's figures and its ratio to direct, the
# targets for the shortcut-on paths (conn/s >= 0.80 x direct, bulk >= 0.95 x
# direct: MET / MISSED, reported, not enforced), and one JSON summary line
# (prefixed "netbench_hier_summary: "); --out writes the full summary (every
# run's raw output, counter deltas).  About 2 minutes with the defaults on the
# 2-core development VM, under 3 with --kernel.  Namespaces, daemons and
# the run directory are removed on exit, also on failure or Ctrl-C (lib.sh's
# EXIT trap).
#
# Exit: 0 every selected path measured (and, for the hierarchy paths, its
# counters verified); 1 a path could not be measured or failed verification;
# 2 usage; 77 not root (skip).
set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib_bench.sh
. "$BENCH_DIR/lib_bench.sh"

usage() {
  cat >&2 <<'EOF'
usage: netbench_hier.sh --slrctl PATH --slrbench PATH [options]
  --out FILE          write the full JSON summary here
  --runs N            runs per measurement, median reported (default 3)
  --duration S        seconds per connections/s run (default 5)
  --concurrency C     parallel connections for connections/s (default 32)
  --bulk-bytes N      bytes per bulk stream, K/M/G suffixes (default 512M)
  --streams K         parallel bulk streams (default 4)
  --paths LIST        comma-separated subset of direct,haproxy,hier-off,hier-on,
                      hier-off-kernel,hier-on-kernel (default direct,haproxy,hier-off,hier-on)
  --kernel            add hier-off-kernel and hier-on-kernel to the paths
  --shortcut-wait D   [slr].shortcut_wait of the shortcut-on paths (default 20ms,
                      the product default)
  --workers N         worker threads per SLR (default 1)
  --closing D         the SLRs' [flows.timeouts] tcp_closing (default 1s; see below)
  --clients K         client namespaces running crr at once (default 16; see below)
  --keep              keep the run directory (logs, configs, status snapshots)
EOF
  exit 2
}

# The other options' defaults: lib_bench.sh.
BULK_BYTES=512M
PATHS="direct,haproxy,hier-off,hier-on"
KERNEL=0
SC_WAIT=20ms
CLOSING=1s
CLIENTS=16
ALL_PATHS="direct haproxy hier-off hier-on hier-off-kernel hier-on-kernel"

while (($#)); do
  case $1 in
    --kernel) KERNEL=1; shift ;;
    --shortcut-wait | --closing | --clients)
      (($# >= 2)) || { echo "netbench_hier: $1 needs a value" >&2; usage; }
      case $1 in
        --shortcut-wait) SC_WAIT=$2 ;;
        --closing) CLOSING=$2 ;;
        --clients) CLIENTS=$2 ;;
      esac
      shift 2 ;;
    *) bench_option netbench_hier "$@"; shift "$BENCH_SHIFT" ;;
  esac
done
bench_check_options netbench_hier
[[ "$BULK_BYTES" =~ ^[1-9][0-9]*[KMGkmg]?$ ]] || { echo "netbench_hier: --bulk-bytes: expected N[K|M|G], got '$BULK_BYTES'" >&2; usage; }
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || { echo "netbench_hier: --workers: expected 1..64, got '$WORKERS'" >&2; usage; }
[[ "$SC_WAIT" =~ ^[0-9]+(ms|s)$ ]] || { echo "netbench_hier: --shortcut-wait: expected e.g. 20ms, got '$SC_WAIT'" >&2; usage; }
[[ "$CLOSING" =~ ^[0-9]+(ms|s)$ ]] || { echo "netbench_hier: --closing: expected e.g. 1s, got '$CLOSING'" >&2; usage; }
if ! [[ "$CLIENTS" =~ ^[1-9][0-9]?$ ]] || ((CLIENTS > 16 || CLIENTS > CONCURRENCY)); then
  echo "netbench_hier: --clients: expected 1..16 and <= --concurrency, got '$CLIENTS'" >&2; usage
fi
((KERNEL)) && PATHS+=",hier-off-kernel,hier-on-kernel"
declare -A WANT=()
IFS=, read -ra _p <<<"$PATHS"
for x in "${_p[@]}"; do
  [[ " $ALL_PATHS " == *" $x "* ]] || { echo "netbench_hier: --paths: unknown path '$x'" >&2; usage; }
  WANT[$x]=1
done
HIER_WANTED=0
for x in hier-off hier-on hier-off-kernel hier-on-kernel; do [[ -n "${WANT[$x]:-}" ]] && HIER_WANTED=1; done
((HIER_WANTED)) && [[ -z "$BENCH_SLRCTL" ]] && { echo "netbench_hier: --slrctl is required for the hierarchy paths" >&2; usage; }

bench_check_files netbench_hier

# shellcheck source=../e2e/lib_hier.sh
. "$BENCH_DIR/../e2e/lib_hier.sh"
[[ -n "$BENCH_SLRCTL" ]] && SLRCTL=$BENCH_SLRCTL
# Quiet daemons; one client's connections spread over all 8 hosts.
# The kernel paths set the fast path on every SLR (bench_configs).
export HIER_LOG_LEVEL=warn HOST_LOG_LEVEL=warn SLR_WORKERS=$WORKERS HIER_SPREAD=1 HIER_FAST_PATH=""
# Flow table capacity of every SLR (lib_hier: 65536).  In the kernel paths a
# finished flow stays in net's table for its userspace state's timeout
# (tcp_syn 10 s, tcp_established 300 s: see below), so ~15k conn/s filled a
# 131072-entry table in one run; a full table falls back to stateless
# forwarding (no shortcut; broken connections were seen when the table had
# room again), which is not what the bench measures.
FLOW_CAPACITY=1048576
# Every connection must be a new flow, as it is with many real clients.  One
# client address has ~32k (even) ephemeral ports, handed out in turn, so at
# ~10k conn/s a port comes back after ~3 s, and that connection rides its old
# flow's entry if one is still there: at net with lib_hier's tcp_closing =
# 10s (5 connections per flow measured with one client); at net in the kernel
# paths until the userspace state's own timeout (tcp_syn 10 s, or
# tcp_established 300 s once userspace saw an ACK: the fast path's FIN/RST is
# only looked at after that); and at the system / site SLRs below a shortcut,
# which never see the rest of the flow (their entry then sends no SHORTCUT
# and net's held packets wait shortcut_wait for nothing).  So crr runs from
# --clients (16) namespaces with their own addresses at once, each with its
# share of --concurrency, so that a client's ports do not come round within
# a path's runs; the SLRs close flows --closing (1 s) after FIN/RST; and
# verify warns when net created < 0.9 flows per connection.
DIRECT_HOST=hA1a

require_root
e2e_init
T_START=$SECONDS

bench_results_init

# ---------------------------------------------------------------- set-up

note "netbench_hier: paths $PATHS; runs=$RUNS crr ${DURATION}s x $CONCURRENCY from $CLIENTS clients; bulk ${STREAMS}x$BULK_BYTES; shortcut_wait $SC_WAIT; tcp_closing $CLOSING; SLR workers $WORKERS"
hier_topo_up || die "hierarchy topology (17 namespaces)"
if ((HIER_WANTED)); then
  hier_make_pki || die "PKI (one CA, a certificate per SLR and host)"
fi
# Client namespaces: cli (lib_hier's, 10.0.1.2) and cli2..cliK, each on its
# own veth to rtr: 10.0.(10+k).2/24 via 10.0.(10+k).1.  rtr's rp_filter is
# off for all and default, so the new interfaces have it off too.
CLIENT_NS=(cli)
for ((k = 2; k <= CLIENTS; k++)); do
  _add_ns "cli$k" || die "namespace cli$k"
  {
    ip -n "${P}rtr" link add "vcli$k" type veth peer name eth0 netns "${P}cli$k" &&
      ip -n "${P}rtr" addr add "10.0.$((10 + k)).1/24" dev "vcli$k" &&
      ip -n "${P}rtr" link set "vcli$k" up &&
      ip -n "${P}cli$k" addr add "10.0.$((10 + k)).2/24" dev eth0 &&
      ip -n "${P}cli$k" link set eth0 up &&
      ip -n "${P}cli$k" route add default via "10.0.$((10 + k)).1"
  } || die "client namespace cli$k wired to rtr"
  CLIENT_NS+=("cli$k")
done
for c in "${CLIENT_NS[@]}"; do
  bench_client_ns "$c"
done
bench_client_ns net
for h in "${HIER_HOSTS[@]}"; do
  bench_server "$h"
done

for h in "${HIER_HOSTS[@]}"; do
  wait_for 10 crr_ok "${HADDR[$h]}:$PORT" || die "slrbench server answers in $h"
done
ok "slrbench servers up in all 8 hosts (after $((SECONDS - T_START))s)"

# crr_clients TARGET: one connections/s run from all client namespaces at once
# (--concurrency split between them); prints their results merged into one
# JSON object: counts and rates summed, p50 the connection-weighted mean of
# the clients' p50s, p99 the largest client p99.  Fails if any client fails.
# shellcheck disable=SC2317  # called through bench_measure
crr_clients() {
  local target=$1 k c pids=() rc=0
  for ((k = 0; k < CLIENTS; k++)); do
    c=$((CONCURRENCY / CLIENTS + (k < CONCURRENCY % CLIENTS ? 1 : 0)))
    ns "${CLIENT_NS[k]}" timeout $(( ${DURATION%.*} + 20 )) "$SLRBENCH" crr --target "$target" \
      --duration "$DURATION" --concurrency "$c" >"$RUN_DIR/crr.$k.json" 2>>"$RUN_DIR/client.log" &
    pids+=($!)
  done
  for k in "${!pids[@]}"; do wait "${pids[k]}" || rc=1; done
  ((rc == 0)) || { cat "$RUN_DIR"/crr.*.json; return 1; }
  "$PY" - "$RUN_DIR" "$CLIENTS" <<'PYEOF'
import json, sys
rs = [json.load(open(f"{sys.argv[1]}/crr.{k}.json")) for k in range(int(sys.argv[2]))]
n = sum(r["connections"] for r in rs)
m = {"connections_per_s": sum(r["connections_per_s"] for r in rs), "errors": sum(r["errors"] for r in rs),
     "p50_us": round(sum(r["p50_us"] * r["connections"] for r in rs) / max(n, 1)),
     "p99_us": max(r["p99_us"] for r in rs), "connections": n,
     "seconds": max(r["seconds"] for r in rs), "concurrency": sum(r["concurrency"] for r in rs),
     "error_kinds": {k: sum(r["error_kinds"].get(k, 0) for r in rs) for k in rs[0].get("error_kinds", {})},
     "clients": rs}
print(json.dumps(m, separators=(",", ":")))
PYEOF
}

# measure PATH TARGET: RUNS x (crr, bulk) into $RESULTS/PATH.{crr,bulk}.jsonl
# A failed run is reported (and fails the bench) but the other runs go on, so
# the path still shows figures; returns 1 when no crr run succeeded.
measure() { bench_measure "$1" "$2" crr_clients 1; }

# ---------------------------------------------------------------- direct

if [[ -n "${WANT[direct]:-}" ]]; then
  T0=$SECONDS
  measure direct "${HADDR[$DIRECT_HOST]}:$PORT"
  echo "$((SECONDS - T0))" >"$RESULTS/direct.seconds"
fi

# --------------------------------------------------------------- haproxy

# In the net namespace (where rtr routes the VIP subnet), before any SLR runs
# there, so the VIP is never both a local address and routed into a TUN.
if [[ -n "${WANT[haproxy]:-}" ]]; then
  T0=$SECONDS
  SERVERS=()
  for h in "${HIER_HOSTS[@]}"; do SERVERS+=("$h" "${HADDR[$h]}"); done
  bench_haproxy net "${SERVERS[@]}"
  echo "$((SECONDS - T0))" >"$RESULTS/haproxy.seconds"
fi

# ------------------------------------------------------------- hierarchy

# bench_configs SHORTCUT KERNEL: lib_hier's configs, then the bench's changes
# (lib_hier.sh has no knobs for them): bigger flow tables everywhere; with
# KERNEL every SLR's fast path on its uplink.
bench_configs() {
  local sc=$1 kernel=$2 x f
  HIER_SHORTCUT=$sc HIER_SHORTCUT_WAIT=$SC_WAIT HOST_DECAP=$( ((kernel)) && echo eth0) \
    HIER_FAST_PATH=$( ((kernel)) && echo eth0) hier_write_configs || return 1
  for x in "${HIER_SLRS[@]}"; do
    f=$RUN_DIR/$x.toml
    grep -q '^capacity = ' "$f" || { echo "# $x.toml: no [flows] capacity line to raise" >&2; return 1; }
    grep -q '^tcp_closing = ' "$f" || { echo "# $x.toml: no tcp_closing line to change" >&2; return 1; }
    sed -i -e "s/^capacity = .*/capacity = $FLOW_CAPACITY/" -e "s/^tcp_closing = .*/tcp_closing = \"$CLOSING\"/" "$f" || return 1
  done
  if ((kernel)); then
    grep -q '^fast_path_interfaces = \["eth0"\]' "$RUN_DIR/net.toml" ||
      { echo "# SLR configs: HIER_FAST_PATH did not give fast_path_interfaces = [\"eth0\"]" >&2; return 1; }
    grep -q '^decap_interfaces = \["eth0"\]' "$RUN_DIR/${HIER_HOSTS[0]}.toml" ||
      { echo "# host configs: HOST_DECAP did not give decap_interfaces = [\"eth0\"]" >&2; return 1; }
  fi
  hier_check_configs
}

# snap PATH TAG: status JSON of every SLR and host agent into $RESULTS/PATH.TAG.NAME.json
snap() {
  local x
  for x in "${HIER_SLRS[@]}" "${HIER_HOSTS[@]}"; do
    hier_json "$x" status >"$RESULTS/$1.$2.$x.json" 2>/dev/null || { echo "# status of $x failed" >&2; return 1; }
  done
}

stop_hier() {
  local pids=() x
  for x in "${HIER_HOSTS[@]}"; do pids+=("${HPID[$x]:-}"); HPID[$x]=""; done
  for x in "${HIER_SLRS[@]}"; do pids+=("${SPID[$x]:-}"); SPID[$x]=""; done
  # SIGTERM: the daemons remove their routes, TUN devices and kernel paths.
  _kill_pids "${pids[@]}"
}

# verify PATH SHORTCUT: the counter deltas between PATH's snapshots show the
# traffic went through the hierarchy (see the header).  Prints a summary,
# writes $RESULTS/PATH.verify.json, returns 1 when a check fails.
verify() {
  "$PY" - "$RESULTS" "$1" "$2" "$RUNS" "$STREAMS" "${HIER_SLRS[*]}" "${HIER_HOSTS[*]}" <<'PYEOF'
import json, os, sys
res, path, sc, runs, streams = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
slrs, hosts = sys.argv[6].split(), sys.argv[7].split()
def load(tag, n):
    return json.load(open(os.path.join(res, f"{path}.{tag}.{n}.json")))
def get(d, keys):
    for k in keys:
        d = d.get(k, {}) if isinstance(d, dict) else {}
    return d if isinstance(d, (int, float)) else 0
def delta(n, *keys):
    return get(load("after", n), keys) - get(load("before", n), keys)
crr = [json.loads(l) for l in open(os.path.join(res, f"{path}.crr.jsonl")) if l.strip()]
conns = sum(r["connections"] for r in crr) + runs * streams   # completed connections
sys_slrs = [s for s in slrs if s.startswith("sys")]
sites = [s for s in slrs if s.startswith("site")]
v = {"connections": conns,
     "net": {k: delta("net", *k.split(".")) for k in
             ("packets.rx", "packets.tx", "packets.fast_path", "flows.created", "flows.stateless_forwarded",
              "shortcut.applied", "shortcut.packets", "shortcut.held_packets", "shortcut.released_packets",
              "shortcut.hold_timeouts", "shortcut.hold_overflow", "drops_total")},
     "sys_tunnel_rx": sum(delta(s, "level", "tunnel_rx") for s in sys_slrs),
     "site_tunnel_rx": sum(delta(s, "level", "tunnel_rx") for s in sites),
     # Everything a site SLR forwarded, its workers and its kernel fast path
     # (which re-tunnels established flows without a worker seeing them).
     "site_rx": sum(delta(s, "packets", "rx") for s in sites),
     "site_fast_path": sum(delta(s, "packets", "fast_path") for s in sites),
     "site_shortcut_sent": sum(delta(s, "shortcut", "sent") for s in sites),
     "sys_shortcut_relayed": sum(delta(s, "shortcut", "relayed") for s in sys_slrs),
     "lower_drops": sum(delta(s, "drops_total") for s in sys_slrs + sites),
     "host_tunnel_packets": {h: delta(h, "tunnel", "packets") for h in hosts},
     "host_kernel_decap_packets": sum(delta(h, "kernel_decap", "packets") for h in hosts)}
net = v["net"]
F = net["flows.created"]
htot = sum(v["host_tunnel_packets"].values())
# Mis-route checks: a failure makes the path INVALID.
checks = [
    (f"net received the client packets: rx {net['packets.rx']} >= 2 x {conns} connections", net["packets.rx"] >= 2 * conns),
    (f"net created flows: {F} > 0", F > 0),
    # Each flow net creates goes down to a system SLR (its first packet at least).
    (f"the system SLRs got every new flow tunnelled: tunnel_rx {v['sys_tunnel_rx']} >= 0.9 x {F}", v["sys_tunnel_rx"] >= 0.9 * F),
    (f"the hosts decapsulated the client packets: {htot} >= 2 x {conns}", htot >= 2 * conns),
]
if sc:
    checks.append((f"net applied shortcuts: {net['shortcut.applied']} >= 0.5 x {F} flows", net["shortcut.applied"] >= 0.5 * F))
    checks.append((f"the site SLRs sent shortcuts: {v['site_shortcut_sent']} >= 0.5 x {F} flows", v["site_shortcut_sent"] >= 0.5 * F))
else:
    checks.append((f"no shortcut applied at net: {net['shortcut.applied']}", net["shortcut.applied"] == 0))
    checks.append((f"every client packet crossed a site SLR: {v['site_rx']} >= 2 x {conns}", v["site_rx"] >= 2 * conns))
v["checks"] = [{"check": c, "ok": bool(o)} for c, o in checks]
v["verified"] = all(o for _, o in checks)
# Measurement-quality warnings (reported, not failing): connections that rode
# an old flow's entry (a reused client port) skip the new-flow path.
v["flows_per_connection"] = F / max(conns, 1)
v["reuse"] = v["flows_per_connection"] < 0.9
v["flows_without_shortcut"] = max(F - net["shortcut.applied"], 0) if sc else None
used = sum(1 for x in v["host_tunnel_packets"].values() if x > 0)
print(f"# {path} counters: {conns} connections; net rx {net['packets.rx']} (kernel {net['packets.fast_path']}), "
      f"flows {F} ({F / max(conns, 1):.2f}/conn), stateless {net['flows.stateless_forwarded']}, shortcut applied {net['shortcut.applied']}, "
      f"held {net['shortcut.held_packets']} released {net['shortcut.released_packets']} "
      f"timeouts {net['shortcut.hold_timeouts']} overflow {net['shortcut.hold_overflow']}, drops {net['drops_total']}")
print(f"# {path} counters: system SLRs tunnel_rx {v['sys_tunnel_rx']} ({v['sys_tunnel_rx'] / max(conns, 1):.1f}/conn), "
      f"sites tunnel_rx {v['site_tunnel_rx']} ({v['site_tunnel_rx'] / max(conns, 1):.1f}/conn), "
      f"sites forwarded {v['site_rx']} (kernel {v['site_fast_path']}), "
      f"sites sent {v['site_shortcut_sent']} shortcuts, systems relayed {v['sys_shortcut_relayed']}, "
      f"lower-level drops {v['lower_drops']}; hosts decapsulated {htot} (kernel {v['host_kernel_decap_packets']}), "
      f"{used}/{len(hosts)} hosts used")
for c, o in checks:
    if not o:
        print(f"# {path} check FAILED: {c}")
if v["reuse"]:
    print(f"# {path} WARNING: only {v['flows_per_connection']:.2f} new flows per connection at net: client ports "
          f"came back while their old flow was still in net's table (kernel fast path: until the userspace "
          f"entry's own timeout), so conn/s overstates the new-flow path (raise --clients)")
if sc and v["flows_without_shortcut"] > 0.05 * F:
    print(f"# {path} WARNING: {v['flows_without_shortcut']} of net's {F} new flows got no shortcut "
          f"(their later packets waited shortcut_wait, then went down the tree): a lower SLR still held an "
          f"entry for the reused 5-tuple and sent no SHORTCUT, or the signal came too late")
json.dump(v, open(os.path.join(res, f"{path}.verify.json"), "w"))
sys.exit(0 if v["verified"] else 1)
PYEOF
}

# hier_path NAME SHORTCUT KERNEL: configs, 7 SLRs and 8 host agents, measure
# through the VIP, verify the counters, stop the daemons.  Returns 1 (after
# reporting why) on the first step that fails; the other paths still run.
hier_path() {
  local name=$1 sc=$2 kernel=$3 x t0=$SECONDS
  bench_configs "$sc" "$kernel" || { bench_fail "$name: configs written and accepted by check-config"; return 1; }
  for x in "${HIER_SLRS[@]}"; do
    hier_start_slr "$x" || { bench_fail "$name: SLR $x starts"; stop_hier; return 1; }
  done
  for x in "${HIER_HOSTS[@]}"; do
    hier_start_host "$x" || { bench_fail "$name: host agent $x starts"; stop_hier; return 1; }
  done
  if ! wait_for 40 hier_all_up; then
    note "children not up: $(hier_not_up)"
    bench_fail "$name: all 7 SLRs list all their children up"; stop_hier; return 1
  fi
  ok "$name: 7 SLRs and 8 host agents up after $((SECONDS - t0))s"
  if ! wait_for 15 crr_ok "$VIP:$PORT"; then
    bench_fail "$name: VIP $VIP:$PORT answers through the hierarchy"; stop_hier; return 1
  fi
  snap "$name" before || { bench_fail "$name: status of every daemon before the runs"; stop_hier; return 1; }
  if measure "$name" "$VIP:$PORT"; then
    snap "$name" after || { bench_fail "$name: status of every daemon after the runs"; stop_hier; return 1; }
    if verify "$name" "$sc"; then
      ok "$name: counters show the traffic went through the hierarchy"
    else
      bench_fail "$name: counters do not show the traffic going through the hierarchy (result INVALID)"
    fi
  fi
  stop_hier
  echo "$((SECONDS - t0))" >"$RESULTS/$name.seconds"
}

[[ -n "${WANT[hier-off]:-}" ]] && hier_path hier-off 0 0
[[ -n "${WANT[hier-on]:-}" ]] && hier_path hier-on 1 0
[[ -n "${WANT[hier-off-kernel]:-}" ]] && hier_path hier-off-kernel 0 1
[[ -n "${WANT[hier-on-kernel]:-}" ]] && hier_path hier-on-kernel 1 1

# ---------------------------------------------------------------- report

# Python: lib_bench.sh's BENCH_PY (res, out, crr_t, bulk_t, load, med,
# path_figures, fmt, write_summary), then this.
bench_report "$RUNS" "$DURATION" "$CONCURRENCY" "$BULK_BYTES" "$STREAMS" "$WORKERS" "$SC_WAIT" \
  "$((SECONDS - T_START))" "$ALL_PATHS" "$CLOSING" "$CLIENTS" <<'PYEOF'
runs, duration, conc, bulk_bytes, streams, workers, sc_wait, elapsed = sys.argv[5:13]
PATHS, closing, clients = sys.argv[13].split(), sys.argv[14], int(sys.argv[15])
TARGETED = ("hier-on", "hier-on-kernel")

summary = {"config": {"runs": int(runs), "crr_duration_s": float(duration), "concurrency": int(conc), "crr_clients": clients,
                      "bulk_bytes_per_stream": bulk_bytes, "streams": int(streams), "slr_workers": int(workers),
                      "shortcut_wait": sc_wait, "slr_tcp_closing": closing},
           "targets": {"crr_ratio": crr_t, "bulk_ratio": bulk_t, "paths": list(TARGETED)},
           "paths": {}, "elapsed_s": int(elapsed)}
for p in PATHS:
    crr, bulk = load(p, "crr"), load(p, "bulk")
    vf = os.path.join(res, f"{p}.verify.json")
    ver = json.load(open(vf)) if os.path.exists(vf) else None
    if not crr and not bulk and ver is None:
        continue
    sf = os.path.join(res, f"{p}.seconds")
    s = {**path_figures(crr, bulk, int(runs)),
         "seconds": int(open(sf).read()) if os.path.exists(sf) else None,
         "crr_runs": crr, "bulk_runs": bulk}
    if p.startswith("hier"):
        s["verified"] = bool(ver and ver.get("verified"))
        s["counters"] = ver
    summary["paths"][p] = s

d = summary["paths"].get("direct")
for p, s in summary["paths"].items():
    for k, t in (("connections_per_s", crr_t), ("throughput_mbps", bulk_t)):
        r = None
        if d and d.get(k) and s.get(k) is not None:
            r = s[k] / d[k]
        s.setdefault("ratio", {})[k] = r
        if p in TARGETED:
            ok = r is not None and s.get("verified", False) and s["complete"] and d["complete"]
            s.setdefault("target", {})[k] = None if not ok else ("MET" if r >= t else "MISSED")

print()
print(f"netbench_hier: median of {runs} runs; crr {duration}s x {conc} concurrent from {clients} clients; "
      f"bulk {streams} x {bulk_bytes}; "
      f"shortcut_wait {sc_wait}; tcp_closing {closing}; {workers} worker(s) per SLR")
hdr = (f"{'path':<16} {'conn/s':>8} {'p50us':>7} {'p99us':>7} {'err':>5} {'bulk Mbit/s':>12}  "
       f"{'conn/s/direct':<22} {'bulk/direct':<22} {'counters, notes'}")
print(hdr)
print("-" * len(hdr))
for p in PATHS:
    s = summary["paths"].get(p)
    if s is None:
        continue
    if not s["crr_runs"] and not s["bulk_runs"]:
        print(f"{p:<16} (not measured)")
        continue
    cols = []
    for k, t in (("connections_per_s", crr_t), ("throughput_mbps", bulk_t)):
        r = s["ratio"][k]
        txt = "1.00 (reference)" if p == "direct" else fmt(r, "{:.2f}")
        if p in TARGETED:
            txt += f" (>={t:.2f}) {s['target'][k] or 'n/a'}"
        cols.append(txt)
    notes = [] if "verified" not in s else ["ok" if s["verified"] else "INVALID"]
    if (s.get("counters") or {}).get("reuse"):
        notes.append("reuse")
    if not s["complete"]:
        notes.append(f"FAILED runs: {len(s['crr_runs'])}/{runs} crr, {len(s['bulk_runs'])}/{runs} bulk ok")
    chk = ", ".join(notes) or "-"
    print(f"{p:<16} {fmt(s['connections_per_s']):>8} {fmt(s['p50_us']):>7} {fmt(s['p99_us']):>7} "
          f"{s['crr_errors']:>5} {fmt(s['throughput_mbps']):>12}  {cols[0]:<22} {cols[1]:<22} {chk}")
if any((s.get("counters") or {}).get("reuse") for s in summary["paths"].values()):
    print("reuse: counters fine, but connections reused finished flows' entries (< 0.9 new flows per "
          "connection at net): conn/s overstates the new-flow path")
print(f"total {elapsed} s")
short = {"config": summary["config"], "targets": summary["targets"], "elapsed_s": summary["elapsed_s"],
         "paths": {p: {k: s.get(k) for k in ("connections_per_s", "p50_us", "p99_us", "crr_errors",
                                            "throughput_mbps", "ratio", "target", "verified", "complete")
                       if k in s} | ({"flows_per_connection": round(s["counters"]["flows_per_connection"], 2)}
                                    if s.get("counters") else {})
                   for p, s in summary["paths"].items()}}
for s in short["paths"].values():
    for k in ("connections_per_s", "throughput_mbps"):
        if s.get(k) is not None:
            s[k] = round(s[k], 1)
    s["ratio"] = {k: (None if v is None else round(v, 3)) for k, v in s["ratio"].items()}
print("netbench_hier_summary: " + json.dumps(short, separators=(",", ":")))
write_summary(summary)
PYEOF
