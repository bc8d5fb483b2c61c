//! Large owned buffers for bodies that turn out large, and the seam operations that use them.
//!
//! The provided-buffer pool hands out [`READ_BUF_LEN`](super::READ_BUF_LEN) pieces: right for
//! heads and small bodies, and it keeps idle connections free of buffers. A 1 GiB body in 16 KiB
//! pieces costs 65,536 receives and as many sends, each about one ring round trip. While a body
//! arrives faster than one pool buffer per receive, the body pump (`http::bulk`) leases one
//! [`BULK_LEN`] buffer from its worker's [`BulkBufs`] instead, receives into it
//! ([`Conn::read_into`]) and sends it ([`Conn::write_all_keep`]), and gives it back the moment the
//! body slows down or ends. An idle connection never holds one.
//!
//! Memory is bounded per worker: at most [`BULK_MAX`] buffers exist at once, leased or kept for
//! reuse (a pump that cannot lease one stays on the pool path), so bulk bodies cost at most
//! `BULK_LEN × BULK_MAX` (16 MiB) per worker whatever the number of transfers.

use std::{
    cell::{Cell, RefCell},
    io,
};

use compio::{
    buf::{BufResult, IntoInner, IoBuf},
    io::AsyncRead,
};

use super::Conn;

/// Size of one bulk buffer: the most one bulk receive returns. 1 MiB measured best (256 KiB
/// and 512 KiB moved less per CPU-second, 2 MiB no more; docs/benchmarks.md).
pub const BULK_LEN: usize = 1024 * 1024;
/// Most bulk buffers one worker has at once, leased or kept for reuse.
pub const BULK_MAX: usize = 16;
/// Most free bulk buffers one worker keeps for reuse (within [`BULK_MAX`]).
const BULK_SPARE: usize = 4;

/// A worker's bulk buffers: the bound on their number and the free ones kept for reuse.
#[derive(Debug, Default)]
pub struct BulkBufs {
    spare: RefCell<Vec<Vec<u8>>>,
    in_use: Cell<usize>,
}

impl BulkBufs {
    /// Lease a buffer, or `None` when the worker's bound is reached.
    pub fn lease(&self) -> Option<BulkLease<'_>> {
        if self.in_use.get() >= BULK_MAX {
            return None;
        }
        self.in_use.set(self.in_use.get() + 1);
        let buf = self
            .spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BULK_LEN));
        Some(BulkLease {
            home: self,
            buf: Some(buf),
        })
    }

    /// Buffers leased right now.
    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

/// One leased bulk buffer. The buffer itself moves into each operation and back
/// ([`BulkLease::take`], [`BulkLease::put`]); if an operation is abandoned (a timeout), the
/// runtime frees the buffer once the kernel is done with it and the lease only gives its place
/// back.
#[derive(Debug)]
pub struct BulkLease<'a> {
    home: &'a BulkBufs,
    buf: Option<Vec<u8>>,
}

impl BulkLease<'_> {
    /// The buffer for the next operation (a fresh one if the last was lost).
    pub fn take(&mut self) -> Vec<u8> {
        self.buf
            .take()
            .unwrap_or_else(|| Vec::with_capacity(BULK_LEN))
    }

    /// The buffer back from an operation.
    pub fn put(&mut self, buf: Vec<u8>) {
        self.buf = Some(buf);
    }
}

impl Drop for BulkLease<'_> {
    fn drop(&mut self) {
        let home = self.home;
        home.in_use.set(home.in_use.get().saturating_sub(1));
        if let Some(b) = self.buf.take() {
            let mut spare = home.spare.borrow_mut();
            let room = spare.len() < BULK_SPARE && home.in_use.get() + spare.len() < BULK_MAX;
            if room && b.capacity() == BULK_LEN {
                spare.push(b);
            }
        }
    }
}

impl Conn {
    /// Receive at most `max` bytes (and at most the buffer's capacity) into `buf`, replacing
    /// what it held. `Ok(0)` is end of stream. The buffer comes back whatever the result.
    pub async fn read_into(&self, mut buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let mut s = &self.stream;
        // A receive fills the buffer after its initialized part.
        buf.clear();
        let cap = buf.capacity().min(max);
        let BufResult(res, slice) = s.read(buf.slice(0..cap)).await;
        (res, slice.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_bounded_and_buffers_reused_within_the_bound() {
        let bufs = BulkBufs::default();
        let mut leases: Vec<_> = (0..BULK_MAX).map_while(|_| bufs.lease()).collect();
        assert_eq!(leases.len(), BULK_MAX);
        assert!(bufs.lease().is_none(), "the bound holds");
        assert_eq!(bufs.in_use(), BULK_MAX);
        // A buffer lost in an abandoned operation: the lease still gives its place back.
        let mut lost = leases.pop().expect("a lease");
        drop(lost.take());
        drop(lost);
        assert_eq!(bufs.in_use(), BULK_MAX - 1);
        let again = bufs.lease().expect("room again");
        drop(again);
        drop(leases);
        assert_eq!(bufs.in_use(), 0);
        let kept = bufs.spare.borrow().len();
        assert!((1..=BULK_SPARE).contains(&kept), "kept {kept}");
        // A reused buffer comes back with its full capacity.
        let mut l = bufs.lease().expect("lease");
        assert_eq!(l.take().capacity(), BULK_LEN);
    }
}
