//! Stats under real load, through the admin server, against the real `ringway-bench origin`:
//!
//! - with two workers and many concurrent clients (keep-alive and fresh connections), the merged
//!   counters and histogram counts equal the number of requests made, exactly, and both workers
//!   served some of them;
//! - the `downstream_rq_time` percentiles agree with the latencies the client measured itself,
//!   within the histogram's precision and a loopback allowance;
//! - `/stats/prometheus` is accepted by a real parser (Python's `prometheus_client`), and the
//!   values it reads back match the traffic.

use crate::support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// Held by the load test and the latency test, so they never run at the same time: the latency
/// test's client-side timings should not compete with eight load threads for the cores.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait until every one of `total` exchanges is recorded: the status classes of `prefix` add up
/// to `total` and `downstream_rq_time` has `total` values (a client has its response before the
/// worker records the exchange). Returns the settled document. Overshooting never settles, so a
/// double count fails here too (with the document in the message).
fn settled_json(adm: SocketAddr, prefix: &str, total: u64) -> serde_json::Value {
    let settled = |doc: &serde_json::Value| {
        let classes: u64 = (1..=5)
            .map(|k| json_stat(doc, &format!("http.{prefix}.downstream_rq_{k}xx")).unwrap_or(0))
            .sum();
        let hist = json_hist(doc, &format!("http.{prefix}.downstream_rq_time"))
            .and_then(|h| h["count"].as_u64())
            .unwrap_or(0);
        classes == total && hist == total
    };
    let until = Instant::now() + WAIT;
    loop {
        let doc = admin_json(adm);
        if settled(&doc) {
            return doc;
        }
        assert!(
            Instant::now() < until,
            "stats did not settle at {total} requests within {WAIT:?}: {doc:#}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn stat(doc: &serde_json::Value, name: &str) -> u64 {
    json_stat(doc, name).unwrap_or_else(|| panic!("no stat {name} in {doc:#}"))
}

fn hist_count(doc: &serde_json::Value, name: &str) -> u64 {
    json_hist(doc, name)
        .and_then(|h| h["count"].as_u64())
        .unwrap_or_else(|| panic!("no histogram {name} in {doc:#}"))
}

#[test]
fn merged_totals_are_exact_under_concurrent_load_on_two_workers() {
    const THREADS: u64 = 8;
    const KEEPALIVE: u64 = 250;
    const FRESH: u64 = 25;
    let _heavy = heavy();
    let origin = BenchOrigin::start(&[]);
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    let addr = proxy.addr;
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..KEEPALIVE {
                    let r = c.get("load", &format!("/k/{t}/{i}"));
                    assert_eq!(r.status(), 200, "keep-alive {t}/{i}: {}", r.body_str());
                    // Fresh connections interleaved, so SO_REUSEPORT spreads them over both
                    // workers while the keep-alive ones are busy.
                    if i % (KEEPALIVE / FRESH) == 0 {
                        let r = get(addr, "load", &format!("/f/{t}/{i}"));
                        assert_eq!(r.status(), 200, "fresh {t}/{i}: {}", r.body_str());
                    }
                }
            });
        }
    });
    let total = THREADS * (KEEPALIVE + FRESH);
    let connections = THREADS * (1 + FRESH);

    let doc = settled_json(adm, "main", total);
    let ctx = || format!("{doc:#}");
    assert_eq!(
        stat(&doc, "http.main.downstream_rq_total"),
        total,
        "{}",
        ctx()
    );
    assert_eq!(
        stat(&doc, "http.main.downstream_rq_2xx"),
        total,
        "{}",
        ctx()
    );
    assert_eq!(
        stat(&doc, "cluster.origin.upstream_rq_total"),
        total,
        "{}",
        ctx()
    );
    assert_eq!(
        stat(&doc, "cluster.origin.upstream_rq_2xx"),
        total,
        "{}",
        ctx()
    );
    assert_eq!(
        hist_count(&doc, "http.main.downstream_rq_time"),
        total,
        "{}",
        ctx()
    );
    assert_eq!(
        hist_count(&doc, "cluster.origin.upstream_rq_time"),
        total,
        "{}",
        ctx()
    );

    let per_worker: Vec<u64> = (0..2)
        .map(|w| stat(&doc, &format!("worker.{w}.downstream_rq_total")))
        .collect();
    eprintln!("requests per worker: {per_worker:?}");
    assert_eq!(per_worker.iter().sum::<u64>(), total, "{}", ctx());
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers must serve requests for this test to exercise the merge: {per_worker:?}"
    );
    assert_eq!(json_stat(&doc, "worker.2.downstream_rq_total"), None);
    let cx: u64 = (0..2)
        .map(|w| stat(&doc, &format!("worker.{w}.downstream_cx_total")))
        .sum();
    assert_eq!(cx, connections, "{}", ctx());
    let listener = format!(
        "listener.{}.downstream_cx_total",
        proxy.addr.to_string().replace(':', "_")
    );
    assert_eq!(stat(&doc, &listener), connections, "{}", ctx());

    let retries = stat(&doc, "cluster.origin.upstream_rq_retry");
    proxy.stop();
    // The origin's own count: every request reached it exactly once.
    assert_eq!(origin.stop(), total, "upstream_rq_retry={retries}");
}

/// Nearest-rank (1-based) of quantile `q` among `n` values, computed exactly as
/// `hdrhistogram::Histogram::value_at_quantile` does: `ceil(q * n)`, at least 1.
fn nearest_rank(q: f64, n: usize) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n)
}

#[test]
fn percentiles_agree_with_the_client_measurement() {
    // Origin delays, cycled over the requests: 40 requests each, so with 200 requests the ranks
    // of p50 (100), p75 (150), p90 (180) and p99 (198) fall inside the 10, 20, 40 and 40 ms
    // groups, away from group edges.
    const DELAYS_MS: [u64; 5] = [2, 5, 10, 20, 40];
    const THREADS: usize = 4;
    const REQUESTS: usize = 200;
    let _heavy = heavy();
    let origin = BenchOrigin::start(&[]);
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    let addr = proxy.addr;
    let mut client_us: Vec<u64> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut lat = Vec::new();
                    for i in (t..REQUESTS).step_by(THREADS) {
                        let path = format!("/delay/{}", DELAYS_MS[i % DELAYS_MS.len()]);
                        let t0 = Instant::now();
                        let r = c.get("lat", &path);
                        let us = t0.elapsed().as_micros() as u64;
                        assert_eq!(r.status(), 200, "{path}: {}", r.body_str());
                        lat.push(us);
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(client_us.len(), REQUESTS);
    client_us.sort_unstable();

    let doc = settled_json(adm, "main", REQUESTS as u64);
    let h = json_hist(&doc, "http.main.downstream_rq_time").expect("downstream_rq_time");
    assert_eq!(h["unit"], "us", "{h}");
    // Bounds, per quantile (values in µs). The proxy times each request from reading the first
    // byte of its head to seeing the write of the last response byte complete; the client from
    // before its write to after its read of the whole response. Both clocks are the same
    // CLOCK_MONOTONIC.
    // - upper: the proxy's interval is inside the client's, except that the proxy notes its end
    //   when its task resumes after the write, and on a loaded machine the client may have read
    //   the response by then. If at most SLOW requests have proxy > client, then of the k + SLOW
    //   requests with client values <= the client's (k + SLOW)-th smallest, at least k have
    //   proxy values <= that, so that value bounds the proxy's k-th smallest. The histogram (2
    //   significant digits) reports the highest value equivalent to the recorded one, at most
    //   1/128 above it: allow 1%, plus 1 µs for the truncation to µs on both sides.
    // - lower: the part of the client's interval the proxy does not see is two loopback hops and
    //   the wake-ups around them, well under a millisecond on an idle machine. Allow
    //   ALLOWANCE_US for a loaded 2-core CI machine, where a thread may wait for a core. If at
    //   most SLOW requests waited longer than that outside the proxy, then of the k requests
    //   with proxy values <= the proxy's k-th smallest, at least k - SLOW have client values <=
    //   that + ALLOWANCE_US: the client's (k - SLOW)-th smallest value minus ALLOWANCE_US bounds
    //   the proxy's k-th from below.
    // SLOW is 2% of the requests: on a 2-core machine oversubscribed 3x (CPU hogs and the other
    // tests running) the p99 check still failed now and then with 1%.
    const ALLOWANCE_US: u64 = 5_000;
    const SLOW: usize = REQUESTS / 50;
    let mut report = String::new();
    let mut failures = Vec::new();
    for (q, key) in [(0.5, "p50"), (0.75, "p75"), (0.9, "p90"), (0.99, "p99")] {
        let proxy_q = h["quantiles"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {h}"));
        let rank = nearest_rank(q, client_us.len());
        let client_q = client_us[rank - 1];
        let up = client_us[(rank + SLOW).min(client_us.len()) - 1];
        let upper = up + up / 100 + 1;
        let lower = client_us[rank.saturating_sub(1 + SLOW)].saturating_sub(ALLOWANCE_US);
        report.push_str(&format!(
            "{key}: proxy={proxy_q}us client={client_q}us allowed=[{lower}, {upper}]\n"
        ));
        if proxy_q > upper || proxy_q < lower {
            failures.push(key);
        }
    }
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "quantiles out of bounds {failures:?}:\n{report}histogram: {h}\nclient (sorted, us): {client_us:?}"
    );
    // Exact, whatever the load: the proxy's interval contains the origin's wait, so each
    // quantile is at least the delay of the group its rank falls in.
    for (key, ms) in [("p50", 10), ("p75", 20), ("p90", 40), ("p99", 40)] {
        let v = h["quantiles"][key].as_u64().expect("quantile");
        assert!(
            v >= ms * 1000,
            "{key}={v}us, below the {ms} ms delay:\n{report}"
        );
    }
    proxy.stop();
}

/// Parses stdin with `prometheus_client` and prints every family as JSON:
/// `[{"name", "type", "samples": [{"name", "labels", "value"}]}]`. Exit code 3: not installed.
const PROM_PARSE: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(f"cannot import prometheus_client: {e}", file=sys.stderr)
    sys.exit(3)
families = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": fam.name,
        "type": fam.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in fam.samples],
    })
json.dump(families, sys.stdout, allow_nan=False)
"#;

/// A series' labels (besides `le`), sorted.
type Labels = Vec<(String, String)>;

/// One parsed sample: family type, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/stats/prometheus` parsed by `prometheus_client`: samples by sample name.
fn parse_with_prometheus_client(text: &str) -> BTreeMap<String, Vec<Sample>> {
    let out = run_python(PROM_PARSE, text.as_bytes(), WAIT);
    if out.status.code() == Some(3) {
        panic!(
            "Python's prometheus_client is missing ({}): run scripts/test.sh, which installs it \
             (python3 -m pip install prometheus_client)",
            out.stderr.trim()
        );
    }
    assert!(
        out.status.success(),
        "prometheus_client could not parse /stats/prometheus ({}): {}\n--- exposition:\n{text}",
        out.status,
        out.stderr
    );
    let families: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("parser output is not JSON ({e}): {}", out.stdout));
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for fam in families.as_array().expect("families") {
        let kind = fam["type"].as_str().expect("type").to_string();
        // A sample that does not belong to the family declared before it ends up in an
        // `unknown` family of its own.
        assert!(
            ["counter", "gauge", "histogram", "summary"].contains(&kind.as_str()),
            "family {} parsed as {kind}:\n{text}",
            fam["name"]
        );
        for s in fam["samples"].as_array().expect("samples") {
            let labels = s["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
                .collect();
            samples
                .entry(s["name"].as_str().expect("sample name").to_string())
                .or_default()
                .push(Sample {
                    kind: kind.clone(),
                    labels,
                    value: s["value"].as_f64().expect("value"),
                });
        }
    }
    samples
}

/// The sample `name` (as exposed) with exactly `labels`. `prometheus_client` names every counter
/// sample `<family>_total`, so a counter exposed as `x_2xx` is read back as `x_2xx_total`.
fn sample(all: &BTreeMap<String, Vec<Sample>>, name: &str, labels: &[(&str, &str)]) -> Sample {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let find = |n: &str| all.get(n)?.iter().find(|s| s.labels == want).cloned();
    find(name)
        .or_else(|| find(&format!("{name}_total")).filter(|s| s.kind == "counter"))
        .unwrap_or_else(|| panic!("no sample {name}{want:?}; have {:?}", all.get(name)))
}

#[test]
fn prometheus_output_parses_with_prometheus_client() {
    let origin = BenchOrigin::start(&[]);
    let (proxy, adm) = Proxy::start_with_admin(&admin_config(origin.addr, ""), &["--workers", "2"]);
    let (ok, not_found) = (15u64, 5u64);
    let mut c = Client::connect(proxy.addr);
    for _ in 0..ok {
        assert_eq!(c.get("p", "/").status(), 200);
    }
    for _ in 0..not_found {
        assert_eq!(get(proxy.addr, "p", "/status/404").status(), 404);
    }
    let total = ok + not_found;
    settled_json(adm, "main", total);

    let r = admin(adm, "GET", "/stats/prometheus");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let text = r.body_str();
    let all = parse_with_prometheus_client(&text);
    let n = total as f64;

    let cluster = [("envoy_cluster_name", "origin")];
    let hcm = [("envoy_http_conn_manager_prefix", "main")];
    let up = sample(&all, "ringway_cluster_upstream_rq_total", &cluster);
    assert_eq!((up.kind.as_str(), up.value), ("counter", n));
    assert_eq!(
        sample(&all, "ringway_cluster_upstream_rq_2xx", &cluster).value,
        ok as f64
    );
    assert_eq!(
        sample(&all, "ringway_cluster_upstream_rq_4xx", &cluster).value,
        not_found as f64
    );
    let down = sample(&all, "ringway_http_downstream_rq_total", &hcm);
    assert_eq!((down.kind.as_str(), down.value), ("counter", n));
    let workers: f64 = all["ringway_worker_downstream_rq_total"]
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(
        workers, n,
        "{:?}",
        all["ringway_worker_downstream_rq_total"]
    );

    // Every histogram: cumulative buckets, non-decreasing in `le`, ending at +Inf = _count.
    let mut histograms = 0;
    for (name, buckets) in all.iter().filter(|(n, _)| n.ends_with("_bucket")) {
        let fam = name.strip_suffix("_bucket").expect("suffix");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for b in buckets {
            assert_eq!(b.kind, "histogram", "{name}");
            let le = b
                .labels
                .get("le")
                .unwrap_or_else(|| panic!("{name}: no le"));
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or_else(|_| panic!("{name}: le={le}"))
            };
            let key = b
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, b.value));
        }
        for (labels, mut bs) in series {
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(bs.len() > 5, "{fam}{labels:?}: {bs:?}");
            assert!(
                bs.windows(2).all(|w| w[0].1 <= w[1].1),
                "{fam}{labels:?} buckets not cumulative: {bs:?}"
            );
            let lbl: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = sample(&all, &format!("{fam}_count"), &lbl).value;
            let last = bs.last().expect("buckets");
            assert_eq!(*last, (f64::INFINITY, count), "{fam}{labels:?}: {bs:?}");
            histograms += 1;
        }
    }
    assert!(histograms >= 2, "histograms found: {histograms}\n{text}");
    let rq_time = sample(&all, "ringway_http_downstream_rq_time_count", &hcm);
    assert_eq!((rq_time.kind.as_str(), rq_time.value), ("histogram", n));
    assert!(sample(&all, "ringway_http_downstream_rq_time_sum", &hcm).value > 0.0);
    assert_eq!(
        sample(&all, "ringway_cluster_upstream_rq_time_count", &cluster).value,
        n
    );

    // The quantile summary: non-decreasing in the quantile, same count.
    let qs: Vec<f64> = ["0.5", "0.75", "0.9", "0.99", "0.999", "1"]
        .iter()
        .map(|q| {
            let mut l = hcm.to_vec();
            l.push(("quantile", q));
            let s = sample(&all, "ringway_http_downstream_rq_time_quantiles", &l);
            assert_eq!(s.kind, "summary");
            s.value
        })
        .collect();
    assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
    assert_eq!(
        sample(
            &all,
            "ringway_http_downstream_rq_time_quantiles_count",
            &hcm
        )
        .value,
        n
    );
    proxy.stop();
}
