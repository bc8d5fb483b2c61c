//! `tcp_proxy` rules: the cluster must exist, attempts at least 1, the idle timeout's default and
//! `0s`, stat prefix and access logs; each error with its exact path, message and line.

use std::time::Duration;

use super::{assert_error, assert_errors, ok};
use crate::config::NetworkFilter;

/// A config whose one listener runs `tcp_proxy` with `keys` (line 6 holds the filter; `keys`
/// start on line 7).
fn tcp(keys: &str) -> String {
    format!(
        "listeners:
  - name: tcp
    address: 127.0.0.1:10000
    filter_chains:
      - filters:
          - tcp_proxy:
{keys}
clusters:
  - name: origin
    endpoints: [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]
"
    )
}

const TCP: &str = "listeners[0].filter_chains[0].filters[0].tcp_proxy";

#[test]
fn tcp_proxy_defaults() {
    let c = ok(&tcp("              cluster: origin"));
    let l = &c.listeners[0];
    assert!(l.http().is_none());
    let NetworkFilter::TcpProxy(t) = &l.network else {
        panic!("a tcp_proxy listener: {:?}", l.network)
    };
    assert_eq!(t.cluster, 0);
    assert_eq!(t.cluster_name, "origin");
    assert_eq!(t.stat_prefix, "tcp", "the listener name");
    assert_eq!(
        t.idle_timeout,
        Some(Duration::from_secs(3600)),
        "Envoy's 1h"
    );
    assert_eq!(t.max_connect_attempts, 1);
    assert!(t.access_log.is_empty());
    assert_eq!(l.stat_prefix(), "tcp");
    assert_eq!(
        c.summary(),
        "1 listener, 1 cluster (2 endpoints), 0 routes, workers auto"
    );
}

#[test]
fn tcp_proxy_settings() {
    let c = ok(&tcp(
        "              cluster: origin
              stat_prefix: db
              idle_timeout: 0s
              max_connect_attempts: 3
              access_log:
                - path: stdout
                  format: \"%DOWNSTREAM_REMOTE_ADDRESS% %BYTES_RECEIVED% %BYTES_SENT%\"",
    ));
    let t = c.listeners[0].tcp_proxy().expect("tcp_proxy");
    assert_eq!(t.stat_prefix, "db");
    assert_eq!(t.idle_timeout, None, "0s disables it");
    assert_eq!(t.max_connect_attempts, 3);
    assert_eq!(t.access_log.len(), 1);
    let c = ok(&tcp("              { cluster: origin, idle_timeout: 90s }"));
    let t = c.listeners[0].tcp_proxy().expect("tcp_proxy");
    assert_eq!(t.idle_timeout, Some(Duration::from_secs(90)));
}

#[test]
fn tcp_proxy_cluster_must_exist() {
    assert_error(
        &tcp("              cluster: nowhere"),
        &format!(
            "{TCP}.cluster: unknown cluster \"nowhere\" (not defined under clusters) (line 7)"
        ),
    );
    assert_error(
        &tcp("              stat_prefix: db"),
        &format!("{TCP}.cluster: required key is missing (line 7)"),
    );
}

#[test]
fn tcp_proxy_values_are_checked() {
    assert_errors(
        &tcp("              cluster: origin
              max_connect_attempts: 0
              stat_prefix: \"\"
              idle_timeout: soon
              access_log: [{ path: \"\" }]
              retries: 2"),
        &[
            &format!("{TCP}.max_connect_attempts: max_connect_attempts must be at least 1 (line 8)"),
            &format!("{TCP}.stat_prefix: stat_prefix must not be empty (line 9)"),
            &format!("{TCP}.idle_timeout: invalid duration \"soon\": expected a duration like \"250ms\", \"5s\", \"1.5s\", \"1m\" or \"1h\" (line 10)"),
            &format!("{TCP}.access_log[0].path: access log path must not be empty (a file, or `stdout`) (line 11)"),
            &format!("{TCP}.retries: unknown key, expected one of `stat_prefix`, `cluster`, `idle_timeout`, `max_connect_attempts`, `access_log` (line 12)"),
        ],
    );
}

#[test]
fn access_log_destinations_count_tcp_proxy_logs() {
    let c = ok(&tcp(
        "              cluster: origin
              access_log: [{ path: /tmp/ringway-tcp-test.log }, { path: stdout }]",
    ));
    assert_eq!(crate::access_log::destinations(&c).len(), 2);
}
