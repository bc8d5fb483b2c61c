//! Fuzz target: arbitrary bytes as what an upstream sends back (the first byte says whether the
//! request was a HEAD, and where to split).
//!
//! Parses the rest as a response head. A refusal must be one of the errors a response can give
//! (the proxy answers the client 502 for each). An accepted head must be what the codec
//! documents: CRLF only, no obs-fold, a status in 100..=599, framing consistent with the status,
//! the request and the headers (no body on HEAD, 1xx, 204, 304; exactly `chunked`; the one
//! Content-Length value; else read until close), a connection not kept when its framing or
//! `Connection` says so, and the same head read in pieces (a strict prefix of a head is
//! `Ok(None)`, never an error, cut after any CR too). It is decoded into the stream model (no hop-by-hop field left)
//! and encoded for an HTTP/1.1 client as the proxy does, which must parse back to the same
//! status, framing and model. The chunked decoder runs over the bytes after the head, whole and
//! split at a fuzzer-chosen point, with the same outcome.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::http::h1::{
    header_slots,
    model::{decode_response, encode_response, Framing, Persist},
    parse_response, BodyFraming, ParseError, Response, Version, MAX_HEADERS,
};
use ringway_fuzz::{assert_crlf_only, chunked_outcome, head_cuts, ResponseHead};

/// The proxy's limit on an upstream's response head (engine/src/http/forward.rs).
const MAX_HEAD: usize = 64 * 1024;

/// Fields the model never carries (hop-by-hop, framing); `content-length` is kept on a
/// response without a body.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "expect",
    "http2-settings",
];

/// Comma-list elements of every `name` line, whitespace trimmed, empty ones skipped.
fn elements<'b>(resp: &Response<'b, '_>, name: &str) -> Vec<&'b [u8]> {
    resp.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let was_head = flags & 1 == 1;
    let choice = usize::from(flags >> 1);
    let mut headers = header_slots();
    let resp = match parse_response(data, &mut headers, was_head, MAX_HEAD) {
        Ok(Some(r)) => r,
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD, "incomplete past the head limit");
            return;
        }
        // The upstream's fault, whatever it is: the proxy answers 502. A URI too long and CL
        // with TE are request errors (a response with both is read as chunked).
        Err(e) => {
            assert!(
                matches!(
                    e,
                    ParseError::Malformed(_)
                        | ParseError::HeadersTooLarge
                        | ParseError::ConflictingContentLength
                        | ParseError::InvalidContentLength
                        | ParseError::UnsupportedTransferEncoding
                        | ParseError::ObsFold
                        | ParseError::BareLf
                        | ParseError::Version
                ),
                "{e:?}"
            );
            return;
        }
    };

    // What an accepted head must be.
    assert!(resp.head_len <= data.len() && resp.head_len <= MAX_HEAD);
    assert!((100..=599).contains(&resp.status), "status {}", resp.status);
    let head = &data[..resp.head_len];
    assert_crlf_only(head);
    let te = elements(&resp, "transfer-encoding");
    let cl = elements(&resp, "content-length");
    let has = |n: &str| resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
    let bodiless = was_head || resp.status < 200 || resp.status == 204 || resp.status == 304;
    match resp.framing {
        _ if bodiless => assert_eq!(
            resp.framing,
            BodyFraming::None,
            "a body on a bodiless answer"
        ),
        BodyFraming::Chunked => {
            assert!(
                te.len() == 1 && te[0].eq_ignore_ascii_case(b"chunked"),
                "chunked framing from {te:?}"
            );
            if has("content-length") || resp.version == Version::Http10 {
                assert!(!resp.keep_alive, "kept after a doubtful chunked framing");
            }
        }
        BodyFraming::Length(n) => {
            assert!(!has("transfer-encoding"));
            assert!(!cl.is_empty());
            for v in &cl {
                let parsed = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                assert_eq!(parsed, Some(n), "length {n} from {v:?}");
            }
        }
        BodyFraming::UntilClose => {
            assert!(!has("content-length") && !has("transfer-encoding"));
            assert!(
                !resp.keep_alive,
                "a close-delimited body on a kept connection"
            );
        }
        BodyFraming::None => panic!("no body framing on a response that has a body"),
    }
    let connection = elements(&resp, "connection");
    if connection.iter().any(|t| t.eq_ignore_ascii_case(b"close")) {
        assert!(!resp.keep_alive, "kept despite connection: close");
    }
    if resp.version == Version::Http10
        && !connection
            .iter()
            .any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    {
        assert!(!resp.keep_alive, "HTTP/1.0 kept without keep-alive");
    }

    // The head read in pieces: a strict prefix is incomplete, never an error (the proxy parses
    // again as each read arrives), wherever the read ends (after a CR too).
    for cut in head_cuts(head, choice) {
        let mut part_headers = header_slots();
        let part = parse_response(&data[..cut], &mut part_headers, was_head, MAX_HEAD);
        assert!(matches!(part, Ok(None)), "prefix of {cut} bytes: {part:?}");
    }

    // Decode into the model and encode for the client as the proxy does (interim answers and
    // 101 take other paths); it must parse back to the same status, framing and model.
    if resp.status >= 200 {
        let mut model = ResponseHead::default();
        decode_response(&resp, &mut model);
        for (name, _) in model.headers.iter() {
            assert!(
                !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_bytes().eq_ignore_ascii_case(name)),
                "hop-by-hop {name:?} in the model"
            );
            if name.eq_ignore_ascii_case(b"content-length") {
                assert_eq!(resp.framing, BodyFraming::None, "content-length kept");
            }
        }
        let framing = Framing::for_client(model.body, Version::Http11, bodiless);
        let sent = match framing {
            Framing::None { length_zero: true } => BodyFraming::Length(0),
            Framing::None { length_zero: false } => BodyFraming::None,
            Framing::Length(n) => BodyFraming::Length(n),
            Framing::Chunked => BodyFraming::Chunked,
            Framing::UntilClose => panic!("close-delimited to an HTTP/1.1 client"),
        };
        match (resp.framing, sent) {
            (BodyFraming::None, BodyFraming::None) => assert!(bodiless),
            (BodyFraming::Length(a), BodyFraming::Length(b)) => assert_eq!(a, b),
            (BodyFraming::Chunked | BodyFraming::UntilClose, BodyFraming::Chunked) => {}
            (from, to) => panic!("{from:?} re-framed as {to:?}"),
        }
        let mut out = BytesMut::new();
        encode_response(
            &model,
            Version::Http11,
            framing,
            Persist::KeepAlive,
            None,
            None,
            &mut out,
        );
        let mut again_headers = header_slots();
        match parse_response(&out, &mut again_headers, was_head, usize::MAX) {
            Ok(Some(again)) => {
                assert_eq!(again.status, resp.status);
                assert_eq!(again.head_len, out.len());
                assert_eq!(again.framing, sent);
                assert!(again.keep_alive && !again.nominates);
                let mut twice = ResponseHead::default();
                decode_response(&again, &mut twice);
                assert_eq!(twice.status, model.status);
                assert_eq!(twice.headers, model.headers);
                assert_eq!(twice.body, model.body);
            }
            // The codec adds up to two header lines of its own (framing, connection).
            Err(ParseError::HeadersTooLarge) if model.headers.len() + 2 > MAX_HEADERS => {}
            other => panic!("encoded head does not parse back: {other:?}\n{out:?}"),
        }
    }

    // The chunked decoder on the rest, whole and split, must agree.
    let rest = &data[resp.head_len..];
    let cut = choice % (rest.len() + 1);
    let whole = chunked_outcome(&[rest]);
    let split = chunked_outcome(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "split at {cut} changed the outcome");
});
