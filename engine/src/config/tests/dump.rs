//! `/config_dump`'s config with defaults filled in (`config::dump`): the defaults are the values
//! `validate()` applied, the file's own values stay, and the filled-in document is a config that
//! loads to the same thing (loading it again fills in nothing new).

use std::path::Path;

use serde_json::Value;

use super::{edit, ok};
use crate::config::{load, load_str, Config, Format};

fn effective(c: &Config) -> &Value {
    c.effective
        .as_deref()
        .expect("a loaded config has its effective document")
}

/// Paths where `a` and `b` differ (`a`'s value, then `b`'s).
fn differences(a: &Value, b: &Value, at: String) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let null = Value::Null;
                    differences(
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        format!("{at}.{k}"),
                    )
                })
                .collect()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (x, y))| differences(x, y, format!("{at}[{i}]")))
            .collect(),
        _ if a == b => Vec::new(),
        _ => vec![format!("{at}: {a} vs {b}")],
    }
}

fn at<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(doc, |v, seg| match seg.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[seg],
        })
}

#[test]
fn defaults_left_out_are_filled_in_and_written_values_stay() {
    let c = ok(&edit("clusters:\n", "drain_timeout: 9s\nclusters:\n"));
    let doc = effective(&c);
    let hcm = "listeners.0.filter_chains.0.filters.0.http_connection_manager";
    let expected = [
        ("drain_timeout", Value::from("9s")),
        ("park_idle_after", "2s".into()),
        ("workers", "auto".into()),
        ("io_driver", "auto".into()),
        ("watch", false.into()),
        ("listeners.0.backlog", 1024.into()),
        ("listeners.0.connection_balance", "exact".into()),
        (&format!("{hcm}.stat_prefix"), "main".into()),
        (&format!("{hcm}.idle_timeout"), "1m".into()),
        (&format!("{hcm}.request_headers_timeout"), "10s".into()),
        (&format!("{hcm}.max_request_headers_kb"), 60.into()),
        (&format!("{hcm}.codec_type"), "auto".into()),
        (
            &format!("{hcm}.http2_protocol_options.max_concurrent_streams"),
            100.into(),
        ),
        (
            &format!("{hcm}.virtual_hosts.0.routes.0.route.timeout"),
            "15s".into(),
        ),
        (
            &format!("{hcm}.virtual_hosts.0.routes.0.route.cluster"),
            "origin".into(),
        ),
        ("clusters.0.connect_timeout", "5s".into()),
        ("clusters.0.lb_policy", "round_robin".into()),
        ("clusters.0.type", "static".into()),
        ("clusters.0.protocol", "http1".into()),
        ("clusters.0.max_idle_per_endpoint", 1024.into()),
        (
            "clusters.0.circuit_breakers.thresholds.0.max_connections",
            1024.into(),
        ),
        (
            "clusters.0.common_lb_config.healthy_panic_threshold",
            50.0.into(),
        ),
        // A string endpoint has no map to hold its weight: it stays as written.
        ("clusters.0.endpoints.0", "127.0.0.1:9000".into()),
    ];
    for (path, value) in expected {
        assert_eq!(at(doc, path), &value, "{path} in\n{doc:#}");
    }
    // An HTTP/1 cluster shows no HTTP/2 settings; the document as written is kept apart.
    assert!(
        at(doc, "clusters.0.http2_protocol_options").is_null(),
        "{doc:#}"
    );
    let written = c.document.as_deref().expect("document");
    assert!(written.get("park_idle_after").is_none(), "{written:#}");
}

/// Every example config, filled in, passes the JSON Schema and loads again to the same runtime
/// config, filling in nothing more (so each value written in is one the loader accepts, at the
/// right place).
#[test]
fn the_filled_in_config_loads_to_the_same_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let schema = super::json_schema::validator();
    let mut checked = 0;
    for name in [
        "example-full.yaml",
        "example.json",
        "grpc.yaml",
        "quickstart.yaml",
        "bench.yaml",
        "docker.yaml",
    ] {
        let path = root.join(name);
        let first = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc = effective(&first);
        assert_ne!(
            Some(doc),
            first.document.as_deref(),
            "{name}: nothing was filled in"
        );
        let complaints = super::json_schema::complaints(&schema, doc);
        assert!(complaints.is_empty(), "{name} filled in: {complaints:?}");
        let text = serde_json::to_string(doc).expect("json");
        // The same source path, so relative file names resolve the same way.
        let source = path.to_string_lossy();
        let second = load_str(&text, Format::Json, &source)
            .unwrap_or_else(|e| panic!("{name} filled in does not load: {e}\n{doc:#}"));
        let differ = differences(effective(&second), doc, String::new());
        assert!(
            differ.is_empty(),
            "{name}: loading it again filled in more: {differ:?}"
        );
        assert_eq!(
            format!(
                "{:?}",
                (&second.listeners, &second.clusters, &second.tracing)
            ),
            format!("{:?}", (&first.listeners, &first.clusters, &first.tracing)),
            "{name}: the filled-in config runs differently"
        );
        assert_eq!(second.drain_timeout, first.drain_timeout);
        assert_eq!(second.park_idle_after, first.park_idle_after);
        checked += 1;
    }
    assert_eq!(checked, 6);
}
