//! Cluster rules: names, endpoint forms, ports and weights, load-balancing policies, timeouts.

use super::{assert_error, assert_errors, edit, ok};
use crate::config::{HashLbConfig, LbPolicy};

// ---- clusters -------------------------------------------------------------------------------

fn with_cluster(lines: &str) -> String {
    edit(
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n",
        lines,
    )
}

#[test]
fn cluster_names_unique() {
    assert_error(
        &with_cluster("  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n  - name: origin\n    endpoints: [\"127.0.0.1:9001\"]\n"),
        "clusters[1].name: duplicate cluster name \"origin\" (first defined at clusters[0]) (line 16)",
    );
}

#[test]
fn endpoints_forms_ports_and_weights() {
    let c = ok(&with_cluster(
        "  - name: origin\n    endpoints:\n      - 127.0.0.1:9000\n      - { address: \"[::1]:9001\", weight: 5 }\n",
    ));
    let eps = &c.clusters[0].endpoints;
    assert_eq!(eps[0].address.to_string(), "127.0.0.1:9000");
    assert_eq!(eps[0].weight, 1);
    assert_eq!(eps[1].address.to_string(), "[::1]:9001");
    assert_eq!(eps[1].weight, 5);

    assert_errors(
        &with_cluster(
            "  - name: origin\n    endpoints:\n      - 127.0.0.1:0\n      - { address: 127.0.0.1:99999, weight: 0 }\n      - { address: localhost:80 }\n      - 42\n",
        ),
        &[
            r#"clusters[0].endpoints[0]: invalid address "127.0.0.1:0": port must be 1..=65535 (line 16)"#,
            r#"clusters[0].endpoints[1].address: invalid address "127.0.0.1:99999" (line 17)"#,
            "clusters[0].endpoints[1].weight: weight must be at least 1 (line 17)",
            r#"clusters[0].endpoints[2].address: invalid address "localhost:80": expected IP:port; host names such as "localhost" are not resolved (use 127.0.0.1 or [::1] for localhost) (line 18)"#,
            r#"clusters[0].endpoints[3]: invalid type: integer `42`, expected an endpoint "IP:port" or {address, weight} (line 19)"#,
        ],
    );
    assert_error(
        &with_cluster("  - name: origin\n    endpoints: []\n"),
        "clusters[0].endpoints: a cluster needs at least one endpoint (line 15)",
    );
    assert_error(
        &with_cluster("  - name: origin\n    endpoints: [{ address: 127.0.0.1:1, wieght: 2 }]\n"),
        "clusters[0].endpoints[0].wieght: unknown key, did you mean `weight`? expected one of `address`, `weight`, `priority` (line 15)",
    );
}

#[test]
fn lb_policies() {
    for (name, policy) in [
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request", LbPolicy::LeastRequest),
        ("random", LbPolicy::Random),
    ] {
        let c = ok(&with_cluster(&format!(
            "  - name: origin\n    lb_policy: {name}\n    endpoints: [\"127.0.0.1:9000\"]\n"
        )));
        assert_eq!(c.clusters[0].lb_policy, policy);
    }
    let c = ok(&with_cluster(
        "  - name: origin\n    lb_policy: RING_HASH\n    ring_hash_lb_config: {minimum_ring_size: 64, hash_function: MURMUR_HASH_2}\n    endpoints: [\"127.0.0.1:9000\"]\n",
    ));
    assert_eq!(c.clusters[0].lb_policy, LbPolicy::RingHash);
    assert_eq!(
        c.clusters[0].hash_lb,
        Some(HashLbConfig::Ring {
            min_size: 64,
            max_size: 8 << 20,
            murmur: true
        })
    );
    let c = ok(&with_cluster(
        "  - name: origin\n    lb_policy: maglev\n    endpoints: [\"127.0.0.1:9000\"]\n",
    ));
    assert_eq!(
        c.clusters[0].hash_lb,
        Some(HashLbConfig::Maglev { table_size: 65537 })
    );
    assert_error(
        &with_cluster("  - name: origin\n    lb_policy: consistent\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].lb_policy: unknown variant `consistent`, expected one of `round_robin`, `least_request`, `random`, `ring_hash`, `maglev` (line 15)",
    );
}

#[test]
fn hash_tables_slow_start_and_priorities_are_checked() {
    assert_error(
        &with_cluster("  - name: origin\n    lb_policy: maglev\n    maglev_lb_config: {table_size: 65536}\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].maglev_lb_config.table_size: table_size must be a prime up to 5000011 (found 65536; the default is 65537) (line 16)",
    );
    assert_error(
        &with_cluster("  - name: origin\n    ring_hash_lb_config: {minimum_ring_size: 64}\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].ring_hash_lb_config: ring_hash_lb_config applies to lb_policy ring_hash, and this cluster's is RoundRobin (line 15)",
    );
    assert_error(
        &with_cluster("  - name: origin\n    lb_policy: ring_hash\n    ring_hash_lb_config: {minimum_ring_size: 4096, maximum_ring_size: 1024}\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].ring_hash_lb_config.maximum_ring_size: maximum_ring_size 1024 is below minimum_ring_size 4096 (line 16)",
    );
    assert_error(
        &with_cluster("  - name: origin\n    round_robin_lb_config: {slow_start_config: {aggression: 2}}\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].round_robin_lb_config.slow_start_config.slow_start_window: slow_start_config needs a slow_start_window of more than zero (line 15)",
    );
    assert_error(
        &with_cluster("  - name: origin\n    lb_policy: least_request\n    least_request_lb_config: {choice_count: 3}\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        "clusters[0].least_request_lb_config.choice_count: choice_count 3 is not supported: least_request picks the less busy of 2 (Envoy's default) (line 16)",
    );
    let c = ok(&with_cluster(
        "  - name: origin\n    lb_policy: least_request\n    least_request_lb_config:\n      slow_start_config: {slow_start_window: 30s, aggression: {default_value: 1.5}, min_weight_percent: {value: 20}}\n    endpoints: [{address: \"127.0.0.1:9000\"}, {address: \"127.0.0.1:9001\", priority: 1}]\n",
    ));
    let s = c.clusters[0].slow_start.expect("slow start");
    assert_eq!(
        (s.window, s.aggression, s.min_weight),
        (std::time::Duration::from_secs(30), 1.5, 0.2)
    );
    let prios: Vec<u32> = c.clusters[0].endpoints.iter().map(|e| e.priority).collect();
    assert_eq!(prios, vec![0, 1]);
    assert_error(
        &with_cluster(
            "  - name: origin\n    endpoints: [{address: \"127.0.0.1:9000\", priority: 500}]\n",
        ),
        "clusters[0].endpoints[0].priority: priority must be 0..=127 (found 500) (line 15)",
    );
}

#[test]
fn cluster_timeouts_must_be_positive() {
    assert_errors(
        &with_cluster("  - name: origin\n    connect_timeout: 0s\n    idle_timeout: 0ms\n    endpoints: [\"127.0.0.1:9000\"]\n"),
        &[
            "clusters[0].connect_timeout: connect_timeout must be more than zero (line 15)",
            "clusters[0].idle_timeout: idle_timeout must be more than zero (use max_idle_per_endpoint: 0 to disable reuse) (line 16)",
        ],
    );
}

#[test]
fn upstream_proxy_protocol_versions() {
    use crate::config::ProxyProtocolVersion;
    let c = ok(&with_cluster(
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n",
    ));
    assert_eq!(c.clusters[0].upstream_proxy_protocol, None);
    for (text, version) in [
        ("{version: v1}", ProxyProtocolVersion::V1),
        ("{version: V1}", ProxyProtocolVersion::V1),
        ("{version: v2}", ProxyProtocolVersion::V2),
        ("{version: V2}", ProxyProtocolVersion::V2),
        // Envoy's default.
        ("{}", ProxyProtocolVersion::V1),
    ] {
        let c = ok(&with_cluster(&format!(
            "  - name: origin\n    upstream_proxy_protocol: {text}\n    endpoints: [\"127.0.0.1:9000\"]\n"
        )));
        assert_eq!(
            c.clusters[0].upstream_proxy_protocol,
            Some(version),
            "{text}"
        );
    }
}

#[test]
fn upstream_proxy_protocol_errors() {
    assert_errors(
        &with_cluster(
            "  - name: origin\n    upstream_proxy_protocol: {version: v3}\n    endpoints: [\"127.0.0.1:9000\"]\n  - name: b\n    upstream_proxy_protocol:\n      version: 2\n    endpoints: [\"127.0.0.1:9001\"]\n  - name: c\n    upstream_proxy_protocol: v2\n    endpoints: [\"127.0.0.1:9002\"]\n  - name: d\n    upstream_proxy_protocol: {version: v2, pass_through_tlvs: {}}\n    endpoints: [\"127.0.0.1:9003\"]\n",
        ),
        &[
            "clusters[0].upstream_proxy_protocol.version: unknown variant `v3`, expected `v1` or `v2` (line 15)",
            "clusters[1].upstream_proxy_protocol.version: invalid type: integer `2`, expected one of `v1`, `v2` (line 19)",
            "clusters[2].upstream_proxy_protocol: invalid type: string \"v2\", expected an upstream_proxy_protocol map (line 22)",
            "clusters[3].upstream_proxy_protocol.pass_through_tlvs: unknown key, expected `version` (line 25)",
        ],
    );
}

// ---- health --------------------------------------------------------------------------------

#[test]
fn health_checks_outlier_detection_and_panic_threshold_read_with_envoys_defaults() {
    use crate::config::HealthCheckKind;
    let c = ok(&with_cluster(
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks:\n      - timeout: 1s\n        interval: 5s\n        http_health_check:\n          path: /healthz\n          expected_statuses: [{start: 200, end: 300}]\n          request_headers_to_add: [{header: {key: x-hc, value: \"1\"}}]\n    outlier_detection: {consecutive_5xx: 3}\n    common_lb_config: {healthy_panic_threshold: {value: 25}}\n",
    ));
    let cl = &c.clusters[0];
    let hc = cl.health_check.as_ref().expect("a health check");
    assert_eq!(hc.interval, std::time::Duration::from_secs(5));
    assert_eq!((hc.unhealthy_threshold, hc.healthy_threshold), (3, 2));
    assert_eq!(hc.no_traffic_interval, std::time::Duration::from_secs(60));
    assert_eq!(hc.unhealthy_edge_interval, hc.interval);
    assert!(hc.reuse_connection);
    match &hc.kind {
        HealthCheckKind::Http {
            request, expected, ..
        } => {
            assert_eq!(
                &request[..],
                b"GET /healthz HTTP/1.1\r\nhost: origin\r\nuser-agent: ringway/HC\r\nx-hc: 1\r\n\r\n"
            );
            assert_eq!(expected, &vec![(200, 300)]);
        }
        k => panic!("{k:?}"),
    }
    let o = cl.outlier.as_ref().expect("outlier detection");
    assert_eq!(o.consecutive_5xx, 3);
    assert_eq!(o.base_ejection_time, std::time::Duration::from_secs(30));
    assert_eq!(o.max_ejection_percent, 10);
    assert_eq!(cl.healthy_panic_threshold, 25.0);
    let c = ok(&with_cluster(
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks: [{timeout: 1s, interval: 1s, tcp_health_check: {send: {text: \"50494E47\"}, receive: [{binary: UE9ORw==}]}}]\n",
    ));
    match &c.clusters[0].health_check.as_ref().unwrap().kind {
        HealthCheckKind::Tcp { send, receive } => {
            assert_eq!(send, b"PING");
            assert_eq!(receive, &vec![b"PONG".to_vec()]);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(c.clusters[0].healthy_panic_threshold, 50.0);
}

#[test]
fn bad_health_settings_are_errors_with_their_place() {
    assert_errors(
        &with_cluster(
            "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks:\n      - interval: 0s\n        http_health_check: {path: healthz}\n        tcp_health_check: {}\n",
        ),
        &[
            "clusters[0].health_checks[0]: a health check needs `timeout` (line 17)",
            "clusters[0].health_checks[0].interval: interval must be more than zero (line 17)",
            "clusters[0].health_checks[0]: a health check needs exactly one of http_health_check, tcp_health_check, grpc_health_check (line 17)",
        ],
    );
    assert_error(
        &with_cluster(
            "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks: [{timeout: 1s, interval: 1s, http_health_check: {path: /h, expected_statuses: [{start: 300, end: 200}]}}]\n",
        ),
        "clusters[0].health_checks[0].http_health_check.expected_statuses[0]: a status range is [start, end) with 100 <= start < end <= 600 (found start 300, end 200) (line 16)",
    );
    assert_error(
        &with_cluster(
            "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks: [{timeout: 1s, interval: 1s, tcp_health_check: {send: {text: \"5G\"}}}]\n",
        ),
        "clusters[0].health_checks[0].tcp_health_check.send.text: text is hex digits, two per byte (line 16)",
    );
    assert_error(
        &with_cluster(
            "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    health_checks: [{timeout: 1s, interval: 1s, tcp_health_check: {}, intervall: 2s}]\n",
        ),
        "clusters[0].health_checks[0].intervall: unknown key, did you mean `interval`? expected one of `timeout`, `interval`, `interval_jitter`, `interval_jitter_percent`, `initial_jitter`, `unhealthy_threshold`, `healthy_threshold`, `no_traffic_interval`, `unhealthy_interval`, `unhealthy_edge_interval`, `healthy_edge_interval`, `reuse_connection`, `always_log_health_check_failures`, `http_health_check`, `tcp_health_check`, `grpc_health_check` (line 16)",
    );
    assert_errors(
        &with_cluster(
            "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    outlier_detection: {max_ejection_percent: 101, consecutive_5xx: 0}\n    common_lb_config: {healthy_panic_threshold: 150}\n",
        ),
        &[
            "clusters[0].outlier_detection.max_ejection_percent: max_ejection_percent is a percentage: 0..=100 (line 16)",
            "clusters[0].outlier_detection.consecutive_5xx: consecutive_5xx must be at least 1 (line 16)",
            "clusters[0].common_lb_config.healthy_panic_threshold: healthy_panic_threshold is a percentage: 0..=100 (found 150) (line 17)",
        ],
    );
}
