//! Binary upgrade by socket hand-over: a new ringway takes the listening sockets of the running
//! one over a Unix socket (SCM_RIGHTS), serves on them, then tells the old one to drain and
//! exit. The kernel sockets stay open throughout, so a connection waiting in an accept queue is
//! accepted by one process or the other, never refused or lost.
//!
//! The old process (started with `--upgrade-socket PATH`) runs a [`Server`] on a small
//! `ringway-upgrade` thread: it keeps a duplicate of every listener socket (and of the admin
//! socket) and answers one successor at a time on a `SOCK_SEQPACKET` socket at `PATH`:
//!
//! ```text
//! new → old   sockets
//! old → new   listener<TAB>NAME<TAB>CONFIGURED ADDR<TAB>BOUND ADDR   + its socket group's fds
//!             ... one message per listener (a group of more than 200 sockets spans several)
//!             admin<TAB>CONFIGURED ADDR<TAB>BOUND ADDR               + the admin socket's fd
//!             end
//! new → old   drain          (sent once the new process serves)
//! old → new   ok             (the old process has removed PATH and starts its drain)
//! ```
//!
//! The new process (`--upgrade-from PATH`) calls [`take_over`] before it binds anything: a
//! listener of its config with the same name and configured address as one of the old's gets the
//! old's sockets (more workers than sockets: it binds more into the same SO_REUSEPORT group;
//! fewer: a worker accepts on several), others are bound as usual. Once its workers serve,
//! [`Inherited::finish`] sends `drain`. If the new process fails before that, it just goes away:
//! the old one never stopped serving.
//!
//! Control side only: nothing here runs on a worker or per request.

use std::{
    io,
    net::{SocketAddr, TcpListener as StdListener},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use socket2::{Domain, SockAddr, Socket, Type};

/// At most this many descriptors in one message (the kernel's limit is 253).
const FDS_PER_MESSAGE: usize = 200;
/// Headers are short: a name and two addresses.
const MAX_MESSAGE: usize = 4096;
/// Each step of the exchange must answer within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener's sockets as the old process describes them.
#[derive(Debug)]
pub struct InheritedListener {
    pub name: String,
    /// The address in the old process's config (`127.0.0.1:0` stays `:0`).
    pub configured: SocketAddr,
    /// Where its sockets are bound.
    pub bound: SocketAddr,
    pub sockets: Vec<StdListener>,
}

/// What a new process got from the old one.
#[derive(Debug)]
pub struct Inherited {
    conn: Socket,
    pub listeners: Vec<InheritedListener>,
    /// (configured address, the socket).
    pub admin: Option<(SocketAddr, StdListener)>,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("upgrade from {path}: {what}: {source}")]
pub struct UpgradeError {
    pub path: PathBuf,
    pub what: &'static str,
    pub source: io::Error,
}

fn proto(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Send one message with `fds` attached.
fn send(sock: &Socket, text: &str, fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: text.as_ptr() as *mut libc::c_void,
        iov_len: text.len(),
    };
    let bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
    // u64s: the control buffer must be aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: a zeroed msghdr is a valid empty message; every pointer set below outlives the
    // sendmsg call, and the control buffer is large enough for one SCM_RIGHTS header with
    // `fds.len()` descriptors (CMSG_SPACE).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), bytes);
        }
        // A signal before anything was sent (the process's own reload and DNS signals) is
        // not a failure: a message goes whole or not at all on this socket type.
        let n = loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                break n;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        if n as usize != text.len() {
            return Err(proto("short send"));
        }
    }
    Ok(())
}

/// Receive one message: its text and the descriptors attached (close-on-exec).
fn recv(sock: &Socket) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: arithmetic only.
    let space = unsafe { libc::CMSG_SPACE((FDS_PER_MESSAGE * std::mem::size_of::<RawFd>()) as u32) }
        as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut fds = Vec::new();
    // SAFETY: the buffers outlive the call; the kernel writes at most msg_controllen bytes of
    // control data, which is walked with the CMSG_* macros within that length; each descriptor
    // read out of an SCM_RIGHTS header is new in this process and owned from here on.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // Interrupted before anything arrived: wait on (see `send`).
        let n = loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(proto("message truncated"));
        }
        n as usize
    };
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the other process closed the upgrade connection",
        ));
    }
    let text = String::from_utf8(buf[..n].to_vec()).map_err(|_| proto("not UTF-8"))?;
    Ok((text, fds))
}

fn seqpacket() -> io::Result<Socket> {
    Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)
}

fn addr(s: &str) -> io::Result<SocketAddr> {
    s.parse().map_err(|_| proto("bad address"))
}

/// Connect to the running process at `path` and take its listening sockets.
pub fn take_over(path: &Path) -> Result<Inherited, UpgradeError> {
    let err = |what: &'static str| {
        move |source| UpgradeError {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let conn = seqpacket().map_err(err("socket"))?;
    conn.connect(&SockAddr::unix(path).map_err(err("address"))?)
        .map_err(err("cannot connect to the running ringway (is it started with --upgrade-socket at this path?)"))?;
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(err("socket"))?;
    send(&conn, "sockets", &[]).map_err(err("request"))?;
    let mut listeners: Vec<InheritedListener> = Vec::new();
    let mut admin = None;
    loop {
        let (text, fds) = recv(&conn).map_err(err("receiving the sockets"))?;
        let fields: Vec<&str> = text.split('\t').collect();
        let sockets = fds.into_iter().map(StdListener::from);
        match fields.as_slice() {
            ["end"] => break,
            ["listener", name, configured, bound] => {
                let configured = addr(configured).map_err(err("receiving the sockets"))?;
                let bound = addr(bound).map_err(err("receiving the sockets"))?;
                match listeners.iter_mut().find(|l| l.name == *name) {
                    Some(l) => l.sockets.extend(sockets),
                    None => listeners.push(InheritedListener {
                        name: name.to_string(),
                        configured,
                        bound,
                        sockets: sockets.collect(),
                    }),
                }
            }
            ["admin", configured, _bound] => {
                let configured = addr(configured).map_err(err("receiving the sockets"))?;
                admin = sockets.into_iter().next().map(|s| (configured, s));
            }
            _ => return Err(err("receiving the sockets")(proto("unknown message"))),
        }
    }
    Ok(Inherited {
        conn,
        listeners,
        admin,
        path: path.to_path_buf(),
    })
}

impl Inherited {
    /// The sockets of the old listener with this name and configured address, if any.
    pub fn take_listener(
        &mut self,
        name: &str,
        configured: SocketAddr,
    ) -> Option<InheritedListener> {
        let i = self
            .listeners
            .iter()
            .position(|l| l.name == name && l.configured == configured)?;
        Some(self.listeners.swap_remove(i))
    }

    /// The old admin socket, if it was configured at this address.
    pub fn take_admin(&mut self, configured: SocketAddr) -> Option<StdListener> {
        match self.admin.take() {
            Some((a, s)) if a == configured => Some(s),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// The new process serves: tell the old one to drain and exit. Sockets not taken (listeners
    /// the new config dropped) close when `self` goes.
    pub fn finish(self) -> Result<(), UpgradeError> {
        let err = |what: &'static str| {
            let path = self.path.clone();
            move |source| UpgradeError { path, what, source }
        };
        send(&self.conn, "drain", &[]).map_err(err("asking the old process to drain"))?;
        let (text, _) = recv(&self.conn).map_err(err("waiting for the old process"))?;
        if text != "ok" {
            return Err(err("waiting for the old process")(proto(
                "unexpected answer",
            )));
        }
        Ok(())
    }
}

/// What the running process hands over: duplicates of its listening sockets, kept here.
#[derive(Debug)]
pub struct Handover {
    /// (name, configured address, bound address, the socket group).
    pub listeners: Vec<(String, SocketAddr, SocketAddr, Vec<OwnedFd>)>,
    /// (configured, bound, socket).
    pub admin: Option<(SocketAddr, SocketAddr, OwnedFd)>,
}

/// The running process's side: a thread answering successors at `path`.
#[derive(Debug, Clone)]
pub struct Server {
    state: Arc<Mutex<Option<Handover>>>,
    path: PathBuf,
}

impl Server {
    /// Bind `path` (a stale file left by a process that is gone is replaced; one a live
    /// process answers on is an error) and serve successors on a `ringway-upgrade` thread.
    /// `on_drain` runs once a successor asked for the drain (it signals the control thread).
    pub fn start(
        path: &Path,
        handover: Handover,
        on_drain: impl Fn() + Send + 'static,
    ) -> io::Result<Server> {
        let listener = seqpacket()?;
        let sa = SockAddr::unix(path)?;
        if path.exists() {
            let probe = seqpacket()?;
            if probe.connect(&sa).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        listener.bind(&sa)?;
        listener.listen(4)?;
        let server = Server {
            state: Arc::new(Mutex::new(Some(handover))),
            path: path.to_path_buf(),
        };
        let s = server.clone();
        crate::background::spawn_background("ringway-upgrade", move || {
            while let Ok((conn, _)) = listener.accept() {
                let _ = conn.set_read_timeout(Some(STEP_TIMEOUT));
                match s.serve(&conn) {
                    Ok(true) => {
                        on_drain();
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "upgrade: a successor gave up"),
                }
            }
        })?;
        Ok(server)
    }

    /// One successor. `Ok(true)`: it asked for the drain (answered, path removed).
    fn serve(&self, conn: &Socket) -> io::Result<bool> {
        loop {
            let (text, _) = match recv(conn) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            };
            match text.as_str() {
                "sockets" => {
                    let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(h) = state.as_ref() else {
                        return Err(proto("already handed over, or shutting down"));
                    };
                    for (name, configured, bound, group) in &h.listeners {
                        let fds: Vec<RawFd> = group.iter().map(AsRawFd::as_raw_fd).collect();
                        for part in fds.chunks(FDS_PER_MESSAGE) {
                            send(
                                conn,
                                &format!("listener\t{name}\t{configured}\t{bound}"),
                                part,
                            )?;
                        }
                    }
                    if let Some((configured, bound, fd)) = &h.admin {
                        send(
                            conn,
                            &format!("admin\t{configured}\t{bound}"),
                            &[fd.as_raw_fd()],
                        )?;
                    }
                    send(conn, "end", &[])?;
                    tracing::info!(
                        listeners = h.listeners.len(),
                        "upgrade: listening sockets handed to a new process"
                    );
                }
                "drain" => {
                    // Our duplicates go; the successor holds the sockets now.
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let _ = std::fs::remove_file(&self.path);
                    send(conn, "ok", &[])?;
                    tracing::info!("upgrade: the new process serves; draining");
                    return Ok(true);
                }
                _ => return Err(proto("unknown request")),
            }
        }
    }

    /// A reload changed the sockets: a successor gets these from now on.
    pub fn update(&self, handover: Handover) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_some() {
            *state = Some(handover);
        }
    }

    /// A normal shutdown: close the duplicates (so the listening sockets close with the
    /// workers' and new connections are refused, not queued) and remove the path.
    pub fn close(&self) {
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
