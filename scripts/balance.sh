#!/usr/bin/env bash
# How evenly connections split between two workers: `connection_balance: exact` (the default)
# against `kernel` (the SO_REUSEPORT hash). Starts the bundled origin and the load generator on
# CPU 1 and ringway with 2 workers (not pinned), runs RUNS loads of 2 s with 50 and with 8 fresh
# keep-alive connections, and prints each run's split as read from the admin's
# worker.N.downstream_cx_active one second in. Loopback only; stops what it starts.
#
# Usage: scripts/balance.sh     env: RUNS=10 RINGWAY_BIN=path BENCH_BIN=path CARGO_TARGET_DIR=...
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
if [[ -z "${RINGWAY_BIN:-}" || -z "${BENCH_BIN:-}" ]]; then
  cargo build --release --bins >&2
  T="${CARGO_TARGET_DIR:-target}/release"
  RINGWAY_BIN="${RINGWAY_BIN:-$T/ringway}"
  BENCH_BIN="${BENCH_BIN:-$T/ringway-bench}"
fi
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
taskset -c 1 "$BENCH_BIN" origin --listen 127.0.0.1:9000 --workers 1 >/dev/null 2>&1 &
pids+=($!)
for mode in exact kernel; do
  port=$([ "$mode" = exact ] && echo 10070 || echo 10071)
  adm=$([ "$mode" = exact ] && echo 19970 || echo 19971)
  sed -e "s/10010/$port/" -e "s/    address: 127.0.0.1:$port/    address: 127.0.0.1:$port\n    connection_balance: $mode/" \
    config/bench.yaml >"$WORK/$mode.yaml"
  printf 'admin: { address: 127.0.0.1:%s }\n' "$adm" >>"$WORK/$mode.yaml"
  "$RINGWAY_BIN" run -c "$WORK/$mode.yaml" --workers 2 --log-level warn >/dev/null 2>&1 &
  pp=$!
  pids+=("$pp")
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$adm/ready" && break; sleep 0.1; done
  for conns in 50 8; do
    splits=()
    for _ in $(seq "$RUNS"); do
      timeout 30 taskset -c 1 "$BENCH_BIN" load "http://127.0.0.1:$port/" -c "$conns" -d 2s --workers 1 >/dev/null 2>&1 &
      lp=$!
      sleep 1
      s=$(curl -sf --max-time 5 "http://127.0.0.1:$adm/stats?filter=downstream_cx_active")
      a=$(awk -F': ' '/^worker.0.downstream_cx_active/{print $2}' <<<"$s")
      b=$(awk -F': ' '/^worker.1.downstream_cx_active/{print $2}' <<<"$s")
      splits+=("$a/$b")
      wait "$lp"
      sleep 0.3
    done
    echo "connection_balance: $mode, $conns connections: ${splits[*]}"
  done
  kill "$pp"
  wait "$pp" 2>/dev/null || true
done
