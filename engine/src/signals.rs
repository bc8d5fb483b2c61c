//! The shutdown signals (SIGINT, SIGTERM, SIGHUP) belong to the control thread alone.
//!
//! `ringway run` blocks them with [`Signals::block`] before it does anything else: before the
//! logger, before any thread. Every thread started afterwards (workers, the access-log writer,
//! the span exporter, the admin server, the stats thread, and whatever those start) inherits
//! the mask, so the kernel can deliver these signals to no thread: they stay pending until the
//! control thread takes them with [`Signals::wait`] (`sigwait`). A signal that lands while the
//! process is still starting waits for it to serve, then starts the drain; a second one during
//! the drain stays pending and changes nothing. Without the mask, a signal the kernel hands to a
//! thread that does not block it takes its default action: the whole process ends, no drain.
//!
//! Imports nothing from the crate.

/// The set of shutdown signals, blocked on the thread that made it.
#[derive(Clone, Copy)]
pub struct Signals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals(SIGINT, SIGTERM, SIGHUP)")
    }
}

impl Signals {
    /// Block SIGINT, SIGTERM and SIGHUP on the calling thread, and so on every thread it starts
    /// from now on. Blocking again is harmless (the mask is a set).
    pub fn block() -> Signals {
        // SAFETY: plain libc signal-set manipulation on a local, initialized set; a null old-set
        // pointer is allowed.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            // Internal: the DNS thread's "endpoints changed" (`crate::dns`).
            libc::sigaddset(&mut set, libc::SIGUSR2);
            // Internal: the xDS thread has an update to apply (`crate::xds`).
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Signals { set }
        }
    }

    /// Wait for one of the signals (one already pending returns at once) and take it.
    pub fn wait(&self) -> i32 {
        let mut sig = 0;
        // SAFETY: `self.set` is a valid initialized sigset; `sig` is a valid out pointer.
        unsafe { libc::sigwait(&self.set, &mut sig) };
        sig
    }

    /// Whether the calling thread blocks all three.
    pub fn blocked() -> bool {
        // SAFETY: querying the calling thread's mask into a local set (a null new-set pointer
        // changes nothing).
        unsafe {
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
            [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
                .iter()
                .all(|&s| libc::sigismember(&now, s) == 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Signals;

    #[test]
    fn block_sets_the_mask_and_threads_inherit_it() {
        // On a fresh thread so the test harness's own threads keep their mask.
        std::thread::spawn(|| {
            assert!(!Signals::blocked());
            let _ = Signals::block();
            assert!(Signals::blocked());
            let inherited = std::thread::spawn(Signals::blocked).join().unwrap();
            assert!(inherited);
        })
        .join()
        .unwrap();
    }
}
