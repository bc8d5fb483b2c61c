//! Envoy's v3 config, read as it is: a bootstrap file (`ringway run -c envoy.yaml`, detected by
//! its `static_resources` / `dynamic_resources` keys or an `admin.address` map, or `--format
//! envoy`) and the resources an xDS control plane sends (listeners, route configurations,
//! clusters, cluster load assignments; the xDS client turns their protobuf into this JSON form
//! first).
//!
//! ```text
//! Envoy JSON (proto3 JSON, snake_case) ─▶ translate ─▶ ringway document (serde_json::Value)
//!                                          │             ─▶ the usual decode ─▶ validate
//!                                          └─▶ unsupported fields, each with its Envoy path
//! ```
//!
//! ringway's own format already speaks Envoy's vocabulary, so the translation is mostly
//! unwrapping: `typed_config` and its `@type`, `socket_address`, `load_assignment`,
//! `route_config`, `transport_socket`, the access loggers' `log_format`. Subtrees that have the
//! same shape in both (retry policies, health checks, outlier detection, circuit breakers, TLS
//! parameters, ...) are copied key by key against ringway's own JSON Schema (the one
//! `ringway schema` prints): a key ringway's format does not have is reported, never dropped in
//! silence. Every field ringway does not support is a problem at its path in the Envoy document
//! (so it carries the file's line); `--allow-unsupported` turns those into warnings and leaves
//! the fields out. Meaning (references, ranges) is still `validate`'s, on the translated
//! document: `ringway convert` prints it.
//!
//! Control side only; never on a worker.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::{error::Problems, path::DocPath};

/// The message of an unsupported field.
pub const UNSUPPORTED: &str = "not supported by ringway (--allow-unsupported leaves it out)";

/// True when a parsed config document is an Envoy bootstrap rather than ringway's own format.
pub fn is_bootstrap(doc: &Value) -> bool {
    doc.as_object().is_some_and(|m| {
        ["static_resources", "dynamic_resources", "layered_runtime"]
            .iter()
            .any(|k| m.contains_key(*k))
            || m.get("admin")
                .and_then(|a| a.get("address"))
                .is_some_and(Value::is_object)
    })
}

/// What a translation found ringway does not support: the problems (paths into the Envoy
/// document) and, for messages and `--allow-unsupported` warnings, their count.
#[derive(Debug, Default)]
pub(crate) struct Tr {
    pub(crate) problems: Problems,
}

impl Tr {
    fn unsupported(&mut self, at: &DocPath) {
        self.problems.key(at, UNSUPPORTED);
    }

    fn bad(&mut self, at: &DocPath, message: impl Into<String>) {
        self.problems.value(at, message);
    }
}

/// A map of the Envoy document being read: every key taken is marked; the rest are reported
/// as unsupported when the reader is done with it.
struct Obj<'a> {
    map: Option<&'a Map<String, Value>>,
    at: DocPath,
    taken: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, at: &DocPath, tr: &mut Tr) -> Obj<'a> {
        let map = v.as_object();
        if map.is_none() && !v.is_null() {
            tr.bad(at, "expected a map");
        }
        Obj {
            map,
            at: at.clone(),
            taken: Vec::new(),
        }
    }

    /// The value of `key` (not null), marked as read.
    fn get(&mut self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map?.get_key_value(key)?;
        self.taken.push(k.as_str());
        (!v.is_null()).then_some(v)
    }

    fn str(&mut self, key: &str, tr: &mut Tr) -> Option<&'a str> {
        let v = self.get(key)?;
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                tr.bad(&self.at(key), "expected a string");
                None
            }
        }
    }

    /// An extension's `{name, typed_config}`: its short name (from `name` without `prefix`,
    /// or from the `@type`) and its config.
    fn extension(&mut self, prefix: &str, tr: &mut Tr) -> (String, Option<&'a Value>) {
        let name = self.str("name", tr).unwrap_or("");
        let config = self.get("typed_config");
        let ty = config
            .and_then(|c| c.get("@type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        (short_name(name, ty, prefix), config)
    }

    /// A key ringway reads only at one value (its own fixed behaviour): any other is reported.
    fn only(&mut self, key: &str, value: Value, tr: &mut Tr) {
        if self.get(key).is_some_and(|v| *v != value) {
            tr.unsupported(&self.at(key));
        }
    }

    /// Marks keys as read that change nothing here (`@type`, names Envoy only logs).
    fn ignore(&mut self, keys: &[&str]) {
        for k in keys {
            let _ = self.get(k);
        }
    }

    fn at(&self, key: &str) -> DocPath {
        self.at.key(key)
    }

    /// Reports every key not read.
    fn done(self, tr: &mut Tr) {
        let Some(map) = self.map else { return };
        for (k, v) in map {
            // Envoy's JSON printers write defaults out (`false`, `[]`, `{}`): those say nothing.
            if !self.taken.contains(&k.as_str()) && !is_empty(v) {
                tr.unsupported(&self.at.key(k));
            }
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Copies `key` from `from` to `to` under `as_key`, unchanged, when present.
fn copy(from: &mut Obj<'_>, to: &mut Map<String, Value>, key: &str, as_key: &str) {
    if let Some(v) = from.get(key) {
        to.insert(as_key.to_owned(), v.clone());
    }
}

/// Copies `key` through [`fit`] against ringway's schema definition `def`.
fn copy_fit(from: &mut Obj<'_>, to: &mut Map<String, Value>, key: &str, def: &str, tr: &mut Tr) {
    if let Some(v) = from.get(key) {
        let at = from.at(key);
        to.insert(key.to_owned(), fit(v, &schema_def(def), &at, tr));
    }
}

/// Each element of the list at `key` through `each`.
fn list(
    from: &mut Obj<'_>,
    key: &str,
    tr: &mut Tr,
    mut each: impl FnMut(&Value, &DocPath, &mut Tr) -> Option<Value>,
) -> Option<Vec<Value>> {
    let v = from.get(key)?;
    let at = from.at(key);
    let Some(items) = v.as_array() else {
        tr.bad(&at, "expected a list");
        return None;
    };
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(item, &at.index(i), tr))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// ringway's JSON Schema, for the subtrees copied key by key.

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(&super::json_schema::generate()).unwrap_or_else(|_| json!({}))
    })
}

fn schema_def(name: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{name}") })
}

/// Follows `$ref`s and picks the non-null branch of `anyOf` / `oneOf` that fits `v`.
fn resolve<'s>(s: &'s Value, v: &Value) -> &'s Value {
    let mut s = s;
    for _ in 0..16 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap_or_default();
            match schema().pointer(&format!("/definitions/{name}")) {
                Some(d) => s = d,
                None => return s,
            }
            continue;
        }
        let branches = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(branches) = branches {
            let fits = |b: &&Value| {
                let b = resolve(b, v);
                let ty = b.get("type");
                let has = |t: &str| match ty {
                    Some(Value::String(s)) => s == t,
                    Some(Value::Array(a)) => a.iter().any(|x| x == t),
                    _ => false,
                };
                match v {
                    Value::Object(_) => has("object") || b.get("properties").is_some(),
                    Value::Array(_) => has("array"),
                    Value::String(_) => has("string") || ty.is_none(),
                    Value::Number(_) => has("number") || has("integer"),
                    Value::Bool(_) => has("boolean"),
                    Value::Null => has("null"),
                }
            };
            match branches.iter().find(fits).or_else(|| branches.first()) {
                Some(b) => s = b,
                None => return s,
            }
            continue;
        }
        return s;
    }
    s
}

/// `v` with every key ringway's schema `s` does not have reported (at its path under `at`) and
/// left out; proto3 JSON's 64-bit integers (strings) become numbers where the schema wants one,
/// and `@type` keys go.
fn fit(v: &Value, s: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let s = resolve(s, v);
    match v {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            let mut out = Map::new();
            for (k, child) in map {
                if k == "@type" {
                    continue;
                }
                match props.and_then(|p| p.get(k)) {
                    Some(cs) => {
                        out.insert(k.clone(), fit(child, cs, &at.key(k), tr));
                    }
                    None if closed => {
                        if !is_empty(child) {
                            tr.unsupported(&at.key(k));
                        }
                    }
                    None => {
                        let child = match extra {
                            Some(cs) => fit(child, cs, &at.key(k), tr),
                            None => strip_types(child),
                        };
                        out.insert(k.clone(), child);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let item = s.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| fit(x, &item, &at.index(i), tr))
                    .collect(),
            )
        }
        Value::String(text) => {
            let wants_int = match s.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(a)) => a.iter().any(|t| t == "integer"),
                _ => false,
            };
            match text.parse::<u64>() {
                Ok(n) if wants_int => json!(n),
                _ => v.clone(),
            }
        }
        _ => v.clone(),
    }
}

/// A copy of `v` without `@type` keys at any depth (filter configs, whose own parsers know
/// their keys).
fn strip_types(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "@type")
                .map(|(k, x)| (k.clone(), strip_types(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_types).collect()),
        _ => v.clone(),
    }
}

/// Translates one xDS resource (in Envoy's JSON form) of the type `type_url` names: a
/// listener, a route configuration, a cluster or a cluster load assignment (endpoints). The
/// problems, if any, name places relative to the resource, under `label`.
pub fn translate_resource(
    type_url: &str,
    json: &Value,
    label: &str,
) -> (Value, Option<super::ConfigErrors>) {
    let mut tr = Tr::default();
    let root = DocPath::root();
    let value = match type_url.rsplit('.').next() {
        Some("Listener") => listener(json, &root, &mut tr),
        Some("RouteConfiguration") => route_configuration(json, &root, &mut tr),
        Some("Cluster") => cluster(json, &root, &mut tr),
        Some("Secret") => secret(json, &root, &mut tr),
        _ => load_assignment(json, &root, &mut tr),
    };
    let problems =
        (!tr.problems.is_empty()).then(|| tr.problems.into_errors(label, &super::Lines::default()));
    (value, problems)
}

// ---------------------------------------------------------------------------------------------
// The bootstrap.

/// Translates an Envoy v3 bootstrap document into ringway's format.
pub(crate) fn bootstrap(doc: &Value, tr: &mut Tr) -> Value {
    let root = DocPath::root();
    let mut o = Obj::new(doc, &root, tr);
    let mut out = Map::new();
    if let Some(node) = o.get("node") {
        let at = o.at("node");
        let mut n = Obj::new(node, &at, tr);
        let mut m = Map::new();
        copy(&mut n, &mut m, "id", "id");
        copy(&mut n, &mut m, "cluster", "cluster");
        // Identification only (a control plane may read them): ringway sends id and cluster.
        n.ignore(&["metadata", "locality", "user_agent_name"]);
        n.done(tr);
        out.insert("node".into(), Value::Object(m));
    }
    if let Some(admin) = o.get("admin") {
        let at = o.at("admin");
        let mut a = Obj::new(admin, &at, tr);
        let mut m = Map::new();
        if let Some(addr) = a.get("address") {
            if let Some(s) = address(addr, &a.at("address"), tr) {
                m.insert("address".into(), json!(s));
            }
        }
        // Envoy's admin access log: ringway's admin logs nothing per request.
        a.only("access_log_path", json!("/dev/null"), tr);
        a.done(tr);
        out.insert("admin".into(), Value::Object(m));
    }
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    if let Some(sr) = o.get("static_resources") {
        let at = o.at("static_resources");
        let mut s = Obj::new(sr, &at, tr);
        listeners = list(&mut s, "listeners", tr, |v, at, tr| {
            Some(listener(v, at, tr))
        })
        .unwrap_or_default();
        clusters =
            list(&mut s, "clusters", tr, |v, at, tr| Some(cluster(v, at, tr))).unwrap_or_default();
        if let Some(Value::Array(list)) = s.get("secrets") {
            let at = s.at("secrets");
            static_secrets(list, &at, &mut listeners, tr);
        }
        s.done(tr);
    }
    if let Some(dr) = o.get("dynamic_resources") {
        let at = o.at("dynamic_resources");
        out.insert("xds".into(), dynamic_resources(dr, &at, tr));
    }
    if let Some(rt) = o.get("layered_runtime") {
        let named: Vec<&str> = doc
            .pointer("/static_resources/listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("name").and_then(Value::as_str))
            .collect();
        layered_runtime(rt, &o.at("layered_runtime"), &named, tr);
    }
    o.done(tr);
    out.insert("listeners".into(), Value::Array(listeners));
    out.insert("clusters".into(), Value::Array(clusters));
    Value::Object(out)
}

/// `static_resources.secrets` put into the listeners whose TLS contexts name them without an
/// `sds_config` (Envoy's static secrets); a name no secret has is an error at the listener.
fn static_secrets(list: &[Value], at: &DocPath, listeners: &mut [Value], tr: &mut Tr) {
    let mut secrets = std::collections::BTreeMap::new();
    for (i, v) in list.iter().enumerate() {
        let at = at.index(i);
        match v.get("name").and_then(Value::as_str) {
            Some(name) => {
                secrets.insert(name.to_owned(), secret(v, &at, tr));
            }
            None => tr.bad(&at.key("name"), "a static secret needs a name"),
        }
    }
    for (i, l) in listeners.iter_mut().enumerate() {
        for name in super::compose::fill_static_secrets(l, &secrets) {
            tr.bad(
                &DocPath::root()
                    .key("static_resources")
                    .key("listeners")
                    .index(i),
                format!("names the secret {name:?}, which static_resources.secrets does not have"),
            );
        }
    }
}

/// Envoy's runtime: ringway has none, so every key a static layer sets is unsupported (at its
/// path), but for one no code would read: a listener's connection limit naming a listener the
/// file does not have (Envoy's front-proxy example sets one), which changes nothing in Envoy
/// either. Other layer kinds (disk, admin, RTDS) are unsupported.
fn layered_runtime(v: &Value, at: &DocPath, listeners: &[&str], tr: &mut Tr) {
    let mut o = Obj::new(v, at, tr);
    if let Some(layers) = o.get("layers").and_then(Value::as_array) {
        let at = o.at("layers");
        for (i, layer) in layers.iter().enumerate() {
            let at = at.index(i);
            let mut l = Obj::new(layer, &at, tr);
            l.ignore(&["name"]);
            if let Some(s) = l.get("static_layer") {
                runtime_keys(s, &l.at("static_layer"), "", listeners, tr);
            }
            l.done(tr);
        }
    }
    o.done(tr);
}

/// Each leaf of a static runtime layer (`prefix`: the dotted key so far).
fn runtime_keys(v: &Value, at: &DocPath, prefix: &str, listeners: &[&str], tr: &mut Tr) {
    let Some(map) = v.as_object() else {
        let unread = prefix
            .strip_prefix("envoy.resource_limits.listener.")
            .and_then(|rest| rest.strip_suffix(".connection_limit"))
            .is_some_and(|name| !listeners.contains(&name));
        if !unread {
            tr.unsupported(at);
        }
        return;
    };
    for (k, v) in map {
        let key = match prefix {
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        runtime_keys(v, &at.key(k), &key, listeners, tr);
    }
}

/// `dynamic_resources: {ads_config: {api_type, grpc_services: [{envoy_grpc: {cluster_name}}]},
/// lds_config: {ads: {}}, cds_config: {ads: {}}}` -> ringway's `xds:`.
fn dynamic_resources(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    if let Some(ads) = o.get("ads_config") {
        let at = o.at("ads_config");
        let mut a = Obj::new(ads, &at, tr);
        if let Some(t) = a.str("api_type", tr) {
            out.insert("api_type".into(), json!(t));
        }
        a.ignore(&["transport_api_version", "set_node_on_first_message_only"]);
        if let Some(list) = a.get("grpc_services").and_then(Value::as_array) {
            let at = a.at("grpc_services");
            for (i, g) in list.iter().enumerate() {
                let at = at.index(i);
                let mut g = Obj::new(g, &at, tr);
                if let Some(e) = g.get("envoy_grpc") {
                    let at = g.at("envoy_grpc");
                    let mut e = Obj::new(e, &at, tr);
                    if let Some(c) = e.str("cluster_name", tr) {
                        if i == 0 {
                            out.insert("cluster".into(), json!(c));
                        }
                    }
                    e.done(tr);
                }
                copy(&mut g, &mut out, "timeout", "timeout");
                g.done(tr);
            }
        }
        a.done(tr);
    }
    for key in ["lds_config", "cds_config"] {
        if let Some(c) = o.get(key) {
            let at = o.at(key);
            let mut c = Obj::new(c, &at, tr);
            if c.get("ads").is_none() {
                tr.bad(&at, "only `ads: {}` config sources are supported");
            }
            c.ignore(&["resource_api_version", "initial_fetch_timeout"]);
            c.done(tr);
            out.insert(
                if key == "lds_config" { "lds" } else { "cds" }.into(),
                json!(true),
            );
        }
    }
    o.done(tr);
    Value::Object(out)
}

/// Envoy's `Address` -> `IP:port` (or `host:port` for DNS clusters' endpoints).
fn address(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<String> {
    let mut o = Obj::new(v, at, tr);
    let sa = o.get("socket_address");
    let out = match sa {
        Some(sa) => {
            let at = o.at("socket_address");
            let mut s = Obj::new(sa, &at, tr);
            let host = s.str("address", tr).unwrap_or("");
            let port = s.get("port_value").and_then(|p| match p {
                Value::Number(n) => n.as_u64(),
                Value::String(t) => t.parse().ok(),
                _ => None,
            });
            if let Some(p) = s.get("protocol") {
                if p != "TCP" {
                    tr.unsupported(&s.at("protocol"));
                }
            }
            s.ignore(&["ipv4_compat", "resolver_name"]);
            s.done(tr);
            match port {
                Some(port) if host.contains(':') => Some(format!("[{host}]:{port}")),
                Some(port) => Some(format!("{host}:{port}")),
                None => {
                    tr.bad(&at, "a socket_address needs address and port_value");
                    None
                }
            }
        }
        None => {
            tr.bad(at, "only socket_address addresses are supported");
            None
        }
    };
    o.done(tr);
    out
}

// ---------------------------------------------------------------------------------------------
// Listeners.

/// An Envoy `Listener` -> a ringway listener.
pub(crate) fn listener(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type"]);
    copy(&mut o, &mut out, "name", "name");
    if let Some(a) = o.get("address") {
        if let Some(s) = address(a, &o.at("address"), tr) {
            // Envoy names a listener left unnamed itself; its stats say the address, so
            // ringway names it by the address, as in Envoy's stats (`0.0.0.0_8080`).
            if !out.contains_key("name") {
                out.insert("name".into(), json!(s.replace(':', "_")));
            }
            out.insert("address".into(), json!(s));
        }
    }
    if let Some(chains) = list(&mut o, "filter_chains", tr, |v, at, tr| {
        Some(filter_chain(v, at, tr))
    }) {
        out.insert("filter_chains".into(), Value::Array(chains));
    }
    if let Some(d) = o.get("default_filter_chain") {
        let at = o.at("default_filter_chain");
        out.insert("default_filter_chain".into(), filter_chain(d, &at, tr));
    }
    if let Some(lf) = list(&mut o, "listener_filters", tr, listener_filter) {
        out.insert("listener_filters".into(), Value::Array(lf));
    }
    copy(
        &mut o,
        &mut out,
        "listener_filters_timeout",
        "listener_filters_timeout",
    );
    copy(
        &mut o,
        &mut out,
        "continue_on_listener_filters_timeout",
        "continue_on_listener_filters_timeout",
    );
    if let Some(logs) = list(&mut o, "access_log", tr, access_log) {
        out.insert("access_log".into(), Value::Array(logs));
    }
    // Envoy's default, and ringway's only behaviour: one listening socket per worker.
    o.only("enable_reuse_port", json!(true), tr);
    // Names and stats only.
    o.ignore(&["stat_prefix", "traffic_direction"]);
    o.done(tr);
    Value::Object(out)
}

fn listener_filter(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    let (short, config) = o.extension("envoy.filters.listener.", tr);
    let out = match short.as_str() {
        "tls_inspector" => {
            if let Some(c) = config {
                let at = o.at("typed_config");
                let mut c = Obj::new(c, &at, tr);
                c.ignore(&["@type"]);
                c.done(tr);
            }
            Some(json!({ "tls_inspector": {} }))
        }
        "proxy_protocol" => {
            let c = match config {
                Some(c) => fit(
                    c,
                    &schema_def("ProxyProtocolSpec"),
                    &o.at("typed_config"),
                    tr,
                ),
                None => json!({}),
            };
            Some(json!({ "proxy_protocol": c }))
        }
        _ => {
            tr.unsupported(at);
            None
        }
    };
    o.done(tr);
    out
}

/// A filter's short name from its `name` or its `typed_config`'s `@type`
/// (`type.googleapis.com/envoy.extensions.filters.<kind>.<short>.v3.<Type>`).
fn short_name(name: &str, ty: &str, prefix: &str) -> String {
    if let Some(s) = name.strip_prefix(prefix) {
        return s.to_owned();
    }
    let parts: Vec<&str> = ty.split('.').collect();
    match parts
        .iter()
        .position(|p| p.starts_with('v') && p[1..].parse::<u32>().is_ok())
    {
        Some(v) if v >= 1 => parts[v - 1].to_owned(),
        _ => name.to_owned(),
    }
}

fn filter_chain(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "name", "name");
    copy_fit(
        &mut o,
        &mut out,
        "filter_chain_match",
        "FilterChainMatchSpec",
        tr,
    );
    if let Some(f) = list(&mut o, "filters", tr, network_filter) {
        out.insert("filters".into(), Value::Array(f));
    }
    if let Some(ts) = o.get("transport_socket") {
        let at = o.at("transport_socket");
        if let Some(ctx) = transport_socket(ts, &at, tr) {
            let at = at.key("typed_config");
            out.insert("tls".into(), fit(ctx, &schema_def("TlsSpec"), &at, tr));
        }
    }
    copy(
        &mut o,
        &mut out,
        "transport_socket_connect_timeout",
        "transport_socket_connect_timeout",
    );
    o.done(tr);
    Value::Object(out)
}

/// The TLS context inside `transport_socket: {name: envoy.transport_sockets.tls,
/// typed_config: {...}}`; `None` (reported) for other transport sockets.
fn transport_socket<'a>(v: &'a Value, at: &DocPath, tr: &mut Tr) -> Option<&'a Value> {
    let mut o = Obj::new(v, at, tr);
    // `envoy.transport_sockets.tls`, or any name with a `...tls.v3.*TlsContext` type.
    let (short, config) = o.extension("envoy.transport_sockets.", tr);
    let tls = short == "tls";
    o.done(tr);
    if !tls {
        tr.unsupported(at);
        return None;
    }
    config
}

fn network_filter(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    let (short, config) = o.extension("envoy.filters.network.", tr);
    let cat = o.at("typed_config");
    let empty = json!({});
    let config = config.unwrap_or(&empty);
    let out = match short.as_str() {
        "http_connection_manager" => Some(json!({
            "http_connection_manager": http_connection_manager(config, &cat, tr)
        })),
        "tcp_proxy" => Some(json!({ "tcp_proxy": tcp_proxy(config, &cat, tr) })),
        _ => {
            tr.unsupported(at);
            None
        }
    };
    o.done(tr);
    out
}

fn tcp_proxy(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type"]);
    copy(&mut o, &mut out, "stat_prefix", "stat_prefix");
    copy(&mut o, &mut out, "cluster", "cluster");
    copy(&mut o, &mut out, "idle_timeout", "idle_timeout");
    copy(
        &mut o,
        &mut out,
        "max_connect_attempts",
        "max_connect_attempts",
    );
    if let Some(logs) = list(&mut o, "access_log", tr, access_log) {
        out.insert("access_log".into(), Value::Array(logs));
    }
    o.done(tr);
    Value::Object(out)
}

/// Envoy's `AccessLog` (file, stdout, stderr loggers) -> `{path, format | json_format}`.
fn access_log(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    let (kind, config) = o.extension("envoy.access_loggers.", tr);
    let mut out = Map::new();
    let cat = o.at("typed_config");
    let empty = json!({});
    let mut c = Obj::new(config.unwrap_or(&empty), &cat, tr);
    c.ignore(&["@type"]);
    // `stream` is the package of both Stdout- and StderrAccessLog.
    let ty = config.and_then(|c| c.get("@type")).and_then(Value::as_str);
    let stderr = kind == "stderr" || ty.is_some_and(|t| t.ends_with("StderrAccessLog"));
    match kind.as_str() {
        "file" => copy(&mut c, &mut out, "path", "path"),
        _ if stderr => {
            out.insert("path".into(), json!("/dev/stderr"));
        }
        "stdout" | "stream" => {
            out.insert("path".into(), json!("stdout"));
        }
        _ => {
            tr.unsupported(at);
            o.done(tr);
            return None;
        }
    }
    // The legacy spellings first, then `log_format`.
    copy(&mut c, &mut out, "format", "format");
    copy(&mut c, &mut out, "json_format", "json_format");
    if let Some(lf) = c.get("log_format") {
        let at = c.at("log_format");
        let mut l = Obj::new(lf, &at, tr);
        if let Some(t) = l.get("text_format_source") {
            let at = l.at("text_format_source");
            let mut t = Obj::new(t, &at, tr);
            copy(&mut t, &mut out, "inline_string", "format");
            t.done(tr);
        }
        copy(&mut l, &mut out, "text_format", "format");
        copy(&mut l, &mut out, "json_format", "json_format");
        l.done(tr);
    }
    c.done(tr);
    o.done(tr);
    Some(Value::Object(out))
}

fn http_connection_manager(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type"]);
    for key in [
        "stat_prefix",
        "codec_type",
        "generate_request_id",
        "max_request_headers_kb",
        "request_headers_timeout",
        "stream_idle_timeout",
        "forward_client_cert_details",
    ] {
        copy(&mut o, &mut out, key, key);
    }
    copy_fit(
        &mut o,
        &mut out,
        "http_protocol_options",
        "Http1OptionsSpec",
        tr,
    );
    copy_fit(
        &mut o,
        &mut out,
        "http2_protocol_options",
        "Http2OptionsSpec",
        tr,
    );
    copy_fit(
        &mut o,
        &mut out,
        "set_current_client_cert_details",
        "ClientCertDetailsSpec",
        tr,
    );
    if let Some(c) = o.get("common_http_protocol_options") {
        let at = o.at("common_http_protocol_options");
        let mut c = Obj::new(c, &at, tr);
        copy(&mut c, &mut out, "idle_timeout", "idle_timeout");
        c.done(tr);
    }
    if let Some(rc) = o.get("route_config") {
        let at = o.at("route_config");
        let routes = route_configuration(rc, &at, tr);
        if let Some(vh) = routes.get("virtual_hosts") {
            out.insert("virtual_hosts".into(), vh.clone());
        }
    }
    if let Some(rds) = o.get("rds") {
        let at = o.at("rds");
        let mut r = Obj::new(rds, &at, tr);
        if let Some(name) = r.str("route_config_name", tr) {
            // Filled in by the xDS client from the route configuration of that name.
            out.insert("rds".into(), json!(name));
        }
        if let Some(cs) = r.get("config_source") {
            if cs.get("ads").is_none() {
                tr.bad(
                    &r.at("config_source"),
                    "only `ads: {}` config sources are supported",
                );
            }
        }
        r.done(tr);
    }
    if let Some(filters) = list(&mut o, "http_filters", tr, http_filter) {
        out.insert("http_filters".into(), Value::Array(filters));
    }
    if let Some(logs) = list(&mut o, "access_log", tr, access_log) {
        out.insert("access_log".into(), Value::Array(logs));
    }
    if let Some(t) = o.get("tracing") {
        let at = o.at("tracing");
        let mut t = Obj::new(t, &at, tr);
        if let Some(rs) = t.get("random_sampling") {
            if let Some(p) = rs.get("value").and_then(Value::as_f64) {
                out.insert("tracing".into(), json!({ "sample_rate": p / 100.0 }));
            }
        }
        t.done(tr);
    }
    // What ringway does anyway: the client address it appends to x-forwarded-for is the peer
    // of the connection, and `x-forwarded-proto` says how the client connected.
    o.only("use_remote_address", json!(true), tr);
    o.done(tr);
    Value::Object(out)
}

fn http_filter(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    let (short, config) = o.extension("envoy.filters.http.", tr);
    o.ignore(&["is_optional"]);
    let disabled = o.get("disabled").cloned();
    o.done(tr);
    if short == "router" {
        // Implicit and last in ringway; its options are Envoy's own.
        if let Some(c) = config {
            let at = at.key("typed_config");
            let mut c = Obj::new(c, &at, tr);
            c.ignore(&["@type"]);
            c.done(tr);
        }
        return None;
    }
    let ty = config.and_then(|c| c.get("@type")).and_then(Value::as_str);
    if ty.is_some_and(|t| t.ends_with("TypedStruct")) {
        tr.unsupported(&at.key("typed_config"));
        return None;
    }
    let mut out = match config.map(strip_types) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    out.insert("name".into(), json!(short));
    if let Some(d) = disabled {
        out.insert("disabled".into(), d);
    }
    Some(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// An Envoy `RouteConfiguration` -> `{name, virtual_hosts}`.
pub(crate) fn route_configuration(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type", "validate_clusters"]);
    copy(&mut o, &mut out, "name", "name");
    let hosts = list(&mut o, "virtual_hosts", tr, |v, at, tr| {
        Some(virtual_host(v, at, tr))
    });
    out.insert(
        "virtual_hosts".into(),
        Value::Array(hosts.unwrap_or_default()),
    );
    o.done(tr);
    Value::Object(out)
}

fn header_mutations(o: &mut Obj<'_>, out: &mut Map<String, Value>) {
    for key in [
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ] {
        copy(o, out, key, key);
    }
}

fn per_filter_config(o: &mut Obj<'_>, out: &mut Map<String, Value>) {
    let Some(Value::Object(m)) = o.get("typed_per_filter_config") else {
        return;
    };
    let mut pfc = Map::new();
    for (name, config) in m {
        let short = name
            .strip_prefix("envoy.filters.http.")
            .unwrap_or(name)
            .to_owned();
        // `envoy.config.route.v3.FilterConfig {disabled: true}` or the filter's own config.
        let config = match config.get("config") {
            Some(inner)
                if config
                    .get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("FilterConfig")) =>
            {
                let mut c = strip_types(inner);
                if let (Some(d), Value::Object(m)) = (config.get("disabled"), &mut c) {
                    m.insert("disabled".into(), d.clone());
                }
                c
            }
            _ => strip_types(config),
        };
        pfc.insert(short, config);
    }
    out.insert("typed_per_filter_config".into(), Value::Object(pfc));
}

fn virtual_host(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "name", "name");
    copy(&mut o, &mut out, "domains", "domains");
    let routes = list(&mut o, "routes", tr, |v, at, tr| Some(route(v, at, tr)));
    out.insert("routes".into(), Value::Array(routes.unwrap_or_default()));
    header_mutations(&mut o, &mut out);
    copy(
        &mut o,
        &mut out,
        "include_request_attempt_count",
        "include_request_attempt_count",
    );
    per_filter_config(&mut o, &mut out);
    o.done(tr);
    Value::Object(out)
}

fn route(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "name", "name");
    if let Some(m) = o.get("match") {
        out.insert("match".into(), route_match(m, &o.at("match"), tr));
    }
    if let Some(r) = o.get("route") {
        out.insert("route".into(), route_action(r, &o.at("route"), tr));
    }
    if let Some(d) = o.get("direct_response") {
        let at = o.at("direct_response");
        let mut d = Obj::new(d, &at, tr);
        let mut m = Map::new();
        copy(&mut d, &mut m, "status", "status");
        if let Some(body) = d.get("body") {
            let at = d.at("body");
            let mut b = Obj::new(body, &at, tr);
            copy(&mut b, &mut m, "inline_string", "body");
            b.done(tr);
        }
        d.done(tr);
        out.insert("direct_response".into(), Value::Object(m));
    }
    if let Some(r) = o.get("redirect") {
        let at = o.at("redirect");
        let mut r = Obj::new(r, &at, tr);
        let mut m = Map::new();
        copy(&mut r, &mut m, "https_redirect", "https_redirect");
        if let Some(s) = r.str("scheme_redirect", tr) {
            if s == "https" {
                m.insert("https_redirect".into(), json!(true));
            } else {
                tr.unsupported(&r.at("scheme_redirect"));
            }
        }
        copy(&mut r, &mut m, "host_redirect", "host_redirect");
        copy(&mut r, &mut m, "path_redirect", "path_redirect");
        if let Some(code) = r.get("response_code") {
            let n = match code {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => match s.as_str() {
                    "MOVED_PERMANENTLY" => Some(301),
                    "FOUND" => Some(302),
                    "SEE_OTHER" => Some(303),
                    "TEMPORARY_REDIRECT" => Some(307),
                    "PERMANENT_REDIRECT" => Some(308),
                    _ => None,
                },
                _ => None,
            };
            match n {
                Some(n) => {
                    m.insert("response_code".into(), json!(n));
                }
                None => tr.bad(&r.at("response_code"), "unknown redirect response code"),
            }
        }
        r.done(tr);
        out.insert("redirect".into(), Value::Object(m));
    }
    header_mutations(&mut o, &mut out);
    per_filter_config(&mut o, &mut out);
    o.done(tr);
    Value::Object(out)
}

/// A `StringMatcher`-like map's regex: `{safe_regex: {regex}}` or `{google_re2: {}, regex}`.
fn safe_regex(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    o.ignore(&["google_re2"]);
    let r = o.get("regex").cloned();
    o.done(tr);
    r
}

fn route_match(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "prefix", "prefix");
    copy(&mut o, &mut out, "path", "path");
    if let Some(r) = o.get("safe_regex") {
        if let Some(r) = safe_regex(r, &o.at("safe_regex"), tr) {
            out.insert("regex".into(), r);
        }
    }
    let mut methods = Vec::new();
    let headers = list(&mut o, "headers", tr, |v, at, tr| {
        let h = header_matcher(v, at, tr)?;
        // Envoy matches methods with a `:method` header matcher; ringway has `methods`.
        if h.get("name").and_then(Value::as_str) == Some(":method") && h.get("invert").is_none() {
            if let Some(m) = h.get("exact") {
                methods.push(m.clone());
                return None;
            }
        }
        Some(h)
    });
    if let Some(h) = headers {
        if !h.is_empty() {
            out.insert("headers".into(), Value::Array(h));
        }
    }
    if !methods.is_empty() {
        out.insert("methods".into(), Value::Array(methods));
    }
    o.only("case_sensitive", json!(true), tr);
    o.done(tr);
    Value::Object(out)
}

fn header_matcher(v: &Value, at: &DocPath, tr: &mut Tr) -> Option<Value> {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "name", "name");
    copy(&mut o, &mut out, "exact_match", "exact");
    copy(&mut o, &mut out, "prefix_match", "prefix");
    copy(&mut o, &mut out, "present_match", "present");
    copy(&mut o, &mut out, "invert_match", "invert");
    if let Some(r) = o.get("safe_regex_match") {
        if let Some(r) = safe_regex(r, &o.at("safe_regex_match"), tr) {
            out.insert("regex".into(), r);
        }
    }
    if let Some(sm) = o.get("string_match") {
        let at = o.at("string_match");
        let mut s = Obj::new(sm, &at, tr);
        copy(&mut s, &mut out, "exact", "exact");
        copy(&mut s, &mut out, "prefix", "prefix");
        if let Some(r) = s.get("safe_regex") {
            if let Some(r) = safe_regex(r, &s.at("safe_regex"), tr) {
                out.insert("regex".into(), r);
            }
        }
        s.only("ignore_case", json!(false), tr);
        s.done(tr);
    }
    o.done(tr);
    Some(Value::Object(out))
}

fn route_action(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    copy(&mut o, &mut out, "cluster", "cluster");
    if let Some(w) = o.get("weighted_clusters") {
        let at = o.at("weighted_clusters");
        let mut w = Obj::new(w, &at, tr);
        let mut m = Map::new();
        let clusters = list(&mut w, "clusters", tr, |v, at, tr| {
            let mut c = Obj::new(v, at, tr);
            let mut m = Map::new();
            copy(&mut c, &mut m, "name", "name");
            if let Some(wt) = c.get("weight") {
                m.insert("weight".into(), number(wt));
            }
            c.done(tr);
            Some(Value::Object(m))
        });
        m.insert(
            "clusters".into(),
            Value::Array(clusters.unwrap_or_default()),
        );
        if let Some(t) = w.get("total_weight") {
            m.insert("total_weight".into(), number(t));
        }
        w.done(tr);
        out.insert("weighted_clusters".into(), Value::Object(m));
    }
    copy(&mut o, &mut out, "timeout", "timeout");
    copy(&mut o, &mut out, "prefix_rewrite", "prefix_rewrite");
    copy(&mut o, &mut out, "host_rewrite_literal", "host_rewrite");
    copy(&mut o, &mut out, "max_grpc_timeout", "max_grpc_timeout");
    if let Some(m) = o.get("max_stream_duration") {
        let at = o.at("max_stream_duration");
        let mut m = Obj::new(m, &at, tr);
        copy(
            &mut m,
            &mut out,
            "grpc_timeout_header_max",
            "max_grpc_timeout",
        );
        m.done(tr);
    }
    copy_fit(&mut o, &mut out, "retry_policy", "RetryPolicySpec", tr);
    if let Some(v) = o.get("request_mirror_policies") {
        let at = o.at("request_mirror_policies");
        let s = json!({ "items": schema_def("MirrorPolicySpec"), "type": "array" });
        out.insert("request_mirror_policies".into(), fit(v, &s, &at, tr));
    }
    if let Some(v) = o.get("hash_policy") {
        let at = o.at("hash_policy");
        let s = json!({ "items": schema_def("HashPolicySpec"), "type": "array" });
        out.insert("hash_policy".into(), fit(v, &s, &at, tr));
    }
    o.done(tr);
    Value::Object(out)
}

/// A number from proto3 JSON (64-bit integers come as strings).
fn number(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .parse::<u64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Clusters.

/// An Envoy `Cluster` -> a ringway cluster. An `EDS` cluster's endpoints come from its load
/// assignment (`eds` names it; the xDS client fills `endpoints` in).
pub(crate) fn cluster(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type", "alt_stat_name"]);
    copy(&mut o, &mut out, "name", "name");
    copy(&mut o, &mut out, "connect_timeout", "connect_timeout");
    if let Some(t) = o.str("type", tr) {
        match t {
            "EDS" => {
                let service = o
                    .get("eds_cluster_config")
                    .and_then(|e| e.get("service_name"))
                    .and_then(Value::as_str)
                    .or_else(|| out.get("name").and_then(Value::as_str))
                    .unwrap_or_default()
                    .to_owned();
                out.insert("eds".into(), json!(service));
            }
            _ => {
                out.insert("type".into(), json!(t));
            }
        }
    }
    if let Some(p) = o.str("lb_policy", tr) {
        out.insert("lb_policy".into(), json!(p));
    }
    for key in [
        "dns_refresh_rate",
        "respect_dns_ttl",
        "dns_lookup_family",
        "max_requests_per_connection",
    ] {
        copy(&mut o, &mut out, key, key);
    }
    if let Some(r) = o.get("dns_resolvers") {
        let at = o.at("dns_resolvers");
        let rs = r.as_array().map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(i, x)| address(x, &at.index(i), tr))
                .collect::<Vec<_>>()
        });
        out.insert("dns_resolvers".into(), json!(rs.unwrap_or_default()));
    }
    if let Some(la) = o.get("load_assignment") {
        let at = o.at("load_assignment");
        let eps = load_assignment(la, &at, tr);
        out.insert("endpoints".into(), eps);
    }
    if let Some(v) = o.get("health_checks") {
        let at = o.at("health_checks");
        let s = json!({ "items": schema_def("HealthCheckSpec"), "type": "array" });
        out.insert("health_checks".into(), fit(v, &s, &at, tr));
    }
    for (key, def) in [
        ("outlier_detection", "OutlierDetectionSpec"),
        ("circuit_breakers", "CircuitBreakersSpec"),
        ("common_lb_config", "CommonLbConfigSpec"),
        ("ring_hash_lb_config", "RingHashLbConfigSpec"),
        ("maglev_lb_config", "MaglevLbConfigSpec"),
        ("round_robin_lb_config", "SlowStartHolderSpec"),
        ("least_request_lb_config", "LeastRequestLbConfigSpec"),
        ("common_http_protocol_options", "CommonHttpOptionsSpec"),
    ] {
        copy_fit(&mut o, &mut out, key, def, tr);
    }
    // The pre-v3 spellings of the upstream protocol.
    copy_fit(
        &mut o,
        &mut out,
        "http_protocol_options",
        "Http1OptionsSpec",
        tr,
    );
    if let Some(h2) = o.get("http2_protocol_options") {
        let at = o.at("http2_protocol_options");
        out.insert("protocol".into(), json!("http2"));
        out.insert(
            "http2_protocol_options".into(),
            fit(h2, &schema_def("Http2OptionsSpec"), &at, tr),
        );
    }
    if let Some(Value::Object(teo)) = o.get("typed_extension_protocol_options") {
        let at = o.at("typed_extension_protocol_options");
        for (k, opts) in teo {
            let at = at.key(k);
            if k != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
                tr.unsupported(&at);
                continue;
            }
            http_protocol_options(opts, &at, &mut out, tr);
        }
    }
    if let Some(ts) = o.get("transport_socket") {
        let at = o.at("transport_socket");
        if let Some(ctx) = transport_socket(ts, &at, tr) {
            out.insert("tls".into(), upstream_tls(ctx, &at.key("typed_config"), tr));
        }
    }
    o.done(tr);
    Value::Object(out)
}

/// `HttpProtocolOptions` (the typed extension protocol options of a cluster).
fn http_protocol_options(v: &Value, at: &DocPath, out: &mut Map<String, Value>, tr: &mut Tr) {
    let mut o = Obj::new(v, at, tr);
    o.ignore(&["@type"]);
    if let Some(e) = o.get("explicit_http_config") {
        let at = o.at("explicit_http_config");
        let mut e = Obj::new(e, &at, tr);
        if let Some(h2) = e.get("http2_protocol_options") {
            let at = e.at("http2_protocol_options");
            out.insert("protocol".into(), json!("http2"));
            out.insert(
                "http2_protocol_options".into(),
                fit(h2, &schema_def("Http2OptionsSpec"), &at, tr),
            );
        }
        if let Some(h1) = e.get("http_protocol_options") {
            let at = e.at("http_protocol_options");
            out.insert(
                "http_protocol_options".into(),
                fit(h1, &schema_def("Http1OptionsSpec"), &at, tr),
            );
        }
        e.done(tr);
    }
    copy_fit(
        &mut o,
        out,
        "common_http_protocol_options",
        "CommonHttpOptionsSpec",
        tr,
    );
    o.done(tr);
}

/// `UpstreamTlsContext` -> ringway's cluster `tls:`.
fn upstream_tls(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    let mut out = Map::new();
    o.ignore(&["@type"]);
    copy(&mut o, &mut out, "sni", "sni");
    if let Some(c) = o.get("common_tls_context") {
        let at = o.at("common_tls_context");
        let mut c = Obj::new(c, &at, tr);
        copy(&mut c, &mut out, "alpn_protocols", "alpn");
        copy_fit(&mut c, &mut out, "tls_params", "TlsParamsSpec", tr);
        if let Some(Value::Array(certs)) = c.get("tls_certificates") {
            let at = c.at("tls_certificates");
            if let Some(first) = certs.first() {
                out.insert(
                    "client_cert".into(),
                    fit(first, &schema_def("TlsCertificateSpec"), &at.index(0), tr),
                );
            }
            for i in 1..certs.len() {
                tr.unsupported(&at.index(i));
            }
        }
        if let Some(vc) = c.get("validation_context") {
            let at = c.at("validation_context");
            let mut vc = Obj::new(vc, &at, tr);
            let mut verify = Map::new();
            copy_fit(&mut vc, &mut verify, "trusted_ca", "DataSourceSpec", tr);
            if let Some(ca) = verify.remove("trusted_ca") {
                verify.insert("ca".into(), ca);
            }
            if let Some(Value::Array(sans)) = vc.get("match_typed_subject_alt_names") {
                let at = vc.at("match_typed_subject_alt_names");
                let mut names = Vec::new();
                // An upstream's names are DNS names matched exactly (`verify.subject_alt_names`).
                for (i, san) in sans.iter().enumerate() {
                    let dns = san.get("san_type").and_then(Value::as_str) == Some("DNS");
                    let matcher = san.get("matcher").and_then(Value::as_object);
                    let exact = matcher
                        .filter(|m| m.len() == 1)
                        .and_then(|m| m.get("exact"));
                    match exact {
                        Some(n) if dns => names.push(n.clone()),
                        _ => tr.unsupported(&at.index(i)),
                    }
                }
                verify.insert("subject_alt_names".into(), Value::Array(names));
            }
            vc.done(tr);
            out.insert("verify".into(), Value::Object(verify));
        }
        c.done(tr);
    }
    o.done(tr);
    Value::Object(out)
}

/// An Envoy `ClusterLoadAssignment` -> ringway endpoints (`IP:port`, or `{address, weight,
/// priority}` where Envoy gives a weight or a priority).
pub(crate) fn load_assignment(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    o.ignore(&["@type", "cluster_name"]);
    let mut eps = Vec::new();
    if let Some(Value::Array(groups)) = o.get("endpoints") {
        let at = o.at("endpoints");
        for (i, g) in groups.iter().enumerate() {
            let at = at.index(i);
            let mut g = Obj::new(g, &at, tr);
            let priority = g.get("priority").cloned().map(|p| number(&p));
            // Zone-aware routing is not there: a locality only names where endpoints are.
            g.ignore(&["locality", "load_balancing_weight"]);
            if let Some(Value::Array(lbs)) = g.get("lb_endpoints") {
                let at = g.at("lb_endpoints");
                for (j, lb) in lbs.iter().enumerate() {
                    let at = at.index(j);
                    let mut l = Obj::new(lb, &at, tr);
                    let weight = l.get("load_balancing_weight").map(number);
                    let mut addr = None;
                    if let Some(ep) = l.get("endpoint") {
                        let at = l.at("endpoint");
                        let mut e = Obj::new(ep, &at, tr);
                        if let Some(a) = e.get("address") {
                            addr = address(a, &e.at("address"), tr);
                        }
                        e.ignore(&["hostname", "health_check_config"]);
                        e.done(tr);
                    }
                    if let Some(h) = l.get("health_status") {
                        if h != "UNKNOWN" && h != "HEALTHY" {
                            tr.unsupported(&l.at("health_status"));
                        }
                    }
                    l.ignore(&["metadata"]);
                    l.done(tr);
                    let Some(addr) = addr else { continue };
                    let p = priority.clone().filter(|p| p != &json!(0));
                    if weight.is_none() && p.is_none() {
                        eps.push(json!(addr));
                    } else {
                        let mut m = Map::new();
                        m.insert("address".into(), json!(addr));
                        if let Some(w) = &weight {
                            m.insert("weight".into(), w.clone());
                        }
                        if let Some(p) = p {
                            m.insert("priority".into(), p);
                        }
                        eps.push(Value::Object(m));
                    }
                }
            }
            g.done(tr);
        }
    }
    // Envoy's overprovisioning factor and drop overloads are policy ringway does not have.
    if let Some(p) = o.get("policy") {
        let at = o.at("policy");
        let mut p = Obj::new(p, &at, tr);
        p.ignore(&["overprovisioning_factor"]);
        p.done(tr);
    }
    o.done(tr);
    Value::Array(eps)
}

/// An Envoy `Secret` holding a `tls_certificate` -> that certificate as a `tls_certificates`
/// entry (`inline_bytes`, base64, become `inline_string`).
pub(crate) fn secret(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    let mut o = Obj::new(v, at, tr);
    o.ignore(&["@type", "name"]);
    let out = match o.get("tls_certificate") {
        Some(c) => {
            let at = o.at("tls_certificate");
            let c = bytes_as_strings(c, &at, tr);
            fit(&c, &schema_def("TlsCertificateSpec"), &at, tr)
        }
        None => {
            tr.bad(at, "only secrets holding a tls_certificate are supported");
            Value::Null
        }
    };
    o.done(tr);
    out
}

/// Envoy's `DataSource.inline_bytes` (base64 in JSON) as `inline_string` (PEM is text).
fn bytes_as_strings(v: &Value, at: &DocPath, tr: &mut Tr) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    if k == "inline_bytes" {
                        let text = x
                            .as_str()
                            .and_then(|b| ringway_filters::base64::decode(b.as_bytes()))
                            .and_then(|b| String::from_utf8(b).ok());
                        match text {
                            Some(t) => return ("inline_string".to_owned(), json!(t)),
                            None => tr.bad(&at.key(k), "inline_bytes: not base64 of UTF-8 text"),
                        }
                    }
                    (k.clone(), bytes_as_strings(x, &at.key(k), tr))
                })
                .collect(),
        ),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_come_from_the_name_or_the_type() {
        assert_eq!(
            short_name(
                "envoy.filters.network.tcp_proxy",
                "",
                "envoy.filters.network."
            ),
            "tcp_proxy"
        );
        assert_eq!(
            short_name(
                "my-hcm",
                "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "envoy.filters.network."
            ),
            "http_connection_manager"
        );
    }
}
