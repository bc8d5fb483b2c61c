//! HAProxy's PROXY protocol (<https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>),
//! versions 1 (one text line) and 2 (binary): the header a load balancer puts in front of a
//! connection's bytes to say which client and which address it proxied for.
//!
//! This module owns the parser the `proxy_protocol` listener filter calls and the encoders a
//! cluster uses to send the header upstream ([`encode_v1`], [`encode_v2`], [`encode_v2_tcp`];
//! called by `upstream::encode_proxy_header` for a cluster with `upstream_proxy_protocol`). The
//! `proxy_protocol` listener filter (`listener::inspect`) calls the parser.
//!
//! Data flow: the caller reads from the new connection into its buffer and calls [`parse`] with
//! everything read so far (from the connection's first byte), after every read:
//!
//! - `Ok(Parsed::Incomplete { needed })`: read more. `needed` is a lower bound on the header's
//!   total length; it is never more than [`V1_MAX_LEN`] for v1 or `16 + max_v2_payload` for v2,
//!   so a caller that reads until it holds `needed` bytes never buffers past the spec's limits.
//! - `Ok(Parsed::Complete(header))`: the first `header.len` bytes were the header; what follows
//!   them belongs to the next stage (TLS peek, application bytes). [`Header::proxied`] gives
//!   the client and original destination addresses, or `None` (v1 `UNKNOWN`, v2 `LOCAL`, a
//!   family without TCP addresses): keep the socket's own addresses.
//! - `Err(e)`: not a valid header; close the connection. An error is reported as soon as the
//!   bytes seen prove it (a bad signature at the first byte, a bad v2 version at the 13th), so
//!   calling again with more bytes gives the same error.
//!
//! The parser is a pure function of the bytes (no state between calls, no allocation, no
//! copy): addresses are decoded into `std::net` values, v2 TLVs are exposed as a validated
//! slice of the input ([`Tlvs`]; a header whose TLVs do not exactly fill it is an error), and
//! a `PP2_TYPE_SSL` TLV's head and sub-TLVs decode on demand ([`Tlvs::ssl`]). Re-parsing the
//! buffer after each read costs a few hundred byte comparisons at most: a header is tens of
//! bytes and arrives in one read almost always.
//!
//! Strictness follows the spec's MUSTs: v1 fields are separated by exactly one space, the line
//! ends with CRLF within 107 bytes, `TCP4` carries IPv4 and `TCP6` IPv6 addresses (dotted quads
//! without leading zeros), ports are decimal 0..=65535; anything after `UNKNOWN` up to the CRLF
//! is ignored. v2 accepts version 2 only, the commands `LOCAL` and `PROXY`, and only the
//! family/transport bytes the spec defines (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32); a
//! `LOCAL` header's payload (family, addresses, TLVs) is discarded unread, as the spec says.
//! The optional `PP2_TYPE_CRC32C` checksum is not verified.

mod encode;
#[cfg(test)]
mod tests;

pub use encode::{encode_v1, encode_v2, encode_v2_tcp, EncodeError};

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// What a v1 header starts with.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 header the spec allows, CRLF included
/// (`PROXY TCP6 <39> <39> 65535 65535\r\n` is 104).
pub const V1_MAX_LEN: usize = 107;
/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
pub const V1_MIN_LEN: usize = 15;
/// What a v2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_HEADER_LEN: usize = 16;
/// The largest v2 payload (addresses and TLVs, after the 16 fixed bytes) [`parse`] accepts:
/// a UNIX address block (216 bytes) with room for the TLVs load balancers send (AWS, GCP and
/// Azure add tens of bytes; a `PP2_TYPE_SSL` block with a client certificate's names a few
/// hundred). The spec's own limit is 65,535; [`parse_with_limit`] takes another cap.
pub const V2_DEFAULT_MAX_PAYLOAD: usize = 4096;
/// Length of a UNIX address (`sun_path`) in a v2 header, NUL-padded.
pub const UNIX_PATH_LEN: usize = 108;

const ADDR_LEN_INET: usize = 12;
const ADDR_LEN_INET6: usize = 36;
const ADDR_LEN_UNIX: usize = 2 * UNIX_PATH_LEN;

/// v2 TLV types the spec assigns (`PP2_TYPE_*`).
pub mod tlv {
    /// Application-Layer Protocol Negotiation of the downstream connection.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (SNI or Host).
    pub const AUTHORITY: u8 = 0x02;
    /// CRC32c of the whole header (not verified by this parser).
    pub const CRC32C: u8 = 0x03;
    /// Padding, to be ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque unique connection ID.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS details of the downstream connection (with sub-TLVs).
    pub const SSL: u8 = 0x20;
    /// The network namespace the connection was accepted in.
    pub const NETNS: u8 = 0x30;

    /// Sub-TLVs inside a [`SSL`] TLV (`PP2_SUBTYPE_SSL_*`).
    pub mod ssl {
        /// The TLS version (`TLSv1.3`).
        pub const VERSION: u8 = 0x21;
        /// The client certificate's Common Name.
        pub const CN: u8 = 0x22;
        /// The cipher (`ECDHE-RSA-AES128-GCM-SHA256`).
        pub const CIPHER: u8 = 0x23;
        /// The certificate's signature algorithm.
        pub const SIG_ALG: u8 = 0x24;
        /// The certificate's key algorithm.
        pub const KEY_ALG: u8 = 0x25;
    }

    /// `client` bits of a [`SSL`] TLV (`PP2_CLIENT_*`).
    pub mod client {
        /// The client connected over TLS.
        pub const SSL: u8 = 0x01;
        /// The client sent a certificate on this connection.
        pub const CERT_CONN: u8 = 0x02;
        /// The client sent a certificate at least once in this TLS session.
        pub const CERT_SESS: u8 = 0x04;
    }
}

/// The value of a `PP2_TYPE_SSL` TLV: what the sender knew of the client's TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssl<'a> {
    /// `PP2_CLIENT_*` bits ([`tlv::client`]).
    pub client: u8,
    /// `0` when the client's certificate was verified (or none was asked for).
    pub verify: u32,
    /// The sub-TLVs ([`tlv::ssl`]): version, CN, cipher, algorithms.
    pub sub: Tlvs<'a>,
}

impl Ssl<'_> {
    /// Whether the client connected over TLS.
    pub fn is_tls(&self) -> bool {
        self.client & tlv::client::SSL != 0
    }
}

/// The outcome of [`parse`] on the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The bytes are a valid start of a header: read more. The header is at least `needed`
    /// bytes long (always more than the bytes given, and never more than the spec maximum:
    /// [`V1_MAX_LEN`] for v1, 16 plus the payload cap for v2).
    Incomplete {
        /// Lower bound on the header's total length.
        needed: usize,
    },
    /// A whole header.
    Complete(Header<'a>),
}

/// Which version of the protocol a header was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// A v2 header's command (v1 headers are always `Proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The connection was made by the proxy itself (a health check): use the real socket
    /// addresses; the header's addresses are discarded.
    Local,
    /// The connection was proxied for the client in the header's addresses.
    Proxy,
}

/// A header's transport protocol (the low nibble of a v2 family byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Not given (v1 `UNKNOWN`, v2 `LOCAL` or `AF_UNSPEC`).
    Unspecified,
    /// `SOCK_STREAM`: TCP (v1 `TCP4`/`TCP6`) or a UNIX stream socket.
    Stream,
    /// `SOCK_DGRAM`: UDP or a UNIX datagram socket.
    Dgram,
}

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses<'a> {
    /// None: v1 `UNKNOWN`, v2 `LOCAL` (whatever it carried is discarded) or `AF_UNSPEC`.
    Unspecified,
    /// IPv4 source (the client) and destination (the address the client connected to).
    V4 {
        /// The client.
        src: SocketAddrV4,
        /// The original destination.
        dst: SocketAddrV4,
    },
    /// IPv6 source and destination (v1 `TCP6` or v2 `AF_INET6`).
    V6 {
        /// The client.
        src: SocketAddrV6,
        /// The original destination.
        dst: SocketAddrV6,
    },
    /// v2 `AF_UNIX`: the two socket paths, NUL-padded, as sent.
    Unix {
        /// The client's socket path.
        src: &'a [u8; UNIX_PATH_LEN],
        /// The listening socket's path.
        dst: &'a [u8; UNIX_PATH_LEN],
    },
}

/// A parsed header. The encoders read `command`, `transport`, `addresses` and `tlvs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// v1 or v2.
    pub version: Version,
    /// The header's length in bytes: the bytes to consume before the connection's own data.
    pub len: usize,
    /// `Proxy`, or `Local` (v2 only).
    pub command: Command,
    /// The transport the addresses belong to.
    pub transport: Transport,
    /// What the header says about the connection's endpoints.
    pub addresses: Addresses<'a>,
    /// The TLVs after a v2 `PROXY` header's addresses (empty for v1, `LOCAL` and `AF_UNSPEC`).
    pub tlvs: Tlvs<'a>,
}

impl Header<'_> {
    /// The proxied TCP connection's (client, original destination) addresses, or `None` when
    /// the connection's own socket addresses are to be used: v1 `UNKNOWN`, v2 `LOCAL`,
    /// `AF_UNSPEC`, `AF_UNIX`, or a datagram transport (a UDP header on a TCP connection).
    pub fn proxied(&self) -> Option<(SocketAddr, SocketAddr)> {
        match (self.command, self.transport, self.addresses) {
            (Command::Proxy, Transport::Stream, Addresses::V4 { src, dst }) => {
                Some((src.into(), dst.into()))
            }
            (Command::Proxy, Transport::Stream, Addresses::V6 { src, dst }) => {
                Some((src.into(), dst.into()))
            }
            _ => None,
        }
    }
}

/// A v2 header's TLVs (type, 16-bit big-endian length, value), as the slice of the input they
/// were sent in. Their framing has been checked, so iterating cannot fail.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Tlvs<'a>(&'a [u8]);

impl<'a> Tlvs<'a> {
    /// No TLVs.
    pub const EMPTY: Tlvs<'static> = Tlvs(&[]);

    /// Checks that `raw` is a sequence of whole TLVs (for building a header to encode).
    pub fn new(raw: &'a [u8]) -> Result<Self, Error> {
        let mut at = 0;
        while at < raw.len() {
            let Some(&[_, hi, lo]) = raw.get(at..at + 3) else {
                return Err(Error::BadTlv { offset: at });
            };
            let end = at + 3 + usize::from(u16::from_be_bytes([hi, lo]));
            if end > raw.len() {
                return Err(Error::BadTlv { offset: at });
            }
            at = end;
        }
        Ok(Tlvs(raw))
    }

    /// The TLVs as sent.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The TLVs in order.
    pub fn iter(&self) -> TlvIter<'a> {
        TlvIter(self.0)
    }

    /// The value of the first TLV of type `kind` (see [`tlv`]).
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        self.iter().find(|t| t.kind == kind).map(|t| t.value)
    }

    /// The first `PP2_TYPE_SSL` TLV, decoded; `None` when there is none or its value is not
    /// a 5-byte head followed by whole sub-TLVs ([`parse`] does not refuse a header for that:
    /// the TLV is informational, and a receiver that does not read it is unaffected).
    pub fn ssl(&self) -> Option<Ssl<'a>> {
        let v = self.get(tlv::SSL)?;
        let (&[client, a, b, c, d], rest) = v.split_first_chunk::<5>()?;
        Some(Ssl {
            client,
            verify: u32::from_be_bytes([a, b, c, d]),
            sub: Tlvs::new(rest).ok()?,
        })
    }
}

impl fmt::Debug for Tlvs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Its type (see [`tlv`]).
    pub kind: u8,
    /// Its value.
    pub value: &'a [u8],
}

/// Iterator over [`Tlvs`].
#[derive(Debug, Clone)]
pub struct TlvIter<'a>(&'a [u8]);

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        // Framing was checked by `Tlvs::new`; a short tail (impossible) just ends the walk.
        let (&[kind, hi, lo], rest) = self.0.split_first_chunk::<3>()?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = rest.get(..len)?;
        self.0 = &rest[len..];
        Some(Tlv { kind, value })
    }
}

/// The v1 field an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// The client address.
    SourceAddress,
    /// The original destination address.
    DestinationAddress,
    /// The client port.
    SourcePort,
    /// The original destination port.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why the bytes are not a valid PROXY protocol header. The connection is to be closed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes start with neither `PROXY ` (v1) nor the v2 signature.
    #[error("not a PROXY protocol header (bad signature)")]
    BadSignature,
    /// v1: no CRLF within the first 107 bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    LineTooLong,
    /// v1: a CR not followed by LF, or an LF without a CR before it.
    #[error("PROXY v1 line does not end with CRLF")]
    MissingCrlf,
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    BadProtocol,
    /// v1: a field is missing or empty (the line ends early, or two spaces in a row).
    #[error("PROXY v1 {0} is missing")]
    MissingField(V1Field),
    /// v1: more fields after the destination port.
    #[error("PROXY v1 line has data after the destination port")]
    TrailingData,
    /// v1: an address that is not an address of the protocol's family (`TCP4` wants a dotted
    /// quad without leading zeros, each part at most 255; `TCP6` an IPv6 address).
    #[error("PROXY v1 {0} is not a valid address for the protocol")]
    BadAddress(V1Field),
    /// v1: a port that is not a decimal number in 0..=65535.
    #[error("PROXY v1 {0} is not a port number (0-65535)")]
    BadPort(V1Field),
    /// v2: the version nibble (the 13th byte, given whole) is not 2.
    #[error("PROXY v2 version byte {0:#04x}: the version is not 2")]
    BadVersion(u8),
    /// v2: the command nibble (the 13th byte, given whole) is neither LOCAL (0) nor PROXY (1).
    #[error("PROXY v2 version byte {0:#04x}: the command is neither LOCAL nor PROXY")]
    BadCommand(u8),
    /// v2: the family/transport byte is none of those the spec defines.
    #[error("PROXY v2 family/transport byte {0:#04x} is not defined")]
    BadFamily(u8),
    /// v2: the payload length is over the cap.
    #[error("PROXY v2 payload of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The length the header announces.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// v2: the payload length is shorter than the family's address block.
    #[error("PROXY v2 payload of {len} bytes cannot hold the {need}-byte address block")]
    AddressesTooShort {
        /// The length the header announces.
        len: usize,
        /// The address block's length for the family.
        need: usize,
    },
    /// v2: a TLV runs past the end of the payload (`offset` is where it starts, counted from
    /// the first TLV).
    #[error("PROXY v2 TLV at offset {offset} runs past the end of the header")]
    BadTlv {
        /// Where the bad TLV starts, counted from the first TLV.
        offset: usize,
    },
}

/// Parses the start of a connection (all bytes read so far) as a PROXY protocol header, v1 or
/// v2, with the v2 payload capped at [`V2_DEFAULT_MAX_PAYLOAD`].
pub fn parse(data: &[u8]) -> Result<Parsed<'_>, Error> {
    parse_with_limit(data, V2_DEFAULT_MAX_PAYLOAD)
}

/// [`parse`] with another cap on the v2 payload (at most 65,535 is meaningful).
pub fn parse_with_limit(data: &[u8], max_v2_payload: usize) -> Result<Parsed<'_>, Error> {
    match data.first() {
        None => Ok(Parsed::Incomplete { needed: V1_MIN_LEN }),
        Some(b'P') => {
            let seen = data.len().min(V1_PREFIX.len());
            if data[..seen] != V1_PREFIX[..seen] {
                return Err(Error::BadSignature);
            }
            parse_v1(data)
        }
        Some(b'\r') => {
            let seen = data.len().min(V2_SIGNATURE.len());
            if data[..seen] != V2_SIGNATURE[..seen] {
                return Err(Error::BadSignature);
            }
            parse_v2(data, max_v2_payload)
        }
        Some(_) => Err(Error::BadSignature),
    }
}

/// v1 from its first byte: `data` is a prefix of, or starts with, `PROXY `.
fn parse_v1(data: &[u8]) -> Result<Parsed<'_>, Error> {
    let window = &data[..data.len().min(V1_MAX_LEN)];
    for (i, &b) in window.iter().enumerate().skip(V1_PREFIX.len()) {
        match b {
            b'\n' => return Err(Error::MissingCrlf),
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    let (transport, addresses) = parse_v1_line(&window[V1_PREFIX.len()..i])?;
                    return Ok(Parsed::Complete(Header {
                        version: Version::V1,
                        len: i + 2,
                        command: Command::Proxy,
                        transport,
                        addresses,
                        tlvs: Tlvs::EMPTY,
                    }));
                }
                Some(_) => return Err(Error::MissingCrlf),
                None => break,
            },
            _ => {}
        }
    }
    if window.len() >= V1_MAX_LEN {
        return Err(Error::LineTooLong);
    }
    Ok(Parsed::Incomplete {
        needed: (window.len() + 1).max(V1_MIN_LEN),
    })
}

/// The fields of a v1 line, between `PROXY ` and the CRLF.
fn parse_v1_line(line: &[u8]) -> Result<(Transport, Addresses<'static>), Error> {
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next().unwrap_or_default() {
        // The spec: the receiver ignores anything after UNKNOWN up to the CRLF.
        b"UNKNOWN" => return Ok((Transport::Unspecified, Addresses::Unspecified)),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(Error::BadProtocol),
    };
    let mut field = |which| match fields.next() {
        Some(f) if !f.is_empty() => Ok(f),
        _ => Err(Error::MissingField(which)),
    };
    let src = field(V1Field::SourceAddress)?;
    let dst = field(V1Field::DestinationAddress)?;
    let sport = field(V1Field::SourcePort)?;
    let dport = field(V1Field::DestinationPort)?;
    if fields.next().is_some() {
        return Err(Error::TrailingData);
    }
    let sport = v1_port(sport, V1Field::SourcePort)?;
    let dport = v1_port(dport, V1Field::DestinationPort)?;
    let addresses = if v6 {
        Addresses::V6 {
            src: SocketAddrV6::new(v1_addr(src, V1Field::SourceAddress)?, sport, 0, 0),
            dst: SocketAddrV6::new(v1_addr(dst, V1Field::DestinationAddress)?, dport, 0, 0),
        }
    } else {
        Addresses::V4 {
            src: SocketAddrV4::new(v1_addr(src, V1Field::SourceAddress)?, sport),
            dst: SocketAddrV4::new(v1_addr(dst, V1Field::DestinationAddress)?, dport),
        }
    };
    Ok((Transport::Stream, addresses))
}

fn v1_addr<T: std::str::FromStr>(field: &[u8], which: V1Field) -> Result<T, Error> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::BadAddress(which))
}

/// A decimal port, 0..=65535 (leading zeros allowed, at most five digits).
fn v1_port(field: &[u8], which: V1Field) -> Result<u16, Error> {
    if field.len() > 5 || !field.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadPort(which));
    }
    let n = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| Error::BadPort(which))
}

/// v2 from its first byte: `data` is a prefix of, or starts with, the signature.
fn parse_v2(data: &[u8], max_payload: usize) -> Result<Parsed<'_>, Error> {
    // Each fixed byte is checked as soon as it has arrived.
    let command = match data.get(12) {
        None => None,
        Some(&vc) if vc >> 4 != 2 => return Err(Error::BadVersion(vc)),
        Some(&vc) => match vc & 0x0f {
            0 => Some(Command::Local),
            1 => Some(Command::Proxy),
            _ => return Err(Error::BadCommand(vc)),
        },
    };
    // The family of a LOCAL header is discarded unread (the spec).
    let family = match (command, data.get(13)) {
        (Some(Command::Proxy), Some(&fam)) => Some(v2_family(fam)?),
        _ => None,
    };
    let (Some(command), Some(&[hi, lo])) = (command, data.get(14..16)) else {
        return Ok(Parsed::Incomplete {
            needed: V2_HEADER_LEN,
        });
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > max_payload {
        return Err(Error::TooLong {
            len,
            max: max_payload,
        });
    }
    let addr_len = family.map_or(0, |(_, addr_len)| addr_len);
    if len < addr_len {
        return Err(Error::AddressesTooShort {
            len,
            need: addr_len,
        });
    }
    let total = V2_HEADER_LEN + len;
    let Some(payload) = data.get(V2_HEADER_LEN..total) else {
        return Ok(Parsed::Incomplete { needed: total });
    };
    let mut header = Header {
        version: Version::V2,
        len: total,
        command,
        transport: Transport::Unspecified,
        addresses: Addresses::Unspecified,
        tlvs: Tlvs::EMPTY,
    };
    if let Some((fam, addr_len)) = family {
        let (addrs, tlvs) = payload.split_at(addr_len);
        header.transport = match fam & 0x0f {
            1 => Transport::Stream,
            2 => Transport::Dgram,
            _ => Transport::Unspecified,
        };
        header.addresses = v2_addresses(fam >> 4, addrs);
        // AF_UNSPEC: "the receiver should ignore address information"; with no address block
        // to delimit them, the payload is skipped whole.
        if fam != 0x00 {
            header.tlvs = Tlvs::new(tlvs)?;
        }
    }
    Ok(Parsed::Complete(header))
}

/// Checks a PROXY header's family/transport byte; gives it back with its address length.
fn v2_family(fam: u8) -> Result<(u8, usize), Error> {
    let addr_len = match fam {
        0x00 => 0,
        0x11 | 0x12 => ADDR_LEN_INET,
        0x21 | 0x22 => ADDR_LEN_INET6,
        0x31 | 0x32 => ADDR_LEN_UNIX,
        _ => return Err(Error::BadFamily(fam)),
    };
    Ok((fam, addr_len))
}

/// Decodes an address block whose length matches its family (checked by the caller).
fn v2_addresses(family: u8, a: &[u8]) -> Addresses<'_> {
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    match family {
        1 => {
            let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
            Addresses::V4 {
                src: SocketAddrV4::new(ip(0), port(8)),
                dst: SocketAddrV4::new(ip(4), port(10)),
            }
        }
        2 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[at..at + 16]);
                Ipv6Addr::from(o)
            };
            Addresses::V6 {
                src: SocketAddrV6::new(ip(0), port(32), 0, 0),
                dst: SocketAddrV6::new(ip(16), port(34), 0, 0),
            }
        }
        3 => {
            let (src, dst) = a.split_at(UNIX_PATH_LEN);
            match (src.try_into(), dst.try_into()) {
                (Ok(src), Ok(dst)) => Addresses::Unix { src, dst },
                _ => Addresses::Unspecified,
            }
        }
        _ => Addresses::Unspecified,
    }
}
