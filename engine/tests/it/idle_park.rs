//! Parked idle connections (`park_idle_after`, `http::park`): a keep-alive connection idle past
//! the threshold leaves its task and waits in the worker's epoll set; its next request is served
//! as any other, its idle timeout still closes it, a client that goes away frees it, many wake
//! at once, requests that race the threshold are never lost, and a drain closes them.
use crate::support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use support::*;

/// One worker, admin on, parking after `park`, idle timeout `idle`.
fn start(origin: SocketAddr, park: &str, idle: &str) -> (Proxy, SocketAddr) {
    let yaml = ConfigBuilder::simple(origin)
        .top(&format!("workers: 1\npark_idle_after: {park}"))
        .admin()
        .hcm_extra(&format!("idle_timeout: {idle}"))
        .yaml();
    Proxy::start_with_admin(&yaml, &[])
}

fn stat(stats: &HashMap<String, u64>, name: &str) -> u64 {
    *stats
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
}

fn parked(admin: SocketAddr) -> u64 {
    stat(&admin_stats(admin), "worker.0.downstream_cx_parked")
}

fn get_echo(c: &mut Client, query: &str) {
    c.send(format!("GET /echo?{query} HTTP/1.1\r\nHost: park.test\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(echo_json(&r)["query"], query, "{r:?}");
}

#[test]
fn an_idle_connection_parks_and_its_next_request_is_served() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, admin) = start(origin.addr, "200ms", "60s");
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        get_echo(&mut c, &format!("round={i}"));
        eventually("the idle connection is parked", || parked(admin) == 1);
        let s = admin_stats(admin);
        assert_eq!(
            stat(&s, "worker.0.downstream_cx_active"),
            1,
            "a parked connection is still an active one"
        );
        assert_eq!(stat(&s, "worker.0.downstream_cx_park_total"), i + 1);
    }
    get_echo(&mut c, "last");
    assert_eq!(parked(admin), 0, "the connection resumed");
    drop(c);
    eventually("the connection's end is counted", || {
        stat(&admin_stats(admin), "worker.0.downstream_cx_active") == 0
    });
    assert!(proxy.stop().success());
}

#[test]
fn a_parked_connection_still_closes_at_its_idle_timeout() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, admin) = start(origin.addr, "200ms", "1500ms");
    let mut c = Client::connect(proxy.addr);
    get_echo(&mut c, "a=1");
    let answered = Instant::now();
    eventually("the idle connection is parked", || parked(admin) == 1);
    assert!(c.closed(), "the proxy closes the parked connection");
    let after = answered.elapsed();
    // The coarse clock rounds the deadline to its 100 ms tick; the sweep runs every second.
    assert!(
        after >= Duration::from_millis(1300) && after < Duration::from_millis(4000),
        "closed {after:?} after the response (idle timeout 1.5 s)"
    );
    let s = admin_stats(admin);
    assert_eq!(stat(&s, "worker.0.downstream_cx_parked"), 0);
    assert_eq!(stat(&s, "worker.0.downstream_cx_active"), 0);
    assert!(proxy.stop().success());
}

#[test]
fn parking_is_off_with_a_zero_threshold() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, admin) = start(origin.addr, "0s", "60s");
    let mut c = Client::connect(proxy.addr);
    get_echo(&mut c, "a=1");
    thread::sleep(Duration::from_millis(700));
    get_echo(&mut c, "a=2");
    assert_eq!(
        stat(&admin_stats(admin), "worker.0.downstream_cx_park_total"),
        0
    );
    assert!(proxy.stop().success());
}

#[test]
fn clients_closing_parked_connections_free_them_and_many_wake_at_once() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, admin) = start(origin.addr, "200ms", "60s");
    // More than one `epoll_wait` batch (64).
    const N: usize = 300;
    let mut clients: Vec<Client> = (0..N).map(|_| Client::connect(proxy.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        get_echo(c, &format!("first={i}"));
    }
    eventually("every connection is parked", || parked(admin) == N as u64);
    // All send at once, then all read: every one resumes and is answered.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("GET /echo?second={i} HTTP/1.1\r\nHost: park.test\r\n\r\n").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        assert_eq!(echo_json(&r)["query"], format!("second={i}"));
    }
    eventually("every connection is parked again", || {
        parked(admin) == N as u64
    });
    // Half the clients go away while parked: the proxy frees them without being asked.
    clients.truncate(N / 2);
    eventually("the closed half is freed", || {
        let s = admin_stats(admin);
        stat(&s, "worker.0.downstream_cx_parked") == (N / 2) as u64
            && stat(&s, "worker.0.downstream_cx_active") == (N / 2) as u64
    });
    for (i, c) in clients.iter_mut().enumerate() {
        get_echo(c, &format!("third={i}"));
    }
    drop(clients);
    eventually("every connection's end is counted", || {
        let s = admin_stats(admin);
        stat(&s, "worker.0.downstream_cx_active") == 0
            && stat(&s, "worker.0.downstream_cx_parked") == 0
    });
    assert!(proxy.stop().success());
}

#[test]
fn requests_racing_the_park_threshold_are_never_lost() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, admin) = start(origin.addr, "200ms", "60s");
    let addr = proxy.addr;
    // Pauses spread around the threshold (the coarse clock ticks every 100 ms): some requests
    // arrive while their connection is quiescing or being parked.
    let threads: Vec<_> = (0..24)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..12u64 {
                    get_echo(&mut c, &format!("t={t}&i={i}"));
                    thread::sleep(Duration::from_millis(150 + (t * 7 + i * 13) % 200));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let s = admin_stats(admin);
    assert!(
        stat(&s, "worker.0.downstream_cx_park_total") > 0,
        "no connection parked: the test did not test the race"
    );
    assert!(proxy.stop().success());
}

#[test]
fn a_drain_closes_parked_connections_at_once() {
    let origin = BenchOrigin::start(&[]);
    let (mut proxy, admin) = start(origin.addr, "200ms", "60s");
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(proxy.addr)).collect();
    for c in &mut clients {
        get_echo(c, "a=1");
    }
    eventually("every connection is parked", || parked(admin) == 5);
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    for c in &mut clients {
        assert!(c.closed(), "a parked connection is closed by the drain");
    }
    let st = proxy.wait_exit(WAIT).expect("ringway exits after SIGTERM");
    assert!(st.success());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the drain waited for parked connections ({:?}; drain_timeout 5 s)",
        t.elapsed()
    );
}
