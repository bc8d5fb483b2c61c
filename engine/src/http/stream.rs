//! One request's stream, once its head is decoded: the HTTP filters' request hooks, the route's
//! action (the router is the terminal step: forward, direct response, redirect), and every
//! local reply, through the one writer ([`send_reply`]).
//!
//! ```text
//! conn_manager::begin ─▶ run ─▶ filters: request headers (may pause, may answer)
//!                          ├─▶ no route / direct_response / redirect ─▶ send_reply
//!                          └─▶ forward::forward (router: LB, pool, upstream codec)
//!                                 └─▶ response filters ─▶ client
//! ```
//!
//! Everything here works on the stream model in the request's `StreamInfo` (`si.req`,
//! `si.resp`); the HTTP/1 codec appears only where bytes are written.

use std::time::Instant;

use bytes::Bytes;
use ringway_filters::{BodySize, HeaderMap, LocalReply, RouteInfo};

use crate::{
    config::{HeaderEdits, PathMatch, Route, RouteAction},
    error::{status_text, LocalReason},
    http::{
        body,
        conn_manager::{Begun, Next},
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{Downstream, ReplyOut, Side},
        filter_chain::{Active, Parts, StreamVars, WorkerRuntime},
        forward,
        h1::{self, BodyFraming},
    },
    stream_info::Version,
};

/// The version a reply goes out in when the request never completed.
const DEFAULT_VERSION: Version = Version::Http11;

/// What the exchange needs to know about the request after its head is gone.
#[derive(Debug, Clone)]
pub struct ReqInfo {
    pub version: Version,
    pub keep_alive: bool,
    pub is_head: bool,
    pub framing: BodyFraming,
    pub expect_continue: bool,
    pub idempotent: bool,
    /// The protocol to upgrade to (`websocket`), when the request asks and ringway forwards it.
    pub upgrade: Option<Bytes>,
    /// The request carries `grpc-timeout` (the route timeout it asks for).
    pub grpc_timeout: bool,
    /// The client said `te: trailers` (HTTP/2: forwarded to HTTP/2 upstreams, which gRPC
    /// servers require).
    pub te_trailers: bool,
}

/// A reply the proxy makes itself.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `x-ringway-reason`.
    pub tag: Option<&'static str>,
    /// Why, for the access log's response flags.
    pub why: Option<LocalReason>,
    /// The body is the proxy's own text: it goes out as `content-type: text/plain` unless the
    /// reply names a type. `false` for a response made whole elsewhere (a cache hit, a
    /// response a filter replaced, a filter's reply without a reason), which goes out with
    /// exactly its own fields.
    pub plain: bool,
}

impl Reply {
    /// An error reply for `reason`: its status, the status' text as body.
    pub fn error(reason: LocalReason) -> Reply {
        let (status, tag) = reason.reply();
        Reply {
            status,
            headers: HeaderMap::default(),
            body: Bytes::from_static(status_text(status).as_bytes()),
            tag: Some(tag),
            why: Some(reason),
            plain: true,
        }
    }

    /// A filter's reply: an error (it has a reason) gets the default type for its body; a
    /// reply without one (a cache hit, a CORS preflight, a gRPC-Web answer) is sent as it is.
    pub(crate) fn from_filter(r: LocalReply) -> Reply {
        Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
            plain: r.reason.is_some(),
            tag: r.reason,
            why: None,
        }
    }
}

/// The filters of a stream and what their contexts are built from.
pub struct Filters<'a> {
    pub active: Active,
    pub route: Option<RouteInfo<'a>>,
}

impl<'a> Filters<'a> {
    /// The parts of a hook's context: the stream's peer and start, this route, the worker's
    /// runtime and the template values.
    pub fn parts<'p>(
        &self,
        peer: std::net::SocketAddr,
        start: Option<Instant>,
        rt: &'p dyn ringway_filters::Runtime,
        vars: &'p dyn ringway_filters::Vars,
    ) -> Parts<'p>
    where
        'a: 'p,
    {
        Parts {
            peer,
            route: self.route,
            start: start.unwrap_or_else(Instant::now),
            rt,
            vars,
        }
    }

    /// Run `f` with the parts of a hook's context.
    pub fn with_parts<T>(
        &mut self,
        d_peer: std::net::SocketAddr,
        start: Option<Instant>,
        w: &WorkerCtx,
        vars: StreamVars<'_>,
        f: impl FnOnce(&mut Active, &Parts<'_>) -> T,
    ) -> T {
        let rt = WorkerRuntime { drain: &w.drain };
        let parts = self.parts(d_peer, start, &rt, &vars);
        f(&mut self.active, &parts)
    }
}

/// Values for templates that do not borrow the stream's record.
pub fn vars<'a>(
    d_peer: std::net::SocketAddr,
    version: Version,
    route: Option<&RouteInfo<'a>>,
) -> StreamVars<'a> {
    StreamVars {
        peer: d_peer,
        local: None,
        protocol: match version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2",
        },
        route_name: route.map_or("", |r| r.name),
        virtual_host: route.map_or("", |r| r.virtual_host),
        cluster: route.and_then(|r| r.cluster),
        upstream: None,
        status: 0,
        request: None,
        response: None,
        state: None,
    }
}

fn route_info<'a>(l: &'a ListenerCtx, route: Option<&'a Route>) -> Option<RouteInfo<'a>> {
    let r = route?;
    Some(RouteInfo {
        virtual_host: l.routes.virtual_host_name(r.id),
        name: &r.name,
        cluster: match &r.action {
            RouteAction::Forward(f) => Some(f.cluster_name.as_str()),
            _ => None,
        },
    })
}

/// Run one stream: request filters, then the route's action.
pub(crate) async fn run<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    b: Begun<'_>,
) -> Next {
    let Begun { info, route } = b;
    let mut filters = l.chains.for_route(route).map(|c| Filters {
        active: c.start(),
        route: route_info(l, route),
    });
    if let Some(f) = filters
        .as_mut()
        .filter(|f| f.active.hooks().request_headers)
    {
        let end_stream = super::conn_manager::bodiless(info.framing);
        let rt = WorkerRuntime { drain: &w.drain };
        let vars = vars(d.peer, info.version, f.route.as_ref());
        let parts = f.parts(d.peer, d.si.start, &rt, &vars);
        let si = &mut *d.si;
        let answered = f
            .active
            .request_headers(
                &mut si.req,
                end_stream,
                &mut si.filter_state,
                &mut si.resp.headers,
                &parts,
            )
            .await;
        if let Some(r) = answered {
            let close = !discard_body(d, info.framing);
            return send_reply(
                d,
                w,
                Some(&info),
                Reply::from_filter(r),
                filters.as_mut(),
                close,
            )
            .await;
        }
    }
    let Some(route) = route else {
        let close = !discard_body(d, info.framing);
        let mut r = Reply::error(LocalReason::NoRoute);
        r.why = Some(LocalReason::NoRoute);
        return send_reply(d, w, Some(&info), r, filters.as_mut(), close).await;
    };
    match &route.action {
        RouteAction::DirectResponse { status, body } => {
            let close = !discard_body(d, info.framing);
            let mut reply = Reply {
                status: *status,
                headers: HeaderMap::default(),
                body: body.clone(),
                tag: None,
                why: None,
                plain: true,
            };
            edit_reply(d, l, route, &info, &mut reply, filters.as_ref());
            send_reply(d, w, Some(&info), reply, filters.as_mut(), close).await
        }
        RouteAction::Redirect(r) => {
            let close = !discard_body(d, info.framing);
            let location = redirect_location(r, &d.si.req);
            let mut headers = HeaderMap::default();
            headers.append("location", location);
            let mut reply = Reply {
                status: r.response_code,
                headers,
                body: Bytes::new(),
                tag: None,
                why: None,
                plain: true,
            };
            edit_reply(d, l, route, &info, &mut reply, filters.as_ref());
            send_reply(d, w, Some(&info), reply, filters.as_mut(), close).await
        }
        RouteAction::Forward(f) => {
            if let Some(rw) = &f.prefix_rewrite {
                let path = String::from_utf8_lossy(d.si.req.path());
                let path = rewrite_path(&route.matcher.path, &path, rw);
                d.si.req.set_path(path.as_bytes());
            }
            if let Some(h) = &f.host_rewrite {
                d.si.req.set_authority(h.as_bytes());
            }
            let (vh, own) = edits(l, route);
            if !vh.request.is_empty() || !own.request.is_empty() {
                let v = vars(
                    d.peer,
                    info.version,
                    filters.as_ref().and_then(|f| f.route.as_ref()),
                );
                vh.request.apply_request(&mut d.si.req, &v);
                own.request.apply_request(&mut d.si.req, &v);
            }
            forward::forward(d, l, w, info, route, f, filters).await
        }
    }
}

/// The header edits of a route's virtual host and of the route itself.
pub(crate) fn edits<'l>(
    l: &'l ListenerCtx,
    route: &'l Route,
) -> (&'l HeaderEdits, &'l HeaderEdits) {
    static NONE: std::sync::LazyLock<HeaderEdits> = std::sync::LazyLock::new(HeaderEdits::default);
    let vh = l
        .routes
        .virtual_host_of(route.id)
        .map_or(&*NONE, |vh| &vh.headers);
    (vh, &route.headers)
}

/// Apply the route's response header edits to a reply the router makes itself.
fn edit_reply<S>(
    d: &Downstream<S>,
    l: &ListenerCtx,
    route: &Route,
    info: &ReqInfo,
    reply: &mut Reply,
    filters: Option<&Filters<'_>>,
) {
    let (vh, own) = edits(l, route);
    if vh.response.is_empty() && own.response.is_empty() {
        return;
    }
    let mut v = vars(d.peer, info.version, filters.and_then(|f| f.route.as_ref()));
    v.status = reply.status;
    v.request = Some(&d.si.req);
    vh.response.apply(&mut reply.headers, &v);
    own.response.apply(&mut reply.headers, &v);
}

fn redirect_location(
    r: &crate::config::RedirectAction,
    req: &ringway_filters::RequestHead,
) -> String {
    let scheme = if r.https_redirect { "https" } else { "http" };
    // Switching to https drops the plain-HTTP port (the router's own host:port split).
    let req_host = match r.https_redirect {
        true => String::from_utf8_lossy(crate::router::strip_port(req.authority())),
        false => String::from_utf8_lossy(req.authority()),
    };
    let host = r.host_redirect.as_deref().unwrap_or(&req_host);
    let path = String::from_utf8_lossy(req.path());
    let target = r.path_redirect.as_deref().unwrap_or(&path);
    format!("{scheme}://{host}{target}")
}

/// Apply `prefix_rewrite`: for a prefix route the matched prefix is replaced; for exact and regex
/// routes the whole path (query kept).
pub(crate) fn rewrite_path(m: &PathMatch, path: &str, rw: &str) -> String {
    match m {
        PathMatch::Prefix(p) if path.len() >= p.len() => {
            let rest = &path[p.len()..];
            // Avoid a double slash when both the rewrite ends and the rest begins with '/'.
            if rw.ends_with('/') && rest.starts_with('/') {
                format!("{rw}{}", &rest[1..])
            } else {
                format!("{rw}{rest}")
            }
        }
        _ => match path.find('?') {
            Some(q) => format!("{rw}{}", &path[q..]),
            None => rw.to_string(),
        },
    }
}

/// Drop the body of a request answered locally, if it is all here; `false` = close instead.
pub(crate) fn discard_body<S: Side>(d: &mut Downstream<S>, framing: BodyFraming) -> bool {
    d.side.discard_body(framing)
}

/// The one local-reply writer: fill the response model from `reply`, let the filters that saw
/// the request see it (response headers, reverse order), encode and send it. `info` is `None`
/// when the request head never completed.
pub(crate) async fn send_reply<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: Option<&ReqInfo>,
    reply: Reply,
    filters: Option<&mut Filters<'_>>,
    force_close: bool,
) -> Next {
    let (version, is_head, ka) = match info {
        Some(i) => (i.version, i.is_head, i.keep_alive),
        None => (DEFAULT_VERSION, false, false),
    };
    let si = &mut *d.si;
    // A gRPC client gets its error as a gRPC status (HTTP 200, trailers-only).
    let reply = match super::grpc::is_grpc(&si.req) {
        true => super::grpc::local_reply(reply),
        false => reply,
    };
    si.resp.status = reply.status;
    si.resp.headers = reply.headers;
    let bodiless = reply.status < 200 || reply.status == 204 || reply.status == 304;
    if reply.plain
        && !bodiless
        && !reply.body.is_empty()
        && !si.resp.headers.contains("content-type")
    {
        si.resp.headers.append("content-type", "text/plain");
    }
    si.resp.body = if reply.body.is_empty() {
        BodySize::Empty
    } else {
        BodySize::Known(reply.body.len() as u64)
    };
    let mut body = reply.body;
    if let Some(f) = filters.filter(|f| f.active.hooks().response_headers) {
        let vars = vars(d.peer, version, f.route.as_ref());
        let start = si.start;
        let replaced = f.with_parts(d.peer, start, w, vars, |a, p| {
            a.response_headers(
                &mut si.resp,
                body.is_empty(),
                &si.req,
                &mut si.filter_state,
                p,
            )
        });
        if let Some(b) = replaced {
            // A filter replaced the reply: its head is in `si.resp` already.
            body = b;
        }
    }
    si.status = si.resp.status;
    if si.local_reason.is_none() {
        si.local_reason = reply.why;
    }
    if reply.why.is_none() && si.filter_details.is_none() {
        si.filter_details = reply.tag;
    }
    let close = force_close || !ka || w.drain.closing_conns();
    let out = ReplyOut {
        version,
        is_head,
        close,
        tag: reply.tag,
        body,
    };
    let ok = d.side.write_reply(w, si, out).await;
    if !ok || close {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Answer a head (or chunked body) that could not be parsed (400, 414, 431, 501, 505) and
/// close.
pub(crate) async fn reply_parse_error<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    e: h1::ParseError,
) -> Next {
    let status = e.status();
    d.si.downstream_reset = true;
    d.si.protocol_error = Some(e.reason());
    let reply = Reply {
        status,
        headers: HeaderMap::default(),
        body: Bytes::from_static(status_text(status).as_bytes()),
        tag: Some(e.reason()),
        why: None,
        plain: true,
    };
    send_reply(d, w, None, reply, None, true).await
}

/// Answer for `reason` before a request head completed (e.g. its timeout), and close.
pub(crate) async fn reply_early<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    reason: LocalReason,
) -> Next {
    send_reply(d, w, None, Reply::error(reason), None, true).await
}

/// Answer for `reason` on a request whose head is known.
pub(crate) async fn reply_error<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: &ReqInfo,
    reason: LocalReason,
    filters: Option<&mut Filters<'_>>,
    force_close: bool,
) -> Next {
    send_reply(d, w, Some(info), Reply::error(reason), filters, force_close).await
}

/// Read the whole request body for a filter that needs it (`buffer`), up to `max` bytes, with
/// its trailers when the listener decodes them.
pub(crate) async fn buffer_body<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: &ReqInfo,
    max: usize,
    timeout: std::time::Duration,
    trailers: bool,
) -> Result<body::WholeBody, body::ReadAllError> {
    let bound = Some((&w.drain, timeout));
    d.side.read_all(info.framing, max, bound, trailers).await
}
