//! The origin's HTTP/1.x connection: keep-alive, pipelining (responses to requests that arrive
//! together go out in one write), request bodies by Content-Length or chunked (counted and
//! discarded as they stream, so an upload of any size passes through the fixed buffer),
//! `Expect: 100-continue`, HTTP/1.0, `Connection: close`, and the WebSocket-style upgrade
//! (101, then raw echo). Malformed input gets a 400 (431 for an oversized head) and a close,
//! never a panic.
//!
//! Buffers: one read buffer (16 KiB, growing to at most 64 KiB only while a request head is
//! incomplete) and one write buffer, both owned by the connection and handed to the ring for each
//! operation. The common answer (the fixed response to an HTTP/1.1 keep-alive request) is one
//! prebuilt byte string copied into the write buffer. Large bodies bypass both: `/bytes/N` goes
//! out as whole shared blocks ([`Ctx::block`], no copy), and a request body larger than a block
//! is read into the worker's sink buffer ([`Ctx::take_sink`]) 256 KiB at a time and discarded.

use std::future::{poll_fn, Future};
use std::io;
use std::mem;
use std::pin::pin;
use std::task::Poll;

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;

use super::routes::{bodiless, route, EchoJson, Route};
use super::{ws, Ctx, BLOCK};
use crate::http1::{has_token, parse_content_length, push_hex, push_u64, reason, ChunkedDecoder};

/// Initial read buffer.
pub const READ_BUF: usize = 16 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Write buffer size at which pipelined responses are flushed early.
const WRITE_FLUSH: usize = 64 * 1024;
/// Headers parsed per request.
const MAX_HEADERS: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnHdr {
    /// HTTP/1.1 keep-alive: no header needed.
    None,
    /// HTTP/1.0 keep-alive.
    KeepAlive,
    Close,
}

/// What the connection needs to keep from a parsed head (the head's bytes are not kept).
#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    route: Route,
    body: Body,
    keep_alive: bool,
    http10: bool,
    head_method: bool,
    expect_continue: bool,
    upgrade: Option<Option<[u8; 28]>>,
}

enum Parsed {
    Head(Head),
    Partial,
    Bad(u16),
}

fn parse(buf: &[u8], echo: &mut Vec<u8>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431),
        Err(_) => return Parsed::Bad(400),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Bad(400);
    };
    let http10 = version == 0;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let (mut close, mut keep_alive_tok, mut upgrade_tok) = (false, false, false);
    let mut ws_upgrade = false;
    let mut ws_key: Option<&[u8]> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let n = h.name.as_bytes();
        if n.eq_ignore_ascii_case(b"content-length") {
            match (parse_content_length(h.value), content_length) {
                (Some(v), None) => content_length = Some(v),
                (Some(v), Some(prev)) if v == prev => {}
                _ => return Parsed::Bad(400),
            }
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            chunked = h
                .value
                .trim_ascii()
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, "close");
            keep_alive_tok |= has_token(h.value, "keep-alive");
            upgrade_tok |= has_token(h.value, "upgrade");
        } else if n.eq_ignore_ascii_case(b"upgrade") {
            ws_upgrade |= has_token(h.value, "websocket");
        } else if n.eq_ignore_ascii_case(b"sec-websocket-key") {
            ws_key = Some(h.value);
        } else if n.eq_ignore_ascii_case(b"expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // A transfer coding other than chunked last cannot be framed: refuse (RFC 9112 6.3).
    if te && !chunked {
        return Parsed::Bad(400);
    }
    let body = if chunked {
        Body::Chunked
    } else {
        match content_length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    let route = route(target.as_bytes());
    if route == Route::Echo {
        let hv = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
        EchoJson::start(
            echo,
            method.as_bytes(),
            target.as_bytes(),
            if http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            hv,
        );
    }
    let _ = upgrade_tok; // Some clients omit "Connection: Upgrade"; the Upgrade header decides.
    Parsed::Head(Head {
        len,
        route,
        body,
        keep_alive: if http10 {
            keep_alive_tok && !close
        } else {
            !close
        },
        http10,
        head_method: method == "HEAD",
        expect_continue: expect_continue && !http10 && body != Body::None,
        upgrade: ws_upgrade.then(|| ws_key.map(ws::accept_key)),
    })
}

/// Serves one HTTP/1.x connection until the peer closes or an error. `rbuf` may hold bytes
/// already read.
pub async fn serve<S: OriginIo>(mut io: S, mut rbuf: Vec<u8>, ctx: &Ctx) -> io::Result<()> {
    if rbuf.capacity() < READ_BUF {
        rbuf.reserve(READ_BUF - rbuf.len());
    }
    let mut wbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut echo: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    loop {
        loop {
            let head = match parse(&rbuf[pos..], &mut echo) {
                Parsed::Partial => break,
                Parsed::Bad(status) => {
                    push_head(
                        &mut wbuf,
                        status,
                        Some(0),
                        "text/plain",
                        ConnHdr::Close,
                        false,
                    );
                    flush(&mut io, &mut wbuf).await?;
                    let _ = io.shutdown().await;
                    return Ok(());
                }
                Parsed::Head(h) => h,
            };
            pos += head.len;
            ctx.count();
            if head.expect_continue && !body_in_buffer(head.body, &rbuf[pos..]) {
                wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                flush(&mut io, &mut wbuf).await?;
            }
            let body_len = if head.body == Body::None {
                0
            } else {
                match read_body(&mut io, &mut rbuf, &mut pos, head.body, ctx).await? {
                    Some(n) => n,
                    None => return Ok(()),
                }
            };
            let conn = match (head.keep_alive, head.http10) {
                (false, _) => ConnHdr::Close,
                (true, true) => ConnHdr::KeepAlive,
                (true, false) => ConnHdr::None,
            };
            if let Some(accept) = head.upgrade {
                wbuf.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n");
                if let Some(a) = accept {
                    wbuf.extend_from_slice(b"sec-websocket-accept: ");
                    wbuf.extend_from_slice(&a);
                    wbuf.extend_from_slice(b"\r\n");
                }
                wbuf.extend_from_slice(b"\r\n");
                wbuf.extend_from_slice(&rbuf[pos..]);
                flush(&mut io, &mut wbuf).await?;
                return echo_forever(io, rbuf).await;
            }
            respond(&mut io, &mut wbuf, &mut echo, &head, conn, body_len, ctx).await?;
            if !head.keep_alive {
                flush(&mut io, &mut wbuf).await?;
                let _ = io.shutdown().await;
                return Ok(());
            }
            if wbuf.len() >= WRITE_FLUSH {
                flush(&mut io, &mut wbuf).await?;
            }
        }
        if pos > 0 {
            rbuf.drain(..pos);
            pos = 0;
        }
        if rbuf.len() == rbuf.capacity() {
            if rbuf.len() >= MAX_HEAD {
                push_head(&mut wbuf, 431, Some(0), "text/plain", ConnHdr::Close, false);
                flush(&mut io, &mut wbuf).await?;
                return Ok(());
            }
            rbuf.reserve(rbuf.len());
        }
        // The answers go out and the next read is posted in the same ring submission.
        let (wres, w, rres, r) = io.write_and_read(mem::take(&mut wbuf), rbuf).await;
        wbuf = w;
        rbuf = r;
        wres?;
        if rres? == 0 {
            return Ok(());
        }
    }
}

/// A connection the origin serves: compio's owned-buffer reads and writes, plus a combined
/// "send these answers and read what comes next" step.
// Futures here stay on their worker thread (like compio's own I/O traits): no Send bound wanted.
#[allow(async_fn_in_trait)]
pub trait OriginIo: AsyncRead + AsyncWrite + Sized {
    /// Writes all of `wbuf` (returned cleared) and appends what arrives next to `rbuf`.
    async fn write_and_read(
        &mut self,
        wbuf: Vec<u8>,
        rbuf: Vec<u8>,
    ) -> (io::Result<()>, Vec<u8>, io::Result<usize>, Vec<u8>) {
        let mut wbuf = wbuf;
        let wres = flush(self, &mut wbuf).await;
        if wres.is_err() {
            return (wres, wbuf, Ok(0), rbuf);
        }
        let BufResult(rres, rbuf) = self.append(rbuf).await;
        (Ok(()), wbuf, rres, rbuf)
    }
}

impl OriginIo for crate::io::PollIo {}

impl OriginIo for TcpStream {
    /// Both operations are submitted together (one ring round trip instead of two).
    async fn write_and_read(
        &mut self,
        wbuf: Vec<u8>,
        rbuf: Vec<u8>,
    ) -> (io::Result<()>, Vec<u8>, io::Result<usize>, Vec<u8>) {
        let mut r: &TcpStream = self;
        if wbuf.is_empty() {
            let BufResult(rres, rbuf) = r.append(rbuf).await;
            return (Ok(()), wbuf, rres, rbuf);
        }
        let mut w: &TcpStream = self;
        let write = async move {
            let BufResult(res, mut b) = w.write_all(wbuf).await;
            b.clear();
            (res, b)
        };
        let read = r.append(rbuf);
        let (mut write, mut read) = (pin!(write), pin!(read));
        let (mut wout, mut rout) = (None, None);
        poll_fn(|cx| {
            if wout.is_none() {
                if let Poll::Ready(v) = write.as_mut().poll(cx) {
                    wout = Some(v);
                }
            }
            if rout.is_none() {
                if let Poll::Ready(v) = read.as_mut().poll(cx) {
                    rout = Some(v);
                }
            }
            match (wout.take(), rout.take()) {
                (Some((wres, wbuf)), Some(BufResult(rres, rbuf))) => {
                    Poll::Ready((wres, wbuf, rres, rbuf))
                }
                (w, r) => {
                    wout = w;
                    rout = r;
                    Poll::Pending
                }
            }
        })
        .await
    }
}

fn body_in_buffer(body: Body, avail: &[u8]) -> bool {
    match body {
        Body::None => true,
        Body::Length(n) => avail.len() as u64 >= n,
        Body::Chunked => !avail.is_empty(),
    }
}

/// Reads and discards the request body, returning its length (None: the peer closed).
async fn read_body<S: AsyncRead>(
    io: &mut S,
    rbuf: &mut Vec<u8>,
    pos: &mut usize,
    body: Body,
    ctx: &Ctx,
) -> io::Result<Option<u64>> {
    match body {
        Body::None => Ok(Some(0)),
        Body::Length(n) => {
            let have = (rbuf.len() - *pos) as u64;
            if have >= n {
                *pos += n as usize;
                return Ok(Some(n));
            }
            *pos = rbuf.len();
            let mut left = n - have;
            if left >= BLOCK as u64 {
                // Whole sink-fulls: a read never returns more than the sink holds, which is no
                // more than the body still owes, so nothing after the body lands in the sink.
                let mut sink = ctx.take_sink();
                let res = loop {
                    if left < sink.capacity() as u64 {
                        break Ok(true);
                    }
                    sink.clear();
                    let BufResult(res, b) = io.append(sink).await;
                    sink = b;
                    match res {
                        Ok(0) => break Ok(false),
                        Ok(got) => left -= got as u64,
                        Err(e) => break Err(e),
                    }
                };
                ctx.put_sink(sink);
                if !res? {
                    return Ok(None);
                }
            }
            while left > 0 {
                if !refill(io, rbuf, pos).await? {
                    return Ok(None);
                }
                let take = (rbuf.len() as u64).min(left);
                *pos = take as usize;
                left -= take;
            }
            Ok(Some(n))
        }
        Body::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let bad =
                |e| io::Error::new(io::ErrorKind::InvalidData, format!("chunked body: {e:?}"));
            let fed = dec.feed(&rbuf[*pos..]).map_err(bad)?;
            *pos += fed.consumed;
            let mut total = fed.payload as u64;
            if fed.done {
                return Ok(Some(total));
            }
            // The rest goes through the sink; what follows the body is handed back to `rbuf`.
            let mut sink = ctx.take_sink();
            let res = loop {
                sink.clear();
                let BufResult(res, b) = io.append(sink).await;
                sink = b;
                match res {
                    Ok(0) => break Ok(None),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
                match dec.feed(&sink) {
                    Ok(fed) => {
                        total += fed.payload as u64;
                        if fed.done {
                            rbuf.clear();
                            rbuf.extend_from_slice(&sink[fed.consumed..]);
                            *pos = 0;
                            break Ok(Some(total));
                        }
                    }
                    Err(e) => break Err(bad(e)),
                }
            };
            ctx.put_sink(sink);
            res
        }
    }
}

/// Replaces the (fully consumed) buffer's content with fresh bytes. False at end of stream.
async fn refill<S: AsyncRead>(io: &mut S, rbuf: &mut Vec<u8>, pos: &mut usize) -> io::Result<bool> {
    rbuf.clear();
    *pos = 0;
    let BufResult(res, b) = io.append(mem::take(rbuf)).await;
    *rbuf = b;
    Ok(res? > 0)
}

async fn flush<S: AsyncWrite>(io: &mut S, wbuf: &mut Vec<u8>) -> io::Result<()> {
    if wbuf.is_empty() {
        return Ok(());
    }
    let BufResult(res, mut b) = io.write_all(mem::take(wbuf)).await;
    b.clear();
    *wbuf = b;
    res?;
    io.flush().await
}

fn push_head(
    w: &mut Vec<u8>,
    status: u16,
    content_length: Option<u64>,
    ctype: &str,
    conn: ConnHdr,
    http10: bool,
) {
    w.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    push_u64(w, u64::from(status));
    w.push(b' ');
    w.extend_from_slice(reason(status).as_bytes());
    w.extend_from_slice(b"\r\n");
    match content_length {
        Some(n) if !bodiless(status) => {
            w.extend_from_slice(b"content-length: ");
            push_u64(w, n);
            w.extend_from_slice(b"\r\n");
        }
        Some(_) => {}
        None => w.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !bodiless(status) {
        w.extend_from_slice(b"content-type: ");
        w.extend_from_slice(ctype.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    match conn {
        ConnHdr::None => {}
        ConnHdr::KeepAlive => w.extend_from_slice(b"connection: keep-alive\r\n"),
        ConnHdr::Close => w.extend_from_slice(b"connection: close\r\n"),
    }
    w.extend_from_slice(b"\r\n");
}

#[allow(clippy::too_many_arguments)]
async fn respond<S: AsyncWrite>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    echo: &mut Vec<u8>,
    head: &Head,
    conn: ConnHdr,
    body_len: u64,
    ctx: &Ctx,
) -> io::Result<()> {
    let wait = match head.route {
        Route::Delay(d) => Some(d),
        Route::Stall(_) => None,
        _ => ctx.delay,
    };
    if let Some(d) = wait.filter(|d| !d.is_zero()) {
        // Answers to earlier pipelined requests must not wait for this one.
        flush(io, wbuf).await?;
        compio::time::sleep(d).await;
    }
    match head.route {
        Route::Stall(d) => {
            flush(io, wbuf).await?;
            // Deliberately blocks the worker thread: every connection on it stalls.
            std::thread::sleep(d);
            push_fixed(wbuf, ctx, head, conn);
        }
        Route::Default | Route::Delay(_) => {
            if conn == ConnHdr::None && !head.head_method && ctx.fixed.len() > WRITE_FLUSH {
                flush(io, wbuf).await?;
                let BufResult(res, _) = io.write_all(ctx.fixed.clone()).await;
                res?;
            } else {
                push_fixed(wbuf, ctx, head, conn);
            }
        }
        Route::Status(s) => {
            let body = reason(s).as_bytes();
            push_head(
                wbuf,
                s,
                Some(body.len() as u64 + 1),
                "text/plain",
                conn,
                false,
            );
            if !head.head_method && !bodiless(s) {
                wbuf.extend_from_slice(body);
                wbuf.push(b'\n');
            }
        }
        Route::Bad => {
            push_head(wbuf, 400, Some(12), "text/plain", conn, false);
            if !head.head_method {
                wbuf.extend_from_slice(b"bad request\n");
            }
        }
        Route::Echo => {
            EchoJson::finish(echo, body_len);
            push_head(
                wbuf,
                200,
                Some(echo.len() as u64),
                "application/json",
                conn,
                false,
            );
            if !head.head_method {
                wbuf.extend_from_slice(echo);
            }
        }
        Route::Bytes { n, content_length } => {
            let chunked = !content_length && !head.http10;
            push_head(
                wbuf,
                200,
                (!chunked).then_some(n),
                "application/octet-stream",
                conn,
                false,
            );
            if !head.head_method {
                send_bytes(io, wbuf, ctx, n, chunked).await?;
            }
        }
        Route::Upload => {
            // The count goes into the (per-connection, reused) echo buffer first to size it.
            echo.clear();
            push_u64(echo, body_len);
            echo.push(b'\n');
            push_head(
                wbuf,
                200,
                Some(echo.len() as u64),
                "text/plain",
                conn,
                false,
            );
            if !head.head_method {
                wbuf.extend_from_slice(echo);
            }
        }
    }
    Ok(())
}

/// Bodies up to this size are copied into the write buffer; larger tails go out from the block.
const COPY_MAX: u64 = 16 * 1024;

/// Writes `n` body bytes of `/bytes/N` after the head already in `wbuf`: whole blocks as shared
/// `Bytes` (prebuilt with their chunk framing when chunked), a tail copied when small.
async fn send_bytes<S: AsyncWrite>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    ctx: &Ctx,
    n: u64,
    chunked: bool,
) -> io::Result<()> {
    let mut left = n;
    if left > COPY_MAX {
        flush(io, wbuf).await?;
        let whole = if chunked {
            &ctx.block_chunked
        } else {
            &ctx.block
        };
        while left >= BLOCK as u64 {
            let BufResult(res, _) = io.write_all(whole.clone()).await;
            res?;
            left -= BLOCK as u64;
        }
    }
    if left > 0 {
        if chunked {
            push_hex(wbuf, left);
            wbuf.extend_from_slice(b"\r\n");
        }
        if left <= COPY_MAX {
            wbuf.extend_from_slice(&ctx.block[..left as usize]);
        } else {
            flush(io, wbuf).await?;
            let BufResult(res, _) = io.write_all(ctx.block.slice(..left as usize)).await;
            res?;
        }
        if chunked {
            wbuf.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        wbuf.extend_from_slice(b"0\r\n\r\n");
    }
    io.flush().await
}

fn push_fixed(wbuf: &mut Vec<u8>, ctx: &Ctx, head: &Head, conn: ConnHdr) {
    if conn == ConnHdr::None && !head.head_method {
        wbuf.extend_from_slice(&ctx.fixed);
        return;
    }
    push_head(
        wbuf,
        ctx.status,
        Some(ctx.body.len() as u64),
        "text/plain",
        conn,
        false,
    );
    if !head.head_method && !bodiless(ctx.status) {
        wbuf.extend_from_slice(&ctx.body);
    }
}

/// After a 101: echo every byte back until the peer closes.
async fn echo_forever<S: AsyncRead + AsyncWrite>(mut io: S, mut buf: Vec<u8>) -> io::Result<()> {
    loop {
        buf.clear();
        let BufResult(res, b) = io.append(buf).await;
        buf = b;
        if res? == 0 {
            let _ = io.shutdown().await;
            return Ok(());
        }
        let BufResult(res, b) = io.write_all(buf).await;
        buf = b;
        res?;
        io.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> Head {
        match parse(raw, &mut Vec::new()) {
            Parsed::Head(h) => h,
            Parsed::Partial => panic!("partial"),
            Parsed::Bad(s) => panic!("bad {s}"),
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").body,
            Body::Length(5)
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            Body::Chunked
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .body,
            Body::Chunked
        );
        assert!(matches!(
            parse(
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                &mut Vec::new()
            ),
            Parsed::Bad(400)
        ));
        assert!(matches!(
            parse(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                &mut Vec::new()
            ),
            Parsed::Bad(400)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost", &mut Vec::new()),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n", &mut Vec::new()),
            Parsed::Bad(400)
        ));
    }

    #[test]
    fn upgrade_and_expect() {
        let h = head(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        assert_eq!(h.upgrade, Some(Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
        let h = head(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
        assert!(h.expect_continue);
    }
}
