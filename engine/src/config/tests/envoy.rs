//! Envoy v3 bootstrap translation: the access loggers by name and by type, and a field ringway
//! does not support refused with its Envoy path and line (left out with `allow_unsupported`).

use serde_json::{json, Value};

use crate::config::{translate_str, Dialect, Format, LoadOptions};

/// A bootstrap whose one listener's connection manager has `access_log` (YAML, 2-space
/// indented under the key).
fn with_access_log(entries: &str) -> String {
    format!(
        "static_resources:
  listeners:
    - name: web
      address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: web
                route_config: {{virtual_hosts: [{{name: all, domains: [\"*\"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]}}
                http_filters: [{{name: envoy.filters.http.router}}]
                access_log:
{entries}"
    )
}

fn translate(text: &str, allow_unsupported: bool) -> Result<Value, Vec<String>> {
    let opts = LoadOptions {
        dialect: Dialect::Auto,
        allow_unsupported,
    };
    translate_str(text, Format::Yaml, "envoy.yaml", &opts)
        .map(|t| t.document)
        .map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
}

fn access_logs(doc: &Value) -> Value {
    doc["listeners"][0]["filter_chains"][0]["filters"][0]["http_connection_manager"]["access_log"]
        .clone()
}

#[test]
fn access_loggers_are_known_by_name_or_by_type() {
    let doc = translate(
        &with_access_log(
            "                  - name: envoy.access_loggers.stdout
                  - name: to-stderr
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
                  - name: to-stdout
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                  - name: envoy.access_loggers.file
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: /tmp/access.log
                      log_format: {text_format_source: {inline_string: \"%RESPONSE_CODE%\\n\"}}
",
        ),
        false,
    )
    .unwrap();
    assert_eq!(
        access_logs(&doc),
        json!([
            {"path": "stdout"},
            {"path": "/dev/stderr"},
            {"path": "stdout"},
            {"path": "/tmp/access.log", "format": "%RESPONSE_CODE%\n"},
        ])
    );
}

#[test]
fn an_unsupported_field_is_named_by_its_envoy_path_and_line() {
    let text = with_access_log(
        "                  - name: envoy.access_loggers.file
                    filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: k}}}}
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: /tmp/access.log
",
    );
    let errors = translate(&text, false).unwrap_err();
    assert_eq!(
        errors,
        ["static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log[0].filter: \
          not supported by ringway (--allow-unsupported leaves it out) (line 15)"]
    );
    // Allowed: the logger stays, without its filter.
    let doc = translate(&text, true).unwrap();
    assert_eq!(access_logs(&doc), json!([{"path": "/tmp/access.log"}]));
}

/// Two listeners, the first unnamed, and `runtime` as the bootstrap's `layered_runtime`.
fn with_runtime(runtime: &str) -> String {
    format!(
        "static_resources:
  listeners:
    - address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
      filter_chains: [{{filters: [{{name: envoy.filters.network.tcp_proxy, typed_config: {{stat_prefix: t, cluster: c}}}}]}}]
    - name: named
      address: {{socket_address: {{address: 127.0.0.1, port_value: 8081}}}}
      filter_chains: [{{filters: [{{name: envoy.filters.network.tcp_proxy, typed_config: {{stat_prefix: t, cluster: c}}}}]}}]
  clusters:
    - name: c
      load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9000}}}}}}}}]}}]}}
layered_runtime:
{runtime}"
    )
}

#[test]
fn an_unnamed_listener_is_named_by_its_address() {
    let doc = translate(&with_runtime("  layers: []\n"), false).unwrap();
    assert_eq!(doc["listeners"][0]["name"], "127.0.0.1_8080");
    assert_eq!(doc["listeners"][1]["name"], "named");
}

#[test]
fn runtime_keys_are_unsupported_but_for_a_limit_no_listener_reads() {
    // Envoy's front-proxy example: a connection limit for a listener that is not there.
    let unread = "  layers:
    - name: static_layer_0
      static_layer:
        envoy: {resource_limits: {listener: {example_listener_name: {connection_limit: 10000}}}}
";
    assert!(translate(&with_runtime(unread), false).is_ok());
    // One a listener would read, a flag, another kind of layer: each refused at its path.
    let read = "  layers:
    - name: static_layer_0
      static_layer:
        envoy.resource_limits.listener.named.connection_limit: 10
        envoy: {reloadable_features: {some_flag: false}}
    - name: disk
      disk_layer: {symlink_root: /srv/runtime/current}
";
    let errors = translate(&with_runtime(read), false).unwrap_err();
    let paths: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "layered_runtime.layers[0].static_layer[\"envoy.resource_limits.listener.named.connection_limit\"]",
            "layered_runtime.layers[0].static_layer.envoy.reloadable_features.some_flag",
            "layered_runtime.layers[1].disk_layer",
        ],
        "{errors:?}"
    );
}

#[test]
fn static_secrets_fill_the_tls_contexts_that_name_them() {
    let text = |names: &str| {
        format!(
            "static_resources:
  secrets:
    - name: edge
      tls_certificate:
        certificate_chain: {{filename: /etc/edge.crt}}
        private_key: {{filename: /etc/edge.key}}
  listeners:
    - name: tls
      address: {{socket_address: {{address: 127.0.0.1, port_value: 8443}}}}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                tls_certificate_sds_secret_configs: [{names}]
          filters: [{{name: envoy.filters.network.tcp_proxy, typed_config: {{stat_prefix: t, cluster: c}}}}]
  clusters:
    - name: c
      load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9000}}}}}}}}]}}]}}
"
        )
    };
    // A reference without sds_config is a static secret; one with it stays for the control plane.
    let doc = translate(
        &text("{name: edge}, {name: dyn, sds_config: {ads: {}}}"),
        false,
    )
    .unwrap();
    assert_eq!(
        doc["listeners"][0]["filter_chains"][0]["tls"]["common_tls_context"],
        json!({
            "tls_certificates": [{"certificate_chain": {"filename": "/etc/edge.crt"},
                                  "private_key": {"filename": "/etc/edge.key"}}],
            "tls_certificate_sds_secret_configs": [{"name": "dyn", "sds_config": {"ads": {}}}],
        })
    );
    let errors = translate(&text("{name: nope}"), false).unwrap_err();
    assert_eq!(
        errors,
        [
            "static_resources.listeners[0]: names the secret \"nope\", which \
          static_resources.secrets does not have (line 8)"
        ]
    );
}

#[test]
fn an_upstreams_san_matchers_must_be_exact_dns_names() {
    let text = |san: &str| {
        format!(
            "static_resources:
  clusters:
    - name: backend
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: backend.example.com
          common_tls_context:
            validation_context:
              trusted_ca: {{filename: /etc/ca.crt}}
              match_typed_subject_alt_names: [{san}]
      load_assignment: {{cluster_name: backend, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9443}}}}}}}}]}}]}}
"
        )
    };
    let doc = translate(
        &text("{san_type: DNS, matcher: {exact: backend.example.com}}"),
        false,
    )
    .unwrap();
    assert_eq!(
        doc["clusters"][0]["tls"]["verify"],
        json!({"ca": {"filename": "/etc/ca.crt"}, "subject_alt_names": ["backend.example.com"]})
    );
    for other in [
        "{san_type: URI, matcher: {exact: \"spiffe://x/y\"}}",
        "{san_type: DNS, matcher: {suffix: .example.com}}",
    ] {
        let errors = translate(&text(other), false).unwrap_err();
        assert_eq!(
            errors,
            [
                "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.\
              validation_context.match_typed_subject_alt_names[0]: not supported by ringway \
              (--allow-unsupported leaves it out) (line 12)"
            ],
            "{other}"
        );
    }
}
