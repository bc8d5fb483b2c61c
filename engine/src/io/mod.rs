//! The one owned-buffer I/O seam: every socket read and write in the engine goes through here.
//!
//! Completion-based I/O hands the buffer to the kernel, which fills it after the call returns, so
//! buffers are owned, never borrowed. Reads come from the worker's provided-buffer pool: the
//! kernel picks a pool buffer only when data arrives, so a connection waiting for its next request
//! owns no read buffer at all (the idle-memory goal). When the pool is empty the read falls back to
//! a one-off owned buffer instead of failing (`ErrorKind::ResourceBusy` is never an error here).
//!
//! Writes take owned buffers (`Bytes`, `BytesMut`, a pool buffer being forwarded as is, or a
//! tuple/Vec of them for vectored writes) and return only once every byte is written.
//!
//! Codecs, the connection manager and the router see [`Conn`] and [`ReadBuf`] only; they never
//! name the runtime. Hot path: [`Conn::read`] and [`Conn::write_all`] once per message each.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    ops::Deref,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    time::Duration,
};

use compio::{
    buf::{BufResult, IoBuf, IoVectoredBuf},
    driver::BufferRef,
    io::{AsyncReadManaged, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

mod bulk;
pub use bulk::{BulkBufs, BulkLease, BULK_LEN, BULK_MAX};

/// Size of one provided read buffer. A read never returns more than this.
pub const READ_BUF_LEN: usize = 16 * 1024;

/// Bytes handed back by a read: a provided buffer lent by the worker's pool (returned to the pool
/// on drop), or an owned buffer when the pool was empty.
pub enum ReadBuf {
    Pooled(BufferRef),
    Owned(Vec<u8>),
}

impl Deref for ReadBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Pooled(b) => b,
            ReadBuf::Owned(v) => v,
        }
    }
}

impl IoBuf for ReadBuf {
    #[inline]
    fn as_init(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadBuf({} bytes)", self.len())
    }
}

/// A TCP connection behind the seam. `&Conn` is enough to read and write, so a tunnel can run
/// both directions of one connection at once.
pub struct Conn {
    stream: TcpStream,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn(fd {})", self.stream.as_raw_fd())
    }
}

/// A read posted ahead of time on an `Rc<Conn>` (see [`Conn::read_posted`]).
pub type PostedRead = std::pin::Pin<Box<dyn Future<Output = io::Result<Option<ReadBuf>>>>>;

impl Conn {
    /// Wrap an accepted or connected stream; sets TCP_NODELAY.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Conn { stream }
    }

    /// Connect to `addr` within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        match compio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(Conn::new(s)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Read what has arrived. `Ok(None)` is end of stream.
    pub async fn read(&self) -> io::Result<Option<ReadBuf>> {
        let mut s = &self.stream;
        match s.read_managed(0).await {
            Ok(Some(b)) if b.is_empty() => Ok(None),
            Ok(Some(b)) => Ok(Some(ReadBuf::Pooled(b))),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => self.read_owned().await,
            Err(e) => Err(e),
        }
    }

    /// Fallback read into a freshly allocated buffer (the pool was empty).
    async fn read_owned(&self) -> io::Result<Option<ReadBuf>> {
        use compio::io::AsyncRead;
        let mut s = &self.stream;
        let BufResult(res, buf) = s.read(Vec::with_capacity(READ_BUF_LEN)).await;
        match res? {
            0 => Ok(None),
            _ => Ok(Some(ReadBuf::Owned(buf))),
        }
    }

    /// Post a read now and hand back its future, which owns a reference to the connection. Used
    /// for pooled upstream connections: the read for the next response waits on the idle
    /// connection (holding no buffer), so an upstream close while idle is seen at checkout, and
    /// the same read then carries the response.
    ///
    /// The future is polled once here: an operation is only submitted on its first poll, and a
    /// read that was never submitted cannot complete when the upstream closes, so without this
    /// poll a checkout could not tell a dead connection from a live one.
    pub fn read_posted(self: &Rc<Self>) -> PostedRead {
        let me = Rc::clone(self);
        let mut read: PostedRead = Box::pin(async move { me.read().await });
        match poll_now(&mut read) {
            None => read,
            // Completed at once (bytes or EOF already there): a finished future must not be
            // polled again, so hand the result over as a ready one.
            Some(r) => Box::pin(std::future::ready(r)),
        }
    }

    /// Write every byte of `buf`.
    pub async fn write_all<T: IoBuf>(&self, buf: T) -> io::Result<()> {
        let mut s = &self.stream;
        let BufResult(res, _) = s.write_all(buf).await;
        res
    }

    /// [`Conn::write_all`] of a buffer from the worker's [`WriteBufs`], which gets it back
    /// (emptied) once the kernel is done with it: a head written this way costs no allocation.
    pub async fn write_pooled(&self, buf: bytes::BytesMut, bufs: &WriteBufs) -> io::Result<()> {
        let mut s = &self.stream;
        let BufResult(res, buf) = s.write_all(buf).await;
        bufs.give(buf);
        res
    }

    /// Write every byte of several buffers, in one submission where the kernel takes them all.
    pub async fn write_vectored_all<T: IoVectoredBuf>(&self, bufs: T) -> io::Result<()> {
        let mut s = &self.stream;
        let BufResult(res, _) = s.write_vectored_all(bufs).await;
        res
    }

    /// Half-close: no more bytes will be written.
    pub async fn shutdown_write(&self) -> io::Result<()> {
        let mut s = &self.stream;
        s.shutdown().await
    }

    /// Close abruptly or orderly: drops the socket (the runtime closes it).
    pub fn close(self) {}
}

/// A worker's spare write buffers (response heads, local replies): taken for one write and
/// given back when it completes, so the request path does not allocate one per message. Bounded
/// in count and in the size of a buffer kept.
#[derive(Debug, Default)]
pub struct WriteBufs {
    spare: std::cell::RefCell<Vec<bytes::BytesMut>>,
}

/// Most spare write buffers a worker keeps.
const MAX_SPARE_BUFS: usize = 256;
/// Largest write buffer kept for reuse (a bigger one, for a large inline body, is freed).
const MAX_KEPT_BUF: usize = 64 * 1024;

impl WriteBufs {
    /// An empty buffer with room for at least `cap` bytes.
    pub fn take(&self, cap: usize) -> bytes::BytesMut {
        match self.spare.borrow_mut().pop() {
            Some(mut b) => {
                b.reserve(cap);
                b
            }
            None => bytes::BytesMut::with_capacity(cap.max(512)),
        }
    }

    /// Give a buffer back (its bytes are dropped; its room kept).
    pub fn give(&self, mut b: bytes::BytesMut) {
        b.clear();
        let mut spare = self.spare.borrow_mut();
        if b.capacity() <= MAX_KEPT_BUF && spare.len() < MAX_SPARE_BUFS {
            spare.push(b);
        }
    }
}

/// Poll a posted read once without waiting: `Some(result)` if it already completed.
pub fn poll_now(fut: &mut PostedRead) -> Option<io::Result<Option<ReadBuf>>> {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// One part of a vectored write: owned bytes, or (part of) a read buffer forwarded without a copy.
pub enum Piece {
    Bytes(bytes::Bytes),
    Read(compio::buf::Slice<ReadBuf>),
}

impl IoBuf for Piece {
    #[inline]
    fn as_init(&self) -> &[u8] {
        match self {
            Piece::Bytes(b) => b,
            Piece::Read(s) => s.as_init(),
        }
    }
}

impl Piece {
    /// A whole read buffer.
    pub fn read(buf: ReadBuf) -> Piece {
        Piece::Read(buf.slice(..))
    }
    /// Part of a read buffer.
    pub fn read_range(buf: ReadBuf, range: std::ops::Range<usize>) -> Piece {
        Piece::Read(buf.slice(range))
    }
    pub fn len(&self) -> usize {
        self.as_init().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
