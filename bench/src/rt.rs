//! Worker plumbing shared by the origin and the load generator.
//!
//! Owns the rules from the runtime note: one compio runtime per worker thread, built *in* that
//! thread (SINGLE_ISSUER: only the creating thread may submit), with SINGLE_ISSUER + DEFER_TASKRUN
//! set on the ring, pinned to one core with `core_affinity`; listeners built with socket2
//! (SO_REUSEPORT, a real backlog) and handed to compio with `from_std`; TCP_NODELAY everywhere.
//! If io_uring cannot be set up, [`build_runtime`] fails with a message that says why, after
//! RLIMIT_MEMLOCK was raised as far as the process may.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use compio::driver::ProactorBuilder;
use compio::runtime::{Runtime, RuntimeBuilder};
use socket2::{Domain, Protocol, Socket, Type};

/// Submission queue entries per worker ring.
const RING_ENTRIES: u32 = 4096;

/// Raises RLIMIT_MEMLOCK to its hard limit (rings count against it without CAP_IPC_LOCK).
pub fn raise_memlock() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
}

/// Raises RLIMIT_NOFILE to its hard limit (many connections need many descriptors).
pub fn raise_nofile() {
    // SAFETY: as above.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Builds this thread's runtime on io_uring with SINGLE_ISSUER + DEFER_TASKRUN.
///
/// Must be called on the thread that will run it. Fails (never falls back) when io_uring is not
/// available.
pub fn build_runtime() -> anyhow::Result<Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(RING_ENTRIES)
        .single_issuer(true)
        .defer_taskrun(true);
    let rt = RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .map_err(|e| {
            anyhow::anyhow!(
            "cannot set up io_uring ({e}); ringway-bench needs Linux >= 6.1 with io_uring allowed \
             (not blocked by seccomp or kernel.io_uring_disabled) and enough locked memory \
             (ulimit -l)"
        )
        })?;
    if !rt.driver_type().is_iouring() {
        bail!(
            "compio picked the {:?} driver, not io_uring; refusing to run on a slower path",
            rt.driver_type()
        );
    }
    Ok(rt)
}

/// The cores this process may run on (respects `taskset`), in order.
pub fn allowed_cores() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// Pins the calling thread to the `index`-th allowed core (wrapping around).
pub fn pin_current(index: usize) {
    let cores = allowed_cores();
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[index % cores.len()]);
    }
}

/// Binds `count` SO_REUSEPORT listeners on `addr`. With port 0 the first socket picks the port
/// and the others reuse it. A fixed port that something else already listens on is refused
/// (with SO_REUSEPORT a leftover process would otherwise silently take part of the load).
pub fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        let probe = new_socket(addr)?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).with_context(|| {
            format!("{addr} is already in use (a leftover process would share the load)")
        })?;
    }
    let mut out = Vec::with_capacity(count);
    let mut bind_addr = addr;
    for _ in 0..count.max(1) {
        let s = new_socket(bind_addr)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&bind_addr.into())
            .with_context(|| format!("bind {bind_addr}"))?;
        s.listen(backlog)
            .with_context(|| format!("listen {bind_addr}"))?;
        if bind_addr.port() == 0 {
            bind_addr = s.local_addr()?.as_socket().context("listener address")?;
        }
        out.push(s.into());
    }
    Ok(out)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

/// Parses a duration such as `10s`, `2ms`, `500us`, `1m`, `1.5s` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration '{s}' (try 10s, 250ms, 1m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "ns" => v / 1e9,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "bad duration unit in '{s}' (use ns, us, ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration given in microseconds for humans (`845us`, `5.12ms`, `1.20s`).
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2ms").unwrap(), Duration::from_millis(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
