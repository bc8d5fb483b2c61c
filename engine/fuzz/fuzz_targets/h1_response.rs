//! Fuzz target: arbitrary bytes as what an upstream sends back (the first byte says whether the
//! request was a HEAD).
//!
//! Parses the rest as a response head; when that succeeds, checks what an accepted head must be
//! (CRLF only, no obs-fold, framing consistent with the status, the request and the headers, a
//! connection not kept when both framings came), decodes it into the stream model and encodes it
//! for an HTTP/1.1 client as the proxy does, parses that back (same status, same model) and runs
//! the chunked decoder over the bytes after the head, whole and split at a fuzzer-chosen point.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::http::h1::{
    header_slots,
    model::{decode_response, encode_response, Framing, Persist},
    parse_response, BodyFraming, ParseError, Version, MAX_HEADERS,
};
use ringway_fuzz::{chunked_outcome, ResponseHead};

/// The proxy's limit on an upstream's response head.
const MAX_HEAD: usize = 64 * 1024;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let was_head = flags & 1 == 1;
    let mut headers = header_slots();
    let resp = match parse_response(data, &mut headers, was_head, MAX_HEAD) {
        Ok(Some(r)) => r,
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD, "incomplete past the head limit");
            return;
        }
        // Whatever the error, the proxy answers the client 502.
        Err(_) => return,
    };

    // What an accepted head must be.
    assert!(resp.head_len <= data.len() && resp.head_len <= MAX_HEAD);
    assert!((100..=999).contains(&resp.status), "status {}", resp.status);
    let head = &data[..resp.head_len];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF accepted");
            assert!(
                !matches!(head.get(i + 1), Some(b' ' | b'\t')),
                "obs-fold accepted"
            );
        }
    }
    let has = |n: &str| resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
    let bodiless = was_head || resp.status < 200 || resp.status == 204 || resp.status == 304;
    match resp.framing {
        _ if bodiless => assert_eq!(
            resp.framing,
            BodyFraming::None,
            "a body on a bodiless answer"
        ),
        BodyFraming::Chunked => assert!(has("transfer-encoding")),
        BodyFraming::Length(_) => assert!(has("content-length") && !has("transfer-encoding")),
        BodyFraming::UntilClose => {
            assert!(!has("content-length") && !has("transfer-encoding"));
            assert!(
                !resp.keep_alive,
                "a close-delimited body on a kept connection"
            );
        }
        BodyFraming::None => {}
    }
    if resp.framing == BodyFraming::Chunked && has("content-length") {
        assert!(!resp.keep_alive, "both framings on a kept connection");
    }

    // Decode into the model and encode for the client as the proxy does (interim answers and
    // 101 take other paths); it must parse back to the same status and model.
    if resp.status >= 200 {
        let mut model = ResponseHead::default();
        decode_response(&resp, &mut model);
        let framing = Framing::for_client(model.body, Version::Http11, bodiless);
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
                let mut twice = ResponseHead::default();
                decode_response(&again, &mut twice);
                assert_eq!(twice.status, model.status);
                assert_eq!(twice.headers, model.headers);
                if !bodiless {
                    assert_eq!(twice.body, model.body);
                }
            }
            // The codec adds up to two header lines of its own (framing, connection).
            Err(ParseError::HeadersTooLarge) if model.headers.len() + 2 > MAX_HEADERS => {}
            other => panic!("encoded head does not parse back: {other:?}\n{out:?}"),
        }
    }

    // The chunked decoder on the rest, whole and split, must agree.
    let rest = &data[resp.head_len..];
    let cut = usize::from(flags >> 1) % (rest.len() + 1);
    let whole = chunked_outcome(&[rest]);
    let split = chunked_outcome(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "split at {cut} changed the outcome");
});
