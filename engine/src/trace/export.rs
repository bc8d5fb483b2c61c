//! The exporter thread (`ringway-trace`): batches the workers' finished spans, encodes them as
//! OTLP/HTTP JSON or Zipkin v2 JSON, and POSTs them to the collector cluster.
//!
//! Data flow: workers' `Vec<FinishedSpan>` batches arrive on one bounded channel → `pending` →
//! an export request of at most `max_batch` spans whenever `pending` holds that many, and at
//! least every `flush_interval` → [`Collector::post`], a blocking HTTP/1.1 client that keeps its
//! connection alive and moves to the cluster's next endpoint when one fails. The thread ends
//! when every worker has dropped its end of the channel (after shutdown); it sends what is left
//! first.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{atomic::Ordering::Relaxed, Arc},
    thread,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::{context::SpanCtx, FinishedSpan, TraceStats};
use crate::{
    config::{Config, TraceFormat, Tracing},
    http::h1,
};

/// The running exporter, owned by the control thread.
pub struct Exporter {
    thread: Option<thread::JoinHandle<()>>,
}

impl Exporter {
    /// Start the thread; it reads batches from `rx` until every sender is gone.
    pub fn start(
        cfg: Arc<Config>,
        rx: flume::Receiver<Vec<FinishedSpan>>,
        stats: Arc<TraceStats>,
    ) -> std::io::Result<Exporter> {
        let thread = thread::Builder::new()
            .name("ringway-trace".into())
            .spawn(move || run(&cfg, &rx, &stats))?;
        Ok(Exporter {
            thread: Some(thread),
        })
    }

    /// Wait for the thread to send what is left and end. Call after the workers have ended (they
    /// hold the senders).
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(cfg: &Config, rx: &flume::Receiver<Vec<FinishedSpan>>, stats: &TraceStats) {
    let Some(t) = &cfg.tracing else { return };
    let endpoints: Vec<SocketAddr> = cfg
        .clusters
        .get(t.collector_cluster)
        .map(|c| c.endpoints.iter().map(|e| e.address).collect())
        .unwrap_or_default();
    let mut collector = Collector::new(endpoints, t.collector_timeout);
    let mut pending: Vec<FinishedSpan> = Vec::new();
    let mut due: Option<Instant> = None;
    let mut warned_at: Option<Instant> = None;
    loop {
        let got = match due {
            None => rx.recv().map_err(|_| flume::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_deadline(d),
        };
        let ended = match got {
            Ok(batch) => {
                if pending.is_empty() {
                    due = Some(Instant::now() + t.flush_interval);
                }
                pending.extend(batch);
                while pending.len() >= t.max_batch {
                    let rest = pending.split_off(t.max_batch);
                    let full = std::mem::replace(&mut pending, rest);
                    export(cfg, t, &mut collector, &full, stats, &mut warned_at);
                }
                false
            }
            Err(flume::RecvTimeoutError::Timeout) => false,
            Err(flume::RecvTimeoutError::Disconnected) => true,
        };
        let timed_out = due.is_some_and(|d| Instant::now() >= d);
        if ended || timed_out {
            for chunk in pending.chunks(t.max_batch) {
                export(cfg, t, &mut collector, chunk, stats, &mut warned_at);
            }
            pending.clear();
            due = None;
        }
        if ended {
            return;
        }
    }
}

fn export(
    cfg: &Config,
    t: &Tracing,
    collector: &mut Collector,
    spans: &[FinishedSpan],
    stats: &TraceStats,
    warned_at: &mut Option<Instant>,
) {
    if spans.is_empty() {
        return;
    }
    let body = encode(cfg, t, spans);
    let n = spans.len() as u64;
    match collector.post(&t.collector_path, &t.collector_host, &body) {
        Ok(status) if (200..300).contains(&status) => {
            stats.spans_sent.fetch_add(n, Relaxed);
            stats.reports_sent.fetch_add(1, Relaxed);
            return;
        }
        Ok(status) => warn(warned_at, &format!("collector answered {status}"), n),
        Err(e) => warn(warned_at, &e, n),
    }
    stats.reports_failed.fetch_add(1, Relaxed);
    stats.spans_dropped.fetch_add(n, Relaxed);
}

fn warn(warned_at: &mut Option<Instant>, why: &str, spans: u64) {
    let now = Instant::now();
    if warned_at.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
        *warned_at = Some(now);
        tracing::warn!(spans, error = %why, "trace export failed; spans dropped");
    }
}

/// A blocking HTTP/1.1 client for the collector cluster: one kept-alive connection, endpoints
/// tried in turn.
struct Collector {
    endpoints: Vec<SocketAddr>,
    next: usize,
    timeout: Duration,
    conn: Option<TcpStream>,
}

impl Collector {
    fn new(endpoints: Vec<SocketAddr>, timeout: Duration) -> Collector {
        Collector {
            endpoints,
            next: 0,
            timeout,
            conn: None,
        }
    }

    /// POST `body`; the response status. A failure on a reused connection (the collector closed
    /// it while idle) is retried once on a new one.
    fn post(&mut self, path: &str, host: &str, body: &[u8]) -> Result<u16, String> {
        let deadline = Instant::now() + self.timeout;
        let reused = self.conn.is_some();
        match self.try_post(path, host, body, deadline) {
            Ok(s) => Ok(s),
            Err(_) if reused && Instant::now() < deadline => {
                self.conn = None;
                self.try_post(path, host, body, deadline)
            }
            Err(e) => Err(e),
        }
    }

    fn connect(&mut self, deadline: Instant) -> Result<TcpStream, String> {
        if self.endpoints.is_empty() {
            return Err("the collector cluster has no endpoints".into());
        }
        let mut last = String::new();
        for _ in 0..self.endpoints.len() {
            let addr = self.endpoints[self.next % self.endpoints.len()];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => {
                    last = format!("connect {addr}: {e}");
                    self.next += 1;
                }
            }
        }
        Err(last)
    }

    fn try_post(
        &mut self,
        path: &str,
        host: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<u16, String> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect(deadline)?,
        };
        let left = |d: Instant| {
            let l = d.saturating_duration_since(Instant::now());
            if l.is_zero() {
                Err("timed out".to_string())
            } else {
                Ok(l)
            }
        };
        let io = |e: std::io::Error| e.to_string();
        conn.set_write_timeout(Some(left(deadline)?)).map_err(io)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nuser-agent: ringway/{}\r\n\r\n",
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(head.as_bytes()).map_err(io)?;
        conn.write_all(body).map_err(io)?;
        // The response: head, then its body (read and dropped) so the connection can be reused.
        let mut buf = BytesMut::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
            let n = conn.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err("collector closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
            let parsed = match h1::parse_response(&buf, &mut headers, false, 64 * 1024) {
                Ok(Some(r)) => Some((r.status, r.head_len, r.framing, r.keep_alive)),
                Ok(None) => None,
                Err(e) => return Err(format!("bad response from collector: {e}")),
            };
            let Some((status, head_len, framing, keep_alive)) = parsed else {
                continue;
            };
            if (100..200).contains(&status) {
                let _ = buf.split_to(head_len);
                continue;
            }
            let _ = buf.split_to(head_len);
            let done = match framing {
                h1::BodyFraming::None => true,
                h1::BodyFraming::Length(n) => {
                    let mut need = n.saturating_sub(buf.len() as u64);
                    while need > 0 {
                        conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
                        let r = conn.read(&mut chunk).map_err(io)?;
                        if r == 0 {
                            return Err("collector closed the connection mid-body".into());
                        }
                        need = need.saturating_sub(r as u64);
                    }
                    true
                }
                h1::BodyFraming::Chunked => {
                    let mut dec = h1::ChunkedDecoder::new();
                    loop {
                        match dec.decode(&mut buf) {
                            Ok(h1::Chunk::End) => break true,
                            Ok(h1::Chunk::Data(_)) => continue,
                            Ok(h1::Chunk::NeedMore) => {
                                conn.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
                                let r = conn.read(&mut chunk).map_err(io)?;
                                if r == 0 {
                                    return Err("collector closed the connection mid-body".into());
                                }
                                buf.extend_from_slice(&chunk[..r]);
                            }
                            Err(e) => return Err(format!("bad response body from collector: {e}")),
                        }
                    }
                }
                h1::BodyFraming::UntilClose => false,
            };
            if done && keep_alive {
                self.conn = Some(conn);
            }
            return Ok(status);
        }
    }
}

/// What the exporter reads back from a kept request head.
#[derive(Default)]
struct HeadFields<'a> {
    path: &'a str,
    host: &'a str,
    user_agent: Option<&'a str>,
    tracestate: Option<&'a str>,
    request_id: Option<&'a str>,
}

fn head_fields(head: &[u8]) -> HeadFields<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let mut f = HeadFields::default();
    if req.parse(head).is_err() {
        return f;
    }
    f.path = req.path.unwrap_or("");
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).ok();
        match h.name.to_ascii_lowercase().as_str() {
            "host" => f.host = v.unwrap_or(""),
            "user-agent" => f.user_agent = v,
            "tracestate" => f.tracestate = v,
            "x-request-id" => f.request_id = v,
            _ => {}
        }
    }
    f
}

fn hex_trace(ctx: &SpanCtx, short: bool) -> String {
    let h = ctx.trace_hex();
    let s = if short { &h[16..] } else { &h[..] };
    String::from_utf8_lossy(s).into_owned()
}

fn hex_span(id: u64) -> String {
    String::from_utf8_lossy(&SpanCtx::span_hex(id)).into_owned()
}

/// An attribute value before it is encoded for one format.
enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One span, format-neutral.
struct SpanView {
    ctx: SpanCtx,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attrs: Vec<(&'static str, Attr)>,
    events: Vec<(&'static str, u64)>,
    tracestate: Option<String>,
    /// Why the request failed (5xx, or no response), for the span status.
    error: Option<String>,
    client: Option<SocketAddr>,
    local: SocketAddr,
}

fn view(cfg: &Config, s: &FinishedSpan) -> Option<SpanView> {
    let si = &s.si;
    let ctx = si.trace?;
    let start = si.start?;
    let at = |t: Option<Instant>| {
        t.map(|t| s.start_unix_nanos + t.saturating_duration_since(start).as_nanos() as u64)
    };
    let end_ns = at(si.t_last_byte)
        .unwrap_or_else(|| s.start_unix_nanos + si.duration().map_or(0, |d| d.as_nanos() as u64));
    let head = si
        .request_head
        .as_deref()
        .map(head_fields)
        .unwrap_or_default();
    let method = si.method.as_str();
    let mut attrs: Vec<(&'static str, Attr)> = Vec::with_capacity(20);
    let mut put = |k: &'static str, v: Attr| attrs.push((k, v));
    put("http.request.method", Attr::Str(method.to_owned()));
    let (path, query) = match head.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (head.path, None),
    };
    put("url.path", Attr::Str(path.to_owned()));
    if let Some(q) = query {
        put("url.query", Attr::Str(q.to_owned()));
    }
    put("url.scheme", Attr::Str("http".into()));
    if !head.host.is_empty() {
        let (h, port) = split_host(head.host);
        put("server.address", Attr::Str(h.to_owned()));
        if let Some(p) = port {
            put("server.port", Attr::Int(i64::from(p)));
        }
    }
    if let Some(v) = si.version {
        put(
            "network.protocol.version",
            Attr::Str(
                match v {
                    h1::Version::Http10 => "1.0",
                    h1::Version::Http11 => "1.1",
                }
                .into(),
            ),
        );
    }
    if let Some(ua) = head.user_agent {
        put("user_agent.original", Attr::Str(ua.to_owned()));
    }
    if let Some(c) = si.downstream_remote {
        put("client.address", Attr::Str(c.ip().to_string()));
        put("client.port", Attr::Int(i64::from(c.port())));
    }
    if let Some(r) = &si.http_route {
        put("http.route", Attr::Str(r.to_string()));
    }
    if si.status != 0 {
        put("http.response.status_code", Attr::Int(i64::from(si.status)));
    }
    put(
        "http.request.body.size",
        Attr::Int(si.bytes_received as i64),
    );
    put("http.response.body.size", Attr::Int(si.bytes_sent as i64));
    let request_id = head.request_id.map(str::to_owned).or_else(|| {
        si.generated_request_id
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    });
    if let Some(id) = request_id {
        put("ringway.request_id", Attr::Str(id));
    }
    if let Some(l) = cfg.listeners.get(s.listener) {
        put("ringway.listener", Attr::Str(l.name.clone()));
    }
    if let Some(c) = si.cluster.and_then(|c| cfg.clusters.get(c)) {
        put("ringway.upstream.cluster", Attr::Str(c.name.clone()));
    }
    if let Some(u) = si.upstream {
        put("ringway.upstream.address", Attr::Str(u.to_string()));
        put("ringway.upstream.reused", Attr::Bool(si.upstream_reused));
    }
    let (flags, n) = crate::access_log::format::response_flags(si);
    if n > 0 {
        put("ringway.response_flags", Attr::Str(flags[..n].join(",")));
    }
    let reason = si
        .local_reason
        .map(|r| r.reply().1.to_owned())
        .or_else(|| si.protocol_error.map(str::to_owned));
    let error = if si.status >= 500 || si.status == 0 {
        Some(reason.clone().unwrap_or_else(|| {
            if si.status == 0 {
                "no response".to_owned()
            } else {
                si.status.to_string()
            }
        }))
    } else {
        None
    };
    if let Some(e) = &error {
        put("error.type", Attr::Str(e.clone()));
    } else if let Some(r) = reason {
        put("ringway.local_reply", Attr::Str(r));
    }
    let mut events = Vec::new();
    if let Some(t) = at(si.t_upstream_ready) {
        events.push(("upstream_ready", t));
    }
    if let Some(t) = at(si.t_request_sent) {
        events.push(("request_sent", t));
    }
    if let Some(t) = at(si.t_first_byte) {
        events.push(("first_response_byte", t));
    }
    let name = match &si.http_route {
        Some(r) => format!("{method} {r}"),
        None => method.to_owned(),
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
        tracestate: head
            .tracestate
            .filter(|_| ctx.keep_tracestate)
            .map(str::to_owned),
        error,
        client: si.downstream_remote,
        local,
    })
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

/// The export request body for `spans`.
pub fn encode(cfg: &Config, t: &Tracing, spans: &[FinishedSpan]) -> Vec<u8> {
    let views: Vec<SpanView> = spans.iter().filter_map(|s| view(cfg, s)).collect();
    let doc = match t.format {
        TraceFormat::OtlpJson => otlp(t, &views),
        TraceFormat::ZipkinJson => zipkin(t, &views),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// OTLP/HTTP JSON (`ExportTraceServiceRequest`): ids as lower-case hex, 64-bit integers as
/// decimal strings, enums as numbers, as the OTLP specification asks.
fn otlp(t: &Tracing, views: &[SpanView]) -> Value {
    let attr = |k: &str, v: &Attr| {
        let value = match v {
            Attr::Str(s) => json!({ "stringValue": s }),
            Attr::Int(i) => json!({ "intValue": i.to_string() }),
            Attr::Bool(b) => json!({ "boolValue": b }),
        };
        json!({ "key": k, "value": value })
    };
    let spans: Vec<Value> = views
        .iter()
        .map(|v| {
            let mut span = Map::new();
            span.insert("traceId".into(), hex_trace(&v.ctx, false).into());
            span.insert("spanId".into(), hex_span(v.ctx.span_id).into());
            if v.ctx.parent_id != 0 {
                span.insert("parentSpanId".into(), hex_span(v.ctx.parent_id).into());
            }
            if let Some(ts) = &v.tracestate {
                span.insert("traceState".into(), ts.clone().into());
            }
            span.insert("name".into(), v.name.clone().into());
            span.insert("kind".into(), json!(2)); // SPAN_KIND_SERVER
            span.insert("startTimeUnixNano".into(), v.start_ns.to_string().into());
            span.insert("endTimeUnixNano".into(), v.end_ns.to_string().into());
            span.insert(
                "attributes".into(),
                v.attrs.iter().map(|(k, a)| attr(k, a)).collect(),
            );
            span.insert(
                "events".into(),
                v.events
                    .iter()
                    .map(|(name, at)| json!({ "timeUnixNano": at.to_string(), "name": name }))
                    .collect(),
            );
            span.insert(
                "status".into(),
                match &v.error {
                    Some(e) => json!({ "code": 2, "message": e }), // STATUS_CODE_ERROR
                    None => json!({}),
                },
            );
            Value::Object(span)
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                attr("service.name", &Attr::Str(t.service_name.clone())),
                attr("service.version", &Attr::Str(env!("CARGO_PKG_VERSION").into())),
                attr("telemetry.sdk.name", &Attr::Str("ringway".into())),
            ]},
            "scopeSpans": [{
                "scope": { "name": "ringway", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }]
    })
}

fn endpoint(addr: SocketAddr, service: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(s) = service {
        m.insert("serviceName".into(), s.into());
    }
    match addr.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => {
            m.insert("ipv4".into(), ip.to_string().into());
        }
        std::net::IpAddr::V6(ip) if !ip.is_unspecified() => {
            m.insert("ipv6".into(), ip.to_string().into());
        }
        _ => {}
    }
    if addr.port() != 0 {
        m.insert("port".into(), addr.port().into());
    }
    Value::Object(m)
}

/// Zipkin v2 JSON (`POST /api/v2/spans`): a list of spans, times in microseconds, tags as
/// strings.
fn zipkin(t: &Tracing, views: &[SpanView]) -> Value {
    views
        .iter()
        .map(|v| {
            let mut span = Map::new();
            span.insert("traceId".into(), hex_trace(&v.ctx, v.ctx.b3_short).into());
            span.insert("id".into(), hex_span(v.ctx.span_id).into());
            if v.ctx.parent_id != 0 {
                span.insert("parentId".into(), hex_span(v.ctx.parent_id).into());
            }
            span.insert("kind".into(), "SERVER".into());
            span.insert("name".into(), v.name.to_ascii_lowercase().into());
            span.insert("timestamp".into(), (v.start_ns / 1000).into());
            span.insert(
                "duration".into(),
                ((v.end_ns - v.start_ns) / 1000).max(1).into(),
            );
            span.insert(
                "localEndpoint".into(),
                endpoint(v.local, Some(&t.service_name)),
            );
            if let Some(c) = v.client {
                span.insert("remoteEndpoint".into(), endpoint(c, None));
            }
            let mut tags = Map::new();
            for (k, a) in &v.attrs {
                let s = match a {
                    Attr::Str(s) => s.clone(),
                    Attr::Int(i) => i.to_string(),
                    Attr::Bool(b) => b.to_string(),
                };
                tags.insert((*k).into(), s.into());
            }
            if let Some(e) = &v.error {
                tags.insert("error".into(), e.clone().into());
            }
            span.insert("tags".into(), Value::Object(tags));
            span.insert(
                "annotations".into(),
                v.events
                    .iter()
                    .map(|(name, at)| json!({ "timestamp": at / 1000, "value": name }))
                    .collect(),
            );
            Value::Object(span)
        })
        .collect()
}
