//! Server-side CPU per TLS handshake, per rustls crypto provider.
//!
//! A rustls client and server in one thread hand each other bytes through memory; only the
//! server's calls (read_tls, process_new_packets, write_tls) are timed, with the thread's CPU
//! clock, so the figure is what a proxy terminating TLS pays per new connection, without the
//! kernel's TCP work. Both sides offer X25519 only (what OpenSSL 3.0 clients such as curl and
//! wrk send first), AES-128-GCM first. Rows: ECDSA P-256 and RSA 2048 certificates, TLS 1.3 and
//! 1.2, full handshakes and resumed ones (TLS 1.3 tickets; TLS 1.2 session IDs from the server's
//! cache).
//!
//! Usage: tls-providers CERT_DIR [HANDSHAKES]   (CERT_DIR as made by scripts/gen-certs.sh)

use std::io::Read;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-pointer and a clock every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn provider(name: &str) -> CryptoProvider {
    let mut p = match name {
        "ring" => rustls::crypto::ring::default_provider(),
        _ => rustls::crypto::aws_lc_rs::default_provider(),
    };
    p.kx_groups
        .retain(|g| format!("{:?}", g.name()) == "X25519");
    assert_eq!(p.kx_groups.len(), 1, "X25519 missing");
    p
}

fn ticketer(name: &str) -> Arc<dyn rustls::server::ProducesTickets> {
    match name {
        "ring" => rustls::crypto::ring::Ticketer::new().expect("ticketer"),
        _ => rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer"),
    }
}

struct Case {
    provider: &'static str,
    key: &'static str,
    version: &'static rustls::SupportedProtocolVersion,
    resume: bool,
}

/// Moves every pending byte from one side to the other; true if any moved.
fn pump_client(
    c: &mut ClientConnection,
    s: &mut ServerConnection,
    buf: &mut Vec<u8>,
    server_ns: &mut u64,
) -> bool {
    buf.clear();
    while c.wants_write() {
        c.write_tls(buf).expect("client write_tls");
    }
    if buf.is_empty() {
        return false;
    }
    let t = thread_cpu_ns();
    let mut rd = &buf[..];
    while !rd.is_empty() {
        s.read_tls(&mut rd).expect("server read_tls");
        s.process_new_packets().expect("server process");
    }
    *server_ns += thread_cpu_ns() - t;
    true
}

fn pump_server(
    s: &mut ServerConnection,
    c: &mut ClientConnection,
    buf: &mut Vec<u8>,
    server_ns: &mut u64,
) -> bool {
    buf.clear();
    let t = thread_cpu_ns();
    while s.wants_write() {
        s.write_tls(buf).expect("server write_tls");
    }
    *server_ns += thread_cpu_ns() - t;
    if buf.is_empty() {
        return false;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).expect("client read_tls");
        c.process_new_packets().expect("client process");
    }
    true
}

fn run(case: &Case, dir: &str, n: u32) -> (f64, u32) {
    let stem = if case.key == "rsa2048" {
        "a.example.test.rsa"
    } else {
        "a.example.test"
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/{stem}.crt"))
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/{stem}.key")).expect("key pem");
    let p = Arc::new(provider(case.provider));
    let mut server = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[case.version])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    if case.resume {
        server.ticketer = ticketer(case.provider);
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    } else {
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    let server = Arc::new(server);
    let mut roots = RootCertStore::empty();
    let mut ca = Vec::new();
    std::fs::File::open(format!("{dir}/ca.crt"))
        .expect("ca")
        .read_to_end(&mut ca)
        .expect("ca read");
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.expect("ca pem")).expect("ca add");
    }
    let mut client = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[case.version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !case.resume {
        client.resumption = Resumption::disabled();
    }
    let client = Arc::new(client);
    let name = ServerName::try_from("a.example.test").expect("name");
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut total = 0u64;
    let mut resumed = 0;
    for i in 0..n + 50 {
        let mut c = ClientConnection::new(client.clone(), name.clone()).expect("client");
        let mut server_ns = 0u64;
        let t = thread_cpu_ns();
        let mut s = ServerConnection::new(server.clone()).expect("server");
        server_ns += thread_cpu_ns() - t;
        loop {
            let a = pump_client(&mut c, &mut s, &mut buf, &mut server_ns);
            let b = pump_server(&mut s, &mut c, &mut buf, &mut server_ns);
            if !a && !b && !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        let t = thread_cpu_ns();
        drop(s);
        server_ns += thread_cpu_ns() - t;
        if i >= 50 {
            // the first 50 warm caches and tickets up
            total += server_ns;
            if c.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed += 1;
            }
        }
    }
    (total as f64 / n as f64 / 1000.0, resumed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("target/certs");
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    println!("server CPU-us per handshake, median of 5 runs of {n} (X25519, AES-128-GCM)");
    println!("| key | version | resumption | ring | aws-lc-rs | aws-lc-rs / ring |");
    println!("|---|---|---|---|---|---|");
    for key in ["ecdsa-p256", "rsa2048"] {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for resume in [false, true] {
                let mut med = Vec::new();
                for prov in ["ring", "aws-lc-rs"] {
                    let case = Case {
                        provider: prov,
                        key,
                        version,
                        resume,
                    };
                    let mut runs: Vec<f64> = Vec::new();
                    let mut res = 0;
                    for _ in 0..5 {
                        let (us, r) = run(&case, dir, n);
                        runs.push(us);
                        res = r;
                    }
                    runs.sort_by(|a, b| a.partial_cmp(b).expect("nan"));
                    if resume {
                        assert_eq!(res, n, "{prov}: only {res} of {n} handshakes resumed");
                    }
                    med.push(runs[2]);
                }
                let v = if std::ptr::eq(version, &rustls::version::TLS13) {
                    "1.3"
                } else {
                    "1.2"
                };
                println!(
                    "| {key} | {v} | {} | {:.1} | {:.1} | {:.2} |",
                    if resume { "yes" } else { "no" },
                    med[0],
                    med[1],
                    med[1] / med[0]
                );
            }
        }
    }
}
