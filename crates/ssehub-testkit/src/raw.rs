//! HTTP/1.1 by hand on a socket: for requests a well-behaved client cannot send, for
//! reading exactly what the server wrote, and for clients that stop reading.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::within;

/// A response head read off a raw socket with `httparse`, and the bytes that followed it.
pub struct RawHead {
    /// The status code.
    pub status: u16,
    /// HTTP minor version (1 for HTTP/1.1).
    pub version: u8,
    /// The headers, names and values as sent.
    pub headers: Vec<(String, String)>,
    /// The bytes read after the head (the start of the body).
    pub rest: Vec<u8>,
}

impl RawHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Write `request` to `stream` and read until a complete response head has arrived.
pub async fn raw_exchange(stream: &mut TcpStream, request: &str) -> RawHead {
    within("request write", stream.write_all(request.as_bytes()))
        .await
        .unwrap();
    let mut buf = Vec::new();
    within("response head", async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = res.parse(&buf).unwrap() {
                return RawHead {
                    status: res.code.unwrap(),
                    version: res.version.unwrap(),
                    headers: res
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    rest: buf[len..].to_vec(),
                };
            }
        }
    })
    .await
}

/// Read from `stream` into `buf` until `buf` contains `needle` (bounded by WAIT).
pub async fn read_until_contains(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    within("expected bytes", async {
        while !buf.windows(needle.len()).any(|w| w == needle) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "stream ended before {:?} arrived; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

/// The request line and headers of a stream request for `path`, for a raw socket.
pub fn stream_request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
}

/// Open a stream at `path` on a socket with a small receive buffer, read the response
/// head (it must be 200), and hand back the socket for the test never to read again.
pub async fn stalled_client(addr: SocketAddr, path: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stream = within("connect", sock.connect(addr)).await.unwrap();
    let head = raw_exchange(&mut stream, &stream_request(addr, path)).await;
    assert_eq!(head.status, 200);
    stream
}

/// Read until the peer closes (or resets) the connection and return what arrived
/// (bounded by WAIT; `what` names the wait in a timeout).
pub async fn until_closed(what: &str, s: &mut TcpStream) -> Vec<u8> {
    within(what, async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// Connect to `addr`, write `request`, and read the response head: the socket and the
/// head, for tests that speak raw HTTP/1.1.
pub async fn raw_request(addr: SocketAddr, request: &str) -> (TcpStream, RawHead) {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let head = raw_exchange(&mut stream, request).await;
    (stream, head)
}
