//! DNS service discovery (`type: strict_dns | logical_dns`) against a tiny DNS server the test
//! controls: no address (503), an address (served), the server going silent (the last good
//! address stays, the failures counted), the address withdrawn (503 again); config errors.

use crate::support;

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use support::*;

#[derive(Default)]
struct Zone {
    a: HashMap<String, Vec<Ipv4Addr>>,
    silent: bool,
    queries: usize,
}

/// A UDP DNS server on 127.0.0.1 answering A queries from `zone` (other types: no answer).
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
}

impl DnsServer {
    fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = Arc::clone(&zone);
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                if n < 17 {
                    continue;
                }
                // The question: labels from byte 12, then type and class.
                let mut i = 12;
                let mut labels = Vec::new();
                while i < n && q[i] != 0 {
                    let len = q[i] as usize;
                    labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + len]).to_string());
                    i += 1 + len;
                }
                let qend = i + 5;
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let name = labels.join(".");
                let (answers, silent) = {
                    let mut z = z.lock().unwrap();
                    z.queries += 1;
                    let a = if qtype == 1 {
                        z.a.get(&name).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    (a, z.silent)
                };
                if silent {
                    continue;
                }
                let mut r = q[..qend].to_vec();
                r[2] = 0x81;
                r[3] = 0x80;
                r[6] = 0;
                r[7] = answers.len() as u8;
                for ip in answers {
                    r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
                    r.extend_from_slice(&ip.octets());
                }
                let _ = sock.send_to(&r, from);
            }
        });
        DnsServer { addr, zone }
    }

    fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        self.zone
            .lock()
            .unwrap()
            .a
            .insert(name.into(), ips.to_vec());
    }

    fn silent(&self, on: bool) {
        self.zone.lock().unwrap().silent = on;
    }
}

fn config(origin_port: u16, dns: SocketAddr, kind: &str) -> String {
    ConfigBuilder::new()
        .top("workers: 2")
        .admin()
        .route_prefix("/", "svc")
        .cluster_raw(
            "svc",
            &format!(
                "type: {kind}\ndns_refresh_rate: 200ms\ndns_lookup_family: V4_ONLY\ndns_resolvers: [\"{dns}\"]\nendpoints: [\"svc.test:{origin_port}\"]"
            ),
        )
        .yaml()
}

fn stat(admin_addr: SocketAddr, name: &str) -> u64 {
    admin_stats(admin_addr).get(name).copied().unwrap_or(0)
}

#[test]
fn endpoints_follow_the_dns_answers_and_a_failed_lookup_keeps_the_last_ones() {
    for kind in ["strict_dns", "LOGICAL_DNS"] {
        let origin = SwitchOrigin::start("o");
        let dns = DnsServer::start();
        let (proxy, admin_addr) =
            Proxy::start_with_admin(&config(origin.addr.port(), dns.addr, kind), &[]);
        let addr = proxy.addr;
        // No address yet: no endpoint.
        assert_eq!(get(addr, "h", "/").status(), 503, "{kind}");
        // An address appears: served, within a refresh or two.
        dns.set("svc.test", &[Ipv4Addr::LOCALHOST]);
        eventually("the endpoint is resolved", || {
            get(addr, "h", "/").status() == 200
        });
        assert!(proxy.log().contains("DNS: endpoints changed"));
        // The server goes silent: lookups fail, the last address stays.
        dns.silent(true);
        eventually("a failed lookup counted", || {
            stat(admin_addr, "cluster.svc.update_failure") > 0
        });
        assert_eq!(get(addr, "h", "/").status(), 200);
        // It answers again, without the address: no endpoint again.
        dns.set("svc.test", &[]);
        dns.silent(false);
        eventually("the endpoint is withdrawn", || {
            get(addr, "h", "/").status() == 503
        });
        assert!(stat(admin_addr, "cluster.svc.update_success") >= 3);
        assert!(
            stat(admin_addr, "cluster.svc.update_attempt")
                >= stat(admin_addr, "cluster.svc.update_success")
                    + stat(admin_addr, "cluster.svc.update_failure")
        );
        assert!(dns.zone.lock().unwrap().queries >= 4);
    }
}

#[test]
fn validate_names_what_it_will_resolve_and_refuses_bad_dns_settings() {
    let dir = scratch_dir();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        config(8080, "127.0.0.1:53".parse().unwrap(), "strict_dns"),
    )
    .unwrap();
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["validate", "-c"])
            .arg(&good),
        Duration::from_secs(10),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("resolved by DNS at run time: svc.test:8080 (svc, strict_dns)"),
        "{said}"
    );
    for (from, to, says) in [
        (
            "type: strict_dns",
            "type: eventual_dns",
            "type must be static, strict_dns or logical_dns",
        ),
        (
            "svc.test:8080",
            "svc.test",
            "invalid endpoint \"svc.test\": no port",
        ),
        ("V4_ONLY", "V5_ONLY", "dns_lookup_family must be"),
        ("127.0.0.1:53", "dns.example", "invalid DNS server"),
    ] {
        let bad = dir.join("bad.yaml");
        let text = std::fs::read_to_string(&good).unwrap().replace(from, to);
        std::fs::write(&bad, text).unwrap();
        let out = run_bounded(
            std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
                .args(["validate", "-c"])
                .arg(&bad),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(says) && err.contains("(line "),
            "{says}: {err}"
        );
    }
}
