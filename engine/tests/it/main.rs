//! The engine's integration tests, one binary: every file here is a module of it, `support`
//! the harness they share (the real proxy, real origins, real clients; see `support/mod.rs`).
//!
//! One binary rather than one per file: the harness and the dependencies are compiled and
//! linked once instead of fifty-five times (what that saves: `docs/architecture.md`, "Tests").
//! Tests run two at a time (`--test-threads=2`), as when each file ran on its own. What must
//! own its process stays outside: `../alloc_count.rs` counts every allocation in its process.
//!
//! Run one file's tests with its module name as the filter: `cargo test -p ringway-engine
//! --test it http1_keepalive::`.

mod support;

mod access_log_formats;
mod access_log_shutdown;
mod admin_api;
mod cli_commands;
mod cli_route;
mod cluster_dns;
mod cluster_hashing;
mod cluster_health;
mod cluster_lb;
mod cluster_pool;
mod config_builder;
mod config_files;
mod config_reload;
mod connection_balance;
mod defects_routes;
mod defects_signals;
mod downstream_chaos;
mod edge_tls_example;
mod envoy_compat;
mod errors_local_replies;
mod grpc;
mod http1_bodies;
mod http1_bulk;
mod http1_headers;
mod http1_keepalive;
mod http1_large;
mod http1_smoke;
mod http1_stream_layer;
mod http1_upgrade;
mod http2_attacks;
mod http2_downstream;
mod http2_upstream;
mod http_body_filters;
mod http_filters;
mod http_trailers;
mod idle_park;
mod io_driver;
mod listener_defer_accept;
mod listener_filters;
mod proxy_protocol_out;
mod recv_multishot;
mod route_matching;
mod route_retries;
mod route_weighted_mirror;
mod runtime_affinity;
mod runtime_lifecycle;
mod stats_counters;
mod stats_load;
mod tcp_proxy;
mod tls_cert_reload;
mod tls_gen_certs;
mod tls_origination;
mod tls_termination;
mod tracing;
mod upgrade;
mod upstream_chaos;
mod xds;
