//! Validation of HTTP filters: a connection manager's `http_filters` list and the
//! `per_filter_config` overrides of virtual hosts and routes. Each filter's own keys are checked
//! by its parser in the filters crate (`ringway_filters::registry`); its problems come back with
//! paths inside the filter's map, which are reported under the filter's place in the file.

use std::collections::BTreeMap;

use ringway_filters::{
    http::header_mutation::{HeaderValueOptionSpec, Mutations},
    registry::{self, ConfigProblem, PathSeg},
};
use serde_json::Value;

use super::Problems;
use crate::config::{
    model::{HeaderEdits, HttpFilter, PerFilter, PerFilterAction},
    path::{DocPath, Seg},
};

/// Envoy lists its router explicitly as the last filter; ringway's is implicit.
fn is_router(name: &str) -> bool {
    name == "router" || name == "envoy.filters.http.router"
}

/// A filter crate's problems, placed under `at`.
pub(super) fn report(problems: &mut Problems, at: &DocPath, found: Vec<ConfigProblem>) {
    for p in found {
        let mut path = at.clone();
        for s in p.path {
            path.push(match s {
                PathSeg::Key(k) => Seg::Key(k),
                PathSeg::Index(i) => Seg::Index(i),
            });
        }
        problems.value(&path, p.message);
    }
}

/// `http_filters`: every element validated; the router, if listed, must be last.
pub(super) fn http_filters(
    list: &[Value],
    path: &DocPath,
    problems: &mut Problems,
) -> Vec<HttpFilter> {
    let mut out: Vec<HttpFilter> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = path.index(i);
        let Some(map) = item.as_object() else {
            problems.value(
                &at,
                "an HTTP filter is a map with a `name` and the filter's keys",
            );
            continue;
        };
        let Some(name) = map.get("name").and_then(Value::as_str) else {
            problems.value(&at, "an HTTP filter needs a `name` (a string)");
            continue;
        };
        if is_router(name) {
            if i + 1 != list.len() {
                problems.value(
                    &at.key("name"),
                    "the router is always the last filter (it is implicit: it may be left out)",
                );
            }
            continue;
        }
        let disabled = match map.get("disabled") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                problems.value(&at.key("disabled"), "`disabled` must be true or false");
                false
            }
        };
        let Some(kind) = registry::find(name) else {
            problems.value(
                &at.key("name"),
                format!(
                    "unknown HTTP filter {name:?}{} (known: {})",
                    crate::config::suggest::hint(name, registry::names().iter().copied()),
                    registry::names().join(", ")
                ),
            );
            continue;
        };
        if out.iter().any(|f| f.name == kind.name) {
            problems.value(
                &at.key("name"),
                format!("filter {:?} is listed twice (per-route overrides name filters, so names must be unique)", kind.name),
            );
            continue;
        }
        let mut rest = map.clone();
        rest.remove("name");
        rest.remove("disabled");
        match (kind.parse)(&Value::Object(rest)) {
            Ok(config) => out.push(HttpFilter {
                name: kind.name,
                config,
                disabled,
            }),
            Err(found) => report(problems, &at, found),
        }
    }
    out
}

/// `per_filter_config` of a virtual host or route: each key names a filter of `filters`.
pub(super) fn per_filter(
    map: &BTreeMap<String, Value>,
    filters: &[HttpFilter],
    path: &DocPath,
    problems: &mut Problems,
) -> Vec<PerFilter> {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let at = path.key(name);
        let Some(kind) = registry::find(name) else {
            problems.key(
                &at,
                format!(
                    "unknown HTTP filter {name:?}{}",
                    crate::config::suggest::hint(name, registry::names().iter().copied())
                ),
            );
            continue;
        };
        let Some(index) = filters.iter().position(|f| f.name == kind.name) else {
            problems.key(
                &at,
                format!(
                    "filter {:?} is not in this connection manager's http_filters",
                    kind.name
                ),
            );
            continue;
        };
        let Some(obj) = value.as_object() else {
            problems.value(
                &at,
                "expected `{disabled: true}` or the filter's config map",
            );
            continue;
        };
        match obj.get("disabled") {
            Some(Value::Bool(true)) if obj.len() == 1 => {
                out.push(PerFilter {
                    filter: index,
                    action: PerFilterAction::Disabled,
                });
                continue;
            }
            Some(Value::Bool(true)) => {
                problems.value(&at.key("disabled"), "`disabled: true` takes no other keys");
                continue;
            }
            Some(Value::Bool(false)) | None => {}
            Some(_) => {
                problems.value(&at.key("disabled"), "`disabled` must be true or false");
                continue;
            }
        }
        let mut rest = obj.clone();
        rest.remove("disabled");
        match (kind.parse)(&Value::Object(rest)) {
            Ok(config) => out.push(PerFilter {
                filter: index,
                action: PerFilterAction::Config(config),
            }),
            Err(found) => report(problems, &at, found),
        }
    }
    out
}

/// The four header-edit keys of a route or virtual host (`spec`: to_add, to_remove for the
/// request, then for the response).
pub(super) fn header_edits(
    request: (&[HeaderValueOptionSpec], &[String]),
    response: (&[HeaderValueOptionSpec], &[String]),
    path: &DocPath,
    problems: &mut Problems,
) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    match Mutations::from_specs(
        request.0,
        request.1,
        "request_headers_to_add",
        "request_headers_to_remove",
    ) {
        Ok(m) => edits.request = m,
        Err(found) => report(problems, path, found),
    }
    match Mutations::from_specs(
        response.0,
        response.1,
        "response_headers_to_add",
        "response_headers_to_remove",
    ) {
        Ok(m) => edits.response = m,
        Err(found) => report(problems, path, found),
    }
    edits
}
