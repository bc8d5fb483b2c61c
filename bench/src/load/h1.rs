//! HTTP/1.1 load: one request in flight per connection, keep-alive, reconnect when the server
//! closes or a request fails.
//!
//! Hot path per request: the send of the prebuilt request (`Bytes`, shared, no copy) and the
//! first receive are submitted to the ring together, then reads continue into the connection's
//! own 64 KiB buffer until the response is complete (head parsed with httparse on a stack array
//! of headers, the body counted and skipped by Content-Length, chunked decoding or
//! read-to-close). No timer per request: the worker's watchdog ([`super::Watch`]) shuts down a
//! socket whose exchange overran `--timeout`, which ends the pending read. Nothing is allocated per
//! request. Plain TCP drives `compio::net::TcpStream` directly; TLS goes through
//! [`crate::io::PollIo`].
//!
//! `--new-connection-per-request` ([`run_fresh_slot`]): each request connects, sends the request
//! (which carries `Connection: close`), reads the response (latency stops here, so it includes the
//! connect), then waits for the server to close and closes too. Waiting for the server's FIN
//! keeps TIME_WAIT on the server side, as with real clients of `Connection: close`; a server that
//! keeps the connection open anyway, or sends more, shows up as a timeout or parse error (the
//! response itself is still counted).

use std::future::{poll_fn, Future};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;

use super::pace::Pace;
use super::stats::Failure;
use super::{connect, Conn, Flow, Watch, WorkerCtx};
use crate::http1::{has_token, parse_content_length, ChunkedDecoder};
use crate::io::PollIo;

/// Receive buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 256 * 1024;

/// A parsed response's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resp {
    /// Final status.
    pub status: u16,
    /// Bytes received (head + body).
    pub bytes: u64,
    /// The connection cannot be reused.
    pub close: bool,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// Content-Length.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the server closes.
    UntilClose,
}

/// Drives one HTTP/1.1 connection slot for the whole run.
pub async fn run_slot(ctx: Rc<WorkerCtx>, mut pace: Pace) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let watch = ctx.watch();
    loop {
        if Instant::now() >= ctx.window.end {
            return;
        }
        let flow = match connect(&ctx).await {
            Ok(Conn::Plain(s)) => exchange_loop(s, &ctx, &watch, &mut pace, &mut rbuf).await,
            Ok(Conn::Tls(t)) => exchange_loop(t, &ctx, &watch, &mut pace, &mut rbuf).await,
            Err(()) => {
                ctx.connect_failed(&mut pace).await;
                Flow::Reconnect
            }
        };
        if let Flow::Done = flow {
            return;
        }
    }
}

/// Drives one slot of `--new-connection-per-request` for the whole run.
pub async fn run_fresh_slot(ctx: Rc<WorkerCtx>, mut pace: Pace) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let watch = ctx.watch();
    while let Some(intended) = pace.next(&ctx.window).await {
        let conn = compio::time::timeout(ctx.shared.timeout, connect(&ctx)).await;
        rbuf.clear();
        match conn {
            Ok(Ok(Conn::Plain(s))) => one_exchange(s, &ctx, &watch, intended, &mut rbuf).await,
            Ok(Ok(Conn::Tls(t))) => one_exchange(t, &ctx, &watch, intended, &mut rbuf).await,
            Ok(Err(())) | Err(_) => ctx.connect_failed(&mut pace).await,
        }
    }
}

/// One request on its own connection, then the close (see the module docs).
async fn one_exchange<S: H1Conn + AsyncRead>(
    mut io: S,
    ctx: &WorkerCtx,
    watch: &Watch,
    intended: Instant,
    rbuf: &mut Vec<u8>,
) {
    watch.fd.set(io.fd());
    watch.arm(ctx.shared.timeout);
    let res = io
        .exchange(ctx.shared.request_h1.clone(), rbuf, ctx.shared.head_method)
        .await;
    let done = Instant::now();
    match res {
        Ok(resp) if !watch.fired.get() => {
            ctx.response(intended, done, resp.status, resp.bytes);
            let closed = loop {
                if !rbuf.is_empty() {
                    break Err(Failure::Parse);
                }
                match fill(&mut io, rbuf).await {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(f) => break Err(f),
                }
            };
            // The watchdog's shutdown also ends the read with a clean-looking 0.
            match (watch.disarm(), closed) {
                (true, _) => ctx.failure(intended, Failure::Timeout),
                (false, Err(f)) => ctx.failure(intended, f),
                (false, Ok(())) => {}
            }
        }
        Ok(_) => {
            watch.disarm();
            ctx.failure(intended, Failure::Timeout);
        }
        Err(f) => {
            let fired = watch.disarm();
            ctx.failure(intended, if fired { Failure::Timeout } else { f });
        }
    }
    watch.fd.set(-1);
}

/// A connection that can carry one HTTP/1.1 exchange at a time.
pub(crate) trait H1Conn {
    /// The socket, for the watchdog.
    fn fd(&self) -> RawFd;
    /// Sends the request and reads the whole response.
    async fn exchange(
        &mut self,
        req: Bytes,
        rbuf: &mut Vec<u8>,
        head_method: bool,
    ) -> Result<Resp, Failure>;
    /// Closes the write side politely.
    async fn close(&mut self);
}

impl H1Conn for TcpStream {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    /// The send and the receive are submitted together (one ring round trip per request, not two).
    async fn exchange(
        &mut self,
        req: Bytes,
        rbuf: &mut Vec<u8>,
        head_method: bool,
    ) -> Result<Resp, Failure> {
        let mut w: &TcpStream = self;
        let mut r: &TcpStream = self;
        let write = async move {
            let BufResult(res, _) = w.write_all(req).await;
            res.map_err(|_| Failure::Write)
        };
        let read = read_response(&mut r, rbuf, head_method);
        let (mut write, mut read) = (pin!(write), pin!(read));
        let mut wrote = false;
        poll_fn(|cx| {
            if !wrote {
                match write.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => wrote = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            match read.as_mut().poll(cx) {
                Poll::Ready(res) if wrote || res.is_err() => Poll::Ready(res),
                // A response before the request was fully sent: wait for the send to finish.
                Poll::Ready(res) => {
                    let _ = res;
                    Poll::Ready(Err(Failure::Parse))
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    async fn close(&mut self) {
        let _ = self.shutdown().await;
    }
}

impl H1Conn for Box<PollIo> {
    fn fd(&self) -> RawFd {
        self.raw_fd()
    }

    async fn exchange(
        &mut self,
        req: Bytes,
        rbuf: &mut Vec<u8>,
        head_method: bool,
    ) -> Result<Resp, Failure> {
        let BufResult(res, _) = self.write_all(req).await;
        res.map_err(|_| Failure::Write)?;
        self.flush().await.map_err(|_| Failure::Write)?;
        read_response(self, rbuf, head_method).await
    }

    async fn close(&mut self) {
        let _ = self.shutdown().await;
    }
}

async fn exchange_loop<S: H1Conn>(
    mut io: S,
    ctx: &WorkerCtx,
    watch: &Watch,
    pace: &mut Pace,
    rbuf: &mut Vec<u8>,
) -> Flow {
    rbuf.clear();
    watch.fd.set(io.fd());
    let flow = loop {
        let Some(intended) = pace.next(&ctx.window).await else {
            io.close().await;
            break Flow::Done;
        };
        watch.arm(ctx.shared.timeout);
        let res = io
            .exchange(ctx.shared.request_h1.clone(), rbuf, ctx.shared.head_method)
            .await;
        let fired = watch.disarm();
        let done = Instant::now();
        match res {
            Ok(resp) if !fired => {
                ctx.response(intended, done, resp.status, resp.bytes);
                if resp.close {
                    break Flow::Reconnect;
                }
            }
            Ok(_) => {
                ctx.failure(intended, Failure::Timeout);
                break Flow::Reconnect;
            }
            Err(f) => {
                ctx.failure(intended, if fired { Failure::Timeout } else { f });
                break Flow::Reconnect;
            }
        }
    };
    watch.fd.set(-1);
    flow
}

/// Reads one complete response (skipping 1xx interim responses). `rbuf` keeps any bytes that
/// follow it.
pub async fn read_response<S: AsyncRead>(
    io: &mut S,
    rbuf: &mut Vec<u8>,
    head_method: bool,
) -> Result<Resp, Failure> {
    let mut bytes = 0u64;
    let mut pos = 0usize;
    let (status, framing, close) = loop {
        match parse_head(&rbuf[pos..], head_method) {
            Ok(Some((len, status, framing, close))) => {
                pos += len;
                bytes += len as u64;
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                break (status, framing, close);
            }
            Ok(None) => {
                if rbuf.len() - pos >= MAX_HEAD {
                    return Err(Failure::Parse);
                }
                if pos > 0 {
                    rbuf.drain(..pos);
                    pos = 0;
                }
                if rbuf.len() == rbuf.capacity() {
                    rbuf.reserve(rbuf.len());
                }
                if fill(io, rbuf).await? == 0 {
                    return Err(Failure::Read);
                }
            }
            Err(()) => return Err(Failure::Parse),
        }
    };
    let mut close = close;
    match framing {
        Framing::None => {}
        Framing::Length(mut left) => loop {
            let take = (rbuf.len() - pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            pos += take;
            left -= take as u64;
            bytes += take as u64;
            if left == 0 {
                break;
            }
            rbuf.clear();
            pos = 0;
            if fill(io, rbuf).await? == 0 {
                return Err(Failure::Read);
            }
        },
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                let fed = dec.feed(&rbuf[pos..]).map_err(|_| Failure::Parse)?;
                pos += fed.consumed;
                bytes += fed.consumed as u64;
                if fed.done {
                    break;
                }
                rbuf.clear();
                pos = 0;
                if fill(io, rbuf).await? == 0 {
                    return Err(Failure::Read);
                }
            }
        }
        Framing::UntilClose => {
            bytes += (rbuf.len() - pos) as u64;
            loop {
                rbuf.clear();
                pos = 0;
                let n = fill(io, rbuf).await?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
            }
            close = true;
        }
    }
    if pos == rbuf.len() {
        rbuf.clear();
    } else {
        rbuf.drain(..pos);
    }
    Ok(Resp {
        status,
        bytes,
        close,
    })
}

async fn fill<S: AsyncRead>(io: &mut S, rbuf: &mut Vec<u8>) -> Result<usize, Failure> {
    let BufResult(res, b) = io.append(mem::take(rbuf)).await;
    *rbuf = b;
    res.map_err(|_: io::Error| Failure::Read)
}

/// Parses a response head: (head length, status, body framing, connection must close).
pub(crate) fn parse_head(
    buf: &[u8],
    head_method: bool,
) -> Result<Option<(usize, u16, Framing, bool)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let status = resp.code.ok_or(())?;
    let http10 = resp.version == Some(0);
    let (mut cl, mut chunked, mut close, mut keep_alive) = (None, false, false, false);
    for h in resp.headers.iter() {
        let n = h.name.as_bytes();
        if n.eq_ignore_ascii_case(b"content-length") {
            cl = Some(parse_content_length(h.value).ok_or(())?);
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        } else if n.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, "close");
            keep_alive |= has_token(h.value, "keep-alive");
        }
    }
    let framing = if head_method || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = cl {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        len,
        status,
        framing,
        close || (http10 && !keep_alive),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let (len, st, f, close) =
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
                .unwrap()
                .unwrap();
        assert_eq!((len, st, close), (38, 200, false));
        assert!(matches!(f, Framing::Length(5)));
        let (_, _, f, _) = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(f, Framing::None));
        let (_, _, f, close) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(f, Framing::UntilClose) && close);
        let (_, _, f, _) = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(f, Framing::Chunked));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
    }
}
