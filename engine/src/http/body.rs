//! Moving message bodies between two connections with bounded memory: a body is forwarded one
//! read at a time (at most one pool buffer in flight per direction), so a 1 GiB upload or download
//! costs no more memory than a small one.
//!
//! [`pump`] moves one body framed by Content-Length, chunked encoding or connection close, and
//! re-frames it for the receiver (chunked bodies are decoded and re-encoded so that a malformed
//! chunk is caught, never passed on). [`tunnel`] copies raw bytes both ways after an upgrade.

use std::{cell::Cell, io, time::Duration};

use bytes::{Bytes, BytesMut};

use crate::{
    drain::Drain,
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
}

const CRLF: Bytes = Bytes::from_static(b"\r\n");

async fn read_src(src: &Conn, timeout: Option<Duration>) -> Result<Option<ReadBuf>, PumpError> {
    let r = match timeout {
        Some(t) => match compio::time::timeout(t, src.read()).await {
            Ok(r) => r,
            Err(_) => return Err(PumpError::SrcTimeout),
        },
        None => src.read().await,
    };
    r.map_err(PumpError::SrcRead)
}

async fn write(dst: &Conn, pieces: Vec<Piece>) -> Result<(), PumpError> {
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

fn chunk_header(len: usize) -> Piece {
    let mut h = BytesMut::with_capacity(18);
    h1::encode_chunk_header(len, &mut h);
    Piece::Bytes(h.freeze())
}

/// Move one body from `src` to `dst`. `initial` holds body bytes already read with the head (and
/// possibly bytes after the body). The body arrives framed by `framing` and leaves chunked when
/// `chunked_out`, raw otherwise. Each read must make progress within `timeout`. Returns the bytes
/// read past the end of the body (a pipelined request, or junk after a response) and the number
/// of body bytes moved.
pub async fn pump(
    src: &Conn,
    initial: BytesMut,
    dst: &Conn,
    framing: BodyFraming,
    chunked_out: bool,
    timeout: Option<Duration>,
) -> Result<(BytesMut, u64), PumpError> {
    let progress = std::cell::Cell::new(0);
    pump_counting(src, initial, dst, framing, chunked_out, timeout, &progress).await
}

/// [`pump`], also keeping `progress` at the number of body bytes written to `dst` so far, so a
/// caller still knows how much went through when the body breaks off (access logs).
pub async fn pump_counting(
    src: &Conn,
    mut initial: BytesMut,
    dst: &Conn,
    framing: BodyFraming,
    chunked_out: bool,
    timeout: Option<Duration>,
    progress: &std::cell::Cell<u64>,
) -> Result<(BytesMut, u64), PumpError> {
    match framing {
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
            }
            Ok((initial, n))
        }
        BodyFraming::Chunked => {
            let mut dec = h1::ChunkedDecoder::new();
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
                    v.push(Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK)));
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
                        moved += buf.len() as u64;
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
                    }
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

/// Copy raw bytes one way until the sender closes (then half-close the receiver), or until the
/// tunnel has been idle both ways for `idle` (`last`: the coarse time of the last byte either
/// way, shared by both directions).
async fn copy_one_way(
    src: &Conn,
    first: BytesMut,
    dst: &Conn,
    drain: &Drain,
    idle: Option<Duration>,
    last: &Cell<u64>,
) {
    use crate::http::conn_manager::{read_bounded, Bound, ReadOutcome};
    if !first.is_empty() && dst.write_all(first.freeze()).await.is_err() {
        return;
    }
    // Draining does not cut tunnels short (shutdown's drain_timeout does); it only ends the
    // waiter's use here, so reads then wait without an idle bound.
    let mut idle = idle;
    loop {
        let got = match idle {
            Some(t) => read_bounded(src, Bound::Idle(t), drain).await,
            None => match src.read().await {
                Ok(Some(b)) => ReadOutcome::Data(b),
                _ => ReadOutcome::Closed,
            },
        };
        match got {
            ReadOutcome::Data(buf) => {
                last.set(drain.now_ms());
                if dst.write_all(buf).await.is_err() {
                    break;
                }
            }
            ReadOutcome::Closed => break,
            ReadOutcome::TimedOut => {
                let t = idle.map_or(0, |t| t.as_millis() as u64);
                if drain.now_ms().saturating_sub(last.get()) >= t {
                    // Idle both ways: the tunnel closes (the other direction times out too).
                    tracing::debug!("upgraded tunnel closed after stream_idle_timeout");
                    return;
                }
            }
            ReadOutcome::Drained => idle = None,
        }
    }
    let _ = dst.shutdown_write().await;
}

/// After a 101: bytes flow both ways until both sides have closed, or until no byte has moved
/// either way for `idle` (`stream_idle_timeout`). `to_b` / `to_a` hold bytes already read that
/// belong to the other side.
pub async fn tunnel(
    a: &Conn,
    to_b: BytesMut,
    b: &Conn,
    to_a: BytesMut,
    drain: &Drain,
    idle: Option<Duration>,
) {
    let last = Cell::new(drain.now_ms());
    futures_util::future::join(
        copy_one_way(a, to_b, b, drain, idle, &last),
        copy_one_way(b, to_a, a, drain, idle, &last),
    )
    .await;
}

/// A body as a sequence of decoded pieces (framing removed), for the paths that must see the
/// bytes: HTTP filters with data hooks, and whole-body buffering. The plain forwarding path
/// ([`pump`]) does not use it: it hands pool buffers straight to the receiver.
struct Pieces {
    framing: BodyFraming,
    /// Length-framed: bytes still to come.
    left: u64,
    dec: h1::ChunkedDecoder,
    input: BytesMut,
    done: bool,
}

impl Pieces {
    fn new(framing: BodyFraming, initial: BytesMut) -> Pieces {
        Pieces {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            dec: h1::ChunkedDecoder::new(),
            input: initial,
            done: matches!(framing, BodyFraming::None | BodyFraming::Length(0)),
        }
    }

    /// The next piece of body (`None`: the body ended; the rest of `input` is what followed it).
    async fn next(
        &mut self,
        src: &Conn,
        timeout: Option<Duration>,
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

/// Read a whole body (at most `max` bytes) from `src`. Returns the body and the bytes read past
/// its end. A body declared larger than `max` fails before anything is read.
pub async fn read_all(
    src: &Conn,
    initial: BytesMut,
    framing: BodyFraming,
    max: usize,
    timeout: Option<Duration>,
) -> Result<(Bytes, BytesMut), ReadAllError> {
    if let BodyFraming::Length(n) = framing {
        if n > max as u64 {
            return Err(ReadAllError::TooLarge(max));
        }
    }
    let mut pieces = Pieces::new(framing, initial);
    let mut body = BytesMut::new();
    while let Some(p) = pieces.next(src, timeout).await? {
        if body.len() + p.len() > max {
            return Err(ReadAllError::TooLarge(max));
        }
        if body.is_empty() && pieces.done {
            // The whole body in one piece: no copy.
            return Ok((p, pieces.input));
        }
        body.extend_from_slice(&p);
    }
    Ok((body.freeze(), pieces.input))
}

/// Move one body from `src` to `dst` through `transform`, which sees each decoded piece (and a
/// last call with `end = true`, possibly empty) and may replace it; `false` from it ends the
/// stream with an error. The body leaves chunked when `chunked_out`, raw otherwise. Returns the
/// bytes read past the body and the body bytes written.
#[allow(clippy::too_many_arguments)]
pub async fn pump_filtered(
    src: &Conn,
    initial: BytesMut,
    dst: &Conn,
    framing: BodyFraming,
    chunked_out: bool,
    timeout: Option<Duration>,
    progress: &Cell<u64>,
    transform: &mut dyn FnMut(&mut Bytes, bool) -> bool,
) -> Result<(BytesMut, u64), PumpError> {
    let mut pieces = Pieces::new(framing, initial);
    let mut moved = 0u64;
    loop {
        let got = pieces.next(src, timeout).await?;
        let end = got.is_none() || pieces.done;
        let mut data = got.unwrap_or_default();
        if !transform(&mut data, end) {
            return Err(PumpError::DstWrite(io::Error::other(
                "filter ended the stream",
            )));
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
        if end && chunked_out {
            v.push(Piece::Bytes(Bytes::from_static(h1::LAST_CHUNK)));
        }
        write(dst, v).await?;
        progress.set(moved);
        if end {
            return Ok((pieces.input, moved));
        }
    }
}
