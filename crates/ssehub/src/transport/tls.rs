//! A TLS connection on the server (feature `tls`): rustls' *unbuffered* session over a
//! socket, with buffers of our own that are freed as soon as they are empty.
//!
//! rustls' buffered connection keeps a read buffer of at least 4 KiB for the
//! connection's life (and queues of plaintext and records); an SSE stream sits idle for
//! hours between events, so it would keep them for nothing. Here the session keeps only
//! its keys and state: bytes come from the socket into `incoming` (a record's worth at
//! most), are decrypted into `plain`, and records to send are sealed into `outgoing`;
//! each is dropped the moment nothing is left in it, so an idle stream holds no buffer.
//!
//! The same type serves the whole connection:
//! - [`accept`] runs the handshake;
//! - as `AsyncRead`/`AsyncWrite` it carries what hyper serves (HTTP/2, or HTTP/1.1
//!   requests that are not SSE streams), and the take-over's read of the first request;
//! - as a [`Transport`] it is the bare-socket writer's (`chunked.rs`) for an HTTP/1.1
//!   SSE stream, hyper and its buffers gone, as on the plain path.
//!
//! rustls holds no more than one write between writes: plaintext is taken only when
//! every record of the last write has left ([`Transport::try_write`] answers
//! `WouldBlock` until then), and at most [`MAX_WRITE`] bytes of it at a time (one
//! record's worth); what the socket did not take stays in `outgoing`, like the rest of a
//! partial plain write, and counts on top of the outbox as that does. A writer that
//! leaves records unsent (a direct write by a sender, `connection/send.rs`) hands the
//! task an empty rest: the task flushes them ([`Transport::pending`],
//! [`Transport::try_flush`]), so a record is never left half-written behind another.
//!
//! Reads decrypt what the client sends (an SSE client sends nothing after its request
//! but, perhaps, an alert or a `close_notify`). A `close_notify` reads as the end of the
//! stream, as a FIN does; an answer the session owes (a key update) is sent at once.
//!
//! The session is behind a mutex: the stream's task and a sender's direct write take
//! turns, never at once (the outbox's claim orders them), so it is never contended.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncryptError, InsufficientSizeError};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Transport;
use crate::sync::lock;

/// The most plaintext taken in one write: one TLS record's.
pub(crate) const MAX_WRITE: usize = 16 * 1024;
/// A record's header and tag, and a TLS 1.2 explicit nonce: what sealing adds, at most
/// (a larger need is asked for by rustls and met).
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1;
/// The most read from the socket at once when no record's length is known yet.
const READ_SIZE: usize = 4096;

/// A TLS connection over a TCP socket.
pub(crate) struct TlsTransport {
    tcp: TcpStream,
    session: Mutex<Session>,
}

/// The session and what is in flight through it.
///
/// Invariants: `incoming` holds no whole record between calls (each read is processed
/// at once), `plain[taken..]` is what was decrypted and not yet read, `outgoing[sent..]`
/// what was sealed and not yet sent; each of the three has no allocation when it is
/// empty.
struct Session {
    conn: UnbufferedServerConnection,
    incoming: Vec<u8>,
    plain: Vec<u8>,
    taken: usize,
    outgoing: Vec<u8>,
    sent: usize,
    /// The client sent `close_notify`: what follows reads as the end.
    peer_closed: bool,
}

/// Where the session stands once what came in is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The handshake needs more from the client.
    Handshake,
    /// Application data may be sent (and read).
    Traffic,
    /// Both sides sent `close_notify`: nothing more is sent.
    Closed,
}

/// What to seal once application data may be sent.
#[derive(Clone, Copy)]
enum Seal<'a> {
    Data(&'a [u8]),
    CloseNotify,
}

/// The handshake of a new connection, to the point where application data flows.
pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsTransport> {
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let tls = TlsTransport {
        tcp,
        session: Mutex::new(Session {
            conn,
            incoming: Vec::new(),
            plain: Vec::new(),
            taken: 0,
            outgoing: Vec::new(),
            sent: 0,
            peer_closed: false,
        }),
    };
    loop {
        let phase = lock(&tls.session).advance(None)?;
        // What the handshake made, sent before anything else happens.
        loop {
            match tls.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tls.tcp.writable().await?,
                other => break other?,
            }
        }
        if phase != Phase::Handshake {
            return Ok(tls);
        }
        tls.tcp.readable().await?;
        match lock(&tls.session).read_socket(&tls.tcp) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
    }
}

impl TlsTransport {
    /// Whether the client chose HTTP/2 (ALPN `h2`).
    pub(crate) fn is_h2(&self) -> bool {
        lock(&self.session).conn.alpn_protocol() == Some(b"h2")
    }

    /// The same connection, its socket registered afresh with the runtime: the task
    /// that polled it so far (the accepting one, whose whole future is 8.5 KiB) would
    /// otherwise stay referenced by the registration's waker for the stream's life.
    pub(crate) fn reregistered(self) -> io::Result<TlsTransport> {
        Ok(TlsTransport {
            tcp: TcpStream::from_std(self.tcp.into_std()?)?,
            session: self.session,
        })
    }

    /// Seal at most [`MAX_WRITE`] bytes of `buf` once the last write's records are all
    /// sent, and send what the socket takes of them through `send`.
    fn write_with(
        &self,
        buf: &[u8],
        send: impl Fn(&[u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut session = lock(&self.session);
        // The last write's records first: a record is never interleaved with another.
        session.flush_with(&send)?;
        let take = buf.len().min(MAX_WRITE);
        if take == 0 {
            return Ok(0);
        }
        session.advance(Some(Seal::Data(&buf[..take])))?;
        // What the socket does not take now stays sealed until the next flush.
        match session.flush_with(&send) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(take),
        }
    }

    /// Wait for nothing: hand `take` the plaintext there is (it answers how much it
    /// took), reading and decrypting what the socket has if there is none; `Ok(0)`
    /// once the client is done, `WouldBlock` if the socket has nothing either.
    fn read_with(&self, take: impl FnOnce(&[u8]) -> usize) -> io::Result<usize> {
        let mut session = lock(&self.session);
        loop {
            if !session.unread().is_empty() {
                let n = take(session.unread());
                session.consume(n);
                return Ok(n);
            }
            if session.peer_closed {
                return Ok(0);
            }
            if session.read_socket(&self.tcp)? == 0 {
                return Ok(0);
            }
            session.advance(None)?;
            // An alert or a key update may want an answer; best effort.
            let _ = session.flush(&self.tcp);
        }
    }
}

impl Session {
    /// Process what came in until the session needs more from the client or may send:
    /// its handshake records and answers go to `outgoing`, the plaintext it decrypts to
    /// `plain`. `seal`, once application data may be sent, is sealed into `outgoing`
    /// (`BrokenPipe` if it cannot be any more).
    fn advance(&mut self, mut seal: Option<Seal<'_>>) -> io::Result<Phase> {
        let Session {
            conn,
            incoming,
            plain,
            outgoing,
            peer_closed,
            ..
        } = self;
        let phase = loop {
            let status = conn.process_tls_records(incoming);
            let mut discard = status.discard;
            // Early data is never accepted (the configuration allows none): a
            // `ReadEarlyData` is as unexpected as a state this rustls does not know.
            let phase = match status.state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    // Asked for: rustls names the size a record needs.
                    append(outgoing, 0, |out| match encode.encode(out) {
                        Err(rustls::unbuffered::EncodeError::InsufficientSize(short)) => {
                            Err(Short::By(short))
                        }
                        other => other.map_err(|e| Short::Failed(invalid(e))),
                    })?;
                    None
                }
                // Sent by the caller, in order, with everything else in `outgoing`.
                ConnectionState::TransmitTlsData(sent) => {
                    sent.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::BlockedHandshake => Some(Phase::Handshake),
                ConnectionState::Closed => Some(Phase::Closed),
                ConnectionState::WriteTraffic(mut traffic) => {
                    if let Some(what) = seal.take() {
                        let guess = match what {
                            Seal::Data(data) => data.len() + RECORD_OVERHEAD,
                            Seal::CloseNotify => RECORD_OVERHEAD + 2,
                        };
                        append(outgoing, guess, |out| {
                            let sealed = match what {
                                Seal::Data(data) => traffic.encrypt(data, out),
                                Seal::CloseNotify => traffic.queue_close_notify(out),
                            };
                            match sealed {
                                Err(EncryptError::InsufficientSize(short)) => Err(Short::By(short)),
                                other => other.map_err(|e| Short::Failed(invalid(e))),
                            }
                        })?;
                    }
                    Some(Phase::Traffic)
                }
                other => return Err(invalid(format!("unexpected TLS state {other:?}"))),
            };
            incoming.drain(..discard);
            if let Some(phase) = phase {
                break phase;
            }
        };
        self.shed();
        if seal.is_some() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(phase)
    }

    /// Read what the socket has into `incoming`: at most the rest of the record begun,
    /// or [`READ_SIZE`].
    fn read_socket(&mut self, tcp: &TcpStream) -> io::Result<usize> {
        let want = match self.incoming.get(3..5) {
            Some(len) => (5 + usize::from(u16::from_be_bytes([len[0], len[1]])))
                .saturating_sub(self.incoming.len())
                .max(1),
            None => READ_SIZE,
        };
        self.incoming.reserve_exact(want);
        tcp.try_read_buf(&mut self.incoming)
    }

    /// What was decrypted and not yet read.
    fn unread(&self) -> &[u8] {
        &self.plain[self.taken..]
    }

    /// `n` bytes of [`Session::unread`] were read.
    fn consume(&mut self, n: usize) {
        self.taken += n;
        if self.taken == self.plain.len() {
            self.plain.clear();
            self.taken = 0;
            self.shed();
        }
    }

    /// Send what was sealed; `WouldBlock` if some is left.
    fn flush(&mut self, tcp: &TcpStream) -> io::Result<()> {
        self.flush_with(|records| tcp.try_write(records))
    }

    /// [`Session::flush`] through `send`.
    fn flush_with(&mut self, send: impl Fn(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        while self.sent < self.outgoing.len() {
            self.sent += send(&self.outgoing[self.sent..])?;
        }
        self.outgoing.clear();
        self.sent = 0;
        self.shed();
        Ok(())
    }

    /// Empty buffers freed: kept, they would make hyper's connections larger too
    /// (measured: 42.9 KiB per idle HTTP/2 connection against 34.1).
    fn shed(&mut self) {
        for buf in [&mut self.incoming, &mut self.plain, &mut self.outgoing] {
            if buf.is_empty() && buf.capacity() > 0 {
                *buf = Vec::new();
            }
        }
    }

    fn has_unread(&self) -> bool {
        !self.unread().is_empty() || self.peer_closed
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Why a record was not written into the room it was given.
enum Short {
    /// The room was too small: rustls names the size it needs.
    By(InsufficientSizeError),
    Failed(io::Error),
}

/// Append to `out` what `write` puts in the room it is given, `guess` bytes at first,
/// then as many as it asks for (rustls writes nothing into a room too small).
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    let at = out.len();
    let mut need = guess;
    loop {
        out.resize(at + need, 0);
        match write(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(Short::By(InsufficientSizeError { required_size })) => need = required_size,
            Err(Short::Failed(e)) => {
                out.truncate(at);
                return Err(e);
            }
        }
    }
}

impl Transport for TlsTransport {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, |records| self.tcp.try_write(records))
    }

    /// The socket written as a plain stream's direct write writes it (`transport.rs`):
    /// records it does not take are left for the task's flush, as its rest is.
    fn try_write_direct(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, |records| {
            Transport::try_write_direct(&self.tcp, records)
        })
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|unread| {
            let n = unread.len().min(buf.len());
            buf[..n].copy_from_slice(&unread[..n]);
            n
        })
    }

    async fn readable(&self) -> io::Result<()> {
        // Plaintext decrypted already would never make the socket readable.
        if lock(&self.session).has_unread() {
            return Ok(());
        }
        self.tcp.readable().await
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.tcp.writable()
    }

    fn shutdown_write(&self) -> io::Result<()> {
        let mut session = lock(&self.session);
        if session.flush(&self.tcp).is_ok() {
            let _ = session.advance(Some(Seal::CloseNotify));
            let _ = session.flush(&self.tcp);
        }
        drop(session);
        Transport::shutdown_write(&self.tcp)
    }

    fn pending(&self) -> bool {
        let session = lock(&self.session);
        session.sent < session.outgoing.len()
    }

    fn try_flush(&self) -> io::Result<()> {
        lock(&self.session).flush(&self.tcp)
    }
}
/// hyper's view of the connection (and the take-over's, for the first request): the
/// same reads and writes, waiting on the socket's readiness when they would block.
impl AsyncRead for TlsTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // Copied into the caller's buffer as it is: never initialised first (hyper's
            // and h2's are read into without, and zeroing them would make them resident).
            let read = self.read_with(|unread| {
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread[..n]);
                n
            });
            match read {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Only the socket makes a read wait (the session's plaintext is read
                    // first), and its `WouldBlock` cleared the readiness polled here.
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match Transport::try_write(&*self, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(Transport::shutdown_write(&*self))
    }
}

#[cfg(test)]
mod tests {
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
            Arc::new(tls.accept(tcp).await.unwrap())
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
    async fn an_idle_session_keeps_no_buffer() {
        let (server, mut client) = pair().await;
        // The handshake's records, a write, and what the client sends (a key update
        // asked of the server too, whose answer the session owes).
        let frame = b"data: hello\n\n";
        assert_eq!(server.try_write(frame).unwrap(), frame.len());
        assert_eq!(read_n(&mut client, frame.len()).await, frame);
        client.get_mut().1.refresh_traffic_keys().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"x")
            .await
            .unwrap();
        let mut got = [0u8; 8];
        let n = within("the client's byte", async {
            loop {
                server.readable().await.unwrap();
                match server.try_read(&mut got) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => break other.unwrap(),
                }
            }
        })
        .await;
        assert_eq!(&got[..n], b"x");
        // Still a working session: the answer to the key update went out with it.
        assert_eq!(server.try_write(frame).unwrap(), frame.len());
        assert_eq!(read_n(&mut client, frame.len()).await, frame);
        let session = lock(&server.session);
        let held = [&session.incoming, &session.plain, &session.outgoing].map(|b| b.capacity());
        assert_eq!(held, [0, 0, 0], "incoming, plain and outgoing hold nothing");
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
