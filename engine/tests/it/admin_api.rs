//! The admin server: every endpoint over a real socket, wrong methods and paths, readiness,
//! health-check failing, draining listeners, changing the log level, stats filters.

use crate::support;

use std::{net::TcpStream, time::Duration};

use support::*;

fn json(r: &RawMessage) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body_str()))
}

#[test]
fn every_read_endpoint_answers() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);

    let r = admin(adm, "GET", "/");
    assert_eq!(r.status(), 200);
    assert!(r.body_str().contains("/stats/prometheus"));
    assert_eq!(r.header("connection"), Some("close"));

    let r = admin(adm, "GET", "/stats");
    assert_eq!(r.status(), 200);
    assert!(
        r.body_str().contains("cluster.origin.upstream_rq_total: 1"),
        "{}",
        r.body_str()
    );

    let r = admin(adm, "GET", "/stats?format=json");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = json(&r);
    assert!(j["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .any(|s| s["name"] == "http.main.downstream_rq_total" && s["value"] == 1));

    let r = admin(adm, "GET", "/stats/prometheus");
    assert_eq!(r.status(), 200);
    assert!(r
        .body_str()
        .contains("# TYPE ringway_cluster_upstream_rq_total counter"));

    let r = admin(adm, "GET", "/clusters");
    assert_eq!(r.status(), 200);
    let body = r.body_str();
    let ep = format!("origin::{}", origin.addr);
    assert!(
        body.contains(&format!("{ep}::health_flags::healthy")),
        "{body}"
    );
    assert!(body.contains(&format!("{ep}::weight::1")), "{body}");
    assert!(body.contains(&format!("{ep}::rq_total::1")), "{body}");
    assert!(
        body.contains(&format!("{ep}::worker_1::rq_active::0")),
        "{body}"
    );

    let j = json(&admin(adm, "GET", "/clusters?format=json"));
    let e = &j["clusters"][0]["endpoints"][0];
    assert_eq!(j["clusters"][0]["name"], "origin");
    assert_eq!(e["address"], origin.addr.to_string());
    assert_eq!(e["workers"].as_array().expect("workers").len(), 2);

    let j = json(&admin(adm, "GET", "/config_dump"));
    assert_eq!(j["config"]["clusters"][0]["name"], "origin");
    assert_eq!(j["config"]["admin"]["address"], "127.0.0.1:0");
    // Defaults left out of the file are shown with the values in force.
    assert_eq!(j["defaults"], "filled in");
    assert_eq!(j["config"]["drain_timeout"], "5s", "{j:#}");
    assert_eq!(j["config"]["clusters"][0]["connect_timeout"], "1s", "{j:#}");
    assert_eq!(j["config"]["clusters"][0]["idle_timeout"], "1m", "{j:#}");
    assert_eq!(j["config"]["clusters"][0]["lb_policy"], "round_robin");
    assert_eq!(j["config"]["listeners"][0]["backlog"], 1024);
    let j = json(&admin(adm, "GET", "/config_dump?defaults=false"));
    assert_eq!(j["defaults"], "as written");
    assert_eq!(j["config"]["clusters"][0]["name"], "origin");
    assert!(j["config"].get("drain_timeout").is_none(), "{j:#}");
    assert!(
        j["config"]["clusters"][0].get("lb_policy").is_none(),
        "{j:#}"
    );

    let r = admin(adm, "GET", "/listeners");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str().trim(), format!("main::{}", proxy.addr));
    let j = json(&admin(adm, "GET", "/listeners?format=json"));
    assert_eq!(j["listeners"][0]["address"], proxy.addr.to_string());

    let j = json(&admin(adm, "GET", "/server_info"));
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["state"], "LIVE");
    assert_eq!(j["workers"], 2);
    assert!(j["uptime_seconds"].is_u64());

    let r = admin(adm, "GET", "/ready");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str(), "LIVE\n");
    proxy.stop();
}

#[test]
fn wrong_method_is_405_and_unknown_path_404() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &[]);
    let r = admin(adm, "POST", "/stats");
    assert_eq!(r.status(), 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(admin(adm, "GET", "/drain_listeners").status(), 405);
    assert_eq!(admin(adm, "GET", "/healthcheck/fail").status(), 405);
    let r = admin(adm, "GET", "/nope");
    assert_eq!(r.status(), 404);
    assert!(r.body_str().contains("/stats"), "{}", r.body_str());
    assert!(r.body_str().contains("/drain_listeners"));
    // A malformed request gets a 400, and the server keeps serving.
    let r = request(adm, b"BLAH\r\n\r\n");
    assert_eq!(r.status(), 400);
    assert_eq!(admin(adm, "GET", "/ready").status(), 200);
    proxy.stop();
}

#[test]
fn healthcheck_fail_makes_ready_503() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &[]);
    assert_eq!(admin(adm, "GET", "/ready").status(), 200);
    assert_eq!(admin(adm, "POST", "/healthcheck/fail").status(), 200);
    assert_eq!(admin(adm, "GET", "/ready").status(), 503);
    assert_eq!(
        json(&admin(adm, "GET", "/server_info"))["health_check_failed"],
        true
    );
    // Traffic still flows: failing the health check only tells load balancers to go away.
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    assert_eq!(admin(adm, "POST", "/healthcheck/ok").status(), 200);
    assert_eq!(admin(adm, "GET", "/ready").status(), 200);
    proxy.stop();
}

#[test]
fn drain_listeners_stops_accepting_but_keeps_running() {
    let origin = status_origin();
    let (mut proxy, adm) =
        Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    let r = admin(adm, "POST", "/drain_listeners");
    assert_eq!(r.status(), 200);
    assert_eq!(admin(adm, "GET", "/ready").status(), 503);
    eventually("listener stops accepting", || {
        TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(1)).is_err()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(proxy.is_running(), "the process keeps running");
    assert_eq!(
        json(&admin(adm, "GET", "/server_info"))["state"],
        "DRAINING"
    );
    // Stats still answer, from both workers.
    let s = admin_stats(adm);
    assert_eq!(s["http.main.downstream_rq_total"], 1);
    let st = proxy.stop();
    assert!(st.success(), "{st}");
}

#[test]
fn logging_changes_the_level() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &[]);
    assert_eq!(admin(adm, "GET", "/server_info").status(), 200);
    assert!(
        !proxy.stderr().contains("admin request"),
        "debug is off at info"
    );
    assert_eq!(admin(adm, "GET", "/logging").status(), 405);
    assert_eq!(admin(adm, "POST", "/logging").status(), 400);
    assert_eq!(admin(adm, "POST", "/logging?level=debug").status(), 200);
    assert_eq!(admin(adm, "GET", "/server_info").status(), 200);
    eventually("debug lines appear", || {
        proxy.stderr().contains("admin request")
    });
    assert_eq!(
        json(&admin(adm, "GET", "/server_info"))["log_level"],
        "debug"
    );
    // Back to warn: the info line of the change itself is the last one logged.
    assert_eq!(admin(adm, "POST", "/logging?level=warn").status(), 200);
    let before = proxy.stderr().len();
    assert_eq!(admin(adm, "GET", "/server_info").status(), 200);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.stderr().len(), before, "nothing logged at warn");
    proxy.stop();
}

#[test]
fn stats_filter_selects_by_regex() {
    let origin = status_origin();
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &[]);
    assert_eq!(get(proxy.addr, "a", "/").status(), 200);
    let r = admin(adm, "GET", "/stats?filter=upstream_rq_total");
    assert_eq!(r.status(), 200);
    let lines: Vec<String> = r.body_str().lines().map(str::to_owned).collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l.contains("upstream_rq_total")),
        "{lines:?}"
    );
    assert!(lines.contains(&"cluster.origin.upstream_rq_total: 1".to_string()));
    let r = admin(
        adm,
        "GET",
        "/stats?filter=%5Ehttp%5C.main%5C.downstream_rq_%5B0-9%5Dxx%24",
    );
    assert_eq!(r.body_str().lines().count(), 5, "{}", r.body_str());
    assert_eq!(admin(adm, "GET", "/stats?filter=(").status(), 400);
    proxy.stop();
}

#[test]
fn admin_address_is_validated() {
    let out = run_ringway(
        &[
            "validate",
            "-c",
            write_config(
                &ConfigBuilder::simple(closed_port())
                    .top("admin:\n  address: localhost:9901\nstats_flush_interval: 0s")
                    .yaml(),
            )
            .to_str()
            .expect("path"),
        ],
        WAIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("admin.address"), "{}", out.stderr);
    assert!(
        out.stderr.contains("stats_flush_interval"),
        "{}",
        out.stderr
    );
}
