//! The config in force when a control plane is configured (`xds:`): the file's own document with
//! the resources the control plane sent composed in, as one ringway document that is then
//! decoded and validated like any file.
//!
//! ```text
//! file document ─┐
//!                ├─▶ compose ─▶ document ─▶ decode ─▶ validate ─▶ Config
//! Dynamic ───────┘   (listeners and clusters added; `rds` and `eds` filled in; warming)
//! ```
//!
//! [`Dynamic`] holds the resources already translated from Envoy's form ([`super::envoy`]),
//! by name. Envoy's warming rules: a cluster whose endpoints come from EDS is left out until its
//! load assignment has arrived (with at least one endpoint); a listener whose routes come from
//! RDS, or whose `tcp_proxy` names a cluster not there, is left out until they are. A route to a
//! cluster that is not there answers 503 (Envoy's "cluster not found"), so that a route
//! configuration and the clusters it names may arrive in any order. The file's own listeners and
//! clusters always come first; a dynamic one with a static one's name is left out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// The control plane's resources, translated, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dynamic {
    /// Listeners (LDS); an HTTP connection manager may hold `rds: NAME`.
    pub listeners: BTreeMap<String, Value>,
    /// Route configurations (RDS): `{name, virtual_hosts}`.
    pub routes: BTreeMap<String, Value>,
    /// Clusters (CDS); one taking its endpoints from EDS holds `eds: SERVICE_NAME`.
    pub clusters: BTreeMap<String, Value>,
    /// Load assignments (EDS): the endpoints list, by service name.
    pub endpoints: BTreeMap<String, Value>,
    /// Secrets (SDS): a `tls_certificates` entry (`{certificate_chain, private_key}`), by name.
    pub secrets: BTreeMap<String, Value>,
}

/// What a composition left out, waiting for resources (for the log and the xDS client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warming {
    /// Clusters waiting for their endpoints.
    pub clusters: Vec<String>,
    /// Listeners waiting for routes or clusters.
    pub listeners: Vec<String>,
}

/// What a composition took from the control plane (Envoy's `added_via_api`), by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Added {
    pub clusters: BTreeSet<String>,
    pub listeners: BTreeSet<String>,
}

impl Dynamic {
    /// The EDS service names the clusters need.
    pub fn eds_names(&self) -> BTreeSet<String> {
        self.clusters
            .values()
            .filter_map(|c| c.get("eds").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// The secret names the listeners need: the file's own (`file`) and the control plane's.
    pub fn sds_names(&self, file: &Value) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let own = file
            .get("listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for l in own.chain(self.listeners.values()) {
            for_each_tls(l, &mut |tls| {
                for holder in [Some(tls), tls.get("common_tls_context")]
                    .into_iter()
                    .flatten()
                {
                    let list = holder
                        .get("tls_certificate_sds_secret_configs")
                        .and_then(Value::as_array);
                    for s in list.into_iter().flatten() {
                        if let Some(n) = s.get("name").and_then(Value::as_str) {
                            names.insert(n.to_owned());
                        }
                    }
                }
            });
        }
        names
    }

    /// The route configuration names the listeners need.
    pub fn rds_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for l in self.listeners.values() {
            for_each_hcm(l, &mut |h| {
                if let Some(n) = h.get("rds").and_then(Value::as_str) {
                    names.insert(n.to_owned());
                }
            });
        }
        names
    }
}

/// A listener's filter chains, the default chain last.
fn chains(listener: &Value) -> impl Iterator<Item = &Value> {
    listener
        .get("filter_chains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"))
}

/// The same, to change them.
fn chains_mut(listener: &mut Value) -> Vec<&mut Value> {
    let Some(m) = listener.as_object_mut() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, v) in m.iter_mut() {
        match (key.as_str(), v) {
            ("filter_chains", Value::Array(list)) => out.extend(list.iter_mut()),
            ("default_filter_chain", chain) => out.push(chain),
            _ => {}
        }
    }
    out
}

/// Calls `f` on every `http_connection_manager` of a listener (all chains, default chain).
fn for_each_hcm(listener: &Value, f: &mut dyn FnMut(&Value)) {
    for chain in chains(listener) {
        for filter in chain
            .get("filters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(h) = filter.get("http_connection_manager") {
                f(h);
            }
        }
    }
}

/// Calls `f` on the `tls` of every filter chain of a listener.
fn for_each_tls(listener: &Value, f: &mut dyn FnMut(&Value)) {
    for chain in chains(listener) {
        if let Some(tls) = chain.get("tls") {
            f(tls);
        }
    }
}

/// Puts the secrets a listener's chains name in as `tls_certificates`; false (the listener
/// waits) when one has not arrived.
fn fill_secrets(listener: &mut Value, secrets: &BTreeMap<String, Value>) -> bool {
    fill_secrets_where(listener, secrets, |_| true).is_empty()
}

/// An Envoy bootstrap's static secrets (`static_resources.secrets`) put in for the references
/// without an `sds_config` (those with one are the control plane's); the names not found.
pub(crate) fn fill_static_secrets(
    listener: &mut Value,
    secrets: &BTreeMap<String, Value>,
) -> Vec<String> {
    fill_secrets_where(listener, secrets, |w| w.get("sds_config").is_none())
}

/// The references `take` picks are replaced by their secrets; the others stay. Returns the
/// names taken but not in `secrets`.
fn fill_secrets_where(
    listener: &mut Value,
    secrets: &BTreeMap<String, Value>,
    take: impl Fn(&Value) -> bool,
) -> Vec<String> {
    let mut missing = Vec::new();
    for chain in chains_mut(listener) {
        let Some(tls) = chain.get_mut("tls").and_then(Value::as_object_mut) else {
            continue;
        };
        // The secrets sit beside the certificates: in `common_tls_context` or on `tls`.
        let holder = match tls.contains_key("common_tls_context") {
            true => tls
                .get_mut("common_tls_context")
                .and_then(Value::as_object_mut),
            false => Some(tls),
        };
        let Some(holder) = holder else { continue };
        let Some(Value::Array(refs)) = holder.remove("tls_certificate_sds_secret_configs") else {
            continue;
        };
        let (wanted, left): (Vec<Value>, Vec<Value>) = refs.into_iter().partition(&take);
        if !left.is_empty() {
            holder.insert(
                "tls_certificate_sds_secret_configs".into(),
                Value::Array(left),
            );
        }
        let mut certs = Vec::new();
        for w in &wanted {
            let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
            match secrets.get(name) {
                Some(c) => certs.push(c.clone()),
                None => missing.push(name.to_owned()),
            }
        }
        if wanted.is_empty() {
            continue;
        }
        let list = holder
            .entry("tls_certificates")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(l) = list {
            l.extend(certs);
        }
    }
    missing
}

/// Whether the document asks for a control plane, and whether it takes clusters from it.
fn xds_section(doc: &Value) -> Option<bool> {
    let x = doc.get("xds")?;
    Some(x.get("cds").and_then(Value::as_bool).unwrap_or(true))
}

/// The file's document with `dynamic` composed in (see the module doc). Documents without an
/// `xds:` section come back unchanged.
pub fn compose(file: &Value, dynamic: &Dynamic) -> (Value, Warming, Added) {
    let mut warming = Warming::default();
    let mut added = Added::default();
    let Some(cds) = xds_section(file) else {
        return (file.clone(), warming, added);
    };
    let mut doc = file.clone();
    let Some(root) = doc.as_object_mut() else {
        return (doc, warming, added);
    };
    let names = |v: Option<&Value>| -> BTreeSet<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    let static_clusters = names(root.get("clusters"));
    let static_listeners = names(root.get("listeners"));

    let mut clusters: Vec<Value> = root
        .get("clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut known = static_clusters.clone();
    for (name, c) in &dynamic.clusters {
        if static_clusters.contains(name) {
            continue;
        }
        let mut c = c.clone();
        if let Some(Value::String(service)) = c.as_object_mut().and_then(|m| m.remove("eds")) {
            match dynamic.endpoints.get(&service) {
                Some(Value::Array(eps)) if !eps.is_empty() => {
                    if let Some(m) = c.as_object_mut() {
                        m.insert("endpoints".into(), Value::Array(eps.clone()));
                    }
                }
                _ => {
                    warming.clusters.push(name.clone());
                    continue;
                }
            }
        }
        known.insert(name.clone());
        added.clusters.insert(name.clone());
        clusters.push(c);
    }

    let mut listeners = Vec::new();
    let own = root.get("listeners").and_then(Value::as_array).cloned();
    for mut l in own.unwrap_or_default() {
        // The file's own listeners wait for their secrets too.
        if fill_secrets(&mut l, &dynamic.secrets) {
            listeners.push(l);
        } else {
            let name = l.get("name").and_then(Value::as_str).unwrap_or_default();
            warming.listeners.push(name.to_owned());
        }
    }
    for (name, l) in &dynamic.listeners {
        if static_listeners.contains(name) {
            continue;
        }
        let mut l = l.clone();
        if fill_listener(&mut l, dynamic, &known) && fill_secrets(&mut l, &dynamic.secrets) {
            added.listeners.insert(name.clone());
            listeners.push(l);
        } else {
            warming.listeners.push(name.clone());
        }
    }
    if cds {
        // Routes to clusters the control plane has not sent (yet) answer 503.
        for l in &mut listeners {
            each_route(l, &mut |r| missing_clusters_503(r, &known));
        }
    }
    root.insert("clusters".into(), Value::Array(clusters));
    root.insert("listeners".into(), Value::Array(listeners));
    (doc, warming, added)
}

/// Fills a dynamic listener's `rds` in; false when it must wait (routes or a `tcp_proxy`
/// cluster not there).
fn fill_listener(l: &mut Value, dynamic: &Dynamic, known: &BTreeSet<String>) -> bool {
    if !l.is_object() {
        return false;
    }
    let mut ready = true;
    for chain in chains_mut(l) {
        let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
            continue;
        };
        for f in filters {
            if let Some(h) = f
                .get_mut("http_connection_manager")
                .and_then(Value::as_object_mut)
            {
                if let Some(Value::String(name)) = h.remove("rds") {
                    match dynamic
                        .routes
                        .get(&name)
                        .and_then(|r| r.get("virtual_hosts"))
                    {
                        Some(vh) => {
                            h.insert("virtual_hosts".into(), vh.clone());
                        }
                        None => ready = false,
                    }
                }
            }
            if let Some(c) = f.pointer("/tcp_proxy/cluster").and_then(Value::as_str) {
                if !known.contains(c) {
                    ready = false;
                }
            }
        }
    }
    ready
}

/// Calls `f` on every route of every connection manager of a listener.
fn each_route(l: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    for chain in chains_mut(l) {
        let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
            continue;
        };
        for filter in filters {
            let Some(hosts) = filter
                .pointer_mut("/http_connection_manager/virtual_hosts")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for host in hosts {
                let Some(routes) = host.get_mut("routes").and_then(Value::as_array_mut) else {
                    continue;
                };
                for r in routes {
                    if let Some(r) = r.as_object_mut() {
                        f(r);
                    }
                }
            }
        }
    }
}

/// A route forwarding to a cluster not in `known` answers 503 instead; mirrors to such
/// clusters are dropped.
fn missing_clusters_503(r: &mut Map<String, Value>, known: &BTreeSet<String>) {
    let Some(action) = r.get_mut("route").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::Array(mirrors)) = action.get_mut("request_mirror_policies") {
        mirrors.retain(|m| {
            m.get("cluster")
                .and_then(Value::as_str)
                .is_none_or(|c| known.contains(c))
        });
    }
    let mut missing = action
        .get("cluster")
        .and_then(Value::as_str)
        .is_some_and(|c| !known.contains(c));
    if let Some(list) = action
        .get("weighted_clusters")
        .and_then(|w| w.get("clusters"))
        .and_then(Value::as_array)
    {
        missing |= list.iter().any(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !known.contains(n))
        });
    }
    if missing {
        r.remove("route");
        r.insert("direct_response".into(), json!({ "status": 503 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Value {
        json!({
            "xds": {"cluster": "xds"},
            "clusters": [{"name": "xds", "endpoints": ["127.0.0.1:1"]}],
        })
    }

    #[test]
    fn clusters_and_listeners_wait_for_their_endpoints_and_routes() {
        let mut d = Dynamic::default();
        d.clusters
            .insert("a".into(), json!({"name": "a", "eds": "a"}));
        d.listeners.insert(
            "l".into(),
            json!({"name": "l", "address": "127.0.0.1:0", "filter_chains": [{"filters": [
                {"http_connection_manager": {"rds": "r"}}]}]}),
        );
        let (doc, warming, added) = compose(&file(), &d);
        assert_eq!(warming.clusters, ["a"]);
        assert_eq!(added, Added::default());
        assert_eq!(warming.listeners, ["l"]);
        assert_eq!(doc["clusters"].as_array().map(Vec::len), Some(1));
        assert_eq!(d.eds_names().into_iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(d.rds_names().into_iter().collect::<Vec<_>>(), ["r"]);

        d.endpoints.insert("a".into(), json!(["127.0.0.1:2"]));
        d.routes.insert(
            "r".into(),
            json!({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
                {"match": {"prefix": "/a"}, "route": {"cluster": "a"}},
                {"match": {"prefix": "/"}, "route": {"cluster": "gone"}}]}]}),
        );
        let (doc, warming, added) = compose(&file(), &d);
        assert_eq!(warming, Warming::default());
        assert_eq!(added.clusters.into_iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(added.listeners.into_iter().collect::<Vec<_>>(), ["l"]);
        assert_eq!(doc["clusters"][1]["endpoints"], json!(["127.0.0.1:2"]));
        let routes = &doc["listeners"][0]["filter_chains"][0]["filters"][0]
            ["http_connection_manager"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["route"]["cluster"], "a");
        assert_eq!(routes[1]["direct_response"]["status"], 503);
    }
}
