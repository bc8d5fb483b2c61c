//! A route's `retry_policy` at request time: which ends of a try call for another
//! ([`wants_retry`], Envoy's `retry_on` semantics), the jittered exponential back-off between
//! tries ([`backoff`]), and the endpoints already tried ([`Tried`], for `previous_hosts`).
//!
//! The forward path ([`super::forward`]) owns the loop: it asks here after each try, and
//! checks the rest itself (tries left, a body it can send again, the cluster's retry breaker,
//! the route deadline).

use std::time::Duration;

use crate::{
    config::{retry_on as on, RetryPolicy},
    rng::Rng,
};

/// How one try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryEnd {
    /// The upstream answered with this status (and, for gRPC, this `grpc-status` in the
    /// response head).
    Status(u16, Option<u32>),
    /// Connecting (or the TLS handshake) failed: nothing was sent.
    ConnectFailure,
    /// The connection closed or reset before a response; `sent`: the request had left.
    Reset { sent: bool },
    /// The per-try timeout passed before a response.
    Timeout,
    /// The HTTP/2 upstream refused the stream (it did not process it).
    RefusedStream,
}

/// Whether `end` is retriable under the policy's `retry_on`.
pub fn wants_retry(p: &RetryPolicy, end: TryEnd) -> bool {
    let r = p.retry_on;
    let any = |bits: u32| r & bits != 0;
    match end {
        TryEnd::Status(status, grpc) => {
            (any(on::FIVE_XX) && status >= 500)
                || (any(on::GATEWAY_ERROR) && matches!(status, 502..=504))
                || (any(on::RETRIABLE_4XX) && status == 409)
                || (any(on::RETRIABLE_STATUS_CODES) && p.retriable_status_codes.contains(&status))
                || grpc.is_some_and(|g| {
                    (any(on::GRPC_CANCELLED) && g == 1)
                        || (any(on::GRPC_DEADLINE_EXCEEDED) && g == 4)
                        || (any(on::GRPC_RESOURCE_EXHAUSTED) && g == 8)
                        || (any(on::GRPC_INTERNAL) && g == 13)
                        || (any(on::GRPC_UNAVAILABLE) && g == 14)
                })
        }
        // Envoy counts a connect failure as a reset (so `reset`, `5xx`, `gateway-error` take
        // it), and as a reset before the request went out.
        TryEnd::ConnectFailure => any(on::CONNECT_FAILURE
            | on::FIVE_XX
            | on::GATEWAY_ERROR
            | on::RESET
            | on::RESET_BEFORE_REQUEST),
        TryEnd::Reset { sent } => {
            any(on::RESET | on::FIVE_XX | on::GATEWAY_ERROR)
                || (!sent && any(on::RESET_BEFORE_REQUEST))
        }
        TryEnd::Timeout => any(on::FIVE_XX | on::GATEWAY_ERROR),
        TryEnd::RefusedStream => any(on::REFUSED_STREAM | on::FIVE_XX | on::RESET),
    }
}

/// The wait before retry number `n` (1 = the first retry): uniform in
/// `[0, (2^n - 1) × base)`, capped at `max_interval` (Envoy's jittered exponential back-off).
pub fn backoff(p: &RetryPolicy, n: u32, rng: &Rng) -> Duration {
    let base = p.base_interval.as_micros() as u64;
    let mult = (1u64 << n.min(20)) - 1;
    let span = base.saturating_mul(mult).max(1);
    let cap = p.max_interval.as_micros() as u64;
    // Uniform in 0..span without overflow for any span (`Rng::below` takes 32-bit ranges).
    let draw = ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as u64;
    Duration::from_micros(draw.min(cap))
}

/// Endpoints already tried by one request (indexes below 128; beyond, not remembered).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried(u128);

impl Tried {
    pub fn add(&mut self, i: usize) {
        if i < 128 {
            self.0 |= 1 << i;
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        i < 128 && self.0 & (1 << i) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_on: &str) -> RetryPolicy {
        let mut bits = 0;
        for w in retry_on.split(',') {
            bits |= on::NAMES.iter().find(|(n, _)| *n == w).unwrap().1;
        }
        RetryPolicy {
            retry_on: bits,
            num_retries: 1,
            per_try_timeout: None,
            per_try_idle_timeout: None,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            retriable_status_codes: vec![418],
            retriable_request_headers: vec![],
            avoid_previous_hosts: false,
            host_selection_retry_max_attempts: 1,
        }
    }

    #[test]
    fn retry_on_conditions_follow_envoy() {
        let p = policy("5xx");
        assert!(wants_retry(&p, TryEnd::Status(500, None)));
        assert!(wants_retry(&p, TryEnd::Status(503, None)));
        assert!(!wants_retry(&p, TryEnd::Status(404, None)));
        assert!(wants_retry(&p, TryEnd::ConnectFailure));
        assert!(wants_retry(&p, TryEnd::Reset { sent: true }));
        assert!(wants_retry(&p, TryEnd::Timeout));
        let p = policy("gateway-error");
        assert!(!wants_retry(&p, TryEnd::Status(500, None)));
        assert!(wants_retry(&p, TryEnd::Status(502, None)));
        assert!(wants_retry(&p, TryEnd::Status(504, None)));
        let p = policy("connect-failure");
        assert!(wants_retry(&p, TryEnd::ConnectFailure));
        assert!(!wants_retry(&p, TryEnd::Reset { sent: true }));
        assert!(!wants_retry(&p, TryEnd::Status(503, None)));
        assert!(!wants_retry(&p, TryEnd::Timeout));
        let p = policy("reset-before-request");
        assert!(wants_retry(&p, TryEnd::Reset { sent: false }));
        assert!(!wants_retry(&p, TryEnd::Reset { sent: true }));
        let p = policy("retriable-4xx,retriable-status-codes");
        assert!(wants_retry(&p, TryEnd::Status(409, None)));
        assert!(wants_retry(&p, TryEnd::Status(418, None)));
        assert!(!wants_retry(&p, TryEnd::Status(500, None)));
        let p = policy("unavailable,cancelled");
        assert!(wants_retry(&p, TryEnd::Status(200, Some(14))));
        assert!(wants_retry(&p, TryEnd::Status(200, Some(1))));
        assert!(!wants_retry(&p, TryEnd::Status(200, Some(13))));
        assert!(wants_retry(
            &policy("refused-stream"),
            TryEnd::RefusedStream
        ));
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let p = policy("5xx");
        let rng = Rng::new(42);
        for n in 1..=8 {
            let hi = (25_000u64 * ((1 << n) - 1)).min(250_000);
            let mut max_seen = 0;
            for _ in 0..2_000 {
                let d = backoff(&p, n, &rng).as_micros() as u64;
                assert!(d < hi.max(1) || d == 250_000, "retry {n}: {d}µs");
                max_seen = max_seen.max(d);
            }
            // Jittered over the whole span: the largest of 2000 draws is near its top.
            assert!(max_seen * 10 >= hi * 8, "retry {n}: max {max_seen} of {hi}");
        }
    }

    #[test]
    fn tried_remembers_endpoints() {
        let mut t = Tried::default();
        t.add(3);
        t.add(127);
        t.add(500);
        assert!(t.contains(3) && t.contains(127));
        assert!(!t.contains(4) && !t.contains(500));
    }
}
