//! The endpoint's options: every setter with its default, checked once by
//! [`crate::SseEndpoint::new`].

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::cors::Origins;
use super::hooks::{AuthorizeHook, ConnectHook, DisconnectHook};
use super::request::{Rejection, RequestContext};
use crate::admission::{canonical, Limits};
use crate::auth::{Auth, Identity};
use crate::connection::{Connection, SlowConsumerPolicy};
use crate::hub::{Hub, JoinError, ROOM_ALL};
use crate::uri::clean_prefix;

/// [`SseOptions::shutdown_retry`]'s default window: 1 s to 6 s.
const DEFAULT_SHUTDOWN_RETRY: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(6));

/// A set-up mistake, reported before anything is served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint prefix is unusable.
    #[error("invalid SSE prefix {0:?}: it must be a path other than \"/\", such as \"/sse\"")]
    Prefix(String),
    /// The outbox limit is zero.
    #[error("outbox limit must be at least 1 byte")]
    OutboxLimit,
    /// The auto-join room name is not a valid room name.
    #[error("invalid auto-join room: {0}")]
    AutoJoinRoom(JoinError),
    /// Both `allow_any_origin(true)` and `allowed_origins` were set.
    #[error("allow_any_origin and allowed_origins contradict each other: set one")]
    Origins,
}

/// Options of the SSE endpoint. Every setter has a sensible default.
///
/// ```
/// use std::time::Duration;
/// use ssehub::{SseEndpoint, SseOptions};
///
/// let options = SseOptions::new()
///     .prefix("/events")
///     .keep_alive(Some(Duration::from_secs(20)))
///     .on_connect(|conn, _ctx| async move {
///         let _ = conn.send_event("welcome", "hello world");
///     });
/// let hub = options.hub().clone(); // store for later: broadcast from anywhere
/// let endpoint = SseEndpoint::new(options)?;
/// assert_eq!(endpoint.prefix(), "/events");
/// # drop(hub);
/// # Ok::<(), ssehub::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SseOptions {
    pub(crate) prefix: String,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) auto_join_room: Option<String>,
    pub(crate) allow_any_origin: bool,
    pub(crate) origins: Option<Origins>,
    pub(crate) allow_credentials: bool,
    pub(crate) retry: Option<Duration>,
    /// The window a stream's `retry:` at shutdown is drawn from.
    pub(crate) shutdown_retry: (Duration, Duration),
    pub(crate) outbox_limit: usize,
    pub(crate) slow_consumer: SlowConsumerPolicy,
    pub(crate) hub: Hub,
    pub(crate) authorize: Option<AuthorizeHook>,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_disconnect: Option<DisconnectHook>,
    pub(crate) rooms_from_query: bool,
    /// Another dialect than rooms reads the streams' requests (`dialect.rs`).
    pub(crate) dialect: Option<std::sync::Arc<dyn super::Dialect>>,
    pub(crate) limits: Limits,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) batch_window: Duration,
    pub(crate) adaptive_batching: bool,
    pub(crate) auth: Option<Auth>,
}

impl Default for SseOptions {
    fn default() -> Self {
        SseOptions {
            prefix: "/sse".into(),
            keep_alive: Some(Duration::from_secs(15)),
            auto_join_room: Some(ROOM_ALL.into()),
            allow_any_origin: false,
            allow_credentials: false,
            origins: None,
            retry: None,
            shutdown_retry: DEFAULT_SHUTDOWN_RETRY,
            outbox_limit: 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Close,
            hub: Hub::new(),
            authorize: None,
            on_connect: None,
            on_disconnect: None,
            rooms_from_query: false,
            dialect: None,
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
            batch_window: Duration::from_millis(20),
            adaptive_batching: true,
            auth: None,
        }
    }
}

impl SseOptions {
    /// The defaults: prefix `/sse`, keep-alive every 15 s, auto-join `__all`, same-origin
    /// only, no retry hint, 1 MiB outbox per connection, close slow consumers, a 20 ms
    /// write batching window for busy streams, no connection limits, a new hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoint's path. A leading slash is added and a trailing one removed; `/` is
    /// refused by [`SseEndpoint::new`](crate::SseEndpoint::new).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often an idle stream gets `: ping`; `None` disables keep-alive. A stream that
    /// carried any frame during the interval is not pinged.
    pub fn keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The room every new connection joins ([`ROOM_ALL`], `__all`, by default).
    pub fn auto_join_room(mut self, room: impl Into<String>) -> Self {
        self.auto_join_room = Some(room.into());
        self
    }

    /// Join new connections to no room: the application joins them (in `on_connect`).
    pub fn no_auto_join(mut self) -> Self {
        self.auto_join_room = None;
        self
    }

    /// Join each stream to the rooms its `room` query parameters name
    /// (`/sse?room=a&room=b`; off by default). They are checked before the stream opens:
    /// an invalid name, or more rooms than the hub allows a connection, is a 400 that
    /// says why. They are joined before `on_connect` runs.
    pub fn rooms_from_query(mut self, on: bool) -> Self {
        self.rooms_from_query = on;
        self
    }

    /// Allow cross-origin `EventSource`s: adds `Access-Control-Allow-Origin: *` and
    /// answers CORS preflight requests.
    pub fn allow_any_origin(mut self, allow: bool) -> Self {
        self.allow_any_origin = allow;
        self
    }

    /// Let only these web pages open streams from their visitors' browsers (off by
    /// default: any page may, and only the browser's CORS rules stand in its way). A
    /// request whose `Origin` is neither one of these (such as `https://app.example`)
    /// nor this server's own host is answered 403 before any stream opens; a listed one
    /// gets `Access-Control-Allow-Origin` with its origin (and preflights are answered). A
    /// request without `Origin` (not from a web page, or a same-origin `GET`) passes. An
    /// empty list allows the server's own pages only. Cannot be combined with
    /// [`SseOptions::allow_any_origin`].
    ///
    /// ```
    /// let options = ssehub::SseOptions::new().allowed_origins(["https://app.example"]);
    /// ```
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = Some(Origins::new(origins));
        self
    }

    /// Let the pages of [`SseOptions::allowed_origins`] send cookies with their streams
    /// (`new EventSource(url, { withCredentials: true })`, for a token in a cookie):
    /// their answers carry `Access-Control-Allow-Credentials: true`. Never with
    /// [`SseOptions::allow_any_origin`], which browsers refuse credentials for.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.allow_credentials = allow;
        self
    }

    /// A reconnection delay hint (`retry:`) written at the start of every stream. Each
    /// connection gets 80-100 % of it, at random, to spread reconnections after a restart.
    pub fn retry(mut self, retry: Option<Duration>) -> Self {
        self.retry = retry;
        self
    }

    /// The `retry:` every open stream is told when the server shuts down, drawn per
    /// connection, uniformly, from `from..=to` (1 s to 6 s by default): so that after a
    /// restart the clients come back spread over the window, not all in one instant
    /// (and each resumes with its `Last-Event-ID`). `to` below `from` is taken as `from`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = ssehub::SseOptions::new()
    ///     .shutdown_retry(Duration::from_secs(2), Duration::from_secs(20));
    /// # drop(options);
    /// ```
    pub fn shutdown_retry(mut self, from: Duration, to: Duration) -> Self {
        self.shutdown_retry = (from, to.max(from));
        self
    }

    /// The most bytes queued for one connection before the slow-consumer policy applies.
    pub fn outbox_limit(mut self, bytes: usize) -> Self {
        self.outbox_limit = bytes;
        self
    }

    /// What to do with a client that does not keep up.
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// How long a stream lets events gather before its next write when the server falls
    /// behind (20 ms by default; `Duration::ZERO`: never). While the server keeps up,
    /// every event is written at once: on the bare-socket path (HTTP/1.1, see
    /// ARCHITECTURE.md) by the sender itself, without waking the stream's task. When a
    /// write is overtaken by a later fan-out (events arrive faster than this process
    /// writes them), the stream it wrote lets the next events gather for this long and
    /// sends them in one write: fewer, larger writes cut the CPU per event (one send
    /// system call costs more than the event in it) and let the backlog drain, so under
    /// saturation tail latency falls too (BENCHMARKS.md). See
    /// [`SseOptions::adaptive_batching`] to batch after every write instead.
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// Batch only when the server falls behind (`true`, the default), or after every
    /// write (`false`: the window of [`SseOptions::batch_window`] always applies to a
    /// stream that wrote within it, trading latency for CPU at any load).
    pub fn adaptive_batching(mut self, adaptive: bool) -> Self {
        self.adaptive_batching = adaptive;
        self
    }

    /// The most streams this endpoint holds at once (`None`, the default: as many as the
    /// process's open-file limit allows). Past it a client gets 503 with `Retry-After`.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.limits.total = max;
        self
    }

    /// The most streams from one client IP address (`None` by default). Past it the
    /// client gets 503 with `Retry-After`. The address comes from the [`PeerAddr`](crate::PeerAddr)
    /// request extension, which [`crate::Server`] sets; when the endpoint is mounted in
    /// another server, insert it (see `examples/axum.rs`), or only the total limit applies.
    /// Behind a proxy every client shares the proxy's address unless the proxy is trusted
    /// ([`SseOptions::trusted_proxies`]). IPv6 clients are counted per /64
    /// ([`SseOptions::ipv6_prefix`]).
    pub fn max_connections_per_ip(mut self, max: Option<usize>) -> Self {
        self.limits.per_ip = max;
        self
    }

    /// How IPv6 clients are told apart by [`SseOptions::max_connections_per_ip`]: by the
    /// first `bits` bits of their address (64 by default: one subscriber line usually
    /// gets a /64, so one client could otherwise open streams from as many addresses as
    /// it likes). 128 counts each address apart. IPv4 addresses (also IPv4-mapped IPv6
    /// ones) are counted one by one.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.limits.ipv6_prefix = bits.min(128);
        self
    }

    /// Proxies trusted to say whom they forward for (off by default). When a request
    /// comes from one of these addresses, its client is the rightmost address of its
    /// `Forwarded: for=` (RFC 7239) or, without one, `X-Forwarded-For` header that is not
    /// itself a trusted proxy: that is the address [`SseOptions::max_connections_per_ip`]
    /// counts and [`RequestContext::client_ip`] gives. From any other peer these headers
    /// are ignored (anyone can write them).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// let nginx: IpAddr = "127.0.0.1".parse().unwrap();
    /// let options = ssehub::SseOptions::new()
    ///     .max_connections_per_ip(Some(8))
    ///     .trusted_proxies([nginx]);
    /// ```
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().map(canonical).collect();
        self
    }

    /// Use this hub instead of a new one (to share rooms between endpoints).
    pub fn with_hub(mut self, hub: Hub) -> Self {
        self.hub = hub;
        self
    }

    /// The hub connections of this endpoint join. Clone it to broadcast from anywhere.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Decide, before the handshake, whether a request may open a stream, and who it is:
    /// return `Ok(identity)` (an [`Identity`], which `on_connect` reads from
    /// [`RequestContext::identity`]), `Ok(())` to admit without saying who (an identity
    /// [`SseOptions::auth`] found stays), or the [`Rejection`] the client gets. It runs
    /// after [`SseOptions::auth`], whose identity it can read from the context.
    ///
    /// ```
    /// use ssehub::{Identity, Rejection, SseOptions};
    ///
    /// let options = SseOptions::new()
    ///     .authorize(|ctx| async move {
    ///         match ctx.query("token") {
    ///             Some("secret") => Ok(Identity::new("alice")),
    ///             Some(_) => Err(Rejection::forbidden()),
    ///             None => Err(Rejection::unauthorized()),
    ///         }
    ///     })
    ///     .on_connect(|conn, ctx| async move {
    ///         let who = ctx.identity().and_then(|i| i.subject()).unwrap_or("nobody");
    ///         let _ = conn.send_event("welcome", who);
    ///     });
    /// ```
    pub fn authorize<F, Fut, I>(mut self, f: F) -> Self
    where
        F: Fn(RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<I, Rejection>> + Send + 'static,
        I: Into<Identity> + 'static,
    {
        self.authorize = Some(Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move { fut.await.map(Into::into) })
        }));
        self
    }

    /// Check every stream's token and rooms with `auth` (see [`Auth`]): before the
    /// handshake, each room the stream asks for (the auto-join room, and its `?room=`s
    /// with [`SseOptions::rooms_from_query`]) must be granted, or the client gets 401 or
    /// 403 and no stream. A stream whose identity expires gets an event
    /// `ssehub.expired` and is closed then; with history, its client resumes from its
    /// `Last-Event-ID` with a fresh token and misses nothing.
    ///
    /// ```
    /// use ssehub::{Auth, SseOptions};
    ///
    /// let auth = Auth::without_tokens().allow_anonymous_subscribe(["news".parse()?]);
    /// let options = SseOptions::new().auto_join_room("news").auth(auth);
    /// # Ok::<(), ssehub::SelectorError>(())
    /// ```
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Run for every new stream, after the handshake. What it sends follows `: connected`.
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Connection, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |c, ctx| Box::pin(f(c, ctx))));
        self
    }

    /// Run once when a stream closes, for whatever reason.
    pub fn on_disconnect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Arc::new(move |c| Box::pin(f(c))));
        self
    }
}

impl fmt::Debug for SseOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseOptions")
            .field("prefix", &self.prefix)
            .field("keep_alive", &self.keep_alive)
            .field("auto_join_room", &self.auto_join_room)
            .field("allow_any_origin", &self.allow_any_origin)
            .field("allow_credentials", &self.allow_credentials)
            .field("allowed_origins", &self.origins)
            .field("retry", &self.retry)
            .field("outbox_limit", &self.outbox_limit)
            .field("slow_consumer", &self.slow_consumer)
            .field("batch_window", &self.batch_window)
            .field("adaptive_batching", &self.adaptive_batching)
            .field("rooms_from_query", &self.rooms_from_query)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The endpoint's prefix, cleaned ([`clean_prefix`]); `/` and query or fragment
/// characters are refused.
pub(crate) fn normalise_prefix(prefix: &str) -> Result<String, ConfigError> {
    let p = clean_prefix(prefix);
    if p == "/" || p.contains(['?', '#', ' ']) {
        return Err(ConfigError::Prefix(prefix.to_owned()));
    }
    Ok(p)
}
