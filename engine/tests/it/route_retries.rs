//! Retries and circuit breakers (issue 20, points 3 and 4) against origins that fail on
//! command: `retry_on` conditions, another host on retry (`previous_hosts`) with
//! `x-envoy-attempt-count`, a POST sent twice only when the policy says so, per-try and route
//! timeouts, jittered back-off within bounds, retry budgets under a full outage, and the
//! `max_requests` / `max_connections` / `max_pending_requests` breakers answering 503 `UO`.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

fn config(endpoints: &[SocketAddr], route: &str, cluster_keys: &str, workers: usize) -> String {
    let mut b = ConfigBuilder::new()
        .top(&format!("workers: {workers}"))
        .admin()
        .route("prefix: /", &format!("route:\n  cluster: pool\n{route}"))
        .cluster("pool", endpoints);
    if !cluster_keys.is_empty() {
        b = b.cluster_extra(cluster_keys);
    }
    b.yaml()
}

fn stat(p: &Proxy, name: &str) -> u64 {
    admin_stats(p.admin_addr.expect("admin"))
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// How often `needle` occurs in the bytes an origin received.
fn count(o: &RawOrigin, needle: &str) -> usize {
    String::from_utf8_lossy(&o.received_bytes())
        .matches(needle)
        .count()
}

#[test]
fn five_xx_is_retried_on_another_host_with_the_attempt_count() {
    let bad = SwitchOrigin::start("bad");
    let good = SwitchOrigin::start("good");
    bad.set(Mode::Fail);
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .virtual_host("h", &["*"])
        .vhost_extra("include_request_attempt_count: true")
        .route(
            "prefix: /",
            "route:\n  cluster: pool\n  retry_policy:\n    retry_on: 5xx\n    num_retries: 2\n    retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]\n    host_selection_retry_max_attempts: 5\n",
        )
        .cluster("pool", &[bad.addr, good.addr])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    for _ in 0..20 {
        let r = c.get("h.test", "/");
        assert_eq!((r.status(), r.body_str()), (200, "good".to_string()));
    }
    // Every request that met `bad` first was retried once, on `good`, as attempt 2.
    let retried = bad.served.load(Ordering::SeqCst);
    assert!(
        retried >= 5,
        "round robin sends about half to bad first: {retried}"
    );
    assert_eq!(count(&good.origin, "x-envoy-attempt-count: 2\r\n"), retried);
    assert_eq!(
        count(&good.origin, "x-envoy-attempt-count: 1\r\n"),
        20 - retried
    );
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_retry"), retried as u64);
    assert_eq!(
        stat(&p, "cluster.pool.upstream_rq_retry_success"),
        retried as u64
    );
    assert_eq!(
        stat(&p, "cluster.pool.upstream_rq_total"),
        20 + retried as u64
    );
}

#[test]
fn a_post_is_sent_again_only_when_the_policy_says_so() {
    // `5xx` retries a POST that got a 503 (the policy says so), with its body each time.
    let o = SwitchOrigin::start("o");
    o.set(Mode::Fail);
    let p = Proxy::start_configured(&config(
        &[o.addr],
        "  retry_policy: {retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 5ms}}\n",
        "",
        2,
    ));
    let r = request(
        p.addr,
        b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status(), 503);
    assert_eq!(
        o.served.load(Ordering::SeqCst),
        3,
        "one try and two retries"
    );
    assert_eq!(count(&o.origin, "\r\n\r\nhello"), 3);
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_retry_limit_exceeded"), 1);
    drop(p);

    // `connect-failure,reset-before-request`: an upstream that read the POST and reset is not
    // tried again (the request was sent), and neither without a policy.
    for route in [
        "  retry_policy: {retry_on: \"connect-failure,reset-before-request\", num_retries: 3}\n",
        "",
    ] {
        let o = SwitchOrigin::start("o");
        o.set(Mode::Close);
        let p = Proxy::start_configured(&config(&[o.addr], route, "", 2));
        let r = request(
            p.addr,
            b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello",
        );
        assert_eq!(r.status(), 502, "{route}");
        thread::sleep(Duration::from_millis(100));
        assert_eq!(count(&o.origin, "POST /x"), 1, "sent once: {route}");
    }
}

#[test]
fn connect_failures_are_retried_on_a_live_endpoint() {
    let good = SwitchOrigin::start("good");
    let p = Proxy::start_configured(&config(
        &[closed_port(), good.addr],
        "  retry_policy: {retry_on: connect-failure, num_retries: 1, retry_host_predicate: [{name: previous_hosts}], host_selection_retry_max_attempts: 4}\n",
        "",
        2,
    ));
    let mut c = Client::connect(p.addr);
    for _ in 0..10 {
        assert_eq!(c.get("h", "/").status(), 200);
    }
    assert!(stat(&p, "cluster.pool.upstream_cx_connect_fail") >= 1);
}

#[test]
fn per_try_timeouts_retry_and_the_route_timeout_bounds_every_try() {
    let slow = SwitchOrigin::start("slow");
    let good = SwitchOrigin::start("good");
    slow.set(Mode::Hang);
    let route = "  timeout: 3s\n  retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 300ms, retry_host_predicate: [{name: previous_hosts}], host_selection_retry_max_attempts: 4}\n";
    let p = Proxy::start_configured(&config(&[slow.addr, good.addr], route, "", 2));
    let mut c = Client::connect(p.addr);
    for _ in 0..4 {
        let t = Instant::now();
        let r = c.get("h", "/");
        assert_eq!((r.status(), r.body_str()), (200, "good".to_string()));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    assert!(stat(&p, "cluster.pool.upstream_rq_per_try_timeout") >= 1);
    drop(p);

    // Every try hangs: 10 retries of 300 ms would take 3.3 s; the route's 1 s ends them all.
    let p = Proxy::start_configured(&config(
        &[slow.addr],
        "  timeout: 1s\n  retry_policy: {retry_on: 5xx, num_retries: 10, per_try_timeout: 300ms, retry_back_off: {base_interval: 1ms}}\n",
        "",
        2,
    ));
    let t = Instant::now();
    let r = get(p.addr, "h", "/");
    let took = t.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

#[test]
fn back_off_is_jittered_and_exponential_within_bounds() {
    let o = SwitchOrigin::start("o");
    o.set(Mode::Fail);
    // 3 retries at base 40 ms: waits uniform in [0, 40), [0, 120), [0, 280) ms: 220 ms on
    // average, 440 ms at most.
    let p = Proxy::start_configured(&config(
        &[o.addr],
        "  retry_policy: {retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 40ms, max_interval: 1s}}\n",
        "",
        1,
    ));
    let mut c = Client::connect(p.addr);
    let mut total = Duration::ZERO;
    let n = 12;
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(c.get("h", "/").status(), 503);
        let took = t.elapsed();
        assert!(took < Duration::from_millis(440 + 300), "{took:?}");
        total += took;
    }
    let mean = total / n;
    assert!(
        mean >= Duration::from_millis(90) && mean <= Duration::from_millis(400),
        "mean {mean:?}"
    );
    assert_eq!(o.served.load(Ordering::SeqCst), 4 * n as usize);
}

/// An origin answering 503 after `delay` to every request, keep-alive; counts them.
fn slow_failing(delay: Duration) -> (RawOrigin, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = Arc::clone(&n);
    let o = RawOrigin::start(move |mut c| {
        while c.read_request().is_some() {
            n2.fetch_add(1, Ordering::SeqCst);
            thread::sleep(delay);
            if !c.write(b"HTTP/1.1 503 X\r\ncontent-length: 4\r\n\r\nfail") {
                return;
            }
        }
    });
    (o, n)
}

/// `clients` threads each sending `each` requests: their statuses.
fn load(addr: SocketAddr, clients: usize, each: usize) -> Vec<u16> {
    let hs: Vec<_> = (0..clients)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..each)
                    .map(|_| c.get("h", "/").status())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_retry_budget_keeps_retries_from_multiplying_an_outage() {
    let (o, tries) = slow_failing(Duration::from_millis(30));
    let log = scratch_dir().join("retry-budget.log");
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .hcm_extra(&format!(
            "access_log: [{{ path: {}, format: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" }}]",
            log.display()
        ))
        .route(
            "prefix: /",
            "route:\n  cluster: pool\n  retry_policy: {retry_on: 5xx, num_retries: 5, retry_back_off: {base_interval: 1ms}}\n",
        )
        .cluster("pool", &[o.addr])
        .cluster_extra("circuit_breakers:\n  thresholds:\n    - retry_budget: {budget_percent: {value: 20}, min_retry_concurrency: 2}\n")
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let statuses = load(p.addr, 16, 5);
    assert!(statuses.iter().all(|s| *s == 503));
    let requests = statuses.len();
    let tries = tries.load(Ordering::SeqCst);
    // Unbudgeted, each request would be tried 6 times.
    assert!(
        tries < requests * 3,
        "{tries} tries for {requests} requests"
    );
    let overflow = stat(&p, "cluster.pool.upstream_rq_retry_overflow");
    assert!(overflow > 0);
    // Every answer was a 503 the policy wanted retried: no retry succeeded.
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_retry_success"), 0);
    // A retry the breaker refused is flagged UO, as Envoy does; one whose retries ran out URX.
    let lines = wait_lines(&log, requests);
    let uo = lines.iter().filter(|l| l.as_str() == "503 UO").count();
    assert_eq!(uo as u64, overflow, "{lines:?}");
    assert!(
        lines.iter().all(|l| l == "503 UO" || l == "503 URX"),
        "{lines:?}"
    );
}

#[test]
fn max_requests_overflow_is_answered_503_uo_and_counted() {
    let (o, _) = RawOrigin::counting("ok", Duration::from_millis(300));
    let log = scratch_dir().join("overflow.log");
    let yaml = ConfigBuilder::new()
        .top("workers: 1")
        .admin()
        .hcm_extra(&format!(
            "access_log: [{{ path: {}, format: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" }}]",
            yaml_str(&log.display().to_string())
        ))
        .route_prefix("/", "pool")
        .cluster("pool", &[o.addr])
        .cluster_extra("circuit_breakers: {thresholds: [{max_requests: 2, track_remaining: true}]}")
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let statuses = load(p.addr, 5, 1);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let over = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!((ok, over), (2, 3), "{statuses:?}");
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_pending_overflow"), 3);
    assert_eq!(
        stat(&p, "cluster.pool.circuit_breakers.default.remaining_rq"),
        2
    );
    let lines = wait_lines(&log, 5);
    assert_eq!(
        lines.iter().filter(|l| *l == "503 UO").count(),
        3,
        "{lines:?}"
    );
}

#[test]
fn max_connections_queues_pending_requests_then_overflows() {
    let (o, served) = RawOrigin::counting("ok", Duration::from_millis(300));
    let p = Proxy::start_configured(&config(
        &[o.addr],
        "",
        "circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1}]}\n",
        1,
    ));
    let t = Instant::now();
    let statuses = load(p.addr, 3, 1);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let over = statuses.iter().filter(|s| **s == 503).count();
    // One goes, one waits for its connection (then goes), one overflows.
    assert_eq!((ok, over), (2, 1), "{statuses:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert_eq!(o.connection_count(), 1, "never more than one connection");
    assert!(stat(&p, "cluster.pool.upstream_cx_overflow") >= 1);
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_pending_overflow"), 1);
}

#[test]
fn per_try_idle_timeout_retries_a_silent_try_and_ends_a_stalled_body() {
    // Silent before the head: retried on the other host after the idle timeout.
    let slow = SwitchOrigin::start("slow");
    let good = SwitchOrigin::start("good");
    slow.set(Mode::Hang);
    let route = "  timeout: 5s\n  retry_policy: {retry_on: 5xx, num_retries: 1, per_try_idle_timeout: 300ms, retry_host_predicate: [{name: previous_hosts}], host_selection_retry_max_attempts: 4}\n";
    let p = Proxy::start_configured(&config(&[slow.addr, good.addr], route, "", 1));
    let mut c = Client::connect(p.addr);
    for _ in 0..4 {
        let t = Instant::now();
        let r = c.get("h", "/");
        assert_eq!((r.status(), r.body_str()), (200, "good".to_string()));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    drop(p);
    // A body that stalls after its first bytes: the exchange ends at the idle timeout, not at
    // the route's 5 s.
    let stall = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello");
            thread::sleep(Duration::from_secs(6));
        }
    });
    let p = Proxy::start_configured(&config(
        &[stall.addr],
        "  timeout: 5s\n  retry_policy: {retry_on: 5xx, per_try_idle_timeout: 300ms}\n",
        "",
        1,
    ));
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    use std::io::{Read, Write};
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
        "{text}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "the stalled body ended after {took:?}"
    );
}

#[test]
fn an_http2_cluster_is_retried_under_the_policy_too() {
    let bad = BenchOrigin::start(&["--h2c", "--status", "503"]);
    let good = BenchOrigin::start(&["--h2c"]);
    let route = "  retry_policy: {retry_on: 5xx, num_retries: 2, retry_host_predicate: [{name: previous_hosts}], host_selection_retry_max_attempts: 5}\n";
    let p = Proxy::start_configured(&config(&[bad.addr, good.addr], route, "protocol: http2", 1));
    let mut c = Client::connect(p.addr);
    for i in 0..10 {
        let r = c.get("h", "/");
        assert_eq!(r.status(), 200, "request {i}: {r:?}");
    }
    let retried = stat(&p, "cluster.pool.upstream_rq_retry");
    assert!(
        (3..=10).contains(&retried),
        "round robin met the 503 host first {retried} times"
    );
    assert_eq!(stat(&p, "cluster.pool.upstream_rq_retry_success"), retried);
    let (b, g) = (bad.stop(), good.stop());
    assert_eq!((b, g), (retried, 10));
}
