//! Outlier detection's decisions for one cluster, made once for the process on the health
//! thread: consecutive-failure events from the workers ([`Detector::on_event`]: a host the
//! worker already ejected is recorded here, with its ejection time; one enforced by chance is
//! drawn for here) and, every
//! `interval`, the success-rate and failure-percentage detectors over the workers' per-endpoint
//! counters and the return of hosts whose ejection time is up ([`Detector::tick`]). An
//! ejection sets the host's `FAILED_OUTLIER` flag, which every worker honours from its next
//! pick.
//!
//! Envoy's arithmetic: the n-th ejection of a host lasts `base_ejection_time × n`, at most
//! `max_ejection_time`; n drops by one for each interval the host spends back in rotation.
//! At most `max_ejection_percent` of the hosts are ejected at once, but always at least one.
//! `enforcing_*` is the chance (percent) that a detection is acted on; detections are counted
//! either way.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use crate::{
    config::OutlierDetection,
    endpoint_health::{ClusterHealth, Decision, Detected, EjectKind},
    rng::Rng,
};

#[derive(Debug, Default, Clone)]
struct HostState {
    ejected_until: Option<Instant>,
    num_ejections: u32,
    /// Cumulative counters at the last tick.
    last_total: u64,
    last_error: u64,
}

/// One cluster's outlier detector.
#[derive(Debug)]
pub struct Detector {
    name: String,
    cfg: OutlierDetection,
    health: Arc<ClusterHealth>,
    hosts: Vec<HostState>,
    rng: Rng,
}

fn inc(a: &std::sync::atomic::AtomicU64) {
    a.fetch_add(1, Relaxed);
}

impl Detector {
    pub fn new(name: &str, cfg: OutlierDetection, health: Arc<ClusterHealth>, seed: u64) -> Self {
        // A reload's detector goes on where the last one was (`health::start` carried the
        // ejections of an unchanged cluster over).
        let hosts = health
            .hosts
            .iter()
            .map(|h| HostState {
                ejected_until: match h.ejected_until_ms.load(Relaxed) {
                    0 => None,
                    ms => Some(crate::endpoint_health::clock_instant(ms)),
                },
                num_ejections: h.num_ejections.load(Relaxed),
                ..HostState::default()
            })
            .collect();
        Detector {
            name: name.to_string(),
            cfg,
            health,
            hosts,
            rng: Rng::new(seed),
        }
    }

    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    /// Whether a detection with enforcement `pct` is acted on.
    fn enforce(&self, pct: u32) -> bool {
        pct >= 100 || (pct > 0 && self.rng.below(100) < u64::from(pct))
    }

    /// A worker saw host `i` reach a consecutive-failure threshold, and did `decision`.
    pub fn on_event(&mut self, i: usize, what: Detected, decision: Decision, now: Instant) {
        let (kind, pct) = match what {
            Detected::Consecutive5xx => (
                EjectKind::Consecutive5xx,
                self.cfg.enforcing_consecutive_5xx,
            ),
            Detected::ConsecutiveGatewayFailure => (
                EjectKind::ConsecutiveGatewayFailure,
                self.cfg.enforcing_consecutive_gateway_failure,
            ),
            Detected::ConsecutiveLocalOriginFailure => (
                EjectKind::ConsecutiveLocalOriginFailure,
                self.cfg.enforcing_consecutive_local_origin_failure,
            ),
        };
        // The run starts again either way (Envoy resets it once it has been considered).
        match what {
            Detected::Consecutive5xx => self.health.hosts[i].consecutive_5xx.store(0, Relaxed),
            Detected::ConsecutiveGatewayFailure => {
                self.health.hosts[i].consecutive_gateway.store(0, Relaxed)
            }
            Detected::ConsecutiveLocalOriginFailure => {
                self.health.hosts[i].consecutive_local.store(0, Relaxed)
            }
        }
        let known = self.hosts.get(i).is_none_or(|h| h.ejected_until.is_some());
        match decision {
            Decision::Already => {}
            _ if known => {}
            Decision::Undecided => self.detected(i, kind, pct, now),
            Decision::NotEnforced => inc(&self.health.stats.detected[kind as usize]),
            Decision::Ejected => {
                inc(&self.health.stats.detected[kind as usize]);
                self.ejected(i, kind, now);
            }
            Decision::Overflow => {
                inc(&self.health.stats.detected[kind as usize]);
                inc(&self.health.stats.ejections_overflow);
            }
        }
    }

    fn detected(&mut self, i: usize, kind: EjectKind, pct: u32, now: Instant) {
        inc(&self.health.stats.detected[kind as usize]);
        if self.enforce(pct) {
            self.eject(i, kind, now);
        }
    }

    fn eject(&mut self, i: usize, kind: EjectKind, now: Instant) {
        match self.health.try_eject(i, self.cfg.max_ejection_percent) {
            Decision::Ejected => self.ejected(i, kind, now),
            Decision::Overflow => inc(&self.health.stats.ejections_overflow),
            // A worker ejected it a moment ago; its event records it.
            _ => {}
        }
    }

    /// Host `i` was just ejected (here or by a worker): its ejection time and the stats.
    fn ejected(&mut self, i: usize, kind: EjectKind, now: Instant) {
        let h = &mut self.hosts[i];
        h.num_ejections = h.num_ejections.saturating_add(1);
        let for_ = self
            .cfg
            .base_ejection_time
            .saturating_mul(h.num_ejections)
            .min(self.cfg.max_ejection_time);
        h.ejected_until = Some(now + for_);
        if let Some(shared) = self.health.hosts.get(i) {
            shared
                .ejected_until_ms
                .store(crate::endpoint_health::clock_ms(now + for_), Relaxed);
            shared.num_ejections.store(h.num_ejections, Relaxed);
        }
        self.health.clear_runs(i);
        let s = &self.health.stats;
        inc(&s.ejections_total);
        inc(&s.ejections_enforced_total);
        inc(&s.enforced[kind as usize]);
        s.ejections_active.fetch_add(1, Relaxed);
        tracing::warn!(
            cluster = %self.name,
            endpoint = i,
            reason = kind.stat(),
            ejection_time = ?for_,
            "outlier detection: endpoint ejected"
        );
    }

    fn uneject_host(&mut self, i: usize, why: &str) {
        let Some(h) = self.hosts.get_mut(i) else {
            return;
        };
        if h.ejected_until.take().is_none() {
            return;
        }
        if let Some(shared) = self.health.hosts.get(i) {
            shared.ejected_until_ms.store(0, Relaxed);
        }
        self.health.uneject(i);
        self.health.clear_runs(i);
        self.health.stats.ejections_active.fetch_sub(1, Relaxed);
        tracing::info!(cluster = %self.name, endpoint = i, why, "outlier detection: endpoint back in rotation");
    }

    /// An active health check passed on host `i` (`successful_active_health_check_uneject_host`).
    pub fn health_check_passed(&mut self, i: usize) {
        if self.cfg.successful_active_health_check_uneject_host {
            self.uneject_host(i, "health check passed");
        }
    }

    /// Every `interval`: bring back hosts whose time is up, lower the ejection multiplier of
    /// hosts in rotation, and run the success-rate and failure-percentage detectors over
    /// `counts` (cumulative (requests, errors) per host, summed over the workers).
    pub fn tick(&mut self, now: Instant, counts: &[(u64, u64)]) {
        for i in 0..self.hosts.len() {
            match self.hosts[i].ejected_until {
                Some(t) if now >= t => self.uneject_host(i, "ejection time over"),
                Some(_) => {}
                None => {
                    let h = &mut self.hosts[i];
                    h.num_ejections = h.num_ejections.saturating_sub(1);
                    if let Some(shared) = self.health.hosts.get(i) {
                        shared.num_ejections.store(h.num_ejections, Relaxed);
                    }
                }
            }
        }
        // This interval's volume and errors per host.
        let mut window: Vec<(usize, u64, u64)> = Vec::with_capacity(self.hosts.len());
        for (i, h) in self.hosts.iter_mut().enumerate() {
            let (total, error) = counts.get(i).copied().unwrap_or((0, 0));
            let d_total = total.saturating_sub(h.last_total);
            let d_error = error.saturating_sub(h.last_error).min(d_total);
            h.last_total = total;
            h.last_error = error;
            if h.ejected_until.is_none() {
                window.push((i, d_total, d_error));
            }
        }
        self.success_rate(now, &window);
        self.failure_percentage(now, &window);
    }

    fn success_rate(&mut self, now: Instant, window: &[(usize, u64, u64)]) {
        let volume = u64::from(self.cfg.success_rate_request_volume);
        let hosts: Vec<(usize, f64)> = window
            .iter()
            .filter(|(_, t, _)| *t >= volume.max(1))
            .map(|&(i, t, e)| (i, 100.0 * (t - e) as f64 / t as f64))
            .collect();
        if hosts.is_empty() || hosts.len() < self.cfg.success_rate_minimum_hosts as usize {
            return;
        }
        let n = hosts.len() as f64;
        let mean = hosts.iter().map(|h| h.1).sum::<f64>() / n;
        let var = hosts.iter().map(|h| (h.1 - mean).powi(2)).sum::<f64>() / n;
        let threshold = mean - var.sqrt() * f64::from(self.cfg.success_rate_stdev_factor) / 1000.0;
        for (i, rate) in hosts {
            if rate < threshold {
                let pct = self.cfg.enforcing_success_rate;
                self.detected(i, EjectKind::SuccessRate, pct, now);
            }
        }
    }

    fn failure_percentage(&mut self, now: Instant, window: &[(usize, u64, u64)]) {
        let volume = u64::from(self.cfg.failure_percentage_request_volume);
        let hosts: Vec<(usize, f64)> = window
            .iter()
            .filter(|(_, t, _)| *t >= volume.max(1))
            .map(|&(i, t, e)| (i, 100.0 * e as f64 / t as f64))
            .collect();
        if hosts.is_empty() || hosts.len() < self.cfg.failure_percentage_minimum_hosts as usize {
            return;
        }
        for (i, failed) in hosts {
            if failed >= f64::from(self.cfg.failure_percentage_threshold)
                && self.hosts[i].ejected_until.is_none()
            {
                let pct = self.cfg.enforcing_failure_percentage;
                self.detected(i, EjectKind::FailurePercentage, pct, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(hosts: usize, cfg: OutlierDetection) -> Detector {
        let h = Arc::new(ClusterHealth::new(0, hosts, false, None, 50.0));
        Detector::new("c", cfg, h, 7)
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let cfg = OutlierDetection {
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(70),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let mut d = detector(3, cfg);
        let t0 = Instant::now();
        d.on_event(0, Detected::Consecutive5xx, Decision::Undecided, t0);
        assert!(!d.health.hosts[0].healthy());
        assert_eq!(d.hosts[0].ejected_until, Some(t0 + Duration::from_secs(30)));
        // Not back before its time; back after it.
        d.tick(t0 + Duration::from_secs(29), &[]);
        assert!(!d.health.hosts[0].healthy());
        let t1 = t0 + Duration::from_secs(30);
        d.tick(t1, &[]);
        assert!(d.health.hosts[0].healthy());
        // Second ejection right away: 60s; third: capped at 70s.
        d.on_event(0, Detected::Consecutive5xx, Decision::Undecided, t1);
        assert_eq!(d.hosts[0].ejected_until, Some(t1 + Duration::from_secs(60)));
        let t2 = t1 + Duration::from_secs(60);
        d.tick(t2, &[]);
        d.on_event(0, Detected::Consecutive5xx, Decision::Undecided, t2);
        assert_eq!(d.hosts[0].ejected_until, Some(t2 + Duration::from_secs(70)));
        let s = &d.health.stats;
        assert_eq!(s.ejections_enforced_total.load(Relaxed), 3);
        assert_eq!(s.ejections_active.load(Relaxed), 1);
    }

    #[test]
    fn max_ejection_percent_caps_ejections_but_one_host_always_may_go() {
        let mut d = detector(3, OutlierDetection::default()); // 10%
        let now = Instant::now();
        d.on_event(0, Detected::Consecutive5xx, Decision::Undecided, now);
        d.on_event(1, Detected::Consecutive5xx, Decision::Undecided, now);
        assert!(!d.health.hosts[0].healthy(), "at least one host is ejected");
        assert!(d.health.hosts[1].healthy(), "the second would exceed 10%");
        assert_eq!(d.health.stats.ejections_overflow.load(Relaxed), 1);
        let cfg = OutlierDetection {
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        };
        let mut d = detector(4, cfg);
        for i in 0..4 {
            d.on_event(i, Detected::Consecutive5xx, Decision::Undecided, now);
        }
        assert_eq!(d.health.healthy_count(), 2);
    }

    #[test]
    fn gateway_failures_are_detected_but_not_enforced_by_default() {
        let mut d = detector(2, OutlierDetection::default());
        d.on_event(
            0,
            Detected::ConsecutiveGatewayFailure,
            Decision::Undecided,
            Instant::now(),
        );
        assert!(d.health.hosts[0].healthy());
        let s = &d.health.stats;
        assert_eq!(
            s.detected[EjectKind::ConsecutiveGatewayFailure as usize].load(Relaxed),
            1
        );
        assert_eq!(s.ejections_enforced_total.load(Relaxed), 0);
    }

    #[test]
    fn success_rate_ejects_the_host_far_below_the_mean() {
        let cfg = OutlierDetection {
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let mut d = detector(6, cfg);
        let now = Instant::now();
        // Five hosts at 100% success and one at 50%, 200 requests each.
        let counts = [(200, 0), (200, 0), (200, 0), (200, 0), (200, 0), (200, 100)];
        d.tick(now, &counts);
        assert_eq!(d.health.healthy_count(), 5);
        assert!(!d.health.hosts[5].healthy());
        // Too few requests: nothing happens (the window is the difference since last tick).
        let mut d = detector(6, OutlierDetection::default());
        let low = [(50, 0), (50, 0), (50, 0), (50, 0), (50, 0), (50, 50)];
        d.tick(now, &low);
        assert_eq!(d.health.healthy_count(), 6);
    }

    #[test]
    fn failure_percentage_counts_and_enforces_when_asked() {
        let cfg = OutlierDetection {
            enforcing_failure_percentage: 100,
            enforcing_success_rate: 0,
            failure_percentage_minimum_hosts: 3,
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let mut d = detector(3, cfg);
        d.tick(Instant::now(), &[(100, 0), (100, 90), (100, 10)]);
        assert!(!d.health.hosts[1].healthy());
        assert!(d.health.hosts[0].healthy() && d.health.hosts[2].healthy());
    }

    #[test]
    fn a_host_a_worker_ejected_is_recorded_and_comes_back_on_time() {
        let cfg = OutlierDetection {
            base_ejection_time: Duration::from_secs(30),
            ..OutlierDetection::default()
        };
        let mut d = detector(3, cfg);
        let t0 = Instant::now();
        assert_eq!(d.health.try_eject(2, 10), Decision::Ejected);
        d.on_event(2, Detected::Consecutive5xx, Decision::Ejected, t0);
        assert_eq!(d.hosts[2].ejected_until, Some(t0 + Duration::from_secs(30)));
        let s = &d.health.stats;
        assert_eq!(s.ejections_enforced_total.load(Relaxed), 1);
        assert_eq!(s.ejections_active.load(Relaxed), 1);
        // A second worker's event for the same run changes nothing.
        d.on_event(2, Detected::Consecutive5xx, Decision::Already, t0);
        assert_eq!(d.health.stats.ejections_total.load(Relaxed), 1);
        // The detector's own ejections count the worker's against the cap (10% of 3: one).
        d.on_event(0, Detected::Consecutive5xx, Decision::Undecided, t0);
        assert!(d.health.hosts[0].healthy());
        assert_eq!(d.health.stats.ejections_overflow.load(Relaxed), 1);
        d.tick(t0 + Duration::from_secs(30), &[]);
        assert!(d.health.hosts[2].healthy());
        assert_eq!(d.health.stats.ejections_active.load(Relaxed), 0);
        assert_eq!(d.health.try_eject(0, 10), Decision::Ejected);
    }

    #[test]
    fn a_passed_health_check_brings_an_ejected_host_back() {
        let mut d = detector(2, OutlierDetection::default());
        d.on_event(
            1,
            Detected::Consecutive5xx,
            Decision::Undecided,
            Instant::now(),
        );
        assert!(!d.health.hosts[1].healthy());
        d.health_check_passed(1);
        assert!(d.health.hosts[1].healthy());
        assert_eq!(d.health.stats.ejections_active.load(Relaxed), 0);
    }
}
