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

    async fn readable(&self) -> io::Result<()> {
        // Plaintext the session decrypted already would never make the socket readable.
        if self.buffered() {
            return Ok(());
        }
        self.tcp.readable().await
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use ssehub_testkit::tls::{client_config, SelfSigned};
    use ssehub_testkit::within;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;
    use crate::connection::DirectSink;
    use crate::transport::chunked::write_all;
    use crate::TlsConfig;

    /// A TLS session over loopback with small socket buffers on both sides: the server's
    /// side as the bare writer's transport, the client's as a tokio-rustls stream.
    async fn pair() -> (
        Arc<TlsTransport>,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let cert = SelfSigned::new();
        let tls = TlsConfig::from_pem(cert.cert.clone(), cert.key.clone())
            .load()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(&[&cert.cert], &[]));
        let client = async {
            let tcp = socket.connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            socket2::SockRef::from(&tcp)
                .set_send_buffer_size(4096)
                .unwrap();
            let (tcp, session) = tls.accept(tcp).await.unwrap().into_inner();
            Arc::new(TlsTransport::new(tcp, session))
        };
        let (client, server) =
            within("the handshake", async { tokio::join!(client, server) }).await;
        (server, client)
    }

    /// Read exactly `n` plaintext bytes from `client`.
    async fn read_n(
        client: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        n: usize,
    ) -> Vec<u8> {
        let mut got = vec![0u8; n];
        within("the bytes", client.read_exact(&mut got))
            .await
            .unwrap();
        got
    }

    #[tokio::test]
    async fn a_write_ends_only_when_its_last_record_is_sent() {
        let (server, mut client) = pair().await;
        // 1 MB: with 4 KiB socket buffers, nearly every record is cut by a full socket,
        // the last one too.
        let sent: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (server, sent) = (server.clone(), sent.clone());
            tokio::spawn(async move { write_all(&*server, &sent).await })
        };
        let got = read_n(&mut client, sent.len()).await;
        within("the write", writer).await.unwrap().unwrap();
        assert!(got == sent, "the bytes differ");
        assert!(!server.pending(), "nothing is left in the session");
    }

    #[tokio::test]
    async fn a_direct_write_to_a_full_socket_leaves_the_task_a_rest_to_send() {
        let (server, mut client) = pair().await;
        // Fill the socket: the client reads nothing yet.
        let filler = vec![b'f'; 64 * 1024];
        let mut taken = 0;
        while !server.pending() {
            match server.try_write(&filler) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(taken < 64 * 1024 * 1024, "the socket never filled");
        }
        // A sender's direct write now: the session refuses it while the last record
        // waits (or takes it and holds its record), and the sender is told to wake the
        // task either way: a rest, empty in the second case.
        let frame = Bytes::from_static(b"data: x\n\n");
        let rest = server.try_send(std::slice::from_ref(&frame)).unwrap();
        let rest = rest.expect("a rest: the task must send what the socket did not take");
        // The task: the rest, then the session's records (`write_all` flushes them).
        let task = {
            let server = server.clone();
            tokio::spawn(async move { write_all(&*server, &rest).await })
        };
        let got = read_n(&mut client, taken + frame.len() + 5).await;
        within("the task's write", task).await.unwrap().unwrap();
        assert!(got.starts_with(&filler[..taken.min(filler.len())]));
        assert!(
            got.ends_with(b"9\r\ndata: x\n\n\r\n"),
            "the frame's chunk came last"
        );
        assert!(!server.pending());
    }
}
