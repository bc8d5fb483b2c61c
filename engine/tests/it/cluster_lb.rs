//! Clusters, load balancing (issue 10, point 6): endpoints written as `"IP:port"` and as
//! `{address, weight}`, and each `lb_policy` counted over real origins.
use crate::support;
use std::{
    sync::{atomic::Ordering, Arc},
    thread,
    time::{Duration, Instant},
};

use support::*;

fn lb_config(policy: &str, endpoints: &str) -> String {
    ConfigBuilder::new()
        .route_prefix("/", "pool")
        .cluster_raw(
            "pool",
            &format!("lb_policy: {policy}\nconnect_timeout: 1s\nendpoints: {endpoints}"),
        )
        .yaml()
}

/// `n` sequential requests on one keep-alive connection: which origin (index in `names`, by
/// the body it answers) served each.
fn sequence(proxy: &Proxy, names: &[&str], n: usize) -> Vec<usize> {
    let mut c = Client::connect(proxy.addr);
    (0..n)
        .map(|_| {
            let r = c.get("lb.test", "/");
            assert_eq!(r.status(), 200, "{r:?}");
            let body = r.body_str();
            names
                .iter()
                .position(|n| *n == body)
                .unwrap_or_else(|| panic!("unknown body {body:?}"))
        })
        .collect()
}

/// How many of `n` sequential requests each origin served.
fn tally(proxy: &Proxy, names: &[&str], n: usize) -> Vec<usize> {
    counts(&sequence(proxy, names, n), names.len())
}

fn counts(seq: &[usize], k: usize) -> Vec<usize> {
    let mut c = vec![0; k];
    for &i in seq {
        c[i] += 1;
    }
    c
}

fn origins(names: &[&'static str]) -> Vec<(RawOrigin, Arc<std::sync::atomic::AtomicUsize>)> {
    names
        .iter()
        .map(|n| RawOrigin::counting(n, Duration::ZERO))
        .collect()
}

#[test]
fn cluster_round_robin_splits_evenly_and_exactly() {
    let names = ["a", "b", "c"];
    let o = origins(&names);
    // Plain strings.
    let eps = format!(
        r#"["{}", "{}", "{}"]"#,
        o[0].0.addr, o[1].0.addr, o[2].0.addr
    );
    let proxy = Proxy::start(&lb_config("round_robin", &eps));
    assert_eq!(tally(&proxy, &names, 30), vec![10, 10, 10]);
    // The origins agree: every request reached exactly one of them.
    let seen: Vec<usize> = o.iter().map(|(_, n)| n.load(Ordering::SeqCst)).collect();
    assert_eq!(seen, vec![10, 10, 10]);
}

#[test]
fn cluster_round_robin_weighted_is_exact_per_cycle() {
    let names = ["w1", "w2", "w3"];
    let o = origins(&names);
    // Both endpoint forms in one list.
    let eps = format!(
        r#"["{}", {{ address: "{}", weight: 2 }}, {{ address: "{}", weight: 3 }}]"#,
        o[0].0.addr, o[1].0.addr, o[2].0.addr
    );
    let proxy = Proxy::start(&lb_config("round_robin", &eps));
    assert_eq!(tally(&proxy, &names, 60), vec![10, 20, 30]);
}

#[test]
fn cluster_random_reaches_every_endpoint_by_weight() {
    let names = ["r1", "r2", "r3"];
    let o = origins(&names);
    let eps = format!(
        r#"[{{ address: "{}", weight: 1 }}, {{ address: "{}", weight: 1 }}, {{ address: "{}", weight: 4 }}]"#,
        o[0].0.addr, o[1].0.addr, o[2].0.addr
    );
    let proxy = Proxy::start(&lb_config("random", &eps));
    let seq = sequence(&proxy, &names, 600);
    let c = counts(&seq, 3);
    // Expected 100 / 100 / 400; binomial sd about 9, 9 and 12: bounds are over 5 sd away.
    assert!(
        (50..=150).contains(&c[0]) && (50..=150).contains(&c[1]),
        "{c:?}"
    );
    assert!((330..=470).contains(&c[2]), "{c:?}");
    // Random, not a weighted cycle: a cycle of 6 would put exactly 1 / 1 / 4 in every aligned
    // window of 6 requests.
    let cyclic = seq.chunks(6).all(|w| counts(w, 3) == vec![1, 1, 4]);
    assert!(!cyclic, "random picks look like round robin");
}

#[test]
fn cluster_least_request_avoids_the_endpoint_with_a_slow_request() {
    // `slow` holds every request for 8 s; `fast` answers at once.
    let (slow, slow_n) = RawOrigin::counting("slow", Duration::from_secs(8));
    let (fast, fast_n) = RawOrigin::counting("fast", Duration::ZERO);
    let eps = format!(r#"["{}", "{}"]"#, slow.addr, fast.addr);
    let proxy = Proxy::start(&lb_config("least_request", &eps));

    // 20 requests, each on its own connection, none waited for by the client; the fast ones are
    // answered right away. Once the slow endpoint has one request in flight, least_request
    // (two choices, both endpoints compared) must send everything else to the fast one.
    let mut pending = Vec::new();
    let t0 = Instant::now();
    for _ in 0..20 {
        let mut c = Client::connect(proxy.addr);
        c.send(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        pending.push(c);
        // Let the proxy route it (and the fast origin answer) before the next one.
        eventually("request reached an origin", || {
            slow_n.load(Ordering::SeqCst) + fast_n.load(Ordering::SeqCst) == pending.len()
        });
    }
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "too slow to be meaningful: {:?}",
        t0.elapsed()
    );
    let (s, f) = (slow_n.load(Ordering::SeqCst), fast_n.load(Ordering::SeqCst));
    assert_eq!((s, f), (1, 19), "slow endpoint got {s}, fast {f}");

    // The same through round_robin would be 10 / 10: the policy is what made the difference.
    let (slow2, slow2_n) = RawOrigin::counting("slow", Duration::from_secs(8));
    let (fast2, fast2_n) = RawOrigin::counting("fast", Duration::ZERO);
    let eps = format!(r#"["{}", "{}"]"#, slow2.addr, fast2.addr);
    let rr = Proxy::start(&lb_config("round_robin", &eps));
    let mut pending2 = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(rr.addr);
        c.send(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        pending2.push(c);
        eventually("request reached an origin", || {
            slow2_n.load(Ordering::SeqCst) + fast2_n.load(Ordering::SeqCst) == pending2.len()
        });
    }
    assert_eq!(
        (
            slow2_n.load(Ordering::SeqCst),
            fast2_n.load(Ordering::SeqCst)
        ),
        (10, 10)
    );
    drop(pending);
    drop(pending2);
    // Let the held origin threads notice nothing more is coming; the proxies are killed on drop.
    thread::yield_now();
}
