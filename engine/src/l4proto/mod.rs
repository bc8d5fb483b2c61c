//! Parsers for what a new downstream connection says before its application protocol: the
//! building blocks of the listener filters (`proxy_protocol`, `tls_inspector`) of Envoy's
//! listener-filter stage, which runs between accept and filter-chain match.
//!
//! ```text
//! accept ─▶ read (the bytes stay in the caller's buffer)
//!        ─▶ proxy_protocol::parse(buf)   Incomplete ─▶ read more (never past the spec maximum)
//!                                        Complete(header) ─▶ addresses, header.len bytes consumed
//!                                        Err ─▶ close the connection
//!        ─▶ client_hello::peek(rest)     NeedMore ─▶ read more (never past MAX_PEEK_BYTES)
//!                                        NotTls ─▶ transport_protocol "raw_buffer"
//!                                        Tls(hello) ─▶ "tls", server name, ALPN, versions
//!                                        Err ─▶ close the connection
//!        ─▶ filter-chain match ─▶ transport socket (rustls is handed the same, unconsumed bytes)
//! ```
//!
//! - [`proxy_protocol`] owns HAProxy's PROXY protocol (v1 text and v2 binary): an incremental,
//!   allocation-free parser over the bytes read so far, and the encoders a cluster will use to
//!   send the header to its upstreams.
//! - [`client_hello`] owns the TLS ClientHello peek: it reads the handshake records without
//!   consuming them (the caller keeps its buffer and later hands it to the TLS library),
//!   reassembles a ClientHello spread over several records, and reports SNI, ALPN and versions.
//!
//! Both are pure functions over bytes: no socket, no runtime, no config. They are called again
//! with the whole buffer after every read (a few hundred bytes, a handful of reads), so a
//! caller keeps no parser state between reads. The listener filters that call them live in
//! `listener::inspect` (config: `listener_filters`, `filter_chain_match`). The fuzz crate (engine/fuzz) compiles
//! this module by path, so it must depend on nothing else in the engine (std, `bytes` and
//! `thiserror` only).

pub mod client_hello;
pub mod proxy_protocol;
