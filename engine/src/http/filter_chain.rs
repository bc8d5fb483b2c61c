//! The HTTP filter chain on a worker: which filters run for a request, and running their hooks.
//!
//! Built once per worker per config snapshot ([`ChainSet::new`]): the connection manager's
//! `http_filters` become this worker's factories (per-worker state such as rate-limit buckets
//! and the cache starts there), and every route or virtual host that overrides a filter
//! (`per_filter_config`: disable it, or replace its config) gets its own resolved [`Chain`]. A
//! route without overrides shares the connection manager's chain; an empty chain is `None`, and
//! then a request pays one `Option` check.
//!
//! Per request ([`Active`]): one filter instance per enabled filter, request hooks in config
//! order, response hooks in reverse, only the hooks each filter declared. When a stream ends and
//! every filter recycles itself, its set goes back to the chain for the next request, so a
//! chain of built-in filters allocates nothing per request. The router is not in
//! this list: it is the terminal step the connection manager takes after the request hooks.
//! The engine lends filters a [`Runtime`] (the worker's timer and coarse clock) and [`Vars`]
//! (values for `%VAR%` templates) through [`ringway_filters::Ctx`].

use std::{cell::RefCell, net::SocketAddr, rc::Rc, time::Duration, time::Instant};

use bytes::Bytes;
use ringway_filters::{
    Ctx, DataStatus, FilterFactory, FilterState, HeaderMap, HeadersStatus, Hooks, HttpFilter,
    LocalReply, RequestHead, ResponseHead, RouteInfo, Runtime, Vars, Wait, WorkerInfo,
};

use crate::config::{HttpConnManager, PerFilterAction, Route};

/// Most recycled filter sets a chain keeps (about the worker's peak of concurrent streams).
const MAX_SPARE: usize = 256;

/// The filters one request runs, in config order.
pub struct Chain {
    factories: Vec<Rc<dyn FilterFactory>>,
    hooks: Vec<Hooks>,
    /// What any filter of the chain declared.
    pub union: Hooks,
    /// Filter sets of ended streams whose every filter recycled itself
    /// ([`HttpFilter::recycle`]): the next requests take them instead of allocating.
    spare: RefCell<Vec<Vec<Box<dyn HttpFilter>>>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} filters)", self.factories.len())
    }
}

impl Chain {
    fn new(factories: Vec<Rc<dyn FilterFactory>>) -> Option<Rc<Chain>> {
        if factories.is_empty() {
            return None;
        }
        let hooks: Vec<Hooks> = factories.iter().map(|f| f.hooks()).collect();
        let union = hooks.iter().fold(Hooks::default(), |a, h| a.or(*h));
        Some(Rc::new(Chain {
            factories,
            hooks,
            union,
            spare: RefCell::new(Vec::new()),
        }))
    }

    /// The filters for one request: a recycled set, or new ones.
    pub fn start(self: &Rc<Self>) -> Active {
        let spare = self.spare.borrow_mut().pop();
        Active {
            filters: spare.unwrap_or_else(|| self.factories.iter().map(|f| f.create()).collect()),
            chain: Rc::clone(self),
            // Every filter sees the request unless a request-headers hook answers first.
            entered: self.factories.len(),
        }
    }
}

/// One listener's chains on one worker: the connection manager's, and each route's.
#[derive(Debug, Default)]
pub struct ChainSet {
    default: Option<Rc<Chain>>,
    /// By `Route::id`: `None` = the default chain.
    per_route: Vec<Option<Option<Rc<Chain>>>>,
}

impl ChainSet {
    /// Build this worker's factories for `hcm` and resolve every route's chain.
    pub fn new(hcm: &HttpConnManager, w: WorkerInfo) -> ChainSet {
        if hcm.http_filters.is_empty() {
            return ChainSet::default();
        }
        let base: Vec<Option<Rc<dyn FilterFactory>>> = hcm
            .http_filters
            .iter()
            .map(|f| (!f.disabled).then(|| f.config.worker(w)))
            .collect();
        let default = Chain::new(base.iter().flatten().cloned().collect());
        let routes = hcm
            .virtual_hosts
            .iter()
            .flat_map(|vh| vh.routes.iter().map(move |r| (vh, r)));
        let mut per_route = Vec::new();
        for (vh, r) in routes {
            if vh.per_filter.is_empty() && r.per_filter.is_empty() {
                per_route.push(None);
                continue;
            }
            let mut list = base.clone();
            for p in vh.per_filter.iter().chain(r.per_filter.iter()) {
                if let Some(slot) = list.get_mut(p.filter) {
                    *slot = match &p.action {
                        PerFilterAction::Disabled => None,
                        PerFilterAction::Config(c) => Some(c.worker(w)),
                    };
                }
            }
            per_route.push(Some(Chain::new(list.into_iter().flatten().collect())));
        }
        ChainSet { default, per_route }
    }

    /// The chain for a request that matched `route` (or none).
    #[inline]
    pub fn for_route(&self, route: Option<&Route>) -> Option<&Rc<Chain>> {
        match route.and_then(|r| self.per_route.get(r.id)) {
            Some(Some(c)) => c.as_ref(),
            _ => self.default.as_ref(),
        }
    }
}

/// One request's filters.
pub struct Active {
    filters: Vec<Box<dyn HttpFilter>>,
    chain: Rc<Chain>,
    /// How many filters have seen the request head (only they see the response).
    entered: usize,
}

impl Drop for Active {
    /// The stream ended: keep the set for a later request when every filter recycled itself.
    fn drop(&mut self) {
        let mut filters = std::mem::take(&mut self.filters);
        if filters.iter_mut().all(|f| f.recycle()) {
            let mut spare = self.chain.spare.borrow_mut();
            if spare.len() < MAX_SPARE {
                spare.push(filters);
            }
        }
    }
}

/// The parts of a stream a hook's context is made of.
pub struct Parts<'a> {
    pub peer: SocketAddr,
    pub route: Option<RouteInfo<'a>>,
    pub start: Instant,
    pub rt: &'a dyn Runtime,
    pub vars: &'a dyn Vars,
}

impl Active {
    pub fn hooks(&self) -> Hooks {
        self.chain.union
    }

    /// Run the request-headers hooks in order. `Some(reply)`: a filter answered. `spare`: the
    /// stream's response header map, lent to a filter that builds a reply
    /// ([`ringway_filters::Ctx::reply_headers`]).
    pub async fn request_headers(
        &mut self,
        head: &mut RequestHead,
        end_stream: bool,
        state: &mut FilterState,
        spare: &mut HeaderMap,
        p: &Parts<'_>,
    ) -> Option<LocalReply> {
        for i in 0..self.filters.len() {
            self.entered = i + 1;
            if !self.chain.hooks[i].request_headers {
                continue;
            }
            let mut status = {
                let mut cx = ctx(p, state, None, Some(&mut *spare));
                self.filters[i].on_request_headers(head, end_stream, &mut cx)
            };
            loop {
                match status {
                    HeadersStatus::Continue => break,
                    HeadersStatus::LocalReply(r) => return Some(r),
                    HeadersStatus::Pause(wait) => {
                        wait.await;
                        let mut cx = ctx(p, state, None, Some(&mut *spare));
                        status = self.filters[i].on_resume(head, &mut cx);
                    }
                    _ => break,
                }
            }
        }
        None
    }

    /// Run the request-data hooks in order over one piece of the body.
    pub fn request_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        state: &mut FilterState,
        p: &Parts<'_>,
    ) -> Option<LocalReply> {
        for i in 0..self.entered {
            if !self.chain.hooks[i].request_data {
                continue;
            }
            let mut cx = ctx(p, state, None, None);
            if let DataStatus::LocalReply(r) =
                self.filters[i].on_request_data(data, end_stream, &mut cx)
            {
                return Some(r);
            }
        }
        None
    }

    /// Run the request-trailers hooks in order.
    pub fn request_trailers(
        &mut self,
        trailers: &mut HeaderMap,
        state: &mut FilterState,
        p: &Parts<'_>,
    ) -> Option<LocalReply> {
        for i in 0..self.entered {
            if !self.chain.hooks[i].request_trailers {
                continue;
            }
            let mut cx = ctx(p, state, None, None);
            if let DataStatus::LocalReply(r) =
                self.filters[i].on_request_trailers(trailers, &mut cx)
            {
                return Some(r);
            }
        }
        None
    }

    /// Run the response-trailers hooks in reverse. `Ok(Some(bytes))`: filters asked to end the
    /// body with these bytes ([`DataStatus::Append`]); `Err(reason)`: a filter asked to end the
    /// stream (its reply's reason, if it gave one).
    pub fn response_trailers(
        &mut self,
        trailers: &mut HeaderMap,
        request: &RequestHead,
        state: &mut FilterState,
        p: &Parts<'_>,
    ) -> Result<Option<Bytes>, Option<&'static str>> {
        let mut tail: Option<Bytes> = None;
        for i in (0..self.entered).rev() {
            if !self.chain.hooks[i].response_trailers {
                continue;
            }
            let mut cx = ctx(p, state, Some(request), None);
            match self.filters[i].on_response_trailers(trailers, &mut cx) {
                DataStatus::LocalReply(r) => return Err(r.reason),
                DataStatus::Append(b) => {
                    tail = Some(match tail {
                        None => b,
                        Some(t) => [t, b].concat().into(),
                    })
                }
                _ => {}
            }
        }
        Ok(tail)
    }

    /// One piece of a request body (or its trailers) through the request data and trailers
    /// hooks, as a body pump's transform. `false`: a filter answered (its reply in `reply`).
    pub fn request_event(
        &mut self,
        ev: crate::http::body::BodyEvent<'_>,
        state: &mut FilterState,
        p: &Parts<'_>,
        reply: &mut Option<LocalReply>,
    ) -> bool {
        use crate::http::body::BodyEvent;
        *reply = match ev {
            BodyEvent::Data(data, end) => self.request_data(data, end, state, p),
            BodyEvent::Trailers(t, _) => self.request_trailers(t, state, p),
        };
        reply.is_none()
    }

    /// One piece of a response body (or its trailers) through the response data and trailers
    /// hooks, as a body pump's transform. `false`: a filter ended the stream (its reason, or
    /// `filter_ended_stream`, in `ended`).
    pub fn response_event(
        &mut self,
        ev: crate::http::body::BodyEvent<'_>,
        request: &RequestHead,
        state: &mut FilterState,
        p: &Parts<'_>,
        ended: &mut Option<&'static str>,
    ) -> bool {
        use crate::http::body::BodyEvent;
        let done = match ev {
            BodyEvent::Data(data, end) => self.response_data(data, end, request, state, p),
            BodyEvent::Trailers(tr, tail) => self
                .response_trailers(tr, request, state, p)
                .map(|t| *tail = t),
        };
        match done {
            Ok(()) => true,
            Err(reason) => {
                *ended = Some(reason.unwrap_or("filter_ended_stream"));
                false
            }
        }
    }

    /// Run the response-headers hooks in reverse, over the filters that saw the request. A
    /// filter's local reply replaces the response (head and body) and the filters nearer the
    /// client still see it; `Some(body)`: the response was replaced and this is its body.
    pub fn response_headers(
        &mut self,
        head: &mut ResponseHead,
        mut end_stream: bool,
        request: &RequestHead,
        state: &mut FilterState,
        p: &Parts<'_>,
    ) -> Option<Bytes> {
        let mut replaced = None;
        for i in (0..self.entered).rev() {
            if !self.chain.hooks[i].response_headers {
                continue;
            }
            let mut cx = ctx(p, state, Some(request), None);
            if let HeadersStatus::LocalReply(r) =
                self.filters[i].on_response_headers(head, end_stream, &mut cx)
            {
                head.status = r.status;
                head.headers = r.headers;
                head.body = if r.body.is_empty() {
                    ringway_filters::BodySize::Empty
                } else {
                    ringway_filters::BodySize::Known(r.body.len() as u64)
                };
                end_stream = r.body.is_empty();
                replaced = Some(r.body);
            }
        }
        replaced
    }

    /// Run the response-data hooks in reverse over one piece of the body. `Err(reason)`: a
    /// filter asked to end the stream (the head is gone: the connection closes), with its
    /// reply's reason if it gave one.
    pub fn response_data(
        &mut self,
        data: &mut Bytes,
        end_stream: bool,
        request: &RequestHead,
        state: &mut FilterState,
        p: &Parts<'_>,
    ) -> Result<(), Option<&'static str>> {
        for i in (0..self.entered).rev() {
            if !self.chain.hooks[i].response_data {
                continue;
            }
            let mut cx = ctx(p, state, Some(request), None);
            if let DataStatus::LocalReply(r) =
                self.filters[i].on_response_data(data, end_stream, &mut cx)
            {
                return Err(r.reason);
            }
        }
        Ok(())
    }
}

fn ctx<'a>(
    p: &'a Parts<'a>,
    state: &'a mut FilterState,
    request: Option<&'a RequestHead>,
    reply_spare: Option<&'a mut HeaderMap>,
) -> Ctx<'a> {
    Ctx {
        peer: p.peer,
        route: p.route,
        start: p.start,
        state,
        request,
        rt: p.rt,
        vars: p.vars,
        reply_spare,
    }
}

/// The worker's timer and coarse clock, as filters see them.
#[derive(Debug)]
pub struct WorkerRuntime<'a> {
    pub drain: &'a crate::drain::Drain,
}

impl Runtime for WorkerRuntime<'_> {
    fn sleep(&self, d: Duration) -> Wait {
        Box::pin(compio::time::sleep(d))
    }
    fn now_ms(&self) -> u64 {
        self.drain.now_ms()
    }
}

/// Values for `%VAR%` templates, from what the stream knows that is not in the heads a hook
/// holds (`REQ`/`RESP` come from the heads: see `Template::render_on`).
#[derive(Debug)]
pub struct StreamVars<'a> {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub protocol: &'static str,
    pub route_name: &'a str,
    pub virtual_host: &'a str,
    pub cluster: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    pub status: u16,
    pub request: Option<&'a RequestHead>,
    pub response: Option<&'a ResponseHead>,
    pub state: Option<&'a FilterState>,
}

impl Vars for StreamVars<'_> {
    fn write(&self, name: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool {
        use std::io::Write as _;
        match (name, arg) {
            ("DOWNSTREAM_REMOTE_ADDRESS", _) => {
                let _ = write!(out, "{}", self.peer);
            }
            ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", _) => {
                let _ = write!(out, "{}", self.peer.ip());
            }
            ("DOWNSTREAM_LOCAL_ADDRESS", _) => match self.local {
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => return false,
            },
            ("PROTOCOL", _) => out.extend_from_slice(self.protocol.as_bytes()),
            ("HOSTNAME", _) => out.extend_from_slice(crate::text::hostname().as_bytes()),
            ("START_TIME", _) => crate::text::rfc3339_now(out),
            ("ROUTE_NAME", _) if !self.route_name.is_empty() => {
                out.extend_from_slice(self.route_name.as_bytes())
            }
            ("VIRTUAL_HOST_NAME", _) if !self.virtual_host.is_empty() => {
                out.extend_from_slice(self.virtual_host.as_bytes())
            }
            ("UPSTREAM_CLUSTER", _) => match self.cluster {
                Some(c) => out.extend_from_slice(c.as_bytes()),
                None => return false,
            },
            ("UPSTREAM_HOST", _) => match self.upstream {
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => return false,
            },
            ("RESPONSE_CODE", _) if self.status != 0 => {
                let mut b = [0u8; 20];
                out.extend_from_slice(crate::text::decimal(u64::from(self.status), &mut b));
            }
            ("REQ", Some(h)) => {
                match self
                    .request
                    .and_then(|r| ringway_filters::template::request_value(r, h))
                {
                    Some(v) => out.extend_from_slice(v),
                    None => return false,
                }
            }
            ("RESP", Some(h)) => match self.response.and_then(|r| r.headers.get_bytes(h)) {
                Some(v) => out.extend_from_slice(v),
                None => return false,
            },
            ("FILTER_STATE", Some(k)) => match self.state.and_then(|s| s.get(k)) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => return false,
            },
            _ => return false,
        }
        true
    }
}
