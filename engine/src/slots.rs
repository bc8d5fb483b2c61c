//! Recycled heap slots for a per-request future: a connection's task keeps the state of an
//! exchange in progress on the heap (so an idle connection's task stays small), and this hands
//! that state the memory a finished exchange left, instead of a `Box` allocation and free per
//! request.
//!
//! One [`FutureSlots`] per worker, for one future type (the exchange's): the first use fixes the
//! layout; a future of another layout falls back to a plain allocation. A slot is taken when
//! an exchange starts, the future is written into it and polled in place (pinned: it never moves),
//! and on completion, cancellation or panic the future is dropped in place and the slot goes
//! back to the free list (at most [`MAX_FREE`] kept; the rest freed). Single-threaded:
//! `Cell`/`RefCell`, never shared between workers. A leaf: it imports nothing from the crate.

use std::{
    alloc::{alloc, dealloc, handle_alloc_error, Layout},
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    ptr::NonNull,
};

/// Most free slots a worker keeps (about its peak of concurrent streams).
pub const MAX_FREE: usize = 256;

/// A worker's free slots.
#[derive(Debug, Default)]
pub struct FutureSlots {
    /// The layout every kept slot has (set by the first use).
    layout: Cell<Option<Layout>>,
    free: RefCell<Vec<NonNull<u8>>>,
}

impl FutureSlots {
    /// Run the future `make` returns to completion in a recycled slot. A plain function, not an
    /// `async fn`: the future is written into the slot here, so the caller's future holds only
    /// the slot's pointer, never a copy of its state (an `async fn` would keep it among its own
    /// fields). The slot is taken before `make` runs, so the compiler writes the new future's
    /// fields into it directly rather than build it on the stack and copy all of its (mostly
    /// unused) bytes: for the exchange, whose future is about 6 KiB, that copy was a `memcpy`
    /// of the whole size per request.
    pub fn run_with<F: Future>(&self, make: impl FnOnce() -> F) -> InSlot<'_, F> {
        let layout = Layout::new::<F>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            self.take(layout).cast::<F>()
        };
        // SAFETY: `ptr` is valid for writes of an `F` (allocated with `F`'s layout and unused,
        // or dangling and aligned for a zero-sized `F`).
        unsafe { ptr.as_ptr().write(make()) };
        InSlot {
            owner: self,
            ptr,
            layout,
        }
    }

    fn take(&self, layout: Layout) -> NonNull<u8> {
        if self.layout.get().is_none() {
            self.layout.set(Some(layout));
        }
        if self.layout.get() == Some(layout) {
            if let Some(p) = self.free.borrow_mut().pop() {
                return p;
            }
        }
        // SAFETY: `layout` has a non-zero size (`run_with` takes no slot for a zero-sized future).
        let p = unsafe { alloc(layout) };
        NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout))
    }

    fn give(&self, p: NonNull<u8>, layout: Layout) {
        if self.layout.get() == Some(layout) {
            let mut free = self.free.borrow_mut();
            if free.len() < MAX_FREE {
                free.push(p);
                return;
            }
        }
        // SAFETY: `p` was allocated by `take` with this `layout` and holds no value any more.
        unsafe { dealloc(p.as_ptr(), layout) };
    }
}

impl Drop for FutureSlots {
    fn drop(&mut self) {
        if let Some(layout) = self.layout.get() {
            for p in self.free.get_mut().drain(..) {
                // SAFETY: every free slot was allocated with the kept layout and is empty.
                unsafe { dealloc(p.as_ptr(), layout) };
            }
        }
    }
}

/// A future running in its slot: polled in place; dropped in place, and the slot freed, when
/// this is dropped.
pub struct InSlot<'a, F> {
    owner: &'a FutureSlots,
    ptr: NonNull<F>,
    layout: Layout,
}

impl<F: Future> Future for InSlot<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        // SAFETY: the future lives at `ptr` until `drop` drops it in place; it never moves, and
        // nothing else refers to it.
        unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()).poll(cx) }
    }
}

impl<F> Drop for InSlot<'_, F> {
    fn drop(&mut self) {
        // SAFETY: the slot holds a live `F` written by `run_with`, dropped exactly once, here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if self.layout.size() > 0 {
            self.owner.give(self.ptr.cast(), self.layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A future that holds `big` bytes of state and a drop counter, and yields once.
    async fn work(tag: u64, drops: Rc<Cell<usize>>) -> u64 {
        struct Count(Rc<Cell<usize>>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let _c = Count(drops);
        let big = [tag as u8; 512];
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
        tag + u64::from(big[511])
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn slots_are_reused_and_futures_dropped_once() {
        let slots = FutureSlots::default();
        let drops = Rc::new(Cell::new(0));
        for i in 0..10u64 {
            assert_eq!(
                block_on(slots.run_with(|| work(i, Rc::clone(&drops)))),
                i + i
            );
        }
        assert_eq!(drops.get(), 10);
        assert_eq!(slots.free.borrow().len(), 1, "one slot, reused");
    }

    #[test]
    fn a_cancelled_future_is_dropped_and_its_slot_kept() {
        let slots = FutureSlots::default();
        let drops = Rc::new(Cell::new(0));
        {
            let mut f = Box::pin(slots.run_with(|| work(1, Rc::clone(&drops))));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(drops.get(), 0);
        }
        assert_eq!(drops.get(), 1);
        assert_eq!(slots.free.borrow().len(), 1);
        // Several at once: each its own slot, all kept afterwards.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut fs: Vec<_> = (0..3)
            .map(|i| Box::pin(slots.run_with(|| work(i, Rc::clone(&drops)))))
            .collect();
        for f in &mut fs {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(slots.free.borrow().len(), 0);
        drop(fs);
        assert_eq!(drops.get(), 4);
        assert_eq!(slots.free.borrow().len(), 3);
    }

    #[test]
    fn a_zero_sized_future_takes_no_slot() {
        struct Unit;
        impl Future for Unit {
            type Output = u8;
            fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<u8> {
                std::task::Poll::Ready(7)
            }
        }
        let slots = FutureSlots::default();
        assert_eq!(block_on(slots.run_with(|| Unit)), 7);
        assert!(slots.layout.get().is_none(), "no layout fixed");
        assert!(slots.free.borrow().is_empty(), "nothing allocated or kept");
    }
}
