//! Stats through the admin server: counters, gauges and histograms match the traffic sent through
//! the real proxy; per-worker views add up to the totals; the Prometheus output is valid.

use crate::support;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use support::*;

/// Stats once the last exchange has been recorded: a client has its response before the worker
/// records the exchange (`stream_done` runs after the last write), so wait until every request
/// has a status class.
fn settled_stats(adm: std::net::SocketAddr, prefix: &str, total: u64) -> HashMap<String, u64> {
    let mut s = HashMap::new();
    eventually("every exchange recorded", || {
        s = admin_stats(adm);
        (1..=5)
            .map(|k| s[&format!("http.{prefix}.downstream_rq_{k}xx")])
            .sum::<u64>()
            == total
    });
    s
}

fn hist_count(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}: count=")))
        .and_then(|l| l.split("count=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn counters_match_requests_on_one_connection() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..25 {
        let r = c.get("example.com", "/");
        assert_eq!(r.status(), 200);
    }
    let s = settled_stats(adm, "main", 25);
    let listener = format!("listener.{}.", proxy.addr.to_string().replace(':', "_"));
    assert_eq!(s["http.main.downstream_rq_total"], 25, "{s:?}");
    assert_eq!(s["http.main.downstream_rq_2xx"], 25);
    assert_eq!(s["http.main.downstream_rq_5xx"], 0);
    assert_eq!(s["cluster.origin.upstream_rq_total"], 25);
    assert_eq!(s["cluster.origin.upstream_rq_2xx"], 25);
    assert!(s["cluster.origin.upstream_cx_pool_reuse"] >= 24, "{s:?}");
    assert!(s["cluster.origin.upstream_cx_total"] >= 1);
    assert_eq!(s["cluster.origin.upstream_cx_connect_fail"], 0);
    assert_eq!(s[&format!("{listener}downstream_cx_total")], 1);
    assert_eq!(s[&format!("{listener}downstream_cx_active")], 1);
    assert_eq!(s["worker.0.downstream_rq_total"], 25);
    assert_eq!(s["worker.0.downstream_cx_active"], 1);
    assert_eq!(s["cluster.origin.upstream_rq_active"], 0);
    // The pooled connection to the origin is idle and counted active.
    assert_eq!(s["cluster.origin.upstream_cx_active"], 1);

    // Histograms: one value per request.
    let text = admin(adm, "GET", "/stats").body_str();
    for h in [
        "http.main.downstream_rq_time",
        "cluster.origin.upstream_rq_time",
        "cluster.origin.upstream_rq_connect_time",
        "cluster.origin.upstream_rq_send_time",
        "cluster.origin.upstream_rq_first_byte_time",
        "cluster.origin.upstream_rq_response_time",
    ] {
        assert_eq!(hist_count(&text, h), Some(25), "{h} in {text}");
    }
    // Requests are cheap on loopback: the median is under a second.
    let json: serde_json::Value =
        serde_json::from_slice(&admin(adm, "GET", "/stats?format=json").body).expect("json");
    let h = json["histograms"]
        .as_array()
        .expect("histograms")
        .iter()
        .find(|h| h["name"] == "http.main.downstream_rq_time")
        .expect("downstream_rq_time");
    assert_eq!(h["count"], 25);
    assert!(
        h["quantiles"]["p50"].as_u64().expect("p50") < 1_000_000,
        "{h}"
    );

    // Closing the client brings the gauges back to zero.
    drop(c);
    eventually("downstream_cx_active back to 0", || {
        admin_stats(adm)["worker.0.downstream_cx_active"] == 0
    });
    proxy.stop();
}

#[test]
fn error_statuses_are_counted() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..5 {
        assert_eq!(c.get("a", "/status/503").status(), 503);
    }
    for _ in 0..3 {
        assert_eq!(c.get("a", "/status/404").status(), 404);
    }
    assert_eq!(c.get("a", "/status/302").status(), 302);
    let s = settled_stats(adm, "main", 9);
    assert_eq!(s["http.main.downstream_rq_total"], 9);
    assert_eq!(s["http.main.downstream_rq_5xx"], 5);
    assert_eq!(s["http.main.downstream_rq_4xx"], 3);
    assert_eq!(s["http.main.downstream_rq_3xx"], 1);
    assert_eq!(s["cluster.origin.upstream_rq_5xx"], 5);
    assert_eq!(s["cluster.origin.upstream_rq_4xx"], 3);
    assert_eq!(s["cluster.origin.upstream_rq_3xx"], 1);
    proxy.stop();
}

#[test]
fn connect_failures_are_counted_as_local_5xx() {
    let (proxy, adm) =
        Proxy::start_with_admin(&admin_config(closed_port(), ""), &["--workers", "1"]);
    for _ in 0..2 {
        assert_eq!(get(proxy.addr, "a", "/").status(), 503);
    }
    let s = settled_stats(adm, "main", 2);
    assert_eq!(s["cluster.origin.upstream_cx_connect_fail"], 2, "{s:?}");
    assert_eq!(s["cluster.origin.upstream_rq_total"], 2);
    assert_eq!(s["http.main.downstream_rq_5xx"], 2);
    // The upstream never answered: no upstream status class.
    assert_eq!(s["cluster.origin.upstream_rq_5xx"], 0);
    proxy.stop();
}

#[test]
fn per_worker_views_add_up_to_totals() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    for _ in 0..40 {
        assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    }
    let s = settled_stats(adm, "main", 40);
    let workers: u64 = (0..2)
        .map(|i| s[&format!("worker.{i}.downstream_rq_total")])
        .sum();
    let cx: u64 = (0..2)
        .map(|i| s[&format!("worker.{i}.downstream_cx_total")])
        .sum();
    let up: u64 = (0..2)
        .map(|i| s[&format!("worker.{i}.upstream_rq_total")])
        .sum();
    assert_eq!(s["http.main.downstream_rq_total"], 40);
    assert_eq!(workers, 40, "{s:?}");
    assert_eq!(cx, 40);
    assert_eq!(up, s["cluster.origin.upstream_rq_total"]);
    assert!(!s.contains_key("worker.2.downstream_rq_total"));
    // Histograms are merged from both workers.
    let text = admin(adm, "GET", "/stats").body_str();
    assert_eq!(hist_count(&text, "http.main.downstream_rq_time"), Some(40));
    proxy.stop();
}

#[test]
fn periodic_and_on_demand_flushes_do_not_double_count() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(
        &admin_config(origin.addr, "stats_flush_interval: 100ms\n"),
        &["--workers", "1"],
    );
    let count = || {
        let text = admin(adm, "GET", "/stats?filter=downstream_rq_time").body_str();
        hist_count(&text, "http.main.downstream_rq_time")
    };
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    }
    settled_stats(adm, "main", 3);
    // Collected on demand by the read.
    assert_eq!(count(), Some(3));
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    }
    // Shipped by the worker's periodic flush, merged by the control side's.
    std::thread::sleep(Duration::from_millis(400));
    settled_stats(adm, "main", 6);
    assert_eq!(count(), Some(6));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), Some(6));
    proxy.stop();
}

/// Checks the Prometheus text exposition format line by line; returns samples by
/// `name{labels}`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        let mut cs = n.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut seen_families_done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in exposition");
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().expect("name"), it.next().expect("type"));
            assert!(it.next().is_none(), "{line}");
            assert!(name_ok(name), "bad family name {name}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} declared twice"
            );
            if let Some(prev) = current.replace(name.to_string()) {
                seen_families_done.insert(prev);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') || line.starts_with("# HELP "),
            "{line}"
        );
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l.strip_suffix('}').expect("closing brace"))),
            None => (series, None),
        };
        assert!(name_ok(name), "bad metric name in {line}");
        if let Some(labels) = labels {
            // name="value" pairs, comma separated, values escaped.
            let mut rest = labels;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").expect("label=\"");
                assert!(name_ok(k) && !k.contains(':'), "bad label name {k}");
                let mut end = None;
                let b = after.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            end = Some(i);
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let end = end.expect("closing quote");
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        // The sample belongs to the family declared just before.
        let fam = current.as_deref().expect("sample before any # TYPE");
        let kind = &types[fam];
        let ok = match kind.as_str() {
            "histogram" => [
                format!("{fam}_bucket"),
                format!("{fam}_sum"),
                format!("{fam}_count"),
            ]
            .contains(&name.to_string()),
            "summary" => {
                name == fam || name == format!("{fam}_sum") || name == format!("{fam}_count")
            }
            _ => name == fam,
        };
        assert!(ok, "sample {name} does not belong to family {fam} ({kind})");
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

#[test]
fn prometheus_output_is_valid() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "1"]);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..10 {
        assert_eq!(c.get("a", "/").status(), 200);
    }
    settled_stats(adm, "main", 10);
    let r = admin(adm, "GET", "/stats/prometheus");
    assert_eq!(r.status(), 200);
    assert!(r
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("text/plain; version=0.0.4")));
    let text = r.body_str();
    let s = parse_prometheus(&text);
    assert_eq!(
        s[r#"ringway_cluster_upstream_rq_total{envoy_cluster_name="origin"}"#], 10.0,
        "{text}"
    );
    assert_eq!(
        s[r#"ringway_http_downstream_rq_2xx{envoy_http_conn_manager_prefix="main"}"#],
        10.0
    );
    assert_eq!(s[r#"ringway_worker_downstream_rq_total{worker="0"}"#], 10.0);
    // Histogram: cumulative buckets ending at +Inf = _count.
    let fam = "ringway_http_downstream_rq_time";
    let lbl = r#"envoy_http_conn_manager_prefix="main""#;
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{fam}_bucket{{{lbl},le=")))
        .map(|(k, v)| {
            let le = k
                .rsplit("le=\"")
                .next()
                .expect("le")
                .trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le number")
            };
            (le, *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 5, "{text}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().expect("+Inf"), &(f64::INFINITY, 10.0));
    assert_eq!(s[&format!("{fam}_count{{{lbl}}}")], 10.0);
    assert!(s[&format!("{fam}_sum{{{lbl}}}")] > 0.0);
    assert!(s.contains_key(&format!("{fam}_quantiles{{{lbl},quantile=\"0.99\"}}")));

    // The same through /stats?format=prometheus, filtered.
    let r = admin(adm, "GET", "/stats?format=prometheus&filter=%5Ecluster%5C.");
    let s = parse_prometheus(&r.body_str());
    assert!(s.keys().all(|k| k.starts_with("ringway_cluster_")), "{s:?}");
    proxy.stop();
}
