//! The chunked decoder: whole, split at every byte boundary, byte by byte, and every malformed
//! shape.

use super::*;

/// Feed `parts` one after the other (appending to the leftover input, as a connection does);
/// returns the body, whether `End` was seen, and the input left after it (with the parts not
/// fed yet), or the first error.
fn decode_parts(parts: &[&[u8]]) -> Result<(Vec<u8>, bool, Vec<u8>), ParseError> {
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::new();
    let mut body = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        input.extend_from_slice(part);
        loop {
            match dec.decode(&mut input)? {
                Chunk::Data(d) => {
                    assert!(!d.is_empty(), "empty Data");
                    body.extend_from_slice(&d);
                }
                Chunk::NeedMore => {
                    assert!(
                        input.is_empty(),
                        "NeedMore with {} bytes unread",
                        input.len()
                    );
                    break;
                }
                Chunk::End => {
                    assert!(dec.is_done());
                    let rest = [&input[..], &parts[i + 1..].concat()].concat();
                    return Ok((body, true, rest));
                }
            }
        }
    }
    Ok((body, false, input.to_vec()))
}

const WIKI: &[u8] = b"4\r\nWiki\r\n5;name=value;x\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
const WIKI_BODY: &[u8] = b"Wikipedia in\r\n\r\nchunks.";

#[test]
fn whole_message() {
    let (body, end, rest) = decode_parts(&[WIKI]).unwrap();
    assert_eq!(body, WIKI_BODY);
    assert!(end);
    assert!(rest.is_empty());
}

#[test]
fn split_at_every_position() {
    for cut in 0..=WIKI.len() {
        let (body, end, rest) = decode_parts(&[&WIKI[..cut], &WIKI[cut..]]).unwrap();
        assert_eq!(body, WIKI_BODY, "cut at {cut}");
        assert!(end, "cut at {cut}");
        assert!(rest.is_empty(), "cut at {cut}");
    }
    for a in 0..=WIKI.len() {
        for b in a..=WIKI.len() {
            let (body, end, _) = decode_parts(&[&WIKI[..a], &WIKI[a..b], &WIKI[b..]]).unwrap();
            assert_eq!(
                (body.as_slice(), end),
                (WIKI_BODY, true),
                "cuts at {a}, {b}"
            );
        }
    }
}

#[test]
fn byte_by_byte() {
    let parts: Vec<&[u8]> = WIKI.chunks(1).collect();
    let (body, end, rest) = decode_parts(&parts).unwrap();
    assert_eq!((body.as_slice(), end, rest.len()), (WIKI_BODY, true, 0));
}

#[test]
fn stops_at_the_end_of_the_message() {
    let msg = b"3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\n";
    for cut in 0..=msg.len() {
        let (body, end, rest) = decode_parts(&[&msg[..cut], &msg[cut..]]).unwrap();
        assert_eq!(body, b"abc");
        assert!(end);
        assert_eq!(rest, b"GET /next HTTP/1.1\r\n", "cut at {cut}");
    }
    // After End, End again and nothing consumed.
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"0\r\n\r\nrest"[..]);
    assert_eq!(dec.decode(&mut input), Ok(Chunk::End));
    assert_eq!(dec.decode(&mut input), Ok(Chunk::End));
    assert_eq!(&input[..], b"rest");
}

#[test]
fn data_is_not_copied() {
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"5\r\nhello\r\n"[..]);
    let data_at = input.as_ptr() as usize + 3;
    match dec.decode(&mut input) {
        Ok(Chunk::Data(d)) => {
            assert_eq!(&d[..], b"hello");
            assert_eq!(d.as_ptr() as usize, data_at);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dec.decode(&mut input), Ok(Chunk::NeedMore));
    assert!(input.is_empty());
    assert!(!dec.is_done());
}

#[test]
fn large_chunks_come_out_as_they_arrive() {
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"10\r\n0123"[..]);
    assert_eq!(
        dec.decode(&mut input),
        Ok(Chunk::Data(bytes::Bytes::from_static(b"0123")))
    );
    assert_eq!(dec.decode(&mut input), Ok(Chunk::NeedMore));
    input.extend_from_slice(b"456789abcdef\r\n0\r\n\r\n");
    assert_eq!(
        dec.decode(&mut input),
        Ok(Chunk::Data(bytes::Bytes::from_static(b"456789abcdef")))
    );
    assert_eq!(dec.decode(&mut input), Ok(Chunk::End));
}

#[test]
fn sizes() {
    let (body, end, _) = decode_parts(&[b"A\r\n0123456789\r\n0\r\n\r\n"]).unwrap();
    assert_eq!((body.len(), end), (10, true));
    let (body, end, _) =
        decode_parts(&[b"000000000000000a\r\n0123456789\r\n0000\r\n\r\n"]).unwrap();
    assert_eq!((body.len(), end), (10, true));
    // 16 hex digits: the largest size there is; the decoder just waits for the data.
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
    assert_eq!(
        dec.decode(&mut input),
        Ok(Chunk::Data(bytes::Bytes::from_static(b"ab")))
    );
    assert_eq!(dec.decode(&mut input), Ok(Chunk::NeedMore));
}

#[test]
fn malformed_shapes() {
    use ParseError::*;
    let bad_size = Malformed("invalid chunk size");
    let no_crlf = Malformed("missing CRLF after chunk data");
    let bare_cr = Malformed("CR without LF in chunked framing");
    let cases: &[(&[u8], ParseError)] = &[
        (b"g\r\n", bad_size.clone()),
        (b"\r\n", bad_size.clone()),
        (b";ext\r\n", bad_size.clone()),
        (b" 4\r\nWiki\r\n", bad_size.clone()),
        (b"-1\r\n", bad_size.clone()),
        (b"+1\r\n", bad_size.clone()),
        (b"0x4\r\nWiki\r\n", bad_size.clone()),
        (b"4 4\r\nWiki\r\n", bad_size.clone()),
        (b"1_0\r\n", bad_size.clone()),
        (b"10000000000000000\r\n", bad_size.clone()),
        (b"00000000000000001\r\n", bad_size.clone()),
        (b"4\r\nWikiX\r\n", no_crlf.clone()),
        (b"4\r\nWiki\rX", no_crlf.clone()),
        (b"4\r\nWikipedia\r\n", no_crlf.clone()),
        (b"4\nWiki\r\n", BareLf),
        (b"4;a=b\nWiki\r\n", BareLf),
        (b"4 \nWiki\r\n", BareLf),
        (b"\n", BareLf),
        (b"4\r\nWiki\n0\r\n\r\n", BareLf),
        (b"0\r\nX: y\n\r\n", BareLf),
        (b"0\r\n\n", BareLf),
        (b"4\rWiki", bare_cr.clone()),
        (b"0\r\nX: y\rZ", bare_cr.clone()),
        (b"0\r\n\rZ", bare_cr.clone()),
        (b"4;a\0\r\nWiki\r\n", Malformed("invalid chunk extension")),
    ];
    for (input, want) in cases {
        // The same error whole, and wherever the input is split.
        for cut in 0..=input.len() {
            let got = decode_parts(&[&input[..cut], &input[cut..]]);
            assert_eq!(
                got.as_ref().err(),
                Some(want),
                "{} cut at {cut}: {got:?}",
                text(input)
            );
        }
    }
}

#[test]
fn extensions_and_whitespace() {
    let (body, end, _) = decode_parts(&[b"3 ;a=\"q;x\"\t; b\r\nabc\r\n0;last\r\n\r\n"]).unwrap();
    assert_eq!((body.as_slice(), end), (&b"abc"[..], true));
    let long_ext = [&b"1;"[..], &[b'x'; 5000], b"\r\na\r\n0\r\n\r\n"].concat();
    assert_eq!(
        decode_parts(&[&long_ext]).err(),
        Some(ParseError::Malformed("chunk-size line too long"))
    );
}

#[test]
fn trailers_are_bounded() {
    let line = [&b"X-T: "[..], &[b'v'; 1000], b"\r\n"].concat();
    let fits: Vec<u8> = [&b"0\r\n"[..], &line.repeat(15), b"\r\n"].concat();
    assert_eq!(decode_parts(&[&fits]).map(|(_, end, _)| end), Ok(true));
    let too_big: Vec<u8> = [&b"0\r\n"[..], &line.repeat(17), b"\r\n"].concat();
    assert_eq!(
        decode_parts(&[&too_big]).err(),
        Some(ParseError::HeadersTooLarge)
    );
    // Split anywhere, the limit still holds.
    for cut in (0..too_big.len()).step_by(997) {
        let got = decode_parts(&[&too_big[..cut], &too_big[cut..]]);
        assert_eq!(got.err(), Some(ParseError::HeadersTooLarge), "cut at {cut}");
    }
}

/// Encoding with `encode_chunk_header`/`LAST_CHUNK` and decoding gives the body back.
#[test]
fn round_trip() {
    let pieces: [&[u8]; 4] = [b"a", &[b'x'; 300], b"\r\n0\r\n\r\n", b"end"];
    let mut wire = BytesMut::new();
    for p in pieces {
        encode_chunk_header(p.len(), &mut wire);
        wire.extend_from_slice(p);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(LAST_CHUNK);
    let (body, end, rest) = decode_parts(&[&wire]).unwrap();
    assert_eq!(body, pieces.concat());
    assert!(end && rest.is_empty());
}

#[test]
fn chunk_header_and_last_chunk() {
    let mut out = BytesMut::new();
    encode_chunk_header(0, &mut out);
    encode_chunk_header(1, &mut out);
    encode_chunk_header(255, &mut out);
    encode_chunk_header(0x1234abcd, &mut out);
    encode_chunk_header(usize::MAX, &mut out);
    assert_eq!(
        text(&out),
        "0\r\n1\r\nff\r\n1234abcd\r\nffffffffffffffff\r\n"
    );
    assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
}

/// What the encoder frames, the decoder reads back.
#[test]
fn encoded_chunks_decode_back() {
    let mut wire = BytesMut::new();
    let pieces: [&[u8]; 3] = [b"a", &[7u8; 300], b"last piece"];
    for p in pieces {
        encode_chunk_header(p.len(), &mut wire);
        wire.extend_from_slice(p);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(LAST_CHUNK);
    let (body, end, rest) = decode_parts(&[&wire]).unwrap();
    assert_eq!(body, pieces.concat());
    assert!(end);
    assert!(rest.is_empty());
}

/// Decode `msg` split at `at` with a decoder that keeps trailers; the kept trailer lines.
fn kept_trailers(msg: &[u8], at: usize) -> Option<Vec<u8>> {
    let mut dec = ChunkedDecoder::keeping_trailers();
    let mut input = BytesMut::new();
    for part in [&msg[..at], &msg[at..]] {
        input.extend_from_slice(part);
        loop {
            match dec.decode(&mut input).expect("valid") {
                Chunk::Data(_) => {}
                Chunk::NeedMore => break,
                Chunk::End => return dec.take_trailers().map(|t| t.to_vec()),
            }
        }
    }
    panic!("no End in {:?}", String::from_utf8_lossy(msg));
}

#[test]
fn trailers_are_kept_when_asked_at_every_split() {
    for at in 0..=WIKI.len() {
        assert_eq!(
            kept_trailers(WIKI, at).as_deref(),
            Some(&b"X-Trailer: 1\r\nX-Other: 2\r\n"[..]),
            "split at {at}"
        );
    }
    assert_eq!(kept_trailers(b"1\r\na\r\n0\r\n\r\n", 3), None);
    // A decoder that does not keep them gives none.
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(WIKI);
    while dec.decode(&mut input).expect("valid") != Chunk::End {}
    assert_eq!(dec.take_trailers(), None);
}

#[test]
fn trailer_fields_decode_and_encode() {
    let mut map = ringway_filters::HeaderMap::default();
    crate::http::h1::model::decode_trailers(
        b"X-Sum: 1\r\nContent-Length: 5\r\nTransfer-Encoding: x\r\nSet-Cookie: a\r\nx-b:  2 \r\n",
        &mut map,
    )
    .expect("valid");
    let got: Vec<_> = map.iter().collect();
    assert_eq!(
        got,
        vec![(&b"X-Sum"[..], &b"1"[..]), (&b"x-b"[..], &b"2"[..])]
    );
    let mut out = BytesMut::new();
    crate::http::h1::model::encode_trailers(&map, &mut out);
    assert_eq!(&out[..], b"0\r\nX-Sum: 1\r\nx-b: 2\r\n\r\n");
    for bad in [&b"no colon\r\n"[..], b"bad name: 1\r\n", b"x: a\rb\r\n"] {
        let mut m = ringway_filters::HeaderMap::default();
        assert!(
            crate::http::h1::model::decode_trailers(bad, &mut m).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
