//! The command line (issue 10, point 2): `ringway validate`, `ringway [run] -c FILE`,
//! `--workers`, `--log-level`, `--version`, and a listener address that is already taken.
use crate::support;
use std::{net::TcpListener, time::Duration};

use support::*;

const RUN_LIMIT: Duration = Duration::from_secs(10);

/// A valid config: one listener, two clusters (three endpoints), two routes, `workers: 2`.
fn good_config(origin: &str) -> String {
    ConfigBuilder::new()
        .top("workers: 2")
        .direct_response("path: /healthz", 200, "healthy")
        .route_prefix("/", "origin")
        .cluster("origin", &[origin])
        .cluster_raw(
            "spare",
            r#"endpoints: ["127.0.0.1:9001", { address: "127.0.0.1:9002", weight: 2 }]"#,
        )
        .yaml()
}

#[test]
fn cli_validate_ok_prints_one_line_summary_and_exits_0() {
    let path = write_config(&good_config("127.0.0.1:9000"));
    let p = path.to_str().expect("utf-8 path");
    let out = run_ringway(&["validate", "-c", p], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{p}: ok: 1 listener, 2 clusters (3 endpoints), 2 routes, workers 2\n")
    );
    assert_eq!(
        out.stderr, "",
        "validate writes nothing to stderr on success"
    );
}

#[test]
fn cli_validate_bad_file_prints_every_error_with_its_place_and_exits_1() {
    // Line numbers are those of this text (line 1 is `listeners:`).
    let bad = r#"listeners:
  - name: main
    address: localhost:10000
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                    - match: { prefix: / }
                      route: { cluster: orign }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:9000"]
  - name: second
    endpoints: ["127.0.0.1:99999"]
    lb_policy: fastest
    retries: 3
"#;
    let path = write_config(bad);
    let p = path.to_str().expect("utf-8 path");
    let out = run_ringway(&["validate", "-c", p], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, "", "nothing on stdout for a bad file");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let expected = [
        "listeners[0].address: invalid address \"localhost:10000\": expected IP:port; host names such as \"localhost\" are not resolved (use 127.0.0.1 or [::1] for localhost) (line 3)",
        "listeners[0].filter_chains[0].filters[0].http_connection_manager.virtual_hosts[0].routes[0].route.cluster: unknown cluster \"orign\" (not defined under clusters), did you mean \"origin\"? (line 12)",
        "clusters[1].endpoints[0]: invalid address \"127.0.0.1:99999\" (line 17)",
        "clusters[1].lb_policy: unknown variant `fastest`, expected one of `round_robin`, `least_request`, `random`, `ring_hash`, `maglev` (line 18)",
        "clusters[1].retries: unknown key, expected one of `name`, `connect_timeout`, `lb_policy`, `endpoints`, `max_idle_per_endpoint`, `idle_timeout`, `http_protocol_options`, `upstream_proxy_protocol`, `tls`, `protocol`, `http2_protocol_options`, `max_requests_per_connection`, `health_checks`, `outlier_detection`, `common_lb_config`, `ring_hash_lb_config`, `maglev_lb_config`, `round_robin_lb_config`, `least_request_lb_config`, `circuit_breakers`, `max_connection_duration`, `common_http_protocol_options`, `type`, `dns_refresh_rate`, `respect_dns_ttl`, `dns_lookup_family`, `dns_resolvers` (line 19)",
    ];
    for e in expected {
        assert!(
            lines.contains(&e),
            "missing error line\n  {e}\nin\n{}",
            out.stderr
        );
    }
    assert_eq!(
        lines.len(),
        expected.len(),
        "one line per error, nothing else:\n{}",
        out.stderr
    );
}

#[test]
fn cli_validate_missing_file_exits_1_naming_the_file() {
    let path = scratch_dir().join("nope.yaml");
    let p = path.to_str().expect("utf-8 path");
    let out = run_ringway(&["validate", "-c", p], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("nope.yaml"), "{}", out.stderr);
}

#[test]
fn cli_run_with_invalid_config_exits_1_with_the_errors() {
    let path = write_config(&good_config("127.0.0.1:99999"));
    let p = path.to_str().expect("utf-8 path");
    let out = run_ringway(&["run", "-c", p, "--workers", "1"], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("clusters[0].endpoints[0]: invalid address \"127.0.0.1:99999\" (line 18)"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("bound to"),
        "nothing may be bound: {}",
        out.stdout
    );
}

#[test]
fn cli_bare_dash_c_and_run_dash_c_both_serve() {
    let origin = RawOrigin::ok();
    let path = write_config(&good_config(&origin.addr.to_string()));
    let p = path.to_str().expect("utf-8 path");
    for args in [
        vec!["-c", p, "--workers", "1"],
        vec!["run", "-c", p, "--workers", "1"],
        vec!["run", "--config", p, "--workers", "1"],
    ] {
        let proxy = Proxy::start_exact(&path, &args);
        let r = get(proxy.addr, "x", "/healthz");
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, "healthy"),
            "{args:?}"
        );
        let r = get(proxy.addr, "x", "/anything");
        assert_eq!((r.status(), r.body_str().as_str()), (200, "ok"), "{args:?}");
        let st = proxy.stop();
        assert_eq!(st.code(), Some(0), "{args:?}");
    }
}

#[test]
fn cli_workers_flag_overrides_config() {
    // The config says `workers: 2`; `--workers 1` and `--workers 3` win.
    let path = write_config(&good_config("127.0.0.1:9000"));
    let p = path.to_str().expect("utf-8 path");
    for n in [1usize, 3] {
        let ns = n.to_string();
        let proxy = Proxy::start_exact(&path, &["run", "-c", p, "--workers", &ns]);
        eventually("workers started", || {
            proxy.log().contains("ringway serving")
        });
        let mut names: Vec<String> = proxy
            .thread_names()
            .into_iter()
            .filter(|t| t.starts_with("ringway-w"))
            .collect();
        names.sort();
        let want: Vec<String> = (0..n).map(|i| format!("ringway-w{i}")).collect();
        assert_eq!(names, want);
        let log = proxy.log();
        let serving = log
            .lines()
            .find(|l| l.contains("ringway serving"))
            .expect("serving line");
        assert_eq!(
            log_field(serving, "workers"),
            Some(ns.as_str()),
            "{serving}"
        );
        assert_eq!(proxy.stop().code(), Some(0));
    }
}

#[test]
fn cli_workers_zero_is_rejected() {
    let path = write_config(&good_config("127.0.0.1:9000"));
    let out = run_ringway(
        &["run", "-c", path.to_str().expect("utf-8"), "--workers", "0"],
        RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--workers must be at least 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn cli_no_config_is_an_error() {
    let out = run_ringway(&["run"], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("no config file given"),
        "{}",
        out.stderr
    );
}

#[test]
fn cli_log_level_selects_what_is_logged() {
    let path = write_config(&good_config("127.0.0.1:9000"));
    let p = path.to_str().expect("utf-8 path");

    // warn: no info lines at all, not even the start and stop lines.
    let proxy = Proxy::start_exact(
        &path,
        &["run", "-c", p, "--workers", "1", "--log-level", "warn"],
    );
    assert_eq!(get(proxy.addr, "x", "/healthz").status(), 200);
    let log_path = proxy.config_path.with_file_name("ringway.stderr");
    assert_eq!(proxy.stop().code(), Some(0));
    let log = strip_ansi(&std::fs::read_to_string(&log_path).unwrap_or_default());
    assert!(!log.contains("INFO"), "warn level logged info lines: {log}");
    assert!(!log.contains("ringway serving"), "{log}");

    // debug: debug lines appear (the memlock limit is logged at debug at start).
    let proxy = Proxy::start_exact(
        &path,
        &["run", "-c", p, "--workers", "1", "--log-level", "debug"],
    );
    eventually("debug start lines", || {
        let log = proxy.log();
        log.contains("RLIMIT_MEMLOCK") && log.contains("ringway serving")
    });
    assert!(proxy.log().contains("DEBUG"), "{}", proxy.log());
    assert_eq!(proxy.stop().code(), Some(0));

    // info (the default): start and stop lines, no debug.
    let proxy = Proxy::start_exact(&path, &["run", "-c", p, "--workers", "1"]);
    eventually("info start line", || {
        proxy.log().contains("ringway serving")
    });
    let log_path = proxy.config_path.with_file_name("ringway.stderr");
    assert_eq!(proxy.stop().code(), Some(0));
    let log = strip_ansi(&std::fs::read_to_string(&log_path).unwrap_or_default());
    assert!(log.contains("worker stopped"), "{log}");
    assert!(!log.contains("DEBUG"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file has no colour escapes: {log:?}"
    );
}

#[test]
fn cli_version() {
    let out = run_ringway(&["--version"], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("ringway {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn cli_listener_address_in_use_is_reported_and_exit_nonzero() {
    // Another process (this test) holds the port, without SO_REUSEPORT.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr");
    let origin = closed_port();
    let yaml = ConfigBuilder::simple(origin)
        .listener_address(&taken.to_string())
        .yaml();
    assert!(yaml.contains(&format!("address: {taken}")), "{yaml}");
    let path = write_config(&yaml);
    let out = run_ringway(
        &["run", "-c", path.to_str().expect("utf-8"), "--workers", "2"],
        RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "listener \"main\": address {taken} is already in use"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("bound to"), "{}", out.stdout);
    // The holder still owns its port: nothing was shared with it.
    drop(holder);
}
