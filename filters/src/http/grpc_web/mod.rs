//! The `grpc_web` filter (Envoy's `envoy.filters.http.grpc_web`): a browser's gRPC-Web request
//! becomes a gRPC request for the upstream, and the gRPC response becomes gRPC-Web for the
//! browser.
//!
//! ```text
//! request  content-type application/grpc-web[+proto]       ─▶ application/grpc[+proto]
//!          application/grpc-web-text[+proto] (base64 body)  ─▶ the body decoded as it streams
//! response content-type application/grpc                   ─▶ the client's gRPC-Web type
//!          body (text: base64-encoded as it streams), then the trailers as one more frame
//!          (flag 0x80, `name:value\r\n` lines) at the end of the body
//!          a trailers-only response (grpc-status in the head) ─▶ a body of that one frame
//! ```
//!
//! Requests that are not gRPC-Web pass untouched. CORS (browsers call from another origin) is
//! the `cors` filter's: put it before this one and expose `grpc-status` and `grpc-message`.
//! HTTP/2 upstreams need `te: trailers`, which the router sends with every gRPC request.
//!
//! Stats: `grpc_web.rq_total` (gRPC-Web requests converted).

#[cfg(test)]
mod tests;

use std::{rc::Rc, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    base64,
    filter::{
        Ctx, DataStatus, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, LocalReply,
        WorkerInfo,
    },
    registry::ParseResult,
    stats::{Counters, StatSet},
    stream::{BodySize, HeaderMap, RequestHead, ResponseHead},
};

/// Validate a `grpc_web` config (Envoy's has no keys either).
pub fn parse(v: &serde_json::Value) -> ParseResult {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {}
    let _: Spec = crate::registry::decode(v)?;
    Ok(Arc::new(GrpcWebConfig {
        stats: StatSet::new("grpc_web.", &["rq_total"]),
    }))
}

#[derive(Debug)]
struct GrpcWebConfig {
    stats: StatSet,
}

impl FilterConfig for GrpcWebConfig {
    fn name(&self) -> &'static str {
        "grpc_web"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(Factory {
            stats: self.stats.worker(),
        })
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.stats.snapshot()
    }
}

struct Factory {
    stats: Arc<Counters>,
}

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        Hooks {
            request_headers: true,
            request_data: true,
            response_headers: true,
            response_data: true,
            response_trailers: true,
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(GrpcWeb {
            stats: Arc::clone(&self.stats),
            on: None,
            pending: BytesMut::new(),
        })
    }
}

/// What a gRPC-Web request said about itself.
#[derive(Debug, Clone, Copy)]
struct Web {
    /// `-text`: bodies are base64 both ways.
    text: bool,
    /// `+proto` (or no suffix: the content-type answered with says `+proto` either way, as
    /// Envoy's does).
    proto: bool,
}

struct GrpcWeb {
    stats: Arc<Counters>,
    /// `Some`: this request is gRPC-Web.
    on: Option<Web>,
    /// Text mode: base64 characters (request) or bytes (response) left over from a piece,
    /// waiting for the rest of their group.
    pending: BytesMut,
}

const CT: &[u8] = b"application/grpc-web";
const CT_TEXT: &[u8] = b"application/grpc-web-text";

impl Web {
    fn of(req: &RequestHead) -> Option<Web> {
        let ct = req.headers.get_bytes("content-type")?;
        let lower = ct.to_ascii_lowercase();
        if !lower.starts_with(CT) {
            return None;
        }
        let text = lower.starts_with(CT_TEXT);
        let rest = &lower[if text { CT_TEXT.len() } else { CT.len() }..];
        match rest {
            b"" | b"+proto" => Some(Web { text, proto: true }),
            _ if rest.starts_with(b"+") => Some(Web { text, proto: false }),
            _ => None,
        }
    }

    fn response_type(self) -> &'static str {
        match self.text {
            true => "application/grpc-web-text+proto",
            false => "application/grpc-web+proto",
        }
    }
}

/// The trailer frame: flag 0x80, big-endian length, `name:value\r\n` lines (names lower-case).
fn trailer_frame(fields: &[(&[u8], &[u8])]) -> BytesMut {
    let len: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 3).sum();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0x80);
    out.put_u32(len as u32);
    for (n, v) in fields {
        out.extend(n.iter().map(u8::to_ascii_lowercase));
        out.put_u8(b':');
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl GrpcWeb {
    /// Text mode: base64 the frame for the client.
    fn out(&self, frame: BytesMut) -> Bytes {
        match self.on.is_some_and(|w| w.text) {
            true => base64::encode(&frame).into(),
            false => frame.freeze(),
        }
    }
}

impl HttpFilter for GrpcWeb {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let Some(web) = Web::of(head) else {
            return HeadersStatus::Continue;
        };
        self.on = Some(web);
        self.stats.inc(0);
        head.headers.set(
            "content-type",
            if web.proto {
                "application/grpc+proto"
            } else {
                "application/grpc"
            },
        );
        if web.text && head.body != BodySize::Empty {
            // The decoded body is shorter than what arrives.
            head.body = BodySize::Unknown;
        }
        HeadersStatus::Continue
    }

    fn on_request_data(&mut self, data: &mut Bytes, end: bool, _cx: &mut Ctx<'_>) -> DataStatus {
        if !self.on.is_some_and(|w| w.text) {
            return DataStatus::Continue;
        }
        self.pending
            .extend(data.iter().filter(|b| !b.is_ascii_whitespace()));
        let whole = if end {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        let chars = self.pending.split_to(whole);
        match base64::decode(&chars) {
            Some(bytes) => {
                *data = bytes.into();
                DataStatus::Continue
            }
            None => DataStatus::LocalReply(LocalReply::error(
                400,
                "grpc_web_bad_base64",
                "gRPC-Web text body is not base64",
            )),
        }
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        end_stream: bool,
        _cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        let Some(web) = self.on else {
            return HeadersStatus::Continue;
        };
        self.pending.clear();
        if end_stream && head.headers.contains("grpc-status") {
            // Trailers-only: the status goes to the body as its one frame.
            let mut moved: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut keep = HeaderMap::default();
            for (n, v) in head.headers.iter() {
                if n.len() > 5 && n[..5].eq_ignore_ascii_case(b"grpc-") {
                    moved.push((n.to_vec(), v.to_vec()));
                } else if !n.eq_ignore_ascii_case(b"content-type") {
                    keep.append(n, v);
                }
            }
            keep.append("content-type", web.response_type());
            let fields: Vec<(&[u8], &[u8])> = moved.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let body = self.out(trailer_frame(&fields));
            return HeadersStatus::LocalReply(LocalReply {
                status: 200,
                headers: keep,
                body,
                reason: None,
            });
        }
        head.headers.set("content-type", web.response_type());
        // The trailers join the body.
        head.body = BodySize::Unknown;
        HeadersStatus::Continue
    }

    fn on_response_data(&mut self, data: &mut Bytes, end: bool, _cx: &mut Ctx<'_>) -> DataStatus {
        if !self.on.is_some_and(|w| w.text) {
            return DataStatus::Continue;
        }
        self.pending.extend_from_slice(data);
        let whole = if end {
            self.pending.len()
        } else {
            self.pending.len() / 3 * 3
        };
        let bytes = self.pending.split_to(whole);
        *data = base64::encode(&bytes).into();
        DataStatus::Continue
    }

    fn on_response_trailers(&mut self, trailers: &mut HeaderMap, _cx: &mut Ctx<'_>) -> DataStatus {
        if self.on.is_none() {
            return DataStatus::Continue;
        }
        let fields: Vec<(&[u8], &[u8])> = trailers.iter().collect();
        let frame = trailer_frame(&fields);
        let out = self.out(frame);
        trailers.clear();
        DataStatus::Append(out)
    }

    fn recycle(&mut self) -> bool {
        self.on = None;
        self.pending.clear();
        true
    }
}
