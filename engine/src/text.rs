//! Small text helpers for the request path and its observers: numbers written as decimal digits
//! without the `core::fmt` machinery (head encoders, access-log lines), and JSON string escaping
//! (access-log JSON lines, span export bodies).

/// `n` in decimal, written at the end of `buf`; the digits are returned.
#[inline]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Append `s` escaped for the inside of a JSON string (bytes that are not valid UTF-8 and DEL
/// become `\u00XX` of the byte, so the line stays valid JSON whatever a client sent).
pub fn json_str(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = s;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_valid(valid.as_bytes(), out);
                return;
            }
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                escape_valid(ok, out);
                let n = e.error_len().unwrap_or(bad.len());
                for &b in &bad[..n] {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                rest = &bad[n..];
            }
        }
    }
    fn escape_valid(s: &[u8], out: &mut Vec<u8>) {
        for &b in s {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                _ => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_matches_display() {
        for n in [0u64, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
