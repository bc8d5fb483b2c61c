//! The one bridge between the engine's owned-buffer I/O seam ([`Conn`]) and the poll-style I/O
//! the `h2` crate drives (tokio's `AsyncRead`/`AsyncWrite` traits; no tokio runtime), for HTTP/2
//! from clients (`http::h2`) and to upstreams (`upstream::h2`).
//!
//! Reads: one read of the seam in flight at a time (the connection's multishot receive, a pool
//! buffer per arrival); `poll_read` copies from that buffer into `h2`'s read buffer and gives
//! the pool buffer back as soon as it is consumed. Writes: `poll_write` appends to one outgoing
//! buffer and returns at once (`h2` writes a frame header and its payload separately, so many
//! small writes become one); `poll_flush` hands the whole buffer to the seam as one owned write
//! and waits for it. While a write is in flight, new frames gather in a second buffer, up to
//! [`HIGH_WATER`]; past it `poll_write` waits, which is how a slow reader pushes back on `h2`.
//!
//! Copies: one on each side of `h2` (pool buffer → `h2`'s read buffer; `h2`'s frames and the
//! body pieces handed to it → the outgoing buffer). The boxed write future is the one allocation
//! per flush.

use std::{
    future::Future,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use bytes::{Buf, BytesMut};

use super::{Conn, PostedRead, ReadBuf};

/// Bytes gathered while a write is in flight before `poll_write` waits for it.
pub const HIGH_WATER: usize = 256 * 1024;

type WriteFut = Pin<Box<dyn Future<Output = (io::Result<()>, BytesMut)>>>;
type CloseFut = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A connection as `h2` sees it.
pub struct PollIo {
    conn: Rc<Conn>,
    /// Bytes read before the codec was chosen (the preface), served first.
    first: BytesMut,
    read: Option<PostedRead>,
    /// The last read's buffer and how much of it `h2` has taken.
    got: Option<(ReadBuf, usize)>,
    out: BytesMut,
    writing: Option<WriteFut>,
    /// The buffer of the last finished write, kept for the next.
    spare: BytesMut,
    closing: Option<CloseFut>,
}

impl PollIo {
    pub fn new(conn: Rc<Conn>, first: BytesMut) -> PollIo {
        PollIo {
            conn,
            first,
            read: None,
            got: None,
            out: BytesMut::new(),
            writing: None,
            spare: BytesMut::new(),
            closing: None,
        }
    }

    /// Drive the write in flight. `Ready(Ok)`: none is in flight any more.
    fn poll_writing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(w) = self.writing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (res, mut buf) = std::task::ready!(w.as_mut().poll(cx));
        self.writing = None;
        buf.clear();
        self.spare = buf;
        Poll::Ready(res)
    }

    /// Hand what has gathered to the seam as one write.
    fn start_write(&mut self) {
        let next = std::mem::take(&mut self.spare);
        let buf = std::mem::replace(&mut self.out, next);
        let conn = Rc::clone(&self.conn);
        self.writing = Some(Box::pin(async move { conn.write_all_keep(buf).await }));
    }
}

impl tokio::io::AsyncRead for PollIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.first.is_empty() {
            let n = this.first.len().min(buf.remaining());
            buf.put_slice(&this.first[..n]);
            this.first.advance(n);
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some((b, at)) = this.got.as_mut() {
                let n = (b.len() - *at).min(buf.remaining());
                buf.put_slice(&b[*at..*at + n]);
                *at += n;
                if *at == b.len() {
                    // Consumed: the pool buffer goes back now.
                    this.got = None;
                }
                return Poll::Ready(Ok(()));
            }
            let conn = &this.conn;
            let read = this.read.get_or_insert_with(|| conn.read_rc());
            let r = std::task::ready!(Pin::new(read).poll(cx));
            this.read = None;
            match r {
                Ok(Some(b)) if b.is_empty() => {}
                Ok(Some(b)) => this.got = Some((b, 0)),
                // End of stream: nothing filled.
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for PollIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.writing.is_some() {
            if let Poll::Ready(r) = this.poll_writing(cx) {
                r?;
            }
        }
        if this.out.len() >= HIGH_WATER {
            if this.writing.is_none() {
                this.start_write();
            }
            std::task::ready!(this.poll_writing(cx))?;
        }
        this.out.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            std::task::ready!(this.poll_writing(cx))?;
            if this.out.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.start_write();
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        let this = self.get_mut();
        let conn = &this.conn;
        let close = this.closing.get_or_insert_with(|| {
            let conn = Rc::clone(conn);
            Box::pin(async move { conn.shutdown_write().await })
        });
        close.as_mut().poll(cx)
    }
}
