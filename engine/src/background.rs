//! Threads beside the request path, and the rate limit for their repeated warnings.
//!
//! The admin server, the stats aggregator, the access-log writer and the span exporter each run
//! on a thread of their own, started with [`spawn_background`] at [`BACKGROUND_NICE`] so that on
//! a core shared with a worker they run in the worker's idle gaps. [`WarnEvery`] keeps a warning
//! that repeats under load (a dropped batch) to one line per period.
//!
//! A leaf: it imports nothing from the crate, so every module may use it.

use std::{
    cell::Cell,
    thread,
    time::{Duration, Instant},
};

/// Nice value of the threads beside the request path (admin server, stats aggregator,
/// access-log writer, span exporter).
pub const BACKGROUND_NICE: i32 = 10;

/// Lower the calling thread's scheduling priority to [`BACKGROUND_NICE`], so that on a core it
/// shares with a worker (a process pinned to fewer cores than it has threads) it runs in the
/// worker's idle gaps instead of delaying requests: an admin `/stats` read must not show in a
/// benchmark's p99. A real-time policy (the process started under `chrt`) is dropped to the
/// normal one for these threads: workers keep it, the background work does not need it. Threads
/// it spawns inherit both. Best effort.
pub fn background_thread() {
    // SAFETY: sched_getscheduler/sched_setscheduler/setpriority on the calling thread (id 0 /
    // its own tid) with a valid, initialized sched_param.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
        }
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
    }
}

/// Start a thread beside the request path (named `name`) at the background priority (see
/// [`background_thread`]).
pub fn spawn_background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<thread::JoinHandle<T>> {
    thread::Builder::new().name(name.into()).spawn(move || {
        background_thread();
        f()
    })
}

/// Lets a repeated warning through at most once per period (a dropped batch under load must
/// not flood the log). Single-threaded (`Cell`).
#[derive(Debug)]
pub struct WarnEvery {
    period: Duration,
    last: Cell<Option<Instant>>,
}

impl WarnEvery {
    pub const fn new(period: Duration) -> WarnEvery {
        WarnEvery {
            period,
            last: Cell::new(None),
        }
    }

    /// Whether to warn now (and, if so, the period starts again).
    pub fn due(&self) -> bool {
        let now = Instant::now();
        let due = self
            .last
            .get()
            .is_none_or(|t| now.duration_since(t) >= self.period);
        if due {
            self.last.set(Some(now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{spawn_background, WarnEvery, BACKGROUND_NICE};

    #[test]
    fn warn_every_lets_one_through_per_period() {
        let w = WarnEvery::new(Duration::from_millis(200));
        assert!(w.due());
        assert!(!w.due());
        std::thread::sleep(Duration::from_millis(250));
        assert!(w.due());
        assert!(!w.due());
    }

    #[test]
    fn background_threads_are_named_and_niced() {
        let h = spawn_background("ringway-bgtest", || {
            let name = std::thread::current().name().map(str::to_owned);
            // SAFETY: getpriority on the calling thread's own tid.
            let nice = unsafe {
                *libc::__errno_location() = 0;
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            };
            (name, nice)
        })
        .unwrap();
        let (name, nice) = h.join().unwrap();
        assert_eq!(name.as_deref(), Some("ringway-bgtest"));
        // A process already running at a higher nice value stays there (nice only goes up).
        assert!(nice >= BACKGROUND_NICE, "nice {nice}");
    }
}
