//! Building a worker's runtime: which driver runs it (io_uring, or epoll where io_uring is
//! refused: `io_driver`), the ring flags that measured best, the provided-buffer pool,
//! locked-memory limits, and an error that tells the user what to do when io_uring cannot be set
//! up (old kernel, seccomp, `kernel.io_uring_disabled`, RLIMIT_MEMLOCK).
//!
//! The driver is chosen once per process, before any worker starts ([`choose_driver`]), and
//! every runtime built after that ([`build_runtime`]: workers, the health thread, every
//! generation after a reload) uses it. On epoll, compio's polling driver runs the writes,
//! accepts and connects (each tried at once, then a readiness wait); reads are `recv(2)` calls
//! into the user-space buffer pool, waiting on the worker's edge-triggered epoll set
//! (`io::reactor`) when a socket is empty. No multishot receive there.

use std::{io, num::NonZeroU16};

use compio::{
    driver::{DriverType, ProactorBuilder},
    runtime::Runtime,
};

use crate::{config::IoDriverMode, io::READ_BUF_LEN};

pub use crate::io::{driver, IoDriver};

fn set_driver(d: IoDriver) {
    crate::io::set_epoll(d == IoDriver::Epoll);
}

/// What the epoll driver costs, for the warning `auto` prints when it falls back
/// (docs/benchmarks.md, "epoll driver").
const EPOLL_COST: &str = "every read and write is its own syscall (about 1.1x the CPU per \
     request of io_uring on the plain HTTP/1.1 path, level with nginx)";

/// Decide the driver for every runtime this process builds. `io_uring` and `epoll` are taken
/// as given (a worker that cannot set up its ring then refuses to start, as before); `auto`
/// sets up a small ring with its buffer ring to see whether io_uring works here, and falls
/// back to epoll with one warning naming the reason and the cost.
pub fn choose_driver(mode: IoDriverMode) -> IoDriver {
    let d = match mode {
        IoDriverMode::IoUring => IoDriver::IoUring,
        IoDriverMode::Epoll => IoDriver::Epoll,
        IoDriverMode::Auto => match build_with(IoDriver::IoUring, 8, 1) {
            Ok(_) => IoDriver::IoUring,
            Err(e) => {
                tracing::warn!(
                    reason = %e,
                    "io_driver auto: io_uring is not available, running on epoll: {EPOLL_COST}; \
                     set `io_driver: io_uring` (or --io-driver io_uring) to refuse to start instead"
                );
                IoDriver::Epoll
            }
        },
    };
    set_driver(d);
    d
}

/// Provided read buffers per worker (each [`READ_BUF_LEN`] bytes). Idle connections own none;
/// this bounds the memory that in-flight reads can use before falling back to one-off buffers.
pub const POOL_BUFFERS: u16 = 512;

/// Why a worker runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up io_uring: {source}. {hint}")]
pub struct RingError {
    pub source: io::Error,
    pub hint: &'static str,
}

fn hint_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        // Container runtimes' default seccomp profiles answer io_uring_setup with ENOSYS
        // (podman's) or EPERM (Docker's): a filter in force says which ENOSYS this is.
        Some(libc::ENOSYS) if seccomp_filtered() => {
            "A seccomp filter refuses io_uring (container runtimes' default profiles do): allow \
             io_uring_setup/io_uring_enter/io_uring_register (for Docker or podman: \
             `--security-opt seccomp=unconfined`, or a profile allowing them), or set \
             `io_driver: auto` (or `epoll`) to run on epoll there."
        }
        Some(libc::ENOSYS) => "This kernel has no io_uring (Linux 6.1 or newer is needed).",
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is forbidden here: check `sysctl kernel.io_uring_disabled` (must be 0) and \
             any seccomp profile (container runtimes' default profiles block io_uring; allow \
             io_uring_setup/io_uring_enter/io_uring_register), or set `io_driver: auto` (or \
             `epoll`) to run on epoll there."
        }
        Some(libc::ENOMEM) => {
            "Not enough locked memory for the ring: raise RLIMIT_MEMLOCK (`ulimit -l unlimited`, \
             or `LimitMEMLOCK=infinity` in the systemd unit) or grant CAP_IPC_LOCK."
        }
        Some(libc::EINVAL) => "The kernel rejected the ring flags (Linux 6.1 or newer is needed).",
        _ => "See docs/architecture.md (runtime) for the requirements.",
    }
}

/// Whether this process runs under a seccomp filter (`Seccomp: 2` in /proc/self/status).
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() == "2")
    })
}

/// Raise the soft RLIMIT_MEMLOCK to the hard limit (and try unlimited), so rings and the buffer
/// ring can be registered where CAP_IPC_LOCK is missing. Returns the soft limit now in force.
pub fn raise_memlock() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return 0;
        }
        let want = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) == 0 {
            return u64::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let up = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &up) == 0 {
                return lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// Buffers in each worker's receive pool: [`POOL_BUFFERS`], or `RINGWAY_RECV_POOL_BUFFERS`
/// (1..=32768; for tests that must run the pool dry, and for measuring).
fn pool_buffers() -> u16 {
    std::env::var("RINGWAY_RECV_POOL_BUFFERS")
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|n| (1..=32768).contains(n))
        .unwrap_or(POOL_BUFFERS)
}

/// Build one worker's runtime on the process's driver: on io_uring, SINGLE_ISSUER + DEFER_TASKRUN (completions are run
/// by the worker itself when it enters the ring, never interrupting it from another core), and a
/// provided-buffer pool of [`POOL_BUFFERS`] × [`READ_BUF_LEN`].
pub fn build_worker_runtime() -> Result<Runtime, RingError> {
    build_runtime(4096, pool_buffers())
}

/// A runtime like a worker's with `entries` submission entries and `buffers` pool buffers
/// (the health checker's thread runs a small one).
pub fn build_runtime(entries: u32, buffers: u16) -> Result<Runtime, RingError> {
    build_with(driver(), entries, buffers)
}

fn build_with(driver: IoDriver, entries: u32, buffers: u16) -> Result<Runtime, RingError> {
    let mut proactor = ProactorBuilder::new();
    proactor
        .driver_type(match driver {
            IoDriver::IoUring => DriverType::IoUring,
            IoDriver::Epoll => DriverType::Poll,
        })
        .capacity(entries)
        .single_issuer(true)
        .defer_taskrun(true)
        .buffer_pool_size(NonZeroU16::new(buffers).unwrap_or(NonZeroU16::MIN))
        .buffer_pool_buffer_len(READ_BUF_LEN);
    let rt = Runtime::builder()
        .with_proactor(proactor)
        .build()
        .map_err(|e| RingError {
            hint: hint_for(&e),
            source: e,
        })?;
    if driver == IoDriver::IoUring && !rt.driver_type().is_iouring() {
        return Err(RingError {
            source: io::Error::other("the runtime did not pick the io_uring driver"),
            hint: "Set `io_driver: epoll` to run without io_uring.",
        });
    }
    // Create the buffer ring now, so a failure shows at start and not on the first read.
    rt.buffer_pool().map_err(|e| RingError {
        hint: hint_for(&e),
        source: e,
    })?;
    Ok(rt)
}
