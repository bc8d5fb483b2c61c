//! The one owned-buffer I/O seam: every socket read and write in the engine goes through here.
//!
//! Completion-based I/O hands the buffer to the kernel, which fills it after the call returns, so
//! buffers are owned, never borrowed. Reads come from the worker's provided-buffer pool: the
//! kernel picks a pool buffer only when data arrives, so a connection waiting for its next request
//! owns no read buffer at all (the idle-memory goal). When the pool is empty the read falls back to
//! a one-off owned buffer instead of failing (`ErrorKind::ResourceBusy` is never an error here).
//! A connection's reads share one multishot receive ([`multi`]), re-armed only when its reader
//! has caught up, so a read costs no submission; dropping a read future loses nothing (what
//! arrives waits in the connection's queue for the next read).
//!
//! On the epoll driver (`io_driver: epoll`, or `auto` where io_uring is refused) there is no
//! multishot receive: a read is a `recv(2)` made here into a pool buffer taken for it
//! ([`Conn::recv_now`]), tried at once when data is likely and otherwise after the socket shows
//! readable in the worker's edge-triggered set ([`reactor`]), where each connection is
//! registered once when it is wrapped.
//!
//! Writes take owned buffers (`Bytes`, `BytesMut`, a pool buffer being forwarded as is, or a
//! tuple/Vec of them for vectored writes) and return only once every byte is written.
//!
//! Codecs, the connection manager and the router see [`Conn`] and [`ReadBuf`] only; they never
//! name the runtime. Hot path: [`Conn::read`] and [`Conn::write_all`] once per message each.

use std::{
    cell::Cell,
    future::Future,
    io,
    net::SocketAddr,
    ops::Deref,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use compio::{
    buf::{BufResult, IntoInner, IoBuf, IoVectoredBuf},
    driver::{
        op::{Interest, PollOnce, Recv, RecvFlags, RecvManaged, ResultTakeBuffer},
        BufferRef, Extra, PollFirst, SharedFd, ToSharedFd,
    },
    io::AsyncWriteExt,
    net::TcpStream,
    runtime::Submit,
};

pub mod accept;
mod bulk;
pub mod multi;
pub mod park;
pub mod poll;
mod reactor;
pub mod tls;
pub use bulk::{BulkBufs, BulkLease, BULK_LEN, BULK_MAX};

/// Reads use multishot receives ([`multi`]); off, every read submits its own receive. Set once
/// per process before workers start (`RINGWAY_RECV_MULTISHOT=0` turns it off, for comparison).
static MULTISHOT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turn multishot receives on or off for connections made from now on.
pub fn set_multishot(on: bool) {
    MULTISHOT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The runtimes run on the epoll driver (`io_driver`): set once per process before workers
/// start. There a receive is a readiness wait plus a `recv(2)` made by the driver in this
/// thread, and cancelling one that has not completed loses nothing, so an idle connection
/// can leave the runtime (park, hand-over) without a multishot receive to quiesce.
static EPOLL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Say whether the runtimes run on the epoll driver.
pub fn set_epoll(on: bool) {
    EPOLL.store(on, std::sync::atomic::Ordering::Relaxed);
}

#[inline]
fn epoll() -> bool {
    EPOLL.load(std::sync::atomic::Ordering::Relaxed)
}

/// The driver the process's runtimes use (chosen by `runtime::ring::choose_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    IoUring,
    Epoll,
}

impl IoDriver {
    /// As `/server_info` and the logs name it.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

/// The driver chosen for this process (io_uring until the choice is made).
pub fn driver() -> IoDriver {
    if epoll() {
        IoDriver::Epoll
    } else {
        IoDriver::IoUring
    }
}

/// Size of one provided read buffer. A read never returns more than this.
pub const READ_BUF_LEN: usize = 16 * 1024;

/// [`Conn::read`]'s future (`C` = `&Conn`), and a read posted on a shared connection
/// ([`PostedRead`], `C` = `Rc<Conn>`). Written out by hand, with no box: it is part of every
/// waiting connection's state.
pub struct Read<C> {
    conn: C,
    state: ReadState,
}

/// A read posted ahead of time on an `Rc<Conn>` (see [`Conn::read_posted`]).
pub type PostedRead = Read<Rc<Conn>>;

type RecvOp = Submit<RecvManaged<SharedFd<socket2::Socket>>, Extra>;
type FallbackOp = Submit<Recv<Vec<u8>, SharedFd<socket2::Socket>>>;
type ReadableOp = Submit<PollOnce<SharedFd<socket2::Socket>>>;

enum ReadState {
    /// From the connection's multishot receive ([`multi`]).
    Multi,
    Recv(RecvOp),
    /// The pool was empty: a one-off buffer (rare).
    Fallback(FallbackOp),
    /// epoll: a `recv(2)` to make at the next poll, into a pool buffer taken for it.
    TryRecv,
    /// epoll: waiting until the socket is readable (then [`ReadState::TryRecv`]). Holds no
    /// buffer, and cancelling it loses nothing. Through the worker's [`reactor`] when the
    /// connection is registered there, else through compio's poll operation.
    Wait,
    Readable(ReadableOp),
    /// Finished before it was first awaited (or could not be submitted); taken once.
    Ready(Option<io::Result<Option<ReadBuf>>>),
}

impl<C: Deref<Target = Conn> + Unpin> Future for Read<C> {
    type Output = io::Result<Option<ReadBuf>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every state is `Unpin` (`Submit` is): nothing here is pinned structurally.
        let this = self.get_mut();
        let conn: &Conn = &this.conn;
        let Some(t) = conn.tls.as_deref() else {
            return poll_raw(conn, &mut this.state, cx);
        };
        // TLS: plaintext decrypted earlier first, then raw reads until a record completes.
        loop {
            if let Some(r) = t.ready() {
                return Poll::Ready(r);
            }
            let raw = match std::task::ready!(poll_raw(conn, &mut this.state, cx)) {
                Ok(raw) => raw,
                Err(e) => return Poll::Ready(Err(e)),
            };
            this.state = conn.recv_state();
            match t.on_raw(raw) {
                Ok(r) => return Poll::Ready(Ok(r)),
                Err(Some(e)) => return Poll::Ready(Err(e)),
                Err(None) => {}
            }
        }
    }
}

/// The socket's bytes as they arrive (ciphertext on a TLS connection).
fn poll_raw(
    conn: &Conn,
    state: &mut ReadState,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<ReadBuf>>> {
    {
        match state {
            ReadState::Multi => {
                let Some(sh) = conn.multi.as_ref() else {
                    *state = conn.recv_one();
                    return poll_raw(conn, state, cx);
                };
                match sh.poll(&conn.stream, cx) {
                    Ok(multi::Got::Data(b)) => Poll::Ready(Ok(Some(ReadBuf::Pooled(b)))),
                    Ok(multi::Got::Pending) => Poll::Pending,
                    Ok(multi::Got::End(multi::End::Eof)) => Poll::Ready(Ok(None)),
                    Ok(multi::Got::End(multi::End::NoBuffers)) => {
                        multi::count_no_buffer();
                        *state = conn.recv_fallback();
                        poll_raw(conn, state, cx)
                    }
                    Ok(multi::Got::End(multi::End::Error(code))) => {
                        Poll::Ready(Err(io::Error::from_raw_os_error(code)))
                    }
                    // (`poll` re-arms after a cancellation itself: `Cancelled` never comes
                    // out; it is named for the match only.)
                    Ok(multi::Got::End(multi::End::Cancelled)) | Ok(multi::Got::OneShot) => {
                        *state = conn.recv_one();
                        poll_raw(conn, state, cx)
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            ReadState::Recv(op) => {
                let (BufResult(res, op), extra) = std::task::ready!(Pin::new(op).poll(cx));
                if res.is_ok() {
                    conn.recv_drained
                        .set(!extra.sock_nonempty().unwrap_or(true));
                }
                // SAFETY: the length is the kernel's count of bytes it put into the buffer.
                match unsafe { BufResult(res, op).take_buffer() } {
                    Ok(Some(b)) if b.is_empty() => Poll::Ready(Ok(None)),
                    Ok(Some(b)) => Poll::Ready(Ok(Some(ReadBuf::Pooled(b)))),
                    Ok(None) => Poll::Ready(Ok(None)),
                    Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                        multi::count_no_buffer();
                        *state = conn.recv_fallback();
                        poll_raw(conn, state, cx)
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            ReadState::Fallback(op) => {
                let BufResult(res, op) = std::task::ready!(Pin::new(op).poll(cx));
                Poll::Ready(match res {
                    Ok(0) => Ok(None),
                    Ok(n) => {
                        let mut buf = op.into_inner();
                        // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
                        unsafe { buf.set_len(n) };
                        Ok(Some(ReadBuf::Owned(buf)))
                    }
                    Err(e) => Err(e),
                })
            }
            ReadState::TryRecv => match conn.recv_now() {
                Ok(Some(r)) => Poll::Ready(Ok(r)),
                Ok(None) => {
                    *state = conn.wait_readable();
                    poll_raw(conn, state, cx)
                }
                Err(e) => Poll::Ready(Err(e)),
            },
            ReadState::Wait => match conn.ready {
                Some(t) => {
                    if let Err(e) = std::task::ready!(reactor::poll_ready(t, cx)) {
                        return Poll::Ready(Err(e));
                    }
                    *state = ReadState::TryRecv;
                    poll_raw(conn, state, cx)
                }
                None => {
                    *state = conn.wait_readable();
                    poll_raw(conn, state, cx)
                }
            },
            ReadState::Readable(op) => {
                let BufResult(res, _) = std::task::ready!(Pin::new(op).poll(cx));
                if let Err(e) = res {
                    return Poll::Ready(Err(e));
                }
                *state = ReadState::TryRecv;
                poll_raw(conn, state, cx)
            }
            ReadState::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(io::Error::other("read polled after it completed"))),
            ),
        }
    }
}

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
    /// The last receive found the socket drained: the next one arms a poll first instead of
    /// trying a receive that would find nothing (`IORING_RECVSEND_POLL_FIRST`).
    recv_drained: Cell<bool>,
    /// Requests this (upstream) connection has carried, for `max_requests_per_connection`
    /// (sits in the padding beside `recv_drained`: no larger for it).
    uses: Cell<u32>,
    /// The multishot receive's state (`None`: reads are one-shot).
    multi: Option<Rc<multi::MultiShared>>,
    /// epoll: the socket's registration in the worker's edge-triggered set ([`reactor`]).
    ready: Option<reactor::Token>,
    /// A TLS session ([`tls`]): reads and writes are plaintext above it. `None` for plain TCP.
    tls: Option<Box<tls::TlsState>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(t) = self.ready.take() {
            reactor::release(t);
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn(fd {})", self.stream.as_raw_fd())
    }
}

impl Conn {
    /// Wrap an accepted or connected stream; sets TCP_NODELAY.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Conn::wrap(stream)
    }

    /// Wrap an accepted stream: no syscall, it inherited TCP_NODELAY from its listening socket
    /// (`listener::socket_for` sets it there).
    pub fn accepted(stream: TcpStream) -> Self {
        Conn::wrap(stream)
    }

    /// Wrap a stream as it is.
    fn wrap(stream: TcpStream) -> Self {
        let multi = if MULTISHOT.load(std::sync::atomic::Ordering::Relaxed) {
            compio::runtime::Runtime::try_with_current(|rt| rt.buffer_pool().ok())
                .ok()
                .flatten()
                .map(multi::MultiShared::new)
        } else {
            None
        };
        let ready = if multi.is_none() && epoll() {
            reactor::register(stream.as_raw_fd())
        } else {
            None
        };
        Conn {
            stream,
            recv_drained: Cell::new(false),
            uses: Cell::new(0),
            multi,
            ready,
            tls: None,
        }
    }

    /// Connect to `addr` within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        match compio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(Conn::new(s)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Before an idle wait: give back what only a busy connection needs (a TLS connection's
    /// ciphertext buffer). Plain connections hold nothing of the kind: one branch.
    #[inline]
    pub fn release_idle(&self) {
        if let Some(t) = &self.tls {
            t.release_idle();
        }
    }

    /// A terminated TLS connection's details (SNI, version, cipher, client certificate).
    #[inline]
    pub fn tls_details(&self) -> Option<&std::sync::Arc<tls::TlsDetails>> {
        self.tls.as_ref().and_then(|t| t.details())
    }

    /// Count one more request carried; returns how many so far.
    #[inline]
    pub fn count_use(&self) -> u32 {
        let n = self.uses.get().saturating_add(1);
        self.uses.set(n);
        n
    }

    /// Requests carried so far.
    #[inline]
    pub fn uses(&self) -> u32 {
        self.uses.get()
    }

    /// Whether TLS negotiated `proto` by ALPN (`false` on a plain connection).
    pub fn alpn_is(&self, proto: &[u8]) -> bool {
        self.tls.as_ref().is_some_and(|t| t.alpn_is(proto))
    }

    /// Whether this connection carries TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TLS connection that ended without the peer's `close_notify` (so a body delimited by
    /// its end cannot be known whole). `false` for plain TCP.
    pub fn tls_cut(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.cut())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// The address this end of the connection is bound to (`getsockname`: a syscall, so callers
    /// ask only when they need it).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Read what has arrived. `Ok(None)` is end of stream.
    ///
    /// The receive is submitted straight to the runtime (not through the stream's
    /// `read_managed`), keeping compio's poll-first hint; the future is the size of the
    /// submission and little more.
    pub fn read(&self) -> Read<&Conn> {
        Read {
            conn: self,
            state: self.recv_state(),
        }
    }

    /// How the next read starts: from the multishot receive, one-shot, or on epoll a `recv(2)`
    /// now (or a readiness wait first when the last one drained the socket).
    fn recv_state(&self) -> ReadState {
        if self.multi.is_some() {
            ReadState::Multi
        } else if epoll() {
            if self.recv_drained.get() {
                self.wait_readable()
            } else {
                ReadState::TryRecv
            }
        } else {
            self.recv_one()
        }
    }

    /// epoll: wait until the socket is readable.
    fn wait_readable(&self) -> ReadState {
        if self.ready.is_some() {
            return ReadState::Wait;
        }
        let op = PollOnce::new(self.stream.to_shared_fd(), Interest::Readable);
        ReadState::Readable(compio::runtime::Runtime::with_current(|rt| rt.submit(op)))
    }

    /// epoll: one non-blocking `recv(2)` into a pool buffer (a one-off one when the pool is
    /// empty). `Ok(None)`: nothing there yet (the buffer goes back to the pool); `Ok(Some(None))`:
    /// end of stream.
    fn recv_now(&self) -> io::Result<Option<Option<ReadBuf>>> {
        use compio::buf::{IoBufMut, SetLen};
        let pooled = compio::runtime::Runtime::with_current(|rt| {
            rt.buffer_pool().ok().and_then(|p| p.pop().ok())
        });
        let mut buf = match pooled {
            Some(b) => ReadBuf::Pooled(b),
            None => {
                multi::count_no_buffer();
                ReadBuf::Owned(Vec::with_capacity(READ_BUF_LEN))
            }
        };
        let room = match &mut buf {
            ReadBuf::Pooled(b) => b.as_uninit(),
            ReadBuf::Owned(v) => v.spare_capacity_mut(),
        };
        let cap = room.len();
        if let Some(t) = self.ready {
            reactor::clear(t);
        }
        loop {
            // SAFETY: `room` is `cap` writable bytes owned by `buf`, which outlives the call.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    room.as_mut_ptr().cast(),
                    cap,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                let n = n as usize;
                // Less than a full buffer: the socket is most likely drained, so the next
                // read waits for readiness before it tries.
                self.recv_drained.set(n < cap);
                // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
                unsafe {
                    match &mut buf {
                        ReadBuf::Pooled(b) => b.set_len(n),
                        ReadBuf::Owned(v) => v.set_len(n),
                    }
                }
                return Ok(Some(Some(buf)));
            }
            if n == 0 {
                return Ok(Some(None));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    self.recv_drained.set(true);
                    return Ok(None);
                }
                _ => return Err(e),
            }
        }
    }

    /// A one-off owned buffer for a read that found the pool empty (rare).
    fn recv_fallback(&self) -> ReadState {
        let fd = self.stream.to_shared_fd();
        let buf = Vec::with_capacity(READ_BUF_LEN);
        let op = Recv::new(fd, buf, RecvFlags::empty());
        ReadState::Fallback(compio::runtime::Runtime::with_current(|rt| rt.submit(op)))
    }

    /// Before reading past the pool ([`Conn::read_into`]): stop the multishot receive from
    /// re-arming and say whether it is quiet (nothing armed, nothing unread). While it is not,
    /// keep reading with [`Conn::read`]; [`Conn::release_multishot`] when done.
    pub fn hold_multishot(&self) -> bool {
        // A TLS connection is never quiet: reads past the seam would see ciphertext.
        if self.tls.is_some() {
            return false;
        }
        self.multi.as_ref().is_none_or(|m| m.hold())
    }

    /// Let reads arm multishot receives again (after [`Conn::hold_multishot`]).
    pub fn release_multishot(&self) {
        if let Some(m) = &self.multi {
            m.release();
        }
    }

    /// Wait for a connection's next request (between requests): on epoll, the read waits for
    /// readiness before it tries (an idle socket has nothing yet, so trying first would cost a
    /// `recv` that finds nothing); otherwise [`Conn::read`].
    pub fn read_idle(&self) -> Read<&Conn> {
        if self.multi.is_none() && epoll() {
            self.recv_drained.set(true);
        }
        self.read()
    }

    /// One receive into the worker's provided-buffer pool, ready to submit.
    fn recv_one(&self) -> ReadState {
        let op = compio::runtime::Runtime::with_current(|rt| -> io::Result<RecvOp> {
            let pool = rt.buffer_pool()?;
            let fd = self.stream.to_shared_fd();
            let mut op = RecvManaged::new(fd, &pool, 0, RecvFlags::empty())?;
            if self.recv_drained.get() {
                op.poll_first();
            }
            Ok(rt.submit(op).with_extra())
        });
        match op {
            Ok(op) => ReadState::Recv(op),
            Err(e) => ReadState::Ready(Some(Err(e))),
        }
    }

    /// Post a read now and hand back its future, which owns a reference to the connection. Used
    /// for pooled upstream connections: the read for the next response waits on the idle
    /// connection (holding no buffer), so an upstream close while idle is seen at checkout, and
    /// the same read then carries the response. No allocation: the future is a plain value.
    ///
    /// The future is polled once here: an operation is only submitted on its first poll, and a
    /// read that was never submitted cannot complete when the upstream closes, so without this
    /// poll a checkout could not tell a dead connection from a live one.
    pub fn read_posted(self: &Rc<Self>) -> PostedRead {
        let mut read = Read {
            conn: Rc::clone(self),
            state: self.recv_state(),
        };
        if let Some(r) = poll_now(&mut read) {
            // Completed at once (bytes or EOF already there): a finished operation must not be
            // polled again, so the result is kept for the first await.
            read.state = ReadState::Ready(Some(r));
        }
        read
    }

    /// A read that owns a reference to the connection, submitted when first polled (a codec
    /// driven by polls, HTTP/2's, keeps one in flight).
    pub fn read_rc(self: &Rc<Self>) -> PostedRead {
        Read {
            conn: Rc::clone(self),
            state: self.recv_state(),
        }
    }

    /// Write every byte of `buf`.
    pub async fn write_all<T: IoBuf>(&self, buf: T) -> io::Result<()> {
        if let Some(t) = &self.tls {
            return t.write(self, buf.as_init()).await;
        }
        let mut s = &self.stream;
        let BufResult(res, _) = s.write_all(buf).await;
        res
    }

    /// [`Conn::write_all`] that hands the buffer back (to send again, or to recycle).
    pub async fn write_all_keep<T: IoBuf>(&self, buf: T) -> (io::Result<()>, T) {
        if let Some(t) = &self.tls {
            return (t.write(self, buf.as_init()).await, buf);
        }
        let mut s = &self.stream;
        let BufResult(res, buf) = s.write_all(buf).await;
        (res, buf)
    }

    /// [`Conn::write_vectored_all`] that hands the buffers back.
    pub async fn write_vectored_all_keep<T: IoVectoredBuf>(&self, bufs: T) -> (io::Result<()>, T) {
        if let Some(t) = &self.tls {
            return (t.write_slices(self, bufs.iter_slice()).await, bufs);
        }
        let mut s = &self.stream;
        let BufResult(res, bufs) = s.write_vectored_all(bufs).await;
        (res, bufs)
    }

    /// [`Conn::write_all`] of a buffer from the worker's [`WriteBufs`], which gets it back
    /// (emptied) once the kernel is done with it: a head written this way costs no allocation.
    pub async fn write_pooled(&self, buf: bytes::BytesMut, bufs: &WriteBufs) -> io::Result<()> {
        if let Some(t) = &self.tls {
            let res = t.write(self, &buf).await;
            bufs.give(buf);
            return res;
        }
        let mut s = &self.stream;
        let BufResult(res, buf) = s.write_all(buf).await;
        bufs.give(buf);
        res
    }

    /// Write every byte of several buffers, in one submission where the kernel takes them all.
    pub async fn write_vectored_all<T: IoVectoredBuf>(&self, bufs: T) -> io::Result<()> {
        if let Some(t) = &self.tls {
            return t.write_slices(self, bufs.iter_slice()).await;
        }
        let mut s = &self.stream;
        let BufResult(res, _) = s.write_vectored_all(bufs).await;
        res
    }

    /// Make the close of this connection a reset (`SO_LINGER` 0): for a response cut short whose
    /// client could not tell a clean close from the end of the body (a body delimited by the
    /// close), the reset says it was not.
    pub fn reset_on_close(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: plain setsockopt on the socket this connection owns, with a valid `linger`.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    /// Half-close: no more bytes will be written.
    ///
    /// A direct `shutdown(2)`, not the ring's: io_uring always hands `IORING_OP_SHUTDOWN` to
    /// its worker threads (it has no non-blocking path), which cost a quarter of the CPU of a
    /// connection-per-request `tcp_proxy` run; for TCP the call never blocks (it queues a FIN).
    pub async fn shutdown_write(&self) -> io::Result<()> {
        if let Some(t) = &self.tls {
            t.close_notify(self).await?;
        }
        // SAFETY: plain syscall on the socket this connection owns.
        if unsafe { libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_WR) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Close abruptly or orderly: drops the socket (the runtime closes it).
    pub fn close(self) {}
}

/// Lets reads arm multishot receives again when dropped: a body pump holds one, so a hold it
/// took ([`Conn::hold_multishot`]) never outlives the body, whichever way the body ends.
pub struct ReleaseMultishot<'a>(pub &'a Conn);

impl Drop for ReleaseMultishot<'_> {
    fn drop(&mut self) {
        self.0.release_multishot();
    }
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
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(fut).poll(&mut cx) {
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
