//! The parsers under fuzz, compiled from the engine's sources by path so that fuzzing needs
//! neither the engine crate nor its dependencies (io_uring runtime, TLS, ...). The module tree
//! mirrors the engine's, so `crate::http::h1`, `crate::text` and `crate::trace::context` paths
//! inside the codec resolve the same way.

pub mod http;
#[path = "../../src/text.rs"]
pub mod text;
pub mod trace;
