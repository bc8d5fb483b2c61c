//! Raw bytes both ways between two connections until both sides have closed: the one copy loop
//! behind the `tcp_proxy` network filter and the HTTP upgrade tunnel after a 101 (the router's
//! `switch_protocols` step).
//!
//! Each direction reads from one side and writes to the other, one piece in flight (the next
//! read is posted only when the last write has completed, so a slow receiver stops the reads:
//! TCP backpressure, bounded memory). A direction starts on the worker's provided buffers
//! (16 KiB per receive, zero-copy: the pool buffer itself is handed to the write, and nothing is
//! held while the sender is quiet). When a receive comes back full — the sender is ahead of us —
//! the direction leases one 1 MiB bulk buffer from the worker ([`BulkBufs`], the same buffers
//! large HTTP bodies use) and moves 1 MiB pieces until a receive comes back short, then gives the
//! buffer back and returns to pool reads. A 1 GiB stream costs about 1,024 receives and sends
//! each way instead of 65,536.
//!
//! Half-close: when one side sends FIN, the other side's write half is shut down
//! (`shutdown(SHUT_WR)`), and the other direction keeps flowing until it ends too. A read or
//! write error (a reset) on either side ends both directions at once.
//!
//! Idle timeout: every piece stamps the worker's coarse clock into a cell both directions share;
//! one watchdog per tunnel sleeps on the worker's tick until that stamp plus the timeout, so a
//! tunnel costs no runtime timer and no clock read per read. When no byte has moved either way
//! for the timeout, both sides close. Draining does not cut a tunnel short (the worker's
//! `drain_timeout` at shutdown does).
//!
//! Sits below `http` and `tcp_proxy`: it needs only the I/O seam, the coarse clock and the stats
//! counters.

use std::{
    cell::Cell, future::Future, pin::pin, sync::atomic::AtomicU64, task::Poll, time::Duration,
};

use bytes::BytesMut;

use crate::{
    drain::Drain,
    io::{BulkBufs, Conn, BULK_LEN, READ_BUF_LEN},
    stats::{self, WorkerStats},
};

/// What a tunnel uses of its worker, and how it is bounded.
#[derive(Clone, Copy)]
pub struct Tunnel<'a> {
    /// The worker's coarse clock (idle timeout).
    pub drain: &'a Drain,
    /// No byte either way this long closes both sides; `None`: no limit.
    pub idle: Option<Duration>,
    /// The worker's bulk buffers.
    pub bulk: &'a BulkBufs,
    /// Where bulk use is counted (`worker.<n>.body_bulk_runs`, `body_bulk_no_buffer`).
    pub stats: &'a WorkerStats,
    /// Live byte counters, `a → b` and `b → a` (e.g. `tcp.<prefix>.downstream_cx_rx_bytes_total`
    /// and `_tx_`), added to as each piece is written.
    pub counters: [Option<&'a AtomicU64>; 2],
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their sending half, in either order.
    Closed,
    /// A read or write failed on one side (a reset): both were closed.
    Failed,
    /// No byte moved either way for the idle timeout: both were closed.
    IdleTimeout,
}

/// What went through a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub end: End,
    /// Bytes written to `b` (read from `a`), including `to_b`.
    pub a_to_b: u64,
    /// Bytes written to `a` (read from `b`), including `to_a`.
    pub b_to_a: u64,
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The sender closed; the receiver's write half was shut down.
    Eof,
    /// A read or write failed.
    Failed,
}

/// How a bulk run ended.
enum BulkEnd {
    Eof,
    Slowed,
    NoBuffers,
    Failed,
}

impl Tunnel<'_> {
    /// Copy both ways between `a` and `b` until both have closed (or one fails, or the tunnel
    /// is idle for the timeout). `to_b` / `to_a` hold bytes already read that belong to the
    /// other side; they are written first.
    pub async fn run(&self, a: &Conn, to_b: BytesMut, b: &Conn, to_a: BytesMut) -> Outcome {
        let last = Cell::new(self.drain.now_ms());
        let moved = [Cell::new(0u64), Cell::new(0u64)];
        let mut ab = pin!(self.one_way(a, to_b, b, &moved[0], self.counters[0], &last));
        let mut ba = pin!(self.one_way(b, to_a, a, &moved[1], self.counters[1], &last));
        let mut idle = pin!(self.watch_idle(&last));
        let mut done = [false, false];
        let end = std::future::poll_fn(|cx| {
            for (i, dir) in [ab.as_mut(), ba.as_mut()].into_iter().enumerate() {
                if done[i] {
                    continue;
                }
                match dir.poll(cx) {
                    Poll::Ready(Dir::Failed) => return Poll::Ready(End::Failed),
                    Poll::Ready(Dir::Eof) => done[i] = true,
                    Poll::Pending => {}
                }
            }
            if done == [true, true] {
                return Poll::Ready(End::Closed);
            }
            idle.as_mut().poll(cx).map(|()| End::IdleTimeout)
        })
        .await;
        Outcome {
            end,
            a_to_b: moved[0].get(),
            b_to_a: moved[1].get(),
        }
    }

    /// `n` more bytes went one way.
    #[inline]
    fn progress(&self, n: usize, moved: &Cell<u64>, counter: Option<&AtomicU64>, last: &Cell<u64>) {
        moved.set(moved.get() + n as u64);
        if let Some(c) = counter {
            stats::add(c, n as u64);
        }
        last.set(self.drain.now_ms());
    }

    /// One direction: `src` to `dst` until `src` closes (then `dst`'s write half is shut down).
    async fn one_way(
        &self,
        src: &Conn,
        first: BytesMut,
        dst: &Conn,
        moved: &Cell<u64>,
        counter: Option<&AtomicU64>,
        last: &Cell<u64>,
    ) -> Dir {
        let _release = crate::io::ReleaseMultishot(src);
        if !first.is_empty() {
            let n = first.len();
            if dst.write_all(first.freeze()).await.is_err() {
                return Dir::Failed;
            }
            self.progress(n, moved, counter, last);
        }
        loop {
            let buf = match src.read().await {
                Ok(Some(buf)) => buf,
                Ok(None) => break,
                Err(_) => return Dir::Failed,
            };
            let n = buf.len();
            if dst.write_all(buf).await.is_err() {
                return Dir::Failed;
            }
            self.progress(n, moved, counter, last);
            if n >= READ_BUF_LEN {
                match self.bulk_run(src, dst, moved, counter, last).await {
                    BulkEnd::Eof => break,
                    BulkEnd::Failed => return Dir::Failed,
                    BulkEnd::Slowed | BulkEnd::NoBuffers => {}
                }
            }
        }
        match dst.shutdown_write().await {
            Ok(()) => Dir::Eof,
            // The receiver is gone already (it reset): nothing more can flow either way.
            Err(_) => Dir::Failed,
        }
    }

    /// 1 MiB pieces through a leased bulk buffer while receives come back full.
    async fn bulk_run(
        &self,
        src: &Conn,
        dst: &Conn,
        moved: &Cell<u64>,
        counter: Option<&AtomicU64>,
        last: &Cell<u64>,
    ) -> BulkEnd {
        let Some(mut lease) = self.bulk.lease() else {
            stats::inc(&self.stats.body_bulk_no_buffer);
            return BulkEnd::NoBuffers;
        };
        // Bulk receives bypass the pool: stop and drain the multishot receive first (until it
        // is quiet the pool path goes on; released when this run ends or the direction does).
        if !src.hold_multishot() {
            return BulkEnd::Slowed;
        }
        stats::inc(&self.stats.body_bulk_runs);
        let mut buf = lease.take();
        let end = loop {
            let (r, b) = src.read_into(buf, BULK_LEN).await;
            buf = b;
            let n = match r {
                Ok(0) => break BulkEnd::Eof,
                Ok(n) => n,
                Err(_) => break BulkEnd::Failed,
            };
            let (r, b) = dst.write_all_keep(buf).await;
            buf = b;
            if r.is_err() {
                break BulkEnd::Failed;
            }
            self.progress(n, moved, counter, last);
            if n < READ_BUF_LEN {
                break BulkEnd::Slowed;
            }
        };
        lease.put(buf);
        src.release_multishot();
        end
    }

    /// Ready once no byte has moved either way for the idle timeout (never, without one).
    async fn watch_idle(&self, last: &Cell<u64>) {
        let Some(idle) = self.idle else {
            return std::future::pending().await;
        };
        let idle_ms = idle.as_millis() as u64;
        loop {
            let deadline = last.get().saturating_add(idle_ms);
            let mut waiter = self.drain.waiter_until(deadline);
            std::future::poll_fn(|cx| waiter.poll_deadline(cx)).await;
            if self.drain.now_ms().saturating_sub(last.get()) >= idle_ms {
                return;
            }
        }
    }
}
