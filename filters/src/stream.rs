//! The stream model: a request or response head as every codec decodes it and every filter sees
//! it, whatever the wire (HTTP/1.1 today, HTTP/2 next).
//!
//! A head is a few fixed fields (method, scheme, authority, path; or status) and a
//! [`HeaderMap`] of end-to-end headers. Hop-by-hop headers (`connection` and what it names,
//! `keep-alive`, `te`, `transfer-encoding`, `upgrade`, `proxy-connection`) and the framing
//! (`content-length`) are the codec's business: they never appear in the map. The body's size is
//! [`BodySize`], which a filter that changes the body (compression) sets to `Unknown`; the codec
//! then re-frames it (chunked on HTTP/1.1).
//!
//! Storage: a [`HeaderMap`] keeps every field in one byte buffer as its HTTP/1 line
//! (`name: value\r\n`), copied there once from the codec's read buffer, and a list of index
//! entries pointing at the names and values in it; so decoding a head is one copy and one list,
//! never an allocation per header. Edits append to the buffer and tombstone the old entry;
//! `clear` keeps both allocations, so a map can be recycled. While no field has been removed or
//! rewritten, the buffer *is* the fields' HTTP/1 form in order, and an HTTP/1 encoder writes it
//! with one copy ([`HeaderMap::write_h1`]) instead of four per field.

use bytes::BytesMut;

/// Where a name or value lives in a [`HeaderMap`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: Span,
    value: Span,
    /// Removed (or replaced): skipped by every reader.
    dead: bool,
}

/// `a` and `b` equal ignoring ASCII case (as `eq_ignore_ascii_case`), eight bytes at a time:
/// for header names and tokens (a header lookup compares a name of its own length with the one
/// it looks for, and byte by byte that compare was most of a lookup's cost).
#[inline]
pub fn eq_name(a: &[u8], b: &[u8]) -> bool {
    /// ASCII lower case of eight bytes at once: `A`..=`Z` gain 0x20, every other byte
    /// (non-ASCII ones included) stays as it is.
    #[inline]
    fn lower(x: u64) -> u64 {
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let seven = x & !HIGH;
        // Per byte (no carry crosses a byte: seven bits plus at most 0x3f): the high bit says
        // `seven >= b'A'`, and in the second `seven > b'Z'`.
        let ge_a = seven + 0x3f3f_3f3f_3f3f_3f3f;
        let gt_z = seven + 0x2525_2525_2525_2525;
        let upper = ge_a & !gt_z & !x & HIGH;
        x | (upper >> 2)
    }
    #[inline]
    fn word(s: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"))
    }
    #[inline]
    fn half(s: &[u8], at: usize) -> u64 {
        u64::from(u32::from_le_bytes(
            s[at..at + 4].try_into().expect("four bytes"),
        ))
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => a.eq_ignore_ascii_case(b),
        // Two overlapping four-byte halves cover four to seven bytes.
        4..=7 => {
            let x = half(a, 0) | half(a, n - 4) << 32;
            let y = half(b, 0) | half(b, n - 4) << 32;
            lower(x) == lower(y)
        }
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if lower(word(a, i)) != lower(word(b, i)) {
                    return false;
                }
                i += 8;
            }
            // The last eight bytes, overlapping what was compared already.
            lower(word(a, n - 8)) == lower(word(b, n - 8))
        }
    }
}

/// Ordered header fields: names compared case-insensitively, order and duplicates kept as on
/// the wire. Names are stored as given (HTTP/1 spelling kept); filters should add lower-case
/// names (HTTP/2 requires them).
#[derive(Debug, Default, Clone)]
pub struct HeaderMap {
    buf: BytesMut,
    entries: Vec<Entry>,
    live: usize,
    /// The buffer holds bytes that are not the live fields' lines in order (a field was
    /// removed or rewritten): encoders go field by field.
    loose: bool,
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl HeaderMap {
    /// An empty map with room for `headers` fields of `bytes` bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> HeaderMap {
        HeaderMap {
            buf: BytesMut::with_capacity(bytes),
            entries: Vec::with_capacity(headers),
            live: 0,
            loose: false,
        }
    }

    /// Forget every field, keeping the allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.live = 0;
        self.loose = false;
    }

    fn push_bytes(&mut self, b: &[u8]) -> Span {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(b);
        Span {
            start,
            len: b.len() as u32,
        }
    }

    fn bytes(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    /// Whether `e` is a live field named `name`: the lengths are compared before any byte, so
    /// a lookup skips most fields without touching the buffer.
    #[inline]
    fn named(&self, e: &Entry, name: &[u8]) -> bool {
        e.name.len as usize == name.len() && !e.dead && eq_name(self.bytes(e.name), name)
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| self.named(e, name))
    }

    /// Add a field, keeping existing ones of the same name. The caller MUST NOT pass CR, LF or
    /// NUL in `name` or `value` (codecs write them as given); [`HeaderMap::is_valid_value`]
    /// checks a value.
    #[inline]
    pub fn append(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        self.buf.reserve(name.len() + value.len() + 4);
        let name = self.push_bytes(name);
        self.buf.extend_from_slice(b": ");
        let value = self.push_bytes(value);
        self.buf.extend_from_slice(b"\r\n");
        self.entries.push(Entry {
            name,
            value,
            dead: false,
        });
        self.live += 1;
    }

    /// Replace every value of `name` with one (the field moves to the end).
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.remove(name.as_ref());
        self.append(name, value);
    }

    /// Set `name` only when it is absent. Returns whether it was added.
    pub fn set_if_absent(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> bool {
        if self.contains(name.as_ref()) {
            return false;
        }
        self.append(name, value);
        true
    }

    /// Remove every value of `name`; returns how many were removed.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) -> usize {
        let name = name.as_ref();
        let mut n = 0;
        for i in 0..self.entries.len() {
            let e = self.entries[i];
            if self.named(&e, name) {
                self.entries[i].dead = true;
                n += 1;
            }
        }
        self.live -= n;
        self.loose |= n > 0;
        n
    }

    /// Remove every field whose (lower-cased) name satisfies `drop`.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        for i in 0..self.entries.len() {
            let e = self.entries[i];
            if !e.dead && !keep(self.bytes(e.name), self.bytes(e.value)) {
                self.entries[i].dead = true;
                self.live -= 1;
                self.loose = true;
            }
        }
    }

    /// Whether a field named `name` is present.
    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        self.find(name.as_ref()).is_some()
    }

    /// First value of `name`, as bytes.
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.find(name.as_ref())
            .map(|i| self.bytes(self.entries[i].value))
    }

    /// First value of `name`, when it is UTF-8 (header values almost always are ASCII).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| eq_name(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Replace the last value of `name` with `f(old)`; `false` when there is none.
    pub fn modify_last(&mut self, name: &[u8], f: impl FnOnce(&[u8], &mut Vec<u8>)) -> bool {
        let Some(i) = self.entries.iter().rposition(|e| self.named(e, name)) else {
            return false;
        };
        let mut v = Vec::with_capacity(self.entries[i].value.len as usize + 48);
        f(self.bytes(self.entries[i].value), &mut v);
        let value = self.push_bytes(&v);
        self.entries[i].value = value;
        self.loose = true;
        true
    }

    /// Append every field of `other`, in order: one copy of its buffer when it has no removed
    /// fields (a stored response's headers), field by field otherwise.
    pub fn extend_from(&mut self, other: &HeaderMap) {
        if other.live != other.entries.len() {
            for (n, v) in other.iter() {
                self.append(n, v);
            }
            return;
        }
        let base = self.buf.len() as u32;
        self.buf.extend_from_slice(&other.buf);
        let shift = |s: Span| Span {
            start: s.start + base,
            len: s.len,
        };
        self.entries.extend(other.entries.iter().map(|e| Entry {
            name: shift(e.name),
            value: shift(e.value),
            dead: false,
        }));
        self.live += other.live;
        self.loose |= other.loose;
    }

    /// The fields in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.dead)
            .map(|e| (self.bytes(e.name), self.bytes(e.value)))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes of `name: value\r\n` lines the fields take on HTTP/1.
    pub fn wire_len(&self) -> usize {
        if !self.loose {
            return self.buf.len();
        }
        self.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }

    /// Append the fields' HTTP/1 lines (`name: value\r\n` each, in order) to `out`: the
    /// buffer itself when no field was removed or rewritten, else field by field.
    pub fn write_h1(&self, out: &mut BytesMut) {
        if !self.loose {
            out.extend_from_slice(&self.buf);
            return;
        }
        out.reserve(self.wire_len());
        for (n, v) in self.iter() {
            for part in [n, b": ", v, b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
    }

    /// A value a codec may write: no CR, LF or NUL.
    pub fn is_valid_value(v: &[u8]) -> bool {
        !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
    }

    /// A name a codec may write: an RFC 9110 token.
    pub fn is_valid_name(n: &[u8]) -> bool {
        !n.is_empty()
            && n.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
}

/// A request method. The common ones are named without allocating; any other is `Other` and its
/// spelling is in [`RequestHead::method_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Connect,
    Trace,
    Other,
}

impl Method {
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// The method's name (`OTHER` for `Other`: use [`RequestHead::method_str`] for its spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other => "OTHER",
        }
    }

    /// Idempotent per RFC 9110 (GET, HEAD, OPTIONS, TRACE, PUT, DELETE).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Trace
                | Method::Put
                | Method::Delete
        )
    }
}

/// How long a body is, as far as the codec knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodySize {
    /// No body at all (the head ends the message).
    #[default]
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Some bytes, length not known up front (chunked, or changed by a filter).
    Unknown,
}

/// A request head: pseudo-fields and end-to-end headers.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: Method,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Spelling of `method` when it is `Other`; empty otherwise.
    other_method: Box<str>,
    /// Authority (HTTP/1 `Host`, HTTP/2 `:authority`), port as sent.
    authority: Vec<u8>,
    /// Path and query as sent (origin-form); `*` for `OPTIONS *`.
    path: Vec<u8>,
    pub headers: HeaderMap,
    /// The body's size as received (filters that change the body set `Unknown`).
    pub body: BodySize,
}

impl RequestHead {
    /// A head with these pseudo-fields and no headers.
    pub fn new(method: &[u8], scheme: &'static str, authority: &[u8], path: &[u8]) -> RequestHead {
        let mut h = RequestHead::default();
        h.reset(method, scheme, authority, path);
        h
    }

    /// Reuse this head (and its allocations) for another request.
    pub fn reset(&mut self, method: &[u8], scheme: &'static str, authority: &[u8], path: &[u8]) {
        self.method = Method::from_bytes(method);
        self.other_method = if self.method == Method::Other {
            String::from_utf8_lossy(method).into()
        } else {
            Box::default()
        };
        self.scheme = scheme;
        self.authority.clear();
        self.authority.extend_from_slice(authority);
        self.path.clear();
        self.path.extend_from_slice(path);
        self.headers.clear();
        self.body = BodySize::Empty;
    }

    /// The method as sent.
    pub fn method_str(&self) -> &str {
        match self.method {
            Method::Other => &self.other_method,
            m => m.as_str(),
        }
    }

    pub fn authority(&self) -> &[u8] {
        &self.authority
    }

    /// Replace the authority (the codec writes it as `Host` on HTTP/1).
    pub fn set_authority(&mut self, a: &[u8]) {
        self.authority.clear();
        self.authority.extend_from_slice(a);
    }

    /// Path and query.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The path without its query.
    pub fn path_only(&self) -> &[u8] {
        match self.path.iter().position(|&b| b == b'?') {
            Some(q) => &self.path[..q],
            None => &self.path,
        }
    }

    /// Replace path and query.
    pub fn set_path(&mut self, p: &[u8]) {
        self.path.clear();
        self.path.extend_from_slice(p);
    }
}

/// A response head: status and end-to-end headers.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body's size as received (filters that change the body set `Unknown`).
    pub body: BodySize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_from_copies_live_fields_in_order() {
        let mut src = HeaderMap::default();
        src.append("a", "1");
        src.append("b", "2");
        let mut dst = HeaderMap::default();
        dst.append("z", "0");
        dst.extend_from(&src);
        let got: Vec<_> = dst.iter().collect();
        assert_eq!(
            got,
            vec![(&b"z"[..], &b"0"[..]), (b"a", b"1"), (b"b", b"2")]
        );
        assert_eq!(dst.len(), 3);
        // With a removed field the copy skips it.
        src.remove("a");
        let mut dst2 = HeaderMap::default();
        dst2.extend_from(&src);
        assert_eq!(
            dst2.iter().collect::<Vec<_>>(),
            vec![(&b"b"[..], &b"2"[..])]
        );
        assert_eq!(dst2.len(), 1);
        dst2.set("b", "3");
        assert_eq!(dst2.get("b"), Some("3"));
    }

    #[test]
    fn case_insensitive_ordered_and_editable() {
        let mut h = HeaderMap::default();
        h.append("X-A", "1");
        h.append("x-a", "2");
        h.append("b", "3");
        assert_eq!(h.get("x-A"), Some("1"));
        assert_eq!(
            h.get_all("X-a").collect::<Vec<_>>(),
            vec![&b"1"[..], &b"2"[..]]
        );
        h.set("X-A", "9");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![&b"9"[..]]);
        assert_eq!(h.remove("B"), 1);
        assert_eq!(h.len(), 1);
        assert!(h.modify_last(b"x-a", |old, out| {
            out.extend_from_slice(old);
            out.extend_from_slice(b", 10");
        }));
        assert_eq!(h.get("x-a"), Some("9, 10"));
        assert_eq!(h.wire_len(), "x-a: 9, 10\r\n".len());
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.get("x-a"), None);
    }

    /// What `write_h1` writes is the fields' lines in order, whether it copies the buffer
    /// (no field removed or rewritten) or goes field by field, after every kind of edit.
    #[test]
    fn write_h1_is_the_live_fields_in_order() {
        fn lines(h: &HeaderMap) -> Vec<u8> {
            let mut v = Vec::new();
            for (n, val) in h.iter() {
                v.extend_from_slice(&[n, b": ", val, b"\r\n"].concat());
            }
            v
        }
        fn check(h: &HeaderMap, tight: bool) {
            let mut out = BytesMut::from(&b"HEAD\r\n"[..]);
            h.write_h1(&mut out);
            assert_eq!(&out[6..], &lines(h)[..], "{h:?}");
            assert_eq!(h.wire_len(), lines(h).len());
            assert_eq!(!h.loose, tight, "{h:?}");
        }
        let mut h = HeaderMap::default();
        check(&h, true);
        h.append("Server", "origin");
        h.append("x-a", "");
        check(&h, true);
        let mut other = HeaderMap::default();
        other.append("b", "2");
        h.extend_from(&other);
        check(&h, true);
        assert_eq!(h.remove("nothing"), 0);
        assert!(!h.set_if_absent("X-A", "3"));
        check(&h, true);
        h.set("server", "edge");
        check(&h, false);
        h.clear();
        h.append("a", "1");
        assert!(h.modify_last(b"a", |old, out| {
            out.extend_from_slice(old);
            out.extend_from_slice(b", 2");
        }));
        check(&h, false);
        h.clear();
        h.append("a", "1");
        h.append("b", "2");
        h.retain(|n, _| n != b"a");
        check(&h, false);
        // A loose map copied into a tight one: the copy is loose too, and still right.
        let mut t = HeaderMap::default();
        t.append("z", "0");
        let mut m = HeaderMap::default();
        m.append("c", "3");
        assert!(m.modify_last(b"c", |_, out| out.extend_from_slice(b"4")));
        t.extend_from(&m);
        check(&t, false);
        assert_eq!(lines(&t), b"z: 0\r\nc: 4\r\n");
    }

    #[test]
    fn request_head_fields() {
        let mut r = RequestHead::new(b"PURGE", "http", b"a.com:8080", b"/p?q=1");
        assert_eq!(r.method, Method::Other);
        assert_eq!(r.method_str(), "PURGE");
        assert_eq!(r.path_only(), b"/p");
        r.set_path(b"/x");
        assert_eq!(r.path(), b"/x");
        r.reset(b"GET", "https", b"b", b"/");
        assert_eq!(r.method_str(), "GET");
        assert_eq!(r.authority(), b"b");
    }

    /// The eight-at-a-time compare agrees with `eq_ignore_ascii_case` for every pair of bytes,
    /// at every position of every length a word boundary could split differently.
    #[test]
    fn eq_name_matches_std() {
        for len in 1..=20 {
            let base: Vec<u8> = (0..len).map(|i| b"Content-Type-X-Abcdefgh"[i]).collect();
            for at in 0..len {
                for x in 0..=255u8 {
                    for y in [x, x ^ 0x20, x.wrapping_add(1), b'a', b'Z', 0x80, 0xff] {
                        let mut a = base.clone();
                        let mut b = base.to_ascii_lowercase();
                        a[at] = x;
                        b[at] = y;
                        assert_eq!(
                            eq_name(&a, &b),
                            a.eq_ignore_ascii_case(&b),
                            "{a:?} vs {b:?}"
                        );
                    }
                }
            }
        }
        assert!(!eq_name(b"abc", b"abcd"));
        assert!(eq_name(b"", b""));
    }

    #[test]
    fn validity() {
        assert!(HeaderMap::is_valid_name(b"x-a"));
        assert!(!HeaderMap::is_valid_name(b"x a"));
        assert!(!HeaderMap::is_valid_name(b""));
        assert!(HeaderMap::is_valid_value(b"a b"));
        assert!(!HeaderMap::is_valid_value(b"a\r\nb"));
    }
}
