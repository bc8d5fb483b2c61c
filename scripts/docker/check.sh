#!/usr/bin/env bash
# Builds the container image from scripts/docker/Dockerfile and runs it as the README says,
# with a real origin beside it, then checks what a user would: it answers through the proxy,
# it runs as a non-root user, it says which I/O driver it chose under the engine's default
# seccomp profile (and under `seccomp=unconfined`), and it stops cleanly on SIGTERM.
#
#   scripts/docker/check.sh            # docker if an engine answers, else podman
#   ENGINE=podman scripts/docker/check.sh
#   BUILD=0 scripts/docker/check.sh    # run the image built last time
#
# Where Docker Hub cannot be reached (this project's development machines reach Debian's and
# Rust's servers but not Docker Hub), the two base images the Dockerfile names are built here
# as stand-ins under the same names: `debian:bookworm-slim` by debootstrap (minbase) and
# `rust:1-bookworm` as Docker's is made (that Debian plus rustup's stable toolchain in
# /usr/local/cargo). The Dockerfile itself is built unchanged. Needs root (podman, apt-get).
# Ports are published on 127.0.0.1 only; the origin is a second container on a private network,
# found by the name `origin` as config/docker.yaml expects. Everything started is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${WORK:-/tmp/ringway-docker-check}
NET=ringway-check-net
PORT=${PORT:-18000}
ADMIN=${ADMIN_PORT:-18901}
mkdir -p "$W"
die() { echo "docker-check: FAIL: $*" >&2; exit 1; }
say() { echo "docker-check: $*"; }

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker > /dev/null && docker info > /dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
if [ "$engine" = podman ]; then
  need=()
  command -v podman > /dev/null || need+=(podman)
  command -v runc > /dev/null || need+=(runc)
  command -v debootstrap > /dev/null || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > "$W/apt.log" 2>&1 ||
      die "apt-get install ${need[*]} (see $W/apt.log)"
  fi
  # crun refuses hosts with cgroup v1 and v2 mounted side by side; runc takes them.
  E=(podman --runtime runc)
  NOPULL=(--pull=never)
else
  E=(docker)
  NOPULL=()
fi
say "engine: ${E[*]}"

# The README's line asks for `--ulimit memlock=-1`. A container cannot get limits above its
# engine's own where the engine lacks CAP_SYS_RESOURCE (a rootless or sandboxed podman): there
# the host's hard limits are passed instead, and said.
LIMITS=(--ulimit memlock=-1)
if [ "$engine" = podman ]; then
  hl=$(ulimit -Hl)
  hn=$(ulimit -Hn)
  if [ "$hl" != unlimited ]; then
    # podman's defaults for nofile and nproc are above such a host's too.
    LIMITS=(--ulimit "memlock=$((hl * 1024))" --ulimit "nofile=$hn:$hn" --ulimit nproc=4096:4096)
    say "memlock capped by this host at $hl KiB: using ${LIMITS[*]}"
  fi
fi

# The base images: pulled, or stand-ins built here under the same names.
have() { "${E[@]}" image inspect "$1" > /dev/null 2>&1; }
if ! have docker.io/library/debian:bookworm-slim && ! "${E[@]}" pull -q debian:bookworm-slim > /dev/null 2>&1; then
  say "debian:bookworm-slim cannot be pulled: building a stand-in with debootstrap"
  rm -rf "$W/slim"
  debootstrap --variant=minbase bookworm "$W/slim" http://deb.debian.org/debian > "$W/debootstrap.log" 2>&1 ||
    die "debootstrap (see $W/debootstrap.log)"
  tar -C "$W/slim" -c . | "${E[@]}" import - docker.io/library/debian:bookworm-slim > /dev/null
  rm -rf "$W/slim"
fi
if ! have docker.io/library/rust:1-bookworm && ! "${E[@]}" pull -q rust:1-bookworm > /dev/null 2>&1; then
  say "rust:1-bookworm cannot be pulled: building a stand-in (Debian + rustup stable)"
  rm -rf "$W/rust" && mkdir -p "$W/rust"
  # A machine behind a TLS-inspecting egress proxy trusts extra CAs; the stand-in does too.
  cp /usr/local/share/ca-certificates/*.crt "$W/rust/" 2> /dev/null || true
  cat > "$W/rust/Containerfile" << 'EOF'
FROM docker.io/library/debian:bookworm-slim
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY . /tmp/ca/
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev make pkg-config git \
    && rm -rf /var/lib/apt/lists/* \
    && (cp /tmp/ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null || true) && rm -rf /tmp/ca \
    && update-ca-certificates \
    && curl -sSf -o /tmp/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
    && chmod +x /tmp/rustup-init \
    && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain stable \
    && rm /tmp/rustup-init && rustc --version
EOF
  "${E[@]}" build -t docker.io/library/rust:1-bookworm "$W/rust" > "$W/rust-build.log" 2>&1 ||
    die "building the rust stand-in (see $W/rust-build.log)"
fi

if [ "${BUILD:-1}" = 1 ]; then
  say "building the image (scripts/docker/Dockerfile; log in $W/build.log)"
  t0=$(date +%s)
  "${E[@]}" build "${NOPULL[@]}" -f scripts/docker/Dockerfile -t ringway . > "$W/build.log" 2>&1 ||
    die "the image did not build (see $W/build.log)"
  say "built in $(($(date +%s) - t0)) s"
fi
size=$("${E[@]}" image inspect ringway --format '{{.Size}}')
say "image size $((size / 1024 / 1024)) MiB"

names=(ringway-check-origin ringway-check)
cleanup() {
  "${E[@]}" rm -f "${names[@]}" > /dev/null 2>&1 || true
  "${E[@]}" network rm "$NET" > /dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
"${E[@]}" network create "$NET" > /dev/null

# The origin: ringway-bench's own, from the same image, reachable only on the private network.
"${E[@]}" run -d --name ringway-check-origin --network "$NET" --network-alias origin \
  --security-opt seccomp=unconfined "${LIMITS[@]}" \
  --entrypoint ringway-bench ringway origin --listen 0.0.0.0:9000 > /dev/null

get() { curl -s --max-time 5 "$@"; }
wait_up() { # url
  for _ in $(seq 100); do get -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}

# One run of the README's `docker run` line (ports on 127.0.0.1, the origin's network added).
run_once() { # label, extra run flags...
  local label=$1
  shift
  "${E[@]}" run -d --name ringway-check --network "$NET" "${LIMITS[@]}" \
    -p "127.0.0.1:$PORT:10000" -p "127.0.0.1:$ADMIN:9901" "$@" ringway > /dev/null
  wait_up "http://127.0.0.1:$ADMIN/ready" || {
    "${E[@]}" logs ringway-check 2>&1 | tail -20 >&2
    die "$label: the admin port never answered"
  }
  local body
  body=$(get "http://127.0.0.1:$PORT/healthz")
  [ "$body" = ok ] || die "$label: /healthz answered '$body'"
  # The first request may come before the first DNS answer for `origin`: allow a few tries.
  local code=
  for _ in $(seq 50); do
    code=$(get -o "$W/body" -w '%{http_code}' "http://127.0.0.1:$PORT/bytes/1000" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  [ "$code" = 200 ] && [ "$(wc -c < "$W/body")" = 1000 ] ||
    die "$label: a request through the proxy to the origin answered $code"
  local info driver user
  info=$(get "http://127.0.0.1:$ADMIN/server_info")
  driver=$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["io_driver"])')
  user=$("${E[@]}" exec ringway-check id -u)
  [ "$user" != 0 ] || die "$label: the proxy runs as root"
  local warn
  warn=$("${E[@]}" logs ringway-check 2>&1 | grep -m1 'WARN.*io_uring' || true)
  local t1 code_exit
  t1=$(date +%s%N)
  "${E[@]}" stop -t 20 ringway-check > /dev/null
  code_exit=$("${E[@]}" inspect ringway-check --format '{{.State.ExitCode}}')
  local ms=$((($(date +%s%N) - t1) / 1000000))
  [ "$code_exit" = 0 ] || die "$label: exit code $code_exit after SIGTERM"
  "${E[@]}" rm -f ringway-check > /dev/null
  say "$label: /healthz ok, proxied 200 (1000 bytes), uid $user, io_driver $driver," \
    "SIGTERM -> exit 0 in $ms ms" >&2
  [ -z "$warn" ] || say "$label: the proxy warned: $warn" >&2
  echo "$driver"
}

# run_once reports on stderr and prints the driver it saw on stdout.
d=$(run_once "default seccomp")
[ "$d" = epoll ] || [ "$d" = io_uring ] || die "default seccomp: no io_driver reported"
d=$(run_once "seccomp=unconfined" --security-opt seccomp=unconfined)
[ "$d" = io_uring ] || die "seccomp=unconfined: io_driver $d (io_uring expected)"
say "PASS"
