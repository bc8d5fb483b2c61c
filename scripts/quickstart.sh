#!/usr/bin/env bash
# Builds ringway, starts the bundled origin on 127.0.0.1:9000, runs ringway on
# config/quickstart.yaml (127.0.0.1:10000), shows a few requests going through, drives load
# through it and prints the latency report, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=127.0.0.1:10000
ORIGIN=127.0.0.1:9000
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
# A signal ends the script (and so runs cleanup once): a handler that only cleaned up would
# let the script go on measuring servers it has just stopped.
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for a in "$ORIGIN" "$PROXY"; do
  if port_busy "$a"; then
    echo "quickstart: something already listens on $a; stop it first" >&2
    exit 1
  fi
done
wait_port() {
  for _ in $(seq 1 100); do port_busy "$1" && return 0; sleep 0.1; done
  echo "quickstart: nothing came up on $1" >&2; return 1
}

command -v curl >/dev/null 2>&1 || { echo "quickstart: installing curl"; apt-get update -qq && apt-get install -y -qq curl; }
ulimit -l unlimited 2>/dev/null || true

echo "== building (release)"
cargo build --release --bins
BIN="${CARGO_TARGET_DIR:-target}/release"

echo "== starting the origin on $ORIGIN"
"$BIN"/ringway-bench origin --listen "$ORIGIN" --workers 1 &
pids+=($!)
wait_port "$ORIGIN"

echo "== validating and starting ringway on $PROXY"
"$BIN"/ringway validate -c config/quickstart.yaml
"$BIN"/ringway run -c config/quickstart.yaml --log-level warn &
pids+=($!)
wait_port "$PROXY"

echo "== a few requests through the proxy"
echo "\$ curl -si http://$PROXY/healthz"; curl -si "http://$PROXY/healthz"; echo
echo "\$ curl -s http://$PROXY/echo"; curl -s "http://$PROXY/echo"; echo
echo "\$ curl -s http://$PROXY/static/echo   (prefix_rewrite: /static/ -> /)"; curl -s "http://$PROXY/static/echo"; echo
echo "\$ curl -s -o /dev/null -w '%{http_code}\\n' http://$PROXY/status/503"; curl -s -o /dev/null -w '%{http_code}\n' "http://$PROXY/status/503"

echo "== load: $CONNECTIONS connections for $DURATION through ringway"
"$BIN"/ringway-bench load "http://$PROXY/" --connections "$CONNECTIONS" --duration "$DURATION" --warmup 1s

echo "== done; stopping the proxy and the origin"
