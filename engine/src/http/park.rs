//! The parking lot: HTTP/1 keep-alive connections idle past `park_idle_after` (default 2 s)
//! leave their task and wait here, one small entry each, until their client sends again.
//!
//! What it owns: the worker's parked connections (socket, client address, listener) in a slab,
//! the worker's [`Epoll`] set they wait in, and their idle timeouts. Data flow: the connection
//! manager's idle wait times out at `park_idle_after`, quiesces the connection's receive and
//! hands the socket to [`ParkLot::park`]; its task ends. The lot's task ([`run`]) waits on the
//! epoll set (one poll operation) and on the worker's coarse clock: a socket with data resumes
//! as a new connection task ([`super::conn_manager::resume`]) that reads the request as any
//! other; a socket whose client closed is closed here without a task; every second, entries past
//! their idle timeout are closed. On drain every parked connection is closed, as an idle
//! connection is.
//!
//! Counting: a parked connection stays in `downstream_cx_active` (and in the exact balance's
//! load); its end is counted when it closes, here or in the resumed task. It leaves the drain's
//! live count (nothing to wait for: a drain closes it here), so the worker's allocator trim
//! (`runtime::worker`, after the live count halves) gives back what a crowd of parking tasks
//! freed; an empty lot gives its slab back.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    os::fd::{AsRawFd, OwnedFd},
    rc::Rc,
    time::Duration,
};

use crate::{
    http::ctx::{ListenerCtx, WorkerCtx},
    io::park::Epoll,
    stats::{dec, inc},
};

/// How often entries are checked for their idle timeout.
const SWEEP: Duration = Duration::from_secs(1);

/// A worker's parked connections.
pub struct ParkLot {
    /// `None`: parking is off (`park_idle_after: 0s`, or no epoll set).
    epoll: Option<Epoll>,
    after: Duration,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    last_sweep_ms: Cell<u64>,
}

impl std::fmt::Debug for ParkLot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParkLot({} slots)", self.slots.borrow().len())
    }
}

struct Slot {
    /// Bumped each time the slot is reused, so a stale readiness report finds nothing.
    generation: u32,
    parked: Option<Parked>,
}

struct Parked {
    sock: OwnedFd,
    peer: SocketAddr,
    listener: Rc<ListenerCtx>,
    /// Coarse-clock time at which the connection's idle timeout ends.
    expires_ms: u64,
}

impl ParkLot {
    /// Parking after `after` idle (zero: never).
    pub fn new(after: Duration) -> ParkLot {
        let epoll = if after.is_zero() {
            None
        } else {
            Epoll::new()
                .map_err(
                    |e| tracing::warn!(error = %e, "no epoll set: idle connections are not parked"),
                )
                .ok()
        };
        ParkLot {
            epoll,
            after,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            last_sweep_ms: Cell::new(0),
        }
    }

    /// How long a connection with this idle timeout waits before parking (`None`: it never
    /// parks, because parking is off or the idle timeout comes first).
    pub fn after(&self, idle_timeout: Duration) -> Option<Duration> {
        (self.epoll.is_some() && self.after < idle_timeout).then_some(self.after)
    }

    /// Park `sock` (idle, its receive quiesced) until data arrives, its client closes or the rest
    /// of its idle timeout passes. `false`: not parked (draining, or epoll refused it); the
    /// socket is closed and the caller counts the connection's end as usual.
    pub fn park(
        &self,
        w: &WorkerCtx,
        sock: OwnedFd,
        peer: SocketAddr,
        listener: Rc<ListenerCtx>,
        idle_left: Duration,
    ) -> bool {
        let Some(epoll) = &self.epoll else {
            return false;
        };
        if w.drain.closing_idle() {
            return false;
        }
        let raw = sock.as_raw_fd();
        let parked = Parked {
            sock,
            peer,
            listener,
            expires_ms: w.drain.deadline_in(idle_left),
        };
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i as usize,
            None => {
                slots.push(Slot {
                    generation: 0,
                    parked: None,
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let token = (u64::from(slot.generation) << 32) | index as u64;
        if epoll.add(raw, token).is_err() {
            self.free.borrow_mut().push(index as u32);
            return false;
        }
        slot.parked = Some(parked);
        inc(&w.stats.downstream_cx_parked);
        inc(&w.stats.downstream_cx_park_total);
        true
    }

    /// Take the entry `token` names, if it is still parked there.
    fn take(&self, token: u64) -> Option<Parked> {
        let index = (token & u64::from(u32::MAX)) as usize;
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(index)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        let p = slot.parked.take()?;
        self.free.borrow_mut().push(index as u32);
        Some(p)
    }

    /// Close a parked connection (idle timeout, client gone, drain).
    fn close(&self, w: &WorkerCtx, p: Parked) {
        drop(p.sock);
        w.stats.downstream_cx_parked_end(p.listener.index);
        if let Some(b) = &w.balance {
            b.release(w.id);
        }
        dec(&w.stats.downstream_cx_parked);
    }

    /// A parked socket is ready: resume it, or close it if its client only closed.
    fn wake(&self, w: &Rc<WorkerCtx>, token: u64, peer_closed: bool) {
        let Some(p) = self.take(token) else { return };
        if peer_closed && crate::io::park::only_eof(p.sock.as_raw_fd()) {
            self.close(w, p);
            return;
        }
        dec(&w.stats.downstream_cx_parked);
        let Parked {
            sock,
            peer,
            listener,
            ..
        } = p;
        match crate::io::Conn::resume(sock) {
            Ok(conn) => {
                let task = super::conn_manager::resume(conn, peer, listener, Rc::clone(w));
                compio::runtime::spawn(task).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "a parked connection could not resume");
                w.stats.downstream_cx_parked_end(listener.index);
                if let Some(b) = &w.balance {
                    b.release(w.id);
                }
            }
        }
    }

    /// A reload's hand-over: every parked connection whose listener the next generation has
    /// goes to it; the others stay (served once more when they wake, or closed at the end).
    fn hand_over_all(&self, w: &WorkerCtx) {
        let Some(epoll) = &self.epoll else { return };
        let mut moving = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            let mut free = self.free.borrow_mut();
            for (i, s) in slots.iter_mut().enumerate() {
                if s.parked
                    .as_ref()
                    .is_some_and(|p| w.can_hand_over(p.listener.index))
                {
                    moving.extend(s.parked.take());
                    free.push(i as u32);
                }
            }
        }
        for p in moving {
            epoll.remove(p.sock.as_raw_fd());
            dec(&w.stats.downstream_cx_parked);
            w.stats.downstream_cx_parked_end(p.listener.index);
            if let Some(b) = &w.balance {
                b.release(w.id);
            }
            let _ = w.hand_over(std::net::TcpStream::from(p.sock), p.peer, p.listener.index);
        }
    }

    /// Close every entry past its idle timeout (at most once per [`SWEEP`]).
    fn sweep(&self, w: &WorkerCtx, all: bool) {
        let now = w.drain.now_ms();
        if !all && now < self.last_sweep_ms.get() + SWEEP.as_millis() as u64 {
            return;
        }
        self.last_sweep_ms.set(now);
        let mut expired = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            let mut free = self.free.borrow_mut();
            for (i, s) in slots.iter_mut().enumerate() {
                if s.parked
                    .as_ref()
                    .is_some_and(|p| all || p.expires_ms <= now)
                {
                    expired.extend(s.parked.take());
                    free.push(i as u32);
                }
            }
        }
        for p in expired {
            self.close(w, p);
        }
        if w.stats
            .downstream_cx_parked
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            // Nobody parked: give the slab back too (no token can name a slot any more: an
            // entry is disarmed once it has reported, and re-armed with a new token).
            *self.slots.borrow_mut() = Vec::new();
            *self.free.borrow_mut() = Vec::new();
        }
    }
}

/// The lot's task, one per worker: resumes or closes parked connections as their sockets become
/// ready, closes them at their idle timeout, and closes all of them when the worker drains.
pub async fn run(w: Rc<WorkerCtx>) {
    use std::{future::Future, task::Poll};
    let lot = &w.parked;
    let Some(epoll) = &lot.epoll else { return };
    let mut wait = Box::pin(epoll.wait());
    let mut ready = Vec::with_capacity(64);
    let mut handed = false;
    loop {
        let mut tick = w.drain.waiter_for(SWEEP);
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if !handed && w.drain.handing() {
                return Poll::Ready(None);
            }
            tick.poll_idle(cx).map(|_| None)
        })
        .await;
        drop(tick);
        if w.drain.closing_idle() {
            lot.sweep(&w, true);
            return;
        }
        if !handed && w.drain.handing() {
            handed = true;
            lot.hand_over_all(&w);
        }
        if let Some(r) = woke {
            wait = Box::pin(epoll.wait());
            if let Err(e) = r {
                tracing::warn!(error = %e, "polling the parked connections failed");
                compio::time::sleep(SWEEP).await;
            }
            loop {
                ready.clear();
                let n = epoll.ready(&mut ready, 64);
                for &(token, closed) in &ready {
                    lot.wake(&w, token, closed);
                }
                if n < 64 {
                    break;
                }
            }
        }
        lot.sweep(&w, false);
    }
}
