//! Subscribers over TLS (an `https://` URL): HTTP/1.1, read as cheaply as the plain ones,
//! and HTTP/2 (`--http2`), through hyper's client.
//!
//! HTTP/1.1 over TLS: the handshake and the response head go through `tokio-rustls`;
//! then the connection is taken apart into its socket and its rustls session, and the
//! read loop is the plain one's with decryption in between: one `recvmsg` per ready
//! socket into the thread's buffer (with its receive timestamp), the records handed to
//! rustls, the plaintext taken out into a second per-thread buffer and scanned. A
//! connection keeps no buffer of its own beyond rustls'.
//!
//! HTTP/2: `--streams-per-connection` streams share one connection (one TLS session, one
//! hyper connection task); each stream is a task that takes its body's data frames.
//! Latency is end to end only: a frame's socket read is hyper's, not ours.
//!
//! Certificates are not verified (`tls_client.rs`).

use std::io::Read as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConnection;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::event_scan::{BodyParser, Events};
use super::latency::micros;
use super::rx_time;
use super::subscribers::{record, Dest, Shared, ThreadState};
use crate::tls_client;

/// Shake hands over `tcp`, send `request`, read the response head: the stream, ready
/// for [`TlsConn::read_loop`], and the bench events that came with the head.
pub(super) async fn open_h1(
    tcp: TcpStream,
    dest: &Dest,
    request: &str,
) -> anyhow::Result<(TlsConn, u64)> {
    let mut tls = tls_client::handshake(tcp, &dest.host, tls_client::HTTP1).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some((len, chunked)) = super::subscribers::parse_head(&head, &dest.sse_path)? {
            let mut parser = BodyParser::new(chunked);
            let mut early = Events::default();
            parser.feed(&head[len..], &mut early)?;
            // What the head's reads decrypted past it stays in the session: the read
            // loop takes it first.
            let (stream, session) = tls.into_inner();
            let conn = TlsConn {
                stream,
                session,
                parser,
            };
            return Ok((conn, early.sent_ns.len() as u64));
        }
    }
}

/// An HTTP/1.1 stream over TLS, taken apart: the socket, the session, the body's state.
pub(super) struct TlsConn {
    stream: TcpStream,
    session: ClientConnection,
    parser: BodyParser,
}

impl TlsConn {
    pub(super) async fn read_loop(
        mut self,
        state: &ThreadState,
        shared: &Shared,
    ) -> anyhow::Result<()> {
        let mut events = Events::default();
        let mut closed = self.decrypted(state, &mut events)?;
        loop {
            if !closed {
                self.stream.readable().await?;
                let mut buf = state.buf.borrow_mut();
                let mut control = state.control.borrow_mut();
                loop {
                    match rx_time::read(&self.stream, &mut buf, &mut control) {
                        Ok((0, _)) => {
                            closed = true;
                            break;
                        }
                        Ok((n, received_ns)) => {
                            let from = events.sent_ns.len();
                            let mut input = &buf[..n];
                            while !input.is_empty() {
                                self.session.read_tls(&mut input)?;
                                closed |= self.decrypted(state, &mut events)?;
                            }
                            if let Some(at) = received_ns {
                                let hist = &mut state.latencies.borrow_mut().at_socket;
                                for &sent in &events.sent_ns[from..] {
                                    hist.saturating_record(micros(at, sent));
                                }
                            }
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            // A key update's answer, an alert: whatever the session has to say (rare).
            while self.session.wants_write() {
                let mut out = Vec::new();
                self.session.write_tls(&mut out)?;
                let _ = self.stream.try_write(&out);
            }
            record(state, shared, &mut events);
            if closed || self.parser.done() {
                bail!("the server ended the stream");
            }
        }
    }

    /// Process the records the session holds and scan the plaintext they make: whether
    /// the server closed the session.
    fn decrypted(&mut self, state: &ThreadState, events: &mut Events) -> anyhow::Result<bool> {
        let io = self.session.process_new_packets().context("TLS")?;
        let mut plain = state.plain.borrow_mut();
        loop {
            match self.session.reader().read(&mut plain) {
                Ok(0) => return Ok(true),
                Ok(n) => self.parser.feed(&plain[..n], events)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(io.peer_has_closed())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One HTTP/2 connection over TLS carrying `streams` (subscriber index, room query) streams:
/// each stream's task is spawned on this thread once its response head is in.
pub(super) async fn open_h2(
    tcp: TcpStream,
    dest: &Dest,
    streams: &[(usize, String)],
    last_event_id: Option<&str>,
    state: &Rc<ThreadState>,
    shared: &std::sync::Arc<Shared>,
) -> anyhow::Result<()> {
    let tls = tls_client::handshake(tcp, &dest.host, tls_client::HTTP2).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
    // The connection's task keeps a sender: the connection lasts as long as its streams.
    let keep = sender.clone();
    tokio::task::spawn_local(async move {
        let _ = conn.await;
        drop(keep);
    });
    let sep = if dest.sse_path.contains('?') {
        '&'
    } else {
        '?'
    };
    for (_, select) in streams {
        let uri = format!("https://{}{}{sep}{select}", dest.host, dest.sse_path);
        let mut req = http::Request::get(uri).header(http::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        sender.ready().await.context("HTTP/2 connection")?;
        let res = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await
            .context("HTTP/2 request")?;
        if res.status() != http::StatusCode::OK {
            bail!("GET {}: status {}", dest.sse_path, res.status());
        }
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let (state, shared) = (state.clone(), shared.clone());
        let mut body = res.into_body();
        tokio::task::spawn_local(async move {
            let mut parser = BodyParser::new(false);
            let mut events = Events::default();
            let result: anyhow::Result<()> = async {
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        parser.feed(&data, &mut events)?;
                        record(&state, &shared, &mut events);
                    }
                }
                bail!("the server ended the stream")
            }
            .await;
            if let Err(e) = result {
                shared.fail(e);
            }
        });
    }
    Ok(())
}
