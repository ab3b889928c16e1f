//! One HTTP/1.1 request on a fresh connection, and its whole answer.

use std::net::{SocketAddr, TcpListener};

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::within;

/// A port that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Send `req` on a new connection to `addr` (with `Host: addr` unless it names one) and
/// return the response head; its body is left to stream.
pub async fn send<B>(addr: SocketAddr, mut req: Request<B>) -> Response<Incoming>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect to the server");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    if !req.headers().contains_key(header::HOST) {
        let host = addr
            .to_string()
            .parse()
            .expect("an address is a valid Host");
        req.headers_mut().insert(header::HOST, host);
    }
    within("the response head", sender.send_request(req))
        .await
        .expect("send the request")
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The response's headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The value of header `name`, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// [`send`] `req` and read the whole answer (each part bounded by [`crate::WAIT`]).
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let (parts, body) = send(addr, req).await.into_parts();
    let body = within("the body", body.collect())
        .await
        .expect("read the body")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, Request::get(path).body(Full::default()).unwrap()).await
}

/// `POST path` with a body of `content_type`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap();
    request(addr, req).await
}
