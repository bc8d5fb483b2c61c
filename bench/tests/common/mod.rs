//! Test harness: starts the real `ringway-bench` binary as origin and as load generator on
//! 127.0.0.1 port 0, with every wait bounded, and kills what it started on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringway-bench");

/// A running origin.
pub struct Origin {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub addr: SocketAddr,
}

impl Origin {
    /// Starts `ringway-bench origin --listen 127.0.0.1:0 ARGS` and waits (5 s at most) for its
    /// "origin listening on" line.
    pub fn start(args: &[&str]) -> Origin {
        let mut child = Command::new(BIN)
            .arg("origin")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn origin");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("origin did not say where it listens");
        let addr = first
            .strip_prefix("origin listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .expect("address");
        Origin {
            child: Some(child),
            lines: rx,
            addr,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM and returns the request count the origin prints (5 s at most).
    pub fn stop(self) -> u64 {
        self.stop_counts().0
    }

    /// Sends SIGTERM and returns the (requests, connections) counts the origin prints
    /// ("origin served N requests on M connections"), 5 s at most.
    pub fn stop_counts(mut self) -> (u64, u64) {
        let child = self.child.as_mut().expect("running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(5))
                .expect("origin printed no count");
            if let Some(rest) = line.strip_prefix("origin served ") {
                let w: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(
                    (w.get(1), w.get(2), w.get(4)),
                    (Some(&"requests"), Some(&"on"), Some(&"connections")),
                    "{line}"
                );
                let _ = child.wait();
                self.child = None;
                return (w[0].parse().unwrap(), w[3].parse().unwrap());
            }
        }
    }

    /// The origin's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a `load` run printed and saved.
pub struct LoadRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub json: serde_json::Value,
}

/// Runs `ringway-bench load ARGS --json TMP` and kills it if it outlives `limit`.
pub fn load(args: &[&str], limit: Duration) -> LoadRun {
    run_json("load", args, limit).0
}

/// Runs `ringway-bench transfer ARGS --json TMP` (killed if it outlives `limit`); also returns
/// the tool's peak resident memory in KiB (ru_maxrss).
pub fn transfer(args: &[&str], limit: Duration) -> (LoadRun, u64) {
    run_json("transfer", args, limit)
}

/// Runs `ringway-bench SUB ARGS --json TMP`, killed if it outlives `limit`; returns what it
/// printed and saved, and its peak resident memory in KiB.
// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_json(sub: &str, args: &[&str], limit: Duration) -> (LoadRun, u64) {
    let dir = tempdir();
    let json_path = dir.join("run.json");
    let mut child = Command::new(BIN)
        .arg(sub)
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn load");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let pid = child.id() as libc::pid_t;
    // wait4 rather than Child::try_wait: it also gives the child's peak memory.
    let (ok, maxrss) = loop {
        let mut st = 0;
        // SAFETY: rusage is plain data; wait4 on our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut st, libc::WNOHANG, &mut ru) };
        if r == pid {
            break (
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                ru.ru_maxrss as u64,
            );
        }
        assert!(r == 0, "wait4 failed");
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{sub} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    let json = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
    let run = LoadRun {
        ok,
        stdout,
        stderr,
        json,
    };
    (run, maxrss)
}

/// A fresh temporary directory.
pub fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ringway-bench-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A raw client connection with a 5 s read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until `needle` has been seen `times` times (or EOF / timeout); returns all bytes.
pub fn read_until(s: &mut TcpStream, needle: &[u8], times: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while count(&out, needle) < times {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Reads to EOF (5 s timeout per read).
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Occurrences of `needle` in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// One request, one response read until `needle`.
pub fn roundtrip(addr: SocketAddr, req: &[u8], needle: &[u8]) -> String {
    let mut s = raw(addr);
    s.write_all(req).unwrap();
    String::from_utf8_lossy(&read_until(&mut s, needle, 1)).into_owned()
}

/// JSON number as f64.
pub fn num(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}

/// A throwaway CA and a `localhost` server certificate (SAN `DNS:localhost`, `IP:127.0.0.1`),
/// ECDSA P-256, made with the openssl CLI in a fresh temporary directory for this test run
/// (no key is committed): `(cert.pem, key.pem, ca.pem)`. Panics with the command and its
/// output when openssl is missing or fails (scripts/test.sh installs it).
pub fn localhost_certs() -> (String, String, String) {
    let dir = tempdir();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .expect("write leaf.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: [Vec<String>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=ringway-bench test CA"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout", &path("ca.key"), "-out", &path("ca.pem")].map(String::from))
        .collect(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain(["-keyout", &path("key.pem"), "-out", &path("leaf.csr")].map(String::from))
            .collect(),
        [
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &path("leaf.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("leaf.ext"),
            "-out",
            &path("cert.pem"),
        ]
        .map(String::from)
        .to_vec(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("openssl {args:?}: {e} (is openssl installed?)"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (path("cert.pem"), path("key.pem"), path("ca.pem"))
}
