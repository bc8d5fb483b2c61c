//! The control channel's messages: what the control thread (or the admin server, or the stats
//! aggregator on an admin read) tells a worker. Each worker owns the receiving end of one
//! unbounded `flume` channel of [`Control`]; the senders live on the control side.
//!
//! A leaf: it imports nothing from the crate, so the control side (admin, stats) and the worker
//! can both name the messages without importing each other.

/// New certificates for the TLS chains (a reload): for each chain, the identity of the chain
/// config the worker's TLS step was built from (or last updated to) and its replacement.
#[derive(Debug)]
pub struct CertUpdate {
    /// (old id, new id, the new server config); ids are the addresses of the control side's
    /// `Arc`s of the chains' TLS settings, which it keeps alive.
    pub chains: Vec<(usize, usize, std::sync::Arc<rustls::ServerConfig>)>,
}

/// A connection moved to another worker: (socket, peer, listener index in that worker's config).
pub type Adopt = (std::net::TcpStream, std::net::SocketAddr, usize);

/// An idle upstream connection moved to the next generation's worker (a reload): (socket,
/// cluster index and endpoint index in that worker's config).
pub type AdoptUpstream = (std::net::TcpStream, usize, usize);

/// The next generation of workers (a reload), for the connections the old one hands over.
#[derive(Debug)]
pub struct Successor {
    /// Each new worker's channel; old worker `i` hands to `workers[i % len]`.
    pub workers: Vec<flume::Sender<Adopt>>,
    /// Old listener index → the same listener's index in the new config (`None`: removed).
    pub listeners: Vec<Option<usize>>,
    /// Each new worker's channel for idle upstream connections; old worker `i` hands to
    /// `upstream[i % len]`.
    pub upstream: Vec<flume::Sender<AdoptUpstream>>,
    /// Old cluster index → the same cluster's index in the new config when its pooled
    /// connections can serve it unchanged (same name and endpoints, plain HTTP/1, no PROXY
    /// header); `None`: its idle connections close.
    pub clusters: Vec<Option<usize>>,
    /// Each old worker says here that it hands over from now on (the reload then answers).
    pub ack: flume::Sender<usize>,
}

/// Messages from the control thread (or the admin server) to a worker.
#[derive(Debug, Clone)]
pub enum Control {
    /// Drain and stop: the worker thread ends.
    Shutdown,
    /// Drain politely and stop (a successor took the sockets over): idle and new connections
    /// get their next request answered with `connection: close` until `drain_timeout`. With
    /// a [`Successor`] (a reload), idle plain connections and late accepts move to it instead.
    Handover(Option<std::sync::Arc<Successor>>),
    /// Ship the current interval's histograms to the stats aggregator now, tagged `seq`.
    FlushStats { seq: u64 },
    /// Stop accepting and drain connections, but keep the worker (and the process) running.
    DrainListeners,
    /// Use these certificates for new handshakes (established connections keep theirs).
    ReloadCerts(std::sync::Arc<CertUpdate>),
}
