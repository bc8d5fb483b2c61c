#!/usr/bin/env bash
# Fuzz ringway's parsers (cargo-fuzz project engine/fuzz): every target, one after the other.
# Usage: scripts/fuzz.sh [SECONDS [TARGET...]]   (SECONDS per target, default 10; all targets)
#
# Targets: h1_request (the HTTP/1 request parser and chunked decoder), h1_response (an
# upstream's response head: parser, model round trip, chunked decoder), cache_policy (the HTTP
# cache's rules over header values: Cache-Control, lifetimes, ages, Vary, validators, dates),
# proxy_protocol (PROXY protocol v1/v2 parser and encoders), client_hello (the TLS ClientHello
# peek), h2_mapping (HTTP/2 preface detection and the HTTP/2 head mapping to and from the stream
# model).
#
# Installs cargo-fuzz when it is missing. Runs on a stable toolchain: RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly-only flags (-Zsanitizer=address, sancov passes). The checked-in
# seeds (engine/fuzz/corpus/<target>) are read, never written: new inputs go to a scratch
# corpus under engine/fuzz/target/. A crash leaves its input in engine/fuzz/artifacts/<target>/
# and a non-zero exit (the targets after it do not run); replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir engine/fuzz <target> <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."

run_for="${1:-10}"
case "$run_for" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS [TARGET...]]" >&2; exit 2 ;;
esac
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(h1_request h1_response cache_policy proxy_protocol client_hello h2_mapping)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  cargo fuzz build --fuzz-dir engine/fuzz "$target"
done
for target in "${targets[@]}"; do
  echo "=== fuzz $target for ${run_for}s"
  scratch="engine/fuzz/target/corpus-run/$target"
  mkdir -p "$scratch"
  cargo fuzz run --fuzz-dir engine/fuzz "$target" "$scratch" "engine/fuzz/corpus/$target" -- \
    -max_total_time="$run_for" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
