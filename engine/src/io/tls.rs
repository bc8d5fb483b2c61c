//! TLS as a transport under the seam: a [`Conn`] that carries a rustls session reads plaintext
//! and writes plaintext, and nothing above the seam can tell.
//!
//! Data flow. Reads: the connection's ordinary receive (a pool buffer from the multishot
//! receive) brings ciphertext; rustls takes a copy of it (`read_tls`) and decrypts; the
//! plaintext is copied back into the same pool buffer when it fits in the part the kernel wrote
//! (the usual case: a buffer of ciphertext holds no more plaintext than its own length), or into
//! an owned buffer when records carried over from earlier reads make it longer. Writes: the
//! plaintext goes to rustls (`writer`), which encrypts it into its queue; the queue is drained
//! into the connection's one reused ciphertext buffer and sent, in pieces of at most
//! [`WRITE_PIECE`] so the buffer stays small. `shutdown_write` sends `close_notify` first.
//!
//! TLS connections never take the bulk body path (`hold_multishot` says "not quiet"): bulk
//! receives bypass the seam's read and would hand ciphertext up. They are not parked either.
//!
//! The handshake ([`accept`]) runs before the connection is handed to its network filter, with
//! whatever bytes the listener filters already read (the ClientHello the TLS inspector peeked
//! at) fed to rustls first.
//!
//! The client side ([`connect`], TLS to upstreams) is the same state with a rustls
//! `ClientConnection`: once the handshake is done, a pooled upstream connection's posted read
//! goes through the same loop, so post-handshake messages that arrive while it is idle (TLS 1.3
//! session tickets) are absorbed by rustls and the read stays posted: only plaintext, a
//! `close_notify` or the socket's end complete it.

use std::{
    cell::{Cell, RefCell},
    io::{self, Read as _, Write as _},
    sync::Arc,
};

use bytes::BytesMut;
use compio::buf::BufResult;
use compio::io::AsyncWriteExt;

use super::{Conn, ReadBuf};

/// Plaintext encrypted and sent at a time by one write.
pub const WRITE_PIECE: usize = 64 * 1024;

/// A connection's TLS session and its reused ciphertext buffer.
pub struct TlsState {
    session: RefCell<rustls::Connection>,
    /// Ciphertext on its way out (taken by the write in flight, given back after).
    out: Cell<Option<Vec<u8>>>,
    /// The peer sent `close_notify` or closed.
    eof: Cell<bool>,
    /// The peer sent `close_notify` (an end without it may be a truncation: [`TlsState::cut`]).
    notified: Cell<bool>,
    /// A server-side session's details, made once at the end of the handshake.
    details: Option<Arc<TlsDetails>>,
}

/// What the access log and the header policy read about a terminated TLS connection: made once
/// per connection, shared by its requests' records (an `Arc` clone per request, on TLS
/// connections only).
#[derive(Debug, Default)]
pub struct TlsDetails {
    /// The SNI name the client sent.
    pub sni: Option<Box<str>>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The IANA name of the cipher suite.
    pub cipher: &'static str,
    /// The client's certificate, when it presented one (mTLS).
    pub peer: Option<crate::x509::PeerCert>,
    /// The `x-forwarded-client-cert` element for it, built on the connection's first request
    /// that needs it (a connection serves one connection manager, so one set of details).
    pub xfcc: std::sync::OnceLock<Box<str>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsState")
    }
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The rustls error inside an I/O error from this module, if that is what it is.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// Why a TLS handshake (or a connection's first read after it) failed, as a short token for
/// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
pub fn failure_reason(e: &io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    match rustls_error(e) {
        Some(E::InvalidCertificate(c)) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_yet_valid",
            C::NotValidForName | C::NotValidForNameContext { .. } => "certificate_name_mismatch",
            C::UnknownIssuer => "certificate_unknown_issuer",
            C::Revoked => "certificate_revoked",
            _ => "certificate_invalid",
        },
        Some(E::AlertReceived(_)) => "alert_received",
        Some(E::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => "not_tls",
        Some(E::NoApplicationProtocol) => "no_application_protocol",
        Some(E::InvalidMessage(_) | E::PeerMisbehaved(_)) => "protocol_error",
        Some(E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. }) => {
            "protocol_error"
        }
        Some(_) => "handshake_error",
        None if e.kind() == io::ErrorKind::UnexpectedEof => "peer_closed",
        None if e.kind() == io::ErrorKind::TimedOut => "handshake_timeout",
        None => "connection_error",
    }
}

impl TlsState {
    /// Feed ciphertext to rustls and process it. `Ok(true)`: the peer has closed.
    fn absorb(&self, mut data: &[u8]) -> io::Result<bool> {
        let mut s = self.session.borrow_mut();
        while !data.is_empty() {
            if s.read_tls(&mut data)? == 0 {
                break;
            }
            let st = s.process_new_packets().map_err(tls_err)?;
            if st.peer_has_closed() {
                self.eof.set(true);
                self.notified.set(true);
            }
        }
        Ok(self.eof.get())
    }

    /// Decrypted bytes waiting, into `buf` (a pool buffer whose first `buf.len()` bytes the
    /// kernel wrote) when they fit, else into an owned buffer. `None`: nothing waiting.
    fn plaintext(&self, buf: Option<ReadBuf>) -> io::Result<Option<ReadBuf>> {
        let mut s = self.session.borrow_mut();
        let n = s
            .process_new_packets()
            .map_err(tls_err)?
            .plaintext_bytes_to_read();
        if n == 0 {
            return Ok(None);
        }
        match buf {
            Some(ReadBuf::Pooled(mut b)) if n <= b.len() => {
                let m = s.reader().read(&mut b[..n])?;
                // SAFETY: shortening the initialised length.
                unsafe { compio::buf::SetLen::set_len(&mut b, m) };
                Ok(Some(ReadBuf::Pooled(b)))
            }
            _ => {
                let mut v = vec![0; n];
                let m = s.reader().read(&mut v)?;
                v.truncate(m);
                Ok(Some(ReadBuf::Owned(v)))
            }
        }
    }

    /// Decrypt a raw read: `Ready(Some(..))` plaintext, `Ready(None)` end of stream, or
    /// `Pending`-equivalent `Err(None)`: nothing yet, read again.
    pub(super) fn on_raw(
        &self,
        raw: Option<ReadBuf>,
    ) -> Result<Option<ReadBuf>, Option<io::Error>> {
        match raw {
            None => {
                self.eof.set(true);
                self.plaintext(None).map_err(Some)
            }
            Some(buf) => {
                self.absorb(&buf).map_err(Some)?;
                match self.plaintext(Some(buf)).map_err(Some)? {
                    Some(p) => Ok(Some(p)),
                    None if self.eof.get() => Ok(None),
                    None => Err(None),
                }
            }
        }
    }

    /// Plaintext already decrypted (from an earlier read), or the end of stream.
    pub(super) fn ready(&self) -> Option<io::Result<Option<ReadBuf>>> {
        match self.plaintext(None) {
            Ok(Some(p)) => Some(Ok(Some(p))),
            Ok(None) if self.eof.get() => Some(Ok(None)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Encrypt `plain` and send it all.
    pub(super) async fn write(&self, conn: &Conn, plain: &[u8]) -> io::Result<()> {
        for piece in plain.chunks(WRITE_PIECE) {
            self.session.borrow_mut().writer().write_all(piece)?;
            self.flush(conn).await?;
        }
        if plain.is_empty() {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// Encrypt several pieces and send them together.
    pub(super) async fn write_slices<'a>(
        &self,
        conn: &Conn,
        pieces: impl Iterator<Item = &'a [u8]>,
    ) -> io::Result<()> {
        let mut queued = 0;
        for p in pieces {
            self.session.borrow_mut().writer().write_all(p)?;
            queued += p.len();
            if queued >= WRITE_PIECE {
                self.flush(conn).await?;
                queued = 0;
            }
        }
        self.flush(conn).await
    }

    /// Send whatever rustls has queued.
    pub(super) async fn flush(&self, conn: &Conn) -> io::Result<()> {
        let mut out = self.out.take().unwrap_or_default();
        out.clear();
        {
            let mut s = self.session.borrow_mut();
            while s.wants_write() {
                s.write_tls(&mut out)?;
            }
        }
        if out.is_empty() {
            self.out.set(Some(out));
            return Ok(());
        }
        let mut st = &conn.stream;
        let BufResult(res, mut out) = st.write_all(out).await;
        out.clear();
        if out.capacity() <= 2 * WRITE_PIECE {
            self.out.set(Some(out));
        }
        res
    }

    /// The server-side session's details (`None` on the client side).
    /// The protocol ALPN settled on (`h2`, `http/1.1`), if any.
    pub fn alpn_is(&self, proto: &[u8]) -> bool {
        self.session.borrow().alpn_protocol() == Some(proto)
    }

    pub fn details(&self) -> Option<&Arc<TlsDetails>> {
        self.details.as_ref()
    }

    /// The connection ended without the peer's `close_notify`: whatever was delimited by its
    /// end may have been cut short by anyone on the path (RFC 9112 §9.8).
    pub(super) fn cut(&self) -> bool {
        self.eof.get() && !self.notified.get()
    }

    /// Free the reused ciphertext buffer (a connection going idle: it may have grown to a
    /// 64 KiB piece, which an idle connection must not hold).
    pub(super) fn release_idle(&self) {
        drop(self.out.take());
    }

    /// `close_notify`, sent.
    pub(super) async fn close_notify(&self, conn: &Conn) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush(conn).await
    }
}

/// Run the server side of a TLS handshake on `conn` (`first`: bytes already read from it, the
/// start of the ClientHello). On success the connection carries the session from then on. An
/// error (a bad or unfinished handshake, the peer gone) leaves the connection to be dropped;
/// rustls's alert, if any, has been sent.
pub async fn accept(
    conn: Conn,
    first: BytesMut,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<Conn> {
    let mut session = rustls::ServerConnection::new(config).map_err(tls_err)?;
    session.set_buffer_limit(None);
    handshake(conn, first, session.into(), "client").await
}

/// Run the client side of a TLS handshake on a connected upstream `conn`, naming `name` (SNI
/// and the name the certificate is verified for, by `config`'s verifier). On success the
/// connection carries the session; an error (refused certificate, a peer that does not speak
/// TLS, the peer gone) leaves it to be dropped.
pub async fn connect(
    conn: Conn,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
) -> io::Result<Conn> {
    let mut session = rustls::ClientConnection::new(config, name).map_err(tls_err)?;
    session.set_buffer_limit(None);
    handshake(conn, BytesMut::new(), session.into(), "upstream").await
}

/// Drive `session`'s handshake over `conn` (`first`: bytes already read); `peer` names the other
/// side in errors.
async fn handshake(
    mut conn: Conn,
    first: BytesMut,
    session: rustls::Connection,
    peer: &'static str,
) -> io::Result<Conn> {
    let mut state = TlsState {
        session: RefCell::new(session),
        out: Cell::new(None),
        eof: Cell::new(false),
        notified: Cell::new(false),
        details: None,
    };
    let closed = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the {peer} closed during the TLS handshake"),
        )
    };
    let mut fed = state.absorb(&first);
    loop {
        if let Err(e) = fed {
            // Send the alert rustls queued for the failure, then give up.
            let _ = state.flush(&conn).await;
            return Err(e);
        }
        if state.session.borrow().wants_write() {
            state.flush(&conn).await?;
        }
        if !state.session.borrow().is_handshaking() {
            break;
        }
        let raw = conn.read().await?.ok_or_else(closed)?;
        fed = state.absorb(&raw);
        if state.eof.get() && state.session.borrow().is_handshaking() {
            return Err(closed());
        }
    }
    if let rustls::Connection::Server(s) = &*state.session.borrow() {
        state.details = Some(Arc::new(TlsDetails {
            sni: s.server_name().map(Box::from),
            version: match s.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "",
            },
            cipher: s
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or(""),
            peer: s
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::x509::PeerCert::parse(c)),
            xfcc: std::sync::OnceLock::new(),
        }));
    }
    conn.tls = Some(Box::new(state));
    Ok(conn)
}
