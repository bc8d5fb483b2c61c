//! Rendering access-log lines: a parsed [`Format`] (see [`logfmt`](crate::logfmt), which parses
//! the config's format strings once at load) is rendered per request from a [`StreamInfo`]
//! straight into the worker's log buffer (no allocation per line).
//!
//! A missing value prints `-` in text and inside JSON strings, `null` as a JSON value of its own;
//! a JSON value that is exactly one command keeps the command's type (numbers are JSON numbers,
//! `UPSTREAM_REUSED` a boolean); JSON keys come sorted and escaped from the parse.
//!
//! [`Format::render`] is defined here, beside what it reads (the request's `StreamInfo`), not in
//! `logfmt`: the parsed type, which config holds, depends on nothing of the request path.

use std::{
    io::Write,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    logfmt::{time::TimeFormat, Command, Format, Piece},
    stream_info::{response_flags, StreamInfo, Version},
    text::json_str,
};

impl Format {
    /// Append one line (newline included) for `si` to `out`.
    pub fn render(&self, si: &StreamInfo, cluster: Option<&str>, out: &mut Vec<u8>) {
        let ctx = Ctx {
            si,
            cluster,
            now: Instant::now(),
        };
        match self {
            Format::Text(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Lit(l) => out.extend_from_slice(l.as_bytes()),
                        Piece::Cmd(c) => ctx.value(c).write(Mode::Text, out),
                    }
                }
            }
            Format::Json(fields) => {
                out.push(b'{');
                for (i, (key, pieces)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key.as_bytes());
                    out.push(b':');
                    match pieces.as_slice() {
                        [Piece::Cmd(c)] => ctx.value(c).write(Mode::JsonTyped, out),
                        _ => {
                            out.push(b'"');
                            for p in pieces {
                                match p {
                                    Piece::Lit(l) => json_str(l.as_bytes(), out),
                                    Piece::Cmd(c) => ctx.value(c).write(Mode::JsonInString, out),
                                }
                            }
                            out.push(b'"');
                        }
                    }
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

/// The `x-ringway-reason`-style detail for `%RESPONSE_CODE_DETAILS%`.
pub fn response_code_details(si: &StreamInfo) -> Option<&'static str> {
    if let Some(p) = si.protocol_error {
        return Some(p);
    }
    if let Some(r) = si.local_reason {
        return Some(r.reply().1);
    }
    if let Some(d) = si.filter_details {
        return Some(d);
    }
    if si.status == 0 {
        return None;
    }
    Some(if si.upstream.is_some() {
        "via_upstream"
    } else {
        "direct_response"
    })
}

/// What one request needs at render time.
struct Ctx<'a> {
    si: &'a StreamInfo,
    cluster: Option<&'a str>,
    now: Instant,
}

/// A command's value before it is written.
/// A TLS detail of the downstream connection; missing on plain connections and empty values.
fn tls_str<'a>(
    si: &'a StreamInfo,
    f: impl Fn(&'a crate::io::tls::TlsDetails) -> Option<&'a str>,
) -> Val<'a> {
    match si.tls.as_deref().and_then(f) {
        Some(s) if !s.is_empty() => Val::Str(s.as_bytes()),
        _ => Val::Missing,
    }
}

/// A detail of the client certificate; missing without one.
fn peer_str<'a>(si: &'a StreamInfo, f: impl Fn(&'a crate::x509::PeerCert) -> &'a str) -> Val<'a> {
    tls_str(si, |t| t.peer.as_ref().map(&f))
}

enum Val<'a> {
    Missing,
    Str(&'a [u8]),
    Num(u64),
    /// Milliseconds with microsecond precision (ringway's timing breakdown).
    Millis(Duration),
    Bool(bool),
    Addr(SocketAddr),
    Ip(SocketAddr),
    Time(SystemTime, &'a TimeFormat),
    Flags([&'static str; 4], usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    /// A JSON value of its own (typed).
    JsonTyped,
    /// Part of a JSON string.
    JsonInString,
}

impl<'a> Ctx<'a> {
    fn between(&self, a: Option<Instant>, b: Option<Instant>) -> Option<Duration> {
        Some(b?.saturating_duration_since(a?))
    }

    fn value(&self, c: &'a Command) -> Val<'a> {
        let si = self.si;
        let ms = |d: Option<Duration>| d.map_or(Val::Missing, |d| Val::Num(d.as_millis() as u64));
        let fine = |d: Option<Duration>| d.map_or(Val::Missing, Val::Millis);
        match c {
            Command::StartTime(f) => match si.start {
                Some(start) => {
                    let ago = self.now.saturating_duration_since(start);
                    let t = SystemTime::now().checked_sub(ago);
                    Val::Time(t.unwrap_or(SystemTime::UNIX_EPOCH), f)
                }
                None => Val::Missing,
            },
            Command::Req { name, alt, max_len } => {
                let v = self
                    .header(name)
                    .or_else(|| alt.as_deref().and_then(|a| self.header(a)));
                match v {
                    Some(v) => Val::Str(match max_len {
                        Some(n) if v.len() > *n => &v[..*n],
                        _ => v,
                    }),
                    None => Val::Missing,
                }
            }
            Command::Protocol => match si.version {
                Some(Version::Http10) => Val::Str(b"HTTP/1.0"),
                Some(Version::Http11) => Val::Str(b"HTTP/1.1"),
                Some(Version::Http2) => Val::Str(b"HTTP/2"),
                None => Val::Missing,
            },
            Command::ResponseCode => Val::Num(u64::from(si.status)),
            Command::ResponseCodeDetails => {
                response_code_details(si).map_or(Val::Missing, |s| Val::Str(s.as_bytes()))
            }
            Command::ResponseFlags => {
                let (f, n) = response_flags(si);
                Val::Flags(f, n)
            }
            Command::BytesReceived => Val::Num(si.bytes_received),
            Command::BytesSent => Val::Num(si.bytes_sent),
            Command::Duration => ms(si.start.map(|s| {
                si.t_last_byte
                    .unwrap_or(self.now)
                    .saturating_duration_since(s)
            })),
            Command::RequestDuration => ms(self.between(si.start, si.t_request_sent)),
            Command::ResponseDuration => ms(self.between(si.start, si.t_first_byte)),
            Command::ResponseTxDuration => ms(self.between(si.t_first_byte, si.t_last_byte)),
            Command::UpstreamHost => si.upstream.map_or(Val::Missing, Val::Addr),
            Command::UpstreamCluster => self
                .cluster
                .map_or(Val::Missing, |c| Val::Str(c.as_bytes())),
            Command::DownstreamRemoteAddress => {
                si.downstream_remote.map_or(Val::Missing, Val::Addr)
            }
            Command::DownstreamRemoteAddressWithoutPort => {
                si.downstream_remote.map_or(Val::Missing, Val::Ip)
            }
            Command::UpstreamConnectTime => fine(self.between(si.start, si.t_upstream_ready)),
            Command::UpstreamRequestSendTime => {
                fine(self.between(si.t_upstream_ready, si.t_request_sent))
            }
            Command::UpstreamFirstByteTime => {
                fine(self.between(si.t_request_sent, si.t_first_byte))
            }
            Command::UpstreamRequestAttemptCount => Val::Num(u64::from(si.attempts)),
            Command::UpstreamTransportFailureReason => si
                .upstream_transport_failure
                .map_or(Val::Missing, |s| Val::Str(s.as_bytes())),
            Command::RequestedServerName => tls_str(si, |t| t.sni.as_deref()),
            Command::DownstreamTlsVersion => tls_str(si, |t| Some(t.version)),
            Command::DownstreamTlsCipher => tls_str(si, |t| Some(t.cipher)),
            Command::DownstreamPeerSubject => peer_str(si, |p| &p.subject),
            Command::DownstreamPeerUriSan => peer_str(si, |p| &p.uri_san_list),
            Command::DownstreamPeerDnsSan => peer_str(si, |p| &p.dns_san_list),
            Command::DownstreamPeerFingerprint256 => peer_str(si, |p| &p.fingerprint_256),
            Command::DownstreamPeerSerial => peer_str(si, |p| &p.serial),
            Command::UpstreamReused => match si.upstream {
                Some(_) => Val::Bool(si.upstream_reused),
                None => Val::Missing,
            },
            Command::Resp { name, alt, max_len } => {
                let get = |n: &str| si.resp.headers.get_bytes(n).filter(|_| si.status != 0);
                match get(name).or_else(|| alt.as_deref().and_then(get)) {
                    Some(v) => Val::Str(match max_len {
                        Some(n) if v.len() > *n => &v[..*n],
                        _ => v,
                    }),
                    None => Val::Missing,
                }
            }
            Command::FilterState(key) => si
                .filter_state
                .get(key)
                .map_or(Val::Missing, |v| Val::Str(v.as_bytes())),
        }
    }

    /// A request header's value (first of that name), or a pseudo-header, from the request as
    /// the stream model holds it (after the connection manager's and the filters' edits, as
    /// Envoy logs it).
    fn header(&self, name: &str) -> Option<&'a [u8]> {
        let si = self.si;
        si.version?;
        let r = &si.req;
        let nonempty = |v: &'a [u8]| (!v.is_empty()).then_some(v);
        match name {
            ":method" => Some(r.method_str().as_bytes()),
            ":scheme" => Some(r.scheme.as_bytes()).filter(|s| !s.is_empty()),
            ":path" => nonempty(r.path()),
            ":authority" | "host" => nonempty(r.authority()),
            "x-request-id" => r
                .headers
                .get_bytes(name)
                .or_else(|| si.generated_request_id.as_ref().map(|id| id.as_slice())),
            _ => r.headers.get_bytes(name),
        }
    }
}

impl Val<'_> {
    fn write(&self, mode: Mode, out: &mut Vec<u8>) {
        let quoted = mode == Mode::JsonTyped;
        let _ = match self {
            Val::Missing => {
                out.extend_from_slice(if quoted { b"null" } else { b"-" });
                Ok(())
            }
            Val::Str(s) => {
                if mode == Mode::Text {
                    out.extend_from_slice(s);
                } else {
                    if quoted {
                        out.push(b'"');
                    }
                    json_str(s, out);
                    if quoted {
                        out.push(b'"');
                    }
                }
                Ok(())
            }
            Val::Num(n) => {
                put_u64(*n, out);
                Ok(())
            }
            Val::Millis(d) => {
                let us = d.as_micros() as u64;
                put_u64(us / 1000, out);
                let frac = us % 1000;
                out.extend_from_slice(&[
                    b'.',
                    b'0' + (frac / 100) as u8,
                    b'0' + (frac / 10 % 10) as u8,
                    b'0' + (frac % 10) as u8,
                ]);
                Ok(())
            }
            Val::Bool(b) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" });
                Ok(())
            }
            Val::Addr(a) => wrap(quoted, out, |o| {
                put_ip(a.ip(), true, o);
                o.push(b':');
                put_u64(u64::from(a.port()), o);
                Ok(())
            }),
            Val::Ip(a) => wrap(quoted, out, |o| {
                put_ip(a.ip(), false, o);
                Ok(())
            }),
            Val::Time(t, f) => wrap(quoted, out, |o| {
                let from = o.len();
                f.render(*t, o);
                if mode != Mode::Text && o[from..].iter().any(|&b| needs_escape(b)) {
                    let raw = o.split_off(from);
                    json_str(&raw, o);
                }
                Ok(())
            }),
            Val::Flags(f, n) => wrap(quoted, out, |o| {
                if *n == 0 {
                    o.push(b'-');
                }
                for (i, flag) in f[..*n].iter().enumerate() {
                    if i > 0 {
                        o.push(b',');
                    }
                    o.extend_from_slice(flag.as_bytes());
                }
                Ok(())
            }),
        };
    }
}

/// Decimal digits of `n` (the formatting machinery costs more than the line around it).
fn put_u64(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(crate::text::decimal(n, &mut [0u8; 20]));
}

/// An IP address as `Display` writes it; IPv6 in brackets if `bracket` (as in `SocketAddr`).
fn put_ip(ip: std::net::IpAddr, bracket: bool, out: &mut Vec<u8>) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                put_u64(u64::from(*o), out);
            }
        }
        std::net::IpAddr::V6(v6) if bracket => {
            let _ = write!(out, "[{v6}]");
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn wrap(
    quoted: bool,
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if quoted {
        out.push(b'"');
    }
    f(out)?;
    if quoted {
        out.push(b'"');
    }
    Ok(())
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fast_write_tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_match_display() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            put_u64(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for a in [
            "127.0.0.1:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:8080",
            "[2001:db8::7]:1",
        ] {
            let addr: SocketAddr = a.parse().expect("addr");
            let mut out = Vec::new();
            Val::Addr(addr).write(Mode::Text, &mut out);
            assert_eq!(out, addr.to_string().as_bytes(), "{a}");
            let mut out = Vec::new();
            Val::Ip(addr).write(Mode::Text, &mut out);
            assert_eq!(out, addr.ip().to_string().as_bytes(), "{a}");
        }
        let mut out = Vec::new();
        Val::Millis(Duration::from_micros(12_045)).write(Mode::Text, &mut out);
        assert_eq!(out, b"12.045");
    }
}
