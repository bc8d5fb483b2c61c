//! HPACK's Huffman code (RFC 7541 section 5.2 and Appendix B), decoding only.
//!
//! The code is canonical: within one length the codes count up in symbol order, and each
//! length starts where the shorter ones left off (shifted). So the table below holds only each
//! symbol's code length, and decoding walks lengths bit by bit (as zlib's `puff` does): at
//! each length, a code that falls inside that length's range is a symbol. The tables for that
//! are computed at compile time. Responses' header values are short and, after the first
//! response on a connection, mostly dynamic-table references, so the bitwise walk costs
//! little.

/// Code length in bits of each symbol 0..=255 and EOS (256), from RFC 7541 Appendix B.
const LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The longest code (EOS).
const MAX_LEN: usize = 30;

/// Codes per length, and the symbols sorted by (length, symbol): the canonical code.
struct Canon {
    count: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

const CANON: Canon = build();

const fn build() -> Canon {
    let mut count = [0u16; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[LEN[s] as usize] += 1;
        s += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut s = 0;
        while s < 257 {
            if LEN[s] as usize == len {
                symbols[next] = s as u16;
                next += 1;
            }
            s += 1;
        }
        len += 1;
    }
    Canon { count, symbols }
}

/// A Huffman-coded string that is not valid (RFC 7541 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HuffmanError;

/// Decodes `src`, appending to `dst`. Errors: the EOS symbol inside the string, padding longer
/// than 7 bits, or padding that is not a prefix of EOS (all ones).
pub fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let c = &CANON;
    // The code read so far, its length, the first code of that length, and the index in
    // `symbols` of that first code.
    let (mut code, mut len, mut first, mut index) = (0u32, 0usize, 0u32, 0usize);
    for &byte in src {
        for shift in (0..8).rev() {
            code |= u32::from(byte >> shift) & 1;
            len += 1;
            let count = u32::from(c.count[len]);
            if code.wrapping_sub(first) < count {
                let sym = c.symbols[index + (code - first) as usize];
                if sym == 256 {
                    return Err(HuffmanError);
                }
                dst.push(sym as u8);
                (code, len, first, index) = (0, 0, 0, 0);
                continue;
            }
            if len == MAX_LEN {
                // Unreachable with a complete code, kept as a guard.
                return Err(HuffmanError);
            }
            index += count as usize;
            first = (first + count) << 1;
            code <<= 1;
        }
    }
    // What is left must be at most 7 bits, all ones (`code` was shifted once past them).
    if len > 7 || (len > 0 && code >> 1 != (1 << len) - 1) {
        return Err(HuffmanError);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::load::h2::hex;

    fn dec(s: &str) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(&hex(s), &mut out).map(|()| out)
    }

    /// Strings of RFC 7541 Appendix C.4 and C.6.
    #[test]
    fn rfc_7541_strings() {
        assert_eq!(
            dec("f1e3 c2e5 f23a 6ba0 ab90 f4ff").unwrap(),
            b"www.example.com"
        );
        assert_eq!(dec("a8eb 1064 9cbf").unwrap(), b"no-cache");
        assert_eq!(dec("25a8 49e9 5ba9 7d7f").unwrap(), b"custom-key");
        assert_eq!(dec("25a8 49e9 5bb8 e8b4 bf").unwrap(), b"custom-value");
        assert_eq!(dec("6402").unwrap(), b"302");
        assert_eq!(dec("aec3 771a 4b").unwrap(), b"private");
        assert_eq!(dec("").unwrap(), b"");
    }

    #[test]
    fn the_table_is_a_complete_prefix_code() {
        // Kraft: sum of 2^-len over all symbols is exactly 1.
        let total: u64 = LEN.iter().map(|&l| 1u64 << (MAX_LEN - l as usize)).sum();
        assert_eq!(total, 1 << MAX_LEN);
        assert_eq!(LEN[256], 30);
        assert_eq!((LEN[b'0' as usize], LEN[b' ' as usize]), (5, 6));
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        // '0' is 00000; three padding bits must be ones.
        assert_eq!(dec("07").unwrap(), b"0");
        assert_eq!(dec("00"), Err(HuffmanError));
        // Eight bits of padding.
        assert_eq!(dec("ff"), Err(HuffmanError));
        assert_eq!(dec("07ff"), Err(HuffmanError));
        // EOS (30 ones) decoded inside the string.
        assert_eq!(dec("ffff ffff"), Err(HuffmanError));
    }
}
