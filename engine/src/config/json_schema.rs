//! The config file's JSON Schema, for editors (completion, hover docs, red squiggles) and for
//! checks outside ringway. It is generated, never written by hand: `schemars` derives it from
//! the serde structs in [`schema`](super::schema), the very types the loader deserializes, with
//! their `///` docs as descriptions and serde's own attributes (renames, `default`,
//! `deny_unknown_fields`) as the rules. The types whose `Deserialize` is hand-written get
//! hand-written schemas here, next to one another, each saying what that `Deserialize` takes.
//!
//! `ringway schema` prints it; the copy checked in at [`FILE`] is kept equal to it by a test.
//! The schema describes the file's shape (step one of loading); meaning (references between
//! sections, ranges, duplicates) is still `ringway validate`'s. It is written for JSON Schema
//! draft 7, the draft editors' YAML and JSON language servers support best.

use std::borrow::Cow;

use ringway_filters::registry;
use schemars::{generate::SchemaSettings, json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::{
    decode::Item,
    duration::Dur,
    schema::{
        ConfigSpec, CpuAffinitySpec, EndpointMap, EndpointSpec, FilterSpec, HcmSpec, LbPolicySpec,
        ListenerFilterSpec, NoSettings, ProxyProtocolSpec, ProxyProtocolVersionSpec, TcpProxySpec,
        WorkersSpec,
    },
};

/// Where the generated schema is checked in, relative to the repository's root.
pub const FILE: &str = "config/ringway.schema.json";

/// The command that writes [`FILE`] again, run from the repository's root.
pub const REGENERATE: &str =
    "cargo run -p ringway-engine --bin ringway -- schema > config/ringway.schema.json";

/// The schema as pretty-printed JSON with a final newline: what `ringway schema` prints and
/// what [`FILE`] holds.
pub fn generate() -> String {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<ConfigSpec>();
    schema.insert("title".into(), json!("ringway configuration"));
    schema.insert(
        "description".into(),
        json!(
            "A ringway config file (YAML or JSON). Generated from the loader's own types by \
             `ringway schema`; `ringway validate -c FILE` checks the rest (references, ranges)."
        ),
    );
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    let mut text = serde_json::to_string_pretty(&value)
        .unwrap_or_else(|e| unreachable!("a serde_json::Value always serializes: {e}"));
    text.push('\n');
    text
}

/// Doc comments are wrapped at 100 columns; editors show descriptions as Markdown, where a
/// lone newline is a space anyway: join the lines, keep blank lines (paragraphs).
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(d)) = map.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|p| p.replace('\n', " "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(unwrap_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// A container transform: `alias` is accepted for `key` (`#[serde(alias)]`, which schemars does
/// not read), so the object's properties list it too, with the same schema.
pub(super) fn aliases(pairs: &'static [(&'static str, &'static str)]) -> impl FnMut(&mut Schema) {
    move |schema| {
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            return;
        };
        for (key, alias) in pairs {
            let Some(mut prop) = props.get(*key).cloned() else {
                continue;
            };
            if let Some(obj) = prop.as_object_mut() {
                obj.insert(
                    "description".into(),
                    json!(format!("Another name for `{key}` (Envoy's); not both.")),
                );
            }
            props.insert((*alias).to_owned(), prop);
        }
    }
}

/// Every registered HTTP filter's names (ringway's and Envoy's): the keys `per_filter_config`
/// takes.
fn http_filter_names() -> Vec<&'static str> {
    registry::BUILTIN
        .iter()
        .flat_map(|kind| [kind.name, kind.envoy_name])
        .collect()
}

/// `http_filters`: each a map with the filter's `name`, optionally `disabled`, and the
/// filter's own keys (checked by the filter's parser at load, not described here).
pub(super) fn http_filters(_: &mut SchemaGenerator) -> Schema {
    let mut names = http_filter_names();
    names.extend(["router", "envoy.filters.http.router"]);
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {
                    "description": "The filter: ringway's name or Envoy's (`envoy.filters.http.NAME`); the router is implicit, and may be listed last.",
                    "enum": names,
                },
                "disabled": {
                    "description": "Off unless a route or virtual host enables it in `per_filter_config` (default false).",
                    "type": "boolean",
                },
            },
            "additionalProperties": true,
        },
    })
}

/// `per_filter_config`: filter name to a map (`{disabled: true}` or the filter's whole config).
pub(super) fn per_filter_config(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": { "enum": http_filter_names() },
        "additionalProperties": { "type": "object" },
    })
}

/// [`Item`] reads its element as `T` (keeping going after errors): the same schema as `T`.
impl<T: JsonSchema> JsonSchema for Item<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

/// [`Dur`]: a string, a number with a unit (`parse_duration`); bare numbers are refused.
impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number (a fraction allowed) and a unit, `ms`, `s`, `m` or `h`; `0s` is zero. A bare number is refused: write the unit.",
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$",
            "examples": ["250ms", "5s", "1.5s", "1m", "1h"],
        })
    }
}

impl JsonSchema for WorkersSpec {
    fn schema_name() -> Cow<'static, str> {
        "Workers".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`auto` (one worker per CPU it may run on) or a worker count.",
            "anyOf": [
                { "const": "auto" },
                { "type": "integer", "minimum": 1, "maximum": 1024 },
            ],
        })
    }
}

impl JsonSchema for CpuAffinitySpec {
    fn schema_name() -> Cow<'static, str> {
        "CpuAffinity".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`auto` (each worker pinned to its own CPU), `none` (not pinned) or a list of CPU ids (workers pinned round-robin over it).",
            "anyOf": [
                { "enum": ["auto", "none"] },
                {
                    "type": "array",
                    "items": { "type": "integer", "minimum": 0 },
                    "minItems": 1,
                },
            ],
        })
    }
}

/// A listener filter: its bare name, a one-key map `{NAME: config}`, or `{name: NAME}`; NAME
/// with or without Envoy's `envoy.filters.listener.` prefix.
impl JsonSchema for ListenerFilterSpec {
    fn schema_name() -> Cow<'static, str> {
        "ListenerFilter".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let names: Vec<String> = ["tls_inspector", "proxy_protocol"]
            .iter()
            .flat_map(|n| [n.to_string(), format!("envoy.filters.listener.{n}")])
            .collect();
        let no_settings = generator.subschema_for::<Option<NoSettings>>();
        let proxy_protocol = generator.subschema_for::<Option<ProxyProtocolSpec>>();
        let mut properties = serde_json::Map::new();
        properties.insert("name".into(), json!({ "enum": names }));
        for prefix in ["", "envoy.filters.listener."] {
            properties.insert(
                format!("{prefix}tls_inspector"),
                no_settings.as_value().clone(),
            );
            properties.insert(
                format!("{prefix}proxy_protocol"),
                proxy_protocol.as_value().clone(),
            );
        }
        json_schema!({
            "description": "`tls_inspector` or `proxy_protocol`: the bare name, a map with one key (the name) holding the filter's settings, or `{name: NAME}`; Envoy's `envoy.filters.listener.NAME` too.",
            "anyOf": [
                { "enum": names },
                {
                    "type": "object",
                    "properties": properties,
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": false,
                },
            ],
        })
    }
}

/// A network filter: a map with exactly one key, the filter's name.
impl JsonSchema for FilterSpec {
    fn schema_name() -> Cow<'static, str> {
        "NetworkFilter".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A map with exactly one key, the filter's name, holding its config.",
            "type": "object",
            "properties": {
                "http_connection_manager": generator.subschema_for::<HcmSpec>(),
                "tcp_proxy": generator.subschema_for::<TcpProxySpec>(),
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": false,
        })
    }
}

impl JsonSchema for ProxyProtocolVersionSpec {
    fn schema_name() -> Cow<'static, str> {
        "ProxyProtocolVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`v1` (the text line) or `v2` (binary); Envoy's `V1`, `V2` too.",
            "enum": ["v1", "v2", "V1", "V2"],
        })
    }
}

/// The loader compares lower-cased, so any case is taken; the schema lists ringway's spelling
/// and Envoy's (upper case).
impl JsonSchema for LbPolicySpec {
    fn schema_name() -> Cow<'static, str> {
        "LbPolicy".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names = [
            "round_robin",
            "least_request",
            "random",
            "ring_hash",
            "maglev",
        ];
        let all: Vec<String> = names
            .iter()
            .flat_map(|n| [n.to_string(), n.to_ascii_uppercase()])
            .collect();
        json_schema!({
            "description": "How an endpoint is picked: `round_robin`, `least_request`, `random`, `ring_hash` or `maglev` (Envoy's upper-case names too).",
            "enum": all,
        })
    }
}

impl JsonSchema for EndpointSpec {
    fn schema_name() -> Cow<'static, str> {
        "Endpoint".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An endpoint: `\"IP:port\"` (`host:port` in a `strict_dns` or `logical_dns` cluster), or `{address, weight, priority}`.",
            "anyOf": [
                { "type": "string" },
                generator.subschema_for::<EndpointMap>(),
            ],
        })
    }
}
