//! Certificate reload (SIGHUP and `POST /certs/reload`) under load: clients open new TLS
//! connections without pause while the certificate files are replaced and reloaded; none may
//! fail, new handshakes must present the new certificate, a keep-alive connection opened
//! before stays usable, and a bad file is refused with the old certificate still served.
use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use support::*;

const T: Duration = Duration::from_secs(10);

fn certs() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringway-cert-reload-{}", std::process::id()));
    gen_certs(&d);
    d
}

/// Put `stem`'s certificate and key in place as `live.crt`/`live.key` (renames: a reader
/// never sees half a file).
fn install(dir: &Path, stem: &str) {
    for ext in ["crt", "key"] {
        let tmp = dir.join(format!("live.{ext}.tmp"));
        std::fs::copy(dir.join(format!("{stem}.{ext}")), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(format!("live.{ext}"))).unwrap();
    }
}

fn client(dir: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut c = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A handshake to `addr` as a.example.test: the stream and the certificate it was shown.
fn connect(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<(Tls, Vec<u8>)> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(T))?;
    let name = ServerName::try_from("a.example.test").unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::clone(cfg), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let shown = tls.conn.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, shown))
}

/// One GET on `tls`; the status.
fn get(tls: &mut Tls) -> std::io::Result<u16> {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head_content_length(&head);
            if buf.len() >= end + 4 + len {
                return Ok(head[9..12].parse().unwrap());
            }
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn der(dir: &Path, stem: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(dir.join(format!("{stem}.crt")))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// POST /certs/reload: (status, body).
fn post_reload(admin: SocketAddr) -> (u16, String) {
    let r = request(
        admin,
        b"POST /certs/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    (r.status(), r.body_str())
}

#[test]
fn certificates_reload_under_load_without_a_failed_request() {
    let dir = certs();
    install(&dir, "a.example.test");
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::new()
        .admin()
        .listener("tls", "127.0.0.1:0")
        .chain_extra(concat!(
            "tls:\n",
            "  tls_certificates:\n",
            "    - certificate_chain: { filename: live.crt }\n",
            "      private_key: { filename: live.key }",
        ))
        .stat_prefix("tls")
        .route_prefix("/", "origin")
        .cluster("origin", &[origin.addr])
        .connect_timeout("1s")
        .yaml();
    // The config sits beside the certificates: relative names are taken from its directory.
    let cfg_path = dir.join("ringway.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let proxy = Proxy::start_file(&cfg_path, &["--workers", "2"]);
    let admin = proxy.admin_addr.expect("admin");
    let (ecdsa, rsa) = (der(&dir, "a.example.test"), der(&dir, "a.example.test.rsa"));
    let cfg = client(&dir);

    // A keep-alive connection from before every reload.
    let (mut kept, shown) = connect(proxy.addr, &cfg).unwrap();
    assert_eq!(shown, ecdsa);
    assert_eq!(get(&mut kept).unwrap(), 200);

    // Load: new connections without pause, each checked; what each was shown is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let last_shown = Arc::new(Mutex::new(Vec::new()));
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let (stop, failures, done, last) = (
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&done),
                Arc::clone(&last_shown),
            );
            let (addr, cfg) = (proxy.addr, Arc::clone(&cfg));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match connect(addr, &cfg).and_then(|(mut t, shown)| Ok((get(&mut t)?, shown))) {
                        Ok((200, shown)) => {
                            *last.lock().unwrap() = shown;
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((s, _)) => failures.lock().unwrap().push(format!("status {s}")),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    let shown_now = |want: &[u8]| *last_shown.lock().unwrap() == want;
    eventually("load running", || done.load(Ordering::SeqCst) > 20);

    // SIGHUP: the RSA certificate for the same name.
    install(&dir, "a.example.test.rsa");
    proxy.signal(libc::SIGHUP);
    eventually("new handshakes show the RSA certificate", || {
        shown_now(&rsa)
    });
    let n = done.load(Ordering::SeqCst);
    eventually("load continues", || done.load(Ordering::SeqCst) > n + 20);

    // POST /certs/reload: back to ECDSA.
    install(&dir, "a.example.test");
    let (status, body) = post_reload(admin);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("reloaded the certificates of 1 TLS chain"),
        "{body}"
    );
    eventually("new handshakes show the ECDSA certificate", || {
        shown_now(&ecdsa)
    });

    // A key that does not match its certificate: refused, named; the ECDSA one stays.
    std::fs::copy(dir.join("b.example.test.key"), dir.join("live.key.tmp")).unwrap();
    std::fs::rename(dir.join("live.key.tmp"), dir.join("live.key")).unwrap();
    let (status, body) = post_reload(admin);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("private_key"), "{body}");
    assert!(body.contains("does not match"), "{body}");
    // A file that is not there: refused too (SIGHUP, a whole config reload, logs it).
    std::fs::remove_file(dir.join("live.crt")).unwrap();
    let (status, body) = post_reload(admin);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("certificate_chain"), "{body}");
    proxy.signal(libc::SIGHUP);
    eventually("SIGHUP's refusal logged", || {
        proxy
            .log()
            .contains("config reload refused; the running config stays")
    });
    let n = done.load(Ordering::SeqCst);
    eventually("load continues on the old certificate", || {
        done.load(Ordering::SeqCst) > n + 20
    });
    assert!(shown_now(&ecdsa));

    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        done.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)]
    );
    // The connection from before every reload still works, on its first certificate.
    assert_eq!(get(&mut kept).unwrap(), 200);
    drop(kept);
    assert!(proxy.stop().success());
}
