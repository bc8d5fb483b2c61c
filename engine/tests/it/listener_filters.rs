//! Listener filters and filter-chain matching against real sockets: TLS ClientHellos made
//! in-process by rustls (sent whole or in small writes) routed by SNI (exact, `*.` wildcard,
//! default) and ALPN to `tcp_proxy` upstreams that record what they receive (passthrough: the
//! bytes must start with the hello as sent), plain HTTP beside TLS on one listener, PROXY v1
//! and v2 headers in front of HTTP requests (x-forwarded-for and the access log show the real
//! client), source ranges and destination ports from a PROXY header, the connections that are
//! closed and counted (no match, a malformed header, a silent peer after the timeout), and
//! config errors from `ringway validate` with their field and line.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// The bytes a rustls client sends first: its ClientHello with `sni` and `alpn`.
fn hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

/// An upstream that records the first `want` bytes of each connection, sends them on `tx`
/// tagged with `tag`, answers `tag` and closes.
fn recorder(tag: &'static str, tx: mpsc::Sender<(&'static str, Vec<u8>)>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut s = s;
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Read until the client pauses (it sent all it will before the answer).
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send((tag, got));
                let _ = s.write_all(tag.as_bytes());
            });
        }
    });
    addr
}

/// Three recorders (`exact`, `wild`, `default`) and the channel they report on.
struct Upstreams {
    rx: mpsc::Receiver<(&'static str, Vec<u8>)>,
    exact: SocketAddr,
    wild: SocketAddr,
    default: SocketAddr,
}

fn upstreams() -> Upstreams {
    let (tx, rx) = mpsc::channel();
    Upstreams {
        exact: recorder("exact", tx.clone()),
        wild: recorder("wild", tx.clone()),
        default: recorder("default", tx),
        rx,
    }
}

impl Upstreams {
    /// A config whose clusters `exact`, `wild` and `default` are the three recorders; the
    /// listeners (and any other cluster) are added to it.
    fn config(&self) -> ConfigBuilder {
        ConfigBuilder::new()
            .cluster("exact", &[self.exact])
            .cluster("wild", &[self.wild])
            .cluster("default", &[self.default])
    }
}

/// Connect, send `bytes` in `pieces` writes (a pause between them), and read the answer.
fn send_in_pieces(addr: SocketAddr, bytes: &[u8], pieces: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let size = bytes.len().div_ceil(pieces.max(1));
    for chunk in bytes.chunks(size) {
        s.write_all(chunk).expect("write");
        s.flush().expect("flush");
        thread::sleep(Duration::from_millis(30));
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The next recorded connection (bounded wait).
fn recorded(u: &Upstreams) -> (&'static str, Vec<u8>) {
    u.rx.recv_timeout(WAIT)
        .expect("an upstream received the connection")
}

/// True when the proxy closes `s` (EOF or reset) within `within`, having sent nothing.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

fn listener_stat(admin: SocketAddr, proxy: SocketAddr, name: &str) -> u64 {
    let key = format!("listener.{}.{name}", proxy.to_string().replace(':', "_"));
    admin_stats(admin).get(&key).copied().unwrap_or(0)
}

#[test]
fn listener_sni_routes_passthrough_with_wildcard_precedence() {
    let u = upstreams();
    let yaml = u
        .config()
        .admin()
        .tcp_listener("tls", "127.0.0.1:0")
        .listener_extra("listener_filters: [tls_inspector]")
        .listener_extra("default_filter_chain:\n  filters:\n    - tcp_proxy: { cluster: default }")
        .tcp_proxy("cluster: exact")
        .filter_chain_match("server_names: [www.example.test]")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("server_names: [\"*.example.test\"]")
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    for (sni, want) in [
        ("www.example.test", "exact"),
        ("api.example.test", "wild"),
        ("a.b.example.test", "wild"),
        ("other.test", "default"),
    ] {
        let h = hello(sni, &[b"h2"]);
        let answer = send_in_pieces(proxy.addr, &h, 1);
        let (tag, got) = recorded(&u);
        assert_eq!(tag, want, "{sni}");
        assert_eq!(
            &got[..],
            &h[..],
            "{sni}: the upstream got the ClientHello untouched"
        );
        assert_eq!(answer, want.as_bytes(), "{sni}");
    }
    assert_eq!(
        listener_stat(admin_addr, proxy.addr, "no_filter_chain_match"),
        0
    );
}

#[test]
fn listener_client_hello_in_small_writes_and_alpn_match() {
    let u = upstreams();
    let yaml = u
        .config()
        .tcp_listener("tls", "127.0.0.1:0")
        .listener_extra("listener_filters: [{ name: envoy.filters.listener.tls_inspector }]")
        .tcp_proxy("cluster: exact")
        // transport_protocol is matched before ALPN: without `tls` here the `tls` chain below
        // would win every TLS connection before ALPN is looked at (Envoy's order).
        .filter_chain_match("transport_protocol: tls, application_protocols: [h2]")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("transport_protocol: tls")
        .yaml();
    let proxy = Proxy::start(&yaml);
    // A hello offering http/1.1 then h2: the h2 chain; one offering only http/1.1: TLS chain.
    let h = hello("x.test", &[b"http/1.1", b"h2"]);
    assert_eq!(send_in_pieces(proxy.addr, &h, 7), b"exact");
    let (tag, got) = recorded(&u);
    assert_eq!((tag, &got[..]), ("exact", &h[..]), "split over 7 writes");
    let h = hello("x.test", &[b"http/1.1"]);
    assert_eq!(send_in_pieces(proxy.addr, &h, 3), b"wild");
    let (tag, got) = recorded(&u);
    assert_eq!((tag, &got[..]), ("wild", &h[..]));
}

#[test]
fn listener_plain_http_and_tls_on_one_listener() {
    let origin = BenchOrigin::start(&[]);
    let u = upstreams();
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: mixed
    address: 127.0.0.1:0
    listener_filters: [tls_inspector]
    filter_chains:
      - filter_chain_match: {{ transport_protocol: tls }}
        filters:
          - tcp_proxy: {{ cluster: exact }}
      - filter_chain_match: {{ transport_protocol: raw_buffer }}
        filters:
          - http_connection_manager:
              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: web }}
{}",
        // Only the clusters come from the builder: it writes no listener with chains of both
        // kinds (tcp_proxy and HTTP).
        u.config().cluster("web", &[origin.addr]).yaml()
    );
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let r = get(proxy.addr, "mixed.test", "/echo");
    assert_eq!(r.status(), 200, "{r:?}");
    let h = hello("mixed.test", &[]);
    assert_eq!(send_in_pieces(proxy.addr, &h, 1), b"exact");
    assert_eq!(recorded(&u).1, h);
    // Both chains' stats, under the listener's (default) stat prefix.
    eventually("http and tcp stats of one listener", || {
        let st = admin_stats(admin_addr);
        st.get("http.mixed.downstream_rq_total") == Some(&1)
            && st.get("tcp.mixed.downstream_cx_total") == Some(&1)
            && st.get("tcp.mixed.downstream_cx_rx_bytes_total") == Some(&(h.len() as u64))
    });
}

#[test]
fn listener_no_match_closes_and_counts() {
    let u = upstreams();
    let yaml = u
        .config()
        .admin()
        .tcp_listener("tls", "127.0.0.1:0")
        .listener_extra("listener_filters: [tls_inspector]")
        .tcp_proxy("cluster: exact")
        .filter_chain_match("server_names: [only.test]")
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let answer = send_in_pieces(proxy.addr, &hello("nope.test", &[]), 1);
    assert!(answer.is_empty(), "{answer:?}");
    // Plain bytes: not TLS, no chain either.
    let answer = send_in_pieces(proxy.addr, b"GET / HTTP/1.1\r\n\r\n", 1);
    assert!(answer.is_empty(), "{answer:?}");
    eventually("no_filter_chain_match counted", || {
        listener_stat(admin_addr, proxy.addr, "no_filter_chain_match") == 2
    });
    assert!(u.rx.try_recv().is_err(), "no upstream saw a connection");
}

/// A v2 PROXY header for a TCP4 connection from `src` to `dst`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

#[test]
fn listener_proxy_protocol_v1_v2_feed_xff_and_access_log() {
    let origin = BenchOrigin::start(&[]);
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let yaml = ConfigBuilder::new()
        .listener("pp", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol: {}]")
        .hcm_extra(&format!(
            "access_log:\n  - path: {}\n    format: \"%DOWNSTREAM_REMOTE_ADDRESS% %REQ(:PATH)%\\n\"",
            log.display()
        ))
        .route_prefix("/", "web")
        .cluster("web", &[origin.addr])
        .yaml();
    let proxy = Proxy::start(&yaml);
    let mut c = Client::connect(proxy.addr);
    c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\nGET /echo HTTP/1.1\r\nHost: pp.test\r\n\r\n");
    let list = echo_header_list(&echo_json(&c.response(false)));
    let xff: Vec<&str> = list
        .iter()
        .filter(|(k, _)| k == "x-forwarded-for")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(xff, ["203.0.113.7"], "{list:?}");
    let mut c = Client::connect(proxy.addr);
    let mut req = proxy_v2(
        "198.51.100.9:5555".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
    );
    req.extend_from_slice(b"GET /v2 HTTP/1.1\r\nHost: pp.test\r\n\r\n");
    c.send(&req);
    assert_eq!(c.response(false).status(), 200);
    drop(c);
    let lines = wait_lines(&log, 2);
    assert_eq!(lines[0], "203.0.113.7:40000 /echo", "{lines:?}");
    assert_eq!(lines[1], "198.51.100.9:5555 /v2", "{lines:?}");
}

#[test]
fn listener_malformed_proxy_header_and_silent_peer_are_closed_and_counted() {
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::new()
        .admin()
        .tcp_listener("pp", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol, tls_inspector]")
        .listener_extra("listener_filters_timeout: 300ms")
        .tcp_proxy("cluster: web")
        .cluster("web", &[origin.addr])
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let mut bad = TcpStream::connect(proxy.addr).expect("connect");
    bad.write_all(b"PROXY TCP4 not-an-address\r\n")
        .expect("write");
    assert!(closed_within(&mut bad, WAIT), "malformed header closed");
    let started = Instant::now();
    let mut silent = TcpStream::connect(proxy.addr).expect("connect");
    assert!(closed_within(&mut silent, WAIT), "silent peer closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A peer that sends half a header and stops: also the timeout.
    let mut half = TcpStream::connect(proxy.addr).expect("connect");
    half.write_all(b"PROXY TCP4 1.2.3.4").expect("write");
    assert!(closed_within(&mut half, WAIT), "half header closed");
    eventually("counted", || {
        listener_stat(admin_addr, proxy.addr, "downstream_listener_filter_error") == 1
            && listener_stat(admin_addr, proxy.addr, "downstream_pre_cx_timeout") == 2
    });
}

#[test]
fn listener_source_prefix_ranges_and_destination_port_from_proxy_header() {
    let u = upstreams();
    let yaml = u
        .config()
        .tcp_listener("pp", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol]")
        .tcp_proxy("cluster: exact")
        .filter_chain_match("destination_port: 8443")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("source_prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }]")
        .tcp_proxy("cluster: default")
        .filter_chain_match("source_prefix_ranges: [\"10.1.0.0/16\"]")
        .yaml();
    let proxy = Proxy::start(&yaml);
    for (src, dst, want) in [
        ("10.9.9.9:1000", "192.0.2.1:80", "wild"),
        ("10.1.2.3:1000", "192.0.2.1:80", "default"),
        ("10.1.2.3:1000", "192.0.2.1:8443", "exact"),
    ] {
        let mut bytes = proxy_v2(src.parse().unwrap(), dst.parse().unwrap());
        bytes.extend_from_slice(b"payload");
        assert_eq!(
            send_in_pieces(proxy.addr, &bytes, 1),
            want.as_bytes(),
            "{src} {dst}"
        );
        let (tag, got) = recorded(&u);
        assert_eq!(tag, want);
        assert_eq!(
            got, b"payload",
            "the PROXY header is consumed, the rest forwarded"
        );
    }
    // Outside every range, not port 8443: no chain.
    let bytes = proxy_v2(
        "172.16.0.1:1".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    assert!(send_in_pieces(proxy.addr, &bytes, 1).is_empty());
}

#[test]
fn listener_config_errors_name_the_field_and_line() {
    let bad = r#"listeners:
  - name: tls
    address: 127.0.0.1:0
    listener_filters: [tls_inspector, original_dst]
    filter_chains:
      - filter_chain_match: { server_names: [a.test, "*.b.test"] }
        filters:
          - tcp_proxy: { cluster: backend }
      - filter_chain_match: { server_names: ["*.b.test", a.test] }
        filters:
          - tcp_proxy: { cluster: backend }
      - filter_chain_match: { transport_protocol: quic }
        filters:
          - tcp_proxy: { cluster: backend }
clusters:
  - name: backend
    endpoints: ["127.0.0.1:9000"]
"#;
    assert_validate_refuses(
        bad,
        &[
        "listeners[0].listener_filters[1]: unknown listener filter \"original_dst\": expected `tls_inspector` or `proxy_protocol` (line 4)",
        "listeners[0].filter_chains[1].filter_chain_match: filter_chain_match (server_names) is the same as listeners[0].filter_chains[0]'s: a connection could not tell them apart (line 9)",
        "listeners[0].filter_chains[2].filter_chain_match.transport_protocol: unknown transport_protocol \"quic\": expected `tls` or `raw_buffer` (line 12)",
        ],
    );
}

#[test]
fn listener_continue_on_timeout_serves_a_server_first_client_as_raw_buffer() {
    let u = upstreams();
    let yaml = u
        .config()
        .admin()
        .tcp_listener("smtp", "127.0.0.1:0")
        .listener_extra(concat!(
            "listener_filters: [tls_inspector]\n",
            "listener_filters_timeout: 200ms\n",
            "continue_on_listener_filters_timeout: true",
        ))
        .tcp_proxy("cluster: exact")
        .filter_chain_match("transport_protocol: tls")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("transport_protocol: raw_buffer")
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    // The client says nothing (it waits for the server's greeting): after the timeout it is
    // matched as raw_buffer and joined to the upstream, which answers.
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"wild");
    let (tag, bytes) = recorded(&u);
    assert_eq!((tag, bytes.len()), ("wild", 0));
    assert_eq!(
        listener_stat(admin_addr, proxy.addr, "downstream_pre_cx_timeout"),
        0
    );
}

#[test]
fn listener_proxy_protocol_optional_serves_plain_clients_and_strict_refuses_them() {
    let origin = BenchOrigin::start(&[]);
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let access_log = format!(
        "access_log:\n  - path: {}\n    format: \"%DOWNSTREAM_REMOTE_ADDRESS% %REQ(:PATH)%\\n\"",
        log.display()
    );
    let yaml = ConfigBuilder::new()
        .admin()
        .listener("optional", "127.0.0.1:0")
        .listener_extra(
            "listener_filters:\n  - proxy_protocol: { allow_requests_without_proxy_protocol: true }",
        )
        .stat_prefix("optional")
        .hcm_extra(&access_log)
        .route_prefix("/", "web")
        .listener("strict", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol]")
        .stat_prefix("strict")
        .hcm_extra(&access_log)
        .route_prefix("/", "web")
        .cluster("web", &[origin.addr])
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let optional = proxy.listeners["optional"];
    let strict = proxy.listeners["strict"];
    // With a header: the header's client.
    let mut c = Client::connect(optional);
    c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\nGET /with HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response(false).status(), 200);
    drop(c);
    wait_lines(&log, 1);
    // Without: served as is, the socket's peer is the client (its first byte decides).
    let mut c = Client::connect(optional);
    let local = c.stream.local_addr().expect("local addr");
    c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
    let list = echo_header_list(&echo_json(&c.response(false)));
    assert!(
        list.iter()
            .any(|(k, v)| k == "x-forwarded-for" && v == "127.0.0.1"),
        "{list:?}"
    );
    drop(c);
    // Something that starts like a header but is not one is still refused.
    let mut bad = TcpStream::connect(optional).expect("connect");
    bad.write_all(b"PROXY SCTP 1.2.3.4\r\n").expect("write");
    assert!(closed_within(&mut bad, WAIT), "a broken header is closed");
    // The strict listener closes a client without a header.
    let mut c = TcpStream::connect(strict).expect("connect");
    c.write_all(b"GET /strict HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    assert!(closed_within(&mut c, WAIT), "strict: no header, closed");
    let lines = wait_lines(&log, 2);
    assert_eq!(lines[0], "203.0.113.7:40000 /with", "{lines:?}");
    assert_eq!(lines[1], format!("{local} /echo"), "{lines:?}");
    eventually("counted", || {
        listener_stat(admin_addr, optional, "proxy_proto.not_found_allowed") == 1
            && listener_stat(admin_addr, optional, "downstream_listener_filter_error") == 1
            && listener_stat(admin_addr, strict, "downstream_listener_filter_error") == 1
    });
}

#[test]
fn listener_stage_closes_are_counted_logged_and_drained() {
    let u = upstreams();
    let dir = scratch_dir();
    let log = dir.join("listener.log");
    let access_log = format!(
        "access_log:\n  - path: {}\n    format: \"%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %DOWNSTREAM_REMOTE_ADDRESS% %BYTES_RECEIVED%\\n\"",
        log.display()
    );
    let yaml = u
        .config()
        .admin()
        .top("drain_timeout: 20s")
        .tcp_listener("edge", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol, tls_inspector]")
        .listener_extra("listener_filters_timeout: 400ms")
        .listener_extra(&access_log)
        .tcp_proxy("cluster: exact")
        .filter_chain_match("server_names: [only.test]")
        .tcp_listener("patient", "127.0.0.1:0")
        .listener_extra("listener_filters: [tls_inspector]")
        .listener_extra("listener_filters_timeout: 0s")
        .listener_extra(&access_log)
        .tcp_proxy("cluster: exact")
        .filter_chain_match("server_names: [only.test]")
        .yaml();
    let (mut proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let edge = proxy.listeners["edge"];
    let patient = proxy.listeners["patient"];
    // No chain for this name (through a PROXY header: the line shows the header's client).
    let mut bytes = proxy_v2(
        "198.51.100.9:5555".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
    );
    let hello = hello("nope.test", &[]);
    bytes.extend_from_slice(&hello);
    assert!(send_in_pieces(edge, &bytes, 1).is_empty());
    let lines = wait_lines(&log, 1);
    assert_eq!(
        lines[0],
        format!(
            "NR filter_chain_not_found 198.51.100.9:5555 {}",
            hello.len()
        ),
        "{lines:?}"
    );
    // A garbage header, then a silent peer (timeout).
    let mut bad = TcpStream::connect(edge).expect("connect");
    let bad_local = bad.local_addr().expect("addr");
    bad.write_all(b"PROXY TCP9 x\r\n").expect("write");
    assert!(closed_within(&mut bad, WAIT));
    let lines = wait_lines(&log, 2);
    assert_eq!(lines[1], format!("- listener_filter_error {bad_local} 14"));
    let mut silent = TcpStream::connect(edge).expect("connect");
    let silent_local = silent.local_addr().expect("addr");
    assert!(closed_within(&mut silent, WAIT));
    let lines = wait_lines(&log, 3);
    assert_eq!(
        lines[2],
        format!("- listener_filters_timeout {silent_local} 0")
    );
    eventually("counted", || {
        let stat = |n| listener_stat(admin_addr, edge, n);
        stat("downstream_cx_total") == 3
            && stat("downstream_cx_active") == 0
            && stat("no_filter_chain_match") == 1
            && stat("downstream_listener_filter_error") == 1
            && stat("downstream_pre_cx_timeout") == 1
    });
    // A peer still in the listener-filter stage (no timeout) is active and held by drain; a
    // graceful shutdown closes it at once, with a line, rather than waiting for drain_timeout.
    let mut waiting = TcpStream::connect(patient).expect("connect");
    let waiting_local = waiting.local_addr().expect("addr");
    waiting.write_all(&hello[..5]).expect("write");
    eventually("active", || {
        listener_stat(admin_addr, patient, "downstream_cx_active") == 1
            && listener_stat(admin_addr, patient, "downstream_cx_total") == 1
    });
    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    assert!(closed_within(&mut waiting, WAIT), "closed on drain");
    proxy.wait_exit(WAIT).expect("ringway exits");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let lines = wait_lines(&log, 4);
    assert_eq!(lines[3], format!("- listener_drained {waiting_local} 5"));
    assert!(u.rx.try_recv().is_err(), "no upstream saw a connection");
}

#[test]
fn listener_destination_ranges_source_type_and_source_ports() {
    let u = upstreams();
    let yaml = u
        .config()
        .tcp_listener("dst", "127.0.0.1:0")
        .listener_extra(
            "listener_filters:\n  - proxy_protocol: { allow_requests_without_proxy_protocol: true }",
        )
        .tcp_proxy("cluster: exact")
        .filter_chain_match("prefix_ranges: [\"127.0.0.1/32\"]")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("prefix_ranges: [\"10.0.0.0/8\"], source_type: EXTERNAL")
        .tcp_proxy("cluster: default")
        .filter_chain_match(
            "prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }], source_ports: [1234]",
        )
        .yaml();
    let proxy = Proxy::start(&yaml);
    // No header: the destination is the socket's (127.0.0.1).
    assert_eq!(send_in_pieces(proxy.addr, b"plain", 1), b"exact");
    assert_eq!(recorded(&u), ("exact", b"plain".to_vec()));
    for (src, dst, want) in [
        // An external client to 10/8: EXTERNAL wins before the port is looked at.
        ("203.0.113.7:1234", "10.1.2.3:80", "wild"),
        ("203.0.113.7:999", "10.1.2.3:80", "wild"),
        // A loopback client to 10/8: not EXTERNAL; then its port picks the chain.
        ("127.0.0.9:1234", "10.1.2.3:80", "default"),
        // The header's destination, not the socket's, is matched.
        ("203.0.113.7:1234", "127.0.0.1:80", "exact"),
    ] {
        let mut bytes = proxy_v2(src.parse().unwrap(), dst.parse().unwrap());
        bytes.extend_from_slice(b"x");
        assert_eq!(
            send_in_pieces(proxy.addr, &bytes, 1),
            want.as_bytes(),
            "{src} -> {dst}"
        );
        assert_eq!(recorded(&u), (want, b"x".to_vec()), "{src} -> {dst}");
    }
    // No chain: a loopback client on another port, a destination outside every range.
    for (src, dst) in [
        ("127.0.0.9:999", "10.1.2.3:80"),
        ("203.0.113.7:1234", "127.0.0.2:80"),
    ] {
        let bytes = proxy_v2(src.parse().unwrap(), dst.parse().unwrap());
        assert!(
            send_in_pieces(proxy.addr, &bytes, 1).is_empty(),
            "{src} -> {dst}"
        );
    }
    assert!(u.rx.try_recv().is_err());
}

/// A v2 PROXY header for TCP4 `src` -> `dst` carrying `tlvs` after the addresses.
fn proxy_v2_with_tlvs(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut h = proxy_v2(src, dst);
    let len = 12 + tlvs.len();
    h[14..16].copy_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

#[test]
fn listener_proxy_v2_tlvs_are_consumed_whole_and_bad_framing_is_refused() {
    let u = upstreams();
    let yaml = u
        .config()
        .admin()
        .tcp_listener("pp", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol]")
        .tcp_proxy("cluster: exact")
        .filter_chain_match("source_prefix_ranges: [\"198.51.100.0/24\"]")
        .tcp_proxy("cluster: wild")
        .filter_chain_match("source_prefix_ranges: [\"10.0.0.0/8\"]")
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    // What load balancers send: an AWS VPC endpoint id (0xEA), ALPN, authority, an SSL TLV
    // with sub-TLVs, a CRC32C and NOOP padding; over 1 KiB in all, sent in small pieces.
    let mut tlvs = Vec::new();
    tlvs.extend_from_slice(&[0xEA, 0, 23, 0x01]);
    tlvs.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    tlvs.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x02, 0, 8]);
    tlvs.extend_from_slice(b"api.test");
    let ssl = [&[0x01u8, 0, 0, 0, 0, 0x21, 0, 7][..], b"TLSv1.3"].concat();
    tlvs.extend_from_slice(&[0x20, 0, ssl.len() as u8]);
    tlvs.extend_from_slice(&ssl);
    tlvs.extend_from_slice(&[0x03, 0, 4, 9, 9, 9, 9, 0x04, 0x04, 0x00]);
    tlvs.extend_from_slice(&[0u8; 1024]);
    let mut bytes = proxy_v2_with_tlvs(
        "198.51.100.9:5555".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
        &tlvs,
    );
    // The payload starts with bytes that look like a TLV: they must not be read as one.
    bytes.extend_from_slice(&[0x04, 0, 1, b'!']);
    bytes.extend_from_slice(b"payload");
    assert_eq!(send_in_pieces(proxy.addr, &bytes, 7), b"exact");
    let (tag, got) = recorded(&u);
    assert_eq!(tag, "exact", "the header's source matched, TLVs and all");
    assert_eq!(got, b"\x04\x00\x01!payload");
    // A TLV that runs past the header's end: closed, counted, nothing forwarded.
    let bad = proxy_v2_with_tlvs(
        "10.1.1.1:1".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
        &[0x02, 0, 200, b'x'],
    );
    assert!(send_in_pieces(proxy.addr, &bad, 1).is_empty());
    eventually("counted", || {
        listener_stat(admin_addr, proxy.addr, "downstream_listener_filter_error") == 1
    });
    assert!(u.rx.try_recv().is_err());
}

#[test]
fn listener_each_chain_counts_under_its_own_stat_prefix() {
    let u = upstreams();
    let yaml = u
        .config()
        .admin()
        .tcp_listener("pp", "127.0.0.1:0")
        .listener_extra("listener_filters: [proxy_protocol]")
        .listener_extra(
            "
            default_filter_chain:
              filters:
                - http_connection_manager:
                    stat_prefix: web
                    virtual_hosts:
                      - name: all
                        domains: [\"*\"]
                        routes:
                          - match: { prefix: / }
                            direct_response: { status: 204 }",
        )
        .tcp_proxy("stat_prefix: alpha\ncluster: exact")
        .filter_chain_match("source_prefix_ranges: [\"10.0.0.0/8\"]")
        .tcp_proxy("stat_prefix: beta\ncluster: wild")
        .filter_chain_match("source_prefix_ranges: [\"10.1.0.0/16\"]")
        // Same prefix as the first chain: the same counters.
        .tcp_proxy("stat_prefix: alpha\ncluster: default")
        .filter_chain_match("source_prefix_ranges: [\"172.16.0.0/12\"]")
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    for (src, want) in [
        ("10.9.9.9:1", "exact"),
        ("10.1.1.1:1", "wild"),
        ("10.1.1.2:1", "wild"),
        ("172.16.0.1:1", "default"),
    ] {
        let mut bytes = proxy_v2(src.parse().unwrap(), "192.0.2.1:80".parse().unwrap());
        bytes.extend_from_slice(b"abc");
        assert_eq!(send_in_pieces(proxy.addr, &bytes, 1), want.as_bytes());
        assert_eq!(recorded(&u), (want, b"abc".to_vec()));
    }
    let mut bytes = proxy_v2(
        "192.168.0.1:1".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let answer = send_in_pieces(proxy.addr, &bytes, 1);
    assert!(answer.starts_with(b"HTTP/1.1 204"), "{answer:?}");
    eventually("each chain's counters", || {
        let st = admin_stats(admin_addr);
        let stat = |n: &str| st.get(n).copied().unwrap_or(0);
        stat("tcp.alpha.downstream_cx_total") == 2
            && stat("tcp.alpha.downstream_cx_rx_bytes_total") == 6
            && stat("tcp.beta.downstream_cx_total") == 2
            && stat("tcp.beta.downstream_cx_rx_bytes_total") == 6
            && stat("http.web.downstream_rq_total") == 1
            && stat("http.web.downstream_rq_2xx") == 1
            && listener_stat(admin_addr, proxy.addr, "downstream_cx_total") == 5
    });
    let doc = admin_json(admin_addr);
    for (name, count) in [
        ("tcp.alpha.downstream_cx_length", 2),
        ("tcp.beta.downstream_cx_length", 2),
        ("http.web.downstream_rq_time", 1),
    ] {
        let h = json_hist(&doc, name).unwrap_or_else(|| panic!("{name}: {doc}"));
        assert_eq!(h["count"], count, "{name}: {h}");
    }
}
