//! The generated JSON Schema (`ringway schema`): the checked-in copy is current, it is a valid
//! draft-7 schema, every example in `config/` passes it, and on the edges where the file's
//! shape is hand-parsed (durations, `workers`, listener and network filters, endpoints) it
//! accepts and refuses what the loader does.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{edit, BASE};
use crate::config::{json, json_schema, load_str, yaml, Format};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    serde_json::from_str(&json_schema::generate()).expect("generate() prints JSON")
}

pub(super) fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&schema()).unwrap_or_else(|e| panic!("invalid schema: {e}"))
}

/// The schema's complaints about `doc`, one line each (`/path: message`).
pub(super) fn complaints(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn checked_in_schema_is_current() {
    let path = repo_root().join(json_schema::FILE);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = json_schema::generate();
    if on_disk != generated {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(generated.lines().count()));
        panic!(
            "{} is not what the config types generate (first difference at line {}: {:?} vs \
             {:?}); regenerate it from the repository's root with:\n    {}",
            json_schema::FILE,
            line + 1,
            on_disk.lines().nth(line),
            generated.lines().nth(line),
            json_schema::REGENERATE
        );
    }
}

#[test]
fn schema_is_valid_draft7_with_the_top_level_keys() {
    let schema = schema();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("the generated schema is not a valid JSON Schema: {e}");
    }
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    // `listeners` may be left out where a control plane brings them (`xds`); validate says so
    // otherwise.
    assert_eq!(schema["required"], serde_json::Value::Null);
    let keys: Vec<&str> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "workers",
        "cpu_affinity",
        "drain_timeout",
        "listeners",
        "clusters",
        "admin",
        "tracing",
        "watch",
        "node",
        "xds",
    ] {
        assert!(keys.contains(&key), "no top-level {key:?} in {keys:?}");
    }
    // Doc comments are the descriptions.
    assert_eq!(
        schema["properties"]["listeners"]["description"],
        "The listeners; at least one, unless `xds` brings them."
    );
}

#[test]
fn every_example_config_passes_the_schema() {
    let validator = validator();
    let dir = repo_root().join("config");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".schema.json") {
            continue;
        }
        let parse = match Format::from_path(&path) {
            Some(Format::Yaml) => yaml::parse,
            Some(Format::Json) => json::parse,
            None => continue,
        };
        let text = std::fs::read_to_string(&path).expect("readable example");
        let (doc, _) = parse(&text).unwrap_or_else(|p| panic!("{name}: {p:?}"));
        failures.extend(
            complaints(&validator, &doc)
                .into_iter()
                .map(|c| format!("{name}{c}")),
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples found in config/");
    assert!(
        failures.is_empty(),
        "examples the schema refuses:\n{}",
        failures.join("\n")
    );
}

/// Each case: a whole config, and whether it is well-formed. Schema and loader must agree.
#[test]
fn schema_and_loader_agree_on_the_hand_parsed_shapes() {
    let top = |line: &str| format!("{line}\n{BASE}");
    let endpoint = |e: &str| {
        edit(
            r#"endpoints: ["127.0.0.1:9000"]"#,
            &format!("endpoints: [{e}]"),
        )
    };
    let cluster_key = |k: &str| {
        edit(
            "  - name: origin\n",
            &format!("  - name: origin\n    {k}\n"),
        )
    };
    let listener_filters = |f: &str| {
        edit(
            "    address: 127.0.0.1:10000\n",
            &format!("    address: 127.0.0.1:10000\n    listener_filters: {f}\n"),
        )
    };
    let cases: Vec<(String, bool)> = vec![
        (BASE.to_owned(), true),
        (top("workers: auto"), true),
        (top("workers: 4"), true),
        (top("workers: 0"), false),
        (top("workers: many"), false),
        (top("cpu_affinity: none"), true),
        (top("cpu_affinity: [0]"), true),
        (top("cpu_affinity: []"), false),
        (top("drain_timeout: 1.5s"), true),
        (top("drain_timeout: 250ms"), true),
        (top("drain_timeout: 5"), false),
        (top("drain_timeout: 5 s"), false),
        (top("drain_timeout: 5sec"), false),
        (top("listners: []"), false),
        (endpoint(r#"{ address: "127.0.0.1:9000", weight: 2 }"#), true),
        (endpoint(r#"{ address: "127.0.0.1:9000", wieght: 2 }"#), false),
        (cluster_key("lb_policy: least_request"), true),
        (cluster_key("lb_policy: LEAST_REQUEST"), true),
        (cluster_key("lb_policy: fastest"), false),
        (
            cluster_key("tls: { alpn_protocols: [http/1.1], trusted_ca: x }"),
            false,
        ),
        (
            cluster_key("tls: { alpn_protocols: [http/1.1], sni: example.com }"),
            true,
        ),
        (listener_filters("[tls_inspector]"), true),
        (
            listener_filters("[{ name: envoy.filters.listener.tls_inspector }]"),
            true,
        ),
        (
            listener_filters("[{ proxy_protocol: { allow_requests_without_proxy_protocol: true } }]"),
            true,
        ),
        (listener_filters("[{ tls_inspector: { x: 1 } }]"), false),
        (listener_filters("[{ tls_inspector: {}, proxy_protocol: {} }]"), false),
        (
            edit(
                "          - http_connection_manager:\n",
                "          - tcp_proxy: { cluster: origin }\n            http_connection_manager:\n",
            ),
            false,
        ),
    ];
    let validator = validator();
    let mut disagreements = Vec::new();
    for (text, well_formed) in &cases {
        let (doc, _) = yaml::parse(text).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        let by_schema = complaints(&validator, &doc);
        let by_loader = load_str(text, Format::Yaml, "case.yaml");
        if by_schema.is_empty() != *well_formed || by_loader.is_ok() != *well_formed {
            disagreements.push(format!(
                "expected well_formed = {well_formed}; schema: {by_schema:?}; loader: {}\n{text}",
                match &by_loader {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "schema and loader disagree:\n{}",
        disagreements.join("\n---\n")
    );
}
