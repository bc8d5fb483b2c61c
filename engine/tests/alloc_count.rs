//! Heap allocations per request on the keep-alive path, counted.
//!
//! The proxy runs in this process (the library's `runtime::run` on a worker thread), under a
//! global allocator that counts every allocation. The origin is the real `ringway-bench origin`
//! in its own process, and the client is this test's thread on a std socket with fixed buffers
//! (it allocates nothing per request), so what the counter sees during the measured requests is
//! the proxy's own work. 10,000 keep-alive requests, after a warm-up that lets the worker's
//! recycled buffers, slots and pools reach their steady state.
//!
//! What remains per request is the runtime's (heaptrack names every site): compio allocates a
//! record for each ring operation it submits (receive and send, each side), and its run loop
//! grows a fresh `Vec` once per turn — about four turns per request on this one connection in
//! lock-step, shared between many requests under real concurrency (0.6 per request with 10
//! connections). The bound is those and nothing of ringway's own: its heads, records, filter
//! instances, write buffers and posted reads are all recycled.
//!
//! The counter is process-wide: this binary holds this one test, and `support` holds none (any
//! other test here would run beside the measured requests and count as the proxy's).

#[path = "it/support/mod.rs"]
mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use support::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Ring operations a proxied keep-alive request needs: a receive and a send downstream, a send
/// and a receive upstream. compio allocates one record for each.
const RING_OPS_PER_REQUEST: f64 = 4.0;
/// compio's run loop: one `Vec` per turn, about four turns per request in lock-step (see the
/// module doc). Measured, so that any allocation of ringway's own shows up above it.
const RUNTIME_EXTRA_PER_REQUEST: f64 = 4.0;
/// On the epoll driver (`RINGWAY_IO_DRIVER=epoll`: the suite's second run), reads are direct
/// `recv(2)` calls (no record) but the worker's reactor waits on its epoll set through one
/// compio operation per wake, and compio's polling driver allocates a queue for each wait: in
/// lock-step (one connection, as here) two wakes per request, so two of each. Under
/// concurrency one wake serves many connections. Measured likewise.
const EPOLL_WAKES_PER_REQUEST: f64 = 4.0;

fn on_epoll() -> bool {
    std::env::var("RINGWAY_IO_DRIVER").as_deref() == Ok("epoll")
}

/// One request on `s`, its whole response read into `buf` (no allocation): the head, then
/// Content-Length bytes of body.
fn exchange(s: &mut TcpStream, buf: &mut [u8; 4096]) -> usize {
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: alloc.test\r\n\r\n")
        .expect("write request");
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).expect("read response");
        assert!(n > 0, "proxy closed the connection");
        have += n;
        let Some(end) = find(&buf[..have], b"\r\n\r\n") else {
            continue;
        };
        let head = &buf[..end];
        assert!(head.starts_with(b"HTTP/1.1 200"), "not a 200");
        let len = content_length(head).expect("a content-length");
        if have >= end + 4 + len {
            assert_eq!(have, end + 4 + len, "bytes beyond the response");
            return have;
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
    })
}

#[test]
fn keep_alive_requests_allocate_only_the_runtimes_operation_records() {
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::simple(origin.addr).top("workers: 1").yaml();
    let cfg = ringway_engine::config::load_str(&yaml, ringway_engine::config::Format::Yaml, "test")
        .expect("config");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opts = ringway_engine::runtime::RunOptions {
            workers: Some(1),
            cpu_affinity: None,
            log_reload: None,
            ..Default::default()
        };
        let _ = ringway_engine::runtime::run(Arc::new(cfg), &opts, |_, addr| {
            let _ = tx.send(addr);
        });
    });
    let addr = rx.recv_timeout(WAIT).expect("listener bound");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 4096];
    for _ in 0..2_000 {
        exchange(&mut s, &mut buf);
    }
    const N: u64 = 10_000;
    let before = ALLOCS.load(Relaxed);
    for _ in 0..N {
        exchange(&mut s, &mut buf);
    }
    let per_request = (ALLOCS.load(Relaxed) - before) as f64 / N as f64;
    eprintln!("allocations per keep-alive request: {per_request:.3}");
    let driver_extra = if on_epoll() {
        EPOLL_WAKES_PER_REQUEST
    } else {
        0.0
    };
    assert!(
        per_request <= RING_OPS_PER_REQUEST + RUNTIME_EXTRA_PER_REQUEST + driver_extra + 0.5,
        "{per_request:.3} allocations per request; the runtime's operation records are {RING_OPS_PER_REQUEST}"
    );
}
