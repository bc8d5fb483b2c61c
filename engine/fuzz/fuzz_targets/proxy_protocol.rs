//! Fuzz target: arbitrary bytes as the front of a connection behind a PROXY protocol sender.
//!
//! Parses them (never a panic); checks what each verdict promises (an incomplete header never
//! asks past the spec maximum, a complete one lies within the bytes and is framed as its
//! version says); checks that every shorter prefix waits or gives the same verdict (so a
//! header split over reads parses the same); and round-trips what it can through the
//! encoders: a v2 PROXY header is written back byte for byte, and the addresses of any header
//! survive v1 and v2 encoding and parsing again. TLVs (and an SSL TLV's sub-TLVs) must cover
//! exactly the bytes they came in.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::l4proto::proxy_protocol::{
    encode_v1, encode_v2, encode_v2_tcp, parse, parse_with_limit, tlv, Addresses, Command, Error,
    Header, Parsed, Version, V1_MAX_LEN, V2_DEFAULT_MAX_PAYLOAD, V2_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    check_verdict(data, &whole);

    // Every prefix: wait, or the same verdict.
    let horizon = match whole {
        Ok(Parsed::Complete(h)) => h.len,
        _ => data.len(),
    };
    for cut in 0..horizon.min(data.len()) {
        match (parse(&data[..cut]), whole) {
            (Ok(Parsed::Incomplete { needed }), Ok(Parsed::Complete(h))) => {
                assert!(
                    needed <= h.len,
                    "prefix {cut} asks {needed}, header is {}",
                    h.len
                )
            }
            (Ok(Parsed::Incomplete { .. }), _) => {}
            (Err(e), Err(w)) => assert_eq!(e, w, "prefix {cut}"),
            (p, w) => panic!("prefix {cut}: {p:?}, whole: {w:?}"),
        }
    }

    // The spec's own cap changes nothing but the length check.
    match (whole, parse_with_limit(data, 65535)) {
        (Err(Error::TooLong { .. }), _) | (Ok(Parsed::Incomplete { .. }), _) => {}
        (w, any) => assert_eq!(w, any),
    }

    if let Ok(Parsed::Complete(h)) = whole {
        check_tlvs(data, &h);
        round_trip(data, &h);
    }
});

/// The TLVs lie inside the header and cover its tail exactly; an SSL TLV's sub-TLVs lie
/// inside it.
fn check_tlvs(data: &[u8], h: &Header<'_>) {
    let total: usize = h.tlvs.iter().map(|t| 3 + t.value.len()).sum();
    assert_eq!(total, h.tlvs.as_bytes().len());
    if !h.tlvs.is_empty() {
        assert!(data[..h.len].ends_with(h.tlvs.as_bytes()));
    }
    if let Some(ssl) = h.tlvs.ssl() {
        let value = h.tlvs.get(tlv::SSL).expect("an SSL TLV");
        assert_eq!(5 + ssl.sub.as_bytes().len(), value.len());
        let sub: usize = ssl.sub.iter().map(|t| 3 + t.value.len()).sum();
        assert_eq!(sub, ssl.sub.as_bytes().len());
    }
}

fn check_verdict(data: &[u8], verdict: &Result<Parsed<'_>, Error>) {
    match *verdict {
        Ok(Parsed::Incomplete { needed }) => {
            assert!(needed > data.len());
            let max = match data.first() {
                Some(b'\r') => V2_HEADER_LEN + V2_DEFAULT_MAX_PAYLOAD,
                _ => V1_MAX_LEN,
            };
            assert!(needed <= max, "needed {needed} over {max}");
        }
        Ok(Parsed::Complete(h)) => {
            assert!(h.len <= data.len());
            match h.version {
                Version::V1 => {
                    assert!(h.len <= V1_MAX_LEN && data.starts_with(b"PROXY "));
                    assert_eq!(&data[h.len - 2..h.len], b"\r\n");
                    assert_eq!(h.command, Command::Proxy);
                }
                Version::V2 => {
                    let len = usize::from(u16::from_be_bytes([data[14], data[15]]));
                    assert_eq!(h.len, V2_HEADER_LEN + len);
                    assert!(len <= V2_DEFAULT_MAX_PAYLOAD);
                }
            }
        }
        Err(_) => {}
    }
}

fn round_trip(data: &[u8], h: &Header<'_>) {
    // A v2 PROXY header with addresses: written back byte for byte.
    if h.version == Version::V2
        && h.command == Command::Proxy
        && h.addresses != Addresses::Unspecified
    {
        let mut out = BytesMut::new();
        encode_v2(h, &mut out).expect("a parsed header encodes");
        assert_eq!(&out[..], &data[..h.len]);
    }
    // The proxied addresses (or their absence) survive either encoding.
    let proxied = h.proxied();
    for v2 in [false, true] {
        let mut out = BytesMut::new();
        if v2 {
            encode_v2_tcp(proxied, &mut out);
        } else {
            encode_v1(proxied, &mut out);
        }
        match parse(&out) {
            Ok(Parsed::Complete(again)) => {
                assert_eq!(again.len, out.len());
                assert_eq!(again.proxied(), proxied);
            }
            other => panic!("encoded {out:?} parses as {other:?}"),
        }
    }
}
