//! Support for the library's end-to-end tests: a real server on an ephemeral port
//! ([`TestServer`], or any server as [`Running`]), in this process, and what those tests
//! need of it. The client side (bounded waits, HTTP, raw sockets, SSE) is
//! `ssehub-testkit`'s, shared with the CLI's tests and re-exported here.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use ssehub::decode::Item;
use ssehub::{BoundServer, Hub, HubConfig, Server, SseOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) use ssehub_testkit::{
    eventually, raw_exchange, raw_request, read_until_contains, stalled_client, stream_request,
    until_closed, within, RawHead, SseClient, WAIT,
};

/// Options whose hub keeps no history: events go out exactly as published (no id is
/// added), for the tests of the wire format itself.
pub(crate) fn without_history() -> SseOptions {
    SseOptions::new().with_hub(Hub::with_config(HubConfig::default().history(None)))
}

/// A bound server running on a task of its own until [`Running::stop`]. Dropped, it
/// stops too (the stop signal's sender goes with it), without anyone waiting for it.
pub(crate) struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Bind `server` and run it.
    pub(crate) async fn start(server: Server) -> Running {
        Running::spawn(server.bind().await.expect("bind"))
    }

    /// Run `server`, bound already (for a test that reads its listeners first).
    pub(crate) fn spawn(server: BoundServer) -> Running {
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    /// Shut down gracefully and wait for the server to return.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        within("server shutdown", self.task).await.unwrap();
    }
}

pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    server: Running,
}

impl TestServer {
    pub(crate) async fn start(options: SseOptions) -> TestServer {
        Self::start_with(options, |s| s).await
    }

    pub(crate) async fn start_with(
        options: SseOptions,
        f: impl FnOnce(Server) -> Server,
    ) -> TestServer {
        let hub = options.hub().clone();
        let server = Running::start(f(Server::new(([127, 0, 0, 1], 0)).sse(options))).await;
        TestServer {
            addr: server.addr,
            hub,
            server,
        }
    }

    /// Shut down gracefully and wait for the server to return.
    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    pub(crate) async fn sse(&self, path: &str) -> SseClient {
        SseClient::connect(self.addr, path, &[]).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        request(self.addr, method, path, &[], body).await
    }
}

/// Send one request on a fresh connection and read the whole answer: its status, headers
/// and body as text.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let reply = ssehub_testkit::request(addr, req).await;
    let text = reply.text();
    (reply.status, reply.headers, text)
}

/// Hands the test each new stream's [`ssehub::Connection`], after its on_connect has
/// joined every room named by a `?room=` query parameter.
pub(crate) struct Handout {
    rx: tokio::sync::mpsc::UnboundedReceiver<ssehub::Connection>,
}

impl Handout {
    /// Wrap `options` with such an on_connect (replacing any other).
    pub(crate) fn wrap(options: SseOptions) -> (SseOptions, Handout) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let options = options.on_connect(move |conn, ctx| {
            let tx = tx.clone();
            async move {
                for room in ctx.query_all("room") {
                    ctx.hub().join(room, &conn).expect("join");
                }
                let _ = tx.send(conn);
            }
        });
        (options, Handout { rx })
    }

    /// The next new stream's connection.
    pub(crate) async fn next(&mut self) -> ssehub::Connection {
        within("a new connection", self.rx.recv())
            .await
            .expect("on_connect hook dropped")
    }

    /// Open a stream at `path` and return it with its server-side connection.
    pub(crate) async fn open(
        &mut self,
        srv: &TestServer,
        path: &str,
    ) -> (SseClient, ssehub::Connection) {
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

/// The process's resident memory, in bytes (a test server runs in the test's process).
pub(crate) fn rss() -> u64 {
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
pub(crate) struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

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
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// Capture this thread's logs until the guard is dropped: on a current-thread
    /// runtime that includes the server's.
    pub(crate) fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.subscriber());
        (logs, guard)
    }

    /// Capture every thread's logs, for the rest of the process.
    pub(crate) fn capture_global() -> Logs {
        let logs = Logs::default();
        tracing::subscriber::set_global_default(logs.subscriber()).unwrap();
        logs
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many times `needle` occurs in the logs.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

/// An on_connect hook that panics for a request with a `boom` query parameter and
/// otherwise sends the event `welcome` with data `ok`.
pub(crate) async fn welcome_unless_boom(conn: ssehub::Connection, ctx: ssehub::RequestContext) {
    if ctx.query("boom").is_some() {
        panic!("on_connect failure (expected by the test)");
    }
    let _ = conn.send_event("welcome", "ok");
}

/// Open `/sse?boom=1` on a server using [`welcome_unless_boom`]: the stream opens,
/// then ends without an event.
pub(crate) async fn assert_boom_stream_ends_without_events(srv: &TestServer) {
    let mut bad = srv.sse("/sse?boom=1").await;
    assert_eq!(bad.status, StatusCode::OK);
    let items = bad.until_end().await;
    assert!(
        !items.iter().any(|i| matches!(i, Item::Event(_))),
        "{items:?}"
    );
}
