//! Trailers of chunked HTTP/1 bodies end to end: dropped by default (Envoy's rule), carried
//! both ways when `http_protocol_options: {enable_trailers: true}` is set on both sides, seen
//! and edited by filters' trailers hooks (`header_mutation`'s trailer lists), kept through the
//! `buffer` filter, and refused when malformed. Real proxy, raw origins and clients.

use crate::support;

use std::net::SocketAddr;

use support::*;

/// Split a complete chunked body at the front of `raw` into its payload and its trailer lines
/// (lower-cased). `None` if incomplete.
fn split_chunked(raw: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let e = at + find(&raw[at..], b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[at..e]).ok()?.trim(), 16).ok()?;
        at = e + 2;
        if size == 0 {
            let mut lines = Vec::new();
            loop {
                let e = at + find(&raw[at..], b"\r\n")?;
                if e == at {
                    return Some((body, lines));
                }
                lines.push(String::from_utf8_lossy(&raw[at..e]).to_ascii_lowercase());
                at = e + 2;
            }
        }
        body.extend_from_slice(raw.get(at..at + size)?);
        at += size + 2;
    }
}

/// The request body and trailer lines an origin received (the first request's).
fn received_request(origin: &RawOrigin) -> (String, Vec<u8>, Vec<String>) {
    let raw = origin.received_bytes();
    let end = find(&raw, b"\r\n\r\n").expect("request head") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let (body, trailers) = split_chunked(&raw[end..]).expect("chunked request body");
    (head, body, trailers)
}

/// An origin that reads each request (chunked bodies included) and answers `200` with a chunked
/// body `hello` and the trailer section `trailers` (raw lines, each ending in CRLF).
fn trailing_origin(trailers: &'static str) -> RawOrigin {
    RawOrigin::start(move |mut c| {
        while c.read_request_framed().is_some() {
            let resp = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n{trailers}\r\n"
            );
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    })
}

/// Send `raw` (which asks for `connection: close`) and return the response head and its chunked
/// body split into payload and trailer lines.
fn exchange(p: &Proxy, raw: &str) -> (String, Vec<u8>, Vec<String>) {
    let mut c = Client::connect(p.addr);
    c.send(raw.as_bytes());
    let all = c.read_to_eof().expect("response");
    let end = find(&all, b"\r\n\r\n").expect("response head") + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let (body, trailers) = split_chunked(&all[end..])
        .unwrap_or_else(|| panic!("chunked body in {}", String::from_utf8_lossy(&all)));
    (head, body, trailers)
}

const POST: &str =
    "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n\
    4\r\nabcd\r\n3\r\nefg\r\n0\r\nx-checksum: 42\r\nx-drop-me: 1\r\ncontent-length: 99\r\n\r\n";

fn config(origin: SocketAddr, filters: &str, listener_on: bool, cluster_on: bool) -> String {
    let mut b = ConfigBuilder::simple(origin);
    if !filters.is_empty() {
        b = b.http_filters(filters);
    }
    if listener_on {
        b = b.hcm_extra("http_protocol_options: { enable_trailers: true }");
    }
    if cluster_on {
        b = b.cluster_extra("http_protocol_options: { enable_trailers: true }");
    }
    b.yaml()
}

#[test]
fn trailers_are_dropped_unless_both_sides_enable_them() {
    for (listener_on, cluster_on) in [(false, false), (true, false), (false, true)] {
        let origin = trailing_origin("x-status: done\r\n");
        let p = Proxy::start(&config(origin.addr, "", listener_on, cluster_on));
        let (head, body, trailers) = exchange(&p, POST);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"hello");
        assert!(
            trailers.is_empty(),
            "{listener_on}/{cluster_on}: {trailers:?}"
        );
        let (_, up_body, up_trailers) = received_request(&origin);
        assert_eq!(up_body, b"abcdefg");
        assert!(
            up_trailers.is_empty(),
            "{listener_on}/{cluster_on}: {up_trailers:?}"
        );
        p.stop();
    }
}

#[test]
fn trailers_pass_both_ways_without_forbidden_fields() {
    let origin = trailing_origin("x-status: done\r\nset-cookie: a=b\r\n");
    let p = Proxy::start(&config(origin.addr, "", true, true));
    let (head, body, trailers) = exchange(&p, POST);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, b"hello");
    assert_eq!(trailers, vec!["x-status: done".to_string()]);
    let (up_head, up_body, up_trailers) = received_request(&origin);
    assert!(up_head.contains("transfer-encoding: chunked"), "{up_head}");
    assert_eq!(up_body, b"abcdefg");
    // content-length may not be a trailer: dropped; the others pass.
    assert_eq!(up_trailers, vec!["x-checksum: 42", "x-drop-me: 1"]);
    p.stop();
}

#[test]
fn filters_edit_trailers_in_both_directions() {
    let origin = trailing_origin("x-status: done\r\nx-internal: secret\r\n");
    let filters = r#"
        - name: header_mutation
          mutations:
            request_trailers_mutations:
              - remove: x-drop-me
              - append: { header: { key: x-peer, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } }
            response_trailers_mutations:
              - remove: x-internal
              - append: { header: { key: x-route, value: "%ROUTE_NAME%|%UPSTREAM_CLUSTER%" } }
    "#;
    let p = Proxy::start(&config(origin.addr, filters, true, true));
    let (_, body, trailers) = exchange(&p, POST);
    assert_eq!(body, b"hello");
    assert_eq!(trailers, vec!["x-status: done", "x-route: |origin"]);
    let (_, up_body, up_trailers) = received_request(&origin);
    assert_eq!(up_body, b"abcdefg");
    assert_eq!(up_trailers, vec!["x-checksum: 42", "x-peer: 127.0.0.1"]);

    // A request without trailers: the hooks do not run, the body still ends cleanly.
    let (_, body, trailers) = exchange(
        &p,
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    assert_eq!(body, b"hello");
    assert_eq!(trailers.len(), 2, "{trailers:?}");
    p.stop();
}

#[test]
fn a_buffered_body_keeps_its_trailers() {
    let origin = trailing_origin("");
    let filters = r#"
        - name: buffer
          max_request_bytes: 1024
        - name: header_mutation
          mutations:
            request_trailers_mutations:
              - append: { header: { key: x-seen, value: "yes" } }
    "#;
    let p = Proxy::start(&config(origin.addr, filters, true, true));
    let (head, body, trailers) = exchange(&p, POST);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"hello");
    assert!(trailers.is_empty(), "{trailers:?}");
    let (up_head, up_body, up_trailers) = received_request(&origin);
    assert!(up_head.contains("transfer-encoding: chunked"), "{up_head}");
    assert_eq!(up_body, b"abcdefg");
    assert_eq!(
        up_trailers,
        vec!["x-checksum: 42", "x-drop-me: 1", "x-seen: yes"]
    );
    p.stop();
}

#[test]
fn malformed_trailers_are_a_400_when_decoded() {
    let origin = trailing_origin("");
    let p = Proxy::start(&config(origin.addr, "", true, true));
    let r = request(
        p.addr,
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nno colon here\r\n\r\n",
    );
    assert_eq!(r.status(), 400, "{}", r.body_str());
    // The proxy keeps serving.
    let ok = get(p.addr, "h", "/");
    assert_eq!(ok.status(), 200);
    p.stop();
}
