//! The poll-style socket seam: one type, [`PollIo`], that turns compio's completion-based,
//! owned-buffer TCP stream into poll-style reads and writes: the ones the load generator's HTTP/2
//! client calls directly ([`PollIo::poll_read_slice`], [`PollIo::poll_write_slice`]), and the
//! traits the origin's `h2` wants (tokio's `AsyncRead`/`AsyncWrite`, the traits only: no tokio
//! runtime runs). It carries TLS (rustls) for both the load generator and the origin.
//!
//! Data flow: reads land in one owned buffer (`rbuf`, 16 KiB) filled by a compio receive that
//! owns it while in flight; plaintext is copied out of it (or, with TLS, fed to rustls and
//! read back decrypted). Writes are staged in `wstage` (ciphertext with TLS) and handed whole to
//! a compio `write_all` on flush, while a second buffer collects the next batch, so h2's many
//! small frame writes become one send per flush. Each in-flight operation is one boxed future
//! (the cost of driving completion I/O from poll code); buffers are reused, never per request.
//!
//! The plain HTTP/1.1 hot paths do not come through here: they drive `compio::net::TcpStream`
//! directly. This type also implements compio's own `AsyncRead`/`AsyncWrite`, so HTTP/1.1 code
//! written against those traits runs over TLS unchanged.

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use compio::buf::{BufResult, IoBuf, IoBufMut};
use compio::io::{AsyncRead as _, AsyncWriteExt};
use compio::net::TcpStream;

type ReadOp = Pin<Box<dyn Future<Output = BufResult<usize, Vec<u8>>>>>;
type WriteOp = Pin<Box<dyn Future<Output = BufResult<(), Vec<u8>>>>>;

/// Size of the receive buffer.
const READ_BUF: usize = 16 * 1024;
/// Staged bytes above which a writer waits for the socket (backpressure).
const WRITE_HIGH: usize = 256 * 1024;

/// A TCP stream (optionally TLS) with poll-style reads and writes over owned buffers.
pub struct PollIo {
    sock: TcpStream,
    tls: Option<rustls::Connection>,
    rbuf: Vec<u8>,
    rpos: usize,
    read_op: Option<ReadOp>,
    eof: bool,
    eof_fed: bool,
    wstage: Vec<u8>,
    wspare: Vec<u8>,
    write_op: Option<WriteOp>,
    write_err: Option<io::Error>,
}

impl PollIo {
    /// Plain TCP.
    pub fn plain(sock: TcpStream) -> Self {
        Self::with_prefix(sock, Vec::new(), None)
    }

    /// TLS over `sock`; call [`PollIo::handshake`] before use.
    pub fn tls(sock: TcpStream, conn: rustls::Connection) -> Self {
        Self::with_prefix(sock, Vec::new(), Some(conn))
    }

    /// Like [`PollIo::plain`]/[`PollIo::tls`], with bytes already read from the socket (they are
    /// delivered first).
    pub fn with_prefix(sock: TcpStream, prefix: Vec<u8>, tls: Option<rustls::Connection>) -> Self {
        Self {
            sock,
            tls,
            rbuf: prefix,
            rpos: 0,
            read_op: None,
            eof: false,
            eof_fed: false,
            wstage: Vec::new(),
            wspare: Vec::new(),
            write_op: None,
            write_err: None,
        }
    }

    /// The socket's descriptor.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    /// The negotiated ALPN protocol, if TLS negotiated one.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tls.as_ref().and_then(|t| t.alpn_protocol())
    }

    /// Completes the TLS handshake (no-op for plain TCP).
    pub async fn handshake(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let op = match &mut self.read_op {
            Some(op) => op,
            None => {
                let mut buf = mem::take(&mut self.rbuf);
                self.rpos = 0;
                buf.clear();
                buf.reserve(READ_BUF);
                let mut s = self.sock.clone();
                self.read_op
                    .insert(Box::pin(async move { s.read(buf).await }))
            }
        };
        let BufResult(res, buf) = ready!(op.as_mut().poll(cx));
        self.read_op = None;
        self.rbuf = buf;
        self.rpos = 0;
        if let Ok(0) = res {
            self.eof = true;
        }
        Poll::Ready(res)
    }

    /// Collects a finished write; with `kick`, starts writing staged bytes. Ready(Ok) means no
    /// write is in flight (and, with `kick`, nothing is staged).
    fn poll_writes(&mut self, cx: &mut Context<'_>, kick: bool) -> Poll<io::Result<()>> {
        loop {
            if let Some(op) = &mut self.write_op {
                let BufResult(res, mut buf) = ready!(op.as_mut().poll(cx));
                self.write_op = None;
                buf.clear();
                if buf.capacity() > self.wspare.capacity() {
                    self.wspare = buf;
                }
                res?;
            }
            if self.wstage.is_empty() || !kick {
                return Poll::Ready(Ok(()));
            }
            let buf = mem::replace(&mut self.wstage, mem::take(&mut self.wspare));
            let mut s = self.sock.clone();
            self.write_op = Some(Box::pin(async move { s.write_all(buf).await }));
        }
    }

    /// Starts or advances writes without waiting; a failure is kept for the next writer.
    fn progress_writes(&mut self, cx: &mut Context<'_>) {
        if let Poll::Ready(Err(e)) = self.poll_writes(cx, true) {
            self.write_err.get_or_insert(e);
        }
    }

    fn drain_tls(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                tls.write_tls(&mut self.wstage)?;
            }
        }
        Ok(())
    }

    /// Feeds buffered ciphertext to rustls. Returns false when there was none to feed.
    fn feed_tls(&mut self) -> io::Result<bool> {
        let Some(tls) = &mut self.tls else {
            return Ok(false);
        };
        if self.rpos < self.rbuf.len() {
            let mut src = &self.rbuf[self.rpos..];
            let n = tls.read_tls(&mut src)?;
            self.rpos += n;
        } else if self.eof && !self.eof_fed {
            self.eof_fed = true;
            let _ = tls.read_tls(&mut &[][..]);
        } else {
            return Ok(false);
        }
        let res = tls.process_new_packets();
        self.drain_tls()?;
        res.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(true)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(tls) = &self.tls else {
                return Poll::Ready(Ok(()));
            };
            let handshaking = tls.is_handshaking();
            self.drain_tls()?;
            if !handshaking || !self.wstage.is_empty() || self.write_op.is_some() {
                ready!(self.poll_writes(cx, true))?;
                if !handshaking {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if self.feed_tls()? {
                continue;
            }
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                )));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Reads plaintext into `dst`; Ok(0) is end of stream.
    pub fn poll_read_slice(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.progress_writes(cx);
        if <[u8]>::is_empty(dst) {
            return Poll::Ready(Ok(0));
        }
        if self.tls.is_none() {
            if self.rpos == self.rbuf.len() {
                if self.eof {
                    return Poll::Ready(Ok(0));
                }
                if ready!(self.poll_fill(cx))? == 0 {
                    return Poll::Ready(Ok(0));
                }
            }
            let n = dst.len().min(self.rbuf.len() - self.rpos);
            dst[..n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
            self.rpos += n;
            return Poll::Ready(Ok(n));
        }
        loop {
            if let Some(tls) = &mut self.tls {
                match tls.reader().read(dst) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if self.feed_tls()? {
                self.progress_writes(cx);
                continue;
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Stages `data` for sending (encrypting it with TLS); it goes out on flush.
    pub fn poll_write_slice(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.write_err.take() {
            return Poll::Ready(Err(e));
        }
        if self.wstage.len() >= WRITE_HIGH {
            ready!(self.poll_writes(cx, true))?;
        } else if let Poll::Ready(Err(e)) = self.poll_writes(cx, false) {
            return Poll::Ready(Err(e));
        }
        match &mut self.tls {
            None => {
                self.wstage.extend_from_slice(data);
                Poll::Ready(Ok(data.len()))
            }
            Some(tls) => {
                let n = tls.writer().write(data)?;
                self.drain_tls()?;
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Sends everything staged.
    pub fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.write_err.take() {
            return Poll::Ready(Err(e));
        }
        self.drain_tls()?;
        self.poll_writes(cx, true)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
        }
        ready!(self.poll_flush_all(cx))?;
        let _ = socket2::SockRef::from(&self.sock).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for PollIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = ready!(this.poll_read_slice(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for PollIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slice(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_all(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

impl compio::io::AsyncRead for PollIo {
    async fn read<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        let res = poll_fn(|cx| self.poll_read_slice(cx, buf.ensure_init())).await;
        if let Ok(n) = res {
            // SAFETY: the first n bytes were just written (and the whole buffer is initialized).
            unsafe { buf.set_len(n) };
        }
        BufResult(res, buf)
    }
}

impl compio::io::AsyncWrite for PollIo {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let res = poll_fn(|cx| self.poll_write_slice(cx, buf.as_init())).await;
        BufResult(res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_close(cx)).await
    }
}
