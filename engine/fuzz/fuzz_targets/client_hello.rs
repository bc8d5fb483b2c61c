//! Fuzz target: arbitrary bytes as the front of a new connection, peeked by the TLS inspector.
//!
//! Peeks them (never a panic); checks what each verdict promises (NotTls exactly when the
//! first byte is not a handshake record's, NeedMore never past the cap, a server name that is
//! a lower-case ASCII host name, well-framed ALPN names and versions); and checks that shorter
//! prefixes wait or give the same verdict (so a hello split over reads peeks the same).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_fuzz::l4proto::client_hello::{peek, Peek, MAX_PEEK_BYTES, MAX_SERVER_NAME};

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let whole = peek(data, &mut scratch);
    match whole {
        Ok(Peek::NotTls) => assert!(data.first().is_some_and(|&b| b != 22)),
        Ok(Peek::NeedMore { needed }) => {
            assert!(needed > data.len() && needed <= MAX_PEEK_BYTES, "{needed}");
            assert!(data.first().is_none_or(|&b| b == 22));
        }
        Ok(Peek::Tls(h)) => {
            if let Some(name) = h.server_name {
                assert!(!name.is_empty() && name.len() <= MAX_SERVER_NAME);
                assert!(name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'_' | b'.')));
                assert!(!name.starts_with('.') && !name.ends_with('.') && !name.contains(".."));
            }
            assert!(h.alpn.iter().all(|n| !n.is_empty()));
            assert_eq!(h.alpn.is_empty(), h.alpn.iter().next().is_none());
            assert_eq!(
                h.supported_versions.is_empty(),
                h.supported_versions.iter().next().is_none()
            );
            assert_eq!(h.legacy_version >> 8, 3);
        }
        Err(_) => assert_eq!(data.first(), Some(&22)),
    }

    // Some prefixes (all of them would be quadratic on 17 KiB inputs): wait, or the same.
    let n = data.len();
    let cuts = (1..=16).map(|i| n * i / 17).chain([n.saturating_sub(1)]);
    for cut in cuts.filter(|&c| c < n) {
        let mut s = Vec::new();
        match (peek(&data[..cut], &mut s), &whole) {
            (Ok(Peek::NeedMore { needed }), _) => assert!(needed > cut),
            (p, w) => assert_eq!(&p, w, "prefix {cut}"),
        }
    }
});
