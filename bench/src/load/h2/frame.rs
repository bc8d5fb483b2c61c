//! HTTP/2 framing (RFC 9113 section 4 and 6) as the load generator needs it: the frame header,
//! the frame types and flags it reads, and writers that append whole frames to an output
//! buffer (so many frames leave in one send).

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
pub const HEAD: usize = 9;
/// The default and smallest SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// RST_STREAM error code CANCEL.
pub const CANCEL: u32 = 0x8;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Payload length.
    pub len: usize,
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (reserved bit cleared).
    pub stream: u32,
}

impl Head {
    /// Parses the 9-byte header at the start of `b` (which must hold at least [`HEAD`] bytes).
    #[inline]
    pub fn parse(b: &[u8]) -> Head {
        Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// Appends a frame header.
#[inline]
pub fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let l = (len as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Appends a SETTINGS frame with these parameters.
pub fn settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    head(out, params.len() * 6, kind::SETTINGS, 0, 0);
    for (id, v) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends a WINDOW_UPDATE.
pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

/// Appends a RST_STREAM.
pub fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

/// Appends a header block as HEADERS (+ CONTINUATION frames if it exceeds `max_frame`).
pub fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let rest = chunks.len();
    let es = if end_stream { flag::END_STREAM } else { 0 };
    let eh = if rest == 0 { flag::END_HEADERS } else { 0 };
    head(out, first.len(), kind::HEADERS, es | eh, stream);
    out.extend_from_slice(first);
    for (i, c) in block.chunks(max_frame.max(1)).skip(1).enumerate() {
        let eh = if i + 1 == rest { flag::END_HEADERS } else { 0 };
        head(out, c.len(), kind::CONTINUATION, eh, stream);
        out.extend_from_slice(c);
    }
}

/// The payload of a HEADERS or DATA frame without its padding (and HEADERS' priority fields),
/// or None if the lengths do not add up.
pub fn unpad(h: &Head, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    let mut end = payload.len();
    if h.flags & flag::PADDED != 0 {
        let pad = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(pad)?;
    }
    if h.kind == kind::HEADERS && h.flags & flag::PRIORITY != 0 {
        start += 5;
    }
    (start <= end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_continuation() {
        let mut out = Vec::new();
        head(
            &mut out,
            0x01_02_03,
            kind::DATA,
            flag::END_STREAM,
            0x8000_0005,
        );
        let h = Head::parse(&out);
        assert_eq!(
            h,
            Head {
                len: 0x01_02_03,
                kind: kind::DATA,
                flags: flag::END_STREAM,
                stream: 5
            }
        );
        out.clear();
        headers(&mut out, 3, &[7u8; 10], true, 4);
        // HEADERS(4, END_STREAM) + CONTINUATION(4) + CONTINUATION(2, END_HEADERS)
        let a = Head::parse(&out);
        assert_eq!(
            (a.len, a.kind, a.flags),
            (4, kind::HEADERS, flag::END_STREAM)
        );
        let b = Head::parse(&out[13..]);
        assert_eq!((b.len, b.kind, b.flags), (4, kind::CONTINUATION, 0));
        let c = Head::parse(&out[26..]);
        assert_eq!(
            (c.len, c.kind, c.flags),
            (2, kind::CONTINUATION, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 26 + 9 + 2);
    }

    #[test]
    fn padding() {
        let h = |flags, kind| Head {
            len: 0,
            kind,
            flags,
            stream: 1,
        };
        assert_eq!(
            unpad(&h(flag::PADDED, kind::DATA), &[2, 9, 9, 0, 0]),
            Some(1..3)
        );
        assert_eq!(unpad(&h(flag::PADDED, kind::DATA), &[5, 9]), None);
        assert_eq!(unpad(&h(flag::PADDED, kind::DATA), &[]), None);
        let p = flag::PADDED | flag::PRIORITY;
        assert_eq!(
            unpad(&h(p, kind::HEADERS), &[1, 0, 0, 0, 0, 0, 7, 0]),
            Some(6..7)
        );
        assert_eq!(unpad(&h(flag::PRIORITY, kind::HEADERS), &[0, 0, 0]), None);
    }
}
