#!/usr/bin/env python3
"""Memory per idle HTTPS keep-alive connection, ringway beside peers.

Each proxy (one worker, pinned to CPU 0, its TLS listener on PORT) serves N client connections
opened one after another from this process (Python's ssl, TLS 1.3): each does a handshake,
sends one GET for PATH (default `/`; `/bytes/65536` makes every connection move a 64 KiB
response first), reads the response, and stays open. The proxy's Pss (summed over its process
tree) is read before the connections and after they have been idle for --idle seconds:
KiB per idle connection = (after - before) / N. The origin is ringway-bench's own on CPU 1
(/bytes/N answers N bytes).

  python3 scripts/tls-idlemem.py --bench target/release/ringway-bench --conns 2000 \\
      --path '/bytes/65536?cl=1' \\
      --proxy 'nginx=10201=nginx -p /tmp/ringway-peers -c nginx-tls.conf' \\
      --proxy 'ringway=10211=target/release/ringway run -c ringway-tls.yaml'

Proxies' idle timeouts must outlast the run. METERS=path overrides where ../shared/meters is."""
import argparse, os, shlex, ssl, socket, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("METERS", os.path.join(HERE, "..", "..", "shared", "meters")))
import run as m
import meterlib

ap = argparse.ArgumentParser()
ap.add_argument("--proxy", action="append", default=[], help="NAME=PORT=COMMAND")
ap.add_argument("--bench", required=True, help="ringway-bench binary (the origin)")
ap.add_argument("--conns", type=int, default=2000)
ap.add_argument("--path", default="/")
ap.add_argument("--idle", type=float, default=3.0)
a = ap.parse_args()
meterlib.raise_nofile(a.conns * 2 + 1000)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def one(port):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="a.example.test")
    s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: a.example.test\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the response")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    cl = [l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
    if cl:
        while len(body) < int(cl[0]):
            body += s.recv(65536)
    else:  # chunked
        while not body.endswith(b"0\r\n\r\n"):
            body += s.recv(65536)
    return s


origin = m.start([a.bench, "origin", "--listen", "127.0.0.1:9000", "--workers", "1"], 1, f"{m.WORK}/origin.log")
try:
    m.wait_port(9000)
    print(f"{a.conns} idle HTTPS keep-alive connections (TLS 1.3, GET {a.path} each), after {a.idle}s idle")
    print("| proxy | Pss before (KiB) | after | KiB per idle connection |")
    print("|---|---|---|---|")
    for spec in a.proxy:
        name, port, cmd = spec.split("=", 2)
        p = m.start(shlex.split(cmd), 0, f"{m.WORK}/{name}.log")
        try:
            if not m.wait_port(int(port)):
                sys.exit(f"{name} did not start")
            for _ in range(20):  # warm-up: buffers, caches, first allocations
                one(int(port)).close()
            time.sleep(0.5)
            before = meterlib.pss_kib(p.pid)[0]
            socks = [one(int(port)) for _ in range(a.conns)]
            time.sleep(a.idle)
            after = meterlib.pss_kib(p.pid)[0]
            print(f"| {name} | {before} | {after} | {(after - before) / a.conns:.2f} |")
            for s in socks:
                s.close()
        finally:
            m.stop(p)
finally:
    m.stop(origin)
