//! The take-over: serve a new connection's first request here when it opens an SSE
//! stream over HTTP/1.1, or hand the socket, untouched, to hyper.
//!
//! hyper keeps, for every connection, a read buffer grown to read the request head and a
//! write buffer for the response head (about 25 KiB together, measured), for as long as
//! the response lasts. An SSE stream lasts for hours and needs neither. So, as SimpleW's
//! module does with `TryTakeTransportOwnership`, the server looks at the first request on
//! each new connection before hyper does: when it is a complete HTTP/1.1 `GET` for an SSE
//! endpoint with no body, the server parses its head (with `httparse`), answers the
//! handshake itself and keeps only the socket, the connection and a small task
//! (`chunked.rs`). Anything else (another path, HEAD, HTTP/1.0, HTTP/2, a request with a
//! body, a head larger than 8 KiB, a second request on a kept-alive connection) goes to
//! hyper untouched: nothing is consumed from the socket before the decision.
//!
//! Measured in BENCHMARKS.md: the server's memory per idle stream, and its CPU per event
//! (no HTTP dispatcher on the write path).

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{chunked, peek_until};
use crate::connection::TransportAbort;
use crate::endpoint::{PeerAddr, SseEndpoint};
use crate::metrics::TransportKind;

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
/// HTTP/1.1. Waits at most `header_timeout` for a complete head. `done` is dropped when
/// the stream served here ends (shutdown waits for every clone).
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
    let closes = asks_to_close(&req);
    let mut req = req;
    req.extensions_mut().insert(PeerAddr(peer));
    req.extensions_mut().insert(abort.clone());
    req.extensions_mut().insert(TransportKind::Http1);
    let res = endpoint.handle(req).await;
    // Its own small task: the future that holds this connection stays small for the
    // hours it may live, whatever the accept path needed.
    tokio::spawn(async move {
        chunked::serve(stream, res, closes, abort).await;
        drop(done);
    });
    Decision::Done
}

/// Whether the request says `Connection: close`.
fn asks_to_close<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
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
    let verdict = peek_until(stream, &mut buf, |peeked| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(peeked) {
            Ok(httparse::Status::Complete(_)) => Some(Some(peeked.len())),
            Err(_) => Some(None),
            Ok(httparse::Status::Partial) if peeked.len() == MAX_HEAD => Some(None),
            Ok(httparse::Status::Partial) => None,
        }
    })
    .await;
    match verdict {
        None => Peek::Gone,
        Some(None) => Peek::Other,
        Some(Some(n)) => {
            buf.truncate(n);
            Peek::Head(buf)
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
}
