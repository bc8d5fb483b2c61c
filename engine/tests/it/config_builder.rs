//! The tests' config builder (`support/config.rs`), its text read back by the real config
//! loader: what each call writes lands where the loader expects it (a misplaced fragment is an
//! unknown key at the wrong path). They read no socket and spawn nothing.
//!
//! A test binary of their own: inside `support` they ran again in every binary that mounts it,
//! and beside `alloc_count`'s measured requests, whose counter is process-wide, they counted as
//! the proxy's allocations.

use crate::support;

use std::{net::SocketAddr, time::Duration};

use ringway_engine::config::{
    load_str, Config, ConfigErrors, Format, NetworkFilter, RouteAction, TransportProtocol,
};

use support::*;

const ORIGIN: &str = "127.0.0.1:9000";

fn origin() -> SocketAddr {
    ORIGIN.parse().expect("addr")
}

fn load(yaml: &str) -> Config {
    load_str(yaml, Format::Yaml, "test").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn errors(yaml: &str) -> ConfigErrors {
    match load_str(yaml, Format::Yaml, "test") {
        Ok(_) => panic!("loaded, but must not:\n{yaml}"),
        Err(e) => e,
    }
}

/// The one error of `yaml` is an unknown key exactly at `path`.
fn assert_only_unknown_key_at(yaml: &str, path: &str) {
    let e = errors(yaml);
    assert_eq!(e.errors.len(), 1, "{e}\n{yaml}");
    assert_eq!(e.errors[0].path, path, "{e}\n{yaml}");
    assert!(e.errors[0].message.contains("unknown"), "{e}\n{yaml}");
}

const HCM: &str = "listeners[0].filter_chains[0].filters[0].http_connection_manager";

#[test]
fn config_builder_simple_config_text_is_kept_byte_for_byte() {
    // Tests edit this text with `str::replace` (e.g. after `stat_prefix: main`): it must not move.
    let want = r#"listeners:
  - name: main
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: main
              virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                    - match: { prefix: / }
                      route: { cluster: origin }
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: ["127.0.0.1:9000"]
"#;
    assert_eq!(simple_config(origin()), want);
    let c = load(want);
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(
        c.listeners[0].http().expect("http listener").stat_prefix,
        "main"
    );
    assert_eq!(c.clusters[0].connect_timeout, Duration::from_secs(1));

    let admin = admin_config(origin(), "stats_flush_interval: 100ms\n");
    assert_eq!(
        admin,
        format!("admin:\n  address: 127.0.0.1:0\nstats_flush_interval: 100ms\n{want}")
    );
    let c = load(&admin);
    assert!(c.admin.is_some());
    assert_eq!(c.stats_flush_interval, Duration::from_millis(100));
    assert_eq!(
        admin_config(origin(), ""),
        format!("admin:\n  address: 127.0.0.1:0\n{want}")
    );
}

#[test]
fn config_builder_every_call_lands_in_its_place() {
    let yaml = ConfigBuilder::new()
        .top("workers: 2\ndrain_timeout: 3s")
        .admin()
        .listener("edge", "127.0.0.1:0")
        .listener_extra("connection_balance: exact")
        .stat_prefix("edge")
        .hcm_extra("idle_timeout: 7s")
        // Old-style fragments, indented for their place by hand, mean the same.
        .hcm_extra("              request_headers_timeout: 2s\n")
        .hcm_extra("access_log:\n  - path: stdout\n    format: \"%RESPONSE_CODE%\"")
        .virtual_host("api", &["api.test", "[::1]"])
        .route("prefix: /v1/", "route: { cluster: pool, timeout: 300ms }")
        .route_path("/exact", "origin")
        .direct_response("path: /teapot", 418, "short \"and\" stout")
        .route("prefix: /old", "redirect: { path_redirect: /new }")
        .route_raw("match:\n  path: /hdr\n  headers:\n    - { name: x-a, present: true }\ndirect_response: { status: 204 }")
        .virtual_host("empty", &["empty.test"])
        .virtual_host_raw("name: raw\ndomains: [\"raw.test\"]\nroutes: []")
        .route_prefix("/", "origin")
        .listener("second", "127.0.0.1:0")
        .listener_address("127.0.0.1:65000")
        .route_prefix("/", "origin")
        .cluster("origin", &[origin()])
        .connect_timeout("250ms")
        .cluster_raw(
            "pool",
            "lb_policy: random\nendpoints: [\"127.0.0.1:9001\", { address: \"127.0.0.1:9002\", weight: 3 }]",
        )
        .cluster_extra("idle_timeout: 9s")
        .yaml();
    let c = load(&yaml);
    assert_eq!(c.workers, Some(2), "{yaml}");
    assert_eq!(c.drain_timeout, Duration::from_secs(3));
    assert!(c.admin.is_some());

    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["edge", "second"]);
    let edge = &c.listeners[0];
    assert!(edge.exact_balance);
    assert_eq!(edge.http().expect("http listener").stat_prefix, "edge");
    assert_eq!(
        edge.http().expect("http listener").idle_timeout,
        Duration::from_secs(7)
    );
    assert_eq!(
        edge.http().expect("http listener").request_headers_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(edge.http().expect("http listener").access_log.len(), 1);
    let vhosts: Vec<(&str, usize)> = edge
        .http()
        .expect("http listener")
        .virtual_hosts
        .iter()
        .map(|v| (v.name.as_str(), v.routes.len()))
        .collect();
    // A route after a raw virtual host starts the default one (`all`, for `*`).
    assert_eq!(vhosts, [("api", 5), ("empty", 0), ("raw", 0), ("all", 1)]);
    let api = &edge.http().expect("http listener").virtual_hosts[0];
    assert_eq!(api.domains.len(), 2);
    match &api.routes[0].action {
        RouteAction::Forward(f) => {
            assert_eq!(f.cluster_name, "pool");
            assert_eq!(f.timeout, Some(Duration::from_millis(300)));
        }
        other => panic!("{other:?}"),
    }
    match &api.routes[2].action {
        RouteAction::DirectResponse { status, body } => {
            assert_eq!(*status, 418);
            assert_eq!(&body[..], b"short \"and\" stout");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(api.routes[3].action, RouteAction::Redirect(_)));
    assert_eq!(api.routes[4].matcher.headers.len(), 1);
    // The second listener got its own default virtual host.
    assert_eq!(c.listeners[1].address.port(), 65000);
    assert_eq!(
        c.listeners[1].http().expect("http listener").virtual_hosts[0].name,
        "all"
    );

    assert_eq!(c.clusters.len(), 2);
    assert_eq!(c.clusters[0].connect_timeout, Duration::from_millis(250));
    let pool = &c.clusters[1];
    assert_eq!(pool.endpoints.len(), 2);
    assert_eq!(pool.endpoints[1].weight, 3);
    assert_eq!(pool.idle_timeout, Duration::from_secs(9));
}

#[test]
fn config_builder_raw_fragments_are_placed_under_their_parent() {
    // Keys the loader does not know (yet) show where each fragment went.
    let base = || ConfigBuilder::simple(origin());
    assert_only_unknown_key_at(
        &base().hcm_extra("x_hcm: 1").yaml(),
        &format!("{HCM}.x_hcm"),
    );
    assert_only_unknown_key_at(
        &base().vhost_extra("x_vhost: 1").yaml(),
        &format!("{HCM}.virtual_hosts[0].x_vhost"),
    );
    assert_only_unknown_key_at(
        &base().route_extra("x_route:\n  a: [1, 2]").yaml(),
        &format!("{HCM}.virtual_hosts[0].routes[0].x_route"),
    );
    assert_only_unknown_key_at(
        &base().cluster_extra("x_cluster: 1").yaml(),
        "clusters[0].x_cluster",
    );
    assert_only_unknown_key_at(
        &base().listener_extra("x_listener: 1").yaml(),
        "listeners[0].x_listener",
    );
    assert_only_unknown_key_at(&base().top("x_top: 1").yaml(), "x_top");
}

#[test]
fn config_builder_http_filters_are_a_list_of_maps_on_the_hcm() {
    let yaml = ConfigBuilder::simple(origin())
        .http_filters("- name: cors\n  allow_methods: GET")
        .http_filter("buffer", "max_request_bytes: 1024")
        .http_filter("router", "")
        .route_extra("per_filter_config:\n  cors: { allow_methods: POST }")
        .yaml();
    let at = |needle: &str| {
        yaml.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {yaml}"))
    };
    assert!(
        yaml.contains(concat!(
            "              stat_prefix: main\n",
            "              http_filters:\n",
            "                - name: cors\n",
            "                  allow_methods: GET\n",
            "                - name: buffer\n",
            "                  max_request_bytes: 1024\n",
            "                - name: router\n",
            "              virtual_hosts:\n",
        )),
        "{yaml}"
    );
    assert!(at("route: { cluster: origin }") < at("per_filter_config:"));
    // Where the engine does not know these keys (or these filters), every complaint is about
    // them, at the places they were meant for; anywhere else would be a misplaced fragment.
    match load_str(&yaml, Format::Yaml, "test") {
        Ok(_) => {}
        Err(e) => {
            let under = [
                format!("{HCM}.http_filters"),
                format!("{HCM}.virtual_hosts[0].routes[0].per_filter_config"),
            ];
            assert!(
                e.errors
                    .iter()
                    .all(|e| under.iter().any(|u| e.path.starts_with(u.as_str()))),
                "{e}\n{yaml}"
            );
        }
    }
}

#[test]
fn config_builder_fragments_are_reindented_and_endpoints_quoted() {
    assert_eq!(block("a: 1\n  b: 2\n", 4), "    a: 1\n      b: 2\n");
    assert_eq!(block("\n      a: 1\n        b: 2", 2), "  a: 1\n    b: 2\n");
    assert_eq!(block("a:\n\n  b: |\n    x\n", 0), "a:\n\n  b: |\n    x\n");
    assert_eq!(block("", 8), "");
    assert_eq!(list_item("a: 1\nb: 2", 2), "  - a: 1\n    b: 2\n");
    assert_eq!(yaml_str("a\"b\\c"), r#""a\"b\\c""#);
    let yaml = ConfigBuilder::new()
        .route_prefix("/", "c")
        .cluster("c", &["127.0.0.1:1", "[::1]:2"])
        .yaml();
    assert!(
        yaml.ends_with("clusters:\n  - name: c\n    endpoints: [\"127.0.0.1:1\", \"[::1]:2\"]\n"),
        "{yaml}"
    );
    let c = load(&yaml);
    assert_eq!(c.clusters[0].endpoints.len(), 2);
}

#[test]
fn config_builder_tcp_proxy_listeners_text_and_load() {
    let yaml = ConfigBuilder::new()
        .admin()
        .tcp_listener("db", "127.0.0.1:0")
        .listener_extra("listener_filters: [tls_inspector]")
        .tcp_proxy("stat_prefix: exact\ncluster: origin")
        .filter_chain_match("server_names: [a.test]")
        .tcp_proxy("cluster: origin")
        .tcp_proxy_extra("max_connect_attempts: 2")
        .filter_chain_match("transport_protocol: raw_buffer")
        .cluster("origin", &[origin()])
        .yaml();
    let want = r#"admin:
  address: 127.0.0.1:0
listeners:
  - name: db
    address: 127.0.0.1:0
    listener_filters: [tls_inspector]
    filter_chains:
      - filter_chain_match: { server_names: [a.test] }
        filters:
          - tcp_proxy:
              stat_prefix: exact
              cluster: origin
      - filter_chain_match: { transport_protocol: raw_buffer }
        filters:
          - tcp_proxy:
              cluster: origin
              max_connect_attempts: 2
clusters:
  - name: origin
    endpoints: ["127.0.0.1:9000"]
"#;
    assert_eq!(yaml, want);
    let c = load(&yaml);
    let db = &c.listeners[0];
    assert!(db.http().is_none());
    assert_eq!(db.stat_prefix(), "exact");
    let select = db.select.as_ref().expect("chain matching");
    assert!(select.tls_inspector);
    assert_eq!(select.chains.len(), 2);
    assert_eq!(select.chains[0].matcher.server_names, ["a.test"]);
    assert_eq!(
        select.chains[1].matcher.transport_protocol,
        Some(TransportProtocol::RawBuffer)
    );
    match &select.chains[1].network {
        NetworkFilter::TcpProxy(t) => {
            assert_eq!(t.cluster_name, "origin");
            assert_eq!(t.max_connect_attempts, 2);
        }
        other => panic!("{other:?}"),
    }

    // One chain, no match, beside an HTTP listener: the HTTP one is written as ever.
    let yaml = ConfigBuilder::new()
        .tcp_listener("raw", "127.0.0.1:0")
        .tcp_proxy("cluster: origin")
        .listener("web", "127.0.0.1:0")
        .route_prefix("/", "origin")
        .cluster("origin", &[origin()])
        .yaml();
    assert!(
        yaml.starts_with(concat!(
            "listeners:\n",
            "  - name: raw\n",
            "    address: 127.0.0.1:0\n",
            "    filter_chains:\n",
            "      - filters:\n",
            "          - tcp_proxy:\n",
            "              cluster: origin\n",
            "  - name: web\n",
            "    address: 127.0.0.1:0\n",
            "    filter_chains:\n",
            "      - filters:\n",
            "          - http_connection_manager:\n",
            "              virtual_hosts:\n",
        )),
        "{yaml}"
    );
    let c = load(&yaml);
    let raw = &c.listeners[0];
    assert!(raw.select.is_none());
    assert_eq!(raw.tcp_proxy().expect("tcp_proxy").stat_prefix, "raw");
    assert!(c.listeners[1].http().is_some());
    // No keys: an empty map, which the loader refuses (it has no cluster).
    let yaml = ConfigBuilder::new()
        .tcp_listener("t", "127.0.0.1:0")
        .tcp_proxy("")
        .yaml();
    assert!(
        yaml.ends_with("      - filters:\n          - tcp_proxy: {}\n"),
        "{yaml}"
    );
}

#[test]
fn config_builder_chain_keys_are_placed_under_their_chain() {
    const TCP: &str = "listeners[0].filter_chains[0]";
    let tcp = || {
        ConfigBuilder::new()
            .tcp_listener("t", "127.0.0.1:0")
            .tcp_proxy("cluster: origin")
            .cluster("origin", &[origin()])
    };
    assert_only_unknown_key_at(
        &tcp().tcp_proxy_extra("x_tcp: 1").yaml(),
        &format!("{TCP}.filters[0].tcp_proxy.x_tcp"),
    );
    assert_only_unknown_key_at(
        &tcp().chain_extra("x_chain: 1").yaml(),
        &format!("{TCP}.x_chain"),
    );
    assert_only_unknown_key_at(
        &tcp().listener_extra("x_listener: 1").yaml(),
        "listeners[0].x_listener",
    );
    // On an HTTP listener, its one chain; the HCM below it stays where it was.
    let yaml = ConfigBuilder::simple(origin())
        .chain_extra("x_chain: 1")
        .chain_extra("y_chain:\n  a: 1")
        .yaml();
    assert!(
        yaml.contains(concat!(
            "    filter_chains:\n",
            "      - x_chain: 1\n",
            "        y_chain:\n",
            "          a: 1\n",
            "        filters:\n",
            "          - http_connection_manager:\n",
            "              stat_prefix: main\n",
        )),
        "{yaml}"
    );
    let e = errors(&yaml);
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [&format!("{TCP}.x_chain")[..], &format!("{TCP}.y_chain")[..]],
        "{e}"
    );
    let c = load(
        &ConfigBuilder::simple(origin())
            .filter_chain_match("destination_port: 8080")
            .yaml(),
    );
    let select = c.listeners[0].select.as_ref().expect("chain matching");
    assert_eq!(select.chains[0].matcher.destination_port, Some(8080));
}

#[test]
#[should_panic(expected = "tcp_proxy listener")]
fn config_builder_routes_refuse_a_tcp_proxy_listener() {
    ConfigBuilder::new()
        .tcp_listener("t", "127.0.0.1:0")
        .tcp_proxy("cluster: origin")
        .route_prefix("/", "origin");
}

#[test]
#[should_panic(expected = "tcp_listener()")]
fn config_builder_tcp_proxy_refuses_an_http_listener() {
    ConfigBuilder::simple(origin()).tcp_proxy("cluster: origin");
}
