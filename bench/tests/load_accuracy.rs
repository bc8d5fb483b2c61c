//! Proof that `ringway-bench load` measures right, against the real origin over loopback:
//! the median of a known delay, a stall seen by open loop and hidden by closed loop, and request
//! counts equal to the origin's own. Also the JSON keys scripts rely on, errors by kind, HTTP/2,
//! TLS, `--new-connection-per-request` (one connection per request, seen by the origin), and
//! `compare`. The load tests share the two cores, so they run one at a time.

mod common;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use common::{load, num, raw, read_until, Origin};

/// Load tests must not overlap: they would measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn load_delay_median_is_the_delay() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1", "--delay", "5ms"]);
    let r = load(
        &[
            &o.url("/"),
            "-c",
            "4",
            "-d",
            "2s",
            "--warmup",
            "200ms",
            "--workers",
            "1",
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let p50 = num(&r.json, &["latency_us", "p50"]);
    assert!(
        (5000.0..=6500.0).contains(&p50),
        "median {p50}us not within 5ms..6.5ms\n{}",
        r.stdout
    );
    // Four connections, each waiting ~5ms: about 800 req/s, certainly not more than 4/5ms.
    let rps = num(&r.json, &["requests_per_sec"]);
    assert!(rps > 400.0 && rps <= 800.0 * 1.02, "rps {rps}");
    assert_eq!(num(&r.json, &["errors", "total"]), 0.0);
}

/// Freezes the origin's only worker for `ms` from a side connection.
fn stall_after(
    addr: std::net::SocketAddr,
    after: Duration,
    ms: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let mut s = raw(addr);
        s.write_all(format!("GET /stall/{ms} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let got = read_until(&mut s, b"\n\r\n", 1);
        assert!(got.starts_with(b"HTTP/1.1 200"));
    })
}

#[test]
fn load_stall_shows_in_open_loop_and_hides_in_closed_loop() {
    let _g = serial();
    // Open loop: 2000 req/s for 3s; a 500ms stall delays every request meant to go out during it.
    let o = Origin::start(&["--workers", "1"]);
    let stall = stall_after(o.addr, Duration::from_millis(1200), 500);
    let open = load(
        &[
            &o.url("/"),
            "-c",
            "8",
            "-R",
            "2000",
            "-d",
            "3s",
            "--workers",
            "1",
        ],
        LIMIT,
    );
    stall.join().unwrap();
    drop(o);
    assert!(open.ok, "{}{}", open.stdout, open.stderr);
    assert_eq!(open.json["mode"], "open");
    assert!(
        open.stdout.contains("open loop at 2000 req/s"),
        "{}",
        open.stdout
    );
    let open_p999 = num(&open.json, &["latency_us", "p999"]);
    let open_p99 = num(&open.json, &["latency_us", "p99"]);
    assert!(
        open_p999 >= 400_000.0,
        "open loop p99.9 {open_p999}us should show the 500ms stall\n{}",
        open.stdout
    );
    assert!(
        open_p99 >= 300_000.0,
        "open loop p99 {open_p99}us: ~1/6 of the requests were meant during the stall"
    );

    // Closed loop, same stall: only the few requests in flight saw it.
    let o = Origin::start(&["--workers", "1"]);
    let stall = stall_after(o.addr, Duration::from_millis(1200), 500);
    let closed = load(
        &[&o.url("/"), "-c", "2", "-d", "3s", "--workers", "1"],
        LIMIT,
    );
    stall.join().unwrap();
    drop(o);
    assert!(closed.ok, "{}{}", closed.stdout, closed.stderr);
    assert_eq!(closed.json["mode"], "closed");
    assert!(closed.stdout.contains("closed loop"), "{}", closed.stdout);
    let closed_p999 = num(&closed.json, &["latency_us", "p999"]);
    let closed_max = num(&closed.json, &["latency_us", "max"]);
    assert!(
        closed_max >= 400_000.0,
        "closed loop max {closed_max}us: the stall happened"
    );
    assert!(
        closed_p999 < 100_000.0 && closed_p999 * 4.0 < open_p999,
        "closed loop p99.9 {closed_p999}us should be the small number a naive tool reports (open: {open_p999}us)"
    );
}

#[test]
fn load_count_equals_origin_count_http1() {
    let _g = serial();
    let o = Origin::start(&["--workers", "2"]);
    let r = load(&[&o.url("/"), "-c", "16", "-d", "1500ms"], LIMIT);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let n = num(&r.json, &["requests"]) as u64;
    assert!(n > 1000, "{n}");
    assert_eq!(o.stop(), n, "the tool's count must equal the origin's");
}

#[test]
fn load_count_equals_origin_count_open_loop_http2() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1", "--h2c"]);
    let r = load(
        &[
            &o.url("/"),
            "--http2",
            "--streams",
            "4",
            "-c",
            "3",
            "-R",
            "3000",
            "-d",
            "1s",
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json["protocol"], "h2");
    let n = num(&r.json, &["requests"]) as u64;
    // The schedule holds exactly rate x duration slots.
    assert!((2990..=3010).contains(&n), "{n}");
    assert_eq!(o.stop(), n);
}

#[test]
fn load_closed_loop_http2_counts_and_streams() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1", "--h2c"]);
    let r = load(
        &[
            &o.url("/echo"),
            "--http2",
            "--streams",
            "8",
            "-c",
            "2",
            "-d",
            "1s",
            "-X",
            "POST",
            "-H",
            "x-a: b",
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let n = num(&r.json, &["requests"]) as u64;
    assert!(n > 100);
    assert_eq!(num(&r.json, &["connects"]), 2.0);
    assert_eq!(o.stop(), n);
}

#[test]
fn load_json_has_the_keys_scripts_rely_on() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    let dir = common::tempdir();
    let hdr = dir.join("dist.txt");
    let svg = dir.join("run.svg");
    let r = load(
        &[
            &o.url("/"),
            "-c",
            "2",
            "-d",
            "500ms",
            "--warmup",
            "200ms",
            "--hdr",
            hdr.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    for k in [
        "mode",
        "requests",
        "requests_per_sec",
        "bytes_per_sec",
        "errors",
        "latency_us",
        "distribution",
    ] {
        assert!(!r.json[k].is_null(), "missing {k}");
    }
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(
            r.json["latency_us"][k].is_number(),
            "missing latency_us.{k}"
        );
    }
    for k in [
        "connect",
        "read",
        "timeout",
        "status_4xx",
        "status_5xx",
        "total",
    ] {
        assert!(r.json["errors"][k].is_number(), "missing errors.{k}");
    }
    let l = &r.json["latency_us"];
    let v: Vec<f64> = ["p50", "p90", "p99", "p999", "p9999", "max"]
        .iter()
        .map(|k| l[*k].as_f64().unwrap())
        .collect();
    assert!(
        v.windows(2).all(|w| w[0] <= w[1]),
        "percentiles must not decrease: {v:?}"
    );
    let text = std::fs::read_to_string(&hdr).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{text}"
    );
    assert!(text.contains("#[Max     =") && text.contains("#[Buckets ="));
    assert!(r.stdout.contains("Detailed percentile spectrum"));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("<polyline") && svg.contains("99.9%"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_counts_errors_by_kind() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    let r = load(&[&o.url("/status/503"), "-c", "2", "-d", "300ms"], LIMIT);
    assert!(r.ok);
    assert!(num(&r.json, &["errors", "status_5xx"]) > 0.0);
    assert_eq!(
        num(&r.json, &["errors", "status_5xx"]),
        num(&r.json, &["requests"])
    );
    let r = load(&[&o.url("/status/404"), "-c", "1", "-d", "200ms"], LIMIT);
    assert_eq!(
        num(&r.json, &["errors", "status_4xx"]),
        num(&r.json, &["requests"])
    );
    // A slow answer past --timeout is a timeout.
    let r = load(
        &[
            &o.url("/delay/400"),
            "-c",
            "1",
            "-d",
            "300ms",
            "--timeout",
            "100ms",
        ],
        LIMIT,
    );
    assert!(num(&r.json, &["errors", "timeout"]) >= 1.0, "{}", r.stdout);
    let addr = o.addr;
    drop(o);
    // The same over HTTP/2 (h2c): a stream's deadline is the watchdog's too.
    let h2 = Origin::start(&["--workers", "1", "--h2c"]);
    let r = load(
        &[
            &h2.url("/delay/400"),
            "-c",
            "1",
            "--http2",
            "--streams",
            "2",
            "-d",
            "300ms",
            "--timeout",
            "100ms",
        ],
        LIMIT,
    );
    assert!(num(&r.json, &["errors", "timeout"]) >= 2.0, "{}", r.stdout);
    drop(h2);
    // Nobody listens any more: connect errors, and a failing exit status.
    let r = load(
        &[&format!("http://{addr}/"), "-c", "1", "-d", "300ms"],
        LIMIT,
    );
    assert!(!r.ok);
    assert!(num(&r.json, &["errors", "connect"]) >= 1.0, "{}", r.stdout);
    assert!(r.stdout.contains("first error: connect"), "{}", r.stdout);
}

#[test]
fn load_new_connection_per_request_closed_loop() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    let r = load(
        &[
            &o.url("/"),
            "-c",
            "4",
            "-d",
            "1s",
            "--workers",
            "1",
            "--new-connection-per-request",
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let n = num(&r.json, &["requests"]) as u64;
    assert!(n > 200, "{n}");
    assert_eq!(num(&r.json, &["errors", "total"]), 0.0, "{}", r.stdout);
    assert_eq!(num(&r.json, &["connects"]) as u64, n);
    assert_eq!(r.json["new_connection_per_request"], true);
    assert!(
        r.stdout.contains("a new connection per request"),
        "{}",
        r.stdout
    );
    assert_eq!(
        o.stop_counts(),
        (n, n),
        "the origin saw one connection per request"
    );
}

#[test]
fn load_new_connection_per_request_open_loop() {
    let _g = serial();
    let o = Origin::start(&["--workers", "1"]);
    let r = load(
        &[
            &o.url("/"),
            "-c",
            "8",
            "-R",
            "400",
            "-d",
            "1s",
            "--new-connection-per-request",
        ],
        LIMIT,
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    // 8 slots, one request each every 20 ms, for one second.
    let n = num(&r.json, &["requests"]) as u64;
    assert_eq!(n, 400, "{}", r.stdout);
    assert_eq!(r.json["mode"], "open");
    assert_eq!(num(&r.json, &["errors", "total"]), 0.0, "{}", r.stdout);
    assert!(
        num(&r.json, &["latency_us", "p50"]) < 20_000.0,
        "{}",
        r.stdout
    );
    assert_eq!(o.stop_counts(), (n, n));
}

#[test]
fn load_new_connection_per_request_needs_the_server_to_close() {
    let _g = serial();
    // Answers every request but keeps the connection open despite `Connection: close`.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let got = read_until(&mut s, b"\r\n\r\n", 1);
            seen.lock().unwrap().push(got);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            open.push(s);
        }
    });
    let r = load(
        &[
            &format!("http://{addr}/"),
            "-c",
            "1",
            "-d",
            "500ms",
            "--timeout",
            "100ms",
            "--new-connection-per-request",
        ],
        LIMIT,
    );
    let n = num(&r.json, &["requests"]);
    assert!(n >= 2.0, "{}", r.stdout);
    assert_eq!(num(&r.json, &["errors", "timeout"]), n, "{}", r.stdout);
    let heads = heads.lock().unwrap();
    assert!(heads.len() as f64 >= n);
    let first = String::from_utf8_lossy(&heads[0]).to_ascii_lowercase();
    assert!(first.contains("\r\nconnection: close\r\n"), "{first}");
}

#[test]
fn load_https_http1_and_h2() {
    let _g = serial();
    let (cert, key, ca) = common::localhost_certs();
    let o = Origin::start(&["--workers", "1", "--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://localhost:{}/", o.addr.port());
    let r1 = load(&[&url, "-c", "2", "-d", "500ms", "--cacert", &ca], LIMIT);
    assert!(r1.ok, "{}{}", r1.stdout, r1.stderr);
    let r2 = load(
        &[
            &url,
            "-c",
            "1",
            "--http2",
            "--streams",
            "4",
            "-d",
            "500ms",
            "--cacert",
            &ca,
        ],
        LIMIT,
    );
    assert!(r2.ok, "{}{}", r2.stdout, r2.stderr);
    // Without the CA the certificate is refused; --insecure accepts it.
    let r3 = load(&[&url, "-c", "1", "-d", "200ms", "--cacert", &cert], LIMIT);
    assert!(!r3.ok && num(&r3.json, &["errors", "connect"]) >= 1.0);
    let r4 = load(&[&url, "-c", "1", "-d", "200ms", "--insecure"], LIMIT);
    assert!(r4.ok);
    let n = [&r1, &r2, &r4]
        .iter()
        .map(|r| num(&r.json, &["requests"]) as u64)
        .sum::<u64>();
    assert_eq!(o.stop(), n);
    if let Some(dir) = std::path::Path::new(&ca).parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn compare_prints_ratios_and_plots() {
    let dir = common::tempdir();
    let mk = |name: &str, rps: f64, p99: f64| {
        let j = serde_json::json!({
            "label": name, "url": "http://x/", "mode": "closed", "protocol": "http/1.1",
            "connections": 8, "streams": 1, "workers": 1, "rate": null, "duration_s": 1.0, "warmup_s": 0.0,
            "requests": rps as u64, "requests_per_sec": rps, "bytes": 0, "bytes_per_sec": 0.0, "connects": 8,
            "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "parse": 0, "status_4xx": 0, "status_5xx": 0, "total": 0},
            "latency_us": {"p50": 50.0, "p90": 80.0, "p99": p99, "p999": 900.0, "p9999": 990.0, "max": 1000.0, "min": 10.0, "mean": 60.0, "stdev": 5.0},
            "distribution": [{"percentile": 0.0, "value_us": 10.0, "count": 1}, {"percentile": 0.99, "value_us": p99, "count": 99}, {"percentile": 1.0, "value_us": 1000.0, "count": 100}]
        });
        let p = dir.join(format!("{name}.json"));
        std::fs::write(&p, j.to_string()).unwrap();
        p
    };
    let a = mk("alpha", 1000.0, 100.0);
    let b = mk("beta", 2000.0, 300.0);
    let svg = dir.join("c.svg");
    let out = std::process::Command::new(common::BIN)
        .arg("compare")
        .args([&a, &b])
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("beta (x first)"), "{text}");
    assert!(text.contains("2000 (2.00x)"), "{text}");
    assert!(text.contains("(3.00x)"), "{text}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(svg.contains("alpha") && svg.contains("beta"));
    let _ = std::fs::remove_dir_all(&dir);
}
