//! `io_driver`: where io_uring is refused (here: a seccomp filter that answers the io_uring
//! syscalls with EPERM, as container runtimes' default profiles do), `auto` serves on epoll with
//! one warning naming the reason and the cost, and `io_uring` refuses to start with a hint. The
//! driver in use shows in `/server_info` and the `server.io_driver.*` gauges; `--io-driver`
//! beats `RINGWAY_IO_DRIVER`, which beats the config's `io_driver`.
//!
//! (The rest of the suite runs on epoll too: `scripts/test.sh` runs it again with
//! `RINGWAY_IO_DRIVER=epoll`.)

use crate::support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use support::*;

fn server_info(admin_addr: std::net::SocketAddr) -> serde_json::Value {
    let r = admin(admin_addr, "GET", "/server_info");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    serde_json::from_slice(&r.body).expect("server_info JSON")
}

/// 100 requests on one keep-alive connection, a 300 KiB upload (read in pieces past the pool)
/// and 20 fresh connections: every answer is the origin's.
fn exercise(addr: std::net::SocketAddr) {
    let mut c = Client::connect(addr);
    for i in 0..100 {
        let r = c.get("example.com", &format!("/keepalive/{i}"));
        assert_eq!(r.status(), 200, "request {i}: {}", r.body_str());
    }
    let body = vec![b'x'; 300 * 1024];
    let mut head = format!(
        "POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(&body);
    let r = c.roundtrip(&head);
    assert_eq!(r.status(), 200, "upload: {}", r.body_str());
    for i in 0..20 {
        let r = get(addr, "example.com", &format!("/fresh/{i}"));
        assert_eq!(r.status(), 200, "fresh connection {i}");
    }
}

#[test]
fn auto_serves_on_epoll_where_seccomp_refuses_io_uring() {
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::simple(origin.addr).admin().yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin_env(
        &yaml,
        &["--workers", "2", "--io-driver", "auto"],
        &[(DENY_IO_URING, "1")],
    );
    exercise(proxy.addr);
    let info = server_info(admin_addr);
    assert_eq!(info["io_driver"], "epoll", "{info}");
    let stats = admin_stats(admin_addr);
    assert_eq!(stats.get("server.io_driver.epoll"), Some(&1), "{stats:?}");
    assert_eq!(
        stats.get("server.io_driver.io_uring"),
        Some(&0),
        "{stats:?}"
    );
    // One warning, with the reason and the cost.
    let log = strip_ansi(&proxy.stderr());
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring is not available"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("Operation not permitted") && warnings[0].contains("seccomp"),
        "the reason: {}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("CPU per request"),
        "the cost: {}",
        warnings[0]
    );
    proxy.stop();
}

/// `ringway run --io-driver io_uring` under a seccomp filter answering the io_uring syscalls
/// with `errno`: it must refuse to start (exit 2). Its stderr.
fn refused_start(errno: i32) -> String {
    let origin = RawOrigin::ok();
    let path = write_config(&ConfigBuilder::simple(origin.addr).yaml());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringway"));
    cmd.args([
        "run",
        "-c",
        path.to_str().expect("utf-8"),
        "--io-driver",
        "io_uring",
    ]);
    deny_io_uring_with(&mut cmd, errno);
    let out = run_bounded(&mut cmd, WAIT);
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn io_uring_mode_refuses_to_start_where_seccomp_refuses_io_uring() {
    let stderr = refused_start(libc::EPERM);
    assert!(
        stderr.contains("cannot set up io_uring") && stderr.contains("Operation not permitted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("seccomp") && stderr.contains("io_driver"),
        "the hint names the cause and the way out: {stderr}"
    );
}

#[test]
fn an_enosys_from_a_seccomp_filter_is_named_as_the_filter() {
    // podman's default profile answers io_uring_setup with ENOSYS, which alone would read as
    // a kernel without io_uring.
    let stderr = refused_start(libc::ENOSYS);
    assert!(
        stderr.contains("Function not implemented")
            && stderr.contains("A seccomp filter refuses io_uring")
            && !stderr.contains("This kernel has no io_uring"),
        "{stderr}"
    );
}

#[test]
fn config_key_env_and_flag_choose_the_driver() {
    let origin = BenchOrigin::start(&[]);
    // The config alone (no flag, no variable).
    let yaml = ConfigBuilder::simple(origin.addr)
        .top("io_driver: epoll")
        .admin()
        .yaml();
    let (proxy, admin_addr) =
        Proxy::start_with_admin_env(&yaml, &["--workers", "1"], &[("RINGWAY_IO_DRIVER", "")]);
    exercise(proxy.addr);
    assert_eq!(server_info(admin_addr)["io_driver"], "epoll");
    proxy.stop();

    // The flag beats the variable and the config.
    let (proxy, admin_addr) = Proxy::start_with_admin_env(
        &yaml,
        &["--workers", "1", "--io-driver", "io_uring"],
        &[("RINGWAY_IO_DRIVER", "epoll")],
    );
    exercise(proxy.addr);
    assert_eq!(server_info(admin_addr)["io_driver"], "io_uring");
    proxy.stop();

    // The variable beats the config.
    let yaml_uring = ConfigBuilder::simple(origin.addr)
        .top("io_driver: io_uring")
        .admin()
        .yaml();
    let (proxy, admin_addr) = Proxy::start_with_admin_env(
        &yaml_uring,
        &["--workers", "1"],
        &[("RINGWAY_IO_DRIVER", "epoll")],
    );
    assert_eq!(server_info(admin_addr)["io_driver"], "epoll");
    proxy.stop();
}

#[test]
fn bad_driver_names_are_refused_clearly() {
    let origin = RawOrigin::ok();
    let path = write_config(&ConfigBuilder::simple(origin.addr).yaml());
    let p = path.to_str().expect("utf-8");
    // The flag: clap names the flag and the value.
    let out = run_ringway(&["run", "-c", p, "--io-driver", "kqueue"], WAIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--io-driver") && out.stderr.contains("kqueue"),
        "{}",
        out.stderr
    );
    // The variable.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringway"));
    cmd.args(["run", "-c", p]).env("RINGWAY_IO_DRIVER", "uring");
    let out = run_bounded(&mut cmd, WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RINGWAY_IO_DRIVER") && stderr.contains("io_uring, epoll or auto"),
        "{stderr}"
    );
    // The config key: validate names the field, its line and the choices.
    assert_validate_refuses_with(
        &ConfigBuilder::simple(origin.addr)
            .top("io_driver: kqueue")
            .yaml(),
        &["io_driver", "line 1", "io_uring"],
    );
}

/// A connection kept open across many small writes from the client (a request trickled in
/// byte by byte) is read correctly on epoll: readiness, not completions, drives each read.
#[test]
fn epoll_reads_a_trickled_request() {
    let origin = BenchOrigin::start(&[]);
    let yaml = ConfigBuilder::simple(origin.addr).yaml();
    let proxy = Proxy::start_args(&yaml, &["--workers", "1", "--io-driver", "epoll"]);
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    for b in b"GET /trickle HTTP/1.1\r\nHost: example.com\r\n\r\n" {
        s.write_all(&[*b]).expect("write");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed before the response head");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    proxy.stop();
}
