//! Config reload (SIGHUP, `POST /config/reload`): a new generation of workers starts on the
//! same listening sockets with the new config and the old one drains politely. Under load from
//! clients that open a connection per request and clients that keep theirs, 50 reloads change
//! routes, clusters, filters and listeners (one added, one removed, in turn) without a failed
//! request; bad configs are refused with the old one still serving.

use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use support::*;

/// Version `v` of the config: `/v` answers `v<v>`, `/` goes to origin `a` (even) or `b` (odd)
/// with an `x-version` response header from `header_mutation`; a second listener `extra`
/// exists in even versions only.
fn config(v: usize, a: SocketAddr, b: SocketAddr) -> String {
    let origin = if v.is_multiple_of(2) { a } else { b };
    let mut builder = ConfigBuilder::new()
        .top("workers: 2\ndrain_timeout: 3s")
        .admin()
        .http_filter(
            "header_mutation",
            &format!(
                "mutations:\n  response_mutations:\n    - append: {{ header: {{ key: x-version, value: \"{v}\" }} }}"
            ),
        )
        .route(
            "prefix: /v",
            &format!("direct_response: {{ status: 200, body: v{v} }}"),
        )
        .route_prefix("/", &format!("pool{}", v % 2));
    if v.is_multiple_of(2) {
        builder = builder
            .listener("extra", "127.0.0.1:0")
            .route("prefix: /", "direct_response: { status: 200, body: extra }");
    }
    builder.cluster(&format!("pool{}", v % 2), &[origin]).yaml()
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

/// A new connection per request, one request at a time, until `stop`.
fn closing_client(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    while !stop.load(Ordering::SeqCst) {
        let started = std::time::Instant::now();
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                t.failed.lock().unwrap().push(format!("connect: {e}"));
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) if got.starts_with(b"HTTP/1.1 200") => {
                t.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => t
                .failed
                .lock()
                .unwrap()
                .push(format!("answer: {:?}", String::from_utf8_lossy(&got))),
            Err(e) => t
                .failed
                .lock()
                .unwrap()
                .push(format!("read after {:?}: {e}", started.elapsed())),
        }
    }
}

fn keepalive_client(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    let mut c: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let client = c.get_or_insert_with(|| Client::connect(addr));
        if client
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .is_err()
        {
            t.failed.lock().unwrap().push("write".into());
            c = None;
            continue;
        }
        match client.try_response(false) {
            Some(r) if r.status() == 200 && r.header("x-version").is_some() => {
                t.ok.fetch_add(1, Ordering::SeqCst);
                if r.header("connection") == Some("close") {
                    c = None;
                }
            }
            Some(r) => {
                t.failed.lock().unwrap().push(format!("{r:?}"));
                c = None;
            }
            None => {
                t.failed
                    .lock()
                    .unwrap()
                    .push("kept-alive connection closed without an answer".into());
                c = None;
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn stat(admin_addr: SocketAddr, name: &str) -> u64 {
    admin_stats(admin_addr).get(name).copied().unwrap_or(0)
}

fn reload_by_post(admin_addr: SocketAddr) -> (u16, String) {
    let r = admin(admin_addr, "POST", "/config/reload");
    (r.status(), r.body_str())
}

#[test]
fn fifty_reloads_under_load_change_everything_and_no_request_fails() {
    let a = SwitchOrigin::start("a");
    let b = SwitchOrigin::start("b");
    let (proxy, admin_addr) = Proxy::start_with_admin(&config(0, a.addr, b.addr), &[]);
    let addr = proxy.addr;
    assert_eq!(get(addr, "h", "/v").body_str(), "v0");
    let extra0 = proxy.listeners["extra"];
    assert_eq!(get(extra0, "h", "/").body_str(), "extra");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (s, t) = (Arc::clone(&stop), Arc::clone(&tally));
            thread::spawn(move || {
                if i % 2 == 0 {
                    closing_client(addr, s, t)
                } else {
                    keepalive_client(addr, s, t)
                }
            })
        })
        .collect();
    eventually("load running", || tally.ok.load(Ordering::SeqCst) > 50);

    let mut served_by = std::collections::BTreeSet::new();
    for v in 1..=50 {
        std::fs::write(&proxy.config_path, config(v, a.addr, b.addr)).expect("write config");
        if v.is_multiple_of(2) {
            proxy.signal(libc::SIGHUP);
            // Logged once the old workers hand over.
            let line = format!("config reload: version {} ", v + 1);
            eventually("the reload logged", || proxy.log().contains(&line));
        } else {
            let (status, body) = reload_by_post(admin_addr);
            assert_eq!(status, 200, "reload {v}: {body}");
            assert!(body.contains(&format!("version {}", v + 1)), "{body}");
        }
        let want = format!("v{v}");
        eventually(&format!("version {v} in force"), || {
            get(addr, "h", "/v").body_str() == want
        });
        let r = get(addr, "h", "/");
        assert_eq!(r.header("x-version"), Some(v.to_string().as_str()));
        served_by.insert(r.body_str());
        // The extra listener: there in even versions (bound anew), gone in odd ones.
        if v % 2 == 1 {
            eventually("the removed listener refuses", || {
                TcpStream::connect_timeout(&extra0, Duration::from_millis(200)).is_err()
            });
        }
    }
    let before = tally.ok.load(Ordering::SeqCst);
    eventually("load still running", || {
        tally.ok.load(Ordering::SeqCst) > before + 50
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let failed = tally.failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across 50 reloads: {failed:?}\n{}",
        failed.len(),
        tally.ok.load(Ordering::SeqCst) + failed.len(),
        proxy.log()
    );
    assert_eq!(
        served_by,
        ["a".to_string(), "b".to_string()].into_iter().collect()
    );
    assert_eq!(stat(admin_addr, "config.reload_success"), 50);
    assert_eq!(stat(admin_addr, "config.version"), 51);
    // Counters carried across generations: at least every request counted so far.
    assert!(
        stat(admin_addr, "http.main.downstream_rq_total") as usize
            >= tally.ok.load(Ordering::SeqCst),
        "{:?}",
        admin_stats(admin_addr)
    );
    let dump = admin(admin_addr, "GET", "/config_dump").body_str();
    assert!(dump.contains("\"version\": 51"), "{dump}");
}

#[test]
fn bad_configs_are_refused_and_the_running_one_stays() {
    let a = SwitchOrigin::start("a");
    let b = SwitchOrigin::start("b");
    let (proxy, admin_addr) = Proxy::start_with_admin(&config(1, a.addr, b.addr), &[]);
    let addr = proxy.addr;
    assert_eq!(get(addr, "h", "/v").body_str(), "v1");
    let good = config(1, a.addr, b.addr);
    // Not YAML; an unknown cluster; a new listener on a port that is taken.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let bad = [
        ("listeners: [".to_string(), "line"),
        (
            good.replace("cluster: pool1", "cluster: nowhere"),
            "nowhere",
        ),
        (
            config(0, a.addr, b.addr).replacen(
                "address: 127.0.0.1:0",
                &format!("address: {busy_addr}"),
                2,
            ),
            "in use",
        ),
    ];
    for (i, (text, says)) in bad.iter().enumerate() {
        std::fs::write(&proxy.config_path, text).expect("write");
        let (status, body) = reload_by_post(admin_addr);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(says), "{says}: {body}");
        assert_eq!(get(addr, "h", "/v").body_str(), "v1");
        assert_eq!(stat(admin_addr, "config.reload_failed"), i as u64 + 1);
    }
    // SIGHUP with a bad file: logged, refused, still serving.
    proxy.signal(libc::SIGHUP);
    eventually("refusal logged", || {
        proxy
            .log()
            .contains("config reload refused; the running config stays")
    });
    assert_eq!(get(addr, "h", "/v").body_str(), "v1");
    assert_eq!(stat(admin_addr, "config.version"), 1);
    // And a good one goes through.
    std::fs::write(&proxy.config_path, config(3, a.addr, b.addr)).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(addr, "h", "/v").body_str(), "v3");
    drop(busy);
}

#[test]
fn watch_reloads_on_an_edit_in_place_and_on_a_rename_once_per_burst() {
    let a = SwitchOrigin::start("a");
    let b = SwitchOrigin::start("b");
    let cfg = |v: usize| format!("watch: true\n{}", config(v, a.addr, b.addr));
    let (proxy, admin_addr) = Proxy::start_with_admin(&cfg(1), &[]);
    let addr = proxy.addr;
    eventually("watching", || {
        proxy.log().contains("watching the config file")
    });
    // An edit in place, written in three pieces: one reload.
    {
        let text = cfg(2);
        let mut f = std::fs::File::create(&proxy.config_path).expect("open");
        let (x, rest) = text.split_at(text.len() / 3);
        let (y, z) = rest.split_at(rest.len() / 2);
        for piece in [x, y, z] {
            f.write_all(piece.as_bytes()).expect("write");
            f.flush().expect("flush");
            thread::sleep(Duration::from_millis(30));
        }
    }
    eventually("v2 in force", || get(addr, "h", "/v").body_str() == "v2");
    thread::sleep(Duration::from_millis(600));
    assert_eq!(stat(admin_addr, "config.reload_success"), 1);
    // A rename over the file (a new inode).
    let tmp = proxy.config_path.with_extension("new");
    std::fs::write(&tmp, cfg(3)).expect("write");
    std::fs::rename(&tmp, &proxy.config_path).expect("rename");
    eventually("v3 in force", || get(addr, "h", "/v").body_str() == "v3");
    // A broken file: refused, v3 stays.
    std::fs::write(&proxy.config_path, "listeners: [").expect("write");
    eventually("refused", || stat(admin_addr, "config.reload_failed") == 1);
    assert_eq!(get(addr, "h", "/v").body_str(), "v3");
    // Another file in the directory changes nothing.
    std::fs::write(proxy.config_path.with_extension("other"), "x").expect("write");
    thread::sleep(Duration::from_millis(600));
    assert_eq!(stat(admin_addr, "config.reload_failed"), 1);
    assert_eq!(stat(admin_addr, "config.reload_success"), 2);
}

/// Version `v` of a config where only `/v`'s answer (`v<v>`) changes: `/` goes to cluster
/// `name` over `endpoints`, with the cluster keys `extra`, on `workers` workers.
fn versioned(
    v: usize,
    workers: usize,
    name: &str,
    endpoints: &[SocketAddr],
    extra: &str,
) -> String {
    let mut b = ConfigBuilder::new()
        .top(&format!("workers: {workers}"))
        .admin()
        .route(
            "prefix: /v",
            &format!("direct_response: {{ status: 200, body: v{v} }}"),
        )
        .route_prefix("/", name)
        .cluster(name, endpoints);
    if !extra.is_empty() {
        b = b.cluster_extra(extra);
    }
    b.yaml()
}

/// Version `v` with one health-checked cluster over `endpoints`: a host that failed its checks
/// needs 1,000 passes to come back, so only a kept health state keeps it out after a reload.
fn health_config(v: usize, endpoints: &[SocketAddr]) -> String {
    versioned(
        v,
        2,
        "checked",
        endpoints,
        "health_checks:\n  - timeout: 1s\n    interval: 100ms\n    no_traffic_interval: 100ms\n    unhealthy_threshold: 1\n    healthy_threshold: 1000\n    http_health_check: {path: /healthz}",
    )
}

#[test]
fn a_reload_keeps_the_health_of_unchanged_clusters_and_checks_changed_ones_afresh() {
    let a = SwitchOrigin::start("a");
    let b = SwitchOrigin::start("b");
    let both = [a.addr, b.addr];
    let (proxy, admin_addr) = Proxy::start_with_admin(&health_config(0, &both), &[]);
    let healthy = || stat(admin_addr, "cluster.checked.health_check.healthy");
    eventually("both hosts healthy", || healthy() == 2);
    // `a` fails one check: out. Then its checks pass again, but 1,000 are needed.
    a.set_health(503);
    eventually("a failed", || healthy() == 1);
    a.set_health(200);
    let checks = a.checks.load(Ordering::SeqCst);
    eventually("a passes checks again", || {
        a.checks.load(Ordering::SeqCst) >= checks + 3
    });
    assert_eq!(healthy(), 1);
    // A reload that changes a route only: the cluster is the same, and so is what its checks
    // found (a fresh start would let `a` back in on its first passing check).
    std::fs::write(&proxy.config_path, health_config(1, &both)).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(proxy.addr, "h", "/v").body_str(), "v1");
    let served_a = a.served.load(Ordering::SeqCst);
    for i in 0..20 {
        assert_eq!(get(proxy.addr, "h", "/").status(), 200, "request {i}");
    }
    assert_eq!(
        a.served.load(Ordering::SeqCst),
        served_a,
        "a failed host got traffic"
    );
    assert_eq!(healthy(), 1);
    assert!(proxy
        .log()
        .contains("unchanged clusters keep their endpoints' health"));
    // Its endpoints changed (b first): checked afresh, and `a` passes its first check.
    std::fs::write(&proxy.config_path, health_config(2, &[b.addr, a.addr])).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(healthy(), 2);
    let served_a = a.served.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "h", "/").status(), 200);
    }
    assert!(
        a.served.load(Ordering::SeqCst) > served_a,
        "a is back after a fresh check"
    );
}

/// One client alone, a new connection per request, one request at a time, while the config is
/// reloaded again and again: every request is answered in time. Alone matters: a connection
/// that arrived as an old worker withdrew its accept (whose wake-up the withdrawn accept took)
/// waited in the accept queue until the next connection came, which with busier clients came
/// at once and here never does; and one an old worker's withdrawn accept took was closed
/// unanswered.
#[test]
fn a_lone_client_is_answered_across_forty_reloads() {
    let a = SwitchOrigin::start("a");
    let b = SwitchOrigin::start("b");
    let (proxy, admin_addr) = Proxy::start_with_admin(&config(1, a.addr, b.addr), &[]);
    let addr = proxy.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let lone = {
        let (s, t) = (Arc::clone(&stop), Arc::clone(&tally));
        thread::spawn(move || closing_client(addr, s, t))
    };
    for v in 2..=41 {
        std::fs::write(&proxy.config_path, config(v, a.addr, b.addr)).expect("write config");
        let (status, body) = reload_by_post(admin_addr);
        assert_eq!(status, 200, "reload {v}: {body}");
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    lone.join().expect("client");
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.lock().unwrap().clone(),
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across 40 reloads: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 40, "the client was served ({ok} requests)");
    assert_eq!(stat(admin_addr, "config.reload_success"), 40);
}

/// Version `v` of a config whose cluster `pool` has outlier detection over `endpoints`.
fn outlier_config(v: usize, endpoints: &[SocketAddr]) -> String {
    versioned(
        v,
        2,
        "pool",
        endpoints,
        "outlier_detection: {consecutive_5xx: 2, base_ejection_time: 30s}\n",
    )
}

/// `/clusters?format=json`: the health flags of `addr` in cluster `pool`.
fn pool_flags(admin_addr: SocketAddr, addr: SocketAddr) -> String {
    let r = admin(admin_addr, "GET", "/clusters?format=json");
    let doc: serde_json::Value = serde_json::from_str(&r.body_str()).expect("json");
    doc["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "pool")
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["address"] == addr.to_string())
        .map(|e| e["health"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn a_reload_keeps_the_outlier_ejections_of_unchanged_clusters() {
    let a = SwitchOrigin::start("a");
    let dead = closed_port();
    let (proxy, admin_addr) = Proxy::start_with_admin(&outlier_config(0, &[a.addr, dead]), &[]);
    // Connect failures eject the dead endpoint (for 30 s).
    eventually("the dead endpoint is ejected", || {
        let _ = get(proxy.addr, "h", "/");
        pool_flags(admin_addr, dead) == "/failed_outlier_check"
    });
    // A reload that leaves the cluster as it was: the ejection stays, no request goes there.
    std::fs::write(&proxy.config_path, outlier_config(1, &[a.addr, dead])).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(proxy.addr, "h", "/v").body_str(), "v1");
    assert_eq!(pool_flags(admin_addr, dead), "/failed_outlier_check");
    assert_eq!(
        stat(
            admin_addr,
            "cluster.pool.outlier_detection.ejections_active"
        ),
        1
    );
    for i in 0..20 {
        assert_eq!(get(proxy.addr, "h", "/").status(), 200, "request {i}");
    }
    assert!(proxy.log().contains("still_ejected=1"), "{}", proxy.log());
    // A changed cluster (an endpoint more) starts afresh: the dead one is tried again.
    let b = SwitchOrigin::start("b");
    std::fs::write(
        &proxy.config_path,
        outlier_config(2, &[a.addr, dead, b.addr]),
    )
    .expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(pool_flags(admin_addr, dead), "healthy");
}

/// Version `v` with cluster `name` at `a` (one worker, so the pool is one pool).
fn pool_config(v: usize, name: &str, a: SocketAddr) -> String {
    versioned(v, 1, name, &[a], "")
}

#[test]
fn a_reload_hands_idle_upstream_connections_of_unchanged_clusters_to_the_new_workers() {
    let a = SwitchOrigin::start("a");
    let (proxy, admin_addr) = Proxy::start_with_admin(&pool_config(0, "keep", a.addr), &[]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..5 {
        assert_eq!(c.get("h", "/").status(), 200);
    }
    assert_eq!(a.origin.connection_count(), 1);
    let idle = |cluster: &str| {
        let text = admin(admin_addr, "GET", "/clusters").body_str();
        text.contains(&format!("{cluster}::{}::cx_idle::1", a.addr))
    };
    // A reload that leaves the cluster as it is: its idle connection moves to the new worker.
    std::fs::write(&proxy.config_path, pool_config(1, "keep", a.addr)).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    eventually(
        "the idle upstream connection is in the new worker's pool",
        || idle("keep"),
    );
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "h", "/").status(), 200);
    }
    assert_eq!(get(proxy.addr, "h", "/v").body_str(), "v1");
    assert_eq!(
        a.origin.connection_count(),
        1,
        "requests after the reload went over the same upstream connection"
    );
    // A changed cluster (renamed) starts with an empty pool: a new connection.
    std::fs::write(&proxy.config_path, pool_config(2, "renamed", a.addr)).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(proxy.addr, "h", "/").status(), 200);
    assert_eq!(a.origin.connection_count(), 2);
    drop(c);
}

#[test]
fn a_reload_moves_at_most_four_idle_connections_per_endpoint() {
    // Six requests at once: six upstream connections, idle afterwards.
    let (origin, count) = RawOrigin::counting("o", Duration::from_millis(300));
    let (proxy, admin_addr) = Proxy::start_with_admin(&pool_config(0, "keep", origin.addr), &[]);
    let addr = proxy.addr;
    let clients: Vec<_> = (0..6)
        .map(|_| thread::spawn(move || get(addr, "h", "/").status()))
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 6);
    assert_eq!(origin.connection_count(), 6);
    let idle = |n: usize| {
        let text = admin(admin_addr, "GET", "/clusters").body_str();
        text.contains(&format!("keep::{}::cx_idle::{n}\n", origin.addr))
    };
    eventually("six idle upstream connections", || idle(6));
    std::fs::write(&proxy.config_path, pool_config(1, "keep", origin.addr)).expect("write");
    let (status, body) = reload_by_post(admin_addr);
    assert_eq!(status, 200, "{body}");
    // The four most recently used move; the other two close with the old worker.
    eventually("four idle connections in the new worker's pool", || idle(4));
    thread::sleep(Duration::from_millis(300));
    assert!(
        idle(4),
        "{}",
        admin(admin_addr, "GET", "/clusters").body_str()
    );
    assert_eq!(get(addr, "h", "/").status(), 200);
    assert_eq!(origin.connection_count(), 6, "a moved connection served it");
}
