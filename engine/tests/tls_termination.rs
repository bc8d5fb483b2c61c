//! TLS termination (`tls:` on a filter chain): real rustls clients (and the openssl CLI where
//! rustls cannot be told to behave like an RSA-only client) against the proxy, certificates from
//! scripts/gen-certs.sh made at run time. Covers HTTPS proxied to a plain origin
//! (`x-forwarded-proto: https`), keep-alive, large bodies both ways, certificates chosen by SNI
//! and by key type, chains picked by `tls_inspector`, ALPN, version limits, mTLS, resumption,
//! bad handshakes closed and counted, and config errors.
mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use support::*;

/// Run `cmd` to its end, output captured; fails the test past `limit` (the script makes RSA
/// keys: generous for a loaded machine).
fn run_bounded(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (needs openssl: scripts/test.sh installs it)"));
    let until = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The certificates, made once per test binary.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringway-tls-term-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen-certs.sh");
        let out = run_bounded(Command::new(script).arg(&d), Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    })
}

fn cert(stem: &str) -> String {
    certs().join(format!("{stem}.crt")).display().to_string()
}

fn key(stem: &str) -> String {
    certs().join(format!("{stem}.key")).display().to_string()
}

/// `{certificate_chain, private_key}` for a gen-certs stem.
fn pair(stem: &str) -> String {
    format!(
        "{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}",
        cert(stem),
        key(stem)
    )
}

/// A config whose one chain terminates TLS with `tls` (a flow map's inside) in front of an HTTP
/// connection manager to `origin`.
fn https_config(origin: SocketAddr, tls: &str, chain_extra: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: tls
    address: 127.0.0.1:0
    filter_chains:
      - tls: {{ {tls} }}
{chain_extra}        filters:
          - http_connection_manager:
              stat_prefix: tls
              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: [\"{origin}\"]
"
    )
}

fn roots() -> rustls::RootCertStore {
    let mut r = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert("ca")).unwrap() {
        r.add(c.unwrap()).unwrap();
    }
    r
}

fn client_config(alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder()
        .with_root_certificates(roots())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(c)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect and complete the handshake.
fn connect(addr: SocketAddr, name: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(WAIT))?;
    sock.set_write_timeout(Some(WAIT))?;
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from(name.to_owned()).unwrap())
        .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One request and its response (Content-Length framed): (status, headers, body).
fn exchange(tls: &mut Tls, req: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    tls.write_all(req)?;
    tls.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, head, body))
}

fn get(tls: &mut Tls, path: &str) -> (u16, String, Vec<u8>) {
    exchange(
        tls,
        format!("GET {path} HTTP/1.1\r\nHost: a.example.test\r\n\r\n").as_bytes(),
    )
    .expect("an HTTPS exchange")
}

fn stat(admin: SocketAddr, suffix: &str) -> u64 {
    admin_stats(admin)
        .iter()
        .find(|(k, _)| k.starts_with("listener.") && k.ends_with(suffix))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no listener stat *{suffix}"))
}

#[test]
fn https_is_proxied_to_a_plain_origin_with_keep_alive_and_large_bodies() {
    let origin = BenchOrigin::start(&[]);
    let yaml = https_config(
        origin.addr,
        &format!(
            "tls_certificates: [{}], alpn_protocols: [http/1.1]",
            pair("a.example.test")
        ),
        "",
    );
    let (proxy, admin) = Proxy::start_with_admin(&yaml, &[]);
    let mut tls = connect(proxy.addr, "a.example.test", client_config(&["http/1.1"])).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for i in 0..3 {
        let (status, _, body) = get(&mut tls, &format!("/echo?i={i}"));
        assert_eq!(status, 200);
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["query"], format!("i={i}"));
        let xfp = echo["header_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "x-forwarded-proto")
            .map(|h| h[1].clone());
        assert_eq!(xfp, Some(serde_json::json!("https")), "{echo}");
    }
    // 8 MiB down (compared with the origin's own bytes), 8 MiB up, on the same connection.
    const N: usize = 8 << 20;
    let (status, _, body) = get(&mut tls, &format!("/bytes/{N}?cl=1"));
    assert_eq!(status, 200);
    let direct = request(
        origin.addr,
        format!("GET /bytes/{N}?cl=1 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(
        body == direct.body,
        "the download differs from the origin's bytes"
    );
    let mut up =
        format!("POST /echo HTTP/1.1\r\nHost: a.example.test\r\nContent-Length: {N}\r\n\r\n")
            .into_bytes();
    up.extend((0..N).map(|i| (i % 251) as u8));
    let (status, _, body) = exchange(&mut tls, &up).unwrap();
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body_length"], N);
    assert_eq!(stat(admin, ".ssl.handshake"), 1);
    // `Connection: close` ends in order: the proxy sends close_notify before its FIN, so the
    // client reads a clean end (rustls reports a bare FIN as UnexpectedEof: a truncation).
    let (status, head, _) = exchange(
        &mut tls,
        b"GET /echo HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = [0u8; 64];
    assert_eq!(
        tls.read(&mut rest).expect("a clean end after close_notify"),
        0
    );
    drop(tls);
    assert!(proxy.stop().success());
}

#[test]
fn certificates_are_chosen_by_sni_and_chains_by_tls_inspector() {
    let origin = BenchOrigin::start(&[]);
    // One chain with a's and b's certificates; SNI picks.
    let yaml = https_config(
        origin.addr,
        &format!(
            "tls_certificates: [{}, {}]",
            pair("a.example.test"),
            pair("b.example.test")
        ),
        "",
    );
    let proxy = Proxy::start(&yaml);
    for name in ["a.example.test", "b.example.test"] {
        let mut tls = connect(proxy.addr, name, client_config(&[])).unwrap();
        let leaf = tls.conn.peer_certificates().unwrap()[0].clone();
        let want = CertificateDer::from_pem_file(cert(name)).unwrap();
        assert_eq!(leaf, want, "{name} got another certificate");
        assert_eq!(get(&mut tls, "/").0, 200);
    }
    assert!(proxy.stop().success());

    // Two chains matched by server_names through tls_inspector (the ClientHello it read is
    // handed to the handshake).
    let yaml = format!(
        "listeners:
  - name: tls
    address: 127.0.0.1:0
    listener_filters: [tls_inspector]
    filter_chains:
      - filter_chain_match: {{ server_names: [a.example.test] }}
        tls: {{ tls_certificates: [{a}] }}
        filters:
          - http_connection_manager:
              virtual_hosts: [{{ name: a, domains: [\"*\"], routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200, body: chain-a }} }}] }}]
      - filter_chain_match: {{ server_names: [\"*.wild.example.test\"] }}
        tls: {{ tls_certificates: [{w}] }}
        filters:
          - http_connection_manager:
              virtual_hosts: [{{ name: w, domains: [\"*\"], routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200, body: chain-wild }} }}] }}]
",
        a = pair("a.example.test"),
        w = pair("wild.example.test"),
    );
    let proxy = Proxy::start(&yaml);
    for (name, want) in [
        ("a.example.test", "chain-a"),
        ("x.wild.example.test", "chain-wild"),
    ] {
        let mut tls = connect(proxy.addr, name, client_config(&[])).unwrap();
        let (status, _, body) = get(&mut tls, "/");
        assert_eq!(
            (status, String::from_utf8_lossy(&body).as_ref()),
            (200, want)
        );
    }
    assert!(proxy.stop().success());
}

/// `openssl s_client` with only RSA signature algorithms: the RSA certificate of the pair.
fn openssl_key_bits(addr: SocketAddr, name: &str, sigalgs: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .args(["-sigalgs", sigalgs, "-tls1_2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (scripts/test.sh installs it)");
    let until = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "openssl s_client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains("Server public key is"))
        .unwrap_or_else(|| panic!("no key line in: {text}"))
        .to_string()
}

#[test]
fn an_ecdsa_and_an_rsa_certificate_for_one_name_serve_each_client_what_it_supports() {
    let origin = BenchOrigin::start(&[]);
    let yaml = https_config(
        origin.addr,
        &format!(
            "tls_certificates: [{}, {}]",
            pair("a.example.test"),
            pair("a.example.test.rsa")
        ),
        "",
    );
    let proxy = Proxy::start(&yaml);
    let ec = openssl_key_bits(proxy.addr, "a.example.test", "ECDSA+SHA256:RSA-PSS+SHA256");
    assert!(ec.contains("256 bit"), "{ec}");
    let rsa = openssl_key_bits(proxy.addr, "a.example.test", "RSA-PSS+SHA256:RSA+SHA256");
    assert!(rsa.contains("2048 bit"), "{rsa}");
    assert!(proxy.stop().success());
}

#[test]
fn versions_are_enforced_and_bad_handshakes_are_closed_and_counted() {
    let origin = BenchOrigin::start(&[]);
    let yaml = https_config(
        origin.addr,
        &format!(
            "tls_certificates: [{}], tls_params: {{ tls_minimum_protocol_version: TLSv1_3 }}",
            pair("a.example.test")
        ),
        "        transport_socket_connect_timeout: 500ms\n",
    );
    let (proxy, admin) = Proxy::start_with_admin(&yaml, &[]);
    // A TLS 1.2-only client is refused.
    let tls12 = Arc::new(
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots())
            .with_no_client_auth(),
    );
    assert!(connect(proxy.addr, "a.example.test", tls12).is_err());
    // Plaintext HTTP to the TLS port: closed.
    let mut plain = Client::connect(proxy.addr);
    plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = plain.read_to_eof().expect("closed");
    assert!(
        answer.starts_with(&[0x15, 0x03, 0x03]),
        "a TLS alert, then the close: {answer:?}"
    );
    // A client that sends nothing is closed at the handshake timeout, while another is served.
    let mut silent = Client::connect(proxy.addr);
    let t = Instant::now();
    let mut ok = connect(proxy.addr, "a.example.test", client_config(&[])).unwrap();
    assert_eq!(get(&mut ok, "/").0, 200);
    assert_eq!(silent.read_to_eof(), Some(Vec::new()));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    eventually("three failed handshakes counted", || {
        stat(admin, ".ssl.connection_error") == 3
    });
    assert!(proxy.stop().success());
}

fn client_with_cert() -> Arc<rustls::ClientConfig> {
    let chain = CertificateDer::pem_file_iter(cert("client"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key("client")).unwrap();
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots())
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

#[test]
fn mtls_required_refuses_clients_without_a_certificate() {
    let origin = BenchOrigin::start(&[]);
    let yaml = https_config(
        origin.addr,
        &format!(
            "tls_certificates: [{}], validation_context: {{ trusted_ca: {{ filename: {} }} }}, \
             require_client_certificate: true",
            pair("a.example.test"),
            cert("ca")
        ),
        "",
    );
    let proxy = Proxy::start(&yaml);
    // Without a certificate: the handshake or the first exchange fails (TLS 1.3 reports the
    // server's refusal after the client's side of the handshake is done).
    let refused = connect(proxy.addr, "a.example.test", client_config(&[]))
        .and_then(|mut t| exchange(&mut t, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").map(|_| ()));
    assert!(refused.is_err(), "served a client without a certificate");
    let mut tls = connect(proxy.addr, "a.example.test", client_with_cert()).unwrap();
    assert_eq!(get(&mut tls, "/").0, 200);
    assert!(proxy.stop().success());
}

#[test]
fn a_second_connection_resumes_the_session() {
    let origin = BenchOrigin::start(&[]);
    let yaml = https_config(
        origin.addr,
        &format!("tls_certificates: [{}]", pair("a.example.test")),
        "",
    );
    let proxy = Proxy::start(&yaml);
    let cfg = client_config(&[]);
    let mut first = connect(proxy.addr, "a.example.test", Arc::clone(&cfg)).unwrap();
    // TLS 1.3 tickets arrive after the handshake: one exchange reads them.
    assert_eq!(get(&mut first, "/").0, 200);
    drop(first);
    let mut second = connect(proxy.addr, "a.example.test", cfg).unwrap();
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(get(&mut second, "/").0, 200);
    assert!(proxy.stop().success());
}

/// `ringway validate` refuses `yaml` with a line holding every one of `want`.
fn refuses(yaml: &str, want: &[&str]) {
    let path = write_config(yaml);
    let out = run_ringway(&["validate", "-c", path.to_str().unwrap()], WAIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| want.iter().all(|w| l.contains(w))),
        "no line with {want:?} in:\n{}",
        out.stderr
    );
}

#[test]
fn bad_tls_config_is_refused_with_the_field() {
    let origin = "127.0.0.1:9";
    let o: SocketAddr = origin.parse().unwrap();
    refuses(
        &https_config(
            o,
            "tls_certificates: [{ certificate_chain: { filename: /nonexistent/x.crt }, private_key: { filename: /nonexistent/x.key } }]",
            "",
        ),
        &["tls.tls_certificates[0].certificate_chain.filename", "cannot read"],
    );
    let mismatched = format!(
        "tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]",
        cert("a.example.test"),
        key("b.example.test")
    );
    refuses(
        &https_config(o, &mismatched, ""),
        &["private_key", "does not match"],
    );
    refuses(
        &https_config(
            o,
            &format!(
                "tls_certificates: [{}], tls_params: {{ tls_minimum_protocol_version: TLSv1_1 }}",
                pair("a.example.test")
            ),
            "",
        ),
        &["tls_minimum_protocol_version", "TLSv1_1 is not supported"],
    );
    refuses(
        &https_config(
            o,
            &format!(
                "tls_certificates: [{}], alpn_protocols: [h2]",
                pair("a.example.test")
            ),
            "",
        ),
        &["alpn_protocols[0]", "HTTP/1.1"],
    );
    refuses(
        &https_config(
            o,
            &format!(
                "tls_certificates: [{}], tls_params: {{ cipher_suites: [RC4-MD5] }}",
                pair("a.example.test")
            ),
            "",
        ),
        &["cipher_suites[0]", "unknown or unsupported cipher suite"],
    );
}
