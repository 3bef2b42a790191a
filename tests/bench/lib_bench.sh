# shellcheck shell=bash
# lib_bench.sh: what netbench.sh, netbench_hier.sh and netbench_spare.sh
# share.  Source it first thing (before tests/e2e/lib.sh, lib_hier.sh or
# lib_pair.sh):
#   BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
#   . "$BENCH_DIR/lib_bench.sh"
# It sets the common option defaults; the script sets BULK_BYTES and PATHS
# and defines usage() (called here on a bad option) and measure PATH TARGET
# (called by bench_haproxy).  Functions that print a message take the
# script's prefix (netbench, netbench_hier) as their first argument.  The
# functions from bench_results_init on use lib.sh (ns, _bg, wait_for, note,
# ok, not_ok, json_get, dump_logs, $PY, $RUN_DIR, $VIP).

# Defaults of the options both scripts take.
# shellcheck disable=SC2034  # CRR_TARGET, BULK_TARGET, WORKERS: used by the scripts
{
  BENCH_SLRCTL=""
  SLRBENCH=""
  OUT=""
  RUNS=3
  DURATION=5
  CONCURRENCY=32
  STREAMS=4
  WORKERS=1
  CRR_TARGET=0.80
  BULK_TARGET=0.95
  PORT=80
}

# bench_option PREFIX ARG...: one command-line option both scripts take
# (--slrctl, --slrbench, --out, --runs, --duration, --concurrency,
# --bulk-bytes, --streams, --paths, --workers, --keep, -h/--help), from the
# script's own option loop: `*) bench_option PREFIX "$@"; shift "$BENCH_SHIFT" ;;`.
# Sets BENCH_SHIFT to the number of words it took; an unknown option: usage.
bench_option() {
  local prefix=$1; shift
  BENCH_SHIFT=2
  # An option that takes a value must have one (else `shift 2` would fail
  # and the caller's loop would never end).
  case $1 in
    --keep|-h|--help) ;;
    --*) (($# >= 2)) || { echo "$prefix: $1 needs a value" >&2; usage; } ;;
  esac
  case $1 in
    --slrctl) BENCH_SLRCTL=${2:-} ;;
    --slrbench) SLRBENCH=${2:-} ;;
    --out) OUT=${2:-} ;;
    --runs) RUNS=${2:-} ;;
    --duration) DURATION=${2:-} ;;
    --concurrency) CONCURRENCY=${2:-} ;;
    --bulk-bytes) BULK_BYTES=${2:-} ;;
    --streams) STREAMS=${2:-} ;;
    --paths) PATHS=${2:-} ;;
    --workers) WORKERS=${2:-} ;;
    --keep) export SLR_E2E_KEEP=1; BENCH_SHIFT=1 ;;
    -h|--help) usage ;;
    *) echo "$prefix: unknown argument '$1'" >&2; usage ;;
  esac
}

# bench_check_options PREFIX: --slrbench given; --runs, --duration,
# --concurrency and --streams well-formed; else usage.
bench_check_options() {
  local prefix=$1
  [[ -n "$SLRBENCH" ]] || { echo "$prefix: --slrbench is required" >&2; usage; }
  [[ "$RUNS" =~ ^[1-9][0-9]?$ ]] || { echo "$prefix: --runs: expected 1..99, got '$RUNS'" >&2; usage; }
  [[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "$prefix: --duration: expected seconds, got '$DURATION'" >&2; usage; }
  [[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || { echo "$prefix: --concurrency: expected a number, got '$CONCURRENCY'" >&2; usage; }
  [[ "$STREAMS" =~ ^[1-9][0-9]*$ ]] || { echo "$prefix: --streams: expected a number, got '$STREAMS'" >&2; usage; }
}

abspath() { [[ "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }

# bench_check_files PREFIX: SLRBENCH, BENCH_SLRCTL and OUT made absolute;
# exit 2 when a binary is not executable, or haproxy is wanted (WANT[haproxy])
# and not installed.
bench_check_files() {
  local prefix=$1
  SLRBENCH=$(abspath "$SLRBENCH")
  [[ -x "$SLRBENCH" ]] || { echo "$prefix: slrbench not executable: $SLRBENCH" >&2; exit 2; }
  if [[ -n "$BENCH_SLRCTL" ]]; then
    BENCH_SLRCTL=$(abspath "$BENCH_SLRCTL")
    [[ -x "$BENCH_SLRCTL" ]] || { echo "$prefix: slrctl not executable: $BENCH_SLRCTL" >&2; exit 2; }
  fi
  [[ -n "$OUT" ]] && OUT=$(abspath "$OUT")
  if [[ -n "${WANT[haproxy]:-}" ]] && ! command -v haproxy >/dev/null; then
    echo "$prefix: haproxy not installed (apt-get install haproxy), or leave it out with --paths" >&2
    exit 2
  fi
}

# bench_results_init: RESULTS, the directory the measurements go to (removed
# with the run directory by lib.sh's EXIT trap); BENCH_FAILED=0.
bench_results_init() {
  RESULTS=$RUN_DIR/results
  mkdir -p "$RESULTS" || die "mkdir $RESULTS"
  BENCH_FAILED=0
}

# bench_fail MSG: a failed bench step; the run goes on and exits 1.
bench_fail() { not_ok "$*"; BENCH_FAILED=1; }

# bench_client_ns NS: a wide port range and TIME_WAIT reuse in NS, so tens of
# thousands of short connections never run out of ephemeral ports (slrbench
# also closes with SO_LINGER 0, which leaves no TIME_WAIT at all).
bench_client_ns() {
  ns "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 >/dev/null
}

# bench_server NS: `slrbench server` on $PORT in NS (log slrbench-NS.log),
# with a deep accept backlog.
bench_server() {
  ns "$1" sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096 >/dev/null
  _bg "$1" "$RUN_DIR/slrbench-$1.log" "$SLRBENCH" server --port "$PORT" --threads 2
}

# crr_ok TARGET: one short connections/s run completes at least one connection.
# shellcheck disable=SC2317  # called through wait_for
crr_ok() { ns cli "$SLRBENCH" crr --target "$1" --duration 0.3 --concurrency 1 --timeout-ms 500 >/dev/null 2>&1; }

# crr_cli TARGET: one connections/s run from cli (--duration, --concurrency);
# prints its JSON.  The CRR of netbench.sh's and netbench_spare.sh's bench_measure.
# shellcheck disable=SC2317  # called through bench_measure
crr_cli() {
  ns cli timeout $(( ${DURATION%.*} + 20 )) "$SLRBENCH" crr --target "$1" \
    --duration "$DURATION" --concurrency "$CONCURRENCY" 2>>"$RUN_DIR/client.log"
}

# bench_measure PATH TARGET CRR KEEP_GOING: RUNS x (crr, bulk) into
# $RESULTS/PATH.{crr,bulk}.jsonl.  `CRR TARGET` runs one connections/s run
# and prints its JSON; bulk runs from cli.  A failed run is reported
# (bench_fail); with KEEP_GOING=0 it ends the path (return 1), with 1 the
# other runs go on and it returns 1 only when no crr run succeeded.
bench_measure() {
  local path=$1 target=$2 crr=$3 keep_going=$4 r out fails=0
  : >"$RESULTS/$path.crr.jsonl"
  : >"$RESULTS/$path.bulk.jsonl"
  for ((r = 1; r <= RUNS; r++)); do
    if out=$("$crr" "$target"); then
      echo "$out" >>"$RESULTS/$path.crr.jsonl"
      note "$path crr  run $r: $(json_get - '"%.0f conn/s, p50 %d us, p99 %d us, errors %d" % (d["connections_per_s"], d["p50_us"], d["p99_us"], d["errors"])' <<<"$out")"
    else
      bench_fail "$path: crr run $r to $target (${out:-no output})"
      ((keep_going)) || return 1
      fails=$((fails + 1))
    fi
    if out=$(ns cli timeout 100 "$SLRBENCH" bulk --target "$target" --bytes "$BULK_BYTES" \
               --streams "$STREAMS" --timeout 90 2>>"$RUN_DIR/client.log"); then
      echo "$out" >>"$RESULTS/$path.bulk.jsonl"
      note "$path bulk run $r: $(json_get - '"%.0f Mbit/s, %d bytes in %.2f s" % (d["throughput_mbps"], d["bytes"], d["seconds"])' <<<"$out")"
    else
      bench_fail "$path: bulk run $r to $target (${out:-no output})"
      ((keep_going)) || return 1
      fails=$((fails + 1))
    fi
  done
  [[ -s "$RESULTS/$path.crr.jsonl" ]] || return 1
  ((fails == 0)) && ok "$path measured"
  return 0
}

# bench_haproxy NS NAME ADDR [NAME ADDR]...: HAProxy (mode tcp) in namespace
# NS on $VIP:$PORT, the VIP a local address there while it runs, round robin
# to the servers NAME at ADDR:$PORT; `measure haproxy $VIP:$PORT` once it
# answers.  Run it before any SLR, so the VIP is never both a local address
# and routed into a TUN.
bench_haproxy() {
  local netns=$1; shift
  {
    cat <<EOF
global
    maxconn 8000   # fds = 2 x maxconn + a few; the hard RLIMIT_NOFILE may be 20000
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vip
    bind $VIP:$PORT
    default_backend hosts
backend hosts
    balance roundrobin
EOF
    while (($# >= 2)); do echo "    server $1 $2:$PORT"; shift 2; done
  } >"$RUN_DIR/haproxy.cfg"
  if ns "$netns" ip addr add "$VIP/32" dev lo; then
    _bg "$netns" "$RUN_DIR/haproxy.log" haproxy -db -f "$RUN_DIR/haproxy.cfg"
    HAPROXY_PID=$BG_PID
    if wait_for 10 crr_ok "$VIP:$PORT"; then
      measure haproxy "$VIP:$PORT"
    else
      bench_fail "haproxy answers on $VIP:$PORT (log: $(tail -n 5 "$RUN_DIR/haproxy.log" | tr '\n' ' '))"
    fi
    _kill_pids "$HAPROXY_PID"
    ns "$netns" ip addr del "$VIP/32" dev lo
  else
    bench_fail "add $VIP to lo in the $netns namespace"
  fi
}

# The report's Python helpers, run before the script's own report program:
# res, out, crr_t, bulk_t (argv 1..4), load PATH KIND (the runs of
# $RESULTS/PATH.KIND.jsonl), med, path_figures (one path's medians),
# fmt, write_summary (the JSON summary to --out).
BENCH_PY=$(cat <<'PYEOF'
import json, os, statistics, sys
res, out, crr_t, bulk_t = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

def load(path, kind):
    f = os.path.join(res, f"{path}.{kind}.jsonl")
    if not os.path.exists(f):
        return []
    return [json.loads(l) for l in open(f) if l.strip()]

def med(xs):
    return statistics.median(xs) if xs else None

def path_figures(crr, bulk, runs):
    return {"connections_per_s": med([r["connections_per_s"] for r in crr]),
            "p50_us": med([r["p50_us"] for r in crr]), "p99_us": med([r["p99_us"] for r in crr]),
            "crr_errors": sum(r["errors"] for r in crr),
            "throughput_mbps": med([r["throughput_mbps"] for r in bulk]),
            "complete": len(crr) == runs and len(bulk) == runs}

def fmt(v, f="{:.0f}"):
    return "-" if v is None else f.format(v)

def write_summary(summary):
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        print(f"summary written to {out}")
PYEOF
)

# bench_report ARG... <<'PYEOF' ... PYEOF: the end of a bench.  Prints the
# daemon logs if a step failed, then runs the report program on stdin after
# BENCH_PY, with sys.argv[1:] = RESULTS OUT CRR_TARGET BULK_TARGET ARG...,
# and exits with its status, or 1 if a step failed.
bench_report() {
  local prog rc
  prog=$(cat)
  ((BENCH_FAILED)) && dump_logs
  _SUMMARY_DONE=1   # the report is the summary, not lib.sh's "N passed" line
  "$PY" - "$RESULTS" "$OUT" "$CRR_TARGET" "$BULK_TARGET" "$@" <<<"$BENCH_PY
$prog"
  rc=$?
  ((BENCH_FAILED)) && rc=1
  exit $rc
}
