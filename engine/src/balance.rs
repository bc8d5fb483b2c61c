//! Exact connection balance between workers (Envoy's `exact_balance`, HAProxy's least-loaded
//! thread): SO_REUSEPORT hashes each new connection to a worker, and a hash deals uneven hands
//! (50 connections land 30/20 or 17/33 as often as 25/25), so a worker that accepts a connection
//! while it holds more connections than the least loaded worker hands it over.
//!
//! Data flow: every worker's count of the connections it serves (or has been handed and not yet
//! picked up) is one cache-line-padded `AtomicU64` in [`Shared::loads`]. On accept, the
//! accepting worker reads every count (a few relaxed loads); if its own is the smallest (ties
//! included) it keeps the connection, else it adds one to the least loaded worker's count and
//! sends the socket (a duplicated descriptor as a `std` stream; the original is closed) over that
//! worker's channel; the receiving worker's handoff task serves it like one it accepted. The
//! count goes down when the connection ends. The cost is per connection, never per request, and
//! only imbalanced accepts pay the handoff (one `dup`, one channel send, one wake).
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

    /// The worker that should serve a connection `me` just accepted: `me` unless another
    /// worker serves fewer connections. The chosen worker's count is already raised.
    pub fn assign(&self, me: usize) -> usize {
        let mine = self.loads[me].0.load(Relaxed);
        let mut best = me;
        let mut least = mine;
        for (i, l) in self.loads.iter().enumerate() {
            let v = l.0.load(Relaxed);
            if v < least {
                best = i;
                least = v;
            }
        }
        self.loads[best].0.fetch_add(1, Relaxed);
        best
    }

    /// `me` serves a connection it accepted on a listener that does not balance: count it.
    pub fn keep(&self, me: usize) {
        self.loads[me].0.fetch_add(1, Relaxed);
    }

    /// A connection served by `worker` ended (or was never taken).
    pub fn release(&self, worker: usize) {
        let _ = self.loads[worker]
            .0
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
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
}
