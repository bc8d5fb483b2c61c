//! Per-worker drain signal: set once when the worker starts shutting down (or draining its
//! listeners); everything waiting for the next request or the next connection wakes up and closes.
//! Single-threaded (`Cell`/`RefCell`): it never crosses a core.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

#[derive(Default)]
pub struct Drain {
    draining: Cell<bool>,
    /// Wakers of current waiters; `None` slots are free (their indexes are in `free`).
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
    /// Connections alive on this worker.
    active: Cell<usize>,
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
        for w in self.slots.borrow_mut().iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    /// A registration that can be polled from inside another future's poll (see [`Waiter::poll`]).
    pub fn waiter(&self) -> Waiter<'_> {
        Waiter {
            drain: self,
            slot: None,
        }
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

/// One waiter's slot in the drain's waker list, released on drop.
pub struct Waiter<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Waiter<'_> {
    /// Ready once draining has started; otherwise remembers the waker.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        let mut slots = self.drain.slots.borrow_mut();
        match self.slot {
            Some(i) => match &mut slots[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                s => *s = Some(cx.waker().clone()),
            },
            None => {
                let i = match self.drain.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        slots.push(Some(cx.waker().clone()));
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
