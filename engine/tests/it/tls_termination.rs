//! TLS termination (`tls:` on a filter chain): real rustls clients (and the openssl CLI where
//! rustls cannot be told to behave like an RSA-only client) against the proxy, certificates from
//! scripts/gen-certs.sh made at run time. Covers HTTPS proxied to a plain origin
//! (`x-forwarded-proto: https`), keep-alive, large bodies both ways, certificates chosen by SNI
//! and by key type, chains picked by `tls_inspector`, ALPN, version limits, mTLS, resumption,
//! bad handshakes closed and counted, and config errors.
use crate::support;

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

/// The certificates, made once per test binary.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringway-tls-term-{}", std::process::id()));
        gen_certs(&d);
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
    let len = head_content_length(&head);
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

/// Envoy's `match_typed_subject_alt_names`: the client certificate (gen-certs' `client`: DNS
/// client.example.test, URI spiffe://example.test/client) must also carry a matching SAN.
#[test]
fn mtls_subject_alt_name_matchers_choose_which_clients_pass() {
    let origin = BenchOrigin::start(&[]);
    let with = |sans: &str| {
        https_config(
            origin.addr,
            &format!(
                "tls_certificates: [{}], require_client_certificate: true, \
                 validation_context: {{ trusted_ca: {{ filename: {} }}, \
                 match_typed_subject_alt_names: [{sans}] }}",
                pair("a.example.test"),
                cert("ca")
            ),
            "",
        )
    };
    let served = |yaml: &str| {
        let proxy = Proxy::start(yaml);
        let got = connect(proxy.addr, "a.example.test", client_with_cert())
            .and_then(|mut t| exchange(&mut t, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
            .map(|r| r.0);
        assert!(proxy.stop().success());
        got.ok()
    };
    // Any one matching entry suffices; URI and DNS, every matcher kind.
    let uri = "{ san_type: URI, matcher: { prefix: \"spiffe://example.test/\" } }";
    let other = "{ san_type: DNS, matcher: { exact: other.example.test } }";
    assert_eq!(served(&with(&format!("{other}, {uri}"))), Some(200));
    let dns = "{ san_type: DNS, matcher: { suffix: .EXAMPLE.test, ignore_case: true } }";
    assert_eq!(served(&with(dns)), Some(200));
    let re = "{ san_type: URI, matcher: { safe_regex: { regex: \"spiffe://[a-z.]+/client\" } } }";
    assert_eq!(served(&with(re)), Some(200));
    // None matches: the handshake is refused.
    assert_eq!(served(&with(other)), None);
    let dns_only = "{ san_type: DNS, matcher: { contains: spiffe } }";
    assert_eq!(served(&with(dns_only)), None);
    // Bad entries are config errors with their place.
    assert_validate_refuses_with(
        &with("{ san_type: EMAIL, matcher: { exact: a@b } }"),
        &[
            "validation_context.match_typed_subject_alt_names[0].san_type",
            "EMAIL SANs are not matched yet",
        ],
    );
    assert_validate_refuses_with(
        &with("{ san_type: DNS, matcher: { prefix: \"\" } }"),
        &[
            "match_typed_subject_alt_names[0].matcher.prefix",
            "may not be empty",
        ],
    );
}

/// OpenSSL still makes X.509 v1 certificates (Envoy's TLS examples carry one), which webpki
/// cannot read; Envoy serves them, and so does ringway, after checking the key is the
/// certificate's.
#[test]
fn an_x509_v1_certificate_is_served() {
    let dir = scratch_dir();
    let (k, csr, crt) = (dir.join("v1.key"), dir.join("v1.csr"), dir.join("v1.crt"));
    let openssl = |args: &[&str]| {
        let out = run_bounded(Command::new("openssl").args(args), WAIT);
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let (k, csr, crt) = (
        k.to_str().unwrap(),
        csr.to_str().unwrap(),
        crt.to_str().unwrap(),
    );
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k,
    ]);
    openssl(&["req", "-new", "-key", k, "-subj", "/CN=front", "-out", csr]);
    openssl(&[
        "x509", "-req", "-in", csr, "-signkey", k, "-days", "30", "-out", crt,
    ]);
    let v1 = run_bounded(
        Command::new("openssl").args(["x509", "-noout", "-text", "-in", crt]),
        WAIT,
    );
    assert!(String::from_utf8_lossy(&v1.stdout).contains("Version: 1 (0x0)"));
    let origin = BenchOrigin::start(&[]);
    let tls = format!(
        "tls_certificates: [{{ certificate_chain: {{ filename: {crt} }}, private_key: {{ filename: {k} }} }}]"
    );
    let proxy = Proxy::start(&https_config(origin.addr, &tls, ""));
    let out = run_bounded(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://127.0.0.1:{}/", proxy.addr.port())),
        WAIT,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(proxy.stop().success());
    // Another key than the certificate's is still refused.
    let wrong = format!(
        "tls_certificates: [{{ certificate_chain: {{ filename: {crt} }}, private_key: {{ filename: {} }} }}]",
        key("a.example.test")
    );
    assert_validate_refuses_with(
        &https_config(origin.addr, &wrong, ""),
        &["private_key", "does not match"],
    );
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

#[test]
fn bad_tls_config_is_refused_with_the_field() {
    let origin = "127.0.0.1:9";
    let o: SocketAddr = origin.parse().unwrap();
    assert_validate_refuses_with(
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
    assert_validate_refuses_with(
        &https_config(o, &mismatched, ""),
        &["private_key", "does not match"],
    );
    assert_validate_refuses_with(
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
    assert_validate_refuses_with(
        &https_config(
            o,
            &format!(
                "tls_certificates: [{}], alpn_protocols: [h3]",
                pair("a.example.test")
            ),
            "",
        ),
        &["alpn_protocols[0]", "\"h3\" cannot be offered"],
    );
    assert_validate_refuses_with(
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

/// A chain with mTLS optional (a client certificate is verified when presented), its HCM with
/// `hcm_extra` keys (14-space indented lines).
fn mtls_config(origin: SocketAddr, hcm_extra: &str) -> String {
    format!(
        "listeners:
  - name: tls
    address: 127.0.0.1:0
    filter_chains:
      - tls: {{ tls_certificates: [{}], validation_context: {{ trusted_ca: {{ filename: {} }} }} }}
        filters:
          - http_connection_manager:
              stat_prefix: tls
{hcm_extra}              virtual_hosts:
                - name: all
                  domains: [\"*\"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: [\"{origin}\"]
",
        pair("a.example.test"),
        cert("ca")
    )
}

/// The client certificate's DER SHA-256, lower-case hex.
fn client_fingerprint() -> String {
    let der = CertificateDer::pem_file_iter(cert("client"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `x-forwarded-client-cert` values the origin's echo saw for one request that sent
/// `sent` (if any) over `tls`.
fn xfcc_seen(tls: &mut Tls, sent: Option<&str>) -> Vec<String> {
    let extra = sent.map_or(String::new(), |v| {
        format!("X-Forwarded-Client-Cert: {v}\r\n")
    });
    let (status, _, body) = exchange(
        tls,
        format!("GET /echo HTTP/1.1\r\nHost: a.example.test\r\n{extra}\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    echo["header_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("x-forwarded-client-cert"))
        })
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn client_certificate_details_reach_the_access_log() {
    let origin = BenchOrigin::start(&[]);
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringway-tls-peer-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let format = "%REQUESTED_SERVER_NAME% %DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% \
                  [%DOWNSTREAM_PEER_SUBJECT%] %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_DNS_SAN% \
                  %DOWNSTREAM_PEER_FINGERPRINT_256% %DOWNSTREAM_PEER_SERIAL%";
    let yaml = mtls_config(
        origin.addr,
        &format!(
            "              access_log: [{{ path: {}, format: {} }}]\n",
            yaml_str(&log.display().to_string()),
            yaml_str(format)
        ),
    );
    let proxy = Proxy::start(&yaml);
    let mut with = connect(proxy.addr, "a.example.test", client_with_cert()).unwrap();
    assert_eq!(get(&mut with, "/").0, 200);
    let mut without = connect(proxy.addr, "a.example.test", client_config(&[])).unwrap();
    assert_eq!(get(&mut without, "/").0, 200);
    let serial = {
        let out = run_bounded(
            Command::new("openssl").args(["x509", "-noout", "-serial", "-in", &cert("client")]),
            WAIT,
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            // OpenSSL prints the serial's bytes, two digits each (a leading `09` stays), as
            // Envoy's BN_bn2hex does and as the proxy must.
            .trim_start_matches("serial=")
            .to_ascii_lowercase()
    };
    let mut lines = Vec::new();
    eventually("two access-log lines", || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() == 2
    });
    assert_eq!(
        lines[0],
        format!(
            "a.example.test TLSv1.3 TLS13_AES_256_GCM_SHA384 [CN=client.example.test,O=ringway tests] \
             spiffe://example.test/client client.example.test {} {serial}",
            client_fingerprint()
        )
        .replace("TLS13_AES_256_GCM_SHA384", lines[0].split(' ').nth(2).unwrap()),
    );
    assert!(
        lines[0].split(' ').nth(2).unwrap().starts_with("TLS13_"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!(
            "a.example.test TLSv1.3 {} [-] - - - -",
            lines[1].split(' ').nth(2).unwrap()
        )
    );
    drop((with, without));
    assert!(proxy.stop().success());
}

#[test]
fn x_forwarded_client_cert_follows_forward_client_cert_details() {
    let origin = BenchOrigin::start(&[]);
    let hash = client_fingerprint();
    let full = format!(
        "Hash={hash};Subject=\"CN=client.example.test,O=ringway tests\";\
         URI=spiffe://example.test/client;DNS=client.example.test"
    );
    let run = |extra: &str, check: &dyn Fn(&mut Tls, &mut Tls)| {
        let proxy = Proxy::start(&mtls_config(origin.addr, extra));
        let mut with = connect(proxy.addr, "a.example.test", client_with_cert()).unwrap();
        let mut without = connect(proxy.addr, "a.example.test", client_config(&[])).unwrap();
        check(&mut with, &mut without);
        drop((with, without));
        assert!(proxy.stop().success());
    };
    // SANITIZE (the default): whatever the client sent is gone, nothing is added.
    run("", &|with, without| {
        assert!(xfcc_seen(with, Some("By=evil")).is_empty());
        assert!(xfcc_seen(without, Some("By=evil")).is_empty());
        assert!(xfcc_seen(with, None).is_empty());
    });
    // SANITIZE_SET: this connection's certificate replaces it (mTLS only).
    run(
        "              forward_client_cert_details: SANITIZE_SET\n              \
         set_current_client_cert_details: { subject: true, uri: true, dns: true }\n",
        &|with, without| {
            assert_eq!(xfcc_seen(with, Some("By=evil")), vec![full.clone()]);
            assert_eq!(xfcc_seen(with, None), vec![full.clone()]);
            assert!(xfcc_seen(without, Some("By=evil")).is_empty());
        },
    );
    // APPEND_FORWARD: added after what the client sent (mTLS only), the hash alone by default.
    run(
        "              forward_client_cert_details: APPEND_FORWARD\n",
        &|with, without| {
            assert_eq!(
                xfcc_seen(with, Some("By=upstream")),
                vec![format!("By=upstream,Hash={hash}")]
            );
            assert_eq!(xfcc_seen(with, None), vec![format!("Hash={hash}")]);
            assert!(xfcc_seen(without, Some("By=upstream")).is_empty());
        },
    );
    // FORWARD_ONLY: kept as sent on mTLS connections, removed on others.
    run(
        "              forward_client_cert_details: FORWARD_ONLY\n",
        &|with, without| {
            assert_eq!(xfcc_seen(with, Some("By=x")), vec!["By=x".to_string()]);
            assert!(xfcc_seen(without, Some("By=x")).is_empty());
        },
    );
    // ALWAYS_FORWARD_ONLY: kept whatever the connection.
    run(
        "              forward_client_cert_details: ALWAYS_FORWARD_ONLY\n",
        &|with, without| {
            assert_eq!(xfcc_seen(with, Some("By=x")), vec!["By=x".to_string()]);
            assert_eq!(xfcc_seen(without, Some("By=x")), vec!["By=x".to_string()]);
        },
    );
    // Cert=: the URL-encoded PEM.
    run(
        "              forward_client_cert_details: SANITIZE_SET\n              \
         set_current_client_cert_details: { cert: true }\n",
        &|with, _| {
            let v = xfcc_seen(with, None);
            let pem = std::fs::read_to_string(cert("client")).unwrap();
            let enc: String = pem
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            assert_eq!(v, vec![format!("Hash={hash};Cert=\"{enc}\"")]);
        },
    );
    assert_validate_refuses_with(
        &mtls_config(
            origin.addr,
            "              forward_client_cert_details: SANITISE\n",
        ),
        &["forward_client_cert_details", "SANITIZE_SET"],
    );
}
