//! TLS origination (`tls:` on a cluster): plain HTTP clients through the proxy to real rustls
//! origins run in this process, certificates from scripts/gen-certs.sh (and an expired one from
//! the openssl CLI) made at run time. Covers keep-alive reuse of TLS upstream connections (also
//! after the origin sends a TLS 1.3 KeyUpdate while the connection sits idle in the pool), SNI,
//! subject_alt_names, refused certificates (unknown CA, wrong name, expired), an upstream that
//! does not speak TLS or says nothing, client certificates, large bodies both ways, `tcp_proxy`
//! to a TLS cluster, and config errors.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    thread,
    time::Duration,
};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Run `cmd` within `limit`; it must succeed.
fn run_ok(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let out = run_bounded(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The certificates, made once per test binary: gen-certs.sh's set, plus `expired.crt/.key`
/// (signed by the same CA, valid only in January 2020, SAN DNS:a.example.test).
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringway-tls-orig-{}", std::process::id()));
        gen_certs(&d);
        // `openssl ca` takes explicit start and end dates (OpenSSL 3.0's `x509 -req` does not).
        let p = |f: &str| d.join(f).display().to_string();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {}\nnew_certs_dir = {}\nserial = {}\n\
                 default_md = sha256\npolicy = p\ncopy_extensions = copy\n[p]\ncommonName = supplied\n",
                p("index.txt"),
                d.display(),
                p("serial")
            ),
        )
        .unwrap();
        run_ok(
            Command::new("openssl").args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=a.example.test",
                "-addext",
                "subjectAltName=DNS:a.example.test",
                "-keyout",
                &p("expired.key"),
                "-out",
                &p("expired.csr"),
            ]),
            WAIT,
        );
        run_ok(
            Command::new("openssl").args([
                "ca",
                "-batch",
                "-notext",
                "-config",
                &p("ca.cnf"),
                "-cert",
                &p("ca.crt"),
                "-keyfile",
                &p("ca.key"),
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
                "-in",
                &p("expired.csr"),
                "-out",
                &p("expired.crt"),
            ]),
            WAIT,
        );
        d
    })
}

fn file(name: &str) -> String {
    certs().join(name).display().to_string()
}

fn chain(stem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(file(&format!("{stem}.crt")))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn key(stem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(file(&format!("{stem}.key"))).unwrap()
}

/// What an origin saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    sni: Mutex<Vec<Option<String>>>,
    client_certs: AtomicUsize,
}

/// A TLS origin: HTTP/1.1 keep-alive; `GET /bytes/N` answers N bytes, `POST` answers
/// `len=N` for the body it read, `GET /until-close/{notify,cut}` a close-delimited body (see
/// [`serve`]), anything else `ok`. With `key_update`, 150 ms after each
/// response it sends a TLS 1.3 KeyUpdate (a post-handshake message) on the idle connection.
struct TlsOrigin {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl TlsOrigin {
    fn start(stem: &str, require_client_cert: bool, key_update: bool) -> TlsOrigin {
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in chain("ca") {
                roots.add(c).unwrap();
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        let cfg = Arc::new(builder.with_single_cert(chain(stem), key(stem)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = Arc::clone(&seen);
        thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (cfg, s) = (Arc::clone(&cfg), Arc::clone(&s));
                thread::spawn(move || serve(sock, cfg, &s, key_update));
            }
        });
        TlsOrigin { addr, seen }
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }
}

fn serve(sock: TcpStream, cfg: Arc<rustls::ServerConfig>, seen: &Seen, key_update: bool) {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    seen.sni
        .lock()
        .unwrap()
        .push(tls.conn.server_name().map(str::to_owned));
    if tls.conn.peer_certificates().is_some() {
        seen.client_certs.fetch_add(1, Ordering::SeqCst);
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len = head_content_length(&head);
        while buf.len() < head_end + len {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body: Vec<u8> = if head.starts_with("POST") {
            format!("len={len}").into_bytes()
        } else if let Some(n) = path.strip_prefix("/bytes/") {
            (0..n.parse::<usize>().unwrap())
                .map(|i| (i % 251) as u8)
                .collect()
        } else {
            b"ok".to_vec()
        };
        buf.drain(..head_end + len);
        // `/until-close/notify`, `/until-close/cut`: a body delimited by the end of the
        // connection, ended with TLS's close_notify, or by closing the socket without it (what a
        // truncation attack looks like).
        if let Some(how) = path.strip_prefix("/until-close/") {
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\nthe whole body");
            if how == "notify" {
                tls.conn.send_close_notify();
            }
            let _ = tls.flush();
            return;
        }
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        if tls.write_all(&out).and_then(|()| tls.flush()).is_err() {
            return;
        }
        if key_update {
            thread::sleep(Duration::from_millis(150));
            if tls.conn.refresh_traffic_keys().is_err() || tls.flush().is_err() {
                return;
            }
        }
    }
}

/// A proxy with one HTTP route to cluster `origin` at `addr`, which has `tls: {tls}`.
fn config(addr: SocketAddr, tls: &str) -> String {
    ConfigBuilder::new()
        .stat_prefix("t")
        .route_prefix("/", "origin")
        .cluster("origin", &[addr])
        .connect_timeout("1s")
        .admin()
        .cluster_extra(&format!("tls: {{ {tls} }}"))
        .yaml()
}

fn ca() -> String {
    format!("ca: {{ filename: {} }}", file("ca.crt"))
}

fn stat(admin: SocketAddr, name: &str) -> u64 {
    admin_stats(admin).get(name).copied().unwrap_or(0)
}

fn refused_with_tls_failure(addr: SocketAddr) {
    let r = get(addr, "x", "/");
    assert_eq!(r.status(), 503, "{}", r.body_str());
    assert_eq!(r.header("x-ringway-reason"), Some("upstream_tls_failure"));
}

#[test]
fn tls_upstream_connections_are_reused_across_requests_and_post_handshake_messages() {
    let origin = TlsOrigin::start("a.example.test", false, true);
    let yaml = config(
        origin.addr,
        &format!("sni: a.example.test, verify: {{ {} }}", ca()),
    );
    let (proxy, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..5 {
        let r = c.get("x", "/");
        assert_eq!(r.status(), 200, "{}", r.body_str());
        assert_eq!(r.body_str(), "ok");
        // Long enough for the origin's KeyUpdate to reach the idle pooled connection.
        thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        origin.connections(),
        1,
        "a KeyUpdate on an idle pooled connection must not make the proxy drop it"
    );
    assert_eq!(stat(admin, "cluster.origin.upstream_cx_pool_reuse"), 4);
    assert_eq!(stat(admin, "cluster.origin.ssl.handshake"), 1);
    assert_eq!(
        *origin.seen.sni.lock().unwrap(),
        vec![Some("a.example.test".to_string())]
    );
    assert!(proxy.stop().success());
}

#[test]
fn large_bodies_cross_a_tls_upstream_intact_both_ways() {
    let origin = TlsOrigin::start("a.example.test", false, false);
    let yaml = config(
        origin.addr,
        &format!("sni: a.example.test, verify: {{ {} }}", ca()),
    );
    let (proxy, _admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    const N: usize = 8 << 20;
    let r = get(proxy.addr, "x", &format!("/bytes/{N}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.body.len(), N);
    assert!(
        r.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8),
        "the download differs from the origin's bytes"
    );
    let mut up =
        format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {N}\r\n\r\n").into_bytes();
    up.extend((0..N).map(|i| (i % 7) as u8));
    let r = request(proxy.addr, &up);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str(), format!("len={N}"));
    assert!(proxy.stop().success());
}

#[test]
fn subject_alt_names_replace_the_sni_name_in_the_check() {
    let origin = TlsOrigin::start("a.example.test", false, false);
    // SNI names something else; the certificate is accepted for a SAN in the list.
    let ok = config(
        origin.addr,
        &format!(
            "sni: other.example.test, verify: {{ {}, subject_alt_names: [b.example.test, a.example.test] }}",
            ca()
        ),
    );
    let (proxy, _admin) = Proxy::start_with_admin(&ok, &["--workers", "1"]);
    assert_eq!(get(proxy.addr, "x", "/").status(), 200);
    assert_eq!(
        origin.seen.sni.lock().unwrap().last().cloned().flatten(),
        Some("other.example.test".to_string())
    );
    assert!(proxy.stop().success());
    // No listed name on the certificate: refused.
    let bad = config(
        origin.addr,
        &format!(
            "sni: a.example.test, verify: {{ {}, subject_alt_names: [b.example.test] }}",
            ca()
        ),
    );
    let (proxy, admin) = Proxy::start_with_admin(&bad, &["--workers", "1"]);
    refused_with_tls_failure(proxy.addr);
    assert_eq!(stat(admin, "cluster.origin.ssl.connection_error"), 1);
    assert!(proxy.stop().success());
}

#[test]
fn wrong_name_unknown_ca_and_expired_certificates_are_refused() {
    let origin = TlsOrigin::start("a.example.test", false, false);
    let expired = TlsOrigin::start("expired", false, false);
    // The SNI name is not on the certificate.
    let (proxy, _a) = Proxy::start_with_admin(
        &config(
            origin.addr,
            &format!("sni: b.example.test, verify: {{ {} }}", ca()),
        ),
        &["--workers", "1"],
    );
    refused_with_tls_failure(proxy.addr);
    assert!(proxy.stop().success());
    // No SNI: the certificate is checked against the endpoint's address, which it lacks.
    let (proxy, _a) = Proxy::start_with_admin(
        &config(origin.addr, &format!("verify: {{ {} }}", ca())),
        &["--workers", "1"],
    );
    refused_with_tls_failure(proxy.addr);
    assert!(proxy.stop().success());
    // A CA that did not sign it (the leaf itself as the only root).
    let (proxy, _a) = Proxy::start_with_admin(
        &config(
            origin.addr,
            &format!(
                "sni: a.example.test, verify: {{ ca: {{ filename: {} }} }}",
                file("b.example.test.crt")
            ),
        ),
        &["--workers", "1"],
    );
    refused_with_tls_failure(proxy.addr);
    assert!(proxy.stop().success());
    // Expired (valid only in January 2020), otherwise right.
    let (proxy, _a) = Proxy::start_with_admin(
        &config(
            expired.addr,
            &format!("sni: a.example.test, verify: {{ {} }}", ca()),
        ),
        &["--workers", "1"],
    );
    refused_with_tls_failure(proxy.addr);
    // Still serving, and nothing was proxied to either origin.
    assert_eq!(origin.seen.requests.load(Ordering::SeqCst), 0);
    assert_eq!(expired.seen.requests.load(Ordering::SeqCst), 0);
    // insecure_skip_verify takes it.
    assert!(proxy.stop().success());
    let (proxy, _a) = Proxy::start_with_admin(
        &config(
            expired.addr,
            "sni: a.example.test, verify: { insecure_skip_verify: true }",
        ),
        &["--workers", "1"],
    );
    assert_eq!(get(proxy.addr, "x", "/").status(), 200);
    assert!(proxy.stop().success());
}

#[test]
fn the_access_log_says_why_an_upstream_handshake_failed() {
    let expired = TlsOrigin::start("expired", false, false);
    let needs_cert = TlsOrigin::start("a.example.test", true, false);
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringway-tls-orig-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let yaml = ConfigBuilder::new()
        .stat_prefix("t")
        .hcm_extra(&format!(
            "access_log: [{{ path: {}, format: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON%\" }}]",
            yaml_str(&log.display().to_string())
        ))
        .route_prefix("/expired", "expired")
        .route_prefix("/", "needs_cert")
        .cluster("expired", &[expired.addr])
        .cluster_extra(&format!("tls: {{ sni: a.example.test, verify: {{ {} }} }}", ca()))
        .cluster("needs_cert", &[needs_cert.addr])
        .cluster_extra(&format!("tls: {{ sni: a.example.test, verify: {{ {} }} }}", ca()))
        .yaml();
    let proxy = Proxy::start(&yaml);
    refused_with_tls_failure_at(proxy.addr, "/expired");
    // TLS 1.3: the origin refuses the missing client certificate after the proxy's side of the
    // handshake is done, on the first read: still a TLS failure, not an upstream reset.
    refused_with_tls_failure_at(proxy.addr, "/x");
    let mut lines = Vec::new();
    eventually("two log lines", || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() == 2
    });
    assert_eq!(lines[0], "/expired 503 UF certificate_expired");
    assert_eq!(lines[1], "/x 503 UF alert_received");
    assert!(proxy.stop().success());
}

fn refused_with_tls_failure_at(addr: SocketAddr, path: &str) {
    let r = get(addr, "x", path);
    assert_eq!(r.status(), 503, "{}", r.body_str());
    assert_eq!(r.header("x-ringway-reason"), Some("upstream_tls_failure"));
}

#[test]
fn an_upstream_that_does_not_speak_tls_or_says_nothing_is_a_503_not_a_hang() {
    // Plain HTTP origin: it answers the ClientHello with a 400 and closes.
    let plain = BenchOrigin::start(&[]);
    // Accepts and never says a word: bounded by connect_timeout (1s).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&held);
    thread::spawn(move || {
        for s in silent.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    for addr in [plain.addr, silent_addr] {
        let (proxy, admin) = Proxy::start_with_admin(
            &config(
                addr,
                &format!("sni: a.example.test, verify: {{ {} }}", ca()),
            ),
            &["--workers", "1"],
        );
        let t = std::time::Instant::now();
        refused_with_tls_failure(proxy.addr);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(stat(admin, "cluster.origin.ssl.connection_error"), 1);
        assert!(proxy.stop().success());
    }
}

#[test]
fn a_client_certificate_is_presented_to_an_origin_that_requires_one() {
    let origin = TlsOrigin::start("a.example.test", true, false);
    let with = config(
        origin.addr,
        &format!(
            "sni: a.example.test, verify: {{ {} }}, client_cert: {{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}",
            ca(),
            file("client.crt"),
            file("client.key")
        ),
    );
    let (proxy, _a) = Proxy::start_with_admin(&with, &["--workers", "1"]);
    assert_eq!(get(proxy.addr, "x", "/").status(), 200);
    assert_eq!(origin.seen.client_certs.load(Ordering::SeqCst), 1);
    assert!(proxy.stop().success());
    let without = config(
        origin.addr,
        &format!("sni: a.example.test, verify: {{ {} }}", ca()),
    );
    let (proxy, _a) = Proxy::start_with_admin(&without, &["--workers", "1"]);
    // TLS 1.3: the client finishes its side before the server refuses; the refusal (an
    // alert) arrives with the first read: a reset before any response.
    refused_with_tls_failure(proxy.addr);
    assert_eq!(origin.seen.requests.load(Ordering::SeqCst), 1);
    assert!(proxy.stop().success());
}

#[test]
fn tcp_proxy_originates_tls_to_its_cluster() {
    let origin = TlsOrigin::start("a.example.test", false, false);
    let yaml = format!(
        "listeners:
  - name: tcp
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - tcp_proxy: {{ stat_prefix: t, cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: [\"{}\"]
    tls: {{ sni: a.example.test, verify: {{ {} }} }}
",
        origin.addr,
        ca()
    );
    let proxy = Proxy::start_args(&yaml, &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..3 {
        let r = c.get("x", "/");
        assert_eq!(r.status(), 200);
        assert_eq!(r.body_str(), "ok");
    }
    assert_eq!(origin.connections(), 1);
    drop(c);
    assert!(proxy.stop().success());
}

#[test]
fn bad_upstream_tls_config_is_refused_with_the_field() {
    let base = |tls: &str| config("127.0.0.1:1".parse().unwrap(), tls);
    assert_validate_refuses_with(
        &base("sni: 127.0.0.1"),
        &["clusters[0].tls.sni", "is an IP address"],
    );
    assert_validate_refuses_with(
        &base("verify: { ca: { filename: /nonexistent/ca.pem } }"),
        &["clusters[0].tls.verify.ca.filename", "cannot read"],
    );
    assert_validate_refuses_with(
        &base(&format!(
            "client_cert: {{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}",
            file("client.crt"),
            file("a.example.test.key")
        )),
        &["clusters[0].tls.client_cert.private_key", "does not match"],
    );
    assert_validate_refuses_with(
        &base("verify: { cert: x }"),
        &["clusters[0].tls.verify", "cert"],
    );
    assert_validate_refuses_with(
        &format!(
            "{}tracing: {{ collector: {{ cluster: origin }} }}\n",
            base("sni: a.example.test, verify: { insecure_skip_verify: true }")
        ),
        &["tracing.collector.cluster", "plain HTTP"],
    );
    assert_validate_refuses_with(
        &base("tls_params: { tls_minimum_protocol_version: TLSv1_1 }"),
        &["tls_minimum_protocol_version", "not supported"],
    );
}

/// RFC 9112 §9.8: a body delimited by the end of a TLS connection is whole only if the
/// connection ended with close_notify; a close without it may be an attacker's truncation. The
/// client gets the first as a whole (chunked) response and the second cut short: the last chunk
/// never comes and the connection closes.
#[test]
fn a_close_delimited_body_is_whole_only_with_close_notify() {
    let origin = TlsOrigin::start("a.example.test", false, false);
    let yaml = config(
        origin.addr,
        &format!("sni: a.example.test, verify: {{ {} }}", ca()),
    );
    let proxy = Proxy::start(&yaml);
    let mut c = Client::connect(proxy.addr);
    let r = c.get("x", "/until-close/notify");
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body_str(), "the whole body");
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /until-close/cut HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        c.try_response(false).is_none(),
        "a body cut without close_notify reached the client as whole"
    );
    assert!(proxy.stop().success());
}
