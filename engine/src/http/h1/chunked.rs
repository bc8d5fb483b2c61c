//! The `Transfer-Encoding: chunked` decoder behind [`ChunkedDecoder`].
//!
//! Data enters as the front of the connection's `BytesMut` and leaves as `Bytes` split off it
//! (no copy). The decoder is a byte-level state machine over the framing lines (chunk-size,
//! extensions, the CRLF after data, trailers), so it can stop and resume at any byte boundary;
//! chunk data is never looked at, only counted. Hot path: one `split_to` per chunk (or per read,
//! for chunks larger than a read), plus a few bytes of framing.

use super::{Chunk, ChunkedDecoder, ParseError};
use bytes::{Buf, BytesMut};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most hex digits in a chunk-size (16 fill a `u64`, so no overflow is possible).
const MAX_SIZE_DIGITS: u8 = 16;

/// Where the decoder stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Reading the hex digits of a chunk-size.
    #[default]
    SizeStart,
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs {
        value: u64,
    },
    /// Inside chunk extensions (skipped).
    Ext {
        value: u64,
    },
    /// CR of the size line seen.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    TrailerEndLf,
    Done,
}

const BAD_SIZE: ParseError = ParseError::Malformed("invalid chunk size");
const NO_CRLF_AFTER_DATA: ParseError = ParseError::Malformed("missing CRLF after chunk data");
const BARE_CR: ParseError = ParseError::Malformed("CR without LF in chunked framing");

impl ChunkedDecoder {
    pub(super) fn step(&mut self, input: &mut BytesMut) -> Result<Chunk, ParseError> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::End),
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = remaining.min(input.len() as u64);
                    let left = remaining - n;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    // `n <= input.len()`, so it fits a usize.
                    return Ok(Chunk::Data(input.split_to(n as usize).freeze()));
                }
                _ => {
                    if input.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let used = self.framing(input)?;
                    input.advance(used);
                }
            }
        }
    }

    /// Run the framing states over `buf`; returns how many bytes they consumed. Stops at the end
    /// of `buf`, or on entering `Data` or `Done`.
    fn framing(&mut self, buf: &[u8]) -> Result<usize, ParseError> {
        for (i, &b) in buf.iter().enumerate() {
            let in_trailers = matches!(
                self.state,
                State::TrailerStart
                    | State::TrailerLine
                    | State::TrailerLineLf
                    | State::TrailerEndLf
            );
            self.line_bytes += 1;
            if in_trailers && self.line_bytes > MAX_TRAILERS {
                return Err(ParseError::HeadersTooLarge);
            }
            if !in_trailers && self.line_bytes > MAX_SIZE_LINE {
                return Err(ParseError::Malformed("chunk-size line too long"));
            }
            if let Some(t) = self.trailers.as_mut() {
                // Every byte of a trailer line, not the empty line that ends the section.
                let ending = matches!(self.state, State::TrailerEndLf)
                    || (matches!(self.state, State::TrailerStart) && b == b'\r');
                if in_trailers && !ending {
                    t.extend_from_slice(&[b]);
                }
            }
            self.state = match self.state {
                State::SizeStart => match hex(b) {
                    Some(d) => State::Size {
                        value: d,
                        digits: 1,
                    },
                    None if b == b'\n' => return Err(ParseError::BareLf),
                    None => return Err(BAD_SIZE),
                },
                State::Size { value, digits } => match hex(b) {
                    Some(_) if digits == MAX_SIZE_DIGITS => return Err(BAD_SIZE),
                    Some(d) => State::Size {
                        value: value << 4 | d,
                        digits: digits + 1,
                    },
                    None => after_size(value, b)?,
                },
                State::SizeWs { value } => after_size(value, b)?,
                State::Ext { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(ParseError::BareLf),
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext { value },
                    _ => return Err(ParseError::Malformed("invalid chunk extension")),
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(BARE_CR);
                    }
                    self.line_bytes = 0;
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        self.state = State::Data { remaining: value };
                        return Ok(i + 1);
                    }
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => return Err(ParseError::BareLf),
                    _ => return Err(NO_CRLF_AFTER_DATA),
                },
                State::DataLf => match b {
                    b'\n' => {
                        self.line_bytes = 0;
                        State::SizeStart
                    }
                    _ => return Err(NO_CRLF_AFTER_DATA),
                },
                State::TrailerStart => match b {
                    b'\r' => State::TrailerEndLf,
                    b'\n' => return Err(ParseError::BareLf),
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLineLf,
                    b'\n' => return Err(ParseError::BareLf),
                    _ => State::TrailerLine,
                },
                State::TrailerLineLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(BARE_CR),
                },
                State::TrailerEndLf => {
                    if b != b'\n' {
                        return Err(BARE_CR);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Data { .. } | State::Done => {
                    // Not framing states: `step` never calls us in them.
                    self.line_bytes -= 1;
                    return Ok(i);
                }
            };
        }
        Ok(buf.len())
    }
}

/// The byte after a chunk-size's digits: whitespace, an extension, or the CR.
fn after_size(value: u64, b: u8) -> Result<State, ParseError> {
    match b {
        b' ' | b'\t' => Ok(State::SizeWs { value }),
        b';' => Ok(State::Ext { value }),
        b'\r' => Ok(State::SizeLf { value }),
        b'\n' => Err(ParseError::BareLf),
        _ => Err(BAD_SIZE),
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}
