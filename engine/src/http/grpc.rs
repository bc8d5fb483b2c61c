//! What the stream layer knows of gRPC: a request's `grpc-timeout` as its route timeout, and
//! local replies to gRPC requests answered as gRPC statuses (HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message` in a trailers-only response) so gRPC
//! clients see a real status instead of a protocol error.

use std::time::Duration;

use bytes::Bytes;
use ringway_filters::{HeaderMap, RequestHead};

use crate::{error::LocalReason, http::stream::Reply};

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`,
/// `application/grpc-web...`).
pub fn is_grpc(req: &RequestHead) -> bool {
    req.headers
        .get_bytes("content-type")
        .is_some_and(|c| c.len() >= 16 && c[..16].eq_ignore_ascii_case(b"application/grpc"))
}

/// A `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn timeout(v: Option<&[u8]>) -> Option<Duration> {
    let v = v?;
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status for a local reply: by its reason first, then by its HTTP status (the
/// mapping gRPC's own HTTP-to-status table uses, with a rate limit as RESOURCE_EXHAUSTED).
pub fn status(why: Option<LocalReason>, http: u16) -> u8 {
    match why {
        Some(LocalReason::NoRoute) => 12,
        Some(LocalReason::UpstreamTimeout) => 4,
        Some(
            LocalReason::NoHealthyUpstream
            | LocalReason::ConnectFailure
            | LocalReason::UpstreamTlsFailure
            | LocalReason::UpstreamReset
            | LocalReason::UpstreamProtocolError,
        ) => 14,
        _ => match http {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            408 => 4,
            413 => 8,
            429 => 8,
            501 => 12,
            502..=504 => 14,
            _ => 2,
        },
    }
}

/// A local error reply (status 300 and up) as gRPC: status 200, no body, `grpc-status` and `grpc-message` (the reply's
/// body, percent-encoded as gRPC says) beside its own headers.
pub fn local_reply(r: Reply) -> Reply {
    // Not an error (a direct response, a filter's own gRPC answer such as gRPC-Web's): as is.
    if r.status < 300 {
        return r;
    }
    let code = status(r.why, r.status);
    let mut headers = HeaderMap::default();
    headers.append("content-type", "application/grpc");
    let mut buf = [0u8; 20];
    headers.append(
        "grpc-status",
        crate::text::decimal(u64::from(code), &mut buf),
    );
    let text = if r.body.is_empty() {
        crate::error::status_text(r.status).as_bytes()
    } else {
        &r.body[..]
    };
    headers.append("grpc-message", percent_encode(text));
    for (n, v) in r.headers.iter() {
        if !n.eq_ignore_ascii_case(b"content-type") && !n.eq_ignore_ascii_case(b"content-length") {
            headers.append(n, v);
        }
    }
    Reply {
        status: 200,
        headers,
        body: Bytes::new(),
        tag: r.tag,
        why: r.why,
        plain: false,
    }
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII but `%` as is, every other byte
/// as `%XX`.
fn percent_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(timeout(Some(b"2H")), Some(Duration::from_secs(7200)));
        assert_eq!(timeout(Some(b"3M")), Some(Duration::from_secs(180)));
        assert_eq!(timeout(Some(b"10S")), Some(Duration::from_secs(10)));
        assert_eq!(timeout(Some(b"250m")), Some(Duration::from_millis(250)));
        assert_eq!(timeout(Some(b"7u")), Some(Duration::from_micros(7)));
        assert_eq!(
            timeout(Some(b"99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"S",
            b"123456789S",
            b"10s",
            b"1.5S",
            b"-1S",
            b"10",
        ] {
            assert_eq!(timeout(Some(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn local_replies_map_to_grpc_statuses() {
        assert_eq!(status(Some(LocalReason::NoRoute), 404), 12);
        assert_eq!(status(Some(LocalReason::UpstreamTimeout), 504), 4);
        assert_eq!(status(Some(LocalReason::NoHealthyUpstream), 503), 14);
        assert_eq!(status(None, 429), 8);
        assert_eq!(status(None, 403), 7);
        let r = local_reply(Reply::error(LocalReason::NoRoute));
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get("grpc-status"), Some("12"));
        assert_eq!(r.headers.get("content-type"), Some("application/grpc"));
        assert!(r.body.is_empty());
        assert_eq!(percent_encode("a%b ü".as_bytes()), b"a%25b %C3%BC");
    }
}
