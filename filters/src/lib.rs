//! # ringway-filters: the HTTP filter API and the built-in filters
//!
//! An HTTP filter sees each request on its way to the router and each response on its way back
//! to the client, on the worker that owns the connection, whatever codec carried it (the stream
//! model in [`stream`] is the same for HTTP/1.1 and, later, HTTP/2). The router is the terminal
//! filter: it lives in the engine (it needs clusters) and always runs last on the way in.
//!
//! ```text
//! config map ─▶ registry::parse ─▶ Arc<dyn FilterConfig>     (control thread, once per load)
//!                 └─▶ FilterConfig::worker ─▶ Rc<dyn FilterFactory>   (each worker, once)
//!                       └─▶ FilterFactory::create ─▶ Box<dyn HttpFilter>  (each request)
//! request:  codec ─▶ on_request_headers (config order) ─▶ on_request_data ─▶ router
//! response: router ─▶ on_response_headers (reverse order) ─▶ on_response_data ─▶ codec
//! ```
//!
//! - [`stream`]: heads and headers as filters see them ([`RequestHead`], [`ResponseHead`],
//!   [`HeaderMap`]).
//! - [`filter`]: the contract ([`HttpFilter`], [`HeadersStatus`], [`DataStatus`], [`Ctx`]) and
//!   its MUST / MUST NOT rules.
//! - [`registry`]: built-in filters by name, config decoding with paths.
//! - [`template`]: `%VAR%` header-value templates; [`state`]: values for the access log;
//!   [`stats`]: per-worker counters.
//! - [`http`]: the built-in filters; [`base64`]: the encoding gRPC-Web text uses.
//!
//! Nothing here names the runtime: waiting goes through [`filter::Runtime`], which the engine
//! implements. Per-worker state is `Rc`/`Cell`/`RefCell`; nothing takes a lock per request.

pub mod base64;
pub mod filter;
pub mod http;
pub mod registry;
pub mod state;
pub mod stats;
pub mod stream;
pub mod template;

pub use filter::{
    Ctx, DataStatus, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply,
    RouteInfo, Runtime, Vars, Wait, WorkerInfo,
};
pub use state::FilterState;
pub use stream::{BodySize, HeaderMap, Method, RequestHead, ResponseHead};

/// Helpers for filters' unit tests: a [`Ctx`] without an engine.
#[doc(hidden)]
pub mod testing {
    use std::{cell::Cell, net::SocketAddr, time::Duration, time::Instant};

    use crate::{filter::Wait, Ctx, FilterState, RequestHead, Runtime, Vars};

    /// A runtime whose sleeps complete at once and whose coarse clock the test sets.
    #[derive(Debug, Default)]
    pub struct TestRuntime {
        pub now_ms: Cell<u64>,
        /// Durations asked of `sleep`, in order.
        pub slept: std::cell::RefCell<Vec<Duration>>,
    }

    impl Runtime for TestRuntime {
        fn sleep(&self, d: Duration) -> Wait {
            self.slept.borrow_mut().push(d);
            Box::pin(std::future::ready(()))
        }
        fn now_ms(&self) -> u64 {
            self.now_ms.get()
        }
    }

    /// Vars with only `DOWNSTREAM_REMOTE_ADDRESS` (`10.0.0.1:5000`) and `REQ(name)` from an
    /// optional request.
    #[derive(Debug, Default)]
    pub struct TestVars {
        pub request: Option<RequestHead>,
    }

    impl Vars for TestVars {
        fn write(&self, name: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool {
            match (name, arg) {
                ("DOWNSTREAM_REMOTE_ADDRESS", _) => out.extend_from_slice(b"10.0.0.1:5000"),
                ("REQ", Some(h)) => {
                    match self.request.as_ref().and_then(|r| r.headers.get_bytes(h)) {
                        Some(v) => out.extend_from_slice(v),
                        None => return false,
                    }
                }
                _ => return false,
            }
            true
        }
    }

    /// Build a [`Ctx`] over test parts.
    pub fn ctx<'a>(
        rt: &'a TestRuntime,
        vars: &'a TestVars,
        state: &'a mut FilterState,
        request: Option<&'a RequestHead>,
    ) -> Ctx<'a> {
        Ctx {
            peer: SocketAddr::from(([10, 0, 0, 1], 5000)),
            route: None,
            start: Instant::now(),
            state,
            request,
            rt,
            vars,
            reply_spare: None,
        }
    }
}
