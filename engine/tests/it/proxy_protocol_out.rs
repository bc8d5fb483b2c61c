//! PROXY protocol out (`upstream_proxy_protocol` on a cluster): origins written here parse the
//! header with the crate's own parser (`ringway_engine::l4proto::proxy_protocol`) and answer
//! with what they saw, so each test checks, from the client's side, the header its request's
//! upstream connection started with: v1 and v2, the client's own address as the source and the
//! proxy's listener as the destination, the header in front of a whole body and of a streamed
//! one, one header per upstream connection under keep-alive, never another client's connection
//! (the pool keys such connections by the downstream addresses), `tcp_proxy` with the header
//! before the stream's bytes, and the config errors.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Instant,
};

use ringway_engine::l4proto::proxy_protocol::{self, Parsed, Version};
use support::*;

/// What an origin connection's PROXY header said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The origin's connection number, from 1.
    conn: usize,
    version: Version,
    /// (source, destination), or `None` for a header without addresses.
    proxied: Option<(SocketAddr, SocketAddr)>,
}

/// An origin on a std socket that reads a PROXY header first on every connection, then hands
/// the connection (and the bytes after the header) to `serve`. Connections without a valid
/// header are recorded as errors and closed.
struct PpOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

type Serve = fn(TcpStream, Vec<u8>, &Seen);

impl PpOrigin {
    fn start(serve: Serve) -> PpOrigin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = l.local_addr().expect("origin addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, e2) = (Arc::clone(&seen), Arc::clone(&errors));
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
                let (seen, errors) = (Arc::clone(&s2), Arc::clone(&e2));
                thread::spawn(move || match read_header(&s, conn) {
                    Ok((h, rest)) => {
                        seen.lock().expect("lock").push(h.clone());
                        serve(s, rest, &h);
                    }
                    Err(e) => errors
                        .lock()
                        .expect("lock")
                        .push(format!("conn {conn}: {e}")),
                });
            }
        });
        PpOrigin { addr, seen, errors }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn assert_no_errors(&self) {
        let e = self.errors.lock().expect("lock");
        assert!(e.is_empty(), "origin errors: {e:?}");
    }
}

/// Read until the bytes hold a whole PROXY header; give it back with the bytes after it.
fn read_header(mut s: &TcpStream, conn: usize) -> Result<(Seen, Vec<u8>), String> {
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match proxy_protocol::parse(&buf) {
            Ok(Parsed::Complete(h)) => {
                let seen = Seen {
                    conn,
                    version: h.version,
                    proxied: h.proxied(),
                };
                return Ok((seen, buf[h.len..].to_vec()));
            }
            Ok(Parsed::Incomplete { .. }) => {}
            Err(e) => return Err(format!("{e}: {:?}", String::from_utf8_lossy(&buf))),
        }
        match s.read(&mut tmp) {
            Ok(0) => return Err(format!("EOF before a header: {buf:?}")),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// HTTP/1.1 keep-alive: each request (Content-Length or chunked body) is answered with a body
/// saying which connection it came on and what its header said:
/// `conn=N version=V1 src=IP:PORT dst=IP:PORT body=BYTES`.
fn serve_http(mut s: TcpStream, mut buf: Vec<u8>, h: &Seen) {
    let mut tmp = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        // A whole request in `buf`? (A second PROXY header would not parse as one.)
        if let Some((used, body)) = whole_request(&buf) {
            let (src, dst) = match h.proxied {
                Some((s, d)) => (s.to_string(), d.to_string()),
                None => ("-".into(), "-".into()),
            };
            let text = format!(
                "conn={} version={:?} src={src} dst={dst} body={}",
                h.conn,
                h.version,
                String::from_utf8_lossy(&body)
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            );
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
            buf.drain(..used);
            continue;
        }
        if Instant::now() > deadline {
            return;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// A whole request at the start of `buf`: (bytes it takes, its body, dechunked).
fn whole_request(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    assert!(
        head.starts_with("get ") || head.starts_with("post "),
        "not a request: {head:?}"
    );
    if head.contains("transfer-encoding: chunked") {
        let (body, used) = dechunk(&buf[end..])?;
        return Some((end + used, body));
    }
    let cl = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= end + cl).then(|| (end + cl, buf[end..end + cl].to_vec()))
}

/// `tcp_proxy`: echo the stream's bytes after the header.
fn serve_echo(mut s: TcpStream, rest: Vec<u8>, _: &Seen) {
    if s.write_all(&rest).is_err() {
        return;
    }
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&tmp[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// An HTTP listener routing everything to cluster `origin` at `origin`, with `keys` on it.
fn http_config(origin: SocketAddr, keys: &str) -> String {
    ConfigBuilder::simple(origin).cluster_extra(keys).yaml()
}

/// The origin's answer, split into its fields.
fn fields(r: &RawMessage) -> std::collections::HashMap<String, String> {
    assert_eq!(r.status(), 200, "{}", r.body_str());
    r.body_str()
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The client's own address, as the proxy sees it.
fn local(c: &Client) -> String {
    c.stream.local_addr().expect("client addr").to_string()
}

#[test]
fn proxy_protocol_out_v1_and_v2_name_the_client_and_the_listener() {
    for (key, version) in [("v1", "V1"), ("V2", "V2")] {
        let origin = PpOrigin::start(serve_http);
        let yaml = http_config(
            origin.addr,
            &format!("upstream_proxy_protocol: {{version: {key}}}"),
        );
        let proxy = Proxy::start(&yaml);
        let mut c = Client::connect(proxy.addr);
        let f = fields(&c.get("a", "/"));
        assert_eq!(f["version"], version);
        assert_eq!(f["src"], local(&c), "the source is the client's socket");
        assert!(f["src"].starts_with("127.0.0.1:"));
        assert_eq!(
            f["dst"],
            proxy.addr.to_string(),
            "the destination is the listener"
        );
        let seen = origin.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        origin.assert_no_errors();
    }
}

#[test]
fn proxy_protocol_out_header_goes_before_whole_and_streamed_bodies() {
    let origin = PpOrigin::start(serve_http);
    let proxy = Proxy::start(&http_config(
        origin.addr,
        "upstream_proxy_protocol: {version: v2}\nmax_idle_per_endpoint: 0",
    ));
    // A whole body (sent with the head), then a streamed one (chunked, sent after the head): with
    // no pooling each goes on a new connection, whose header comes first.
    let mut c = Client::connect(proxy.addr);
    let f = fields(&c.roundtrip(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"));
    assert_eq!((f["body"].as_str(), f["src"].clone()), ("hello", local(&c)));
    c.send(b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    thread::sleep(std::time::Duration::from_millis(50));
    let f = fields(&c.roundtrip(b"2\r\nde\r\n0\r\n\r\n"));
    assert_eq!((f["body"].as_str(), f["src"].clone()), ("abcde", local(&c)));
    assert_eq!(f["conn"], "2");
    assert_eq!(origin.seen().len(), 2);
    origin.assert_no_errors();
}

#[test]
fn proxy_protocol_out_keep_alive_sends_one_header_per_upstream_connection() {
    let origin = PpOrigin::start(serve_http);
    let proxy = Proxy::start(&http_config(
        origin.addr,
        "upstream_proxy_protocol: {version: v1}",
    ));
    let mut c = Client::connect(proxy.addr);
    let first = fields(&c.get("a", "/1"));
    let second = fields(&c.get("a", "/2"));
    assert_eq!(
        first["conn"], second["conn"],
        "the upstream connection was reused"
    );
    assert_eq!(first["src"], local(&c));
    assert_eq!(second["src"], local(&c));
    // One connection, one header: a second header would have failed the origin's request parse.
    assert_eq!(origin.seen().len(), 1);
    origin.assert_no_errors();
}

#[test]
fn proxy_protocol_out_never_shares_an_upstream_connection_between_clients() {
    let origin = PpOrigin::start(serve_http);
    let proxy = Proxy::start(&http_config(
        origin.addr,
        "upstream_proxy_protocol: {version: v2}",
    ));
    let mut a = Client::connect(proxy.addr);
    let mut b = Client::connect(proxy.addr);
    // A's upstream connection is idle in the pool when B asks, and again when A asks.
    let a1 = fields(&a.get("a", "/"));
    let b1 = fields(&b.get("a", "/"));
    let a2 = fields(&a.get("a", "/"));
    let b2 = fields(&b.get("a", "/"));
    assert_eq!(
        (a1["src"].clone(), a2["src"].clone()),
        (local(&a), local(&a))
    );
    assert_eq!(
        (b1["src"].clone(), b2["src"].clone()),
        (local(&b), local(&b))
    );
    assert_ne!(a1["conn"], b1["conn"], "B must not get A's connection");
    assert_eq!(a1["conn"], a2["conn"], "A gets its own connection back");
    assert_eq!(b1["conn"], b2["conn"], "B gets its own connection back");
    // A third client after A closed: a connection of its own too.
    drop(a);
    let mut c = Client::connect(proxy.addr);
    let c1 = fields(&c.get("a", "/"));
    assert_eq!(c1["src"], local(&c));
    assert!(c1["conn"] != a1["conn"] && c1["conn"] != b1["conn"]);
    assert_eq!(origin.seen().len(), 3);
    origin.assert_no_errors();
}

#[test]
fn proxy_protocol_out_cluster_without_it_still_shares_connections() {
    // The control: a plain cluster reuses one upstream connection for both clients (what the
    // keyed pool must not do for a cluster with the header).
    let (origin, n) = RawOrigin::counting("ok", std::time::Duration::ZERO);
    let proxy = Proxy::start(&http_config(origin.addr, "idle_timeout: 60s"));
    let mut a = Client::connect(proxy.addr);
    let mut b = Client::connect(proxy.addr);
    assert_eq!(a.get("a", "/").status(), 200);
    assert_eq!(b.get("a", "/").status(), 200);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(origin.connection_count(), 1);
    assert!(!origin.received_bytes().starts_with(b"PROXY"));
}

#[test]
fn proxy_protocol_out_tcp_proxy_sends_the_header_before_the_stream() {
    for (key, version) in [("V1", Version::V1), ("v2", Version::V2)] {
        let origin = PpOrigin::start(serve_echo);
        let yaml = format!(
            "listeners:
  - name: tcp
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - tcp_proxy:
              stat_prefix: pp
              cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    upstream_proxy_protocol: {{version: {key}}}
    endpoints: [\"{}\"]
",
            origin.addr
        );
        let proxy = Proxy::start(&yaml);
        let mut s = TcpStream::connect_timeout(&proxy.addr, WAIT).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(b"hello through the tunnel").expect("write");
        let mut got = [0u8; 24];
        s.read_exact(&mut got).expect("echo");
        assert_eq!(&got, b"hello through the tunnel");
        let me = s.local_addr().expect("addr");
        assert_eq!(
            origin.seen(),
            vec![Seen {
                conn: 1,
                version,
                proxied: Some((me, proxy.addr)),
            }]
        );
        origin.assert_no_errors();
    }
}

#[test]
fn proxy_protocol_out_config_errors_name_the_field_and_line() {
    let yaml = "listeners:
  - name: main
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: main
              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: { prefix: / }
                      route: { cluster: a }
clusters:
  - name: a
    endpoints: [\"127.0.0.1:9000\"]
    upstream_proxy_protocol: { version: v3 }
  - name: b
    endpoints: [\"127.0.0.1:9001\"]
    upstream_proxy_protocol: { version: V2, pass_through_tlvs: {} }
";
    let lines = assert_validate_refuses(
        yaml,
        &[
            "clusters[0].upstream_proxy_protocol.version: unknown variant `v3`, expected `v1` or `v2` (line 17)",
            "clusters[1].upstream_proxy_protocol.pass_through_tlvs: unknown key, expected `version` (line 20)",
        ],
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn proxy_protocol_out_carries_the_incoming_headers_addresses() {
    // A PROXY header in (a load balancer in front) and one out: the upstream sees the
    // original client and the original destination from the incoming header, on the
    // tcp_proxy path and on the HTTP path (where a plain client on the same listener still
    // gets the listener's address).
    let tcp_origin = PpOrigin::start(serve_echo);
    let http_origin = PpOrigin::start(serve_http);
    let yaml = format!(
        "listeners:
  - name: tcp
    address: 127.0.0.1:0
    listener_filters: [proxy_protocol]
    filter_chains:
      - filters:
          - tcp_proxy: {{ cluster: tcp_backend }}
  - name: http
    address: 127.0.0.1:0
    listener_filters:
      - proxy_protocol: {{ allow_requests_without_proxy_protocol: true }}
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: http_backend }}
clusters:
  - name: tcp_backend
    upstream_proxy_protocol: {{version: v2}}
    endpoints: [\"{}\"]
  - name: http_backend
    upstream_proxy_protocol: {{version: v1}}
    endpoints: [\"{}\"]
",
        tcp_origin.addr, http_origin.addr
    );
    let proxy = Proxy::start(&yaml);
    let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let dst: SocketAddr = "192.0.2.1:443".parse().unwrap();
    let mut s = TcpStream::connect_timeout(&proxy.listeners["tcp"], WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut bytes = bytes::BytesMut::new();
    proxy_protocol::encode_v1(Some((client, dst)), &mut bytes);
    bytes.extend_from_slice(b"tunnelled");
    s.write_all(&bytes).expect("write");
    let mut got = [0u8; 9];
    s.read_exact(&mut got).expect("echo");
    assert_eq!(&got, b"tunnelled");
    assert_eq!(
        tcp_origin.seen(),
        vec![Seen {
            conn: 1,
            version: Version::V2,
            proxied: Some((client, dst)),
        }]
    );
    tcp_origin.assert_no_errors();

    let http = proxy.listeners["http"];
    let mut c = Client::connect(http);
    let mut head = bytes::BytesMut::new();
    proxy_protocol::encode_v1(Some((client, dst)), &mut head);
    c.send(&head);
    // Two requests on the connection: the destination is the header's both times.
    for _ in 0..2 {
        let f = fields(&c.get("a", "/"));
        assert_eq!(
            (f["src"].as_str(), f["dst"].as_str()),
            ("203.0.113.7:40000", "192.0.2.1:443")
        );
    }
    let mut plain = Client::connect(http);
    let f = fields(&plain.get("a", "/"));
    assert_eq!(
        (f["src"].clone(), f["dst"].clone()),
        (local(&plain), http.to_string())
    );
    http_origin.assert_no_errors();
}
