#!/usr/bin/env bash
# What observability costs (issue 12): stats, access logs and tracing off vs. on.
#
#   "With stats always on and access logs to a file, requests/s per core drop by no more than 5%.
#    Reading /stats during a benchmark does not change the benchmark's p99."
#
# Builds ringway and ringway-bench (or takes RINGWAY_BIN / BENCH_BIN), starts the bundled origin
# (one worker, CPU 1) and one ringway per variant, all at once, each with ONE worker pinned to
# CPU 0 on its own port, every config derived from config/bench.yaml (checked with
# `ringway validate` first):
#   base          config/bench.yaml + `admin: {address: 127.0.0.1:0}` (stats are always on)
#   access_log    base + an access log to a file (Envoy's default text format), every request
#   tracing_1pct  base + tracing at sample_rate 0.01, spans POSTed to the origin (/status/200)
#   tracing_all   the same at sample_rate 1: every request exported (the worst case)
#   all_on        access log + tracing 1%
# Then (load generator on CPU 1, HTTP/1.1 keep-alive, $CONNS connections):
#   1. throughput: $ROUNDS rounds; in each, every variant in turn (order rotated per round), closed
#      loop for $DURATION after $WARMUP of warm-up. Records req/s (the load generator's) and the
#      proxy's CPU-us per request: utime+stime of the proxy process (all threads) from
#      /proc/PID/stat, divided by the requests the proxy counted (its own
#      http.bench.downstream_rq_total) over the same window: warm-up + measurement + until the
#      proxy is idle again (queued access-log lines and spans written and sent; 20 s at most).
#   2. /stats during load: the base variant at a fixed rate ($RATE req/s, open loop, coordinated-
#      omission corrected) for $DURATION, $ROUNDS pairs of runs without and with a poller that
#      GETs the admin /stats, and /stats/prometheus every other time, every 100 ms (one curl
#      process, --rate 10/s); the order of the pair alternates between rounds.
# Prints one table per part (median over rounds, spread = max/min-1, change vs. base / vs. no
# poller) and writes everything to $OUT/observability.json (per-run reports in
# $OUT/observability/). A load run with any error (connect, read, timeout, non-2xx) or a proxy
# that counted a non-2xx answer makes the script fail: such a run is no measurement.
# Loopback only; everything started here is stopped on exit; every wait is bounded.
#
# Usage: scripts/observability-bench.sh
#   env: ROUNDS=5 DURATION=5s WARMUP=1s CONNS=50 RATE=20000 OUT=target/bench-results
#        ORIGIN_PORT=9000 BASE_PORT=10030 (variants on BASE_PORT, BASE_PORT+1, ...)
#        VARIANTS="base access_log tracing_1pct tracing_all all_on" (base is always run)
#        PARTS="throughput stats" (which parts to run) SETTLE=0.3 (s: "idle" = at most one
#        CPU tick in that long)
#        RINGWAY_BIN=path BENCH_BIN=path (use these binaries instead of building) CARGO_TARGET_DIR=...
#        PRIO=rt  run every measured process under SCHED_FIFO (chrt -f 50), as compare.sh does
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CONNS="${CONNS:-50}"
RATE="${RATE:-20000}"
SETTLE="${SETTLE:-0.3}"
ORIGIN_PORT="${ORIGIN_PORT:-9000}"
BASE_PORT="${BASE_PORT:-10030}"
VARIANTS="${VARIANTS:-base access_log tracing_1pct tracing_all all_on}"
PARTS="${PARTS:-throughput stats}"
OUT="${OUT:-$ROOT/target/bench-results}"
LOCK=/tmp/ringway-bench.lock
PRIO="${PRIO:-}"
RUN=()
[[ $PRIO == rt ]] && RUN=(chrt -f 50)
PROXY_CPU=0
LOAD_CPU=1
POLL_CPU=1 # the /stats poller is a client, like the load generator

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'observability-bench.sh: %s\n' "$*" >&2; exit 1; }

# Seconds (rounded up) in a ringway-bench duration such as 500ms, 5s, 1.5s, 1m.
secs() {
  python3 - "$1" <<'PY'
import math, re, sys
m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", sys.argv[1].strip())
if not m:
    sys.exit(f"bad duration {sys.argv[1]!r} (use e.g. 500ms, 5s, 1m)")
v = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
print(max(1, math.ceil(v)))
PY
}

for t in taskset flock curl python3 timeout; do command -v "$t" >/dev/null || die "needs $t"; done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
DUR_S=$(secs "$DURATION") || die "bad DURATION"
WARM_S=$(secs "$WARMUP") || die "bad WARMUP"
LOAD_LIMIT=$((DUR_S + WARM_S + 30)) # a load run that takes longer than this is killed

declare -A KNOWN=([base]=1 [access_log]=1 [tracing_1pct]=1 [tracing_all]=1 [all_on]=1)
variants=(base)
for v in $VARIANTS; do
  [[ -n ${KNOWN[$v]:-} ]] || die "unknown variant $v (known: ${!KNOWN[*]})"
  [[ $v == base ]] || variants+=("$v")
done
declare -A PORT=()
i=0
for v in "${variants[@]}"; do PORT[$v]=$((BASE_PORT + i)); i=$((i + 1)); done

# ------------------------------------------------------------------ build
mkdir -p "$OUT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ -n ${BENCH_BIN:-} ]]; then
  BENCH="$BENCH_BIN"
else
  say "building ringway-bench (release)"
  cargo build --release -q -p ringway-bench
  BENCH="$TARGET/release/ringway-bench"
fi
if [[ -n ${RINGWAY_BIN:-} ]]; then
  RINGWAY="$RINGWAY_BIN"
else
  say "building ringway (release)"
  cargo build --release -q --bin ringway
  RINGWAY="$TARGET/release/ringway"
fi
[[ -x $BENCH ]] || die "no ringway-bench binary at $BENCH"
[[ -x $RINGWAY ]] || die "no ringway binary at $RINGWAY"

# ------------------------------------------------------------------ runtime dir, cleanup, lock
WORK=$(mktemp -d /tmp/ringway-obs.XXXXXX)
RUNS="$OUT/observability"
pids=()
LOCKED=0
running() {  # pid: alive and not a zombie (an exited child stays one until waited for)
  local s
  s=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}
cleanup() {
  local p n
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # ringway drains (at most drain_timeout) and sends its last spans; give everyone 6 s in all.
  for n in $(seq 1 60); do
    local left=0
    for p in "${pids[@]}"; do running "$p" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if ((LOCKED)); then # $RUNS is ours only while we hold the lock
    mkdir -p "$RUNS/logs" || true
    for f in "$WORK"/*.yaml "$WORK"/*.log; do
      if [[ -e $f && $f != */access-*.log ]]; then cp "$f" "$RUNS/logs/" || true; fi # not the (large) access logs
    done
    for f in "$WORK"/*.tsv "$WORK"/poll-*.txt; do
      if [[ -e $f ]]; then cp "$f" "$RUNS/" || true; fi
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

exec 9>"$LOCK"
say "waiting for $LOCK"
flock -w 1800 9 || die "$LOCK still held after 30 minutes"
LOCKED=1
rm -rf "$RUNS" && mkdir -p "$RUNS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$ORIGIN_PORT" "${PORT[@]}"; do
  port_busy "$p" && die "something already listens on 127.0.0.1:$p; stop it first (or set ORIGIN_PORT / BASE_PORT)"
done

# ------------------------------------------------------------------ configs (from config/bench.yaml)
# Each variant is config/bench.yaml with its own listener port and origin port, plus its additions.
vp=()
for v in "${variants[@]}"; do vp+=("$v=${PORT[$v]}"); done
python3 - "$ROOT/config/bench.yaml" "$WORK" "$ORIGIN_PORT" "${vp[@]}" <<'PY'
import re, sys
src, work, origin = sys.argv[1], sys.argv[2], sys.argv[3]
ports = dict(a.split("=") for a in sys.argv[4:])
base = open(src).read()
def sub(pat, rep, text):
    out, n = re.subn(pat, rep, text, flags=re.M)
    if n != 1:
        sys.exit(f"config/bench.yaml changed shape: {pat!r} matched {n} times")
    return out
base = sub(r"^(\s*address:\s*)127\.0\.0\.1:10010\s*$", r"\g<1>127.0.0.1:@PORT@", base)
base = sub(r'^(\s*endpoints:\s*)\["127\.0\.0\.1:9000"\]\s*$', r'\g<1>["127.0.0.1:' + origin + '"]', base)
# The access log goes on the connection manager, beside (indented like) its stat_prefix.
indent = re.search(r"^([ ]*)stat_prefix:", base, flags=re.M)
if not indent:
    sys.exit("config/bench.yaml has no stat_prefix")
indent = indent.group(1)
collector = ("  - name: collector\n    connect_timeout: 1s\n"
             f"    endpoints: [\"127.0.0.1:{origin}\"]\n    idle_timeout: 300s\n")
for name, port in ports.items():
    text = base.replace("@PORT@", port)
    if name in ("access_log", "all_on"):
        log = f"{indent}access_log:\n{indent}  - path: {work}/access-{name}.log\n"
        text = sub(r"^([ ]*stat_prefix:.*\n)", lambda m: m.group(1) + log, text)
    rate = {"tracing_1pct": "0.01", "all_on": "0.01", "tracing_all": "1"}.get(name)
    text = text.rstrip("\n") + "\n"
    if rate:
        text += collector
    text += "admin:\n  address: 127.0.0.1:0\n"
    if rate:
        text += (f"tracing:\n  sample_rate: {rate}\n"
                 "  collector:\n    cluster: collector\n    path: /status/200\n")
    open(f"{work}/{name}.yaml", "w").write(
        f"# variant {name}: config/bench.yaml plus its additions (observability-bench.sh)\n" + text)
PY
for v in "${variants[@]}"; do
  "$RINGWAY" validate -c "$WORK/$v.yaml" >"$WORK/validate-$v.log" 2>&1 ||
    { cat "$WORK/validate-$v.log" >&2; die "config of variant $v is invalid ($WORK/$v.yaml)"; }
done

# ------------------------------------------------------------------ helpers
TCK=$(getconf CLK_TCK)
cpu_ticks() {  # utime+stime of the whole process (all its threads), in clock ticks
  local f
  f=$(cat /proc/"$1"/stat 2>/dev/null) || die "process $1 is gone"
  f=${f##*) }
  read -r -a a <<<"$f"
  echo $((a[11] + a[12]))
}
start_pinned() {  # name cpu cmd... ; sets STARTED_PID
  local name=$1 cpu=$2; shift 2
  "${RUN[@]}" taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!
  pids+=("$STARTED_PID")
}
wait_line() {  # pid file regex: waits (10 s at most) for a line in a log; prints the match
  local pid=$1 file=$2 re=$3 l
  for _ in $(seq 1 100); do
    l=$(grep -m1 -E "$re" "$file" 2>/dev/null || true)
    [[ -n $l ]] && { echo "$l"; return 0; }
    running "$pid" || return 1
    sleep 0.1
  done
  return 1
}
declare -A PID=() ADMIN=()
# After a run, the proxy may still be busy (the last access-log buffers, span batches still
# queued for the exporter): wait until it is idle (at most 1 tick of CPU in $SETTLE s), 20 s at
# most, so that this work is counted for its variant and does not run beside the next one.
settle() {  # variant ; sets SETTLED_S (seconds it took)
  local a b t0=$EPOCHREALTIME end=$((SECONDS + 20))
  b=$(cpu_ticks "${PID[$1]}")
  while ((SECONDS < end)); do
    sleep "$SETTLE"
    a=$b
    b=$(cpu_ticks "${PID[$1]}")
    if ((b - a <= 1)); then
      SETTLED_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
      return 0
    fi
  done
  die "ringway ($1) still busy 20 s after its run ended (its CPU time keeps rising)"
}
alive() {  # variant
  running "${PID[$1]}" ||
    { tail -5 "$WORK/$1.log" >&2 || true; die "ringway ($1) exited early; its log: $RUNS/logs/$1.log"; }
}
stats() {  # variant -> "rq_total rq_2xx spans_sent spans_dropped" (missing stats are 0)
  local body
  body=$(curl -sf --max-time 5 "http://${ADMIN[$1]}/stats") || die "cannot read /stats of $1 at ${ADMIN[$1]}"
  awk -F': ' '
    $1 == "http.bench.downstream_rq_total" { t = $2 }
    $1 == "http.bench.downstream_rq_2xx"   { ok = $2 }
    $1 == "tracing.spans_sent"             { s = $2 }
    $1 == "tracing.spans_dropped"          { d = $2 }
    END { printf "%d %d %d %d\n", t, ok, s, d }' <<<"$body"
}
check_load() {  # json txt: the run must exist and have no error of any kind
  local json=$1 txt=$2
  [[ -s $json ]] || { tail -5 "$txt" >&2 || true; die "load run failed, no report ($txt)"; }
  python3 - "$json" "$txt" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
e = r["errors"]
if e["total"] or not r["requests"]:
    kinds = ", ".join(f"{k} {v}" for k, v in e.items() if v and k != "total")
    sys.exit(f"observability-bench.sh: load run {sys.argv[1]} is not a valid measurement: "
             f"{r['requests']} responses, errors: {kinds or 'none'}"
             + (f"; first error: {r['first_error']}" if r.get("first_error") else "") + f" (see {sys.argv[2]})")
PY
}
load() {  # name port args... : one load run, pinned, bounded; writes $RUNS/<name>.{json,txt}
  local name=$1 port=$2; shift 2
  local rc=0
  "${RUN[@]}" taskset -c "$LOAD_CPU" timeout -k 5 "$LOAD_LIMIT" "$BENCH" load "http://127.0.0.1:$port/" \
    --workers 1 --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --label "$name" \
    --json "$RUNS/$name.json" --no-distribution "$@" >"$RUNS/$name.txt" 2>&1 || rc=$?
  ((rc == 124 || rc == 137)) && die "load run $name did not finish within ${LOAD_LIMIT}s"
  check_load "$RUNS/$name.json" "$RUNS/$name.txt"
}

# ------------------------------------------------------------------ origin and proxies
say "starting the origin (ringway-bench origin, 1 worker, CPU $LOAD_CPU) on 127.0.0.1:$ORIGIN_PORT"
start_pinned origin "$LOAD_CPU" "$BENCH" origin --listen "127.0.0.1:$ORIGIN_PORT" --workers 1
ORIGIN_PID=$STARTED_PID
wait_line "$ORIGIN_PID" "$WORK/origin.log" "origin listening on" >/dev/null ||
  { cat "$WORK/origin.log" >&2; die "origin did not start"; }

for v in "${variants[@]}"; do
  say "starting ringway ($v, 1 worker, CPU $PROXY_CPU) on 127.0.0.1:${PORT[$v]}"
  start_pinned "$v" "$PROXY_CPU" "$RINGWAY" run -c "$WORK/$v.yaml" --workers 1 --log-level warn
  PID[$v]=$STARTED_PID
  wait_line "${PID[$v]}" "$WORK/$v.log" "^ringway: listener .* bound to" >/dev/null ||
    { cat "$WORK/$v.log" >&2; die "ringway ($v) did not start (port ${PORT[$v]} taken?)"; }
  a=$(wait_line "${PID[$v]}" "$WORK/$v.log" "^ringway: admin bound to ") ||
    { cat "$WORK/$v.log" >&2; die "ringway ($v) printed no admin address"; }
  ADMIN[$v]=${a##* }
done
for v in "${variants[@]}"; do
  ok=""
  for _ in $(seq 1 50); do
    curl -sf -o /dev/null --max-time 2 "http://${ADMIN[$v]}/ready" && { ok=1; break; }
    alive "$v"; sleep 0.1
  done
  [[ -n $ok ]] || die "ringway ($v) never became ready (admin ${ADMIN[$v]}/ready)"
  curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:${PORT[$v]}/" || die "ringway ($v) does not proxy to the origin"
done

# ------------------------------------------------------------------ 1. throughput per variant
: >"$WORK/throughput.tsv"
if [[ " $PARTS " == *" throughput "* ]]; then
  n=${#variants[@]}
  for r in $(seq 1 "$ROUNDS"); do
    order=()
    for k in $(seq 0 $((n - 1))); do order+=("${variants[$(((k + r - 1) % n))]}"); done
    say "throughput round $r/$ROUNDS: ${order[*]} (closed loop, $CONNS connections, $DURATION after $WARMUP)"
    pos=0
    for v in "${order[@]}"; do
      alive "$v"
      log="$WORK/access-$v.log"
      [[ -e $log ]] && : >"$log" # appending writer: truncating keeps the file small between runs
      st=$(stats "$v")
      read -r q0 ok0 s0 d0 <<<"$st"
      t0=$(cpu_ticks "${PID[$v]}")
      load "tp-r$r-$v" "${PORT[$v]}"
      settle "$v"
      t1=$(cpu_ticks "${PID[$v]}")
      alive "$v"
      st=$(stats "$v")
      read -r q1 ok1 s1 d1 <<<"$st"
      ((q1 - q0 == ok1 - ok0)) || die "ringway ($v) answered $((q1 - q0 - ok1 + ok0)) requests with non-2xx in round $r"
      lines=-1
      bytes=-1
      if [[ -e $log ]]; then lines=$(wc -l <"$log"); bytes=$(stat -c %s "$log"); fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$pos" "$v" "$((t1 - t0))" "$((q1 - q0))" \
        "$((s1 - s0))" "$((d1 - d0))" "$lines" "$bytes" "$SETTLED_S" >>"$WORK/throughput.tsv"
      printf '   %-13s %8.0f req/s\n' "$v" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_sec"])' "$RUNS/tp-r$r-$v.json")" >&2
      pos=$((pos + 1))
    done
  done
fi

# ------------------------------------------------------------------ 2. /stats during load (base)
: >"$WORK/stats.tsv"
poll_stats() {  # admin-addr outfile : every 100 ms, /stats and /stats/prometheus in turn, until killed
  local n=$(((DUR_S + WARM_S + 30) * 10)) urls=() i
  for ((i = 0; i < n; i++)); do
    if ((i % 2)); then urls+=("http://$1/stats/prometheus"); else urls+=("http://$1/stats"); fi
  done
  # One curl process for all reads (no fork per read): --rate spaces the transfer starts. It is
  # a reader, not a measured process: normal priority even with PRIO=rt, so it never holds up
  # the load generator and the origin on its core.
  exec taskset -c "$POLL_CPU" curl -s --rate 10/s --max-time "$LOAD_LIMIT" -o /dev/null \
    -w '%{stderr}%{http_code} %{size_download}\n' "${urls[@]}" >/dev/null 2>"$2"
}
if [[ " $PARTS " == *" stats "* ]]; then
  for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then pair=(off on); else pair=(on off); fi
    for p in "${pair[@]}"; do
      say "/stats round $r/$ROUNDS, poller $p: base at $RATE req/s (open loop, $CONNS connections, $DURATION after $WARMUP)"
      alive base
      poller=""
      : >"$WORK/poll-r$r.txt"
      if [[ $p == on ]]; then
        poll_stats "${ADMIN[base]}" "$WORK/poll-r$r.txt" &
        poller=$!
        pids+=("$poller")
      fi
      load "st-r$r-$p" "${PORT[base]}" --rate "$RATE"
      reads=0 bad=0 bytes=0
      if [[ -n $poller ]]; then
        kill -TERM "$poller" 2>/dev/null || true
        wait "$poller" 2>/dev/null || true
        read -r reads bad bytes < <(awk '$1 == 200 { n++; b += $2 } $1 != 200 { e++ } END { printf "%d %d %d\n", n, e, b }' "$WORK/poll-r$r.txt")
        ((reads > 0)) || die "the /stats poller read nothing (see $WORK/poll-r$r.txt)"
      fi
      alive base
      printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$reads" "$bad" "$bytes" >>"$WORK/stats.tsv"
    done
  done
fi

# ------------------------------------------------------------------ report
cp "$WORK/throughput.tsv" "$WORK/stats.tsv" "$RUNS/"
python3 - "$RUNS" "$OUT" "$TCK" "$ROUNDS" "$DURATION" "$WARMUP" "$CONNS" "$RATE" "$SETTLE" "${variants[@]}" <<'PY'
import json, os, platform, statistics, sys
runs, out, tck, rounds, duration, warmup, conns, rate, settle = sys.argv[1:10]
tck, rounds, conns, rate = int(tck), int(rounds), int(conns), float(rate)
variants = sys.argv[10:]
med = statistics.median
def spread(xs):
    return max(xs) / min(xs) - 1 if xs and min(xs) > 0 else float("nan")
def pct(x):
    return f"{x * 100:+.1f}%"
def fus(us):
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"
def table(head, rows):
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))
                     for r in [head] + rows)
def rep(name):
    return json.load(open(f"{runs}/{name}.json"))

summary = {"issue": 12, "duration": duration, "warmup": warmup, "connections": conns,
           "rounds": rounds, "settle_s": float(settle),
           "layout": "each variant: ringway, 1 worker, taskset CPU 0 (all variants running at once, "
                     "on their own ports); origin (ringway-bench origin, 1 worker), load generator "
                     "(1 worker) and /stats poller on CPU 1; loopback, HTTP/1.1 keep-alive",
           "cpu_us_per_request": "utime+stime of the proxy process (all threads, /proc/PID/stat) over "
                                 "warm-up + measurement + until the proxy is idle again (settle_s), divided by the requests the proxy "
                                 "counted (http.bench.downstream_rq_total) over the same window"}
texts = []

# --- part 1
tp = [l.rstrip("\n").split("\t") for l in open(f"{runs}/throughput.tsv") if l.strip()]
if tp:
    per = {v: [] for v in variants}
    for r, pos, v, ticks, rq, sent, dropped, lines, nbytes, settled in tp:
        j = rep(f"tp-r{r}-{v}")
        rq, ticks = int(rq), int(ticks)
        per[v].append({"round": int(r), "position": int(pos), "requests_per_sec": j["requests_per_sec"],
                       "requests_measured": j["requests"], "proxy_requests": rq, "cpu_ticks": ticks,
                       "cpu_us_per_request": ticks / tck * 1e6 / rq if rq else None,
                       "latency_us": j["latency_us"], "spans_sent": int(sent), "spans_dropped": int(dropped),
                       "settle_s": float(settled),
                       "access_log_lines": int(lines) if int(lines) >= 0 else None,
                       "access_log_bytes": int(nbytes) if int(nbytes) >= 0 else None})
    res = {}
    for v in variants:
        rs = per[v]
        if not rs:
            continue
        rps = [x["requests_per_sec"] for x in rs]
        cpu = [x["cpu_us_per_request"] for x in rs]
        res[v] = {"requests_per_sec": {"median": med(rps), "spread": spread(rps), "rounds": rps},
                  "cpu_us_per_request": {"median": med(cpu), "spread": spread(cpu), "rounds": cpu},
                  "p99_us_median": med(x["latency_us"]["p99"] for x in rs),
                  "spans_per_request": sum(x["spans_sent"] + x["spans_dropped"] for x in rs) / sum(x["proxy_requests"] for x in rs),
                  "spans_dropped": sum(x["spans_dropped"] for x in rs),
                  "runs": rs}
        logs = [x for x in rs if x["access_log_lines"] is not None]
        if logs:
            res[v]["access_log_lines_per_request"] = sum(x["access_log_lines"] for x in logs) / sum(x["proxy_requests"] for x in logs)
            res[v]["access_log_bytes_per_line"] = sum(x["access_log_bytes"] for x in logs) / max(1, sum(x["access_log_lines"] for x in logs))
    b = res.get("base")
    rows = []
    for v, x in res.items():
        r, c = x["requests_per_sec"], x["cpu_us_per_request"]
        if b and v != "base":
            x["vs_base"] = {"requests_per_sec_drop": 1 - r["median"] / b["requests_per_sec"]["median"],
                            "cpu_us_per_request_increase": c["median"] / b["cpu_us_per_request"]["median"] - 1}
        extra = []
        if x["spans_per_request"]:
            extra.append(f"{x['spans_per_request']:.3f} spans/req" + (f", {x['spans_dropped']} dropped" if x["spans_dropped"] else ""))
        if "access_log_lines_per_request" in x:
            extra.append(f"{x['access_log_lines_per_request']:.3f} log lines/req, {x['access_log_bytes_per_line']:.0f} B/line")
        vb = x.get("vs_base")
        rows.append([v, f"{r['median']:.0f}", f"{r['spread'] * 100:.1f}%",
                     pct(-vb["requests_per_sec_drop"]) if vb else "-",
                     f"{c['median']:.2f}", f"{c['spread'] * 100:.1f}%",
                     pct(vb["cpu_us_per_request_increase"]) if vb else "-",
                     fus(x["p99_us_median"]), "; ".join(extra)])
    t = table(["variant", "req/s", "spread", "vs base", "CPU-us/req", "spread", "vs base", "p99", "exported"], rows)
    rounds_t = table(["round"] + list(res), [[str(i + 1)] + [f"{res[v]['runs'][i]['requests_per_sec']:.0f} / {res[v]['runs'][i]['cpu_us_per_request']:.2f}"
                                                             for v in res] for i in range(min(len(res[v]["runs"]) for v in res))])
    texts.append(f"1. Throughput: closed loop, {conns} connections, {duration} after {warmup} warm-up; "
                 f"median of {rounds} rounds (spread = max/min-1)\n\n{t}\n\n"
                 f"per round (req/s / CPU-us per request; order rotated each round):\n{rounds_t}")
    if b:
        verdict = []
        for v in ("access_log", "all_on"):
            if v in res:
                d = res[v]["vs_base"]["requests_per_sec_drop"]
                verdict.append(f"{v}: median req/s {pct(-d)} vs. base (issue 12: at most 5% below: "
                               f"{'met' if d <= 0.05 else 'NOT met'}), CPU-us/req "
                               f"{pct(res[v]['vs_base']['cpu_us_per_request_increase'])}")
        if verdict:
            texts[-1] += "\n\n" + "\n".join(verdict)
    summary["throughput"] = res

# --- part 2
st = [l.rstrip("\n").split("\t") for l in open(f"{runs}/stats.tsv") if l.strip()]
if st:
    per = {"off": [], "on": []}
    for r, p, reads, bad, nbytes in st:
        j = rep(f"st-r{r}-{p}")
        per[p].append({"round": int(r), "requests_per_sec": j["requests_per_sec"], "latency_us": j["latency_us"],
                       "stats_reads": int(reads), "stats_read_failures": int(bad), "stats_bytes": int(nbytes)})
    res = {}
    rows = []
    for p, rs in per.items():
        if not rs:
            continue
        L = lambda k: [x["latency_us"][k] for x in rs]
        res[p] = {k: {"median": med(L(k)), "spread": spread(L(k)), "rounds": L(k)} for k in ("p50", "p99", "p999")}
        res[p]["requests_per_sec_median"] = med(x["requests_per_sec"] for x in rs)
        res[p]["stats_reads_median"] = med(x["stats_reads"] for x in rs)
        res[p]["runs"] = rs
        rows.append(["with poller" if p == "on" else "without", f"{res[p]['requests_per_sec_median']:.0f}",
                     fus(res[p]["p50"]["median"]), fus(res[p]["p99"]["median"]), f"{res[p]['p99']['spread'] * 100:.1f}%",
                     fus(res[p]["p999"]["median"]), f"{res[p]['stats_reads_median']:.0f}",
                     "  ".join(fus(v) for v in res[p]["p99"]["rounds"])])
    t = table(["/stats", "req/s", "p50", "p99", "spread", "p99.9", "reads/run", "p99 per round"], rows)
    txt = (f"2. /stats during load: base at {rate:.0f} req/s (open loop, coordinated-omission corrected), "
           f"{conns} connections, {duration} after {warmup} warm-up; poller GETs /stats and /stats/prometheus "
           f"in turn every 100 ms; median of {rounds} rounds each\n\n{t}")
    if "on" in res and "off" in res:
        res["p99_change_with_poller"] = res["on"]["p99"]["median"] / res["off"]["p99"]["median"] - 1
        res["p999_change_with_poller"] = res["on"]["p999"]["median"] / res["off"]["p999"]["median"] - 1
        txt += (f"\n\np99 with the poller vs. without: {pct(res['p99_change_with_poller'])} "
                f"(p99.9 {pct(res['p999_change_with_poller'])}); the p99 spread between rounds without "
                f"the poller is {res['off']['p99']['spread'] * 100:.1f}%")
    low = [x for rs in per.values() for x in rs if x["requests_per_sec"] < 0.9 * rate]
    if low:
        txt += f"\nnote: {len(low)} run(s) reached < 90% of {rate:.0f} req/s: the proxy could not keep up; lower RATE"
    texts.append(txt)
    summary["stats_during_load"] = {"rate": rate, **res}

cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except (OSError, IndexError):
    pass
summary["machine"] = {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
                      "loadavg_at_end": open("/proc/loadavg").read().split()[:3]}
json.dump(summary, open(f"{out}/observability.json", "w"), indent=2)
print()
print("\n\n".join(texts))
print(f"\nmachine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}, "
      f"load average at the end {' '.join(summary['machine']['loadavg_at_end'])}")
PY
echo "results: $OUT/observability.json (per-run reports, configs and proxy logs in $RUNS/)"
