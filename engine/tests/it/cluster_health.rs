//! Endpoint health (issue 20, points 1 and 2), on 2 workers against origins that fail on
//! command: active HTTP, TCP and gRPC health checks take a failing endpoint out of rotation and
//! bring it back after `healthy_threshold`; an unexpected status fails at once while network
//! failures count towards `unhealthy_threshold`; the panic threshold sends traffic to every
//! endpoint when too few are healthy; outlier detection ejects an endpoint after consecutive
//! 5xx answers or connect failures and returns it after its ejection time; `/clusters` and the
//! stats say what happened.

use crate::support;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::SocketAddr,
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use support::*;

/// A proxy on 2 workers with an admin port: `/` to cluster `pool` with these endpoints and
/// cluster keys.
fn proxy(endpoints: &[SocketAddr], cluster_keys: &str) -> (Proxy, SocketAddr) {
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .route_prefix("/", "pool")
        .cluster("pool", endpoints)
        .cluster_extra(cluster_keys)
        .yaml();
    let p = Proxy::start_configured(&yaml);
    let admin = p.admin_addr.expect("admin address");
    (p, admin)
}

/// `/clusters?format=json`: each endpoint of `pool` with its health flags and last check.
fn health(admin: SocketAddr) -> HashMap<SocketAddr, (String, String)> {
    let r = support::admin(admin, "GET", "/clusters?format=json");
    let doc: serde_json::Value = serde_json::from_str(&r.body_str()).expect("json");
    let mut out = HashMap::new();
    for c in doc["clusters"].as_array().expect("clusters") {
        if c["name"] != "pool" {
            continue;
        }
        for e in c["endpoints"].as_array().expect("endpoints") {
            let addr: SocketAddr = e["address"].as_str().unwrap().parse().unwrap();
            let last = e["last_check"]["result"].as_str().unwrap_or("").to_string();
            out.insert(addr, (e["health"].as_str().unwrap().to_string(), last));
        }
    }
    out
}

fn flags(admin: SocketAddr, addr: SocketAddr) -> String {
    health(admin)
        .get(&addr)
        .map(|h| h.0.clone())
        .unwrap_or_default()
}

fn stat(admin: SocketAddr, name: &str) -> u64 {
    admin_stats(admin).get(name).copied().unwrap_or(0)
}

/// `n` requests over `conns` connections (spread over both workers): the statuses and the
/// bodies (origin names) in order.
fn requests(p: &Proxy, n: usize, conns: usize) -> Vec<(u16, String)> {
    let mut clients: Vec<Client> = (0..conns).map(|_| Client::connect(p.addr)).collect();
    (0..n)
        .map(|i| {
            let c = &mut clients[i % conns];
            let r = c.get("h.test", "/");
            (r.status(), r.body_str())
        })
        .collect()
}

const HTTP_CHECK: &str = "health_checks:\n  - timeout: 1s\n    interval: 200ms\n    unhealthy_threshold: 3\n    healthy_threshold: 2\n    http_health_check: {path: /healthz}\n";

#[test]
fn http_checks_take_a_failing_endpoint_out_within_an_interval_and_bring_it_back() {
    let o: Vec<SwitchOrigin> = ["a", "b", "c"].map(SwitchOrigin::start).into();
    let addrs: Vec<SocketAddr> = o.iter().map(|o| o.addr).collect();
    let (p, admin) = proxy(&addrs, HTTP_CHECK);
    // The first round ran before the proxy served: every endpoint is healthy from the start.
    let h = health(admin);
    for a in &addrs {
        assert_eq!(h[a], ("healthy".to_string(), "passed".to_string()), "{h:?}");
    }
    assert!(requests(&p, 30, 3).iter().all(|r| r.0 == 200));
    // The check's request: the path, the cluster's name as Host.
    let seen = String::from_utf8_lossy(&o[0].origin.received_bytes()).to_string();
    assert!(
        seen.contains("GET /healthz HTTP/1.1\r\nhost: pool\r\nuser-agent: ringway/HC\r\n"),
        "{seen}"
    );

    // An unexpected status fails the endpoint at once (threshold or not).
    o[1].set_health(503);
    let t = Instant::now();
    eventually("b fails its health check", || {
        flags(admin, o[1].addr) == "/failed_active_hc"
    });
    // Within about one interval (200 ms) of failing, generously bounded for a loaded machine.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(health(admin)[&o[1].addr].1, "unexpected status");
    let before = o[1].served.load(Ordering::SeqCst);
    let rs = requests(&p, 60, 4);
    assert!(rs.iter().all(|r| r.0 == 200 && r.1 != "b"), "{rs:?}");
    assert_eq!(o[1].served.load(Ordering::SeqCst), before);
    assert_eq!(stat(admin, "cluster.pool.membership_healthy"), 2);
    assert_eq!(stat(admin, "cluster.pool.health_check.healthy"), 2);
    assert!(stat(admin, "cluster.pool.health_check.failure") >= 1);

    // Back after `healthy_threshold` (2) passes in a row.
    let checks = o[1].checks.load(Ordering::SeqCst);
    o[1].set_health(200);
    eventually("b healthy again", || flags(admin, o[1].addr) == "healthy");
    assert!(
        o[1].checks.load(Ordering::SeqCst) >= checks + 2,
        "two passing checks first"
    );
    let rs = requests(&p, 30, 3);
    assert!(rs.iter().any(|r| r.1 == "b"), "{rs:?}");
    assert_eq!(stat(admin, "cluster.pool.membership_healthy"), 3);
    assert!(
        stat(admin, "cluster.pool.health_check.attempt")
            >= stat(admin, "cluster.pool.health_check.success")
                + stat(admin, "cluster.pool.health_check.failure")
    );
}

#[test]
fn network_failures_count_towards_the_unhealthy_threshold() {
    // `health` 0: the origin closes the check's connection without answering.
    let o: Vec<SwitchOrigin> = ["a", "b"].map(SwitchOrigin::start).into();
    let addrs: Vec<SocketAddr> = o.iter().map(|o| o.addr).collect();
    let (p, admin) = proxy(&addrs, HTTP_CHECK);
    assert!(requests(&p, 4, 1).iter().all(|r| r.0 == 200));
    let checks = o[1].checks.load(Ordering::SeqCst);
    o[1].set_health(0);
    eventually("b fails three checks", || {
        flags(admin, o[1].addr) == "/failed_active_hc"
    });
    let failed_after = o[1].checks.load(Ordering::SeqCst) - checks;
    assert!(
        failed_after >= 3,
        "unhealthy after {failed_after} failed checks: the threshold is 3"
    );
    assert!(stat(admin, "cluster.pool.health_check.network_failure") >= 3);
    assert_eq!(
        health(admin)[&o[1].addr].1,
        "closed, reset or not a valid answer"
    );
}

/// A TCP origin: answers `PONG` to each `PING` it reads.
fn ping_pong() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(b) = c.read_exact_raw(4) {
            if b == b"PING" && !c.write(b"..PONG") {
                return;
            }
        }
    })
}

#[test]
fn tcp_checks_connect_send_and_expect_bytes() {
    let good = ping_pong();
    let silent = RawOrigin::start(|mut c| while c.read_exact_raw(1).is_some() {});
    let dead = closed_port();
    let (_p, admin) = proxy(
        &[good.addr, silent.addr, dead],
        "health_checks:\n  - timeout: 500ms\n    interval: 200ms\n    no_traffic_interval: 200ms\n    tcp_health_check: {send: {text: \"50494e47\"}, receive: [{text: \"504f4e47\"}]}\n",
    );
    let h = health(admin);
    assert_eq!(h[&good.addr], ("healthy".into(), "passed".into()), "{h:?}");
    assert_eq!(
        h[&silent.addr],
        ("/failed_active_hc".into(), "timed out".into()),
        "{h:?}"
    );
    assert_eq!(
        h[&dead],
        ("/failed_active_hc".into(), "connect failed".into()),
        "{h:?}"
    );
    // The connection is kept between checks (`reuse_connection` defaults to true).
    thread::sleep(Duration::from_millis(700));
    assert_eq!(good.connection_count(), 1);
    assert!(String::from_utf8_lossy(&good.received_bytes()).starts_with("PINGPING"));
}

#[test]
fn below_the_panic_threshold_every_endpoint_takes_traffic() {
    let o: Vec<SwitchOrigin> = ["a", "b", "c", "d"].map(SwitchOrigin::start).into();
    let addrs: Vec<SocketAddr> = o.iter().map(|o| o.addr).collect();
    let (p, admin) = proxy(&addrs, HTTP_CHECK);
    // Traffic first: until a cluster has some, it is checked every `no_traffic_interval`.
    assert!(requests(&p, 4, 1).iter().all(|r| r.0 == 200));
    // Two of four fail: 50% healthy is not below the default threshold (50).
    o[2].set_health(503);
    o[3].set_health(503);
    eventually("c and d fail", || {
        flags(admin, o[2].addr) != "healthy" && flags(admin, o[3].addr) != "healthy"
    });
    let rs = requests(&p, 40, 4);
    assert!(rs.iter().all(|r| r.1 == "a" || r.1 == "b"), "{rs:?}");
    assert_eq!(stat(admin, "cluster.pool.lb_healthy_panic"), 0);
    // A third fails: 25% healthy, panic: all four take traffic again.
    o[1].set_health(503);
    eventually("b fails", || flags(admin, o[1].addr) != "healthy");
    let rs = requests(&p, 80, 4);
    for name in ["a", "b", "c", "d"] {
        assert!(rs.iter().any(|r| r.1 == name), "{name} in {rs:?}");
    }
    assert!(stat(admin, "cluster.pool.lb_healthy_panic") >= 80);
}

#[test]
fn consecutive_5xx_eject_an_endpoint_until_its_ejection_time_is_over() {
    let o: Vec<SwitchOrigin> = ["a", "b", "c"].map(SwitchOrigin::start).into();
    let addrs: Vec<SocketAddr> = o.iter().map(|o| o.addr).collect();
    let (p, admin) = proxy(
        &addrs,
        "outlier_detection: {consecutive_5xx: 3, interval: 100ms, base_ejection_time: 1s, max_ejection_percent: 50}\n",
    );
    o[2].set(Mode::Fail);
    let rs = requests(&p, 60, 3);
    let failed = rs.iter().filter(|r| r.0 == 503).count();
    // Three in a row eject it, at once: the worker that saw the third ejects it before its
    // 503 is written, so no later request (from either worker) reaches it.
    assert_eq!(failed, 3, "{rs:?}");
    let last = rs.iter().rposition(|r| r.0 == 503).expect("a 503");
    assert!(
        rs[last + 1..].iter().all(|r| r.0 == 200 && r.1 != "c"),
        "{rs:?}"
    );
    assert_eq!(flags(admin, o[2].addr), "/failed_outlier_check");
    assert_eq!(
        stat(
            admin,
            "cluster.pool.outlier_detection.ejections_enforced_consecutive_5xx"
        ),
        1
    );
    assert_eq!(
        stat(admin, "cluster.pool.outlier_detection.ejections_active"),
        1
    );
    // Healthy again, and back after its ejection time (1 s), checked every interval.
    o[2].set(Mode::Ok);
    let t = Instant::now();
    eventually("c back in rotation", || {
        flags(admin, o[2].addr) == "healthy"
    });
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let rs = requests(&p, 30, 3);
    assert!(rs.iter().any(|r| r.1 == "c"), "{rs:?}");
    assert_eq!(
        stat(admin, "cluster.pool.outlier_detection.ejections_active"),
        0
    );
}

#[test]
fn hung_and_resetting_hosts_are_ejected_and_their_requests_retried_elsewhere() {
    for mode in [Mode::Hang, Mode::Reset] {
        let o: Vec<SwitchOrigin> = ["a", "b", "c"].map(SwitchOrigin::start).into();
        let addrs: Vec<SocketAddr> = o.iter().map(|o| o.addr).collect();
        let yaml = ConfigBuilder::new()
            .top("workers: 2")
            .admin()
            .route(
                "prefix: /",
                "route:\n  cluster: pool\n  timeout: 5s\n  retry_policy: {retry_on: \"5xx,reset\", num_retries: 2, per_try_timeout: 200ms, retry_host_predicate: [{name: previous_hosts}]}\n",
            )
            .cluster("pool", &addrs)
            .cluster_extra(
                "outlier_detection: {consecutive_5xx: 3, base_ejection_time: 30s, max_ejection_percent: 50}\n",
            )
            .yaml();
        let p = Proxy::start_configured(&yaml);
        let admin = p.admin_addr.expect("admin address");
        o[2].set(mode);
        let t = Instant::now();
        let rs = requests(&p, 30, 3);
        // Every request is answered by a live host: the hung (timed-out) or reset try is
        // retried on another.
        assert!(
            rs.iter().all(|r| r.0 == 200 && r.1 != "c"),
            "{mode:?}: {rs:?}"
        );
        assert_eq!(flags(admin, o[2].addr), "/failed_outlier_check", "{mode:?}");
        assert_eq!(
            stat(admin, "cluster.pool.upstream_rq_retry"),
            3,
            "{mode:?}: three failed tries eject the host, and no request meets it after"
        );
        if mode == Mode::Hang {
            assert_eq!(stat(admin, "cluster.pool.upstream_rq_per_try_timeout"), 3);
            assert!(
                t.elapsed() >= Duration::from_millis(600),
                "{:?}",
                t.elapsed()
            );
        }
    }
}

#[test]
fn connect_failures_eject_a_dead_endpoint() {
    let a = SwitchOrigin::start("a");
    let dead = closed_port();
    let (p, admin) = proxy(
        &[a.addr, dead],
        "outlier_detection: {consecutive_5xx: 2, base_ejection_time: 30s}\n",
    );
    let rs = requests(&p, 40, 2);
    let failed = rs.iter().filter(|r| r.0 != 200).count();
    assert!((2..=4).contains(&failed), "{failed} failures: {rs:?}");
    assert!(rs[20..].iter().all(|r| r.0 == 200), "{rs:?}");
    assert_eq!(flags(admin, dead), "/failed_outlier_check");
}

/// A gRPC server whose `grpc.health.v1.Health/Check` answers SERVING while the file named on
/// its command line says `1`, NOT_SERVING otherwise (the response message hand-encoded: field
/// 1, the status enum). Prints its port.
const GRPC_HEALTH_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc
state = sys.argv[1]
def check(req, ctx):
    with open(state) as f:
        serving = f.read().strip() == "1"
    return b"\x08\x01" if serving else b"\x08\x02"
h = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(check),
})
s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
s.add_generic_rpc_handlers((h,))
port = s.add_insecure_port("127.0.0.1:0")
s.start()
print(port, flush=True)
s.wait_for_termination()
"#;

#[test]
fn grpc_checks_follow_the_standard_health_service() {
    let state = scratch_dir().join("grpc-health-state");
    std::fs::write(&state, "1").unwrap();
    let server = PyServer::start(GRPC_HEALTH_SERVER, &[state.to_str().unwrap()], "grpcio");
    let addr = server.addr;
    let (_p, admin) = proxy(
        &[addr],
        "protocol: http2\nhealth_checks:\n  - timeout: 2s\n    interval: 200ms\n    no_traffic_interval: 200ms\n    grpc_health_check: {}\n",
    );
    assert_eq!(health(admin)[&addr], ("healthy".into(), "passed".into()));
    std::fs::write(&state, "0").unwrap();
    eventually("NOT_SERVING fails the endpoint", || {
        flags(admin, addr) == "/failed_active_hc"
    });
    std::fs::write(&state, "1").unwrap();
    eventually("SERVING again", || flags(admin, addr) == "healthy");
    drop(server);
}

/// The raw bytes of one admin text page, to check the `/clusters` text form.
fn admin_text(admin: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn clusters_text_shows_health_flags_and_the_last_check() {
    let a = SwitchOrigin::start("a");
    let dead = closed_port();
    let (_p, admin) = proxy(&[a.addr, dead], HTTP_CHECK);
    let text = admin_text(admin, "/clusters");
    assert!(
        text.contains(&format!("pool::{}::health_flags::healthy\n", a.addr)),
        "{text}"
    );
    assert!(
        text.contains(&format!("pool::{dead}::health_flags::/failed_active_hc\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "pool::{dead}::last_health_check::connect failed\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "pool::{}::last_health_check_status::200\n",
            a.addr
        )),
        "{text}"
    );
}
