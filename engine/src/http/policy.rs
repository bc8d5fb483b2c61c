//! The connection manager's header policy, applied to the stream model before the filters run
//! (as Envoy's connection manager does): `x-forwarded-for` gets the client's address,
//! `x-forwarded-proto` the connection's scheme, `x-request-id` a generated id when the client
//! sent none, and the trace context headers ringway's span (when tracing is configured).
//! Codec-neutral: it edits a [`RequestHead`], never wire bytes; what it needs to know about the
//! client's headers was noted while the codec decoded them ([`Seen`]), so it never scans the
//! map for them again.

use std::net::IpAddr;

use ringway_filters::RequestHead;

use crate::{http::h1::model::Seen, trace::SpanCtx};

/// The client IP as text, on the stack.
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write as _;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    &buf[..n]
}

/// Apply the forwarding headers. `request_id`: the id to add when the client sent none (empty:
/// add none).
pub fn forwarding(head: &mut RequestHead, seen: Seen, client: IpAddr, request_id: &[u8]) {
    let mut buf = [0u8; 48];
    let ip = ip_text(client, &mut buf);
    let appended = seen.forwarded_for
        && head.headers.modify_last(b"x-forwarded-for", |old, out| {
            out.extend_from_slice(old);
            out.extend_from_slice(b", ");
            out.extend_from_slice(ip);
        });
    if !appended {
        head.headers.append("x-forwarded-for", ip);
    }
    head.headers.append("x-forwarded-proto", head.scheme);
    if !seen.request_id && !request_id.is_empty() {
        head.headers.append("x-request-id", request_id);
    }
}

/// Replace the client's trace context headers with ringway's span.
pub fn trace_headers(head: &mut RequestHead, span: &SpanCtx) {
    let keep = span.keep_tracestate;
    head.headers.retain(|n, _| {
        std::str::from_utf8(n).map_or(true, |n| !crate::trace::context::is_replaced(n, keep))
    });
    let lines = span.write_headers();
    for line in lines.as_bytes().split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            head.headers.append(&line[..colon], value);
        }
    }
}
