#!/usr/bin/env python3
"""xDS push cost under load (issue 22's benchmark).

A control plane (engine/tests/it/support/xds_server.py: Envoy's ADS service from Envoy's protos,
Python grpcio) serves 100 clusters (each one endpoint: the bundled origin), one listener and
its route configuration of 1,000 routes (RDS). ringway (release build, --workers, pinned to CPU 0
unless --cpus) loads only the control plane's address. Two phases, each an open-loop
`ringway-bench load` run of --seconds at --rate over --conns keep-alive connections on CPU 1:

  steady   nothing changes
  storm    a new version every --every seconds (every route's cluster and the probe's answer
           change), pushed on every stream (CDS, EDS-free clusters, LDS, RDS)

Push to in force: from the write of a new snapshot to the moment 10 new connections in a row
(spread over the workers) get the new version's answer from a probe route (`direct_response`
naming the version). It includes the control plane's own work (encoding 1,000 routes in
Python, noticing the file within XDS_POLL=5 ms); the proxy's share (from the response's arrival
to the ACK, after the new generation is in force on every worker) is its own `took_ms` log field.

    flock /tmp/ringway-bench.lock python3 scripts/xds-bench.py
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time

from benchutil import free_port, proc_cpu, wait_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "engine/tests/it/support/xds_server.py")
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def snapshot(version, origin_port, port, routes=1000, clusters=100):
    sock = {"socket_address": {"address": "127.0.0.1", "port_value": origin_port}}
    cl = [{"name": f"c{c}", "type": "STATIC", "connect_timeout": "1s",
           "load_assignment": {"cluster_name": f"c{c}", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sock}}]}]}}
          for c in range(clusters)]
    rs = [{"match": {"prefix": f"/r{r}/"}, "route": {"cluster": f"c{(r + version) % clusters}"}} for r in range(routes - 2)]
    rs.append({"match": {"path": "/probe"}, "direct_response": {"status": 200, "body": {"inline_string": f"v{version}"}}})
    rs.append({"match": {"prefix": "/"}, "route": {"cluster": f"c{version % clusters}"}})
    listener = {"name": "main", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": HCM, "stat_prefix": "main",
                    "rds": {"route_config_name": "main", "config_source": {"ads": {}}},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}
    return {"version": str(version), "clusters": cl, "listeners": [listener],
            "routes": [{"name": "main", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": rs}]}]}


def push(path, snap):
    with open(path + ".tmp", "w") as f:
        json.dump(snap, f)
    os.rename(path + ".tmp", path)


def probe(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /probe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n\r\n", 1)[-1].decode()
    except OSError:
        return ""


def wait_version(port, version, timeout=30):
    want, ok, end = f"v{version}", 0, time.time() + timeout
    while time.time() < end:
        if probe(port) == want:
            ok += 1
            if ok >= 10:
                return True
        else:
            ok = 0
            time.sleep(0.001)
    return False


WAIT_LINE = 30  # seconds a child may take to print what it is waited for


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.environ.get("RINGWAY_BIN_DIR", os.path.join(ROOT, "target/release")))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cpus", default="0")
    ap.add_argument("--delta", action="store_true", help="incremental xDS (DELTA_GRPC)")
    args = ap.parse_args()
    ringway = os.path.join(args.bin_dir, "ringway")
    bench = os.path.join(args.bin_dir, "ringway-bench")
    work = tempfile.mkdtemp(prefix="ringway-xds-bench-")
    origin_port, port, admin_port = free_port(), free_port(), free_port()
    snap_path = os.path.join(work, "snapshot.json")
    push(snap_path, snapshot(0, origin_port, port))
    origin = subprocess.Popen(["taskset", "-c", "1", bench, "origin", "--listen", f"127.0.0.1:{origin_port}", "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_line(origin, "origin listening", WAIT_LINE)
    cp = subprocess.Popen(["taskset", "-c", "1", "python3", SERVER, snap_path, os.path.join(work, "requests.log")],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=dict(os.environ, XDS_POLL="0.005"))
    cp_port = int(wait_line(cp, "xds listening on", WAIT_LINE).split()[-1])
    cfg = os.path.join(work, "ringway.yaml")
    with open(cfg, "w") as f:
        f.write(f"workers: {args.workers}\nadmin: {{ address: 127.0.0.1:{admin_port} }}\n"
                f"xds: {{ cluster: xds, api_type: {'DELTA_GRPC' if args.delta else 'GRPC'} }}\n"
                f"clusters:\n  - name: xds\n    endpoints: [\"127.0.0.1:{cp_port}\"]\n")
    log_path = os.path.join(work, "ringway.log")
    proxy = subprocess.Popen(["taskset", "-c", args.cpus, ringway, "run", "-c", cfg],
                             stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), text=True)
    results, pushes = {}, []
    try:
        if not wait_version(port, 0):
            raise SystemExit("the first config never arrived: " + open(log_path).read()[-2000:])
        version = 0
        for phase in ["steady", "storm"]:
            out = os.path.join(work, f"{phase}.json")
            load = subprocess.Popen(["taskset", "-c", "1", bench, "load", f"http://127.0.0.1:{port}/",
                                     "-R", str(args.rate), "-c", str(args.conns), "-d", f"{args.seconds}s",
                                     "--no-distribution", "--label", phase, "--json", out],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu0, t0 = proc_cpu(proxy.pid), time.time()
            if phase == "storm":
                while time.time() - t0 < args.seconds - args.every:
                    version += 1
                    s = time.time()
                    push(snap_path, snapshot(version, origin_port, port))
                    if not wait_version(port, version):
                        raise SystemExit(f"version {version} never in force")
                    pushes.append(time.time() - s)
                    time.sleep(max(0.0, args.every - (time.time() - s)))
            load.wait(timeout=args.seconds + 60)
            cpu = proc_cpu(proxy.pid) - cpu0
            with open(out) as f:
                results[phase] = (json.load(f), cpu)
    finally:
        for p in [proxy, cp, origin]:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    took = [float(m) for m in re.findall(r'type_url="[^"]*RouteConfiguration" version=\d+ resources=\d+ warming=false took_ms=([0-9.]+)',
                                          open(log_path).read())]
    print(f"ringway xDS bench ({'DELTA_GRPC' if args.delta else 'GRPC'}): 1000 routes (RDS), 100 clusters (CDS); "
          f"open loop {args.rate} req/s over {args.conns} keep-alive connections, {args.seconds} s per phase; "
          f"proxy on CPU {args.cpus}, {args.workers} worker(s); a push every {args.every} s in the storm")
    print()
    print("| phase | requests | errors | p50 ms | p99 ms | max ms | proxy CPU s | CPU-µs/request |")
    print("|---|---|---|---|---|---|---|---|")
    for phase, (l, cpu) in results.items():
        lat = l.get("latency_us", {})
        errs = l.get("errors", {})
        total = errs.get("total", 0) if isinstance(errs, dict) else errs
        n = l.get("requests") or 1
        print(f"| {phase} | {l.get('requests')} | {total} | {lat.get('p50', 0)/1000:.2f} | {lat.get('p99', 0)/1000:.2f} | "
              f"{lat.get('max', 0)/1000:.2f} | {cpu:.2f} | {cpu * 1e6 / n:.1f} |")
    if pushes:
        pushes.sort()
        print()
        print(f"storm: {len(pushes)} pushes; snapshot written to new version in force on every worker: "
              f"median {statistics.median(pushes)*1000:.0f} ms, max {pushes[-1]*1000:.0f} ms")
    if took:
        took.sort()
        print(f"proxy's share (route configuration response received to ACK, in force): "
              f"median {statistics.median(took):.0f} ms, max {took[-1]:.0f} ms over {len(took)} updates")


if __name__ == "__main__":
    main()
