//! Helpers shared by the end-to-end tests: a real server on an ephemeral port, and a
//! real SSE client (hyper's HTTP/1 client plus the crate's own decoder) over TCP.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ssehub::decode::{Decoder, Event, Item};
use ssehub::{Hub, Server, SseOptions};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound on any single wait in a test: a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Poll `cond` until it holds (bounded by WAIT).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(options: SseOptions) -> TestServer {
        Self::start_with(options, |s| s).await
    }

    pub async fn start_with(options: SseOptions, f: impl FnOnce(Server) -> Server) -> TestServer {
        let hub = options.hub().clone();
        let server = f(Server::new(([127, 0, 0, 1], 0)).sse(options))
            .bind()
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shut down gracefully and wait for the server to return.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within("server shutdown", self.task.take().unwrap())
            .await
            .unwrap();
    }

    pub async fn sse(&self, path: &str) -> SseClient {
        SseClient::connect(self.addr, path, &[]).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        request(self.addr, method, path, &[], body).await
    }
}

/// Send one request on a fresh connection and read the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut sender = handshake(addr).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let res = within("response", sender.send_request(req)).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = within("body", body.collect()).await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn handshake<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// A real SSE client: hyper's HTTP/1 client, the crate's decoder on top.
pub struct SseClient {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    body: Incoming,
    decoder: Decoder,
    pub raw: Vec<u8>,
}

impl SseClient {
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut sender = handshake(addr).await;
        let mut req = Request::get(path)
            .header("host", addr.to_string())
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res: Response<Incoming> = within(
            "SSE response head",
            sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
        )
        .await
        .unwrap();
        let (parts, body) = res.into_parts();
        SseClient {
            status: parts.status,
            headers: parts.headers,
            body,
            decoder: Decoder::new(),
            raw: Vec::new(),
        }
    }

    /// The next decoded item, or `None` when the stream ends.
    pub async fn next_item(&mut self) -> Option<Item> {
        within("next SSE item", async {
            loop {
                if let Some(item) = self.decoder.next_item().expect("a stream within limits") {
                    return Some(item);
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            self.raw.extend_from_slice(data);
                            self.decoder.feed(data);
                        }
                    }
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// The next dispatched event, skipping comments and retry hints.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next_item().await {
                Some(Item::Event(e)) => return e,
                Some(_) => continue,
                None => panic!("stream ended while waiting for an event"),
            }
        }
    }

    /// Read until the stream ends; return the items seen.
    pub async fn until_end(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(i) = self.next_item().await {
            items.push(i);
        }
        items
    }
}

/// A response head read off a raw socket with `httparse`, and the bytes that followed it.
pub struct RawHead {
    pub status: u16,
    /// HTTP minor version (1 for HTTP/1.1).
    pub version: u8,
    pub headers: Vec<(String, String)>,
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    use tokio::io::AsyncReadExt;
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

/// Hands the test each new stream's [`ssehub::Connection`], after its on_connect has
/// joined every room named by a `?room=` query parameter.
pub struct Handout {
    rx: tokio::sync::mpsc::UnboundedReceiver<ssehub::Connection>,
}

impl Handout {
    /// Wrap `options` with such an on_connect (replacing any other).
    pub fn wrap(options: SseOptions) -> (SseOptions, Handout) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let options = options.on_connect(move |conn, ctx| {
            let tx = tx.clone();
            async move {
                for room in ctx.query_all("room") {
                    conn.join(room).expect("join");
                }
                let _ = tx.send(conn);
            }
        });
        (options, Handout { rx })
    }

    /// The next new stream's connection.
    pub async fn next(&mut self) -> ssehub::Connection {
        within("a new connection", self.rx.recv())
            .await
            .expect("on_connect hook dropped")
    }

    /// Open a stream at `path` and return it with its server-side connection.
    pub async fn open(&mut self, srv: &TestServer, path: &str) -> (SseClient, ssehub::Connection) {
        let mut client = srv.sse(path).await;
        assert_eq!(client.status, StatusCode::OK, "{path}");
        assert_eq!(
            client.next_item().await,
            Some(Item::Comment("connected".into()))
        );
        let conn = self.next().await;
        (client, conn)
    }
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
    use tokio::io::AsyncReadExt;
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

/// The process's resident memory, in bytes (a test server runs in the test's process).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Log lines written by the server (WARN and above), captured for the test to read.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// A subscriber writing into these logs.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// Capture this thread's logs until the guard is dropped: on a current-thread
    /// runtime that includes the server's.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.subscriber());
        (logs, guard)
    }

    /// Capture every thread's logs, for the rest of the process.
    pub fn capture_global() -> Logs {
        let logs = Logs::default();
        tracing::subscriber::set_global_default(logs.subscriber()).unwrap();
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many times `needle` occurs in the logs.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

/// An on_connect hook that panics for a request with a `boom` query parameter and
/// otherwise sends the event `welcome` with data `ok`.
pub async fn welcome_unless_boom(conn: ssehub::Connection, ctx: ssehub::RequestContext) {
    if ctx.query("boom").is_some() {
        panic!("on_connect failure (expected by the test)");
    }
    let _ = conn.send_event("welcome", "ok");
}

/// Open `/sse?boom=1` on a server using [`welcome_unless_boom`]: the stream opens,
/// then ends without an event.
pub async fn assert_boom_stream_ends_without_events(srv: &TestServer) {
    let mut bad = srv.sse("/sse?boom=1").await;
    assert_eq!(bad.status, StatusCode::OK);
    let items = bad.until_end().await;
    assert!(
        !items.iter().any(|i| matches!(i, Item::Event(_))),
        "{items:?}"
    );
}

/// Connect to `addr`, write `request`, and read the response head: the socket and the
/// head, for tests that speak raw HTTP/1.1.
pub async fn raw_request(addr: SocketAddr, request: &str) -> (TcpStream, RawHead) {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let head = raw_exchange(&mut stream, request).await;
    (stream, head)
}
