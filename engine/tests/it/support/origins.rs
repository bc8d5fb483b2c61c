//! Origins the proxy forwards to: [`BenchOrigin`] is the real `ringway-bench origin` (its
//! `/echo`, `/bytes/N`, `/delay/MS` and `/status/N` endpoints); [`RawOrigin`] is a scripted
//! std-socket origin, one thread per connection running the test's handler on an [`OriginConn`],
//! that records every byte it receives so a test can prove what reached it (or that nothing did).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use super::{
    bin,
    clients::{dechunk, header_value, Buffered, RawMessage},
    line_reader, send_signal, wait_bounded, WAIT,
};

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

impl RawOrigin {
    /// Listen on 127.0.0.1, port 0, and run `handler` on a thread of its own for each accepted
    /// connection.
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

    pub fn received_bytes(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
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
        let end = self.find_from(0, b"\r\n\r\n", until)? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        let cl = header_value(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if !self.fill_to(end + cl, until) {
            return None;
        }
        let body = self.buf[end..end + cl].to_vec();
        self.buf.drain(..end + cl);
        Some(RawMessage::from_head(&head, body))
    }

    /// Read one request head only, leaving its body (if any) unread. `None` on EOF.
    pub fn read_request_head(&mut self) -> Option<RawMessage> {
        let end = self.find_from(0, b"\r\n\r\n", Instant::now() + WAIT)? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        Some(RawMessage::from_head(&head, Vec::new()))
    }

    /// Like [`OriginConn::read_request`], but a chunked body is read too (and decoded into
    /// `body`). `None` on EOF.
    pub fn read_request_framed(&mut self) -> Option<RawMessage> {
        let until = Instant::now() + WAIT;
        let pos = self.find_from(0, b"\r\n\r\n", until)?;
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
        self.take_exact(n, Instant::now() + WAIT)
    }

    /// True if the peer closed (EOF) within [`WAIT`] with no further bytes.
    pub fn eof(&mut self) -> bool {
        let until = Instant::now() + WAIT;
        self.buf.is_empty() && !self.fill(until)
    }

    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }
}

impl Buffered for OriginConn {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Every byte read is recorded in the origin's `received` too.
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

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// What a [`SwitchOrigin`] does with the requests it serves (not its health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// `200`, body = the origin's name.
    Ok = 0,
    /// `503`, body = the origin's name.
    Fail = 1,
    /// Close the connection without answering.
    Close = 2,
    /// Answer nothing for 30 s, then close.
    Hang = 3,
    /// Reset the connection (RST) without answering.
    Reset = 4,
}

/// An origin that fails on command, keep-alive: requests for `/healthz` (its health check)
/// get the status in `health` (200 to start; 0: the connection is closed without an answer);
/// every other request is served as `mode` says.
/// `served` counts the non-health requests it answered with 200 or 503, `checks` the health
/// checks.
pub struct SwitchOrigin {
    pub origin: RawOrigin,
    pub addr: SocketAddr,
    pub name: &'static str,
    mode: Arc<std::sync::atomic::AtomicU8>,
    health: Arc<std::sync::atomic::AtomicU16>,
    pub served: Arc<AtomicUsize>,
    pub checks: Arc<AtomicUsize>,
}

impl SwitchOrigin {
    pub fn start(name: &'static str) -> SwitchOrigin {
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(Mode::Ok as u8));
        let health = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let checks = Arc::new(AtomicUsize::new(0));
        let (m, h, s, k) = (
            Arc::clone(&mode),
            Arc::clone(&health),
            Arc::clone(&served),
            Arc::clone(&checks),
        );
        let origin = RawOrigin::start(move |mut c| {
            while let Some(req) = c.read_request() {
                let path = req
                    .start
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                if path == "/healthz" {
                    k.fetch_add(1, Ordering::SeqCst);
                    let status = h.load(Ordering::SeqCst);
                    if status == 0 {
                        return;
                    }
                    let resp = format!("HTTP/1.1 {status} HC\r\ncontent-length: 2\r\n\r\nhc");
                    if !c.write(resp.as_bytes()) {
                        return;
                    }
                    continue;
                }
                let status = match m.load(Ordering::SeqCst) {
                    0 => 200,
                    1 => 503,
                    2 => return,
                    4 => {
                        let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                        return;
                    }
                    _ => {
                        thread::sleep(Duration::from_secs(30));
                        return;
                    }
                };
                s.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{name}",
                    name.len()
                );
                if !c.write(resp.as_bytes()) {
                    return;
                }
            }
        });
        let addr = origin.addr;
        SwitchOrigin {
            origin,
            addr,
            name,
            mode,
            health,
            served,
            checks,
        }
    }

    /// What requests get from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// The status its health checks get from now on.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }
}

/// A Python server (`python3 -c SCRIPT ARGS...`) that listens on 127.0.0.1 and prints its port
/// as its first line: scripted HTTP/2 and gRPC servers. Killed when dropped.
pub struct PyServer {
    child: Child,
    pub addr: SocketAddr,
}

impl PyServer {
    /// Start `script` with `args`; `needs` names what the script imports, for the message when
    /// python3 or its port does not come.
    pub fn start(script: &str, args: &[&str], needs: &str) -> PyServer {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 with {needs} ({e}): run scripts/test.sh"));
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let line = lines.recv_timeout(Duration::from_secs(20));
        let port = line
            .as_deref()
            .ok()
            .and_then(|l| l.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {needs} server printed no port: {line:?}");
        };
        PyServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
