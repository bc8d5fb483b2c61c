//! One active health check of one host: HTTP/1.1 (a request, the status against
//! `expected_statuses`), TCP (connect, optionally send bytes and find the expected ones in the
//! answer) or gRPC (`grpc.health.v1.Health/Check` over HTTP/2, SERVING passes). Runs on the
//! health thread's runtime through the same I/O seam as the workers (`io::Conn`, TLS
//! included); a connection is kept between checks when `reuse_connection` says so.

use std::{net::SocketAddr, rc::Rc, time::Duration};

use bytes::{Bytes, BytesMut};

use crate::{
    config::{HealthCheckKind, Http2Options},
    endpoint_health::CheckResult,
    io::Conn,
    upstream::WorkerTls,
};

/// What a check found: passed, or why not (and whether the failure is immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Counts towards `unhealthy_threshold` (network failures, retriable statuses).
    Fail(CheckResult),
    /// Fails the host at once (an HTTP status that is neither expected nor retriable, a gRPC
    /// NOT_SERVING).
    FailNow(CheckResult),
}

/// A connection kept between checks.
pub enum Kept {
    None,
    H1(Rc<Conn>),
    H2(h2::client::SendRequest<Bytes>),
}

/// Where and how to check.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub tls: Option<&'a WorkerTls>,
    pub connect_timeout: Duration,
    pub kind: &'a HealthCheckKind,
    /// The cluster's HTTP/2 settings (gRPC checks).
    pub h2_options: &'a Http2Options,
}

/// Largest answer read (an HTTP head and body, or the TCP check's bytes).
const MAX_ANSWER: usize = 64 * 1024;

async fn connect(t: &Target<'_>) -> Result<Conn, Verdict> {
    let c = Conn::connect(t.addr, t.connect_timeout)
        .await
        .map_err(|_| Verdict::Fail(CheckResult::ConnectFailed))?;
    match t.tls {
        None => Ok(c),
        Some(tls) => tls
            .handshake(c, t.addr, t.connect_timeout)
            .await
            .map_err(|_| Verdict::Fail(CheckResult::ConnectFailed)),
    }
}

/// Run one check. `kept` is the connection from the last check (taken; put back when it may
/// be reused); `status` gets the HTTP status seen.
pub async fn once(t: &Target<'_>, kept: &mut Kept, reuse: bool, status: &mut u16) -> Verdict {
    match t.kind {
        HealthCheckKind::Http {
            request,
            head,
            expected,
            retriable,
        } => {
            let conn = match std::mem::replace(kept, Kept::None) {
                Kept::H1(c) => c,
                _ => match connect(t).await {
                    Ok(c) => Rc::new(c),
                    Err(v) => return v,
                },
            };
            let (v, keep) = http(&conn, request, *head, expected, retriable, status).await;
            if keep && reuse {
                *kept = Kept::H1(conn);
            }
            v
        }
        HealthCheckKind::Tcp { send, receive } => {
            let conn = match std::mem::replace(kept, Kept::None) {
                Kept::H1(c) if !send.is_empty() => c,
                _ => match connect(t).await {
                    Ok(c) => Rc::new(c),
                    Err(v) => return v,
                },
            };
            let v = tcp(&conn, send, receive).await;
            // A connect-only check must connect each time to prove anything.
            if v == Verdict::Pass && reuse && !send.is_empty() {
                *kept = Kept::H1(conn);
            }
            v
        }
        HealthCheckKind::Grpc {
            service_name,
            authority,
        } => {
            let send = match std::mem::replace(kept, Kept::None) {
                Kept::H2(s) => s,
                _ => match h2_open(t).await {
                    Ok(s) => s,
                    Err(v) => return v,
                },
            };
            let (v, keep) = grpc(send.clone(), service_name, authority, t).await;
            if keep && reuse {
                *kept = Kept::H2(send);
            }
            v
        }
    }
}

fn in_ranges(status: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|&(a, b)| (a..b).contains(&status))
}

/// Send the request, read the answer. Returns the verdict and whether the connection may be
/// used again (a whole answer with a known length, no `connection: close`).
async fn http(
    conn: &Conn,
    request: &Bytes,
    head_only: bool,
    expected: &[(u16, u16)],
    retriable: &[(u16, u16)],
    status_out: &mut u16,
) -> (Verdict, bool) {
    if conn.write_all(request.clone()).await.is_err() {
        return (Verdict::Fail(CheckResult::BadAnswer), false);
    }
    let mut buf = BytesMut::new();
    loop {
        match conn.read().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            _ => return (Verdict::Fail(CheckResult::BadAnswer), false),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_ANSWER => continue,
            _ => return (Verdict::Fail(CheckResult::BadAnswer), false),
        };
        let status = resp.code.unwrap_or(0);
        *status_out = status;
        if (100..200).contains(&status) {
            let _ = buf.split_to(head_len);
            continue;
        }
        let mut length: Option<usize> = None;
        let mut keep = resp.version == Some(1);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                keep = false;
            } else if h.name.eq_ignore_ascii_case("connection") {
                keep &= !h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let body_len = if head_only || status == 204 || status == 304 {
            Some(0)
        } else {
            length
        };
        // Read a body of known length (bounded) so the connection can be reused; anything
        // else closes it after this check.
        match body_len {
            Some(n) if n <= MAX_ANSWER => {
                while buf.len() < head_len + n {
                    match conn.read().await {
                        Ok(Some(b)) => buf.extend_from_slice(&b),
                        _ => {
                            keep = false;
                            break;
                        }
                    }
                }
                keep &= buf.len() == head_len + n;
            }
            _ => keep = false,
        }
        let verdict = if in_ranges(status, expected) {
            Verdict::Pass
        } else if in_ranges(status, retriable) {
            Verdict::Fail(CheckResult::Status)
        } else {
            Verdict::FailNow(CheckResult::Status)
        };
        return (verdict, keep);
    }
}

/// Each `receive` block must appear in the answer, in order (not necessarily adjacent).
fn blocks_found(answer: &[u8], blocks: &[Vec<u8>]) -> bool {
    let mut at = 0;
    for b in blocks {
        if b.is_empty() {
            continue;
        }
        match answer[at..]
            .windows(b.len())
            .position(|w| w == b.as_slice())
        {
            Some(p) => at += p + b.len(),
            None => return false,
        }
    }
    true
}

async fn tcp(conn: &Conn, send: &[u8], receive: &[Vec<u8>]) -> Verdict {
    if !send.is_empty() && conn.write_all(send.to_vec()).await.is_err() {
        return Verdict::Fail(CheckResult::BadAnswer);
    }
    if receive.is_empty() {
        return Verdict::Pass;
    }
    let mut got = Vec::new();
    while !blocks_found(&got, receive) {
        match conn.read().await {
            Ok(Some(b)) if got.len() + b.len() <= MAX_ANSWER => got.extend_from_slice(&b),
            Ok(Some(_)) => return Verdict::Fail(CheckResult::Payload),
            _ => return Verdict::Fail(CheckResult::Payload),
        }
    }
    Verdict::Pass
}

async fn h2_open(t: &Target<'_>) -> Result<h2::client::SendRequest<Bytes>, Verdict> {
    let conn = connect(t).await?;
    let io = crate::io::poll::PollIo::new(Rc::new(conn), BytesMut::new());
    let o = t.h2_options;
    let mut b = h2::client::Builder::new();
    b.enable_push(false)
        .initial_window_size(o.initial_stream_window_size)
        .max_header_list_size(o.max_header_list_size);
    let (send, connection) = b
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|_| Verdict::Fail(CheckResult::BadAnswer))?;
    compio::runtime::spawn(async move {
        let _ = connection.await;
    })
    .detach();
    Ok(send)
}

/// `grpc.health.v1.HealthCheckRequest { service = 1 }`, framed as one gRPC message.
fn grpc_request_body(service: &str) -> Bytes {
    let mut msg = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        msg.push(0x0a);
        let mut n = service.len();
        while n >= 0x80 {
            msg.push((n as u8) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    Bytes::from(out)
}

/// `HealthCheckResponse.status` (field 1, an enum; 1 = SERVING) from one gRPC message.
fn grpc_serving(body: &[u8]) -> Option<u64> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body.get(5..5 + len)?;
    let mut i = 0;
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *msg.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let mut status = 0; // absent: UNKNOWN
    while i < msg.len() {
        let key = varint(&mut i)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut i)?,
            (_, 0) => {
                varint(&mut i)?;
            }
            (_, 2) => {
                let n = varint(&mut i)? as usize;
                i = i.checked_add(n)?;
            }
            (_, 1) => i += 8,
            (_, 5) => i += 4,
            _ => return None,
        }
    }
    Some(status)
}

async fn grpc(
    send: h2::client::SendRequest<Bytes>,
    service: &str,
    authority: &str,
    t: &Target<'_>,
) -> (Verdict, bool) {
    let bad = (Verdict::Fail(CheckResult::BadAnswer), false);
    let Ok(mut send) = send.ready().await else {
        return bad;
    };
    let scheme = if t.tls.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{authority}/grpc.health.v1.Health/Check");
    let Ok(req) = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "ringway/HC")
        .body(())
    else {
        return bad;
    };
    let Ok((resp, mut body)) = send.send_request(req, false) else {
        return bad;
    };
    if body.send_data(grpc_request_body(service), true).is_err() {
        return bad;
    }
    let Ok(resp) = resp.await else { return bad };
    let http_ok = resp.status() == 200;
    let mut grpc_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut recv = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let Ok(chunk) = chunk else { return bad };
        let _ = recv.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_ANSWER {
            return bad;
        }
        data.extend_from_slice(&chunk);
    }
    if grpc_status.is_none() {
        if let Ok(Some(tr)) = recv.trailers().await {
            grpc_status = tr
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
    }
    if !http_ok || grpc_status.as_deref() != Some("0") {
        return (Verdict::FailNow(CheckResult::Status), true);
    }
    match grpc_serving(&data) {
        Some(1) => (Verdict::Pass, true),
        Some(_) => (Verdict::FailNow(CheckResult::Status), true),
        None => bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_blocks_are_found_in_order_not_necessarily_adjacent() {
        let blocks = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(blocks_found(b"xxPOyyNG", &blocks));
        assert!(blocks_found(b"PONG", &blocks));
        assert!(!blocks_found(b"NGPO", &blocks));
        assert!(!blocks_found(b"PO", &blocks));
    }

    #[test]
    fn grpc_health_messages_round_trip() {
        assert_eq!(&grpc_request_body("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_request_body("svc")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        // status: SERVING (1), NOT_SERVING (2), absent (UNKNOWN), truncated.
        assert_eq!(grpc_serving(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_serving(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(grpc_serving(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(grpc_serving(&[0, 0, 0, 0, 9, 0x08]), None);
        assert_eq!(grpc_serving(&[1, 0, 0, 0, 0]), None);
    }
}
