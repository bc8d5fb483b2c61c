//! Head parsing: httparse for the grammar, then one pass over the parsed headers for the
//! semantics (framing, keep-alive, expect, upgrade, host) and the request-smuggling rules.
//!
//! Data enters as the front of a read buffer and leaves as a [`Request`]/[`Response`] borrowing
//! it. Hot path: httparse, [`check_crlf`] (two bytes in front of each header line, not a scan of
//! the head), [`scan_headers`] (names dispatched on their length, then compared eight bytes at a
//! time), the request-target checks. Only error paths scan the buffer again, to say *why* httparse
//! refused it (obs-fold, bare LF, a version it does not speak).

use super::{BodyFraming, HeaderSlots, Limits, ParseError, Request, Response, Version};
use httparse::Header;
use ringway_filters::stream::eq_name;

/// Parse a request head; see [`super::parse_request`].
pub(super) fn request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    limits: &Limits,
) -> Result<Option<Request<'b, 'h>>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, headers)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if partial_target_len(buf, req.method, req.path) > limits.max_uri_bytes {
                return Err(ParseError::UriTooLong);
            }
            if buf.len() > limits.max_head_bytes {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(request_error(e, buf)),
    };
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let headers: &'h [Header<'b>] = headers;
    let (Some(method), Some(target), Some(minor)) = (method, path, version) else {
        return Err(ParseError::Malformed("incomplete request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(ParseError::UriTooLong);
    }
    if head_len > limits.max_head_bytes {
        return Err(ParseError::HeadersTooLarge);
    }
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::Version),
    };
    check_crlf(buf, headers, head_len)?;
    let info = scan_headers(headers)?;

    // Framing (RFC 9112 §6.3): CL with TE is refused outright in a request.
    if info.content_length.is_some() && info.te.present {
        return Err(ParseError::ContentLengthWithTransferEncoding);
    }
    let framing = if info.te.present {
        if version == Version::Http10 {
            return Err(ParseError::Malformed(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        info.te.verdict()?;
        BodyFraming::Chunked
    } else if let Some(n) = info.content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::None
    };

    // Host: one at most; required in HTTP/1.1 (RFC 9112 §3.2).
    if info.host_count > 1 {
        return Err(ParseError::Malformed("more than one Host header"));
    }
    if let Some(h) = info.host {
        if !h.iter().all(|&b| is_authority_byte(b)) {
            return Err(ParseError::Malformed("invalid Host header"));
        }
    } else if version == Version::Http11 {
        return Err(ParseError::Malformed("HTTP/1.1 request without Host"));
    }
    let host = match target_form(method, target)? {
        TargetForm::Origin | TargetForm::Asterisk => info.host,
        TargetForm::Absolute(authority) | TargetForm::Authority(authority) => Some(authority),
    };

    let http11 = version == Version::Http11;
    Ok(Some(Request {
        method,
        target,
        version,
        headers,
        head_len,
        framing,
        keep_alive: keep_alive(version, &info),
        expect_continue: http11 && info.expect_continue,
        upgrade: if http11 && info.conn_upgrade {
            info.upgrade
        } else {
            None
        },
        host,
        nominates: info.nominates,
    }))
}

/// Parse a response head; see [`super::parse_response`].
pub(super) fn response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    request_was_head: bool,
    max_head_bytes: usize,
) -> Result<Option<Response<'b, 'h>>, ParseError> {
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, headers)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head_bytes {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(response_error(e, buf)),
    };
    let httparse::Response {
        version,
        code,
        reason,
        headers,
    } = resp;
    let headers: &'h [Header<'b>] = headers;
    let (Some(minor), Some(status)) = (version, code) else {
        return Err(ParseError::Malformed("incomplete status line"));
    };
    if head_len > max_head_bytes {
        return Err(ParseError::HeadersTooLarge);
    }
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::Version),
    };
    if !(100..=599).contains(&status) {
        return Err(ParseError::Malformed("invalid status code"));
    }
    check_crlf(buf, headers, head_len)?;
    let info = scan_headers(headers)?;

    let mut keep_alive = keep_alive(version, &info);
    let no_body = request_was_head || status < 200 || status == 204 || status == 304;
    let framing = if no_body {
        BodyFraming::None
    } else if info.te.present {
        info.te.verdict()?;
        // RFC 9112 §6.3: TE overrides CL, and the connection is not trusted afterwards; a TE in
        // an HTTP/1.0 message means its framing is faulty: read it, then close (§6.1).
        if info.content_length.is_some() || version == Version::Http10 {
            keep_alive = false;
        }
        BodyFraming::Chunked
    } else if let Some(n) = info.content_length {
        BodyFraming::Length(n)
    } else {
        keep_alive = false;
        BodyFraming::UntilClose
    };
    Ok(Some(Response {
        status,
        reason: reason.unwrap_or(""),
        version,
        headers,
        head_len,
        framing,
        keep_alive,
        nominates: info.nominates,
    }))
}

/// What one pass over the headers found.
#[derive(Default)]
struct HeadInfo<'b> {
    content_length: Option<u64>,
    te: TransferEncoding,
    close: bool,
    keep_alive: bool,
    conn_upgrade: bool,
    /// A `Connection` token other than `close`, `keep-alive` and `upgrade`: it names a
    /// hop-by-hop header.
    nominates: bool,
    expect_continue: bool,
    upgrade: Option<&'b [u8]>,
    host: Option<&'b [u8]>,
    host_count: u32,
}

/// The transfer codings of every Transfer-Encoding line, summarised in order.
#[derive(Default)]
struct TransferEncoding {
    present: bool,
    codings: u32,
    chunked_seen: bool,
    /// `chunked` applied twice, or followed by another coding.
    chunked_not_final: bool,
    last_is_chunked: bool,
}

impl TransferEncoding {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in tokens(value) {
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.chunked_seen {
                self.chunked_not_final = true;
            }
            self.chunked_seen |= chunked;
            self.last_is_chunked = chunked;
            self.codings += 1;
        }
    }

    /// `Ok` when the body is framed by exactly `chunked`.
    fn verdict(&self) -> Result<(), ParseError> {
        if self.codings == 0 {
            Err(ParseError::Malformed("empty transfer-encoding"))
        } else if self.chunked_not_final {
            Err(ParseError::Malformed(
                "chunked is not the final transfer coding",
            ))
        } else if self.last_is_chunked && self.codings == 1 {
            Ok(())
        } else {
            Err(ParseError::UnsupportedTransferEncoding)
        }
    }
}

fn scan_headers<'b>(headers: &[Header<'b>]) -> Result<HeadInfo<'b>, ParseError> {
    let mut info = HeadInfo::default();
    for h in headers {
        let name = h.name.as_bytes();
        match name.len() {
            4 if eq_name(name, b"host") => {
                info.host_count += 1;
                info.host = Some(h.value);
            }
            6 if eq_name(name, b"expect") => {
                info.expect_continue |= eq_name(trim_ows(h.value), b"100-continue");
            }
            7 if eq_name(name, b"upgrade") => {
                info.upgrade = info.upgrade.or(Some(h.value));
            }
            10 if eq_name(name, b"connection") => {
                for t in tokens(h.value) {
                    if eq_name(t, b"close") {
                        info.close = true;
                    } else if eq_name(t, b"keep-alive") {
                        info.keep_alive = true;
                    } else if eq_name(t, b"upgrade") {
                        info.conn_upgrade = true;
                    } else {
                        info.nominates = true;
                    }
                }
            }
            14 if eq_name(name, b"content-length") => {
                content_length(h.value, &mut info.content_length)?;
            }
            17 if eq_name(name, b"transfer-encoding") => info.te.add(h.value),
            _ => {}
        }
    }
    Ok(info)
}

/// Fold one Content-Length line (`1*DIGIT`, or a list of them) into `acc`.
fn content_length(value: &[u8], acc: &mut Option<u64>) -> Result<(), ParseError> {
    for elem in value.split(|&b| b == b',') {
        let digits = trim_ows(elem);
        if digits.is_empty() {
            return Err(ParseError::InvalidContentLength);
        }
        let mut n: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(ParseError::InvalidContentLength);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(ParseError::InvalidContentLength)?;
        }
        match *acc {
            Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
            _ => *acc = Some(n),
        }
    }
    Ok(())
}

fn keep_alive(version: Version, info: &HeadInfo<'_>) -> bool {
    match version {
        Version::Http11 => !info.close,
        Version::Http10 => info.keep_alive && !info.close,
    }
}

/// Every line of a complete head ends in CRLF. httparse accepts bare LF, and a line ends exactly
/// where the next header name starts, so the two bytes in front of each name, the leading empty
/// lines and the last four bytes of the head are every line ending there is.
fn check_crlf(buf: &[u8], headers: &[Header<'_>], head_len: usize) -> Result<(), ParseError> {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead % 2 != 0 || !buf[..lead].chunks_exact(2).all(|c| c == b"\r\n") {
        return Err(ParseError::BareLf);
    }
    let base = buf.as_ptr() as usize;
    for h in headers {
        let at = (h.name.as_ptr() as usize).wrapping_sub(base);
        if at < 2 || buf.get(at - 2..at) != Some(b"\r\n") {
            return Err(ParseError::BareLf);
        }
    }
    if head_len < 4 || buf.get(head_len - 4..head_len) != Some(b"\r\n\r\n") {
        return Err(ParseError::BareLf);
    }
    Ok(())
}

/// Length of the request-target seen so far in an incomplete head (0 before it starts).
fn partial_target_len(buf: &[u8], method: Option<&str>, target: Option<&str>) -> usize {
    if let Some(t) = target {
        return t.len();
    }
    let Some(m) = method else { return 0 };
    let start = (m.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) + m.len() + 1;
    buf.len().saturating_sub(start)
}

fn request_error(e: httparse::Error, buf: &[u8]) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::HeadersTooLarge,
        httparse::Error::Version => {
            let line = skip_empty_lines(buf);
            let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"");
            version_error(version)
        }
        other => diagnose(buf).unwrap_or(ParseError::Malformed(describe(other))),
    }
}

fn response_error(e: httparse::Error, buf: &[u8]) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::HeadersTooLarge,
        httparse::Error::Version => version_error(skip_empty_lines(buf)),
        other => diagnose(buf).unwrap_or(ParseError::Malformed(describe(other))),
    }
}

/// `HTTP/<digit>...` is a version we do not speak (505); anything else is not HTTP/1 (400).
fn version_error(version: &[u8]) -> ParseError {
    match version {
        [b'H', b'T', b'T', b'P', b'/', d, ..] if d.is_ascii_digit() => ParseError::Version,
        _ => ParseError::Malformed("invalid HTTP version"),
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid request line",
        _ => "malformed head",
    }
}

/// Why httparse refused a head, when the reason is one with its own error: a bare LF, or a line
/// that starts with whitespace (obs-fold) before the end of the head. Error path only.
fn diagnose(buf: &[u8]) -> Option<ParseError> {
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        if i == 0 || buf[i - 1] != b'\r' {
            return Some(ParseError::BareLf);
        }
        if i >= 3 && &buf[i - 3..i] == b"\r\n\r" {
            return None; // end of the head
        }
        if matches!(buf.get(i + 1), Some(b' ' | b'\t')) {
            return Some(ParseError::ObsFold);
        }
    }
    None
}

fn skip_empty_lines(buf: &[u8]) -> &[u8] {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    &buf[lead..]
}

/// The shapes a request-target may take (RFC 9112 §3.2).
enum TargetForm<'b> {
    Origin,
    /// Carries the authority.
    Absolute(&'b [u8]),
    Asterisk,
    /// CONNECT's `host:port`.
    Authority(&'b [u8]),
}

fn target_form<'b>(method: &str, target: &'b str) -> Result<TargetForm<'b>, ParseError> {
    if method == "CONNECT" {
        let t = target.as_bytes();
        return if t.contains(&b':') && t.iter().all(|&b| is_authority_byte(b)) {
            Ok(TargetForm::Authority(t))
        } else {
            Err(ParseError::Malformed("invalid CONNECT target"))
        };
    }
    if target.starts_with('/') {
        return Ok(TargetForm::Origin);
    }
    if target == "*" && method == "OPTIONS" {
        return Ok(TargetForm::Asterisk);
    }
    match split_absolute(target) {
        Some((authority, _))
            if !authority.is_empty() && authority.bytes().all(is_authority_byte) =>
        {
            Ok(TargetForm::Absolute(authority.as_bytes()))
        }
        _ => Err(ParseError::Malformed("invalid request-target")),
    }
}

/// `scheme://authority<rest>` into (authority, rest); `None` if `t` is not absolute-form.
fn split_absolute(t: &str) -> Option<(&str, &str)> {
    let b = t.as_bytes();
    let colon = b.iter().position(|&c| c == b':')?;
    let scheme_ok = b.first().is_some_and(u8::is_ascii_alphabetic)
        && b[..colon]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let rest = t[colon..].strip_prefix("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// See [`Request::path`].
pub(super) fn target_path(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    match split_absolute(target) {
        Some((_, "")) => "/",
        Some((_, path)) => path,
        None => target,
    }
}

/// Bytes allowed in a Host value or an authority without userinfo: unreserved, sub-delims,
/// `:` (port), `[` `]` (IP literal), `%` (pct-encoding). A table: every request's Host runs
/// through it byte by byte.
fn is_authority_byte(b: u8) -> bool {
    AUTHORITY[b as usize]
}

const AUTHORITY: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=:[]%";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// Comma-separated list elements with optional whitespace trimmed, empty ones skipped.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

pub(super) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}
