//! The router's exchange with an HTTP/2 cluster (`protocol: http2`): the request as a stream on
//! a pooled, multiplexed connection ([`crate::upstream::h2`]), the response decoded into the
//! model, then the same response path as HTTP/1 ([`super::respond`]).
//!
//! ```text
//! checkout a stream (a live connection below the server's stream limit) or connect + handshake
//!   ─▶ poll_ready ─▶ send_request (head from the model: :authority from the authority,
//!      connection-specific headers dropped, `te: trailers` kept when the client sent it)
//!   ─▶ body: whole (buffered) or streamed from the client within the upstream's window
//!   ─▶ response head within the try's deadline (route timeout, per-try timeouts) ─▶ back to the
//!      router's tries loop: retried under the route's retry_policy, or `respond` (filters,
//!      the client's codec)
//! a stream the server provably did not process (REFUSED_STREAM, or beyond a GOAWAY's last
//! stream id), or a connection that failed before the request left: tried again (up to 3
//! times) on another connection when the request can be sent again (its body whole).
//! ```

use std::{cell::Cell, future::poll_fn, time::Instant};

use bytes::Bytes;
use ringway_filters::{BodySize, HeaderMap, RequestHead, ResponseHead};

use super::{bounded, Target};
use crate::{
    error::LocalReason,
    http::{
        body::{BodyEvent, PumpError},
        conn_manager::Next,
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{Downstream, Side},
        h2::{send_data, to_http_headers},
        stream::{self, Filters, ReqInfo},
    },
    io::Conn,
    stats,
    upstream::h2::Stream,
};

/// Attempts of one request on different connections when the server did not process it.
const ATTEMPTS: u32 = 3;

/// How an HTTP/2 try ended when it produced no response.
pub(super) enum H2Fail {
    /// Answer with this reason unless the route's retry policy tries again; `sent`: the
    /// request left; `close`: close the client connection with the answer.
    Reply {
        why: LocalReason,
        sent: bool,
        close: bool,
    },
    /// Already answered: do this with the connection.
    Next(Next),
}

/// A response head from an HTTP/2 upstream (decoded into `d.si.resp`), its body to come.
pub(super) struct H2Response {
    pub(super) body: h2::RecvStream,
    pub(super) end: bool,
    pub(super) stream: Stream,
}

/// One try of the stream's request on an HTTP/2 cluster, up to its response head. `buffered`:
/// the whole body (with its `trailers`) when it is here; otherwise it is streamed from the
/// client. `first`: a new connection whose TLS chose `h2` (`protocol: auto`), to open HTTP/2
/// on before anything else. The router's tries loop decides what a failure or a status means
/// (`retry_policy`) and sends the response ([`respond`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    buffered: Option<Bytes>,
    trailers: Option<&HeaderMap>,
    mut filters: Option<&mut Filters<'_>>,
    mut first: Option<Conn>,
) -> Result<H2Response, H2Fail> {
    let Some(o) = t.cluster.http2 else {
        return Err(H2Fail::Next(Next::Close));
    };
    let limit = t.cluster.max_requests_per_connection;
    if let Some(b) = &buffered {
        d.si.bytes_received = b.len() as u64;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        d.si.retried = attempt > 1;
        let mut waited = 0;
        let stream = loop {
            if let Some(c) = first.take() {
                let _opening = t.ep.h2.opening();
                match handshake(t, c).await {
                    Ok(s) => break s,
                    Err(why) => {
                        let close = buffered.is_none();
                        return Err(H2Fail::Reply {
                            why,
                            sent: false,
                            close,
                        });
                    }
                }
            }
            if let Some(s) = t.ep.h2.checkout(o.max_concurrent_streams, limit) {
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_cx_pool_reuse);
                }
                break s;
            }
            // A connection on its way will probably take this stream too.
            if waited < 3 && t.ep.h2.room_coming() {
                waited += 1;
                let dl = w.drain.deadline_in(t.cluster.connect_timeout);
                let _ = w.drain.before(dl, t.ep.h2.wait_opened()).await;
                continue;
            }
            match connect(d, w, t).await {
                Ok(s) => break s,
                Err(why) => {
                    let close = buffered.is_none();
                    return Err(H2Fail::Reply {
                        why,
                        sent: false,
                        close,
                    });
                }
            }
        };
        d.si.upstream_reused = stream.reused;
        d.si.t_upstream_ready = Some(Instant::now());
        let retry = |d: &mut Downstream<S>, attempt: u32| {
            let again = buffered.is_some() && attempt < ATTEMPTS;
            if again {
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_rq_retry);
                }
            }
            let _ = d;
            again
        };
        let mut sr = stream.send.clone();
        let ready = bounded(
            w,
            Some(w.drain.deadline_in(t.cluster.connect_timeout)),
            poll_fn(|cx| sr.poll_ready(cx)),
        )
        .await;
        if !matches!(ready, Some(Ok(()))) {
            // The connection failed (or went away) before this request left.
            stream.mark_dead();
            if retry(d, attempt) {
                continue;
            }
            let why = LocalReason::UpstreamReset;
            let close = buffered.is_none();
            return Err(H2Fail::Reply {
                why,
                sent: false,
                close,
            });
        }
        let head = request_head(&d.si.req, info, t);
        let end = buffered.as_ref().is_some_and(|b| b.is_empty()) && trailers.is_none();
        let (response, mut send) = match sr.send_request(head, end) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(cluster = %t.cluster.name, error = %e, "HTTP/2 request not sent");
                stream.mark_dead();
                if retry(d, attempt) {
                    continue;
                }
                let why = LocalReason::UpstreamReset;
                let close = buffered.is_none();
                return Err(H2Fail::Reply {
                    why,
                    sent: false,
                    close,
                });
            }
        };
        // The body: whole, or streamed from the client (through the filters' data hooks).
        match &buffered {
            Some(b) if !end => {
                let mut ok = b.is_empty()
                    || send_data(&mut send, b.clone(), trailers.is_none())
                        .await
                        .is_ok();
                if let (true, Some(tr)) = (ok, trailers) {
                    let mut map = http::HeaderMap::new();
                    to_http_headers(tr, &mut map);
                    ok = send.send_trailers(map).is_ok();
                }
                let _ = ok;
            }
            Some(_) => {}
            None => {
                let f = filters.as_deref_mut();
                if let Err(next) = stream_body(d, l, w, info, &mut send, f).await {
                    return Err(H2Fail::Next(next));
                }
            }
        }
        d.si.t_request_sent = Some(Instant::now());
        let deadline = super::try_deadline(w, t);
        match bounded(w, deadline, response).await {
            None => {
                send.send_reset(h2::Reason::CANCEL);
                let why = LocalReason::UpstreamTimeout;
                return Err(H2Fail::Reply {
                    why,
                    sent: true,
                    close: false,
                });
            }
            Some(Err(e)) => {
                tracing::debug!(cluster = %t.cluster.name, error = %e, "HTTP/2 upstream stream failed");
                let unprocessed = e.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (e.is_go_away() && e.is_remote());
                if unprocessed && retry(d, attempt) {
                    continue;
                }
                let why = LocalReason::UpstreamReset;
                return Err(H2Fail::Reply {
                    why,
                    sent: true,
                    close: false,
                });
            }
            Some(Ok(resp)) => {
                d.si.t_first_byte = Some(Instant::now());
                let (parts, body) = resp.into_parts();
                let end = body.is_end_stream();
                decode_response(&parts, end, &mut d.si.resp);
                return Ok(H2Response { body, end, stream });
            }
        }
    }
}

/// A new connection to the endpoint (TLS when the cluster has it) with HTTP/2 on it, and its
/// first stream.
async fn connect<S>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    t: &Target<'_>,
) -> Result<Stream, LocalReason> {
    let _opening = t.ep.h2.opening();
    let c = match Conn::connect(t.ep.address, t.cluster.connect_timeout).await {
        Ok(c) => c,
        Err(e) => {
            if let Some(c) = t.cstats {
                stats::inc(&c.upstream_cx_connect_fail);
            }
            tracing::debug!(cluster = %t.cluster.name, endpoint = %t.ep.address, error = %e, "connect failed");
            return Err(LocalReason::ConnectFailure);
        }
    };
    if let Some(c) = t.cstats {
        stats::inc(&c.upstream_cx_total);
    }
    let c = match &t.cluster.tls {
        None => c,
        Some(tls) => match Box::pin(super::tls_connect(w, t, tls, c)).await {
            Ok(c) => c,
            Err(why) => {
                d.si.upstream_transport_failure = Some(why);
                return Err(LocalReason::UpstreamTlsFailure);
            }
        },
    };
    handshake(t, c).await
}

/// HTTP/2 on a connection (TLS done already, if any): its first stream.
async fn handshake(t: &Target<'_>, c: Conn) -> Result<Stream, LocalReason> {
    let Some(o) = t.cluster.http2 else {
        return Err(LocalReason::ConnectFailure);
    };
    match t
        .ep
        .h2
        .handshake(c, &o, t.cluster.connect_timeout, t.cluster.idle_timeout)
        .await
    {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::debug!(cluster = %t.cluster.name, endpoint = %t.ep.address, error = %e, "HTTP/2 handshake failed");
            if let Some(c) = t.cstats {
                stats::inc(&c.upstream_cx_connect_fail);
            }
            Err(LocalReason::UpstreamProtocolError)
        }
    }
}

/// Stream the client's body to the upstream stream. `Err`: the exchange is over (answered).
async fn stream_body<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    send: &mut h2::SendStream<Bytes>,
    filters: Option<&mut Filters<'_>>,
) -> Result<(), Next> {
    let timeout = Some((&w.drain, l.http.request_body_timeout));
    let received = Cell::new(0);
    let mut reply = None;
    let body_hooks = filters.filter(|f| {
        let h = f.active.hooks();
        h.request_data || h.request_trailers
    });
    let trailers_in = l.http.enable_trailers;
    let pumped = match body_hooks {
        None => {
            d.side
                .pump_request_h2(send, info.framing, trailers_in, timeout, &received, None)
                .await
        }
        Some(f) => {
            let vars = stream::vars(d.peer, info.version, f.route.as_ref());
            let rt = crate::http::filter_chain::WorkerRuntime { drain: &w.drain };
            let parts = f.parts(d.peer, d.si.start, &rt, &vars);
            let si = &mut *d.si;
            let state = &mut si.filter_state;
            let active = &mut f.active;
            let mut transform =
                |ev: BodyEvent<'_>| active.request_event(ev, state, &parts, &mut reply);
            d.side
                .pump_request_h2(
                    send,
                    info.framing,
                    trailers_in,
                    timeout,
                    &received,
                    Some(&mut transform),
                )
                .await
        }
    };
    d.si.bytes_received = received.get();
    match pumped {
        Ok(moved) => {
            d.si.bytes_received = moved;
            Ok(())
        }
        // The upstream reset the stream: its response (an early answer) may still come.
        Err(PumpError::DstWrite(_)) => Ok(()),
        Err(PumpError::Filter) => {
            send.send_reset(h2::Reason::CANCEL);
            let next = match reply {
                Some(r) => {
                    let r = stream::Reply::from_filter(r);
                    stream::send_reply(d, w, Some(info), r, None, true).await
                }
                None => Next::Close,
            };
            Err(next)
        }
        Err(e) => {
            send.send_reset(h2::Reason::CANCEL);
            Err(super::body_failed(d, w, info, e).await)
        }
    }
}

/// The upstream request head from the model.
fn request_head(req: &RequestHead, info: &ReqInfo, t: &Target<'_>) -> http::Request<()> {
    let scheme = if t.cluster.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    let authority = match http::uri::Authority::try_from(req.authority()) {
        Ok(a) if !req.authority().is_empty() => a,
        _ => http::uri::Authority::try_from(t.ep.address.to_string().as_str())
            .unwrap_or_else(|_| http::uri::Authority::from_static("localhost")),
    };
    let path = http::uri::PathAndQuery::try_from(req.path())
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"));
    let uri = http::Uri::from_parts({
        let mut p = http::uri::Parts::default();
        p.scheme = Some(scheme);
        p.authority = Some(authority);
        p.path_and_query = Some(path);
        p
    })
    .unwrap_or_default();
    let method = http::Method::from_bytes(req.method_str().as_bytes()).unwrap_or_default();
    let mut r = http::Request::new(());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = http::Version::HTTP_2;
    let h = r.headers_mut();
    to_http_headers(&req.headers, h);
    // gRPC servers want `te: trailers`; a gRPC-Web client (converted by the filter) never
    // sends it.
    if info.te_trailers || crate::http::grpc::is_grpc(req) {
        h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    if let BodySize::Known(n) = req.body {
        h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    r
}

/// Decode an HTTP/2 response head into the model: `content-length` gives the body's size (the
/// client's codec writes its own framing), connection-specific headers never arrive (`h2`
/// refuses them).
fn decode_response(parts: &http::response::Parts, end: bool, head: &mut ResponseHead) {
    head.status = parts.status.as_u16();
    head.headers.clear();
    let mut length = None;
    for (n, v) in &parts.headers {
        if n == http::header::CONTENT_LENGTH {
            length = std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            continue;
        }
        head.headers.append(n.as_str(), v.as_bytes());
    }
    head.body = match (end, length) {
        (true, _) | (false, Some(0)) => BodySize::Empty,
        (false, Some(n)) => BodySize::Known(n),
        (false, None) => BodySize::Unknown,
    };
}
