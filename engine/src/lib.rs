//! # ringway-engine
//!
//! A thread-per-core io_uring L4/L7 proxy. The process is a control thread and one worker per
//! core. The control thread loads and validates the config ([`config`]), binds every listener's
//! SO_REUSEPORT socket group ([`listener`]) and starts the workers ([`runtime`]) with an immutable
//! `Arc` snapshot of the config. Each worker runs its own compio runtime (io_uring, pinned to its
//! core) and owns everything on its request path: listener sockets, connections, route tables
//! ([`router`]), cluster views, load balancers and keep-alive pools ([`upstream`]). Nothing on the
//! request path takes a lock or touches another core.
//!
//! The path of a request, in the order of the modules:
//! [`listener`] accepts → [`http::conn_manager`] reads through the I/O seam ([`io`]) and parses
//! with [`http::h1`] → [`router`] picks a route → [`upstream`] picks an endpoint and a pooled
//! connection → the response flows back through [`http::body`]. Local replies and their reasons
//! live in [`error`]. A listener whose filter chain holds `tcp_proxy` hands its connections to
//! [`tcp_proxy`] instead, which joins each to an upstream connection through [`tunnel`].
//!
//! Beside the path: [`stats`] (per-worker single-writer counter blocks and histograms, merged by
//! an aggregator on the control side), [`access_log`] and [`trace`] (rendered or recorded on the
//! worker, shipped in batches to their own writer/exporter threads), and [`admin`] (the admin
//! HTTP server, on its own threads, which reads the stats and talks to workers over their
//! control channels).
//!
//! Layering: imports point down only; no two modules import each other, directly or around a
//! circle. From the top:
//!
//! ```text
//! cli ─▶ runtime            control thread and workers; builds each worker's http::ctx
//! runtime ─▶ admin, trace_export, listener, health, and everything below
//! admin ─▶ stats            admin server threads
//! health ─▶ upstream, io, endpoint_health   health checks and outlier detection (own thread)
//! trace_export ─▶ http::h1, trace   span exporter thread (HTTP/1 client to the collector)
//! listener ─▶ http, tcp_proxy   accept loops, handed the worker's context
//! tcp_proxy ─▶ http::ctx, tunnel, upstream   the `tcp_proxy` network filter
//! http ─▶ upstream, access_log, router, trace, stats, stream_info, drain, balance, rng, io, tunnel
//! tunnel ─▶ io, drain, stats   raw bytes both ways (tcp_proxy, HTTP upgrades)
//! upstream ─▶ stats ─▶ trace ─▶ stream_info ─▶ error; upstream, stats ─▶ endpoint_health ─▶ config
//! access_log ─▶ stream_info, config, logfmt
//! leaves (nothing from the crate): background balance control drain error io l4proto rng signals text
//! config ─▶ logfmt ─▶ text; router ─▶ config
//! ```

pub mod access_log;
pub mod admin;
pub mod background;
pub mod balance;
pub mod certs;
pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod drain;
pub mod endpoint_health;
pub mod error;
pub mod health;
pub mod http;
pub mod io;
pub mod l4proto;
pub mod listener;
pub mod logfmt;
pub mod rng;
pub mod route_cmd;
pub mod router;
pub mod runtime;
pub mod signals;
pub mod slots;
pub mod stats;
pub mod stream_info;
pub mod tcp_proxy;
pub mod text;
pub mod trace;
pub mod trace_export;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;
pub mod watch;
pub mod x509;
pub mod xds;
