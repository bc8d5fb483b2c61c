//! The admin server's minimal HTTP/1.1: read one request head (bounded by
//! [`MAX_HEAD`](super::MAX_HEAD)), discard a small body, write one response with
//! `Connection: close`. Blocking std sockets with timeouts; nothing here is on the data path.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use super::{MAX_BODY, MAX_HEAD};

/// One admin request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Split a request-target into path and query.
    pub fn parse_target(method: &str, target: &str) -> Request {
        let (path, q) = target.split_once('?').unwrap_or((target, ""));
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        Request {
            method: method.to_owned(),
            path: percent_decode(path),
            query: q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        }
    }
}

/// Decode `%XX` and `+` (a space, as in forms); invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One admin response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response {
            content_type: "application/json".into(),
            ..Response::text(status, body)
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    pub fn content_type(mut self, ct: &str) -> Response {
        self.content_type = ct.to_owned();
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Read one request: its head (at most `MAX_HEAD` bytes) and a body of at most `MAX_BODY` bytes,
/// which is discarded. A malformed or oversized request is answered with the error response.
pub fn read_request(mut conn: &TcpStream) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (req, head_len, body_len) = loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Response::text(400, "incomplete request\n")),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let body_len = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let req = Request::parse_target(r.method.unwrap_or("GET"), r.path.unwrap_or("/"));
                break (req, len, body_len);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(Response::text(431, "request head too large\n"));
                }
            }
            Err(e) => return Err(Response::text(400, format!("bad request: {e}\n"))),
        }
    };
    if body_len > MAX_BODY {
        return Err(Response::text(413, "request body too large\n"));
    }
    let mut have = buf.len() - head_len;
    while have < body_len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    Ok(req)
}

/// Write a response and close the write side.
pub fn write_response(mut conn: &TcpStream, r: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(r.body.as_bytes())?;
    conn.flush()?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query() {
        let r = Request::parse_target("GET", "/stats/?filter=cluster%5C.origin&format=json&x=a+b");
        assert_eq!(r.path, "/stats");
        assert_eq!(r.query("filter"), Some("cluster\\.origin"));
        assert_eq!(r.query("format"), Some("json"));
        assert_eq!(r.query("x"), Some("a b"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
