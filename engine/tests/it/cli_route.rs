//! `ringway route`: the listener, chain, virtual host, route, cluster and filters a request
//! would take, from the same matching code the workers run.

use crate::support;

use std::{process::Command, time::Duration};

use support::*;

const CONFIG: &str = r#"
listeners:
  - name: web
    address: 127.0.0.1:18081
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: web
              http_filters:
                - name: cors
                  allow_origin_string_match: [{ exact: "https://a.test" }]
              virtual_hosts:
                - name: api
                  domains: ["api.test"]
                  routes:
                    - match: { prefix: /v2/, headers: [{ name: x-canary, present: true }] }
                      route: { cluster: canary, timeout: 2s, retry_policy: { retry_on: 5xx, num_retries: 3 } }
                      typed_per_filter_config: { cors: { disabled: true } }
                    - match: { prefix: /v2/ }
                      route: { cluster: stable }
                - name: rest
                  domains: ["*"]
                  routes:
                    - match: { path: /healthz }
                      direct_response: { status: 200, body: ok }
clusters:
  - name: stable
    endpoints: ["127.0.0.1:9001"]
  - name: canary
    lb_policy: least_request
    endpoints: ["127.0.0.1:9002"]
"#;

fn route(args: &[&str]) -> (Option<i32>, String) {
    let dir = scratch_dir();
    let path = dir.join("route.yaml");
    std::fs::write(&path, CONFIG).expect("write");
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["route", "-c"])
            .arg(&path)
            .args(args),
        Duration::from_secs(10),
    );
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_header_matcher_picks_the_canary_route_and_its_filter_override() {
    let (code, out) = route(&[
        "--host",
        "API.test:18081",
        "--path",
        "/v2/users",
        "--header",
        "x-canary: 1",
    ]);
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "listener   web (127.0.0.1:18081)",
        "vhost      api (domains: api.test)",
        "route      routes[0]: prefix \"/v2/\", header x-canary",
        "cluster    canary (LeastRequest): 127.0.0.1:9002",
        "timeout    2s",
        "retries    3",
        "  cors: disabled for this route",
        "  router (last)",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    // Without the header: the next route, the filter runs.
    let (code, out) = route(&["--host", "api.test", "--path", "/v2/users"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("route      routes[1]: prefix \"/v2/\""),
        "{out}"
    );
    assert!(
        out.contains("cluster    stable (RoundRobin): 127.0.0.1:9001"),
        "{out}"
    );
    assert!(out.contains("  cors: runs"), "{out}");
}

#[test]
fn no_route_exits_3_and_a_bad_config_exits_1() {
    let (code, out) = route(&["--host", "other.test", "--path", "/healthz"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("direct     200 (2 body bytes)"), "{out}");
    let (code, out) = route(&["--host", "other.test", "--path", "/nothing"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("no route of rest matches GET /nothing (the proxy answers 404)"),
        "{out}"
    );
    let (code, out) = route(&["--listener", "nope"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("listeners: web"), "{out}");
    let dir = scratch_dir();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, CONFIG.replace("cluster: stable", "cluster: stabel")).expect("write");
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["route", "-c"])
            .arg(&bad),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"stable\""));
}
