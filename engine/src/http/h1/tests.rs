//! Unit tests of the HTTP/1 codec on raw bytes, one file per concern under `tests/`:
//! `request` (parsing, limits, smuggling shapes, keep-alive), `response` (framing by RFC 9112
//! §6.3), `model` / `model_response` (decoding into the stream model and encoding it back:
//! exact bytes), `chunked` (the decoder, split at every byte, and the chunk framing).

use super::*;

mod chunked;
mod model;
mod model_response;
mod request;
mod response;

pub(super) const LIMITS: Limits = Limits {
    max_head_bytes: 8192,
    max_uri_bytes: 2048,
};

/// Run `f` on the result of parsing `buf` as a request with [`LIMITS`].
pub(super) fn with_request<R>(
    buf: &[u8],
    f: impl FnOnce(Result<Option<Request<'_, '_>>, ParseError>) -> R,
) -> R {
    let mut headers = header_slots();
    f(parse_request(buf, &mut headers, &LIMITS))
}

/// Parse a complete request and run `f` on it; panics (test failure) otherwise.
pub(super) fn request_ok<R>(buf: &[u8], f: impl FnOnce(&Request<'_, '_>) -> R) -> R {
    with_request(buf, |r| match r {
        Ok(Some(req)) => f(&req),
        other => panic!(
            "expected a request from {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    })
}

/// The error parsing `buf` as a request gives; panics if there is none.
pub(super) fn request_err(buf: &[u8]) -> ParseError {
    with_request(buf, |r| match r {
        Err(e) => e,
        other => panic!(
            "expected an error from {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    })
}

/// Parse a complete response and run `f` on it.
pub(super) fn response_ok<R>(buf: &[u8], head: bool, f: impl FnOnce(&Response<'_, '_>) -> R) -> R {
    let mut headers = header_slots();
    match parse_response(buf, &mut headers, head, 8192) {
        Ok(Some(resp)) => f(&resp),
        other => panic!(
            "expected a response from {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// The error parsing `buf` as a response (to a GET) gives.
pub(super) fn response_err(buf: &[u8]) -> ParseError {
    let mut headers = header_slots();
    match parse_response(buf, &mut headers, false, 8192) {
        Err(e) => e,
        other => panic!(
            "expected an error from {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// Bytes as text for assertion messages.
pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
