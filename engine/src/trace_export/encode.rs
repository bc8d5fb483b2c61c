//! Span encoding for the exporter thread: a finished request's record → the export request body,
//! OTLP/HTTP JSON or Zipkin v2 JSON.
//!
//! Each span is first read into a [`SpanView`] (format-neutral: name, times, attributes, events)
//! that borrows from the record and its kept request head, then written straight into the body
//! buffer by a small JSON writer: no document tree, a handful of allocations per span.

use std::{borrow::Cow, io::Write, net::SocketAddr, time::Instant};

use crate::{
    config::{Config, TraceFormat, Tracing},
    stream_info::{response_flags, SpanCtx, Version},
    trace::FinishedSpan,
};

/// What the encoder reads from the request (the stream model the record kept).
#[derive(Default)]
struct HeadFields<'a> {
    path: &'a str,
    host: &'a str,
    user_agent: Option<&'a str>,
    tracestate: Option<&'a str>,
    request_id: Option<&'a str>,
}

fn head_fields(r: &ringway_filters::RequestHead) -> HeadFields<'_> {
    HeadFields {
        path: std::str::from_utf8(r.path()).unwrap_or(""),
        host: std::str::from_utf8(r.authority()).unwrap_or(""),
        user_agent: r.headers.get("user-agent"),
        tracestate: r.headers.get("tracestate"),
        request_id: r.headers.get("x-request-id"),
    }
}

/// An attribute value.
enum Attr<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

/// One span, format-neutral, borrowing from its record.
struct SpanView<'a> {
    ctx: SpanCtx,
    name: Cow<'a, str>,
    start_ns: u64,
    end_ns: u64,
    attrs: Vec<(&'static str, Attr<'a>)>,
    events: Vec<(&'static str, u64)>,
    tracestate: Option<&'a str>,
    /// Why the request failed (5xx, or no response), for the span status.
    error: Option<Cow<'a, str>>,
    client: Option<SocketAddr>,
    local: SocketAddr,
}

/// `host:port` / `[v6]:port` / `host` → (host, port).
fn split_host(h: &str) -> (&str, Option<u16>) {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            return (ip, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (h, None);
    }
    match h.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (h, None),
        },
        None => (h, None),
    }
}

fn view<'a>(cfg: &'a Config, s: &'a FinishedSpan) -> Option<SpanView<'a>> {
    let si = &s.si;
    let ctx = si.trace?;
    let start = si.start?;
    let at = |t: Option<Instant>| {
        t.map(|t| s.start_unix_nanos + t.saturating_duration_since(start).as_nanos() as u64)
    };
    let end_ns = at(si.t_last_byte)
        .unwrap_or_else(|| s.start_unix_nanos + si.duration().map_or(0, |d| d.as_nanos() as u64));
    let head = head_fields(&si.req);
    let method = si.req.method.as_str();
    let mut attrs: Vec<(&'static str, Attr<'a>)> = Vec::with_capacity(24);
    let mut put = |k: &'static str, v: Attr<'a>| attrs.push((k, v));
    let s_ = |v: &'a str| Attr::Str(Cow::Borrowed(v));
    put("http.request.method", s_(method));
    let (path, query) = match head.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (head.path, None),
    };
    put("url.path", s_(path));
    if let Some(q) = query {
        put("url.query", s_(q));
    }
    put("url.scheme", s_("http"));
    if !head.host.is_empty() {
        let (h, port) = split_host(head.host);
        put("server.address", s_(h));
        if let Some(p) = port {
            put("server.port", Attr::Int(i64::from(p)));
        }
    }
    if let Some(v) = si.version {
        let v = match v {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
            Version::Http2 => "2",
        };
        put("network.protocol.version", s_(v));
    }
    if let Some(ua) = head.user_agent {
        put("user_agent.original", s_(ua));
    }
    if let Some(c) = si.downstream_remote {
        put("client.address", Attr::Str(c.ip().to_string().into()));
        put("client.port", Attr::Int(i64::from(c.port())));
    }
    if let Some(r) = &si.http_route {
        put("http.route", s_(r));
    }
    if si.status != 0 {
        put("http.response.status_code", Attr::Int(i64::from(si.status)));
    }
    put(
        "http.request.body.size",
        Attr::Int(si.bytes_received as i64),
    );
    put("http.response.body.size", Attr::Int(si.bytes_sent as i64));
    let request_id: Option<Cow<'a, str>> = match head.request_id {
        Some(id) => Some(Cow::Borrowed(id)),
        None => si
            .generated_request_id
            .as_ref()
            .map(|b| String::from_utf8_lossy(b)),
    };
    if let Some(id) = request_id {
        put("ringway.request_id", Attr::Str(id));
    }
    if let Some(l) = cfg.listeners.get(s.listener) {
        put("ringway.listener", s_(&l.name));
    }
    if let Some(c) = si.cluster.and_then(|c| cfg.clusters.get(c)) {
        put("ringway.upstream.cluster", s_(&c.name));
    }
    if let Some(u) = si.upstream {
        put("ringway.upstream.address", Attr::Str(u.to_string().into()));
        put("ringway.upstream.reused", Attr::Bool(si.upstream_reused));
    }
    let (flags, n) = response_flags(si);
    if n > 0 {
        put(
            "ringway.response_flags",
            Attr::Str(flags[..n].join(",").into()),
        );
    }
    let reason: Option<&'static str> = si.local_reason.map(|r| r.reply().1).or(si.protocol_error);
    let error: Option<Cow<'a, str>> = if si.status >= 500 || si.status == 0 {
        Some(match (reason, si.status) {
            (Some(r), _) => Cow::Borrowed(r),
            (None, 0) => Cow::Borrowed("no response"),
            (None, code) => Cow::Owned(code.to_string()),
        })
    } else {
        None
    };
    match (&error, reason) {
        (Some(e), _) => put("error.type", Attr::Str(e.clone())),
        (None, Some(r)) => put("ringway.local_reply", s_(r)),
        (None, None) => {}
    }
    let mut events = Vec::with_capacity(3);
    for (name, t) in [
        ("upstream_ready", si.t_upstream_ready),
        ("request_sent", si.t_request_sent),
        ("first_response_byte", si.t_first_byte),
    ] {
        if let Some(t) = at(t) {
            events.push((name, t));
        }
    }
    let name = match &si.http_route {
        Some(r) => Cow::Owned(format!("{method} {r}")),
        None => Cow::Borrowed(method),
    };
    let local = cfg
        .listeners
        .get(s.listener)
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |l| l.address);
    Some(SpanView {
        ctx,
        name,
        start_ns: s.start_unix_nanos,
        end_ns: end_ns.max(s.start_unix_nanos),
        attrs,
        events,
        tracestate: head.tracestate.filter(|_| ctx.keep_tracestate),
        error,
        client: si.downstream_remote,
        local,
    })
}

/// The export request body for `spans`.
pub fn encode(cfg: &Config, t: &Tracing, spans: &[FinishedSpan]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + spans.len() * 1200);
    let views = spans.iter().filter_map(|s| view(cfg, s));
    match t.format {
        TraceFormat::OtlpJson => otlp(t, views, &mut out),
        TraceFormat::ZipkinJson => zipkin(t, views, &mut out),
    }
    out
}

/// A JSON string literal.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    crate::text::json_str(s.as_bytes(), out);
    out.push(b'"');
}

/// `"key":` (keys are ASCII identifiers: no escaping needed).
fn key(out: &mut Vec<u8>, k: &str) {
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

fn hex_field(out: &mut Vec<u8>, k: &str, hex: &[u8]) {
    key(out, k);
    out.push(b'"');
    out.extend_from_slice(hex);
    out.extend_from_slice(b"\",");
}

/// OTLP/HTTP JSON (`ExportTraceServiceRequest`): ids as lower-case hex, 64-bit integers as
/// decimal strings, enums as numbers, as the OTLP specification asks.
fn otlp<'a>(t: &Tracing, views: impl Iterator<Item = SpanView<'a>>, out: &mut Vec<u8>) {
    let version = env!("CARGO_PKG_VERSION");
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    otlp_attr(
        out,
        "service.name",
        &Attr::Str(Cow::Borrowed(&t.service_name)),
    );
    out.push(b',');
    otlp_attr(out, "service.version", &Attr::Str(Cow::Borrowed(version)));
    out.push(b',');
    otlp_attr(
        out,
        "telemetry.sdk.name",
        &Attr::Str(Cow::Borrowed("ringway")),
    );
    out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":\"ringway\",\"version\":");
    string(out, version);
    out.extend_from_slice(b"},\"spans\":[");
    for (i, v) in views.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        hex_field(out, "traceId", &v.ctx.trace_hex());
        hex_field(out, "spanId", &SpanCtx::span_hex(v.ctx.span_id));
        if v.ctx.parent_id != 0 {
            hex_field(out, "parentSpanId", &SpanCtx::span_hex(v.ctx.parent_id));
        }
        if let Some(ts) = v.tracestate {
            key(out, "traceState");
            string(out, ts);
            out.push(b',');
        }
        key(out, "name");
        string(out, &v.name);
        // SPAN_KIND_SERVER; times as decimal strings (int64 in proto3 JSON).
        let _ = write!(
            out,
            ",\"kind\":2,\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
            v.start_ns, v.end_ns
        );
        for (j, (k, a)) in v.attrs.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            otlp_attr(out, k, a);
        }
        out.extend_from_slice(b"],\"events\":[");
        for (j, (name, at)) in v.events.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"timeUnixNano\":\"{at}\",\"name\":\"{name}\"}}");
        }
        out.extend_from_slice(b"],\"status\":{");
        if let Some(e) = &v.error {
            // STATUS_CODE_ERROR
            out.extend_from_slice(b"\"code\":2,\"message\":");
            string(out, e);
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}]}]}");
}

fn otlp_attr(out: &mut Vec<u8>, k: &str, a: &Attr<'_>) {
    out.extend_from_slice(b"{\"key\":");
    string(out, k);
    out.extend_from_slice(b",\"value\":{");
    match a {
        Attr::Str(s) => {
            out.extend_from_slice(b"\"stringValue\":");
            string(out, s);
        }
        Attr::Int(i) => {
            let _ = write!(out, "\"intValue\":\"{i}\"");
        }
        Attr::Bool(b) => {
            let _ = write!(out, "\"boolValue\":{b}");
        }
    }
    out.extend_from_slice(b"}}");
}

fn endpoint(out: &mut Vec<u8>, addr: SocketAddr, service: Option<&str>) {
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if let Some(s) = service {
        sep(out);
        key(out, "serviceName");
        string(out, s);
    }
    let ip = addr.ip();
    if !ip.is_unspecified() {
        sep(out);
        let _ = match ip {
            std::net::IpAddr::V4(ip) => write!(out, "\"ipv4\":\"{ip}\""),
            std::net::IpAddr::V6(ip) => write!(out, "\"ipv6\":\"{ip}\""),
        };
    }
    if addr.port() != 0 {
        sep(out);
        let _ = write!(out, "\"port\":{}", addr.port());
    }
    out.push(b'}');
}

/// Zipkin v2 JSON (`POST /api/v2/spans`): a list of spans, times in microseconds, tags as
/// strings.
fn zipkin<'a>(t: &Tracing, views: impl Iterator<Item = SpanView<'a>>, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, v) in views.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let trace = v.ctx.trace_hex();
        let trace: &[u8] = if v.ctx.b3_short { &trace[16..] } else { &trace };
        hex_field(out, "traceId", trace);
        hex_field(out, "id", &SpanCtx::span_hex(v.ctx.span_id));
        if v.ctx.parent_id != 0 {
            hex_field(out, "parentId", &SpanCtx::span_hex(v.ctx.parent_id));
        }
        out.extend_from_slice(b"\"kind\":\"SERVER\",\"name\":");
        string(out, &v.name.to_ascii_lowercase());
        let _ = write!(
            out,
            ",\"timestamp\":{},\"duration\":{},\"localEndpoint\":",
            v.start_ns / 1000,
            ((v.end_ns - v.start_ns) / 1000).max(1)
        );
        endpoint(out, v.local, Some(&t.service_name));
        if let Some(c) = v.client {
            out.extend_from_slice(b",\"remoteEndpoint\":");
            endpoint(out, c, None);
        }
        out.extend_from_slice(b",\"tags\":{");
        for (j, (k, a)) in v.attrs.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            key(out, k);
            match a {
                Attr::Str(s) => string(out, s),
                Attr::Int(n) => {
                    let _ = write!(out, "\"{n}\"");
                }
                Attr::Bool(b) => {
                    let _ = write!(out, "\"{b}\"");
                }
            }
        }
        if let Some(e) = &v.error {
            if !v.attrs.is_empty() {
                out.push(b',');
            }
            key(out, "error");
            string(out, e);
        }
        out.extend_from_slice(b"},\"annotations\":[");
        for (j, (name, at)) in v.events.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"timestamp\":{},\"value\":\"{name}\"}}", at / 1000);
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn strings_are_escaped_as_json() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "ctl \u{1}\u{1f}\u{7f}\n\r\t",
            "ünïcödé ✓",
            "",
        ] {
            let back: String = serde_json::from_str(&lit(s)).expect("valid JSON string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host("a.com:8080"), ("a.com", Some(8080)));
        assert_eq!(split_host("a.com"), ("a.com", None));
        assert_eq!(split_host("[::1]:443"), ("::1", Some(443)));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("a.com:x"), ("a.com:x", None));
    }
}
