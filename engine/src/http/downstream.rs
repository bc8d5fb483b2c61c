//! The client's side of a stream, whatever codec carries it: [`Downstream`] holds what every
//! stream has (the peer, the request's record, the local address) and the codec's half, a
//! [`Side`]: [`H1`] (the connection itself and the bytes read ahead of the current request) or
//! one HTTP/2 stream ([`super::h2::H2Stream`]).
//!
//! [`super::stream`] and [`super::forward`] are generic over the side: the router, the filters,
//! the upstream exchange and the observers are one code for both codecs, and each side only says
//! how bytes reach the client and how its body is read. Generic, not dynamic: the HTTP/1 path
//! compiles to what it was before HTTP/2 existed.
//!
//! ```text
//! stream::run / forward::forward ─▶ Side::discard_body, body_if_here, read_all   (request body)
//!                                 ─▶ Side::pump_request        (request body, streamed upstream)
//!                                 ─▶ Side::write_reply         (a local reply, head from si.resp)
//!                                 ─▶ Side::respond_tail        (the upstream's response, head + body)
//! ```

use std::{cell::Cell, io, net::SocketAddr, rc::Rc, time::Instant};

use bytes::{Bytes, BytesMut};
use ringway_filters::BodySize;

use crate::{
    http::{
        body::{self, BodyEvent, PumpError, ReadAllError, ReadTimeout, Reframe, WholeBody},
        bulk::Bulk,
        conn_manager::Next,
        ctx::{ListenerCtx, WorkerCtx},
        forward::{self, Parsed, Target, Upstream},
        h1::{self, model, BodyFraming},
        stream::{Filters, ReqInfo},
    },
    io::Conn,
    stream_info::{SiSlot, StreamInfo, Version},
};

/// One stream's client side.
pub(crate) struct Downstream<S> {
    /// The codec's half.
    pub(crate) side: S,
    pub(crate) peer: SocketAddr,
    /// The current request's record, handed to the observers when its exchange ends.
    pub(crate) si: SiSlot,
    /// The address the client connected to, for a cluster's PROXY header: an incoming PROXY
    /// header's destination, or the socket's local address once asked for (read once per
    /// connection, [`Downstream::local_addr`]).
    pub(crate) local: Option<SocketAddr>,
}

impl<S: Side> Downstream<S> {
    /// The address the client connected to (the first call on a connection without a PROXY
    /// header costs a `getsockname`; later ones nothing).
    pub(crate) fn local_addr(&mut self) -> io::Result<SocketAddr> {
        if let Some(a) = self.local {
            return Ok(a);
        }
        let a = self.side.conn_local_addr()?;
        self.local = Some(a);
        Ok(a)
    }
}

/// A local reply ready to go out: its head is in the record's `resp`.
pub(crate) struct ReplyOut {
    pub version: Version,
    pub is_head: bool,
    /// The connection closes after it (HTTP/1; an HTTP/2 stream just ends).
    pub close: bool,
    /// `x-ringway-reason`.
    pub tag: Option<&'static str>,
    pub body: Bytes,
}

/// What a codec does for the stream layer on the client's side.
#[allow(async_fn_in_trait)]
pub(crate) trait Side: Sized {
    /// The local address of the client's connection (`getsockname`).
    fn conn_local_addr(&self) -> io::Result<SocketAddr>;

    /// Drop the body of a request answered locally when it is all here; `false`: the connection
    /// must close instead (HTTP/1: the rest of the body would be read as the next request).
    fn discard_body(&mut self, framing: BodyFraming) -> bool;

    /// The whole request body when it has arrived already (`None`: it must be streamed).
    fn body_if_here(&mut self, framing: BodyFraming) -> Option<Bytes>;

    /// Read the whole request body (at most `max` bytes), with its trailers when asked.
    async fn read_all(
        &mut self,
        framing: BodyFraming,
        max: usize,
        timeout: ReadTimeout<'_>,
        trailers: bool,
    ) -> Result<WholeBody, ReadAllError>;

    /// Send a local reply (head in `si.resp`, filters done). `false`: the client is gone.
    async fn write_reply(&mut self, w: &WorkerCtx, si: &mut StreamInfo, r: ReplyOut) -> bool;

    /// Before a streamed request body: tell a client that waits for it to send (`100
    /// Continue`). `false`: the client is gone.
    async fn continue_100(&mut self, info: &ReqInfo) -> bool;

    /// Move the request body to `up` as `r` says, through `transform` when filters have data
    /// hooks. Returns the body bytes moved.
    #[allow(clippy::too_many_arguments)]
    async fn pump_request(
        &mut self,
        up: &Conn,
        r: Reframe,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        bulk: Bulk<'_>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError>;

    /// Move the request body to an HTTP/2 upstream stream, through `transform` when filters
    /// have data hooks. Returns the body bytes moved.
    async fn pump_request_h2(
        &mut self,
        send: &mut h2::SendStream<Bytes>,
        framing: BodyFraming,
        trailers_in: bool,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError>;

    /// Send the upstream's response to the client: the head in `d.si.resp` (response filters
    /// have run), then the body (`from`: an HTTP/1 connection with the bytes that came with the
    /// head, or an HTTP/2 stream), through the filters' response data hooks when they have
    /// them; an HTTP/1 upstream connection goes back to its pool when it may be reused.
    async fn respond_tail(
        d: &mut Downstream<Self>,
        l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        t: &Target<'_>,
        from: Upstream<'_>,
        filters: Option<Filters<'_>>,
    ) -> Next;

    /// A 101 from the upstream for a request that asked to upgrade: switch the client over and
    /// tunnel bytes both ways.
    async fn switch_protocols(
        d: &mut Downstream<Self>,
        l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        up: &Rc<Conn>,
        p: Parsed,
        rest: BytesMut,
    ) -> Next;
}

/// The HTTP/1 connection's half: the connection and the bytes read past the current request's
/// head.
pub(crate) struct H1 {
    pub(crate) conn: Conn,
    /// Bytes read but not yet used (a split head, body bytes, pipelined requests). Empty, and
    /// holding no allocation, for an idle connection in the common case.
    pub(crate) pending: BytesMut,
}

/// The codec's version of a record's version (an HTTP/1 reply to an HTTP/2 request never
/// happens: HTTP/2 streams have their own side).
pub(crate) fn h1_version(v: Version) -> h1::Version {
    match v {
        Version::Http10 => h1::Version::Http10,
        _ => h1::Version::Http11,
    }
}

impl Side for H1 {
    fn conn_local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.local_addr()
    }

    fn discard_body(&mut self, framing: BodyFraming) -> bool {
        match framing {
            BodyFraming::None => true,
            BodyFraming::Length(n) if self.pending.len() as u64 >= n => {
                let _ = self.pending.split_to(n as usize);
                true
            }
            _ => false,
        }
    }

    fn body_if_here(&mut self, framing: BodyFraming) -> Option<Bytes> {
        match framing {
            BodyFraming::None => Some(Bytes::new()),
            BodyFraming::Length(n) if self.pending.len() as u64 >= n => {
                Some(self.pending.split_to(n as usize).freeze())
            }
            _ => None,
        }
    }

    async fn read_all(
        &mut self,
        framing: BodyFraming,
        max: usize,
        timeout: ReadTimeout<'_>,
        trailers: bool,
    ) -> Result<WholeBody, ReadAllError> {
        let initial = std::mem::take(&mut self.pending);
        let mut whole =
            body::read_all(&self.conn, initial, framing, max, timeout, trailers).await?;
        self.pending = std::mem::take(&mut whole.rest);
        Ok(whole)
    }

    async fn write_reply(&mut self, w: &WorkerCtx, si: &mut StreamInfo, r: ReplyOut) -> bool {
        let bodiless =
            r.is_head || si.resp.status < 200 || si.resp.status == 204 || si.resp.status == 304;
        let framing = match si.resp.body {
            _ if bodiless && !r.is_head => model::Framing::None { length_zero: false },
            BodySize::Empty => model::Framing::None { length_zero: true },
            // HEAD: the length of the body a GET would get.
            _ => model::Framing::Length(r.body.len() as u64),
        };
        let persist = if r.close {
            model::Persist::Close
        } else {
            model::Persist::KeepAlive
        };
        let mut out = w
            .write_bufs
            .take(si.resp.headers.wire_len() + 160 + r.body.len());
        model::encode_response(
            &si.resp,
            h1_version(r.version),
            framing,
            persist,
            None,
            r.tag,
            &mut out,
        );
        if !bodiless {
            out.extend_from_slice(&r.body);
            si.bytes_sent = r.body.len() as u64;
        } else {
            si.bytes_sent = 0;
        }
        let ok = self.conn.write_pooled(out, &w.write_bufs).await.is_ok();
        si.t_last_byte = Some(Instant::now());
        ok
    }

    async fn continue_100(&mut self, info: &ReqInfo) -> bool {
        !(info.expect_continue
            && info.version == Version::Http11
            && self
                .conn
                .write_all(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
                .await
                .is_err())
    }

    async fn pump_request(
        &mut self,
        up: &Conn,
        r: Reframe,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        bulk: Bulk<'_>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError> {
        let initial = std::mem::take(&mut self.pending);
        let pumped = match transform {
            None => body::pump(&self.conn, initial, up, r, timeout, received, bulk).await,
            Some(t) => body::pump_filtered(&self.conn, initial, up, r, timeout, received, t).await,
        };
        let (rest, moved) = pumped?;
        self.pending = rest;
        Ok(moved)
    }

    async fn pump_request_h2(
        &mut self,
        send: &mut h2::SendStream<Bytes>,
        framing: BodyFraming,
        trailers_in: bool,
        timeout: ReadTimeout<'_>,
        received: &Cell<u64>,
        transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
    ) -> Result<u64, PumpError> {
        let dec = if trailers_in {
            h1::ChunkedDecoder::keeping_trailers()
        } else {
            h1::ChunkedDecoder::new()
        };
        let initial = std::mem::take(&mut self.pending);
        let mut src = body::Source::H1 {
            src: &self.conn,
            pieces: body::Pieces::new(framing, initial, dec),
        };
        let r = body::pump_to_h2(&mut src, send, timeout, received, transform).await;
        if let body::Source::H1 { pieces, .. } = src {
            self.pending = pieces.input;
        }
        r
    }

    async fn respond_tail(
        d: &mut Downstream<Self>,
        l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        t: &Target<'_>,
        from: Upstream<'_>,
        filters: Option<Filters<'_>>,
    ) -> Next {
        match from {
            Upstream::H1 { up, p, rest } => {
                forward::respond_h1(d, l, w, info, t, up, p, rest, filters).await
            }
            Upstream::H2 { body, end, stream } => {
                forward::respond_h1_from_h2(d, l, w, info, t, body, end, stream, filters).await
            }
        }
    }

    async fn switch_protocols(
        d: &mut Downstream<Self>,
        l: &ListenerCtx,
        w: &WorkerCtx,
        info: &ReqInfo,
        up: &Rc<Conn>,
        p: Parsed,
        rest: BytesMut,
    ) -> Next {
        forward::switch_protocols(d, l, w, info, up, p, rest).await
    }
}
