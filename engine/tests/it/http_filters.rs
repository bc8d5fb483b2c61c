//! The HTTP filter chain end to end: real proxy, real origins on loopback, raw HTTP/1.1 clients
//! and curl. Each built-in filter's behaviour on the wire, per-route overrides, route-level
//! header edits, stats in `/stats`, and config errors with their file positions.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use support::*;

/// Admin on port 0, listener `main` (stat prefix `main`) whose connection manager has the HTTP
/// filters `filters` (raw `http_filters` items, `- name: ...`), every path of every host routed
/// to cluster `origin`.
fn config(origin: SocketAddr, filters: &str) -> ConfigBuilder {
    ConfigBuilder::simple(origin).admin().http_filters(filters)
}

/// As [`config`], but with no route yet: the test adds its own, in order. No `http_filters`
/// key at all when `filters` is empty.
fn without_routes(origin: SocketAddr, filters: &str) -> ConfigBuilder {
    let b = ConfigBuilder::new().admin().stat_prefix("main");
    let b = if filters.is_empty() {
        b
    } else {
        b.http_filters(filters)
    };
    b.cluster("origin", &[origin]).connect_timeout("1s")
}

/// An origin answering every request with `status`, extra header lines `extra` (each ending in
/// CRLF) and `body`; counts requests.
fn scripted(
    status: u16,
    extra: &'static str,
    body: &'static [u8],
) -> (RawOrigin, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = Arc::clone(&n);
    let o = RawOrigin::start(move |mut c| {
        while c.read_request_framed().is_some() {
            n2.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}\r\n",
                body.len()
            );
            let mut out = head.into_bytes();
            out.extend_from_slice(body);
            if !c.write(&out) {
                break;
            }
        }
    });
    (o, n)
}

fn req(p: &Proxy, raw: &str) -> RawMessage {
    request(p.addr, raw.as_bytes())
}

#[test]
fn header_mutation_and_route_header_edits_reach_both_sides() {
    let origin = RawOrigin::echo_head();
    let filters = r#"
        - name: header_mutation
          mutations:
            request_mutations:
              - append: { header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
              - remove: x-secret
            response_mutations:
              - append: { header: { key: x-served-by, value: "ringway %PROTOCOL%" } }
    "#;
    let yaml = without_routes(origin.addr, filters)
        .vhost_extra(r#"request_headers_to_add: [{ header: { key: x-vhost, value: v } }]"#)
        .route_raw(
            r#"
            match: { prefix: / }
            route: { cluster: origin }
            request_headers_to_add: [{ header: { key: x-route, value: "%REQ(x-tenant)%-r" } }]
            request_headers_to_remove: [x-drop]
            response_headers_to_add: [{ header: { key: x-route-resp, value: "%RESPONSE_CODE%" } }]
            "#,
        )
        .yaml();
    let p = Proxy::start(&yaml);
    let r = req(
        &p,
        "GET /a HTTP/1.1\r\nHost: h\r\nx-secret: s\r\nx-drop: d\r\nx-tenant: t1\r\nx-client: spoofed\r\n\r\n",
    );
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.contains("x-client: 127.0.0.1\r\n"), "{seen}");
    assert!(!seen.contains("spoofed"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("x-drop"), "{seen}");
    assert!(seen.contains("x-route: t1-r\r\n"), "{seen}");
    assert!(seen.contains("x-vhost: v\r\n"), "{seen}");
    assert_eq!(r.header("x-served-by"), Some("ringway HTTP/1.1"));
    assert_eq!(r.header("x-route-resp"), Some("200"));
    p.stop();
}

#[test]
fn cors_answers_preflights_and_decorates_responses() {
    let (origin, hits) = scripted(200, "", b"ok");
    let filters = r#"
        - name: cors
          allow_origin_string_match: [{ exact: "https://a.example" }, { suffix: ".b.example" }]
          allow_methods: "GET, PUT"
          allow_headers: "x-token"
          expose_headers: "x-request-id"
          max_age: "600"
          allow_credentials: true
    "#;
    let (p, admin) =
        Proxy::start_with_admin(&config(origin.addr, filters).yaml(), &["--workers", "1"]);
    let pre = req(
        &p,
        "OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
    );
    assert_eq!(pre.status(), 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a preflight is answered locally"
    );

    let actual = req(
        &p,
        "GET /x HTTP/1.1\r\nHost: h\r\nOrigin: https://c.b.example\r\n\r\n",
    );
    assert_eq!(actual.status(), 200);
    assert_eq!(actual.body_str(), "ok");
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://c.b.example")
    );
    assert_eq!(
        actual.header("access-control-expose-headers"),
        Some("x-request-id")
    );

    let denied = req(
        &p,
        "GET /x HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(denied.status(), 200);
    assert_eq!(denied.header("access-control-allow-origin"), None);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("http.main.cors.origin_valid"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("http.main.cors.origin_invalid"),
        Some(&1),
        "{stats:?}"
    );
    p.stop();
}

#[test]
fn local_ratelimit_refuses_with_429_and_counts() {
    let (origin, hits) = scripted(200, "", b"ok");
    let filters = r#"
        - name: local_ratelimit
          stat_prefix: rl
          token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 1h }
    "#;
    let (p, admin) =
        Proxy::start_with_admin(&config(origin.addr, filters).yaml(), &["--workers", "1"]);
    let mut c = Client::connect(p.addr);
    assert_eq!(c.get("h", "/").status(), 200);
    assert_eq!(c.get("h", "/").status(), 200);
    let limited = c.get("h", "/");
    assert_eq!(limited.status(), 429, "{}", limited.body_str());
    assert_eq!(limited.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = limited
        .header("x-ratelimit-reset")
        .and_then(|v| v.parse().ok())
        .expect("x-ratelimit-reset");
    assert!(reset > 3000 && reset <= 3600, "{reset}");
    assert_eq!(
        limited.header("retry-after"),
        Some(reset.to_string().as_str())
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a limited request never reaches the origin"
    );
    // The connection stays usable.
    assert_eq!(c.get("h", "/").status(), 429);
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("http.main.rl.http_local_rate_limit.rate_limited"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("http.main.rl.http_local_rate_limit.ok"),
        Some(&2),
        "{stats:?}"
    );
    p.stop();
}

#[test]
fn per_route_overrides_disable_or_replace_a_filter() {
    let (origin, _) = scripted(200, "", b"ok");
    let filters = r#"
        - name: local_ratelimit
          stat_prefix: rl
          token_bucket: { max_tokens: 1, fill_interval: 1h }
    "#;
    let yaml = without_routes(origin.addr, filters)
        .route_prefix("/free", "origin")
        .route_extra("per_filter_config: { local_ratelimit: { disabled: true } }")
        .route_prefix("/own", "origin")
        .route_extra(
            r#"
            typed_per_filter_config:
              envoy.filters.http.local_ratelimit:
                stat_prefix: rl
                token_bucket: { max_tokens: 3, fill_interval: 1h }
            "#,
        )
        .route_prefix("/", "origin")
        .yaml();
    let p = Proxy::start(&yaml);
    let mut c = Client::connect(p.addr);
    assert_eq!(c.get("h", "/").status(), 200);
    assert_eq!(c.get("h", "/").status(), 429);
    for _ in 0..5 {
        assert_eq!(c.get("h", "/free").status(), 200, "disabled on /free");
    }
    let own: Vec<u16> = (0..4).map(|_| c.get("h", "/own").status()).collect();
    assert_eq!(
        own,
        vec![200, 200, 200, 429],
        "/own has its own bucket of 3"
    );
    p.stop();
}

#[test]
fn fault_aborts_and_delays() {
    let (origin, hits) = scripted(200, "", b"ok");
    let filters = r#"
        - name: fault
          abort: { header_abort: {} }
          delay: { header_delay: {} }
    "#;
    let yaml = without_routes(origin.addr, filters)
        .route_prefix("/always", "origin")
        .route_extra(
            r#"
            per_filter_config:
              fault:
                abort: { http_status: 503, percentage: { numerator: 100, denominator: HUNDRED } }
            "#,
        )
        .route_prefix("/", "origin")
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let r = req(&p, "GET /always HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status(), 503);
    assert_eq!(r.body_str(), "fault filter abort");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let r = req(
        &p,
        "GET / HTTP/1.1\r\nHost: h\r\nx-envoy-fault-abort-request: 418\r\n\r\n",
    );
    assert_eq!(r.status(), 418);

    // A delay stops the stream and resumes it: the request reaches the origin afterwards.
    let t = Instant::now();
    let r = req(
        &p,
        "GET / HTTP/1.1\r\nHost: h\r\nx-envoy-fault-delay-request: 300\r\n\r\n",
    );
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // While one stream waits, the worker serves others.
    let slow = std::thread::spawn({
        let addr = p.addr;
        move || {
            request(
                addr,
                b"GET / HTTP/1.1\r\nHost: h\r\nx-envoy-fault-delay-request: 1500\r\n\r\n",
            )
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(req(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "not held up by the delay"
    );
    assert_eq!(slow.join().expect("slow").status(), 200);
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("http.main.fault.aborts_injected"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("http.main.fault.delays_injected"),
        Some(&2),
        "{stats:?}"
    );
    p.stop();
}

#[test]
fn buffer_sends_a_whole_body_with_a_length_or_refuses_413() {
    let origin = RawOrigin::start(|mut c| {
        while let Some(m) = c.read_request_framed() {
            let cl = m.header("content-length").unwrap_or("none").to_string();
            let te = m.header("transfer-encoding").unwrap_or("none").to_string();
            let body = format!("cl={cl} te={te} body={}", String::from_utf8_lossy(&m.body));
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    });
    let p = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .admin()
            .http_filter("buffer", "max_request_bytes: 16")
            .yaml(),
    );
    let r = req(
        &p,
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str(), "cl=11 te=none body=hello world");
    let big = req(
        &p,
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert_eq!(big.status(), 413);
    let declared = req(
        &p,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n01234567890123456",
    );
    assert_eq!(declared.status(), 413);
    p.stop();
}

#[test]
fn compressor_gzips_for_curl_and_leaves_others_alone() {
    let body: &'static [u8] = Box::leak(
        format!("{{\"items\":[{}]}}", "\"abcdefghij\",".repeat(400))
            .into_bytes()
            .into_boxed_slice(),
    );
    let (origin, _) = scripted(200, "content-type: application/json\r\n", body);
    let filters = "- name: compressor\n  compressor_library: [{ name: gzip }, { name: brotli }]";
    let (p, admin) =
        Proxy::start_with_admin(&config(origin.addr, filters).yaml(), &["--workers", "1"]);
    // Without accept-encoding: untouched, but varied.
    let plain = req(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(plain.body, body);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain
        .header("vary")
        .is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")));
    // gzip: chunked on the wire, and curl decodes it back to the origin's bytes.
    let gz = req(
        &p,
        "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("transfer-encoding"), Some("chunked"));
    assert!(gz.body.len() < body.len() / 4, "{} bytes", gz.body.len());
    let url = format!("http://{}/", p.addr);
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--compressed", &url])
        .output()
        .expect("curl");
    assert!(out.status.success());
    assert_eq!(out.stdout, body, "curl decoded the gzip stream");
    let stats = admin_stats(admin);
    assert!(
        stats
            .get("http.main.compressor.gzip.compressed")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{stats:?}"
    );
    p.stop();
}

#[test]
fn cache_serves_hits_revalidates_and_logs_the_status() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = Arc::clone(&hits);
    let origin = RawOrigin::start(move |mut c| {
        while let Some(m) = c.read_request_framed() {
            h2.fetch_add(1, Ordering::SeqCst);
            let resp = if m.start.contains("/stale") && m.header("if-none-match") == Some("\"v1\"")
            {
                "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncache-control: max-age=0\r\n\r\n"
                    .to_string()
            } else if m.start.contains("/stale") {
                "HTTP/1.1 200 OK\r\netag: \"v1\"\r\ncache-control: max-age=0\r\ncontent-length: 5\r\n\r\nstale".to_string()
            } else {
                "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 6\r\n\r\ncached"
                    .to_string()
            };
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    });
    let log = scratch_dir().join("access.log");
    let yaml = ConfigBuilder::simple(origin.addr)
        .admin()
        .hcm_extra(&format!(
            "access_log:\n  - path: {}\n    format: \"%REQ(:PATH)% %RESPONSE_CODE% %FILTER_STATE(cache.status)%\\n\"",
            log.display()
        ))
        .http_filter("cache", "")
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let first = req(&p, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(first.body_str(), "cached");
    let second = req(&p, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(second.status(), 200);
    assert_eq!(second.body_str(), "cached");
    assert!(second.header("age").is_some(), "a hit carries age");
    // The stored response's fields and nothing of the proxy's own: the origin sent no type, so
    // neither does the hit.
    assert_eq!(second.header("content-type"), None, "{second:?}");
    let head = {
        let mut c = Client::connect(p.addr);
        c.send(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n");
        c.response(true)
    };
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("content-length"), Some("6"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "hit and HEAD served from the cache"
    );
    // Revalidation: the origin's 304 becomes the stored 200.
    assert_eq!(
        req(&p, "GET /stale HTTP/1.1\r\nHost: h\r\n\r\n").body_str(),
        "stale"
    );
    let again = req(&p, "GET /stale HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(again.status(), 200);
    assert_eq!(again.body_str(), "stale");
    assert_eq!(again.header("content-type"), None, "{again:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let lines = wait_lines(&log, 5);
    assert_eq!(lines[0], "/a 200 miss");
    assert_eq!(lines[1], "/a 200 hit");
    assert_eq!(lines[2], "/a 200 hit");
    assert_eq!(lines[4], "/stale 200 revalidated");
    let stats = admin_stats(admin);
    assert_eq!(stats.get("http.main.cache.hits"), Some(&2), "{stats:?}");
    // Misses: /a, /stale, and the revalidation of /stale (which the origin answered 304).
    assert_eq!(stats.get("http.main.cache.misses"), Some(&3), "{stats:?}");
    assert_eq!(
        stats.get("http.main.cache.revalidations"),
        Some(&1),
        "{stats:?}"
    );
    // Inserts: /a, /stale, and /stale again refreshed by the 304.
    assert_eq!(stats.get("http.main.cache.inserts"), Some(&3), "{stats:?}");
    p.stop();
}

#[test]
fn filter_config_errors_name_the_field_and_line() {
    let (origin, _) = scripted(200, "", b"ok");
    let filters = r#"
        - name: local_ratelimit
          token_bucket: { max_tokens: 0, fill_interval: 1s }
        - name: no_such_filter
    "#;
    let yaml = config(origin.addr, filters).yaml();
    // Where the YAML text puts a line (1-based), and the error message that names `what`.
    let line_of = |needle: &str| {
        1 + yaml
            .lines()
            .position(|l| l.trim_start().starts_with(needle))
            .expect("in the config")
    };
    let path = write_config(&yaml);
    let out = run_ringway(&["validate", "-c", path.to_str().expect("path")], WAIT);
    assert!(!out.status.success(), "{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    let message = |what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no error names {what}: {text}"))
    };
    let unknown = message("http_filters[1].name: unknown HTTP filter \"no_such_filter\"");
    let name_line = line_of("- name: no_such_filter");
    assert!(
        unknown.ends_with(&format!("(line {name_line})")),
        "{unknown}\n{yaml}"
    );
    let zero = message("http_filters[0].token_bucket.max_tokens");
    let bucket_line = line_of("token_bucket:");
    assert!(
        zero.ends_with(&format!("(line {bucket_line})")),
        "{zero}\n{yaml}"
    );
}

#[test]
fn empty_chain_and_every_path_prefix_still_proxy() {
    let (origin, hits) = scripted(200, "", b"ok");
    let yaml = without_routes(origin.addr, "")
        .hcm_extra("http_filters: []")
        .route(r#"prefix: """#, "route: { cluster: origin }")
        .yaml();
    assert!(
        yaml.contains("\n              http_filters: []\n"),
        "{yaml}"
    );
    let p = Proxy::start(&yaml);
    assert_eq!(
        req(&p, "GET /anything HTTP/1.1\r\nHost: h\r\n\r\n").status(),
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    p.stop();
}
