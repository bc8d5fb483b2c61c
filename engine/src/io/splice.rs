//! Moving bytes socket to socket through a pipe (`splice`), without copying them through user
//! memory. EXPERIMENT: measured against the bulk-buffer path.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use compio::driver::op::{Splice, SpliceFlags};

use super::Conn;

/// A pipe used as the kernel-side buffer of one spliced body.
#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// The pipe's capacity.
    pub cap: usize,
}

impl Pipe {
    /// A pipe with room for about `size` bytes.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own.
        let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
        let cap = if got > 0 { got as usize } else { 65536 };
        Ok(Pipe { r, w, cap })
    }
}

/// A raw descriptor for the length of one submission (the connection outlives the operation's
/// submission, which is when the kernel resolves it).
struct Fd(RawFd);

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is open while the operation is submitted (see the type's doc).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

async fn splice(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    let op = Splice::new(Fd(fd_in), -1, Fd(fd_out), -1, len, SpliceFlags::MOVE);
    compio::runtime::submit(op).await.0
}

impl Conn {
    /// Move at most `max` bytes that have arrived on this connection into `pipe`. `Ok(0)`: end of
    /// stream.
    pub async fn splice_in(&self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        splice(self.raw_fd(), pipe.w.as_raw_fd(), max.min(pipe.cap)).await
    }

    /// Send exactly `n` bytes from `pipe` on this connection.
    pub async fn splice_out(&self, pipe: &Pipe, mut n: usize) -> io::Result<()> {
        while n > 0 {
            match splice(pipe.r.as_raw_fd(), self.raw_fd(), n).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                m => n -= m,
            }
        }
        Ok(())
    }
}

impl Conn {
    /// EXPERIMENT: send every byte of `buf` with zero-copy sends (`IORING_OP_SEND_ZC`).
    pub async fn send_zc_all(&self, mut buf: Vec<u8>, n: usize) -> (io::Result<()>, Vec<u8>) {
        use compio::buf::IntoInner;
        use compio::buf::IoBuf;
        let mut off = 0;
        while off < n {
            let op = compio::driver::op::SendZc::new(
                Fd(self.raw_fd()),
                buf.slice(off..n),
                compio::driver::op::SendFlags::empty(),
            );
            let compio::buf::BufResult(res, op) = compio::runtime::submit(op).await;
            buf = op.into_inner().into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(m) => off += m,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }
}
