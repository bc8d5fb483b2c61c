//! Shutdown signals reach only the control thread. SIGINT/SIGTERM/SIGHUP are masked before any
//! thread starts, so every thread (workers, access-log writer, span exporter, admin, stats)
//! inherits the mask and only the control thread's `sigwait` takes them: a SIGTERM that lands
//! while the process is still starting, or a second one during the drain, cannot take its
//! default action (death by signal) on a thread that does not block it.

use crate::support;

use std::{
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// SIGHUP, SIGINT and SIGTERM as bits of a `/proc/.../status` signal mask.
const SHUTDOWN_BITS: u64 =
    (1 << (libc::SIGHUP - 1)) | (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));

/// `simple_config` with an access log (`log`) and span export (sample everything) to `collector`.
fn config(origin: SocketAddr, collector: SocketAddr, log: &Path) -> String {
    let with_log = simple_config(origin).replace(
        "              stat_prefix: main\n",
        &format!(
            "              stat_prefix: main\n              access_log:\n                - path: {:?}\n                  format: \"%REQ(X-N)% %RESPONSE_CODE%\"\n",
            log.display().to_string()
        ),
    );
    format!(
        "tracing:\n  sample_rate: 1\n  flush_interval: 100ms\n  collector: {{ cluster: otel }}\n{with_log}  - name: otel\n    endpoints: [\"{collector}\"]\n"
    )
}

/// A collector that takes every POST and answers 200.
fn collector() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while c.read_request().is_some() {
            if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}") {
                break;
            }
        }
    })
}

/// The blocked-signal mask (`SigBlk`) of one `/proc/.../status` file.
fn sig_blocked(status_path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(status_path).ok()?;
    let hex = s.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Every thread of `pid` but the main one with its name and blocked mask. The main thread is the
/// control thread: waiting in `sigwait`, it shows the signals it waits for as unblocked.
fn thread_masks(pid: u32) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str() != Some(&pid.to_string()))
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let mask = sig_blocked(&e.path().join("status"))?;
            Some((name.trim().to_string(), mask))
        })
        .collect()
}

fn describe(st: std::process::ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{st}"),
    }
}

#[test]
fn defects_signals_second_sigterm_during_drain_does_not_kill() {
    let (origin, seen) = RawOrigin::counting("slow-answer", Duration::from_millis(700));
    let col = collector();
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let mut proxy = Proxy::start_args(&config(origin.addr, col.addr, &log), &["--workers", "2"]);

    // Every thread of the running proxy blocks the shutdown signals: only sigwait takes them.
    let threads = thread_masks(proxy.pid());
    assert!(
        threads.iter().any(|(n, _)| n == "ringway-log")
            && threads.iter().any(|(n, _)| n == "ringway-trace"),
        "the access-log writer and span exporter run: {threads:?}"
    );
    for (name, mask) in &threads {
        assert_eq!(
            mask & SHUTDOWN_BITS,
            SHUTDOWN_BITS,
            "thread {name} does not block SIGHUP/SIGINT/SIGTERM: {threads:?}"
        );
    }

    // One request in flight at the slow origin.
    let mut busy = Client::connect(proxy.addr);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-N: busy\r\n\r\n");
    eventually("the request reaches the origin", || {
        seen.load(std::sync::atomic::Ordering::SeqCst) == 1
    });

    proxy.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(50));
    proxy.signal(libc::SIGTERM);

    let r = busy
        .try_response(false)
        .unwrap_or_else(|| panic!("the in-flight request got no response: {}", proxy.stderr()));
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body_str(), "slow-answer");

    let st = proxy
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("no exit after SIGTERM: {}", proxy.stderr()));
    assert_eq!(st.code(), Some(0), "{}: {}", describe(st), proxy.stderr());
    // The drain ran to its end: the writer flushed the in-flight request's line.
    let text = std::fs::read_to_string(&log).expect("access log exists");
    assert_eq!(text.lines().collect::<Vec<_>>(), vec!["busy 200"]);
}

#[test]
fn defects_signals_sigterm_while_starting_exits_cleanly() {
    let origin = RawOrigin::ok();
    let col = collector();
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let cfg = dir.join("ringway.yaml");
    std::fs::write(&cfg, config(origin.addr, col.addr, &log)).expect("write config");
    let stderr_path = dir.join("ringway.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .args(["--workers", "2", "--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("stderr file"),
        ))
        .spawn()
        .expect("spawn ringway");
    let pid = child.id();
    let status_path = std::path::PathBuf::from(format!("/proc/{pid}/status"));

    // A signal that lands before `main` runs takes its default action whatever the program
    // does; from the moment the mask is in place (the first thing `ringway run` does), SIGTERM
    // must lead to a clean exit. Send it the moment the mask shows, long before "serving".
    let until = Instant::now() + WAIT;
    loop {
        if sig_blocked(&status_path).is_some_and(|m| m & SHUTDOWN_BITS == SHUTDOWN_BITS) {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "ringway exited ({}) before masking signals: {}",
                describe(st),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(Instant::now() < until, "ringway never blocked SIGTERM");
        thread::yield_now();
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let logged_serving_before = std::fs::read_to_string(&stderr_path)
        .unwrap_or_default()
        .contains("ringway serving");

    let until = Instant::now() + WAIT;
    let st = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no exit within {WAIT:?} of an early SIGTERM: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!logged_serving_before, "the signal was not early: {err}");
    assert_eq!(st.signal(), None, "{}: {err}", describe(st));
    match st.code() {
        Some(0) => assert!(err.contains("shutting down"), "{err}"),
        Some(c) => assert!(
            err.contains("ringway:") && err.contains("signal"),
            "exit code {c} without a clear message: {err}"
        ),
        None => unreachable!("neither code nor signal: {st}"),
    }
}
