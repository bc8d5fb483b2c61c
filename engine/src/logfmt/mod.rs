//! Access-log formats as written in the config, parsed: Envoy-style `%COMMAND%` strings and
//! `json_format` maps become a [`Format`] once, at config load (config holds it, and validation
//! reports its errors); the access log (`access_log::format`) renders a `Format` per request.
//!
//! A text format is literal text with commands: `%NAME%`, `%NAME(ARG)%`, `%NAME(ARG):LEN%`
//! (`:LEN` truncates `REQ` values); `%%` is a literal `%`. A missing value prints `-`. Each
//! rendered line ends with a newline (added here when the format does not end with one).
//!
//! A JSON format maps keys to format strings; each line is one JSON object with the keys in
//! alphabetical order (as Envoy, whose `json_format` is a protobuf `Struct`): the keys are sorted
//! and JSON-escaped here, once. A value that is exactly one command keeps the command's type
//! (numbers are JSON numbers, `UPSTREAM_REUSED` a boolean) and a missing value is `null`; a value
//! mixing text and commands is a string, with `-` for missing parts.
//!
//! Text in, data out: it imports only the `text` leaf (JSON escaping), so config can hold a
//! `Format` without depending on the access-log machinery, the request path or the runtime.

pub mod time;

use self::time::TimeFormat;
use crate::text::json_str;

/// Envoy's default access-log format. `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%` is a literal `-`:
/// ringway does not send that header.
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
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    "REQUESTED_SERVER_NAME",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_SERIAL",
    "RESP",
    "FILTER_STATE",
    "DYNAMIC_METADATA",
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
    /// Why the TLS handshake with the upstream failed (`certificate_expired`, `not_tls`...).
    UpstreamTransportFailureReason,
    UpstreamRequestAttemptCount,
    /// The downstream TLS connection (terminated here): SNI, version, cipher, and the client
    /// certificate's subject, SANs, SHA-256 fingerprint and serial.
    RequestedServerName,
    DownstreamTlsVersion,
    DownstreamTlsCipher,
    DownstreamPeerSubject,
    DownstreamPeerUriSan,
    DownstreamPeerDnsSan,
    DownstreamPeerFingerprint256,
    DownstreamPeerSerial,
    /// `RESP(NAME?ALT):LEN`: a response header as sent to the client (after filters).
    Resp {
        name: String,
        alt: Option<String>,
        max_len: Option<usize>,
    },
    /// `FILTER_STATE(key)`, and `DYNAMIC_METADATA(namespace:key)` as `namespace.key`: a value
    /// an HTTP filter set on the request (e.g. `cache.status`).
    FilterState(String),
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
    let is_resp = name == "RESP";
    let no_arg = |c: Command| -> Result<Command, String> {
        if arg.is_some() {
            return Err(format!("command `%{name}%` takes no argument"));
        }
        Ok(c)
    };
    if max_len.is_some() && name != "REQ" && name != "RESP" {
        return Err(format!(
            "`:LEN` truncation is only supported on `%REQ(...)%` and `%RESP(...)%`, not `%{name}%`"
        ));
    }
    match name {
        "START_TIME" => Ok(Command::StartTime(match arg {
            None => TimeFormat::envoy_default(),
            Some(f) => TimeFormat::parse(f)?,
        })),
        "REQ" | "RESP" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                return Err(format!("`%{name}(HEADER)%` needs a header name"));
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
            let (header, alt) = (check(name)?, alt.map(check).transpose()?);
            if is_resp && header.starts_with(':') {
                return Err(format!("`%RESP({arg})%`: responses have no pseudo-headers"));
            }
            Ok(if is_resp {
                Command::Resp {
                    name: header,
                    alt,
                    max_len,
                }
            } else {
                Command::Req {
                    name: header,
                    alt,
                    max_len,
                }
            })
        }
        "FILTER_STATE" | "DYNAMIC_METADATA" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                return Err(format!("`%{name}(KEY)%` needs a key"));
            };
            // Envoy's DYNAMIC_METADATA(namespace:key[:path]); ringway's filters write
            // `namespace.key`.
            let key = match name {
                "DYNAMIC_METADATA" => arg.replacen(':', ".", 1),
                _ => arg.to_owned(),
            };
            // Envoy's FILTER_STATE takes a `:PLAIN` / `:TYPED` serialization suffix inside
            // the parentheses; the values here are plain text either way.
            let key = key
                .strip_suffix(":PLAIN")
                .or_else(|| key.strip_suffix(":TYPED"))
                .map(str::to_owned)
                .unwrap_or(key);
            Ok(Command::FilterState(key))
        }
        "TRAILER" => Err(format!(
            "`%{name}(...)%` is not supported: trailers are not kept for the access log"
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
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => no_arg(Command::UpstreamTransportFailureReason),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => no_arg(Command::UpstreamRequestAttemptCount),
        "REQUESTED_SERVER_NAME" => no_arg(Command::RequestedServerName),
        "DOWNSTREAM_TLS_VERSION" => no_arg(Command::DownstreamTlsVersion),
        "DOWNSTREAM_TLS_CIPHER" => no_arg(Command::DownstreamTlsCipher),
        "DOWNSTREAM_PEER_SUBJECT" => no_arg(Command::DownstreamPeerSubject),
        "DOWNSTREAM_PEER_URI_SAN" => no_arg(Command::DownstreamPeerUriSan),
        "DOWNSTREAM_PEER_DNS_SAN" => no_arg(Command::DownstreamPeerDnsSan),
        "DOWNSTREAM_PEER_FINGERPRINT_256" => no_arg(Command::DownstreamPeerFingerprint256),
        "DOWNSTREAM_PEER_SERIAL" => no_arg(Command::DownstreamPeerSerial),
        _ => Err(format!(
            "unknown access log command `%{name}%` (known: {})",
            COMMANDS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
