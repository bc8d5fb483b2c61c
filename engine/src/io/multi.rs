//! Multishot receive: one armed `IORING_OP_RECV` (multishot, provided buffers) per connection
//! carries every read until something stops it, instead of one receive submitted per read.
//!
//! Data flow: the kernel picks a pool buffer for each arrival and posts a completion; the
//! driver hands it to [`MultiRecv::push_multishot`], which queues `(length, buffer id)` in the
//! connection's [`MultiShared`] and wakes the reader. [`Conn::read`](super::Conn::read) pops the
//! queue (the buffer becomes a [`ReadBuf::Pooled`](super::ReadBuf)), and when the queue is empty
//! waits for the next arrival. The final completion (end of stream, an error, or the
//! cancellation below) ends the receive; the next read arms a new one.
//!
//! Backpressure: the kernel fills buffers as data arrives whether or not the proxy reads them, so
//! an unbounded receive on a connection whose data cannot be forwarded yet (a fast uploader, a
//! slow upstream) would take the whole pool. Each receive is therefore armed with a byte limit
//! (`IORING_RECV_MSHOT_LIM`, the SQE's `optlen`): after [`MULTI_CAP`] buffers' worth the kernel
//! ends it, and it is armed again only once the reader has read everything it delivered. At most
//! [`MULTI_CAP`] full buffers wait unread per connection; beyond that the socket's own buffer
//! fills and TCP flow control slows the sender, as with one-shot receives. Small arrivals take a
//! buffer each, so the limit in bytes is not one in buffers: when [`MULTI_CAP`] buffers wait
//! while the receive goes on, the worker's [`governor`] task cancels it (the driver cannot cancel
//! from inside a completion); what arrived is still read in order. A kernel without the limit
//! (before 6.18) refuses the first receive with `EINVAL`; the worker then reads one-shot.
//!
//! Pool exhaustion (`ENOBUFS`: every provided buffer in use) also ends a receive: that read is
//! served by a one-off owned buffer and counted; the next read arms again. Neither case is an
//! error to the client.
//!
//! A receive that must not be re-armed (a body about to be read in 1 MiB pieces straight into
//! its own buffer, `http::bulk`) is held: [`MultiShared::hold`] cancels it and reads go one-shot
//! until [`MultiShared::release`].

use std::{
    cell::{Cell, RefCell},
    io,
    rc::{Rc, Weak},
    task::Waker,
};

use compio::{
    driver::{
        op::{RecvFlags, RecvMulti},
        BufferPool, BufferRef, Decision, Extra, IourOpCode, OpEntry, OpType, PollOpCode, SharedFd,
        ToSharedFd,
    },
    net::TcpStream,
    runtime::SubmitMulti,
};

/// Most buffers that may wait unread on one connection before its receive is cancelled.
pub const MULTI_CAP: usize = 4;
/// Queue slots kept inline; more (arrivals racing a cancellation) spill into a vector.
const INLINE: usize = MULTI_CAP;

type Fd = SharedFd<socket2::Socket>;

/// How the last receive ended (set by the final completion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The peer closed.
    Eof,
    /// Cancelled (over the cap, held, or the connection dropped it).
    Cancelled,
    /// The pool had no buffer.
    NoBuffers,
    /// Another error (errno).
    Error(i32),
}

/// Where a connection's multishot receive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Nothing armed.
    Idle,
    /// Armed (or cancelled and not yet finished).
    Armed,
    /// Finished; the end is handled by the next read.
    Ended(End),
}

/// A connection's side of its multishot receive, shared (weakly) with the operation in the
/// driver.
pub struct MultiShared {
    pool: BufferPool,
    state: Cell<State>,
    /// Arrivals not yet read: `(length, buffer id)`, oldest first.
    ring: RefCell<Queue>,
    /// The armed receive; dropping it cancels it.
    op: RefCell<Option<SubmitMulti<MultiRecv>>>,
    waker: RefCell<Option<Waker>>,
    /// Reads go one-shot: the receive is not re-armed.
    held: Cell<bool>,
    /// Handed to the governor already.
    flagged: Cell<bool>,
}

#[derive(Default)]
struct Queue {
    inline: [(u32, u16); INLINE],
    head: u8,
    len: u8,
    spill: std::collections::VecDeque<(u32, u16)>,
}

impl Queue {
    fn push(&mut self, v: (u32, u16)) {
        if usize::from(self.len) < INLINE && self.spill.is_empty() {
            self.inline[(usize::from(self.head) + usize::from(self.len)) % INLINE] = v;
            self.len += 1;
        } else {
            self.spill.push_back(v);
        }
    }
    fn pop(&mut self) -> Option<(u32, u16)> {
        if self.len > 0 {
            let v = self.inline[usize::from(self.head)];
            self.head = ((usize::from(self.head) + 1) % INLINE) as u8;
            self.len -= 1;
            return Some(v);
        }
        self.spill.pop_front()
    }
    fn count(&self) -> usize {
        usize::from(self.len) + self.spill.len()
    }
}

impl std::fmt::Debug for MultiShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MultiShared({:?}, {} queued)",
            self.state.get(),
            self.ring.borrow().count()
        )
    }
}

impl Drop for MultiShared {
    fn drop(&mut self) {
        // Cancel first (the operation then only finds a dead weak reference), then give the
        // unread buffers back to the pool.
        drop(self.op.get_mut().take());
        let ring = self.ring.get_mut();
        while let Some((_, id)) = ring.pop() {
            let _ = self.pool.reset(id);
        }
    }
}

/// Whether a held receive has gone quiet ([`MultiShared::poll_quiet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    Yes,
    Data,
    Closed,
}

/// What a read gets from the multishot side.
pub(super) enum Got {
    Data(BufferRef),
    End(End),
    /// Nothing yet: the waker is registered.
    Pending,
    /// Not armed and held: read one-shot.
    OneShot,
}

impl MultiShared {
    pub(super) fn new(pool: BufferPool) -> Rc<Self> {
        Rc::new(MultiShared {
            pool,
            state: Cell::new(State::Idle),
            ring: RefCell::new(Queue::default()),
            op: RefCell::new(None),
            waker: RefCell::new(None),
            held: Cell::new(false),
            flagged: Cell::new(false),
        })
    }

    /// The next arrival, the end of the receive, or `Pending` (armed, waker set). Arms a
    /// receive when none is armed and none is held.
    pub(super) fn poll(
        self: &Rc<Self>,
        stream: &TcpStream,
        cx: &mut std::task::Context<'_>,
    ) -> io::Result<Got> {
        loop {
            let next = self.ring.borrow_mut().pop();
            if let Some((len, id)) = next {
                return match self.pool.take(id)? {
                    Some(mut b) => {
                        // SAFETY: the kernel wrote `len` bytes into this buffer.
                        unsafe { compio::buf::SetLen::set_len(&mut b, len as usize) };
                        Ok(Got::Data(b))
                    }
                    None => Err(io::Error::other("provided buffer lost")),
                };
            }
            match self.state.get() {
                State::Ended(end) => {
                    self.state.set(State::Idle);
                    self.op.borrow_mut().take();
                    match end {
                        End::Cancelled => continue,
                        // The kernel has no receive limit: one-shot from now on.
                        End::Error(libc::EINVAL) if LIMIT.with(|l| l.get()) == Limit::Unknown => {
                            LIMIT.with(|l| l.set(Limit::Unsupported));
                            return Ok(Got::OneShot);
                        }
                        _ => return Ok(Got::End(end)),
                    }
                }
                State::Idle if self.held.get() || !LIMIT.with(|l| l.get().usable()) => {
                    return Ok(Got::OneShot)
                }
                State::Idle => self.arm(stream)?,
                State::Armed => {
                    let mut w = self.waker.borrow_mut();
                    match &*w {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *w = Some(cx.waker().clone()),
                    }
                    return Ok(Got::Pending);
                }
            }
        }
    }

    /// Submit a receive (the only place a read takes a reference to the socket's fd).
    fn arm(self: &Rc<Self>, stream: &TcpStream) -> io::Result<()> {
        let op = MultiRecv {
            inner: RecvMulti::new(stream.to_shared_fd(), &self.pool, 0, RecvFlags::empty())?,
            limit: (MULTI_CAP * super::READ_BUF_LEN) as u32,
            pool: self.pool.clone(),
            shared: Rc::downgrade(self),
        };
        let mut sub = compio::runtime::Runtime::with_current(|rt| rt.submit_multi(op));
        self.state.set(State::Armed);
        // The first poll submits. It gives the driver a no-op waker: every wake comes from
        // `MultiShared::wake`, so a task is never woken twice for one arrival (nor a task
        // that no longer uses this connection).
        let mut noop = std::task::Context::from_waker(Waker::noop());
        let _ = futures_util::Stream::poll_next(std::pin::Pin::new(&mut sub), &mut noop);
        *self.op.borrow_mut() = Some(sub);
        COUNTERS.with(|c| c.armed.set(c.armed.get() + 1));
        Ok(())
    }

    /// Stop re-arming and cancel the armed receive (what arrived is still read in order).
    /// Returns whether the connection is quiet: nothing armed and nothing queued, so a read
    /// that bypasses the pool may start.
    pub(super) fn hold(&self) -> bool {
        self.held.set(true);
        self.op.borrow_mut().take();
        self.state.get() == State::Idle && self.ring.borrow().count() == 0
    }

    /// After [`MultiShared::hold`]: wait until the cancelled receive has finished. `Yes`: nothing
    /// armed, nothing unread (the socket may leave the ring); `Data`: something arrived (or the
    /// pool ran dry) and must be read first; `Closed`: the peer closed or the socket failed.
    pub(super) fn poll_quiet(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Quiet> {
        use std::task::Poll;
        if self.ring.borrow().count() > 0 {
            return Poll::Ready(Quiet::Data);
        }
        match self.state.get() {
            State::Idle => Poll::Ready(Quiet::Yes),
            State::Ended(End::Cancelled) => {
                self.state.set(State::Idle);
                self.op.borrow_mut().take();
                Poll::Ready(Quiet::Yes)
            }
            State::Ended(End::NoBuffers) => Poll::Ready(Quiet::Data),
            State::Ended(_) => Poll::Ready(Quiet::Closed),
            State::Armed => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Re-arm on the next read.
    pub(super) fn release(&self) {
        self.held.set(false);
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// The operation in the driver: compio's multishot receive, with results queued in the
/// connection's [`MultiShared`] instead of inside the operation.
pub struct MultiRecv {
    inner: RecvMulti<Fd>,
    /// Bytes after which the kernel ends the receive (`IORING_RECV_MSHOT_LIM`).
    limit: u32,
    pool: BufferPool,
    shared: Weak<MultiShared>,
}

impl MultiRecv {
    /// One arrival (or the data of a final completion); `more`: the receive goes on.
    fn arrived(&mut self, res: &io::Result<usize>, extra: &Extra, more: bool) {
        let Ok(id) = extra.buffer_id() else { return };
        let (Ok(n), Some(sh)) = (res, self.shared.upgrade()) else {
            let _ = self.pool.reset(id);
            return;
        };
        if *n == 0 {
            let _ = self.pool.reset(id);
            return;
        }
        LIMIT.with(|l| l.set(Limit::Works));
        let queued = {
            let mut ring = sh.ring.borrow_mut();
            ring.push((*n as u32, id));
            ring.count()
        };
        // The byte limit stops a receive after 4 full buffers, but small arrivals take a
        // buffer each: past the cap in buffers, the governor cancels the receive (the driver
        // cannot from inside a completion).
        if more && queued >= MULTI_CAP && !sh.flagged.replace(true) {
            GOVERNOR.with(|g| {
                g.over.borrow_mut().push(Rc::downgrade(&sh));
                if let Some(w) = g.waker.take() {
                    w.wake();
                }
            });
        }
        sh.wake();
    }
}

// SAFETY: every entry is the inner operation's; results are only moved out of it.
unsafe impl IourOpCode for MultiRecv {
    type Control = <RecvMulti<Fd> as IourOpCode>::Control;

    unsafe fn init(&mut self, ctrl: &mut Self::Control) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { IourOpCode::init(&mut self.inner, ctrl) }
    }

    fn create_entry(&mut self, ctrl: &mut Self::Control) -> OpEntry {
        match self.inner.create_entry(ctrl) {
            OpEntry::Submission(e) => OpEntry::Submission(with_total_limit(e, self.limit)),
            other => other,
        }
    }

    fn create_entry_fallback(&mut self, ctrl: &mut Self::Control) -> OpEntry {
        self.inner.create_entry_fallback(ctrl)
    }

    unsafe fn set_result(&mut self, _: &mut Self::Control, res: &io::Result<usize>, extra: &Extra) {
        // The final completion: it may carry data (kept in order), then it ends the receive.
        self.arrived(res, extra, false);
        let Some(sh) = self.shared.upgrade() else {
            return;
        };
        let end = match res {
            Ok(0) => End::Eof,
            // Data with no more to come: the receive stopped (for example a full completion
            // queue); the next read arms again.
            Ok(_) => End::Cancelled,
            // The driver turns ENOBUFS into `ResourceBusy`.
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => End::NoBuffers,
            Err(e) => match e.raw_os_error() {
                Some(libc::ECANCELED) => End::Cancelled,
                Some(libc::ENOBUFS) => End::NoBuffers,
                Some(code) => End::Error(code),
                None => End::Error(libc::EIO),
            },
        };
        if end == End::Cancelled && res.is_ok() {
            COUNTERS.with(|c| c.capped.set(c.capped.get() + 1));
        }
        sh.state.set(State::Ended(end));
        sh.wake();
    }

    unsafe fn push_multishot(
        &mut self,
        _: &mut Self::Control,
        res: io::Result<usize>,
        extra: Extra,
    ) {
        self.arrived(&res, &extra, true);
    }

    fn pop_multishot(
        &mut self,
        _: &mut Self::Control,
    ) -> Option<compio::buf::BufResult<usize, Extra>> {
        // Results are read from the connection's queue, never through the driver.
        None
    }
}

// The epoll driver never runs a multishot receive (connections read one-shot there, see
// `Conn::wrap`); this forwards to compio's emulation only so the operation type is complete.
// SAFETY: forwarded unchanged to the inner operation, which upholds the trait's contract.
unsafe impl PollOpCode for MultiRecv {
    type Control = <RecvMulti<Fd> as PollOpCode>::Control;

    unsafe fn init(&mut self, ctrl: &mut Self::Control) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { PollOpCode::init(&mut self.inner, ctrl) }
    }

    fn pre_submit(&mut self, ctrl: &mut Self::Control) -> io::Result<Decision> {
        self.inner.pre_submit(ctrl)
    }

    fn op_type(&mut self, ctrl: &mut Self::Control) -> Option<OpType> {
        self.inner.op_type(ctrl)
    }

    fn operate(&mut self, ctrl: &mut Self::Control) -> std::task::Poll<io::Result<usize>> {
        self.inner.operate(ctrl)
    }
}

/// The SQE of a multishot receive with its total byte limit set: `optlen` (byte 44 of the
/// 64-byte `io_uring_sqe`, shared with `file_index`) with `IORING_RECV_MULTISHOT` is the
/// receive's overall limit (`IORING_RECV_MSHOT_LIM`, Linux 6.18). The io-uring crate has no
/// setter for it on `RecvMulti`.
fn with_total_limit<E>(entry: E, limit: u32) -> E {
    const OPTLEN: usize = 44;
    const _: () = assert!(std::mem::size_of::<IoUringSqe>() == 64);
    type IoUringSqe = [u8; 64];
    assert_eq!(std::mem::size_of::<E>(), 64, "an io_uring SQE is 64 bytes");
    // SAFETY: `E` is the io-uring crate's `squeue::Entry`, `#[repr(C)]` around the kernel's
    // 64-byte `io_uring_sqe` (size checked above); every byte pattern is a valid SQE to hold,
    // and only the `optlen` field is written.
    unsafe {
        let mut raw: IoUringSqe = std::mem::transmute_copy(&entry);
        std::mem::forget(entry);
        raw[OPTLEN..OPTLEN + 4].copy_from_slice(&limit.to_ne_bytes());
        std::mem::transmute_copy(&raw)
    }
}

/// Whether this worker's receives are multishot (the kernel took the limit, or has not been
/// asked yet).
pub(super) fn usable() -> bool {
    LIMIT.with(|l| l.get().usable())
}

/// Whether this kernel takes the receive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Unknown,
    Works,
    Unsupported,
}

impl Limit {
    fn usable(self) -> bool {
        self != Limit::Unsupported
    }
}

/// Per-worker counters, copied into the worker's stats on each coarse-clock tick.
#[derive(Debug, Default)]
struct MultiCounters {
    armed: Cell<u64>,
    capped: Cell<u64>,
    no_buffer: Cell<u64>,
}

thread_local! {
    static COUNTERS: MultiCounters = MultiCounters::default();
    static LIMIT: Cell<Limit> = const { Cell::new(Limit::Unknown) };
    static GOVERNOR: Governor = Governor::default();
}

#[derive(Default)]
struct Governor {
    over: RefCell<Vec<Weak<MultiShared>>>,
    waker: Cell<Option<Waker>>,
}

/// The worker's governor: cancels the receive of every connection found with [`MULTI_CAP`]
/// buffers unread while its receive goes on (small arrivals, each in its own buffer). Spawned
/// once per worker; never ends.
pub async fn governor() {
    std::future::poll_fn(|cx| {
        let over = GOVERNOR.with(|g| {
            g.waker.set(Some(cx.waker().clone()));
            std::mem::take(&mut *g.over.borrow_mut())
        });
        for sh in over.iter().filter_map(Weak::upgrade) {
            sh.flagged.set(false);
            if sh.state.get() == State::Armed && sh.ring.borrow().count() >= MULTI_CAP {
                if let Some(op) = sh.op.borrow_mut().take() {
                    drop(op);
                    COUNTERS.with(|c| c.capped.set(c.capped.get() + 1));
                }
            }
        }
        std::task::Poll::<()>::Pending
    })
    .await
}

/// This worker's counters: receives armed, receives that reached their limit of [`MULTI_CAP`]
/// buffers (the reader had not read them yet, or a flow longer than the limit; either way the
/// next receive waited for the reader), and reads that found the pool empty.
pub fn counters() -> (u64, u64, u64) {
    COUNTERS.with(|c| (c.armed.get(), c.capped.get(), c.no_buffer.get()))
}

pub(super) fn count_no_buffer() {
    COUNTERS.with(|c| c.no_buffer.set(c.no_buffer.get() + 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_arrival_order_across_the_inline_slots_and_the_spill() {
        let mut q = Queue::default();
        let mut next = 0u32;
        let mut want = 0u32;
        // Fill past the inline slots, drain part, refill: order must hold throughout.
        for round in [3usize, INLINE + 5, 1, INLINE * 2] {
            for _ in 0..round {
                q.push((next, next as u16));
                next += 1;
            }
            assert_eq!(q.count(), (next - want) as usize);
            for _ in 0..round / 2 + 1 {
                let Some((len, id)) = q.pop() else { break };
                assert_eq!((len, id), (want, want as u16));
                want += 1;
            }
        }
        while let Some((len, _)) = q.pop() {
            assert_eq!(len, want);
            want += 1;
        }
        assert_eq!(want, next);
        assert_eq!(q.count(), 0);
    }
}
