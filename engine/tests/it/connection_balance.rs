//! Exact connection balance: with two workers, connections are split evenly whatever the
//! SO_REUSEPORT hash deals (within the slack of 1/16 of the mean, plus one), every handed-over
//! connection is served normally and counted in `listener.<address>.downstream_cx_handoff`, and
//! `connection_balance: kernel` leaves the split to the kernel and hands nothing over.

use crate::support;

use support::*;

fn config(origin: std::net::SocketAddr, balance: &str) -> String {
    ConfigBuilder::simple(origin)
        .admin()
        .listener_extra(balance)
        .yaml()
}

/// `listener.127.0.0.1_<port>.downstream_cx_handoff`.
fn handoff_stat(addr: std::net::SocketAddr) -> String {
    format!(
        "listener.{}_{}.downstream_cx_handoff",
        addr.ip(),
        addr.port()
    )
}

/// Per-worker open connections, once `total` are open.
fn split(adm: std::net::SocketAddr, total: u64) -> (u64, u64) {
    let mut got = (0, 0);
    eventually("every connection counted", || {
        let s = admin_stats(adm);
        got = (
            s["worker.0.downstream_cx_active"],
            s["worker.1.downstream_cx_active"],
        );
        got.0 + got.1 == total
    });
    got
}

#[test]
fn connections_are_split_evenly_between_workers() {
    let origin = status_origin();
    let yaml = config(origin.addr, "");
    assert_eq!(yaml.matches("filter_chains").count(), 1);
    let (proxy, adm) = Proxy::start_with_admin(&yaml, &["--workers", "2"]);
    for round in 0..3 {
        // 50 connections at once, each with a request answered, all held open.
        let mut clients: Vec<Client> = (0..50).map(|_| Client::connect(proxy.addr)).collect();
        for c in &mut clients {
            assert_eq!(c.get("a", "/").status(), 200);
        }
        let (a, b) = split(adm, 50);
        assert!(a.abs_diff(b) <= 1, "round {round}: {a}/{b}");
        // Every connection keeps working where it was placed.
        for c in &mut clients {
            assert_eq!(c.get("a", "/").status(), 200);
        }
        drop(clients);
        split(adm, 0);
    }
    let s = admin_stats(adm);
    assert_eq!(s["http.main.downstream_rq_total"], 300);
    assert_eq!(s["http.main.downstream_rq_2xx"], 300);
    // 150 connections dealt by a hash: some were handed over (all kept would take a hash that
    // never once lands on the busier worker), and the counter never exceeds the connections.
    let handoffs = s[&handoff_stat(proxy.addr)];
    assert!(handoffs > 0 && handoffs <= 150, "handoffs {handoffs}");
    proxy.stop();
}

#[test]
fn kernel_balance_serves_where_the_hash_lands() {
    let origin = status_origin();
    let yaml = config(origin.addr, "connection_balance: kernel");
    let (proxy, adm) = Proxy::start_with_admin(&yaml, &["--workers", "2"]);
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(proxy.addr)).collect();
    for c in &mut clients {
        assert_eq!(c.get("a", "/").status(), 200);
    }
    let (a, b) = split(adm, 20);
    assert_eq!(a + b, 20);
    assert_eq!(admin_stats(adm)[&handoff_stat(proxy.addr)], 0);
    drop(clients);
    proxy.stop();
}
