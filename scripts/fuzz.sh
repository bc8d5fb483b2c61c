#!/usr/bin/env bash
# Fuzz the HTTP/1 request parser (cargo-fuzz project engine/fuzz, target h1_request).
# Usage: scripts/fuzz.sh [SECONDS]   (default 10)
#
# Installs cargo-fuzz when it is missing. Runs on a stable toolchain: RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly-only flags (-Zsanitizer=address, sancov passes). The checked-in
# seeds (engine/fuzz/corpus/h1_request) are read, never written: new inputs go to a scratch
# corpus under engine/fuzz/target/. A crash leaves its input in engine/fuzz/artifacts/h1_request/
# and a non-zero exit; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir engine/fuzz h1_request <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."

run_for="${1:-10}"
case "$run_for" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
scratch=engine/fuzz/target/corpus-run/h1_request
mkdir -p "$scratch"
cargo fuzz build --fuzz-dir engine/fuzz h1_request
cargo fuzz run --fuzz-dir engine/fuzz h1_request "$scratch" engine/fuzz/corpus/h1_request -- \
  -max_total_time="$run_for" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
