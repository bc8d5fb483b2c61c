//! The connection manager's header policy, applied to the stream model before the filters run
//! (as Envoy's connection manager does): `x-forwarded-for` gets the client's address,
//! `x-forwarded-proto` the connection's scheme, `x-request-id` a generated id when the client
//! sent none, `x-forwarded-client-cert` as `forward_client_cert_details` says, and the trace
//! context headers ringway's span (when tracing is configured).
//! Codec-neutral: it edits a [`RequestHead`], never wire bytes; what it needs to know about the
//! client's headers was noted while the codec decoded them ([`Seen`]), so it never scans the
//! map for them again.

use std::net::IpAddr;

use ringway_filters::RequestHead;

use crate::{
    config::{Xfcc, XfccMode},
    http::h1::model::Seen,
    io::tls::TlsDetails,
    stream_info::SpanCtx,
};

const XFCC: &str = "x-forwarded-client-cert";

/// `x-forwarded-client-cert` as `forward_client_cert_details` says (Envoy's semantics). Called
/// only when the client sent the header, or the connection has a client certificate and the
/// mode adds one: a plain request pays nothing.
pub fn client_cert(head: &mut RequestHead, seen: Seen, x: &Xfcc, tls: Option<&TlsDetails>) {
    let peer = tls.and_then(|t| t.peer.as_ref());
    let keep = match x.mode {
        XfccMode::Sanitize => false,
        XfccMode::AlwaysForwardOnly => true,
        XfccMode::ForwardOnly | XfccMode::AppendForward => peer.is_some(),
        XfccMode::SanitizeSet => false,
    };
    if seen.client_cert && !keep {
        head.headers.remove(XFCC);
    }
    let (Some(t), Some(p)) = (tls, peer.filter(|_| x.sets())) else {
        return;
    };
    let e = t.xfcc.get_or_init(|| element(p, x));
    let appended = x.mode == XfccMode::AppendForward
        && seen.client_cert
        && head.headers.modify_last(XFCC.as_bytes(), |old, out| {
            out.extend_from_slice(old);
            out.push(b',');
            out.extend_from_slice(e.as_bytes());
        });
    if !appended {
        head.headers.append(XFCC, e.as_bytes());
    }
}

/// The `x-forwarded-client-cert` element for a client certificate, as `x` asks.
fn element(p: &crate::x509::PeerCert, x: &Xfcc) -> Box<str> {
    let mut e = format!("Hash={}", p.fingerprint_256);
    if x.cert {
        e.push_str(";Cert=\"");
        url_encode(&p.pem, &mut e);
        e.push('"');
    }
    if x.chain {
        // The chain as the client sent it is not kept past the handshake: its first
        // certificate, the client's own, is what Envoy's `Chain` starts with.
        e.push_str(";Chain=\"");
        url_encode(&p.pem, &mut e);
        e.push('"');
    }
    if x.subject {
        e.push_str(";Subject=\"");
        e.push_str(&p.subject.replace('\\', "\\\\").replace('"', "\\\""));
        e.push('"');
    }
    if x.uri {
        for u in &p.uri_sans {
            e.push_str(";URI=");
            e.push_str(u);
        }
    }
    if x.dns {
        for d in &p.dns_sans {
            e.push_str(";DNS=");
            e.push_str(d);
        }
    }
    e.into_boxed_str()
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The client IP as text, on the stack. IPv4 (the common case) is written digit by digit:
/// `core::fmt` cost more than the rest of the policy together.
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{ip}");
            let n = cur.position() as usize;
            &buf[..n]
        }
    }
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

#[cfg(test)]
mod tests {
    //! The policy on decoded requests, checked on the head the codec then sends upstream.

    use super::*;

    #[test]
    fn ip_text_matches_display() {
        let mut buf = [0u8; 48];
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "127.0.0.1",
            "192.168.10.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
        }
        for a in 0..=255u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(a, 255 - a, a / 2, 7));
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
        }
    }
    use crate::{
        http::h1::{self, model},
        trace::context::{self, Ids},
    };
    use bytes::BytesMut;
    use std::{
        cell::Cell,
        net::{Ipv4Addr, Ipv6Addr},
    };

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    const LIMITS: h1::Limits = h1::Limits {
        max_head_bytes: 8192,
        max_uri_bytes: 2048,
    };

    /// Parse and decode the request in `buf` on a `scheme` connection.
    fn decode(buf: &[u8], scheme: &'static str) -> (RequestHead, Seen) {
        let mut headers = h1::header_slots();
        let req = match h1::parse_request(buf, &mut headers, &LIMITS) {
            Ok(Some(req)) => req,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(buf)),
        };
        let mut head = RequestHead::default();
        let seen = model::decode_request(&req, scheme, &mut head);
        (head, seen)
    }

    /// The head sent upstream, as text.
    fn upstream(head: &RequestHead) -> String {
        let mut out = BytesMut::new();
        model::encode_request(head, None, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Decode `buf` on an `http` connection from `client`, apply the forwarding policy with
    /// `request_id`, and encode.
    fn forwarded(buf: &[u8], client: IpAddr, request_id: &[u8]) -> String {
        let (mut head, seen) = decode(buf, "http");
        forwarding(&mut head, seen, client, request_id);
        upstream(&head)
    }

    #[test]
    fn forwarding_headers_are_added() {
        assert_eq!(
            forwarded(
                b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
                CLIENT,
                b"rid-1"
            ),
            "GET /a?b HTTP/1.1\r\nhost: example.com\r\nAccept: */*\r\nx-forwarded-for: 192.0.2.7\r\n\
             x-forwarded-proto: http\r\nx-request-id: rid-1\r\n\r\n"
        );
    }

    #[test]
    fn x_forwarded_for_is_appended_to_the_last_line() {
        assert_eq!(
            forwarded(
                b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1\r\nA: 1\r\n\
                  x-forwarded-for: 10.0.0.1, 10.0.0.2\r\nB: 2\r\n\r\n",
                CLIENT,
                b""
            ),
            "GET / HTTP/1.1\r\nhost: h\r\nX-Forwarded-For: 203.0.113.1\r\nA: 1\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nB: 2\r\nx-forwarded-proto: http\r\n\r\n"
        );
        // Nominated by Connection: dropped by the codec, so a fresh one is added.
        let got = forwarded(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            CLIENT,
            b"",
        );
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_clients() {
        let cases = [
            (
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                "2001:db8::1",
            ),
            (
                Ipv6Addr::new(
                    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe,
                ),
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
            ),
            (
                Ipv4Addr::new(255, 255, 255, 255).to_ipv6_mapped(),
                "::ffff:255.255.255.255",
            ),
        ];
        for (ip, text) in cases {
            let got = forwarded(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", IpAddr::V6(ip), b"");
            assert_eq!(
                got,
                format!("GET / HTTP/1.1\r\nhost: h\r\nx-forwarded-for: {text}\r\nx-forwarded-proto: http\r\n\r\n")
            );
            let got = forwarded(
                b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a\r\n\r\n",
                IpAddr::V6(ip),
                b"",
            );
            assert!(
                got.contains(&format!("\r\nX-Forwarded-For: a, {text}\r\n")),
                "{got}"
            );
        }
    }

    #[test]
    fn x_forwarded_proto_is_replaced() {
        let buf = b"GET / HTTP/1.1\r\nX-Forwarded-Proto: gopher\r\nHost: h\r\nx-forwarded-proto: http\r\nA: 1\r\n\r\n";
        let (mut head, seen) = decode(buf, "https");
        forwarding(&mut head, seen, CLIENT, b"");
        assert_eq!(
            upstream(&head),
            "GET / HTTP/1.1\r\nhost: h\r\nA: 1\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\n\r\n"
        );
    }

    #[test]
    fn request_id_is_added_only_when_absent() {
        // The client's id is kept, wherever it is and however it is spelled.
        assert_eq!(
            forwarded(
                b"GET / HTTP/1.1\r\nX-Request-Id: client-id\r\nHost: h\r\n\r\n",
                CLIENT,
                b"rid-1"
            ),
            "GET / HTTP/1.1\r\nhost: h\r\nX-Request-Id: client-id\r\nx-forwarded-for: 192.0.2.7\r\n\
             x-forwarded-proto: http\r\n\r\n"
        );
        // No id to add (generation off): none.
        let got = forwarded(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", CLIENT, b"");
        assert!(!got.contains("x-request-id"), "{got}");
        // A nominated x-request-id stays on the client's hop: ours goes up.
        assert_eq!(
            forwarded(
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Request-Id\r\nX-Request-Id: c\r\n\r\n",
                CLIENT,
                b"rid-2"
            ),
            "GET / HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             x-request-id: rid-2\r\n\r\n"
        );
    }

    /// Ids 0x101, 0x102, ... (predictable).
    struct Seq(Cell<u64>);
    impl Ids for Seq {
        fn next_u64(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    /// Decode `buf`, begin the span on its headers (as the connection manager does), apply the
    /// forwarding policy then the trace headers; returns the span and the upstream head.
    fn traced(buf: &[u8]) -> (SpanCtx, String) {
        let (mut head, seen) = decode(buf, "http");
        let span = context::begin(head.headers.iter(), u64::MAX, false, &Seq(Cell::new(0x100)));
        forwarding(&mut head, seen, CLIENT, b"");
        trace_headers(&mut head, &span);
        (span, upstream(&head))
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_headers_are_replaced() {
        // A valid traceparent is continued: ours replaces it, tracestate passes unchanged, the
        // client's B3 headers are rewritten (multi form, as it sent them).
        let buf = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nTraceParent: {TP}\r\nA: 1\r\ntracestate: k=v\r\n\
             X-B3-TraceId: 4bf92f3577b34da6a3ce929d0e0e4736\r\nx-b3-spanid: 00f067aa0ba902b7\r\n\
             X-B3-Sampled: 1\r\nB: 2\r\n\r\n"
        );
        let (span, got) = traced(buf.as_bytes());
        assert!(span.keep_tracestate);
        assert_eq!(span.span_id, 0x101);
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nhost: h\r\nA: 1\r\ntracestate: k=v\r\nB: 2\r\n\
             x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000101-01\r\n\
             x-b3-traceid: 4bf92f3577b34da6a3ce929d0e0e4736\r\nx-b3-spanid: 0000000000000101\r\n\
             x-b3-parentspanid: 00f067aa0ba902b7\r\nx-b3-sampled: 1\r\n\r\n"
        );
    }

    #[test]
    fn tracestate_is_dropped_with_an_invalid_traceparent() {
        let (span, got) = traced(
            b"GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-zz-zz-01\r\ntracestate: k=v\r\nb3: 0\r\nA: 1\r\n\r\n",
        );
        assert!(!span.keep_tracestate);
        assert_eq!(span.parent_id, 0, "a new trace");
        let trace = String::from_utf8_lossy(&span.trace_hex()).into_owned();
        let sampled = if span.sampled { "01" } else { "00" };
        let decision = if span.sampled { "1" } else { "0" };
        // `b3: 0` came as the single header: it goes up in that form, ringway's span in it.
        assert_eq!(
            got,
            format!(
                "GET / HTTP/1.1\r\nhost: h\r\nA: 1\r\nx-forwarded-for: 192.0.2.7\r\n\
                 x-forwarded-proto: http\r\ntraceparent: 00-{trace}-{span:016x}-{sampled}\r\n\
                 b3: {trace}-{span:016x}-{decision}\r\n\r\n",
                span = span.span_id
            )
        );
        assert!(!span.sampled, "b3: 0 is the caller's decision");
    }
}
