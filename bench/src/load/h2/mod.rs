//! HTTP/2 load: each connection carries `--streams` stream slots, each with its own pace
//! (closed: next request when its previous one completed; open: its share of `--rate`).
//!
//! The connection is a purpose-built client ([`client`]), not the `h2` crate: the request's
//! header block is HPACK-encoded once before the run ([`hpack::encode_request`]) and copied into
//! each HEADERS frame; responses are parsed frame by frame and their header blocks decoded
//! ([`hpack::Decoder`]) in the one task that drives the connection, slots included, so a
//! request costs no task, no wakeup of its own, no lock and no allocation. Frames are
//! batched: everything a batch of responses triggers leaves in one write. Plain TCP and TLS
//! both go through [`crate::io::PollIo`].
//!
//! A connection-level failure (GOAWAY, I/O error, protocol error) fails the streams in flight;
//! the loop here reconnects and the slots resume their schedules.

pub mod client;
pub mod frame;
pub mod hpack;
pub mod huffman;

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::pace::Pace;
use super::stats::Failure;
use super::{connect, Conn, Flow, WorkerCtx};
use crate::io::PollIo;
use client::{Client, Slot};

/// Drives one HTTP/2 connection with `paces.len()` stream slots for the whole run.
pub async fn run_conn(ctx: Rc<WorkerCtx>, paces: Vec<Pace>) {
    let mut slots: Vec<Slot> = paces.into_iter().map(Slot::new).collect();
    let block = &ctx.shared.request_h2[..];
    let body = ctx.shared.body.as_deref().unwrap_or(&[]);
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
                for s in &mut slots {
                    ctx.connect_failed(s.pace_mut()).await;
                }
                continue;
            }
        };
        let born = Instant::now();
        let mut client = Client::new(&ctx, slots, block, body);
        let flow = client.run(io).await;
        slots = client.into_slots();
        if flow == Flow::Done {
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

/// Bytes from hex digits with any whitespace between (the RFC 7541 examples' notation).
#[cfg(test)]
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
