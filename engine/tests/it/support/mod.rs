//! Test support: start the real `ringway` binary on a config (port 0 listeners), real origin
//! servers (`ringway-bench origin`, or a scripted std-socket origin that records what reached
//! it), and speak raw HTTP/1.1 to them. Every wait is bounded (by [`WAIT`] unless said).
//!
//! The tests' binary (`../main.rs`) mounts this folder as `mod support`; a test module takes it
//! with `use crate::support;` and `use support::*;` (`../../alloc_count.rs`, a binary of its own,
//! mounts it by path), so every name of the submodules is re-exported here:
//! - [`proxy`]: the proxy as a child process ([`Proxy`]), one-shot commands ([`run_ringway`]),
//!   its log;
//! - [`origins`]: [`BenchOrigin`], the scripted [`RawOrigin`] and its [`OriginConn`];
//! - [`clients`]: the raw [`Client`], [`request`]/[`get`], the parsed [`RawMessage`];
//! - [`admin`]: the admin server's endpoints and stats;
//! - [`config`]: config text;
//! - [`seccomp`]: a child process that may not use io_uring;
//! - [`control_plane`]: the xDS control plane (`xds_server.py`), [`free_port`];
//! - here: what they all share (scratch directories, bounded waits, child processes).
//!
//! `alloc_count` uses only part of this, hence `dead_code` (and unused re-exports) are allowed.
#![allow(dead_code)]

mod admin;
mod clients;
mod config;
mod control_plane;
mod origins;
mod proxy;
mod seccomp;

// Every name, for `use support::*`; a binary that uses none of a module's is not at fault.
#[allow(unused_imports)]
pub use {admin::*, clients::*, config::*, control_plane::*, origins::*, proxy::*, seccomp::*};

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// Longest any single test wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh scratch directory for one test.
pub fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ringway-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // A process id comes round again within one test run: what an earlier test binary left
    // under the same name (an access log opened for appending) must not leak into this one.
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Path of a binary of this workspace (`target/<profile>/NAME`), built by `cargo build --bins`.
pub fn bin(name: &str) -> PathBuf {
    let ringway = PathBuf::from(env!("CARGO_BIN_EXE_ringway"));
    let p = ringway.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Read lines from a child's stdout on a thread, so waits can be bounded.
fn line_reader(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

fn send_signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > until {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// What a bounded run of a command left behind.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Wait until `f` is true (bounded by [`WAIT`]).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `path` once it has at least `n` (bounded by [`WAIT`]).
pub fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually(&format!("{n} lines in {}", path.display()), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    lines
}

/// Run `python3 -c SCRIPT` with `stdin` as its input, bounded by `limit` (killed, and the test
/// fails, if it takes longer). Fails the test if `python3` cannot be started.
pub fn run_python(script: &str, stdin: &[u8], limit: Duration) -> CmdOutput {
    let dir = scratch_dir();
    let (in_p, out_p, err_p) = (dir.join("stdin"), dir.join("stdout"), dir.join("stderr"));
    std::fs::write(&in_p, stdin).expect("write stdin file");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::from(std::fs::File::open(&in_p).expect("stdin file")))
        .stdout(Stdio::from(
            std::fs::File::create(&out_p).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&err_p).expect("stderr file"),
        ))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): run scripts/test.sh, which installs what the tests need"
            )
        });
    let status = wait_bounded(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = wait_bounded(&mut child, Duration::from_secs(5));
        panic!("python3 did not exit within {limit:?}")
    });
    CmdOutput {
        status,
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

/// Run `cmd` to its end, output captured; the test fails past `limit` (the child is killed).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs curl and openssl)"));
    let until = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// scripts/gen-certs.sh's throwaway CA and certificates, made into `dir` (it makes RSA keys:
/// generous for a loaded machine).
pub fn gen_certs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen-certs.sh");
    let out = run_bounded(Command::new(script).arg(dir), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "gen-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small deterministic generator (xorshift64) for tests that draw what to do at random but
/// must draw the same on every run.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
