#!/usr/bin/env python3
"""Where a proxy's CPU goes, by component: a `perf record` of the proxy's core under keep-alive load.

Each proxy runs alone on CPU 0 (one worker); the origin (the meters' nginx) and `wrk -t1 -c50` run
on CPU 1. For each proxy in turn: warm up, then record CPU 0 (`perf record -C 0`, cpu-clock, every
process on that core: the proxy and the softirq work its sends bring) while wrk drives it, and
measure its CPU per request from /proc over the same seconds. Each sample's symbol is put in one
component (kernel TCP/IP, io_uring, epoll, syscall entry, scheduler and wake-ups, copies, slab,
timers, other kernel; the proxy's own code split into its runtime and the rest; libc), and the
table gives each component in CPU-µs per request: the share of the core's busy samples times the
CPU per request. Comparing two proxies this way shows which part of the difference is whose.

  flock /tmp/ringway-bench.lock python3 scripts/profile.py --secs 8 \
      --proxy 'nginx=10001=nginx -p /tmp/ringway-peers -c ../shared/meters/configs/nginx.conf' \
      --proxy 'ringway=10011=target/release/ringway run -c plain-10011.yaml --workers 1'

Needs perf, nginx and wrk (../shared/meters/setup.sh installs them); METERS=path overrides where
run.py is."""
import argparse, collections, os, re, shlex, socket, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("METERS", os.path.join(HERE, "..", "..", "shared", "meters")))
import run as m

ap = argparse.ArgumentParser()
ap.add_argument("--proxy", action="append", default=[], help="NAME=PORT=COMMAND")
ap.add_argument("--secs", type=int, default=8)
ap.add_argument("--freq", type=int, default=4999)
ap.add_argument("--conns", type=int, default=50)
ap.add_argument("--top", type=int, default=0, help="also print each proxy's N hottest symbols")
a = ap.parse_args()

# Kernel symbols by component, first match wins (order matters: `tcp_` before the catch-alls).
KERNEL = [
    ("io_uring", r"^(io_|__io_|io_uring|__arm64_sys_io_uring|__x64_sys_io_uring|tctx_|task_work_run)"),
    ("epoll and poll", r"^(ep_|__ep_|do_epoll|__x64_sys_epoll|ep_poll|tcp_poll|sock_poll)"),
    ("syscall entry/exit", r"^(entry_SYSCALL|do_syscall_64|syscall_|__x64_sys_|exit_to_user_mode|"
                           r"syscall_exit|__fdget|fput|__fget|security_|ksys_|__sys_)"),
    ("copies to/from user", r"(copy_user|_copy_to_iter|_copy_from_iter|copyin|copyout|"
                            r"rep_movs|skb_copy_datagram|simple_copy_to_iter|__check_object_size)"),
    ("netfilter", r"^(nf_|ipt_|nft_|__nf_)"),
    ("TCP/IP (both ends of loopback)",
     r"^(tcp_|__tcp_|ip_|__ip_|ipv4_|inet_|__inet_|sk_|__sk_|sock_|__sock_|skb_|__skb_|"
     r"kfree_skb|__kfree_skb|consume_skb|__alloc_skb|alloc_skb|__build_skb|dev_|__dev_|"
     r"netif_|__netif_|net_rx|napi_|__napi|process_backlog|loopback_|validate_xmit|"
     r"dst_|__dst|raw_local_deliver|bpf_|lock_sock|release_sock|__release_sock|"
     r"security_sock|selinux_|mod_timer|sk_reset_timer|__local_bh|do_softirq|__do_softirq|"
     r"irq_exit|sock_def|sock_rfree|sock_wfree|rb_|csum_|__copy_skb|eth_|neigh_|fib_|"
     r"tcp4_|__inet_lookup|inet_ehashfn|rcu_read|__cgroup_bpf)"),
    ("scheduler and wake-ups",
     r"^(schedule|__schedule|try_to_wake_up|ttwu|__wake_up|wake_up|enqueue_|dequeue_|"
     r"update_|pick_next|finish_task_switch|__switch_to|switch_mm|native_sched_clock|"
     r"sched_|psi_|set_next_entity|put_prev|check_preempt|resched|select_task_rq|"
     r"autoremove_wake|default_wake|pollwake|__smp_call|native_send_call|x2apic|"
     r"default_send_IPI|llist_|activate_task|reweight|place_entity|cpuacct|__cgroup_account|"
     r"cgroup_rstat|account_|prepare_task_switch|raw_spin_rq|_raw_spin_lock|_raw_spin_unlock|"
     r"native_queued_spin|queued_spin)"),
    ("slab and page memory", r"^(kmem_cache|kfree|__kmalloc|kmalloc|__slab|slab_|___slab|"
                             r"page_frag|__page_frag|__alloc_pages|free_unref|get_page_from|"
                             r"__free_pages|memcg_|mem_cgroup|refill_obj|obj_cgroup|mod_objcg)"),
    ("timers and clocks", r"^(hrtimer|__hrtimer|timer|__timer|run_timer|ktime_|read_tsc|"
                          r"clockevents|lapic_next|tick_|__run_timers|enqueue_hrtimer|"
                          r"__remove_hrtimer|get_nohz|calc_)"),
]
KERNEL = [(n, re.compile(p)) for n, p in KERNEL]
# The core waiting for work: not counted as busy.
IDLE = re.compile(r"^(do_idle|cpuidle|mwait|default_idle|arch_cpu_idle|intel_idle|acpi_idle|"
                  r"poll_idle|native_safe_halt|pv_native_safe_halt|cpu_idle_poll|__cpuidle)")


def component(dso, sym, binary):
    if dso.startswith("[kernel") or dso == "[unknown]" and sym.startswith("0xffff"):
        for name, rx in KERNEL:
            if rx.search(sym):
                return name
        return "other kernel"
    if os.path.basename(dso) == binary:
        if re.match(r"^(compio|<compio|async_task|<async_task|slab::|<slab)", sym):
            return "own code: runtime (compio)"
        return "own code"
    if "libc" in dso or "ld-linux" in dso:
        return "libc (malloc, memcpy, ...)"
    return "other user"


def profile(name, port, proc, binary, workdir):
    data = os.path.join(workdir, f"{name}.perf")
    result = {}

    def load():
        result["wrk"] = m.wrk(port, a.secs + 1, a.conns)

    t0 = m.cpu_ticks(proc.pid)
    t = threading.Thread(target=load)
    t.start()
    # Start recording once the load runs; stop before it ends (wrk runs a second longer).
    time.sleep(0.5)
    subprocess.run(["perf", "record", "-q", "-C", "0", "-e", "cpu-clock", "-F", str(a.freq),
                    "-o", data, "--", "sleep", str(a.secs)],
                   check=True, capture_output=True, timeout=a.secs + 60)
    t.join(timeout=a.secs + 60)
    t1 = m.cpu_ticks(proc.pid)
    rps, reqs, errs, _, _ = result["wrk"]
    if not reqs or errs:
        sys.exit(f"{name}: {reqs} requests, {errs} errors")
    cpu_us = (t1 - t0) * 1e6 / m.TICK / reqs
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-F",
                          "overhead,dso,sym", "--percent-limit", "0", "-t", "\t"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    comps, syms = collections.Counter(), collections.Counter()
    idle = 0.0
    for line in rep.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        pct = float(parts[0].strip().rstrip("%"))
        dso = parts[1].strip()
        sym = re.sub(r"^\[[.kgu]\]\s*", "", parts[2].strip())
        if IDLE.match(sym):
            idle += pct
            continue
        comps[component(dso, sym, binary)] += pct
        syms[(dso, sym)] += pct
    busy = sum(comps.values())
    return {"cpu_us": cpu_us, "rps": rps, "busy": busy, "idle": idle,
            "comps": {c: p / busy for c, p in comps.items()},
            "syms": [(s, p / busy) for s, p in syms.most_common(a.top)]}


cfg = os.path.join(os.path.dirname(m.__file__), "configs")
with socket.socket() as probe:
    if probe.connect_ex(("127.0.0.1", 9000)) == 0:
        sys.exit("origin: something already listens on 127.0.0.1:9000; stop it first")
origin = m.start(["nginx", "-p", m.WORK, "-c", f"{cfg}/origin-nginx.conf"], 1, f"{m.WORK}/origin.log")
results = {}
workdir = tempfile.mkdtemp(prefix="ringway-profile-")
try:
    m.wait_port(9000)
    for p in a.proxy:
        name, port, cmd = p.split("=", 2)
        argv = shlex.split(cmd)
        proc = m.start(argv, 0, f"{m.WORK}/{name}.log")
        try:
            if not m.wait_port(int(port)):
                sys.exit(f"{name} did not start")
            m.wrk(int(port), 2, a.conns)
            results[name] = profile(name, int(port), proc, os.path.basename(argv[0]), workdir)
        finally:
            m.stop(proc)
finally:
    m.stop(origin)

names = list(results)
order = sorted({c for r in results.values() for c in r["comps"]},
               key=lambda c: -max(r["comps"].get(c, 0) for r in results.values()))
print(f"{a.secs} s of perf record -C 0 (cpu-clock, {a.freq} Hz) per proxy under wrk -t1 -c{a.conns}; "
      f"CPU-µs per request from /proc over the same load")
print("| component | " + " | ".join(f"{n} µs/req (share)" for n in names) + " |")
print("|---|" + "---|" * len(names))
for c in order:
    cells = [f"{r['comps'].get(c, 0) * r['cpu_us']:.2f} ({100 * r['comps'].get(c, 0):.1f}%)"
             for r in results.values()]
    print(f"| {c} | " + " | ".join(cells) + " |")
print("| **total** | " + " | ".join(f"**{r['cpu_us']:.2f}** ({r['rps']:.0f} req/s)"
                                   for r in results.values()) + " |")
kernel = lambda r: sum(p for c, p in r["comps"].items()
                       if not c.startswith(("own code", "libc", "other user")))
print("| kernel, all | " + " | ".join(f"{kernel(r) * r['cpu_us']:.2f} ({100 * kernel(r):.1f}%)"
                                      for r in results.values()) + " |")
print("core idle while loaded: " + ", ".join(f"{n} {r['idle']:.1f}%" for n, r in results.items()))
if a.top:
    for n, r in results.items():
        print(f"\n{n}: hottest symbols (share of busy samples)")
        for (dso, sym), p in r["syms"]:
            print(f"  {100 * p:5.1f}%  {os.path.basename(dso)[:20]:20}  {sym[:100]}")
