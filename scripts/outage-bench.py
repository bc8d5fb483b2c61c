#!/usr/bin/env python3
"""One host of three goes down under load: what the client sees through ringway and through
Envoy with the equivalent config (issue 20's outage benchmark).

Three `ringway-bench origin` instances (CPU 1, one worker each) behind the proxy (CPU 0, one
worker: ringway `workers: 1`, Envoy `--concurrency 1`), round robin, with
  - an active HTTP health check: GET /, interval 1s, timeout 500ms, unhealthy 2, healthy 2, and
    `no_traffic_interval: 1s` (Envoy checks at its 60s default no-traffic interval until a check
    runs after traffic began, which would hide the outage from its checks for a minute);
  - outlier detection: consecutive_5xx 5, interval 1s, base ejection 5s, max ejection 50%, the
    rest Envoy's defaults (split_external_local_origin_errors false: connect failures and resets
    count as 503s, so they feed consecutive_5xx on both proxies);
  - a route retry policy: retry_on connect-failure,reset,5xx, 2 retries, previous_hosts predicate
    (host_selection_retry_max_attempts 3), route timeout 2s; default circuit breakers
    (max_retries 3) unless --max-retries.
Open-loop load from `ringway-bench load -R RATE` (CPU 1, -c 50, latency from each request's
intended send time) for --seconds; --kill-at seconds in, one origin gets SIGKILL (its connections
reset, new ones refused) or with --hang SIGSTOP (accepted by the kernel, never answered), and stays
down. Per second (from the proxy's access log, the same format on both: start time, status,
response flags, whole-ms duration, attempts): requests, 2xx, errors, retried requests, p99/max.
A thread polls the admin `/clusters` every 20 ms for the moment the host leaves rotation (its
health_flags stop being `healthy`: `/failed_outlier_check`, `/failed_active_hc`). The client's own
totals (requests, errors by kind, p50/p99/max over the whole run) come from ringway-bench's JSON.
Every proxy runs --rounds times, alternating. The script takes the benchmark lock
/tmp/ringway-bench.lock itself (waiting up to 30 minutes), or runs under the one flock(1) holds.

  python3 scripts/outage-bench.py [--seconds 30] [--rounds 2] [--rate 5000] [--hang]

Prints markdown tables: a summary per run, the per-second timeline around the kill, and the
proxies' retry/ejection/health-check counters. Needs ringway and ringway-bench in
RINGWAY_BIN_DIR (default target/release; e.g. /work/target-rel/release) and Envoy from
../shared/meters/setup.sh (ENVOY=path overrides /tmp/ringway-peers/envoy). Loopback only;
everything started here is stopped on exit, every wait is bounded."""
import argparse, fcntl, json, os, re, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RINGWAY_BIN_DIR", os.path.join(HERE, "..", "target", "release"))
ENVOY = os.environ.get("ENVOY", "/tmp/ringway-peers/envoy")
ORIGIN_PORTS = [9101, 9102, 9103]
VICTIM = 9103
PORT = 10040
ADMIN = {"ringway": 9942, "envoy": 9941}
LOCK = "/tmp/ringway-bench.lock"

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--seconds", type=float, default=30, help="length of the load run")
ap.add_argument("--kill-at", type=float, default=10, help="seconds into the run the origin goes down")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--rate", type=int, default=5000, help="requests/s, open loop")
ap.add_argument("--conns", type=int, default=50)
ap.add_argument("--hang", action="store_true", help="SIGSTOP the origin instead of SIGKILL")
ap.add_argument("--only", default="ringway,envoy")
ap.add_argument("--max-retries", type=int, default=None,
                help="circuit_breakers max_retries on both (default: Envoy's 3)")
ap.add_argument("--health-nice", type=int, default=None,
                help="diagnostic: set the nice value of ringway's `ringway-health` thread (10 by default, "
                "as its other background threads) after it starts")
ap.add_argument("--health-cpu", type=int, default=None,
                help="diagnostic: move ringway's `ringway-health` thread to this CPU after it starts")
ap.add_argument("--timeline", default="-2:8",
                help="seconds (relative to the kill) shown in the per-second table, FROM:TO, or 'all'")
ap.add_argument("--keep", help="copy each run's configs and logs under this directory")
args = ap.parse_args()
if not 0 < args.kill_at < args.seconds:
    sys.exit("--kill-at must fall inside --seconds")

FMT = "%START_TIME(%s.%3f)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %UPSTREAM_HOST%"
BREAKERS_RW = "" if args.max_retries is None else \
    f"    circuit_breakers: {{thresholds: [{{max_retries: {args.max_retries}}}]}}\n"
BREAKERS_ENVOY = "" if args.max_retries is None else \
    f"    circuit_breakers: {{ thresholds: [{{ max_retries: {args.max_retries} }}] }}\n"


def ringway_cfg(log):
    eps = ", ".join(f'"127.0.0.1:{p}"' for p in ORIGIN_PORTS)
    return f"""workers: 1
admin:
  address: 127.0.0.1:{ADMIN["ringway"]}
listeners:
  - name: bench
    address: 127.0.0.1:{PORT}
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: bench
              idle_timeout: 300s
              access_log:
                - path: {log}
                  format: "{FMT}\\n"
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
    lb_policy: round_robin
    endpoints: [{eps}]
    idle_timeout: 300s
    health_checks:
      - timeout: 500ms
        interval: 1s
        unhealthy_threshold: 2
        healthy_threshold: 2
        no_traffic_interval: 1s
        http_health_check: {{path: /}}
    outlier_detection: {{consecutive_5xx: 5, interval: 1s, base_ejection_time: 5s, max_ejection_percent: 50}}
{BREAKERS_RW}"""


def envoy_cfg(log):
    eps = "\n".join(f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}"
                    for p in ORIGIN_PORTS)
    return f"""static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {PORT} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{ text_format_source: {{ inline_string: "{FMT}\\n" }} }}
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
    lb_policy: ROUND_ROBIN
    health_checks:
    - timeout: 0.5s
      interval: 1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      no_traffic_interval: 1s
      http_health_check: {{ path: / }}
    outlier_detection: {{ consecutive_5xx: 5, interval: 1s, base_ejection_time: 5s, max_ejection_percent: 50 }}
{BREAKERS_ENVOY}    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
{eps}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ADMIN["envoy"]} }} }}
"""


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def wait_port(port, secs, proc=None):
    until = time.time() + secs
    while time.time() < until:
        if listening(port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def start(cmd, cpu, log):
    return subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(p):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGCONT)  # a SIGSTOPped origin must run to exit
            p.terminate()
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        except ProcessLookupError:
            pass


def admin_get(name, path, timeout=2):
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN[name]}{path}", timeout=timeout) as r:
        return r.read().decode()


def flags(name):
    """{port: health_flags} of the cluster `origin`, from the admin's /clusters text."""
    out = {}
    for line in admin_get(name, "/clusters", 1).splitlines():
        m = re.match(r"origin::127\.0\.0\.1:(\d+)::health_flags::(.*)$", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


class Poller(threading.Thread):
    """Polls the victim's health flags every 20 ms; keeps each change with its wall time."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name_, self.changes, self.halt = name, [], threading.Event()

    def run(self):
        last = None
        while not self.halt.wait(0.02):
            try:
                f = flags(self.name_).get(VICTIM)
            except OSError:
                continue
            if f != last:
                self.changes.append((time.time(), f))
                last = f


COUNTERS = re.compile(r"(upstream_rq_retry|retry_overflow|upstream_rq_retry_success|ejections_enforced_total|"
                      r"ejections_detected_consecutive_5xx|ejections_enforced_consecutive_5xx|"
                      r"ejections_enforced_consecutive_gateway|health_check\.(failure|network_failure)|"
                      r"upstream_cx_connect_fail|upstream_rq_timeout|upstream_rq_pending_overflow)")


def counters(name):
    out = {}
    try:
        text = admin_get(name, "/stats", 5)
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        if k.startswith("cluster.origin.") and COUNTERS.search(k) and v.strip().isdigit() and int(v):
            out[k[len("cluster.origin."):]] = int(v)
    return out


def one(name, work):
    until = time.time() + 15
    while any(listening(p) for p in ORIGIN_PORTS + [PORT, ADMIN[name]]) and time.time() < until:
        time.sleep(0.2)
    busy = [p for p in ORIGIN_PORTS + [PORT, ADMIN[name]] if listening(p)]
    if busy:
        sys.exit(f"ports in use before the run: {busy} (a leftover process?)")
    procs = []
    try:
        origins = {}
        for p in ORIGIN_PORTS:
            origins[p] = start([f"{BIN}/ringway-bench", "origin", "--listen", f"127.0.0.1:{p}",
                                "--workers", "1"], 1, f"{work}/origin-{p}.log")
            procs.append(origins[p])
        for p in ORIGIN_PORTS:
            if not wait_port(p, 10, origins[p]):
                sys.exit(f"origin on {p} did not start (see {work}/origin-{p}.log)")
        log = f"{work}/access.log"
        cfg = f"{work}/{name}.yaml"
        with open(cfg, "w") as f:
            f.write(ringway_cfg(log) if name == "ringway" else envoy_cfg(log))
        if name == "ringway":
            proxy = start([f"{BIN}/ringway", "run", "-c", cfg], 0, f"{work}/{name}.log")
        else:
            proxy = start([ENVOY, "-c", cfg, "--concurrency", "1", "--log-level", "warn"], 0,
                          f"{work}/{name}.log")
        procs.append(proxy)
        if not wait_port(PORT, 20, proxy) or not wait_port(ADMIN[name], 10, proxy):
            sys.exit(f"{name} did not start (see {work}/{name}.log):\n" + open(f"{work}/{name}.log").read()[-2000:])
        if name == "ringway" and (args.health_nice is not None or args.health_cpu is not None):
            for tid in os.listdir(f"/proc/{proxy.pid}/task"):
                with open(f"/proc/{proxy.pid}/task/{tid}/comm") as f:
                    if f.read().strip() != "ringway-health":
                        continue
                if args.health_nice is not None:
                    os.setpriority(os.PRIO_PROCESS, int(tid), args.health_nice)
                if args.health_cpu is not None:
                    os.sched_setaffinity(int(tid), {args.health_cpu})
        until = time.time() + 15  # every host passed its first check
        while time.time() < until:
            try:
                if [flags(name).get(p) for p in ORIGIN_PORTS] == ["healthy"] * 3:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit(f"{name}: the origins did not all become healthy: {flags(name)}")
        time.sleep(1.5)
        open(log, "w").close()  # the first checks' requests are not in the access log; start empty anyway
        poller = Poller(name)
        poller.start()
        rep = f"{work}/load.json"
        cmd = ["taskset", "-c", "1", f"{BIN}/ringway-bench", "load", "-c", str(args.conns), "-t", "1",
               "-R", str(args.rate), "-d", f"{args.seconds}s", "--timeout", "5s", "--no-distribution",
               "--json", rep, f"http://127.0.0.1:{PORT}/"]
        t0 = time.time()
        loader = subprocess.Popen(cmd, stdout=open(f"{work}/load.txt", "w"), stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        procs.append(loader)
        time.sleep(max(0, t0 + args.kill_at - time.time()))
        t_kill = time.time()
        origins[VICTIM].send_signal(signal.SIGSTOP if args.hang else signal.SIGKILL)
        try:
            loader.wait(args.seconds + 60)
        except subprocess.TimeoutExpired:
            sys.exit(f"{name}: the load did not finish")
        time.sleep(1.5)  # Envoy flushes its access log once a second
        poller.halt.set()
        poller.join(2)
        ctr = counters(name)
        stop(proxy)
        if loader.returncode != 0 or not os.path.exists(rep):
            sys.exit(f"{name}: ringway-bench load failed:\n" + open(f"{work}/load.txt").read()[-2000:])
        with open(rep) as f:
            client = json.load(f)
        with open(log) as f:
            lines = f.read().splitlines()
        if args.keep:
            dst = os.path.join(args.keep, f"{name}-{int(t0)}")
            os.makedirs(dst, exist_ok=True)
            for fn in os.listdir(work):
                subprocess.run(["cp", os.path.join(work, fn), dst], check=False)
        return {"t0": t0, "t_kill": t_kill, "client": client, "log": lines, "changes": poller.changes,
                "counters": ctr}
    finally:
        for p in reversed(procs):
            stop(p)


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def analyse(r):
    tk = r["t_kill"]
    out_at, out_how = None, ""
    for t, f in r["changes"]:
        if f and f != "healthy" and t >= tk - 0.1:
            out_at, out_how = t - tk, f
            break
    secs, bad, after2, after_out, flags_seen, retried = {}, 0, 0, 0, {}, 0
    last_err, last_retry = None, None
    for line in r["log"]:
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            ts, code, dur = float(parts[0]), int(parts[1]), int(parts[3])
            att = int(parts[4]) if parts[4].isdigit() else 0
        except ValueError:
            continue
        rel = ts - tk
        s = secs.setdefault(int(rel // 1), {"n": 0, "ok": 0, "err": 0, "retried": 0, "dur": []})
        s["n"] += 1
        s["dur"].append(dur)
        if att > 1:
            s["retried"] += 1
            retried += 1
            last_retry = rel
        if 200 <= code < 300:
            s["ok"] += 1
        else:
            s["err"] += 1
            bad += 1
            last_err = rel
            key = f"{code} {parts[2]}"
            flags_seen[key] = flags_seen.get(key, 0) + 1
            if -0.5 <= rel < 2:  # requests in flight at the kill started just before it
                after2 += 1
            if out_at is not None and rel >= out_at:
                after_out += 1
    return {"out_at": out_at, "out_how": out_how, "secs": secs, "bad": bad, "after2": after2,
            "after_out": after_out, "flags": flags_seen, "retried": retried, "last_err": last_err,
            "last_retry": last_retry}


def ms(us):
    return f"{us / 1000:.2f}"


def main():
    names = [n for n in ["ringway", "envoy"] if n in args.only.split(",")]
    if "envoy" in names and not os.access(ENVOY, os.X_OK):
        sys.exit(f"no envoy at {ENVOY}: run ../shared/meters/setup.sh or set ENVOY")
    for b in ("ringway", "ringway-bench"):
        if not os.access(f"{BIN}/{b}", os.X_OK):
            sys.exit(f"no {BIN}/{b}: build with cargo build --release --bins, or set RINGWAY_BIN_DIR")
    # Under `flock /tmp/ringway-bench.lock python3 ...` the lock's open file is inherited: locking
    # that same file description succeeds at once. Otherwise take the lock here.
    lockf = None
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == LOCK:
                lockf = int(fd)
        except OSError:
            pass
    if lockf is None:
        lockf = open(LOCK, "a")
    until = time.time() + 1800
    while True:
        try:
            fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() > until:
                sys.exit(f"{LOCK} still held after 30 minutes")
            time.sleep(1)
    runs = []
    for rnd in range(1, args.rounds + 1):
        for name in names:
            with tempfile.TemporaryDirectory(prefix="ringway-outage.") as work:
                r = one(name, work)
            r.update(name=name, round=rnd, a=analyse(r))
            runs.append(r)
            a, c = r["a"], r["client"]
            print(f"  {name} round {rnd}: {c['requests']} requests, {c['errors']['total']} client errors, "
                  f"host out at {a['out_at']}", file=sys.stderr, flush=True)
    fcntl.flock(lockf, fcntl.LOCK_UN)

    what = "SIGSTOP (hangs: connections accepted, never answered)" if args.hang else \
        "SIGKILL (its connections reset, new ones refused)"
    print(f"3 origins round robin; origin :{VICTIM} gets {what} {args.kill_at:g} s into a {args.seconds:g} s "
          f"open-loop run at {args.rate} req/s over {args.conns} connections; proxy on CPU 0 (one worker), "
          f"origins and load on CPU 1; max_retries {args.max_retries if args.max_retries is not None else '3 (default)'}"
          + (f"; ringway's health thread at nice {args.health_nice}" if args.health_nice is not None else "")
          + (f"; ringway's health thread on CPU {args.health_cpu}" if args.health_cpu is not None else ""))
    print()
    print("| proxy | round | requests | client errors | of them in the first 2 s* | after the host left rotation "
          "| host left rotation (s after the kill, flags) | last error (s) | retried requests "
          "| p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        c, a = r["client"], r["a"]
        e = c["errors"]
        kinds = ", ".join(f"{k} {v}" for k, v in e.items() if k != "total" and v)
        lat = c["latency_us"]
        out = f"{a['out_at']:.2f} ({a['out_how']})" if a["out_at"] is not None else "never"
        last = f"{a['last_err']:.2f}" if a["last_err"] is not None else "-"
        print(f"| {r['name']} | {r['round']} | {c['requests']} | {e['total']}{' (' + kinds + ')' if kinds else ''} "
              f"| {a['after2']} | {a['after_out']} | {out} | {last} | {a['retried']} "
              f"| {ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['max'])} |")
    print()
    print("\\* errors of requests that started from 0.5 s before the kill (in flight when it came) to 2 s after "
          "it; client errors, p50/p99/max: ringway-bench over the whole run (open loop, from each request's "
          "intended send time); the rest from the proxy's access log and admin")
    print()
    print("Errors by status and response flags (proxy access log):",
          "; ".join(f"{r['name']} {r['round']}: " + (", ".join(f"{k} x{v}" for k, v in sorted(r['a']['flags'].items())) or "none")
                    for r in runs))
    print("Host flag changes (s after the kill):",
          "; ".join(f"{r['name']} {r['round']}: " + ", ".join(f"{t - r['t_kill']:+.2f} {f}" for t, f in r["changes"])
                    for r in runs))
    print()
    lo, hi = -int(args.kill_at), int(args.seconds - args.kill_at)
    if args.timeline != "all":
        a_, b_ = args.timeline.split(":")
        lo, hi = max(lo, int(a_)), min(hi, int(b_) + 1)
    print("Per second, from the proxy's access log (second 0 starts at the kill): 2xx / errors / retried, "
          "and p99 / max of the proxy-side duration in whole ms")
    print()
    print("| s | " + " | ".join(f"{r['name']} {r['round']}" for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for s in range(lo, hi):
        cells = []
        for r in runs:
            x = r["a"]["secs"].get(s)
            cells.append(f"{x['ok']} / {x['err']} / {x['retried']}, {pct(x['dur'], 0.99)} / {max(x['dur'])}" if x else "-")
        print(f"| {s:+d} | " + " | ".join(cells) + " |")
    print()
    keys = sorted({k for r in runs for k in r["counters"]})
    if keys:
        print("Counters at the end (cluster.origin.*, non-zero):")
        print()
        print("| counter | " + " | ".join(f"{r['name']} {r['round']}" for r in runs) + " |")
        print("|---|" + "---|" * len(runs))
        for k in keys:
            print(f"| {k} | " + " | ".join(str(r["counters"].get(k, "")) for r in runs) + " |")


main()
