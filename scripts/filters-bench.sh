#!/usr/bin/env bash
# What the HTTP stream layer and the built-in filters cost, beside nginx, in the same run.
# Needs the peers of ../shared/meters (setup.sh: nginx, wrk) and release builds.
#
#   BASE=/path/to/older/ringway HEAD=target/release/ringway scripts/filters-bench.sh [PART...]
#
# PARTs (default: all):
#   chain  - nginx, BASE and HEAD with no filters, HEAD with header_mutation + cors +
#            local_ratelimit (../shared/meters/run.py: proxy on CPU 0, wrk -c50 on CPU 1)
#   cache  - HEAD proxying vs HEAD serving cache hits vs nginx serving proxy_cache hits
#   gzip   - a 100 KiB JSON body gzipped by HEAD's compressor vs nginx `gzip on`, same level
#            (LEVEL, default 6): CPU-µs per request, throughput, output size
# ROUNDS (default 3) rounds of each; measured processes run under SCHED_FIFO (chrt -f 50) and
# hold /tmp/ringway-bench.lock, as the other benchmark scripts do.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
METERS=${METERS:-$ROOT/../shared/meters}
HEAD=${HEAD:-$ROOT/target/release/ringway}
BASE=${BASE:-}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-6}
W=/tmp/ringway-filters-bench
mkdir -p "$W" /tmp/ringway-peers/nginx-cache
die() { echo "filters-bench: $*" >&2; exit 1; }
[ -x "$HEAD" ] || die "no ringway at $HEAD (cargo build --release)"
[ -f "$METERS/run.py" ] || die "no meters at $METERS"

# Configs derived from config/bench.yaml (origin on 127.0.0.1:9000).
cfg() { # port, filters-yaml (indented for http_filters), origin port
  sed "s/127.0.0.1:10010/127.0.0.1:$1/; s/127.0.0.1:9000/127.0.0.1:${3:-9000}/" config/bench.yaml |
    awk -v f="$2" '{print} /idle_timeout: 300s/ && !done && f != "" {print "              http_filters:"; printf "%s", f; done=1}'
}
cfg 10010 "" > "$W/plain-10010.yaml"
cfg 10011 "" > "$W/plain-10011.yaml"
cfg 10012 '                - name: header_mutation
                  mutations:
                    request_mutations: [{ append: { header: { key: x-edge, value: ringway } } }]
                    response_mutations: [{ append: { header: { key: x-served-by, value: ringway } } }]
                - name: cors
                  allow_origin_string_match: [{ suffix: ".example.com" }]
                  allow_methods: "GET, POST"
                - name: local_ratelimit
                  stat_prefix: rl
                  token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
' > "$W/three-10012.yaml"
cfg 10013 '                - name: cache
                  default_ttl: 3600s
' > "$W/cache-10013.yaml"
cfg 10014 "                - name: compressor
                  compressor_library: { name: gzip, compression_level: $LEVEL }
" 9100 > "$W/gzip-10014.yaml"

cat > "$W/nginx-cache.conf" <<NGX
worker_processes 1; daemon off; pid $W/nginx-cache.pid; error_log $W/nginx-cache.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path /tmp/ringway-peers/nginx-cache levels=1:2 keys_zone=c:10m max_size=64m inactive=1h;
  upstream origin { server 127.0.0.1:9000; keepalive 128; }
  server { listen 127.0.0.1:10004 reuseport backlog=4096;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_cache c; proxy_cache_valid 200 1h; } } }
NGX
mkdir -p "$W/www"
python3 - "$W/www/data.json" <<'PY'
import json, sys
items = [{"id": i, "name": "item-%d" % i, "tags": ["alpha", "beta", "gamma"], "price": i * 1.25,
          "active": i % 2 == 0,
          "description": "A moderately repetitive description of item number %d for compression tests." % i}
         for i in range(700)]
open(sys.argv[1], "w").write(json.dumps({"items": items})[:102400])
PY
cat > "$W/origin-json.conf" <<NGX
worker_processes 1; daemon off; pid $W/origin-json.pid; error_log $W/origin-json.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; types { application/json json; }
  server { listen 127.0.0.1:9100 reuseport backlog=4096; root $W/www; gzip off; } }
NGX
cat > "$W/nginx-gzip.conf" <<NGX
worker_processes 1; daemon off; pid $W/nginx-gzip.pid; error_log $W/nginx-gzip.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:9100; keepalive 128; }
  server { listen 127.0.0.1:10005 reuseport backlog=4096;
    gzip on; gzip_types application/json; gzip_comp_level $LEVEL; gzip_proxied any; gzip_min_length 30;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX

run_meter() { flock /tmp/ringway-bench.lock chrt -f 50 python3 "$METERS/run.py" --runs 3 --secs 5 "$@"; }

chain() {
  for r in $(seq "$ROUNDS"); do
    echo "--- chain round $r"
    local extra=()
    [ -n "$BASE" ] && extra+=(--extra "base=10010=$BASE run -c $W/plain-10010.yaml --workers 1")
    extra+=(--extra "head=10011=$HEAD run -c $W/plain-10011.yaml --workers 1")
    extra+=(--extra "three_filters=10012=$HEAD run -c $W/three-10012.yaml --workers 1")
    run_meter --only nginx "${extra[@]}"
  done
}

cache() {
  for r in $(seq "$ROUNDS"); do
    echo "--- cache round $r"
    run_meter --only '' \
      --extra "proxied=10011=$HEAD run -c $W/plain-10011.yaml --workers 1" \
      --extra "cache_hits=10013=$HEAD run -c $W/cache-10013.yaml --workers 1" \
      --extra "nginx_proxy_cache=10004=nginx -p /tmp/ringway-peers -c $W/nginx-cache.conf"
  done
}

gzip_part() {
  ticks() { local t=0 p; for p in $1 $(pgrep -P "$1"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
  taskset -c 1 nginx -p /tmp/ringway-peers -c "$W/origin-json.conf" & local O=$!
  sleep 0.5
  local who P PORT
  for who in nginx ringway; do
    if [ $who = nginx ]; then taskset -c 0 chrt -f 50 nginx -p /tmp/ringway-peers -c "$W/nginx-gzip.conf" & P=$!; PORT=10005
    else taskset -c 0 chrt -f 50 "$HEAD" run -c "$W/gzip-10014.yaml" --workers 1 >/dev/null 2>&1 & P=$!; PORT=10014; fi
    sleep 1
    local size ok
    size=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/data.json" | wc -c)
    ok=$(curl -s --compressed "http://127.0.0.1:$PORT/data.json" | cmp -s - "$W/www/data.json" && echo same || echo DIFFERENT)
    taskset -c 1 wrk -t1 -c10 -d2s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/data.json" >/dev/null
    for r in $(seq "$ROUNDS"); do
      local t0 t1 out reqs rps
      t0=$(ticks $P)
      out=$(taskset -c 1 chrt -f 50 wrk -t1 -c10 -d5s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/data.json")
      t1=$(ticks $P)
      reqs=$(echo "$out" | awk '/requests in/{print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
      python3 -c "print('$who level=$LEVEL gzip_bytes=$size decoded=$ok req/s=$rps CPU-us/req=%.1f uncompressed_MB/s=%.1f' % (($t1-$t0)/100*1e6/$reqs, $rps*102400/1e6))"
    done
    kill $P; wait $P 2>/dev/null || true
  done
  kill $O; wait $O 2>/dev/null || true
}

parts=${*:-chain cache gzip}
for p in $parts; do
  case $p in
    chain) chain ;;
    cache) cache ;;
    gzip) flock /tmp/ringway-bench.lock bash -c "$(declare -f gzip_part); W=$W HEAD=$HEAD LEVEL=$LEVEL ROUNDS=$ROUNDS gzip_part" ;;
    *) die "unknown part $p" ;;
  esac
done
