//! Traffic splitting and shadowing (issue 20, point 6): `weighted_clusters` split requests by
//! weight, and `request_mirror_policies` send a copy (host `-shadow`, body included) to
//! another cluster, by fraction, without the client waiting for it or seeing its answer.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

fn stat(p: &Proxy, name: &str) -> u64 {
    admin_stats(p.admin_addr.expect("admin"))
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// Wait (bounded) until `n` reaches `want`; its value then.
fn settle(n: &AtomicUsize, want: usize, within: Duration) -> usize {
    let until = Instant::now() + within;
    while n.load(Ordering::SeqCst) < want && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    n.load(Ordering::SeqCst)
}

/// Wait (bounded) until `n` stops moving; its value then.
fn quiet(n: &AtomicUsize) -> usize {
    let until = Instant::now() + Duration::from_secs(5);
    let mut last = n.load(Ordering::SeqCst);
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = n.load(Ordering::SeqCst);
        if now == last || Instant::now() > until {
            return now;
        }
        last = now;
    }
}

#[test]
fn weighted_clusters_split_requests_by_weight() {
    let (a, na) = RawOrigin::counting("a", Duration::ZERO);
    let (b, nb) = RawOrigin::counting("b", Duration::ZERO);
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .route(
            "prefix: /",
            "route:\n  weighted_clusters:\n    clusters:\n    - {name: a, weight: 80}\n    - {name: b, weight: 20}\n    - {name: c, weight: 0}\n",
        )
        .cluster("a", &[a.addr])
        .cluster("b", &[b.addr])
        .cluster("c", &[closed_port()])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    let mut seen_b = 0;
    for i in 0..1000 {
        let r = c.get("h.test", &format!("/{i}"));
        assert_eq!(r.status(), 200, "request {i}: {r:?}");
        if r.body_str() == "b" {
            seen_b += 1;
        }
    }
    let (a_n, b_n) = (na.load(Ordering::SeqCst), nb.load(Ordering::SeqCst));
    assert_eq!(a_n + b_n, 1000, "a weight of 0 is never chosen");
    assert_eq!(b_n, seen_b);
    // 20% of 1000: 200, binomial σ ≈ 12.6; ±60 is past 4.5σ.
    assert!(
        (140..=260).contains(&b_n),
        "b got {b_n} of 1000 at weight 20/100"
    );
    assert_eq!(stat(&p, "cluster.b.upstream_rq_total"), b_n as u64);
    assert_eq!(stat(&p, "cluster.c.upstream_rq_total"), 0);
}

#[test]
fn weighted_cluster_retries_stay_on_the_chosen_cluster() {
    let bad = SwitchOrigin::start("bad");
    bad.set(Mode::Fail);
    let (good, ngood) = RawOrigin::counting("good", Duration::ZERO);
    let yaml = ConfigBuilder::new()
        .admin()
        .route(
            "prefix: /",
            "route:\n  weighted_clusters:\n    clusters:\n    - {name: flaky, weight: 50}\n    - {name: fine, weight: 50}\n  retry_policy: {retry_on: 5xx, num_retries: 2}\n",
        )
        .cluster("flaky", &[bad.addr])
        .cluster("fine", &[good.addr])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    let mut failed = 0;
    for _ in 0..40 {
        let r = c.get("h.test", "/");
        match r.status() {
            200 => assert_eq!(r.body_str(), "good"),
            503 => {
                assert_eq!(r.body_str(), "bad");
                failed += 1;
            }
            s => panic!("unexpected status {s}: {r:?}"),
        }
    }
    // A request drawn for `flaky` is tried there three times and never moves to `fine`.
    assert!(failed > 0 && failed < 40, "{failed} of 40 drew flaky");
    assert_eq!(bad.served.load(Ordering::SeqCst), failed * 3);
    assert_eq!(ngood.load(Ordering::SeqCst), 40 - failed);
}

/// (host, body) of each request a [`recording`] origin read.
type Seen = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An origin that records each request's host and body and answers `status` after `delay`.
fn recording(status: u16, delay: Duration) -> (RawOrigin, Arc<AtomicUsize>, Seen) {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (n2, seen2) = (Arc::clone(&n), Arc::clone(&seen));
    let o = RawOrigin::start(move |mut c| {
        while let Some(m) = c.read_request() {
            let host = m.header("host").unwrap_or_default().to_string();
            seen2.lock().expect("lock").push((host, m.body.clone()));
            n2.fetch_add(1, Ordering::SeqCst);
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 6\r\n\r\nshadow");
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    });
    (o, n, seen)
}

#[test]
fn mirror_gets_a_shadow_copy_with_the_body() {
    let (main, nmain) = RawOrigin::counting("main", Duration::ZERO);
    let (shadow, nshadow, seen) = recording(500, Duration::ZERO);
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .route(
            "prefix: /",
            "route:\n  cluster: main\n  request_mirror_policies:\n  - cluster: shadow\n",
        )
        .cluster("main", &[main.addr])
        .cluster("shadow", &[shadow.addr])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    for i in 0..20 {
        // Copies are fire and forget: the client's answer can come before the previous copy's.
        // Send the next request once that copy's answer was read (counted just before its
        // connection goes back to the pool), so the copies are sequential and can reuse it.
        let until = Instant::now() + Duration::from_secs(5);
        while stat(&p, "cluster.shadow.upstream_rq_5xx") < i && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
        let body = format!("body-{i}");
        let req = format!(
            "POST /m/{i} HTTP/1.1\r\nHost: api.test:8080\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = c.roundtrip(req.as_bytes());
        // The client sees the main cluster's answer, never the shadow's 500.
        assert_eq!((r.status(), r.body_str()), (200, "main".to_string()));
    }
    assert_eq!(c.get("api.test", "/get").status(), 200);
    assert_eq!(nmain.load(Ordering::SeqCst), 21);
    assert_eq!(settle(&nshadow, 21, Duration::from_secs(5)), 21);
    let seen = seen.lock().expect("lock").clone();
    for i in 0..20 {
        let want = (
            "api.test-shadow:8080".to_string(),
            format!("body-{i}").into_bytes(),
        );
        assert!(seen.contains(&want), "copy {i} missing: {seen:?}");
    }
    assert!(seen.contains(&("api.test-shadow".to_string(), Vec::new())));
    // Counted on the mirror cluster; its keep-alive connections are reused.
    let until = Instant::now() + Duration::from_secs(3);
    while stat(&p, "cluster.shadow.upstream_rq_5xx") < 21 && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stat(&p, "cluster.shadow.upstream_rq_5xx"), 21);
    assert!(
        shadow.connection_count() <= 4,
        "{} connections for 21 sequential copies",
        shadow.connection_count()
    );
}

#[test]
fn a_slow_or_dead_mirror_does_not_hold_the_client() {
    let (main, _) = RawOrigin::counting("main", Duration::ZERO);
    // One mirror answers after 2 s, the other is a closed port.
    let (slow, nslow, _) = recording(200, Duration::from_secs(2));
    let yaml = ConfigBuilder::new()
        .route(
            "prefix: /",
            "route:\n  cluster: main\n  timeout: 10s\n  request_mirror_policies:\n  - cluster: slow\n  - cluster: dead\n",
        )
        .cluster("main", &[main.addr])
        .cluster("slow", &[slow.addr])
        .cluster("dead", &[closed_port()])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    let t0 = Instant::now();
    for _ in 0..10 {
        assert_eq!(c.get("h.test", "/").status(), 200);
    }
    // Ten requests behind a 2-second mirror would take 20 s if they waited for it.
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the client waited for the mirror: {:?}",
        t0.elapsed()
    );
    assert_eq!(settle(&nslow, 10, Duration::from_secs(5)), 10);
}

#[test]
fn mirror_fraction_takes_its_share() {
    let (main, _) = RawOrigin::counting("main", Duration::ZERO);
    let (shadow, nshadow, _) = recording(200, Duration::ZERO);
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .route(
            "prefix: /",
            "route:\n  cluster: main\n  request_mirror_policies:\n  - cluster: shadow\n    runtime_fraction: {default_value: {numerator: 25, denominator: HUNDRED}}\n",
        )
        .cluster("main", &[main.addr])
        .cluster("shadow", &[shadow.addr])
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let mut c = Client::connect(p.addr);
    for _ in 0..800 {
        assert_eq!(c.get("h.test", "/").status(), 200);
    }
    let n = quiet(&nshadow);
    // 25% of 800: 200, σ ≈ 12.2.
    assert!((140..=260).contains(&n), "{n} of 800 mirrored at 25%");
}
