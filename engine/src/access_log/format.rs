//! Access-log formats: Envoy-style `%COMMAND%` strings and `json_format` maps, parsed once at
//! config load into [`Format`] and rendered per request from a [`StreamInfo`] straight into the
//! worker's log buffer (no allocation per line).
//!
//! A text format is literal text with commands: `%NAME%`, `%NAME(ARG)%`, `%NAME(ARG):LEN%`
//! (`:LEN` truncates `REQ` values); `%%` is a literal `%`. A missing value prints `-`. Each
//! rendered line ends with a newline (added when the format does not end with one).
//!
//! A JSON format maps keys to format strings; each line is one JSON object with the keys in
//! alphabetical order (as Envoy, whose `json_format` is a protobuf `Struct`). A value that is
//! exactly one command keeps the command's type (numbers are JSON numbers, `UPSTREAM_REUSED` a
//! boolean) and a missing value is `null`; a value mixing text and commands is a string, with
//! `-` for missing parts.

use std::{
    io::Write,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use super::time::TimeFormat;
use crate::{
    error::LocalReason,
    http::{h1, stream_info::StreamInfo},
    text::json_str,
};

/// Envoy's default access-log format. `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%` is a literal `-`:
/// ringway does not capture response headers.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% - \
\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Every command name the parser accepts (for docs and error messages).
pub const COMMANDS: &[&str] = &[
    "START_TIME",
    "REQ",
    "PROTOCOL",
    "RESPONSE_CODE",
    "RESPONSE_CODE_DETAILS",
    "RESPONSE_FLAGS",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "DURATION",
    "REQUEST_DURATION",
    "RESPONSE_DURATION",
    "RESPONSE_TX_DURATION",
    "UPSTREAM_HOST",
    "UPSTREAM_CLUSTER",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_CONNECT_TIME",
    "UPSTREAM_REQUEST_SEND_TIME",
    "UPSTREAM_FIRST_BYTE_TIME",
    "UPSTREAM_REUSED",
];

/// One `%COMMAND%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    StartTime(TimeFormat),
    /// `REQ(NAME?ALT):LEN`: names lower-cased; `:path`, `:method`, `:authority`, `:scheme` are
    /// the pseudo-headers.
    Req {
        name: String,
        alt: Option<String>,
        max_len: Option<usize>,
    },
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    ResponseTxDuration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    UpstreamConnectTime,
    UpstreamRequestSendTime,
    UpstreamFirstByteTime,
    UpstreamReused,
}

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Cmd(Command),
}

/// A parsed access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A text line.
    Text(Vec<Piece>),
    /// One JSON object per line: keys (sorted, JSON-escaped with quotes) and their values.
    Json(Vec<(String, Vec<Piece>)>),
}

impl Format {
    /// Envoy's default text format.
    pub fn envoy_default() -> Format {
        Format::text(DEFAULT_FORMAT).unwrap_or(Format::Text(Vec::new()))
    }

    /// Parse a text format (a newline is appended when missing).
    pub fn text(s: &str) -> Result<Format, String> {
        let mut pieces = parse(s)?;
        match pieces.last_mut() {
            Some(Piece::Lit(l)) if l.ends_with('\n') => {}
            Some(Piece::Lit(l)) => l.push('\n'),
            _ => pieces.push(Piece::Lit("\n".into())),
        }
        Ok(Format::Text(pieces))
    }

    /// Parse a JSON format; errors come with the key they belong to.
    pub fn json<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Format, Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (k, v) in fields {
            match parse(v) {
                Ok(p) => {
                    let mut key = vec![b'"'];
                    json_str(k.as_bytes(), &mut key);
                    key.push(b'"');
                    out.push((String::from_utf8_lossy(&key).into_owned(), p));
                }
                Err(e) => errors.push((k.to_owned(), e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Format::Json(out))
    }

    /// Whether rendering needs the request head captured (any `REQ(...)`).
    pub fn needs_request_head(&self) -> bool {
        let any = |p: &[Piece]| {
            p.iter()
                .any(|p| matches!(p, Piece::Cmd(Command::Req { .. })))
        };
        match self {
            Format::Text(p) => any(p),
            Format::Json(f) => f.iter().any(|(_, p)| any(p)),
        }
    }

    /// Append one line (newline included) for `si` to `out`.
    pub fn render(&self, si: &StreamInfo, cluster: Option<&str>, out: &mut Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
        let mut ctx = Ctx {
            si,
            cluster,
            head: None,
            now: Instant::now(),
        };
        if let Some(h) = si
            .request_head
            .as_deref()
            .filter(|_| self.needs_request_head())
        {
            let mut req = httparse::Request::new(&mut headers);
            if req.parse(h).is_ok() {
                ctx.head = Some(Head {
                    method: req.method,
                    path: req.path,
                    headers: req.headers,
                });
            }
        }
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

/// Parse a format string into pieces; the error names the offending command.
fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        lit.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            lit.push('%');
            rest = r;
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() {
            return Err(format!(
                "a `%` must start a command like `%RESPONSE_CODE%` (write `%%` for a literal `%`) at {:?}",
                truncate(&s[s.len() - rest.len() - 1..], 20)
            ));
        }
        rest = &rest[name_len..];
        let mut arg = None;
        if let Some(r) = rest.strip_prefix('(') {
            // The argument ends at the first `)` followed by `%` or `:digits%`.
            let mut end = None;
            for (j, _) in r.match_indices(')') {
                let after = &r[j + 1..];
                if after.starts_with('%') || len_suffix(after).is_some() {
                    end = Some(j);
                    break;
                }
            }
            let Some(j) = end else {
                return Err(format!("command `%{name}(` is not closed with `)%`"));
            };
            arg = Some(&r[..j]);
            rest = &r[j + 1..];
        }
        let mut max_len = None;
        if let Some((n, after)) = len_suffix(rest) {
            max_len = Some(n);
            rest = after;
        } else if let Some(r) = rest.strip_prefix('%') {
            rest = r;
        } else {
            return Err(format!("command `%{name}` is not closed with `%`"));
        }
        let cmd = command(name, arg, max_len)?;
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Cmd(cmd));
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// `:123%...` → (123, rest after `%`).
fn len_suffix(s: &str) -> Option<(usize, &str)> {
    let r = s.strip_prefix(':')?;
    let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
    if digits == 0 {
        return None;
    }
    let after = r[digits..].strip_prefix('%')?;
    Some((r[..digits].parse().ok()?, after))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn command(name: &str, arg: Option<&str>, max_len: Option<usize>) -> Result<Command, String> {
    let no_arg = |c: Command| -> Result<Command, String> {
        if arg.is_some() {
            return Err(format!("command `%{name}%` takes no argument"));
        }
        Ok(c)
    };
    if max_len.is_some() && name != "REQ" {
        return Err(format!(
            "`:LEN` truncation is only supported on `%REQ(...)%`, not `%{name}%`"
        ));
    }
    match name {
        "START_TIME" => Ok(Command::StartTime(match arg {
            None => TimeFormat::envoy_default(),
            Some(f) => TimeFormat::parse(f)?,
        })),
        "REQ" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                return Err("`%REQ(HEADER)%` needs a header name".into());
            };
            let (name, alt) = match arg.split_once('?') {
                Some((a, b)) => (a, Some(b)),
                None => (arg, None),
            };
            let check = |h: &str| -> Result<String, String> {
                let h = h.to_ascii_lowercase();
                let ok = match h.strip_prefix(':') {
                    Some(p) => matches!(p, "path" | "method" | "authority" | "scheme"),
                    None => {
                        !h.is_empty()
                            && h.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b)
                            })
                    }
                };
                if ok {
                    Ok(h)
                } else {
                    Err(format!(
                        "`%REQ({arg})%`: {h:?} is not a header name (pseudo-headers: :PATH, :METHOD, :AUTHORITY, :SCHEME)"
                    ))
                }
            };
            Ok(Command::Req {
                name: check(name)?,
                alt: alt.map(check).transpose()?,
                max_len,
            })
        }
        "RESP" | "TRAILER" => Err(format!(
            "`%{name}(...)%` is not supported: ringway does not capture response headers yet"
        )),
        "PROTOCOL" => no_arg(Command::Protocol),
        "RESPONSE_CODE" => no_arg(Command::ResponseCode),
        "RESPONSE_CODE_DETAILS" => no_arg(Command::ResponseCodeDetails),
        "RESPONSE_FLAGS" => no_arg(Command::ResponseFlags),
        "BYTES_RECEIVED" => no_arg(Command::BytesReceived),
        "BYTES_SENT" => no_arg(Command::BytesSent),
        "DURATION" => no_arg(Command::Duration),
        "REQUEST_DURATION" => no_arg(Command::RequestDuration),
        "RESPONSE_DURATION" => no_arg(Command::ResponseDuration),
        "RESPONSE_TX_DURATION" => no_arg(Command::ResponseTxDuration),
        "UPSTREAM_HOST" => no_arg(Command::UpstreamHost),
        "UPSTREAM_CLUSTER" => no_arg(Command::UpstreamCluster),
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Command::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Command::DownstreamRemoteAddressWithoutPort)
        }
        "UPSTREAM_CONNECT_TIME" => no_arg(Command::UpstreamConnectTime),
        "UPSTREAM_REQUEST_SEND_TIME" => no_arg(Command::UpstreamRequestSendTime),
        "UPSTREAM_FIRST_BYTE_TIME" => no_arg(Command::UpstreamFirstByteTime),
        "UPSTREAM_REUSED" => no_arg(Command::UpstreamReused),
        _ => Err(format!(
            "unknown access log command `%{name}%` (known: {})",
            COMMANDS.join(", ")
        )),
    }
}

/// Response flags for a finished request, Envoy's letters, in Envoy's order.
pub fn response_flags(si: &StreamInfo) -> ([&'static str; 4], usize) {
    let mut flags = [""; 4];
    let mut n = 0;
    let mut add = |f: &'static str| {
        if f != "-" && n < flags.len() && !flags[..n].contains(&f) {
            flags[n] = f;
            n += 1;
        }
    };
    let upstream_failure = match si.local_reason {
        Some(r) => {
            add(match r {
                LocalReason::NoRoute => "NR",
                LocalReason::NoHealthyUpstream => "UH",
                LocalReason::ConnectFailure => "UF",
                LocalReason::UpstreamTimeout => "UT",
                LocalReason::UpstreamReset => "UC",
                LocalReason::UpstreamProtocolError => "UPE",
                LocalReason::RequestHeadersTimeout | LocalReason::RequestBodyTimeout => "SI",
                // Envoy has no flag for a body over a filter's limit: the 413 says it.
                LocalReason::RequestTooLarge => "-",
            });
            r.source() == crate::error::Source::Upstream
        }
        None => false,
    };
    if si.upstream_reset {
        add("UC");
    }
    if si.retried && (upstream_failure || si.upstream_reset) {
        add("URX");
    }
    if si.protocol_error.is_some() {
        add("DPE");
    } else if si.downstream_reset {
        add("DC");
    }
    (flags, n)
}

/// The `x-ringway-reason`-style detail for `%RESPONSE_CODE_DETAILS%`.
pub fn response_code_details(si: &StreamInfo) -> Option<&'static str> {
    if let Some(p) = si.protocol_error {
        return Some(p);
    }
    if let Some(r) = si.local_reason {
        return Some(r.reply().1);
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
    head: Option<Head<'a>>,
    now: Instant,
}

/// The captured request head, parsed for this line.
struct Head<'a> {
    method: Option<&'a str>,
    path: Option<&'a str>,
    headers: &'a [httparse::Header<'a>],
}

/// A command's value before it is written.
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
                Some(h1::Version::Http10) => Val::Str(b"HTTP/1.0"),
                Some(h1::Version::Http11) => Val::Str(b"HTTP/1.1"),
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
            Command::UpstreamReused => match si.upstream {
                Some(_) => Val::Bool(si.upstream_reused),
                None => Val::Missing,
            },
        }
    }

    /// A request header's value (first of that name), or a pseudo-header.
    fn header(&self, name: &str) -> Option<&'a [u8]> {
        if name == ":method" {
            if let Some(m) = self.head.as_ref().and_then(|h| h.method) {
                return Some(m.as_bytes());
            }
            return match self.si.method {
                crate::http::stream_info::Method::Other => None,
                m if self.si.version.is_some() => Some(m.as_str().as_bytes()),
                _ => None,
            };
        }
        if name == ":scheme" {
            return self.si.version.map(|_| b"http".as_slice());
        }
        if name == "x-request-id" {
            let found = self.find(name);
            if found.is_some() {
                return found;
            }
            return self
                .si
                .generated_request_id
                .as_ref()
                .map(|id| id.as_slice());
        }
        let head = self.head.as_ref()?;
        match name {
            ":path" => head.path.map(str::as_bytes),
            ":authority" => self.find("host"),
            _ => self.find(name),
        }
    }

    fn find(&self, name: &str) -> Option<&'a [u8]> {
        self.head
            .as_ref()?
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
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
