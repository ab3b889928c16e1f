//! The listening sockets, the accept loop and the life of one TCP connection: the gate
//! (`gate.rs`), socket options, the one header deadline, the take-over read, hyper, and
//! the idle timeout (`idle.rs`).
//!
//! Every wait before a connection's first request shares one deadline, from the moment
//! it connects ([`crate::Server::header_timeout`]): a client that sends nothing, half a
//! head, or half an HTTP/2 preface is cut at the same time, whichever wait it falls in.
//! Meanwhile the gate learns whether the client is slow (its first read for plain TCP,
//! [`SLOW_AFTER`] for silence and TLS handshakes) and may close it then.
//!
//! The listen backlog is the system's maximum (`somaxconn`) unless configured: with
//! std's 128, a crowd connecting at once overflows the accept queue, and every SYN the
//! kernel drops costs that client a one-second retry.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::body::{box_body, Body};
use super::gate::{Gate, Ticket, SLOW_AFTER};
use super::idle::{Activity, Tracked};
use super::routes::App;
#[cfg(feature = "tls")]
use super::tls::{Tls, TlsConfig};
use super::{ListenerInfo, ServerError};
use crate::connection::TransportAbort;
use crate::endpoint::PeerAddr;
use crate::log_limit::warn_limited;
use crate::transport::{self, Decision, FirstRequest, Waits};

/// TCP options set on every accepted socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOptions {
    /// Keep-alive idle time; `None`: keep-alive off.
    pub(crate) keepalive: Option<Duration>,
    pub(crate) interval: Duration,
    pub(crate) retries: u32,
    pub(crate) user_timeout: Option<Duration>,
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
    pub(crate) fn check(&self) -> Result<(), ServerError> {
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

/// A listener to bind: its address, and its TLS side, if any.
pub(crate) struct Listen {
    addr: SocketAddr,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsConfig>,
}

impl Listen {
    pub(crate) fn plain(addr: SocketAddr) -> Listen {
        Listen {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// A bound listener.
pub(crate) struct Bound {
    listener: TcpListener,
    pub(crate) info: ListenerInfo,
    #[cfg(feature = "tls")]
    tls: Option<Arc<Tls>>,
}

/// The listen backlog when none is configured: the system's maximum, which the kernel
/// would cap a larger one to anyway (Linux: `net.core.somaxconn`, 4096 since 5.4); 4096
/// where it cannot be read (there, too, the system caps it).
pub(crate) fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4096)
}

/// A listening socket on `addr` with `backlog` (std's and tokio's `bind` fix it at 128).
fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restarted server binds again at once despite its old connections
    // in TIME_WAIT. (On Windows it would let another process take the port.)
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Bind every listener with `backlog` (certificates are loaded first: a bad one binds
/// nothing).
pub(crate) async fn bind_all(listen: Vec<Listen>, backlog: u32) -> Result<Vec<Bound>, ServerError> {
    let mut bound = Vec::with_capacity(listen.len());
    for l in listen {
        #[cfg(feature = "tls")]
        let tls = l
            .tls
            .as_ref()
            .map(TlsConfig::load)
            .transpose()?
            .map(Arc::new);
        let bind_error = |source| ServerError::Bind {
            addr: l.addr,
            source,
        };
        let listener = listen_on(l.addr, backlog).map_err(bind_error)?;
        tracing::debug!(addr = %l.addr, backlog, "listening");
        let info = ListenerInfo {
            addr: listener.local_addr().map_err(bind_error)?,
            #[cfg(feature = "tls")]
            tls: tls.is_some(),
            #[cfg(not(feature = "tls"))]
            tls: false,
        };
        bound.push(Bound {
            listener,
            info,
            #[cfg(feature = "tls")]
            tls,
        });
    }
    Ok(bound)
}

/// The tasks that keep the TLS listeners' certificates fresh (aborted at shutdown).
pub(crate) fn spawn_reloaders(bound: &[Bound]) -> Vec<tokio::task::JoinHandle<()>> {
    #[cfg(feature = "tls")]
    return bound
        .iter()
        .filter_map(|b| b.tls.as_ref()?.spawn_reloader())
        .collect();
    #[cfg(not(feature = "tls"))]
    {
        let _ = bound;
        Vec::new()
    }
}

/// Where the server is in its life, as connection tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Serving,
    /// Shutting down: no new requests; a connection that has not made its first request
    /// yet is dropped.
    Draining,
    /// The grace period is over: every connection is dropped.
    Over,
}

/// Wait until the server has reached `stage` (or the server is gone).
async fn reached(stage: &mut watch::Receiver<Stage>, at: Stage) {
    let _ = stage.wait_for(|s| *s >= at).await;
}

/// How each connection is served: shared by every connection task.
pub(crate) struct Serving {
    pub(crate) app: Arc<App>,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) tcp: TcpOptions,
    pub(crate) gate: Arc<Gate>,
    pub(crate) hyper: auto::Builder<StreamExecutor>,
    pub(crate) graceful: GracefulShutdown,
    /// Streams served on the bare socket hold a clone; shutdown waits for all to drop.
    pub(crate) streams_done: mpsc::Sender<()>,
    pub(crate) stage: watch::Receiver<Stage>,
}

thread_local! {
    /// The abort handle of the HTTP/2 stream whose request the service was just called
    /// with, for [`StreamExecutor`] to take.
    static NEXT_STREAM: std::cell::Cell<Option<TransportAbort>> = const { std::cell::Cell::new(None) };
}

/// Spawns hyper's HTTP/2 stream tasks, each racing the abort handle its request carries:
/// the slow-consumer policy ends one stream (hyper resets it, and h2 drops what it
/// buffered for it) without touching its siblings on the connection.
///
/// hyper offers no other way to end a stream from outside: once it holds a piece of the
/// body and waits for the peer's flow-control window, it polls neither the body nor
/// anything of ours again, so a client that never grants window would keep the stream,
/// and what hyper holds of it, for as long as the connection lives. The handle reaches
/// here through a thread-local: hyper calls the service and spawns the stream's task in
/// one go (`H2Stream::new(service.call(req), ..)`, then `execute_h2stream`), on one
/// thread; `tests/h2_flow_control.rs` fails if that changes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        match NEXT_STREAM.take() {
            Some(abort) => tokio::spawn(UntilAborted {
                fut,
                aborted: abort.aborted_owned(),
            }),
            None => tokio::spawn(fut),
        };
    }
}

pin_project_lite::pin_project! {
    /// `fut` until it completes or `aborted` fires, whichever comes first. A struct, not
    /// an `async` block around `select!`: such a block keeps the future it captured and
    /// the copy it moved into the select, both (an idle HTTP/2 stream cost 6.2 KiB with
    /// it, 4.2 with this; 3.8 before either).
    struct UntilAborted<F> {
        #[pin]
        fut: F,
        #[pin]
        aborted: tokio::sync::futures::OwnedNotified,
    }
}

impl<F: Future<Output = ()>> Future for UntilAborted<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = self.project();
        if this.fut.poll(cx).is_ready() {
            return std::task::Poll::Ready(());
        }
        this.aborted.poll(cx)
    }
}

/// hyper's connection builder: our header timeout and buffer bound for HTTP/1, our
/// keep-alive pings and the per-stream abort for HTTP/2.
pub(crate) fn hyper_builder(
    header_timeout: Duration,
    h2_interval: Option<Duration>,
    h2_timeout: Duration,
) -> auto::Builder<StreamExecutor> {
    let mut builder = auto::Builder::new(StreamExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Bounds what hyper itself buffers for a slow reader; our outbox holds the rest.
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(h2_interval)
        .keep_alive_timeout(h2_timeout);
    builder
}

/// Accept connections on every listener until `signal` completes, each on its own task.
pub(crate) async fn accept_until(
    listeners: &[Bound],
    serving: &Serving,
    signal: impl Future<Output = ()> + Send,
) {
    let loops = futures_util::future::join_all(listeners.iter().map(|l| accept(l, serving)));
    tokio::select! {
        _ = signal => {}
        _ = loops => {}
    }
}

/// Accept connections on one listener, for ever.
async fn accept(bound: &Bound, serving: &Serving) {
    let listener = &bound.listener;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: log, back off, keep serving.
                    warn_limited!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Every wait before the first request's headers are in shares this deadline.
        let deadline = Instant::now() + serving.header_timeout;
        // Only the cap on all connections applies here: whether the client is slow to
        // send its request is for its first read to tell (`gate.rs`).
        let ticket = match serving.gate.enter(peer.ip()) {
            Ok(ticket) => ticket,
            Err(full) => {
                // Closed at once (and counted): the client learns now, not at its header
                // timeout.
                warn_limited!(%peer, reason = full.reason(), "connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = serving.tcp.apply(&stream) {
            tracing::debug!(%peer, error = %e, "cannot set the TCP keep-alive options");
        }
        let conn = Accepted {
            stream,
            peer,
            deadline,
            ticket,
            #[cfg(feature = "tls")]
            tls: bound.tls.clone(),
        };
        tokio::spawn(serve_connection(conn, PerConnection::of(serving)));
    }
}

/// A connection just accepted, with its place in the gate.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    ticket: Ticket,
    #[cfg(feature = "tls")]
    tls: Option<Arc<Tls>>,
}

/// What one connection's task needs of [`Serving`].
struct PerConnection {
    app: Arc<App>,
    idle_timeout: Option<Duration>,
    hyper: auto::Builder<StreamExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    done: mpsc::Sender<()>,
    stage: watch::Receiver<Stage>,
}

impl PerConnection {
    fn of(serving: &Serving) -> PerConnection {
        PerConnection {
            app: serving.app.clone(),
            idle_timeout: serving.idle_timeout,
            hyper: serving.hyper.clone(),
            watcher: serving.graceful.watcher(),
            done: serving.streams_done.clone(),
            stage: serving.stage.clone(),
        }
    }
}

impl FirstRequest for Ticket {
    fn requested(&self) {
        Ticket::requested(self);
    }

    fn slow(&self) -> bool {
        admit_slow(self)
    }

    fn timed_out(&self) {
        Ticket::timed_out(self);
    }

    fn held_to_the_end(&self) -> bool {
        self.counted()
    }

    type Slot = ();

    fn begin_stream(&self) -> Result<(), ()> {
        Ok(())
    }
}

/// A TLS connection's ticket, shared with the timer that judges it slow: a stream
/// taken over holds its place among its address's requests, as one through hyper does.
#[cfg(feature = "tls")]
struct OverTls(Arc<Ticket>);

#[cfg(feature = "tls")]
impl FirstRequest for OverTls {
    fn requested(&self) {
        self.0.requested();
    }

    fn slow(&self) -> bool {
        admit_slow(&self.0)
    }

    fn timed_out(&self) {
        self.0.timed_out();
    }

    fn held_to_the_end(&self) -> bool {
        self.0.counted()
    }

    type Slot = Option<super::gate::RequestSlot>;

    fn begin_stream(&self) -> Result<Self::Slot, ()> {
        self.0.begin_request()
    }
}

/// Tell the gate `ticket`'s client is slow: `false` (logged; the gate counted it) if it
/// must be closed now.
fn admit_slow(ticket: &Ticket) -> bool {
    match ticket.slow() {
        Ok(()) => true,
        Err(full) => {
            warn_limited!(address = %ticket.address(), reason = full.reason(), "connection refused");
            false
        }
    }
}

/// Completes if, at `at`, the connection has made no request and the gate refuses it as
/// slow; otherwise never (it counts as pending, or has made its request).
#[cfg(feature = "tls")]
async fn refused_as_slow(ticket: &Ticket, at: Instant) {
    tokio::time::sleep_until(at).await;
    if ticket.has_requested() || admit_slow(ticket) {
        std::future::pending::<()>().await;
    }
}

/// One connection, from its first byte to its end.
async fn serve_connection(conn: Accepted, on: PerConnection) {
    let Accepted {
        stream,
        peer,
        deadline,
        ticket,
        ..
    } = conn;
    let mut stage = on.stage.clone();
    #[cfg(feature = "tls")]
    if let Some(tls) = conn.tls {
        // TLS streams are hyper's (HTTP/2 or HTTP/1.1 by ALPN): the handshake shares the
        // header deadline. Its first read cannot hold a head, so the gate judges it by
        // time: no request within the grace (from this first look), and it is slow.
        let slow_at = Instant::now() + SLOW_AFTER;
        let stream = tokio::select! {
            // The handshake first: bytes that are there win over a timer that fired in
            // the same turn.
            biased;
            accepted = tls.accept(stream) => match accepted {
                Some(stream) => stream,
                None => return,
            },
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%peer, "no TLS handshake within the header timeout");
                ticket.timed_out();
                return;
            }
            () = refused_as_slow(&ticket, slow_at) => return,
            _ = reached(&mut stage, Stage::Draining) => return,
        };
        let over = Over::Tls { slow_at };
        let ticket = Arc::new(ticket);
        // HTTP/2 is hyper's. HTTP/1.1 may open an SSE stream: then it is served on the
        // bare socket too, through the session (`transport/tls.rs`), without hyper's
        // buffers.
        if stream.is_h2() {
            return hand_to_hyper(serve_hyper(stream, peer, deadline, over, ticket, on));
        }
        let waits = Waits {
            header_timeout: deadline.saturating_duration_since(Instant::now()),
            slow_after: SLOW_AFTER,
        };
        let first = transport::accept(
            stream,
            peer,
            (&on.app.sse, &on.app.hosts),
            waits,
            on.done.clone(),
            OverTls(ticket.clone()),
        );
        let stream = tokio::select! {
            biased;
            decision = first => match decision {
                Decision::Done => return,
                Decision::Hyper(stream, _) => stream,
            },
            () = refused_as_slow(&ticket, slow_at) => return,
            _ = reached(&mut stage, Stage::Draining) => return,
        };
        return hand_to_hyper(serve_hyper(stream, peer, deadline, over, ticket, on));
    }
    // A new connection's first request may open an SSE stream over HTTP/1.1: then it is
    // served on the bare socket, without hyper's buffers.
    let waits = Waits {
        header_timeout: deadline.saturating_duration_since(Instant::now()),
        slow_after: SLOW_AFTER,
    };
    let first = transport::accept(
        stream,
        peer,
        (&on.app.sse, &on.app.hosts),
        waits,
        on.done.clone(),
        ticket,
    );
    let (stream, ticket) = tokio::select! {
        decision = first => match decision {
            Decision::Done => return,
            Decision::Hyper(stream, ticket) => (stream, Arc::new(ticket)),
        },
        _ = reached(&mut stage, Stage::Draining) => return,
    };
    // Judged already (its first read), or proven by a complete head.
    hand_to_hyper(serve_hyper(stream, peer, deadline, Over::Plain, ticket, on));
}

/// Serve a connection through hyper on a task of its own, and end this one: this task's
/// future is sized for every wait before the first request (the TLS handshake, the
/// take-over's read), 8.5 KiB, which a connection hyper serves for hours would keep.
fn hand_to_hyper(serving: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(serving);
}

/// What a connection hyper serves came over.
#[derive(Clone, Copy)]
enum Over {
    /// Plain TCP: judged slow or not by its first read already.
    Plain,
    /// TLS: refused as slow at `slow_at` if it has made no request by then; its
    /// requests count toward the cap per address.
    #[cfg(feature = "tls")]
    Tls { slow_at: Instant },
}

/// A connection hyper serves, until it ends, is aborted, idles or the server stops; or,
/// before its first request, until its header deadline, or (TLS) until it is refused as
/// slow (plain ones were judged by their first read).
async fn serve_hyper<I>(
    io: I,
    peer: SocketAddr,
    deadline: Instant,
    over: Over,
    ticket: Arc<Ticket>,
    on: PerConnection,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let PerConnection {
        app,
        idle_timeout,
        hyper,
        watcher,
        mut stage,
        ..
    } = on;
    let abort = TransportAbort::new();
    let activity = Activity::new();
    let capped = !matches!(over, Over::Plain);
    let svc = service(
        app,
        peer,
        abort.clone(),
        (ticket.clone(), capped),
        activity.clone(),
    );
    let conn = watcher.watch(hyper.serve_connection(TokioIo::new(io), svc).into_owned());
    // hyper's header timeout starts afresh when it gets the connection (and HTTP/2 has
    // none): hold its first request to what is left of ours.
    let no_request = async {
        tokio::time::sleep_until(deadline).await;
        if ticket.has_requested() {
            std::future::pending::<()>().await;
        }
    };
    let slow = async {
        match over {
            #[cfg(feature = "tls")]
            Over::Tls { slow_at } => refused_as_slow(&ticket, slow_at).await,
            Over::Plain => std::future::pending().await,
        }
    };
    tokio::select! {
        // The connection first: a request it can read now is in before a timer that
        // fired in the same turn judges it.
        biased;
        res = conn => if let Err(e) = res {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        _ = abort.aborted() => tracing::debug!(%peer, "connection aborted"),
        _ = no_request => {
            tracing::debug!(%peer, "no request within the header timeout");
            ticket.timed_out();
        }
        _ = slow => tracing::debug!(%peer, "slow connection refused"),
        _ = activity.idle(idle_timeout) => tracing::debug!(%peer, "idle connection closed"),
        _ = reached(&mut stage, Stage::Over) => {}
    }
}

/// The hyper service of one connection: notes that a request came, takes its slot
/// among the address's requests (`capped`: TLS), tags it with the peer's address and its
/// abort handle, dispatches it, and keeps the connection busy until the response's body
/// is done.
fn service(
    app: Arc<App>,
    peer: SocketAddr,
    abort: TransportAbort,
    (ticket, capped): (Arc<Ticket>, bool),
    activity: Activity,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        ticket.requested();
        let in_flight = activity.begin();
        let slot = if capped {
            ticket.begin_request()
        } else {
            Ok(None)
        };
        // One abort drops the whole TCP connection: right for HTTP/1.1 (one stream),
        // wrong for HTTP/2, where it would take every sibling stream with it. There each
        // stream gets a handle of its own, which ends its task (`StreamExecutor`).
        if req.version() != http::Version::HTTP_2 {
            req.extensions_mut().insert(abort.clone());
        } else {
            // Set for every HTTP/2 request (`None` for a refused one): a handle is never
            // left for another stream's task.
            let stream = slot.is_ok().then(TransportAbort::new);
            if let Some(stream) = &stream {
                req.extensions_mut().insert(stream.clone());
            }
            NEXT_STREAM.set(stream);
        }
        req.extensions_mut().insert(PeerAddr(peer));
        let app = app.clone();
        // Boxed: hyper keeps the response future inline in the stream's task (HTTP/2)
        // or the connection's (HTTP/1.1) for as long as the body flows, sized for the
        // largest state of `dispatch`; boxed, it is freed once the response is made.
        Box::pin(async move {
            let res = match slot {
                Ok(slot) => app.dispatch(req).await.map(|body| (body, slot)),
                Err(()) => {
                    warn_limited!(%peer, "request refused: too many in progress from this address");
                    too_many().map(|body| (body, None))
                }
            };
            Ok::<_, Infallible>(
                res.map(|(body, slot)| box_body(Tracked::new(body, in_flight, slot))),
            )
        })
    })
}

/// The answer to a request past `Server::max_tls_requests_per_address`.
fn too_many() -> http::Response<Body> {
    let mut res = super::body::text(
        http::StatusCode::TOO_MANY_REQUESTS,
        "too many requests in progress from this address",
    );
    res.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("5"),
    );
    res
}

/// Raise the open-file soft limit to the hard limit (once per process is enough, but
/// calling it again is harmless).
pub(crate) fn raise_fd_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}
