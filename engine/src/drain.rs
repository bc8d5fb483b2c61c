//! Per-worker drain signal and idle-wait registry.
//!
//! Draining: set once when the worker starts shutting down (or draining its listeners);
//! everything waiting for the next request or the next connection wakes up and closes.
//!
//! Idle deadlines: a keep-alive connection waiting for its next request registers here with a
//! deadline on a coarse per-worker clock (advanced by [`Drain::tick`] every [`TICK`]), instead of
//! arming a runtime timer and reading the system clock for every request. The tick wakes the
//! waiters whose deadline has passed. Idle timeouts are therefore accurate to about one tick.
//! Route timeouts use the same clock ([`Drain::before`]): a request costs no runtime timer.
//! Single-threaded (`Cell`/`RefCell`): it never crosses a core.
//!
//! A leaf: it imports nothing from the crate. The worker (`runtime::worker`) owns one, starts
//! the drain and advances the clock; the accept loops (`listener`) and the request path (`http`)
//! wait on it through the worker's context.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// Period of the coarse clock.
pub const TICK: Duration = Duration::from_millis(100);

struct Slot {
    waker: Option<Waker>,
    /// Coarse-clock deadline in ms (`u64::MAX`: none).
    deadline: u64,
}

pub struct Drain {
    draining: Cell<bool>,
    /// Idle connections close now (`false` during a polite drain: they wait for their next
    /// request, answered with `connection: close`, until the drain's end).
    close_idle: Cell<bool>,
    /// A reload's hand-over: idle plain connections move to the next generation's workers.
    handing: Cell<bool>,
    /// The drain began politely (another generation or process shares the listening sockets).
    polite: Cell<bool>,
    /// Current waiters; `None` slots are free (their indexes are in `free`).
    slots: RefCell<Vec<Option<Slot>>>,
    free: RefCell<Vec<usize>>,
    /// Connections alive on this worker.
    active: Cell<usize>,
    epoch: Instant,
    /// Coarse clock: ms since `epoch`, as of the last tick.
    now_ms: Cell<u64>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: Cell::new(false),
            close_idle: Cell::new(false),
            handing: Cell::new(false),
            polite: Cell::new(false),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            active: Cell::new(0),
            epoch: Instant::now(),
            now_ms: Cell::new(0),
        }
    }
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.draining.get())
            .field("active", &self.active.get())
            .finish()
    }
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Start draining and wake every waiter.
    pub fn start(&self) {
        self.draining.set(true);
        self.close_idle.set(true);
        for s in self.slots.borrow_mut().iter_mut().flatten() {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    /// A polite drain (a binary upgrade hands the sockets to a successor): stop accepting, but
    /// let idle and new connections send their next request, answered with
    /// `connection: close` (HTTP/2: GOAWAY), until [`Drain::start`] closes what is left.
    pub fn start_polite(&self) {
        self.draining.set(true);
        self.polite.set(true);
        for s in self.slots.borrow_mut().iter_mut().flatten() {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    /// A reload's drain: like [`Drain::start_polite`], and idle plain connections (between
    /// requests, nothing buffered) move to the next generation's workers at once.
    pub fn start_handover(&self) {
        self.handing.set(true);
        self.start_polite();
    }

    /// The drain began politely ([`Drain::start_polite`], [`Drain::start_handover`]), even if
    /// idle connections are closing by now: the listening sockets are shared.
    pub fn is_polite(&self) -> bool {
        self.polite.get()
    }

    /// Idle connections are to move to the next generation ([`Drain::start_handover`]).
    pub fn handing(&self) -> bool {
        self.handing.get()
    }

    /// A response should close its connection: draining, and not handing connections over
    /// (a handed-over connection stays open for the next generation).
    pub fn closing_conns(&self) -> bool {
        self.draining.get() && !self.handing.get()
    }

    /// Idle connections are to close now (a drain that is not polite, or its end).
    pub fn closing_idle(&self) -> bool {
        self.close_idle.get()
    }

    /// The coarse clock: milliseconds since the worker started, as of the last tick.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// Advance the coarse clock and wake every waiter whose deadline has passed. Called by the
    /// worker every [`TICK`].
    pub fn tick(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.now_ms.set(now);
        for s in self.slots.borrow_mut().iter_mut().flatten() {
            if s.deadline <= now {
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// A registration that can be polled from inside another future's poll (see
    /// [`Waiter::poll_drain`]); it never times out.
    pub fn waiter(&self) -> Waiter<'_> {
        Waiter {
            drain: self,
            slot: None,
            deadline: u64::MAX,
        }
    }

    /// A registration that also ends `timeout` from now on the coarse clock (see
    /// [`Waiter::poll_idle`]); rounded to the nearest tick.
    pub fn waiter_for(&self, timeout: Duration) -> Waiter<'_> {
        self.waiter_until(self.deadline_in(timeout))
    }

    /// A deadline at `deadline_ms` on the coarse clock (see [`Waiter::poll_deadline`]).
    pub fn waiter_until(&self, deadline_ms: u64) -> Waiter<'_> {
        Waiter {
            drain: self,
            slot: None,
            deadline: deadline_ms,
        }
    }

    /// The coarse-clock deadline `timeout` from now, rounded to the nearest tick.
    pub fn deadline_in(&self, timeout: Duration) -> u64 {
        let half_tick = TICK.as_millis() as u64 / 2;
        self.now_ms
            .get()
            .saturating_add(timeout.as_millis() as u64 + half_tick)
    }

    /// `fut`, unless the coarse clock passes `deadline_ms` first (`None`). No runtime timer and
    /// no clock read: the worker's tick ends it.
    pub async fn before<F: Future>(&self, deadline_ms: u64, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let mut w = self.waiter_until(deadline_ms);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            w.poll_deadline(cx).map(|()| None)
        })
        .await
    }

    /// A future that completes once draining starts.
    pub fn wait(&self) -> Waiter<'_> {
        self.waiter()
    }

    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// Count a live connection until the guard drops.
    pub fn track(&self) -> ActiveGuard<'_> {
        self.active.set(self.active.get() + 1);
        ActiveGuard(self)
    }
}

pub struct ActiveGuard<'a>(&'a Drain);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Why an idle wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEnd {
    Drained,
    TimedOut,
}

/// One waiter's slot in the drain's waiter list, released on drop.
pub struct Waiter<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
    deadline: u64,
}

impl<'a> Waiter<'a> {
    /// The drain this waiter waits on.
    pub fn drain(&self) -> &'a Drain {
        self.drain
    }

    /// Ready once draining has started (politely or not); otherwise remembers the waker.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        let _ = self.poll_deadline(cx);
        Poll::Pending
    }

    /// Ready once idle connections are to close (a drain that is not polite) or the deadline
    /// has passed; otherwise remembers the waker.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<IdleEnd> {
        if self.drain.close_idle.get() {
            return Poll::Ready(IdleEnd::Drained);
        }
        match self.poll_deadline(cx) {
            Poll::Ready(()) => Poll::Ready(IdleEnd::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ready once the deadline has passed (draining does not end it); otherwise remembers the
    /// waker.
    pub fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline <= self.drain.now_ms.get() {
            return Poll::Ready(());
        }
        let mut slots = self.drain.slots.borrow_mut();
        match self
            .slot
            .and_then(|i| slots.get_mut(i))
            .and_then(|s| s.as_mut())
        {
            Some(s) => match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            },
            None => {
                let slot = Slot {
                    waker: Some(cx.waker().clone()),
                    deadline: self.deadline,
                };
                let i = match self.drain.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = Some(slot);
                        i
                    }
                    None => {
                        slots.push(Some(slot));
                        slots.len() - 1
                    }
                };
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Future for Waiter<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_drain(cx)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Ok(mut slots) = self.drain.slots.try_borrow_mut() {
                slots[i] = None;
                self.drain.free.borrow_mut().push(i);
            }
        }
    }
}
