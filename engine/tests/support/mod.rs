//! Test support: start the real `ringway` binary on a config (port 0 listeners), real origin
//! servers (`ringway-bench origin`, or a scripted std-socket origin that records what reached
//! it), and speak raw HTTP/1.1 to them. Every wait is bounded.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
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
        let dir = scratch_dir();
        let config_path = dir.join("ringway.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Proxy::start_file(&config_path, args)
    }

    pub fn start_file(config_path: &Path, args: &[&str]) -> Proxy {
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(scratch_dir);
        let stderr_path = dir.join("ringway.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .arg("run")
            .arg("-c")
            .arg(config_path)
            .args(args)
            .arg("--log-level")
            .arg(std::env::var("RINGWAY_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn ringway");
        let stdout = line_reader(child.stdout.take().expect("stdout"));
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
            if first.is_some() && log.contains("ringway serving") {
                break;
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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The proxy's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
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

    /// Resident set size now, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(5));
        }
    }
}

pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `ringway-bench origin` on 127.0.0.1, port 0.
pub struct BenchOrigin {
    child: Option<Child>,
    pub addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
}

impl BenchOrigin {
    /// Start with extra arguments (e.g. `["--delay", "5ms"]`); one worker.
    pub fn start(args: &[&str]) -> BenchOrigin {
        let mut child = Command::new(bin("ringway-bench"))
            .args(["origin", "--listen", "127.0.0.1:0", "--workers", "1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringway-bench origin");
        let stdout = line_reader(child.stdout.take().expect("stdout"));
        let until = Instant::now() + WAIT;
        let addr = loop {
            let left = until.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("origin listening on ") {
                        break a.trim().parse().expect("origin address");
                    }
                }
                Err(e) => panic!("origin did not start: {e}"),
            }
        };
        BenchOrigin {
            child: Some(child),
            addr,
            stdout,
        }
    }

    /// Stop it (SIGTERM) and return the number of requests it says it served.
    pub fn stop(mut self) -> u64 {
        let mut c = self.child.take().expect("running");
        send_signal(&c, libc::SIGTERM);
        let until = Instant::now() + WAIT;
        let mut count = None;
        while let Ok(line) = self
            .stdout
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if let Some(rest) = line.strip_prefix("origin served ") {
                count = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        }
        let _ = wait_bounded(&mut c, Duration::from_secs(5));
        count.expect("origin printed its request count")
    }
}

impl Drop for BenchOrigin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(5));
        }
    }
}

/// A scripted origin on a std socket: one thread per connection runs `handler`. Everything
/// received is recorded, so a test can prove that nothing reached the origin.
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<u8>>>,
    pub connections: Arc<AtomicUsize>,
}

/// What a [`RawOrigin`] handler gets: the connection, and the shared record of received bytes.
pub struct OriginConn {
    pub stream: TcpStream,
    received: Arc<Mutex<Vec<u8>>>,
    buf: Vec<u8>,
}

impl OriginConn {
    /// Read one request head (and a Content-Length body, if any). `None` on EOF.
    pub fn read_request(&mut self) -> Option<RawMessage> {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..pos + 4]).to_string();
                let cl = header_value(&head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while self.buf.len() < pos + 4 + cl {
                    if !self.fill(until) {
                        return None;
                    }
                }
                let body = self.buf[pos + 4..pos + 4 + cl].to_vec();
                self.buf.drain(..pos + 4 + cl);
                return Some(RawMessage::from_head(&head, body));
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    fn fill(&mut self, until: Instant) -> bool {
        let mut tmp = [0u8; 65536];
        let _ = self.stream.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ));
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.received
                    .lock()
                    .expect("lock")
                    .extend_from_slice(&tmp[..n]);
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }
}

impl RawOrigin {
    pub fn start<F>(handler: F) -> RawOrigin
    where
        F: Fn(OriginConn) + Send + Sync + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = l.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        {
            let received = Arc::clone(&received);
            let connections = Arc::clone(&connections);
            thread::spawn(move || {
                for s in l.incoming() {
                    let Ok(stream) = s else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let h = Arc::clone(&handler);
                    let received = Arc::clone(&received);
                    thread::spawn(move || {
                        h(OriginConn {
                            stream,
                            received,
                            buf: Vec::new(),
                        })
                    });
                }
            });
        }
        RawOrigin {
            addr,
            received,
            connections,
        }
    }

    /// An origin that answers every request with `200` and body `ok`, keep-alive.
    pub fn ok() -> RawOrigin {
        RawOrigin::start(|mut c| {
            while c.read_request().is_some() {
                if !c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") {
                    break;
                }
            }
        })
    }

    pub fn received_bytes(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A parsed HTTP message (request or response), for assertions.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Request line or status line.
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawMessage {
    fn from_head(head: &str, body: Vec<u8>) -> RawMessage {
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("").to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        RawMessage {
            start,
            headers,
            body,
        }
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Status code of a response.
    pub fn status(&self) -> u16 {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// A raw client connection with bounded reads.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to proxy");
        stream.set_nodelay(true).ok();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).expect("write to proxy");
        self
    }

    fn fill(&mut self, until: Instant) -> bool {
        let mut tmp = [0u8; 65536];
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(left));
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Read one response. `head_request`: the response to a HEAD has no body. Handles
    /// Content-Length, chunked and close-delimited bodies; panics after [`WAIT`].
    pub fn response(&mut self, head_request: bool) -> RawMessage {
        self.try_response(head_request).unwrap_or_else(|| {
            panic!(
                "no complete response within {WAIT:?}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Like [`Client::response`] but `None` if the connection closed or nothing complete came.
    pub fn try_response(&mut self, head_request: bool) -> Option<RawMessage> {
        let until = Instant::now() + WAIT;
        loop {
            let pos = loop {
                if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                    break p;
                }
                if !self.fill(until) {
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..pos + 4]).to_string();
            let mut msg = RawMessage::from_head(&head, Vec::new());
            let status = msg.status();
            let start = pos + 4;
            if (100..200).contains(&status) && status != 101 {
                self.buf.drain(..start);
                continue;
            }
            let no_body = head_request || status == 204 || status == 304 || status == 101;
            if no_body {
                self.buf.drain(..start);
                return Some(msg);
            }
            if let Some(cl) = msg
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            {
                while self.buf.len() < start + cl {
                    if !self.fill(until) {
                        return None;
                    }
                }
                msg.body = self.buf[start..start + cl].to_vec();
                self.buf.drain(..start + cl);
                return Some(msg);
            }
            if msg
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                let mut at = start;
                let mut body = Vec::new();
                loop {
                    let line_end = loop {
                        if let Some(p) = find(&self.buf[at..], b"\r\n") {
                            break at + p;
                        }
                        if !self.fill(until) {
                            return None;
                        }
                    };
                    let size_txt = String::from_utf8_lossy(&self.buf[at..line_end]).to_string();
                    let size =
                        usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                            .ok()?;
                    at = line_end + 2;
                    if size == 0 {
                        // Trailers until an empty line.
                        loop {
                            let e = loop {
                                if let Some(p) = find(&self.buf[at..], b"\r\n") {
                                    break at + p;
                                }
                                if !self.fill(until) {
                                    return None;
                                }
                            };
                            let empty = e == at;
                            at = e + 2;
                            if empty {
                                break;
                            }
                        }
                        break;
                    }
                    while self.buf.len() < at + size + 2 {
                        if !self.fill(until) {
                            return None;
                        }
                    }
                    body.extend_from_slice(&self.buf[at..at + size]);
                    at += size + 2;
                }
                msg.body = body;
                self.buf.drain(..at);
                return Some(msg);
            }
            // Close-delimited.
            while self.fill(until) {}
            msg.body = self.buf[start..].to_vec();
            self.buf.clear();
            return Some(msg);
        }
    }

    /// True if the proxy closed the connection (EOF) within [`WAIT`], with nothing more to read.
    pub fn closed(&mut self) -> bool {
        let until = Instant::now() + WAIT;
        let mut tmp = [0u8; 4096];
        let _ = self
            .stream
            .set_read_timeout(Some(until.saturating_duration_since(Instant::now())));
        matches!(self.stream.read(&mut tmp), Ok(0))
            || matches!(self.stream.read(&mut tmp), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// One request on a fresh connection; returns the response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> RawMessage {
    let head = raw.starts_with(b"HEAD ");
    let mut c = Client::connect(addr);
    c.send(raw);
    c.response(head)
}

/// `GET path` with Host `host` on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> RawMessage {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}

/// A minimal config: one listener on port 0, every path routed to `cluster_addr`.
pub fn simple_config(cluster_addr: SocketAddr) -> String {
    format!(
        r#"listeners:
  - name: main
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: main
              virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: ["{cluster_addr}"]
"#
    )
}

/// Wait until `f` is true (bounded by [`WAIT`]).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

// --- Added for the http1_* tests (bodies, keep-alive, headers, upgrade, large transfers).

/// The JSON a `ringway-bench origin` `/echo` answered.
pub fn echo_json(r: &RawMessage) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/echo body is not JSON ({e}): {:?}", r.body_str()))
}

/// The `header_list` of an `/echo` answer: every header the origin received, in order, names
/// lower-cased.
pub fn echo_header_list(echo: &serde_json::Value) -> Vec<(String, String)> {
    echo["header_list"]
        .as_array()
        .expect("header_list")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("name").to_ascii_lowercase(),
                p[1].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

/// Decode a complete chunked body at the front of `raw`: `(payload, bytes used)`, or `None` if
/// incomplete or malformed. Trailers are skipped.
pub fn dechunk(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let e = at + find(&raw[at..], b"\r\n")?;
        let txt = std::str::from_utf8(&raw[at..e]).ok()?;
        let size = usize::from_str_radix(txt.split(';').next()?.trim(), 16).ok()?;
        at = e + 2;
        if size == 0 {
            loop {
                let e = at + find(&raw[at..], b"\r\n")?;
                let empty = e == at;
                at = e + 2;
                if empty {
                    return Some((body, at));
                }
            }
        }
        if raw.len() < at + size + 2 || &raw[at + size..at + size + 2] != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

impl OriginConn {
    /// Like [`OriginConn::read_request`], but a chunked body is read too (and decoded into
    /// `body`). `None` on EOF.
    pub fn read_request_framed(&mut self) -> Option<RawMessage> {
        let until = Instant::now() + WAIT;
        let pos = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p;
            }
            if !self.fill(until) {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..pos + 4]).to_string();
        let chunked = header_value(&head, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if !chunked {
            return self.read_request();
        }
        loop {
            if let Some((body, used)) = dechunk(&self.buf[pos + 4..]) {
                self.buf.drain(..pos + 4 + used);
                return Some(RawMessage::from_head(&head, body));
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    /// Read exactly `n` raw bytes (after any buffered ones). `None` on EOF or timeout.
    pub fn read_exact_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        let until = Instant::now() + WAIT;
        while self.buf.len() < n {
            if !self.fill(until) {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// True if the peer closed (EOF) within [`WAIT`] with no further bytes.
    pub fn eof(&mut self) -> bool {
        let until = Instant::now() + WAIT;
        self.buf.is_empty() && !self.fill(until)
    }
}

impl Client {
    /// Read one response head only (an interim `100 Continue` or a `101` included), leaving
    /// anything after it buffered. `None` on EOF or after [`WAIT`].
    pub fn read_head(&mut self) -> Option<RawMessage> {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..p + 4]).to_string();
                self.buf.drain(..p + 4);
                return Some(RawMessage::from_head(&head, Vec::new()));
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    /// Read exactly `n` raw bytes (buffered ones first). `None` on EOF or after [`WAIT`].
    pub fn read_exact_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        let until = Instant::now() + WAIT;
        while self.buf.len() < n {
            if !self.fill(until) {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Everything until EOF (buffered bytes first); `None` if EOF did not come within [`WAIT`].
    pub fn read_to_eof(&mut self) -> Option<Vec<u8>> {
        let until = Instant::now() + WAIT;
        let mut tmp = [0u8; 65536];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut tmp) {
                Ok(0) => return Some(std::mem::take(&mut self.buf)),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(std::mem::take(&mut self.buf))
                }
                Err(_) => return None,
            }
        }
    }

    /// Take the bytes received but not consumed yet (e.g. to count a body read directly from
    /// `stream` afterwards).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Bytes received but not consumed by a parsed message yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

// --- Added for the route_*, cluster_*, errors_*, cli_* and runtime_* tests.

/// Write `yaml` to a fresh scratch directory as `ringway.yaml`; returns its path.
pub fn write_config(yaml: &str) -> PathBuf {
    let p = scratch_dir().join("ringway.yaml");
    std::fs::write(&p, yaml).expect("write config");
    p
}

/// What a bounded run of a command left behind.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
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

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl Proxy {
    /// Start `ringway ARGS` exactly as given (no `run`, no `--log-level` added; the caller passes
    /// `-c`). Ready once the first listener is reported and a TCP connect to it succeeds.
    pub fn start_exact(config_path: &Path, args: &[&str]) -> Proxy {
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(scratch_dir);
        let stderr_path = dir.join("ringway.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn ringway");
        let stdout = line_reader(child.stdout.take().expect("stdout"));
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

    /// The log without colour escapes.
    pub fn log(&self) -> String {
        strip_ansi(&self.stderr())
    }
}

/// Per-worker `downstream_cx_total` from the `worker stopped` lines of a log, by worker id.
pub fn worker_connection_counts(log: &str) -> std::collections::BTreeMap<usize, u64> {
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

impl RawOrigin {
    /// An origin that answers every request with `200` and body `name` after `delay`,
    /// keep-alive; the returned counter counts the requests it read.
    pub fn counting(name: &'static str, delay: Duration) -> (RawOrigin, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        let o = RawOrigin::start(move |mut c| {
            while c.read_request().is_some() {
                n2.fetch_add(1, Ordering::SeqCst);
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                    name.len()
                );
                if !c.write(resp.as_bytes()) {
                    break;
                }
            }
        });
        (o, n)
    }

    /// An origin that answers every request with `200` whose body is the request head exactly as
    /// it arrived (request line and headers, CRLFs included), keep-alive.
    pub fn echo_head() -> RawOrigin {
        RawOrigin::start(|mut c| {
            while let Some(m) = c.read_request() {
                let mut head = format!("{}\r\n", m.start);
                for (n, v) in &m.headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
                    head.len()
                );
                if !c.write(resp.as_bytes()) {
                    break;
                }
            }
        })
    }
}

impl Client {
    /// Send `raw` and read one response on this (keep-alive) connection.
    pub fn roundtrip(&mut self, raw: &[u8]) -> RawMessage {
        let head = raw.starts_with(b"HEAD ");
        self.send(raw);
        self.response(head)
    }

    /// `GET path` with Host `host` on this connection.
    pub fn get(&mut self, host: &str, path: &str) -> RawMessage {
        self.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
    }
}

// --- Added for the admin_* and stats_* tests.

impl Proxy {
    /// Start like [`Proxy::start_args`] on a config with an `admin:` block (address
    /// `127.0.0.1:0`), and return the admin server's bound address too (read from the
    /// `ringway: admin bound to ADDR` line on stdout).
    pub fn start_with_admin(yaml: &str, args: &[&str]) -> (Proxy, SocketAddr) {
        let mut proxy = Proxy::start_args(yaml, args);
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
}

/// `simple_config` plus `admin: {address: 127.0.0.1:0}` and extra top-level keys.
pub fn admin_config(cluster_addr: SocketAddr, extra: &str) -> String {
    format!(
        "admin:\n  address: 127.0.0.1:0\n{extra}{}",
        simple_config(cluster_addr)
    )
}

/// `METHOD path` to the admin server on a fresh connection.
pub fn admin(addr: SocketAddr, method: &str, path: &str) -> RawMessage {
    request(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
}

/// The `name: value` lines of the admin `/stats` text output, counters and gauges only.
pub fn admin_stats(addr: SocketAddr) -> HashMap<String, u64> {
    let r = admin(addr, "GET", "/stats");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    r.body_str()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A [`RawOrigin`] answering `GET /status/NNN` with status NNN (and 200 otherwise), keep-alive.
pub fn status_origin() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(m) = c.read_request() {
            let path = m.start.split_whitespace().nth(1).unwrap_or("/").to_string();
            let status: u16 = path
                .strip_prefix("/status/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    })
}

// --- Added for the access_log_* tests.

impl Proxy {
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

// --- Added for the stats_load tests.

/// The admin `/stats?format=json` document.
pub fn admin_json(addr: SocketAddr) -> serde_json::Value {
    let r = admin(addr, "GET", "/stats?format=json");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/stats?format=json is not JSON ({e}): {}", r.body_str()))
}

/// A counter or gauge of an [`admin_json`] document, by name.
pub fn json_stat(doc: &serde_json::Value, name: &str) -> Option<u64> {
    doc["stats"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["value"]
        .as_u64()
}

/// A histogram of an [`admin_json`] document, by name (`count`, `quantiles`, ... in µs).
pub fn json_hist<'a>(doc: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    doc["histograms"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
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
