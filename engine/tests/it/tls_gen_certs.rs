//! scripts/gen-certs.sh (the throwaway CA and certificates for TLS tests and examples): run
//! into a scratch directory, the chains verify with `openssl verify` for their names and
//! purposes, rustls (the TLS library the engine will use) completes handshakes with them
//! (ECDSA and RSA server certificates, the wildcard, mTLS with the client certificate), and a
//! second run keeps what is there. Needs the openssl CLI (scripts/test.sh installs it).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, OnceLock},
    thread,
    time::{Duration, Instant},
};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

/// The script makes three RSA keys; generous for a loaded machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

const SERVER_STEMS: [&str; 6] = [
    "a.example.test",
    "a.example.test.rsa",
    "b.example.test",
    "b.example.test.rsa",
    "wild.example.test",
    "wild.example.test.rsa",
];

/// A fresh directory under the target directory (git-ignored, removed by `cargo clean`), so
/// the throwaway keys never land anywhere else.
fn scratch_dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringway-gen-certs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs a command to its end within `limit`, output captured.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{cmd:?}: {e} (is openssl installed? scripts/test.sh installs it)")
        });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn gen_certs(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen-certs.sh");
    let out = run(Command::new(script).arg(dir), SCRIPT_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gen-certs.sh failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One generated directory shared by the tests that only read it.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("shared");
        gen_certs(&dir);
        dir
    })
}

/// `openssl verify` of `cert` against the CA for `purpose` (and a host name): its output line.
fn openssl_verify(
    dir: &Path,
    cert: &str,
    purpose: &str,
    host: Option<&str>,
) -> Result<String, String> {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["verify", "-CAfile", "ca.crt", "-purpose", purpose]);
    if let Some(h) = host {
        cmd.args(["-verify_hostname", h]);
    }
    let out = run(cmd.arg(cert), Duration::from_secs(30));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn cert_text(dir: &Path, cert: &str) -> String {
    let out = run(
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-noout", "-text", "-in", cert]),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_gen_certs_chains_verify_with_openssl() {
    let dir = certs();
    for (stem, host) in [
        ("a.example.test", "a.example.test"),
        ("b.example.test", "b.example.test"),
        ("wild.example.test", "x.wild.example.test"),
        ("wild.example.test", "wild.example.test"),
    ] {
        for cert in [format!("{stem}.crt"), format!("{stem}.rsa.crt")] {
            let ok = openssl_verify(dir, &cert, "sslserver", Some(host))
                .unwrap_or_else(|e| panic!("{cert} for {host}: {e}"));
            assert_eq!(ok.trim(), format!("{cert}: OK"));
        }
    }
    assert!(openssl_verify(dir, "client.crt", "sslclient", None).is_ok());
    // And what must not verify: another name, a name two labels under the wildcard, a server
    // certificate as a client's and the other way round.
    assert!(openssl_verify(
        dir,
        "a.example.test.crt",
        "sslserver",
        Some("b.example.test")
    )
    .is_err());
    assert!(openssl_verify(
        dir,
        "wild.example.test.crt",
        "sslserver",
        Some("a.b.wild.example.test")
    )
    .is_err());
    assert!(openssl_verify(dir, "a.example.test.crt", "sslclient", None).is_err());
    assert!(openssl_verify(dir, "client.crt", "sslserver", None).is_err());

    // Key types: ECDSA P-256 by default, RSA 2048 for the .rsa variants.
    for stem in SERVER_STEMS.iter().chain(&["ca", "client"]) {
        let text = cert_text(dir, &format!("{stem}.crt"));
        if stem.ends_with(".rsa") {
            assert!(
                text.contains("rsaEncryption") && text.contains("(2048 bit)"),
                "{stem}"
            );
        } else {
            assert!(
                text.contains("id-ecPublicKey") && text.contains("prime256v1"),
                "{stem}"
            );
        }
    }
    let client = cert_text(dir, "client.crt");
    assert!(
        client.contains("URI:spiffe://example.test/client")
            && client.contains("TLS Web Client Authentication")
    );
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn chain(dir: &Path, stem: &str) -> Vec<CertificateDer<'static>> {
    vec![CertificateDer::from_pem_file(dir.join(format!("{stem}.crt"))).unwrap()]
}

fn key(dir: &Path, stem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).unwrap()
}

fn roots(dir: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(chain(dir, "ca").remove(0)).unwrap();
    Arc::new(roots)
}

/// A server presenting `stem`'s certificate, requiring a client certificate when `mtls`.
fn server(dir: &Path, stem: &str, mtls: bool) -> Arc<rustls::ServerConfig> {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = if mtls {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots(dir), provider())
                .build()
                .unwrap();
        b.with_client_cert_verifier(verifier)
    } else {
        b.with_no_client_auth()
    };
    Arc::new(
        b.with_single_cert(chain(dir, stem), key(dir, stem))
            .unwrap(),
    )
}

/// A client trusting only the test CA, presenting `client_stem`'s certificate if given.
fn client(dir: &Path, client_stem: Option<&str>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(dir));
    Arc::new(match client_stem {
        Some(s) => b.with_client_auth_cert(chain(dir, s), key(dir, s)).unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// An in-memory handshake: Ok(whether the server saw a client certificate), or the first error
/// either side raised.
fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    sni: &str,
) -> Result<bool, rustls::Error> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut c = rustls::ClientConnection::new(client, name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
            return Ok(s.peer_certificates().is_some_and(|p| !p.is_empty()));
        }
    }
    panic!("handshake with {sni} did not finish in 10 flights");
}

#[test]
fn tls_gen_certs_work_in_rustls_handshakes() {
    let dir = certs();
    for (stem, sni) in [
        ("a.example.test", "a.example.test"),
        ("a.example.test.rsa", "a.example.test"),
        ("b.example.test", "b.example.test"),
        ("b.example.test.rsa", "b.example.test"),
        ("wild.example.test", "x.wild.example.test"),
        ("wild.example.test.rsa", "wild.example.test"),
    ] {
        assert_eq!(
            handshake(client(dir, None), server(dir, stem, false), sni),
            Ok(false),
            "{stem} as {sni}"
        );
    }
    // The client checks the name.
    let wrong = handshake(
        client(dir, None),
        server(dir, "a.example.test", false),
        "b.example.test",
    );
    assert!(
        matches!(wrong, Err(rustls::Error::InvalidCertificate(_))),
        "{wrong:?}"
    );
    // mTLS: the client certificate is accepted; a server certificate offered as a client's is
    // not (its extended key usage is serverAuth only); none at all is refused.
    let mtls = server(dir, "a.example.test", true);
    assert_eq!(
        handshake(client(dir, Some("client")), mtls.clone(), "a.example.test"),
        Ok(true)
    );
    let wrong = handshake(
        client(dir, Some("b.example.test")),
        mtls.clone(),
        "a.example.test",
    );
    assert!(
        matches!(wrong, Err(rustls::Error::InvalidCertificate(_))),
        "{wrong:?}"
    );
    assert!(handshake(client(dir, None), mtls, "a.example.test").is_err());
}

#[test]
fn tls_gen_certs_is_idempotent() {
    let dir = scratch_dir("idempotent");
    let first = gen_certs(&dir);
    assert!(
        first.contains("made ca.crt") && !first.contains("kept"),
        "{first}"
    );
    let read_all = || {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = read_all();
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(names.contains(&"client.key") && names.contains(&"wild.example.test.rsa.crt"));

    let again = gen_certs(&dir);
    assert!(
        !again.contains("made") && again.matches("kept").count() == 8,
        "{again}"
    );
    assert_eq!(read_all(), before, "a second run changed files");

    // A lost key: that certificate alone is made again.
    std::fs::remove_file(dir.join("client.key")).unwrap();
    let third = gen_certs(&dir);
    assert!(
        third.contains("made client.crt") && third.matches("made").count() == 1,
        "{third}"
    );
    let after = read_all();
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(old != new, name.starts_with("client."), "{name}");
    }
    assert!(openssl_verify(&dir, "client.crt", "sslclient", None).is_ok());

    // Keys are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "ca.key mode {mode:o}");
    let _ = std::fs::remove_dir_all(&dir);
}
