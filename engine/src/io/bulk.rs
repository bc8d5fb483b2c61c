//! Large owned buffers for bodies that turn out large, and the two seam operations that use them.
//!
//! The provided-buffer pool hands out [`READ_BUF_LEN`](super::READ_BUF_LEN) pieces: right for
//! heads and small bodies, and it keeps idle connections free of buffers. A 1 GiB body in 16 KiB
//! pieces costs 65,536 receives and as many sends, each its own ring round trip. While a body
//! flows faster than one pool buffer per read, the body pump (`http::bulk`) leases two
//! [`BULK_LEN`] buffers from its worker's [`BulkBufs`] instead: it receives into one while the
//! other is being sent ([`Conn::read_into`], [`Conn::write_all_back`]), and gives them back the
//! moment the body slows down or ends. A buffer is never held by an idle connection.
//!
//! Memory is bounded per worker: at most [`BULK_IN_USE`] buffers leased at once (a pump that
//! cannot lease two stays on the pool path) and [`BULK_SPARE`] kept for reuse, so the cost is
//! `BULK_LEN × (BULK_IN_USE + BULK_SPARE)` at most, whatever the number of transfers.

use std::{
    cell::{Cell, RefCell},
    io,
};

use compio::{
    buf::{BufResult, IntoInner, IoBuf, IoVectoredBuf},
    io::{AsyncRead, AsyncWriteExt},
};

use super::Conn;

/// Size of one bulk buffer: the most one bulk receive returns.
pub const BULK_LEN: usize = 256 * 1024;
/// Most bulk buffers one worker leases at once (two per pump in bulk mode).
pub const BULK_IN_USE: usize = 32;
/// Most free bulk buffers one worker keeps for reuse (the rest are freed).
pub const BULK_SPARE: usize = 8;

/// A worker's bulk buffers: the bound on their number and the free ones kept for reuse.
#[derive(Debug)]
pub struct BulkBufs {
    spare: RefCell<Vec<Vec<u8>>>,
    in_use: Cell<usize>,
    len: usize,
}

impl Default for BulkBufs {
    fn default() -> Self {
        BulkBufs {
            spare: RefCell::default(),
            in_use: Cell::new(0),
            len: exp_knob("RINGWAY_EXP_BULK_LEN", BULK_LEN),
        }
    }
}

/// EXPERIMENT ONLY (removed before merge): a tuning knob from the environment.
pub fn exp_knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl BulkBufs {
    /// Lease two buffers at once (a pump needs a pair: one being filled, one being sent), or
    /// `None` when the worker's bound is reached.
    pub fn lease_pair(&self) -> Option<(BulkLease<'_>, BulkLease<'_>)> {
        if self.in_use.get() + 2 > BULK_IN_USE {
            return None;
        }
        Some((self.lease(), self.lease()))
    }

    fn lease(&self) -> BulkLease<'_> {
        self.in_use.set(self.in_use.get() + 1);
        let buf = self
            .spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.len));
        BulkLease {
            home: self,
            buf: Some(buf),
        }
    }

    /// Buffers leased right now.
    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

/// One leased bulk buffer. The buffer itself moves into each operation and back
/// ([`BulkLease::take`], [`BulkLease::put`]); if an operation is abandoned (a timeout), the
/// runtime frees the buffer when the kernel is done with it and the lease only gives its place
/// back.
#[derive(Debug)]
pub struct BulkLease<'a> {
    home: &'a BulkBufs,
    buf: Option<Vec<u8>>,
}

impl BulkLease<'_> {
    /// The buffer, emptied, for the next operation (a fresh one if the last was lost).
    pub fn take(&mut self) -> Vec<u8> {
        let mut b = self
            .buf
            .take()
            .unwrap_or_else(|| Vec::with_capacity(self.home.len));
        b.clear();
        b
    }

    /// The buffer back from an operation.
    pub fn put(&mut self, buf: Vec<u8>) {
        self.buf = Some(buf);
    }
}

impl Drop for BulkLease<'_> {
    fn drop(&mut self) {
        self.home
            .in_use
            .set(self.home.in_use.get().saturating_sub(1));
        if let Some(b) = self.buf.take() {
            let mut spare = self.home.spare.borrow_mut();
            if spare.len() < BULK_SPARE && b.capacity() == self.home.len {
                spare.push(b);
            }
        }
    }
}

impl Conn {
    /// Receive at most `max` bytes (and at most the buffer's capacity) into `buf`, from its
    /// start. `Ok(0)` is end of stream. The buffer comes back whatever the result.
    pub async fn read_into(&self, mut buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let mut s = &self.stream;
        // A receive fills the buffer after its initialized part.
        buf.clear();
        let cap = buf.capacity().min(max);
        let BufResult(res, slice) = s.read(buf.slice(0..cap)).await;
        (res, slice.into_inner())
    }

    /// Write every byte of `buf` and hand the buffer back.
    pub async fn write_all_back<T: IoBuf>(&self, buf: T) -> (io::Result<()>, T) {
        let mut s = &self.stream;
        let BufResult(res, buf) = s.write_all(buf).await;
        (res, buf)
    }

    /// Write every byte of several buffers and hand them back.
    pub async fn write_vectored_all_back<T: IoVectoredBuf>(&self, bufs: T) -> (io::Result<()>, T) {
        let mut s = &self.stream;
        let BufResult(res, bufs) = s.write_vectored_all(bufs).await;
        (res, bufs)
    }
}
