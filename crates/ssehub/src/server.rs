//! A small HTTP server in SimpleW's spirit: new server, add the SSE endpoint, static
//! files and a few routes, run. HTTP/1.1 and HTTP/2 (prior knowledge) through hyper.
//!
//! [`Server`] is the builder and [`BoundServer`] the bound listener; behind them:
//! - `listener.rs`: the listening sockets (their backlog), the accept loop and one
//!   connection's life (socket options, the one header deadline, the take-over read,
//!   hyper);
//! - `gate.rs`: connections in all, and those slow to send a request, in all and per
//!   client address, and the count of the connections it refuses; `idle.rs`: the idle
//!   timeout of connections with no request;
//! - `routes.rs`: the allowed hosts (`crate::hosts`), then dispatch to endpoints,
//!   routes, static files, the fallback;
//! - `static_files.rs`: [`StaticFiles`], what of a folder is served;
//! - `drain.rs`: what shutdown does to the SSE streams;
//! - `body.rs`: the one response body every route answers with;
//! - `tls.rs`: `TlsConfig` (feature `tls`): rustls, ALPN, certificate reload.
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
//! ## Connections that carry nothing
//! A connection with no request in progress is closed after [`Server::idle_timeout`]
//! (60 s): an HTTP/2 connection after its last stream, a kept-alive HTTP/1.1 one after
//! its last answer. Connections slow to send their first request (half a head in their
//! first read, or silent for a second) are capped in all and per client address
//! ([`Server::max_pending_connections`]); a crowd that sends complete requests at once is
//! not, however many come from one address. All connections are capped by
//! [`Server::max_connections`] if set. Every connection closed by a cap or the header
//! timeout is counted in the hubs' refusals (`/stats`, `/metrics`).
//!
//! ## Clients that go quiet
//! A client has [`Server::header_timeout`] from the moment it connects to send its first
//! request's headers: one deadline, whichever wait it falls in (the take-over's read of
//! the first bytes, hyper's reading). A client that vanishes without a
//! word (cable pulled, NAT state lost) is noticed by TCP keep-alive probes and
//! `TCP_USER_TIMEOUT` ([`Server::tcp_keepalive`], [`Server::tcp_user_timeout`]: about
//! two minutes by default, on quiet streams too), and an HTTP/2 peer that stops
//! answering pings by [`Server::http2_keep_alive`] (under a minute).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::conn::auto;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

mod body;
mod drain;
mod gate;
mod idle;
mod listener;
mod routes;
mod static_files;
#[cfg(feature = "tls")]
mod tls;

pub use static_files::StaticFiles;
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsError};

use self::body::{box_body, BoxError};
use self::gate::{Gate, GateLimits};
use self::listener::{Bound, Listen, Serving, Stage, TcpOptions};
use self::routes::{App, Fallback, Handler};
use crate::endpoint::{ConfigError, SseEndpoint, SseOptions};
use crate::hosts::AllowedHosts;
use crate::message::Message;
use crate::shutdown;

type OnStarted = Box<dyn FnOnce(&ServerInfo) + Send>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A set-up mistake in the options.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A server option is out of range.
    #[error("invalid server option: {0}")]
    Invalid(&'static str),
    /// A TLS listener's certificate or key could not be loaded.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
}

/// What [`Server::on_started`] callbacks learn.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The address the server listens on (with the real port when 0 was asked for); the
    /// first of [`ServerInfo::listeners`].
    pub local_addr: SocketAddr,
    /// Every listener, in the order they were given.
    pub listeners: Vec<ListenerInfo>,
}

/// One listener of a bound server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// Its address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
}

impl ListenerInfo {
    /// `http://ADDR/` or `https://ADDR/` (an unspecified address shown as loopback).
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("{}://{addr}/", if self.tls { "https" } else { "http" })
    }
}

/// The server builder.
pub struct Server {
    listen: Vec<Listen>,
    sse: Vec<Result<SseEndpoint, ConfigError>>,
    static_files: Option<StaticFiles>,
    routes: HashMap<String, Handler>,
    fallback: Option<Fallback>,
    on_started: Vec<OnStarted>,
    header_timeout: Duration,
    idle_timeout: Option<Duration>,
    gate: GateLimits,
    listen_backlog: Option<u32>,
    tcp: TcpOptions,
    http2_keep_alive: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    grace: Duration,
    farewell: Option<Message>,
    allowed_hosts: Option<Vec<String>>,
}

impl Server {
    /// A server that will listen on `addr`.
    pub fn new(addr: impl Into<SocketAddr>) -> Server {
        Server {
            listen: vec![Listen::plain(addr.into())],
            sse: Vec::new(),
            static_files: None,
            routes: HashMap::new(),
            fallback: None,
            on_started: Vec::new(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(60)),
            gate: GateLimits::default(),
            listen_backlog: None,
            tcp: TcpOptions::default(),
            http2_keep_alive: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            grace: Duration::from_secs(2),
            farewell: None,
            allowed_hosts: None,
        }
    }

    /// Listen on `addr` too (plain HTTP), besides the address of [`Server::new`]: say,
    /// port 80 beside a TLS listener on 443.
    pub fn also_listen(mut self, addr: impl Into<SocketAddr>) -> Server {
        self.listen.push(Listen::plain(addr.into()));
        self
    }

    /// Speak TLS on the address of [`Server::new`] (feature `tls`): HTTP/2 or HTTP/1.1
    /// by ALPN, the certificate from `config`, reloaded when it changes.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: TlsConfig) -> Server {
        self.listen[0].tls = Some(config);
        self
    }

    /// Answer only requests that name one of `hosts` (each a name or an address, with
    /// or without a port: `localhost`, `127.0.0.1`, `[::1]`, `hub.example:8443`): in
    /// `Host`, or HTTP/2's `:authority`. Any other gets 421 (Misdirected Request) before
    /// any route, on every path a request takes (the bare-socket streams, hyper, TLS,
    /// HTTP/2); a request that names no host (HTTP/1.0 without `Host`) passes. Names are
    /// compared ASCII case-insensitively; one without a port allows every port.
    ///
    /// Why: a web page whose name its author points at this server's address (DNS
    /// rebinding) is, for the browser, of the same origin as this server, so it passes
    /// every check of where a request comes from, and may read and publish. Its requests
    /// still name its own host. A server on loopback (a development hub, a sidecar)
    /// should allow its loopback names only; one behind a proxy, the names the proxy
    /// passes on. All names by default. An entry that is not a name is an error of
    /// [`Server::bind`]. It guards this server's routes: an [`SseEndpoint`] or a
    /// [`crate::HubApi`] mounted in another server (axum) is that server's to guard.
    ///
    /// ```
    /// let server = ssehub::Server::new(([127, 0, 0, 1], 2015))
    ///     .allowed_hosts(["localhost", "127.0.0.1", "[::1]"]);
    /// ```
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Server
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Add an SSE endpoint. Option mistakes are reported by [`Server::bind`].
    pub fn sse(mut self, options: SseOptions) -> Server {
        self.sse.push(SseEndpoint::new(options));
        self
    }

    /// Serve a Mercure hub at its path (feature `mercure`): subscribers' streams on the
    /// endpoint's own way (the bare socket for HTTP/1.1), publishes and preflights
    /// through its route, and its other resources (the subscriptions API below its
    /// path, the protected-resource metadata) through the same handler. See
    /// [`crate::Mercure`].
    #[cfg(feature = "mercure")]
    pub fn mercure(mut self, mercure: crate::Mercure) -> Server {
        let path = mercure.endpoint().prefix().to_owned();
        self.sse.push(Ok(mercure.endpoint().clone()));
        let handler = move |req| {
            let mercure = mercure.clone();
            async move { mercure.handle(req).await }
        };
        self.route(&path, handler.clone())
            .route(&format!("{path}/*"), handler.clone())
            .route(crate::mercure::METADATA_PATH, handler)
    }

    /// Serve static files.
    pub fn static_files(mut self, files: StaticFiles) -> Server {
        self.static_files = Some(files);
        self
    }

    /// Answer requests for exactly `path` (any method) with `handler`. The response's
    /// body may be any `http_body::Body` of `Bytes` (`String`, `Full<Bytes>`, ...).
    ///
    /// ```
    /// use ssehub::Server;
    ///
    /// let server = Server::new(([127, 0, 0, 1], 0))
    ///     .route("/health", |_req| async { http::Response::new(String::from("ok")) });
    /// ```
    pub fn route<F, Fut, B>(mut self, path: &str, handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let handler = Arc::new(handler);
        let boxed: Handler = Arc::new(move |req| {
            let fut = handler(req);
            Box::pin(async move { fut.await.map(box_body) })
        });
        self.routes.insert(path.to_owned(), boxed);
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

    /// How long a connection may stay open with no request in progress (60 s; `None`:
    /// for ever). An SSE stream is a request in progress for its whole life, so this
    /// closes only connections that carry nothing: an HTTP/2 connection whose streams
    /// have all ended (hyper would keep it, answering its pings, for as long as the client
    /// likes), or an HTTP/1.1 connection kept alive after its last answer.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.idle_timeout = timeout;
        self
    }

    /// The most TCP connections the server holds at once, whatever they carry (`None`,
    /// the default: as many as the process's open-file limit allows). Past it a new
    /// connection is closed at once. Streams have their own limits
    /// ([`SseOptions::max_connections`]); this one also counts HTTP/2 connections (which
    /// may carry many streams, or none) and connections that have sent nothing yet.
    pub fn max_connections(mut self, max: Option<usize>) -> Server {
        self.gate.connections = max;
        self
    }

    /// The most connections that are slow to send their first request's head: in all
    /// (1,024 by default) and from one client address (128; IPv6 per /64). A connection
    /// is slow if its first read (as soon as it is readable) is not a complete HTTP/1.x
    /// head, or if it sends nothing for a second; over TLS, if it has made no request a
    /// second after the server first looked at it. Past either cap, such a connection is
    /// closed at once (counted in `/stats` as `max_pending_connections` or
    /// `max_pending_per_ip`). So a client that opens many connections and sends half a
    /// request on each (slowloris), or nothing, holds at most this many until
    /// [`Server::header_timeout`] cuts them, while a crowd sending whole requests at once
    /// (a reconnect storm behind a proxy, all from the proxy's address) is never
    /// refused by these caps. `None`: no limit.
    pub fn max_pending_connections(
        mut self,
        total: Option<usize>,
        per_address: Option<usize>,
    ) -> Server {
        self.gate.pending = total;
        self.gate.pending_per_address = per_address;
        self
    }

    /// The most requests in progress at once from one client address over the TLS
    /// listeners (1,024 by default; IPv6 per /64; `None`: no limit). An SSE stream is a
    /// request in progress for its whole life, so this caps the streams one address
    /// holds, however it spreads them: HTTP/2 lets one connection carry 200 of them, and
    /// a client may open many connections. Past it a request gets `429 Too Many Requests`
    /// (counted in `/stats` as `max_requests_per_ip`); other addresses are served.
    ///
    /// Plain listeners are not capped: they usually sit behind a proxy or load balancer,
    /// where every client has the proxy's address (cap streams per client there with
    /// [`SseOptions::max_connections_per_ip`] and `trusted_proxies`). Raise it for TLS
    /// clients behind a large NAT.
    ///
    /// ```
    /// let server = ssehub::Server::new(([0, 0, 0, 0], 443)).max_tls_requests_per_address(Some(256));
    /// ```
    pub fn max_tls_requests_per_address(mut self, max: Option<usize>) -> Server {
        self.gate.requests_per_address = max;
        self
    }

    /// The listen backlog of every listener: how many connections the kernel completes
    /// and queues before the server accepts them. By default the system's maximum
    /// (`/proc/sys/net/core/somaxconn` on Linux, 4096 since 5.4; 4096 where it cannot be
    /// read); a larger value is capped by the system. Too small a queue (std's 128)
    /// overflows when a crowd connects at once, and each dropped SYN costs its client a
    /// one-second retry. At least 1.
    pub fn listen_backlog(mut self, backlog: u32) -> Server {
        self.listen_backlog = Some(backlog);
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
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(ServerError::Invalid(
                "the idle timeout must not be zero (None disables it)",
            ));
        }
        if self.http2_keep_alive_timeout.is_zero() {
            return Err(ServerError::Invalid(
                "the HTTP/2 keep-alive timeout must not be zero",
            ));
        }
        if self.listen_backlog == Some(0) {
            return Err(ServerError::Invalid(
                "the listen backlog must be at least 1",
            ));
        }
        let hosts = match &self.allowed_hosts {
            None => AllowedHosts::default(),
            Some(hosts) => AllowedHosts::only(hosts).map_err(|_| {
                ServerError::Invalid(
                    "an allowed host is a name or an address, with or without a port",
                )
            })?,
        };
        listener::raise_fd_limit();
        let backlog = self.listen_backlog.unwrap_or_else(listener::system_backlog);
        let listeners = listener::bind_all(self.listen, backlog).await?;
        let info = ServerInfo {
            local_addr: listeners[0].info.addr,
            listeners: listeners.iter().map(|l| l.info).collect(),
        };
        for f in self.on_started {
            f(&info);
        }
        Ok(BoundServer {
            listeners,
            app: Arc::new(App::new(
                sse,
                self.routes,
                self.static_files,
                self.fallback,
                hosts,
            )),
            hyper: listener::hyper_builder(
                self.header_timeout,
                self.http2_keep_alive,
                self.http2_keep_alive_timeout,
            ),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            gate: self.gate,
            tcp: self.tcp,
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
    listeners: Vec<Bound>,
    app: Arc<App>,
    hyper: auto::Builder<listener::StreamExecutor>,
    header_timeout: Duration,
    idle_timeout: Option<Duration>,
    gate: GateLimits,
    tcp: TcpOptions,
    grace: Duration,
    farewell: Option<Message>,
}

impl BoundServer {
    /// The address the server listens on (its first listener's).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].info.addr
    }

    /// Every listener, in the order they were given.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners.iter().map(|l| l.info).collect()
    }

    /// Serve until Ctrl-C or SIGTERM.
    pub async fn run(self) {
        self.run_until(shutdown::signal()).await
    }

    /// Serve until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let (streams_done, mut streams_finished) = tokio::sync::mpsc::channel::<()>(1);
        let (stage_tx, stage) = tokio::sync::watch::channel(Stage::Serving);
        let serving = Serving {
            app: self.app.clone(),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            tcp: self.tcp,
            // The server's refusals are counted where its endpoints' are: in their hubs.
            gate: Gate::new(self.gate, self.app.sse.iter().map(|e| e.hub().clone())),
            hyper: self.hyper,
            graceful,
            streams_done,
            stage,
        };
        let reloaders = listener::spawn_reloaders(&self.listeners);
        listener::accept_until(&self.listeners, &serving, signal).await;
        tracing::info!("shutting down");
        drop(self.listeners);
        reloaders.into_iter().for_each(|r| r.abort());
        let _ = stage_tx.send(Stage::Draining);
        let drain = drain::begin(&self.app.sse, self.farewell.as_ref());
        let Serving {
            graceful,
            streams_done,
            ..
        } = serving;
        drop(streams_done);
        let all_closed = async {
            tokio::join!(graceful.shutdown(), streams_finished.recv());
        };
        if tokio::time::timeout(self.grace, all_closed).await.is_err() {
            drain.give_up();
        }
        // Whatever is left (an endpoint mounted through `fallback`, a slow route) goes now.
        let _ = stage_tx.send(Stage::Over);
    }
}
