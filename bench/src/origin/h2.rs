//! The origin's HTTP/2 side: h2c with prior knowledge (`--h2c`, detected by the connection
//! preface) and h2 over TLS (ALPN). Same routes as HTTP/1.1; every stream is its own task so
//! `/delay` on one stream does not hold up the others. `/stall` blocks the worker as in HTTP/1.
//! Large bodies (`/bytes/N`) are sent as flow control allows, never buffered whole.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response};

use super::routes::{bodiless, route, EchoJson, Route};
use super::Ctx;
use crate::http1::reason;
use crate::io::PollIo;

/// The client's connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one HTTP/2 connection.
pub async fn serve(io: PollIo, ctx: Rc<Ctx>) -> io::Result<()> {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(1024)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(h2_io)?;
    while let Some(next) = conn.accept().await {
        let (req, respond) = next.map_err(h2_io)?;
        let ctx = ctx.clone();
        compio::runtime::spawn(async move {
            let _ = stream(req, respond, &ctx).await;
        })
        .detach();
    }
    Ok(())
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return io::Error::other("h2 I/O error");
    }
    io::Error::other(e)
}

async fn stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    ctx: &Ctx,
) -> Result<(), h2::Error> {
    ctx.count();
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body_len += chunk.len() as u64;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let r = route(target.as_bytes());
    let head_method = parts.method == http::Method::HEAD;
    let wait = match r {
        Route::Delay(d) => Some(d),
        Route::Stall(_) => None,
        _ => ctx.delay,
    };
    if let Some(d) = wait.filter(|d| !d.is_zero()) {
        compio::time::sleep(d).await;
    }
    let (status, ctype, body): (u16, &str, Bytes) = match r {
        Route::Stall(d) => {
            std::thread::sleep(d);
            (ctx.status, "text/plain", ctx.body.clone())
        }
        Route::Default | Route::Delay(_) => (ctx.status, "text/plain", ctx.body.clone()),
        Route::Status(s) => (s, "text/plain", Bytes::from(format!("{}\n", reason(s)))),
        Route::Bad => (400, "text/plain", Bytes::from_static(b"bad request\n")),
        Route::Upload => (200, "text/plain", Bytes::from(format!("{body_len}\n"))),
        Route::Echo => {
            let mut out = Vec::new();
            let headers: Vec<(&[u8], &[u8])> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .collect();
            EchoJson::start(
                &mut out,
                parts.method.as_str().as_bytes(),
                target.as_bytes(),
                "HTTP/2.0",
                headers.into_iter(),
            );
            EchoJson::finish(&mut out, body_len);
            (200, "application/json", Bytes::from(out))
        }
        Route::Bytes { n, content_length } => {
            let mut resp = Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream");
            if content_length {
                resp = resp.header("content-length", n);
            }
            let resp = resp.body(()).map_err(|_| h2::Reason::INTERNAL_ERROR)?;
            let mut send = respond.send_response(resp, n == 0 || head_method)?;
            if head_method {
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                let want = left.min(ctx.chunk.len() as u64) as usize;
                send.reserve_capacity(want);
                let cap = match poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(c) => c?,
                    None => return Ok(()),
                };
                let take = cap.min(want);
                if take == 0 {
                    continue;
                }
                left -= take as u64;
                send.send_data(ctx.chunk.slice(..take), left == 0)?;
            }
            return Ok(());
        }
    };
    let no_body = head_method || bodiless(status) || body.is_empty();
    let mut resp = Response::builder().status(status);
    if !bodiless(status) {
        resp = resp
            .header("content-type", ctype)
            .header("content-length", body.len());
    }
    let resp = resp.body(()).map_err(|_| h2::Reason::INTERNAL_ERROR)?;
    let mut send = respond.send_response(resp, no_body)?;
    if !no_body {
        send.send_data(body, true)?;
    }
    Ok(())
}
