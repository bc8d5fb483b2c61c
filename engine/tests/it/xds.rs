//! The xDS client against a real control plane (`support/xds_server.py`: Envoy's ADS service
//! from Envoy's own protos, Python grpcio): listeners, routes, clusters and endpoints pushed,
//! changed and removed while traffic flows; a NACK for a bad resource with the old version
//! still serving; the control plane killed and restarted; static and dynamic mixed.

use crate::support;

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::*;

fn sock(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

fn cla(name: &str, addrs: &[SocketAddr]) -> Value {
    json!({"cluster_name": name, "endpoints": [{"lb_endpoints":
        addrs.iter().map(|a| json!({"endpoint": {"address": sock(*a)}})).collect::<Vec<_>>()}]})
}

fn eds_cluster(name: &str) -> Value {
    json!({"name": name, "type": "EDS", "connect_timeout": "1s",
           "eds_cluster_config": {"eds_config": {"ads": {}}}})
}

fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": cla(name, &[addr])})
}

fn listener(name: &str, port: u16, rds: &str) -> Value {
    json!({"name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "rds": {"route_config_name": rds, "config_source": {"ads": {}}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
}

fn routes(name: &str, to: &[(&str, &str)]) -> Value {
    json!({"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes":
        to.iter().map(|(prefix, cluster)| json!({"match": {"prefix": prefix}, "route": {"cluster": cluster}}))
            .collect::<Vec<_>>()}]})
}

/// The proxy's own config: a control plane, a static listener routing `/static` to a dynamic
/// cluster `a`, the admin API.
fn proxy_config(cp_port: u16) -> String {
    proxy_config_api(cp_port, "GRPC")
}

fn proxy_config_api(cp_port: u16, api_type: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
node: {{ id: test-node, cluster: test }}
xds: {{ cluster: xds, initial_fetch_timeout: 5s, api_type: {api_type} }}
clusters:
  - name: xds
    connect_timeout: 1s
    endpoints: ["127.0.0.1:{cp_port}"]
listeners:
  - name: static
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: a }}
"#
    )
}

/// The body of `GET path` at `addr`, or what went wrong.
fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let resp = std::panic::catch_unwind(|| get(addr, "example.com", path))
        .map_err(|_| "no response".to_owned())?;
    Ok((
        resp.status(),
        String::from_utf8_lossy(&resp.body).into_owned(),
    ))
}

fn eventually_body(addr: SocketAddr, path: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let got = fetch(addr, path);
        if matches!(&got, Ok((200, b)) if b == want) {
            return;
        }
        assert!(
            Instant::now() < until,
            "GET {path} at {addr}: wanted {want:?}, still {got:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Requests in a loop until stopped, each on a new connection; counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, path: &'static str, accept: &'static [&'static str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match fetch(addr, path) {
                    Ok((200, b)) if accept.contains(&b.as_str()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    other => f.lock().unwrap().push(format!("{other:?}")),
                }
            }
        });
        Load {
            stop,
            ok,
            failed,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("load thread");
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// The last request of `type_url` the proxy sent.
fn last_of(cp: &ControlPlane, type_url: &str) -> Option<Value> {
    cp.requests()
        .into_iter()
        .rev()
        .find(|r| r["type_url"] == type_url)
}

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

fn acked(cp: &ControlPlane, type_url: &str, version: &str) -> bool {
    last_of(cp, type_url)
        .is_some_and(|r| r["version_info"] == version && r["error_detail"].is_null())
}

/// The version of `type_url` in force, as `/config_dump` says.
fn in_force(admin_addr: SocketAddr, type_url: &str) -> Value {
    admin_json_at(admin_addr, "/config_dump")["xds"]["resources"][type_url]["version_info"].clone()
}

#[test]
fn resources_pushed_changed_and_removed_while_traffic_flows_lose_no_request() {
    push_change_remove(false);
}

#[test]
fn incremental_xds_pushes_changes_and_removals_losing_no_request() {
    push_change_remove(true);
}

fn push_change_remove(delta: bool) {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let (b, _) = RawOrigin::counting("b", Duration::ZERO);
    let dir = scratch_dir();
    let dyn_port = free_port();
    let v1 = json!({"version": "1",
        "clusters": [eds_cluster("a")],
        "endpoints": [cla("a", &[a.addr])],
        "listeners": [listener("dyn", dyn_port, "r1")],
        "routes": [routes("r1", &[("/", "a")])]});
    let cp = ControlPlane::start(&dir, &v1, 0);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let (proxy, admin_addr) =
        Proxy::start_with_admin(&proxy_config_api(cp.port, api), &["--workers", "2"]);
    let acked = |cp: &ControlPlane, t: &str, v: &str| {
        in_force(admin_addr, t) == v && (delta || acked(cp, t, v))
    };
    let dynamic: SocketAddr = format!("127.0.0.1:{dyn_port}").parse().unwrap();

    // The dynamic listener, its routes, the EDS cluster: all there, and the static listener's
    // route to the dynamic cluster works too.
    eventually_body(dynamic, "/x", "a");
    eventually_body(proxy.addr, "/x", "a");
    eventually("every type ACKed at version 1", || {
        [LDS, CDS, EDS, RDS].iter().all(|t| acked(&cp, t, "1"))
    });
    let first = &cp.requests()[0];
    assert_eq!(first["node_id"], "test-node");
    let subscribed = |t: &str| {
        cp.requests()
            .into_iter()
            .find(|r| r["type_url"] == t)
            .map(|r| r["resource_names"].clone())
    };
    assert_eq!(subscribed(EDS), Some(json!(["a"])));
    assert_eq!(subscribed(RDS), Some(json!(["r1"])));

    // v2: a new static cluster b; the routes move to b. v3: cluster a and its endpoints gone.
    let load = Load::start(dynamic, "/x", &["a", "b"]);
    let load_static = Load::start(proxy.addr, "/y", &["a", "b"]);
    thread::sleep(Duration::from_millis(300));
    let v2 = json!({"version": "2",
        "clusters": [eds_cluster("a"), static_cluster("b", b.addr)],
        "endpoints": [cla("a", &[a.addr])],
        "listeners": [listener("dyn", dyn_port, "r1")],
        "routes": [routes("r1", &[("/", "b")])]});
    cp.push(&v2);
    eventually_body(dynamic, "/x", "b");
    eventually("version 2 ACKed", || {
        acked(&cp, RDS, "2") && acked(&cp, CDS, "2")
    });
    let v3 = json!({"version": "3",
        "clusters": [static_cluster("b", b.addr)],
        "endpoints": [],
        "listeners": [listener("dyn", dyn_port, "r1")],
        "routes": [routes("r1", &[("/", "b")])]});
    cp.push(&v3);
    eventually("version 3 ACKed", || acked(&cp, CDS, "3"));
    // The static listener's cluster `a` is gone: Envoy's answer for a missing cluster, 503.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if fetch(proxy.addr, "/y").is_ok_and(|(s, _)| s == 503) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the static route to a removed cluster still answers"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let (ok, failed) = load.finish();
    assert!(ok > 20, "only {ok} requests made it through the switches");
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed at a switch: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let (ok_static, failed_static) = load_static.finish();
    assert!(ok_static > 20, "{ok_static}");
    // The static listener's requests failed only once `a` was removed (503s), never otherwise.
    assert!(
        failed_static.iter().all(|f| f.contains("503")),
        "{:?}",
        &failed_static[..failed_static.len().min(5)]
    );

    // v4: the dynamic listener removed: its port closes.
    let v4 = json!({"version": "4", "clusters": [static_cluster("b", b.addr)], "endpoints": [],
        "listeners": [], "routes": []});
    cp.push(&v4);
    eventually("the dynamic listener closed", || {
        std::net::TcpStream::connect_timeout(&dynamic, Duration::from_millis(200)).is_err()
    });
    let stats = admin_stats(admin_addr);
    assert_eq!(
        stats.get("config.xds.connected_state"),
        Some(&1),
        "{stats:?}"
    );
    assert!(
        stats
            .get("config.xds.update_success")
            .is_some_and(|&n| n >= 8),
        "{stats:?}"
    );
    // `/clusters` says which clusters came from the control plane (Envoy's `added_via_api`).
    let text = admin(admin_addr, "GET", "/clusters").body_str();
    assert!(text.contains("b::added_via_api::true\n"), "{text}");
    assert!(text.contains("xds::added_via_api::false\n"), "{text}");
    let dump = admin_json_at(admin_addr, "/config_dump");
    // Incremental: clusters did not change in version 4, so no cluster response came with it.
    let changed = if delta { LDS } else { CDS };
    assert_eq!(
        dump["xds"]["resources"][changed]["version_info"], "4",
        "{dump}"
    );
    if delta {
        // Incremental: the removals came as names; nothing was NACKed.
        assert!(cp.requests().iter().all(|r| r["error_detail"].is_null()));
    }
    assert_eq!(
        dump["xds"]["resources"][CDS]["names"],
        json!(["b"]),
        "{dump}"
    );
    drop(proxy);
}

#[test]
fn a_bad_resource_is_nacked_with_the_validation_message_and_the_old_version_serves() {
    nack(false);
}

#[test]
fn incremental_xds_nacks_a_bad_resource_too() {
    nack(true);
}

fn nack(delta: bool) {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let dir = scratch_dir();
    let v1 = json!({"version": "1", "clusters": [static_cluster("a", a.addr)], "listeners": []});
    let cp = ControlPlane::start(&dir, &v1, 0);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let (proxy, admin_addr) = Proxy::start_with_admin(&proxy_config_api(cp.port, api), &[]);
    eventually_body(proxy.addr, "/", "a");
    let acked = |cp: &ControlPlane, t: &str, v: &str| {
        in_force(admin_addr, t) == v && (delta || acked(cp, t, v))
    };
    eventually("v1 ACKed", || acked(&cp, CDS, "1"));

    // A zero connect timeout: what `ringway validate` refuses.
    let mut bad = static_cluster("a", a.addr);
    bad["connect_timeout"] = json!("0s");
    cp.push(&json!({"version": "2", "clusters": [bad], "listeners": []}));
    eventually("v2 NACKed", || {
        last_of(&cp, CDS).is_some_and(|r| !r["error_detail"].is_null())
    });
    let nack = last_of(&cp, CDS).unwrap();
    if !delta {
        assert_eq!(
            nack["version_info"], "1",
            "a NACK names the version still in force: {nack}"
        );
    }
    assert_ne!(
        nack["response_nonce"], "",
        "a NACK names the response: {nack}"
    );
    let detail = nack["error_detail"].as_str().unwrap();
    // The message `ringway validate` prints, with the resource named.
    assert!(
        detail.starts_with("cluster \"a\": ")
            && detail.contains("connect_timeout must be more than zero"),
        "{detail}"
    );
    // An unsupported field: refused with its path.
    let mut odd = static_cluster("a", a.addr);
    odd["per_connection_buffer_limit_bytes"] = json!(1024);
    cp.push(&json!({"version": "3", "clusters": [odd], "listeners": []}));
    eventually("v3 NACKed", || {
        last_of(&cp, CDS).is_some_and(|r| {
            r["error_detail"]
                .as_str()
                .is_some_and(|d| d.contains("per_connection_buffer_limit_bytes"))
        })
    });
    // Still serving version 1.
    let (status, body) = fetch(proxy.addr, "/").expect("served");
    assert_eq!((status, body.as_str()), (200, "a"));
    let stats = admin_stats(admin_addr);
    assert!(
        stats
            .get("config.xds.update_rejected")
            .is_some_and(|&n| n >= 2),
        "{stats:?}"
    );

    // A good version after the bad ones is taken.
    let (b, _) = RawOrigin::counting("b", Duration::ZERO);
    cp.push(&json!({"version": "4", "clusters": [static_cluster("a", b.addr)], "listeners": []}));
    eventually_body(proxy.addr, "/", "b");
    eventually("v4 ACKed", || acked(&cp, CDS, "4"));
}

#[test]
fn the_config_in_force_keeps_serving_while_the_control_plane_is_down() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let (b, _) = RawOrigin::counting("b", Duration::ZERO);
    let dir = scratch_dir();
    let port = free_port();
    let v1 = json!({"version": "1", "clusters": [static_cluster("a", a.addr)], "listeners": []});
    let mut cp = ControlPlane::start(&dir, &v1, port);
    let (proxy, admin_addr) = Proxy::start_with_admin(&proxy_config(port), &[]);
    eventually_body(proxy.addr, "/", "a");

    cp.stop();
    eventually("the stream is seen down", || {
        admin_stats(admin_addr).get("config.xds.connected_state") == Some(&0)
    });
    for _ in 0..20 {
        assert_eq!(fetch(proxy.addr, "/").expect("served").1, "a");
    }
    eventually("reconnects are tried and counted", || {
        admin_stats(admin_addr)
            .get("config.xds.connect_fail")
            .is_some_and(|&n| n >= 2)
    });
    assert!(
        proxy.log().contains("stream to the control plane lost"),
        "{}",
        proxy.log()
    );

    // Back, with a new version: the proxy reconnects (back-off at most 30 s) and takes it.
    let v2 = json!({"version": "2", "clusters": [static_cluster("a", b.addr)], "listeners": []});
    let cp2 = ControlPlane::start(&scratch_dir(), &v2, port);
    let until = Instant::now() + Duration::from_secs(45);
    while fetch(proxy.addr, "/").map(|r| r.1).ok().as_deref() != Some("b") {
        assert!(Instant::now() < until, "not reconnected: {}", proxy.log());
        thread::sleep(Duration::from_millis(100));
    }
    // On reconnect the proxy said which version it had.
    let resumed = cp2
        .requests()
        .into_iter()
        .filter(|r| r["type_url"] == CDS)
        .find(|r| r["response_nonce"] == "");
    assert_eq!(resumed.map(|r| r["version_info"].clone()), Some(json!("1")));
}

/// The SDS secret `edge-cert`: gen-certs' certificate and key for `host`, inline.
fn edge_cert(certs: &std::path::Path, host: &str) -> Value {
    let pem = |name: String| std::fs::read_to_string(certs.join(name)).expect("cert");
    json!({"name": "edge-cert", "tls_certificate": {
        "certificate_chain": {"inline_string": pem(format!("{host}.crt"))},
        "private_key": {"inline_string": pem(format!("{host}.key"))}}})
}

#[test]
fn certificates_come_from_the_control_plane_and_rotate() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let certs = scratch_dir();
    gen_certs(&certs);
    let secret = |host: &str| edge_cert(&certs, host);
    let dir = scratch_dir();
    let v1 = json!({"version": "1", "clusters": [static_cluster("a", a.addr)], "listeners": [],
        "secrets": [secret("a.example.test")]});
    let cp = ControlPlane::start(&dir, &v1, 0);
    let tls_port = free_port();
    // The file's own TLS listener takes its certificate from the control plane (SDS).
    let yaml = format!(
        "{}  - name: tls\n    address: 127.0.0.1:{tls_port}\n    filter_chains:\n      - tls:\n          common_tls_context:\n            tls_certificate_sds_secret_configs: [{{name: edge-cert, sds_config: {{ads: {{}}}}}}]\n        filters:\n          - http_connection_manager:\n              virtual_hosts: [{{name: all, domains: [\"*\"], routes: [{{match: {{prefix: /}}, route: {{cluster: a}}}}]}}]\n",
        proxy_config(cp.port)
    );
    let (_proxy, _admin) = Proxy::start_with_admin(&yaml, &[]);
    let curl = |host: &str| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(certs.join("ca.crt"))
            .args(["--resolve", &format!("{host}:{tls_port}:127.0.0.1")])
            .arg(format!("https://{host}:{tls_port}/"))
            .output()
            .expect("curl (run scripts/test.sh)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let until = Instant::now() + Duration::from_secs(20);
    while curl("a.example.test") != "a" {
        assert!(
            Instant::now() < until,
            "the TLS listener never served with the SDS certificate"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last_of(&cp, SDS).unwrap()["resource_names"],
        json!(["edge-cert"])
    );
    // A new version of the secret: the listener serves the new certificate.
    assert_eq!(
        curl("b.example.test"),
        "",
        "b's name is not on a's certificate"
    );
    cp.push(
        &json!({"version": "2", "clusters": [static_cluster("a", a.addr)], "listeners": [],
        "secrets": [secret("b.example.test")]}),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while curl("b.example.test") != "a" {
        assert!(Instant::now() < until, "the certificate did not rotate");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_control_plane_is_reached_over_tls() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let certs = scratch_dir();
    gen_certs(&certs);
    let dir = scratch_dir();
    let v1 = json!({"version": "1", "clusters": [static_cluster("a", a.addr)], "listeners": []});
    let cp = ControlPlane::start_env(
        &dir,
        &v1,
        0,
        &[
            ("XDS_TLS_CERT", certs.join("a.example.test.crt")),
            ("XDS_TLS_KEY", certs.join("a.example.test.key")),
        ],
    );
    // The control plane's cluster verifies its certificate against the test CA, by name.
    let yaml = proxy_config(cp.port).replace(
        "    connect_timeout: 1s\n    endpoints:",
        &format!(
            "    connect_timeout: 1s\n    tls: {{ sni: a.example.test, verify: {{ ca: {{ filename: {} }} }} }}\n    endpoints:",
            certs.join("ca.crt").display()
        ),
    );
    assert!(yaml.contains("sni: a.example.test"), "{yaml}");
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &[]);
    eventually_body(proxy.addr, "/", "a");
    assert_eq!(
        admin_stats(admin_addr).get("config.xds.connected_state"),
        Some(&1)
    );
    assert!(acked(&cp, CDS, "1"));
}

#[test]
fn nothing_serves_before_the_control_planes_first_config_unless_it_is_late() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let dir = scratch_dir();
    let dyn_port = free_port();
    let v1 = json!({"version": "1",
        "clusters": [eds_cluster("a")],
        "endpoints": [cla("a", &[a.addr])],
        "listeners": [listener("dyn", dyn_port, "r1")],
        "routes": [routes("r1", &[("/", "a")])]});
    let cp = ControlPlane::start(&dir, &v1, 0);
    // As Envoy's initialisation: once ringway says it serves, the control plane's listener,
    // routes, clusters and endpoints are all in force; no 503 window on the static route.
    let (proxy, _admin) = Proxy::start_with_admin(&proxy_config(cp.port), &[]);
    let dynamic: SocketAddr = format!("127.0.0.1:{dyn_port}").parse().unwrap();
    assert_eq!(
        fetch(proxy.addr, "/").expect("static listener"),
        (200, "a".to_owned())
    );
    assert_eq!(
        fetch(dynamic, "/").expect("dynamic listener"),
        (200, "a".to_owned())
    );
    assert!(proxy.log().contains("in force at start"), "{}", proxy.log());

    // No control plane at all: after initial_fetch_timeout the file's own listeners serve
    // (here a route to a cluster that is not there yet: 503).
    let yaml = proxy_config(closed_port().port())
        .replace("initial_fetch_timeout: 5s", "initial_fetch_timeout: 1s");
    let started = Instant::now();
    let (late, _admin) = Proxy::start_with_admin(&yaml, &[]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fetch(late.addr, "/").expect("served").0, 503);
    assert!(
        late.log()
            .contains("no config from the control plane in time"),
        "{}",
        late.log()
    );
}

/// A listener from the control plane whose one chain is TLS, with its certificate from SDS,
/// a header_mutation filter and a file access log; and a tcp_proxy listener. Then a listener
/// embedding a filter ringway lacks (lua): NACKed naming the type, the others keep serving.
#[test]
fn dynamic_listeners_carry_tls_from_sds_tcp_proxy_filters_and_access_logs() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let certs = scratch_dir();
    gen_certs(&certs);
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let (tls_port, tcp_port) = (free_port(), free_port());
    let hcm = |name: &str, filters: Value| {
        json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": routes("local", &[("/", "a")]),
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log.to_str().unwrap(),
                "log_format": {"text_format_source": {"inline_string": "%RESPONSE_CODE% %UPSTREAM_CLUSTER%\n"}}}}],
            "http_filters": filters}})
    };
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let mutation = json!({"name": "envoy.filters.http.header_mutation", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"response_mutations": [{"append": {"header": {"key": "x-from", "value": "xds"}}}]}}});
    let tls = json!({"name": "tls",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": tls_port}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    {"name": "edge-cert", "sds_config": {"ads": {}}}]}}},
            "filters": [hcm("tls", json!([mutation, router]))]}]});
    let tcp = json!({"name": "tcp",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": tcp_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "tcp", "cluster": "a"}}]}]});
    let secret = edge_cert(&certs, "a.example.test");
    let v1 = json!({"version": "1", "clusters": [static_cluster("a", a.addr)],
        "listeners": [tls, tcp], "secrets": [secret]});
    let cp = ControlPlane::start(&dir, &v1, 0);
    let (_proxy, admin_addr) = Proxy::start_with_admin(&proxy_config(cp.port), &[]);

    let https = || {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "5", "--cacert"])
            .arg(certs.join("ca.crt"))
            .args(["--resolve", &format!("a.example.test:{tls_port}:127.0.0.1")])
            .arg(format!("https://a.example.test:{tls_port}/"))
            .output()
            .expect("curl (run scripts/test.sh)");
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
    };
    let until = Instant::now() + Duration::from_secs(20);
    let mut got = https();
    while !got.ends_with("\n\na") {
        assert!(
            Instant::now() < until,
            "the TLS listener from LDS never served: {got:?}"
        );
        thread::sleep(Duration::from_millis(100));
        got = https();
    }
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.to_lowercase().contains("\nx-from: xds\n"), "{got}");
    eventually("the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().any(|l| l == "200 a"))
    });
    // tcp_proxy: the origin's answer comes back through the L4 listener.
    let tcp_addr: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    eventually_body(tcp_addr, "/", "a");
    assert!(acked(&cp, LDS, "1"));

    // A listener with an HTTP filter ringway does not have: refused, naming it.
    let lua = json!({"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": "function envoy_on_request(h) end"}}});
    let odd = json!({"name": "odd",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
        "filter_chains": [{"filters": [hcm("odd", json!([lua, router]))]}]});
    let mut v2 = v1.clone();
    v2["version"] = json!("2");
    v2["listeners"].as_array_mut().unwrap().push(odd);
    cp.push(&v2);
    eventually("v2 NACKed", || {
        last_of(&cp, LDS).is_some_and(|r| !r["error_detail"].is_null())
    });
    let detail = last_of(&cp, LDS).unwrap()["error_detail"].clone();
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.contains("envoy.extensions.filters.http.lua.v3.Lua")),
        "{detail}"
    );
    assert_eq!(in_force(admin_addr, LDS), "1");
    assert!(https().ends_with("\n\na"));
    eventually_body(tcp_addr, "/", "a");
}
