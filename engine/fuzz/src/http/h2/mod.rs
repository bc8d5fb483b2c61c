//! `crate::http::h2`, as in the engine, holding only its pure head mapping.

// Relative to this file's directory: engine/src/http/h2/wire.rs.
#[path = "../../../../src/http/h2/wire.rs"]
pub mod wire;
