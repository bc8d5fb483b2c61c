#!/usr/bin/env python3
"""Two workers on two cores: where they run and how connections reach them, beside nginx and HAProxy.

The origin (`ringway-bench origin`, 1 worker) and the load generator (`ringway-bench load`, 1 worker)
are pinned to CPU 1, so CPU 1 is a busy neighbour's core; each proxy gets 2 workers (nginx
`worker_processes 2` and HAProxy `nbthread 2`, neither pinned; ringway as the target says). Every
round runs each target once, in turn (interleaved rounds: the machine's drift hits all alike);
the table gives medians over rounds. Per target and round: req/s, p99 latency, the proxy's CPU-us
per request (utime+stime of its process tree over the run / requests), each worker's share of
the proxy's CPU, and each worker's connections: open ones mid-run (keep-alive) or accepted ones
over the run (new connection per request); ringway's from its admin stats, nginx's from each
worker process's sockets; HAProxy: no per-thread count here (its CPU split stands in).

  scripts/workers.py placement   # keep-alive, 50 connections: ringway 1 worker (CPU 0), 2 workers
                                 # cpu_affinity auto and none; nginx 1 worker (CPU 0) and
                                 # 2 workers
  scripts/workers.py newconn     # a new connection per request, 50 slots: ringway exact and kernel
                                 # balance (2 workers, cpu_affinity auto; and -none: not pinned),
                                 # nginx, HAProxy
  options: --rounds 5 --secs 8 --conns 50 --targets a,b (a subset) --ringway BIN --bench BIN
           --port 11000 (origin; proxies on the next ports, admins from +50)
  env: PRIO=rt runs every measured process under SCHED_FIFO (chrt -f 50), as scripts/compare.sh.

Takes /tmp/ringway-bench.lock for the whole run; loopback only; stops everything it starts.
"""
import argparse, fcntl, json, os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request

TCK = os.sysconf("SC_CLK_TCK")
RT = ["chrt", "-f", "50"] if os.environ.get("PRIO") == "rt" else []


def ticks(pid, tid=None):
    p = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        f = open(p).read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def tree_ticks(pid):
    return sum(ticks(p) for p in tree(pid))


def threads(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out.append((int(t), open(f"/proc/{pid}/task/{t}/comm").read().strip()))
        except OSError:
            pass
    return sorted(out)


def wait_port(port, secs=10):
    import socket
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def admin_stats(port, flt):
    url = f"http://127.0.0.1:{port}/stats?filter={flt}"
    out = {}
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        k, _, v = line.partition(": ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def established_by_pid(port, pids):
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(f).readlines()[1:]:
            x = line.split()
            if int(x[1].rsplit(":", 1)[1], 16) == port and x[3] == "01":
                inodes.add(x[9])
    out = {}
    for p in pids:
        n = 0
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                link = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            n += link.startswith("socket:[") and link[8:-1] in inodes
        out[p] = n
    return out


class Target:
    """A proxy on `port`: how to start it, find its workers and count their connections."""

    def __init__(self, name, port, admin, kind, argv, conf=None):
        self.name, self.port, self.admin, self.kind, self.argv, self.conf = name, port, admin, kind, argv, conf
        self.proc = None

    def start(self, work):
        if self.conf:
            open(f"{work}/{self.name}.{self.ext()}", "w").write(self.conf)
        log = open(f"{work}/{self.name}.log", "w")
        self.proc = subprocess.Popen(RT + self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                     start_new_session=True)
        if not wait_port(self.port):
            sys.exit(f"{self.name} did not listen on {self.port}; see {work}/{self.name}.log")
        time.sleep(0.5)

    def ext(self):
        return "yaml" if self.kind == "ringway" else "conf"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def workers(self):
        """[(label, [(pid, tid)])]: ringway/HAProxy threads by name, nginx worker processes."""
        pid = self.proc.pid
        if self.kind == "nginx":
            kids = sorted(p for p in tree(pid) if p != pid)
            return [(f"pid {p}", [(p, None)]) for p in kids]
        rx = r"^ringway-w\d+$" if self.kind == "ringway" else r"^haproxy$"
        return [(c, [(pid, t)]) for t, c in threads(pid) if re.match(rx, c)]

    def conns(self, ws, accepted):
        """Per worker: open connections now (accepted=False) or accepted so far (True)."""
        if self.kind == "ringway":
            s = admin_stats(self.admin, "worker")
            key = "downstream_cx_total" if accepted else "downstream_cx_active"
            return [s.get(f"worker.{i}.{key}", 0) for i in range(len(ws))]
        if self.kind == "nginx" and not accepted:
            by = established_by_pid(self.port, [int(l.split()[1]) for l, _ in ws])
            return [by[int(l.split()[1])] for l, _ in ws]
        return None

    def handoffs(self):
        if self.kind != "ringway":
            return None
        s = admin_stats(self.admin, "downstream_cx_handoff")
        return sum(s.values())


def ringway_conf(port, admin, origin, extra=""):
    return f"""workers: auto
admin: {{ address: 127.0.0.1:{admin} }}
listeners:
  - name: bench
    address: 127.0.0.1:{port}
{extra}    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: bench
              idle_timeout: 300s
              virtual_hosts:
                - name: bench
                  domains: ["*"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: ["127.0.0.1:{origin}"]
    idle_timeout: 300s
"""


def nginx_conf(port, origin, work, workers, name):
    # One worker: pinned to CPU 0, as ringway's 1-worker target (nginx's own cost of a second
    # worker, beside ringway's).
    pin = "worker_cpu_affinity 01;\n" if workers == 1 else ""
    return f"""worker_processes {workers};
{pin}daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def haproxy_conf(port, origin):
    return f"""global
  nbthread 2
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server origin 127.0.0.1:{origin}
"""


def targets(a, work):
    o, p, adm = a.port, a.port + 1, a.port + 50
    rw = lambda name, i, args, extra="": Target(
        name, p + i, adm + i, "ringway",
        [a.ringway, "run", "-c", f"{work}/{name}.yaml", "--log-level", "warn"] + args,
        ringway_conf(p + i, adm + i, o, extra))
    ngx = lambda name, port, workers: Target(
        name, port, None, "nginx",
        ["nginx", "-p", work, "-e", f"{work}/{name}.err", "-c", f"{work}/{name}.conf"],
        nginx_conf(port, o, work, workers, name))
    nginx, nginx1 = ngx("nginx", p + 8, 2), ngx("nginx-1w", p + 7, 1)
    haproxy = Target("haproxy", p + 9, None, "haproxy", ["haproxy", "-db", "-f", f"{work}/haproxy.conf"],
                     haproxy_conf(p + 9, o))
    if a.mode == "placement":
        ts = [rw("ringway-1w", 0, ["--workers", "1", "--cpu-affinity", "0"]),
              rw("ringway-auto", 1, ["--workers", "2", "--cpu-affinity", "auto"]),
              rw("ringway-none", 2, ["--workers", "2", "--cpu-affinity", "none"]),
              nginx1, nginx]
    else:
        ts = [rw("ringway-exact", 3, ["--workers", "2"], "    connection_balance: exact\n"),
              rw("ringway-kernel", 4, ["--workers", "2"], "    connection_balance: kernel\n"),
              nginx, haproxy,
              rw("ringway-exact-none", 5, ["--workers", "2", "--cpu-affinity", "none"],
                 "    connection_balance: exact\n"),
              rw("ringway-kernel-none", 6, ["--workers", "2", "--cpu-affinity", "none"],
                 "    connection_balance: kernel\n")]
    if a.targets:
        keep = a.targets.split(",")
        ts = [t for t in ts if t.name in keep]
    return ts


def one_run(t, a, work, rnd):
    ws = t.workers()
    newconn = a.mode == "newconn"
    c0, w0 = tree_ticks(t.proc.pid), [sum(ticks(p, q) if q else tree_ticks(p) for p, q in x) for _, x in ws]
    acc0 = t.conns(ws, True) if newconn else None
    h0 = t.handoffs()
    out = f"{work}/{t.name}-{rnd}.json"
    cmd = RT + ["taskset", "-c", "1", a.bench, "load", f"http://127.0.0.1:{t.port}/", "--workers", "1",
                "-c", str(a.conns), "-d", f"{a.secs}s", "--json", out, "--no-distribution"]
    if newconn:
        cmd.append("--new-connection-per-request")
    load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(a.secs / 2)
    mid = None if newconn else t.conns(ws, False)
    load.wait(a.secs + 60)
    c1, w1 = tree_ticks(t.proc.pid), [sum(ticks(p, q) if q else tree_ticks(p) for p, q in x) for _, x in ws]
    acc = [y - x for x, y in zip(acc0, t.conns(ws, True))] if newconn and acc0 is not None else None
    h = t.handoffs() - h0 if h0 is not None else None
    r = json.load(open(out))
    reqs = r["requests"]
    wcpu = [y - x for x, y in zip(w0, w1)]
    return dict(rps=r["requests_per_sec"], p99=r["latency_us"]["p99"], errors=r["errors"]["total"],
                cpu_us=(c1 - c0) / TCK * 1e6 / reqs if reqs else float("nan"),
                wcpu=[round(x / max(1, sum(wcpu)), 2) for x in wcpu], conns=mid if not newconn else acc,
                handoff=(h / max(1, sum(acc)) if acc and h is not None else None))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["placement", "newconn"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--targets", default="")
    ap.add_argument("--port", type=int, default=11000)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tgt = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    ap.add_argument("--ringway", default=f"{tgt}/release/ringway")
    ap.add_argument("--bench", default=f"{tgt}/release/ringway-bench")
    a = ap.parse_args()
    a.ringway, a.bench = os.path.abspath(a.ringway), os.path.abspath(a.bench)
    lock = open("/tmp/ringway-bench.lock", "w")
    print("waiting for /tmp/ringway-bench.lock", file=sys.stderr)
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = tempfile.mkdtemp(prefix="ringway-workers.")
    origin = subprocess.Popen(RT + ["taskset", "-c", "1", a.bench, "origin", "--listen", f"127.0.0.1:{a.port}",
                                    "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    ts = targets(a, work)
    results = {t.name: [] for t in ts}
    try:
        if not wait_port(a.port):
            sys.exit("origin did not start")
        for t in ts:
            t.start(work)
        for rnd in range(1, a.rounds + 1):
            for t in ts:
                r = one_run(t, a, work, rnd)
                results[t.name].append(r)
                print(f"round {rnd} {t.name}: {r['rps']:.0f} req/s p99 {r['p99']:.0f}us {r['cpu_us']:.1f} CPU-us/req "
                      f"worker CPU {r['wcpu']} conns {r['conns']} handoff {r['handoff']} errors {r['errors']}",
                      file=sys.stderr)
                time.sleep(1)
    finally:
        for t in ts:
            t.stop()
        os.killpg(origin.pid, signal.SIGTERM)
        origin.wait()
    med = statistics.median
    what = "connections accepted per worker" if a.mode == "newconn" else "open connections per worker, mid-run"
    print(f"\n{a.mode}: {a.conns} {'slots' if a.mode == 'newconn' else 'connections'}, {a.secs}s x "
          f"{a.rounds} interleaved rounds, medians (all rounds' CPU in brackets)\n")
    print(f"| target | req/s | p99 | CPU-us/req | worker CPU share | {what} | handed over |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in results.items():
        cpu = sorted(r["cpu_us"] for r in rs)
        share = " / ".join(f"{med([r['wcpu'][i] for r in rs]):.2f}" for i in range(len(rs[0]["wcpu"])))
        cx = ("; ".join("/".join(map(str, r["conns"])) for r in rs)) if rs[0]["conns"] else "-"
        ho = f"{med([r['handoff'] for r in rs]):.1%}" if rs[0]["handoff"] is not None else "-"
        err = sum(r["errors"] for r in rs)
        print(f"| {name} | {med([r['rps'] for r in rs]):.0f} | {med([r['p99'] for r in rs]) / 1000:.2f} ms | "
              f"{med(cpu):.1f} ({', '.join(f'{c:.1f}' for c in cpu)}) | {share} | {cx} | {ho} |"
              + (f" {err} errors" if err else ""))


if __name__ == "__main__":
    main()
