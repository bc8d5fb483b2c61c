//! Access logs at shutdown (issue 12, point 3): lines are buffered per worker and written by a
//! writer thread, yet none is lost when the process stops — N requests then SIGTERM leave
//! exactly N lines, with one worker or several, on keep-alive and fresh connections alike.
use crate::support;
use std::{thread, time::Duration};

use support::*;

fn config(origin: std::net::SocketAddr, log: &std::path::Path) -> String {
    ConfigBuilder::simple(origin)
        .hcm_extra(&format!(
            "access_log:\n  - path: {:?}\n    format: \"%REQ(X-N)% %RESPONSE_CODE%\"",
            log.display().to_string()
        ))
        .yaml()
}

fn run(workers: &str, n: usize) {
    let origin = RawOrigin::ok();
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let mut proxy = Proxy::start_args(&config(origin.addr, &log), &["--workers", workers]);
    // Half on one keep-alive connection, half on fresh connections from two threads.
    let addr = proxy.addr;
    let keepalive = thread::spawn(move || {
        let mut c = Client::connect(addr);
        for i in 0..n / 2 {
            let r =
                c.roundtrip(format!("GET /k HTTP/1.1\r\nHost: a\r\nX-N: k{i}\r\n\r\n").as_bytes());
            assert_eq!(r.status(), 200);
        }
    });
    for i in n / 2..n {
        let r = request(
            addr,
            format!("GET /f HTTP/1.1\r\nHost: a\r\nX-N: f{i}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status(), 200);
    }
    keepalive.join().expect("client thread");
    // Straight to SIGTERM: well inside the 100ms flush interval for the last lines.
    proxy.signal(libc::SIGTERM);
    let st = proxy
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no exit after SIGTERM: {}", proxy.stderr()));
    assert!(st.success(), "{st}: {}", proxy.stderr());
    let text = std::fs::read_to_string(&log).expect("access log exists");
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != n {
        // Say which lines are extra (a repeated tag, or a line that is no request of ours).
        let mut seen = std::collections::HashMap::new();
        for l in &lines {
            *seen.entry(l.split(' ').next().unwrap_or("")).or_insert(0) += 1;
        }
        let odd: Vec<&&str> = lines
            .iter()
            .filter(|l| seen[l.split(' ').next().unwrap_or("")] > 1 || !l.ends_with(" 200"))
            .collect();
        panic!(
            "{} lines for {n} requests; repeated or odd: {odd:?}",
            lines.len()
        );
    }
    let mut tags: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), n, "every request logged once");
    assert!(lines.iter().all(|l| l.ends_with(" 200")));
}

#[test]
fn access_log_no_line_lost_at_sigterm_one_worker() {
    run("1", 400);
}

#[test]
fn access_log_no_line_lost_at_sigterm_two_workers() {
    run("2", 400);
}

#[test]
fn access_log_unwritable_path_fails_the_start() {
    let origin = RawOrigin::ok();
    let cfg = config(
        origin.addr,
        std::path::Path::new("/nonexistent-dir-ringway/access.log"),
    );
    let p = write_config(&cfg);
    let out = run_ringway(
        &["run", "-c", p.to_str().unwrap(), "--workers", "1"],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("cannot open access log /nonexistent-dir-ringway/access.log"),
        "{}",
        out.stderr
    );
}
