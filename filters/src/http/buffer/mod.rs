//! The `buffer` filter (Envoy's `envoy.filters.http.buffer`): the whole request body is read
//! before the request goes upstream (at most `max_request_bytes`, else 413).
//!
//! ```text
//! parse ─▶ Config (the limit, the counter)                 control thread, once
//!   hooks(): buffer_request_body = max_request_bytes, request data
//!     engine: reads the whole body (more than the limit: 413, counted by the engine)
//!       ─▶ on_request_data once, end_stream = true, the whole body ─▶ counted here
//!       ─▶ forwards the request with a content-length
//! ```
//!
//! The engine does the buffering (one buffer, in the connection's codec); this filter only
//! declares the limit and counts the requests whose body it saw. Per route: an override is a
//! whole config (its own limit), or the filter is disabled for the route.
//!
//! Differences from Envoy: the stat `buffer.rq_buffered` is ringway's (Envoy's buffer filter
//! keeps no counter of its own; a refused request shows in the connection manager's
//! `downstream_rq_4xx`).
//!
//! Stats: `buffer.rq_buffered` (requests whose whole body was read).

mod config;
#[cfg(test)]
mod tests;

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use crate::{
    filter::{Ctx, DataStatus, FilterConfig, FilterFactory, Hooks, HttpFilter, WorkerInfo},
    registry::ParseResult,
    stats::Counters,
};

/// Validate a `buffer` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = crate::registry::decode::<config::Spec>(v)?;
    let cfg = config::validate(spec)?;
    Ok(Arc::new(BufferConfig(Arc::new(cfg))))
}

/// The validated config (shared by every worker).
#[derive(Debug)]
struct BufferConfig(Arc<config::Config>);

impl FilterConfig for BufferConfig {
    fn name(&self) -> &'static str {
        "buffer"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(Factory {
            max_request_bytes: self.0.max_request_bytes,
            stats: self.0.stats.worker(),
        })
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.0.stats.snapshot()
    }
}

/// One worker's factory.
#[derive(Debug)]
struct Factory {
    max_request_bytes: usize,
    stats: Arc<Counters>,
}

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            buffer_request_body: Some(self.max_request_bytes),
            request_data: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(Buffer {
            stats: Arc::clone(&self.stats),
        })
    }
}

/// One request's filter: counts the body it is handed.
#[derive(Debug)]
struct Buffer {
    stats: Arc<Counters>,
}

impl HttpFilter for Buffer {
    fn on_request_data(
        &mut self,
        _data: &mut Bytes,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        if end_stream {
            self.stats.inc(config::RQ_BUFFERED);
        }
        DataStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        true
    }
}
