#!/usr/bin/env python3
"""Reload and binary-upgrade cost under load (issue 21's benchmark).

A config with 1,000 routes over 100 clusters (every cluster one endpoint: the bundled origin),
ringway on CPU 0 (one worker unless --workers), origin and load on CPU 1. Three phases, each an
open-loop `ringway-bench load` run of --seconds at --rate over --conns keep-alive connections
(and, with --new-conns, a second load opening a connection per request):

  steady   nothing happens
  storm    `POST /config/reload` every --every seconds (the file alternates between two
           versions, so every reload changes routes and clusters)
  upgrade  one binary upgrade (a second ringway with --upgrade-from) in the middle

For each: requests, errors, req/s, p50/p99/max; for the storm, each reload's time from the POST
to its answer (the new config in force, old workers handed over) and the proxy's CPU seconds
over the phase beside the steady phase's.

    flock /tmp/ringway-bench.lock python3 scripts/reload-bench.py
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchutil import free_port, proc_cpu, wait_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(version, origin_port, admin_port, port, routes=1000, clusters=100):
    lines = [
        "workers: 1",
        "drain_timeout: 5s",
        f"admin: {{ address: 127.0.0.1:{admin_port} }}",
        "listeners:",
        "  - name: main",
        f"    address: 127.0.0.1:{port}",
        "    filter_chains:",
        "      - filters:",
        "          - http_connection_manager:",
        "              stat_prefix: main",
        "              virtual_hosts:",
        "                - name: all",
        '                  domains: ["*"]',
        "                  routes:",
    ]
    for r in range(routes - 1):
        c = (r + version) % clusters
        lines += [
            f"                    - match: {{ prefix: /r{r}/v{version}/ }}",
            f"                      route: {{ cluster: c{c} }}",
        ]
    lines += [
        "                    - match: { prefix: / }",
        f"                      route: {{ cluster: c{version % clusters} }}",
        "clusters:",
    ]
    for c in range(clusters):
        lines += [f"  - name: c{c}", f'    endpoints: ["127.0.0.1:{origin_port}"]']
    return "\n".join(lines) + "\n"


def load(bench, port, args, label, new_conns):
    cmd = ["taskset", "-c", "1", bench, "load", f"http://127.0.0.1:{port}/",
           "-R", str(args.rate), "-c", str(args.conns), "-d", f"{args.seconds}s",
           "--no-distribution", "--label", label]
    if new_conns:
        cmd += ["--new-connection-per-request"]
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    cmd += ["--json", out.name]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return p, out.name


def summary(path):
    with open(path) as f:
        j = json.load(f)
    return j


WAIT_LINE = 15  # seconds a child may take to print what it is waited for


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.environ.get("RINGWAY_BIN_DIR", os.path.join(ROOT, "target/release")))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--every", type=float, default=0.2)
    ap.add_argument("--new-conns", action="store_true", help="also a load opening a connection per request")
    args = ap.parse_args()
    ringway = os.path.join(args.bin_dir, "ringway")
    bench = os.path.join(args.bin_dir, "ringway-bench")
    work = tempfile.mkdtemp(prefix="ringway-reload-bench-")
    origin_port, admin_port, port = free_port(), free_port(), free_port()
    cfg = os.path.join(work, "ringway.yaml")
    with open(cfg, "w") as f:
        f.write(config(0, origin_port, admin_port, port))
    origin = subprocess.Popen(["taskset", "-c", "1", bench, "origin", "--listen", f"127.0.0.1:{origin_port}", "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_line(origin, "origin listening", WAIT_LINE)
    sock = os.path.join(work, "upgrade.sock")
    def start(extra):
        p = subprocess.Popen(["taskset", "-c", "0", ringway, "run", "-c", cfg, "--upgrade-socket", sock] + extra,
                             stdout=subprocess.PIPE, stderr=open(os.path.join(work, f"ringway-{time.time()}.log"), "w"), text=True)
        wait_line(p, "ringway: admin bound", WAIT_LINE)
        return p
    proxy = start([])
    time.sleep(0.5)
    results = {}
    try:
        for phase in ["steady", "storm", "upgrade"]:
            loads = [load(bench, port, args, phase, False)]
            if args.new_conns:
                loads.append(load(bench, port, args, phase + "-newconn", True))
            cpu0 = proc_cpu(proxy.pid)
            t0 = time.time()
            reloads = []
            version = 0
            if phase == "storm":
                while time.time() - t0 < args.seconds - 0.5:
                    version += 1
                    with open(cfg + ".tmp", "w") as f:
                        f.write(config(version, origin_port, admin_port, port))
                    os.rename(cfg + ".tmp", cfg)
                    s = time.time()
                    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/config/reload", method="POST")
                    with urllib.request.urlopen(req, timeout=60) as r:
                        body = r.read().decode()
                        if r.status != 200:
                            raise SystemExit(body)
                    reloads.append(time.time() - s)
                    time.sleep(max(0.0, args.every - (time.time() - s)))
            elif phase == "upgrade":
                time.sleep(args.seconds / 2)
                old = proxy
                old_cpu = proc_cpu(old.pid) - cpu0
                proxy = start(["--upgrade-from", sock])
                old.wait(timeout=15)
                cpu0 = proc_cpu(proxy.pid) - old_cpu
            for p, _ in loads:
                p.wait(timeout=args.seconds + 30)
            cpu = proc_cpu(proxy.pid) - cpu0
            res = [summary(path) for _, path in loads]
            results[phase] = {"loads": res, "cpu_s": cpu, "reloads": reloads}
    finally:
        for p in [proxy, origin]:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"ringway reload bench: 1000 routes, 100 clusters; open loop {args.rate} req/s over {args.conns} keep-alive connections"
          + (" plus the same opening a connection per request" if args.new_conns else "") + f", {args.seconds} s per phase; proxy on CPU 0, one worker")
    print()
    print("| phase | load | requests | errors | req/s | p50 ms | p99 ms | max ms | proxy CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase, r in results.items():
        for l in r["loads"]:
            lat = l.get("latency_us", {})
            errs = l.get("errors", {})
            total = errs.get("total", 0) if isinstance(errs, dict) else errs
            kind = "new connection per request" if l.get("new_connection_per_request") else "keep-alive"
            print(f"| {phase} | {kind} | {l.get('requests')} | {total} | {l.get('requests_per_sec', 0):.0f} | "
                  f"{lat.get('p50', 0)/1000:.2f} | {lat.get('p99', 0)/1000:.2f} | {lat.get('max', 0)/1000:.2f} | {r['cpu_s']:.2f} |")
    rl = sorted(results.get("storm", {}).get("reloads", []))
    if rl:
        print()
        print(f"storm: {len(rl)} reloads; POST to answer: median {rl[len(rl)//2]*1000:.1f} ms, "
              f"p90 {rl[int(len(rl)*0.9)]*1000:.1f} ms, max {rl[-1]*1000:.1f} ms")
    json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=1)
    print(f"(raw: {work}/results.json)")


if __name__ == "__main__":
    main()
