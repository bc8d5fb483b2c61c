//! The built-in HTTP filters, one folder each (`mod.rs` the filter, `config.rs` its config,
//! `tests.rs` its unit tests), registered by name in [`crate::registry`].

pub mod buffer;
pub mod cache;
pub mod compressor;
pub mod cors;
pub mod decompressor;
pub mod fault;
pub mod grpc_stats;
pub mod grpc_web;
pub mod header_mutation;
pub mod local_ratelimit;
