#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# netbench.sh: end-to-end throughput of slrctl against direct routing and HAProxy.
#
#   bash tests/bench/netbench.sh --slrctl build/slrctl --slrbench build/slrbench [--out f.json]
#
# One run builds the SPEC test topology in throwaway namespaces (via
# tests/e2e/lib.sh), starts `slrbench server` on port 80 in h1 and h2, and
# measures from the cli namespace, on the same topology:
#   direct   cli -> 10.0.3.11:80            kernel routing only, no balancer
#   haproxy  cli -> VIP 10.100.0.10:80      HAProxy (mode tcp) in the slr ns, VIP a local
#                                           address there, balancing to h1/h2 real addresses
#   slrctl   cli -> VIP 10.100.0.10:80      `slrctl slr` + `slrctl host` on h1, h2 (IP-in-IP,
#                                           direct server return), every packet in userspace
#   slrctl-fp     the same with the SLR's kernel fast path on its uplink
#   slrctl-kernel the same with the fast path and kernel tunnel decapsulation
#                 on the hosts (first packet of a flow in userspace, the rest
#                 in the kernel on both ends)
# For each path: connections/s (`slrbench crr`, one TCP connection per
# request) and bulk reply throughput (`slrbench bulk`), median of --runs runs.
# HAProxy runs before the SLR daemon is started, so the VIP is never both a
# local address and routed into the SLR's TUN.
#
# Prints a table with the ratios to direct next to the targets (conn/s >= 0.8x
# direct, bulk >= 0.95x direct) and writes a JSON summary to --out.
# Bounded: about 1-2 minutes with the defaults; every slrbench call has a
# timeout.  Namespaces, daemons and the run directory are removed on exit,
# also on failure or Ctrl-C (lib.sh's EXIT trap).
#
# Exit: 0 every path measured (targets are reported, not enforced, unless
# --enforce); 1 a path could not be measured, or --enforce and slrctl missed
# a target; 2 usage; 77 not root (skip).
set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib_bench.sh
. "$BENCH_DIR/lib_bench.sh"

usage() {
  cat >&2 <<'EOF'
usage: netbench.sh --slrctl PATH --slrbench PATH [options]
  --out FILE          write the JSON summary here
  --runs N            runs per measurement, median reported (default 3)
  --duration S        seconds per connections/s run (default 5)
  --concurrency C     parallel connections for connections/s (default 32)
  --bulk-bytes N      bytes per bulk stream, K/M/G suffixes (default 2G)
  --streams K         parallel bulk streams (default 4)
  --paths LIST        comma-separated subset of direct,haproxy,slrctl,slrctl-fp,slrctl-kernel
                      (default all)
  --workers N         SLR worker threads (default 1)
  --enforce           exit 1 when slrctl misses a target
  --keep              keep the run directory (logs, configs) for inspection
EOF
  exit 2
}

# The other options' defaults: lib_bench.sh.
BULK_BYTES=2G
PATHS="direct,haproxy,slrctl,slrctl-fp,slrctl-kernel"
ENFORCE=0

while (($#)); do
  case $1 in
    --enforce) ENFORCE=1; shift ;;
    *) bench_option netbench "$@"; shift "$BENCH_SHIFT" ;;
  esac
done
bench_check_options netbench
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || { echo "netbench: --workers: expected 1..64, got '$WORKERS'" >&2; usage; }
declare -A WANT=()
IFS=, read -ra _p <<<"$PATHS"
for x in "${_p[@]}"; do
  case $x in direct|haproxy|slrctl|slrctl-fp|slrctl-kernel) WANT[$x]=1 ;; *) echo "netbench: --paths: unknown path '$x'" >&2; usage ;; esac
done
[[ -n "${WANT[slrctl]:-}${WANT[slrctl-fp]:-}${WANT[slrctl-kernel]:-}" && -z "$BENCH_SLRCTL" ]] && { echo "netbench: --slrctl is required for the slrctl path" >&2; usage; }

bench_check_files netbench

# shellcheck source=../e2e/lib.sh
. "$BENCH_DIR/../e2e/lib.sh"
[[ -n "$BENCH_SLRCTL" ]] && SLRCTL=$BENCH_SLRCTL
# The bench keeps the daemons quiet and the flow table big: crr creates
# ~10k flows/s, each kept tcp_closing (10 s) after its RST.
export SLR_LOG_LEVEL=warn HOST_LOG_LEVEL=warn SLR_FLOW_CAPACITY=1048576 SLR_WORKERS=$WORKERS

require_root
e2e_init

bench_results_init

# ---------------------------------------------------------------- set-up

note "netbench: runs=$RUNS duration=${DURATION}s concurrency=$CONCURRENCY bulk=${STREAMS}x$BULK_BYTES"
topo_up 2 || die "topology with 2 hosts"
bench_client_ns cli
bench_client_ns slr
for i in 1 2; do
  bench_server "h$i"
done

for i in 1 2; do
  wait_for 10 crr_ok "$(host_addr "$i"):$PORT" || die "slrbench server answers in h$i"
done
ok "slrbench servers up in h1, h2"

# measure PATH TARGET: RUNS x (crr, bulk) into $RESULTS/PATH.{crr,bulk}.jsonl;
# the first failed run ends the path (return 1).
measure() { bench_measure "$1" "$2" crr_cli 0 && diag "$1"; }

# diag PATH: interface counters (TUN/veth drops) and TCP/IP stack counters of
# every namespace after PATH's runs, into the run directory (see --keep).
diag() {
  local n
  for n in cli rtr slr h1 h2; do
    {
      echo "## ip -s link ($n)"; ns "$n" ip -s link
      echo "## nstat -az ($n, non-zero)"; ns "$n" nstat -az 2>/dev/null | awk 'NR > 1 && $2 != 0'
    } >"$RUN_DIR/diag-$1-$n.txt" 2>&1
    ns "$n" nstat -n >/dev/null 2>&1   # reset the history, so the next path starts from 0
  done
}

# ---------------------------------------------------------------- direct

if [[ -n "${WANT[direct]:-}" ]]; then
  measure direct "$(host_addr 1):$PORT"
fi

# --------------------------------------------------------------- haproxy

if [[ -n "${WANT[haproxy]:-}" ]]; then
  bench_haproxy slr h1 "$(host_addr 1)" h2 "$(host_addr 2)"
fi

# ---------------------------------------------------------------- slrctl

# slrctl_path NAME: SLR + two host agents (configured by the SLR_FAST_PATH /
# HOST_DECAP knobs of lib.sh), then measure through the VIP.  Returns 1
# (after reporting why) on the first step that fails; the other paths'
# numbers are still reported.
slrctl_path() {
  local name=$1 i
  [[ -f "$PKI_DIR/ca.pem" ]] || make_pki "$PKI_DIR" 2 || { bench_fail "PKI"; return 1; }
  write_slr_config "$RUN_DIR/slr.toml" host1 host2
  # shellcheck disable=SC2119  # default config path
  start_slr || { bench_fail "SLR starts and answers on its status socket"; return 1; }
  for i in 1 2; do
    write_host_config "$RUN_DIR/h$i.toml" "$i"
    start_host "$i" || { bench_fail "host agent h$i starts"; return 1; }
  done
  wait_for 20 hosts_up host1 host2 || { slr_json hosts >&2; bench_fail "both hosts up at the SLR"; return 1; }
  ok "$name: SLR and both host agents up after ${WAITED_S}s"
  wait_for 10 crr_ok "$VIP:$PORT" || { bench_fail "VIP $VIP:$PORT answers through $name"; return 1; }
  measure "$name" "$VIP:$PORT" || return 1
  slr_json status >"$RESULTS/$name-status.json" 2>/dev/null || rm -f "$RESULTS/$name-status.json"
  # SIGTERM now: the daemons remove their routes, nft tables and devices.
  _kill_pids "$SLR_PID" "${HOST_PID[1]}" "${HOST_PID[2]}"
}

[[ -n "${WANT[slrctl]:-}" ]] && SLR_FAST_PATH="" HOST_DECAP="" slrctl_path slrctl
[[ -n "${WANT[slrctl-fp]:-}" ]] && SLR_FAST_PATH=eth0 HOST_DECAP="" slrctl_path slrctl-fp
[[ -n "${WANT[slrctl-kernel]:-}" ]] && SLR_FAST_PATH=eth0 HOST_DECAP=eth0 slrctl_path slrctl-kernel

# ---------------------------------------------------------------- report

# Python: lib_bench.sh's BENCH_PY (res, out, crr_t, bulk_t, load, med,
# path_figures, fmt, write_summary), then this.
bench_report "$ENFORCE" "$RUNS" "$DURATION" "$CONCURRENCY" "$BULK_BYTES" "$STREAMS" "$WORKERS" <<'PYEOF'
enforce = sys.argv[5] == "1"
runs, duration, conc, bulk_bytes, streams, workers = sys.argv[6:12]

summary = {"config": {"runs": int(runs), "crr_duration_s": float(duration), "concurrency": int(conc),
                      "bulk_bytes_per_stream": bulk_bytes, "streams": int(streams), "slr_workers": int(workers)},
           "targets": {"crr_ratio": crr_t, "bulk_ratio": bulk_t}, "paths": {}, "ratios": {}, "met": {}}
PATHS = ("direct", "haproxy", "slrctl", "slrctl-fp", "slrctl-kernel")
for p in PATHS:
    crr, bulk = load(p, "crr"), load(p, "bulk")
    if not crr and not bulk:
        continue
    summary["paths"][p] = {"crr_runs": crr, "bulk_runs": bulk, **path_figures(crr, bulk, int(runs))}
summary["slr_status"] = {}
for p in PATHS[2:]:
    st = os.path.join(res, f"{p}-status.json")
    if os.path.exists(st):
        try:
            summary["slr_status"][p] = json.load(open(st))
        except ValueError:
            pass

d = summary["paths"].get("direct")
def ratio(p, k):
    v = summary["paths"].get(p, {}).get(k)
    if not d or not d.get(k) or v is None:
        return None
    return v / d[k]
for p in PATHS[1:]:
    if p in summary["paths"]:
        rc, rb = ratio(p, "connections_per_s"), ratio(p, "throughput_mbps")
        summary["ratios"][p] = {"connections_per_s": rc, "throughput_mbps": rb}
        summary["met"][p] = {"connections_per_s": None if rc is None else rc >= crr_t,
                             "throughput_mbps": None if rb is None else rb >= bulk_t}

def verdict(r, t):
    return "" if r is None else ("ok" if r >= t else "MISS")

print()
print(f"netbench: median of {runs} runs; crr {duration}s x {conc} concurrent; bulk {streams} x {bulk_bytes}")
hdr = f"{'path':<13} {'conn/s':>9} {'p50us':>7} {'p99us':>7} {'err':>5} {'bulk Mbit/s':>12}   {'conn/s vs direct':<24} {'bulk vs direct':<24}"
print(hdr)
print("-" * len(hdr))
for p in PATHS:
    s = summary["paths"].get(p)
    if s is None:
        print(f"{p:<13} {'(not measured)':>9}")
        continue
    if p == "direct":
        rc_s, rb_s = "1.00 (reference)", "1.00 (reference)"
    else:
        rc, rb = summary["ratios"][p]["connections_per_s"], summary["ratios"][p]["throughput_mbps"]
        rc_s = f"{fmt(rc, '{:.2f}')} (>= {crr_t:.2f}) {verdict(rc, crr_t)}"
        rb_s = f"{fmt(rb, '{:.2f}')} (>= {bulk_t:.2f}) {verdict(rb, bulk_t)}"
    print(f"{p:<13} {fmt(s['connections_per_s']):>9} {fmt(s['p50_us']):>7} {fmt(s['p99_us']):>7} "
          f"{s['crr_errors']:>5} {fmt(s['throughput_mbps']):>12}   {rc_s:<24} {rb_s:<24}")
for p, s in summary["slr_status"].items():
    drops = {k: v for k, v in (s.get("drops") or {}).items() if v}
    fl = s.get("flows") or {}
    pk = s.get("packets") or {}
    print(f"{p} SLR after the run: flows created {fl.get('created')}, table_full {fl.get('table_full')}, "
          f"packets userspace {pk.get('userspace')} / kernel {pk.get('fast_path')}, drops {drops or 'none'}")
write_summary(summary)
m = summary["met"].get("slrctl-kernel") or summary["met"].get("slrctl", {})
if enforce and (not m or not all(v is True for v in m.values())):
    print("netbench: slrctl missed a target (--enforce)")
    sys.exit(1)
PYEOF
