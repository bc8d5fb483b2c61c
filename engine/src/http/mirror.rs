//! Request mirroring (`request_mirror_policies`): a copy of a request goes to another
//! cluster, fire and forget; its response is read and dropped.
//!
//! The router ([`super::forward`]) decides once per request, before the first try, which of
//! the route's mirrors take it (each by its fraction), encodes a copy of the request head with
//! the authority's host suffixed `-shadow` (Envoy's spelling: `api:8080` → `api-shadow:8080`),
//! and [`Mirrors::push`]es a [`Job`] with the head and the body it kept (a body of known length
//! up to 64 KiB is read whole first when the route mirrors; a request whose body streams past
//! that is not mirrored). One task per worker ([`run`]) takes the jobs and starts one exchange
//! each on the worker's runtime: pick an endpoint of the mirror cluster, take a pooled
//! connection or connect (TLS included), write, read the response head and its body to the
//! end, and give the connection back to the pool ([`super::forward::release`]). Nothing of it
//! reaches the client or delays the request: the job holds no reference to the stream.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] mirrored exchanges per worker at once; beyond that a
//! copy is dropped and counted as `upstream_rq_pending_overflow` on the mirror cluster (as is
//! a copy its `max_requests` breaker refuses). Mirror clusters speak HTTP/1 (an
//! HTTP/2 or `upstream_proxy_protocol` cluster is not mirrored to: the copy is dropped and a
//! debug line says why).

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};

use crate::{
    config::ClusterId,
    http::{
        body::Pieces,
        ctx::WorkerCtx,
        h1::{self, BodyFraming},
    },
    io::Conn,
    stats,
    upstream::ActiveRq,
};

/// Mirrored exchanges one worker runs at once (queued ones included).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Largest response head read from a mirror.
const MAX_HEAD: usize = 64 * 1024;

/// One copy of a request to send.
#[derive(Debug)]
pub struct Job {
    pub cluster: ClusterId,
    /// The encoded HTTP/1.1 head (host already `-shadow`).
    pub head: BytesMut,
    /// The whole body (`None`: none).
    pub body: Option<Bytes>,
    /// A `HEAD` request (its response has no body).
    pub is_head: bool,
    /// The route's timeout, for the whole exchange (`None`: the cluster's idle timeout).
    pub timeout: Option<Duration>,
}

/// A worker's queue of mirror jobs and the wake-up of its task.
#[derive(Default)]
pub struct Mirrors {
    jobs: RefCell<VecDeque<Job>>,
    waker: Cell<Option<Waker>>,
    in_flight: Cell<usize>,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mirrors({} queued, {} in flight)",
            self.jobs.borrow().len(),
            self.in_flight.get()
        )
    }
}

impl Mirrors {
    /// Queue a copy; `false` when the worker already runs [`MAX_IN_FLIGHT`] (it is dropped).
    pub fn push(&self, job: Job) -> bool {
        if self.in_flight.get() + self.jobs.borrow().len() >= MAX_IN_FLIGHT {
            return false;
        }
        self.jobs.borrow_mut().push_back(job);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        true
    }

    async fn next(&self) -> Job {
        std::future::poll_fn(|cx| match self.jobs.borrow_mut().pop_front() {
            Some(j) => Poll::Ready(j),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// The `-shadow` authority of `authority`: the suffix goes on the host, before a port.
pub fn shadow_authority(authority: &[u8]) -> Vec<u8> {
    // A port follows the last ':' unless that colon is inside an IPv6 literal.
    let host_end = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if !authority[i..].contains(&b']') => i,
        _ => authority.len(),
    };
    let mut out = Vec::with_capacity(authority.len() + 7);
    out.extend_from_slice(&authority[..host_end]);
    out.extend_from_slice(b"-shadow");
    out.extend_from_slice(&authority[host_end..]);
    out
}

/// The worker's mirror task: starts one exchange per queued job.
pub async fn run(w: Rc<WorkerCtx>) {
    loop {
        let job = w.mirrors.next().await;
        w.mirrors.in_flight.set(w.mirrors.in_flight.get() + 1);
        let w2 = Rc::clone(&w);
        compio::runtime::spawn(async move {
            exchange(&w2, job).await;
            w2.mirrors
                .in_flight
                .set(w2.mirrors.in_flight.get().saturating_sub(1));
        })
        .detach();
    }
}

/// One mirrored exchange, start to end; every failure just ends it (counted like the router's).
async fn exchange(w: &WorkerCtx, job: Job) {
    let Some(cluster) = w.clusters.clusters.get(job.cluster) else {
        return;
    };
    if cluster.http2.is_some() || cluster.proxy_protocol.is_some() {
        tracing::debug!(cluster = %cluster.name, "mirror cluster is HTTP/2 or sends a PROXY header: copy dropped");
        return;
    }
    let Some(ep) = cluster.pick() else {
        return;
    };
    let cstats = w.stats.cluster(job.cluster);
    if !cluster.breakers.request_allowed() {
        if let Some(c) = cstats {
            stats::inc(&c.upstream_rq_pending_overflow);
        }
        return;
    }
    let _active = ActiveRq::new(cluster, ep);
    w.stats.upstream_rq(job.cluster, ep.index);
    let timeout = job.timeout.unwrap_or(cluster.idle_timeout);
    let deadline = w.drain.deadline_in(timeout);
    let route_deadline = Cell::new(Some(Some(deadline)));
    let t = super::forward::Target {
        cluster,
        ep,
        cstats,
        timeout: Some(timeout),
        proxied: None,
        route_deadline: &route_deadline,
        per_try: None,
        per_try_idle: None,
    };
    let now = w.drain.now_ms();
    let pooled = ep
        .pool
        .checkout(cluster.idle_timeout, now)
        .filter(|(c, _)| !cluster.too_old(c, now));
    let (up, posted) = match pooled {
        Some((c, r)) => {
            if let Some(s) = cstats {
                stats::inc(&s.upstream_cx_pool_reuse);
            }
            (c, Some(r))
        }
        None => {
            let c = match w
                .drain
                .before(deadline, Conn::connect(ep.address, cluster.connect_timeout))
                .await
            {
                Some(Ok(c)) => c,
                _ => {
                    if let Some(s) = cstats {
                        stats::inc(&s.upstream_cx_connect_fail);
                    }
                    return;
                }
            };
            if let Some(s) = cstats {
                stats::inc(&s.upstream_cx_total);
            }
            let c = match &cluster.tls {
                None => c,
                Some(tls) => match Box::pin(super::forward::tls_connect(w, &t, tls, c)).await {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            cluster.connected(&c, now);
            (Rc::new(c), None)
        }
    };
    up.count_use();
    let mut head = job.head;
    let written = match job.body {
        Some(b) if !b.is_empty() => up.write_vectored_all_keep((head, (b,))).await.0,
        _ => {
            let (r, h) = up.write_all_keep(std::mem::take(&mut head)).await;
            drop(h);
            r
        }
    };
    if written.is_err() {
        return;
    }
    // The first bytes: from the read the pool had posted, or a new one.
    let first = match posted {
        Some(p) => w.drain.before(deadline, p).await,
        None => w.drain.before(deadline, up.read()).await,
    };
    let mut pend = match first {
        Some(Ok(Some(b))) => BytesMut::from(&b[..]),
        _ => return,
    };
    // The response head (interim 1xx answers skipped).
    let (framing, keep_alive, status) = loop {
        let mut headers = h1::header_slots();
        match h1::parse_response(&pend, &mut headers, job.is_head, MAX_HEAD) {
            Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                let n = r.head_len;
                let _ = pend.split_to(n);
                if !pend.is_empty() {
                    continue;
                }
            }
            Ok(Some(r)) => {
                let out = (r.framing, r.keep_alive, r.status);
                let n = r.head_len;
                let _ = pend.split_to(n);
                break out;
            }
            Ok(None) => {}
            Err(_) => return,
        }
        match w.drain.before(deadline, up.read()).await {
            Some(Ok(Some(b))) => pend.extend_from_slice(&b),
            _ => return,
        }
    };
    w.stats.upstream_status(job.cluster, status);
    if framing == BodyFraming::UntilClose || status == 101 {
        return;
    }
    // The body, read to its end and dropped; the connection is reused only when nothing
    // follows it.
    let mut pieces = Pieces::new(framing, pend, h1::ChunkedDecoder::new());
    let per_read = Some((&w.drain, timeout));
    loop {
        match pieces.next(&up, per_read).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    if keep_alive && pieces.input.is_empty() {
        super::forward::release(&t, w, &up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_goes_before_the_port() {
        assert_eq!(shadow_authority(b"api"), b"api-shadow");
        assert_eq!(shadow_authority(b"api:8080"), b"api-shadow:8080");
        assert_eq!(shadow_authority(b"[::1]:80"), b"[::1]-shadow:80");
        assert_eq!(shadow_authority(b"[::1]"), b"[::1]-shadow");
    }
}
