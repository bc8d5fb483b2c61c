//! `crate::http`, as in the engine, holding only the HTTP/1 codec.

// Relative to this file's directory: engine/src/http/h1/mod.rs.
#[path = "../../../src/http/h1/mod.rs"]
pub mod h1;
