//! Read readiness on the epoll driver: one edge-triggered epoll set per worker, each connection
//! registered once, instead of compio's polling driver adding and deleting the socket in its own
//! epoll set around every wait (two `epoll_ctl` per wait, a queue allocated per wait).
//!
//! Data flow: [`register`] adds a socket (`EPOLLIN | EPOLLRDHUP | EPOLLET`) under a [`Token`]
//! (slot and generation); a read tries `recv(2)` first where data is likely
//! (`Conn::recv_now`), clearing the slot's ready latch before it, and on `EAGAIN` waits in
//! [`poll_ready`], which parks the reader's waker in the slot. The worker's reactor task waits
//! for the set itself to be readable (one compio poll operation on its fd), takes every event
//! with `epoll_wait` (no timeout), sets each live slot's latch and wakes its reader. A slot freed
//! by a dropped connection gets a new generation, so a late event for a closed socket wakes
//! nobody. [`deregister`] takes a socket out of the set before it leaves the worker (parking,
//! hand-over); a dropped connection's socket leaves the set when it is closed.
//!
//! Edge-triggered is safe here because the latch is cleared just before each `recv`: data that
//! arrives after it makes a new edge, and data that came before it is taken by it (up to a full
//! buffer, and a full buffer's read tries again without waiting). A FIN or an error that came
//! before it is not reported by a `recv` that returns data, so those set a sticky flag instead:
//! once the peer has closed, every wait returns at once and the next `recv` sees the end.

use std::{
    cell::RefCell,
    io,
    num::NonZeroU64,
    os::fd::RawFd,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use super::park::Epoll;

/// A registered socket: slot index (low 32 bits) and generation (high 32 bits, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(NonZeroU64);

impl Token {
    fn new(index: u32, gen: u32) -> Token {
        Token(NonZeroU64::new((u64::from(gen) << 32) | u64::from(index)).expect("gen >= 1"))
    }
    fn index(self) -> usize {
        (self.0.get() & 0xffff_ffff) as usize
    }
    fn gen(self) -> u32 {
        (self.0.get() >> 32) as u32
    }
}

#[derive(Default)]
struct Slot {
    gen: u32,
    /// An edge came since the latch was last cleared.
    ready: bool,
    /// The peer closed its side or the socket failed (sticky: a `recv` that took the data
    /// before the FIN consumed the FIN's edge too, and must still see the end).
    hup: bool,
    waker: Option<Waker>,
}

/// A worker's epoll set (the parking lot's kind, [`Epoll`]) and its slots.
struct Reactor {
    ep: Epoll,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
}

thread_local! {
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// This thread's reactor, made (and its task spawned) on first use; `None` outside a runtime.
fn reactor() -> Option<Rc<Reactor>> {
    if let Some(r) = REACTOR.with(|r| r.borrow().clone()) {
        return Some(r);
    }
    compio::runtime::Runtime::try_with_current(|_| ()).ok()?;
    let r = Rc::new(Reactor {
        ep: Epoll::new().ok()?,
        slots: RefCell::new(Vec::new()),
        free: RefCell::new(Vec::new()),
    });
    REACTOR.with(|cell| *cell.borrow_mut() = Some(Rc::clone(&r)));
    compio::runtime::spawn(run(Rc::clone(&r))).detach();
    Some(r)
}

/// Events taken per `epoll_wait` (the most [`Epoll::ready`] takes).
const BATCH: usize = 64;

/// The reactor task: wait for the set, then wake every socket that had an edge.
async fn run(r: Rc<Reactor>) {
    let mut evs = Vec::with_capacity(BATCH);
    loop {
        if r.ep.wait().await.is_err() {
            return;
        }
        loop {
            evs.clear();
            let n = r.ep.ready(&mut evs, BATCH);
            {
                let mut slots = r.slots.borrow_mut();
                for &(token, closed) in &evs {
                    let Some(t) = NonZeroU64::new(token).map(Token) else {
                        continue;
                    };
                    if let Some(s) = slots.get_mut(t.index()).filter(|s| s.gen == t.gen()) {
                        s.ready = true;
                        s.hup |= closed;
                        if let Some(w) = s.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
            if n < BATCH {
                break;
            }
        }
    }
}

/// Register a socket (edge-triggered reads). `None`: not on a runtime thread, or the kernel
/// refused (the connection then waits through compio's poll operations).
pub fn register(fd: RawFd) -> Option<Token> {
    let r = reactor()?;
    let token = {
        let mut slots = r.slots.borrow_mut();
        let index = match r.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push(Slot::default());
                (slots.len() - 1) as u32
            }
        };
        let s = &mut slots[index as usize];
        s.gen = s.gen.wrapping_add(1).max(1);
        s.ready = false;
        s.hup = false;
        Token::new(index, s.gen)
    };
    if r.ep.add_edge(fd, token.0.get()).is_err() {
        release(token);
        return None;
    }
    Some(token)
}

/// Free a dropped connection's slot (its socket leaves the set when it is closed).
pub fn release(token: Token) {
    REACTOR.with(|cell| {
        if let Some(r) = cell.borrow().as_ref() {
            if let Some(s) = r.slots.borrow_mut().get_mut(token.index()) {
                if s.gen == token.gen() {
                    s.gen = s.gen.wrapping_add(1).max(1);
                    s.ready = false;
                    s.waker = None;
                    r.free.borrow_mut().push(token.index() as u32);
                }
            }
        }
    });
}

/// Take a socket out of the set before it leaves this worker (it stays open), and free its
/// slot.
pub fn deregister(token: Token, fd: RawFd) {
    REACTOR.with(|cell| {
        if let Some(r) = cell.borrow().as_ref() {
            r.ep.remove(fd);
        }
    });
    release(token);
}

/// Clear the latch before a `recv(2)`: an arrival after it makes a new edge.
#[inline]
pub fn clear(token: Token) {
    REACTOR.with(|cell| {
        if let Some(r) = cell.borrow().as_ref() {
            if let Some(s) = r.slots.borrow_mut().get_mut(token.index()) {
                if s.gen == token.gen() {
                    s.ready = false;
                }
            }
        }
    });
}

/// Ready once an edge came since the latch was last cleared, or ever after the peer closed;
/// otherwise the waker waits in the
/// slot. An error if the slot is gone (cannot happen while the connection lives).
pub fn poll_ready(token: Token, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    REACTOR.with(|cell| {
        let cell = cell.borrow();
        let Some(r) = cell.as_ref() else {
            return Poll::Ready(Err(io::Error::other("no reactor on this thread")));
        };
        let mut slots = r.slots.borrow_mut();
        match slots
            .get_mut(token.index())
            .filter(|s| s.gen == token.gen())
        {
            Some(s) if s.ready || s.hup => Poll::Ready(Ok(())),
            Some(s) => {
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            None => Poll::Ready(Err(io::Error::other("connection not registered"))),
        }
    })
}
