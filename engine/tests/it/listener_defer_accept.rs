//! `defer_accept` (TCP_DEFER_ACCEPT) on listeners: an HTTP listener by default takes a new
//! connection only once its first bytes are in, a listener set `defer_accept: false` and a
//! `tcp_proxy` listener (whose protocol may have the server speak first) take it at once.
//! Observed through the accept counters: the proxy counts a connection when it accepts it.

use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// Longest a connection may wait for an accept that is not deferred. A deferred one waits for
/// the client's data or for the first retransmitted SYN-ACK, one second after the connect.
const AT_ONCE: Duration = Duration::from_millis(800);

/// How long a deferred connection is watched without data (the retransmission is at 1 s).
const HELD: Duration = Duration::from_millis(300);

fn accepted(admin: SocketAddr, stat: &str) -> u64 {
    admin_stats(admin).get(stat).copied().unwrap_or(0)
}

/// Wait (up to [`AT_ONCE`]) for `stat` to reach `n`; whether it did.
fn accepted_within(admin: SocketAddr, stat: &str, n: u64) -> bool {
    let until = Instant::now() + AT_ONCE;
    loop {
        if accepted(admin, stat) >= n {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_http_listener_accepts_a_connection_once_its_request_is_in() {
    let origin = status_origin();
    let (proxy, admin) =
        Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "1"]);
    let stat = "worker.0.downstream_cx_total";
    let mut c = Client::connect(proxy.addr);
    thread::sleep(HELD);
    assert_eq!(
        accepted(admin, stat),
        0,
        "connected, nothing sent: still deferred by the kernel"
    );
    let r = c.get("a.test", "/status/200");
    assert_eq!(r.status(), 200);
    assert_eq!(accepted(admin, stat), 1);

    // A client that connects and stays silent is still accepted (after the kernel's first
    // retransmitted SYN-ACK), and its request, sent late, is served.
    let mut quiet = Client::connect(proxy.addr);
    eventually("the silent connection accepted", || {
        accepted(admin, stat) == 2
    });
    assert_eq!(quiet.get("a.test", "/status/204").status(), 204);
}

#[test]
fn defer_accept_false_accepts_at_once() {
    let origin = status_origin();
    let cfg = ConfigBuilder::simple(origin.addr)
        .admin()
        .listener_extra("defer_accept: false")
        .yaml();
    let (proxy, admin) = Proxy::start_with_admin(&cfg, &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    assert!(
        accepted_within(admin, "worker.0.downstream_cx_total", 1),
        "accepted with nothing sent"
    );
    assert_eq!(c.get("a.test", "/status/200").status(), 200);
}

#[test]
fn a_tcp_proxy_listener_does_not_defer_so_a_server_first_protocol_works() {
    // An origin that speaks first: a greeting on connect, before the client says anything.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let up = l.local_addr().expect("origin addr");
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"220 ready\r\n");
            thread::sleep(Duration::from_millis(50));
        }
    });
    let cfg = ConfigBuilder::new()
        .admin()
        .tcp_listener("tcp", "127.0.0.1:0")
        .tcp_proxy("stat_prefix: db\ncluster: backend")
        .cluster("backend", &[up])
        .connect_timeout("1s")
        .yaml();
    let (proxy, admin) = Proxy::start_with_admin(&cfg, &["--workers", "1"]);
    let mut c = TcpStream::connect(proxy.addr).expect("connect");
    assert!(
        accepted_within(admin, "tcp.db.downstream_cx_total", 1),
        "a tcp_proxy connection is accepted with nothing sent"
    );
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut greeting = [0u8; 11];
    c.read_exact(&mut greeting).expect("the origin's greeting");
    assert_eq!(&greeting, b"220 ready\r\n");
}
