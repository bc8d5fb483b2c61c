//! When each request is meant to go out.
//!
//! Closed loop: a request goes out as soon as the previous one on its connection (or stream)
//! completed; its latency is measured from the moment it was sent, which is what naive tools
//! report. Open loop (`--rate`): each connection (or stream slot) owns a fixed schedule,
//! `first + k * interval`; a request whose slot has passed is sent at once, and its latency is
//! counted from its *intended* time. A server that stalls therefore delays every request that
//! should have been sent during the stall, and the tail shows it (the coordinated-omission
//! correction wrk2 made known).

use std::time::{Duration, Instant};

/// The run's time windows, the same for every worker.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The run starts (first requests may go out).
    pub start: Instant,
    /// Requests intended from here on are measured (warm-up ends).
    pub measure_from: Instant,
    /// No request intended from here on is sent.
    pub end: Instant,
}

impl Window {
    /// Whether a request intended at `t` is measured.
    #[inline]
    pub fn measured(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// The schedule of one connection or stream slot.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Send when the previous request completed.
    Closed,
    /// Send at `next`, then every `interval`.
    Open {
        /// The next intended send time.
        next: Instant,
        /// Time between intended sends.
        interval: Duration,
    },
}

/// What [`Pace::due`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send now; the request was intended at this time.
    Now(Instant),
    /// Nothing before this time.
    At(Instant),
    /// The run is over for this slot.
    Over,
}

impl Pace {
    /// The pace of slot `slot` out of `slots` sharing `rate` requests/s (`None`: closed loop).
    pub fn new(rate: Option<f64>, slot: usize, slots: usize, start: Instant) -> Self {
        match rate {
            None => Pace::Closed,
            Some(r) => {
                let interval = Duration::from_secs_f64(slots as f64 / r);
                // Spread the slots' first sends evenly over one interval.
                let offset = Duration::from_secs_f64(slot as f64 / r);
                Pace::Open {
                    next: start + offset,
                    interval,
                }
            }
        }
    }

    /// Waits for the next send time and returns the intended time (None: the run is over).
    pub async fn next(&mut self, w: &Window) -> Option<Instant> {
        match self {
            Pace::Closed => {
                let mut now = Instant::now();
                if now < w.start {
                    compio::time::sleep_until(w.start).await;
                    now = Instant::now();
                }
                (now < w.end).then_some(now)
            }
            Pace::Open { next, interval } => {
                let t = *next;
                if t >= w.end {
                    return None;
                }
                *next += *interval;
                if Instant::now() < t {
                    compio::time::sleep_until(t).await;
                }
                Some(t)
            }
        }
    }

    /// The same decision as [`Pace::next`] without waiting, for callers that run their own
    /// timers: send now (with the intended time, which this consumes), wait until a time, or
    /// stop.
    pub fn due(&mut self, now: Instant, w: &Window) -> Due {
        match self {
            Pace::Closed if now < w.start => Due::At(w.start),
            Pace::Closed if now < w.end => Due::Now(now),
            Pace::Closed => Due::Over,
            Pace::Open { next, interval } => {
                let t = *next;
                if t >= w.end {
                    Due::Over
                } else if t <= now {
                    *next += *interval;
                    Due::Now(t)
                } else {
                    Due::At(t)
                }
            }
        }
    }

    /// Skips slots that fell entirely before `now` while no connection existed, counting them.
    /// (A reconnect after `connect` errors does not replay the missed schedule as a burst.)
    pub fn skip_missed(&mut self, now: Instant, end: Instant) -> u64 {
        let mut n = 0;
        if let Pace::Open { next, interval } = self {
            while *next + *interval < now && *next < end {
                *next += *interval;
                n += 1;
            }
        }
        n
    }

    /// Whether this is the open-loop pace.
    pub fn is_open(&self) -> bool {
        matches!(self, Pace::Open { .. })
    }
}
