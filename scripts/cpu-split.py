#!/usr/bin/env python3
"""User and system CPU-us per request of proxies, measured in turns (interleaved).

Every proxy runs at once, pinned to CPU 0 under SCHED_FIFO; the origin (the meters' nginx on
127.0.0.1:9000) and wrk (-t1 -c50) run on CPU 1. Each iteration loads every proxy once, in an
order that rotates: a 1 s warm-up, then --secs seconds measured; utime and stime of the proxy's
process come from /proc/<pid>/stat over the requests wrk counted. Prints medians and ranges.

  flock /tmp/ringway-bench.lock chrt -f 50 python3 scripts/cpu-split.py --iters 8 \\
      --proxy 'hit=10014=target/release/ringway run -c cache-10014.yaml --workers 1' \\
      --proxy 'proxied=10012=target/release/ringway run -c plain-10012.yaml --workers 1'

Needs the meters' peers (../shared/meters/setup.sh: nginx, wrk); METERS=path overrides where
they are."""
import argparse, os, re, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
METERS = os.environ.get("METERS", os.path.join(HERE, "..", "..", "shared", "meters"))
HZ = os.sysconf("SC_CLK_TCK")

ap = argparse.ArgumentParser()
ap.add_argument("--proxy", action="append", default=[], help="NAME=PORT=COMMAND")
ap.add_argument("--iters", type=int, default=8)
ap.add_argument("--secs", type=int, default=4)
a = ap.parse_args()
if not a.proxy:
    sys.exit("cpu-split: give at least one --proxy NAME=PORT=COMMAND")


def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])


def wrk(port, secs, fifo=False):
    cmd = ["taskset", "-c", "1"] + (["chrt", "-f", "50"] if fifo else [])
    cmd += ["wrk", "-t1", "-c50", f"-d{secs}s", f"http://127.0.0.1:{port}/"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30).stdout


os.makedirs("/tmp/ringway-peers", exist_ok=True)
origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", "/tmp/ringway-peers", "-c",
                           os.path.join(METERS, "configs", "origin-nginx.conf")])
procs = []
try:
    for spec in a.proxy:
        name, port, cmd = spec.split("=", 2)
        p = subprocess.Popen(["taskset", "-c", "0", "chrt", "-f", "50"] + cmd.split(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append((name, port, p))
    time.sleep(2)
    res = {n: ([], []) for n, _, _ in procs}
    for it in range(a.iters):
        k = it % len(procs)
        for name, port, p in procs[k:] + procs[:k]:
            wrk(port, 1)
            u0, s0 = ticks(p.pid)
            out = wrk(port, a.secs, fifo=True)
            u1, s1 = ticks(p.pid)
            m = re.search(r"(\d+) requests in", out)
            if not m or int(m.group(1)) == 0:
                sys.exit(f"cpu-split: no requests counted for {name}: {out!r}")
            n = int(m.group(1))
            res[name][0].append((u1 - u0) / HZ * 1e6 / n)
            res[name][1].append((s1 - s0) / HZ * 1e6 / n)
    print(f"{a.iters} iterations x {a.secs}s, interleaved; wrk -t1 -c50; proxies on CPU 0")
    print("| proxy | user CPU-us/req (range) | system (range) | total |")
    print("|---|---|---|---|")
    for name, (u, s) in res.items():
        tot = statistics.median(x + y for x, y in zip(u, s))
        print(f"| {name} | {statistics.median(u):.3f} ({min(u):.3f}-{max(u):.3f}) "
              f"| {statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f}) | {tot:.3f} |")
finally:
    for _, _, p in procs:
        p.terminate()
    origin.terminate()
    for _, _, p in procs:
        p.wait(timeout=10)
    origin.wait(timeout=10)
