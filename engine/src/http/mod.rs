//! HTTP: the HTTP/1 codec ([`h1`]), the connection manager that turns a connection's bytes
//! into streams ([`conn_manager`]), the stream itself ([`stream`]: filters, the route's action,
//! local replies), the HTTP filter chain on a worker ([`filter_chain`]), the forwarding policy
//! ([`policy`]), the router's upstream exchange ([`forward`]), and body forwarding ([`body`]),
//! all working on the per-worker and per-listener context they are handed ([`ctx`]: built by
//! the worker, which this module never names).
//!
//! Layering: below `listener` (which spawns [`conn_manager::serve`]) and `runtime`; above what a
//! request uses on its way (`router`, `upstream`, `stats`, `access_log`, `trace`, `stream_info`,
//! `drain`, `balance`, `io`). Nothing below imports it back, except the exporter thread
//! (`trace_export`, which speaks HTTP/1 with [`h1`] and is started only by `runtime`).

pub mod body;
pub mod bulk;
pub mod conn_manager;
pub mod ctx;
pub mod downstream;
pub mod filter_chain;
pub mod forward;
pub mod grpc;
pub mod h1;
pub mod h2;
pub mod hash_policy;
pub mod mirror;
pub mod park;
pub mod policy;
pub mod retry;
pub mod stream;
