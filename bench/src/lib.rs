//! ringway-bench: a latency benchmarking tool and a fast origin server, on the same
//! thread-per-core io_uring runtime as ringway (compio), with no dependency on the engine.
//!
//! - [`origin`]: `ringway-bench origin`, an HTTP/1.1 (and h2c / TLS) server with test routes
//!   (`/echo`, `/status/N`, `/delay/MS`, `/stall/MS`, `/bytes/N`, `/upload`, WebSocket-style
//!   upgrade echo) that counts the requests and connections it serves.
//! - [`load`]: `ringway-bench load`, closed-loop or constant-rate open-loop load over HTTP/1.1 or
//!   HTTP/2 (h2), plain or TLS, with coordinated-omission-corrected latencies per worker
//!   HdrHistogram, merged at the end.
//!   `--new-connection-per-request` opens a connection for every request.
//! - [`transfer`]: `ringway-bench transfer`, large downloads and uploads (`--download SIZE`,
//!   `--upload SIZE`, `-c` at once) in bounded memory, each byte count checked, in GB/s.
//! - [`report`]: the text report, the HdrHistogram percentile distribution, JSON, SVG plots and
//!   `ringway-bench compare`.
//!
//! Threading, everywhere: one compio runtime per worker thread, pinned to a core, sharing
//! nothing on the request path ([`rt`] builds them with the ring flags of the runtime note).
//! Socket I/O that must be poll-driven (h2) or encrypted (rustls) goes through [`io::PollIo`];
//! plain HTTP/1.1 uses compio's owned-buffer operations directly.

pub mod http1;
pub mod io;
pub mod load;
pub mod origin;
pub mod report;
pub mod rt;
pub mod tls;
pub mod transfer;
