//! Moving message bodies between two connections with bounded memory: a body is forwarded one
//! read at a time (at most one pool buffer in flight per direction), so a 1 GiB upload or download
//! costs no more memory than a small one.
//!
//! [`pump`] moves one body framed by Content-Length, chunked encoding or connection close, and
//! re-frames it for the receiver (chunked bodies are decoded and re-encoded so that a malformed
//! chunk is caught, never passed on). Raw bytes both ways after an upgrade are
//! [`crate::tunnel`]'s.

use std::{cell::Cell, io, time::Duration};

use bytes::{Bytes, BytesMut};
use ringway_filters::HeaderMap;

use crate::{
    drain::Drain,
    http::bulk::{self, Bulk, BulkEnd},
    http::h1::{self, BodyFraming, Chunk},
    io::{Conn, Piece, ReadBuf},
};

/// Why a body could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("sender closed before the body ended")]
    SrcClosed,
    #[error("sender read failed: {0}")]
    SrcRead(io::Error),
    #[error("sender stalled")]
    SrcTimeout,
    #[error("receiver write failed: {0}")]
    DstWrite(io::Error),
    #[error("malformed body: {0}")]
    Malformed(h1::ParseError),
    #[error("a filter ended the stream")]
    Filter,
}

/// How a body arrives and how it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reframe {
    /// The sender's framing.
    pub framing: BodyFraming,
    /// The body leaves chunked (raw otherwise).
    pub chunked_out: bool,
    /// The sender's side decodes trailers (`enable_trailers` there); otherwise they are dropped.
    pub trailers_in: bool,
    /// The receiver's side sends trailers (`enable_trailers` there; they can follow only a
    /// chunked body).
    pub trailers_out: bool,
}

impl Reframe {
    pub(crate) fn decoder(&self, for_filters: bool) -> h1::ChunkedDecoder {
        let keep = self.trailers_in && (for_filters || (self.trailers_out && self.chunked_out));
        if keep {
            h1::ChunkedDecoder::keeping_trailers()
        } else {
            h1::ChunkedDecoder::new()
        }
    }
}

/// What a filtered body hands its transform.
pub enum BodyEvent<'a> {
    /// A piece of the body (may be replaced); `true`: the last piece (possibly empty).
    Data(&'a mut Bytes, bool),
    /// The body's trailers (after its last piece), when the sender's side decodes them; a
    /// response filter may set the second field to bytes that end the body (after every piece
    /// already passed: gRPC-Web's trailer frame), emptying the trailers it moved there.
    Trailers(&'a mut HeaderMap, &'a mut Option<Bytes>),
}

/// Decode kept trailer lines.
pub(crate) fn parse_trailers(raw: Option<BytesMut>) -> Result<Option<HeaderMap>, PumpError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut map = HeaderMap::default();
    h1::model::decode_trailers(&raw, &mut map).map_err(PumpError::Malformed)?;
    Ok(Some(map))
}

/// The end of a chunked body leaving: the last chunk, with `trailers` when there are any.
pub(crate) fn last_chunk(trailers: Option<&HeaderMap>) -> Piece {
    match trailers.filter(|t| !t.is_empty()) {
        Some(t) => {
            let mut out = BytesMut::new();
            h1::model::encode_trailers(t, &mut out);
            Piece::Bytes(out.freeze())
        }
        None => Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK)),
    }
}

pub(crate) const CRLF: Bytes = Bytes::from_static(b"\r\n");

/// How long each read of a body may wait for progress, on the worker's coarse clock (no
/// runtime timer per read; accurate to about one 100 ms tick). `None`: no limit.
pub type ReadTimeout<'a> = Option<(&'a Drain, Duration)>;

/// `fut` within `timeout` (`SrcTimeout` past it).
async fn within<F: std::future::Future>(
    timeout: ReadTimeout<'_>,
    fut: F,
) -> Result<F::Output, PumpError> {
    match timeout {
        Some((drain, t)) => drain
            .before(drain.deadline_in(t), fut)
            .await
            .ok_or(PumpError::SrcTimeout),
        None => Ok(fut.await),
    }
}

async fn read_src(src: &Conn, timeout: ReadTimeout<'_>) -> Result<Option<ReadBuf>, PumpError> {
    within(timeout, src.read())
        .await?
        .map_err(PumpError::SrcRead)
}

/// Most pieces one vectored write carries: the kernel refuses more than `IOV_MAX` (1024), and
/// a read full of tiny chunks decodes into three pieces per chunk.
const MAX_IOVS: usize = 512;

pub(crate) async fn write(dst: &Conn, pieces: Vec<Piece>) -> Result<(), PumpError> {
    if pieces.len() > MAX_IOVS {
        let mut rest = pieces;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_IOVS));
            dst.write_vectored_all(rest)
                .await
                .map_err(PumpError::DstWrite)?;
            rest = tail;
        }
        return Ok(());
    }
    match pieces.len() {
        0 => Ok(()),
        1 => {
            let p = pieces.into_iter().next();
            match p {
                Some(p) => dst.write_all(p).await.map_err(PumpError::DstWrite),
                None => Ok(()),
            }
        }
        _ => dst
            .write_vectored_all(pieces)
            .await
            .map_err(PumpError::DstWrite),
    }
}

/// One piece of body for an HTTP/1 receiver: as a chunk, or raw.
fn push_piece(v: &mut Vec<Piece>, data: Bytes, chunked: bool) {
    if chunked {
        v.push(chunk_header(data.len()));
        v.push(Piece::Bytes(data));
        v.push(Piece::Bytes(CRLF));
    } else {
        v.push(Piece::Bytes(data));
    }
}

pub(crate) fn chunk_header(len: usize) -> Piece {
    let mut h = BytesMut::with_capacity(18);
    h1::encode_chunk_header(len, &mut h);
    Piece::Bytes(h.freeze())
}

/// Move one body from `src` to `dst`. `initial` holds body bytes already read with the head (and
/// possibly bytes after the body). The body arrives and leaves as `r` says (a chunked body's
/// trailers go through when both sides enable them). Each read must make progress within
/// `timeout`. `progress` is kept at the number of body bytes written to `dst` so far, so a caller
/// still knows how much went through when the body breaks off (access logs). Returns the bytes
/// read past the end of the body (a pipelined request, or junk after a response) and the number
/// of body bytes moved. A raw body that arrives faster than one pool buffer per receive moves
/// through the worker's bulk buffers (`bulk`, see [`bulk`](crate::http::bulk)) while it does.
pub async fn pump(
    src: &Conn,
    mut initial: BytesMut,
    dst: &Conn,
    r: Reframe,
    timeout: ReadTimeout<'_>,
    progress: &std::cell::Cell<u64>,
    bulk: Bulk<'_>,
) -> Result<(BytesMut, u64), PumpError> {
    let _release = crate::io::ReleaseMultishot(src);
    let chunked_out = r.chunked_out;
    match r.framing {
        BodyFraming::None => Ok((initial, 0)),
        BodyFraming::Length(n) => {
            let mut left = n;
            if !initial.is_empty() {
                let take = left.min(initial.len() as u64) as usize;
                let part = initial.split_to(take).freeze();
                left -= take as u64;
                let mut v = Vec::with_capacity(3);
                if chunked_out && take > 0 {
                    v.push(chunk_header(take));
                    v.push(Piece::Bytes(part));
                    v.push(Piece::Bytes(CRLF));
                } else if take > 0 {
                    v.push(Piece::Bytes(part));
                }
                if left == 0 && chunked_out {
                    v.push(Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK)));
                }
                write(dst, v).await?;
                progress.set(n - left);
            }
            while left > 0 {
                let buf = read_src(src, timeout).await?.ok_or(PumpError::SrcClosed)?;
                let len = buf.len();
                let mut v = Vec::with_capacity(4);
                let mut rest = BytesMut::new();
                let take = if (len as u64) <= left {
                    len
                } else {
                    left as usize
                };
                if chunked_out {
                    v.push(chunk_header(take));
                }
                if take == len {
                    v.push(Piece::read(buf));
                } else {
                    rest.extend_from_slice(&buf[take..]);
                    v.push(Piece::read_range(buf, 0..take));
                }
                left -= take as u64;
                if chunked_out {
                    v.push(Piece::Bytes(CRLF));
                    if left == 0 {
                        v.push(Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK)));
                    }
                }
                write(dst, v).await?;
                progress.set(n - left);
                if left == 0 {
                    return Ok((rest, n));
                }
                if bulk::worth_it(len, Some(left)) {
                    let run = bulk::Run {
                        src,
                        dst,
                        left: Cell::new(Some(left)),
                        chunked_out,
                        timeout,
                        moved: progress,
                    };
                    let end = run.go(bulk).await?;
                    left = run.left.get().unwrap_or(0);
                    if end == BulkEnd::Ended {
                        // A bulk receive never reads past the body.
                        return Ok((BytesMut::new(), n));
                    }
                }
            }
            Ok((initial, n))
        }
        BodyFraming::Chunked => {
            let mut dec = r.decoder(false);
            let mut input = initial;
            let mut moved = 0u64;
            loop {
                let mut v: Vec<Piece> = Vec::new();
                let mut ended = false;
                loop {
                    match dec.decode(&mut input).map_err(PumpError::Malformed)? {
                        Chunk::Data(d) => {
                            if d.is_empty() {
                                continue;
                            }
                            moved += d.len() as u64;
                            if chunked_out {
                                v.push(chunk_header(d.len()));
                                v.push(Piece::Bytes(d));
                                v.push(Piece::Bytes(CRLF));
                            } else {
                                v.push(Piece::Bytes(d));
                            }
                        }
                        Chunk::NeedMore => break,
                        Chunk::End => {
                            ended = true;
                            break;
                        }
                    }
                }
                if ended && chunked_out {
                    let trailers = parse_trailers(dec.take_trailers())?;
                    v.push(last_chunk(trailers.as_ref()));
                }
                write(dst, v).await?;
                progress.set(moved);
                if ended {
                    return Ok((input, moved));
                }
                let buf = read_src(src, timeout).await?.ok_or(PumpError::SrcClosed)?;
                input.extend_from_slice(&buf);
            }
        }
        BodyFraming::UntilClose => {
            let mut moved = initial.len() as u64;
            if !initial.is_empty() {
                let len = initial.len();
                let part = Piece::Bytes(initial.split().freeze());
                let v = if chunked_out {
                    vec![chunk_header(len), part, Piece::Bytes(CRLF)]
                } else {
                    vec![part]
                };
                write(dst, v).await?;
                progress.set(moved);
            }
            loop {
                match read_src(src, timeout).await {
                    Ok(Some(buf)) => {
                        let len = buf.len();
                        moved += len as u64;
                        let v = if chunked_out {
                            vec![
                                chunk_header(buf.len()),
                                Piece::read(buf),
                                Piece::Bytes(CRLF),
                            ]
                        } else {
                            vec![Piece::read(buf)]
                        };
                        write(dst, v).await?;
                        progress.set(moved);
                        if bulk::worth_it(len, None) {
                            let run = bulk::Run {
                                src,
                                dst,
                                left: Cell::new(None),
                                chunked_out,
                                timeout,
                                moved: progress,
                            };
                            let end = run.go(bulk).await?;
                            moved = progress.get();
                            if end == BulkEnd::Ended {
                                return Ok((BytesMut::new(), moved));
                            }
                        }
                    }
                    // Over TLS the end must be `close_notify` (RFC 9112 §9.8): a close without
                    // it may be a truncation, and the body is not ended for the client.
                    Ok(None) if src.tls_cut() => return Err(PumpError::SrcClosed),
                    // Connection close ends the body (a reset does too: nothing tells them apart
                    // reliably on the wire for close-delimited bodies).
                    Ok(None) | Err(PumpError::SrcRead(_)) => break,
                    Err(e) => return Err(e),
                }
            }
            if chunked_out {
                write(dst, vec![Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK))]).await?;
            }
            Ok((BytesMut::new(), moved))
        }
    }
}

/// A body as a sequence of decoded pieces (framing removed), for the paths that must see the
/// bytes: HTTP filters with data hooks, and whole-body buffering. The plain forwarding path
/// ([`pump`]) does not use it: it hands pool buffers straight to the receiver.
pub(crate) struct Pieces {
    framing: BodyFraming,
    /// Length-framed: bytes still to come.
    left: u64,
    pub(crate) dec: h1::ChunkedDecoder,
    pub(crate) input: BytesMut,
    pub(crate) done: bool,
}

impl Pieces {
    pub(crate) fn new(framing: BodyFraming, initial: BytesMut, dec: h1::ChunkedDecoder) -> Pieces {
        Pieces {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            dec,
            input: initial,
            done: matches!(framing, BodyFraming::None | BodyFraming::Length(0)),
        }
    }

    /// The next piece of body (`None`: the body ended; the rest of `input` is what followed it).
    pub(crate) async fn next(
        &mut self,
        src: &Conn,
        timeout: ReadTimeout<'_>,
    ) -> Result<Option<Bytes>, PumpError> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.framing {
                BodyFraming::None => self.done = true,
                BodyFraming::Length(_) => {
                    if !self.input.is_empty() {
                        let take = self.left.min(self.input.len() as u64) as usize;
                        self.left -= take as u64;
                        self.done = self.left == 0;
                        return Ok(Some(self.input.split_to(take).freeze()));
                    }
                    let buf = read_src(src, timeout).await?.ok_or(PumpError::SrcClosed)?;
                    self.input.extend_from_slice(&buf);
                }
                BodyFraming::Chunked => {
                    match self
                        .dec
                        .decode(&mut self.input)
                        .map_err(PumpError::Malformed)?
                    {
                        Chunk::Data(d) if d.is_empty() => {}
                        Chunk::Data(d) => return Ok(Some(d)),
                        Chunk::End => self.done = true,
                        Chunk::NeedMore => {
                            let buf = read_src(src, timeout).await?.ok_or(PumpError::SrcClosed)?;
                            self.input.extend_from_slice(&buf);
                        }
                    }
                }
                BodyFraming::UntilClose => {
                    if !self.input.is_empty() {
                        return Ok(Some(self.input.split().freeze()));
                    }
                    match read_src(src, timeout).await {
                        Ok(Some(buf)) => return Ok(Some(Bytes::copy_from_slice(&buf))),
                        // As in the pump: over TLS only `close_notify` ends the body.
                        Ok(None) if src.tls_cut() => return Err(PumpError::SrcClosed),
                        Ok(None) | Err(PumpError::SrcRead(_)) => self.done = true,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// Why a whole body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadAllError {
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Pump(#[from] PumpError),
}

/// A whole body read by [`read_all`].
#[derive(Debug)]
pub struct WholeBody {
    pub body: Bytes,
    /// Bytes read past its end.
    pub rest: BytesMut,
    /// Its trailers, when asked for and sent.
    pub trailers: Option<HeaderMap>,
}

/// Read a whole body (at most `max` bytes) from `src`, keeping a chunked body's trailers when
/// `trailers`. A body declared larger than `max` fails before anything is read.
pub async fn read_all(
    src: &Conn,
    initial: BytesMut,
    framing: BodyFraming,
    max: usize,
    timeout: ReadTimeout<'_>,
    trailers: bool,
) -> Result<WholeBody, ReadAllError> {
    if let BodyFraming::Length(n) = framing {
        if n > max as u64 {
            return Err(ReadAllError::TooLarge(max));
        }
    }
    let dec = if trailers {
        h1::ChunkedDecoder::keeping_trailers()
    } else {
        h1::ChunkedDecoder::new()
    };
    let mut pieces = Pieces::new(framing, initial, dec);
    let mut body = BytesMut::new();
    while let Some(p) = pieces.next(src, timeout).await? {
        if body.len() + p.len() > max {
            return Err(ReadAllError::TooLarge(max));
        }
        if body.is_empty() && pieces.done {
            // The whole body in one piece: no copy (a length-framed body: no trailers).
            return Ok(WholeBody {
                body: p,
                rest: pieces.input,
                trailers: None,
            });
        }
        body.extend_from_slice(&p);
    }
    Ok(WholeBody {
        body: body.freeze(),
        rest: pieces.input,
        trailers: parse_trailers(pieces.dec.take_trailers())?,
    })
}

/// Move one body from `src` to `dst` through `transform`, which sees each decoded piece (and a
/// last call with `end = true`, possibly empty) and may replace it, then the trailers when the
/// sender's side decodes them; `false` from it ends the stream ([`PumpError::Filter`]). The body
/// leaves as `r` says. Returns the bytes read past the body and the body bytes written.
pub async fn pump_filtered(
    src: &Conn,
    initial: BytesMut,
    dst: &Conn,
    r: Reframe,
    timeout: ReadTimeout<'_>,
    progress: &Cell<u64>,
    transform: &mut dyn FnMut(BodyEvent<'_>) -> bool,
) -> Result<(BytesMut, u64), PumpError> {
    let mut pieces = Pieces::new(r.framing, initial, r.decoder(true));
    let mut moved = 0u64;
    loop {
        let got = pieces.next(src, timeout).await?;
        let end = got.is_none() || pieces.done;
        let mut data = got.unwrap_or_default();
        if !transform(BodyEvent::Data(&mut data, end)) {
            return Err(PumpError::Filter);
        }
        let mut v = Vec::with_capacity(4);
        if !data.is_empty() {
            moved += data.len() as u64;
            if r.chunked_out {
                v.push(chunk_header(data.len()));
                v.push(Piece::Bytes(data));
                v.push(Piece::Bytes(CRLF));
            } else {
                v.push(Piece::Bytes(data));
            }
        }
        if end {
            let mut trailers = parse_trailers(pieces.dec.take_trailers())?;
            if let Some(t) = trailers.as_mut() {
                let mut tail = None;
                if !transform(BodyEvent::Trailers(t, &mut tail)) {
                    return Err(PumpError::Filter);
                }
                if let Some(b) = tail.filter(|b| !b.is_empty()) {
                    moved += b.len() as u64;
                    push_piece(&mut v, b, r.chunked_out);
                }
            }
            if r.chunked_out {
                v.push(last_chunk(trailers.as_ref().filter(|_| r.trailers_out)));
            }
        }
        write(dst, v).await?;
        progress.set(moved);
        if end {
            return Ok((pieces.input, moved));
        }
    }
}

/// A body arriving from either codec, as decoded pieces: an HTTP/1 connection's (framed as
/// `Pieces` says) or an HTTP/2 stream's DATA frames. The bridge between codecs: a body
/// converted from one to the other moves through here, one piece at a time.
pub(crate) enum Source<'a> {
    H1 {
        src: &'a Conn,
        pieces: Pieces,
    },
    H2 {
        recv: &'a mut h2::RecvStream,
        /// Empty DATA frames in a row (a flood of them is refused).
        empties: u32,
    },
}

/// Empty DATA frames (not ending the stream) accepted in a row before the body is refused: a
/// peer sending nothing but empty frames costs CPU and moves nothing (Envoy's
/// `max_consecutive_inbound_frames_with_empty_payload` is 1; some clients send a few).
const MAX_EMPTY_DATA: u32 = 64;

impl<'a> Source<'a> {
    /// An HTTP/2 stream's body.
    pub(crate) fn h2(recv: &'a mut h2::RecvStream) -> Source<'a> {
        Source::H2 { recv, empties: 0 }
    }
}

impl Source<'_> {
    /// The next piece and whether it is the last (`(None, true)`: the body ended).
    pub(crate) async fn next(
        &mut self,
        timeout: ReadTimeout<'_>,
    ) -> Result<(Option<Bytes>, bool), PumpError> {
        match self {
            Source::H1 { src, pieces } => {
                let got = pieces.next(src, timeout).await?;
                let end = got.is_none() || pieces.done;
                Ok((got, end))
            }
            Source::H2 { recv, empties } => loop {
                let got = within(timeout, recv.data()).await?;
                return match got {
                    None => Ok((None, true)),
                    Some(Ok(b)) if b.is_empty() && !recv.is_end_stream() => {
                        *empties += 1;
                        if *empties > MAX_EMPTY_DATA {
                            return Err(PumpError::SrcRead(io::Error::other(
                                "a flood of empty DATA frames",
                            )));
                        }
                        continue;
                    }
                    Some(Ok(b)) => {
                        *empties = 0;
                        Ok((Some(b), recv.is_end_stream()))
                    }
                    Some(Err(e)) => Err(PumpError::SrcRead(crate::upstream::h2::io_error(e))),
                };
            },
        }
    }

    /// `n` bytes of the last piece have left for the other side: an HTTP/2 sender may send that
    /// much more (its window is given back only now, so a slow receiver slows the sender).
    pub(crate) fn consumed(&mut self, n: usize) {
        if let Source::H2 { recv, .. } = self {
            let _ = recv.flow_control().release_capacity(n);
        }
    }

    /// The trailers that followed the body, if any (an HTTP/1 sender's only when its side
    /// decodes them).
    pub(crate) async fn trailers(
        &mut self,
        timeout: ReadTimeout<'_>,
    ) -> Result<Option<HeaderMap>, PumpError> {
        match self {
            Source::H1 { pieces, .. } => parse_trailers(pieces.dec.take_trailers()),
            Source::H2 { recv, .. } => match within(timeout, recv.trailers()).await? {
                Ok(t) => Ok(t
                    .map(|t| crate::http::h2::from_http_trailers(&t))
                    .filter(|t| !t.is_empty())),
                Err(e) => Err(PumpError::SrcRead(crate::upstream::h2::io_error(e))),
            },
        }
    }
}

/// Move a body from `src` to an HTTP/1 connection, chunked when `chunked_out` (its trailers
/// then too, when `trailers_out`), raw otherwise, through `transform` when filters have data
/// hooks. Returns the body bytes written.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump_to_h1(
    src: &mut Source<'_>,
    dst: &Conn,
    chunked_out: bool,
    trailers_out: bool,
    timeout: ReadTimeout<'_>,
    progress: &Cell<u64>,
    mut transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
) -> Result<u64, PumpError> {
    let mut moved = 0u64;
    loop {
        let (got, end) = src.next(timeout).await?;
        let mut data = got.unwrap_or_default();
        let len = data.len();
        if let Some(t) = transform.as_deref_mut() {
            if !t(BodyEvent::Data(&mut data, end)) {
                return Err(PumpError::Filter);
            }
        }
        let mut v = Vec::with_capacity(4);
        if !data.is_empty() {
            moved += data.len() as u64;
            if chunked_out {
                v.push(chunk_header(data.len()));
                v.push(Piece::Bytes(data));
                v.push(Piece::Bytes(CRLF));
            } else {
                v.push(Piece::Bytes(data));
            }
        }
        if end {
            let mut trailers = src.trailers(timeout).await?;
            if let (Some(t), Some(tr)) = (transform.as_deref_mut(), trailers.as_mut()) {
                let mut tail = None;
                if !t(BodyEvent::Trailers(tr, &mut tail)) {
                    return Err(PumpError::Filter);
                }
                if let Some(b) = tail.filter(|b| !b.is_empty()) {
                    moved += b.len() as u64;
                    push_piece(&mut v, b, chunked_out);
                }
            }
            if chunked_out {
                v.push(last_chunk(trailers.as_ref().filter(|_| trailers_out)));
            }
        }
        write(dst, v).await?;
        src.consumed(len);
        progress.set(moved);
        if end {
            return Ok(moved);
        }
    }
}

/// Move a body from `src` to an HTTP/2 stream within its flow-control window, then its
/// trailers (or the end of the stream), through `transform` when filters have data hooks.
/// Returns the body bytes sent.
pub(crate) async fn pump_to_h2(
    src: &mut Source<'_>,
    dst: &mut h2::SendStream<Bytes>,
    timeout: ReadTimeout<'_>,
    progress: &Cell<u64>,
    mut transform: Option<&mut dyn FnMut(BodyEvent<'_>) -> bool>,
) -> Result<u64, PumpError> {
    let gone = |e: h2::Error| PumpError::DstWrite(crate::upstream::h2::io_error(e));
    let mut moved = 0u64;
    loop {
        let (got, end) = src.next(timeout).await?;
        let mut data = got.unwrap_or_default();
        let len = data.len();
        if let Some(t) = transform.as_deref_mut() {
            if !t(BodyEvent::Data(&mut data, end)) {
                return Err(PumpError::Filter);
            }
        }
        let mut trailers = None;
        if end {
            trailers = src.trailers(timeout).await?;
            if let (Some(t), Some(tr)) = (transform.as_deref_mut(), trailers.as_mut()) {
                let mut tail = None;
                if !t(BodyEvent::Trailers(tr, &mut tail)) {
                    return Err(PumpError::Filter);
                }
                if let Some(b) = tail.filter(|b| !b.is_empty()) {
                    let mut joined = BytesMut::with_capacity(data.len() + b.len());
                    joined.extend_from_slice(&data);
                    joined.extend_from_slice(&b);
                    data = joined.freeze();
                }
            }
            trailers = trailers.filter(|t| !t.is_empty());
        }
        moved += data.len() as u64;
        crate::http::h2::send_data(dst, data, end && trailers.is_none())
            .await
            .map_err(gone)?;
        if let Some(tr) = trailers {
            let mut map = http::HeaderMap::new();
            crate::http::h2::to_http_headers(&tr, &mut map);
            dst.send_trailers(map).map_err(gone)?;
        }
        src.consumed(len);
        progress.set(moved);
        if end {
            return Ok(moved);
        }
    }
}
