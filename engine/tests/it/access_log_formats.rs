//! Access logs (issue 12, point 3): every format command on real requests through the real
//! proxy — a forwarded 200, and the proxy's own 404 NR, 503 UF, 504 UT, 502 UPE and 400 DPE —
//! in text and JSON; stdout and file destinations; Envoy's default format; byte counts for an
//! upload and a download; the timing breakdown; response headers (`%RESP(...)%`); unknown
//! commands as config errors.
use crate::support;
use std::{collections::HashMap, net::SocketAddr, path::Path};

use serde_json::Value;
use support::*;

/// Every command, as a JSON format (one key per command).
const JSON_ALL: &[(&str, &str)] = &[
    ("start", "%START_TIME%"),
    ("start_custom", "%START_TIME(%Y-%m-%dT%H:%M:%S%z)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("test_id", "%REQ(X-TEST)%"),
    ("test_id_short", "%REQ(X-TEST):2%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("protocol", "%PROTOCOL%"),
    ("code", "%RESPONSE_CODE%"),
    ("details", "%RESPONSE_CODE_DETAILS%"),
    ("flags", "%RESPONSE_FLAGS%"),
    ("rx", "%BYTES_RECEIVED%"),
    ("tx", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("req_duration", "%REQUEST_DURATION%"),
    ("resp_duration", "%RESPONSE_DURATION%"),
    ("resp_tx_duration", "%RESPONSE_TX_DURATION%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("cluster", "%UPSTREAM_CLUSTER%"),
    ("remote", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("remote_ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
    ("connect", "%UPSTREAM_CONNECT_TIME%"),
    ("send", "%UPSTREAM_REQUEST_SEND_TIME%"),
    ("first_byte", "%UPSTREAM_FIRST_BYTE_TIME%"),
    ("reused", "%UPSTREAM_REUSED%"),
    ("resp_type", "%RESP(CONTENT-TYPE)%"),
    ("resp_alt", "%RESP(X-NOPE?CONTENT-TYPE):4%"),
    ("resp_missing", "%RESP(X-NOPE)%"),
    (
        "mixed",
        "%RESPONSE_CODE%/%RESPONSE_FLAGS%/%UPSTREAM_CLUSTER%",
    ),
];

const TEXT_ALL: &str = "%REQ(X-TEST)% %REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% \
%RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% \
%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REUSED% %UPSTREAM_CONNECT_TIME%";

fn access_log_yaml(entries: &[String]) -> String {
    let mut out = String::from("access_log:\n");
    for e in entries {
        out.push_str(e);
    }
    out
}

fn file_entry(path: &Path, format: Option<&str>) -> String {
    let mut s = format!("  - path: {}\n", yaml_str(&path.display().to_string()));
    if let Some(f) = format {
        s.push_str(&format!("    format: {}\n", yaml_str(f)));
    }
    s
}

fn json_entry(path: &Path, fields: &[(&str, &str)]) -> String {
    let mut s = format!(
        "  - path: {}\n    json_format:\n",
        yaml_str(&path.display().to_string())
    );
    for (k, v) in fields {
        s.push_str(&format!("      {k}: {}\n", yaml_str(v)));
    }
    s
}

struct Setup {
    origin: BenchOrigin,
    garbage: RawOrigin,
    refused: SocketAddr,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            origin: BenchOrigin::start(&[]),
            garbage: RawOrigin::start(|mut c| {
                if c.read_request().is_some() {
                    c.write(b"NOT HTTP AT ALL\r\n\r\n");
                }
            }),
            refused: closed_port(),
        }
    }

    fn config(&self, access_log: &str) -> String {
        self.config_with_garbage(access_log, self.garbage.addr)
    }

    /// [`Setup::config`] with cluster `garbage` at `garbage`.
    fn config_with_garbage(&self, access_log: &str, garbage: SocketAddr) -> String {
        ConfigBuilder::new()
            .hcm_extra(access_log)
            .virtual_host("known", &["known.test"])
            .route(
                "prefix: /delay/",
                "route: { cluster: origin, timeout: 200ms }",
            )
            .route_prefix("/refused", "refused")
            .route_prefix("/garbage", "garbage")
            .route_prefix("/", "origin")
            .cluster("origin", &[self.origin.addr])
            .connect_timeout("1s")
            .cluster("refused", &[self.refused])
            .connect_timeout("1s")
            .cluster("garbage", &[garbage])
            .connect_timeout("1s")
            .yaml()
    }
}

/// A request with an `x-test` header naming it, on a fresh connection.
fn tagged(addr: SocketAddr, host: &str, path: &str, tag: &str) -> RawMessage {
    request(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Test: {tag}\r\nUser-Agent: al-test\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// Send the six kinds of request; returns the responses by tag.
fn send_all(addr: SocketAddr) -> HashMap<&'static str, RawMessage> {
    let mut out = HashMap::new();
    out.insert("ok", tagged(addr, "known.test", "/echo", "ok"));
    out.insert("nr", tagged(addr, "unknown.test", "/echo", "nr"));
    out.insert("uf", tagged(addr, "known.test", "/refused", "uf"));
    out.insert("ut", tagged(addr, "known.test", "/delay/3000", "ut"));
    out.insert("upe", tagged(addr, "known.test", "/garbage", "upe"));
    out.insert(
        "dpe",
        request(
            addr,
            b"GET /echo HTTP/1.1\r\nHost: known.test\r\nContent-Length: zz\r\n\r\n",
        ),
    );
    assert_eq!(out["ok"].status(), 200);
    assert_eq!(out["nr"].status(), 404);
    assert_eq!(out["uf"].status(), 503);
    assert_eq!(out["ut"].status(), 504);
    assert_eq!(out["upe"].status(), 502);
    assert_eq!(out["dpe"].status(), 400);
    out
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a JSON number, got {v}"))
}

#[test]
fn access_log_json_every_command_on_every_outcome() {
    let s = Setup::new();
    let dir = scratch_dir();
    let log = dir.join("access.json");
    let proxy = Proxy::start(&s.config(&access_log_yaml(&[json_entry(&log, JSON_ALL)])));
    let replies = send_all(proxy.addr);
    let lines = wait_lines(&log, 6);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let mut by_tag: HashMap<String, Value> = HashMap::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "keys in alphabetical order");
        let tag = match &v["test_id"] {
            Value::String(t) => t.clone(),
            _ => "dpe".to_string(),
        };
        by_tag.insert(tag, v);
    }

    // The forwarded 200.
    let ok = &by_tag["ok"];
    let start = ok["start"].as_str().unwrap();
    assert!(
        start.len() == 24 && start.ends_with('Z') && start.as_bytes()[10] == b'T',
        "{start}"
    );
    let custom = ok["start_custom"].as_str().unwrap();
    assert!(custom.ends_with("+0000") && custom.len() == 24, "{custom}");
    assert_eq!(&start[..19], &custom[..19], "same instant, two formats");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/echo");
    assert_eq!(ok["authority"], "known.test");
    assert_eq!(ok["test_id_short"], "ok");
    let rid = ok["request_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "generated x-request-id is logged: {rid}");
    let echoed = echo_json(&replies["ok"]);
    let sent_rid = echo_header_list(&echoed)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v);
    assert_eq!(
        sent_rid.as_deref(),
        Some(rid),
        "logged id is the one sent upstream"
    );
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["code"], 200);
    assert_eq!(ok["details"], "via_upstream");
    assert_eq!(ok["flags"], "-");
    assert_eq!(ok["rx"], 0);
    assert_eq!(num(&ok["tx"]) as usize, replies["ok"].body.len());
    assert_eq!(ok["upstream_host"], s.origin.addr.to_string());
    assert_eq!(ok["cluster"], "origin");
    let remote = ok["remote"].as_str().unwrap();
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    assert_eq!(ok["remote_ip"], "127.0.0.1");
    assert_eq!(ok["reused"], false, "first request opens a connection");
    let (connect, send, first) = (
        num(&ok["connect"]),
        num(&ok["send"]),
        num(&ok["first_byte"]),
    );
    let duration = num(&ok["duration"]);
    assert!(connect >= 0.0 && send >= 0.0 && first >= 0.0);
    assert!(
        connect + send + first <= duration + 1.0,
        "phases {connect}+{send}+{first} within duration {duration} (whole ms)"
    );
    assert!(num(&ok["req_duration"]) <= num(&ok["resp_duration"]));
    assert!(num(&ok["resp_duration"]) <= duration);
    assert!(num(&ok["resp_tx_duration"]) <= duration);
    assert_eq!(ok["mixed"], "200/-/origin");
    // Response headers as sent to the client: the origin's type, the fallback name, truncation.
    let ctype = replies["ok"].header("content-type").expect("origin type");
    assert_eq!(ok["resp_type"], ctype);
    assert_eq!(ok["resp_alt"], ctype[..4]);
    assert!(ok["resp_missing"].is_null(), "{ok}");

    // 404: no route.
    let nr = &by_tag["nr"];
    assert_eq!(nr["code"], 404);
    assert_eq!(nr["flags"], "NR");
    assert_eq!(nr["details"], "no_route");
    assert_eq!(nr["authority"], "unknown.test");
    for k in [
        "upstream_host",
        "cluster",
        "reused",
        "connect",
        "send",
        "first_byte",
    ] {
        assert!(nr[k].is_null(), "{k} is null without an upstream: {nr}");
    }
    assert_eq!(nr["mixed"], "404/NR/-");
    // A local reply's own head.
    assert_eq!(nr["resp_type"], "text/plain");
    assert_eq!(num(&nr["tx"]) as usize, replies["nr"].body.len());

    // 503: connect failure.
    let uf = &by_tag["uf"];
    assert_eq!(uf["code"], 503);
    assert_eq!(uf["flags"], "UF");
    assert_eq!(uf["details"], "connect_failure");
    assert_eq!(uf["upstream_host"], s.refused.to_string());
    assert_eq!(uf["cluster"], "refused");

    // 504: upstream timeout (route timeout 200ms, origin delays 3s).
    let ut = &by_tag["ut"];
    assert_eq!(ut["code"], 504);
    assert_eq!(ut["flags"], "UT");
    assert_eq!(ut["details"], "upstream_timeout");
    assert!(num(&ut["duration"]) >= 190.0, "{ut}");
    assert!(ut["first_byte"].is_null());

    // 502: the upstream answered garbage.
    let upe = &by_tag["upe"];
    assert_eq!(upe["code"], 502);
    assert_eq!(upe["flags"], "UPE");
    assert_eq!(upe["details"], "upstream_protocol_error");
    assert_eq!(upe["cluster"], "garbage");

    // 400: malformed request.
    let dpe = &by_tag["dpe"];
    assert_eq!(dpe["code"], 400);
    assert_eq!(dpe["flags"], "DPE");
    assert_eq!(
        dpe["details"].as_str(),
        replies["dpe"].header("x-ringway-reason"),
        "details is the x-ringway-reason tag"
    );
    // The head never parsed: no protocol, path or cluster.
    assert!(dpe["protocol"].is_null() && dpe["path"].is_null() && dpe["cluster"].is_null());
    proxy.stop();
}

#[test]
fn access_log_text_every_outcome_to_a_file() {
    let s = Setup::new();
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let proxy = Proxy::start(&s.config(&access_log_yaml(&[file_entry(&log, Some(TEXT_ALL))])));
    send_all(proxy.addr);
    let lines = wait_lines(&log, 6);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let find = |tag: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{tag} ")))
            .unwrap_or_else(|| panic!("no line for {tag}: {lines:#?}"))
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    let ok = find("ok");
    assert_eq!(
        ok[1..9],
        [
            "GET",
            "/echo",
            "HTTP/1.1",
            "200",
            "-",
            "via_upstream",
            "0",
            &ok[8]
        ]
    );
    assert!(ok[8].parse::<u64>().unwrap() > 0, "bytes sent");
    assert!(ok[9].parse::<u64>().is_ok(), "duration is a number");
    assert_eq!(ok[10], s.origin.addr.to_string());
    assert_eq!(ok[11..14], ["origin", "127.0.0.1", "false"]);
    assert!(ok[14].parse::<f64>().is_ok(), "connect time: {}", ok[14]);
    let nr = find("nr");
    assert_eq!(nr[4..7], ["404", "NR", "no_route"]);
    assert_eq!(nr[10..12], ["-", "-"], "missing values are -");
    assert_eq!(find("uf")[4..7], ["503", "UF", "connect_failure"]);
    assert_eq!(find("ut")[4..7], ["504", "UT", "upstream_timeout"]);
    assert_eq!(find("upe")[4..7], ["502", "UPE", "upstream_protocol_error"]);
    // The malformed request has no captured head: `-` for its header.
    let dpe = find("-");
    assert_eq!(dpe[4..6], ["400", "DPE"]);
    proxy.stop();
}

#[test]
fn access_log_stdout_and_default_format() {
    let s = Setup::new();
    let dir = scratch_dir();
    let default_log = dir.join("default.log");
    let proxy = Proxy::start(&s.config(&access_log_yaml(&[
        "  - path: stdout\n    format: \"AL %RESPONSE_CODE% %REQ(:PATH)%\"\n".to_string(),
        file_entry(&default_log, None),
    ])));
    let r = request(
        proxy.addr,
        b"GET /echo HTTP/1.1\r\nHost: known.test\r\nUser-Agent: curl/8\r\nX-Request-Id: rid-1\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        tagged(proxy.addr, "unknown.test", "/nowhere", "x").status(),
        404
    );
    let out = proxy.stdout_lines(2, |l| l.starts_with("AL "));
    assert_eq!(out, ["AL 200 /echo", "AL 404 /nowhere"]);

    let lines = wait_lines(&default_log, 2);
    let l = &lines[0];
    // [2026-11-25T04:09:07.123Z] "GET /echo HTTP/1.1" 200 - 0 N D - "10.1.2.3, 127.0.0.1" "curl/8" "rid-1" "known.test" "ADDR"
    assert!(l.starts_with('[') && l.as_bytes()[25] == b']', "{l}");
    let rest = &l[27..];
    let body_len = r.body.len();
    let (head, tail) = rest.split_at(rest.find(" - \"").expect(l));
    let fields: Vec<&str> = head.split(' ').collect();
    assert_eq!(
        fields[..6],
        ["\"GET", "/echo", "HTTP/1.1\"", "200", "-", "0"],
        "{l}"
    );
    assert_eq!(fields[6], body_len.to_string(), "{l}");
    assert!(fields[7].parse::<u64>().is_ok(), "{l}");
    assert_eq!(
        tail,
        format!(
            // The request as forwarded (Envoy's rule): the client's address appended.
            " - \"10.1.2.3, 127.0.0.1\" \"curl/8\" \"rid-1\" \"known.test\" \"{}\"",
            s.origin.addr
        ),
        "{l}"
    );
    assert!(
        lines[1].contains("\"GET /nowhere HTTP/1.1\" 404 NR "),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(" \"-\""),
        "no upstream host: {}",
        lines[1]
    );
    proxy.stop();
}

#[test]
fn access_log_byte_counts_for_upload_and_download() {
    let s = Setup::new();
    let dir = scratch_dir();
    let log = dir.join("bytes.json");
    let proxy = Proxy::start(&s.config(&access_log_yaml(&[json_entry(
        &log,
        &[
            ("path", "%REQ(:PATH)%"),
            ("rx", "%BYTES_RECEIVED%"),
            ("tx", "%BYTES_SENT%"),
            ("code", "%RESPONSE_CODE%"),
            ("reused", "%UPSTREAM_REUSED%"),
        ],
    )])));
    let body = vec![b'u'; 100_000];
    let mut c = Client::connect(proxy.addr);
    let mut up = format!(
        "POST /echo HTTP/1.1\r\nHost: known.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    up.extend_from_slice(&body);
    let r = c.roundtrip(&up);
    assert_eq!(r.status(), 200);
    let r = c.get("known.test", "/bytes/200000?cl=1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body.len(), 200_000);
    let r = c.get("known.test", "/bytes/150000");
    assert_eq!(r.status(), 200);
    let lines = wait_lines(&log, 3);
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["path"], "/echo");
    assert_eq!(v[0]["rx"], 100_000);
    assert_eq!(v[1]["rx"], 0);
    assert_eq!(v[1]["tx"], 200_000);
    assert_eq!(v[2]["tx"], 150_000, "chunked: payload bytes, not framing");
    assert_eq!(
        v[2]["reused"], true,
        "keep-alive upstream connection reused"
    );
    proxy.stop();
}

#[test]
fn access_log_unknown_command_is_a_config_error_with_its_place() {
    use ringway_engine::config::{load_str, Format};
    let s = Setup::new();
    let yaml = s.config(&access_log_yaml(&[
        "  - path: /tmp/x.log\n    format: \"%RESPONSE_CODE% %NOT_A_COMMAND%\"\n"
            .to_string(),
        "  - path: stdout\n    json_format:\n      good: \"%DURATION%\"\n      bad: \"%REQ(:PATH)% %ALSO_BAD(x)%\"\n"
            .to_string(),
        "  - path: stdout\n    format: \"%DURATION%\"\n    json_format: {a: \"%DURATION%\"}\n"
            .to_string(),
    ]));
    let errs = load_str(&yaml, Format::Yaml, "t.yaml").expect_err("must not load");
    let base = "listeners[0].filter_chains[0].filters[0].http_connection_manager.access_log";
    let find = |path: &str| {
        errs.errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {errs}"))
            .clone()
    };
    let e = find(&format!("{base}[0].format"));
    assert!(e.message.contains("%NOT_A_COMMAND%"), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
    let e = find(&format!("{base}[1].json_format.bad"));
    assert!(e.message.contains("%ALSO_BAD%"), "{e}");
    assert_eq!(e.line, Some(13), "{e}");
    let e = find(&format!("{base}[2].json_format"));
    assert!(e.message.contains("not both"), "{e}");
    assert_eq!(errs.errors.len(), 3, "{errs}");

    // And the binary refuses to start with it, naming the place.
    let p = write_config(&yaml);
    let out = run_ringway(
        &["validate", "-c", p.to_str().unwrap()],
        std::time::Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!("{base}[0].format")) && out.stderr.contains("(line 9)"),
        "{}",
        out.stderr
    );
}

#[test]
fn access_log_resets_mid_response_are_dc_and_uc() {
    // The upstream promises 100000 bytes, sends 10 and closes.
    let cut = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789");
        }
    });
    let s = Setup::new();
    let dir = scratch_dir();
    let log = dir.join("resets.json");
    // Cluster `garbage` is the cut origin here.
    let yaml = s.config_with_garbage(
        &access_log_yaml(&[json_entry(
            &log,
            &[
                ("path", "%REQ(:PATH)%"),
                ("code", "%RESPONSE_CODE%"),
                ("flags", "%RESPONSE_FLAGS%"),
                ("tx", "%BYTES_SENT%"),
            ],
        )]),
        cut.addr,
    );
    let proxy = Proxy::start(&yaml);
    // UC: the upstream goes away during the body.
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /garbage/cut HTTP/1.1\r\nHost: known.test\r\n\r\n");
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200);
    assert!(
        c.read_to_eof().is_some(),
        "the proxy closes the cut response"
    );
    // DC: the client goes away during a large download.
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /bytes/100000000 HTTP/1.1\r\nHost: known.test\r\n\r\n");
    let head = c.read_head().expect("response head");
    assert_eq!(head.status(), 200);
    drop(c);
    let lines = wait_lines(&log, 2);
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_path = |p: &str| {
        v.iter()
            .find(|x| x["path"] == p)
            .unwrap_or_else(|| panic!("no line for {p}: {lines:#?}"))
    };
    let uc = by_path("/garbage/cut");
    assert_eq!(uc["code"], 200);
    assert_eq!(uc["flags"], "UC");
    assert_eq!(uc["tx"], 10, "what went out before the body broke off");
    let dc = by_path("/bytes/100000000");
    assert_eq!(dc["code"], 200);
    assert_eq!(dc["flags"], "DC");
    assert!(num(&dc["tx"]) < 100_000_000.0, "{dc}");
    proxy.stop();
}
