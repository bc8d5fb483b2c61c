//! Exact connection balance between workers (Envoy's `exact_balance`, HAProxy's least-loaded
//! thread): SO_REUSEPORT hashes each new connection to a worker, and a hash deals uneven hands
//! (50 connections land 30/20 or 17/33 as often as 25/25), so a worker that accepts a connection
//! while it holds clearly more connections than the least loaded worker hands it over.
//!
//! Data flow: every worker's count of the connections it serves (or has been handed and not yet
//! picked up) is one cache-line-padded `AtomicU64` in [`Shared::loads`]. On accept, the
//! accepting worker reads every count (a few relaxed loads) and keeps the connection unless its
//! own count exceeds the smallest by more than the [`slack`] (1/32 of the mean count, rounded
//! down: zero while fewer than 32 connections per worker are open, so small counts split
//! exactly); otherwise it adds one to the least loaded worker's count and sends the socket (a
//! duplicated descriptor as a `std` stream; the original is closed) over that worker's channel;
//! the receiving worker's handoff task serves it like one it accepted. The count goes down when
//! the connection ends. The cost is per connection, never per request: every accept pays the
//! loads, and only the accepts beyond the slack pay the handoff (one `dup`, one channel send,
//! one wake), counted as `listener.<address>.downstream_cx_handoff`.
//!
//! Why a slack: with a new connection per request, counts move on every request, and a rule of
//! "hand over whenever above the minimum" hands over about a third of all accepts (measured:
//! 50 slots, 2 workers), much of it back and forth as the counts swing. A slack lets them drift
//! before a handoff pulls them back, and the split stays within `slack + 1` of even; 1/32 of the
//! mean keeps 50 keep-alive connections on two workers at 25/25 (HAProxy's split), which 1/16
//! did not (docs/benchmarks.md, "Exact balance with a slack").
//!
//! A connection still lives and dies on one worker: it is handed over before any byte is read.
//!
//! A leaf: it imports nothing from the crate. The control thread (`runtime`) builds the
//! [`Shared`] state, the accept loops (`listener`) assign and hand over, and the connection
//! manager (`http`) holds a [`LoadGuard`] while it serves.

use std::{
    net::SocketAddr,
    os::fd::AsFd,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

/// One worker's connection count, alone on its cache line (counts of different workers are
/// written by different cores).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct Load(AtomicU64);

/// A connection on its way to another worker.
#[derive(Debug)]
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// Index of the listener it was accepted on (`Config::listeners`).
    pub listener: usize,
}

/// What all workers share: their counts and each worker's handoff channel.
#[derive(Debug)]
pub struct Shared {
    loads: Vec<Load>,
    senders: Vec<flume::Sender<Handoff>>,
}

impl Shared {
    /// For `n` workers; the receivers go to the workers, in order.
    pub fn new(n: usize) -> (Arc<Shared>, Vec<flume::Receiver<Handoff>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::unbounded()).unzip();
        (
            Arc::new(Shared {
                loads: (0..n).map(|_| Load::default()).collect(),
                senders,
            }),
            receivers,
        )
    }

    /// The worker that should serve a connection `me` just accepted ([`choose`]). The chosen
    /// worker's count is already raised.
    pub fn assign(&self, me: usize) -> usize {
        let to = choose(me, self.loads.iter().map(|l| l.0.load(Relaxed)));
        self.loads[to].0.fetch_add(1, Relaxed);
        to
    }

    /// `me` serves a connection it accepted on a listener that does not balance: count it.
    pub fn keep(&self, me: usize) {
        self.loads[me].0.fetch_add(1, Relaxed);
    }

    /// A connection served by `worker` ended (or was never taken).
    pub fn release(&self, worker: usize) {
        // A compare-exchange loop rather than `fetch_update` (deprecated from Rust 1.99 for
        // `try_update`, which the toolchain we build with does not have yet).
        let load = &self.loads[worker].0;
        let mut v = load.load(Relaxed);
        while v > 0 {
            match load.compare_exchange_weak(v, v - 1, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
    }

    /// Hand an accepted connection to `to`. On failure (the worker is gone, or the descriptor
    /// could not be duplicated) the connection comes back to be served here; the caller then
    /// moves the count with [`Shared::reassign`].
    pub fn send(
        &self,
        to: usize,
        stream: compio::net::TcpStream,
        peer: SocketAddr,
        listener: usize,
    ) -> Result<(), compio::net::TcpStream> {
        let owned = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(_) => return Err(stream),
        };
        let std_stream = std::net::TcpStream::from(owned);
        let msg = Handoff {
            stream: std_stream,
            peer,
            listener,
        };
        match self.senders[to].send(msg) {
            // The original descriptor closes here; the duplicate travels.
            Ok(()) => Ok(()),
            Err(_) => Err(stream),
        }
    }

    /// Move one count from `from` to `to` (a handoff that did not happen).
    pub fn reassign(&self, from: usize, to: usize) {
        self.release(from);
        self.loads[to].0.fetch_add(1, Relaxed);
    }
}

/// How far above the least loaded worker a worker may be and still keep a connection it
/// accepted: 1/32 of the mean count, rounded down (`total` connections over `workers`): zero
/// while fewer than 32 connections per worker are open, so 50 on two workers split 25/25.
pub fn slack(total: u64, workers: usize) -> u64 {
    total / (32 * workers.max(1) as u64)
}

/// Who serves a connection worker `me` accepted, given every worker's count (`loads`, in worker
/// order): `me` while its count is within [`slack`] of the smallest, else the least loaded
/// worker (the first of equals).
pub fn choose(me: usize, loads: impl Iterator<Item = u64>) -> usize {
    let (mut mine, mut least, mut best, mut total, mut n) = (0, u64::MAX, me, 0u64, 0);
    for (i, v) in loads.enumerate() {
        if i == me {
            mine = v;
        }
        if v < least {
            least = v;
            best = i;
        }
        total = total.saturating_add(v);
        n += 1;
    }
    if mine <= least.saturating_add(slack(total, n)) {
        me
    } else {
        best
    }
}

/// Keeps a worker's count up while it serves a connection.
pub struct LoadGuard<'a> {
    shared: Option<&'a Shared>,
    worker: usize,
}

impl<'a> LoadGuard<'a> {
    /// A connection whose count was raised for `worker` ([`Shared::assign`], [`Shared::keep`]);
    /// `None`: one worker, nothing to balance.
    pub fn new(shared: Option<&'a Shared>, worker: usize) -> LoadGuard<'a> {
        LoadGuard { shared, worker }
    }
}

impl LoadGuard<'_> {
    /// The connection is parked (`http::park`): the worker keeps its count; the connection's
    /// end releases it (a new guard on resume, or [`Shared::release`]).
    pub fn park(self) {
        std::mem::forget(self);
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.release(self.worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_wins_and_ties_stay_home() {
        let (s, _rx) = Shared::new(3);
        // Worker 0 accepts six connections in a row: they spread 2/2/2.
        let got: Vec<usize> = (0..6).map(|_| s.assign(0)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
        // Worker 1 accepts one: tie everywhere, it keeps it.
        assert_eq!(s.assign(1), 1);
        s.release(1);
        s.release(1);
        s.release(1);
        assert_eq!(s.assign(2), 1);
        assert_eq!(s.assign(0), 1);
        // Releases never go below zero.
        for _ in 0..10 {
            s.release(2);
        }
        assert_eq!(s.assign(0), 2);
    }

    #[test]
    fn slack_is_a_thirty_second_of_the_mean() {
        assert_eq!(slack(0, 2), 0);
        assert_eq!(slack(50, 2), 0, "50 connections on 2 workers: exact");
        assert_eq!(slack(63, 2), 0);
        assert_eq!(slack(64, 2), 1);
        assert_eq!(slack(1000, 2), 15);
        assert_eq!(slack(96, 3), 1);
        assert_eq!(slack(5, 0), 0, "no workers: no division by zero");
    }

    #[test]
    fn a_worker_keeps_connections_within_the_slack() {
        let pick = |me: usize, loads: &[u64]| choose(me, loads.iter().copied());
        // Few connections: the least loaded serves, ties stay home.
        assert_eq!(pick(0, &[1, 0]), 1);
        assert_eq!(pick(0, &[1, 1]), 0);
        assert_eq!(pick(1, &[0, 3, 0]), 0, "the first of equals");
        // 50 open (slack 0): one above the minimum moves.
        assert_eq!(pick(0, &[25, 24]), 1);
        // 64 to 66 open (slack 1): one above the minimum stays, two above moves.
        assert_eq!(pick(0, &[32, 32]), 0);
        assert_eq!(pick(0, &[33, 32]), 0);
        assert_eq!(pick(0, &[34, 32]), 1);
        // 1000 open (slack 15).
        assert_eq!(pick(1, &[493, 507]), 1);
        assert_eq!(pick(1, &[492, 508]), 0);
        // Three workers, 96 open (slack 1): measured against the least loaded of all.
        assert_eq!(pick(2, &[48, 23, 25]), 1);
        assert_eq!(pick(2, &[49, 23, 24]), 2);
    }

    #[test]
    fn counts_stay_within_slack_plus_one_of_even() {
        // Worker 0 accepts everything (the hash's worst case); worker 1 gets its handoffs.
        let (s, _rx) = Shared::new(2);
        for opened in 1..=200u64 {
            s.assign(0);
            let a = s.loads[0].0.load(Relaxed);
            let b = s.loads[1].0.load(Relaxed);
            assert_eq!(a + b, opened);
            assert!(a.abs_diff(b) <= slack(opened, 2) + 1, "{a}/{b}");
        }
        // 50 open at once, accepted unevenly: 25/25.
        let (s, _rx) = Shared::new(2);
        for i in 0..50 {
            s.assign(i % 3 % 2);
        }
        let (a, b) = (s.loads[0].0.load(Relaxed), s.loads[1].0.load(Relaxed));
        assert_eq!((a, b), (25, 25));
    }
}
