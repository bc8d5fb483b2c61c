//! The TLS ClientHello peek behind a `tls_inspector` listener filter: is a new connection TLS,
//! and if so which server name (SNI), application protocols (ALPN) and versions does its
//! client offer, so that a filter chain can be chosen before any TLS is terminated.
//!
//! It owns the record and handshake framing needed for that and nothing more: it reads the
//! bytes, never consumes them (the caller keeps its buffer and hands the same bytes to the TLS
//! library once a filter chain is chosen), and checks only what it reads. The `tls_inspector`
//! listener filter (`listener::inspect`) calls it.
//!
//! Data flow: the caller calls [`peek`] with all the bytes read so far (from the connection's
//! first byte, after a PROXY protocol header if one was consumed) after every read:
//!
//! - the first byte is not 22 (a handshake record): [`Peek::NotTls`], at once; the connection's
//!   transport protocol is `raw_buffer`, as in Envoy;
//! - otherwise the bytes are walked as TLS records (type 22, version 3.x, length 1..=2^14),
//!   whose fragments carry the handshake message: [`Peek::NeedMore`] until the whole
//!   ClientHello has arrived, then [`Peek::Tls`] with what it offers, or an [`Error`] as soon
//!   as the bytes prove them malformed (the connection is to be closed). Calling again with
//!   more bytes gives the same verdict.
//!
//! A ClientHello in one record (the usual case) is parsed in place. One spread over several
//! records (a client with a small maximum fragment length, or a hello larger than a record)
//! is copied once, when it is complete, into the caller's `scratch` buffer and parsed there;
//! a worker keeps one scratch buffer for all its connections. Nothing else is allocated: the
//! server name is lower-cased into an inline buffer, ALPN and versions are slices of the hello.
//!
//! Bounds: a ClientHello message may be at most [`MAX_HELLO_LEN`] (16 KiB, handshake header
//! included), and its records with their 5-byte headers must fit in [`MAX_PEEK_BYTES`] (17 KiB:
//! 16 KiB of message plus 1 KiB of record headers, about 200 records). A larger hello, or
//! one cut into more records, is [`Error::TooLarge`] as soon as that is certain; `NeedMore`
//! never asks for more than `MAX_PEEK_BYTES`, so a caller never buffers more.
//!
//! Checked: record framing, the handshake type, every length in the ClientHello (session ID,
//! cipher suites, compression methods, extensions, and inside the SNI, ALPN and
//! supported_versions extensions), no bytes after the extensions, no second SNI, ALPN or
//! supported_versions extension, and a `host_name` that is an ASCII host name (letters,
//! digits, `-`, `_`, dots between non-empty labels of at most 63 bytes, at most 253 bytes in
//! all; returned lower-cased). Not checked: the cipher suites and other extensions' contents
//! (the TLS library judges those when it reads the same bytes).

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Deref;

/// The largest ClientHello message accepted, its 4-byte handshake header included.
pub const MAX_HELLO_LEN: usize = 16 * 1024;
/// The most bytes [`peek`] reads before a verdict: the ClientHello's records, headers included.
pub const MAX_PEEK_BYTES: usize = MAX_HELLO_LEN + 1024;
/// The longest server name accepted (a DNS name's limit).
pub const MAX_SERVER_NAME: usize = 253;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// TLSPlaintext.length must not exceed 2^14.
const MAX_RECORD_LEN: usize = 1 << 14;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// The verdict on the bytes read so far.
// `Tls` is ~300 bytes (the server name is inline): boxing it would allocate per connection,
// and a verdict lives on the stack for a moment, once per connection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek<'a> {
    /// A valid start of a ClientHello: read more. The hello's records are at least `needed`
    /// bytes in all (more than the bytes given, at most [`MAX_PEEK_BYTES`]).
    NeedMore {
        /// Lower bound on the bytes the whole ClientHello takes.
        needed: usize,
    },
    /// The first byte is not a TLS handshake record's: not TLS (`raw_buffer`).
    NotTls,
    /// A whole, well-formed ClientHello.
    Tls(ClientHello<'a>),
}

/// What a ClientHello offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3 clients, which say 1.3 in
    /// `supported_versions`).
    pub legacy_version: u16,
    /// The `host_name` of the server_name extension, lower-cased; `None` without one.
    pub server_name: Option<ServerName>,
    /// The application protocols offered (ALPN), in the client's order; empty without the
    /// extension.
    pub alpn: Alpn<'a>,
    /// The supported_versions extension, in the client's order; empty without it.
    pub supported_versions: Versions<'a>,
}

impl ClientHello<'_> {
    /// The highest TLS version offered: the highest of `supported_versions` (GREASE values
    /// left out) or, without that extension, `legacy_version`. 0x0304 is TLS 1.3.
    pub fn highest_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .filter(|v| v & 0x0f0f != 0x0a0a)
            .max()
            .unwrap_or(self.legacy_version)
    }
}

/// A server name from SNI: ASCII, lower-cased, at most [`MAX_SERVER_NAME`] bytes, kept
/// inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ServerName {
    buf: [u8; MAX_SERVER_NAME],
    len: u8,
}

impl ServerName {
    /// Checks `raw` as a host name and lower-cases it.
    fn new(raw: &[u8]) -> Result<Self, Error> {
        if raw.is_empty() || raw.len() > MAX_SERVER_NAME {
            return Err(Error::BadServerName);
        }
        let labels_ok = raw
            .split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label.len() <= 63);
        let chars_ok = raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !labels_ok || !chars_ok {
            return Err(Error::BadServerName);
        }
        let mut buf = [0u8; MAX_SERVER_NAME];
        for (o, b) in buf.iter_mut().zip(raw) {
            *o = b.to_ascii_lowercase();
        }
        Ok(ServerName {
            buf,
            len: raw.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Deref for ServerName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ServerName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ServerName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The ALPN protocol names offered (the extension's `ProtocolNameList`, framing checked:
/// every name is 1..=255 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Alpn<'a>(&'a [u8]);

impl<'a> Alpn<'a> {
    /// The names in the client's order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let name = tail.get(..usize::from(len))?;
            rest = &tail[name.len()..];
            Some(name)
        })
    }

    /// Whether `name` (e.g. `b"h2"`) is offered.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.iter().any(|n| n == name)
    }

    /// Whether none is offered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Alpn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// The versions of the supported_versions extension (framing checked).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Versions<'a>(&'a [u8]);

impl<'a> Versions<'a> {
    /// The versions in the client's order (0x0304 is TLS 1.3; GREASE values included).
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.0
            .chunks_exact(2)
            .map(|v| u16::from_be_bytes([v[0], v[1]]))
    }

    /// Whether the extension was absent.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Versions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|v| format!("{v:#06x}")))
            .finish()
    }
}

/// Why the bytes are not a well-formed ClientHello. The connection is to be closed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A record before the end of the ClientHello is not a handshake record (its type given).
    #[error("TLS record of type {0} before the end of the ClientHello")]
    UnexpectedRecord(u8),
    /// A record's major version (given) is not 3 (SSL 3.0 and TLS 1.x all say 3).
    #[error("TLS record major version {0} is not 3")]
    BadRecordVersion(u8),
    /// A handshake record with no bytes (forbidden).
    #[error("empty TLS handshake record")]
    EmptyRecord,
    /// A record longer than 2^14 bytes.
    #[error("TLS record of {0} bytes is over 16384")]
    RecordTooLong(usize),
    /// The first handshake message is not a ClientHello (its type given).
    #[error("TLS handshake message of type {0} where a ClientHello was expected")]
    NotClientHello(u8),
    /// The ClientHello is over [`MAX_HELLO_LEN`], or its records cannot fit in
    /// [`MAX_PEEK_BYTES`].
    #[error("TLS ClientHello larger than the {MAX_HELLO_LEN}-byte limit")]
    TooLarge,
    /// A length inside the ClientHello runs past its end or breaks a rule of its field (the
    /// field named).
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// One of the extensions read here (server_name, ALPN, supported_versions) appears twice.
    #[error("TLS ClientHello has extension {0} twice")]
    DuplicateExtension(u16),
    /// The SNI `host_name` is not an ASCII host name.
    #[error("TLS ClientHello server name is not a host name")]
    BadServerName,
}

/// Looks at the bytes read so far from a new connection (never consuming them) and says
/// whether they are, or are the start of, a TLS ClientHello. `scratch` is where a hello spread
/// over several records is reassembled; its contents are replaced (a worker reuses one).
pub fn peek<'a>(data: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Peek<'a>, Error> {
    match data.first() {
        None => {
            return Ok(Peek::NeedMore {
                needed: RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN,
            })
        }
        Some(&b) if b != CONTENT_TYPE_HANDSHAKE => return Ok(Peek::NotTls),
        Some(_) => {}
    }
    match walk_records(data)? {
        Walk::NeedMore(needed) if needed > MAX_PEEK_BYTES => Err(Error::TooLarge),
        Walk::NeedMore(needed) => Ok(Peek::NeedMore { needed }),
        Walk::InFirstRecord(msg) => parse_hello(msg).map(Peek::Tls),
        Walk::Spread(total) => {
            reassemble(data, total, scratch);
            let msg: &'a Vec<u8> = scratch;
            parse_hello(msg).map(Peek::Tls)
        }
    }
}

/// Where the walk over the records got to.
enum Walk<'a> {
    /// Incomplete; the hello's records take at least this many bytes.
    NeedMore(usize),
    /// The whole message (handshake header included) is in the first record.
    InFirstRecord(&'a [u8]),
    /// The whole message (this many bytes) has arrived over several records.
    Spread(usize),
}

/// Walks the records in `data` (which starts with a handshake record's type byte), checking
/// their headers and the handshake header, until the ClientHello message is whole.
fn walk_records(data: &[u8]) -> Result<Walk<'_>, Error> {
    // The handshake header (type, 24-bit length), gathered across fragments.
    let mut hs_header = [0u8; HANDSHAKE_HEADER_LEN];
    // Handshake bytes seen so far, and the message's length once its header is known.
    let mut have = 0usize;
    let mut total: Option<usize> = None;
    let mut at = 0usize;
    loop {
        // Handshake bytes still missing (at least the rest of the handshake header).
        let missing = total.map_or(HANDSHAKE_HEADER_LEN - have.min(3), |t| t - have);
        // The hello ends at least this far in: past the cap, stop walking (a caller that
        // handed over more than the cap would otherwise have every tiny record walked).
        if at + RECORD_HEADER_LEN + missing > MAX_PEEK_BYTES {
            return Err(Error::TooLarge);
        }
        let header = &data[at.min(data.len())..data.len().min(at + RECORD_HEADER_LEN)];
        check_record_header(header)?;
        if header.len() < RECORD_HEADER_LEN {
            return Ok(Walk::NeedMore(at + RECORD_HEADER_LEN + missing));
        }
        let record_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let record_end = at + RECORD_HEADER_LEN + record_len;
        let fragment = &data[at + RECORD_HEADER_LEN..data.len().min(record_end)];

        let take = HANDSHAKE_HEADER_LEN
            .saturating_sub(have)
            .min(fragment.len());
        if take > 0 {
            hs_header[have..have + take].copy_from_slice(&fragment[..take]);
        }
        let had = have;
        have += fragment.len();
        if have > 0 && hs_header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::NotClientHello(hs_header[0]));
        }
        if total.is_none() && have >= HANDSHAKE_HEADER_LEN {
            let body = u32::from_be_bytes([0, hs_header[1], hs_header[2], hs_header[3]]);
            let t = HANDSHAKE_HEADER_LEN + body as usize;
            if t > MAX_HELLO_LEN {
                return Err(Error::TooLarge);
            }
            total = Some(t);
        }
        if let Some(t) = total.filter(|&t| have >= t) {
            // The hello's last byte must be within the peek limit, however it was cut up.
            if at + RECORD_HEADER_LEN + (t - had) > MAX_PEEK_BYTES {
                return Err(Error::TooLarge);
            }
            return Ok(if at == 0 {
                Walk::InFirstRecord(&fragment[..t])
            } else {
                Walk::Spread(t)
            });
        }
        if data.len() < record_end {
            // Inside this record: the rest of it, then (if the hello goes on) another header.
            let missing = total.map_or(HANDSHAKE_HEADER_LEN - have.min(3), |t| t - have);
            let in_record = record_end - data.len();
            let more = if missing <= in_record {
                missing
            } else {
                missing + RECORD_HEADER_LEN
            };
            return Ok(Walk::NeedMore(data.len() + more));
        }
        at = record_end;
    }
}

/// Checks what has arrived of a record header (all five bytes or fewer).
fn check_record_header(header: &[u8]) -> Result<(), Error> {
    if let Some(&kind) = header.first() {
        if kind != CONTENT_TYPE_HANDSHAKE {
            return Err(Error::UnexpectedRecord(kind));
        }
    }
    if let Some(&major) = header.get(1) {
        if major != 3 {
            return Err(Error::BadRecordVersion(major));
        }
    }
    if let Some(&[hi, lo]) = header.get(3..5) {
        match usize::from(u16::from_be_bytes([hi, lo])) {
            0 => return Err(Error::EmptyRecord),
            n if n > MAX_RECORD_LEN => return Err(Error::RecordTooLong(n)),
            _ => {}
        }
    }
    Ok(())
}

/// Copies the first `total` handshake bytes out of the records in `data` (already walked and
/// checked by [`walk_records`]) into `out`.
fn reassemble(data: &[u8], total: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(total);
    let mut at = 0;
    while out.len() < total {
        let Some(&[_, _, _, hi, lo]) = data.get(at..at + RECORD_HEADER_LEN) else {
            break;
        };
        let record_end = at + RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo]));
        let fragment = &data[at + RECORD_HEADER_LEN..data.len().min(record_end)];
        let take = fragment.len().min(total - out.len());
        out.extend_from_slice(&fragment[..take]);
        at = record_end;
    }
}

/// A cursor over a ClientHello; every read names the field it is for.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(Error::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u8(what)?;
        self.bytes(usize::from(n), what)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u16(what)?;
        self.bytes(usize::from(n), what)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fails unless everything was read.
    fn end(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed(what))
        }
    }
}

/// Parses a whole ClientHello message (from its handshake header).
fn parse_hello(msg: &[u8]) -> Result<ClientHello<'_>, Error> {
    let mut r = Reader(msg.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default());
    let legacy_version = r.u16("legacy_version")?;
    if legacy_version >> 8 != 3 {
        return Err(Error::Malformed("legacy_version is not 3.x"));
    }
    r.bytes(32, "random")?;
    if r.vec8("legacy_session_id")?.len() > 32 {
        return Err(Error::Malformed("legacy_session_id longer than 32 bytes"));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Error::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(Error::Malformed("legacy_compression_methods is empty"));
    }
    let mut hello = ClientHello {
        legacy_version,
        server_name: None,
        alpn: Alpn::default(),
        supported_versions: Versions::default(),
    };
    // Extensions are optional before TLS 1.3: a hello may end after the compression methods.
    if r.is_empty() {
        return Ok(hello);
    }
    let mut exts = Reader(r.vec16("extensions")?);
    r.end("bytes after the extensions")?;
    let (mut sni, mut alpn, mut versions) = (false, false, false);
    while !exts.is_empty() {
        let kind = exts.u16("extension type")?;
        let body = exts.vec16("extension length")?;
        let seen = match kind {
            EXT_SERVER_NAME => &mut sni,
            EXT_ALPN => &mut alpn,
            EXT_SUPPORTED_VERSIONS => &mut versions,
            _ => continue,
        };
        if std::mem::replace(seen, true) {
            return Err(Error::DuplicateExtension(kind));
        }
        match kind {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(body)?,
            EXT_ALPN => hello.alpn = parse_alpn(body)?,
            _ => hello.supported_versions = parse_versions(body)?,
        }
    }
    Ok(hello)
}

/// The server_name extension (RFC 6066): a `ServerNameList`; its `host_name` entry, if any.
fn parse_server_name(body: &[u8]) -> Result<Option<ServerName>, Error> {
    let mut ext = Reader(body);
    let mut list = Reader(ext.vec16("server_name list")?);
    ext.end("server_name extension")?;
    if list.is_empty() {
        return Err(Error::Malformed("server_name list is empty"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("server_name type")?;
        let name = list.vec16("server_name")?;
        if name_type == NAME_TYPE_HOST_NAME {
            if host.is_some() {
                return Err(Error::Malformed("server_name has two host names"));
            }
            host = Some(ServerName::new(name)?);
        }
    }
    Ok(host)
}

/// The ALPN extension (RFC 7301): a non-empty `ProtocolNameList` of non-empty names.
fn parse_alpn(body: &[u8]) -> Result<Alpn<'_>, Error> {
    let mut ext = Reader(body);
    let list = ext.vec16("ALPN list")?;
    ext.end("ALPN extension")?;
    if list.is_empty() {
        return Err(Error::Malformed("ALPN list is empty"));
    }
    let mut names = Reader(list);
    while !names.is_empty() {
        if names.vec8("ALPN protocol name")?.is_empty() {
            return Err(Error::Malformed("ALPN protocol name is empty"));
        }
    }
    Ok(Alpn(list))
}

/// The supported_versions extension of a ClientHello (RFC 8446): 1..=127 versions.
fn parse_versions(body: &[u8]) -> Result<Versions<'_>, Error> {
    let mut ext = Reader(body);
    let list = ext.vec8("supported_versions list")?;
    ext.end("supported_versions extension")?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(Error::Malformed("supported_versions list"));
    }
    Ok(Versions(list))
}
