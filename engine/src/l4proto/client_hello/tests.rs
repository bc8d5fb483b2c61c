use std::sync::Arc;

use super::*;

// --- Real ClientHellos, made in-process by rustls.

/// The bytes a rustls client sends first, with `sni` (none for `None`), `alpn`, and records of
/// at most `max_fragment` bytes.
fn rustls_hello(sni: Option<&str>, alpn: &[&[u8]], max_fragment: Option<usize>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.max_fragment_size = max_fragment;
    cfg.enable_sni = sni.is_some();
    let name = rustls::pki_types::ServerName::try_from(sni.unwrap_or("a.example.test").to_string())
        .unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// What rustls's own server side reads from the same bytes: (SNI, ALPN).
fn rustls_reads(data: &[u8]) -> (Option<String>, Vec<Vec<u8>>) {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = data;
    while !rd.is_empty() {
        acceptor.read_tls(&mut rd).unwrap();
    }
    let accepted = acceptor.accept().map_err(|(e, _)| e).unwrap().unwrap();
    let hello = accepted.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let alpn = hello
        .alpn()
        .map(|a| a.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    (sni, alpn)
}

fn tls(data: &[u8]) -> (Option<String>, Vec<Vec<u8>>, Vec<u16>, u16) {
    let mut scratch = Vec::new();
    match peek(data, &mut scratch) {
        Ok(Peek::Tls(h)) => (
            h.server_name.map(|s| s.to_string()),
            h.alpn.iter().map(<[u8]>::to_vec).collect(),
            h.supported_versions.iter().collect(),
            h.highest_version(),
        ),
        other => panic!("{other:?}"),
    }
}

fn err(data: &[u8]) -> Error {
    match peek(data, &mut Vec::new()) {
        Err(e) => e,
        other => panic!("{other:?}"),
    }
}

/// Every proper prefix is NeedMore with a bound no larger than the whole; the whole (and the
/// whole with bytes after it) gives `whole`'s verdict.
fn check_every_split_point(data: &[u8]) {
    for cut in 0..data.len() {
        match peek(&data[..cut], &mut Vec::new()) {
            Ok(Peek::NeedMore { needed }) => assert!(
                cut < needed && needed <= data.len(),
                "cut {cut}: needed {needed} of {}",
                data.len()
            ),
            other => panic!("cut {cut} of {}: {other:?}", data.len()),
        }
    }
    let whole = tls(data);
    let mut more = data.to_vec();
    more.extend_from_slice(b"\x17\x03\x03\x00\x05early");
    assert_eq!(tls(&more), whole);
}

#[test]
fn rustls_hello_with_sni_and_alpn() {
    let data = rustls_hello(Some("a.example.test"), &[b"h2", b"http/1.1"], None);
    let (sni, alpn, versions, highest) = tls(&data);
    assert_eq!(sni.as_deref(), Some("a.example.test"));
    assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(
        versions.contains(&0x0304) && versions.contains(&0x0303),
        "{versions:x?}"
    );
    assert_eq!(highest, 0x0304);
    // rustls's own server side reads the same from the same, unconsumed, bytes.
    assert_eq!(rustls_reads(&data), (sni, alpn));
    // The usual case: one record, parsed in place (the scratch buffer is not touched).
    let mut scratch = Vec::new();
    assert!(matches!(peek(&data, &mut scratch), Ok(Peek::Tls(_))));
    assert!(scratch.is_empty());
}

#[test]
fn rustls_hello_at_every_split_point() {
    check_every_split_point(&rustls_hello(Some("b.example.test"), &[b"h2"], None));
}

#[test]
fn rustls_hello_in_many_small_records_at_every_split_point() {
    let data = rustls_hello(Some("x.wild.example.test"), &[b"http/1.1", b"h2"], Some(64));
    // Count the records: the hello must really be spread.
    let (mut at, mut records) = (0, 0);
    while at < data.len() {
        at += 5 + usize::from(u16::from_be_bytes([data[at + 3], data[at + 4]]));
        records += 1;
    }
    assert!(records > 3, "{records} records");
    check_every_split_point(&data);
    let (sni, alpn, _, _) = tls(&data);
    assert_eq!(sni.as_deref(), Some("x.wild.example.test"));
    assert_eq!((sni, alpn), rustls_reads(&data));
    let mut scratch = Vec::new();
    assert!(matches!(peek(&data, &mut scratch), Ok(Peek::Tls(_))));
    assert!(!scratch.is_empty(), "reassembled in scratch");
}

#[test]
fn rustls_hello_without_sni_or_alpn() {
    let data = rustls_hello(None, &[], None);
    let (sni, alpn, versions, _) = tls(&data);
    assert_eq!((sni, alpn.is_empty()), (None, true));
    assert!(!versions.is_empty());
    assert_eq!(rustls_reads(&data), (None, vec![]));
}

#[test]
fn a_reused_scratch_buffer_holds_the_latest_hello() {
    let mut scratch = Vec::new();
    for name in ["a.example.test", "b.example.test"] {
        let data = rustls_hello(Some(name), &[], Some(40));
        match peek(&data, &mut scratch) {
            Ok(Peek::Tls(h)) => assert_eq!(h.server_name.unwrap(), name),
            other => panic!("{other:?}"),
        }
    }
}

// --- Hand-made ClientHellos, for what rustls never sends.

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

fn vec16(items: &[u8]) -> Vec<u8> {
    let mut v = (items.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(items);
    v
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&vec16(name));
    ext(0, &vec16(&entry))
}

fn alpn(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(n.len() as u8);
        list.extend_from_slice(n);
    }
    ext(16, &vec16(&list))
}

/// A ClientHello handshake message with these extensions (already encoded, concatenated);
/// `None` leaves the extensions block out.
fn hello(exts: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // legacy_session_id
    body.extend_from_slice(&vec16(&[0x13, 0x01])); // cipher_suites
    body.extend_from_slice(&[1, 0]); // legacy_compression_methods: null
    if let Some(exts) = exts {
        body.extend_from_slice(&vec16(exts));
    }
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// `msg` in handshake records: the first ones of `sizes` bytes, the rest in one.
fn records(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    let mut sizes = sizes.iter().copied();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fn with_ext(exts: &[Vec<u8>]) -> Vec<u8> {
    records(&hello(Some(&exts.concat())), &[])
}

#[test]
fn a_hello_split_across_two_records_anywhere() {
    let msg = hello(Some(&[sni(b"a.example.test"), alpn(&[b"h2"])].concat()));
    // The split falls in the handshake header, in the random, inside the SNI, at the end.
    for first in 1..msg.len() {
        let data = records(&msg, &[first]);
        let (sni, alpn, _, _) = tls(&data);
        assert_eq!(
            (sni.as_deref(), alpn),
            (Some("a.example.test"), vec![b"h2".to_vec()])
        );
    }
    check_every_split_point(&records(&msg, &[2]));
    check_every_split_point(&records(&msg, &[60]));
}

#[test]
fn server_name_is_lower_cased_and_checked() {
    let data = with_ext(&[sni(b"API.Example.TEST")]);
    assert_eq!(tls(&data).0.as_deref(), Some("api.example.test"));
    assert_eq!(
        tls(&with_ext(&[sni(b"a-b_c.d9")])).0.as_deref(),
        Some("a-b_c.d9")
    );
    let longest = [
        &[b'a'; 63][..],
        b".",
        &[b'b'; 63],
        b".",
        &[b'c'; 63],
        b".",
        &[b'd'; 61],
    ]
    .concat();
    assert_eq!(longest.len(), 253);
    assert_eq!(
        tls(&with_ext(&[sni(&longest)])).0.map(|s| s.len()),
        Some(253)
    );

    let too_long = [&longest[..], b"e"].concat();
    let long_label = [&[b'a'; 64][..], b".test"].concat();
    for bad in [
        &b""[..],
        b"a..b",
        b".a",
        b"a.",
        b"*.example.test",
        b"a b",
        b"a\0b",
        b"caf\xc3\xa9.test",
        b"1.2.3.4:443",
        &too_long,
        &long_label,
    ] {
        assert_eq!(err(&with_ext(&[sni(bad)])), Error::BadServerName, "{bad:?}");
    }
    // Other name types are skipped; a second host_name is refused.
    let mut list = vec![7];
    list.extend_from_slice(&vec16(b"opaque"));
    list.push(0);
    list.extend_from_slice(&vec16(b"a.test"));
    assert_eq!(
        tls(&with_ext(&[ext(0, &vec16(&list))])).0.as_deref(),
        Some("a.test")
    );
    list.push(0);
    list.extend_from_slice(&vec16(b"b.test"));
    assert_eq!(
        err(&with_ext(&[ext(0, &vec16(&list))])),
        Error::Malformed("server_name has two host names")
    );
}

#[test]
fn hello_without_extensions_is_tls_with_nothing_offered() {
    let data = records(&hello(None), &[]);
    assert_eq!(tls(&data), (None, vec![], vec![], 0x0303));
}

#[test]
fn not_tls() {
    for data in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x80\x2e\x01\x00\x02", // an SSLv2-style hello
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"G",
    ] {
        assert_eq!(peek(data, &mut Vec::new()), Ok(Peek::NotTls), "{data:?}");
    }
    assert_eq!(peek(b"", &mut Vec::new()), Ok(Peek::NeedMore { needed: 9 }));
}

#[test]
fn record_errors() {
    let good = with_ext(&[sni(b"a.test")]);
    let mut bad = good.clone();
    bad[1] = 2;
    assert_eq!(err(&bad), Error::BadRecordVersion(2));
    assert_eq!(err(&bad[..2]), Error::BadRecordVersion(2));
    let mut bad = good.clone();
    bad[3..5].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(err(&bad[..5]), Error::EmptyRecord);
    bad[3..5].copy_from_slice(&16385u16.to_be_bytes());
    assert_eq!(err(&bad[..5]), Error::RecordTooLong(16385));
    // A hello whose second record is an alert.
    let msg = hello(Some(&sni(b"a.test")));
    let mut data = records(&msg, &[10]);
    data[15] = 21;
    assert_eq!(err(&data), Error::UnexpectedRecord(21));
    assert_eq!(err(&data[..16]), Error::UnexpectedRecord(21));
    // A handshake message that is not a ClientHello (a ServerHello), known from its first byte.
    let mut data = good.clone();
    data[5] = 2;
    assert_eq!(err(&data[..6]), Error::NotClientHello(2));
}

#[test]
fn garbage_after_a_handshake_record_header_is_an_error() {
    let mut garbage = vec![22, 3, 1, 0, 60];
    garbage.extend((0..60u8).map(|i| i.wrapping_mul(37).wrapping_add(1)));
    assert!(peek(&garbage, &mut Vec::new()).is_err());
    // A ClientHello type byte, then random bytes for lengths.
    let mut garbage = vec![22, 3, 1, 0, 60, 1, 0, 0, 56];
    garbage.extend((0..56u8).map(|i| i.wrapping_mul(91) ^ 0x5a));
    assert!(matches!(err(&garbage), Error::Malformed(_)));
}

#[test]
fn lengths_that_overflow() {
    // The handshake length: 2^24 - 1, over the cap, refused at its header.
    assert_eq!(err(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), Error::TooLarge);
    // Exactly the cap is waited for (and never asks for more than MAX_PEEK_BYTES).
    let body = (MAX_HELLO_LEN - 4) as u32;
    let mut data = vec![22, 3, 1, 0x40, 0, 1];
    data.extend_from_slice(&body.to_be_bytes()[1..]);
    match peek(&data, &mut Vec::new()) {
        Ok(Peek::NeedMore { needed }) => assert!(needed <= MAX_PEEK_BYTES, "{needed}"),
        other => panic!("{other:?}"),
    }
    // Inside the hello: each length one past what is there.
    let msg = hello(Some(&[sni(b"a.test"), ext(21, &[0; 40])].concat()));
    let at_session_id = 4 + 2 + 32;
    for (at, value, what) in [
        (
            at_session_id,
            33u8,
            "legacy_session_id longer than 32 bytes",
        ),
        (at_session_id, 200, "legacy_session_id"),
        (at_session_id + 2, 0xff, "cipher_suites"),
        (at_session_id + 5, 200, "legacy_compression_methods"),
        (at_session_id + 7, 0xff, "extensions"),
    ] {
        let mut m = msg.clone();
        m[at] = value;
        assert_eq!(
            err(&records(&m, &[])),
            Error::Malformed(what),
            "byte {at} = {value}"
        );
    }
}

#[test]
fn truncated_and_inconsistent_extensions() {
    let cases: &[(Vec<u8>, Error)] = &[
        // An extension header cut short, and one whose length runs past the block.
        (vec![0, 0, 0], Error::Malformed("extension length")),
        (
            vec![0, 16, 0, 9, 0, 2],
            Error::Malformed("extension length"),
        ),
        (vec![0], Error::Malformed("extension type")),
        // SNI: list length past the extension, bytes after the list, empty list, name cut.
        (
            ext(0, &[0, 9, 0, 0, 1, b'a']),
            Error::Malformed("server_name list"),
        ),
        (
            ext(0, &[0, 4, 0, 0, 1, b'a', 0]),
            Error::Malformed("server_name extension"),
        ),
        (
            ext(0, &[0, 0]),
            Error::Malformed("server_name list is empty"),
        ),
        (
            ext(0, &[0, 4, 0, 0, 5, b'a']),
            Error::Malformed("server_name"),
        ),
        (ext(0, &[]), Error::Malformed("server_name list")),
        // ALPN: empty list, empty name, a name past the list, bytes after the list.
        (ext(16, &[0, 0]), Error::Malformed("ALPN list is empty")),
        (
            ext(16, &[0, 1, 0]),
            Error::Malformed("ALPN protocol name is empty"),
        ),
        (
            ext(16, &[0, 3, 5, b'h', b'2']),
            Error::Malformed("ALPN protocol name"),
        ),
        (
            ext(16, &[0, 3, 2, b'h', b'2', 9]),
            Error::Malformed("ALPN extension"),
        ),
        // supported_versions: odd, empty, past the end.
        (
            ext(43, &[3, 3, 4, 3]),
            Error::Malformed("supported_versions list"),
        ),
        (ext(43, &[0]), Error::Malformed("supported_versions list")),
        (
            ext(43, &[4, 3, 4]),
            Error::Malformed("supported_versions list"),
        ),
        // The same extension twice.
        (
            [sni(b"a.test"), sni(b"a.test")].concat(),
            Error::DuplicateExtension(0),
        ),
        (
            [alpn(&[b"h2"]), alpn(&[b"h2"])].concat(),
            Error::DuplicateExtension(16),
        ),
        (
            [ext(43, &[2, 3, 4]), ext(43, &[2, 3, 4])].concat(),
            Error::DuplicateExtension(43),
        ),
    ];
    for (exts, want) in cases {
        assert_eq!(err(&records(&hello(Some(exts)), &[])), *want, "{exts:?}");
    }
    // Other extensions (even repeated) are skipped unread.
    let data = with_ext(&[
        ext(0xfe0d, &[1; 9]),
        ext(21, &[0; 3]),
        ext(21, &[]),
        alpn(&[b"x"]),
    ]);
    assert_eq!(tls(&data).1, [b"x".to_vec()]);
    // Bytes after the extensions block, inside the message.
    let mut msg = hello(Some(&alpn(&[b"h2"])));
    msg.push(0);
    msg[3] += 1;
    assert_eq!(
        err(&records(&msg, &[])),
        Error::Malformed("bytes after the extensions")
    );
}

#[test]
fn a_hello_cut_into_too_many_records_is_refused_at_the_cap() {
    // A 3 KiB hello (a padding extension) in 1-byte records takes 6 bytes a byte: 18 KiB.
    let msg = hello(Some(&[sni(b"a.test"), ext(21, &[0; 3000])].concat()));
    let data = records(&msg, &vec![1; msg.len()]);
    assert!(data.len() > MAX_PEEK_BYTES);
    assert_eq!(err(&data), Error::TooLarge);
    // Before the cap it waits, never asking for more than the cap; once refused, refused.
    let (mut waited, mut refused) = (0, false);
    for cut in (0..data.len()).step_by(97) {
        match peek(&data[..cut], &mut Vec::new()) {
            Ok(Peek::NeedMore { needed }) => {
                assert!(
                    !refused && needed <= MAX_PEEK_BYTES && needed > cut,
                    "{cut}"
                );
                waited += 1;
            }
            Err(Error::TooLarge) => refused = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(waited > 100 && refused);
    // Handed far more than the cap (a 15 KiB hello in 90 KiB of 1-byte records): refused
    // without walking it all, and the same in ordinary records is fine.
    let big = hello(Some(&[sni(b"a.test"), ext(21, &[0; 15000])].concat()));
    assert_eq!(err(&records(&big, &vec![1; big.len()])), Error::TooLarge);
    assert_eq!(tls(&records(&big, &[])).0.as_deref(), Some("a.test"));
    // The same hello in ordinary records is fine.
    assert_eq!(tls(&records(&msg, &[])).0.as_deref(), Some("a.test"));
}

#[test]
fn highest_version_skips_grease() {
    let data = with_ext(&[ext(43, &[6, 0x7a, 0x7a, 3, 4, 3, 3])]);
    let (_, _, versions, highest) = tls(&data);
    assert_eq!((versions, highest), (vec![0x7a7a, 0x0304, 0x0303], 0x0304));
}

#[test]
fn errors_read_well() {
    assert_eq!(
        Error::Malformed("cipher_suites").to_string(),
        "malformed TLS ClientHello: cipher_suites"
    );
    assert_eq!(
        Error::TooLarge.to_string(),
        "TLS ClientHello larger than the 16384-byte limit"
    );
}
