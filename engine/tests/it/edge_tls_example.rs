//! `config/edge-tls.yaml` run as written (addresses moved to free ports, certificate paths to
//! this test's own scripts/gen-certs.sh output): two names terminated by SNI, the wildcard one
//! with mTLS, a third passed through to a TLS backend that then presents its own certificate,
//! a default chain for unknown names, and plain HTTP redirected to HTTPS. Real curl clients.
use crate::support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use support::*;

fn certs() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringway-edge-example-{}", std::process::id()));
    gen_certs(&d);
    d
}

/// curl to `name` at `addr` over HTTPS (verified against the test CA): (status, headers).
fn curl(certs: &Path, addr: SocketAddr, name: &str, extra: &[&str]) -> (String, String) {
    let url = format!("https://{name}:{}/", addr.port());
    let resolve = format!("{name}:{}:127.0.0.1", addr.port());
    let ca = certs.join("ca.crt");
    let out = run_bounded(
        Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "5"])
            .args(["-w", "%{http_code}", "--resolve", &resolve, "--cacert"])
            .arg(&ca)
            .args(extra)
            .arg(&url),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text
        .get(text.len().saturating_sub(3)..)
        .unwrap_or("")
        .to_string();
    (code, text)
}

#[test]
fn the_edge_tls_example_terminates_passes_through_and_redirects() {
    let certs = certs();
    let origin = BenchOrigin::start(&[]);
    let b = |f: &str| certs.join(f).display().to_string();
    // The backend b.example.test's bytes are passed through to: it holds b's certificate.
    let backend = BenchOrigin::start(&[
        "--tls-cert",
        &b("b.example.test.crt"),
        "--tls-key",
        &b("b.example.test.key"),
    ]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/edge-tls.yaml");
    let yaml = std::fs::read_to_string(&example)
        .unwrap()
        .replace("127.0.0.1:10443", "127.0.0.1:0")
        .replace("127.0.0.1:10080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("workers: auto", "workers: 1")
        .replace("127.0.0.1:9000", &origin.addr.to_string())
        .replace("127.0.0.1:9443", &backend.addr.to_string())
        .replace("../target/certs/", &format!("{}/", certs.display()));
    let proxy = Proxy::start_args(&yaml, &[]);
    let edge = proxy.listeners["edge"];
    let plain = proxy.listeners["plain"];

    // a.example.test: terminated, proxied to the origin.
    let (code, _) = curl(&certs, edge, "a.example.test", &[]);
    assert_eq!(code, "200");
    // *.wild.example.test: mTLS required.
    let (code, _) = curl(&certs, edge, "x.wild.example.test", &[]);
    assert_eq!(code, "000", "a client without a certificate got an answer");
    let (code, _) = curl(
        &certs,
        edge,
        "x.wild.example.test",
        &["--cert", &b("client.crt"), "--key", &b("client.key")],
    );
    assert_eq!(code, "200");
    // b.example.test: passed through untouched; curl verifies the backend's own certificate.
    let (code, _) = curl(&certs, edge, "b.example.test", &[]);
    assert_eq!(code, "200");
    // An unknown name: the default chain's answer (its certificate is a's, so no verification).
    let (code, _) = curl(&certs, edge, "nope.example.test", &["-k"]);
    assert_eq!(code, "421");
    // Plain HTTP: redirected to HTTPS, same host and path.
    let r = get(plain, "a.example.test", "/some/path?q=1");
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.header("location"),
        Some("https://a.example.test/some/path?q=1")
    );
    assert!(proxy.stop().success());
}
