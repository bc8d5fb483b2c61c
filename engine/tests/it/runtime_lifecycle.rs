//! The process at run time (issue 10, points 2 and 3): SIGTERM/SIGINT drain, several workers all
//! accepting, and running out of file descriptors without spinning or dying.
use crate::support;
use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use support::*;

fn config_with(origin: SocketAddr, top: &str) -> String {
    ConfigBuilder::simple(origin).top(top).yaml()
}

/// Connecting fails with "connection refused" (the listener is gone).
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

#[test]
fn runtime_sigterm_finishes_in_flight_closes_idle_refuses_new_and_exits_0() {
    let origin = BenchOrigin::start(&[]);
    let mut proxy = Proxy::start(&config_with(origin.addr, "drain_timeout: 5s\n"));

    // An idle keep-alive connection (one request done) ...
    let mut idle = Client::connect(proxy.addr);
    assert_eq!(idle.get("a", "/echo").status(), 200);
    // ... and a request in flight at the origin for a second.
    let mut busy = Client::connect(proxy.addr);
    busy.send(b"GET /delay/1000 HTTP/1.1\r\nHost: a\r\n\r\n");
    thread::sleep(Duration::from_millis(200));

    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);

    // The idle connection is closed at once, without a response.
    assert!(
        idle.closed(),
        "idle keep-alive connection not closed on SIGTERM"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "idle close took {:?}",
        t0.elapsed()
    );
    // New connections are refused while the in-flight request is still running.
    eventually("new connects refused", || refused(proxy.addr));
    assert!(
        proxy.is_running(),
        "exited before the in-flight request finished"
    );

    // The in-flight request completes, told that the connection closes.
    let r = busy.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(busy.closed());
    let done = t0.elapsed();
    assert!(
        done >= Duration::from_millis(600),
        "answered too early: {done:?}"
    );

    let st = proxy.wait_exit(WAIT).expect("ringway exits after draining");
    assert_eq!(st.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain took {:?}",
        t0.elapsed()
    );
}

#[test]
fn runtime_drain_timeout_bounds_shutdown() {
    let origin = BenchOrigin::start(&[]);
    let mut proxy = Proxy::start(&config_with(origin.addr, "drain_timeout: 400ms\n"));
    let mut busy = Client::connect(proxy.addr);
    busy.send(b"GET /delay/5000 HTTP/1.1\r\nHost: a\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);
    let st = proxy
        .wait_exit(WAIT)
        .expect("ringway exits after drain_timeout");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0));
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "exit after {took:?} with drain_timeout 400ms"
    );
    // The cut-off request gets no response, just the end of the connection.
    assert!(busy.try_response(false).is_none());
}

#[test]
fn runtime_sigint_stops_like_sigterm() {
    let origin = RawOrigin::ok();
    let mut proxy = Proxy::start(&simple_config(origin.addr));
    let mut idle = Client::connect(proxy.addr);
    assert_eq!(idle.get("a", "/").status(), 200);
    proxy.signal(libc::SIGINT);
    assert!(idle.closed(), "idle connection not closed on SIGINT");
    let st = proxy.wait_exit(WAIT).expect("ringway exits on SIGINT");
    assert_eq!(st.code(), Some(0));
    assert!(refused(proxy.addr));
    let log = proxy.log();
    assert!(
        log.contains("shutting down") && log.contains("signal=2"),
        "{log}"
    );
}

#[test]
fn runtime_sighup_reloads_and_serving_goes_on() {
    let origin = RawOrigin::ok();
    let mut proxy = Proxy::start(&simple_config(origin.addr));
    proxy.signal(libc::SIGHUP);
    eventually("the reload logged", || {
        proxy.log().contains("config reload: version 2")
    });
    assert!(proxy.is_running());
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    assert_eq!(proxy.stop().code(), Some(0));
}

/// Open `n` connections, one request each, and return the per-worker connection counts the
/// proxy logs when it stops.
fn spread(proxy: Proxy, n: usize) -> std::collections::BTreeMap<usize, u64> {
    // Hold them all open at once so no worker can serve them all in turn by luck of timing.
    let mut clients: Vec<Client> = (0..n).map(|_| Client::connect(proxy.addr)).collect();
    for c in &mut clients {
        let r = c.get("a", "/");
        assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"));
    }
    drop(clients);
    let log_path = proxy.config_path.with_file_name("ringway.stderr");
    assert_eq!(proxy.stop().code(), Some(0));
    worker_connection_counts(&std::fs::read_to_string(log_path).unwrap_or_default())
}

#[test]
fn runtime_two_workers_from_config_both_accept() {
    let origin = RawOrigin::ok();
    // No --workers: the config's `workers: 2` applies.
    let proxy = Proxy::start_args(&config_with(origin.addr, "workers: 2\n"), &[]);
    let names = proxy.thread_names();
    assert!(
        names.iter().any(|t| t == "ringway-w0") && names.iter().any(|t| t == "ringway-w1"),
        "{names:?}"
    );
    let counts = spread(proxy, 40);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 40, "{counts:?}");
    assert!(
        counts.values().all(|&c| c > 0),
        "a worker accepted nothing: {counts:?}"
    );
}

#[test]
fn runtime_two_workers_from_flag_both_accept() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start_args(
        &config_with(origin.addr, "workers: 1\n"),
        &["--workers", "2"],
    );
    let counts = spread(proxy, 40);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 40, "{counts:?}");
    assert!(
        counts.values().all(|&c| c > 0),
        "a worker accepted nothing: {counts:?}"
    );
}

/// Set the soft RLIMIT_NOFILE of another process.
fn set_nofile(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) reading the current limits into a local.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit get: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit(2) with a valid new limit; lowering a soft limit needs no privilege.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit set: {}", std::io::Error::last_os_error());
}

#[test]
fn runtime_fd_exhaustion_neither_spins_nor_stops_serving() {
    let origin = RawOrigin::ok();
    let proxy = Proxy::start(&simple_config(origin.addr));
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    // Room for a handful of connections only.
    let base = proxy.fd_count() as u64;
    set_nofile(proxy.pid(), base + 6);

    // Far more connections than descriptors: the rest wait in the listen backlog.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect_timeout(&proxy.addr, WAIT).expect("connect (backlog)"))
        .collect();
    eventually("accept hits EMFILE", || {
        proxy.log().contains("out of file descriptors")
    });

    // Saturated: the proxy must idle, not spin on accept.
    let t0 = Instant::now();
    let c0 = proxy.cpu_ticks();
    thread::sleep(Duration::from_millis(1000));
    let used = proxy.cpu_ticks() - c0;
    let hz = 100; // USER_HZ on Linux
    let pct = used * 100 * 1000 / (hz * t0.elapsed().as_millis() as u64).max(1);
    assert!(
        pct < 30,
        "proxy used {pct}% of a core while out of descriptors ({used} ticks)"
    );

    // Descriptors free up: serving resumes (backlogged connections are accepted and closed).
    drop(clients);
    let r = get(proxy.addr, "a", "/");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"), "{r:?}");
    // And keeps going for more than one connection.
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    }
    assert_eq!(proxy.stop().code(), Some(0));
}
