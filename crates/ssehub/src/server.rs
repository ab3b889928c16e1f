//! A small HTTP server in SimpleW's spirit: new server, add the SSE endpoint, static
//! files and a few routes, run. HTTP/1.1 and HTTP/2 (prior knowledge) through hyper.
//!
//! ```no_run
//! use ssehub::{Server, SseOptions, StaticFiles};
//!
//! # async fn run() -> Result<(), ssehub::ServerError> {
//! let sse = SseOptions::new().on_connect(|conn, _ctx| async move {
//!     let _ = conn.send_event("status", "connected");
//! });
//! let hub = sse.hub().clone(); // broadcast from anywhere, before or after start
//! Server::new(([0, 0, 0, 0], 2015))
//!     .sse(sse)
//!     .static_files(StaticFiles::new("./www"))
//!     .on_started(|info| println!("server started at http://{}/", info.local_addr))
//!     .run()
//!     .await?;
//! # drop(hub); Ok(()) }
//! ```
//!
//! ## Shutdown
//! On Ctrl-C or SIGTERM (or the future given to [`BoundServer::run_until`]) the server
//! stops accepting, closes every SSE stream (each flushes what it has queued), lets
//! other in-flight requests finish, and returns within [`Server::grace`] (2 s default);
//! streams still open then are dropped, and a warning says how many still had events
//! queued (clients that stopped reading), so nothing is half-delivered without a trace.
//!
//! ## Clients that go quiet
//! A client has [`Server::header_timeout`] from the moment it connects to send its first
//! request's headers: one deadline, whichever wait it falls in (the look for an SSE
//! request, the HTTP/2 sniffing, hyper's reading). A client that vanishes without a
//! word (cable pulled, NAT state lost) is noticed by TCP keep-alive probes and
//! `TCP_USER_TIMEOUT` ([`Server::tcp_keepalive`], [`Server::tcp_user_timeout`]: about
//! two minutes by default, on quiet streams too), and an HTTP/2 peer that stops
//! answering pings by [`Server::http2_keep_alive`] (under a minute).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use tower_http::services::ServeDir;

use crate::connection::TransportAbort;
use crate::endpoint::{ConfigError, PeerAddr, SseEndpoint, SseOptions};
use crate::frame::Message;
use crate::shutdown::Shutdown;
use crate::takeover::{self, Decision};

/// Boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body every route of the server answers with.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<Response<Body>> + Send + Sync>;
type OnStarted = Box<dyn FnOnce(&ServerInfo) + Send>;
type Fallback = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A set-up mistake in the options.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A server option is out of range.
    #[error("invalid server option: {0}")]
    Invalid(&'static str),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
}

/// Static files served from a folder.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    path: PathBuf,
    prefix: String,
    max_age: Option<Duration>,
}

impl StaticFiles {
    /// Serve the folder `path` at `/`, with `index.html` for directories and no caching.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StaticFiles {
            path: path.into(),
            prefix: "/".into(),
            max_age: None,
        }
    }

    /// The URL prefix to serve the folder at (such as `/assets`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let p = prefix.into();
        let p = p.trim_end_matches('/');
        self.prefix = if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/{p}")
        };
        self
    }

    /// Send `Cache-Control: public, max-age=…` with every file.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The path below the prefix, if `path` is under it.
    fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.prefix == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(&self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

/// What [`Server::on_started`] callbacks learn.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The address the server listens on (with the real port when 0 was asked for).
    pub local_addr: SocketAddr,
}

/// The server builder.
pub struct Server {
    addr: SocketAddr,
    sse: Vec<Result<SseEndpoint, ConfigError>>,
    static_files: Option<StaticFiles>,
    routes: HashMap<String, Handler>,
    fallback: Option<Fallback>,
    on_started: Vec<OnStarted>,
    header_timeout: Duration,
    tcp: TcpOptions,
    http2_keep_alive: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    grace: Duration,
    farewell: Option<Message>,
}

impl Server {
    /// A server that will listen on `addr`.
    pub fn new(addr: impl Into<SocketAddr>) -> Server {
        Server {
            addr: addr.into(),
            sse: Vec::new(),
            static_files: None,
            routes: HashMap::new(),
            fallback: None,
            on_started: Vec::new(),
            header_timeout: Duration::from_secs(10),
            tcp: TcpOptions::default(),
            http2_keep_alive: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            grace: Duration::from_secs(2),
            farewell: None,
        }
    }

    /// Add an SSE endpoint. Option mistakes are reported by [`Server::bind`].
    pub fn sse(mut self, options: SseOptions) -> Server {
        self.sse.push(SseEndpoint::new(options));
        self
    }

    /// Serve static files.
    pub fn static_files(mut self, files: StaticFiles) -> Server {
        self.static_files = Some(files);
        self
    }

    /// Answer requests for exactly `path` (any method) with `handler`.
    ///
    /// ```
    /// use ssehub::server::{text, Server};
    /// use http::StatusCode;
    ///
    /// let server = Server::new(([127, 0, 0, 1], 0))
    ///     .route("/health", |_req| async { text(StatusCode::OK, "ok") });
    /// ```
    pub fn route<F, Fut>(mut self, path: &str, handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.routes
            .insert(path.to_owned(), Arc::new(move |req| Box::pin(handler(req))));
        self
    }

    /// Send every request nothing else matched to `service` (an axum `Router`, say).
    pub fn fallback<S, B>(mut self, service: S) -> Server
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let svc = service.map_response(|res: Response<B>| res.map(box_body));
        self.fallback = Some(BoxCloneSyncService::new(svc));
        self
    }

    /// Run `f` once the listener is bound.
    pub fn on_started(mut self, f: impl FnOnce(&ServerInfo) + Send + 'static) -> Server {
        self.on_started.push(Box::new(f));
        self
    }

    /// How long a client may take to send its first request's headers, from the moment
    /// it connects (slowloris guard; 10 s). A client that sends nothing at all is cut
    /// too, and so is an HTTP/2 client that opens no stream in that time. Later requests
    /// on a kept-alive HTTP/1.1 connection get this long each.
    pub fn header_timeout(mut self, timeout: Duration) -> Server {
        self.header_timeout = timeout;
        self
    }

    /// TCP keep-alive on every accepted connection: once it has been quiet for `idle`,
    /// the kernel probes the client (every 10 s, at most 6 times unanswered: see
    /// [`Server::tcp_keepalive_probes`]) and drops the connection if it is gone. So a
    /// client that vanished without a word (cable pulled, NAT state lost) is noticed
    /// even on a stream with no events and no keep-alive comments. 60 s by default
    /// (with the probes, a dead client is dropped within about 2 minutes); `None`
    /// leaves keep-alive off. Whole seconds, 1 s to 32767 s.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Server {
        self.tcp.keepalive = idle;
        self
    }

    /// How often TCP keep-alive probes are sent once a connection is quiet, and how many
    /// may go unanswered before it is dropped (10 s, 6). Whole seconds, 1 s to 32767 s;
    /// 1 to 127 probes. Where the system has no such settings (not Linux, Android, the
    /// BSDs, macOS or Windows), its own apply.
    pub fn tcp_keepalive_probes(mut self, interval: Duration, count: u32) -> Server {
        self.tcp.interval = interval;
        self.tcp.retries = count;
        self
    }

    /// `TCP_USER_TIMEOUT` on every accepted connection (Linux and Android; ignored
    /// elsewhere): how long data sent to a client may stay unacknowledged before the
    /// kernel drops the connection. Without it, a client that vanished while events were
    /// being sent to it holds its connection through about 15 minutes of
    /// retransmissions. With keep-alive on, it also decides when unanswered probes end a
    /// quiet connection, so it should be at least the keep-alive idle time plus the
    /// probes' (the default, 120 s, is 60 s + 6 × 10 s).
    ///
    /// It also applies to a client that is there but keeps its receive window shut (it
    /// stopped reading, and the kernel's buffers are full): it is dropped after this long
    /// even if its outbox has room left. `None` leaves the system's behaviour.
    pub fn tcp_user_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.tcp.user_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive: ping a connection after `interval` without a frame from the
    /// client, and drop it if the ping is not answered within
    /// [`Server::http2_keep_alive_timeout`]. So a dead HTTP/2 peer is dropped within
    /// about a minute by default (30 s + 20 s), with or without open streams. `None`
    /// disables the pings (TCP keep-alive still applies).
    pub fn http2_keep_alive(mut self, interval: Option<Duration>) -> Server {
        self.http2_keep_alive = interval;
        self
    }

    /// How long an HTTP/2 keep-alive ping may go unanswered (20 s).
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Server {
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// How long shutdown waits for open connections before dropping them (2 s).
    pub fn grace(mut self, grace: Duration) -> Server {
        self.grace = grace;
        self
    }

    /// Send `message` to every open stream when the server shuts down, before closing them.
    pub fn shutdown_message(mut self, message: Message) -> Server {
        self.farewell = Some(message);
        self
    }

    /// Check the options and bind the listener. The process's open-file soft limit is
    /// raised to its hard limit first: every SSE client holds a descriptor.
    pub async fn bind(self) -> Result<BoundServer, ServerError> {
        let sse = self.sse.into_iter().collect::<Result<Vec<_>, _>>()?;
        self.tcp.check()?;
        if self.http2_keep_alive == Some(Duration::ZERO) {
            return Err(ServerError::Invalid(
                "the HTTP/2 keep-alive interval must not be zero (None disables it)",
            ));
        }
        if self.http2_keep_alive_timeout.is_zero() {
            return Err(ServerError::Invalid(
                "the HTTP/2 keep-alive timeout must not be zero",
            ));
        }
        raise_fd_limit();
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: self.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: self.addr,
            source,
        })?;
        let info = ServerInfo { local_addr };
        for f in self.on_started {
            f(&info);
        }
        let statics = self.static_files.map(|s| {
            let dir = ServeDir::new(&s.path).append_index_html_on_directories(true);
            (s, dir)
        });
        Ok(BoundServer {
            listener,
            local_addr,
            app: Arc::new(App {
                sse,
                routes: self.routes,
                statics,
                fallback: self.fallback,
            }),
            header_timeout: self.header_timeout,
            tcp: self.tcp,
            http2_keep_alive: self.http2_keep_alive,
            http2_keep_alive_timeout: self.http2_keep_alive_timeout,
            grace: self.grace,
            farewell: self.farewell,
        })
    }

    /// Bind and serve until Ctrl-C or SIGTERM.
    pub async fn run(self) -> Result<(), ServerError> {
        self.bind().await?.run().await;
        Ok(())
    }
}

/// A server whose listener is bound: ask it its address, then run it.
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
    header_timeout: Duration,
    tcp: TcpOptions,
    http2_keep_alive: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    grace: Duration,
    farewell: Option<Message>,
}

/// TCP options set on every accepted socket.
#[derive(Debug, Clone, Copy)]
struct TcpOptions {
    /// Keep-alive idle time; `None`: keep-alive off.
    keepalive: Option<Duration>,
    interval: Duration,
    retries: u32,
    user_timeout: Option<Duration>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            keepalive: Some(Duration::from_secs(60)),
            interval: Duration::from_secs(10),
            retries: 6,
            // Idle time plus every probe: the two agree on when a quiet peer is dead.
            user_timeout: Some(Duration::from_secs(120)),
        }
    }
}

impl TcpOptions {
    /// The kernel takes keep-alive times in whole seconds, 1 to 32767 (Linux's limits),
    /// and 1 to 127 probes.
    fn check(&self) -> Result<(), ServerError> {
        let secs = |d: Duration| (1..=32767).contains(&d.as_secs());
        if self.keepalive.is_some_and(|d| !secs(d)) {
            return Err(ServerError::Invalid(
                "the TCP keep-alive idle time must be 1 s to 32767 s (None disables it)",
            ));
        }
        if !secs(self.interval) {
            return Err(ServerError::Invalid(
                "the TCP keep-alive probe interval must be 1 s to 32767 s",
            ));
        }
        if !(1..=127).contains(&self.retries) {
            return Err(ServerError::Invalid(
                "the TCP keep-alive probe count must be 1 to 127",
            ));
        }
        if self.user_timeout.is_some_and(|d| d.as_millis() == 0) {
            return Err(ServerError::Invalid(
                "the TCP user timeout must be at least 1 ms (None leaves the system's)",
            ));
        }
        Ok(())
    }

    fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        let sock = socket2::SockRef::from(stream);
        if let Some(idle) = self.keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(idle);
            #[cfg(any(
                target_os = "linux",
                target_os = "android",
                target_os = "freebsd",
                target_os = "netbsd",
                target_os = "macos",
                target_os = "ios",
                windows,
            ))]
            let keepalive = keepalive
                .with_interval(self.interval)
                .with_retries(self.retries);
            sock.set_tcp_keepalive(&keepalive)?;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.user_timeout.is_some() {
            sock.set_tcp_user_timeout(self.user_timeout)?;
        }
        Ok(())
    }
}

struct App {
    sse: Vec<SseEndpoint>,
    routes: HashMap<String, Handler>,
    statics: Option<(StaticFiles, ServeDir)>,
    fallback: Option<Fallback>,
}

impl BoundServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until Ctrl-C or SIGTERM.
    pub async fn run(self) {
        self.run_until(Shutdown::signal().wait()).await
    }

    /// Serve until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            // Bounds what hyper itself buffers for a slow reader; our outbox holds the rest.
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive)
            .keep_alive_timeout(self.http2_keep_alive_timeout);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        // Streams served on the bare socket hold a clone; shutdown waits for all to drop.
        let (streams_done, mut streams_finished) = tokio::sync::mpsc::channel::<()>(1);
        // Every connection task watches this: at `Draining` a connection that has not
        // made its first request yet is dropped; at `Over` every connection is.
        let (stage_tx, stage) = tokio::sync::watch::channel(Stage::Serving);
        tokio::pin!(signal);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut signal => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: log, back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Every wait before the first request's headers are in shares this deadline.
            let deadline = Instant::now() + self.header_timeout;
            let _ = stream.set_nodelay(true);
            if let Err(e) = self.tcp.apply(&stream) {
                tracing::debug!(%peer, error = %e, "cannot set the TCP keep-alive options");
            }
            let app = self.app.clone();
            let abort = TransportAbort::new();
            let svc_abort = abort.clone();
            let requested = Arc::new(AtomicBool::new(false));
            let svc_requested = requested.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                svc_requested.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(PeerAddr(peer));
                // One abort drops the whole TCP connection: right for HTTP/1.1 (one
                // stream), wrong for HTTP/2, where it would take every sibling stream
                // with it. There a closed stream just ends its own response.
                if req.version() != http::Version::HTTP_2 {
                    req.extensions_mut().insert(svc_abort.clone());
                }
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.dispatch(req).await) }
            });
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let sse_app = self.app.clone();
            let done = streams_done.clone();
            let mut stage = stage.clone();
            tokio::spawn(async move {
                // A new connection's first request may open an SSE stream over HTTP/1.1:
                // then it is served on the bare socket, without hyper's buffers.
                let left = deadline.saturating_duration_since(Instant::now());
                let first = takeover::accept(stream, peer, &sse_app.sse, left, done);
                let stream = tokio::select! {
                    decision = first => match decision {
                        Decision::Done => return,
                        Decision::Hyper(stream) => stream,
                    },
                    _ = reached(&mut stage, Stage::Draining) => return,
                };
                drop(sse_app);
                // The protocol sniffing has no limit of its own: a client that connects
                // and sends nothing (or half an HTTP/2 preface) would hold its descriptor
                // for ever.
                let sniffed = tokio::select! {
                    s = tokio::time::timeout_at(deadline, sniffable(&stream)) => s,
                    _ = reached(&mut stage, Stage::Draining) => return,
                };
                if !matches!(sniffed, Ok(true)) {
                    tracing::debug!(%peer, "no request within the header timeout");
                    return;
                }
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = watcher.watch(conn);
                // hyper's header timeout starts afresh when it gets the connection (and
                // HTTP/2 has none): hold its first request to what is left of ours.
                let no_request = async {
                    tokio::time::sleep_until(deadline).await;
                    if requested.load(Ordering::Relaxed) {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    res = conn => if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    },
                    _ = abort.aborted() => tracing::debug!(%peer, "connection aborted"),
                    _ = no_request => {
                        tracing::debug!(%peer, "no request within the header timeout");
                    }
                    _ = reached(&mut stage, Stage::Over) => {}
                }
            });
        }
        tracing::info!("shutting down");
        drop(self.listener);
        let _ = stage_tx.send(Stage::Draining);
        for ep in &self.app.sse {
            // A stream still being set up (its authorize hook running) is refused or,
            // if it got in, closed: nothing opens behind the close below.
            ep.begin_shutdown();
        }
        let mut endpoints: Vec<&SseEndpoint> = Vec::new();
        for ep in &self.app.sse {
            if !endpoints.iter().any(|e| e.hub().same_as(ep.hub())) {
                endpoints.push(ep);
            }
        }
        // The streams closed here leave the hub at once, though their clients may still
        // be reading what they had queued: keep them, to drop them if the grace runs out.
        let mut streams = Vec::new();
        for ep in &endpoints {
            let hub = ep.hub();
            if let Some(m) = &self.farewell {
                hub.send_to_everyone(m);
            }
            // A jittered reconnection delay: no reconnect storm when we come back.
            let conns = hub.connections();
            for c in &conns {
                let _ = c.send_frame(ep.restart_hint(c));
            }
            streams.extend(conns);
            // Each stream flushes what it has queued, then ends.
            hub.close_all();
        }
        drop(streams_done);
        let all_closed = async {
            tokio::join!(graceful.shutdown(), streams_finished.recv());
        };
        if tokio::time::timeout(self.grace, all_closed).await.is_err() {
            // Never half-delivered without a trace: say how many streams still had
            // events queued (their clients were not reading) when they were dropped.
            // ...and any that opened since (refused by now, but racing in before).
            streams.extend(endpoints.iter().flat_map(|e| e.hub().connections()));
            let open: Vec<_> = streams.iter().filter(|c| c.transport_attached()).collect();
            let queued: Vec<usize> = open
                .iter()
                .map(|c| c.queued_bytes())
                .filter(|&b| b > 0)
                .collect();
            tracing::warn!(
                open_streams = open.len(),
                streams_with_queued_events = queued.len(),
                queued_bytes = queued.iter().sum::<usize>(),
                "grace period over; dropping open connections"
            );
            for c in open {
                c.abort();
            }
        }
        // Whatever is left (an endpoint mounted through `fallback`, a slow route) goes now.
        let _ = stage_tx.send(Stage::Over);
    }
}

/// Where the server is in its life, as connection tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Serving,
    /// Shutting down: no new requests.
    Draining,
    /// The grace period is over.
    Over,
}

/// Wait until the server has reached `stage` (or the server is gone).
async fn reached(stage: &mut tokio::sync::watch::Receiver<Stage>, at: Stage) {
    let _ = stage.wait_for(|s| *s >= at).await;
}

/// Wait until the first bytes tell HTTP/1 from HTTP/2: any byte that is not the start
/// of the HTTP/2 preface, or the whole preface. False if the client closes first.
async fn sniffable(stream: &tokio::net::TcpStream) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; PREFACE.len()];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n == PREFACE.len() || buf[..n] != PREFACE[..n] => return true,
            // Part of the preface: peek returns at once while bytes wait, so poll
            // gently for the rest (bounded by the caller's timeout).
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

impl App {
    async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let path = path.as_str();
        // The endpoint that serves exactly this path first (as the bare-socket path
        // picks it), then one whose prefix the path is below (it answers 404).
        let ep = self.sse.iter().find(|e| e.matches(path)).or_else(|| {
            self.sse.iter().find(|e| {
                path.strip_prefix(e.prefix())
                    .is_some_and(|r| r.starts_with('/'))
            })
        });
        if let Some(ep) = ep {
            return ep.handle(req).await.map(box_body);
        }
        if let Some(handler) = self.routes.get(path) {
            return handler(req).await;
        }
        if let Some((files, dir)) = &self.statics {
            if let Some(rest) = files.strip(path) {
                let rest = rest.to_owned();
                return serve_static(files, dir, req, rest).await;
            }
        }
        if let Some(fallback) = &self.fallback {
            return match fallback.clone().oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
        }
        text(StatusCode::NOT_FOUND, "not found")
    }
}

async fn serve_static(
    files: &StaticFiles,
    dir: &ServeDir,
    req: Request<Incoming>,
    rest: String,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let rest = if rest.is_empty() { "/".into() } else { rest };
    let pq = match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    match pq.parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, "bad path"),
    }
    let req = Request::from_parts(parts, body);
    let mut res = match dir.clone().oneshot(req).await {
        Ok(res) => res.map(box_body),
        Err(never) => match never {},
    };
    if let Some(age) = files.max_age {
        if res.status().is_success() {
            let v = format!("public, max-age={}", age.as_secs());
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
    }
    res
}

/// Raise the open-file soft limit to the hard limit (once per process is enough, but
/// calling it again is harmless).
fn raise_fd_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Box any body into the server's [`Body`].
pub fn box_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut res = Response::new(box_body(Full::new(Bytes::from(body.into()))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut res = Response::new(box_body(Full::new(Bytes::from(bytes))));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A response with a fixed body and content type.
pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(box_body(Full::new(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
