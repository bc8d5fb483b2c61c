//! The parsers under fuzz, compiled from the engine's sources by path so that fuzzing needs
//! neither the engine crate nor its dependencies (io_uring runtime, TLS, ...). The module tree
//! mirrors the engine's, so `crate::http::h1` and `crate::text` paths inside the codec resolve
//! the same way.
//!
//! The codec decodes into the stream model of the filters crate (`ringway_filters::{RequestHead,
//! HeaderMap, ...}`, in filters/src/stream.rs, which needs only `bytes`). That file is mounted
//! here too, and this crate names itself `ringway_filters`, so the codec's `use
//! ringway_filters::...` finds the model without the filters crate and its compressors.
//!
//! The cache filter's rules (`filters/src/http/cache/{policy,date,store}.rs`) are mounted as
//! `cache`: they need only the stream model, `bytes` and `foldhash`.
//!
//! The listener-stage parsers (`l4proto`: PROXY protocol, TLS ClientHello peek) need only std,
//! `bytes` and `thiserror`, and are mounted as they are.

extern crate self as ringway_filters;

pub mod http;
#[path = "../../src/l4proto/mod.rs"]
pub mod l4proto;
#[path = "../../src/text.rs"]
pub mod text;

#[path = "../../../filters/src/stream.rs"]
pub mod stream;

pub mod cache;
pub use stream::{BodySize, HeaderMap, Method, RequestHead, ResponseHead};

/// What the HTTP/1 chunked decoder makes of `parts` fed one after the other: the body, and the
/// outcome (the error, or whether the end was reached and how many bytes were left unread). The
/// targets check that splitting the input does not change it.
pub fn chunked_outcome(parts: &[&[u8]]) -> (Vec<u8>, Result<Option<usize>, http::h1::ParseError>) {
    use http::h1::{Chunk, ChunkedDecoder};
    let mut dec = ChunkedDecoder::new();
    let mut input = bytes::BytesMut::new();
    let mut body = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        input.extend_from_slice(part);
        loop {
            match dec.decode(&mut input) {
                Ok(Chunk::Data(d)) => {
                    assert!(!d.is_empty());
                    body.extend_from_slice(&d);
                }
                Ok(Chunk::NeedMore) => {
                    assert!(input.is_empty());
                    break;
                }
                Ok(Chunk::End) => {
                    let unread: usize =
                        input.len() + parts[i + 1..].iter().map(|p| p.len()).sum::<usize>();
                    return (body, Ok(Some(unread)));
                }
                Err(e) => return (body, Err(e)),
            }
        }
    }
    (body, Ok(None))
}

/// An accepted HTTP/1 head has CRLF line ends only and no obs-fold (a line starting with SP or
/// HTAB after a line end): what both head targets check of whatever the parser let through.
pub fn assert_crlf_only(head: &[u8]) {
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF accepted");
            assert!(
                !matches!(head.get(i + 1), Some(b' ' | b'\t')),
                "obs-fold accepted"
            );
        }
    }
}

/// Where to cut an accepted head of `head_len` bytes (`head`) to check that each strict prefix
/// reads as incomplete: after every CR (a read may end between a CR and its LF), one byte short,
/// and a cut the input chooses (`choice`).
pub fn head_cuts(head: &[u8], choice: usize) -> impl Iterator<Item = usize> + '_ {
    head.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\r')
        .map(|(i, _)| i + 1)
        .chain([choice % head.len(), head.len() - 1])
}
