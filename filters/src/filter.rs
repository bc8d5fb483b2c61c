//! The filter contract: what a filter hook receives, what it may return, and how filters are
//! built per worker from validated config.
//!
//! Life of a filter:
//! 1. Control thread: the config loader calls the registry ([`crate::registry`]) with the
//!    filter's map from the file; it returns an `Arc<dyn FilterConfig>` (validated, immutable) or
//!    errors with their paths.
//! 2. Each worker: [`FilterConfig::worker`] builds the worker's [`FilterFactory`] once per
//!    config snapshot: per-worker state (rate-limit buckets, the cache) lives there, in
//!    `Rc`/`RefCell`, never behind a lock.
//! 3. Each request: [`FilterFactory::create`] makes the request's [`HttpFilter`]; its hooks run as
//!    the stream moves (request hooks in config order, response hooks in reverse); it is dropped
//!    when the stream ends.
//!
//! Contract (every hook):
//! - A hook runs on the worker's only thread: it MUST return quickly and MUST NOT block, sleep
//!   or do I/O. To wait, a request-headers hook returns [`HeadersStatus::Pause`] with a future
//!   (built from [`Ctx::sleep`], say); the engine awaits it and then calls
//!   [`HttpFilter::on_resume`].
//! - A filter MUST NOT add framing or hop-by-hop headers (`content-length`,
//!   `transfer-encoding`, `connection`...): the codec owns them. A filter that changes a body's
//!   length sets the head's `body` to [`BodySize::Unknown`](crate::stream::BodySize).
//! - [`HeadersStatus::LocalReply`] on the request path stops the chain: later filters' request
//!   hooks do not run and the upstream is never contacted; the filters before it (which already
//!   saw the request) see the reply's head in their response-headers hooks. On the response path
//!   it replaces the upstream's response (nothing has been sent yet): the upstream's body is
//!   discarded, and the filters nearer the client still see the replacement.
//! - Bodies stream: a data hook sees each piece as it arrives (request pieces go upstream as
//!   they pass the chain), and always gets a last call with `end_stream = true` (possibly
//!   empty), so a filter that must finish a body (compression) can. Trailers, when the message
//!   has some and its side decodes them (`enable_trailers`), come after that last call.
//! - A request data or trailers hook's local reply ends the stream: the client gets the reply
//!   (when no response byte has gone out) and its connection closes.
//! - Only request-headers hooks may pause; data hooks run without waiting.
//! - Data hooks run only for filters whose factory declares them in [`Hooks`]: a chain without
//!   data hooks leaves bodies on the engine's zero-copy path.

use std::{future::Future, net::SocketAddr, pin::Pin, rc::Rc, time::Duration, time::Instant};

use bytes::Bytes;

use crate::{
    state::FilterState,
    stream::{HeaderMap, RequestHead, ResponseHead},
};

/// A future a paused filter waits on (built from [`Ctx::sleep`] or the filter's own state).
pub type Wait = Pin<Box<dyn Future<Output = ()>>>;

/// What a headers hook decided.
#[non_exhaustive]
pub enum HeadersStatus {
    /// Go on to the next filter.
    Continue,
    /// Wait for this future, then call [`HttpFilter::on_resume`] (request headers only; on the
    /// response path it is treated as `Continue`).
    Pause(Wait),
    /// Answer the client now with this reply.
    LocalReply(LocalReply),
}

impl std::fmt::Debug for HeadersStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadersStatus::Continue => f.write_str("Continue"),
            HeadersStatus::Pause(_) => f.write_str("Pause"),
            HeadersStatus::LocalReply(r) => write!(f, "LocalReply({})", r.status),
        }
    }
}

/// What a data or trailers hook decided.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataStatus {
    /// Pass the (possibly changed) data on.
    Continue,
    /// Answer locally (request path only; on the response path, once the head is sent, the
    /// engine can only end the stream: it closes the connection).
    LocalReply(LocalReply),
    /// Response trailers hook only: end the body with these bytes (after every piece already
    /// passed on), as gRPC-Web carries trailers in the body. The filter empties the trailers it
    /// moves there; trailers left empty are not sent. Other filters' data hooks do not see
    /// these bytes, so the filter that appends must be the one nearest the client that
    /// changes bodies.
    Append(Bytes),
}

/// A reply made by a filter (or by the engine for a filter's config error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Response headers (no framing headers: the codec adds `content-length`).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `x-ringway-reason` value and the access log's `%RESPONSE_CODE_DETAILS%` (e.g.
    /// `rate_limited`); `None` for replies that are not errors (a cache hit, a CORS preflight).
    /// An error's body without a `content-type` goes out as `text/plain`; a reply without a
    /// reason goes out with exactly its own fields (and the framing the codec adds).
    pub reason: Option<&'static str>,
}

impl LocalReply {
    /// A plain-text error reply: `status`, the status' reason phrase as body.
    pub fn error(status: u16, reason: &'static str, body: &'static str) -> LocalReply {
        LocalReply {
            status,
            headers: HeaderMap::default(),
            body: Bytes::from_static(body.as_bytes()),
            reason: Some(reason),
        }
    }
}

/// Which hooks a filter implements (the engine skips the rest, and keeps bodies off the filter
/// path unless a data hook is declared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    pub request_headers: bool,
    pub request_data: bool,
    pub request_trailers: bool,
    pub response_headers: bool,
    pub response_data: bool,
    pub response_trailers: bool,
    /// The whole request body must be here (at most this many bytes; more is a 413) before the
    /// request data hook runs once with `end_stream = true` and the request goes upstream.
    pub buffer_request_body: Option<usize>,
}

impl Hooks {
    /// Request and response headers hooks only.
    pub const HEADERS: Hooks = Hooks {
        request_headers: true,
        request_data: false,
        request_trailers: false,
        response_headers: true,
        response_data: false,
        response_trailers: false,
        buffer_request_body: None,
    };

    /// The union of two sets.
    pub fn or(self, o: Hooks) -> Hooks {
        Hooks {
            request_headers: self.request_headers || o.request_headers,
            request_data: self.request_data || o.request_data,
            request_trailers: self.request_trailers || o.request_trailers,
            response_headers: self.response_headers || o.response_headers,
            response_data: self.response_data || o.response_data,
            response_trailers: self.response_trailers || o.response_trailers,
            buffer_request_body: match (self.buffer_request_body, o.buffer_request_body) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// What the engine lends a filter: timers, and values about the stream that are not in the
/// heads. Implemented by the engine per worker.
pub trait Runtime {
    /// A future that completes after `d` (on the worker's timer).
    fn sleep(&self, d: Duration) -> Wait;
    /// Milliseconds on the worker's coarse clock (100 ms ticks): cheap, for expiry checks.
    fn now_ms(&self) -> u64;
}

/// The values `%VAR%` templates and filters read: see [`crate::template`].
pub trait Vars {
    /// Write the value of command `name` (upper-case, e.g. `DOWNSTREAM_REMOTE_ADDRESS`) with its
    /// optional argument (`REQ(x-a)` gives `Some("x-a")`) to `out`. `false`: no value (the
    /// template writes nothing for it).
    fn write(&self, name: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool;
}

/// The route a request matched, as filters see it.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo<'a> {
    /// The virtual host's name.
    pub virtual_host: &'a str,
    /// The route's `name` (empty when the route has none).
    pub name: &'a str,
    /// The cluster the route forwards to (`None` for direct responses and redirects).
    pub cluster: Option<&'a str>,
}

/// What a hook may see of the stream besides the head it is given.
pub struct Ctx<'a> {
    /// The client's address (after PROXY protocol, when there is one).
    pub peer: SocketAddr,
    /// The matched route (`None`: no route matched; the router will answer 404).
    pub route: Option<RouteInfo<'a>>,
    /// When the request's first byte arrived.
    pub start: Instant,
    /// Values the access log prints as `%FILTER_STATE(key)%`.
    pub state: &'a mut FilterState,
    /// The request head, on the response path (read-only).
    pub request: Option<&'a RequestHead>,
    /// Timers and the coarse clock.
    pub rt: &'a dyn Runtime,
    /// Values for `%VAR%` templates.
    pub vars: &'a dyn Vars,
    /// On the request path: the stream's response header map, lent for a local reply's headers
    /// (see [`Ctx::reply_headers`]).
    pub reply_spare: Option<&'a mut HeaderMap>,
}

impl Ctx<'_> {
    /// A future completing after `d`.
    pub fn sleep(&self, d: Duration) -> Wait {
        self.rt.sleep(d)
    }

    /// An empty header map for a [`LocalReply`]'s headers. On the request path it is the
    /// stream's own response map, with the room earlier responses left in it: a reply built in it
    /// costs no allocation. Elsewhere (and when taken twice) a new map.
    pub fn reply_headers(&mut self) -> HeaderMap {
        match self.reply_spare.as_deref_mut() {
            Some(m) => {
                m.clear();
                std::mem::take(m)
            }
            None => HeaderMap::default(),
        }
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("peer", &self.peer)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// One filter instance, living for one request. Every hook has a no-op default; declare the
/// ones you implement in [`FilterFactory::hooks`].
pub trait HttpFilter {
    /// The request head arrived. `end_stream`: the request has no body.
    fn on_request_headers(
        &mut self,
        _head: &mut RequestHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }
    /// The future of a [`HeadersStatus::Pause`] completed. May pause again.
    fn on_resume(&mut self, _head: &mut RequestHead, _cx: &mut Ctx<'_>) -> HeadersStatus {
        HeadersStatus::Continue
    }
    /// A piece of the request body (`data` may be replaced). `end_stream`: the last piece
    /// (possibly empty).
    fn on_request_data(
        &mut self,
        _data: &mut Bytes,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        DataStatus::Continue
    }
    /// The request's trailers (HTTP/1 chunked trailers, HTTP/2 trailing HEADERS).
    fn on_request_trailers(&mut self, _trailers: &mut HeaderMap, _cx: &mut Ctx<'_>) -> DataStatus {
        DataStatus::Continue
    }
    /// The response head arrived (from the upstream, or a reply made by the engine or a later
    /// filter). `end_stream`: the response has no body.
    fn on_response_headers(
        &mut self,
        _head: &mut ResponseHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }
    /// A piece of the response body (`data` may be replaced, e.g. compressed). `end_stream`: the
    /// last piece (possibly empty: a filter may still add bytes there).
    fn on_response_data(
        &mut self,
        _data: &mut Bytes,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> DataStatus {
        DataStatus::Continue
    }
    /// The response's trailers.
    fn on_response_trailers(&mut self, _trailers: &mut HeaderMap, _cx: &mut Ctx<'_>) -> DataStatus {
        DataStatus::Continue
    }
    /// The stream ended. Return `true` after putting this instance back in the state
    /// [`FilterFactory::create`] makes (releasing what the request held), and the worker may
    /// hand it to a later request instead of creating one: a chain of such filters costs no
    /// allocation per request. The default, `false`, drops it.
    fn recycle(&mut self) -> bool {
        false
    }
}

/// Builds a filter per request. One per worker per config snapshot (per route, for routes that
/// override the filter's config).
pub trait FilterFactory {
    /// The hooks this filter implements.
    fn hooks(&self) -> Hooks;
    /// The filter for one request.
    fn create(&self) -> Box<dyn HttpFilter>;
}

/// What a worker tells a filter config when it builds its factory.
#[derive(Debug, Clone, Copy)]
pub struct WorkerInfo {
    /// This worker's index (0-based).
    pub id: usize,
    /// How many workers the process runs (per-process budgets are split between them).
    pub count: usize,
}

/// A validated filter config: immutable, shared by every worker (built on the control thread).
pub trait FilterConfig: Send + Sync + std::fmt::Debug {
    /// The filter's registry name (`cors`, `local_ratelimit`...).
    fn name(&self) -> &'static str;
    /// This worker's factory (per-worker state starts here).
    fn worker(&self, w: WorkerInfo) -> Rc<dyn FilterFactory>;
    /// The filter's counters summed over every worker, as `(name, value)`: the engine prints
    /// them as `http.<stat_prefix>.<name>`.
    fn stats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Whether the stat `name` (as [`FilterConfig::stats`] names it) is a level (a Prometheus
    /// gauge) rather than a count.
    fn is_gauge(&self, _name: &str) -> bool {
        false
    }
}
