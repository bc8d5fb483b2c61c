//! Filters with data hooks on streamed bodies, end to end: the `decompressor` undoes a gzip
//! request body piece by piece while the client is still sending it (the origin sees the first
//! plain bytes before the last compressed ones are sent), undoes a gzip response for a client,
//! and refuses a corrupt request body with a 400 while the proxy keeps serving. Real proxy, raw
//! origins and clients; flate2 makes the compressed bodies.

use crate::support;

use std::io::Write;

use flate2::{write::GzEncoder, Compression, FlushCompress};
use support::*;

/// `n` lines of text that compress well.
fn text(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            format!("line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// An origin that answers each request with what it received: `ce=<content-encoding>
/// ae=<accept-encoding> te=<transfer-encoding> len=<body length>` and the body's first line.
fn reporting_origin() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(m) = c.read_request_framed() {
            let first = m.body.split(|&b| b == b'\n').next().unwrap_or(b"").to_vec();
            let report = format!(
                "ce={} ae={} te={} len={} first={}",
                m.header("content-encoding").unwrap_or("-"),
                m.header("accept-encoding").unwrap_or("-"),
                m.header("transfer-encoding").unwrap_or("-"),
                m.body.len(),
                String::from_utf8_lossy(&first)
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{report}",
                report.len()
            );
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    })
}

const DECOMPRESSOR: &str = r#"
    - name: decompressor
      decompressor_library: { name: gzip }
"#;

#[test]
fn a_gzip_request_body_is_decompressed_while_it_streams() {
    let origin = reporting_origin();
    let yaml = ConfigBuilder::simple(origin.addr)
        .admin()
        .http_filters(DECOMPRESSOR)
        .yaml();
    let (p, admin) = Proxy::start_with_admin(&yaml, &["--workers", "1"]);
    let plain = text(2000);
    let half = plain.len() / 2;
    // The first half, flushed so that it decodes on its own; then the rest.
    let (first, rest) = gzip_in_two(&plain[..half], &plain);

    let mut c = Client::connect(p.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n");
    c.send(&chunk(&first));
    // The origin sees plain text before the client has sent the end of the body: the body is
    // streamed through the filter, not buffered.
    eventually("the first decompressed bytes at the origin", || {
        find(&origin.received_bytes(), b"line 0: the quick brown fox").is_some()
    });
    assert!(
        find(
            &origin.received_bytes(),
            format!("line {}:", 1999).as_bytes()
        )
        .is_none(),
        "the end of the body reached the origin before it was sent"
    );
    c.send(&chunk(&rest));
    c.send(b"0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{}", r.body_str());
    assert_eq!(
        r.body_str(),
        format!(
            "ce=- ae=gzip te=chunked len={} first=line 0: the quick brown fox jumps over the lazy dog",
            plain.len()
        )
    );
    let stats = admin_stats(admin);
    assert_eq!(
        stats.get("http.main.decompressor.gzip.request.decompressed"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("http.main.decompressor.gzip.request.total_uncompressed_bytes"),
        Some(&(plain.len() as u64))
    );
    p.stop();
}

#[test]
fn a_gzip_response_is_decompressed_for_the_client() {
    let plain = text(500);
    let body = gzip(&plain);
    let origin = RawOrigin::start(move |mut c| {
        while c.read_request_framed().is_some() {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            if !c.write(&out) {
                break;
            }
        }
    });
    let p = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .http_filters(DECOMPRESSOR)
            .yaml(),
    );
    let r = get(p.addr, "h", "/doc");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, plain);
    p.stop();
}

/// The gzip header and a deflate stream of `plain` flushed so that it decodes on its own, and
/// the rest of the stream (the end of the deflate data and the gzip trailer) for `all`.
fn gzip_in_two(plain_first: &[u8], all: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut enc = flate2::Compress::new(Compression::default(), false);
    let mut first = gzip(b"");
    first.truncate(10); // the gzip header; then raw deflate, then the trailer
    let mut z = Vec::with_capacity(all.len() + 64);
    enc.compress_vec(plain_first, &mut z, FlushCompress::Sync)
        .expect("deflate");
    first.extend_from_slice(&z);
    let mut rest = Vec::with_capacity(all.len() + 64);
    enc.compress_vec(&all[plain_first.len()..], &mut rest, FlushCompress::Finish)
        .expect("deflate");
    let mut crc = flate2::Crc::new();
    crc.update(all);
    rest.extend_from_slice(&crc.sum().to_le_bytes());
    rest.extend_from_slice(&(all.len() as u32).to_le_bytes());
    (first, rest)
}

#[test]
fn a_corrupt_request_body_is_a_400_and_others_are_served() {
    let origin = reporting_origin();
    let p = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .http_filters(DECOMPRESSOR)
            .yaml(),
    );
    // A whole corrupt body that came with the head: 400, and the connection, whose request
    // was read to its end, serves the next request.
    let mut bad = gzip(&text(100));
    let mid = bad.len() / 2;
    for b in &mut bad[12..mid] {
        *b ^= 0x5a;
    }
    let mut raw = format!(
        "POST /up HTTP/1.1\r\nHost: h\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        bad.len()
    )
    .into_bytes();
    raw.extend_from_slice(&bad);
    let mut c = Client::connect(p.addr);
    c.send(&raw);
    let r = c.response(false);
    assert_eq!(r.status(), 400, "{}", r.body_str());
    let next = c.roundtrip(b"POST /up HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!(next.status(), 200);
    assert!(
        next.body_str().starts_with("ce=- ae=gzip te=- len=5"),
        "{}",
        next.body_str()
    );

    // Corruption in the middle of a streamed body, after its first piece went upstream: 400,
    // and the connection closes (the rest of the body is never read).
    let plain = text(400);
    let (first, _) = gzip_in_two(&plain[..plain.len() / 2], &plain);
    let mut c = Client::connect(p.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n");
    c.send(&chunk(&first));
    eventually("the first piece at the origin", || {
        find(&origin.received_bytes(), b"line 0:").is_some()
    });
    c.send(&chunk(&[0xff; 64]));
    let r = c.response(false);
    assert_eq!(r.status(), 400, "{}", r.body_str());
    assert!(c.closed(), "the connection stays open after a failed body");
    assert_eq!(get(p.addr, "h", "/").status(), 200);
    p.stop();
}

#[test]
fn the_access_log_says_why_a_filter_answered_or_ended_a_stream() {
    // The origin sends a gzip response whose deflate data is corrupt past the head.
    let mut bad = gzip(&text(300));
    let mid = bad.len() / 2;
    for b in &mut bad[12..mid] {
        *b ^= 0x5a;
    }
    let origin = RawOrigin::start(move |mut c| {
        while c.read_request_framed().is_some() {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                bad.len()
            )
            .into_bytes();
            out.extend_from_slice(&bad);
            if !c.write(&out) {
                break;
            }
        }
    });
    let log = scratch_dir().join("access.log");
    let filters = r#"
        - name: local_ratelimit
          stat_prefix: rl
          token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }
        - name: decompressor
          decompressor_library: { name: gzip }
    "#;
    let yaml = ConfigBuilder::simple(origin.addr)
        .hcm_extra(&format!(
            "access_log:\n  - path: {}\n    format: \"%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\\n\"",
            log.display()
        ))
        .http_filters(filters)
        .yaml();
    let p = Proxy::start(&yaml);
    // The first request passes the rate limit; its body fails to decode after the head went out,
    // so the client sees a 200 cut short.
    let mut c = Client::connect(p.addr);
    c.send(b"GET /doc HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = c.read_head().expect("a response head");
    assert_eq!(head.status(), 200);
    assert!(c.read_to_eof().is_some());
    // The second is refused by the rate limiter.
    let r = get(p.addr, "h", "/doc");
    assert_eq!(r.status(), 429);
    let lines = wait_lines(&log, 2);
    assert_eq!(lines, vec!["200 decompression_failed", "429 rate_limited"]);
    p.stop();
}
