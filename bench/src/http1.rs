//! HTTP/1.1 pieces shared by the origin (request bodies) and the load generator (response
//! bodies): a streaming chunked-body decoder that never buffers, and small header helpers.
//!
//! The decoder is fed whatever bytes arrived and reports how many it consumed and how many of
//! them were body payload, so a body of any size passes through a fixed buffer.

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size line was not hex, or overflowed 64 bits.
    BadSize,
    /// The CRLF after a chunk's data was missing.
    BadDelimiter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
    Done,
}

/// Streaming decoder for `Transfer-Encoding: chunked`.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
}

/// What one [`ChunkedDecoder::feed`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input consumed (the rest belongs to whatever follows the body).
    pub consumed: usize,
    /// Of those, bytes of body payload.
    pub payload: usize,
    /// The body (including trailers) is complete.
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }

    /// Whether the final chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes as much of `input` as belongs to the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, ChunkError> {
        let mut i = 0;
        let mut payload = 0usize;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    let v = match b {
                        b'0'..=b'9' => Some(b - b'0'),
                        b'a'..=b'f' => Some(b - b'a' + 10),
                        b'A'..=b'F' => Some(b - b'A' + 10),
                        _ => None,
                    };
                    match v {
                        Some(v) => {
                            if digits >= 16 {
                                return Err(ChunkError::BadSize);
                            }
                            self.size = (self.size << 4) | u64::from(v);
                            self.state = State::Size { digits: digits + 1 };
                        }
                        None if digits == 0 => return Err(ChunkError::BadSize),
                        None => match b {
                            b'\r' => self.state = State::SizeLf,
                            b'\n' => self.after_size(),
                            b';' | b' ' | b'\t' => self.state = State::Ext,
                            _ => return Err(ChunkError::BadSize),
                        },
                    }
                    i += 1;
                }
                State::Ext => {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => self.after_size(),
                        _ => {}
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadSize);
                    }
                    self.after_size();
                    i += 1;
                }
                State::Data => {
                    let take =
                        (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    i += take;
                    payload += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    match b {
                        b'\r' => self.state = State::DataLf,
                        b'\n' => self.state = State::Size { digits: 0 },
                        _ => return Err(ChunkError::BadDelimiter),
                    }
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadDelimiter);
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    self.state = match b {
                        b'\r' => State::FinalLf,
                        b'\n' => State::Done,
                        _ => State::TrailerLine,
                    };
                    i += 1;
                }
                State::TrailerLine => {
                    if b == b'\n' {
                        self.state = State::TrailerStart;
                    }
                    i += 1;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadDelimiter);
                    }
                    self.state = State::Done;
                    i += 1;
                }
                State::Done => break,
            }
            if self.state == State::Done {
                break;
            }
        }
        Ok(Fed {
            consumed: i,
            payload,
            done: self.state == State::Done,
        })
    }

    fn after_size(&mut self) {
        self.state = if self.size == 0 {
            State::TrailerStart
        } else {
            State::Data
        };
    }
}

/// Whether a comma-separated header value contains `token` (ASCII case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a decimal Content-Length value strictly (digits only, no sign, no overflow).
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The reason phrase for a status code (empty for unknown codes, which HTTP allows).
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Appends the decimal form of `v` to `out` without allocating.
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends the lowercase hex form of `v` to `out` (chunk sizes).
pub fn push_hex(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(usize, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let (mut consumed, mut payload) = (0, 0);
        while consumed < input.len() && !d.is_done() {
            let end = (consumed + step).min(input.len());
            let f = d.feed(&input[consumed..end])?;
            consumed += f.consumed;
            payload += f.payload;
        }
        Ok((consumed, payload, d.is_done()))
    }

    #[test]
    fn chunked_whole_and_bytewise() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (consumed, payload, done) = decode_all(body, step).unwrap();
            assert!(done);
            assert_eq!(payload, 11);
            assert_eq!(&body[consumed..], b"NEXT");
        }
    }

    #[test]
    fn chunked_errors() {
        assert_eq!(decode_all(b"zz\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(decode_all(b"\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(
            decode_all(b"11111111111111111\r\n", 40),
            Err(ChunkError::BadSize)
        );
        assert_eq!(
            decode_all(b"1\r\nab\r\n", 40),
            Err(ChunkError::BadDelimiter)
        );
    }

    #[test]
    fn chunked_large_size_does_not_overflow() {
        let mut d = ChunkedDecoder::new();
        let f = d.feed(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!(f.payload, 3);
        assert!(!f.done);
    }

    #[test]
    fn helpers() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive", "close"));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        push_u64(&mut v, 1234567);
        push_hex(&mut v, 0x4000);
        assert_eq!(v, b"012345674000");
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(799), "");
    }
}
