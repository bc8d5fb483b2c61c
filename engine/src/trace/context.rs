//! Trace context on the wire: reading W3C Trace Context (`traceparent`, `tracestate`) and B3
//! (`x-b3-*` or the single `b3` header) from a request, deciding whether the request is
//! sampled, and writing the context ringway forwards upstream.
//!
//! All of it works on the parsed header slice and small stack buffers: no allocation.
//!
//! Rules (those of the W3C recommendation, the B3 spec and OpenTelemetry's parent-based
//! sampler):
//! - A valid `traceparent` wins; else a valid B3 context; else a new trace starts (a random
//!   128-bit trace id, no parent).
//! - A sampling decision carried by the request (`traceparent` flags, `x-b3-sampled`,
//!   `x-b3-flags: 1`, `b3: 1|0|d`, alone or with a context) is kept; only requests without one
//!   are sampled at the configured rate.
//! - Upstream always gets `traceparent` with ringway's span as the parent; `tracestate` passes
//!   unchanged when the incoming `traceparent` was valid and is dropped otherwise; B3 headers are
//!   rewritten in the form the client used (multi or single), and sent in multi form for new
//!   traces when the collector speaks Zipkin.
//! - A malformed header is ignored (never an error for the client): the request gets a new trace.
//!
//! The span itself ([`SpanCtx`]) is a value of the request's record, defined beside it in
//! `stream_info`; this module draws it ([`begin`]) and writes it (`impl SpanCtx` below).

use crate::stream_info::{B3Out, SpanCtx};

/// A source of random ids (the worker's generator).
pub trait Ids {
    fn next_u64(&self) -> u64;
}

/// The sampling threshold for a rate: a new trace is sampled when a random `u64` is below it.
pub fn threshold(rate: f64) -> u64 {
    if rate >= 1.0 {
        u64::MAX
    } else if rate <= 0.0 {
        0
    } else {
        (rate * 18_446_744_073_709_551_616.0) as u64
    }
}

/// What the request's headers say.
#[derive(Default)]
struct Seen<'a> {
    traceparent: Option<&'a [u8]>,
    traceparents: u8,
    b3_trace: Option<&'a [u8]>,
    b3_span: Option<&'a [u8]>,
    b3_sampled: Option<&'a [u8]>,
    b3_flags: Option<&'a [u8]>,
    b3_single: Option<&'a [u8]>,
}

fn name_is(name: &[u8], n: &str) -> bool {
    name.len() == n.len() && name.eq_ignore_ascii_case(n.as_bytes())
}

fn scan<'a>(headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Seen<'a> {
    let mut s = Seen::default();
    for (h, value) in headers {
        let v = trim(value);
        match h.len() {
            11 if name_is(h, "traceparent") => {
                s.traceparent = Some(v);
                s.traceparents = s.traceparents.saturating_add(1);
            }
            11 if name_is(h, "x-b3-spanid") => s.b3_span = Some(v),
            12 if name_is(h, "x-b3-traceid") => s.b3_trace = Some(v),
            12 if name_is(h, "x-b3-sampled") => s.b3_sampled = Some(v),
            10 if name_is(h, "x-b3-flags") => s.b3_flags = Some(v),
            2 if name_is(h, "b3") => s.b3_single = Some(v),
            _ => {}
        }
    }
    s
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &v[start..=end]
}

fn hex_val(b: u8, lower_only: bool) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' if !lower_only => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_u64(v: &[u8], lower_only: bool) -> Option<u64> {
    if v.is_empty() || v.len() > 16 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        Some((acc << 4) | u64::from(hex_val(b, lower_only)?))
    })
}

/// 32 hex digits (or 16, zero-extended on the left) into 16 bytes; `None` if malformed or zero.
fn hex_trace_id(v: &[u8], lower_only: bool) -> Option<[u8; 16]> {
    let (hi, lo) = match v.len() {
        32 => (
            hex_u64(&v[..16], lower_only)?,
            hex_u64(&v[16..], lower_only)?,
        ),
        16 => (0, hex_u64(v, lower_only)?),
        _ => return None,
    };
    if hi == 0 && lo == 0 {
        return None;
    }
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    Some(id)
}

fn span_id(v: &[u8], lower_only: bool) -> Option<u64> {
    if v.len() != 16 {
        return None;
    }
    hex_u64(v, lower_only).filter(|&id| id != 0)
}

/// `traceparent`: `{version}-{trace-id}-{parent-id}-{flags}`, lower-case hex. Version `ff` is
/// invalid; version `00` is exactly 55 bytes; later versions may append `-...` fields.
fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], u64, bool)> {
    if v.len() < 55 {
        return None;
    }
    let version = (hex_val(v[0], true)? << 4) | hex_val(v[1], true)?;
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace = hex_trace_id(&v[3..35], true)?;
    let parent = span_id(&v[36..52], true)?;
    let flags = (hex_val(v[53], true)? << 4) | hex_val(v[54], true)?;
    Some((trace, parent, flags & 1 == 1))
}

/// `x-b3-sampled` / the single header's sampling field: `1`/`true`/`d` sample, `0`/`false` not.
fn b3_decision(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"d" => Some(true),
        b"0" => Some(false),
        _ if v.eq_ignore_ascii_case(b"true") => Some(true),
        _ if v.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

/// A B3 context: (trace id, span id, short, decision).
type B3Ctx = ([u8; 16], u64, bool, Option<bool>);

/// `b3: {trace}-{span}[-{sampled}[-{parent}]]`, or just the decision (`0`, `1`, `d`).
fn parse_b3_single(v: &[u8]) -> (Option<B3Ctx>, Option<bool>) {
    let mut parts = v.split(|&b| b == b'-');
    let first = parts.next().unwrap_or(&[]);
    let Some(second) = parts.next() else {
        return (None, b3_decision(first));
    };
    let decision = parts.next().and_then(b3_decision);
    let ctx = hex_trace_id(first, false)
        .zip(span_id(second, false))
        .map(|(t, s)| (t, s, first.len() == 16, decision));
    (ctx, decision)
}

/// Read the request's context and decide: the span ringway records (or just propagates) for it.
/// `threshold` comes from [`threshold`]; `zipkin` makes new traces carry B3 headers too.
pub fn begin<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    threshold: u64,
    zipkin: bool,
    ids: &impl Ids,
) -> SpanCtx {
    let s = scan(headers);
    let mut span = ids.next_u64();
    if span == 0 {
        span = 1;
    }
    let b3_form = if s.b3_single.is_some() {
        B3Out::Single
    } else if zipkin || s.b3_trace.is_some() || s.b3_sampled.is_some() || s.b3_flags.is_some() {
        B3Out::Multi
    } else {
        B3Out::None
    };
    let rate_decision = |ids: &dyn Fn() -> u64| threshold == u64::MAX || ids() < threshold;
    let next = || ids.next_u64();

    // 1. W3C.
    if s.traceparents == 1 {
        if let Some((trace_id, parent_id, sampled)) = s.traceparent.and_then(parse_traceparent) {
            return SpanCtx {
                trace_id,
                span_id: span,
                parent_id,
                sampled,
                b3: b3_form,
                b3_short: false,
                keep_tracestate: true,
            };
        }
    }
    // 2. B3 (single header first, as the spec says).
    let debug = s.b3_flags == Some(b"1".as_slice());
    let (single_ctx, single_decision) = s.b3_single.map_or((None, None), parse_b3_single);
    let multi_decision = s.b3_sampled.and_then(b3_decision);
    let multi_ctx = s
        .b3_trace
        .and_then(|t| Some((hex_trace_id(t, false)?, t.len() == 16)))
        .zip(s.b3_span.and_then(|v| span_id(v, false)))
        .map(|((t, short), sp)| (t, sp, short, multi_decision));
    if let Some((trace_id, parent_id, short, decision)) = single_ctx.or(multi_ctx) {
        let sampled = if debug {
            true
        } else {
            decision.unwrap_or_else(|| rate_decision(&next))
        };
        return SpanCtx {
            trace_id,
            span_id: span,
            parent_id,
            sampled,
            b3: b3_form,
            b3_short: short,
            keep_tracestate: false,
        };
    }
    // 3. A new trace, keeping a bare decision if one came.
    let decision = if debug {
        Some(true)
    } else {
        single_decision.or(multi_decision)
    };
    let sampled = decision.unwrap_or_else(|| rate_decision(&next));
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&ids.next_u64().to_be_bytes());
    trace_id[8..].copy_from_slice(&(ids.next_u64() | 1).to_be_bytes());
    SpanCtx {
        trace_id,
        span_id: span,
        parent_id: 0,
        sampled,
        b3: b3_form,
        b3_short: false,
        keep_tracestate: false,
    }
}

/// Whether an incoming header is replaced by what [`SpanCtx::write_headers`] writes (or dropped).
pub fn is_replaced(name: &str, keep_tracestate: bool) -> bool {
    let n = name.as_bytes();
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 => is("b3"),
        10 => is("x-b3-flags") || (!keep_tracestate && is("tracestate")),
        11 => is("traceparent") || is("x-b3-spanid"),
        12 => is("x-b3-traceid") || is("x-b3-sampled"),
        17 => is("x-b3-parentspanid"),
        _ => false,
    }
}

pub use crate::text::hex_into;

/// Header lines ringway writes upstream, on the stack.
pub struct Headers {
    buf: [u8; 320],
    len: usize,
}

impl Headers {
    fn push(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.buf[self.len..self.len + p.len()].copy_from_slice(p);
            self.len += p.len();
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writing a span's identity (the type lives with the record that carries it).
impl SpanCtx {
    /// The trace id as 32 hex digits.
    pub fn trace_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex_into(&self.trace_id, &mut out);
        out
    }

    /// A span id as 16 hex digits.
    pub fn span_hex(id: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex_into(&id.to_be_bytes(), &mut out);
        out
    }

    /// The context's header lines (each ending in CRLF): `traceparent`, then B3 if asked for.
    pub fn write_headers(&self) -> Headers {
        let mut h = Headers {
            buf: [0; 320],
            len: 0,
        };
        let trace = self.trace_hex();
        let span = Self::span_hex(self.span_id);
        let flag: &[u8] = if self.sampled { b"01" } else { b"00" };
        h.push(&[
            b"traceparent: 00-",
            &trace,
            b"-",
            &span,
            b"-",
            flag,
            b"\r\n",
        ]);
        let b3_trace: &[u8] = if self.b3_short { &trace[16..] } else { &trace };
        let parent = Self::span_hex(self.parent_id);
        let decision: &[u8] = if self.sampled { b"1" } else { b"0" };
        match self.b3 {
            B3Out::None => {}
            B3Out::Multi => {
                h.push(&[b"x-b3-traceid: ", b3_trace, b"\r\nx-b3-spanid: ", &span]);
                if self.parent_id != 0 {
                    h.push(&[b"\r\nx-b3-parentspanid: ", &parent]);
                }
                h.push(&[b"\r\nx-b3-sampled: ", decision, b"\r\n"]);
            }
            B3Out::Single => {
                h.push(&[b"b3: ", b3_trace, b"-", &span, b"-", decision]);
                if self.parent_id != 0 {
                    h.push(&[b"-", &parent]);
                }
                h.push(&[b"\r\n"]);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Ids 1, 2, 3, ... (predictable).
    struct Seq(Cell<u64>);
    impl Ids for Seq {
        fn next_u64(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    fn hdrs<'a>(list: &[(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
        list.iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    fn begin_with(list: &[(&str, &str)], rate: f64) -> SpanCtx {
        begin(
            hdrs(list).iter().map(|h| (h.name.as_bytes(), h.value)),
            threshold(rate),
            false,
            &Seq(Cell::new(0x100)),
        )
    }

    fn lines(c: &SpanCtx) -> String {
        String::from_utf8(c.write_headers().as_bytes().to_vec()).expect("ascii")
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparent_is_continued() {
        let c = begin_with(&[("TraceParent", TP)], 0.0);
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id, 0x00f0_67aa_0ba9_02b7);
        assert!(c.sampled, "the caller's decision wins over rate 0");
        assert!(c.keep_tracestate);
        assert_eq!(c.span_id, 0x101);
        assert_eq!(
            lines(&c),
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000101-01\r\n"
        );
        let c = begin_with(&[("traceparent", &TP.replace("-01", "-00"))], 1.0);
        assert!(!c.sampled, "not sampled upstream: not sampled here");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        let bad = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", // short
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx", // v00 with extra
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // v01 bad extra
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", // separators
            "garbage",
        ];
        for b in bad {
            let c = begin_with(&[("traceparent", b)], 1.0);
            assert_eq!(c.parent_id, 0, "{b}");
            assert!(!c.keep_tracestate, "{b}");
            assert_ne!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736", "{b}");
        }
        // A later version with extra fields is fine.
        let c = begin_with(&[("traceparent", &format!("01{}-what", &TP[2..]))], 0.0);
        assert_eq!(c.parent_id, 0x00f0_67aa_0ba9_02b7);
        // Two traceparent headers: invalid.
        let c = begin_with(&[("traceparent", TP), ("traceparent", TP)], 1.0);
        assert_eq!(c.parent_id, 0);
    }

    #[test]
    fn new_traces_follow_the_rate() {
        let c = begin_with(&[], 1.0);
        assert!(c.sampled);
        assert_eq!(c.parent_id, 0);
        assert_ne!(c.trace_id, [0; 16]);
        assert!(!begin_with(&[], 0.0).sampled);
        // Rate 0.5 on a real generator: about half.
        let rng = crate::rng::Rng::new(42);
        let n = (0..10_000)
            .filter(|_| begin(std::iter::empty(), threshold(0.5), false, &rng).sampled)
            .count();
        assert!((4_500..5_500).contains(&n), "{n}");
        let n = (0..10_000)
            .filter(|_| begin(std::iter::empty(), threshold(0.01), false, &rng).sampled)
            .count();
        assert!((50..150).contains(&n), "{n}");
    }

    #[test]
    fn b3_multi_is_continued_and_rewritten() {
        let c = begin_with(
            &[
                ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("X-B3-SpanId", "e457b5a2e4d86bd1"),
                ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
                ("X-B3-Sampled", "1"),
            ],
            0.0,
        );
        assert!(c.sampled);
        assert_eq!(c.parent_id, 0xe457_b5a2_e4d8_6bd1);
        assert_eq!(
            lines(&c),
            "traceparent: 00-80f198ee56343ba864fe8b2a57d3eff7-0000000000000101-01\r\n\
             x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7\r\n\
             x-b3-spanid: 0000000000000101\r\n\
             x-b3-parentspanid: e457b5a2e4d86bd1\r\n\
             x-b3-sampled: 1\r\n"
        );
        // 64-bit trace id: padded for W3C, kept short for B3; no decision: the rate decides.
        let c = begin_with(
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
            ],
            0.0,
        );
        assert!(!c.sampled);
        assert_eq!(
            lines(&c),
            "traceparent: 00-0000000000000000a3ce929d0e0e4736-0000000000000101-00\r\n\
             x-b3-traceid: a3ce929d0e0e4736\r\n\
             x-b3-spanid: 0000000000000101\r\n\
             x-b3-parentspanid: 00f067aa0ba902b7\r\n\
             x-b3-sampled: 0\r\n"
        );
        // Debug flag forces sampling.
        let c = begin_with(
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-flags", "1"),
            ],
            0.0,
        );
        assert!(c.sampled);
    }

    #[test]
    fn b3_single_is_continued_and_rewritten() {
        let c = begin_with(
            &[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            )],
            0.0,
        );
        assert!(c.sampled);
        assert_eq!(c.parent_id, 0xe457_b5a2_e4d8_6bd1);
        assert_eq!(
            lines(&c),
            "traceparent: 00-80f198ee56343ba864fe8b2a57d3eff7-0000000000000101-01\r\n\
             b3: 80f198ee56343ba864fe8b2a57d3eff7-0000000000000101-1-e457b5a2e4d86bd1\r\n"
        );
        // Decision only: a new trace, not sampled, B3 kept in single form.
        let c = begin_with(&[("b3", "0")], 1.0);
        assert!(!c.sampled);
        assert_eq!(c.parent_id, 0);
        assert_eq!(c.b3, B3Out::Single);
        assert!(lines(&c).contains("\r\nb3: "));
        assert!(!lines(&c).contains("-0-"), "no parent: no fourth field");
        // Malformed: a new trace at the rate.
        let c = begin_with(&[("b3", "zz-e457b5a2e4d86bd1-1")], 1.0);
        assert!(c.sampled);
        assert_eq!(c.parent_id, 0);
    }

    #[test]
    fn traceparent_wins_over_b3() {
        let c = begin_with(
            &[
                ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"),
                ("traceparent", TP),
            ],
            0.0,
        );
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(c.sampled);
        assert_eq!(c.b3, B3Out::Single);
    }

    #[test]
    fn zipkin_new_traces_carry_b3() {
        let c = begin(std::iter::empty(), threshold(1.0), true, &Seq(Cell::new(7)));
        assert_eq!(c.b3, B3Out::Multi);
        let l = lines(&c);
        assert!(l.contains("x-b3-traceid: "), "{l}");
        assert!(!l.contains("parentspanid"), "{l}");
    }

    #[test]
    fn replaced_headers() {
        for n in [
            "traceparent",
            "B3",
            "x-b3-traceid",
            "X-B3-SpanId",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "x-b3-flags",
        ] {
            assert!(is_replaced(n, true), "{n}");
        }
        assert!(!is_replaced("tracestate", true));
        assert!(is_replaced("tracestate", false));
        assert!(!is_replaced("x-request-id", false));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
