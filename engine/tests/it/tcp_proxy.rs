//! The `tcp_proxy` network filter against real origins written here (std sockets, one thread per
//! connection): echo, half-close in both orders, 1 GiB each way at once with the proxy's memory
//! bounded and every byte checked, an upstream that refuses (the client is closed promptly,
//! counted, logged `UF`) or never answers (`connect_timeout`), `max_connect_attempts` moving on
//! to a working endpoint, `idle_timeout` (and traffic that keeps a tunnel alive), resets, the
//! `tcp.<stat_prefix>.` stats and the access-log line, two workers with exact balance, an HTTP
//! listener beside a TCP one, shutdown with a tunnel open, and config errors from
//! `ringway validate`.
use crate::support;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use support::*;

const MIB: usize = 1 << 20;
/// The proxy's resident set must stay under this (KiB) while 1 GiB goes each way.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The access-log format the tests read: every command that means something for L4, and two
/// that do not (`-` for them).
const LOG_FORMAT: &str = "%START_TIME% dur=%DURATION% rx=%BYTES_RECEIVED% tx=%BYTES_SENT% up=%UPSTREAM_HOST% cluster=%UPSTREAM_CLUSTER% down=%DOWNSTREAM_REMOTE_ADDRESS% flags=%RESPONSE_FLAGS% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% proto=%PROTOCOL% path=%REQ(:PATH)%";

/// A config with one `tcp_proxy` listener `tcp` (stat prefix `db`) to cluster `backend`
/// (`connect_timeout: 1s`, round robin over `endpoints`), `extra` keys on the filter, an admin
/// server, `drain_timeout: 1s` and an access log at `log`.
fn config(endpoints: &[String], extra: &str, log: &std::path::Path) -> String {
    ConfigBuilder::new()
        .admin()
        .top("drain_timeout: 1s")
        .tcp_listener("tcp", "127.0.0.1:0")
        .tcp_proxy(&format!(
            "stat_prefix: db\ncluster: backend\naccess_log:\n  - path: {}\n    format: {}",
            log.display(),
            yaml_str(LOG_FORMAT)
        ))
        .tcp_proxy_extra(extra)
        .cluster("backend", endpoints)
        .connect_timeout("1s")
        .cluster_extra("lb_policy: round_robin")
        .yaml()
}

/// An origin on a std socket running `handle` on each connection (one thread each).
fn origin(handle: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let addr = l.local_addr().expect("origin addr");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || handle(s));
        }
    });
    addr
}

/// Echo until the client closes, then close.
fn echo(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(WAIT));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

/// An address where nothing listens (connections are refused).
fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Read until EOF (bounded by the socket's read timeout: a timeout fails the test).
fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => out,
        Err(e) => panic!("reading to EOF: {e} (after {} bytes)", out.len()),
    }
}

fn start(yaml: &str) -> (Proxy, SocketAddr) {
    Proxy::start_with_admin(yaml, &["--workers", "1"])
}

#[test]
fn tcp_proxy_echo_counts_bytes_and_logs_one_line_per_connection() {
    let up = origin(echo);
    let dir = scratch_dir();
    let log = dir.join("tcp.log");
    let (proxy, admin) = start(&config(&[up.to_string()], "", &log));
    let mut c = connect(proxy.addr);
    let local = c.local_addr().expect("local addr");
    let mut got = [0u8; 5];
    for msg in [&b"hello"[..], b"world"] {
        c.write_all(msg).expect("write");
        c.read_exact(&mut got).expect("echo");
        assert_eq!(&got, msg);
    }
    // 300 KiB more: bigger than a pool buffer, echoed back intact.
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; big.len()];
    thread::scope(|s| {
        let mut w = c.try_clone().expect("clone");
        s.spawn(move || w.write_all(&big).expect("write big"));
        c.read_exact(&mut back).expect("read big");
    });
    assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    c.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut c).is_empty(), "the echo closed after us");
    let total = 10 + 300 * 1024;

    let lines = wait_lines(&log, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for want in [
        format!("rx={total} tx={total} "),
        format!("up={up} cluster=backend down={local} "),
        "flags=- code=0 details=- proto=- path=-".to_string(),
    ] {
        assert!(line.contains(&want), "{want:?} in {line:?}");
    }
    assert!(line.starts_with("20"), "a start time: {line}");
    let dur: u64 = log_value(line, "dur=").parse().expect("duration ms");
    assert!(dur < 10_000, "{line}");

    let st = admin_stats(admin);
    let stat = |k: &str| st.get(k).copied().unwrap_or_else(|| panic!("no {k}"));
    assert_eq!(stat("tcp.db.downstream_cx_total"), 1);
    assert_eq!(stat("tcp.db.downstream_cx_rx_bytes_total"), total as u64);
    assert_eq!(stat("tcp.db.downstream_cx_tx_bytes_total"), total as u64);
    assert_eq!(stat("tcp.db.idle_timeout"), 0);
    assert_eq!(stat("tcp.db.downstream_cx_no_route"), 0);
    assert_eq!(stat("cluster.backend.upstream_cx_total"), 1);
    assert_eq!(stat("cluster.backend.upstream_cx_connect_fail"), 0);
    assert_eq!(stat("cluster.backend.upstream_cx_active"), 0, "closed");
    assert!(
        !st.keys().any(|k| k.starts_with("http.db.")),
        "no HTTP stats for a tcp_proxy listener"
    );
    let doc = admin_json(admin);
    let h = json_hist(&doc, "tcp.db.downstream_cx_length").expect("the length histogram");
    assert_eq!(h["count"], 1, "{h}");
    let prom = support::admin(admin, "GET", "/stats/prometheus");
    assert!(
        prom.body_str()
            .contains("ringway_tcp_downstream_cx_total{envoy_tcp_prefix=\"db\"} 1\n"),
        "{}",
        prom.body_str()
    );
}

#[test]
fn tcp_proxy_on_two_workers_with_exact_balance() {
    let up = origin(echo);
    let log = scratch_dir().join("tcp.log");
    let (proxy, admin) =
        Proxy::start_with_admin(&config(&[up.to_string()], "", &log), &["--workers", "2"]);
    // Held open together, so the workers' counts differ and some are handed over.
    let mut conns: Vec<TcpStream> = (0..16).map(|_| connect(proxy.addr)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&[i as u8; 4]).expect("write");
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut got = [0u8; 4];
        c.read_exact(&mut got).expect("echo");
        assert_eq!(got, [i as u8; 4]);
    }
    let st = admin_stats(admin);
    assert_eq!(st["tcp.db.downstream_cx_total"], 16);
    assert_eq!(
        st["worker.0.downstream_cx_active"] + st["worker.1.downstream_cx_active"],
        16
    );
    let (a, b) = (
        st["worker.0.downstream_cx_active"],
        st["worker.1.downstream_cx_active"],
    );
    assert!(a.abs_diff(b) <= 2, "exact balance: {a} and {b}");
    drop(conns);
    assert_eq!(wait_lines(&log, 16).len(), 16);
}

#[test]
fn tcp_proxy_and_http_listeners_side_by_side() {
    let up = origin(echo);
    let yaml = ConfigBuilder::new()
        .admin()
        .listener("web", "127.0.0.1:0")
        .stat_prefix("web")
        .direct_response("prefix: /", 200, "web")
        .tcp_listener("raw", "127.0.0.1:0")
        .tcp_proxy("cluster: backend")
        .cluster("backend", &[up])
        .yaml();
    let (proxy, admin) = start(&yaml);
    let r = get(proxy.listeners["web"], "h", "/");
    assert_eq!((r.status(), r.body_str()), (200, "web".to_string()));
    let mut c = connect(proxy.listeners["raw"]);
    c.write_all(b"raw").expect("write");
    let mut got = [0u8; 3];
    c.read_exact(&mut got).expect("echo");
    assert_eq!(&got, b"raw");
    drop(c);
    let st = admin_stats(admin);
    assert_eq!(st.get("http.web.downstream_rq_total"), Some(&1));
    assert_eq!(
        st.get("tcp.raw.downstream_cx_total"),
        Some(&1),
        "stat_prefix: the listener name"
    );
    assert_eq!(st.get("tcp.raw.downstream_cx_rx_bytes_total"), Some(&3));
    assert!(!st.contains_key("tcp.web.downstream_cx_total"));
    assert!(!st.contains_key("http.raw.downstream_rq_total"));
}

fn log_value<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[at..].split(' ').next().unwrap_or("")
}

#[test]
fn tcp_proxy_half_close_client_first_still_gets_the_reply() {
    // The origin reads the whole request (until the client's FIN reaches it), then answers
    // with its length and 1 MiB, and closes.
    let up = origin(|mut s| {
        let _ = s.set_read_timeout(Some(WAIT));
        let mut req = Vec::new();
        if s.read_to_end(&mut req).is_err() {
            return;
        }
        let mut reply = format!("got {}\n", req.len()).into_bytes();
        reply.extend((0..MIB).map(|i| (i % 253) as u8));
        let _ = s.write_all(&reply);
    });
    let log = scratch_dir().join("tcp.log");
    let (proxy, _admin) = start(&config(&[up.to_string()], "", &log));
    let mut c = connect(proxy.addr);
    c.write_all(&[7u8; 100_000]).expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let reply = read_to_eof(&mut c);
    assert!(
        reply.starts_with(b"got 100000\n"),
        "{:?}",
        &reply[..20.min(reply.len())]
    );
    let body = &reply[11..];
    assert_eq!(body.len(), MIB);
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    let line = &wait_lines(&log, 1)[0];
    assert!(
        line.contains(&format!("rx=100000 tx={} ", reply.len())),
        "{line}"
    );
}

#[test]
fn tcp_proxy_half_close_upstream_first_client_still_sends() {
    // The origin greets, half-closes, then reads what the client sends until the client's FIN,
    // and reports it.
    let (tx, rx) = mpsc::channel::<usize>();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(b"hello, then FIN\n").expect("greet");
        s.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let ok = got.iter().enumerate().all(|(i, &b)| b == (i % 241) as u8);
        let _ = tx.send(if ok { got.len() } else { usize::MAX });
    });
    let log = scratch_dir().join("tcp.log");
    let (proxy, _admin) = start(&config(&[up.to_string()], "", &log));
    let mut c = connect(proxy.addr);
    // The origin's FIN arrives while our side is still open.
    assert_eq!(read_to_eof(&mut c), b"hello, then FIN\n");
    let data: Vec<u8> = (0..2 * MIB + 123).map(|i| (i % 241) as u8).collect();
    c.write_all(&data)
        .expect("the client still sends after the origin's FIN");
    c.shutdown(Shutdown::Write).expect("half-close");
    let got = rx.recv_timeout(WAIT).expect("the origin reports");
    assert_eq!(got, data.len(), "every byte, in order");
    let line = &wait_lines(&log, 1)[0];
    assert!(
        line.contains(&format!("rx={} tx=16 ", data.len())),
        "{line}"
    );
}

/// 1 MiB blocks of a pattern with the block's number in its first 8 bytes: a lost, repeated or
/// reordered piece anywhere breaks the comparison of some block.
fn block(seed: u8) -> Vec<u8> {
    (0..MIB)
        .map(|i| ((i % 251) as u8) ^ ((i >> 13) as u8) ^ seed)
        .collect()
}

fn send_blocks(s: &mut TcpStream, seed: u8, blocks: u64) {
    let mut b = block(seed);
    for n in 0..blocks {
        b[..8].copy_from_slice(&n.to_le_bytes());
        s.write_all(&b).expect("send a block");
    }
}

/// Read `blocks` blocks and check each; returns how many were wrong.
fn check_blocks(s: &mut TcpStream, seed: u8, blocks: u64) -> u64 {
    let mut want = block(seed);
    let mut got = vec![0u8; MIB];
    let mut bad = 0;
    for n in 0..blocks {
        s.read_exact(&mut got).expect("receive a block");
        want[..8].copy_from_slice(&n.to_le_bytes());
        if got != want {
            bad += 1;
        }
    }
    bad
}

#[test]
fn tcp_proxy_one_gib_each_way_at_once_in_bounded_memory() {
    const BLOCKS: u64 = 1024;
    // The origin sends 1 GiB while it checks the 1 GiB coming in, then closes.
    let (tx, rx) = mpsc::channel::<u64>();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.set_write_timeout(Some(WAIT)).expect("timeout");
        let mut w = s.try_clone().expect("clone");
        let sender = thread::spawn(move || {
            send_blocks(&mut w, 0x5a, BLOCKS);
            let _ = w.shutdown(Shutdown::Write);
        });
        let mut r = s;
        let bad = check_blocks(&mut r, 0xa5, BLOCKS);
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        let _ = sender.join();
        let _ = tx.send(bad + rest.len() as u64);
    });
    let log = scratch_dir().join("tcp.log");
    let (proxy, admin) = start(&config(&[up.to_string()], "", &log));
    let c = connect(proxy.addr);
    let started = Instant::now();
    let mut w = c.try_clone().expect("clone");
    let sampler = {
        let pid = proxy.pid();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let h = thread::spawn(move || {
            let mut max = 0;
            while stop_rx.recv_timeout(Duration::from_millis(10)).is_err() {
                max = max.max(proc_status_kib(pid, "VmRSS:"));
            }
            max
        });
        (stop_tx, h)
    };
    let sender = thread::spawn(move || {
        send_blocks(&mut w, 0xa5, BLOCKS);
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut r = c;
    let bad_down = check_blocks(&mut r, 0x5a, BLOCKS);
    let tail = read_to_eof(&mut r);
    sender.join().expect("client sender");
    let bad_up = rx.recv_timeout(WAIT).expect("origin's count");
    let took = started.elapsed();
    let _ = sampler.0.send(());
    let sampled = sampler.1.join().expect("sampler");
    let peak = proxy.peak_rss_kib();
    println!(
        "1 GiB each way in {took:.2?}; proxy RSS max sampled {sampled} KiB, peak (VmHWM) {peak} KiB"
    );
    assert_eq!(
        (bad_down, tail.len()),
        (0, 0),
        "downstream: bad blocks, extra bytes"
    );
    assert_eq!(bad_up, 0, "upstream: bad blocks or extra bytes");
    assert!(peak < RSS_LIMIT_KIB, "proxy peak RSS {peak} KiB");

    let gib = (BLOCKS as usize * MIB) as u64;
    let line = &wait_lines(&log, 1)[0];
    assert!(line.contains(&format!("rx={gib} tx={gib} ")), "{line}");
    let st = admin_stats(admin);
    assert_eq!(st.get("tcp.db.downstream_cx_rx_bytes_total"), Some(&gib));
    assert_eq!(st.get("tcp.db.downstream_cx_tx_bytes_total"), Some(&gib));
    assert!(
        st.get("worker.0.body_bulk_runs").copied().unwrap_or(0) >= 2,
        "both directions moved 1 MiB pieces: {:?}",
        st.get("worker.0.body_bulk_runs")
    );
}

#[test]
fn tcp_proxy_refused_upstream_closes_the_client_counts_and_logs_uf() {
    let dead = refusing_addr();
    let log = scratch_dir().join("tcp.log");
    let (proxy, admin) = start(&config(&[dead.to_string()], "", &log));
    let mut c = connect(proxy.addr);
    let t = Instant::now();
    assert!(read_to_eof(&mut c).is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "closed promptly: {:?}",
        t.elapsed()
    );
    let line = &wait_lines(&log, 1)[0];
    assert!(line.contains(&format!("up={dead} ")), "{line}");
    assert!(line.contains(" flags=UF "), "{line}");
    assert!(line.contains(" rx=0 tx=0 "), "{line}");
    let st = admin_stats(admin);
    assert_eq!(st.get("cluster.backend.upstream_cx_connect_fail"), Some(&1));
    assert_eq!(
        st.get("cluster.backend.upstream_cx_connect_attempts_exceeded"),
        Some(&1)
    );
    assert_eq!(st.get("cluster.backend.upstream_cx_total"), Some(&0));
    assert_eq!(st.get("tcp.db.downstream_cx_total"), Some(&1));
}

#[test]
fn tcp_proxy_max_connect_attempts_moves_to_another_endpoint() {
    let dead = refusing_addr();
    let up = origin(echo);
    let log = scratch_dir().join("tcp.log");
    let eps = [dead.to_string(), up.to_string()];
    let (proxy, admin) = start(&config(&eps, "max_connect_attempts: 2", &log));
    for i in 0..4u8 {
        let mut c = connect(proxy.addr);
        c.write_all(&[i; 3]).expect("write");
        let mut got = [0u8; 3];
        c.read_exact(&mut got).expect("echoed by the live endpoint");
        assert_eq!(got, [i; 3]);
    }
    let st = admin_stats(admin);
    // Round robin over two endpoints: every connection after the first starts on the dead one.
    let fails = st["cluster.backend.upstream_cx_connect_fail"];
    assert!((3..=4).contains(&fails), "{fails}");
    assert_eq!(
        st["cluster.backend.upstream_cx_connect_attempts_exceeded"],
        0
    );
    assert_eq!(st["cluster.backend.upstream_cx_total"], 4);
    // Each connection logged its final endpoint, the live one, with no flag.
    let lines = wait_lines(&log, 4);
    for l in &lines {
        assert!(
            l.contains(&format!("up={up} ")) && l.contains(" flags=- "),
            "{l}"
        );
    }

    // With one attempt, a connection that picks the dead endpoint is closed.
    let log = scratch_dir().join("tcp.log");
    let (proxy, admin) = start(&config(&eps, "", &log));
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let mut c = connect(proxy.addr);
        let _ = c.write_all(b"x");
        let mut got = [0u8; 1];
        outcomes.push(c.read_exact(&mut got).is_ok());
    }
    assert_eq!(outcomes.iter().filter(|&&ok| ok).count(), 1, "{outcomes:?}");
    assert_eq!(
        admin_stats(admin)["cluster.backend.upstream_cx_connect_attempts_exceeded"],
        1
    );
}

/// An address whose SYNs go unanswered: a listener that never accepts, its accept queue
/// filled (Linux then drops new SYNs), so connecting to it can only time out. The listener and
/// the connections filling its queue are returned to keep them open.
fn blackhole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    s.bind(&addr.into()).expect("bind");
    s.listen(0).expect("listen");
    let addr = s
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet addr");
    let mut fill = Vec::new();
    // Backlog 0 holds one connection; connect until one no longer completes at once.
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => fill.push(c),
            Err(_) => return (addr, s, fill),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[test]
fn tcp_proxy_connect_timeout_then_the_next_endpoint() {
    let (hole, _keep, _fill) = blackhole();
    let up = origin(echo);
    let eps = [hole.to_string(), up.to_string()];
    let log = scratch_dir().join("tcp.log");
    let yaml = config(&eps, "max_connect_attempts: 2", &log)
        .replace("connect_timeout: 1s", "connect_timeout: 300ms");
    let (proxy, admin) = start(&yaml);
    // Two connections: with round robin, at least one tries the black hole first, waits out
    // connect_timeout, then reaches the live endpoint.
    let mut slowest = Duration::ZERO;
    for i in 0..2u8 {
        let t = Instant::now();
        let mut c = connect(proxy.addr);
        c.write_all(&[i]).expect("write");
        let mut got = [0u8; 1];
        c.read_exact(&mut got).expect("echoed by the live endpoint");
        assert_eq!(got, [i]);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest >= Duration::from_millis(250) && slowest < Duration::from_secs(3),
        "one connection waited out the 300ms connect timeout: {slowest:?}"
    );
    let st = admin_stats(admin);
    // Round robin: the second connection starts on the black hole whatever the first did.
    let fails = st["cluster.backend.upstream_cx_connect_fail"];
    assert!((1..=2).contains(&fails), "{fails}");
    assert_eq!(st["cluster.backend.upstream_cx_total"], 2);

    // With only the black hole: the client is closed once the timeout is up, logged UF.
    let log = scratch_dir().join("tcp.log");
    let yaml = config(&[hole.to_string()], "", &log)
        .replace("connect_timeout: 1s", "connect_timeout: 300ms");
    let (proxy, _admin) = start(&yaml);
    let mut c = connect(proxy.addr);
    let t = Instant::now();
    assert!(read_to_eof(&mut c).is_empty());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let line = &wait_lines(&log, 1)[0];
    assert!(
        line.contains(" flags=UF ") && line.contains(&format!("up={hole} ")),
        "{line}"
    );
}

#[test]
fn tcp_proxy_idle_timeout_closes_both_sides_and_traffic_keeps_it_open() {
    // The origin echoes and reports when its client (the proxy) closed.
    let (tx, rx) = mpsc::channel::<Instant>();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                echo(s);
                let _ = tx.send(Instant::now());
            });
        }
    });
    let log = scratch_dir().join("tcp.log");
    let (proxy, admin) = start(&config(&[up.to_string()], "idle_timeout: 500ms", &log));

    // Bytes every 150 ms for 1.5 s: never idle for 500 ms, so it stays open.
    let mut c = connect(proxy.addr);
    let mut got = [0u8; 1];
    for i in 0..10 {
        if i > 0 {
            thread::sleep(Duration::from_millis(150));
        }
        c.write_all(b"k").expect("write");
        c.read_exact(&mut got).expect("still open");
    }
    // Now quiet: both sides close after the timeout (give or take the clock's 100 ms tick).
    let quiet = Instant::now();
    assert!(read_to_eof(&mut c).is_empty());
    let closed = quiet.elapsed();
    assert!(
        closed >= Duration::from_millis(350) && closed < Duration::from_secs(2),
        "closed after {closed:?} of quiet"
    );
    let origin_closed = rx.recv_timeout(WAIT).expect("the origin was closed too");
    assert!(origin_closed.duration_since(quiet) < Duration::from_secs(2));
    let line = &wait_lines(&log, 1)[0];
    assert!(line.contains(" rx=10 tx=10 "), "{line}");
    assert!(
        line.contains(" details=tcp_session_idle_timeout "),
        "{line}"
    );
    assert!(
        line.contains(" flags=- "),
        "no response flag, as Envoy: {line}"
    );
    let st = admin_stats(admin);
    assert_eq!(st["tcp.db.idle_timeout"], 1);
}

/// Close `s` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

#[test]
fn tcp_proxy_a_reset_on_either_side_closes_the_other_at_once() {
    // The origin answers the first byte, then resets; or echoes and reports when it was closed.
    let (tx, rx) = mpsc::channel::<Instant>();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(WAIT)).expect("timeout");
                let mut first = [0u8; 1];
                if s.read_exact(&mut first).is_err() {
                    return;
                }
                let _ = s.write_all(&first);
                if first[0] == b'R' {
                    thread::sleep(Duration::from_millis(50));
                    reset(s);
                } else {
                    echo(s);
                    let _ = tx.send(Instant::now());
                }
            });
        }
    });
    let log = scratch_dir().join("tcp.log");
    // idle_timeout stays at its default (1h): only the reset can end these tunnels.
    let (proxy, _admin) = start(&config(&[up.to_string()], "", &log));

    // The upstream resets: the client's connection ends promptly.
    let mut c = connect(proxy.addr);
    c.write_all(b"R").expect("write");
    let t = Instant::now();
    assert_eq!(read_to_eof(&mut c), b"R");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // The client resets: the upstream connection is closed promptly.
    let mut c = connect(proxy.addr);
    c.write_all(b"E").expect("write");
    let mut got = [0u8; 1];
    c.read_exact(&mut got).expect("echo");
    let t = Instant::now();
    reset(c);
    let closed = rx.recv_timeout(WAIT).expect("the origin's side was closed");
    assert!(closed.duration_since(t) < Duration::from_secs(2));
    let lines = wait_lines(&log, 2);
    assert!(lines.iter().all(|l| l.contains(" rx=1 tx=1 ")), "{lines:?}");
}

#[test]
fn tcp_proxy_shutdown_lets_a_tunnel_run_until_drain_timeout() {
    let up = origin(echo);
    let log = scratch_dir().join("tcp.log");
    let (mut proxy, _admin) = start(&config(&[up.to_string()], "", &log));
    let mut c = connect(proxy.addr);
    c.write_all(b"a").expect("write");
    let mut got = [0u8; 1];
    c.read_exact(&mut got).expect("echo");
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    // Still served while draining (drain_timeout 1s)...
    thread::sleep(Duration::from_millis(200));
    c.write_all(b"b").expect("write while draining");
    c.read_exact(&mut got).expect("echo while draining");
    assert_eq!(&got, b"b");
    // ...then closed when the drain time is up, and the proxy exits.
    assert!(read_to_eof(&mut c).is_empty());
    let st = proxy.wait_exit(WAIT).expect("exited");
    assert!(st.success(), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn tcp_proxy_config_errors_name_the_field_and_line() {
    let bad = r#"listeners:
  - name: db
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - tcp_proxy: { cluster: nowhere, max_connect_attempts: 0 }
  - name: both
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - tcp_proxy: { cluster: backend }
          - http_connection_manager: { virtual_hosts: [{ name: a, domains: ["*"], routes: [] }] }
clusters:
  - name: backend
    endpoints: ["127.0.0.1:9000"]
"#;
    assert_validate_refuses(
        bad,
        &[
        "listeners[0].filter_chains[0].filters[0].tcp_proxy.cluster: unknown cluster \"nowhere\" (not defined under clusters) (line 6)",
        "listeners[0].filter_chains[0].filters[0].tcp_proxy.max_connect_attempts: max_connect_attempts must be at least 1 (line 6)",
        "listeners[1].filter_chains[0].filters[1].http_connection_manager: `http_connection_manager` and `tcp_proxy` cannot share a filter chain: each is a terminal filter that owns the connection (give each its own filter chain or listener) (line 12)",
        ],
    );
}
