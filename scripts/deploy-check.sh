#!/usr/bin/env bash
# Checks the deployment pieces without systemd as PID 1 and without a Docker engine (neither is
# on the project's machines):
#  1. `systemd-analyze verify` and `security --offline` on scripts/systemd/ringway.service;
#  2. ringway run the way the image runs it (config/docker.yaml, a non-root uid, memlock as given)
#     under the unit's syscall deny list and MemoryDenyWriteExecute (rebuilt with libseccomp from
#     `systemd-analyze syscall-filter`), in a private network namespace where `origin` (the
#     config's strict_dns upstream) is 127.0.0.1 with a Python origin behind it; then curl
#     through it, SIGHUP (the unit's ExecReload) and SIGTERM (its KillSignal).
# The image itself (build, run, a container engine's seccomp profile): scripts/docker/check.sh.
# Usage (as root; needs python3-seccomp, util-linux, iproute2, curl):
#   scripts/deploy-check.sh [path/to/ringway]      (default target/release/ringway)
#   MEMLOCK=65536 scripts/deploy-check.sh          (memlock in bytes; default: this shell's;
#                                                  65536 shows ringway refuse a too-small one)
set -euo pipefail
cd "$(dirname "$0")/.."
RINGWAY=$(realpath "${1:-target/release/ringway}")
UNIT=scripts/systemd/ringway.service
WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "=== systemd-analyze verify $UNIT"
sed "s#/usr/local/bin/ringway#$RINGWAY#g" "$UNIT" > "$WORK/ringway.service"
systemd-analyze verify "$WORK/ringway.service"
systemd-analyze security --offline=true "$WORK/ringway.service" | tail -1

# The unit's deny list, expanded to syscall names.
groups=$(sed -n 's/^SystemCallFilter=~//p' "$UNIT")
for g in $groups; do systemd-analyze syscall-filter "$g"; done \
  | grep -v '^@\|^ *#\|^$' | sed 's/^ *//' | sort -u > "$WORK/denied.txt"
grep -q io_uring "$WORK/denied.txt" && { echo "the deny list blocks io_uring"; exit 1; }

cat > "$WORK/seccomp_wrap.py" <<'EOF'
import os, sys, seccomp
PROT_WRITE, PROT_EXEC = 2, 4
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in open(sys.argv[1]).read().split():
    try:
        f.add_rule(seccomp.ERRNO(1), name)
    except Exception:
        pass  # not a syscall on this architecture
wx = seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC)
f.add_rule(seccomp.ERRNO(1), "mmap", wx)
for call in ("mprotect", "pkey_mprotect"):
    f.add_rule(seccomp.ERRNO(1), call, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
f.load()
os.execv(sys.argv[2], sys.argv[2:])
EOF

cat > "$WORK/inside.sh" <<'EOF'
set -u
W=$1 RINGWAY=$2 MEMLOCK=$3
ip link set lo up
echo "127.0.0.1 localhost origin" > "$W/hosts" && mount --bind "$W/hosts" /etc/hosts
mkdir -p "$W/www" && echo "hello from origin" > "$W/www/index.html"
(cd "$W/www" && exec python3 -m http.server 9000 --bind 127.0.0.1 >/dev/null 2>&1) &
origin=$!
limit=(); [ -n "$MEMLOCK" ] && limit=(prlimit --memlock="$MEMLOCK")
"${limit[@]}" setpriv --reuid 10001 --regid 10001 --clear-groups --no-new-privs \
  /usr/bin/python3 "$W/seccomp_wrap.py" "$W/denied.txt" \
  "$RINGWAY" run -c "$W/ringway.yaml" > "$W/out" 2> "$W/err" &
rw=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:10000/healthz && break; sleep 0.2; done
sleep 1
fail=0
check() { local got; got=$(curl -s "$2"); echo "$1: $got"; [ "$got" = "$3" ] || fail=1; }
check "GET /healthz" 127.0.0.1:10000/healthz ok
check "GET / (origin by strict_dns)" 127.0.0.1:10000/ "hello from origin"
kill -HUP $rw 2>/dev/null; sleep 1
check "GET / after SIGHUP" 127.0.0.1:10000/ "hello from origin"
kill -TERM $rw 2>/dev/null; wait $rw; rc=$?
echo "exit after SIGTERM: $rc"; [ $rc = 0 ] || fail=1
kill $origin
[ $fail = 0 ] || { echo "--- ringway stderr"; cat "$W/err"; }
exit $fail
EOF
cp config/docker.yaml "$WORK/ringway.yaml"
chmod 644 "$WORK"/*
echo "=== ringway as uid 10001, config/docker.yaml, the unit's seccomp, memlock ${MEMLOCK:-$(ulimit -l) KiB}"
unshare -n -m bash "$WORK/inside.sh" "$WORK" "$RINGWAY" "${MEMLOCK:-}"
echo "=== deploy check passed"
