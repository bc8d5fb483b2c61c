//! Binary upgrade by socket hand-over (`--upgrade-socket` / `--upgrade-from`): a second ringway
//! takes the first one's listening sockets (and admin socket) while clients keep connecting and
//! sending requests; the first drains and exits; no connection is refused or reset and no
//! request fails.

use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use support::*;

fn config(origin: SocketAddr, which: &str) -> String {
    ConfigBuilder::new()
        .top("workers: 2\ndrain_timeout: 5s")
        .admin()
        .route(
            "prefix: /which",
            &format!("direct_response: {{ status: 200, body: {which} }}"),
        )
        .route_prefix("/", "pool")
        .cluster("pool", &[origin])
        .yaml()
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.lock().unwrap().push(why);
    }
}

/// A new connection per request, `Connection: close`, until `stop`.
fn closing_client(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    while !stop.load(Ordering::SeqCst) {
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                t.fail(format!("connect: {e}"));
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if let Err(e) = s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n") {
            t.fail(format!("write: {e}"));
            continue;
        }
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) if got.starts_with(b"HTTP/1.1 200") => {
                t.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => t.fail(format!("answer: {:?}", String::from_utf8_lossy(&got))),
            Err(e) => t.fail(format!("read: {e}")),
        }
    }
}

/// Keep-alive requests on one connection, a new one when the proxy says `connection: close`.
fn keepalive_client(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    let mut c: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let client = c.get_or_insert_with(|| Client::connect(addr));
        if client
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .is_err()
        {
            t.fail("write on a kept-alive connection".into());
            c = None;
            continue;
        }
        match client.try_response(false) {
            Some(r) if r.status() == 200 => {
                t.ok.fetch_add(1, Ordering::SeqCst);
                if r.header("connection") == Some("close") {
                    c = None;
                }
            }
            Some(r) => {
                t.fail(format!("status {}", r.status()));
                c = None;
            }
            None => {
                t.fail("kept-alive connection closed without an answer".into());
                c = None;
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_new_process_takes_the_sockets_over_under_load_and_nothing_fails() {
    let origin = SwitchOrigin::start("o");
    let dir = scratch_dir();
    let sock = dir.join("upgrade.sock");
    let sock_s = sock.to_str().expect("path").to_string();
    let (mut old, old_admin) =
        Proxy::start_with_admin(&config(origin.addr, "old"), &["--upgrade-socket", &sock_s]);
    let addr = old.addr;
    assert_eq!(get(addr, "h", "/which").body_str(), "old");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for i in 0..8 {
        let (s, t) = (Arc::clone(&stop), Arc::clone(&tally));
        clients.push(thread::spawn(move || {
            if i % 2 == 0 {
                closing_client(addr, s, t)
            } else {
                keepalive_client(addr, s, t)
            }
        }));
    }
    thread::sleep(Duration::from_millis(300));
    let before = tally.ok.load(Ordering::SeqCst);

    // The new process: same listener (port 0 in both configs: matched by name and configured
    // address), the old admin socket, and its own upgrade socket at the same path.
    let (mut new, new_admin) = Proxy::start_with_admin(
        &config(origin.addr, "new"),
        &["--upgrade-from", &sock_s, "--upgrade-socket", &sock_s],
    );
    assert_eq!(new.addr, addr, "the same listening socket");
    assert_eq!(new_admin, old_admin, "the same admin socket");
    let t = Instant::now();
    let st = old.wait_exit(Duration::from_secs(8));
    assert!(
        st.is_some_and(|s| s.success()),
        "the old process drains and exits: {st:?}\n{}",
        old.log()
    );
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    let failed = tally.failed.lock().unwrap().clone();
    let ok = tally.ok.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\nold: {}\nnew: {}",
        failed.len(),
        ok + failed.len(),
        old.log(),
        new.log()
    );
    assert!(before > 0 && ok > before, "{before} then {ok}");
    // The new config answers now, on the same address; so does the admin port.
    assert_eq!(get(addr, "h", "/which").body_str(), "new");
    let r = admin(new_admin, "GET", "/ready");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    assert!(old
        .log()
        .contains("upgrade: the new process serves; draining"));
    assert!(new.log().contains("upgrade: listener taken over"));
    // And the new one can hand over again (its own upgrade socket is served).
    let (mut third, _) =
        Proxy::start_with_admin(&config(origin.addr, "third"), &["--upgrade-from", &sock_s]);
    assert_eq!(third.addr, addr);
    assert!(new.wait_exit(Duration::from_secs(8)).is_some());
    assert_eq!(get(addr, "h", "/which").body_str(), "third");
    assert!(third.is_running());
}

#[test]
fn an_upgrade_from_nothing_fails_clearly_and_a_busy_socket_path_is_refused() {
    let origin = SwitchOrigin::start("o");
    let dir = scratch_dir();
    let missing = dir.join("nobody.sock");
    let cfg = dir.join("c.yaml");
    std::fs::write(&cfg, config(origin.addr, "x")).expect("write");
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .arg("--upgrade-from")
            .arg(&missing),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("upgrade from") && err.contains("cannot connect to the running ringway"),
        "{err}"
    );
    // A path a running ringway serves is not taken by a second one started beside it.
    let sock = dir.join("busy.sock");
    let sock_s = sock.to_str().expect("path");
    let first = Proxy::start_args(&config(origin.addr, "a"), &["--upgrade-socket", sock_s]);
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .arg("--upgrade-socket")
            .arg(&sock),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("in use by a running process"), "{err}");
    assert_eq!(get(first.addr, "h", "/which").body_str(), "a");
}

#[test]
fn an_idle_keepalive_connection_is_answered_once_more_with_connection_close() {
    // In its task, and parked out of it (idle past park_idle_after).
    for park in ["", "park_idle_after: 100ms\n"] {
        idle_connection_across_an_upgrade(park);
    }
}

fn idle_connection_across_an_upgrade(park: &str) {
    let origin = SwitchOrigin::start("o");
    let dir = scratch_dir();
    let sock = dir.join("idle.sock");
    let sock_s = sock.to_str().expect("path").to_string();
    let cfg = |which: &str| format!("{park}{}", config(origin.addr, which));
    let mut old = Proxy::start_args(&cfg("old"), &["--upgrade-socket", &sock_s]);
    let mut c = Client::connect(old.addr);
    assert_eq!(c.get("h", "/which").body_str(), "old");
    let new = Proxy::start_args(&cfg("new"), &["--upgrade-from", &sock_s]);
    assert_eq!(new.addr, old.addr);
    eventually("the old process drains", || {
        old.log()
            .contains("upgrade: the new process serves; draining")
    });
    // Idle and kept open: the old process waits for this connection's next request.
    thread::sleep(Duration::from_millis(300));
    assert!(
        old.is_running(),
        "the old process closed an idle connection it could still serve"
    );
    let r = c.get("h", "/which");
    assert_eq!((r.status(), r.body_str()), (200, "old".to_string()));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed(), "closed after that answer");
    assert!(old
        .wait_exit(Duration::from_secs(3))
        .is_some_and(|s| s.success()));
    // New connections reach the new process.
    assert_eq!(get(new.addr, "h", "/which").body_str(), "new");
}
