//! Every config in the repository's `config/` directory must load and validate: the examples
//! are documentation, and this keeps them true. (`config/ringway.schema.json`, the generated
//! JSON Schema, is not a config: `ringway schema` must print it.)

use crate::support;

use std::path::{Path, PathBuf};

use ringway_engine::config::RouteAction;
use support::{gen_certs, run_ringway};

fn config_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| !p.to_string_lossy().ends_with(".schema.json"))
        .collect();
    files.sort();
    files
}

/// The throwaway certificates `config/edge-tls.yaml` names (scripts/gen-certs.sh, into the
/// repository's `target/certs`; kept when already there). Once per process: tests run in
/// parallel and two scripts writing the same files at once would see each other's halves.
fn certs_for_examples() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gen_certs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/certs")));
}

#[test]
fn every_file_in_config_validates() {
    certs_for_examples();
    let files = config_files();
    assert!(!files.is_empty(), "config/ holds no files");
    let mut failures = Vec::new();
    for path in &files {
        match ringway_engine::config::load(path) {
            Ok(config) => println!("{}: {}", path.display(), config.summary()),
            Err(errors) => failures.push(format!("{}:\n{errors}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "invalid config files:\n{}",
        failures.join("\n")
    );
}

#[test]
fn ringway_schema_prints_the_checked_in_schema() {
    let out = run_ringway(&["schema"], std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ringway.schema.json");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        out.stdout == on_disk,
        "`ringway schema` differs from config/ringway.schema.json; regenerate it with:\n    {}",
        ringway_engine::config::json_schema::REGENERATE
    );
}

#[test]
fn quickstart_is_what_the_readme_promises() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/quickstart.yaml");
    let config = ringway_engine::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.summary(),
        "1 listener, 1 cluster (1 endpoint), 3 routes, workers auto"
    );
    assert_eq!(config.listeners[0].address.to_string(), "127.0.0.1:10000");
    assert_eq!(
        config.clusters[0].endpoints[0].address.to_string(),
        "127.0.0.1:9000"
    );
    let routes = &config.listeners[0]
        .http()
        .expect("http listener")
        .virtual_hosts[0]
        .routes;
    match &routes[0].action {
        RouteAction::DirectResponse { status, body } => {
            assert_eq!((*status, &body[..]), (200, &b"ok\n"[..]));
        }
        other => panic!("route 0 should be a direct response, is {other:?}"),
    }
    match &routes[1].action {
        RouteAction::Forward(f) => assert_eq!(f.prefix_rewrite.as_deref(), Some("/")),
        other => panic!("route 1 should forward, is {other:?}"),
    }
}

#[test]
fn example_json_is_example_full_yaml() {
    // config/example.json is documented as example-full.yaml in JSON: both load to one config.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let load = |name: &str| {
        let path = dir.join(name);
        let c = ringway_engine::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        // The file's own name is recorded in the config; everything else must match.
        format!("{c:#?}").replace(&path.display().to_string(), "<file>")
    };
    let (yaml, json) = (load("example-full.yaml"), load("example.json"));
    if yaml != json {
        let at = yaml
            .lines()
            .zip(json.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "example.json differs from example-full.yaml at line {at} of the loaded config:\n yaml: {:?}\n json: {:?}",
            yaml.lines().nth(at),
            json.lines().nth(at)
        );
    }
}

/// The Envoy v3 bootstraps in `config/envoy/` load as they are, and `ringway convert` prints
/// each as a ringway config that loads to the same listeners and clusters.
#[test]
fn every_envoy_example_loads_and_converts_to_the_same_config() {
    certs_for_examples();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/envoy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for path in &files {
        let envoy = ringway_engine::config::load(path)
            .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        let out = run_ringway(
            &["convert", "-c", path.to_str().unwrap()],
            std::time::Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}: {}", path.display(), out.stderr);
        // The converted file sits where the original is, so relative file names still hold.
        let converted = path.with_extension("converted.yaml");
        std::fs::write(&converted, &out.stdout).expect("write");
        let back = ringway_engine::config::load(&converted);
        let _ = std::fs::remove_file(&converted);
        let back =
            back.unwrap_or_else(|e| panic!("{} converted:\n{e}\n{}", path.display(), out.stdout));
        assert_eq!(
            format!("{:?}", back.listeners),
            format!("{:?}", envoy.listeners),
            "{}",
            path.display()
        );
        assert_eq!(
            format!("{:?}", back.clusters),
            format!("{:?}", envoy.clusters),
            "{}",
            path.display()
        );
    }
}
