//! HPACK (RFC 7541) for the load generator: a stateless encoder for the one request the run
//! repeats, and a full decoder for the responses.
//!
//! Encoding: the request's header block is the same for every request, so it is encoded once,
//! before the run, from static-table references and literals *without indexing* (no Huffman):
//! the encoder never touches its dynamic table, so the block stays valid for the connection's
//! whole life and no state is kept. Decoding: responses are decoded completely, because every
//! header block can change the dynamic table the next one refers to; only `:status` is handed
//! out. The decoder holds the dynamic table (newest first), enforces the size the client
//! advertised (4,096 bytes, the default), evicts oldest first, and bounds what a block may cost
//! (`max_list`); anything malformed is an [`HpackError`], which the connection treats as a
//! protocol failure of the whole connection (the table can no longer be trusted).

use std::collections::VecDeque;
use std::fmt;

use super::huffman;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead counted in the table size (RFC 7541 section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// A header block that cannot be decoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer beyond 2^28 (no sane block needs one).
    IntegerOverflow,
    /// Index 0, or past the static and dynamic tables.
    BadIndex(usize),
    /// A Huffman-coded string that is not valid.
    Huffman,
    /// A dynamic table size update above the advertised limit, or after a header field.
    TableSizeUpdate(usize),
    /// The decoded header list is larger than the cap.
    ListTooLarge,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("HPACK: truncated header block"),
            Self::IntegerOverflow => f.write_str("HPACK: integer too large"),
            Self::BadIndex(i) => write!(f, "HPACK: bad index {i}"),
            Self::Huffman => f.write_str("HPACK: bad Huffman string"),
            Self::TableSizeUpdate(n) => write!(f, "HPACK: bad table size update to {n}"),
            Self::ListTooLarge => f.write_str("HPACK: header list too large"),
        }
    }
}

impl std::error::Error for HpackError {}

/// Appends `v` with an `n`-bit prefix whose upper bits are `flags` (RFC 7541 section 5.1).
pub fn encode_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Appends a string literal without Huffman coding.
fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends one field as a literal without indexing, naming it by static index when there is
/// one (`name_index`), else by a literal name.
fn encode_literal(out: &mut Vec<u8>, name_index: Option<usize>, name: &[u8], value: &[u8]) {
    match name_index {
        Some(i) => encode_int(out, 0, 4, i),
        None => {
            out.push(0);
            encode_str(out, name);
        }
    }
    encode_str(out, value);
}

/// The static index of the exact field `name: value`, or of the name alone.
fn static_index(name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
    let mut by_name = None;
    for (i, (n, v)) in STATIC.iter().enumerate() {
        if *n == name {
            if *v == value {
                return (Some(i + 1), Some(i + 1));
            }
            by_name.get_or_insert(i + 1);
        }
    }
    (None, by_name)
}

/// Encodes a request's header block: the four pseudo-headers, then `headers` (names must be
/// lowercase already). Only static-table references and literals without indexing, so the
/// block may be sent any number of times on any connection.
pub fn encode_request(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let pseudo = [
        (&b":method"[..], method.as_bytes()),
        (b":scheme", scheme.as_bytes()),
        (b":path", path.as_bytes()),
        (b":authority", authority.as_bytes()),
    ];
    let rest = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    for (name, value) in pseudo.into_iter().chain(rest) {
        match static_index(name, value) {
            (Some(i), _) => encode_int(&mut out, 0x80, 7, i),
            (None, by_name) => encode_literal(&mut out, by_name, name, value),
        }
    }
    out
}

/// A dynamic table entry: (name, value).
type Entry = (Box<[u8]>, Box<[u8]>);

/// The response side's HPACK state: the dynamic table and scratch space for Huffman strings.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first: dynamic index 62 is `table[0]`.
    table: VecDeque<Entry>,
    /// Current size (RFC 7541 section 4.1).
    size: usize,
    /// Current maximum size, as last set by the peer (at most `limit`).
    max: usize,
    /// The most the peer may set (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    /// Largest decoded header list accepted (sum of name + value + 32 per field).
    max_list: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// Where a decoded string lives while its field is handed out.
#[derive(Clone, Copy)]
enum Str {
    /// `block[start..end]` (a raw literal).
    Raw(usize, usize),
    /// The scratch buffer (a Huffman literal).
    Scratch,
}

impl Decoder {
    /// A decoder whose table may grow to `limit` bytes (the advertised
    /// SETTINGS_HEADER_TABLE_SIZE) and that rejects header lists above `max_list` bytes.
    pub fn new(limit: usize, max_list: usize) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
            max_list,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// The dynamic table's current size in bytes.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Dynamic table entry `i` (0: newest).
    #[cfg(test)]
    fn entry(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.table.get(i).map(|(n, v)| (&n[..], &v[..]))
    }

    /// Decodes one complete header block, calling `field(name, value)` for each field in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        let mut list = 0usize;
        let mut fields_seen = false;
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                // Indexed field (section 6.1).
                let i = int(block, &mut pos, 7)?;
                let (n, v) = self.lookup(i)?;
                list += n.len() + v.len() + ENTRY_OVERHEAD;
                if list > self.max_list {
                    return Err(HpackError::ListTooLarge);
                }
                field(n, v);
                fields_seen = true;
                continue;
            }
            if b & 0xe0 == 0x20 {
                // Dynamic table size update (section 6.3): only before the first field.
                let n = int(block, &mut pos, 5)?;
                if n > self.limit || fields_seen {
                    return Err(HpackError::TableSizeUpdate(n));
                }
                self.max = n;
                self.evict_to(n);
                continue;
            }
            // Literal: with incremental indexing (01, 6-bit index), without indexing (0000) or
            // never indexed (0001), both with a 4-bit index.
            let indexing = b & 0xc0 == 0x40;
            let i = int(block, &mut pos, if indexing { 6 } else { 4 })?;
            let name = if i == 0 {
                Some(string(block, &mut pos, &mut self.name_buf)?)
            } else {
                self.lookup(i)?;
                None
            };
            let value = string(block, &mut pos, &mut self.value_buf)?;
            let (n, v) = {
                let n = match name {
                    None => self.lookup(i)?.0,
                    Some(Str::Raw(s, e)) => &block[s..e],
                    Some(Str::Scratch) => &self.name_buf[..],
                };
                let v = match value {
                    Str::Raw(s, e) => &block[s..e],
                    Str::Scratch => &self.value_buf[..],
                };
                (n, v)
            };
            list += n.len() + v.len() + ENTRY_OVERHEAD;
            if list > self.max_list {
                return Err(HpackError::ListTooLarge);
            }
            field(n, v);
            fields_seen = true;
            if indexing {
                let entry = (Box::<[u8]>::from(n), Box::<[u8]>::from(v));
                self.insert(entry);
            }
        }
        Ok(())
    }

    fn lookup(&self, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if i == 0 {
            return Err(HpackError::BadIndex(0));
        }
        if let Some((n, v)) = STATIC.get(i - 1) {
            return Ok((n, v));
        }
        self.table
            .get(i - STATIC.len() - 1)
            .map(|(n, v)| (&n[..], &v[..]))
            .ok_or(HpackError::BadIndex(i))
    }

    /// Adds an entry, evicting the oldest ones to make room (section 4.4); an entry larger than
    /// the whole table empties it and is not added.
    fn insert(&mut self, entry: Entry) {
        let sz = entry.0.len() + entry.1.len() + ENTRY_OVERHEAD;
        if sz > self.max {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - sz);
        self.size += sz;
        self.table.push_front(entry);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            let Some((n, v)) = self.table.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }
}

/// Reads an integer with an `n`-bit prefix at `block[*pos]` (section 5.1).
fn int(block: &[u8], pos: &mut usize, n: u32) -> Result<usize, HpackError> {
    let mask = (1usize << n) - 1;
    let first = usize::from(*block.get(*pos).ok_or(HpackError::Truncated)?) & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut v = first;
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        if shift > 21 {
            return Err(HpackError::IntegerOverflow);
        }
    }
    Ok(v)
}

/// Reads a string literal (section 5.2): raw ones stay in `block`, Huffman ones are decoded
/// into `scratch`.
fn string(block: &[u8], pos: &mut usize, scratch: &mut Vec<u8>) -> Result<Str, HpackError> {
    let huff = *block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = int(block, pos, 7)?;
    let start = *pos;
    let end = start.checked_add(len).ok_or(HpackError::Truncated)?;
    if end > block.len() {
        return Err(HpackError::Truncated);
    }
    *pos = end;
    if !huff {
        return Ok(Str::Raw(start, end));
    }
    scratch.clear();
    huffman::decode(&block[start..end], scratch).map_err(|_| HpackError::Huffman)?;
    Ok(Str::Scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::load::h2::hex;

    fn fields(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(&hex(block), |n, v| {
            out.push((
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ))
        })
        .unwrap();
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.1.
    #[test]
    fn integers() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        encode_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        out.clear();
        encode_int(&mut out, 0, 8, 42);
        assert_eq!(out, [0x2a]);
        let mut pos = 0;
        assert_eq!(int(&[0x1f, 0x9a, 0x0a], &mut pos, 5), Ok(1337));
        assert_eq!(pos, 3);
        let mut pos = 0;
        assert_eq!(int(&[0x1f, 0x9a], &mut pos, 5), Err(HpackError::Truncated));
        let mut pos = 0;
        assert_eq!(
            int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f], &mut pos, 5),
            Err(HpackError::IntegerOverflow)
        );
    }

    /// RFC 7541 C.3 (requests, no Huffman) and C.4 (the same, Huffman coded), each a sequence
    /// on one decoder.
    #[test]
    fn rfc_7541_requests() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new(4096, 1 << 16);
            let base = [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ];
            assert_eq!(fields(&mut d, blocks[0]), pairs(&base));
            assert_eq!(d.table_size(), 57);
            let mut second = base.to_vec();
            second.push(("cache-control", "no-cache"));
            assert_eq!(fields(&mut d, blocks[1]), pairs(&second));
            assert_eq!(d.table_size(), 110);
            assert_eq!(
                fields(&mut d, blocks[2]),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ])
            );
            assert_eq!(d.table_size(), 164);
            assert_eq!(d.entry(0), Some((&b"custom-key"[..], &b"custom-value"[..])));
            assert_eq!(
                d.entry(2),
                Some((&b":authority"[..], &b"www.example.com"[..]))
            );
        }
    }

    /// RFC 7541 C.5 (responses, no Huffman) and C.6 (Huffman): a 256-byte table, so entries
    /// are evicted.
    #[test]
    fn rfc_7541_responses_with_eviction() {
        for blocks in [
            [
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 \
                 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 \
                 7861 6d70 6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 \
                 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 \
                 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 \
                 6572 7369 6f6e 3d31",
            ],
            [
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 \
                 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b \
                 d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 \
                 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ],
        ] {
            let mut d = Decoder::new(256, 1 << 16);
            let first = [
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ];
            assert_eq!(fields(&mut d, blocks[0]), pairs(&first));
            assert_eq!(d.table_size(), 222);
            let mut second = first.to_vec();
            second[0] = (":status", "307");
            assert_eq!(fields(&mut d, blocks[1]), pairs(&second));
            assert_eq!(d.table_size(), 222);
            assert_eq!(d.entry(0), Some((&b":status"[..], &b"307"[..])));
            assert_eq!(
                fields(&mut d, blocks[2]),
                pairs(&[
                    (":status", "200"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                    ("location", "https://www.example.com"),
                    ("content-encoding", "gzip"),
                    (
                        "set-cookie",
                        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                    ),
                ])
            );
            assert_eq!(d.table_size(), 215);
            assert_eq!(d.table.len(), 3);
            assert_eq!(d.entry(1), Some((&b"content-encoding"[..], &b"gzip"[..])));
        }
    }

    #[test]
    fn table_size_updates() {
        let mut d = Decoder::new(4096, 1 << 16);
        fields(&mut d, "400178036f6c64"); // x: old, indexed
        assert_eq!(d.table_size(), 36);
        // Shrink to 0 (evicts), back to 4096, then a field: fine.
        assert_eq!(
            fields(&mut d, "20 3fe1 1f 88"),
            pairs(&[(":status", "200")])
        );
        assert_eq!(d.table_size(), 0);
        assert_eq!(
            d.decode(&hex("be"), |_, _| {}),
            Err(HpackError::BadIndex(62))
        );
        // Above the advertised limit, or after a field: errors.
        assert_eq!(
            d.decode(&hex("3fe2 1f"), |_, _| {}),
            Err(HpackError::TableSizeUpdate(4097))
        );
        assert_eq!(
            d.decode(&hex("88 20"), |_, _| {}),
            Err(HpackError::TableSizeUpdate(0))
        );
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut d = Decoder::new(4096, 100);
        for (block, want) in [
            ("80", HpackError::BadIndex(0)),
            ("ff00", HpackError::BadIndex(127)),
            ("40", HpackError::Truncated),
            ("4001", HpackError::Truncated),
            ("400178", HpackError::Truncated),
            ("0085ffffffffff00", HpackError::Huffman),
            ("007f", HpackError::Truncated),
            ("407fffffffff0f", HpackError::IntegerOverflow),
        ] {
            assert_eq!(d.decode(&hex(block), |_, _| {}), Err(want), "{block}");
        }
        // A list above the cap (100 bytes): 3 fields of 32 + 10.
        assert_eq!(
            d.decode(&hex("88 88 88"), |_, _| {}),
            Err(HpackError::ListTooLarge)
        );
        // Every truncation of a valid block fails cleanly or decodes a prefix.
        let good = hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005");
        for cut in 0..good.len() {
            let _ = Decoder::new(256, 1 << 16).decode(&good[..cut], |_, _| {});
        }
    }

    #[test]
    fn an_entry_larger_than_the_table_empties_it() {
        let mut d = Decoder::new(40, 1 << 16);
        fields(&mut d, "400178 0161"); // x: a (34 bytes)
        assert_eq!(d.table_size(), 34);
        fields(&mut d, "400178 0a61616161616161616161"); // 43 bytes > 40
        assert_eq!((d.table_size(), d.table.len()), (0, 0));
    }

    #[test]
    fn request_block_round_trips() {
        let headers = vec![
            ("x-a".to_string(), "b".to_string()),
            ("accept-encoding".to_string(), "gzip, deflate".to_string()),
            ("user-agent".to_string(), "t".to_string()),
        ];
        let block = encode_request("GET", "http", "127.0.0.1:80", "/", &headers);
        // :method GET, :scheme http, :path / are single static references.
        assert_eq!(&block[..3], &[0x82, 0x86, 0x84]);
        let mut d = Decoder::new(4096, 1 << 16);
        let got = fields(
            &mut d,
            &block.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        );
        assert_eq!(
            got,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "127.0.0.1:80"),
                ("x-a", "b"),
                ("accept-encoding", "gzip, deflate"),
                ("user-agent", "t"),
            ])
        );
        assert_eq!(d.table_size(), 0, "the encoder never indexes");
        let block = encode_request("PATCH", "https", "h", &"/p".repeat(100), &[]);
        let mut n = 0;
        Decoder::new(4096, 1 << 16)
            .decode(&block, |name, v| {
                n += 1;
                if name == b":method" {
                    assert_eq!(v, b"PATCH");
                }
                if name == b":path" {
                    assert_eq!(v.len(), 200);
                }
            })
            .unwrap();
        assert_eq!(n, 4);
    }
}
