#!/usr/bin/env python3
"""One host of three goes down under load: what the client sees through ringway and through
Envoy with the equivalent config (issue 20's outage benchmark).

Three `ringway-bench origin` instances (CPU 1) behind the proxy (CPU 0, one worker: ringway
`--workers 1`, Envoy `--concurrency 1`), round robin, with an active HTTP health check (1s
interval, 500ms timeout, unhealthy 2, healthy 2, and `no_traffic_interval: 1s`: Envoy checks at
its 60s default no-traffic interval until a check runs after traffic began, which hides the
outage from its checks for a minute), outlier detection (consecutive 5xx 5, 1s
interval, 5s base ejection, max 50%) and a retry policy (connect-failure, reset, 5xx; 2 retries
on other hosts; route timeout 2s). Open-loop load from `ringway-bench load` (CPU 1) at --rate
over 50 connections, in three back-to-back phases: `before` (all up), `outage` (one origin is
killed --kill-at seconds in: SIGKILL, so its connections are reset and new ones refused, or
with --hang SIGSTOP, so it stops answering), `after` (it stays down). Each phase's requests,
errors, p50/p99/max; every proxy --rounds times, alternating.

  flock /tmp/ringway-bench.lock python3 scripts/outage-bench.py --rounds 2
  flock /tmp/ringway-bench.lock python3 scripts/outage-bench.py --rounds 2 --hang

Needs target/release (or RINGWAY_BIN_DIR) with ringway and ringway-bench, and Envoy from
../shared/meters/setup.sh (ENVOY=path overrides /tmp/ringway-peers/envoy)."""
import argparse, json, os, signal, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RINGWAY_BIN_DIR", os.path.join(HERE, "..", "target", "release"))
ENVOY = os.environ.get("ENVOY", "/tmp/ringway-peers/envoy")
ORIGIN_PORTS = [9101, 9102, 9103]
PORT = 10030

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--rate", type=int, default=10000)
ap.add_argument("--before", type=float, default=5)
ap.add_argument("--outage", type=float, default=6)
ap.add_argument("--after", type=float, default=8)
ap.add_argument("--kill-at", type=float, default=1.0)
ap.add_argument("--hang", action="store_true", help="SIGSTOP the origin instead of SIGKILL")
ap.add_argument("--only", default="ringway,envoy")
ap.add_argument("--max-retries", type=int, default=None,
                help="circuit_breakers max_retries on both (default: Envoy's 3)")
args = ap.parse_args()

RINGWAY = f"""
workers: 1
admin:
  address: 127.0.0.1:9932
listeners:
  - name: bench
    address: 127.0.0.1:{PORT}
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: bench
              idle_timeout: 300s
              virtual_hosts:
                - name: bench
                  domains: ["*"]
                  routes:
                    - match: {{ prefix: / }}
                      route:
                        cluster: origin
                        timeout: 2s
                        retry_policy:
                          retry_on: "connect-failure,reset,5xx"
                          num_retries: 2
                          retry_host_predicate: [{{name: envoy.retry_host_predicates.previous_hosts}}]
                          host_selection_retry_max_attempts: 3
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: [{", ".join(f'"127.0.0.1:{p}"' for p in ORIGIN_PORTS)}]
    idle_timeout: 300s
    health_checks:
      - timeout: 500ms
        interval: 1s
        unhealthy_threshold: 2
        healthy_threshold: 2
        no_traffic_interval: 1s
        http_health_check: {{path: /}}
    outlier_detection: {{consecutive_5xx: 5, interval: 1s, base_ejection_time: 5s, max_ejection_percent: 50}}
""" + ("" if args.max_retries is None else f"""    circuit_breakers: {{thresholds: [{{max_retries: {args.max_retries}}}]}}
""")

ENVOY_CFG = f"""
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {PORT} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: origin
                  timeout: 2s
                  retry_policy:
                    retry_on: "connect-failure,reset,5xx"
                    num_retries: 2
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }}
                    host_selection_retry_max_attempts: 3
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: origin
    connect_timeout: 1s
    type: STATIC
    health_checks:
    - timeout: 0.5s
      interval: 1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      no_traffic_interval: 1s
      http_health_check: {{ path: / }}
    outlier_detection: {{ consecutive_5xx: 5, interval: 1s, base_ejection_time: 5s, max_ejection_percent: 50 }}
""" + ("" if args.max_retries is None else f"""    circuit_breakers: {{ thresholds: [{{ max_retries: {args.max_retries} }}] }}
""") + f"""    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
{chr(10).join(f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}" for p in ORIGIN_PORTS)}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9931 }} }}
"""


def wait_port(port, secs=10):
    import socket
    until = time.time() + secs
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def start(cmd, cpu, log):
    return subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def stop(p):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def load(secs, out):
    cmd = ["taskset", "-c", "1", f"{BIN}/ringway-bench", "load", "-c", "50", "-t", "1",
           "-R", str(args.rate), "-d", f"{secs}s", "--timeout", "5s", "--no-distribution",
           "--json", out, f"http://127.0.0.1:{PORT}/"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=secs + 30)
    with open(out) as f:
        return json.load(f)


def free(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return False
    except OSError:
        return True


def one(name, work):
    until = time.time() + 15
    busy = [p for p in ORIGIN_PORTS + [PORT] if not free(p)]
    while busy and time.time() < until:
        time.sleep(0.2)
        busy = [p for p in ORIGIN_PORTS + [PORT] if not free(p)]
    if busy:
        sys.exit(f"ports in use before the run: {busy} (a leftover process?)")
    origins = [start([f"{BIN}/ringway-bench", "origin", "--listen", f"127.0.0.1:{p}",
                      "--workers", "1"], 1, f"{work}/origin-{p}.log") for p in ORIGIN_PORTS]
    for p in ORIGIN_PORTS:
        wait_port(p)
    cfg = f"{work}/{name}.yaml"
    with open(cfg, "w") as f:
        f.write(RINGWAY if name == "ringway" else ENVOY_CFG)
    if name == "ringway":
        proxy = start([f"{BIN}/ringway", "run", "-c", cfg], 0, f"{work}/{name}.log")
    else:
        proxy = start([ENVOY, "-c", cfg, "--concurrency", "1", "--log-level", "error"], 0,
                      f"{work}/{name}.log")
    try:
        wait_port(PORT, 20)
        time.sleep(2.5)  # first health-check rounds
        out = {"before": load(args.before, f"{work}/a.json")}
        victim = origins[2]
        sig = signal.SIGSTOP if args.hang else signal.SIGKILL
        t = threading.Timer(args.kill_at, lambda: victim.send_signal(sig))
        t.start()
        out["outage"] = load(args.outage, f"{work}/b.json")
        t.join()
        out["after"] = load(args.after, f"{work}/c.json")
        if os.environ.get("OUTAGE_DEBUG"):
            import urllib.request
            admin = 9931 if name == "envoy" else 9932
            for path in ["/clusters", "/stats"]:
                text = urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5).read()
                for line in text.decode().splitlines():
                    if any(k in line for k in ["health_flags", "retry", "outlier", "health_check", "overflow", "rq_5xx"]) and not line.endswith(": 0"):
                        print("  #", line, file=sys.stderr)
        return out
    finally:
        stop(proxy)
        for o in origins:
            stop(o)


def row(name, rnd, phase, r):
    e = r["errors"]
    lat = r["latency_us"]
    kinds = ", ".join(f"{k} {v}" for k, v in e.items() if k != "total" and v)
    return (f"| {name} | {rnd} | {phase} | {r['requests']} | {e['total']}"
            f"{' (' + kinds + ')' if kinds else ''} | {lat['p50'] / 1000:.2f} | "
            f"{lat['p99'] / 1000:.2f} | {lat['max'] / 1000:.1f} |")


def main():
    names = [n for n in ["ringway", "envoy"] if n in args.only.split(",")]
    what = "SIGSTOP (hangs)" if args.hang else "SIGKILL (refuses, resets)"
    print(f"3 origins, one {what} {args.kill_at}s into the outage phase; open loop "
          f"{args.rate} req/s over 50 connections; proxy on CPU 0, one worker")
    print("| proxy | round | phase | requests | errors | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for rnd in range(1, args.rounds + 1):
        for name in names:
            with tempfile.TemporaryDirectory() as work:
                out = one(name, work)
            for phase in ["before", "outage", "after"]:
                print(row(name, rnd, phase, out[phase]), flush=True)


main()
