//! Moving a large raw body in big pieces.
//!
//! [`body::pump`](super::body::pump) starts every body on the worker's provided buffers (16 KiB
//! per receive, no buffer held while the sender is quiet). When a receive comes back full — the
//! sender is ahead of us — and the body still has at least [`BULK_MIN`] to come, the pump leases
//! one bulk buffer ([`BulkBufs`], 1 MiB) and hands the body here: receive up to 1 MiB, send it,
//! repeat. A 1 GiB body then costs about 1,024 receives and 1,024 sends instead of 65,536 of each,
//! and each send hands the kernel a large piece (fewer wake-ups of the receiver). Only raw bytes
//! come here (Content-Length or close-delimited bodies with no data filter); a body leaving
//! chunked gets each piece framed as one chunk in the same vectored send.
//!
//! Backpressure stays: the next receive is posted only when the previous send has completed, so
//! a slow receiver stops the reads with at most one buffer in flight. A receive never asks for
//! more than the body has left, so bytes past the body (a pipelined request) stay in the socket.
//! As soon as a receive comes back short (the sender is now slower than us), the body goes back
//! to the pool path and the buffer to the worker: an idle or trickling stream never pins one.
//!
//! Tried and measured, not kept (docs/benchmarks.md): receiving the next piece while sending the
//! last (two buffers; no faster), `splice` through a pipe (io_uring runs socket splices on
//! io-wq threads: less CPU, less throughput, one blocked kernel thread per transfer), and
//! `send_zc`.

use std::cell::Cell;

use bytes::Bytes;
use compio::buf::{IntoInner, IoBuf, Slice};

use crate::{
    http::{
        body::{PumpError, ReadTimeout},
        h1,
    },
    io::{BulkBufs, BulkLease, Conn, READ_BUF_LEN},
    stats::{self, WorkerStats},
};

/// The least a length-framed body must still have to come for bulk mode to pay.
pub const BULK_MIN: u64 = 64 * 1024;

/// How a bulk run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BulkEnd {
    /// The body ended (and, leaving chunked, its last chunk was written).
    Ended,
    /// A receive came back short: the rest of the body goes back to pool reads.
    Slowed,
    /// The worker's bulk buffers are all leased: stay on pool reads.
    NoBuffers,
}

/// What a pump needs for bulk mode: its worker's buffers, and where their use is counted
/// (`worker.<n>.body_bulk_runs`, `body_bulk_no_buffer`).
#[derive(Debug, Clone, Copy)]
pub struct Bulk<'a> {
    pub bufs: &'a BulkBufs,
    pub stats: &'a WorkerStats,
}

/// Whether a body whose last pool receive returned `got` bytes, with `left` still to come
/// (`None`: until close), should go bulk.
pub fn worth_it(got: usize, left: Option<u64>) -> bool {
    got >= READ_BUF_LEN && left.is_none_or(|l| l >= BULK_MIN)
}

/// One body's bulk run: where it comes from and goes, and what is left.
pub struct Run<'a> {
    pub src: &'a Conn,
    pub dst: &'a Conn,
    /// Bytes still to come (`None`: until the sender closes); kept current.
    pub left: Cell<Option<u64>>,
    /// The body leaves chunked.
    pub chunked_out: bool,
    pub timeout: ReadTimeout<'a>,
    /// Body bytes written to `dst` so far (the caller's count, kept current).
    pub moved: &'a Cell<u64>,
}

/// One piece of a vectored send: a chunk's framing, or the bulk buffer.
enum Part {
    Bytes(Bytes),
    Buf(Slice<Vec<u8>>),
}

impl IoBuf for Part {
    fn as_init(&self) -> &[u8] {
        match self {
            Part::Bytes(b) => b,
            Part::Buf(s) => s.as_init(),
        }
    }
}

const CRLF: &[u8] = b"\r\n";
const CRLF_LAST: &[u8] = b"\r\n0\r\n\r\n";

impl Run<'_> {
    /// Move the body in bulk until it ends or slows down. The caller has checked
    /// [`worth_it`].
    pub async fn go(&self, bulk: Bulk<'_>) -> Result<BulkEnd, PumpError> {
        let Some(lease) = bulk.bufs.lease() else {
            stats::inc(&bulk.stats.body_bulk_no_buffer);
            return Ok(BulkEnd::NoBuffers);
        };
        // Bulk receives bypass the pool: the source's multishot receive must be stopped and
        // drained first (until then the body goes on in pool pieces, and this is tried again).
        if !self.src.hold_multishot() {
            return Ok(BulkEnd::Slowed);
        }
        let end = self.run(bulk, lease).await;
        self.src.release_multishot();
        end
    }

    async fn run(&self, bulk: Bulk<'_>, mut lease: BulkLease<'_>) -> Result<BulkEnd, PumpError> {
        stats::inc(&bulk.stats.body_bulk_runs);
        let mut buf = lease.take();
        let end = loop {
            let n;
            (n, buf) = self.read(buf).await?;
            if n == 0 {
                // Only a close-delimited body gets here (a short length-framed one fails in
                // `read`): the close ends it.
                if self.chunked_out {
                    let (r, _) = self
                        .dst
                        .write_all_keep(Bytes::from_static(h1::LAST_CHUNK))
                        .await;
                    r.map_err(PumpError::DstWrite)?;
                }
                break BulkEnd::Ended;
            }
            let last = self.left.get() == Some(0);
            buf = self.write(buf, n, last).await?;
            if last {
                break BulkEnd::Ended;
            }
            if n < READ_BUF_LEN {
                break BulkEnd::Slowed;
            }
        };
        lease.put(buf);
        Ok(end)
    }

    /// Receive the next piece (at most what the body has left).
    async fn read(&self, buf: Vec<u8>) -> Result<(usize, Vec<u8>), PumpError> {
        let left = self.left.get();
        let max = left.map_or(usize::MAX, |l| l.min(usize::MAX as u64) as usize);
        let op = self.src.read_into(buf, max);
        let (res, buf) = match self.timeout {
            Some((drain, t)) => drain
                .before(drain.deadline_in(t), op)
                .await
                .ok_or(PumpError::SrcTimeout)?,
            None => op.await,
        };
        let n = match (res, left) {
            (Ok(0), Some(_)) => return Err(PumpError::SrcClosed),
            (Ok(n), _) => n,
            (Err(e), Some(_)) => return Err(PumpError::SrcRead(e)),
            // A reset ends a close-delimited body, as on the pool path.
            (Err(_), None) => 0,
        };
        self.left.set(left.map(|l| l - n as u64));
        Ok((n, buf))
    }

    /// Send the `n` bytes of `buf` (framed as a chunk when leaving chunked, with the last chunk
    /// after it when `last`) and hand the buffer back.
    async fn write(&self, buf: Vec<u8>, n: usize, last: bool) -> Result<Vec<u8>, PumpError> {
        let buf = if self.chunked_out {
            let mut hdr = bytes::BytesMut::with_capacity(18);
            h1::encode_chunk_header(n, &mut hdr);
            let tail = if last { CRLF_LAST } else { CRLF };
            let parts = [
                Part::Bytes(hdr.freeze()),
                Part::Buf(buf.slice(0..n)),
                Part::Bytes(Bytes::from_static(tail)),
            ];
            let (r, parts) = self.dst.write_vectored_all_keep(parts).await;
            r.map_err(PumpError::DstWrite)?;
            let [_, p, _] = parts;
            match p {
                Part::Buf(s) => s.into_inner(),
                Part::Bytes(_) => Vec::new(),
            }
        } else {
            let (r, buf) = self.dst.write_all_keep(buf).await;
            r.map_err(PumpError::DstWrite)?;
            buf
        };
        self.moved.set(self.moved.get() + n as u64);
        Ok(buf)
    }
}
