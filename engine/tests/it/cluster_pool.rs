//! Clusters, connections (issue 10, point 6): `connect_timeout`, keep-alive pools per endpoint
//! (`max_idle_per_endpoint`, `idle_timeout`), and the single retry of an idempotent request
//! when a reused connection fails before any response byte.
use crate::support;
use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

fn cluster_config(endpoint: SocketAddr, cluster_extra: &str) -> String {
    ConfigBuilder::new()
        .route("prefix: /", "route: { cluster: origin, timeout: 5s }")
        .cluster("origin", &[endpoint])
        .cluster_extra(cluster_extra)
        .yaml()
}

/// A listener whose accept queue is full and never drained: a SYN to it is dropped, so a
/// connect hangs exactly like one to a black-holed address (the network here is loopback only).
fn blackhole() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    s.bind(&any.into()).expect("bind");
    s.listen(0).expect("listen");
    let addr = s.local_addr().expect("addr").as_socket().expect("inet");
    // Fill the queue (a backlog of 0 still holds one); further connects time out.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(c);
        }
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "could not fill the accept queue"
    );
    (s, fillers, addr)
}

#[test]
fn cluster_connect_timeout_is_a_503() {
    let (_hole, _fillers, addr) = blackhole();
    let proxy = Proxy::start(&cluster_config(addr, "connect_timeout: 300ms"));
    let t0 = Instant::now();
    let r = get(proxy.addr, "a", "/");
    let took = t0.elapsed();
    assert_eq!(r.status(), 503, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some("connect_failure"));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "connect timeout of 300ms took {took:?}"
    );
}

#[test]
fn cluster_connections_are_reused_by_default() {
    let (origin, n) = RawOrigin::counting("ok", Duration::ZERO);
    let proxy = Proxy::start(&cluster_config(origin.addr, ""));
    // Separate client connections, one after the other: one upstream connection serves all.
    for _ in 0..5 {
        let r = get(proxy.addr, "a", "/");
        assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"));
    }
    assert_eq!(n.load(Ordering::SeqCst), 5);
    assert_eq!(origin.connection_count(), 1);
}

#[test]
fn cluster_max_idle_zero_means_no_reuse() {
    let (origin, n) = RawOrigin::counting("ok", Duration::ZERO);
    let proxy = Proxy::start(&cluster_config(origin.addr, "max_idle_per_endpoint: 0"));
    let mut c = Client::connect(proxy.addr);
    for _ in 0..3 {
        assert_eq!(c.get("a", "/").status(), 200);
    }
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert_eq!(origin.connection_count(), 3);
}

/// An origin answering `ok` after `delay` that records, per connection, when the proxy closed
/// it (EOF seen) relative to its last response.
struct Tracked {
    origin: RawOrigin,
    /// Per closed connection: time from its last response to EOF.
    closed_after: Arc<Mutex<Vec<Duration>>>,
}

fn tracked(delay: Duration) -> Tracked {
    let closed_after = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&closed_after);
    let origin = RawOrigin::start(move |mut c| {
        let mut last = Instant::now();
        loop {
            // read_request waits at most WAIT (10 s); a close comes well before.
            if c.read_request().is_none() {
                rec.lock().expect("lock").push(last.elapsed());
                return;
            }
            thread::sleep(delay);
            if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") {
                return;
            }
            last = Instant::now();
        }
    });
    Tracked {
        origin,
        closed_after,
    }
}

#[test]
fn cluster_idle_upstream_connection_closed_after_idle_timeout() {
    let t = tracked(Duration::ZERO);
    let proxy = Proxy::start(&cluster_config(t.origin.addr, "idle_timeout: 500ms"));
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    eventually("idle upstream connection closed", || {
        !t.closed_after.lock().expect("lock").is_empty()
    });
    let after = t.closed_after.lock().expect("lock")[0];
    // Swept once a second: closed between idle_timeout and idle_timeout + one sweep (+ slack).
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_millis(3500),
        "idle connection closed {after:?} after its last response (idle_timeout 500ms)"
    );
    // A new request opens a new connection.
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    assert_eq!(t.origin.connection_count(), 2);
}

#[test]
fn cluster_max_idle_per_endpoint_caps_the_pool() {
    let t = tracked(Duration::from_millis(300));
    let proxy = Proxy::start(&cluster_config(t.origin.addr, "max_idle_per_endpoint: 1"));
    // Two requests at once need two upstream connections.
    let addr = proxy.addr;
    let hs: Vec<_> = (0..2)
        .map(|_| thread::spawn(move || get(addr, "a", "/").status()))
        .collect();
    for h in hs {
        assert_eq!(h.join().expect("client thread"), 200);
    }
    assert_eq!(t.origin.connection_count(), 2);
    // Only one may stay idle: the other is closed right after its response.
    eventually("one upstream connection closed", || {
        !t.closed_after.lock().expect("lock").is_empty()
    });
    let after = t.closed_after.lock().expect("lock")[0];
    assert!(
        after < Duration::from_millis(5000),
        "extra connection kept {after:?}"
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        t.closed_after.lock().expect("lock").len(),
        1,
        "the pooled one must stay open"
    );
    // The pooled one is reused.
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    assert_eq!(t.origin.connection_count(), 2);
}

/// An origin whose first connection answers one request, then reads the next and closes without
/// a byte of response (a keep-alive race); later connections answer normally. Counts the
/// requests read.
fn flaky() -> (RawOrigin, Arc<AtomicUsize>) {
    let reqs = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&reqs);
    let origin = RawOrigin::start(move |mut c| {
        let first = conns.fetch_add(1, Ordering::SeqCst) == 0;
        let mut served = 0;
        while c.read_request().is_some() {
            r2.fetch_add(1, Ordering::SeqCst);
            if first && served == 1 {
                return; // closes with the request unanswered
            }
            if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh") {
                return;
            }
            served += 1;
        }
    });
    (origin, reqs)
}

#[test]
fn cluster_idempotent_request_retried_once_on_a_fresh_connection() {
    let (origin, reqs) = flaky();
    let proxy = Proxy::start(&cluster_config(origin.addr, ""));
    let mut c = Client::connect(proxy.addr);
    assert_eq!(c.get("a", "/one").status(), 200);
    // Goes out on the pooled connection, which dies without answering: replayed on a new one.
    let r = c.get("a", "/two");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "fresh"), "{r:?}");
    assert_eq!(origin.connection_count(), 2);
    assert_eq!(
        reqs.load(Ordering::SeqCst),
        3,
        "first, the failed attempt, and the retry"
    );
    // The client connection is still fine.
    assert_eq!(c.get("a", "/three").status(), 200);
    let received = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(
        received.matches("GET /two HTTP/1.1").count(),
        2,
        "{received}"
    );
}

#[test]
fn cluster_idempotent_request_with_body_is_retried_too() {
    let (origin, reqs) = flaky();
    let proxy = Proxy::start(&cluster_config(origin.addr, ""));
    let mut c = Client::connect(proxy.addr);
    assert_eq!(c.get("a", "/one").status(), 200);
    let r = c.roundtrip(b"PUT /put HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(reqs.load(Ordering::SeqCst), 3);
    let received = String::from_utf8_lossy(&origin.received_bytes()).to_string();
    assert_eq!(
        received.matches("PUT /put HTTP/1.1").count(),
        2,
        "{received}"
    );
    assert_eq!(
        received.matches("\r\n\r\nhello").count(),
        2,
        "the body is replayed: {received}"
    );
}

#[test]
fn cluster_non_idempotent_request_is_not_retried() {
    let (origin, reqs) = flaky();
    let proxy = Proxy::start(&cluster_config(origin.addr, ""));
    let mut c = Client::connect(proxy.addr);
    assert_eq!(c.get("a", "/one").status(), 200);
    let r = c.roundtrip(b"POST /post HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!(r.status(), 502, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some("upstream_reset"));
    assert_eq!(reqs.load(Ordering::SeqCst), 2, "a POST is sent once");
    assert_eq!(origin.connection_count(), 1);
    // The proxy keeps serving.
    assert_eq!(get(proxy.addr, "a", "/after").status(), 200);
}

#[test]
fn cluster_max_requests_per_connection_closes_http1_connections() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&cluster_config(
        origin.addr,
        "max_requests_per_connection: 2",
    ));
    for i in 0..6 {
        assert_eq!(
            get(proxy.addr, "a", &format!("/{i}")).status(),
            200,
            "request {i}"
        );
    }
    // Two requests per upstream connection: six needed three.
    assert_eq!(origin.connection_count(), 3);
}

#[test]
fn cluster_max_connection_duration_retires_old_connections() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&cluster_config(
        origin.addr,
        "max_connection_duration: 500ms",
    ));
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        assert_eq!(c.get("a", &format!("/{i}")).status(), 200, "request {i}");
    }
    assert_eq!(origin.connection_count(), 1, "young connections are reused");
    thread::sleep(Duration::from_millis(800));
    assert_eq!(c.get("a", "/3").status(), 200);
    assert_eq!(
        origin.connection_count(),
        2,
        "the aged idle connection is not taken again"
    );
    for i in 4..7 {
        assert_eq!(c.get("a", &format!("/{i}")).status(), 200, "request {i}");
    }
    // The first connection passed 500ms while idle: the next request opened a second one,
    // which is reused while young.
    assert_eq!(origin.connection_count(), 2);
}
