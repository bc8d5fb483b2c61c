//! The client side: [`Client`] is one raw HTTP/1.1 connection to the proxy with bounded reads
//! (a whole response, a head only, raw bytes, EOF); [`request`] and [`get`] do one exchange on a
//! fresh connection. Responses (and the requests a scripted origin reads) are parsed into a
//! [`RawMessage`] for assertions; the `/echo` helpers read what `ringway-bench origin` saw.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    time::Instant,
};

use super::WAIT;

/// A parsed HTTP message (request or response), for assertions.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Request line or status line.
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawMessage {
    pub(super) fn from_head(head: &str, body: Vec<u8>) -> RawMessage {
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

/// Where `needle` first occurs in `hay`.
/// The `Content-Length` of a raw HTTP/1 head (as text); 0 when it has none. Panics on a value
/// that is not a number (a test's origin or proxy sent a broken head).
pub fn head_content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().expect("content-length is a number"))
        })
        .unwrap_or(0)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a raw head (name case-insensitive).
pub(super) fn header_value(head: &str, name: &str) -> Option<String> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// A connection read through a buffer, every read bounded by a deadline: what [`Client`] and
/// the scripted origin's [`OriginConn`](super::OriginConn) share.
pub(super) trait Buffered {
    /// Bytes received and not consumed yet.
    fn buf(&mut self) -> &mut Vec<u8>;

    /// Read more into the buffer; false on EOF, an error or the deadline.
    fn fill(&mut self, until: Instant) -> bool;

    /// Where `needle` first occurs at or after `at` in the buffer, reading until it does;
    /// `None` on EOF or at the deadline.
    fn find_from(&mut self, at: usize, needle: &[u8], until: Instant) -> Option<usize> {
        loop {
            if let Some(p) = find(&self.buf()[at..], needle) {
                return Some(at + p);
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    /// Read until the buffer holds at least `n` bytes; false on EOF or at the deadline.
    fn fill_to(&mut self, n: usize, until: Instant) -> bool {
        while self.buf().len() < n {
            if !self.fill(until) {
                return false;
            }
        }
        true
    }

    /// The first `n` bytes, reading as needed; `None` on EOF or at the deadline.
    fn take_exact(&mut self, n: usize, until: Instant) -> Option<Vec<u8>> {
        if !self.fill_to(n, until) {
            return None;
        }
        Some(self.buf().drain(..n).collect())
    }
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
            let start = self.find_from(0, b"\r\n\r\n", until)? + 4;
            let head = String::from_utf8_lossy(&self.buf[..start]).to_string();
            let mut msg = RawMessage::from_head(&head, Vec::new());
            let status = msg.status();
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
                if !self.fill_to(start + cl, until) {
                    return None;
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
                    let line_end = self.find_from(at, b"\r\n", until)?;
                    let size_txt = String::from_utf8_lossy(&self.buf[at..line_end]).to_string();
                    let size =
                        usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                            .ok()?;
                    at = line_end + 2;
                    if size == 0 {
                        // Trailers until an empty line.
                        loop {
                            let e = self.find_from(at, b"\r\n", until)?;
                            let empty = e == at;
                            at = e + 2;
                            if empty {
                                break;
                            }
                        }
                        break;
                    }
                    if !self.fill_to(at + size + 2, until) {
                        return None;
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

    /// Read one response head only (an interim `100 Continue` or a `101` included), leaving
    /// anything after it buffered. `None` on EOF or after [`WAIT`].
    pub fn read_head(&mut self) -> Option<RawMessage> {
        let end = self.find_from(0, b"\r\n\r\n", Instant::now() + WAIT)? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        Some(RawMessage::from_head(&head, Vec::new()))
    }

    /// Read exactly `n` raw bytes (buffered ones first). `None` on EOF or after [`WAIT`].
    pub fn read_exact_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        self.take_exact(n, Instant::now() + WAIT)
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

    /// True if the proxy closed the connection (EOF, or a reset: a close with bytes of ours
    /// unread) within [`WAIT`], with nothing more to read.
    pub fn closed(&mut self) -> bool {
        let until = Instant::now() + WAIT;
        let mut tmp = [0u8; 4096];
        let _ = self
            .stream
            .set_read_timeout(Some(until.saturating_duration_since(Instant::now())));
        match self.stream.read(&mut tmp) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl Buffered for Client {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
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
