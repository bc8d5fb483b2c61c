//! Fuzz target: arbitrary bytes as the front of a client connection.
//!
//! Parses them as a request head; when that succeeds, checks what an accepted head must be (CRLF
//! only, no obs-fold, framing consistent with its headers), decodes it into the stream model and
//! encodes that upstream, parses what would be sent back (same framing, same upgrade) and decodes
//! it again (same model). The head read in pieces must give the same answer: a strict prefix is
//! incomplete, never an error, wherever it is cut (after each CR too), and a prefix never holds a
//! head the whole does not. Then it runs the chunked decoder over the bytes after the head, whole
//! and split at a fuzzer-chosen point, and checks both give the same body and the same outcome.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::http::h1::{
    header_slots,
    model::{decode_request, encode_request, forwarded_upgrade},
    parse_request, BodyFraming, Limits, ParseError, MAX_HEADERS,
};
use ringway_fuzz::{assert_crlf_only, chunked_outcome, head_cuts, RequestHead};

const LIMITS: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_uri_bytes: 4 * 1024,
};

/// The head length `data` parses to (`Ok(None)`: incomplete).
fn head_len(data: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut headers = header_slots();
    parse_request(data, &mut headers, &LIMITS).map(|r| r.map(|r| r.head_len))
}

fuzz_target!(|data: &[u8]| {
    // A cut the fuzzer moves by changing any byte.
    let choice = data.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    // A prefix holds a head only where the whole holds the same one; an incomplete whole has
    // incomplete prefixes.
    let cut = choice % (data.len() + 1);
    let part = head_len(&data[..cut]);
    let mut headers = header_slots();
    let req = match parse_request(data, &mut headers, &LIMITS) {
        Ok(Some(req)) => req,
        Ok(None) => {
            assert!(
                data.len() <= LIMITS.max_head_bytes,
                "incomplete past the head limit"
            );
            assert!(matches!(part, Ok(None)), "prefix of {cut} bytes: {part:?}");
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 501 | 505), "{e:?}");
            assert!(
                !matches!(part, Ok(Some(_))),
                "prefix of {cut} bytes: {part:?}"
            );
            return;
        }
    };
    if cut >= req.head_len {
        assert_eq!(part, Ok(Some(req.head_len)), "prefix of {cut} bytes");
    }

    // What an accepted head must be.
    assert!(req.head_len <= data.len() && req.head_len <= LIMITS.max_head_bytes);
    assert!(req.target.len() <= LIMITS.max_uri_bytes);
    let head = &data[..req.head_len];
    assert_crlf_only(head);
    let has = |n: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
    match req.framing {
        BodyFraming::Chunked => assert!(has("transfer-encoding") && !has("content-length")),
        BodyFraming::Length(_) => assert!(has("content-length") && !has("transfer-encoding")),
        BodyFraming::None => assert!(!has("content-length") && !has("transfer-encoding")),
        BodyFraming::UntilClose => panic!("UntilClose for a request"),
    }

    // The head read in pieces: a strict prefix is incomplete, never an error (the proxy parses
    // again as each read arrives, and a client's head may split anywhere, between a CR and its
    // LF too), and the head with what follows it cut off parses to the same head.
    for cut in head_cuts(head, choice) {
        let part = head_len(&data[..cut]);
        assert!(matches!(part, Ok(None)), "prefix of {cut} bytes: {part:?}");
    }
    assert_eq!(head_len(head), Ok(Some(req.head_len)), "the head alone");

    // Decode into the model and encode upstream; what we send must parse back with the same
    // framing (no body: no framing, or `content-length: 0` for methods that expect a body) and
    // decode to the same model.
    let mut model = RequestHead::default();
    decode_request(&req, "https", &mut model);
    let upgrade = forwarded_upgrade(&req);
    let mut out = BytesMut::new();
    encode_request(&model, upgrade, &mut out);
    let lenient = Limits {
        max_head_bytes: usize::MAX,
        max_uri_bytes: usize::MAX,
    };
    let no_body = |f| match f {
        BodyFraming::Length(0) => BodyFraming::None,
        f => f,
    };
    let mut again_headers = header_slots();
    match parse_request(&out, &mut again_headers, &lenient) {
        Ok(Some(again)) => {
            assert_eq!(no_body(again.framing), no_body(req.framing));
            assert_eq!(again.head_len, out.len());
            assert_eq!(again.method, req.method);
            assert_eq!(again.upgrade, upgrade);
            let mut twice = RequestHead::default();
            decode_request(&again, "https", &mut twice);
            assert_eq!(twice.method_str(), model.method_str());
            assert_eq!(twice.authority(), model.authority());
            assert_eq!(twice.path(), model.path());
            assert_eq!(twice.headers, model.headers);
            assert_eq!(twice.body, model.body);
        }
        // The codec adds up to four header lines of its own (host, framing, connection, upgrade).
        Err(ParseError::HeadersTooLarge) if model.headers.len() + 4 > MAX_HEADERS => {}
        other => panic!("encoded head does not parse back: {other:?}"),
    }

    // The chunked decoder on the rest, whole and split, must agree.
    let rest = &data[req.head_len..];
    let cut = rest
        .first()
        .map_or(0, |&b| usize::from(b) % (rest.len() + 1));
    let whole = chunked_outcome(&[rest]);
    let split = chunked_outcome(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "split at {cut} changed the outcome");
});
