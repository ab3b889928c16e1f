//! HTTP/1.1 SSE streams served on the bare socket once the handshake is done.
//!
//! hyper keeps, for every connection, a read buffer grown to read the request head and a
//! write buffer for the response head (about 25 KiB together, measured), for as long as
//! the response lasts. An SSE stream lasts for hours and needs neither. So, as SimpleW's
//! module does with `TryTakeTransportOwnership`, the server looks at the first request on
//! each new connection before hyper does: when it is a complete HTTP/1.1 `GET` for an SSE
//! endpoint with no body, the server parses its head (with `httparse`), answers the
//! handshake itself and keeps only the socket, the [`Connection`] and a small task that
//! moves the outbox to the socket in chunked encoding. Anything else (another path,
//! HEAD, HTTP/1.0, HTTP/2, a request with a body, a head larger than 8 KiB, a second
//! request on a kept-alive connection) goes to hyper untouched: nothing is consumed from
//! the socket before the decision.
//!
//! The client sends nothing once its request is made, so the task reads only to notice
//! it leaving: 0 bytes (FIN) or an error (RST) ends the stream. Bytes it does send (a
//! request pipelined after the stream's, which could never be answered anyway) are read
//! and ignored. hyper, by contrast, stops reading after a `Connection: close` request
//! or while pipelined bytes wait, and would notice such a client only at a later write.
//!
//! Measured in BENCHMARKS.md: the server's memory per idle stream, and its CPU per event
//! (no HTTP dispatcher on the write path).

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::connection::{DirectSink, TransportAbort, Wire};
use crate::endpoint::{PeerAddr, SseBody, SseEndpoint};

/// The largest request head considered for take-over; a larger one goes to hyper.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed at most; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;

/// What to do with a new connection.
pub(crate) enum Decision {
    /// The stream was served here (or the client left before sending anything).
    Done,
    /// Not ours: hand the socket, untouched, to hyper.
    Hyper(TcpStream),
}

/// Look at the first request on `stream`; serve it here if it opens an SSE stream over
/// HTTP/1.1. Waits at most `header_timeout` for a complete head.
pub(crate) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    endpoints: &[SseEndpoint],
    header_timeout: Duration,
    done: mpsc::Sender<()>,
) -> Decision {
    let peeked = tokio::time::timeout(header_timeout, peek_head(&stream)).await;
    let (req, head_len) = match peeked {
        Err(_) | Ok(Peek::Gone) => {
            tracing::debug!(%peer, "no request within the header timeout");
            return Decision::Done;
        }
        Ok(Peek::Other) => return Decision::Hyper(stream),
        Ok(Peek::Head(buf)) => match parse_sse_request(&buf, endpoints) {
            Some(parsed) => parsed,
            None => return Decision::Hyper(stream),
        },
    };
    let Some(endpoint) = endpoints.iter().find(|e| e.matches(req.uri().path())) else {
        return Decision::Hyper(stream);
    };
    let mut stream = stream;
    // Consume exactly the head we peeked at; whatever follows is read and ignored later.
    let mut head = vec![0u8; head_len];
    if stream.read_exact(&mut head).await.is_err() {
        return Decision::Done;
    }
    drop(head);
    let abort = TransportAbort::new();
    let closes = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let mut req = req;
    req.extensions_mut().insert(PeerAddr(peer));
    req.extensions_mut().insert(abort.clone());
    let res = endpoint.handle(req).await;
    // Its own small task: the future that holds this connection stays small for the
    // hours it may live, whatever the accept path needed.
    tokio::spawn(async move {
        serve(stream, res, closes, abort).await;
        drop(done);
    });
    Decision::Done
}

enum Peek {
    /// A complete request head (the bytes peeked, from the head's start).
    Head(Vec<u8>),
    /// Not a candidate (not HTTP/1.x, or too large).
    Other,
    /// The client left.
    Gone,
}

/// Peek (without consuming) until a whole request head is in the socket's buffer.
async fn peek_head(stream: &TcpStream) -> Peek {
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return Peek::Gone,
            Ok(n) => n,
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => {
                buf.truncate(n);
                return Peek::Head(buf);
            }
            Err(_) => return Peek::Other,
            Ok(httparse::Status::Partial) if n == MAX_HEAD => return Peek::Other,
            // Part of a head: peek returns at once while bytes wait, so poll gently for
            // the rest (bounded by the caller's timeout).
            Ok(httparse::Status::Partial) => tokio::time::sleep(Duration::from_millis(10)).await,
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
    let has_body = hs.contains_key(header::TRANSFER_ENCODING)
        || hs
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let hyper_business = hs.contains_key(header::UPGRADE) || hs.contains_key(header::EXPECT);
    if has_body || hyper_business {
        return None;
    }
    Some((req, len))
}

/// Write the answer, then (for a stream) move the outbox to the socket until the stream
/// ends, the client leaves, or the connection is aborted by policy.
async fn serve(mut stream: TcpStream, res: Response<SseBody>, closes: bool, abort: TransportAbort) {
    let (parts, mut body) = res.into_parts();
    let streaming = body.connection().is_some();
    let mut head = Vec::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    // RFC 9110: an origin server with a clock sends Date (hyper does on its path too).
    let _ = write!(
        head,
        "date: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    // A stream ends with the connection anyway; say so when the client asked for it.
    if !streaming || closes {
        head.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in &parts.headers {
        // Framing is ours to write; a stray framing header would contradict it.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        if name != header::CONNECTION || (streaming && !closes) {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    let Some(conn) = body.connection().cloned() else {
        // A fixed answer (a refusal, a back-off): send it whole and close.
        let data = next_frame(&mut body).await.unwrap_or_default();
        // RFC 9110: no Content-Length on 204 and 304.
        if !matches!(parts.status.as_u16(), 204 | 304) {
            let _ = write!(head, "content-length: {}\r\n", data.len());
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&data);
        let _ = write_or_abort(&stream, &head, &abort).await;
        let _ = stream.shutdown().await;
        return;
    };
    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    if write_or_abort(&stream, &head, &abort).await.is_err() {
        return;
    }
    // The head and the response's headers are done with; a stream may last for hours.
    drop(head);
    drop(parts);
    let stream = std::sync::Arc::new(stream);
    conn.attach_sink(stream.clone());
    let mut probe = [0u8; 16];
    let mut pieces: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            wire = poll_fn(|cx| conn.poll_wire(cx.waker(), &mut pieces)) => match wire {
                Wire::Raw(rest) => {
                    if write_or_abort(&stream, &rest, &abort).await.is_err() {
                        return;
                    }
                }
                Wire::Frames(not_before) => {
                    let mut ended = None;
                    if let Some(at) = not_before.filter(|at| Instant::now() < *at) {
                        // Busy: this stream wrote moments ago. Let events gather until
                        // the batching window has passed, then write them all at once.
                        tokio::select! {
                            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                            _ = abort.aborted() => return,
                        }
                        ended = conn.take_more(&mut pieces);
                        if matches!(ended, Some(Wire::Abort)) {
                            return;
                        }
                    }
                    let batch = chunk(&pieces);
                    pieces.clear();
                    if write_or_abort(&stream, &batch, &abort).await.is_err() {
                        return;
                    }
                    conn.wrote(Instant::now());
                    if ended.is_some() {
                        return finish(stream, &abort).await;
                    }
                }
                // The stream ended (closed by the application or at shutdown).
                Wire::End => return finish(stream, &abort).await,
                Wire::Abort => return,
            },
            // The client sends nothing after its request: readable means it left
            // (FIN reads as 0 bytes, RST as an error). Anything else is ignored.
            ready = stream.readable() => {
                if ready.is_err() {
                    return;
                }
                match stream.try_read(&mut probe) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = abort.aborted() => return,
        }
    }
    // Dropping `body` here tells the connection its transport is gone.
}

/// A chunk up to this size is framed on the stack for a direct write.
const SMALL_WRITE: usize = 1024;

/// Senders write frames straight to an idle stream's socket, as one chunk.
impl DirectSink for TcpStream {
    fn try_send(&self, frames: &[Bytes]) -> io::Result<Option<Bytes>> {
        let len: usize = frames.iter().map(Bytes::len).sum();
        if len + 12 > SMALL_WRITE {
            let whole = chunk(frames);
            let written = sent(self.try_write(&whole))?;
            return Ok((written < whole.len()).then(|| whole.slice(written..)));
        }
        let mut buf = [0u8; SMALL_WRITE];
        let mut free = &mut buf[..];
        put_chunk(&mut free, frames, len);
        let at = SMALL_WRITE - free.len();
        let written = sent(self.try_write(&buf[..at]))?;
        // The socket's buffer is full: keep what it did not take (rare, and copied).
        Ok((written < at).then(|| Bytes::copy_from_slice(&buf[written..at])))
    }
}

/// How much a non-blocking write took: none when the socket's buffer is full.
fn sent(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

async fn next_frame(body: &mut SseBody) -> Option<Bytes> {
    let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    match frame {
        Ok(frame) => Some(frame.into_data().unwrap_or_default()),
        Err(never) => match never {},
    }
}

/// End the stream: the last chunk, then the connection. Every other handle on the
/// socket is gone by now ([`Wire::End`] takes the sink back).
async fn finish(stream: std::sync::Arc<TcpStream>, abort: &TransportAbort) {
    if write_or_abort(&stream, b"0\r\n\r\n", abort).await.is_ok() {
        if let Ok(mut stream) = std::sync::Arc::try_unwrap(stream) {
            let _ = stream.shutdown().await;
        }
    }
}

/// `pieces`, in order, as one HTTP/1.1 chunk: the one copy a write makes.
fn chunk(pieces: &[Bytes]) -> Bytes {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(len + 12);
    put_chunk(&mut buf, pieces, len);
    buf.freeze()
}

/// Write `pieces` (`len` bytes in all) as one chunk: its size line, them, CRLF.
fn put_chunk(buf: &mut impl BufMut, pieces: &[Bytes], len: usize) {
    let _ = write!(buf.writer(), "{len:x}\r\n");
    for p in pieces {
        buf.put_slice(p);
    }
    buf.put_slice(b"\r\n");
}

/// Write all of `bytes`, unless the connection is aborted first (a client that does not
/// read would otherwise hold this task in the write for ever).
async fn write_or_abort(
    stream: &TcpStream,
    bytes: &[u8],
    abort: &TransportAbort,
) -> Result<(), ()> {
    tokio::select! {
        r = write_all(stream, bytes) => r.map_err(|_| ()),
        _ = abort.aborted() => Err(()),
    }
}

/// `write_all` on a shared socket (senders write to it too, never at the same time).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    #[test]
    fn chunks_are_framed() {
        assert_eq!(
            &chunk(&[Bytes::from_static(b"data: x\n\n")])[..],
            b"9\r\ndata: x\n\n\r\n"
        );
        assert_eq!(&chunk(&[Bytes::from(vec![b'a'; 300])])[..5], b"12c\r\n");
    }
}
