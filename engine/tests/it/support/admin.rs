//! The admin server, as a test reads it: one request on a fresh connection ([`admin`]), the
//! `/stats` text as a map of counters and gauges ([`admin_stats`]), and the
//! `/stats?format=json` document with lookups of one stat or histogram by name.

use std::{collections::HashMap, net::SocketAddr};

use super::clients::{request, RawMessage};

/// `METHOD path` to the admin server on a fresh connection.
pub fn admin(addr: SocketAddr, method: &str, path: &str) -> RawMessage {
    request(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
}

/// The `name: value` lines of the admin `/stats` text output, counters and gauges only.
pub fn admin_stats(addr: SocketAddr) -> HashMap<String, u64> {
    let r = admin(addr, "GET", "/stats");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    r.body_str()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The admin `/stats?format=json` document.
pub fn admin_json(addr: SocketAddr) -> serde_json::Value {
    admin_json_at(addr, "/stats?format=json")
}

/// The JSON document `GET path` answers on the admin server (`/config_dump`, ...).
pub fn admin_json_at(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = admin(addr, "GET", path);
    assert_eq!(r.status(), 200, "{}", r.body_str());
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {}", r.body_str()))
}

/// A counter or gauge of an [`admin_json`] document, by name.
pub fn json_stat(doc: &serde_json::Value, name: &str) -> Option<u64> {
    doc["stats"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["value"]
        .as_u64()
}

/// A histogram of an [`admin_json`] document, by name (`count`, `quantiles`, ... in µs).
pub fn json_hist<'a>(doc: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    doc["histograms"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
}
