#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# netbench_spare.sh: what a hot spare costs the SLR it mirrors (issue 4).
#
#   bash tests/bench/netbench_spare.sh --slrctl build/slrctl --slrbench build/slrbench [--out f.json]
#
# One run, one namespace topology: tests/e2e/lib_pair.sh's (cli -> rtr ->
# slrA / slrB on one bridge -> h1, h2), `slrbench server` on port 80 in h1
# and h2, host agents registered with both SLRs (as in a hot-spare pair).
# Measured from cli through VIP 10.100.0.10:80, on two paths:
#   alone  slrA and slrB without [hot_spare] (lib_pair's plain mode): rtr
#          routes the VIP subnet to slrA, which forwards alone; slrB is an
#          idle independent SLR, so the same processes run on both paths
#   spare  both with [hot_spare] (lib_pair's hot_spare mode): slrA the main,
#          slrB its spare, which dials the main; rtr routes the VIP subnet
#          via the main's claimed address 10.0.2.100.  Measured once
#          status.hot_spare says main active + claimed, spare standby, and
#          connected on both; the main then streams every flow-table change
#          to the spare within [hot_spare].sync_interval
# --runs rounds, each `alone` then `spare`, so that a change in the
# machine's load hits both paths alike; every round starts both SLRs afresh
# (empty tables; the agents stay and re-register within ~0.3 s) and runs one
# connections/s run (`slrbench crr`, one TCP connection per request) and one
# bulk reply run (`slrbench bulk`; DSR, only the ACKs cross the SLR) through
# lib_bench.sh's bench_measure.  Reported: the medians per path and the
# ratios spare/alone, and the CPU time (user + system, /proc/PID/stat) each
# SLR process used during the crr runs, in s per run and us per connection:
# where the SLR is not the bottleneck (one worker at ~40% of a core), that is
# where the spare's cost shows.  Both SLRs' status JSON is read before and
# after every crr run: the report shows new flows per connection at slrA, and
# per crr run of the spare path the main's status.hot_spare sent, lag_ms_avg,
# lag_ms_max, lag_ms_last, resyncs, overflows, the main's flows.active, and
# the spare's mirrored and received counts (all since the pair formed, i.e.
# for that round).
#
# Every connection a new flow: the hot spare's work is per flow-table change
# (an upsert when a flow is created, one when it is established, a removal
# when it expires: ~3 entries per connection), so a connection that rides a
# still-present entry of an earlier connection on the same client port costs
# it nothing.  With lib_pair's tcp_closing of 10 s, and even 1 s, about half
# the connections found such an entry (cli's kernel hands a freed port out
# again soon); with 200 ms none did.  So the SLRs' tcp_closing is --closing
# (200ms), and the report marks a path `reuse` below 0.9 new flows per
# connection.
#
# Exit: 0 both paths measured and the main streamed to a connected spare in
# every crr run; 1 a run failed (daemon logs printed), or the pair never
# formed / did not stream; 2 usage; 77 not root.  About 100 s with the
# defaults on the 2-core VM (~10 s per path and round); every slrbench call
# has a timeout.  Namespaces, daemons and the run directory go on exit
# (lib.sh's EXIT trap).
set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib_bench.sh
. "$BENCH_DIR/lib_bench.sh"

usage() {
  cat >&2 <<'EOF'
usage: netbench_spare.sh --slrctl PATH --slrbench PATH [options]
  --out FILE          write the JSON summary here
  --runs N            rounds (one alone + one spare run each), medians reported (default 5)
  --duration S        seconds per connections/s run (default 5)
  --concurrency C     parallel connections for connections/s (default 32)
  --bulk-bytes N      bytes per bulk stream, K/M/G suffixes (default 2G)
  --streams K         parallel bulk streams (default 4)
  --paths LIST        comma-separated subset of alone,spare (default both)
  --workers N         SLR worker threads (default 1)
  --sync-interval D   [hot_spare].sync_interval (default 10ms, the product default)
  --closing D         the SLRs' [flows.timeouts] tcp_closing (default 200ms; see the header)
  --keep              keep the run directory (logs, configs, status snapshots)
EOF
  exit 2
}

# Ours; the other options' defaults: lib_bench.sh.
RUNS=5
BULK_BYTES=2G
PATHS="alone,spare"
SYNC_INTERVAL=10ms
CLOSING=200ms

while (($#)); do
  case $1 in
    --sync-interval | --closing)
      (($# >= 2)) || { echo "netbench_spare: $1 needs a value" >&2; usage; }
      case $1 in --sync-interval) SYNC_INTERVAL=$2 ;; --closing) CLOSING=$2 ;; esac
      shift 2 ;;
    *) bench_option netbench_spare "$@"; shift "$BENCH_SHIFT" ;;
  esac
done
bench_check_options netbench_spare
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || { echo "netbench_spare: --workers: expected 1..64, got '$WORKERS'" >&2; usage; }
[[ "$SYNC_INTERVAL" =~ ^[0-9]+(ms|s)$ ]] || { echo "netbench_spare: --sync-interval: expected e.g. 10ms, got '$SYNC_INTERVAL'" >&2; usage; }
[[ "$CLOSING" =~ ^[0-9]+(ms|s)$ ]] || { echo "netbench_spare: --closing: expected e.g. 200ms, got '$CLOSING'" >&2; usage; }
declare -A WANT=()
IFS=, read -ra _p <<<"$PATHS"
for x in "${_p[@]}"; do
  case $x in alone|spare) WANT[$x]=1 ;; *) echo "netbench_spare: --paths: unknown path '$x'" >&2; usage ;; esac
done
[[ -n "$BENCH_SLRCTL" ]] || { echo "netbench_spare: --slrctl is required" >&2; usage; }

bench_check_files netbench_spare

# shellcheck source=../e2e/lib_pair.sh
. "$BENCH_DIR/../e2e/lib_pair.sh"
SLRCTL=$BENCH_SLRCTL
# Quiet daemons, a flow table that never fills, the bench's sync interval
# (tcp_closing: pair_start).
export SLR_FLOW_CAPACITY=1048576 SLR_WORKERS=$WORKERS
PAIR_LOG_LEVEL=warn
export HOST_LOG_LEVEL=warn
PAIR_SYNC_INTERVAL=$SYNC_INTERVAL

require_root
e2e_init
bench_results_init
T_START=$SECONDS

# ---------------------------------------------------------------- set-up

note "netbench_spare: paths $PATHS; runs=$RUNS crr ${DURATION}s x $CONCURRENCY; bulk ${STREAMS}x$BULK_BYTES; sync_interval $SYNC_INTERVAL; tcp_closing $CLOSING; SLR workers $WORKERS"
pair_topo_up 2 || die "pair topology (cli, rtr, slrA, slrB, 2 hosts)"
pair_make_pki 2 || die "PKI (one CA, slrA, slrB, host1..2)"
bench_client_ns cli
for i in 1 2; do bench_server "h$i"; done
for i in 1 2; do
  wait_for 10 crr_ok "$(host_addr "$i"):$PORT" || die "slrbench server answers in h$i"
done
ok "slrbench servers up in h1, h2"

# pair_start MODE: both SLRs with PAIR_MODE=MODE configs (lib_pair's, with
# tcp_closing = --closing; checked), slrA first; the host agents (started
# once, on the first call) register with both.  Waits until both SLRs list
# both hosts up.
AGENTS=0
pair_start() {
  local x i
  PAIR_MODE=$1
  pair_write_configs || { bench_fail "$1: configs written"; return 1; }
  for x in "${PAIR_SLRS[@]}"; do
    { grep -q '^tcp_closing = ' "$RUN_DIR/$x.toml" &&
        sed -i "s/^tcp_closing = .*/tcp_closing = \"$CLOSING\"/" "$RUN_DIR/$x.toml"; } ||
      { bench_fail "$1: tcp_closing set in $x.toml"; return 1; }
  done
  pair_check_configs || { bench_fail "$1: slrctl check-config accepts the configs"; return 1; }
  for x in "${PAIR_SLRS[@]}"; do
    pair_start_slr "$x" || { bench_fail "$1: SLR $x starts and answers on its status socket"; return 1; }
  done
  if ((!AGENTS)); then
    for i in 1 2; do start_host "$i" || { bench_fail "host agent h$i starts"; return 1; }; done
    AGENTS=1
  fi
  wait_for 30 pair_all_up || { bench_fail "$1: slrA and slrB list both hosts up"; return 1; }
  UP_S=$WAITED_S
}
# pair_stop: SIGTERM to both SLRs, the spare first (no takeover on the way).
pair_stop() { pair_kill_slr slrB TERM; pair_kill_slr slrA TERM; }

# snapshot TAG: both SLRs' status JSON into $RESULTS/st-TAG-{slrA,slrB}.json.
snapshot() {
  local x
  for x in "${PAIR_SLRS[@]}"; do
    pair_json "$x" status >"$RESULTS/st-$1-$x.json" 2>/dev/null || rm -f "$RESULTS/st-$1-$x.json"
  done
}
# cpu_ticks: user + system clock ticks so far of slrA and slrB (all threads;
# 0 for one not running).
CLK_TCK=$(getconf CLK_TCK)
# shellcheck disable=SC2317  # called by crr_snap
cpu_ticks() {
  local x t
  for x in "${PAIR_SLRS[@]}"; do
    t=$(awk '{ print $14 + $15 }' "/proc/${SPID[$x]:-0}/stat" 2>/dev/null)
    printf '%s ' "${t:-0}"
  done
}
# crr_snap TARGET: crr_cli between two snapshots, st-PATH-pre-K and
# st-PATH-post-K for round K of path $CUR_PATH (its output in
# st-PATH-crr-K.json, the SLRs' CPU time during it in st-PATH-cpu-K.json);
# prints crr_cli's JSON, returns its status.
# shellcheck disable=SC2317  # called through bench_measure
crr_snap() {
  local out rc a0 b0 a1 b1
  snapshot "$CUR_PATH-pre-$ROUND"
  read -r a0 b0 <<<"$(cpu_ticks)"
  out=$(crr_cli "$1"); rc=$?
  read -r a1 b1 <<<"$(cpu_ticks)"
  snapshot "$CUR_PATH-post-$ROUND"
  printf '{"slrA_s": %s, "slrB_s": %s}\n' "$(awk -v d=$((a1 - a0)) -v t="$CLK_TCK" 'BEGIN { print d / t }')" \
    "$(awk -v d=$((b1 - b0)) -v t="$CLK_TCK" 'BEGIN { print d / t }')" >"$RESULTS/st-$CUR_PATH-cpu-$ROUND.json"
  if [[ -n "$out" ]]; then
    printf '%s\n' "$out" >"$RESULTS/st-$CUR_PATH-crr-$ROUND.json"
    printf '%s\n' "$out"
  fi
  return "$rc"
}

# shellcheck disable=SC2317  # called through wait_for
state_is() { [[ "$(hs "$1" state)" == "$2" ]]; }
# shellcheck disable=SC2317  # called through wait_for
pair_ready() {
  state_is slrA active && [[ "$(hs slrA claimed)" == true ]] && state_is slrB standby &&
    [[ "$(hs slrA connected)" == true && "$(hs slrB connected)" == true ]]
}

# round PATH: one crr run and one bulk run (lib_bench's bench_measure with
# RUNS=1, as PATH.rROUND) on freshly started SLRs, appended to PATH's runs
# ($RESULTS/PATH.{crr,bulk}.jsonl); SLRs stopped again afterwards.
round() {
  local path=$1 mode=plain via=${PADDR[slrA]} x
  [[ $path == spare ]] && mode=hot_spare via=$PAIR_CLAIM
  if pair_start "$mode"; then
    if [[ $path == spare ]]; then
      if wait_for 20 pair_ready; then
        note "round $ROUND spare: hosts up ${UP_S}s; main slrA active + claimed, spare slrB standby, connected on both after ${WAITED_S}s"
      else
        for x in slrA slrB; do note "$x hot_spare: $(pair_get "$x" status "d.get('hot_spare')" 2>&1 | head -c 800)"; done
        bench_fail "round $ROUND spare: main active + claimed, spare standby, connected on both"
        pair_stop
        return 1
      fi
    else
      note "round $ROUND alone: hosts up ${UP_S}s"
    fi
    pair_route_vip "$via"
    if wait_for 10 crr_ok "$VIP:$PORT"; then
      CUR_PATH=$path RUNS=1 bench_measure "$path.r$ROUND" "$VIP:$PORT" crr_snap 0
      cat "$RESULTS/$path.r$ROUND.crr.jsonl" >>"$RESULTS/$path.crr.jsonl"
      cat "$RESULTS/$path.r$ROUND.bulk.jsonl" >>"$RESULTS/$path.bulk.jsonl"
      snapshot "$path-end-$ROUND"
    else
      bench_fail "round $ROUND $path: VIP $VIP:$PORT answers through $via"
    fi
  fi
  pair_stop
}

# ----------------------------------------------------------------- runs

# Rounds: alone, then spare, RUNS times, so that a change of the machine's
# load during the run hits both paths alike.
: >"$RESULTS/alone.crr.jsonl"; : >"$RESULTS/alone.bulk.jsonl"
: >"$RESULTS/spare.crr.jsonl"; : >"$RESULTS/spare.bulk.jsonl"
for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
  [[ -n "${WANT[alone]:-}" ]] && round alone
  [[ -n "${WANT[spare]:-}" ]] && round spare
done

# ---------------------------------------------------------------- report

# Python: lib_bench.sh's BENCH_PY (res, out, load, med, path_figures, fmt,
# write_summary), then this.
bench_report "$RUNS" "$DURATION" "$CONCURRENCY" "$BULK_BYTES" "$STREAMS" "$WORKERS" "$SYNC_INTERVAL" "$CLOSING" \
  "$((SECONDS - T_START))" <<'PYEOF'
runs, duration, conc, bulk_bytes, streams, workers, sync_iv, closing, elapsed = sys.argv[5:14]
runs = int(runs)

def js(name):
    try:
        return json.load(open(os.path.join(res, name)))
    except (OSError, ValueError):
        return None

def snap(tag, who):
    return js(f"st-{tag}-{who}.json")

def hsv(s, k, default=None):
    return ((s or {}).get("hot_spare") or {}).get(k, default)

def flows(s, k):
    return ((s or {}).get("flows") or {}).get(k)

summary = {"config": {"runs": runs, "crr_duration_s": float(duration), "concurrency": int(conc),
                      "bulk_bytes_per_stream": bulk_bytes, "streams": int(streams), "slr_workers": int(workers),
                      "sync_interval": sync_iv, "slr_tcp_closing": closing, "order": "alone, spare per round"},
           "elapsed_s": int(elapsed), "paths": {}, "ratios": {}, "hot_spare_runs": []}
for p in ("alone", "spare"):
    crr, bulk = load(p, "crr"), load(p, "bulk")
    if not crr and not bulk:
        continue
    summary["paths"][p] = {"crr_runs": crr, "bulk_runs": bulk, **path_figures(crr, bulk, runs)}
    # New flows at slrA per completed crr connection, over the rounds.
    created = conns = 0
    for k in range(1, runs + 1):
        pre, post, c = snap(f"{p}-pre-{k}", "slrA"), snap(f"{p}-post-{k}", "slrA"), js(f"st-{p}-crr-{k}.json")
        if pre and post and c:
            created += (flows(post, "created") or 0) - (flows(pre, "created") or 0)
            conns += c["connections"]
    summary["paths"][p]["new_flows_per_connection"] = created / conns if conns else None
    # CPU time of each SLR process during the crr runs: per run, and per connection.
    cpu = {"slrA_s": [], "slrB_s": [], "slrA_us_per_conn": [], "slrB_us_per_conn": []}
    for k in range(1, runs + 1):
        u, c = js(f"st-{p}-cpu-{k}.json"), js(f"st-{p}-crr-{k}.json")
        if u and c and c["connections"]:
            for x in ("slrA", "slrB"):
                cpu[f"{x}_s"].append(u[f"{x}_s"])
                cpu[f"{x}_us_per_conn"].append(u[f"{x}_s"] * 1e6 / c["connections"])
    summary["paths"][p]["crr_cpu"] = {**cpu, **{f"median_{k}": med(v) for k, v in cpu.items()}}
    ends = [snap(f"{p}-end-{k}", "slrA") for k in range(1, runs + 1)]
    ends = [e for e in ends if e]
    drops = {}
    for e in ends:
        for k, v in (e.get("drops") or {}).items():
            drops[k] = drops.get(k, 0) + v
    summary["paths"][p]["slrA_totals"] = {"flows_created": sum(flows(e, "created") or 0 for e in ends),
                                          "table_full": sum(flows(e, "table_full") or 0 for e in ends),
                                          "drops": {k: v for k, v in drops.items() if v}}
a, b = summary["paths"].get("alone"), summary["paths"].get("spare")
for k in ("connections_per_s", "throughput_mbps"):
    summary["ratios"][k] = (b[k] / a[k]) if a and b and a.get(k) and b.get(k) is not None else None
# Paired: spare/alone within each round (the two runs minutes apart at most),
# less exposed to a drift of the machine's load than the ratio of medians.
summary["paired_ratios"] = {}
for k, kind in (("connections_per_s", "crr"), ("throughput_mbps", "bulk")):
    rs = []
    for r in range(1, runs + 1):
        x, y = load(f"alone.r{r}", kind), load(f"spare.r{r}", kind)
        rs.append(y[0][k] / x[0][k] if x and y and x[0].get(k) else None)
    ok_rs = [v for v in rs if v is not None]
    summary["paired_ratios"][k] = {"per_round": rs, "median": med(ok_rs),
                                   "min": min(ok_rs) if ok_rs else None, "max": max(ok_rs) if ok_rs else None}

# Per crr run of the spare path (a fresh pair each round): the status after
# it, and the run's deltas.
streamed = True
for k in range(1, runs + 1):
    pre_m, post_m, post_s = snap(f"spare-pre-{k}", "slrA"), snap(f"spare-post-{k}", "slrA"), snap(f"spare-post-{k}", "slrB")
    if post_m is None:
        continue
    c = js(f"st-spare-crr-{k}.json")
    conns = c["connections"] if c else None
    d_sent = hsv(post_m, "sent", 0) - hsv(pre_m, "sent", 0)
    d_samples = hsv(post_m, "lag_samples", 0) - hsv(pre_m, "lag_samples", 0)
    d_lagsum = (hsv(post_m, "lag_ms_avg", 0) * hsv(post_m, "lag_samples", 0)
                - hsv(pre_m, "lag_ms_avg", 0) * hsv(pre_m, "lag_samples", 0))
    r = {"run": k, "connections": conns, "connections_per_s": c["connections_per_s"] if c else None,
         "main": {x: hsv(post_m, x) for x in ("state", "connected", "sent", "lag_ms_avg", "lag_ms_max",
                                              "lag_ms_last", "lag_samples", "resyncs", "overflows", "post_failed")},
         "main_active_flows": flows(post_m, "active"),
         "spare": {x: hsv(post_s, x) for x in ("state", "connected", "mirrored", "received", "post_failed")},
         "run_sent": d_sent, "run_frames_acked": d_samples,
         "run_lag_ms_avg": (d_lagsum / d_samples) if d_samples else None,
         "run_resyncs": hsv(post_m, "resyncs", 0) - hsv(pre_m, "resyncs", 0),
         "run_overflows": hsv(post_m, "overflows", 0) - hsv(pre_m, "overflows", 0)}
    r["sync_entries_per_connection"] = (d_sent / conns) if conns else None
    if d_sent <= 0 or not hsv(post_m, "connected") or not hsv(post_s, "connected"):
        streamed = False
    summary["hot_spare_runs"].append(r)
if b is not None and not summary["hot_spare_runs"]:
    streamed = False
summary["streamed"] = streamed if b is not None else None

print()
print(f"netbench_spare: median of {runs} rounds (alone, spare); crr {duration}s x {conc} concurrent; "
      f"bulk {streams} x {bulk_bytes}; sync_interval {sync_iv}; tcp_closing {closing}; SLR workers {workers}; {elapsed} s")
hdr = (f"{'path':<6} {'conn/s':>9} {'p50us':>7} {'p99us':>7} {'err':>5} {'bulk Mbit/s':>12} {'flows/conn':>10}"
       f"  rounds: conn/s | Mbit/s")
print(hdr)
print("-" * len(hdr))
for p in ("alone", "spare"):
    s = summary["paths"].get(p)
    if s is None:
        print(f"{p:<6} {'(not measured)':>9}")
        continue
    each = " ".join(fmt(r["connections_per_s"]) for r in s["crr_runs"]) + " | " + \
           " ".join(fmt(r["throughput_mbps"]) for r in s["bulk_runs"])
    nf = s["new_flows_per_connection"]
    nf_s = fmt(nf, "{:.2f}") + (" reuse" if nf is not None and nf < 0.9 else "")
    print(f"{p:<6} {fmt(s['connections_per_s']):>9} {fmt(s['p50_us']):>7} {fmt(s['p99_us']):>7} "
          f"{s['crr_errors']:>5} {fmt(s['throughput_mbps']):>12} {nf_s:>10}  {each}")
rc_, rb_ = summary["ratios"]["connections_per_s"], summary["ratios"]["throughput_mbps"]
print(f"ratio spare/alone (medians): conn/s {fmt(rc_, '{:.3f}')}, bulk {fmt(rb_, '{:.3f}')}")
for k, name in (("connections_per_s", "conn/s"), ("throughput_mbps", "bulk")):
    pr = summary["paired_ratios"][k]
    print(f"ratio spare/alone per round, {name}: " + " ".join(fmt(v, "{:.3f}") for v in pr["per_round"])
          + f"; median {fmt(pr['median'], '{:.3f}')}")
for p, s in summary["paths"].items():
    c = s["crr_cpu"]
    print(f"{p}: CPU during a {duration}s crr run (median): slrA {fmt(c['median_slrA_s'], '{:.2f}')} s "
          f"({fmt(c['median_slrA_us_per_conn'], '{:.1f}')} us/conn), slrB {fmt(c['median_slrB_s'], '{:.2f}')} s "
          f"({fmt(c['median_slrB_us_per_conn'], '{:.1f}')} us/conn); per round slrA "
          + " ".join(fmt(v, "{:.2f}") for v in c["slrA_s"]) + ", slrB " + " ".join(fmt(v, "{:.2f}") for v in c["slrB_s"]))
if summary["hot_spare_runs"]:
    print()
    print("hot spare status right after each crr run of the spare path (main slrA -> spare slrB, a fresh pair each round):")
    h2 = (f"{'run':>3} {'conns':>7} {'sent':>8} {'ent/conn':>8} {'lag avg':>7} {'lag max':>7} {'lag last':>8} "
          f"{'main act':>8} {'mirrored':>8} {'received':>8} {'resync':>6} {'ovfl':>5} {'postfail':>8}")
    print(h2)
    print("-" * len(h2))
    for r in summary["hot_spare_runs"]:
        m, s = r["main"], r["spare"]
        print(f"{r['run']:>3} {fmt(r['connections']):>7} {fmt(m['sent']):>8} "
              f"{fmt(r['sync_entries_per_connection'], '{:.2f}'):>8} {fmt(m['lag_ms_avg'], '{:.2f}'):>7} "
              f"{fmt(m['lag_ms_max']):>7} {fmt(m['lag_ms_last']):>8} {fmt(r['main_active_flows']):>8} "
              f"{fmt(s['mirrored']):>8} {fmt(s['received']):>8} {fmt(m['resyncs']):>6} {fmt(m['overflows']):>5} "
              f"{fmt((m['post_failed'] or 0) + (s['post_failed'] or 0)):>8}")
    print("  sent / received: FLOW_SYNC entries the main queued / the spare applied (since the pair formed); "
          "ent/conn: entries sent during the crr run per connection; lag_ms_*: the main's status.hot_spare; "
          "main act: the main's flows.active; mirrored: flows in the spare's table")
for p, s in summary["paths"].items():
    t = s["slrA_totals"]
    print(f"{p}: slrA over all rounds: flows created {t['flows_created']}, table_full {t['table_full']}, "
          f"drops {t['drops'] or 'none'}")
if summary["streamed"] is False:
    print("netbench_spare: the main did not stream to a connected spare during every crr run (see above)")
compact = {"config": summary["config"], "elapsed_s": summary["elapsed_s"], "ratios": summary["ratios"],
           "paired_ratio_medians": {k: v["median"] for k, v in summary["paired_ratios"].items()},
           "paths": {p: {**{k: v for k, v in s.items() if not k.endswith("_runs") and k != "crr_cpu"},
                         "crr_cpu": {k: v for k, v in s["crr_cpu"].items() if k.startswith("median_")}}
                     for p, s in summary["paths"].items()},
           "hot_spare_runs": [{"run": r["run"], "connections": r["connections"], "sent": r["main"]["sent"],
                               "run_sent": r["run_sent"], "lag_ms_avg": r["main"]["lag_ms_avg"],
                               "lag_ms_max": r["main"]["lag_ms_max"], "main_active": r["main_active_flows"],
                               "mirrored": r["spare"]["mirrored"], "received": r["spare"]["received"],
                               "resyncs": r["main"]["resyncs"], "overflows": r["main"]["overflows"]}
                              for r in summary["hot_spare_runs"]],
           "streamed": summary["streamed"]}
print("netbench_spare_summary: " + json.dumps(compact, separators=(",", ":")))
write_summary(summary)
if summary["streamed"] is False:
    sys.exit(1)
PYEOF
