//! The take-over: serve a new connection's first request here when it opens an SSE
//! stream over HTTP/1.1, or hand the socket, untouched, to hyper.
//!
//! hyper keeps, for every connection, a read buffer grown to read the request head and a
//! write buffer for the response head (about 25 KiB together, measured), for as long as
//! the response lasts. An SSE stream lasts for hours and needs neither. So, as SimpleW's
//! module does with `TryTakeTransportOwnership`, the server reads the first request on
//! each new connection before hyper does, into a buffer of its own, each time the
//! socket is readable (never on a timer): when it is a complete HTTP/1.1 `GET` for an SSE
//! endpoint with no body, the server parses its head (with `httparse`), answers the
//! handshake itself and keeps only the socket, the connection and a small task
//! (`chunked.rs`); the buffer is freed then. Anything else (another path, HEAD, HTTP/1.0,
//! HTTP/2, a request with a body, a head larger than 8 KiB, a second request on a
//! kept-alive connection, a host the server does not answer to) goes to hyper with what
//! was read in front of the socket (`prefixed.rs`), as if nothing had been read.
//!
//! Measured in BENCHMARKS.md: the server's memory per idle stream, and its CPU per event
//! (no HTTP dispatcher on the write path).
//!
//! The first read also tells the gate (`server/gate.rs`) whether the client is slow: a
//! complete HTTP/1.x head in it proves it is not; anything else (half a head, the HTTP/2
//! preface, a head larger than the take-over reads), or no byte at all for the gate's
//! grace, counts it as pending, or closes it at once past the caps.
//!
//! Over TLS (ALPN `http/1.1`, or none) the same read happens on the decrypted stream
//! after the handshake ([`HeadSource`]); a stream taken here then runs on the rustls
//! session and its socket alone (`tls.rs`), and anything else goes to hyper over the TLS
//! stream, with what was read in front. A TLS client is judged slow by time, not by its
//! first read (`server/listener.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::prefixed::Prefixed;
use super::{chunked, FirstRequest, Transport};
use crate::connection::TransportAbort;
use crate::endpoint::{PeerAddr, SseEndpoint};
use crate::hosts::AllowedHosts;
use crate::metrics::TransportKind;

/// The largest request head considered for take-over; a larger one goes to hyper.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed at most; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;
/// The HTTP/2 connection preface (prior knowledge): hyper's.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What to do with a new connection.
pub(crate) enum Decision<S, F> {
    /// The stream was served here (or the client left, or sent no request in time).
    Done,
    /// Not ours: hyper serves the socket, with what was read of it in front, and gets
    /// the `first` it is to tell of the first request.
    Hyper(Prefixed<S>, F),
}

/// Where a connection's first request is read from: a plain socket, or a TLS stream
/// after its handshake.
pub(crate) trait HeadSource: Send + Sized + 'static {
    /// What the bare-socket writer gets once the request is taken here.
    type Bare: Transport;
    /// Whether the first read tells the gate if the client is slow (a plain socket's
    /// does; a TLS client is judged by time, in `server/listener.rs`).
    const FIRST_READ_JUDGES: bool;
    /// Wait until bytes come, and append what is there to `buf` (within its capacity):
    /// how many; 0 when the client is done.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
    /// The stream as the bare-socket writer's transport.
    fn into_bare(self) -> io::Result<Self::Bare>;
}

impl HeadSource for TcpStream {
    type Bare = TcpStream;
    const FIRST_READ_JUDGES: bool = true;

    async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn into_bare(self) -> io::Result<TcpStream> {
        Ok(self)
    }
}

#[cfg(feature = "tls")]
impl HeadSource for super::tls::TlsTransport {
    type Bare = super::tls::TlsTransport;
    const FIRST_READ_JUDGES: bool = false;

    async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        // Cancel-safe: what a poll decrypted stays in the session until read.
        tokio::io::AsyncReadExt::read_buf(self, buf).await
    }

    fn into_bare(self) -> io::Result<super::tls::TlsTransport> {
        // What the session read past the request (nothing, from a client that waits
        // for its answer) stays in it, and is read as the stream's unexpected bytes.
        self.reregistered()
    }
}

/// The times [`accept`] keeps to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    /// What is left of the header timeout: the most it waits for a complete head (or
    /// enough to know it is hyper's).
    pub(crate) header_timeout: Duration,
    /// How long the client may send nothing before it is told slow ([`FirstRequest::slow`]).
    pub(crate) slow_after: Duration,
}

/// Read the first request on `stream`; serve it here if it opens an SSE stream over
/// HTTP/1.1. `done` is dropped when the stream served here ends (shutdown waits for
/// every clone); so is `first`, told of the request as soon as its head is in, and told
/// if the client is slow or late. (Owned, not shared: a stream keeps no allocation of
/// its own for it.)
pub(crate) async fn accept<S: HeadSource, F: FirstRequest>(
    mut stream: S,
    peer: SocketAddr,
    (endpoints, hosts): (&[SseEndpoint], &AllowedHosts),
    waits: Waits,
    done: mpsc::Sender<()>,
    first: F,
) -> Decision<S, F> {
    let read = read_first(&mut stream, &first, waits.slow_after);
    let (buf, look) = match tokio::time::timeout(waits.header_timeout, read).await {
        Ok(Some(read)) => read,
        Ok(None) => return Decision::Done,
        Err(_) => {
            tracing::debug!(%peer, "no request within the header timeout");
            first.timed_out();
            return Decision::Done;
        }
    };
    let taken = match look {
        Look::Head(len) => parse_sse_request(&buf[..len], endpoints),
        Look::More | Look::Hyper => None,
    };
    let Some((req, _)) = taken else {
        return Decision::Hyper(Prefixed::new(Bytes::from(buf), stream), first);
    };
    let Some(endpoint) = endpoints.iter().find(|e| e.matches(req.uri().path())) else {
        return Decision::Hyper(Prefixed::new(Bytes::from(buf), stream), first);
    };
    // A host the server does not answer to: hyper's path refuses it (421), as it does
    // every request there, so there is one refusal and one place that decides it.
    if hosts.refused(&req).is_some() {
        return Decision::Hyper(Prefixed::new(Bytes::from(buf), stream), first);
    }
    // Past its address's requests in progress (TLS): hyper's path answers 429.
    let Ok(slot) = first.begin_stream() else {
        return Decision::Hyper(Prefixed::new(Bytes::from(buf), stream), first);
    };
    // What followed the head (a pipelined request, under 8 KiB) is never answered; the
    // buffer goes now, before the stream's life.
    drop(buf);
    first.requested();
    let abort = TransportAbort::new();
    let mut req = req;
    req.extensions_mut().insert(PeerAddr(peer));
    req.extensions_mut().insert(abort.clone());
    req.extensions_mut().insert(TransportKind::Http1);
    let res = endpoint.handle(req).await;
    let Ok(stream) = stream.into_bare() else {
        return Decision::Done;
    };
    let Some(streaming) = chunked::start(std::sync::Arc::new(stream), res, abort).await else {
        return Decision::Done;
    };
    // Its own small task: the future that holds this connection stays small for the
    // hours it may live, whatever the accept path needed; it holds `first` only if its
    // end matters. (The stream's future is made inside the task: one made outside and
    // awaited there would be stored twice.)
    if first.held_to_the_end() {
        tokio::spawn(async move {
            streaming.run().await;
            drop(slot);
            drop(first);
            drop(done);
        });
    } else {
        drop(first);
        tokio::spawn(async move {
            streaming.run().await;
            drop(slot);
            drop(done);
        });
    }
    Decision::Done
}

/// What the first bytes of a connection are, so far.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Not enough to tell.
    More,
    /// hyper's: not HTTP/1.x, the HTTP/2 preface, or a head larger than [`MAX_HEAD`].
    Hyper,
    /// A complete HTTP/1.x request head of this length.
    Head(usize),
}

fn look(buf: &[u8]) -> Look {
    if buf.len() < PREFACE.len() && PREFACE.starts_with(buf) {
        return Look::More;
    }
    if buf.starts_with(PREFACE) {
        return Look::Hyper;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) => Look::Head(len),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Look::Hyper,
        Ok(httparse::Status::Partial) => Look::More,
        Err(_) => Look::Hyper,
    }
}

/// Read from `stream`, each time it is readable, until [`look`] can tell what the
/// connection is: the bytes read and the verdict. Tells `first` the client is slow if
/// its first read is not a complete HTTP/1.x head, or if nothing came for `slow_after`.
/// `None` if the client leaves first, or is closed as slow.
async fn read_first<S: HeadSource, F: FirstRequest>(
    stream: &mut S,
    first: &F,
    slow_after: Duration,
) -> Option<(Vec<u8>, Look)> {
    // Never grown: the head is decided (taken, or hyper's) by the time it is full.
    let mut buf = Vec::with_capacity(MAX_HEAD);
    // Counted from this first look, not from accept: a server that takes its time to get
    // to a connection (a crowd arriving at once) must not blame the client for it.
    let silent = tokio::time::sleep(slow_after);
    tokio::pin!(silent);
    let mut judged = !S::FIRST_READ_JUDGES;
    loop {
        let before = buf.len();
        let read = if judged {
            stream.read_some(&mut buf).await
        } else {
            tokio::select! {
                // Bytes that are there win over a timer that fired in the same turn.
                biased;
                read = stream.read_some(&mut buf) => read,
                () = &mut silent => {
                    judged = true;
                    if !first.slow() {
                        return None;
                    }
                    continue;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        // A head ends with a line break: re-parse only when one came (or the buffer is
        // full), so that a head dripped byte by byte is not parsed once per byte.
        let fresh = &buf[before..];
        let may_tell =
            buf.len() >= MAX_HEAD || buf.len() <= PREFACE.len() || fresh.contains(&b'\n');
        let verdict = if may_tell { look(&buf) } else { Look::More };
        if !judged {
            // One read takes all the socket holds: a client that sent its whole head at
            // once has it here. Anything else is slow, or at least not provably quick.
            judged = true;
            if !matches!(verdict, Look::Head(_)) && !first.slow() {
                return None;
            }
        }
        if verdict != Look::More {
            return Some((buf, verdict));
        }
    }
}

/// The request, if `head` starts with an HTTP/1.1 GET for one of `endpoints` with no
/// body and nothing hyper must handle (upgrades, expectations), and the head's length.
fn parse_sse_request(head: &[u8], endpoints: &[SseEndpoint]) -> Option<(Request<()>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let uri: http::Uri = parsed.path?.parse().ok()?;
    if !endpoints.iter().any(|e| e.matches(uri.path())) {
        return None;
    }
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        req.headers_mut().append(name, value);
    }
    let hs = req.headers();
    // Only "no body" is ours: no length at all, or one `Content-Length: 0`. Anything else
    // (a body, a chunked one, conflicting or repeated lengths) is hyper's to read or
    // refuse, so the two paths never disagree on where this request ends.
    let mut lengths = hs.get_all(header::CONTENT_LENGTH).iter();
    let has_body = hs.contains_key(header::TRANSFER_ENCODING)
        || match (lengths.next(), lengths.next()) {
            (None, _) => false,
            (Some(v), None) => v.as_bytes() != b"0",
            (Some(_), Some(_)) => true,
        };
    let hyper_business = hs.contains_key(header::UPGRADE) || hs.contains_key(header::EXPECT);
    if has_body || hyper_business {
        return None;
    }
    Some((req, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SseOptions;

    fn endpoints() -> Vec<SseEndpoint> {
        vec![SseEndpoint::new(SseOptions::new()).unwrap()]
    }

    #[test]
    fn only_plain_sse_gets_are_taken_over() {
        let eps = endpoints();
        let take = |head: &str| parse_sse_request(head.as_bytes(), &eps).is_some();
        assert!(take("GET /sse HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(take(
            "GET /sse/?room=a HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n"
        ));
        assert!(
            !take("GET /sse/x HTTP/1.1\r\nhost: x\r\n\r\n"),
            "404 is hyper's"
        );
        assert!(!take("HEAD /sse HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(!take("POST /sse HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(!take("GET /sse HTTP/1.0\r\nhost: x\r\n\r\n"));
        assert!(!take("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(!take("GET /sse HTTP/1.1\r\ncontent-length: 3\r\n\r\n"));
        assert!(take("GET /sse HTTP/1.1\r\ncontent-length: 0\r\n\r\n"));
        assert!(!take(
            "GET /sse HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 5\r\n\r\n"
        ));
        assert!(!take(
            "GET /sse HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!take(
            "GET /sse HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!take("GET /sse HTTP/1.1\r\nupgrade: h2c\r\n\r\n"));
        assert!(take("GET /sse HTTP/1.1\r\nconnection: close\r\n\r\n"));
        assert!(take("GET /sse HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"));
        assert!(!take("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!take("GET /sse HTTP/1.1\r\nhost: x\r\n"), "incomplete");
    }

    #[test]
    fn the_first_bytes_tell_http1_heads_from_hyper_s_business() {
        assert_eq!(look(b"GET /sse HTTP/1.1\r\nhost: x\r\n"), Look::More);
        assert_eq!(look(b"GET /sse HTTP/1.1\r\n\r\nxyz"), Look::Head(21));
        assert_eq!(look(b"PRI * HTTP/2"), Look::More, "maybe the preface");
        assert_eq!(look(PREFACE), Look::Hyper);
        assert_eq!(look(b"\x16\x03\x01"), Look::Hyper, "TLS: hyper answers");
        let big = format!("GET / HTTP/1.1\r\nx: {}", "y".repeat(MAX_HEAD));
        assert_eq!(look(&big.as_bytes()[..MAX_HEAD]), Look::Hyper);
    }

    #[test]
    fn headers_survive_the_parse() {
        let eps = endpoints();
        let (req, len) = parse_sse_request(
            b"GET /sse?lastEventId=4 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
            &eps,
        )
        .unwrap();
        assert_eq!(len, 62);
        assert_eq!(req.headers()["last-event-id"], "7");
        assert_eq!(req.uri().query(), Some("lastEventId=4"));
    }
}
