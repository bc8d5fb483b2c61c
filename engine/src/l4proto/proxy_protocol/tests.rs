use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;

use super::*;

fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

fn v6(s: &str, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(s.parse().unwrap(), port, 0, 0)
}

fn complete(data: &[u8]) -> Header<'_> {
    match parse(data) {
        Ok(Parsed::Complete(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
    }
}

/// A v2 header: fixed part with `ver_cmd`, `fam` and the payload's length, then the payload.
fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn inet_payload() -> Vec<u8> {
    let mut p = vec![10, 0, 0, 1, 192, 168, 1, 2];
    p.extend_from_slice(&1234u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p
}

fn inet6_payload() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&65535u16.to_be_bytes());
    p.extend_from_slice(&80u16.to_be_bytes());
    p
}

// --- v1: the spec's examples and edge cases.

#[test]
fn v1_tcp4_spec_example() {
    let data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let h = complete(data);
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.len, 47);
    assert_eq!(&data[h.len..], b"GET / HTTP/1.1\r\n");
    assert_eq!(h.command, Command::Proxy);
    assert_eq!(h.transport, Transport::Stream);
    assert_eq!(
        h.addresses,
        Addresses::V4 {
            src: v4([192, 168, 0, 1], 56324),
            dst: v4([192, 168, 0, 11], 443)
        }
    );
    assert_eq!(
        h.proxied(),
        Some((
            "192.168.0.1:56324".parse().unwrap(),
            "192.168.0.11:443".parse().unwrap()
        ))
    );
    assert!(h.tlvs.is_empty());
}

#[test]
fn v1_tcp6_longest_line_is_104_bytes() {
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), 104);
    let h = complete(line.as_bytes());
    assert_eq!(h.len, 104);
    assert_eq!(
        h.addresses,
        Addresses::V6 {
            src: v6(f, 65535),
            dst: v6(f, 65535)
        }
    );
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line_up_to_107_bytes() {
    let h = complete(b"PROXY UNKNOWN\r\n");
    assert_eq!(
        (h.len, h.addresses, h.proxied()),
        (15, Addresses::Unspecified, None)
    );
    assert_eq!(h.transport, Transport::Unspecified);
    // The spec's worst case: UNKNOWN with the longest TCP6 fields after it is 107 bytes.
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), 107);
    assert_eq!(complete(line.as_bytes()).len, 107);
    assert_eq!(
        complete(b"PROXY UNKNOWN whatever \x01 is here\r\n").proxied(),
        None
    );
}

#[test]
fn v1_ports_and_addresses_at_their_limits() {
    let h = complete(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
    assert_eq!(
        h.addresses,
        Addresses::V4 {
            src: v4([0, 0, 0, 0], 0),
            dst: v4([255, 255, 255, 255], 65535)
        }
    );
    // Leading zeros in a port are still a decimal number.
    let h = complete(b"PROXY TCP4 1.2.3.4 5.6.7.8 00080 0443\r\n");
    assert_eq!(
        h.proxied().map(|(s, d)| (s.port(), d.port())),
        Some((80, 443))
    );
    // An IPv4-mapped IPv6 address is an IPv6 address.
    let h = complete(b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n");
    assert_eq!(
        h.addresses,
        Addresses::V6 {
            src: v6("::ffff:1.2.3.4", 1),
            dst: v6("::1", 2)
        }
    );
}

#[test]
fn v1_errors() {
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Error::BadSignature),
        (b"PROXZ", Error::BadSignature),
        (b"proxy TCP4", Error::BadSignature),
        (b"PROXY\r\n", Error::BadSignature),
        (b"\x16\x03\x01", Error::BadSignature),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Error::BadProtocol),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::BadProtocol),
        (b"PROXY UNKNOWNX\r\n", Error::BadProtocol),
        (b"PROXY \r\n", Error::BadProtocol),
        (
            b"PROXY TCP4\r\n",
            Error::MissingField(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4\r\n",
            Error::MissingField(V1Field::DestinationAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
            Error::MissingField(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            Error::MissingField(V1Field::DestinationPort),
        ),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            Error::MissingField(V1Field::DestinationAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
            Error::MissingField(V1Field::DestinationPort),
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Error::TrailingData),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Error::TrailingData),
        (
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            Error::BadAddress(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            Error::BadAddress(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            Error::BadAddress(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
            Error::BadAddress(V1Field::DestinationAddress),
        ),
        (
            b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
            Error::BadAddress(V1Field::DestinationAddress),
        ),
        (
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            Error::BadAddress(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n",
            Error::BadAddress(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            Error::BadPort(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            Error::BadPort(V1Field::DestinationPort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n",
            Error::BadPort(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            Error::BadPort(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            Error::BadPort(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n",
            Error::BadPort(V1Field::DestinationPort),
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Error::MissingCrlf),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", Error::MissingCrlf),
        (b"PROXY UNKNOWN\rx", Error::MissingCrlf),
        (b"PROXY \n", Error::MissingCrlf),
    ];
    for (data, want) in cases {
        assert_eq!(
            parse(data),
            Err(*want),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn v1_line_too_long_is_an_error_at_107_bytes_never_a_wait() {
    // 107 bytes without CRLF: the header cannot end within the limit.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(107, b'x');
    assert_eq!(parse(&line), Err(Error::LineTooLong));
    assert_eq!(parse(&line[..106]), Ok(Parsed::Incomplete { needed: 107 }));
    // A CR as the 107th byte: the LF would be the 108th.
    let mut cr = line[..106].to_vec();
    cr.extend_from_slice(b"\r\n");
    assert_eq!(parse(&cr), Err(Error::LineTooLong));
    assert_eq!(parse(&cr[..107]), Err(Error::LineTooLong));
    // Longer input is judged on its first 107 bytes.
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse(&line), Err(Error::LineTooLong));
}

// --- v2.

#[test]
fn v2_tcp4_with_tlvs() {
    let mut payload = inet_payload();
    let tlvs = [
        &[tlv::AUTHORITY, 0, 11][..],
        b"example.com",
        &[tlv::NOOP, 0, 0],
        &[0xEA, 0, 3, 1, 2, 3],
    ]
    .concat();
    payload.extend_from_slice(&tlvs);
    let mut data = v2(0x21, 0x11, &payload);
    data.extend_from_slice(b"rest");
    let h = complete(&data);
    assert_eq!(
        (h.version, h.command, h.transport),
        (Version::V2, Command::Proxy, Transport::Stream)
    );
    assert_eq!(h.len, 16 + 12 + tlvs.len());
    assert_eq!(&data[h.len..], b"rest");
    assert_eq!(
        h.addresses,
        Addresses::V4 {
            src: v4([10, 0, 0, 1], 1234),
            dst: v4([192, 168, 1, 2], 443)
        }
    );
    assert_eq!(h.tlvs.as_bytes(), &tlvs[..]);
    let all: Vec<_> = h.tlvs.iter().map(|t| (t.kind, t.value)).collect();
    assert_eq!(
        all,
        [
            (tlv::AUTHORITY, &b"example.com"[..]),
            (tlv::NOOP, &[][..]),
            (0xEA, &[1, 2, 3][..])
        ]
    );
    assert_eq!(h.tlvs.get(tlv::AUTHORITY), Some(&b"example.com"[..]));
    assert_eq!(h.tlvs.get(tlv::SSL), None);
}

#[test]
fn v2_tcp6_udp_unix_and_unspec() {
    let bytes = v2(0x21, 0x21, &inet6_payload());
    let h = complete(&bytes);
    assert_eq!(
        h.addresses,
        Addresses::V6 {
            src: v6("2001:db8::1", 65535),
            dst: v6("2001:db8::2", 80)
        }
    );
    assert_eq!(h.proxied().map(|(s, _)| s.port()), Some(65535));

    // UDP over IPv4: addresses given, but not a TCP connection's.
    let bytes = v2(0x21, 0x12, &inet_payload());
    let h = complete(&bytes);
    assert_eq!((h.transport, h.proxied()), (Transport::Dgram, None));
    assert!(matches!(h.addresses, Addresses::V4 { .. }));

    let mut unix = vec![0u8; 216];
    unix[..8].copy_from_slice(b"/tmp/cli");
    unix[108..116].copy_from_slice(b"/tmp/srv");
    let bytes = v2(0x21, 0x31, &unix);
    let h = complete(&bytes);
    match h.addresses {
        Addresses::Unix { src, dst } => {
            assert_eq!(&src[..8], b"/tmp/cli");
            assert_eq!(&dst[..8], b"/tmp/srv");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.proxied(), None);
    assert_eq!(complete(&v2(0x21, 0x32, &unix)).transport, Transport::Dgram);

    // AF_UNSPEC: addresses ignored, the payload skipped unread.
    let bytes = v2(0x21, 0x00, b"\xff\xff");
    let h = complete(&bytes);
    assert_eq!(
        (h.len, h.addresses, h.proxied()),
        (18, Addresses::Unspecified, None)
    );
    assert!(h.tlvs.is_empty());
}

#[test]
fn v2_local_discards_family_and_payload() {
    // The usual health-check header: LOCAL, AF_UNSPEC, no payload.
    let bytes = v2(0x20, 0x00, &[]);
    let h = complete(&bytes);
    assert_eq!((h.command, h.len, h.proxied()), (Command::Local, 16, None));
    // LOCAL with addresses, even an undefined family and a broken TLV: all discarded.
    let bytes = v2(0x20, 0x11, &inet_payload());
    let h = complete(&bytes);
    assert_eq!(
        (h.command, h.addresses, h.len),
        (Command::Local, Addresses::Unspecified, 28)
    );
    let bytes = v2(0x20, 0xff, &[9, 9]);
    let h = complete(&bytes);
    assert_eq!(
        (h.command, h.len, h.tlvs),
        (Command::Local, 18, Tlvs::EMPTY)
    );
}

#[test]
fn v2_errors() {
    let mut bad_sig = V2_SIGNATURE.to_vec();
    bad_sig[7] = b'X';
    assert_eq!(parse(&bad_sig), Err(Error::BadSignature));
    assert_eq!(parse(&bad_sig[..8]), Err(Error::BadSignature));
    assert_eq!(parse(b"\r\n\r\n\x01"), Err(Error::BadSignature));

    let cases: &[(Vec<u8>, Error)] = &[
        (v2(0x11, 0x11, &inet_payload()), Error::BadVersion(0x11)),
        (v2(0x31, 0x11, &inet_payload()), Error::BadVersion(0x31)),
        (v2(0x01, 0x11, &inet_payload()), Error::BadVersion(0x01)),
        (v2(0x22, 0x11, &inet_payload()), Error::BadCommand(0x22)),
        (v2(0x2f, 0x11, &inet_payload()), Error::BadCommand(0x2f)),
        (v2(0x21, 0x13, &inet_payload()), Error::BadFamily(0x13)),
        (v2(0x21, 0x10, &inet_payload()), Error::BadFamily(0x10)),
        (v2(0x21, 0x41, &inet_payload()), Error::BadFamily(0x41)),
        (v2(0x21, 0x01, &inet_payload()), Error::BadFamily(0x01)),
        (
            v2(0x21, 0x11, &[0; 11]),
            Error::AddressesTooShort { len: 11, need: 12 },
        ),
        (
            v2(0x21, 0x21, &inet_payload()),
            Error::AddressesTooShort { len: 12, need: 36 },
        ),
        (
            v2(0x21, 0x31, &[0; 215]),
            Error::AddressesTooShort {
                len: 215,
                need: 216,
            },
        ),
        (
            v2(0x21, 0x11, &[0; 4097]),
            Error::TooLong {
                len: 4097,
                max: 4096,
            },
        ),
        // TLVs: a header cut short, and a length past the end of the payload.
        (
            v2(0x21, 0x11, &[inet_payload(), vec![1, 0]].concat()),
            Error::BadTlv { offset: 0 },
        ),
        (
            v2(
                0x21,
                0x11,
                &[inet_payload(), vec![4, 0, 0, 1, 0, 2, b'x']].concat(),
            ),
            Error::BadTlv { offset: 3 },
        ),
    ];
    for (data, want) in cases {
        assert_eq!(parse(data), Err(*want), "{data:x?}");
    }
}

#[test]
fn v2_errors_come_as_soon_as_the_bytes_prove_them() {
    // Version at the 13th byte, family at the 14th, length over the cap at the 16th: no
    // waiting for the (announced) rest.
    let data = v2(0x31, 0x11, &inet_payload());
    assert_eq!(parse(&data[..13]), Err(Error::BadVersion(0x31)));
    let data = v2(0x21, 0x77, &inet_payload());
    assert_eq!(parse(&data[..14]), Err(Error::BadFamily(0x77)));
    let mut data = v2(0x21, 0x11, &[]);
    data[14..16].copy_from_slice(&65535u16.to_be_bytes());
    assert_eq!(
        parse(&data),
        Err(Error::TooLong {
            len: 65535,
            max: 4096
        })
    );
    data[14..16].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        parse(&data),
        Err(Error::AddressesTooShort { len: 4, need: 12 })
    );
}

#[test]
fn v2_never_asks_for_more_than_its_cap() {
    let mut data = v2(0x21, 0x11, &[]);
    data[14..16].copy_from_slice(&4096u16.to_be_bytes());
    assert_eq!(parse(&data), Ok(Parsed::Incomplete { needed: 16 + 4096 }));
    assert_eq!(
        parse_with_limit(&data, 100),
        Err(Error::TooLong {
            len: 4096,
            max: 100
        })
    );
    data[14..16].copy_from_slice(&65535u16.to_be_bytes());
    assert_eq!(
        parse_with_limit(&data, 65535),
        Ok(Parsed::Incomplete { needed: 16 + 65535 })
    );
}

// --- Incremental: every split point of every valid header.

fn valid_headers() -> Vec<Vec<u8>> {
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let mut unix = vec![b'u'; 216];
    unix.extend_from_slice(&[tlv::UNIQUE_ID, 0, 2, 7, 7]);
    vec![
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        format!("PROXY TCP6 {f} {f} 65535 65535\r\n").into_bytes(),
        format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n").into_bytes(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(
            0x21,
            0x11,
            &[inet_payload(), vec![tlv::ALPN, 0, 2, b'h', b'2']].concat(),
        ),
        v2(0x21, 0x21, &inet6_payload()),
        v2(0x21, 0x31, &unix),
        v2(0x20, 0x00, &[]),
        v2(0x21, 0x00, &[1, 2, 3]),
    ]
}

#[test]
fn every_split_point_waits_then_gives_the_same_header() {
    for header in valid_headers() {
        let mut data = header.clone();
        data.extend_from_slice(b"\x16\x03\x01 application bytes");
        let whole = complete(&data);
        assert_eq!(whole.len, header.len());
        for cut in 0..header.len() {
            match parse(&data[..cut]) {
                Ok(Parsed::Incomplete { needed }) => assert!(
                    cut < needed && needed <= header.len(),
                    "cut {cut}: needed {needed} of {}",
                    header.len()
                ),
                other => panic!(
                    "cut {cut} of {:?}: {other:?}",
                    String::from_utf8_lossy(&header)
                ),
            }
        }
        for end in header.len()..=data.len() {
            assert_eq!(complete(&data[..end]), whole);
        }
    }
}

#[test]
fn a_header_read_in_small_pieces_is_read_whole() {
    // What a listener filter does: append each read to its buffer, parse the buffer again.
    for header in valid_headers() {
        for piece in [1, 2, 3, 5, 7, 13] {
            let mut buf = Vec::new();
            let mut reads = header.chunks(piece);
            let got = loop {
                buf.extend_from_slice(reads.next().expect("header ended while incomplete"));
                match parse(&buf).unwrap() {
                    Parsed::Incomplete { needed } => assert!(needed > buf.len()),
                    Parsed::Complete(h) => break h.len,
                }
            };
            assert_eq!((got, reads.next()), (header.len(), None));
        }
    }
}

// --- Encoders and round trips.

fn pairs() -> Vec<(SocketAddr, SocketAddr)> {
    vec![
        (
            "192.168.0.1:56324".parse().unwrap(),
            "192.168.0.11:443".parse().unwrap(),
        ),
        (
            "0.0.0.0:0".parse().unwrap(),
            "255.255.255.255:65535".parse().unwrap(),
        ),
        (
            "[2001:db8::1]:1".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        ),
        (
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .unwrap(),
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .unwrap(),
        ),
        (
            "[::ffff:10.1.2.3]:5".parse().unwrap(),
            "[fe80::1]:6".parse().unwrap(),
        ),
    ]
}

fn encoded(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut out = BytesMut::new();
    f(&mut out);
    out
}

#[test]
fn encode_v1_writes_the_spec_lines() {
    let (s, d) = pairs()[0];
    assert_eq!(
        &encoded(|o| encode_v1(Some((s, d)), o))[..],
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );
    let (s, d) = pairs()[2];
    assert_eq!(
        &encoded(|o| encode_v1(Some((s, d)), o))[..],
        b"PROXY TCP6 2001:db8::1 ::1 1 8443\r\n"
    );
    assert_eq!(&encoded(|o| encode_v1(None, o))[..], b"PROXY UNKNOWN\r\n");
    // Appends: what was in the buffer stays.
    let mut out = BytesMut::from(&b"x"[..]);
    encode_v1(None, &mut out);
    assert_eq!(&out[..], b"xPROXY UNKNOWN\r\n");
}

#[test]
fn encode_v2_tcp_writes_proxy_or_local() {
    let (s, d) = pairs()[0];
    let out = encoded(|o| encode_v2_tcp(Some((s, d)), o));
    let want = v2(
        0x21,
        0x11,
        &[192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb],
    );
    assert_eq!(&out[..], &want[..]);
    assert_eq!(
        &encoded(|o| encode_v2_tcp(None, o))[..],
        &v2(0x20, 0x00, &[])[..]
    );
}

#[test]
fn v1_and_v2_round_trip_through_the_encoders() {
    for (s, d) in pairs() {
        let proxied = Some((s, d));
        let one = encoded(|o| encode_v1(proxied, o));
        let two = encoded(|o| encode_v2_tcp(proxied, o));
        let (h1, h2) = (complete(&one), complete(&two));
        assert_eq!((h1.len, h2.len), (one.len(), two.len()));
        assert_eq!(h1.proxied(), proxied);
        assert_eq!(h2.proxied(), proxied);
        assert_eq!(h1.addresses, h2.addresses);
        // v1 -> v2 -> v1 gives back the same bytes.
        let again = encoded(|o| encode_v2_tcp(h1.proxied(), o));
        assert_eq!(again, two);
        let again = encoded(|o| encode_v1(complete(&again).proxied(), o));
        assert_eq!(again, one);
    }
    // No addresses: UNKNOWN and LOCAL, both meaning "use the connection's own".
    let bytes = encoded(|o| encode_v1(None, o));
    let h = complete(&bytes);
    assert_eq!((h.addresses, h.proxied()), (Addresses::Unspecified, None));
    let bytes = encoded(|o| encode_v2_tcp(None, o));
    let h = complete(&bytes);
    assert_eq!((h.command, h.proxied()), (Command::Local, None));
}

#[test]
fn encoders_put_mixed_families_in_ipv6() {
    let s: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let d: SocketAddr = "[2001:db8::9]:443".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:10.0.0.1]:1000".parse().unwrap();
    let one = encoded(|o| encode_v1(Some((s, d)), o));
    assert_eq!(
        &one[..],
        b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::9 1000 443\r\n"
    );
    assert_eq!(complete(&one).proxied(), Some((mapped, d)));
    let two = encoded(|o| encode_v2_tcp(Some((d, s)), o));
    assert_eq!(
        complete(&two).proxied(),
        Some((d, "[::ffff:10.0.0.1]:1000".parse().unwrap()))
    );
    // Scope and flow info are not in the protocol.
    let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 5, 3));
    let two = encoded(|o| encode_v2_tcp(Some((scoped, d)), o));
    assert_eq!(
        complete(&two).proxied(),
        Some(("[fe80::1]:7".parse().unwrap(), d))
    );
}

#[test]
fn encode_v2_writes_a_parsed_proxy_header_back_byte_for_byte() {
    for header in valid_headers() {
        let h = complete(&header);
        if h.version != Version::V2
            || h.command != Command::Proxy
            || h.addresses == Addresses::Unspecified
        {
            continue;
        }
        let out = encoded(|o| encode_v2(&h, o).unwrap());
        assert_eq!(&out[..], &header[..]);
    }
}

#[test]
fn encode_v2_refuses_what_it_cannot_say() {
    let bytes = v2(0x21, 0x11, &inet_payload());
    let parsed = complete(&bytes);
    let mut out = BytesMut::new();
    let h = Header {
        transport: Transport::Unspecified,
        ..parsed
    };
    assert_eq!(
        encode_v2(&h, &mut out),
        Err(EncodeError::NoFamily {
            transport: Transport::Unspecified
        })
    );
    let h = Header {
        addresses: Addresses::Unspecified,
        ..parsed
    };
    assert_eq!(
        encode_v2(&h, &mut out),
        Err(EncodeError::NoFamily {
            transport: Transport::Stream
        })
    );
    // One TLV of 65,532 bytes: with the 12 address bytes, 12 over what 16 bits can say.
    let mut raw = vec![0x04, 0xff, 0xfc];
    raw.resize(3 + 0xfffc, 0);
    let h = Header {
        tlvs: Tlvs::new(&raw).unwrap(),
        ..parsed
    };
    assert_eq!(
        encode_v2(&h, &mut out),
        Err(EncodeError::TooLong { len: 12 + 65535 })
    );
    assert!(out.is_empty(), "nothing written on error");
    // The largest payload that fits is written, and parses with the spec's own cap.
    let mut raw = vec![0x04];
    raw.extend_from_slice(&(0xfffcu16 - 12).to_be_bytes());
    raw.resize(3 + 0xfffc - 12, 0);
    let h = Header {
        tlvs: Tlvs::new(&raw).unwrap(),
        ..parsed
    };
    encode_v2(&h, &mut out).unwrap();
    assert_eq!(out.len(), 16 + 65535);
    match parse_with_limit(&out, 65535) {
        Ok(Parsed::Complete(again)) => assert_eq!(
            again,
            Header {
                len: 16 + 65535,
                ..h
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tlvs_new_checks_framing() {
    assert_eq!(Tlvs::new(&[]).map(|t| t.iter().count()), Ok(0));
    assert_eq!(
        Tlvs::new(&[1, 0, 1, 9, 2, 0, 0]).map(|t| t.iter().count()),
        Ok(2)
    );
    assert_eq!(Tlvs::new(&[1]), Err(Error::BadTlv { offset: 0 }));
    assert_eq!(Tlvs::new(&[1, 0, 2, 9]), Err(Error::BadTlv { offset: 0 }));
    assert_eq!(
        Tlvs::new(&[1, 0, 0, 2, 0]),
        Err(Error::BadTlv { offset: 3 })
    );
}

#[test]
fn errors_read_well() {
    assert_eq!(
        Error::BadPort(V1Field::SourcePort).to_string(),
        "PROXY v1 source port is not a port number (0-65535)"
    );
    assert_eq!(
        Error::BadVersion(0x31).to_string(),
        "PROXY v2 version byte 0x31: the version is not 2"
    );
}

#[test]
fn v2_ssl_tlv_and_its_sub_tlvs() {
    let sub = [
        &[tlv::ssl::VERSION, 0, 7][..],
        b"TLSv1.3",
        &[tlv::ssl::CN, 0, 6],
        b"client",
    ]
    .concat();
    let mut ssl = vec![tlv::client::SSL | tlv::client::CERT_CONN, 0, 0, 0, 0];
    ssl.extend_from_slice(&sub);
    let mut payload = inet_payload();
    payload.extend_from_slice(&[tlv::ALPN, 0, 2, b'h', b'2', tlv::SSL, 0, ssl.len() as u8]);
    payload.extend_from_slice(&ssl);
    // CRC32C (not verified) and padding after it: still one header, all of it consumed.
    payload.extend_from_slice(&[tlv::CRC32C, 0, 4, 1, 2, 3, 4, tlv::NOOP, 0, 3, 0, 0, 0]);
    let mut data = v2(0x21, 0x11, &payload);
    data.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let h = complete(&data);
    assert_eq!(&data[h.len..], b"GET / HTTP/1.1\r\n");
    assert_eq!(h.tlvs.get(tlv::ALPN), Some(&b"h2"[..]));
    let s = h.tlvs.ssl().expect("ssl tlv");
    assert!(s.is_tls());
    assert_eq!((s.client, s.verify), (0x03, 0));
    assert_eq!(s.sub.get(tlv::ssl::VERSION), Some(&b"TLSv1.3"[..]));
    assert_eq!(s.sub.get(tlv::ssl::CN), Some(&b"client"[..]));
    assert_eq!(s.sub.get(tlv::ssl::CIPHER), None);
    // A malformed SSL value (sub-TLV past its end, or shorter than its head) is not decoded,
    // and does not make the header invalid.
    for bad in [&[1u8, 0, 0, 0, 0, tlv::ssl::CN, 0, 9, b'x'][..], &[1, 0, 0]] {
        let mut payload = inet_payload();
        payload.extend_from_slice(&[tlv::SSL, 0, bad.len() as u8]);
        payload.extend_from_slice(bad);
        let data = v2(0x21, 0x11, &payload);
        let h = complete(&data);
        assert_eq!(h.len, data.len());
        assert_eq!(h.tlvs.ssl(), None);
    }
    assert_eq!(complete(&v2(0x21, 0x11, &inet_payload())).tlvs.ssl(), None);
}
