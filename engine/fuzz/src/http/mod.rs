//! `crate::http`, as in the engine, holding only the HTTP/1 codec and the HTTP/2 head mapping.

// Relative to this file's directory: engine/src/http/h1/mod.rs.
#[path = "../../../src/http/h1/mod.rs"]
pub mod h1;

/// The HTTP/2 head mapping and preface detection (pure functions over the `http` types).
pub mod h2;
