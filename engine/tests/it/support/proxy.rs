//! The proxy under test: the real `ringway` binary as a child process. [`Proxy`] starts it on a
//! config (listener addresses on port 0; the bound ones are read from its stdout), signals and
//! stops it, and reads what it leaves behind (its log, its stdout, `/proc` figures).
//! [`run_ringway`] runs a one-shot command (`validate`, `--version`) to completion instead.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{line_reader, scratch_dir, send_signal, wait_bounded, CmdOutput, WAIT};

/// Not an environment variable: passed in a start function's `env`, it runs the proxy under a
/// seccomp filter that refuses io_uring (as container runtimes' default profiles do).
pub const DENY_IO_URING: &str = "(seccomp: deny io_uring)";

/// The real proxy, running as a child process.
pub struct Proxy {
    child: Option<Child>,
    /// Bound address of every listener, by name.
    pub listeners: HashMap<String, SocketAddr>,
    /// The first listener's address.
    pub addr: SocketAddr,
    /// The admin server's bound address, if the config has `admin:` and it was reported yet.
    pub admin_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Proxy {
    /// Start `ringway run -c <yaml> --workers 1`. Listener addresses in the YAML should use port 0.
    pub fn start(yaml: &str) -> Proxy {
        Proxy::start_args(yaml, &["--workers", "1"])
    }

    /// Start with extra command-line arguments.
    pub fn start_args(yaml: &str, args: &[&str]) -> Proxy {
        Proxy::start_args_env(yaml, args, &[])
    }

    /// [`Proxy::start_args`] with extra environment variables for the process.
    pub fn start_args_env(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let dir = scratch_dir();
        let config_path = dir.join("ringway.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Proxy::start_file_env(&config_path, args, env)
    }

    /// Start `ringway run -c CONFIG_PATH ARGS --log-level LEVEL` (`RINGWAY_TEST_LOG`, default
    /// `info`). Ready once every listener is reported and the log says `ringway serving`.
    pub fn start_file(config_path: &Path, args: &[&str]) -> Proxy {
        Proxy::start_file_env(config_path, args, &[])
    }

    /// [`Proxy::start_file`] with extra environment variables for the process.
    pub fn start_file_env(config_path: &Path, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut argv: Vec<OsString> = vec!["run".into(), "-c".into(), config_path.into()];
        argv.extend(args.iter().map(OsString::from));
        argv.push("--log-level".into());
        argv.push(
            std::env::var("RINGWAY_TEST_LOG")
                .unwrap_or_else(|_| "info".into())
                .into(),
        );
        let (mut child, stdout, stderr_path) = Proxy::spawn(config_path, &argv, env);
        let mut listeners = HashMap::new();
        let mut first = None;
        let mut admin_addr = None;
        let until = Instant::now() + WAIT;
        // Listeners are reported before workers start; wait for the "serving" log too.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ringway: listener ") {
                        let mut it = rest.split(" bound to ");
                        if let (Some(name), Some(addr)) = (it.next(), it.next()) {
                            let addr: SocketAddr = addr.trim().parse().expect("bound address");
                            first.get_or_insert(addr);
                            listeners.insert(name.to_string(), addr);
                        }
                    } else if let Some(rest) = line.strip_prefix("ringway: admin bound to ") {
                        admin_addr = Some(rest.trim().parse().expect("admin address"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = wait_bounded(&mut child, Duration::from_secs(2));
                    panic!(
                        "ringway exited at start: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            // The serving line counts the listeners; each one's address line was written to
            // stdout before it, but may still be on its way through the reader thread.
            if let Some(line) = log.lines().find(|l| l.contains("ringway serving")) {
                let want = line
                    .split("listeners=")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(1);
                // The admin address line, likewise, when there is an admin server.
                let admin_pending = admin_addr.is_none() && log.contains("admin server listening");
                if first.is_some() && listeners.len() >= want && !admin_pending {
                    break;
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("ringway exited at start ({st}): {log}");
            }
            assert!(
                Instant::now() < until,
                "ringway did not start within {WAIT:?}: {log}"
            );
        }
        Proxy {
            child: Some(child),
            admin_addr,
            addr: first.expect("a listener"),
            listeners,
            config_path: config_path.to_path_buf(),
            stderr_path,
            stdout,
        }
    }

    /// Start `ringway ARGS` exactly as given (no `run`, no `--log-level` added; the caller passes
    /// `-c`). Ready once the first listener is reported.
    pub fn start_exact(config_path: &Path, args: &[&str]) -> Proxy {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (mut child, stdout, stderr_path) = Proxy::spawn(config_path, &argv, &[]);
        let until = Instant::now() + WAIT;
        let (name, addr) = loop {
            let left = until.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some((n, a)) = line
                        .strip_prefix("ringway: listener ")
                        .and_then(|r| r.split_once(" bound to "))
                    {
                        break (
                            n.to_string(),
                            a.trim().parse::<SocketAddr>().expect("bound address"),
                        );
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = wait_bounded(&mut child, Duration::from_secs(2));
                    panic!(
                        "ringway did not report a listener ({e}): {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        };
        let mut listeners = HashMap::new();
        listeners.insert(name, addr);
        Proxy {
            child: Some(child),
            addr,
            admin_addr: None,
            listeners,
            config_path: config_path.to_path_buf(),
            stderr_path,
            stdout,
        }
    }

    /// Spawn the `ringway` binary with `argv`: stdout is read line by line on a thread, stderr
    /// goes to `ringway.stderr` beside the config (the scratch directory it was written to).
    fn spawn(
        config_path: &Path,
        argv: &[OsString],
        env: &[(&str, &str)],
    ) -> (Child, mpsc::Receiver<String>, PathBuf) {
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(scratch_dir);
        let stderr_path = dir.join("ringway.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringway"));
        cmd.args(argv)
            .envs(env.iter().copied().filter(|(k, _)| *k != DENY_IO_URING))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if env.iter().any(|(k, _)| *k == DENY_IO_URING) {
            super::seccomp::deny_io_uring(&mut cmd);
        }
        let mut child = cmd.spawn().expect("spawn ringway");
        let stdout = line_reader(child.stdout.take().expect("stdout"));
        (child, stdout, stderr_path)
    }

    /// Start with the config's own `workers` (no `--workers` override), and when it has an
    /// `admin:` block, wait for the admin server's bound address too.
    pub fn start_configured(yaml: &str) -> Proxy {
        if yaml.contains("\nadmin:") || yaml.starts_with("admin:") {
            Proxy::start_with_admin(yaml, &[]).0
        } else {
            Proxy::start_args(yaml, &[])
        }
    }

    /// Start like [`Proxy::start_args`] on a config with an `admin:` block (address
    /// `127.0.0.1:0`), and return the admin server's bound address too (read from the
    /// `ringway: admin bound to ADDR` line on stdout).
    pub fn start_with_admin(yaml: &str, args: &[&str]) -> (Proxy, SocketAddr) {
        Proxy::start_with_admin_env(yaml, args, &[])
    }

    /// [`Proxy::start_with_admin`] with extra environment variables for the process.
    pub fn start_with_admin_env(
        yaml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Proxy, SocketAddr) {
        let mut proxy = Proxy::start_args_env(yaml, args, env);
        let until = Instant::now() + WAIT;
        while proxy.admin_addr.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match proxy.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ringway: admin bound to ") {
                        proxy.admin_addr = Some(rest.trim().parse().expect("admin address"));
                    }
                }
                Err(_) => panic!("no admin address within {WAIT:?}: {}", proxy.stderr()),
            }
        }
        let admin = proxy.admin_addr.expect("admin address");
        (proxy, admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Send a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            send_signal(c, sig);
        }
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Wait (bounded) for the process to exit; `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let st = wait_bounded(c, limit);
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// SIGTERM, then wait for a clean exit (bounded).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let st = self.wait_exit(WAIT);
        st.unwrap_or_else(|| panic!("ringway did not exit after SIGTERM: {}", self.stderr()))
    }

    /// The proxy's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log without colour escapes.
    pub fn log(&self) -> String {
        strip_ansi(&self.stderr())
    }

    /// The next `n` lines the proxy writes on stdout that `keep` accepts (bounded by [`WAIT`];
    /// fails the test if they do not come).
    pub fn stdout_lines(&self, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let until = Instant::now() + WAIT;
        let mut out = Vec::new();
        while out.len() < n {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} stdout lines within {WAIT:?}: {out:?}",
                out.len()
            );
            match self.stdout.recv_timeout(left) {
                Ok(l) if keep(&l) => out.push(l),
                Ok(_) => {}
                Err(_) => {}
            }
        }
        out
    }

    /// Resident set size now, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// User + system CPU time of the process so far, in clock ticks (`/proc/PID/stat`).
    pub fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        num(11) + num(12)
    }

    /// Open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Names of the process's threads.
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(5));
        }
        // A failing test shows what the proxy said last.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- the proxy's last log lines ---\n{}", tail.join("\n"));
        }
    }
}

/// The figure of a `KEY N kB` line of `/proc/PID/status` (KEY with its colon, e.g. `VmRSS:`),
/// KiB; 0 if absent.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Write `yaml` to a fresh scratch directory as `ringway.yaml`; returns its path.
pub fn write_config(yaml: &str) -> PathBuf {
    let p = scratch_dir().join("ringway.yaml");
    std::fs::write(&p, yaml).expect("write config");
    p
}

/// `ringway validate` on `yaml`, which must refuse it (exit 1) and print every line of `want`
/// (each an error with its place); returns the error lines for further checks.
pub fn assert_validate_refuses(yaml: &str, want: &[&str]) -> Vec<String> {
    let path = write_config(yaml);
    let out = run_ringway(
        &["validate", "-c", path.to_str().expect("utf-8")],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<String> = out.stderr.lines().map(str::to_string).collect();
    for w in want {
        assert!(
            lines.iter().any(|l| l == w),
            "missing {w:?} in:\n{}",
            out.stderr
        );
    }
    lines
}

/// `ringway validate` on `yaml` refuses it (exit 1) with an error line holding every piece of
/// `want` (for errors whose exact text a test need not pin down).
pub fn assert_validate_refuses_with(yaml: &str, want: &[&str]) {
    let path = write_config(yaml);
    let out = run_ringway(&["validate", "-c", path.to_str().expect("utf-8")], WAIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| want.iter().all(|w| l.contains(w))),
        "no line with all of {want:?} in:\n{}",
        out.stderr
    );
}

/// Run `ringway ARGS` to completion within `limit` (killed, and the test fails, if it takes
/// longer). Output goes through files, so a chatty child never blocks on a full pipe.
pub fn run_ringway(args: &[&str], limit: Duration) -> CmdOutput {
    let dir = scratch_dir();
    let (out_p, err_p) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(&out_p).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&err_p).expect("stderr file"),
        ))
        .spawn()
        .expect("spawn ringway");
    let status = wait_bounded(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = wait_bounded(&mut child, Duration::from_secs(5));
        panic!(
            "`ringway {}` did not exit within {limit:?}: {}",
            args.join(" "),
            std::fs::read_to_string(&err_p).unwrap_or_default()
        )
    });
    CmdOutput {
        status,
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

/// Remove ANSI colour escapes (`ESC [ ... m`) from a log.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `key=` in a structured log line.
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Per-worker `downstream_cx_total` from the `worker stopped` lines of a log, by worker id.
pub fn worker_connection_counts(log: &str) -> BTreeMap<usize, u64> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("worker stopped"))
        .filter_map(|l| {
            let w = log_field(l, "worker")?.parse().ok()?;
            let n = log_field(l, "downstream_cx_total")?.parse().ok()?;
            Some((w, n))
        })
        .collect()
}
