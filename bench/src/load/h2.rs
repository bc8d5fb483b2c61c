//! HTTP/2 load with the `h2` crate: each connection carries `--streams` concurrent stream
//! slots, each slot a task with its own pace (closed: next request when its previous one
//! completed; open: its share of `--rate`). The connection itself is driven by one more task.
//! A connection-level failure (GOAWAY, reset, I/O error) ends every slot; the supervisor
//! reconnects and the slots resume their schedules.
//!
//! Per request, `h2` allocates its stream state and we clone the prebuilt `http::Request`
//! (header map included): that is the cost of using the crate, and it is the only allocation.

use std::future::poll_fn;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::pace::Pace;
use super::stats::Failure;
use super::{connect, Conn, Flow, WorkerCtx};
use crate::io::PollIo;

/// Drives one HTTP/2 connection with `paces.len()` stream slots for the whole run.
pub async fn run_conn(ctx: Rc<WorkerCtx>, mut paces: Vec<Pace>) {
    // One deadline per stream slot for the whole run (reconnects reuse them).
    let watches: Vec<Rc<super::Watch>> = paces.iter().map(|_| ctx.watch()).collect();
    loop {
        if Instant::now() >= ctx.window.end {
            return;
        }
        let io = match connect(&ctx).await {
            Ok(Conn::Plain(s)) => PollIo::plain(s),
            Ok(Conn::Tls(t)) => {
                if t.alpn() != Some(b"h2") {
                    eprintln!("ringway-bench: server did not negotiate h2 over TLS (ALPN)");
                    ctx.failure(Instant::now(), Failure::Parse);
                    backoff(&ctx).await;
                    continue;
                }
                *t
            }
            Err(()) => {
                for p in &mut paces {
                    ctx.connect_failed(p).await;
                }
                continue;
            }
        };
        let born = Instant::now();
        let handshake = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .max_concurrent_reset_streams(1024)
            .handshake::<_, Bytes>(io)
            .await;
        let (client, conn) = match handshake {
            Ok(x) => x,
            Err(_) => {
                ctx.failure(Instant::now(), Failure::Connect);
                backoff(&ctx).await;
                continue;
            }
        };
        let driver = compio::runtime::spawn(async move {
            let _ = conn.await;
        });
        let tasks: Vec<_> = paces
            .drain(..)
            .zip(&watches)
            .map(|(p, w)| {
                compio::runtime::spawn(slot(client.clone(), ctx.clone(), p, Rc::clone(w)))
            })
            .collect();
        drop(client);
        let mut all_done = true;
        for t in tasks {
            match t.await {
                Ok((p, flow)) => {
                    all_done &= matches!(flow, Flow::Done);
                    paces.push(p);
                }
                Err(_) => return,
            }
        }
        drop(driver);
        if all_done {
            return;
        }
        if born.elapsed() < Duration::from_millis(100) {
            // A server that refuses HTTP/2 must not turn into a reconnect storm.
            backoff(&ctx).await;
        }
    }
}

async fn backoff(ctx: &WorkerCtx) {
    let until = (Instant::now() + Duration::from_millis(50)).min(ctx.window.end);
    compio::time::sleep_until(until).await;
}

/// One stream slot: requests one after another (closed loop) or on its schedule (open loop),
/// each bounded by `watch` (checked by the worker's watchdog: no runtime timer per request).
async fn slot(
    mut client: SendRequest<Bytes>,
    ctx: Rc<WorkerCtx>,
    mut pace: Pace,
    watch: Rc<super::Watch>,
) -> (Pace, Flow) {
    loop {
        let Some(intended) = pace.next(&ctx.window).await else {
            return (pace, Flow::Done);
        };
        watch.arm(ctx.shared.timeout);
        let got = watch.bound(request(&mut client, &ctx)).await;
        watch.disarm();
        match got {
            Some(Ok((status, bytes))) => ctx.response(intended, Instant::now(), status, bytes),
            Some(Err((f, conn_dead))) => {
                ctx.failure(intended, f);
                if conn_dead {
                    return (pace, Flow::Reconnect);
                }
            }
            None => ctx.failure(intended, Failure::Timeout),
        }
    }
}

/// One request on a stream: (status, body bytes), or the failure and whether the connection died.
async fn request(
    client: &mut SendRequest<Bytes>,
    ctx: &WorkerCtx,
) -> Result<(u16, u64), (Failure, bool)> {
    let dead = |e: h2::Error| {
        let conn = e.is_io() || e.is_go_away() || e.is_library();
        (
            if e.is_io() {
                Failure::Read
            } else {
                Failure::Parse
            },
            conn,
        )
    };
    poll_fn(|cx| client.poll_ready(cx)).await.map_err(dead)?;
    let body = ctx.shared.body.as_ref();
    let (resp, mut send) = client
        .send_request(ctx.shared.request_h2.clone(), body.is_none())
        .map_err(dead)?;
    if let Some(b) = body {
        send.send_data(b.clone(), true).map_err(dead)?;
    }
    let resp = resp.await.map_err(dead)?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(dead)?;
        bytes += chunk.len() as u64;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok((status, bytes))
}
