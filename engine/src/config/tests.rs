//! Loader tests: one per validation rule, each asserting the exact path, message and line of the
//! error; plus serde errors (unknown keys, wrong types, missing keys), syntax errors, durations,
//! defaults, JSON, YAML details and a no-panic sweep over mutated input.

use std::time::Duration;

mod clusters;
mod cpu_affinity;
mod dump;
mod envoy;
mod json_schema;
mod listener_filters;
mod listeners;
mod routes;
mod tcp_proxy;

use super::{load, load_str, parse_duration, Config, Format, LbPolicy, RouteAction};

/// A valid config; tests edit one line of it (so line numbers stay put).
const BASE: &str = r#"listeners:
  - name: main
    address: 127.0.0.1:10000
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - name: default
                  domains: ["*"]
                  routes:
                    - match: { prefix: / }
                      route: { cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:9000"]
"#;

/// Path of BASE's connection manager.
const HCM: &str = "listeners[0].filter_chains[0].filters[0].http_connection_manager";

fn ok(text: &str) -> Config {
    match load_str(text, Format::Yaml, "test.yaml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n---\n{text}"),
    }
}

fn errors_in(text: &str, format: Format) -> Vec<String> {
    match load_str(text, format, "test") {
        Ok(_) => panic!("expected errors, config loaded:\n{text}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn errors(text: &str) -> Vec<String> {
    errors_in(text, Format::Yaml)
}

/// BASE with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} must occur once in BASE"
    );
    BASE.replace(from, to)
}

/// Asserts the config has exactly these errors.
#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "\n---\n{text}");
}

#[track_caller]
fn assert_error(text: &str, expected: &str) {
    assert_errors(text, &[expected]);
}

/// BASE with a second listener (lines 16-22) named `name` on `address`.
fn two_listeners(name: &str, address: &str) -> String {
    let second = format!(
        "  - name: {name}
    address: {address}
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - {{ name: d, domains: [\"*\"], routes: [] }}
"
    );
    BASE.replace("clusters:\n", &format!("{second}clusters:\n"))
}

/// Path of BASE's only route.
const R0: &str =
    "listeners[0].filter_chains[0].filters[0].http_connection_manager.virtual_hosts[0].routes[0]";

/// BASE with the route's match replaced.
fn with_match(m: &str) -> String {
    edit("- match: { prefix: / }", &format!("- match: {m}"))
}

/// BASE with the route's action replaced.
fn with_action(action: &str) -> String {
    edit("route: { cluster: origin }", action)
}

// ---- the error format ----------------------------------------------------------------------

#[test]
fn bad_endpoint_error_has_path_message_and_line() {
    let text = r#"workers: 2
listeners:
  - name: main
    address: 127.0.0.1:10000
    filter_chains:
      - filters:
          - http_connection_manager:
              virtual_hosts:
                - { name: default, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: origin } }] }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:9000"]
  - name: other
    endpoints: ["127.0.0.1:99999"]
"#;
    assert_error(
        text,
        r#"clusters[1].endpoints[0]: invalid address "127.0.0.1:99999" (line 14)"#,
    );
    let e = load_str(text, Format::Yaml, "x.yaml").unwrap_err();
    assert_eq!(e.source, "x.yaml");
    assert_eq!(e.errors[0].path, "clusters[1].endpoints[0]");
    assert_eq!(e.errors[0].message, r#"invalid address "127.0.0.1:99999""#);
    assert_eq!(e.errors[0].line, Some(14));
}

#[test]
fn every_error_is_reported_one_per_line_sorted_by_line() {
    let text = BASE
        .replace("address: 127.0.0.1:10000", "address: nowhere")
        .replace("route: { cluster: origin }", "route: { cluster: nope }")
        .replace(r#"endpoints: ["127.0.0.1:9000"]"#, "endpoints: []");
    let e = load_str(&text, Format::Yaml, "t").unwrap_err();
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        [
            r#"listeners[0].address: invalid address "nowhere": expected IP:port, e.g. "127.0.0.1:8080" (line 3)"#,
            &format!(
                r#"{HCM}.virtual_hosts[0].routes[0].route.cluster: unknown cluster "nope" (not defined under clusters) (line 12)"#
            ),
            "clusters[0].endpoints: a cluster needs at least one endpoint (line 15)",
        ]
    );
}

// ---- serde errors: unknown keys, wrong types, missing keys, syntax --------------------------

#[test]
fn unknown_keys_are_rejected_with_path_and_line() {
    let text = format!("overload_manager: {{ actions: x }}\n{BASE}");
    assert_error(
        &text,
        "overload_manager: unknown key, expected one of `workers`, `cpu_affinity`, \
         `drain_timeout`, `park_idle_after`, `listeners`, `clusters`, `stats_flush_interval`, \
         `admin`, `tracing`, `watch`, `io_driver`, `node`, `xds` (line 1)",
    );
    assert_error(
        &edit("    address: 127.0.0.1:10000\n", "    address: 127.0.0.1:10000\n    port: 1\n"),
        "listeners[0].port: unknown key, expected one of `name`, `address`, `backlog`, `defer_accept`, `connection_balance`, `filter_chains`, `default_filter_chain`, `listener_filters`, `listener_filters_timeout`, `continue_on_listener_filters_timeout`, `access_log` (line 4)",
    );
    assert_error(
        &edit(
            "route: { cluster: origin }",
            "route: { cluster: origin, retries: 3 }",
        ),
        &format!(
            "{HCM}.virtual_hosts[0].routes[0].route.retries: unknown key, expected one of \
             `cluster`, `weighted_clusters`, `retry_policy`, `request_mirror_policies`, \
             `hash_policy`, `timeout`, `prefix_rewrite`, `host_rewrite`, `max_grpc_timeout` \
             (line 12)"
        ),
    );
    assert_error(
        &edit("- match: { prefix: / }", "- match: { prefix: /, query: x }"),
        &format!(
            "{HCM}.virtual_hosts[0].routes[0].match.query: unknown key, expected one of \
             `path`, `prefix`, `regex`, `headers`, `methods` (line 11)"
        ),
    );
}

#[test]
fn several_unknown_keys_in_one_map_are_all_reported() {
    let text = edit(
        "    address: 127.0.0.1:10000\n",
        "    address: 127.0.0.1:10000\n    aaa: 1\n    zzz: 2\n",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("listeners[0].aaa: unknown key") && e[0].ends_with("(line 4)"));
    assert!(e[1].starts_with("listeners[0].zzz: unknown key") && e[1].ends_with("(line 5)"));
}

#[test]
fn wrong_types_carry_path_and_line() {
    assert_error(
        &edit(
            "    address: 127.0.0.1:10000\n",
            "    address: 127.0.0.1:10000\n    backlog: lots\n",
        ),
        r#"listeners[0].backlog: invalid type: string "lots", expected a non-negative integer (line 4)"#,
    );
    assert_error(
        &edit(r#"domains: ["*"]"#, r#"domains: "*""#),
        &format!(
            r#"{HCM}.virtual_hosts[0].domains: invalid type: string "*", expected a list (line 9)"#
        ),
    );
    // YAML 1.2: `yes` is a string, not a boolean
    assert_error(
        &edit(
            "              virtual_hosts:\n",
            "              generate_request_id: yes\n              virtual_hosts:\n",
        ),
        &format!(
            r#"{HCM}.generate_request_id: invalid type: string "yes", expected a boolean (line 7)"#
        ),
    );
    assert_error(
        &edit("  - name: origin\n", "  - name: origin\n    max_idle_per_endpoint: -1\n"),
        "clusters[0].max_idle_per_endpoint: invalid value: integer `-1`, expected a non-negative integer (line 15)",
    );
}

#[test]
fn missing_keys_carry_path_and_the_enclosing_line() {
    assert_error(
        &edit("  - name: main\n", "  -\n"),
        "listeners[0].name: required key is missing (line 3)",
    );
    assert_error(
        &edit("route: { cluster: origin }", "route: { timeout: 1s }"),
        &format!(
            "{HCM}.virtual_hosts[0].routes[0].route: a route needs exactly one of `cluster`, `weighted_clusters` (line 12)"
        ),
    );
    assert_error(
        "clusters: []\n",
        "listeners: at least one listener is required (line 1)",
    );
}

#[test]
fn a_broken_element_does_not_hide_its_siblings_errors() {
    // clusters[0] cannot be read at all (name is a list); clusters[1] still is, and the route
    // naming the broken cluster gets no second error.
    let text = edit(
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n",
        "  - name: origin\n    endpoints: [\"127.0.0.1:9000\"]\n    lb_policy: [1]\n  - name: x\n    endpoints: [\"1.2.3.4:0\"]\n",
    );
    assert_errors(
        &text,
        &[
            "clusters[0].lb_policy: invalid type: list, expected one of `round_robin`, `least_request`, `random`, `ring_hash`, `maglev` (line 16)",
            r#"clusters[1].endpoints[0]: invalid address "1.2.3.4:0": port must be 1..=65535 (line 18)"#,
        ],
    );
    let text = edit(
        "  - name: origin\n",
        "  - name: origin\n    connect_timeout: [1]\n    bogus: 1\n",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("clusters[0].connect_timeout: invalid type: sequence")
            || e[0].starts_with("clusters[0].connect_timeout: invalid type: list"),
        "{e:?}"
    );
    assert!(e[1].starts_with("clusters[0].bogus: unknown key"), "{e:?}");
    // A cluster that cannot be read (a required key is bad) still counts as defined: the route
    // naming it gets no second, misleading "unknown cluster" error.
    let text = edit("  - name: origin\n", "  - name: origin\n    endpoints: 5\n")
        .replace("    endpoints: [\"127.0.0.1:9000\"]\n", "");
    assert_error(
        &text,
        "clusters[0].endpoints: invalid type: integer `5`, expected a list (line 15)",
    );
}

#[test]
fn yaml_syntax_errors_carry_path_and_line() {
    let e = errors(&edit(
        "address: 127.0.0.1:10000",
        "address: [127.0.0.1:10000",
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("listeners[0].address"), "{e:?}");
    assert!(e[0].contains("YAML syntax error"), "{e:?}");
    let e = errors("listeners:\n  - name: a\n   bad: indent\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("YAML syntax error") && e[0].ends_with("(line 3)"),
        "{e:?}"
    );
}

#[test]
fn yaml_duplicate_keys_and_documents_are_errors() {
    assert_error(
        &edit("  - name: main\n", "  - name: main\n    name: again\n"),
        "listeners[0].name: duplicate key (line 3)",
    );
    assert_error(
        &format!("{BASE}---\nworkers: 1\n"),
        "a config file holds exactly one YAML document (found a second `---`) (line 16)",
    );
    assert_error("", "the configuration is empty (line 1)");
    assert_error("# only a comment\n", "the configuration is empty (line 1)");
    assert_error(
        "just text\n",
        r#"invalid type: string "just text", expected a map of workers, drain_timeout, listeners, clusters (line 1)"#,
    );
}

#[test]
fn yaml_anchors_tags_and_block_scalars() {
    let text = edit(
        r#"    endpoints: ["127.0.0.1:9000"]"#,
        "    endpoints: &eps [\"127.0.0.1:9000\"]\n  - name: copy\n    endpoints: *eps",
    );
    let c = ok(&text);
    assert_eq!(
        c.clusters[1].endpoints[0].address.to_string(),
        "127.0.0.1:9000"
    );
    let c = ok(&edit("  - name: main\n", "  - name: !!str 42\n"));
    assert_eq!(c.listeners[0].name, "42");
    assert_error(
        &edit("  - name: main\n", "  - name: !custom main\n"),
        "listeners[0].name: unsupported YAML tag `!custom` (line 2)",
    );
    let text = edit(
        "- match: { prefix: / }\n                      route: { cluster: origin }",
        "- match: { prefix: / }\n                      direct_response:\n                        status: 200\n                        body: |\n                          line one\n                          line two",
    );
    match &ok(&text).listeners[0]
        .http()
        .expect("http listener")
        .virtual_hosts[0]
        .routes[0]
        .action
    {
        RouteAction::DirectResponse { body, .. } => assert_eq!(&body[..], b"line one\nline two\n"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn alias_bombs_and_deep_nesting_are_errors_not_outages() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, name) in ["b", "c", "d", "e", "f", "g"].iter().enumerate() {
        let prev = ["a", "b", "c", "d", "e", "f"][i];
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    let e = errors(&bomb);
    assert!(e[0].contains("aliases expand to more than"), "{e:?}");
    let deep = format!("workers: {}{}\n", "[".repeat(100), "]".repeat(100));
    let e = errors(&deep);
    assert!(e[0].contains("nested more than 64 levels deep"), "{e:?}");
    // far deeper: the YAML parser's own limit answers first
    let deep = format!("workers: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(errors(&deep).len(), 1);
    let deep = format!("{{\"workers\": {}{}}}", "[".repeat(500), "]".repeat(500));
    let e = errors_in(&deep, Format::Json);
    assert_eq!(e.len(), 1, "{e:?}");
}

// ---- JSON -----------------------------------------------------------------------------------

const BASE_JSON: &str = r#"{
  "listeners": [
    {
      "name": "main",
      "address": "127.0.0.1:10000",
      "filter_chains": [{ "filters": [{ "http_connection_manager": {
        "virtual_hosts": [{ "name": "d", "domains": ["*"],
          "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "origin" } }] }]
      } }] }]
    }
  ],
  "clusters": [{ "name": "origin", "endpoints": ["127.0.0.1:9000"] }]
}
"#;

#[test]
fn json_loads_like_yaml() {
    let c = match load_str(BASE_JSON, Format::Json, "t.json") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        c.summary(),
        "1 listener, 1 cluster (1 endpoint), 1 route, workers auto"
    );
    assert_eq!(c.source, "t.json");
}

#[test]
fn json_errors_carry_path_and_line() {
    let text = BASE_JSON.replace("127.0.0.1:9000", "127.0.0.1:99999");
    assert_eq!(
        errors_in(&text, Format::Json),
        [r#"clusters[0].endpoints[0]: invalid address "127.0.0.1:99999" (line 12)"#]
    );
    let text = BASE_JSON.replace(r#""name": "main","#, r#""name": "main", "nme": 1,"#);
    assert_eq!(
        errors_in(&text, Format::Json),
        ["listeners[0].nme: unknown key, did you mean `name`? expected one of `name`, `address`, `backlog`, `defer_accept`, `connection_balance`, `filter_chains`, `default_filter_chain`, `listener_filters`, `listener_filters_timeout`, `continue_on_listener_filters_timeout`, `access_log` (line 4)"]
    );
    let text = BASE_JSON.replace(r#""name": "main","#, r#""name": "main", "name": "again","#);
    assert_eq!(
        errors_in(&text, Format::Json),
        ["listeners[0].name: duplicate key (line 4)"]
    );
    let text = BASE_JSON.replace(
        r#""address": "127.0.0.1:10000","#,
        r#""address": "127.0.0.1:10000",,"#,
    );
    let e = errors_in(&text, Format::Json);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("listeners[0]: JSON syntax error") && e[0].ends_with("(line 5)"),
        "{e:?}"
    );
    assert_eq!(errors_in("", Format::Json).len(), 1);
    assert_eq!(
        errors_in("null", Format::Json),
        ["the configuration is empty (line 1)"]
    );
}

// ---- workers, durations, defaults -----------------------------------------------------------

#[test]
fn workers_auto_or_count() {
    assert_eq!(ok(&format!("workers: auto\n{BASE}")).workers, None);
    assert_eq!(ok(BASE).workers, None);
    assert_eq!(ok(&format!("workers: 3\n{BASE}")).workers, Some(3));
    assert_error(
        &format!("workers: 0\n{BASE}"),
        "workers: invalid workers 0: expected `auto` or 1..=1024 (line 1)",
    );
    assert_error(
        &format!("workers: -2\n{BASE}"),
        "workers: invalid workers -2: must be at least 1 (line 1)",
    );
    assert_error(
        &format!("workers: many\n{BASE}"),
        r#"workers: invalid workers "many": expected `auto` or a number of workers (line 1)"#,
    );
}

#[test]
fn durations_parse() {
    let ms = Duration::from_millis;
    assert_eq!(parse_duration("250ms"), Ok(ms(250)));
    assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
    assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
    assert_eq!(parse_duration("0.25s"), Ok(ms(250)));
    assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
    assert_eq!(parse_duration("1.5m"), Ok(ms(90_000)));
    assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1_500)));
    for bad in [
        "", "5", "s", "5 s", "5S", "-1s", ".5s", "5.s", "1.2.3s", "5sec", "5d", "1e3s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
    assert!(parse_duration("99999999999999999999999h").is_err());
    assert!(parse_duration("9999999999h").is_err());
}

#[test]
fn invalid_durations_name_the_field() {
    assert_error(
        &format!("drain_timeout: 5\n{BASE}"),
        r#"drain_timeout: invalid duration 5: a duration needs a unit, like "5s" or "5ms" (line 1)"#,
    );
    assert_error(
        &with_action("route: { cluster: origin, timeout: 10 seconds }"),
        &format!(
            r#"{R0}.route.timeout: invalid duration "10 seconds": expected a duration like "250ms", "5s", "1.5s", "1m" or "1h" (line 12)"#
        ),
    );
    assert_eq!(
        ok(&format!("drain_timeout: 1.5s\n{BASE}")).drain_timeout,
        Duration::from_millis(1500)
    );
}

#[test]
fn defaults_fill_omitted_keys() {
    let c = ok(BASE);
    assert_eq!(c.workers, None);
    assert_eq!(c.drain_timeout, Duration::from_secs(5));
    assert_eq!(c.source, "test.yaml");
    let l = &c.listeners[0];
    assert_eq!(l.name, "main");
    assert_eq!(l.backlog, 1024);
    let h = l.http().expect("http listener");
    assert_eq!(h.stat_prefix, "main");
    assert_eq!(h.max_request_headers_bytes, 60 * 1024);
    assert_eq!(h.max_uri_bytes, 8 * 1024);
    assert_eq!(h.request_headers_timeout, Duration::from_secs(10));
    assert_eq!(h.idle_timeout, Duration::from_secs(60));
    assert_eq!(h.request_body_timeout, Duration::from_secs(30));
    assert_eq!(h.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert!(h.generate_request_id);
    let cl = &c.clusters[0];
    assert_eq!(cl.connect_timeout, Duration::from_secs(5));
    assert_eq!(cl.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(cl.max_idle_per_endpoint, 1024);
    assert_eq!(cl.idle_timeout, Duration::from_secs(60));
    assert_eq!(cl.endpoints[0].weight, 1);
}

#[test]
fn summary_line() {
    let c = ok(BASE);
    assert_eq!(
        c.summary(),
        "1 listener, 1 cluster (1 endpoint), 1 route, workers auto"
    );
    let text = format!(
        "workers: 4\n{}",
        two_listeners("second", "127.0.0.1:10001")
            .replace("routes: [] }", "routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }")
            .replace(
                "    endpoints: [\"127.0.0.1:9000\"]\n",
                "    endpoints: [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]\n  - name: b\n    endpoints: [\"127.0.0.1:9002\", \"127.0.0.1:9003\"]\n  - name: c\n    endpoints: [\"127.0.0.1:9004\"]\n",
            )
    );
    assert_eq!(
        ok(&text).summary(),
        "2 listeners, 3 clusters (5 endpoints), 2 routes, workers 4"
    );
}

// ---- files ----------------------------------------------------------------------------------

#[test]
fn load_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("ringway-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [("a.yaml", BASE), ("a.yml", BASE), ("a.json", BASE_JSON)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let c = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.source, path.display().to_string());
    }
    let path = dir.join("a.toml");
    std::fs::write(&path, BASE).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        "unknown config file extension: expected .yaml, .yml or .json"
    );
    let e = load(&dir.join("missing.yaml")).unwrap_err();
    assert!(
        e.errors[0].message.starts_with("cannot read config file"),
        "{e}"
    );
    // YAML with a BOM, as some editors write it
    let path = dir.join("bom.yaml");
    std::fs::write(&path, format!("\u{feff}{BASE}")).unwrap();
    assert!(load(&path).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- no input panics ------------------------------------------------------------------------

/// Mutates BASE and the JSON base thousands of ways (deterministic xorshift): the loader must
/// return, never panic or hang.
#[test]
fn mutated_input_never_panics() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"{}[]:,-'\"&*!|>#%@` \n\t?.0123456789abcxyz/\\";
    for (base, format) in [(BASE, Format::Yaml), (BASE_JSON, Format::Json)] {
        for _ in 0..1500 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(next() % 6 + 1) {
                let at = (next() as usize) % bytes.len().max(1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => bytes[at] = c,
                    1 => bytes.insert(at, c),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = load_str(&text, format, "fuzz");
        }
    }
}

// ---- tracing -------------------------------------------------------------------------------

#[test]
fn tracing_defaults_and_overrides() {
    let c = ok(&format!(
        "tracing:\n  collector: {{ cluster: origin }}\n{BASE}"
    ));
    let t = c.tracing.as_ref().expect("tracing");
    assert_eq!(t.sample_rate, 1.0);
    assert_eq!(t.format, crate::config::TraceFormat::OtlpJson);
    assert_eq!(t.collector_cluster, 0);
    assert_eq!(t.collector_path, "/v1/traces");
    assert_eq!(t.collector_host, "origin");
    assert_eq!(t.collector_timeout, Duration::from_secs(5));
    assert_eq!(t.service_name, "ringway");
    assert_eq!(t.flush_interval, Duration::from_secs(1));
    assert_eq!(t.max_batch, 512);
    assert_eq!(
        c.listeners[0]
            .http()
            .expect("http listener")
            .trace_sample_rate,
        Some(1.0)
    );

    let text = format!(
        "tracing:\n  sample_rate: 0.25\n  service_name: edge\n  flush_interval: 200ms\n  \
         max_batch: 10\n  collector: {{ cluster: origin, format: zipkin_json, host: zipkin, \
         timeout: 2s }}\n{}",
        edit(
            "              virtual_hosts:\n",
            "              tracing: { sample_rate: 0.5 }\n              virtual_hosts:\n"
        )
    );
    let c = ok(&text);
    let t = c.tracing.as_ref().expect("tracing");
    assert_eq!(t.sample_rate, 0.25);
    assert_eq!(t.format, crate::config::TraceFormat::ZipkinJson);
    assert_eq!(t.collector_path, "/api/v2/spans");
    assert_eq!(t.collector_host, "zipkin");
    assert_eq!(t.service_name, "edge");
    assert_eq!(t.max_batch, 10);
    assert_eq!(
        c.listeners[0]
            .http()
            .expect("http listener")
            .trace_sample_rate,
        Some(0.5)
    );
    // Without tracing: no rate, no cost.
    assert_eq!(
        ok(BASE).listeners[0]
            .http()
            .expect("http listener")
            .trace_sample_rate,
        None
    );
    assert!(ok(BASE).tracing.is_none());
}

#[test]
fn tracing_errors_name_the_field() {
    let lines = errors(&format!(
        "tracing:\n  sample_rate: 2\n  max_batch: 0\n  collector: {{ cluster: nope, format: jaeger, \
         path: v1 }}\n{BASE}"
    ));
    assert_eq!(
        lines,
        [
            "tracing.sample_rate: sample_rate 2 is out of range: it is a fraction from 0 to 1 \
             (0.1 samples one new trace in ten) (line 2)",
            "tracing.max_batch: max_batch 0 is out of range 1..=10000 (line 3)",
            "tracing.collector.cluster: unknown cluster \"nope\" (not defined under clusters) (line 4)",
            "tracing.collector.format: unknown format \"jaeger\": expected `otlp_json` or \
             `zipkin_json` (line 4)",
            "tracing.collector.path: invalid path \"v1\": expected an absolute path such as \
             /v1/traces (line 4)",
        ]
    );
    // A connection manager's tracing needs the top-level section.
    let text = edit(
        "              virtual_hosts:\n",
        "              tracing: { sample_rate: 0.5 }\n              virtual_hosts:\n",
    );
    assert_eq!(
        errors(&text),
        [format!(
            "{HCM}.tracing: tracing on a connection manager needs the top-level `tracing` section \
             (with its collector) (line 7)"
        )]
    );
    assert_eq!(
        errors(&format!("tracing:\n  sample_rate: 0.1\n{BASE}")),
        ["tracing.collector: required key is missing (line 2)"]
    );
}

#[test]
fn connection_balance_values() {
    assert!(ok(BASE).listeners[0].exact_balance, "exact by default");
    let with = |v: &str| {
        edit(
            "    address: 127.0.0.1:10000\n",
            &format!("    address: 127.0.0.1:10000\n    connection_balance: {v}\n"),
        )
    };
    assert!(ok(&with("exact")).listeners[0].exact_balance);
    assert!(!ok(&with("kernel")).listeners[0].exact_balance);
    assert_error(
        &with("round_robin"),
        "listeners[0].connection_balance: unknown connection_balance \"round_robin\": expected \
         `exact` or `kernel` (line 4)",
    );
}

#[test]
fn stream_idle_timeout_zero_disables_it() {
    let with = |v: &str| {
        edit(
            "              virtual_hosts:\n",
            &format!("              stream_idle_timeout: {v}\n              virtual_hosts:\n"),
        )
    };
    assert_eq!(
        ok(&with("0s")).listeners[0]
            .http()
            .expect("http listener")
            .stream_idle_timeout,
        None
    );
    assert_eq!(
        ok(&with("90s")).listeners[0]
            .http()
            .expect("http listener")
            .stream_idle_timeout,
        Some(Duration::from_secs(90))
    );
}
