//! Writing PROXY protocol headers, for a cluster that sends one to its upstreams before the
//! connection's bytes. Each encoder appends one header to the caller's buffer (reserving what
//! it needs once) and allocates nothing else.
//!
//! A (client, destination) pair of different families (an IPv4 client accepted on an IPv6
//! listener, say) cannot be said as TCP4 or as two address families: both are written as
//! IPv6, the IPv4 one mapped (`::ffff:a.b.c.d`), as HAProxy does. IPv6 flow info and scope
//! IDs are not carried by the protocol.

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::{
    Addresses, Command, Header, Transport, ADDR_LEN_INET, ADDR_LEN_INET6, ADDR_LEN_UNIX,
    V1_MAX_LEN, V2_HEADER_LEN, V2_SIGNATURE,
};

/// Why a header cannot be encoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The addresses and the transport do not make one of the v2 family bytes (addresses
    /// without a transport, or a transport without addresses).
    #[error("PROXY v2 cannot say {transport:?} over these addresses")]
    NoFamily {
        /// The transport asked for.
        transport: Transport,
    },
    /// Addresses and TLVs together are longer than a v2 length (65,535) can say.
    #[error("PROXY v2 payload of {len} bytes is over 65535")]
    TooLong {
        /// Addresses and TLVs, in bytes.
        len: usize,
    },
}

/// Appends a v1 header: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` for a proxied TCP
/// connection's (client, original destination), `PROXY UNKNOWN\r\n` for `None` (the upstream
/// then uses the connection's own addresses).
pub fn encode_v1(proxied: Option<(SocketAddr, SocketAddr)>, out: &mut BytesMut) {
    out.reserve(V1_MAX_LEN);
    // Writing to a BytesMut cannot fail.
    let _ = match proxied.map(|(s, d)| same_family(s, d)) {
        None => out.write_str("PROXY UNKNOWN\r\n"),
        Some(Pair::V4(s, d)) => write!(
            out,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        Some(Pair::V6(s, d)) => write!(
            out,
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
    };
}

/// Appends a v2 header for a TCP connection: `PROXY` with TCP4/TCP6 addresses for a proxied
/// connection's (client, original destination), `LOCAL` for `None`. No TLVs.
pub fn encode_v2_tcp(proxied: Option<(SocketAddr, SocketAddr)>, out: &mut BytesMut) {
    let (command, addresses, transport) = match proxied.map(|(s, d)| same_family(s, d)) {
        None => (
            Command::Local,
            Addresses::Unspecified,
            Transport::Unspecified,
        ),
        Some(Pair::V4(src, dst)) => (
            Command::Proxy,
            Addresses::V4 { src, dst },
            Transport::Stream,
        ),
        Some(Pair::V6(src, dst)) => (
            Command::Proxy,
            Addresses::V6 { src, dst },
            Transport::Stream,
        ),
    };
    write_v2(command, transport, &addresses, &[], out);
}

/// Appends a v2 header with `header`'s command, transport, addresses and TLVs (its `version`
/// and `len` are not read). A header [`super::parse`] gave for a v2 `PROXY` is written back
/// byte for byte. A `LOCAL` header is written with the addresses and TLVs given, which a
/// receiver discards.
pub fn encode_v2(header: &Header<'_>, out: &mut BytesMut) -> Result<(), EncodeError> {
    let valid = matches!(
        (header.addresses, header.transport),
        (Addresses::Unspecified, Transport::Unspecified)
            | (
                Addresses::V4 { .. } | Addresses::V6 { .. } | Addresses::Unix { .. },
                Transport::Stream | Transport::Dgram
            )
    );
    if !valid {
        return Err(EncodeError::NoFamily {
            transport: header.transport,
        });
    }
    let len = addr_len(&header.addresses) + header.tlvs.as_bytes().len();
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::TooLong { len });
    }
    write_v2(
        header.command,
        header.transport,
        &header.addresses,
        header.tlvs.as_bytes(),
        out,
    );
    Ok(())
}

/// Writes a checked v2 header (family valid, payload length fits 16 bits).
fn write_v2(
    command: Command,
    transport: Transport,
    addresses: &Addresses<'_>,
    tlvs: &[u8],
    out: &mut BytesMut,
) {
    let len = addr_len(addresses) + tlvs.len();
    out.reserve(V2_HEADER_LEN + len);
    out.put_slice(V2_SIGNATURE);
    out.put_u8(match command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    let family = match addresses {
        Addresses::Unspecified => 0,
        Addresses::V4 { .. } => 1,
        Addresses::V6 { .. } => 2,
        Addresses::Unix { .. } => 3,
    };
    let transport = match transport {
        Transport::Unspecified => 0,
        Transport::Stream => 1,
        Transport::Dgram => 2,
    };
    out.put_u8(family << 4 | transport);
    out.put_u16(len as u16);
    match addresses {
        Addresses::Unspecified => {}
        Addresses::V4 { src, dst } => {
            out.put_slice(&src.ip().octets());
            out.put_slice(&dst.ip().octets());
            out.put_u16(src.port());
            out.put_u16(dst.port());
        }
        Addresses::V6 { src, dst } => {
            out.put_slice(&src.ip().octets());
            out.put_slice(&dst.ip().octets());
            out.put_u16(src.port());
            out.put_u16(dst.port());
        }
        Addresses::Unix { src, dst } => {
            out.put_slice(&src[..]);
            out.put_slice(&dst[..]);
        }
    }
    out.put_slice(tlvs);
}

fn addr_len(addresses: &Addresses<'_>) -> usize {
    match addresses {
        Addresses::Unspecified => 0,
        Addresses::V4 { .. } => ADDR_LEN_INET,
        Addresses::V6 { .. } => ADDR_LEN_INET6,
        Addresses::Unix { .. } => ADDR_LEN_UNIX,
    }
}

/// A pair of addresses in one family.
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

/// Both as IPv4 when both are, else both as IPv6 (an IPv4 one mapped), flow info and scope
/// dropped.
fn same_family(src: SocketAddr, dst: SocketAddr) -> Pair {
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Pair::V4(s, d),
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
                SocketAddr::V6(a) => SocketAddrV6::new(*a.ip(), a.port(), 0, 0),
            };
            Pair::V6(v6(src), v6(dst))
        }
    }
}
