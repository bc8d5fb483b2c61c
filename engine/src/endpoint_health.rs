//! A leaf beside `upstream`: it imports only the config, so the workers' upstream views,
//! the health thread, the stats aggregator and the admin server can all name it.
//!
//! Endpoint health, shared between the control side (which decides it) and the workers (which
//! route by it), without a lock on the request path.
//!
//! One [`ClusterHealth`] per cluster that has `health_checks` or `outlier_detection` (others
//! have none and pay one `Option` check per pick). The control side's health checker and
//! outlier detector (the `health` module) set a host's [`HostHealth::flags`] and then bump the
//! cluster's generation; a worker compares the generation with the one it last saw on each
//! pick (one relaxed load of a line nobody writes in steady state) and, when it moved,
//! rebuilds its own list of healthy endpoints and the balancer over them (`upstream::select`).
//! Below `healthy_panic_threshold` percent healthy, the worker routes to every endpoint
//! (Envoy's panic mode) and counts `lb_healthy_panic`.
//!
//! Outlier detection's inputs flow the other way: each worker reports every finished exchange
//! ([`ClusterHealth::report`]) into the host's consecutive-failure counters (atomics: a
//! consecutive run spans workers, as in Envoy). The worker whose report reaches a threshold
//! ejects the host itself when the detection is always enforced (`enforcing_*: 100`, the
//! default for consecutive 5xx) and `max_ejection_percent` allows ([`ClusterHealth::try_eject`]:
//! a compare-and-swap on the cluster's ejected count, then the flag), so its very next pick,
//! and every other worker's, already skips the host; then it sends one message to the
//! detector, which keeps the ejection's time and stats (or, for a detection enforced by
//! chance, decides). A success resets a counter only when it is not already zero (a load, no
//! store, in steady state). Success-rate inputs are the per-worker endpoint counters (`rq_total`, `rq_error`),
//! which the detector reads every `interval`.

use std::sync::{
    atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
    Arc,
};

use crate::config::OutlierDetection;

/// The endpoint failed its active health check (or has not passed one yet).
pub const FAILED_ACTIVE_HC: u8 = 1;
/// The endpoint is ejected by outlier detection.
pub const FAILED_OUTLIER: u8 = 2;

/// Why a worker tells the detector about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
}

/// What the worker that saw a threshold did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Enforced by chance (`enforcing_*` between 1 and 99): the detector draws.
    Undecided,
    /// Not enforced (`enforcing_*: 0`): counted as detected only.
    NotEnforced,
    /// Ejected by the worker: the detector records it.
    Ejected,
    /// Already ejected (by another worker or the detector): nothing to do.
    Already,
    /// `max_ejection_percent` refused it.
    Overflow,
}

/// A worker's message to the outlier detector: (cluster, endpoint, what reached its threshold,
/// what the worker did).
pub type OutlierEvent = (usize, usize, Detected, Decision);

/// One host's shared state. Padded to a cache line: workers write the counters of the hosts
/// that fail, and one failing host must not slow the reads of another's.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct HostHealth {
    /// [`FAILED_ACTIVE_HC`] | [`FAILED_OUTLIER`]; 0 = healthy.
    pub flags: AtomicU8,
    pub consecutive_5xx: AtomicU32,
    pub consecutive_gateway: AtomicU32,
    pub consecutive_local: AtomicU32,
    /// The last active check's result ([`CheckResult`] as `u8`; written by the checker only).
    pub last_check: AtomicU8,
    /// The status of the last HTTP check's answer (0: none).
    pub last_status: std::sync::atomic::AtomicU16,
    /// Until when an outlier ejection lasts ([`clock_ms`]; 0: not ejected). Written by the
    /// outlier detector only; a reload's new detector starts from it.
    pub ejected_until_ms: std::sync::atomic::AtomicU64,
    /// The detector's ejection multiplier for this host (each ejection lasts
    /// `base_ejection_time` times it).
    pub num_ejections: AtomicU32,
}

/// Milliseconds since the process's first call, a clock every generation's health thread
/// shares (at least 1, so that 0 can mean "none").
pub fn clock_ms(at: std::time::Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The instant of a [`clock_ms`] reading.
pub fn clock_instant(ms: u64) -> std::time::Instant {
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    epoch + std::time::Duration::from_millis(ms)
}

static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// What the last active check of a host found (for `/clusters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CheckResult {
    NotYet = 0,
    Passed = 1,
    Timeout = 2,
    ConnectFailed = 3,
    /// Closed or reset before an answer, or an answer that was not HTTP (or gRPC).
    BadAnswer = 4,
    /// An HTTP status outside `expected_statuses`, or a gRPC status other than SERVING.
    Status = 5,
    /// The TCP check's expected bytes did not come.
    Payload = 6,
}

impl CheckResult {
    pub fn from_u8(v: u8) -> CheckResult {
        match v {
            1 => CheckResult::Passed,
            2 => CheckResult::Timeout,
            3 => CheckResult::ConnectFailed,
            4 => CheckResult::BadAnswer,
            5 => CheckResult::Status,
            6 => CheckResult::Payload,
            _ => CheckResult::NotYet,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CheckResult::NotYet => "not checked yet",
            CheckResult::Passed => "passed",
            CheckResult::Timeout => "timed out",
            CheckResult::ConnectFailed => "connect failed",
            CheckResult::BadAnswer => "closed, reset or not a valid answer",
            CheckResult::Status => "unexpected status",
            CheckResult::Payload => "expected bytes not received",
        }
    }
}

/// Why outlier detection ejects a host (index into [`HealthStats`]' detected/enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectKind {
    Consecutive5xx = 0,
    ConsecutiveGatewayFailure = 1,
    ConsecutiveLocalOriginFailure = 2,
    SuccessRate = 3,
    FailurePercentage = 4,
}

impl EjectKind {
    pub const ALL: [EjectKind; 5] = [
        EjectKind::Consecutive5xx,
        EjectKind::ConsecutiveGatewayFailure,
        EjectKind::ConsecutiveLocalOriginFailure,
        EjectKind::SuccessRate,
        EjectKind::FailurePercentage,
    ];

    /// Envoy's stat name suffix (`ejections_enforced_<suffix>`).
    pub fn stat(self) -> &'static str {
        match self {
            EjectKind::Consecutive5xx => "consecutive_5xx",
            EjectKind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectKind::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            EjectKind::SuccessRate => "success_rate",
            EjectKind::FailurePercentage => "failure_percentage",
        }
    }
}

/// The control side's counters for one cluster (written by the health thread only).
#[derive(Debug, Default)]
pub struct HealthStats {
    pub attempt: AtomicU64,
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub network_failure: AtomicU64,
    pub ejections_total: AtomicU64,
    pub ejections_active: AtomicU64,
    pub ejections_enforced_total: AtomicU64,
    pub ejections_overflow: AtomicU64,
    pub detected: [AtomicU64; 5],
    pub enforced: [AtomicU64; 5],
}

impl HostHealth {
    pub fn healthy(&self) -> bool {
        self.flags.load(Relaxed) == 0
    }
}

/// The generation on a line of its own: read on every pick by every worker.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Generation(AtomicU64);

/// What outlier detection needs from a worker's report.
#[derive(Debug)]
struct Outlier {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// `enforcing_*` of the three consecutive detections, in [`Detected`]'s order.
    enforcing: [u32; 3],
    max_ejection_percent: u32,
    split: bool,
    events: flume::Sender<OutlierEvent>,
}

/// One cluster's health, shared by the control side and every worker.
#[derive(Debug)]
pub struct ClusterHealth {
    pub cluster: usize,
    generation: Generation,
    pub hosts: Box<[HostHealth]>,
    outlier: Option<Outlier>,
    /// Hosts with [`FAILED_OUTLIER`] set (kept by [`ClusterHealth::try_eject`] and
    /// [`ClusterHealth::uneject`], the only writers of that flag).
    ejected: AtomicU32,
    pub panic_threshold: f64,
    /// Active checks are configured (hosts start failed until their first check passes).
    pub active: bool,
    pub stats: HealthStats,
}

/// How an exchange with an upstream ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// Connecting (or the TLS handshake) failed.
    ConnectFailed,
    /// No answer within the route timeout.
    Timeout,
    /// The connection closed or reset before an answer, or the answer was not HTTP.
    Reset,
    /// A connection was made (resets the local-origin run when errors are split).
    Connected,
}

impl ClusterHealth {
    /// `active`: endpoints start failed until their first check passes (Envoy's start-up
    /// rule). `outlier`: the thresholds reported against, and where the events go.
    pub fn new(
        cluster: usize,
        hosts: usize,
        active: bool,
        outlier: Option<(&OutlierDetection, flume::Sender<OutlierEvent>)>,
        panic_threshold: f64,
    ) -> ClusterHealth {
        let hosts = (0..hosts)
            .map(|_| {
                let h = HostHealth::default();
                if active {
                    h.flags.store(FAILED_ACTIVE_HC, Relaxed);
                }
                h
            })
            .collect();
        ClusterHealth {
            cluster,
            generation: Generation(AtomicU64::new(1)),
            hosts,
            outlier: outlier.map(|(o, events)| Outlier {
                consecutive_5xx: o.consecutive_5xx,
                consecutive_gateway: o.consecutive_gateway_failure,
                consecutive_local: o.consecutive_local_origin_failure,
                enforcing: [
                    o.enforcing_consecutive_5xx,
                    o.enforcing_consecutive_gateway_failure,
                    o.enforcing_consecutive_local_origin_failure,
                ],
                max_ejection_percent: o.max_ejection_percent,
                split: o.split_external_local_origin_errors,
                events,
            }),
            ejected: AtomicU32::new(0),
            panic_threshold,
            active,
            stats: HealthStats::default(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Set or clear `flag` ([`FAILED_ACTIVE_HC`]; outlier ejections go through
    /// [`ClusterHealth::try_eject`]) on host `i`; the workers see it from their next pick.
    /// Returns whether the host's health (healthy or not) changed.
    pub fn set(&self, i: usize, flag: u8, on: bool) -> bool {
        debug_assert_eq!(flag & FAILED_OUTLIER, 0, "outlier flags are counted");
        let Some(h) = self.hosts.get(i) else {
            return false;
        };
        let before = if on {
            h.flags.fetch_or(flag, Relaxed)
        } else {
            h.flags.fetch_and(!flag, Relaxed)
        };
        let after = if on { before | flag } else { before & !flag };
        if before != after {
            self.generation
                .0
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        (before == 0) != (after == 0)
    }

    /// Eject host `i` by outlier detection if `max_ejection_percent` allows: at most that share
    /// of the hosts at once, but always at least one (Envoy's rule). The count is taken first
    /// (compare-and-swap), so workers and the detector ejecting at the same moment never go
    /// past the cap.
    pub fn try_eject(&self, i: usize, max_ejection_percent: u32) -> Decision {
        let Some(h) = self.hosts.get(i) else {
            return Decision::Already;
        };
        if h.flags.load(Relaxed) & FAILED_OUTLIER != 0 {
            return Decision::Already;
        }
        let total = self.hosts.len();
        let mut n = self.ejected.load(Relaxed);
        loop {
            let allowed = n == 0 || 100 * (n as usize + 1) <= max_ejection_percent as usize * total;
            if !allowed {
                return Decision::Overflow;
            }
            match self
                .ejected
                .compare_exchange_weak(n, n + 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if h.flags.fetch_or(FAILED_OUTLIER, Relaxed) & FAILED_OUTLIER != 0 {
            self.ejected.fetch_sub(1, Relaxed);
            return Decision::Already;
        }
        self.generation
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.clear_runs(i);
        Decision::Ejected
    }

    /// Bring host `i` back from an outlier ejection. Returns whether it was ejected.
    pub fn uneject(&self, i: usize) -> bool {
        let Some(h) = self.hosts.get(i) else {
            return false;
        };
        if h.flags.fetch_and(!FAILED_OUTLIER, Relaxed) & FAILED_OUTLIER == 0 {
            return false;
        }
        self.ejected.fetch_sub(1, Relaxed);
        self.generation
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        true
    }

    /// Host `i`'s health flags, as `/clusters` shows them (Envoy's names).
    pub fn flags_text(&self, i: usize) -> &'static str {
        let f = self.hosts.get(i).map_or(0, |h| h.flags.load(Relaxed));
        match (f & FAILED_ACTIVE_HC != 0, f & FAILED_OUTLIER != 0) {
            (false, false) => "healthy",
            (true, false) => "/failed_active_hc",
            (false, true) => "/failed_outlier_check",
            (true, true) => "/failed_active_hc/failed_outlier_check",
        }
    }

    /// Healthy hosts (no flag set).
    pub fn healthy_count(&self) -> usize {
        self.hosts.iter().filter(|h| h.healthy()).count()
    }

    /// A worker's report of one finished exchange with host `i` (outlier detection only:
    /// without it, nothing happens). Returns whether it counts as an error for the success
    /// rate.
    pub fn report(&self, i: usize, outcome: Outcome) -> bool {
        let (Some(o), Some(h)) = (&self.outlier, self.hosts.get(i)) else {
            return false;
        };
        let bump = |c: &AtomicU32, threshold: u32, what: Detected| {
            if c.fetch_add(1, Relaxed) + 1 == threshold {
                let decision = match o.enforcing[what as usize] {
                    0 => Decision::NotEnforced,
                    100.. => self.try_eject(i, o.max_ejection_percent),
                    _ => Decision::Undecided,
                };
                let _ = o.events.send((self.cluster, i, what, decision));
            }
        };
        let reset = |c: &AtomicU32| {
            if c.load(Relaxed) != 0 {
                c.store(0, Relaxed);
            }
        };
        // Without the split, a local failure counts as the status Envoy maps it to (a
        // connect failure or reset is a 503, a timeout a 504).
        let status = match (outcome, o.split) {
            (Outcome::Status(s), _) => Some(s),
            (Outcome::Connected, _) => None,
            (Outcome::Timeout, false) => Some(504),
            (_, false) => Some(503),
            (_, true) => None,
        };
        match (outcome, status) {
            (_, Some(s)) if s >= 500 => {
                // An answer, even a 5xx, means the connection worked: the local-origin run
                // ends (Envoy's connect success; without the split, that run never grows).
                if o.split {
                    reset(&h.consecutive_local);
                }
                bump(
                    &h.consecutive_5xx,
                    o.consecutive_5xx,
                    Detected::Consecutive5xx,
                );
                if matches!(s, 502..=504) {
                    bump(
                        &h.consecutive_gateway,
                        o.consecutive_gateway,
                        Detected::ConsecutiveGatewayFailure,
                    );
                } else {
                    reset(&h.consecutive_gateway);
                }
                true
            }
            (_, Some(_)) => {
                reset(&h.consecutive_5xx);
                reset(&h.consecutive_gateway);
                reset(&h.consecutive_local);
                false
            }
            (Outcome::Connected, None) => {
                reset(&h.consecutive_local);
                false
            }
            (_, None) => {
                bump(
                    &h.consecutive_local,
                    o.consecutive_local,
                    Detected::ConsecutiveLocalOriginFailure,
                );
                true
            }
        }
    }

    /// Forget a host's consecutive runs (it was ejected, or brought back).
    pub fn clear_runs(&self, i: usize) {
        if let Some(h) = self.hosts.get(i) {
            h.consecutive_5xx.store(0, Relaxed);
            h.consecutive_gateway.store(0, Relaxed);
            h.consecutive_local.store(0, Relaxed);
        }
    }
}

/// Every cluster's shared health, by cluster id (`None`: the cluster is not health-checked).
pub type Board = Arc<Vec<Option<Arc<ClusterHealth>>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::LbPolicy,
        upstream::select::{Inputs, Selection},
    };

    fn view(h: &ClusterHealth) -> Selection {
        let keys: Vec<String> = (0..4).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
        Selection::healthy(
            h,
            &Inputs {
                policy: LbPolicy::RoundRobin,
                weights: &[1, 1, 1, 1],
                priorities: &[0, 0, 0, 0],
                keys: &keys,
                hash: None,
                seed: 1,
                slow: None,
            },
        )
    }

    fn od() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 2,
            consecutive_local_origin_failure: 2,
            ..OutlierDetection::default()
        }
    }

    #[test]
    fn consecutive_5xx_sends_one_event_at_the_threshold_and_a_success_resets() {
        let (tx, rx) = flume::unbounded();
        let h = ClusterHealth::new(0, 2, false, Some((&od(), tx)), 50.0);
        assert!(h.report(1, Outcome::Status(500)));
        assert!(h.report(1, Outcome::Status(500)));
        assert!(!h.report(1, Outcome::Status(200)));
        assert!(rx.try_recv().is_err());
        for _ in 0..4 {
            h.report(1, Outcome::Status(500));
        }
        assert_eq!(
            rx.try_recv().ok(),
            Some((0, 1, Detected::Consecutive5xx, Decision::Ejected))
        );
        assert!(rx.try_recv().is_err(), "one event per run");
        assert!(
            !h.hosts[1].healthy(),
            "ejected by the reporting worker itself"
        );
    }

    #[test]
    fn gateway_failures_and_mapped_local_failures_count() {
        let (tx, rx) = flume::unbounded();
        let h = ClusterHealth::new(3, 1, false, Some((&od(), tx)), 50.0);
        h.report(0, Outcome::ConnectFailed); // 503 without the split
        h.report(0, Outcome::Timeout); // 504
        assert_eq!(
            rx.try_recv().ok(),
            Some((
                3,
                0,
                Detected::ConsecutiveGatewayFailure,
                Decision::NotEnforced
            ))
        );
        assert!(
            h.hosts[0].healthy(),
            "gateway failures are not enforced by default"
        );
        h.report(0, Outcome::Status(500));
        assert_eq!(
            rx.try_recv().ok(),
            Some((3, 0, Detected::Consecutive5xx, Decision::Ejected))
        );
    }

    #[test]
    fn split_local_origin_errors_have_their_own_run() {
        let (tx, rx) = flume::unbounded();
        let o = OutlierDetection {
            split_external_local_origin_errors: true,
            ..od()
        };
        let h = ClusterHealth::new(0, 1, false, Some((&o, tx)), 50.0);
        h.report(0, Outcome::Reset);
        h.report(0, Outcome::Connected);
        h.report(0, Outcome::Reset);
        assert!(rx.try_recv().is_err());
        // An HTTP answer, even a 5xx, ends the run too (the connection worked).
        h.report(0, Outcome::Status(502));
        h.report(0, Outcome::Reset);
        assert!(rx.try_recv().is_err());
        h.report(0, Outcome::ConnectFailed);
        assert_eq!(
            rx.try_recv().ok(),
            Some((
                0,
                0,
                Detected::ConsecutiveLocalOriginFailure,
                Decision::Ejected
            ))
        );
        assert_eq!(h.hosts[0].consecutive_5xx.load(Relaxed), 0);
    }

    #[test]
    fn flags_bump_the_generation_and_the_view_follows_with_panic_below_the_threshold() {
        let h = ClusterHealth::new(0, 4, true, None, 50.0);
        let v = view(&h);
        assert!(
            v.panic,
            "nothing passed a check yet: every host takes traffic"
        );
        assert_eq!(v.members(), vec![0, 1, 2, 3]);
        let g = h.generation();
        assert!(h.set(0, FAILED_ACTIVE_HC, false));
        assert!(h.set(1, FAILED_ACTIVE_HC, false));
        assert!(h.generation() > g);
        let v = view(&h);
        assert!(!v.panic, "2 of 4 is 50%: not below the threshold");
        assert_eq!(v.members(), vec![0, 1]);
        // An outlier flag on a healthy host makes it unhealthy too; the other flag stays.
        assert_eq!(h.try_eject(1, 100), Decision::Ejected);
        assert!(!h.set(1, FAILED_ACTIVE_HC, true));
        assert!(h.uneject(1));
        assert!(!h.hosts[1].healthy());
        let v = view(&h);
        assert!(v.panic);
    }

    #[test]
    fn a_worker_ejects_at_the_threshold_within_the_cap_and_chance_is_left_to_the_detector() {
        let (tx, rx) = flume::unbounded();
        let o = OutlierDetection {
            max_ejection_percent: 50,
            ..od()
        };
        let h = ClusterHealth::new(0, 4, false, Some((&o, tx)), 50.0);
        let g = h.generation();
        for host in 0..3 {
            for _ in 0..3 {
                h.report(host, Outcome::Status(500));
            }
        }
        let got: Vec<Decision> = rx.try_iter().map(|e| e.3).collect();
        assert_eq!(
            got,
            vec![Decision::Ejected, Decision::Ejected, Decision::Overflow]
        );
        assert!(
            h.generation() > g,
            "the workers' views rebuild at their next pick"
        );
        assert_eq!(view(&h).members(), vec![2, 3]);
        assert_eq!(h.try_eject(0, 50), Decision::Already);
        // Back in: the count drops and the next host may go.
        assert!(h.uneject(0));
        assert!(!h.uneject(0));
        assert_eq!(h.try_eject(2, 50), Decision::Ejected);
        // Cap at one host: ejections racing from threads never pass it.
        let h = std::sync::Arc::new(ClusterHealth::new(0, 8, false, None, 50.0));
        let won: usize = std::thread::scope(|s| {
            let t: Vec<_> = (0..8)
                .map(|i| {
                    let h = &h;
                    s.spawn(move || usize::from(h.try_eject(i, 0) == Decision::Ejected))
                })
                .collect();
            t.into_iter().map(|t| t.join().expect("thread")).sum()
        });
        assert_eq!(won, 1);
        // Enforced by chance: the worker leaves it to the detector.
        let (tx, rx) = flume::unbounded();
        let o = OutlierDetection {
            enforcing_consecutive_5xx: 50,
            ..od()
        };
        let h = ClusterHealth::new(0, 2, false, Some((&o, tx)), 50.0);
        for _ in 0..3 {
            h.report(0, Outcome::Status(500));
        }
        assert_eq!(rx.try_recv().ok().map(|e| e.3), Some(Decision::Undecided));
        assert!(h.hosts[0].healthy());
    }
}
