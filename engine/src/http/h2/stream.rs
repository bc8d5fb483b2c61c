//! One HTTP/2 stream from a client, on the stream layer: decoded into the model
//! ([`decode_request`]), routed and given the forwarding policy exactly as an HTTP/1 request
//! (`conn_manager::route_and_policy`), then run by `stream::run` with [`H2Stream`] as its
//! client side.
//!
//! Mapping (RFC 9113 §8.2-8.3): `:authority` is the authority (`host` when it is absent; a
//! `host` header is never forwarded beside it), connection-specific headers never reach the
//! model (the `h2` crate refuses them from clients), `te` is dropped (only `trailers` is
//! allowed on HTTP/2 and it means nothing to an HTTP/1 upstream), several `cookie` fields are
//! joined with `; ` into one. The body has the length `content-length` says (checked against
//! the DATA frames by `h2`) or goes upstream chunked; trailers go wherever the other side can
//! carry them. Responses leave with the model's headers minus connection-specific ones, a
//! `content-length` when the length is known, the body in DATA frames sent only as the
//! client's flow-control window allows (a slow reader makes the proxy stop reading the
//! upstream, never buffer), and trailers as a final HEADERS frame.

use std::{cell::Cell, future::poll_fn, io, net::SocketAddr, rc::Rc, time::Instant};

use bytes::{Bytes, BytesMut};
use h2::{server::SendResponse, RecvStream, SendStream};
use ringway_filters::BodySize;

use crate::{
    http::{
        body::{self, BodyEvent, PumpError, ReadAllError, ReadTimeout, Reframe, WholeBody},
        bulk::Bulk,
        conn_manager::{route_and_policy, Begun, Next},
        ctx::{ListenerCtx, WorkerCtx},
        downstream::{Downstream, ReplyOut, Side},
        filter_chain::WorkerRuntime,
        forward::{release, response_vars, Parsed, Target, Upstream},
        h1::BodyFraming,
        h2::wire::{decode_request, to_http_headers},
        stream::{self, Filters, ReqInfo},
    },
    io::Conn,
    stream_info::{SiSlot, Version},
};

/// An HTTP/2 stream as the stream layer's client side.
pub(crate) struct H2Stream {
    conn: Rc<Conn>,
    recv: RecvStream,
    respond: SendResponse<Bytes>,
}

/// Serve one stream: decode, route, run, observe.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    conn: Rc<Conn>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    l: Rc<ListenerCtx>,
    w: Rc<WorkerCtx>,
    counts: Rc<super::ConnCounts>,
) {
    let (parts, recv) = req.into_parts();
    let mut respond = respond;
    // Reset by the client already (a Rapid Reset flood resets each stream in the same read
    // that opened it): it never reaches routing, filters or an upstream.
    let reset = poll_fn(|cx| std::task::Poll::Ready(respond.poll_reset(cx).is_ready())).await;
    if reset {
        counts.resets.set(counts.resets.get() + 1);
        if let Some(s) = w.stats.listeners.get(l.stats_slot) {
            crate::stats::inc(&s.h2.rx_reset);
        }
        return;
    }
    let mut d = Downstream {
        side: H2Stream {
            conn,
            recv,
            respond,
        },
        peer,
        si: SiSlot::default(),
        local,
    };
    let begun = begin(&parts, &mut d, &l, &w);
    drop(parts);
    w.stats.downstream_rq(l.stats_slot);
    // In a recycled slot: the exchange's state is most of a stream's, and a task built around
    // it would be allocated, and moved, whole for every stream.
    let _ = w
        .h2_stream_slots
        .run_with(|| stream::run(&mut d, &l, &w, begun))
        .await;
    if d.si.downstream_reset {
        counts.resets.set(counts.resets.get() + 1);
        if let Some(s) = w.stats.listeners.get(l.stats_slot) {
            crate::stats::inc(&s.h2.rx_reset);
        }
    }
    w.stream_done(&l, &d.si);
    d.si.release();
}

/// Decode the request into the record, route it and apply the forwarding policy.
fn begin<'l>(
    parts: &http::request::Parts,
    d: &mut Downstream<H2Stream>,
    l: &'l ListenerCtx,
    w: &WorkerCtx,
) -> Begun<'l> {
    let si = &mut *d.si;
    si.start = Some(Instant::now());
    si.downstream_remote = Some(d.peer);
    si.seen = true;
    si.version = Some(Version::Http2);
    let scheme = if l.http.tls.is_some() {
        si.tls = d.side.conn.tls_details().cloned();
        "https"
    } else {
        "http"
    };
    let end = d.side.recv.is_end_stream();
    let (seen, mut framing) = decode_request(parts, scheme, end, &mut si.req);
    // RFC 8441: an extended CONNECT (`:protocol websocket`) is an HTTP/1.1 upgrade upstream: a
    // GET with `upgrade`, and a key of its own (an HTTP/2 client sends none); its DATA frames
    // are the tunnel, after the upstream's 101.
    let upgrade = parts
        .extensions
        .get::<h2::ext::Protocol>()
        .filter(|_| parts.method == http::Method::CONNECT)
        .map(|p| Bytes::copy_from_slice(p.as_str().as_bytes()));
    if upgrade.is_some() {
        let path = si.req.path().to_vec();
        let authority = si.req.authority().to_vec();
        let headers = std::mem::take(&mut si.req.headers);
        si.req.reset(b"GET", scheme, &authority, &path);
        si.req.headers = headers;
        si.req.body = BodySize::Empty;
        framing = BodyFraming::None;
        if !si.req.headers.contains("sec-websocket-key") {
            let (a, b) = (w.tracer.rng.next_u64(), w.tracer.rng.next_u64());
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&a.to_le_bytes());
            key[8..].copy_from_slice(&b.to_le_bytes());
            si.req
                .headers
                .append("sec-websocket-key", ringway_filters::base64::encode(&key));
        }
    }
    let info = ReqInfo {
        version: Version::Http2,
        keep_alive: true,
        is_head: parts.method == http::Method::HEAD,
        framing,
        expect_continue: false,
        idempotent: si.req.method.is_idempotent() && upgrade.is_none(),
        upgrade,
        grpc_timeout: seen.grpc_timeout,
        te_trailers: parts
            .headers
            .get(http::header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers")),
    };
    let route = route_and_policy(l, w, si, d.peer, seen);
    Begun { info, route }
}

/// A response head for `h2`: the status, the model's headers, `x-ringway-reason` and a
/// `content-length` when the length is known.
fn response_head(
    resp: &ringway_filters::ResponseHead,
    tag: Option<&'static str>,
    length: Option<u64>,
) -> Option<http::Response<()>> {
    let status = http::StatusCode::from_u16(resp.status).ok()?;
    let mut r = http::Response::new(());
    *r.status_mut() = status;
    let h = r.headers_mut();
    to_http_headers(&resp.headers, h);
    if let Some(t) = tag {
        h.insert("x-ringway-reason", http::HeaderValue::from_static(t));
    }
    if let Some(n) = length {
        h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    } else {
        h.remove(http::header::CONTENT_LENGTH);
    }
    Some(r)
}

/// Send `data` within the stream's flow-control window: capacity is asked for, waited for and
/// used piece by piece, so nothing beyond the window is ever queued.
pub(crate) async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end {
            send.send_data(Bytes::new(), true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap = loop {
            let c = send.capacity();
            if c > 0 {
                break c;
            }
            match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(h2::Error::from(h2::Reason::CANCEL)),
            }
        };
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}

impl Side for H2Stream {
    fn conn_local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.local_addr()
    }

    fn discard_body(&mut self, _framing: BodyFraming) -> bool {
        // The rest of the stream's body is refused by `h2` once the response ends; the
        // connection's other streams go on.
        true
    }

    fn body_if_here(&mut self, framing: BodyFraming) -> Option<Bytes> {
        (framing == BodyFraming::None).then(Bytes::new)
    }

    async fn read_all(
        &mut self,
        framing: BodyFraming,
        max: usize,
        timeout: ReadTimeout<'_>,
        _trailers: bool,
    ) -> Result<WholeBody, ReadAllError> {
        if let BodyFraming::Length(n) = framing {
            if n > max as u64 {
                return Err(ReadAllError::TooLarge(max));
            }
        }
        let mut body = BytesMut::new();
        let mut src = body::Source::h2(&mut self.recv);
        loop {
            let (got, end) = src.next(timeout).await?;
            if let Some(b) = got {
                if body.len() + b.len() > max {
                    return Err(ReadAllError::TooLarge(max));
                }
                body.extend_from_slice(&b);
                src.consumed(b.len());
            }
            if end {
                break;
            }
        }
        // HTTP/2 carries trailers natively: they are always decoded.
        let trailers = src.trailers(timeout).await?;
        Ok(WholeBody {
            body: body.freeze(),
            rest: BytesMut::new(),
            trailers,
        })
    }

    async fn write_reply(
        &mut self,
        _w: &WorkerCtx,
        si: &mut crate::stream_info::StreamInfo,
        r: ReplyOut,
    ) -> bool {
        let status = si.resp.status;
        let bodiless = r.is_head || status < 200 || status == 204 || status == 304;
        // An empty body needs no length on HTTP/2 (END_STREAM says it): a gRPC error is then
        // a proper trailers-only response.
        let length = match (bodiless && !r.is_head, si.resp.body) {
            (true, _) | (false, BodySize::Empty) => None,
            (false, _) => Some(r.body.len() as u64),
        };
        let Some(head) = response_head(&si.resp, r.tag, length) else {
            self.respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return false;
        };
        let end = bodiless || r.body.is_empty();
        let ok = match self.respond.send_response(head, end) {
            Ok(mut send) if !end => {
                si.bytes_sent = r.body.len() as u64;
                send_data(&mut send, r.body, true).await.is_ok()
            }
            Ok(_) => {
                si.bytes_sent = 0;
                true
            }
            Err(_) => false,
        };
        si.t_last_byte = Some(Instant::now());
        ok
    }

    async fn continue_100(&mut self, _info: &ReqInfo) -> bool {
        // HTTP/2 clients do not wait for 100 Continue unless they asked; `h2` answers none.
        true
    }

    async fn pump_request(
        &mut self,
        up: &Conn,
        r: Reframe,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        _bulk: Bulk<'_>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError> {
        // `h2` holds the DATA frames to the request's content-length (a longer or shorter body
        // is a stream error), so a length-framed body cannot overrun its head.
        let mut src = body::Source::h2(&mut self.recv);
        let (chunked, trailers_out) = (r.chunked_out, r.trailers_out);
        body::pump_to_h1(
            &mut src,
            up,
            chunked,
            trailers_out,
            timeout,
            received,
            transform,
        )
        .await
    }

    async fn pump_request_h2(
        &mut self,
        send: &mut SendStream<Bytes>,
        _framing: BodyFraming,
        _trailers_in: bool,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError> {
        let mut src = body::Source::h2(&mut self.recv);
        body::pump_to_h2(&mut src, send, timeout, received, transform).await
    }

    async fn respond_tail(
        d: &mut Downstream<Self>,
        _l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        t: &Target<'_>,
        from: Upstream<'_>,
        filters: Option<Filters<'_>>,
    ) -> Next {
        respond(d, w, info, t, from, filters).await
    }

    async fn switch_protocols(
        d: &mut Downstream<Self>,
        l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        up: &Rc<Conn>,
        _p: Parsed,
        rest: BytesMut,
    ) -> Next {
        if info.upgrade.is_none() {
            // Only an extended CONNECT asks to upgrade: a 101 otherwise is the upstream's error.
            let why = crate::error::LocalReason::UpstreamProtocolError;
            return stream::reply_error(d, w, info, why, None, true).await;
        }
        Box::pin(tunnel(d, l, w, up, rest)).await
    }
}

/// The upstream's response to an HTTP/2 client: the head, then the body (decoded from an
/// HTTP/1 upstream's framing, or an HTTP/2 upstream's DATA frames) as DATA frames within the
/// client's window (through the filters' response data hooks when they have them), then
/// trailers.
async fn respond(
    d: &mut Downstream<H2Stream>,
    w: &WorkerCtx,
    info: &ReqInfo,
    t: &Target<'_>,
    from: Upstream<'_>,
    mut filters: Option<Filters<'_>>,
) -> Next {
    let status = d.si.resp.status;
    let bodiless = info.is_head || status < 200 || status == 204 || status == 304;
    let no_body = bodiless
        || match &from {
            Upstream::H1 { p, .. } => {
                matches!(p.framing_in, BodyFraming::None | BodyFraming::Length(0))
            }
            Upstream::H2 { end, .. } => *end,
        };
    let length = match d.si.resp.body {
        _ if bodiless && !info.is_head => None,
        BodySize::Known(n) => Some(n),
        BodySize::Empty => Some(0),
        BodySize::Unknown => None,
    };
    let Some(head) = response_head(&d.si.resp, None, length) else {
        d.side.respond.send_reset(h2::Reason::INTERNAL_ERROR);
        d.si.downstream_reset = true;
        return Next::Close;
    };
    let mut send = match d.side.respond.send_response(head, no_body) {
        Ok(s) => s,
        Err(_) => {
            d.si.downstream_reset = true;
            return Next::Close;
        }
    };
    if no_body {
        d.si.t_last_byte = Some(Instant::now());
        d.si.bytes_sent = 0;
        if let Upstream::H1 { up, p, rest } = &from {
            if p.up_keep && rest.as_slice().is_empty() {
                release(t, w, up);
            }
        }
        return Next::KeepAlive;
    }
    // The body's source; an HTTP/1 connection is released after it if it may be reused.
    let mut h2_body;
    let (mut src, h1_up) = match from {
        Upstream::H1 { up, p, rest } => {
            let r = Reframe {
                framing: p.framing_in,
                chunked_out: false,
                trailers_in: t.cluster.enable_trailers,
                trailers_out: true,
            };
            let pieces = body::Pieces::new(p.framing_in, rest.into_bytes_mut(), r.decoder(true));
            (body::Source::H1 { src: up, pieces }, Some((up, p)))
        }
        Upstream::H2 { body, stream, .. } => {
            h2_body = (body, stream);
            (body::Source::h2(&mut h2_body.0), None)
        }
    };
    let body_timeout = t.timeout.map(|t| (&w.drain, t));
    let wants_data = filters.as_ref().is_some_and(|f| {
        let h = f.active.hooks();
        h.response_data || h.response_trailers
    });
    let sent = Cell::new(0);
    let mut ended_by: Option<&'static str> = None;
    let pumped = match filters.as_mut().filter(|_| wants_data) {
        None => body::pump_to_h2(&mut src, &mut send, body_timeout, &sent, None).await,
        Some(f) => {
            let vars = response_vars(d.peer, info, f.route.as_ref(), t, status);
            let rt = WorkerRuntime { drain: &w.drain };
            let parts = f.parts(d.peer, d.si.start, &rt, &vars);
            let si = &mut *d.si;
            let req = &si.req;
            let state = &mut si.filter_state;
            let active = &mut f.active;
            let ended = &mut ended_by;
            let mut transform =
                |ev: BodyEvent<'_>| active.response_event(ev, req, state, &parts, ended);
            body::pump_to_h2(
                &mut src,
                &mut send,
                body_timeout,
                &sent,
                Some(&mut transform),
            )
            .await
        }
    };
    d.si.t_last_byte = Some(Instant::now());
    d.si.bytes_sent = sent.get();
    match pumped {
        Ok(moved) => {
            d.si.bytes_sent = moved;
            if let (Some((up, p)), body::Source::H1 { pieces, .. }) = (h1_up, &src) {
                if p.up_keep && pieces.input.is_empty() && p.framing_in != BodyFraming::UntilClose {
                    release(t, w, up);
                }
            }
        }
        Err(PumpError::DstWrite(_)) => d.si.downstream_reset = true,
        Err(PumpError::Filter) => {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            d.si.filter_details = ended_by;
        }
        Err(e) => {
            tracing::debug!(cluster = %t.cluster.name, error = %e, "response body failed");
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            d.si.upstream_reset = true;
        }
    }
    Next::KeepAlive
}

/// An extended CONNECT whose upstream switched protocols: `200` to the client (RFC 8441: the
/// 101's upgrade headers stay on the HTTP/1.1 hop), then the stream's DATA frames and the
/// upstream connection's bytes both ways until either side ends (or `stream_idle_timeout`
/// passes with no byte either way).
async fn tunnel(
    d: &mut Downstream<H2Stream>,
    l: &ListenerCtx,
    w: &WorkerCtx,
    up: &Rc<Conn>,
    rest: BytesMut,
) -> Next {
    d.si.status = 200;
    d.si.upgraded = true;
    d.si.resp.status = 200;
    d.si.resp.headers.retain(|n, _| {
        !(n.eq_ignore_ascii_case(b"sec-websocket-accept")
            || n.eq_ignore_ascii_case(b"upgrade")
            || n.eq_ignore_ascii_case(b"connection"))
    });
    d.si.resp.body = BodySize::Unknown;
    let Some(head) = response_head(&d.si.resp, None, None) else {
        return Next::Close;
    };
    let mut send = match d.side.respond.send_response(head, false) {
        Ok(s) => s,
        Err(_) => {
            d.si.downstream_reset = true;
            return Next::Close;
        }
    };
    let recv = &mut d.side.recv;
    let activity = Cell::new(w.drain.now_ms());
    let (sent, received) = (Cell::new(0u64), Cell::new(0u64));
    // Client to upstream: DATA frames, written as they come; the client's end half-closes.
    let to_up = async {
        while let Some(got) = recv.data().await {
            let Ok(b) = got else { return false };
            let n = b.len();
            if n > 0 && up.write_all(b).await.is_err() {
                return false;
            }
            received.set(received.get() + n as u64);
            activity.set(w.drain.now_ms());
            let _ = recv.flow_control().release_capacity(n);
        }
        let _ = up.shutdown_write().await;
        true
    };
    // Upstream to client: what came with the 101, then each read, within the window.
    let to_client = async {
        if !rest.is_empty() {
            sent.set(rest.len() as u64);
            if send_data(&mut send, rest.freeze(), false).await.is_err() {
                return;
            }
        }
        loop {
            match up.read().await {
                Ok(Some(b)) => {
                    sent.set(sent.get() + b.len() as u64);
                    activity.set(w.drain.now_ms());
                    if send_data(&mut send, Bytes::copy_from_slice(&b), false)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                _ => {
                    let _ = send.send_data(Bytes::new(), true);
                    return;
                }
            }
        }
    };
    let idle = async {
        let Some(limit) = l.http.stream_idle_timeout else {
            return std::future::pending::<()>().await;
        };
        loop {
            let due = activity.get() + limit.as_millis() as u64;
            if w.drain
                .before(due, std::future::pending::<()>())
                .await
                .is_none()
                && w.drain.now_ms() >= activity.get() + limit.as_millis() as u64
            {
                return;
            }
        }
    };
    {
        use futures_util::future::{select, Either};
        let (a, b, i) = (
            std::pin::pin!(to_up),
            std::pin::pin!(to_client),
            std::pin::pin!(idle),
        );
        match select(select(a, b), i).await {
            Either::Left((Either::Left((clean, b)), i)) => {
                // The client ended its side: the upstream's answer may still come.
                if clean {
                    let _ = select(b, i).await;
                }
            }
            Either::Left((Either::Right(((), _)), _)) | Either::Right(((), _)) => {}
        }
    }
    d.si.bytes_sent = sent.get();
    d.si.bytes_received = received.get();
    d.si.t_last_byte = Some(Instant::now());
    Next::Close
}
