//! Accepting without ever losing a connection to a withdrawn accept.
//!
//! A listener always has one accept submitted. When a worker drains (a reload, a binary upgrade,
//! shutdown) it withdraws that accept, and the kernel may complete it with a connection at the
//! same moment it processes the cancellation. compio's own accept closes such a connection when
//! its future is gone (the client sees its connection closed unanswered), and compio's
//! `CancelToken`, which would let the future see it, does not register with the operation in an
//! optimised build (it finds its data by comparing waker vtable addresses, which the compiler
//! does not keep unique). So the accept here is compio's operation wrapped in [`KeptAccept`]:
//! when an operation that took a connection is dropped unread (its future gone), the connection
//! goes to the listener's [`Orphans`] instead of being closed, and the accept loop, after
//! withdrawing its accept, waits until the operation is reaped and serves or hands over what it
//! finds there (the listener module's accept loop). Nothing changes on the accept path itself: the same one
//! operation per connection, no allocation, the `POLL_FIRST` hint kept from the last accept as
//! compio does.

use std::{
    cell::{Cell, RefCell},
    io,
    mem::ManuallyDrop,
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
    rc::Rc,
    task::{Poll, Waker},
};

use compio::{
    driver::{
        op::Accept, Decision, Extra, IourOpCode, OpEntry, OpType, PollFirst, PollOpCode, SharedFd,
        ToSharedFd,
    },
    net::{TcpListener, TcpStream},
};
use socket2::SockAddr;

type Fd = SharedFd<socket2::Socket>;

/// What withdrawn accepts of one listener took: filled when such an operation is reaped.
#[derive(Default)]
pub struct Orphans {
    /// Accept operations submitted and not yet reaped.
    outstanding: Cell<usize>,
    taken: RefCell<Vec<(socket2::Socket, SockAddr)>>,
    waker: RefCell<Option<Waker>>,
    /// The last accept said more connections were queued (`None`: not known).
    nonempty: Cell<Option<bool>>,
}

impl Orphans {
    /// Ready once every accept operation of this listener has been reaped; then the
    /// connections withdrawn accepts took, with their peers.
    pub fn poll_reaped(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Vec<(TcpStream, SocketAddr)>> {
        if self.outstanding.get() > 0 {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let taken = std::mem::take(&mut *self.taken.borrow_mut());
        Poll::Ready(taken.into_iter().filter_map(stream).collect())
    }
}

/// The accepted socket as the runtime's stream (no syscall: the kernel made it non-blocking and
/// close-on-exec where it had to), with its peer.
fn stream((socket, addr): (socket2::Socket, SockAddr)) -> Option<(TcpStream, SocketAddr)> {
    let peer = addr.as_socket()?;
    // SAFETY: the descriptor is the accepted socket's, owned here and handed over whole.
    let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    Some((stream, peer))
}

/// compio's accept, keeping a connection its dropped future did not read (see the module doc).
pub struct KeptAccept {
    inner: ManuallyDrop<Accept<Fd>>,
    orphans: Rc<Orphans>,
    /// The operation took a connection.
    accepted: bool,
    /// [`KeptAccept::take`] moved it out.
    taken: bool,
}

impl KeptAccept {
    fn new(listener: &TcpListener, orphans: &Rc<Orphans>) -> KeptAccept {
        let mut inner = Accept::new(listener.to_shared_fd());
        if orphans.nonempty.get() == Some(false) {
            inner.poll_first();
        }
        orphans.outstanding.set(orphans.outstanding.get() + 1);
        KeptAccept {
            inner: ManuallyDrop::new(inner),
            orphans: Rc::clone(orphans),
            accepted: false,
            taken: false,
        }
    }

    /// The accepted connection (only after a successful completion).
    fn take(mut self) -> Option<(socket2::Socket, SockAddr)> {
        if !self.accepted {
            return None;
        }
        self.taken = true;
        // SAFETY: `inner` is taken once: `taken` makes `Drop` leave it alone.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        Some(compio::buf::IntoInner::into_inner(inner))
    }
}

impl Drop for KeptAccept {
    fn drop(&mut self) {
        let o = &self.orphans;
        o.outstanding.set(o.outstanding.get().saturating_sub(1));
        if !self.taken {
            // SAFETY: not taken by `take`, so still here, and dropped only now.
            let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
            if self.accepted {
                o.taken
                    .borrow_mut()
                    .push(compio::buf::IntoInner::into_inner(inner));
            }
        }
        if o.outstanding.get() == 0 {
            if let Some(w) = o.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Accept the next connection on `listener` (see the module doc for `orphans`).
pub async fn accept(
    listener: &TcpListener,
    orphans: &Rc<Orphans>,
) -> io::Result<(TcpStream, SocketAddr)> {
    let op = KeptAccept::new(listener, orphans);
    let (compio::buf::BufResult(res, op), extra) = compio::runtime::submit(op).with_extra().await;
    res?;
    if let Ok(nonempty) = extra.sock_nonempty() {
        orphans.nonempty.set(Some(nonempty));
    }
    op.take()
        .and_then(stream)
        .ok_or_else(|| io::Error::other("accept completed without a connection"))
}

// SAFETY: every entry and result is the inner accept's; `set_result` only notes success.
unsafe impl IourOpCode for KeptAccept {
    type Control = <Accept<Fd> as IourOpCode>::Control;

    unsafe fn init(&mut self, ctrl: &mut Self::Control) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { IourOpCode::init(&mut *self.inner, ctrl) }
    }

    fn create_entry(&mut self, ctrl: &mut Self::Control) -> OpEntry {
        IourOpCode::create_entry(&mut *self.inner, ctrl)
    }

    fn create_entry_fallback(&mut self, ctrl: &mut Self::Control) -> OpEntry {
        IourOpCode::create_entry_fallback(&mut *self.inner, ctrl)
    }

    fn call_blocking(&mut self, ctrl: &mut Self::Control) -> io::Result<usize> {
        let r = IourOpCode::call_blocking(&mut *self.inner, ctrl);
        self.accepted |= r.is_ok();
        r
    }

    unsafe fn set_result(
        &mut self,
        ctrl: &mut Self::Control,
        res: &io::Result<usize>,
        extra: &Extra,
    ) {
        // SAFETY: forwarded under the caller's guarantee (the result is this operation's).
        unsafe { IourOpCode::set_result(&mut *self.inner, ctrl, res, extra) };
        self.accepted |= res.is_ok();
    }
}

// SAFETY: forwarded unchanged to the inner accept; `operate` only notes success.
unsafe impl PollOpCode for KeptAccept {
    type Control = <Accept<Fd> as PollOpCode>::Control;

    unsafe fn init(&mut self, ctrl: &mut Self::Control) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { PollOpCode::init(&mut *self.inner, ctrl) }
    }

    fn pre_submit(&mut self, ctrl: &mut Self::Control) -> io::Result<Decision> {
        let d = PollOpCode::pre_submit(&mut *self.inner, ctrl);
        // Accepted at once (a connection was queued): the inner accept holds it.
        if matches!(d, Ok(Decision::Completed(_))) {
            self.accepted = true;
        }
        d
    }

    fn op_type(&mut self, ctrl: &mut Self::Control) -> Option<OpType> {
        PollOpCode::op_type(&mut *self.inner, ctrl)
    }

    fn operate(&mut self, ctrl: &mut Self::Control) -> Poll<io::Result<usize>> {
        let r = PollOpCode::operate(&mut *self.inner, ctrl);
        if matches!(r, Poll::Ready(Ok(_))) {
            self.accepted = true;
        }
        r
    }

    unsafe fn set_result(
        &mut self,
        ctrl: &mut Self::Control,
        res: &io::Result<usize>,
        extra: &Extra,
    ) {
        // SAFETY: forwarded under the caller's guarantee (the result is this operation's).
        unsafe { PollOpCode::set_result(&mut *self.inner, ctrl, res, extra) };
        self.accepted |= res.is_ok();
    }
}
