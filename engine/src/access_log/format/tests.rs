//! Unit tests of rendering on hand-built `StreamInfo`s (parsing: `logfmt::tests`).

use std::time::{Duration, Instant};

use super::*;
use crate::error::LocalReason;

fn line(f: &Format, si: &StreamInfo, cluster: Option<&str>) -> String {
    let mut out = Vec::new();
    f.render(si, cluster, &mut out);
    String::from_utf8(out).unwrap()
}

fn forwarded() -> StreamInfo {
    let t0 = Instant::now();
    StreamInfo {
        seen: true,
        start: Some(t0),
        version: Some(Version::Http11),
        status: 201,
        cluster: Some(0),
        upstream: Some("10.0.0.1:8080".parse().unwrap()),
        upstream_reused: true,
        bytes_received: 5,
        bytes_sent: 7,
        t_upstream_ready: Some(t0 + Duration::from_micros(1500)),
        t_request_sent: Some(t0 + Duration::from_millis(3)),
        t_first_byte: Some(t0 + Duration::from_millis(10)),
        t_last_byte: Some(t0 + Duration::from_millis(12)),
        req: {
            let mut r = ringway_filters::RequestHead::new(b"POST", "http", b"a.com", b"/up?x=1");
            r.headers.append("User-Agent", "t\"q");
            r.headers.append("X-Long", "abcdefgh");
            r
        },
        downstream_remote: Some("[::1]:5555".parse().unwrap()),
        ..StreamInfo::default()
    }
}

#[test]
fn text_commands() {
    let f = Format::text(
        "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% \
         %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %REQ(:AUTHORITY)% \
         %REQ(X-LONG):3% %REQ(MISSING)% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% \
         %RESPONSE_CODE_DETAILS% %UPSTREAM_CONNECT_TIME% %UPSTREAM_REQUEST_SEND_TIME% %UPSTREAM_FIRST_BYTE_TIME% \
         %UPSTREAM_REUSED% %REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% 100%%",
    )
    .unwrap();
    assert_eq!(
        line(&f, &forwarded(), Some("origin")),
        "POST /up?x=1 HTTP/1.1 201 - 5 7 12 10.0.0.1:8080 origin a.com abc - [::1]:5555 ::1 \
         via_upstream 1.500 1.500 7.000 true 3 10 2 100%\n"
    );
}

#[test]
fn json_types() {
    let f = Format::json([
        ("code", "%RESPONSE_CODE%"),
        ("ua", "%REQ(USER-AGENT)%"),
        ("missing", "%REQ(NOPE)%"),
        ("reused", "%UPSTREAM_REUSED%"),
        ("connect", "%UPSTREAM_CONNECT_TIME%"),
        ("mixed", "code=%RESPONSE_CODE% %REQ(NOPE)%"),
        ("flags", "%RESPONSE_FLAGS%"),
    ])
    .unwrap();
    let l = line(&f, &forwarded(), None);
    assert!(l.ends_with("}\n"));
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["code"], 201);
    assert_eq!(v["ua"], "t\"q");
    assert!(v["missing"].is_null());
    assert_eq!(v["reused"], true);
    assert_eq!(v["connect"], 1.5);
    assert_eq!(v["mixed"], "code=201 -");
    assert_eq!(v["flags"], "-");
}

#[test]
fn flags() {
    let mut si = StreamInfo {
        seen: true,
        local_reason: Some(LocalReason::UpstreamReset),
        retried: true,
        ..StreamInfo::default()
    };
    assert_eq!(
        response_flags(&si).0[..response_flags(&si).1],
        ["UC", "URX"]
    );
    si.local_reason = Some(LocalReason::NoRoute);
    si.retried = false;
    assert_eq!(response_flags(&si).0[..1], ["NR"]);
    let si = StreamInfo {
        seen: true,
        downstream_reset: true,
        protocol_error: Some("bad_request"),
        ..StreamInfo::default()
    };
    assert_eq!(response_flags(&si).0[..response_flags(&si).1], ["DPE"]);
    assert_eq!(response_code_details(&si), Some("bad_request"));
}

#[test]
fn default_format_parses() {
    let f = Format::envoy_default();
    let l = line(&f, &forwarded(), None);
    assert!(
        l.contains("\"POST /up?x=1 HTTP/1.1\" 201 - 5 7 12 - \"-\" \"t\"q\""),
        "{l}"
    );
}
