#!/usr/bin/env python3
"""Interleaved same-run comparison of proxies, for effects smaller than the machine's drift.

Every proxy runs at once (pinned to CPU 0, one worker each); the origin (nginx, from
../shared/meters) and wrk run on CPU 1. Each iteration loads every proxy once for --secs seconds,
in an order that rotates, and records the proxy's CPU-us per request (utime+stime of its process
tree from /proc over the requests wrk counted). It prints each proxy's median and, for each
--ratio A/B, the median (and quartiles) of the per-iteration ratios: two proxies measured seconds
apart share the machine's state, so slow drift cancels where run.py's back-to-back blocks of
runs cannot cancel it.

  flock /tmp/ringway-bench.lock chrt -f 50 python3 scripts/interleaved.py --iters 24 \
      --proxy 'nginx=10001=nginx -p /tmp/ringway-peers -c ../shared/meters/configs/nginx.conf' \
      --proxy 'head=10011=target/release/ringway run -c plain-10011.yaml --workers 1' \
      --ratio head/nginx

With --bench PATH the load comes from ringway-bench instead of wrk (`ringway-bench load -t 1`,
on CPU 1), which is how the TLS rows are measured: --https targets https:// (certificates not
checked, signatures still verified), --close opens a new connection (a full handshake unless
--bench-args '--tls-resume') per request; --bench-args passes more flags (e.g. '--tls-version 1.2').
--split also prints user and system CPU-us per request apart.

Needs the meters' peers (../shared/meters/setup.sh: nginx, wrk); METERS=path overrides where
run.py is."""
import argparse, os, shlex, statistics, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("METERS", os.path.join(HERE, "..", "..", "shared", "meters")))
import run as m

ap = argparse.ArgumentParser()
ap.add_argument("--proxy", action="append", default=[], help="NAME=PORT=COMMAND")
ap.add_argument("--ratio", action="append", default=[], help="A/B")
ap.add_argument("--iters", type=int, default=12)
ap.add_argument("--secs", type=int, default=3)
ap.add_argument("--conns", type=int, default=50)
ap.add_argument("--path", default="/")
ap.add_argument("--close", action="store_true",
                help="a new connection per request (wrk sends `Connection: close` and reconnects)")
ap.add_argument("--bench", help="ringway-bench binary: the load comes from it instead of wrk")
ap.add_argument("--https", action="store_true", help="https:// targets (needs --bench)")
ap.add_argument("--bench-args", default="", help="more ringway-bench load flags")
ap.add_argument("--split", action="store_true",
                help="also print each proxy's user and system CPU-us per request (medians, ranges)")
ap.add_argument("--origin-h2c", action="store_true",
                help="the origin is ringway-bench's own, speaking HTTP/1.1 and h2c (needs --bench): for "
                "proxies configured with an HTTP/2 upstream")
ap.add_argument("--transfer", help="download:SIZE or upload:SIZE: one ringway-bench transfer per round "
                "(needs --bench; the origin is then ringway-bench's own); reports GB/s and CPU-s/GB")
a = ap.parse_args()
if a.https and not a.bench:
    sys.exit("--https needs --bench (wrk reuses TLS sessions across reconnects)")
if a.transfer and not a.bench:
    sys.exit("--transfer needs --bench")
if a.origin_h2c and not a.bench:
    sys.exit("--origin-h2c needs --bench")
if a.transfer:
    import json, subprocess, tempfile
    way, size = a.transfer.split(":", 1)

    def wrk(port, secs, conns, path="/"):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = ["taskset", "-c", "1", a.bench, "transfer", f"http://127.0.0.1:{port}/", "-t", "1",
                   f"-c{conns}", f"--{way}", size, "--json", f.name] + shlex.split(a.bench_args)
            subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
            r = json.load(open(f.name))
        # "requests" in kB: CPU-us per kB is CPU-s per GB.
        return r["gbytes_per_sec"], r["bytes"] / 1000, len(r["errors"]), "", {}

    m.wrk = wrk
elif a.bench:
    import json, subprocess, tempfile

    def wrk(port, secs, conns, path="/"):
        url = f"{'https' if a.https else 'http'}://127.0.0.1:{port}{path}"
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = ["taskset", "-c", "1", a.bench, "load", url, "-t", "1", f"-c{conns}",
                   "-d", f"{secs}s", "--no-distribution", "--json", f.name]
            cmd += ["-k"] if a.https else []
            cmd += ["--new-connection-per-request"] if a.close else []
            cmd += shlex.split(a.bench_args)
            subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60, check=True)
            r = json.load(open(f.name))
        return r["requests_per_sec"], r["requests"], r["errors"]["total"], "", {}

    m.wrk = wrk
elif a.close:
    import re, subprocess

    def wrk(port, secs, conns, path="/"):
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{secs}s",
                              "-H", "Connection: close", f"http://127.0.0.1:{port}{path}"],
                             capture_output=True, text=True, timeout=secs + 30).stdout
        reqs = int(re.search(r"(\d+) requests in", out).group(1))
        errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return reqs / secs, reqs, (int(errs.group(1)) if errs else 0), "", {}

    m.wrk = wrk


def split_ticks(pid):
    """User and system ticks of the process tree at `pid` (the meters' cpu_ticks, split)."""
    u = k = 0
    for q in m.tree_pids(pid):
        try:
            f = open(f"/proc/{q}/stat").read().rsplit(")", 1)[1].split()
            u, k = u + int(f[11]), k + int(f[12])
        except OSError:
            pass
    return u, k


cfg = os.path.join(os.path.dirname(m.__file__), "configs")
# A leftover listener on the origin's port would take the origin's place (unpinned, and with
# SO_REUSEPORT it could share the load): refuse, as the meters do.
import socket as _socket
with _socket.socket() as _probe:
    if _probe.connect_ex(("127.0.0.1", 9000)) == 0:
        sys.exit("origin: something already listens on 127.0.0.1:9000; stop it first")
if a.transfer or a.origin_h2c:
    extra = ["--h2c"] if a.origin_h2c else []
    origin = m.start([a.bench, "origin", "--listen", "127.0.0.1:9000", "--workers", "1"] + extra, 1,
                     f"{m.WORK}/origin.log")
else:
    origin = m.start(["nginx", "-p", m.WORK, "-c", f"{cfg}/origin-nginx.conf"], 1, f"{m.WORK}/origin.log")
procs = {}
try:
    m.wait_port(9000)
    names = []
    for p in a.proxy:
        n, port, cmd = p.split("=", 2)
        procs[n] = (int(port), m.start(shlex.split(cmd), 0, f"{m.WORK}/{n}.log"))
        names.append(n)
    for n in names:
        if not m.wait_port(procs[n][0]):
            sys.exit(f"{n} did not start")
        if not a.transfer:
            m.wrk(procs[n][0], 2, a.conns, a.path)
    us = {n: [] for n in names}
    user = {n: [] for n in names}
    system = {n: [] for n in names}
    rps = {n: [] for n in names}
    for i in range(a.iters):
        order = names[i % len(names):] + names[:i % len(names)]
        for n in order:
            port, p = procs[n]
            u0, s0 = split_ticks(p.pid)
            r, reqs, bad, sock, lat = m.wrk(port, a.secs, a.conns, a.path)
            u1, s1 = split_ticks(p.pid)
            per = m.TICK * max(reqs, 1) / 1e6
            us[n].append((u1 - u0 + s1 - s0) / per)
            user[n].append((u1 - u0) / per)
            system[n].append((s1 - s0) / per)
            rps[n].append(r)
            if bad:
                print(f"  {n}: {bad} non-2xx", file=sys.stderr)
    tool = f"ringway-bench -t1 -c{a.conns}{' https' if a.https else ''} {a.bench_args}" if a.bench else f"wrk -t1 -c{a.conns}"
    if a.transfer:
        tool = f"ringway-bench transfer --{way} {size} -c{a.conns} {a.bench_args}"
        print(f"{a.iters} rounds, interleaved; {tool}; proxies on CPU 0, origin+load on CPU 1")
        print("| proxy | median GB/s | median CPU-s/GB | min | max |")
    else:
        print(f"{a.iters} iterations x {a.secs}s each, interleaved; {tool}"
              f"{' (a new connection per request)' if a.close else ''}; proxies on CPU 0, origin+wrk on CPU 1")
        print("| proxy | median req/s | median CPU-us/req | min | max |")
    print("|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {statistics.median(rps[n]):.{2 if a.transfer else 0}f} | {statistics.median(us[n]):.2f} | {min(us[n]):.2f} | {max(us[n]):.2f} |")
    if a.split:
        print("| proxy | user CPU-us/req (min-max) | system (min-max) |")
        print("|---|---|---|")
        for n in names:
            u, k = user[n], system[n]
            print(f"| {n} | {statistics.median(u):.3f} ({min(u):.3f}-{max(u):.3f}) "
                  f"| {statistics.median(k):.3f} ({min(k):.3f}-{max(k):.3f}) |")
    for r in a.ratio:
        x, y = r.split("/")
        rs = sorted(u / v for u, v in zip(us[x], us[y]))
        q = lambda f: rs[min(len(rs) - 1, int(f * len(rs)))]
        print(f"{x}/{y}: median {statistics.median(rs):.3f} (quartiles {q(0.25):.3f}..{q(0.75):.3f}, {len(rs)} pairs)")
finally:
    for n, (port, p) in procs.items():
        m.stop(p)
    m.stop(origin)
