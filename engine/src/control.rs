//! The control channel's messages: what the control thread (or the admin server, or the stats
//! aggregator on an admin read) tells a worker. Each worker owns the receiving end of one
//! unbounded `flume` channel of [`Control`]; the senders live on the control side.
//!
//! A leaf: it imports nothing from the crate, so the control side (admin, stats) and the worker
//! can both name the messages without importing each other.

/// Messages from the control thread (or the admin server) to a worker.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Drain and stop: the worker thread ends.
    Shutdown,
    /// Ship the current interval's histograms to the stats aggregator now, tagged `seq`.
    FlushStats { seq: u64 },
    /// Stop accepting and drain connections, but keep the worker (and the process) running.
    DrainListeners,
}
