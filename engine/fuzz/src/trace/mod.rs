//! `crate::trace`, as in the engine, holding only the trace-context headers (the encoder asks
//! which incoming headers it replaces).

// Relative to this file's directory: engine/src/trace/context.rs.
#[path = "../../../src/trace/context.rs"]
pub mod context;
