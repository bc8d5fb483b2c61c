#!/usr/bin/env python3
"""Instructions per request in user space: the proxy under callgrind, a wrk load, the count.

CPU time cannot see a change of a few percent in ringway's own code (three quarters of a request
is kernel time, and runs differ by more than that); instruction counts can: the same binary, config
and load give the same count within a fraction of a percent, whatever else the machine does.
Starts the meters' nginx origin on 127.0.0.1:9000 (CPU 1) unless one answers there, runs
`RINGWAY run -c CONFIG --workers 1` under valgrind's callgrind, warms up with one request, zeroes
the counters, drives `wrk -t1 -c50` on CPU 1 for --secs seconds, dumps, and prints the total
instructions over the requests wrk counted and the functions that spent the most (exclusive).

  python3 scripts/instructions.py --config cache-10014.yaml --port 10014 [--ringway PATH] [--top 30]

Needs valgrind, nginx and wrk (../shared/meters/setup.sh installs the last two)."""
import argparse, collections, glob, os, re, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
METERS = os.environ.get("METERS", os.path.join(HERE, "..", "..", "shared", "meters"))

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--ringway", default=os.path.join(HERE, "..", "target", "release", "ringway"))
ap.add_argument("--secs", type=int, default=10)
ap.add_argument("--top", type=int, default=30)
a = ap.parse_args()


def answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def exclusive(path):
    """Exclusive instructions per function from a callgrind dump (uncompressed names)."""
    cost = collections.Counter()
    fn, after_call = None, False
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            fn, after_call = line[3:].strip(), False
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                if after_call:  # the inclusive cost of a call: not this function's own
                    after_call = False
                else:
                    cost[fn] += int(parts[1])
    return cost


out_dir = tempfile.mkdtemp(prefix="ringway-callgrind-")
origin = None
if not answers(9000):
    os.makedirs("/tmp/ringway-peers", exist_ok=True)
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", "/tmp/ringway-peers", "-c",
                               os.path.join(METERS, "configs", "origin-nginx.conf")])
vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--compress-strings=no",
                       "--compress-pos=no", f"--callgrind-out-file={out_dir}/cg.out",
                       a.ringway, "run", "-c", a.config, "--workers", "1"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(120):
        if answers(a.port):
            break
        time.sleep(0.5)
    else:
        sys.exit(f"instructions: nothing answers on {a.port}")
    url = f"http://127.0.0.1:{a.port}/"
    subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=30)
    subprocess.run(["callgrind_control", "-z", str(vg.pid)], check=True, capture_output=True,
                   timeout=60)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{a.secs}s", url],
                         capture_output=True, text=True, timeout=a.secs + 60).stdout
    subprocess.run(["callgrind_control", "-d", str(vg.pid)], check=True, capture_output=True,
                   timeout=60)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    dumps = sorted(glob.glob(f"{out_dir}/cg.out.*"))
    if not dumps or n == 0:
        sys.exit("instructions: no dump or no requests")
    cost = exclusive(dumps[-1])
    total = sum(cost.values())
    print(f"{n} requests; {total} instructions; {total / n:.0f} per request")
    for f, c in cost.most_common(a.top):
        print(f"{c / n:9.1f} {100 * c / total:5.1f}%  {f[:140]}")
finally:
    vg.terminate()
    vg.wait(timeout=60)
    if origin:
        origin.terminate()
        origin.wait(timeout=10)
