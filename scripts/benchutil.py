"""Helpers the benchmark scripts share (reload-bench.py, xds-bench.py): a free loopback port,
a process's CPU seconds, and a bounded wait for a line a child prints. Imported from the
scripts' own directory (Python puts it first on sys.path)."""

import os
import socket
import time


def free_port():
    """A port free on 127.0.0.1 a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_cpu(pid):
    """User + system CPU seconds of `pid` so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_line(proc, prefix, timeout):
    """The first line of `proc`'s stdout starting with `prefix`, within `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise SystemExit(f"did not see {prefix!r}")
