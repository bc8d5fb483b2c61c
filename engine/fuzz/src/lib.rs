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
pub use stream::{BodySize, HeaderMap, Method, RequestHead, ResponseHead};
