//! Hashing load balancers, priority levels and slow start (issue 20, point 5), on 2 workers:
//! `ring_hash` and `maglev` with a route's `hash_policy` (header, generated cookie, source IP,
//! query parameter) send a key to the same host from both workers and across restarts, and a
//! host that leaves moves only its own keys; endpoints of `priority: 1` take the traffic level
//! 0 cannot; a host back from a failed health check ramps up under `slow_start_config`.

use crate::support;

use std::{
    collections::HashMap,
    thread,
    time::{Duration, Instant},
};

use support::*;

const CHECK: &str = "health_checks:\n  - timeout: 1s\n    interval: 100ms\n    unhealthy_threshold: 1\n    healthy_threshold: 1\n    http_health_check: {path: /healthz}\n";

/// A proxy on 2 workers: `/` to cluster `pool` with these raw cluster keys, the route's
/// `hash_policy` as given.
fn proxy(cluster: &str, hash_policy: &str) -> Proxy {
    let route = match hash_policy {
        "" => "route: {cluster: pool}".to_string(),
        h => format!("route:\n  cluster: pool\n  hash_policy:\n{h}"),
    };
    let yaml = ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .route("prefix: /", &route)
        .cluster_raw("pool", cluster)
        .yaml();
    Proxy::start_configured(&yaml)
}

fn endpoints(origins: &[&SwitchOrigin]) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.addr)).collect();
    format!("endpoints: [{}]\n", list.join(", "))
}

/// One request on a new connection (new connections land on either worker) with these extra
/// header lines; the origin's name.
fn fetch(p: &Proxy, path: &str, headers: &str) -> RawMessage {
    let mut c = Client::connect(p.addr);
    let r = c.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n{headers}\r\n").as_bytes());
    assert_eq!(r.status(), 200, "{r:?}");
    r
}

fn four() -> Vec<SwitchOrigin> {
    ["a", "b", "c", "d"]
        .into_iter()
        .map(SwitchOrigin::start)
        .collect()
}

/// Where each of `keys` users goes (by `x-user`), each asked `times` times on new connections;
/// asserts each user always reached the same host.
fn placement(p: &Proxy, keys: usize, times: usize) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for k in 0..keys {
        let user = format!("user-{k}");
        for t in 0..times {
            let host = fetch(p, "/", &format!("x-user: {user}\r\n")).body_str();
            let first = out.entry(user.clone()).or_insert_with(|| host.clone());
            assert_eq!(*first, host, "{user} moved on request {t}");
        }
    }
    out
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ring_hash_keys_stick_across_workers_and_restarts_and_a_lost_host_moves_only_its_keys() {
    let o = four();
    let refs: Vec<&SwitchOrigin> = o.iter().collect();
    let cluster = format!("lb_policy: ring_hash\n{}{CHECK}", endpoints(&refs));
    let policy = "  - header: {header_name: x-user}\n";
    let p = proxy(&cluster, policy);
    let before = placement(&p, 40, 4);
    let used: std::collections::HashSet<&String> = before.values().collect();
    assert!(used.len() >= 3, "40 keys over 4 hosts used only {used:?}");
    // A restart builds the same ring.
    drop(p);
    let p = proxy(&cluster, policy);
    assert_eq!(placement(&p, 40, 1), before, "a restart moved keys");
    // Host `a` fails its checks: only its keys move.
    o[0].set_health(503);
    wait_for("a out of rotation", Duration::from_secs(5), || {
        (0..20).all(|_| fetch(&p, "/", "x-user: probe\r\n").body_str() != "a")
            && before
                .iter()
                .filter(|(_, h)| *h == "a")
                .all(|(u, _)| fetch(&p, "/", &format!("x-user: {u}\r\n")).body_str() != "a")
    });
    let after = placement(&p, 40, 2);
    for (user, host) in &before {
        if host != "a" {
            assert_eq!(&after[user], host, "{user} moved though its host stayed");
        } else {
            assert_ne!(after[user], "a");
        }
    }
}

#[test]
fn maglev_keys_stick_and_requests_without_a_key_spread() {
    let o = four();
    let refs: Vec<&SwitchOrigin> = o.iter().collect();
    let cluster = format!("lb_policy: maglev\n{}", endpoints(&refs));
    let p = proxy(&cluster, "  - query_parameter: {name: user}\n");
    let mut seen = HashMap::new();
    for k in 0..30 {
        for _ in 0..3 {
            let host = fetch(&p, &format!("/x?a=1&user=u{k}"), "").body_str();
            assert_eq!(seen.entry(k).or_insert_with(|| host.clone()), &host);
        }
    }
    // No key: placed at random over all four.
    let mut hosts = std::collections::HashSet::new();
    for _ in 0..80 {
        hosts.insert(fetch(&p, "/x", "").body_str());
    }
    assert_eq!(hosts.len(), 4, "{hosts:?}");
}

#[test]
fn a_generated_cookie_pins_the_client() {
    let o = four();
    let refs: Vec<&SwitchOrigin> = o.iter().collect();
    let cluster = format!("lb_policy: ring_hash\n{}", endpoints(&refs));
    let p = proxy(
        &cluster,
        "  - cookie: {name: sticky, ttl: 3600s, path: /}\n",
    );
    let r = fetch(&p, "/", "");
    let set = r
        .header("set-cookie")
        .expect("a generated cookie")
        .to_string();
    assert!(
        set.starts_with("sticky=\"") && set.ends_with("\"; Max-Age=3600; Path=/; HttpOnly"),
        "{set}"
    );
    let value = set.split(';').next().expect("pair").to_string();
    let host = r.body_str();
    for _ in 0..20 {
        let r = fetch(&p, "/", &format!("cookie: other=1; {value}\r\n"));
        assert_eq!(r.body_str(), host);
        assert_eq!(
            r.header("set-cookie"),
            None,
            "the cookie came back: none is set"
        );
    }
}

#[test]
fn source_ip_hashing_keeps_one_client_on_one_host() {
    let o = four();
    let refs: Vec<&SwitchOrigin> = o.iter().collect();
    let cluster = format!("lb_policy: maglev\n{}", endpoints(&refs));
    let p = proxy(
        &cluster,
        "  - header: {header_name: x-missing}\n  - connection_properties: {source_ip: true}\n    terminal: true\n",
    );
    let first = fetch(&p, "/", "").body_str();
    for _ in 0..30 {
        assert_eq!(fetch(&p, "/", "").body_str(), first);
    }
}

fn shares(p: &Proxy, n: usize) -> HashMap<String, usize> {
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(p.addr)).collect();
    let mut out = HashMap::new();
    for i in 0..n {
        let r = clients[i % 4].get("h.test", "/");
        assert_eq!(r.status(), 200, "{r:?}");
        *out.entry(r.body_str()).or_insert(0) += 1;
    }
    out
}

#[test]
fn priority_one_takes_what_level_zero_cannot() {
    let (a, b, c) = (
        SwitchOrigin::start("a"),
        SwitchOrigin::start("b"),
        SwitchOrigin::start("c"),
    );
    let cluster = format!(
        "endpoints:\n  - {{address: \"{}\"}}\n  - {{address: \"{}\", priority: 0}}\n  - {{address: \"{}\", priority: 1}}\n{CHECK}common_lb_config: {{healthy_panic_threshold: 0}}\n",
        a.addr, b.addr, c.addr
    );
    let p = proxy(&cluster, "");
    thread::sleep(Duration::from_millis(400));
    let s = shares(&p, 200);
    assert_eq!(s.get("c"), None, "level 0 is whole: {s:?}");
    // One of two at level 0: 50% × 1.4 = 70% stays there, 30% spills to level 1.
    b.set_health(503);
    wait_for("b out", Duration::from_secs(5), || {
        !shares(&p, 20).contains_key("b")
    });
    let s = shares(&p, 1000);
    let c_n = s.get("c").copied().unwrap_or(0);
    assert!(
        (220..=380).contains(&c_n),
        "level 1 took {c_n} of 1000 for a 30% load: {s:?}"
    );
    assert_eq!(s.get("a").copied().unwrap_or(0) + c_n, 1000);
    // Level 0 gone: everything to level 1; back: level 0 again.
    a.set_health(503);
    wait_for("all on c", Duration::from_secs(5), || {
        shares(&p, 20).get("c") == Some(&20)
    });
    a.set_health(200);
    b.set_health(200);
    wait_for("back on level 0", Duration::from_secs(5), || {
        !shares(&p, 40).contains_key("c")
    });
}

#[test]
fn slow_start_ramps_up_a_host_back_from_failed_checks() {
    let (a, b) = (SwitchOrigin::start("a"), SwitchOrigin::start("b"));
    let cluster = format!(
        "endpoints: [\"{}\", \"{}\"]\n{CHECK}common_lb_config: {{healthy_panic_threshold: 0}}\nround_robin_lb_config:\n  slow_start_config: {{slow_start_window: 6s, min_weight_percent: 10}}\n",
        a.addr, b.addr
    );
    let p = proxy(&cluster, "");
    thread::sleep(Duration::from_millis(400));
    b.set_health(503);
    wait_for("b out", Duration::from_secs(5), || {
        !shares(&p, 20).contains_key("b")
    });
    b.set_health(200);
    wait_for("b back", Duration::from_secs(5), || {
        shares(&p, 50).contains_key("b")
    });
    // Early in the window: well under half (10% to about 30% in the first 2 s).
    let early = shares(&p, 2000);
    let b_early = early.get("b").copied().unwrap_or(0);
    assert!(
        b_early > 0 && b_early < 700,
        "b took {b_early} of 2000 early in its ramp"
    );
    // After the window: half.
    thread::sleep(Duration::from_secs(7));
    let late = shares(&p, 2000);
    let b_late = late.get("b").copied().unwrap_or(0);
    assert!(
        (900..=1100).contains(&b_late),
        "b took {b_late} of 2000 after its ramp"
    );
}
