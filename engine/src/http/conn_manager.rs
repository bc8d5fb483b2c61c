//! The HTTP/1.1 connection manager: one task per downstream connection, requests handled in
//! order (pipelined requests are answered in order because they are read in order).
//!
//! Path of a request:
//! 1. wait for bytes (idle: no buffer held, woken by data, `idle_timeout` or drain);
//! 2. parse the head straight out of the read buffer ([`h1::parse_request`]); if it is split
//!    over reads, accumulate it in `pending` under `request_headers_timeout`;
//! 3. route it ([`RouteTable::find`]) and, for a forward, encode the upstream head — all
//!    synchronously, before the read buffer goes back to the pool;
//! 4. take a pooled upstream connection (its read already posted) or connect, send head and body,
//!    read the response head under the route timeout, re-encode it for the client and pump the
//!    body; a reused connection that fails before any response byte is retried once on a fresh
//!    connection when the request is idempotent and fully buffered;
//! 5. return the upstream connection to its pool when the response ended cleanly.
//!
//! Hot path for a small keep-alive request: one read downstream, one write upstream, one read
//! upstream, one write downstream; the head is copied once (into the re-encoded head) and a small
//! body is copied once into the same write.

use std::{
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

use crate::{
    config::{PathMatch, RouteAction},
    error::{status_text, LocalReason},
    http::{
        body::{self, PumpError},
        h1::{self, BodyFraming, Version},
        stream_info::{Method, SiSlot, StreamInfo},
    },
    io::{Conn, PostedRead, ReadBuf},
    listener::ListenerCtx,
    runtime::worker::Worker,
    stats,
    upstream::ActiveRq,
};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response bodies up to this size that arrive with the head go out in the same write.
const INLINE_BODY: usize = 4096;

/// What the request needs after its head is gone.
#[derive(Debug, Clone, Copy)]
struct ReqInfo {
    version: Version,
    keep_alive: bool,
    is_head: bool,
    framing: BodyFraming,
    expect_continue: bool,
    upgrade: bool,
    idempotent: bool,
}

enum Plan {
    Local {
        status: u16,
        reason: Option<&'static str>,
        body: Bytes,
        location: Option<String>,
    },
    Forward {
        cluster: usize,
        head: BytesMut,
        timeout: Option<Duration>,
    },
}

enum Next {
    KeepAlive,
    Close,
}

struct Downstream {
    conn: Conn,
    peer: SocketAddr,
    /// Bytes read but not yet used (a split head, body bytes, pipelined requests). Empty, and
    /// holding no allocation, for an idle connection in the common case.
    pending: BytesMut,
    /// The current request's record, handed to the observers when its exchange ends.
    si: SiSlot,
}

/// Serve one downstream connection until it closes.
pub async fn serve(conn: Conn, peer: SocketAddr, l: Rc<ListenerCtx>, w: Rc<Worker>) {
    let _live = w.drain.track();
    let _cx = w.stats.downstream_cx(l.index);
    let _load = crate::runtime::balance::LoadGuard::new(w.balance.as_deref(), w.id);
    let mut d = Downstream {
        conn,
        peer,
        pending: BytesMut::new(),
        si: SiSlot::default(),
    };
    loop {
        let next = exchange(&mut d, &l, &w).await;
        if d.si.seen {
            w.stream_done(&l, &d.si);
        }
        // Hold no record while idle.
        d.si.release();
        if let Next::Close = next {
            break;
        }
        if d.pending.is_empty() && d.pending.capacity() > 0 {
            // Hold no buffer while idle.
            d.pending = BytesMut::new();
        }
    }
}

pub(crate) enum ReadOutcome {
    Data(ReadBuf),
    /// End of stream or a read error.
    Closed,
    TimedOut,
    /// The worker started draining (only when waiting between requests).
    Drained,
}

/// How long a read may wait.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    /// Between requests: up to the idle timeout on the worker's coarse clock, or until the
    /// worker drains. No runtime timer and no clock read per wait.
    Idle(Duration),
    /// Inside a request head: until this instant (a precise timer; only split heads get here).
    Until(Instant),
}

/// Read what arrives within `bound`. Hand-rolled instead of `timeout`: this future is part of
/// every connection's state, and it is a third of the size.
pub(crate) async fn read_bounded(
    conn: &Conn,
    bound: Bound,
    drain: &crate::runtime::drain::Drain,
) -> ReadOutcome {
    use crate::runtime::drain::IdleEnd;
    use std::{future::Future, task::Poll};
    let mut read = std::pin::pin!(conn.read());
    match bound {
        Bound::Idle(timeout) => {
            let mut waiter = drain.waiter_for(timeout);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(match r {
                        Ok(Some(b)) => ReadOutcome::Data(b),
                        _ => ReadOutcome::Closed,
                    });
                }
                match waiter.poll_idle(cx) {
                    Poll::Ready(IdleEnd::Drained) => Poll::Ready(ReadOutcome::Drained),
                    Poll::Ready(IdleEnd::TimedOut) => Poll::Ready(ReadOutcome::TimedOut),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        }
        Bound::Until(until) => {
            let mut sleep = std::pin::pin!(compio::time::sleep_until(until));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(match r {
                        Ok(Some(b)) => ReadOutcome::Data(b),
                        _ => ReadOutcome::Closed,
                    });
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(ReadOutcome::TimedOut);
                }
                Poll::Pending
            })
            .await
        }
    }
}

/// One request/response exchange on the connection.
async fn exchange(d: &mut Downstream, l: &ListenerCtx, w: &Worker) -> Next {
    // --- 1-3: a complete head, routed and planned.
    let mut deadline: Option<Instant> = None;
    let (plan, info) = loop {
        if !d.pending.is_empty() {
            d.si.start.get_or_insert_with(Instant::now);
            d.si.downstream_remote = Some(d.peer);
            match plan(&d.pending, l, w, d.peer, &mut d.si) {
                Ok(Some((p, info, used))) => {
                    let _ = d.pending.split_to(used);
                    break (p, info);
                }
                Ok(None) => {}
                // Boxed, as the other rare paths: an idle connection's task is sized for its
                // largest state, and these states are never the common case.
                Err(e) => return Box::pin(reply_error(d, e)).await,
            }
            deadline.get_or_insert_with(|| Instant::now() + l.http.request_headers_timeout);
        }
        let bound = match deadline {
            None => Bound::Idle(l.http.idle_timeout),
            Some(dl) => Bound::Until(dl),
        };
        let buf = match read_bounded(&d.conn, bound, &w.drain).await {
            ReadOutcome::Data(b) => {
                d.si.start.get_or_insert_with(Instant::now);
                d.si.downstream_remote = Some(d.peer);
                b
            }
            ReadOutcome::TimedOut if deadline.is_some() => {
                return Box::pin(local(d, w, None, LocalReason::RequestHeadersTimeout, true)).await;
            }
            _ => return Next::Close,
        };
        if d.pending.is_empty() {
            // Common case: the whole head is in this one read.
            match plan(&buf, l, w, d.peer, &mut d.si) {
                Ok(Some((p, info, used))) => {
                    if used < buf.len() {
                        d.pending.extend_from_slice(&buf[used..]);
                    }
                    break (p, info);
                }
                Ok(None) => {
                    d.pending.extend_from_slice(&buf);
                    deadline.get_or_insert_with(|| Instant::now() + l.http.request_headers_timeout);
                }
                Err(e) => return Box::pin(reply_error(d, e)).await,
            }
        } else {
            d.pending.extend_from_slice(&buf);
        }
    };
    w.stats.downstream_rq(l.index);

    match plan {
        Plan::Local {
            status,
            reason,
            body,
            location,
        } => {
            let close = !info.keep_alive || w.drain.is_draining() || !discard_body(d, info.framing);
            let mut out = BytesMut::with_capacity(160 + body.len());
            let extra_loc;
            let extra: &[(&str, &str)] = match &location {
                Some(loc) => {
                    extra_loc = [("location", loc.as_str())];
                    &extra_loc
                }
                None => &[],
            };
            h1::encode_local_reply(
                status,
                reason,
                extra,
                &body,
                info.version,
                close,
                info.is_head,
                &mut out,
            );
            d.si.status = status;
            if status == 404 && reason.is_some() {
                d.si.local_reason = Some(LocalReason::NoRoute);
            }
            d.si.bytes_sent = if info.is_head { 0 } else { body.len() as u64 };
            let ok = d.conn.write_all(out).await.is_ok();
            d.si.t_last_byte = Some(Instant::now());
            if !ok || close {
                return Next::Close;
            }
            Next::KeepAlive
        }
        Plan::Forward {
            cluster,
            head,
            timeout,
        } => {
            // Boxed: the forward path's state exists only while a request is in flight, so an
            // idle connection's task stays small.
            Box::pin(forward(d, l, w, info, cluster, head.freeze(), timeout)).await
        }
    }
}

/// Drop the body of a request answered locally, if it is all here; `false` = close instead.
fn discard_body(d: &mut Downstream, framing: BodyFraming) -> bool {
    match framing {
        BodyFraming::None => true,
        BodyFraming::Length(n) if d.pending.len() as u64 >= n => {
            let _ = d.pending.split_to(n as usize);
            true
        }
        _ => false,
    }
}

/// Parse, route and plan a request whose head may be at the front of `src`.
/// `Ok(Some((plan, info, head_len)))` when complete.
fn plan(
    src: &[u8],
    l: &ListenerCtx,
    w: &Worker,
    peer: SocketAddr,
    si: &mut StreamInfo,
) -> Result<Option<(Plan, ReqInfo, usize)>, h1::ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
    let req = match h1::parse_request(src, &mut headers, &l.limits) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            si.seen = true;
            return Err(e);
        }
    };
    si.seen = true;
    si.method = Method::from_bytes(req.method.as_bytes());
    si.version = Some(req.version);
    let trace = l.trace_threshold.map(|threshold| {
        crate::trace::context::begin(req.headers, threshold, w.tracer.zipkin, &w.tracer.rng)
    });
    si.trace = trace;
    let sampled = trace.is_some_and(|t| t.sampled);
    if l.capture_request_head || sampled {
        si.request_head = Some(Bytes::copy_from_slice(&src[..req.head_len]));
    }
    let is_head = req.method == "HEAD";
    let info = ReqInfo {
        version: req.version,
        keep_alive: req.keep_alive,
        is_head,
        framing: req.framing,
        expect_continue: req.expect_continue,
        upgrade: req.upgrade.is_some(),
        idempotent: req.is_idempotent(),
    };
    let path = req.path();
    let host = req.host.unwrap_or(b"");
    let Some(route) = l
        .routes
        .find(host, path.as_bytes(), req.method.as_bytes(), req.headers)
    else {
        let (status, reason) = LocalReason::NoRoute.reply();
        let plan = Plan::Local {
            status,
            reason: Some(reason),
            body: Bytes::from_static(status_text(status).as_bytes()),
            location: None,
        };
        return Ok(Some((plan, info, req.head_len)));
    };
    if sampled {
        si.http_route = Some(std::sync::Arc::clone(&route.http_route));
    }
    let plan = match &route.action {
        RouteAction::DirectResponse { status, body } => Plan::Local {
            status: *status,
            reason: None,
            body: body.clone(),
            location: None,
        },
        RouteAction::Redirect(r) => {
            let scheme = if r.https_redirect { "https" } else { "http" };
            let host = match &r.host_redirect {
                Some(h) => h.as_str(),
                None => std::str::from_utf8(host).unwrap_or(""),
            };
            let host = if r.https_redirect && r.host_redirect.is_none() {
                // Drop the plain-HTTP port when switching to https.
                strip_port(host)
            } else {
                host
            };
            let target = r.path_redirect.as_deref().unwrap_or(path);
            Plan::Local {
                status: r.response_code,
                reason: None,
                body: Bytes::new(),
                location: Some(format!("{scheme}://{host}{target}")),
            }
        }
        RouteAction::Forward(f) => {
            let rewritten = f
                .prefix_rewrite
                .as_deref()
                .map(|rw| rewrite_path(&route.matcher.path, path, rw));
            let mut idbuf = [0u8; 36];
            let request_id = if l.http.generate_request_id {
                w.request_ids.next(&mut idbuf);
                si.generated_request_id = Some(idbuf);
                std::str::from_utf8(&idbuf).unwrap_or("")
            } else {
                ""
            };
            let trace_lines = trace.map(|t| t.write_headers());
            let mut out = BytesMut::with_capacity(req.head_len + 160);
            h1::encode_request_head(
                &req,
                &h1::RequestRewrite {
                    path: rewritten.as_deref(),
                    host: f.host_rewrite.as_deref(),
                    client_ip: peer.ip(),
                    forwarded_proto: "http",
                    request_id,
                    upgrade: req.upgrade.is_some(),
                    trace: trace
                        .zip(trace_lines.as_ref())
                        .map(|(t, lines)| h1::TraceRewrite {
                            lines: lines.as_bytes(),
                            keep_tracestate: t.keep_tracestate,
                        }),
                },
                &mut out,
            );
            Plan::Forward {
                cluster: f.cluster,
                head: out,
                timeout: f.timeout,
            }
        }
    };
    Ok(Some((plan, info, req.head_len)))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

/// Apply `prefix_rewrite`: for a prefix route the matched prefix is replaced; for exact and regex
/// routes the whole path (query kept).
fn rewrite_path(m: &PathMatch, path: &str, rw: &str) -> String {
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

async fn reply_error(d: &mut Downstream, e: h1::ParseError) -> Next {
    let status = e.status();
    let mut out = BytesMut::with_capacity(192);
    h1::encode_local_reply(
        status,
        Some(e.reason()),
        &[],
        status_text(status).as_bytes(),
        Version::Http11,
        true,
        false,
        &mut out,
    );
    d.si.status = status;
    d.si.downstream_reset = true;
    d.si.protocol_error = Some(e.reason());
    let _ = d.conn.write_all(out).await;
    d.si.t_last_byte = Some(Instant::now());
    Next::Close
}

/// Answer with a local reply for `reason`. `info` is `None` when the request head never completed.
async fn local(
    d: &mut Downstream,
    w: &Worker,
    info: Option<ReqInfo>,
    reason: LocalReason,
    force_close: bool,
) -> Next {
    let (status, tag) = reason.reply();
    let (version, is_head, ka) = match info {
        Some(i) => (i.version, i.is_head, i.keep_alive),
        None => (Version::Http11, false, false),
    };
    let close = force_close || !ka || w.drain.is_draining();
    let mut out = BytesMut::with_capacity(192);
    h1::encode_local_reply(
        status,
        Some(tag),
        &[],
        status_text(status).as_bytes(),
        version,
        close,
        is_head,
        &mut out,
    );
    d.si.status = status;
    d.si.local_reason = Some(reason);
    d.si.bytes_sent = if is_head {
        0
    } else {
        status_text(status).len() as u64
    };
    let ok = d.conn.write_all(out).await.is_ok();
    d.si.t_last_byte = Some(Instant::now());
    if !ok || close {
        return Next::Close;
    }
    Next::KeepAlive
}

/// How the first response bytes ended.
enum FirstRead {
    Data(ReadBuf),
    /// Closed or reset before any byte.
    Reset,
    Timeout,
}

async fn first_read(up: &Conn, posted: Option<PostedRead>, deadline: Option<Instant>) -> FirstRead {
    let r = match (posted, deadline) {
        (Some(p), Some(dl)) => compio::time::timeout_at(dl, p).await,
        (Some(p), None) => Ok(p.await),
        (None, Some(dl)) => compio::time::timeout_at(dl, up.read()).await,
        (None, None) => Ok(up.read().await),
    };
    match r {
        Ok(Ok(Some(b))) => FirstRead::Data(b),
        Ok(_) => FirstRead::Reset,
        Err(_) => FirstRead::Timeout,
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    d: &mut Downstream,
    l: &ListenerCtx,
    w: &Worker,
    info: ReqInfo,
    cluster_id: usize,
    head: Bytes,
    timeout: Option<Duration>,
) -> Next {
    let Some(cluster) = w.clusters.clusters.get(cluster_id) else {
        return local(d, w, Some(info), LocalReason::NoHealthyUpstream, true).await;
    };
    let Some(ep) = cluster.pick() else {
        let close = !discard_body(d, info.framing);
        return local(d, w, Some(info), LocalReason::NoHealthyUpstream, close).await;
    };
    let _active = ActiveRq::new(ep);
    w.stats.upstream_rq(cluster_id, ep.index);
    let cstats = w.stats.cluster(cluster_id);
    d.si.cluster = Some(cluster_id);
    d.si.upstream = Some(ep.address);

    // A body that is already complete can be sent in one write, and replayed on a retry.
    let buffered: Option<Bytes> = match info.framing {
        BodyFraming::None => Some(Bytes::new()),
        BodyFraming::Length(n) if d.pending.len() as u64 >= n => {
            Some(d.pending.split_to(n as usize).freeze())
        }
        _ => None,
    };
    let replayable = buffered.is_some() && info.idempotent && !info.upgrade;
    if let Some(b) = &buffered {
        d.si.bytes_received = b.len() as u64;
    }

    let mut attempt = 0;
    let (up, first) = loop {
        attempt += 1;
        let pooled = if attempt == 1 {
            ep.pool.checkout(cluster.idle_timeout, w.drain.now_ms())
        } else {
            None
        };
        d.si.retried = attempt > 1;
        let (up, posted, reused) = match pooled {
            Some((c, r)) => {
                if let Some(c) = cstats {
                    stats::inc(&c.upstream_cx_pool_reuse);
                }
                (c, Some(r), true)
            }
            None => match Conn::connect(ep.address, cluster.connect_timeout).await {
                Ok(c) => {
                    if let Some(c) = cstats {
                        stats::inc(&c.upstream_cx_total);
                    }
                    (Rc::new(c), None, false)
                }
                Err(e) => {
                    if let Some(c) = cstats {
                        stats::inc(&c.upstream_cx_connect_fail);
                    }
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.address, error = %e, "connect failed");
                    let keep = buffered.is_some();
                    return local(d, w, Some(info), LocalReason::ConnectFailure, !keep).await;
                }
            },
        };

        d.si.upstream_reused = reused;
        d.si.t_upstream_ready = Some(Instant::now());
        // Send the head and the body.
        let sent = match &buffered {
            Some(b) if b.is_empty() => up.write_all(head.clone()).await.is_ok(),
            Some(b) => up
                .write_vectored_all([head.clone(), b.clone()])
                .await
                .is_ok(),
            None => {
                if info.expect_continue
                    && info.version == Version::Http11
                    && d.conn
                        .write_all(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
                        .await
                        .is_err()
                {
                    return Next::Close;
                }
                if up.write_all(head.clone()).await.is_err() {
                    false
                } else {
                    let initial = std::mem::take(&mut d.pending);
                    let chunked_out = matches!(info.framing, BodyFraming::Chunked);
                    let received = std::cell::Cell::new(0);
                    let pumped = body::pump_counting(
                        &d.conn,
                        initial,
                        &up,
                        info.framing,
                        chunked_out,
                        Some(l.http.request_body_timeout),
                        &received,
                    )
                    .await;
                    d.si.bytes_received = received.get();
                    match pumped {
                        Ok((rest, moved)) => {
                            d.pending = rest;
                            d.si.bytes_received = moved;
                            true
                        }
                        Err(PumpError::DstWrite(_)) => false,
                        Err(e) => {
                            d.si.downstream_reset = true;
                            // The client's body failed: nothing sensible can follow on either
                            // connection.
                            tracing::debug!(error = %e, "request body failed");
                            match e {
                                PumpError::Malformed(pe) => return reply_error(d, pe).await,
                                // No response byte has gone out yet: say why, then close.
                                PumpError::SrcTimeout => {
                                    let why = LocalReason::RequestBodyTimeout;
                                    return local(d, w, Some(info), why, true).await;
                                }
                                _ => return Next::Close,
                            }
                        }
                    }
                }
            }
        };
        if !sent {
            if reused && replayable && attempt == 1 {
                if let Some(c) = cstats {
                    stats::inc(&c.upstream_rq_retry);
                }
                continue;
            }
            return local(
                d,
                w,
                Some(info),
                LocalReason::UpstreamReset,
                buffered.is_none(),
            )
            .await;
        }

        // The route timeout counts from the end of the request (as Envoy's does): a long upload
        // does not eat into the time the upstream has to answer.
        let sent_at = Instant::now();
        d.si.t_request_sent = Some(sent_at);
        let deadline = timeout.map(|t| sent_at + t);
        match first_read(&up, posted, deadline).await {
            FirstRead::Data(b) => {
                d.si.t_first_byte = Some(Instant::now());
                break (up, (b, deadline));
            }
            FirstRead::Reset => {
                if reused && replayable && attempt == 1 {
                    if let Some(c) = cstats {
                        stats::inc(&c.upstream_rq_retry);
                    }
                    continue;
                }
                return local(d, w, Some(info), LocalReason::UpstreamReset, false).await;
            }
            FirstRead::Timeout => {
                return local(d, w, Some(info), LocalReason::UpstreamTimeout, false).await;
            }
        }
    };
    let (mut buf, deadline) = first;

    // --- The response head (skipping 1xx interim responses other than 101).
    let mut rpend = BytesMut::new();
    loop {
        let src: &[u8] = if rpend.is_empty() { &buf } else { &rpend };
        match prepare_response(src, info, w.drain.is_draining()) {
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "bad response head");
                return local(d, w, Some(info), LocalReason::UpstreamProtocolError, false).await;
            }
            Ok(Some(p)) if p.interim => {
                if rpend.is_empty() {
                    rpend.extend_from_slice(&buf[p.head_len..]);
                } else {
                    let _ = rpend.split_to(p.head_len);
                }
                if !rpend.is_empty() {
                    continue;
                }
            }
            Ok(Some(p)) => {
                let body_in_buf = &src[p.head_len..];
                return respond(d, l, w, info, &up, p, body_in_buf, ep, cluster, timeout).await;
            }
            Ok(None) => {
                if rpend.is_empty() {
                    rpend.extend_from_slice(&buf);
                }
            }
        }
        // Need more bytes.
        let more = match deadline {
            Some(dl) => compio::time::timeout_at(dl, up.read()).await,
            None => Ok(up.read().await),
        };
        buf = match more {
            Ok(Ok(Some(b))) => b,
            Ok(_) => return local(d, w, Some(info), LocalReason::UpstreamReset, false).await,
            Err(_) => return local(d, w, Some(info), LocalReason::UpstreamTimeout, false).await,
        };
        rpend.extend_from_slice(&buf);
    }
}

/// A parsed upstream response head, already re-encoded for the client.
struct PreparedResponse {
    /// A 1xx other than 101: skip `head_len` bytes and read the next head.
    interim: bool,
    status: u16,
    head_len: usize,
    /// The head to send to the client.
    out: BytesMut,
    framing_in: BodyFraming,
    chunked_out: bool,
    /// Keep the client connection open after this response.
    keep_alive: bool,
    /// The upstream connection may be reused after the body.
    up_keep: bool,
}

/// Parse the response head at the front of `src` and encode the client's head. Synchronous, so
/// the parser's header array never lives in the connection's future.
fn prepare_response(
    src: &[u8],
    info: ReqInfo,
    draining: bool,
) -> Result<Option<PreparedResponse>, h1::ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
    let Some(resp) = h1::parse_response(src, &mut headers, info.is_head, MAX_RESPONSE_HEAD)? else {
        return Ok(None);
    };
    if (100..200).contains(&resp.status) && resp.status != 101 {
        return Ok(Some(PreparedResponse {
            interim: true,
            status: resp.status,
            head_len: resp.head_len,
            out: BytesMut::new(),
            framing_in: BodyFraming::None,
            chunked_out: false,
            keep_alive: false,
            up_keep: false,
        }));
    }
    let client_11 = info.version == Version::Http11;
    let (framing_out, chunked_out) = if resp.status == 101 {
        (BodyFraming::None, false)
    } else {
        match resp.framing {
            BodyFraming::None => (BodyFraming::None, false),
            BodyFraming::Length(n) => (BodyFraming::Length(n), false),
            BodyFraming::Chunked | BodyFraming::UntilClose if client_11 => {
                (BodyFraming::Chunked, true)
            }
            BodyFraming::Chunked | BodyFraming::UntilClose => (BodyFraming::UntilClose, false),
        }
    };
    let keep_alive = resp.status == 101
        || (info.keep_alive && !draining && framing_out != BodyFraming::UntilClose);
    let body_in_buf = src.len() - resp.head_len;
    let mut out = BytesMut::with_capacity(resp.head_len + 64 + body_in_buf.min(INLINE_BODY));
    h1::encode_response_head(&resp, info.version, framing_out, keep_alive, &mut out);
    Ok(Some(PreparedResponse {
        interim: false,
        status: resp.status,
        head_len: resp.head_len,
        out,
        framing_in: resp.framing,
        chunked_out,
        keep_alive,
        up_keep: resp.keep_alive,
    }))
}

/// Send a prepared response head, then its body (`body_in_buf`: body bytes that came with the
/// head).
#[allow(clippy::too_many_arguments)]
async fn respond(
    d: &mut Downstream,
    l: &ListenerCtx,
    w: &Worker,
    info: ReqInfo,
    up: &Rc<Conn>,
    p: PreparedResponse,
    body_in_buf: &[u8],
    ep: &crate::upstream::EndpointView,
    cluster: &crate::upstream::ClusterView,
    timeout: Option<Duration>,
) -> Next {
    if p.status == 101 {
        if !info.upgrade {
            return local(d, w, Some(info), LocalReason::UpstreamProtocolError, true).await;
        }
        let to_client = BytesMut::from(body_in_buf);
        if d.conn.write_all(p.out).await.is_err() {
            return Next::Close;
        }
        let to_up = std::mem::take(&mut d.pending);
        body::tunnel(
            &d.conn,
            to_up,
            up,
            to_client,
            &w.drain,
            l.http.stream_idle_timeout,
        )
        .await;
        return Next::Close;
    }
    d.si.status = p.status;
    let PreparedResponse {
        mut out,
        framing_in,
        chunked_out,
        keep_alive,
        up_keep,
        ..
    } = p;

    // Fast path: the whole (small) body came with the head.
    if let BodyFraming::Length(n) = framing_in {
        if n as usize == body_in_buf.len() && body_in_buf.len() <= INLINE_BODY {
            out.extend_from_slice(body_in_buf);
            d.si.bytes_sent = n;
            let ok = d.conn.write_all(out).await.is_ok();
            d.si.t_last_byte = Some(Instant::now());
            d.si.downstream_reset = !ok;
            if up_keep {
                ep.pool.checkin(
                    Rc::clone(up),
                    cluster.max_idle_per_endpoint,
                    w.drain.now_ms(),
                );
            }
            return if ok && keep_alive {
                Next::KeepAlive
            } else {
                Next::Close
            };
        }
    }
    if framing_in == BodyFraming::None {
        let ok = d.conn.write_all(out).await.is_ok();
        d.si.t_last_byte = Some(Instant::now());
        d.si.downstream_reset = !ok;
        if up_keep && body_in_buf.is_empty() {
            ep.pool.checkin(
                Rc::clone(up),
                cluster.max_idle_per_endpoint,
                w.drain.now_ms(),
            );
        }
        return if ok && keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
    }
    let initial = BytesMut::from(body_in_buf);
    if d.conn.write_all(out).await.is_err() {
        d.si.downstream_reset = true;
        return Next::Close;
    }
    let sent = std::cell::Cell::new(0);
    let pumped = body::pump_counting(
        up,
        initial,
        &d.conn,
        framing_in,
        chunked_out,
        timeout,
        &sent,
    )
    .await;
    d.si.t_last_byte = Some(Instant::now());
    d.si.bytes_sent = sent.get();
    match pumped {
        Ok((rest, moved)) => {
            d.si.bytes_sent = moved;
            if up_keep && rest.is_empty() && framing_in != BodyFraming::UntilClose {
                ep.pool.checkin(
                    Rc::clone(up),
                    cluster.max_idle_per_endpoint,
                    w.drain.now_ms(),
                );
            }
            if keep_alive {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
        Err(e) => {
            tracing::debug!(cluster = %cluster.name, error = %e, "response body failed");
            match e {
                PumpError::DstWrite(_) => d.si.downstream_reset = true,
                _ => d.si.upstream_reset = true,
            }
            Next::Close
        }
    }
}
