//! Parking: an idle connection leaves the ring and waits in the worker's epoll set, holding no
//! task, no receive and no buffer (the connection manager's side is `http::park`).
//!
//! Data flow: [`Conn::quiesce`] holds the connection's multishot receive and waits for the
//! cancelled receive to finish (anything that arrived meanwhile is read first: parking never
//! loses a byte); [`Conn::into_fd`] then takes the socket back from the runtime once the last
//! operation has let go of it. The fd goes into the worker's [`Epoll`] set (one-shot, readable or
//! peer-closed) under a token the caller chooses; one `IORING_OP_POLL_ADD` on the epoll fd wakes
//! the worker when any parked socket is ready, and [`Epoll::ready`] lists them without waiting
//! (`epoll_wait` with no timeout). [`Conn::resume`] wraps a ready fd as a connection again.
//!
//! Cost: a parked connection is an epoll entry in the kernel (not in the process's memory) and
//! whatever the caller keeps per token. Parking and resuming take a few syscalls each
//! (`epoll_ctl`, the batched `epoll_wait`), paid only by connections idle past the threshold.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use compio::{
    driver::{op::PollOnce, SharedFd, ToSharedFd},
    net::TcpStream,
};

use super::{multi::Quiet, Conn};

impl Conn {
    /// Whether this connection can be parked: it carries no TLS session, and its idle read can
    /// stop without losing what it received: a multishot receive (quiesced: cancelled, then
    /// read to its end), or on the epoll driver any receive (a cancelled one that had not
    /// completed read nothing: the driver makes the `recv` itself, in this thread).
    pub fn can_park(&self) -> bool {
        self.tls.is_none()
            && match &self.multi {
                Some(_) => super::multi::usable(),
                None => super::epoll(),
            }
    }

    /// Stop the receive and wait until it has finished (see [`Quiet`]). On `Data`, the caller
    /// reads on ([`Conn::release_multishot`] first); on `Yes`, [`Conn::into_fd`] may follow.
    /// Called once the idle read's future is gone.
    pub async fn quiesce(&self) -> Quiet {
        let Some(m) = &self.multi else {
            // On epoll the dropped read was cancelled before it read anything.
            return if super::epoll() {
                Quiet::Yes
            } else {
                Quiet::Data
            };
        };
        m.hold();
        std::future::poll_fn(|cx| m.poll_quiet(cx)).await
    }

    /// The socket, out of the runtime (after [`Conn::quiesce`] said `Yes`): waits until no
    /// operation refers to it any more. `None` if the runtime does not give it back.
    pub async fn into_fd(mut self) -> Option<OwnedFd> {
        let fd: SharedFd<socket2::Socket> = self.stream.to_shared_fd();
        // Out of the worker's edge-triggered set: the socket stays open as it leaves.
        if let Some(t) = self.ready.take() {
            super::reactor::deregister(t, fd.as_raw_fd());
        }
        drop(self);
        fd.take().await.map(OwnedFd::from)
    }

    /// A parked socket as a connection again (TCP_NODELAY was set when it was first wrapped).
    pub fn resume(fd: OwnedFd) -> io::Result<Conn> {
        let stream = TcpStream::from_std(std::net::TcpStream::from(fd))?;
        Ok(Conn::wrap(stream))
    }
}

/// A worker's epoll set of parked sockets.
pub struct Epoll {
    fd: SharedFd<OwnedFd>,
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Epoll(fd {})", self.fd.as_raw_fd())
    }
}

/// What parked sockets wait for: data, or the peer closing (one report each, then disarmed).
const EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd: SharedFd::new(fd),
        })
    }

    /// Watch `sock` under `token` edge-triggered (data or the peer closing, reported at each
    /// new arrival, never disarmed): the epoll driver's read readiness (`io::reactor`).
    pub fn add_edge(&self, sock: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, sock, &mut ev) } == 0
        {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Watch `sock` under `token`. A socket parked before (its one-shot entry disarmed) is
    /// re-armed in place.
    pub fn add(&self, sock: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: EVENTS,
            u64: token,
        };
        let epfd = self.fd.as_raw_fd();
        // SAFETY: `ev` is a valid event for the duration of the call.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sock, &mut ev) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
        // SAFETY: as above.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, sock, &mut ev) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Stop watching `sock` (it leaves for another worker).
    pub fn remove(&self, sock: RawFd) {
        // SAFETY: plain syscall on descriptors we own; a missing entry is not an error here.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                sock,
                std::ptr::null_mut(),
            )
        };
    }

    /// Completes once some parked socket is ready (one poll operation on the epoll fd).
    pub async fn wait(&self) -> io::Result<()> {
        let op = PollOnce::new(self.fd.clone(), compio::driver::op::Interest::Readable);
        compio::runtime::submit(op).await.0.map(|_| ())
    }

    /// The sockets ready now, without waiting: `(token, peer closed)` into `out`, up to its
    /// capacity; returns how many.
    pub fn ready(&self, out: &mut Vec<(u64, bool)>, max: usize) -> usize {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let max = max.min(evs.len());
        // SAFETY: `evs` has room for `max` events.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), max as i32, 0) };
        let n = usize::try_from(n).unwrap_or(0);
        for ev in &evs[..n] {
            let closed = ev.events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            out.push((ev.u64, closed != 0));
        }
        n
    }
}

/// Whether a socket whose peer closed has nothing left to read (a `MSG_PEEK` of one byte): such
/// a parked connection is closed without being resumed.
pub fn only_eof(sock: RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: one byte into `b`, no blocking.
    let n = unsafe {
        libc::recv(
            sock,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0 || (n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN))
}
