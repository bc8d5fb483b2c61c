//! The router's terminal step: send the stream's request to an upstream and its response back.
//!
//! Named steps, in order: [`forward`] picks an endpoint ([`ClusterView::pick`]) and prepares
//! the body (buffered for a filter that asks, or already here, or streamed); [`send`] takes a
//! pooled connection (its read already posted) or connects, writes head and body, and waits for
//! the first response bytes (a reused connection that fails before any response byte is retried
//! once on a fresh one when the request is idempotent and fully buffered); [`read_head`] reads
//! the response head; [`respond`] decodes it into the model, runs the response filters, encodes
//! it for the client and moves the body (straight through, or through the filters' data hooks);
//! [`release`] is the one place a connection goes back to its pool.
//!
//! A cluster with `upstream_proxy_protocol`: the request's downstream (client, local) addresses
//! are looked up once (`getsockname`, for such clusters only) and go into the [`Target`]; the
//! pool hands out only a connection opened for the same addresses, and a new connection gets
//! the PROXY header in the same vectored write as the request head (and body).

use std::{cell::Cell, rc::Rc, time::Duration, time::Instant};

use bytes::{Bytes, BytesMut};
use ringway_filters::{BodySize, HeaderMap};

use crate::{
    config::{ForwardAction, Route},
    endpoint_health::Outcome,
    error::LocalReason,
    http::{
        body::{self, BodyEvent, PumpError, ReadAllError},
        conn_manager::Next,
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{h1_version, Downstream, Side, H1},
        h1::{self, model, BodyFraming},
        stream::{self, Filters, ReqInfo},
    },
    io::{Conn, PostedRead, ReadBuf},
    stats,
    stream_info::Reported,
    upstream::{encode_proxy_header, ActiveRq, ClusterView, EndpointView, Proxied, RetryGuard},
};

use super::retry::{self, Tried, TryEnd};

mod h2;

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response bodies up to this size that arrive with the head go out in the same write.
const INLINE_BODY: usize = 4096;

/// Where a forwarded request is going.
pub(crate) struct Target<'w> {
    pub(crate) cluster: &'w ClusterView,
    pub(crate) ep: &'w EndpointView,
    pub(crate) cstats: Option<&'w stats::ClusterStats>,
    pub(crate) timeout: Option<Duration>,
    /// The downstream (client, local) addresses when the cluster sends a PROXY header: the
    /// header's content and the key its pooled connections are reused under.
    pub(crate) proxied: Option<Proxied>,
    /// The route deadline on the coarse clock, fixed when the first try's request has gone
    /// (`None`: not yet; `Some(None)`: no route timeout).
    pub(crate) route_deadline: &'w Cell<Option<Option<u64>>>,
    /// Each try's own timeout (`per_try_timeout`).
    pub(crate) per_try: Option<Duration>,
    /// The longest a try waits for the upstream's next bytes (`per_try_idle_timeout`): for the
    /// response head (a retriable timeout), then for each read of the body.
    pub(crate) per_try_idle: Option<Duration>,
}

impl Target<'_> {
    /// The wait allowed for each read of the response body: the route timeout, or
    /// `per_try_idle_timeout` when shorter.
    fn body_read_timeout(&self) -> Option<Duration> {
        match (self.timeout, self.per_try_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Forward the stream's request (the model in `d.si.req`) to the route's cluster.
pub(crate) async fn forward<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: ReqInfo,
    route: &Route,
    f: &ForwardAction,
    mut filters: Option<Filters<'_>>,
) -> Next {
    // The route's cluster (for `weighted_clusters`, chosen once per request: retries stay on it).
    let cid = w.clusters.route_cluster(f);
    let Some(cluster) = w.clusters.clusters.get(cid) else {
        let why = LocalReason::NoHealthyUpstream;
        return stream::reply_error(d, w, &info, why, filters.as_mut(), true).await;
    };
    // `hash_policy`: only for a cluster that balances by hash.
    let hash = match cluster.policy.hashing() && !f.hash_policy.is_empty() {
        false => None,
        true => hashed(d, f),
    };
    let Some(ep) = cluster.pick_hashed(hash) else {
        let close = !stream::discard_body(d, info.framing);
        let why = LocalReason::NoHealthyUpstream;
        return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
    };
    let proxied = match cluster.proxy_protocol {
        None => None,
        Some(_) => match d.local_addr() {
            Ok(local) => Some((d.peer, local)),
            Err(e) => {
                // Only a broken socket has no local address: the header could not be written.
                tracing::debug!(error = %e, "downstream local address unknown");
                let close = !stream::discard_body(d, info.framing);
                let why = LocalReason::ConnectFailure;
                return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
            }
        },
    };
    let timeout = match info.grpc_timeout {
        false => f.timeout,
        // A gRPC client's deadline replaces the route's timeout (capped by
        // `max_grpc_timeout`).
        true => match super::grpc::timeout(d.si.req.headers.get_bytes("grpc-timeout")) {
            Some(g) => Some(f.max_grpc_timeout.map_or(g, |m| g.min(m))),
            None => f.timeout,
        },
    };
    d.si.cluster = Some(cid);
    let cstats = w.stats.cluster(cid);
    // `max_requests`: this worker's share of the cluster's requests in flight.
    if !cluster.breakers.request_allowed() {
        if let Some(c) = cstats {
            stats::inc(&c.upstream_rq_pending_overflow);
        }
        let close = !stream::discard_body(d, info.framing);
        let why = LocalReason::Overflow;
        return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
    }
    // The route's retry policy, if this request may be retried under it.
    let policy = f.retry.as_deref().filter(|p| {
        info.upgrade.is_none()
            && (p.retriable_request_headers.is_empty()
                || p.retriable_request_headers
                    .iter()
                    .any(|m| crate::router::header_matches(m, &d.si.req.headers)))
    });

    // A body that is already complete can be sent in one write, and replayed on a retry.
    let mut buffered: Option<Bytes> = d.side.body_if_here(info.framing);
    let want = filters.as_ref().map(|f| f.active.hooks());
    let mut trailers: Option<HeaderMap> = None;
    // A filter that needs the whole body, or a retry policy (which can only send a body again
    // if it kept it: one of known length up to RETRY_BUFFER is read whole first).
    let buffer_for = match want.and_then(|h| h.buffer_request_body) {
        Some(max) => Some((max, true)),
        None => match (policy.is_some() || !f.mirrors.is_empty(), info.framing) {
            (true, BodyFraming::Length(n)) if n as usize <= RETRY_BUFFER => {
                Some((RETRY_BUFFER, false))
            }
            _ => None,
        },
    };
    if let Some((max, strict)) = buffer_for {
        if buffered.is_none() {
            let timeout = l.http.request_body_timeout;
            match stream::buffer_body(d, w, &info, max, timeout, l.http.enable_trailers).await {
                Ok(whole) => {
                    buffered = Some(whole.body);
                    trailers = whole.trailers;
                }
                Err(ReadAllError::TooLarge(_)) => {
                    let why = LocalReason::RequestTooLarge;
                    return stream::reply_error(d, w, &info, why, filters.as_mut(), true).await;
                }
                Err(ReadAllError::Pump(e)) => return body_failed(d, w, &info, e).await,
            }
        } else if strict && buffered.as_ref().is_some_and(|b| b.len() > max) {
            let why = LocalReason::RequestTooLarge;
            return stream::reply_error(d, w, &info, why, filters.as_mut(), true).await;
        }
    }
    if let (Some(fl), Some(b)) = (filters.as_mut(), buffered.as_mut()) {
        let h = fl.active.hooks();
        if h.request_data || h.request_trailers {
            let vars = stream::vars(d.peer, info.version, fl.route.as_ref());
            let si = &mut *d.si;
            let start = si.start;
            let reply = fl.with_parts(d.peer, start, w, vars, |a, p| {
                let state = &mut si.filter_state;
                a.request_data(b, true, state, p).or_else(|| {
                    let t = trailers.as_mut()?;
                    a.request_trailers(t, state, p)
                })
            });
            if let Some(r) = reply {
                let reply = stream::Reply::from_filter(r);
                return stream::send_reply(d, w, Some(&info), reply, filters.as_mut(), false).await;
            }
        }
    }

    // `request_mirror_policies`: copies go out once per request, whatever the tries.
    if !f.mirrors.is_empty() {
        mirror(d, w, &info, f, buffered.as_ref(), timeout);
    }

    // The tries: one, or more under a retry policy. The route timeout counts from the end of
    // the first request and bounds them all; each try may have its own (`per_try_timeout`).
    let route_deadline = Cell::new(None);
    let per_try = policy.and_then(|p| p.per_try_timeout);
    let per_try_idle = policy.and_then(|p| p.per_try_idle_timeout);
    let mut tried = Tried::default();
    // The body as it was before trailers were framed into it, for an `auto` cluster that turns
    // out to speak HTTP/2 (rare: a buffered body with trailers).
    let mut unframed: Option<Bytes> = None;
    let mut framed = false;
    let mut _retrying: Option<RetryGuard<'_>> = None;
    let mut ep = ep;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        d.si.attempts = attempt;
        d.si.outcome_reported = Reported::No;
        tried.add(ep.index);
        let _active = ActiveRq::new(cluster, ep);
        w.stats.upstream_rq(cid, ep.index);
        let t = Target {
            cluster,
            ep,
            cstats,
            timeout,
            proxied,
            route_deadline: &route_deadline,
            per_try,
            per_try_idle,
        };
        d.si.upstream = Some(ep.address);
        d.si.endpoint = ep.index as u32;
        if f.attempt_count_header {
            d.si.req
                .headers
                .set("x-envoy-attempt-count", attempt.to_string());
        }
        // An HTTP/2 try (the cluster's protocol, or an `auto` endpoint that chose `h2`): its
        // first connection when it just turned out to speak HTTP/2.
        let mut h2_first: Option<Option<Conn>> = None;
        if cluster.http2.is_some() && (!cluster.http2_auto || ep.h2_seen.get()) {
            h2_first = Some(None);
        }
        let (end, why, close) = 'tried: {
            if h2_first.is_none() {
                if !framed {
                    framed = true;
                    if let Some(b) = buffered.as_mut() {
                        d.si.bytes_received = b.len() as u64;
                        let h1_trailers = trailers
                            .as_ref()
                            .filter(|t| cluster.enable_trailers && !t.is_empty());
                        d.si.req.body = match h1_trailers {
                            // Trailers can only follow a chunked body: the buffered body goes as one
                            // chunk.
                            Some(t) => {
                                unframed = Some(b.clone());
                                *b = chunked_with_trailers(b, t);
                                BodySize::Unknown
                            }
                            None if b.is_empty() => BodySize::Empty,
                            None => BodySize::Known(b.len() as u64),
                        };
                    }
                }
                // The encoder sizes the head and reserves it once, in one of the worker's spare write
                // buffers: written, kept for a retry, then given back (no allocation per request).
                let mut head = w.write_bufs.take(0);
                model::encode_request(&d.si.req, info.upgrade.as_deref(), &mut head);
                let sent = send(
                    d,
                    l,
                    w,
                    &info,
                    &t,
                    &mut head,
                    buffered.clone(),
                    filters.as_mut(),
                )
                .await;
                w.write_bufs.give(head);
                // How this try ended, when it did not produce the response to send.
                let (end, why, close) = match sent {
                    Ok((up, first, whole)) => match read_head(d, w, &info, &t, &up, first).await {
                        Ok((mut p, rest)) => {
                            // An answer before the whole request went: the client's connection
                            // closes after it (the rest of its request was not read), and so
                            // does the upstream's.
                            let cut;
                            let info = if whole {
                                &info
                            } else {
                                p.up_keep = false;
                                cut = ReqInfo {
                                    keep_alive: false,
                                    ..info.clone()
                                };
                                &cut
                            };
                            let status = d.si.resp.status;
                            let end = TryEnd::Status(status, grpc_status(&d.si.resp.headers));
                            let wanted = policy.is_some_and(|pol| retry::wants_retry(pol, end));
                            let again = wanted
                                && may_retry(d, w, &t, policy, attempt, buffered.is_some(), end);
                            if !again {
                                // A retry success: a retried request whose answer the policy accepts.
                                if attempt > 1 && !wanted {
                                    if let Some(c) = cstats {
                                        stats::inc(&c.upstream_rq_retry_success);
                                    }
                                }
                                // Outlier detection hears the status now, before the client does.
                                cluster.report(ep.index, Outcome::Status(status));
                                d.si.outcome_reported = Reported::Status;
                                let from = Upstream::H1 { up: &up, p, rest };
                                return respond(d, l, w, info, route, &t, from, filters).await;
                            }
                            // Retried: this response is dropped, and its connection closed.
                            cluster.report(ep.index, Outcome::Status(status));
                            d.si.outcome_reported = Reported::Done;
                            (Some(end), None, false)
                        }
                        Err(why) => (try_end(why, true, &t, w), Some(why), false),
                    },
                    Err(Failed::Reply(why, close)) => {
                        (try_end(why, !close, &t, w), Some(why), close)
                    }
                    Err(Failed::Local(reply)) => {
                        return stream::send_reply(d, w, Some(&info), reply, filters.as_mut(), true)
                            .await
                    }
                    Err(Failed::Next(n)) => return n,
                    Err(Failed::H2(c, b)) => {
                        // `protocol: auto`: the endpoint's TLS chose `h2`; this request goes there too.
                        buffered = b;
                        h2_first = Some(Some(c));
                        (None, None, false)
                    }
                };
                if h2_first.is_none() {
                    break 'tried (end, why, close);
                }
            }
            // The HTTP/2 try. A body framed for HTTP/1 on an earlier try goes as it came.
            if framed {
                framed = false;
                buffered = unframed.take().or(buffered);
            }
            let first = h2_first.flatten();
            let b = buffered.clone();
            let fwd = h2::exchange(
                d,
                l,
                w,
                &info,
                &t,
                b,
                trailers.as_ref(),
                filters.as_mut(),
                first,
            );
            // Boxed: an HTTP/2 exchange's state must not make every HTTP/1 request's larger.
            match Box::pin(fwd).await {
                Ok(resp) => {
                    let status = d.si.resp.status;
                    let end = TryEnd::Status(status, grpc_status(&d.si.resp.headers));
                    let wanted = policy.is_some_and(|pol| retry::wants_retry(pol, end));
                    let again =
                        wanted && may_retry(d, w, &t, policy, attempt, buffered.is_some(), end);
                    if !again {
                        // A retry success: a retried request whose answer the policy accepts.
                        if attempt > 1 && !wanted {
                            if let Some(c) = cstats {
                                stats::inc(&c.upstream_rq_retry_success);
                            }
                        }
                        cluster.report(ep.index, Outcome::Status(status));
                        d.si.outcome_reported = Reported::Status;
                        let from = Upstream::H2 {
                            body: resp.body,
                            end: resp.end,
                            stream: resp.stream,
                        };
                        return respond(d, l, w, &info, route, &t, from, filters).await;
                    }
                    // Retried: this response is dropped (its stream reset).
                    cluster.report(ep.index, Outcome::Status(status));
                    d.si.outcome_reported = Reported::Done;
                    (Some(end), None, false)
                }
                Err(h2::H2Fail::Next(n)) => return n,
                Err(h2::H2Fail::Reply { why, sent, close }) => {
                    (try_end(why, sent, &t, w), Some(why), close)
                }
            }
        };
        if let Some(why) = why {
            // A failure: retried, or answered.
            let again = end.is_some_and(|end| {
                policy.is_some_and(|pol| retry::wants_retry(pol, end))
                    && may_retry(d, w, &t, policy, attempt, buffered.is_some(), end)
            });
            if let Some(o) = crate::http::ctx::outcome_of(why) {
                cluster.report(ep.index, o);
            }
            d.si.outcome_reported = Reported::Done;
            if !again {
                return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
            }
        }
        // Another try: counted, after a jittered back-off within the route deadline, on an
        // endpoint not tried yet when the policy says so.
        let Some(pol) = policy else {
            return Next::Close;
        };
        if let Some(c) = cstats {
            stats::inc(&c.upstream_rq_retry);
        }
        if _retrying.is_none() {
            _retrying = Some(RetryGuard::new(&cluster.breakers));
        }
        d.si.retried = true;
        d.si.resp.headers.clear();
        let rng = crate::rng::Rng::new(w.drain.now_ms() ^ (u64::from(attempt) << 40) ^ 0x5bd1);
        let wait = retry::backoff(pol, attempt, &rng);
        let dl = route_deadline.get().flatten();
        if !wait.is_zero() && bounded(w, dl, compio::time::sleep(wait)).await.is_none() {
            let why = LocalReason::UpstreamTimeout;
            return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
        }
        ep = match pick_again(cluster, pol, &tried) {
            Some(e) => e,
            None => {
                let why = LocalReason::NoHealthyUpstream;
                return stream::reply_error(d, w, &info, why, filters.as_mut(), close).await;
            }
        };
    }
}

/// The request's hash under the route's `hash_policy` (a generated cookie is kept for the
/// response).
#[cold]
fn hashed<S>(d: &mut Downstream<S>, f: &ForwardAction) -> Option<u64> {
    let (hash, cookie) = super::hash_policy::request_hash(&f.hash_policy, &d.si.req, d.peer);
    d.si.set_cookie = cookie.map(Vec::into_boxed_slice);
    hash
}

/// Queue a copy of the request for each of the route's mirrors that takes it (a request whose
/// body was not kept whole is not mirrored).
#[cold]
fn mirror<S>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: &ReqInfo,
    f: &ForwardAction,
    buffered: Option<&Bytes>,
    timeout: Option<Duration>,
) {
    let has_body = !matches!(info.framing, BodyFraming::None | BodyFraming::Length(0));
    if has_body && buffered.is_none() || info.upgrade.is_some() {
        return;
    }
    for m in &f.mirrors {
        if !w.clusters.sampled(m.per_million) {
            continue;
        }
        // The copy's head: the request as it goes upstream, its body framed by length.
        let size = std::mem::replace(
            &mut d.si.req.body,
            match buffered {
                Some(b) if !b.is_empty() => BodySize::Known(b.len() as u64),
                _ => BodySize::Empty,
            },
        );
        let authority = d.si.req.authority().to_vec();
        d.si.req
            .set_authority(&super::mirror::shadow_authority(&authority));
        let mut head = BytesMut::new();
        model::encode_request(&d.si.req, None, &mut head);
        d.si.req.set_authority(&authority);
        d.si.req.body = size;
        let job = super::mirror::Job {
            cluster: m.cluster,
            head,
            body: buffered.cloned(),
            is_head: d.si.req.method == ringway_filters::Method::Head,
            timeout,
        };
        if !w.mirrors.push(job) {
            if let Some(c) = w.stats.cluster(m.cluster) {
                stats::inc(&c.upstream_rq_pending_overflow);
            }
        }
    }
}

/// Request bodies up to this size are read whole before the first try when the route has a
/// retry policy (a body of unknown length, or a larger one, is streamed and not retried).
const RETRY_BUFFER: usize = 64 * 1024;

/// `grpc-status` in a response head (a trailers-only gRPC answer).
fn grpc_status(h: &HeaderMap) -> Option<u32> {
    let v = h.get_bytes("grpc-status")?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// How a failed try ended, for `retry_on` (`None`: never retried: the route deadline is
/// over, or it was not an upstream failure).
fn try_end(why: LocalReason, sent: bool, t: &Target<'_>, w: &WorkerCtx) -> Option<TryEnd> {
    match why {
        LocalReason::ConnectFailure | LocalReason::UpstreamTlsFailure => {
            Some(TryEnd::ConnectFailure)
        }
        LocalReason::UpstreamReset | LocalReason::UpstreamProtocolError => {
            Some(TryEnd::Reset { sent })
        }
        LocalReason::UpstreamTimeout => {
            let over = t
                .route_deadline
                .get()
                .flatten()
                .is_some_and(|dl| w.drain.now_ms() >= dl);
            if !over {
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_rq_per_try_timeout);
                }
            }
            (!over).then_some(TryEnd::Timeout)
        }
        _ => None,
    }
}

/// The limits on a retry the policy asked for: tries left, a body that can be sent again,
/// the route deadline, the cluster's retry breaker. A retry they forbid marks the stream
/// (`URX`) and is counted.
fn may_retry<S>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    t: &Target<'_>,
    policy: Option<&crate::config::RetryPolicy>,
    attempt: u32,
    body_kept: bool,
    end: TryEnd,
) -> bool {
    let Some(p) = policy else { return false };
    // A body streamed to the upstream is gone; a connect failure sent none of it.
    if !body_kept && end != TryEnd::ConnectFailure {
        return false;
    }
    if t.route_deadline
        .get()
        .flatten()
        .is_some_and(|dl| w.drain.now_ms() >= dl)
    {
        return false;
    }
    if attempt > p.num_retries {
        d.si.retry_limit = true;
        if let Some(c) = t.cstats {
            stats::inc(&c.upstream_rq_retry_limit_exceeded);
        }
        return false;
    }
    // The first retry of a request takes a retry slot (later ones reuse it).
    if attempt == 1 && !t.cluster.breakers.retry_allowed() {
        d.si.retry_overflow = true;
        if let Some(c) = t.cstats {
            stats::inc(&c.upstream_rq_retry_overflow);
        }
        return false;
    }
    true
}

/// An endpoint for the next try: one not tried yet when the policy avoids previous hosts
/// (within `host_selection_retry_max_attempts` picks), else the balancer's next pick.
fn pick_again<'c>(
    cluster: &'c ClusterView,
    p: &crate::config::RetryPolicy,
    tried: &Tried,
) -> Option<&'c EndpointView> {
    let mut ep = cluster.pick()?;
    if p.avoid_previous_hosts {
        for _ in 0..p.host_selection_retry_max_attempts {
            if !tried.contains(ep.index) {
                break;
            }
            ep = cluster.pick()?;
        }
    }
    Some(ep)
}

/// A whole body and its trailers as one chunk, the last chunk and the trailer section.
fn chunked_with_trailers(body: &Bytes, trailers: &HeaderMap) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + trailers.wire_len() + 32);
    if !body.is_empty() {
        h1::encode_chunk_header(body.len(), &mut out);
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    model::encode_trailers(trailers, &mut out);
    out.freeze()
}

/// Why a request could not be sent.
enum Failed {
    /// Answer with this reason; close the client connection when `true`.
    Reply(LocalReason, bool),
    /// A filter's data or trailers hook answered while the body was streaming (the client
    /// connection closes: the rest of its body is not read).
    Local(stream::Reply),
    /// Already handled: do this with the connection.
    Next(Next),
    /// `protocol: auto`: this new connection's TLS chose `h2` (the request's body, whole or
    /// not yet read, comes back with it).
    H2(Conn, Option<Bytes>),
}

/// The client's body failed while it was being forwarded.
async fn body_failed<S: Side>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: &ReqInfo,
    e: PumpError,
) -> Next {
    d.si.downstream_reset = true;
    tracing::debug!(error = %e, "request body failed");
    match e {
        PumpError::Malformed(pe) => stream::reply_parse_error(d, w, pe).await,
        // No response byte has gone out yet: say why, then close.
        PumpError::SrcTimeout => {
            stream::reply_error(d, w, info, LocalReason::RequestBodyTimeout, None, true).await
        }
        _ => Next::Close,
    }
}

/// How the first response bytes ended.
enum FirstRead {
    Data(ReadBuf),
    /// Closed or reset before any byte.
    Reset,
    /// A TLS error (an alert, a bad record) before any byte: why. On a new TLS 1.3 connection
    /// this is how an upstream refuses the client's certificate (the client's side of the
    /// handshake was already done).
    Tls(&'static str),
    Timeout,
}

/// The route deadline, in ms on the worker's coarse clock (`None`: no route timeout).
type Deadline = Option<u64>;

/// `fut` bounded by the route deadline on the coarse clock (`None`: it passed).
async fn bounded<F: std::future::Future>(
    w: &WorkerCtx,
    deadline: Deadline,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        Some(dl) => w.drain.before(dl, fut).await,
        None => Some(fut.await),
    }
}

async fn first_read(
    w: &WorkerCtx,
    up: &Conn,
    posted: Option<PostedRead>,
    deadline: Deadline,
) -> FirstRead {
    let r = match posted {
        Some(p) => bounded(w, deadline, p).await,
        None => bounded(w, deadline, up.read()).await,
    };
    match r {
        Some(Ok(Some(b))) => FirstRead::Data(b),
        Some(Err(e)) if crate::io::tls::rustls_error(&e).is_some() => {
            FirstRead::Tls(crate::io::tls::failure_reason(&e))
        }
        Some(_) => FirstRead::Reset,
        None => FirstRead::Timeout,
    }
}

/// After a write of the request failed, wait at most this long for an answer the upstream sent
/// first: a connection whose write failed was reset or closed, so its reads end at once.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// The upstream stopped taking the request (a write failed): its answer, when one is here. An
/// upstream may answer before it has read the whole request (a 413 for an upload it will not
/// take) and close; that answer is the response, as Envoy, nginx and HAProxy have it.
async fn early_answer(w: &WorkerCtx, up: &Conn, posted: Option<PostedRead>) -> Option<ReadBuf> {
    let deadline = Some(w.drain.deadline_in(EARLY_ANSWER_WAIT));
    match first_read(w, up, posted, deadline).await {
        FirstRead::Data(b) => Some(b),
        _ => None,
    }
}

/// Get a connection, send head and body, wait for the first response bytes. Returns the
/// connection, those bytes with the route deadline, and whether the whole request went (`false`:
/// the upstream answered before it took it all; neither connection may then be reused).
#[allow(clippy::too_many_arguments)]
async fn send<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    head: &mut BytesMut,
    buffered: Option<Bytes>,
    mut filters: Option<&mut Filters<'_>>,
) -> Result<(Rc<Conn>, (ReadBuf, Deadline), bool), Failed> {
    let replayable = buffered.is_some() && info.idempotent && info.upgrade.is_none();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pooled = match (attempt, &t.proxied) {
            (1, None) => t.ep.pool.checkout(t.cluster.idle_timeout, w.drain.now_ms()),
            (1, Some(p)) => {
                t.ep.pool
                    .checkout_proxied(t.cluster.idle_timeout, w.drain.now_ms(), p)
            }
            _ => None,
        }
        // `max_connection_duration`: an idle connection past its age is closed, not reused.
        .filter(|(c, _)| !t.cluster.too_old(c, w.drain.now_ms()));
        if attempt > 1 {
            d.si.retried = true;
        }
        let (up, posted, reused) = match pooled {
            Some((c, r)) => {
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_cx_pool_reuse);
                }
                (c, Some(r), true)
            }
            None if t.cluster.connections(1) >= t.cluster.breakers.max_connections
                && !t.cluster.evict_idle(t.ep.index) =>
            {
                // `max_connections`: wait (as a pending request, up to `max_pending_requests`)
                // for a request to end, within the route timeout; then look again.
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_cx_overflow);
                }
                let dl = t.timeout.map(|t| w.drain.deadline_in(t));
                match bounded(w, dl, t.cluster.breakers.wait_for_connection()).await {
                    Some(Some(())) => {
                        attempt -= 1;
                        continue;
                    }
                    Some(None) => {
                        if let Some(c) = t.cstats {
                            stats::inc(&c.upstream_rq_pending_overflow);
                        }
                        return Err(Failed::Reply(LocalReason::Overflow, buffered.is_none()));
                    }
                    None => {
                        return Err(Failed::Reply(
                            LocalReason::UpstreamTimeout,
                            buffered.is_none(),
                        ))
                    }
                }
            }
            None => match Conn::connect(t.ep.address, t.cluster.connect_timeout).await {
                Ok(c) => {
                    if let Some(c) = t.cstats {
                        stats::inc(&c.upstream_cx_total);
                    }
                    let c = match &t.cluster.tls {
                        None => c,
                        // Boxed: the handshake's state must not make every request's future larger.
                        Some(tls) => match Box::pin(tls_connect(w, t, tls, c)).await {
                            Ok(c) => c,
                            Err(why) => {
                                d.si.upstream_transport_failure = Some(why);
                                return Err(Failed::Reply(
                                    LocalReason::UpstreamTlsFailure,
                                    buffered.is_none(),
                                ));
                            }
                        },
                    };
                    t.cluster.connected(&c, w.drain.now_ms());
                    if t.cluster.http2_auto && c.alpn_is(b"h2") {
                        t.ep.h2_seen.set(true);
                        return Err(Failed::H2(c, buffered));
                    }
                    (Rc::new(c), None, false)
                }
                Err(e) => {
                    if let Some(c) = t.cstats {
                        stats::inc(&c.upstream_cx_connect_fail);
                    }
                    tracing::debug!(cluster = %t.cluster.name, endpoint = %t.ep.address, error = %e, "connect failed");
                    return Err(Failed::Reply(
                        LocalReason::ConnectFailure,
                        buffered.is_none(),
                    ));
                }
            },
        };
        d.si.upstream_reused = reused;
        d.si.t_upstream_ready = Some(Instant::now());
        up.count_use();
        // A new connection of a cluster that sends one starts with the PROXY header (a TLS
        // cluster's went before its handshake).
        let pp = match (reused, t.cluster.proxy_protocol, t.proxied) {
            (false, Some(version), Some(proxied)) if t.cluster.tls.is_none() => {
                let mut b = w.write_bufs.take(0);
                encode_proxy_header(version, proxied, &mut b);
                Some(b)
            }
            _ => None,
        };
        // The head comes back from each write, so a retry can send it again.
        let sent = match &buffered {
            Some(b) if b.is_empty() => write_head(w, &up, pp, head, None).await,
            Some(b) => write_head(w, &up, pp, head, Some(b.clone())).await,
            None => {
                let body_hooks = filters.as_deref_mut().filter(|f| {
                    let h = f.active.hooks();
                    h.request_data || h.request_trailers
                });
                // Never replayed (a streamed body is not kept), so the head goes as it is.
                let h = std::mem::take(head);
                stream_body(d, l, w, info, t, &up, pp, h, body_hooks).await?
            }
        };
        let retry = |d: &mut Downstream<S>| {
            if reused && replayable && attempt == 1 {
                if let Some(c) = t.cstats {
                    stats::inc(&c.upstream_rq_retry);
                }
                let _ = d;
                true
            } else {
                false
            }
        };
        if sent != Sent::Whole {
            // A reused connection that a request which can be sent again finds closed is tried
            // again on another (the upstream closed it while idle; what it said then, a 408 say,
            // is not this request's answer). Otherwise an answer already here is the response.
            let stale = reused && replayable && attempt == 1;
            let early = if stale {
                None
            } else {
                early_answer(w, &up, posted).await
            };
            if let Some(b) = early {
                let now = Instant::now();
                d.si.t_request_sent = Some(now);
                d.si.t_first_byte = Some(now);
                return Ok((up, (b, try_deadline(w, t)), false));
            }
            if retry(d) {
                continue;
            }
            if sent == Sent::Stalled {
                // It stopped taking the body and did not answer: it timed out (nginx's and
                // HAProxy's 504 too). Never retried, the streamed body being gone: the route's
                // time is spent.
                t.route_deadline.set(Some(Some(w.drain.now_ms())));
                return Err(Failed::Reply(LocalReason::UpstreamTimeout, true));
            }
            return Err(Failed::Reply(
                LocalReason::UpstreamReset,
                buffered.is_none(),
            ));
        }
        // The route timeout counts from the end of the request (as Envoy's does): a long upload
        // does not eat into the time the upstream has to answer.
        let sent_at = Instant::now();
        d.si.t_request_sent = Some(sent_at);
        // On the coarse clock (accurate to about 100 ms): no runtime timer per request.
        let deadline = try_deadline(w, t);
        match first_read(w, &up, posted, deadline).await {
            FirstRead::Data(b) => {
                d.si.t_first_byte = Some(Instant::now());
                return Ok((up, (b, deadline), true));
            }
            FirstRead::Tls(why) if !reused => {
                if let Some(c) = t.cstats {
                    stats::inc(&c.ssl_connection_error);
                }
                d.si.upstream_transport_failure = Some(why);
                return Err(Failed::Reply(LocalReason::UpstreamTlsFailure, false));
            }
            FirstRead::Reset | FirstRead::Tls(_) => {
                if retry(d) {
                    continue;
                }
                return Err(Failed::Reply(LocalReason::UpstreamReset, false));
            }
            FirstRead::Timeout => return Err(Failed::Reply(LocalReason::UpstreamTimeout, false)),
        }
    }
}

/// This try's deadline: the route deadline (fixed by the first try, when its request has
/// gone) or the try's own (`per_try_timeout`), whichever is first.
fn try_deadline(w: &WorkerCtx, t: &Target<'_>) -> Deadline {
    let route = match t.route_deadline.get() {
        Some(dl) => dl,
        None => {
            let dl = t.timeout.map(|t| w.drain.deadline_in(t));
            t.route_deadline.set(Some(dl));
            dl
        }
    };
    let per_try = match (t.per_try, t.per_try_idle) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match per_try.map(|p| w.drain.deadline_in(p)) {
        Some(p) => Some(route.map_or(p, |r| r.min(p))),
        None => route,
    }
}

/// A new connection to a TLS cluster: its PROXY header in the clear (if the cluster sends one),
/// then the handshake within `connect_timeout`. A failure is counted, logged at debug and
/// closes the connection.
pub(crate) async fn tls_connect(
    w: &WorkerCtx,
    t: &Target<'_>,
    tls: &crate::upstream::WorkerTls,
    c: Conn,
) -> Result<Conn, &'static str> {
    let mut r = Ok(());
    if let (Some(version), Some(proxied)) = (t.cluster.proxy_protocol, t.proxied) {
        let mut b = w.write_bufs.take(0);
        encode_proxy_header(version, proxied, &mut b);
        r = c.write_pooled(b, &w.write_bufs).await;
    }
    let r = match r {
        Ok(()) => {
            tls.handshake(c, t.ep.address, t.cluster.connect_timeout)
                .await
        }
        Err(e) => Err(e),
    };
    if let Some(s) = t.cstats {
        stats::inc(match &r {
            Ok(_) => &s.ssl_handshake,
            Err(_) => &s.ssl_connection_error,
        });
    }
    r.map_err(|e| {
        tracing::debug!(cluster = %t.cluster.name, endpoint = %t.ep.address, error = %e, "upstream TLS handshake failed");
        crate::io::tls::failure_reason(&e)
    })
}

/// Write `head` (kept in place for a retry), after the PROXY header `pp` and before a whole
/// `body` when given, in one write.
async fn write_head(
    w: &WorkerCtx,
    up: &Conn,
    pp: Option<BytesMut>,
    head: &mut BytesMut,
    body: Option<Bytes>,
) -> Sent {
    let h = std::mem::take(head);
    let (r, pp) = match (pp, body) {
        (None, None) => {
            let (r, h) = up.write_all_keep(h).await;
            *head = h;
            (r, None)
        }
        (None, Some(b)) => {
            let (r, (h, _)) = up.write_vectored_all_keep((h, (b,))).await;
            *head = h;
            (r, None)
        }
        (Some(p), None) => {
            let (r, (p, (h,))) = up.write_vectored_all_keep((p, (h,))).await;
            *head = h;
            (r, Some(p))
        }
        (Some(p), Some(b)) => {
            let (r, (p, (h, _))) = up.write_vectored_all_keep((p, (h, (b,)))).await;
            *head = h;
            (r, Some(p))
        }
    };
    if let Some(p) = pp {
        w.write_bufs.give(p);
    }
    match r {
        Ok(_) => Sent::Whole,
        Err(_) => Sent::WriteFailed,
    }
}

/// What a stalled request body waits past `request_body_timeout` before it is given up: a
/// coarse-clock tick and more, so a client that stops sending is the pump's own timeout first.
const STALL_MARGIN: Duration = Duration::from_millis(500);

/// A request body's pump, given up (`None`) when nothing moved for `idle` (`moved`: the bytes
/// read from the client and written upstream so far). The pump limits each read from the
/// client itself; what this catches is an upstream that stopped taking the body (it answered
/// early and waits, or it hangs), which would otherwise hold the client and the worker's
/// connection until the upstream gives up.
async fn unless_stalled<F: std::future::Future>(
    w: &WorkerCtx,
    idle: Duration,
    moved: &Cell<u64>,
    pump: F,
) -> Option<F::Output> {
    let mut pump = std::pin::pin!(pump);
    let mut last = moved.get();
    loop {
        let deadline = w.drain.deadline_in(idle + STALL_MARGIN);
        match w.drain.before(deadline, pump.as_mut()).await {
            Some(out) => return Some(out),
            None if moved.get() == last => return None,
            None => last = moved.get(),
        }
    }
}

/// How far the request went upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// All of it.
    Whole,
    /// A write failed (the upstream closed or reset).
    WriteFailed,
    /// The upstream stopped taking the body: no progress for `request_body_timeout`.
    Stalled,
}

/// Send the head (after the PROXY header `pp`, in the same write), then stream the client's
/// body (`100 Continue` first when the client asked), through the filters' request data and
/// trailers hooks when `filters` has them.
#[allow(clippy::too_many_arguments)]
async fn stream_body<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    up: &Conn,
    pp: Option<BytesMut>,
    head: BytesMut,
    filters: Option<&mut Filters<'_>>,
) -> Result<Sent, Failed> {
    if !d.side.continue_100(info).await {
        return Err(Failed::Next(Next::Close));
    }
    let written = match pp {
        None => up.write_all(head).await,
        Some(p) => {
            let (r, (p, _)) = up.write_vectored_all_keep((p, (head,))).await;
            w.write_bufs.give(p);
            r
        }
    };
    if written.is_err() {
        return Ok(Sent::WriteFailed);
    }
    // The head said chunked when the body's length is unknown (a filter may have made it so).
    let chunked_out = d.si.req.body == BodySize::Unknown;
    let r = body::Reframe {
        framing: info.framing,
        chunked_out,
        trailers_in: l.http.enable_trailers,
        trailers_out: t.cluster.enable_trailers,
    };
    let timeout = Some((&w.drain, l.http.request_body_timeout));
    let received = Cell::new(0);
    let mut reply = None;
    let idle = l.http.request_body_timeout;
    let pumped = match filters {
        None => {
            let pump = d
                .side
                .pump_request(up, r, timeout, &received, w.bulk(), None);
            unless_stalled(w, idle, &received, pump).await
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
            let pump =
                d.side
                    .pump_request(up, r, timeout, &received, w.bulk(), Some(&mut transform));
            unless_stalled(w, idle, &received, pump).await
        }
    };
    d.si.bytes_received = received.get();
    let Some(pumped) = pumped else {
        // As a failed write: its answer, if it sent one first, is still read.
        return Ok(Sent::Stalled);
    };
    match pumped {
        Ok(moved) => {
            d.si.bytes_received = moved;
            Ok(Sent::Whole)
        }
        Err(PumpError::DstWrite(_)) => Ok(Sent::WriteFailed),
        Err(PumpError::Filter) => match reply {
            Some(r) => Err(Failed::Local(stream::Reply::from_filter(r))),
            None => Err(Failed::Next(Next::Close)),
        },
        Err(e) => Err(Failed::Next(body_failed(d, w, info, e).await)),
    }
}

/// A parsed upstream response head, decoded into `d.si.resp`.
pub(crate) struct Parsed {
    pub(crate) head_len: usize,
    pub(crate) framing_in: BodyFraming,
    /// The upstream connection may be reused after the body.
    pub(crate) up_keep: bool,
    /// 101: the protocol switched to.
    pub(crate) upgrade: Option<Bytes>,
}

/// Parse the response head at the front of `src` into the model. `Ok(Some(None))`: a 1xx other
/// than 101 of `head_len` bytes, to skip. Synchronous, so the parser's header array never lives
/// in the connection's future.
#[allow(clippy::type_complexity)]
fn parse_head(
    src: &[u8],
    info: &ReqInfo,
    resp: &mut ringway_filters::ResponseHead,
) -> Result<Option<Result<Parsed, usize>>, h1::ParseError> {
    let mut headers = h1::header_slots();
    let Some(r) = h1::parse_response(src, &mut headers, info.is_head, MAX_RESPONSE_HEAD)? else {
        return Ok(None);
    };
    if (100..200).contains(&r.status) && r.status != 101 {
        return Ok(Some(Err(r.head_len)));
    }
    model::decode_response(&r, resp);
    let upgrade = if r.status == 101 {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| Bytes::copy_from_slice(h.value))
    } else {
        None
    };
    Ok(Some(Ok(Parsed {
        head_len: r.head_len,
        framing_in: r.framing,
        up_keep: r.keep_alive,
        upgrade,
    })))
}

/// Bytes that followed a response head: still in the read buffer they arrived in (the common
/// case: no copy), or in the buffer a split head was gathered in.
pub(crate) enum Rest {
    Read(ReadBuf, usize),
    Pend(BytesMut),
}

impl Rest {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Rest::Read(b, at) => &b[*at..],
            Rest::Pend(p) => p,
        }
    }

    pub(crate) fn into_bytes_mut(self) -> BytesMut {
        match self {
            Rest::Read(b, at) => BytesMut::from(&b[at..]),
            Rest::Pend(p) => p,
        }
    }
}

/// Read the response head (skipping interim 1xx responses other than 101). Returns it and the
/// bytes that followed it.
async fn read_head<S>(
    d: &mut Downstream<S>,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    up: &Conn,
    first: (ReadBuf, Deadline),
) -> Result<(Parsed, Rest), LocalReason> {
    let (buf, deadline) = first;
    let mut pend = BytesMut::new();
    let mut buf = Some(buf);
    loop {
        let parsed = {
            let src: &[u8] = match (&buf, pend.is_empty()) {
                (Some(b), true) => b,
                _ => &pend,
            };
            parse_head(src, info, &mut d.si.resp)
        };
        match parsed {
            Err(e) => {
                tracing::debug!(cluster = %t.cluster.name, error = %e, "bad response head");
                return Err(LocalReason::UpstreamProtocolError);
            }
            Ok(Some(Ok(p))) => {
                let rest = match (buf, pend.is_empty()) {
                    (Some(b), true) => Rest::Read(b, p.head_len),
                    _ => Rest::Pend(pend.split_off(p.head_len)),
                };
                return Ok((p, rest));
            }
            Ok(Some(Err(interim_len))) => {
                if let (Some(b), true) = (&buf, pend.is_empty()) {
                    pend.extend_from_slice(&b[interim_len..]);
                } else {
                    let _ = pend.split_to(interim_len);
                }
                buf = None;
                if !pend.is_empty() {
                    continue;
                }
            }
            Ok(None) => {
                if let (Some(b), true) = (&buf, pend.is_empty()) {
                    pend.extend_from_slice(b);
                }
                buf = None;
            }
        }
        // Need more bytes.
        match bounded(w, deadline, up.read()).await {
            Some(Ok(Some(b))) => pend.extend_from_slice(&b),
            Some(_) => return Err(LocalReason::UpstreamReset),
            None => return Err(LocalReason::UpstreamTimeout),
        }
    }
}

/// Template values on the response path: the stream's, plus the upstream and its status.
pub(crate) fn response_vars<'a>(
    peer: std::net::SocketAddr,
    info: &ReqInfo,
    route: Option<&ringway_filters::RouteInfo<'a>>,
    t: &Target<'_>,
    status: u16,
) -> crate::http::filter_chain::StreamVars<'a> {
    let mut v = stream::vars(peer, info.version, route);
    v.upstream = Some(t.ep.address);
    v.status = status;
    v
}

/// The one place an upstream connection goes back to its pool.
pub(crate) fn release(t: &Target<'_>, w: &WorkerCtx, up: &Rc<Conn>) {
    // `max_requests_per_connection`: a connection that carried its share is closed instead;
    // so is one older than `max_connection_duration`.
    if t.cluster
        .max_requests_per_connection
        .is_some_and(|max| up.uses() >= max)
        || t.cluster.too_old(up, w.drain.now_ms())
    {
        return;
    }
    t.ep.pool.checkin(
        Rc::clone(up),
        t.cluster.max_idle_per_endpoint,
        w.drain.now_ms(),
        t.proxied,
    );
}

/// Send the response to the client: filters, head, body.
#[allow(clippy::too_many_arguments)]
async fn respond<S: Side>(
    d: &mut Downstream<S>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    route: &Route,
    t: &Target<'_>,
    from: Upstream<'_>,
    mut filters: Option<Filters<'_>>,
) -> Next {
    let status = d.si.resp.status;
    if let Some(c) = d.si.set_cookie.take() {
        d.si.resp.headers.append("set-cookie", c);
    }
    let from = match from {
        Upstream::H1 { up, p, rest } if status == 101 => {
            let rest = rest.into_bytes_mut();
            return Box::pin(S::switch_protocols(d, l, w, info, up, p, rest)).await;
        }
        other => other,
    };
    // The router's own response edits come first (Envoy's router runs them before the
    // filters' response hooks).
    let (vh, own) = stream::edits(l, route);
    if !vh.response.is_empty() || !own.response.is_empty() {
        let route = filters.as_ref().and_then(|f| f.route.as_ref());
        let v = response_vars(d.peer, info, route, t, status);
        let si = &mut *d.si;
        vh.response.apply_response(&mut si.resp, Some(&si.req), &v);
        own.response.apply_response(&mut si.resp, Some(&si.req), &v);
    }
    let end_stream = match &from {
        Upstream::H1 { p, .. } => {
            p.framing_in == BodyFraming::None || p.framing_in == BodyFraming::Length(0)
        }
        Upstream::H2 { end, .. } => *end,
    };
    if let Some(f) = filters
        .as_mut()
        .filter(|f| f.active.hooks().response_headers)
    {
        let vars = response_vars(d.peer, info, f.route.as_ref(), t, status);
        let si = &mut *d.si;
        let start = si.start;
        let replaced = f.with_parts(d.peer, start, w, vars, |a, parts| {
            a.response_headers(
                &mut si.resp,
                end_stream,
                &si.req,
                &mut si.filter_state,
                parts,
            )
        });
        if let Some(body) = replaced {
            // A filter replaced the upstream's response (which is discarded): reuse an HTTP/1
            // connection only if its body was entirely here (an HTTP/2 stream is just reset).
            if let Upstream::H1 { up, p, rest } = &from {
                let body_in_buf = rest.as_slice();
                let whole = match p.framing_in {
                    BodyFraming::None => body_in_buf.is_empty(),
                    BodyFraming::Length(n) => body_in_buf.len() as u64 == n,
                    _ => false,
                };
                if whole && p.up_keep {
                    release(t, w, up);
                }
            }
            let reply = stream::Reply {
                status: d.si.resp.status,
                headers: std::mem::take(&mut d.si.resp.headers),
                body,
                tag: None,
                why: None,
                plain: false,
            };
            return stream::send_reply(d, w, Some(info), reply, None, false).await;
        }
    }
    d.si.status = d.si.resp.status;
    S::respond_tail(d, l, w, info, t, from, filters).await
}

/// Where a response comes from: an HTTP/1 connection (its parsed head, the bytes that came
/// after it) or an HTTP/2 stream (its body, and its hold on the pooled connection).
pub(crate) enum Upstream<'u> {
    H1 {
        up: &'u Rc<Conn>,
        p: Parsed,
        rest: Rest,
    },
    H2 {
        body: ::h2::RecvStream,
        /// The response head ended the stream.
        end: bool,
        /// Released (the connection's stream count) when the body is done.
        stream: crate::upstream::h2::Stream,
    },
}

/// [`respond`]'s end on an HTTP/1 connection: encode the head, move the body (straight through,
/// or through the filters' response data hooks).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn respond_h1(
    d: &mut Downstream<H1>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    up: &Rc<Conn>,
    p: Parsed,
    rest: Rest,
    mut filters: Option<Filters<'_>>,
) -> Next {
    let body_in_buf = rest.as_slice();
    let status = d.si.resp.status;
    let bodiless = info.is_head || status < 200 || status == 204 || status == 304;
    let version = h1_version(info.version);
    let framing = model::Framing::for_client(d.si.resp.body, version, bodiless);
    let keep_alive =
        info.keep_alive && !w.drain.closing_conns() && framing != model::Framing::UntilClose;
    let persist = if keep_alive {
        model::Persist::KeepAlive
    } else {
        model::Persist::Close
    };
    let mut out = w
        .write_bufs
        .take(d.si.resp.headers.wire_len() + 96 + body_in_buf.len().min(INLINE_BODY));
    model::encode_response(&d.si.resp, version, framing, persist, None, None, &mut out);
    let chunked_out = framing == model::Framing::Chunked;
    let r = body::Reframe {
        framing: p.framing_in,
        chunked_out,
        trailers_in: t.cluster.enable_trailers,
        trailers_out: l.http.enable_trailers,
    };
    let wants_data = filters.as_ref().is_some_and(|f| {
        let h = f.active.hooks();
        h.response_data || h.response_trailers
    });
    let next = |ok: bool| {
        if ok && keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    };

    // Fast path: the whole (small) body came with the head.
    if !wants_data {
        if let BodyFraming::Length(n) = p.framing_in {
            if n as usize == body_in_buf.len() && body_in_buf.len() <= INLINE_BODY {
                out.extend_from_slice(body_in_buf);
                d.si.bytes_sent = n;
                let ok = d.side.conn.write_pooled(out, &w.write_bufs).await.is_ok();
                d.si.t_last_byte = Some(Instant::now());
                d.si.downstream_reset = !ok;
                if p.up_keep {
                    release(t, w, up);
                }
                return next(ok);
            }
        }
    }
    if p.framing_in == BodyFraming::None {
        let ok = d.side.conn.write_pooled(out, &w.write_bufs).await.is_ok();
        d.si.t_last_byte = Some(Instant::now());
        d.si.downstream_reset = !ok;
        if p.up_keep && body_in_buf.is_empty() {
            release(t, w, up);
        }
        return next(ok);
    }
    if d.side.conn.write_pooled(out, &w.write_bufs).await.is_err() {
        d.si.downstream_reset = true;
        return Next::Close;
    }
    let initial = rest.into_bytes_mut();
    let sent = Cell::new(0);
    // A response data or trailers hook ended the stream, with this reason.
    let mut ended_by: Option<&'static str> = None;
    let body_timeout = t.body_read_timeout().map(|t| (&w.drain, t));
    let pumped = match filters.as_mut().filter(|_| wants_data) {
        None => body::pump(up, initial, &d.side.conn, r, body_timeout, &sent, w.bulk()).await,
        Some(f) => {
            let vars = response_vars(d.peer, info, f.route.as_ref(), t, status);
            let rt = crate::http::filter_chain::WorkerRuntime { drain: &w.drain };
            let parts = f.parts(d.peer, d.si.start, &rt, &vars);
            let si = &mut *d.si;
            let req = &si.req;
            let state = &mut si.filter_state;
            let active = &mut f.active;
            let ended = &mut ended_by;
            let mut transform =
                |ev: BodyEvent<'_>| active.response_event(ev, req, state, &parts, ended);
            body::pump_filtered(
                up,
                initial,
                &d.side.conn,
                r,
                body_timeout,
                &sent,
                &mut transform,
            )
            .await
        }
    };
    if ended_by.is_some() {
        d.si.filter_details = ended_by;
    }
    d.si.t_last_byte = Some(Instant::now());
    d.si.bytes_sent = sent.get();
    match pumped {
        Ok((rest, moved)) => {
            d.si.bytes_sent = moved;
            if p.up_keep && rest.is_empty() && p.framing_in != BodyFraming::UntilClose {
                release(t, w, up);
            }
            next(true)
        }
        Err(e) => {
            tracing::debug!(cluster = %t.cluster.name, error = %e, "response body failed");
            match e {
                PumpError::DstWrite(_) => d.si.downstream_reset = true,
                // A filter ended the response (its reason is in `filter_details`).
                PumpError::Filter => {}
                _ => d.si.upstream_reset = true,
            }
            cut_short(d, framing, &e);
            Next::Close
        }
    }
}

/// An HTTP/2 upstream's response to an HTTP/1 client: the head encoded for the client (the
/// body's length when the upstream said it, chunked otherwise), the DATA frames as the body
/// (through the filters' response data hooks when they have them), the upstream's trailers
/// after the last chunk when the client's side sends trailers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn respond_h1_from_h2(
    d: &mut Downstream<H1>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    mut body: ::h2::RecvStream,
    end: bool,
    stream: crate::upstream::h2::Stream,
    mut filters: Option<Filters<'_>>,
) -> Next {
    let status = d.si.resp.status;
    let bodiless = info.is_head || status < 200 || status == 204 || status == 304;
    let version = h1_version(info.version);
    let framing = model::Framing::for_client(d.si.resp.body, version, bodiless);
    let keep_alive =
        info.keep_alive && !w.drain.closing_conns() && framing != model::Framing::UntilClose;
    let persist = if keep_alive {
        model::Persist::KeepAlive
    } else {
        model::Persist::Close
    };
    let mut out = w.write_bufs.take(d.si.resp.headers.wire_len() + 96);
    model::encode_response(&d.si.resp, version, framing, persist, None, None, &mut out);
    let next = |ok: bool| {
        if ok && keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    };
    if d.side.conn.write_pooled(out, &w.write_bufs).await.is_err() {
        d.si.downstream_reset = true;
        return Next::Close;
    }
    if end || bodiless {
        d.si.t_last_byte = Some(Instant::now());
        d.si.bytes_sent = 0;
        drop(stream);
        return next(true);
    }
    let chunked_out = framing == model::Framing::Chunked;
    let mut src = body::Source::h2(&mut body);
    let sent = Cell::new(0);
    let mut ended_by: Option<&'static str> = None;
    let timeout = t.body_read_timeout().map(|t| (&w.drain, t));
    let trailers_out = l.http.enable_trailers;
    let wants_data = filters.as_ref().is_some_and(|f| {
        let h = f.active.hooks();
        h.response_data || h.response_trailers
    });
    let pumped = match filters.as_mut().filter(|_| wants_data) {
        None => {
            let dst = &d.side.conn;
            body::pump_to_h1(
                &mut src,
                dst,
                chunked_out,
                trailers_out,
                timeout,
                &sent,
                None,
            )
            .await
        }
        Some(f) => {
            let vars = response_vars(d.peer, info, f.route.as_ref(), t, status);
            let rt = crate::http::filter_chain::WorkerRuntime { drain: &w.drain };
            let parts = f.parts(d.peer, d.si.start, &rt, &vars);
            let si = &mut *d.si;
            let req = &si.req;
            let state = &mut si.filter_state;
            let active = &mut f.active;
            let ended = &mut ended_by;
            let mut transform =
                |ev: BodyEvent<'_>| active.response_event(ev, req, state, &parts, ended);
            let dst = &d.side.conn;
            let tf: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool> = Some(&mut transform);
            body::pump_to_h1(&mut src, dst, chunked_out, trailers_out, timeout, &sent, tf).await
        }
    };
    drop(stream);
    if ended_by.is_some() {
        d.si.filter_details = ended_by;
    }
    d.si.t_last_byte = Some(Instant::now());
    d.si.bytes_sent = sent.get();
    match pumped {
        Ok(moved) => {
            d.si.bytes_sent = moved;
            next(true)
        }
        Err(e) => {
            tracing::debug!(cluster = %t.cluster.name, error = %e, "response body failed");
            match e {
                PumpError::DstWrite(_) => d.si.downstream_reset = true,
                PumpError::Filter => {}
                _ => d.si.upstream_reset = true,
            }
            cut_short(d, framing, &e);
            Next::Close
        }
    }
}

/// A response body that broke off (`e`) for a client whose body ends with the connection
/// (`framing`: an HTTP/1.0 client, an unknown length): the close is made a reset, so the client
/// does not take what it got for the whole body. Other framings show a cut by themselves (a
/// short length, no last chunk).
fn cut_short(d: &Downstream<H1>, framing: model::Framing, e: &PumpError) {
    if framing == model::Framing::UntilClose && !matches!(e, PumpError::DstWrite(_)) {
        d.side.conn.reset_on_close();
    }
}

/// A 101: send the head, then tunnel bytes both ways until both sides close.
pub(crate) async fn switch_protocols(
    d: &mut Downstream<H1>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    info: &ReqInfo,
    up: &Rc<Conn>,
    p: Parsed,
    body_in_buf: BytesMut,
) -> Next {
    if info.upgrade.is_none() {
        let why = LocalReason::UpstreamProtocolError;
        return stream::reply_error(d, w, info, why, None, true).await;
    }
    d.si.status = 101;
    d.si.upgraded = true;
    let mut out = BytesMut::with_capacity(d.si.resp.headers.wire_len() + 96);
    model::encode_response(
        &d.si.resp,
        h1_version(info.version),
        model::Framing::None { length_zero: false },
        model::Persist::Upgrade,
        p.upgrade.as_deref(),
        None,
        &mut out,
    );
    if d.side.conn.write_pooled(out, &w.write_bufs).await.is_err() {
        return Next::Close;
    }
    let to_up = std::mem::take(&mut d.side.pending);
    let tunnel = crate::tunnel::Tunnel {
        drain: &w.drain,
        idle: l.http.stream_idle_timeout,
        bulk: &w.bulk_bufs,
        stats: &w.stats,
        counters: [None, None],
    };
    let out = tunnel.run(&d.side.conn, to_up, up, body_in_buf).await;
    if out.end == crate::tunnel::End::IdleTimeout {
        tracing::debug!("upgraded tunnel closed after stream_idle_timeout");
    }
    d.si.t_last_byte = Some(Instant::now());
    Next::Close
}
