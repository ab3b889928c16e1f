//! The bare-socket writer over TLS (feature `tls`): an HTTP/1.1 stream that came over a
//! TLS listener, once its first request is read (`takeover.rs`), is served by the same
//! task as a plain one (`chunked.rs`), its chunks sealed into TLS records by rustls on
//! the way out. hyper and its buffers are gone, as on the plain path; what stays is the
//! socket and rustls' session (its keys, its state, and its read buffer).
//!
//! rustls holds no more than one write between writes: plaintext is taken only when
//! every record of the last write has left ([`Transport::try_write`] answers
//! `WouldBlock` until then), and at most [`MAX_WRITE`] bytes of it at a time (one
//! record's worth); what the socket did not take stays with rustls, like the rest of a
//! partial plain write, and counts on top of the outbox as that does. A writer that
//! leaves records unsent (a direct write by a sender, `connection/send.rs`) hands the
//! task an empty rest: the task flushes them ([`Transport::pending`],
//! [`Transport::try_flush`]), so a record is never left half-written behind another.
//!
//! Reads decrypt what the client sends (it sends nothing after its request but,
//! perhaps, an alert or a `close_notify`): rustls reads the socket straight into its own
//! buffer. A `close_notify` reads as the end of the stream, as a FIN does.
//!
//! The session is behind a mutex: the stream's task and a sender's direct write take
//! turns, never at once (the outbox's claim orders them), so it is never contended.

use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::sync::Mutex;

use rustls::ServerConnection;
use tokio::net::TcpStream;

use super::Transport;
use crate::sync::lock;

/// The most plaintext taken in one write: one TLS record's.
pub(crate) const MAX_WRITE: usize = 16 * 1024;

/// A TLS session over a TCP socket, for the bare-socket writer.
pub(crate) struct TlsTransport {
    tcp: TcpStream,
    session: Mutex<ServerConnection>,
}

impl TlsTransport {
    pub(crate) fn new(tcp: TcpStream, mut session: ServerConnection) -> TlsTransport {
        // Our own bound is tighter (one write, `try_write`); this one guards the rest.
        session.set_buffer_limit(Some(MAX_WRITE + 1024));
        TlsTransport {
            tcp,
            session: Mutex::new(session),
        }
    }

    /// Send what the session holds for the socket; `WouldBlock` if some is left.
    fn flush(&self, session: &mut ServerConnection) -> io::Result<()> {
        while session.wants_write() {
            session.write_tls(&mut Socket(&self.tcp))?;
        }
        Ok(())
    }

    /// Whether plaintext, or records not yet processed, wait in the session.
    fn buffered(&self) -> bool {
        let mut session = lock(&self.session);
        match session.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            // A bad record: the next read says so.
            Err(_) => true,
        }
    }
}

impl Transport for TlsTransport {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut session = lock(&self.session);
        // The last write's records first: a record is never interleaved with another.
        self.flush(&mut session)?;
        let take = buf.len().min(MAX_WRITE);
        let n = session.writer().write(&buf[..take])?;
        if n == 0 && take > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now stays with rustls until the next flush.
        match self.flush(&mut session) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut session = lock(&self.session);
        loop {
            // What the session already decrypted.
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // More from the socket, straight into rustls' buffer.
            if session.read_tls(&mut Socket(&self.tcp))? == 0 {
                return Ok(0);
            }
            let state = session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // An alert or a key update may want an answer; best effort.
            let _ = self.flush(&mut session);
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Ok(0);
            }
        }
    }

    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            if self.buffered() {
                return Ok(());
            }
            self.tcp.readable().await
        }
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.tcp.writable()
    }

    fn shutdown_write(&self) -> io::Result<()> {
        let mut session = lock(&self.session);
        session.send_close_notify();
        let _ = self.flush(&mut session);
        drop(session);
        Transport::shutdown_write(&self.tcp)
    }

    fn pending(&self) -> bool {
        lock(&self.session).wants_write()
    }

    fn try_flush(&self) -> io::Result<()> {
        self.flush(&mut lock(&self.session))
    }
}

/// The socket as rustls reads and writes it: without blocking.
struct Socket<'a>(&'a TcpStream);

impl io::Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
