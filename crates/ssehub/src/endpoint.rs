//! The SSE endpoint: options, path match, handshake, hooks, keep-alive, and the
//! streaming body that turns a connection's outbox into an HTTP response.
//!
//! [`SseEndpoint`] is a [`tower::Service`], so it runs in [`crate::Server`] or in any
//! hyper, tower or axum application (see `examples/axum.rs`).
//!
//! ## Where we differ from SimpleW
//! - `authorize` runs before the handshake and can answer any status, so a refused
//!   client never gets a stream (a non-200 answer also stops `EventSource` retrying).
//! - The first bytes (`: connected`) are flushed with the headers so `onopen` fires at
//!   once, not at the first event.
//! - `HEAD` answers the handshake headers; other methods get 405 with `Allow`.
//! - `Connection: keep-alive` is sent on HTTP/1.1 only; HTTP/2 forbids it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};

use crate::admission::{Admission, Limits};
use crate::connection::{Connection, ConnectionConfig, SlowConsumerPolicy, TransportAbort};
use crate::frame::{self, Message};
use crate::hub::Hub;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type AuthorizeHook = Arc<dyn Fn(RequestContext) -> BoxFuture<Result<(), Rejection>> + Send + Sync>;
type ConnectHook = Arc<dyn Fn(Connection, RequestContext) -> BoxFuture<()> + Send + Sync>;
type DisconnectHook = Arc<dyn Fn(Connection) -> BoxFuture<()> + Send + Sync>;

/// A set-up mistake, reported before anything is served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint prefix is unusable.
    #[error("invalid SSE prefix {0:?}: it must be a path other than \"/\", such as \"/sse\"")]
    Prefix(String),
    /// The outbox limit is zero.
    #[error("outbox limit must be at least 1 byte")]
    OutboxLimit,
    /// The auto-join room name is not a valid room name.
    #[error("invalid auto-join room: {0}")]
    AutoJoinRoom(crate::hub::JoinError),
}

/// The peer's socket address, as a request extension. [`crate::Server`] inserts it; when
/// mounting the endpoint elsewhere, insert it yourself to see it in [`RequestContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

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
    prefix: String,
    keep_alive: Option<Duration>,
    auto_join_room: Option<String>,
    allow_any_origin: bool,
    retry: Option<Duration>,
    outbox_limit: usize,
    slow_consumer: SlowConsumerPolicy,
    hub: Hub,
    authorize: Option<AuthorizeHook>,
    on_connect: Option<ConnectHook>,
    on_disconnect: Option<DisconnectHook>,
    limits: Limits,
    batch_window: Duration,
}

impl Default for SseOptions {
    fn default() -> Self {
        SseOptions {
            prefix: "/sse".into(),
            keep_alive: Some(Duration::from_secs(15)),
            auto_join_room: Some("__all".into()),
            allow_any_origin: false,
            retry: None,
            outbox_limit: 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Close,
            hub: Hub::new(),
            authorize: None,
            on_connect: None,
            on_disconnect: None,
            limits: Limits::default(),
            batch_window: Duration::from_millis(20),
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
    /// refused by [`SseEndpoint::new`].
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

    /// The room every new connection joins (`__all` by default); `None` disables it.
    pub fn auto_join_room(mut self, room: Option<impl Into<String>>) -> Self {
        self.auto_join_room = room.map(Into::into);
        self
    }

    /// Allow cross-origin `EventSource`s: adds `Access-Control-Allow-Origin: *` and
    /// answers CORS preflight requests.
    pub fn allow_any_origin(mut self, allow: bool) -> Self {
        self.allow_any_origin = allow;
        self
    }

    /// A reconnection delay hint (`retry:`) written at the start of every stream. Each
    /// connection gets 80-100 % of it, at random, to spread reconnections after a restart.
    pub fn retry(mut self, retry: Option<Duration>) -> Self {
        self.retry = retry;
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

    /// How long a busy stream lets events gather before its next write (20 ms by
    /// default; `Duration::ZERO` writes every time the stream is woken). A stream that has
    /// not written for this long writes at once, so light traffic sees no delay; a stream
    /// receiving many events a second gets them in fewer, larger writes, which cuts the
    /// server's CPU per event (one send system call costs more than the event in it) at
    /// the price of at most this much latency. Under saturation a wider window lowers tail
    /// latency too: fewer, larger writes leave the server less behind (BENCHMARKS.md:
    /// 20 ms against 10 ms halves p99 at the highest rate). Applies to streams served on the bare
    /// socket (HTTP/1.1, see ARCHITECTURE.md). There, an event for a stream that has not
    /// written within the window is written by the sender at once, without waking the
    /// stream's task (for fan-outs to at most 2,048 streams; larger ones leave the
    /// writing to the tasks, which coalesce better under load).
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// The most streams this endpoint holds at once (`None`, the default: as many as the
    /// process's open-file limit allows). Past it a client gets 503 with `Retry-After`.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.limits.total = max;
        self
    }

    /// The most streams from one client IP address (`None` by default). Past it the
    /// client gets 503 with `Retry-After`. The address comes from the [`PeerAddr`]
    /// request extension, which [`crate::Server`] sets; when the endpoint is mounted in
    /// another server, insert it (see `examples/axum.rs`), or only the total limit applies.
    /// Behind a proxy every client shares the proxy's address.
    pub fn max_connections_per_ip(mut self, max: Option<usize>) -> Self {
        self.limits.per_ip = max;
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

    /// Decide, before the handshake, whether a request may open a stream.
    ///
    /// ```
    /// use ssehub::{Rejection, SseOptions};
    ///
    /// let options = SseOptions::new().authorize(|ctx| async move {
    ///     match ctx.query("token") {
    ///         Some("secret") => Ok(()),
    ///         Some(_) => Err(Rejection::forbidden()),
    ///         None => Err(Rejection::unauthorized()),
    ///     }
    /// });
    /// ```
    pub fn authorize<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Rejection>> + Send + 'static,
    {
        self.authorize = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
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
            .field("retry", &self.retry)
            .field("outbox_limit", &self.outbox_limit)
            .field("slow_consumer", &self.slow_consumer)
            .field("batch_window", &self.batch_window)
            .finish_non_exhaustive()
    }
}

/// Normalise a prefix: leading slash added, trailing slashes removed; `/` is refused.
fn normalise_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim().trim_end_matches('/');
    let p = if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    };
    if p == "/" || p.contains(['?', '#', ' ']) {
        return Err(ConfigError::Prefix(prefix.to_owned()));
    }
    Ok(p)
}

/// Why a request may not open a stream: the answer the client gets instead.
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    back_off: Option<Duration>,
}

impl Rejection {
    /// Answer with this status and an empty body.
    pub fn status(status: StatusCode) -> Self {
        Rejection {
            status,
            headers: HeaderMap::new(),
            body: String::new(),
            back_off: None,
        }
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::status(StatusCode::UNAUTHORIZED)
    }

    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        Self::status(StatusCode::FORBIDDEN)
    }

    /// 204 No Content: the conventional way to tell an `EventSource` to stop for good
    /// (any non-200 answer makes it give up; 204 says "nothing for you", not an error).
    pub fn stop() -> Self {
        Self::status(StatusCode::NO_CONTENT)
    }

    /// Do not refuse outright: open the stream, send `retry: delay` and close it, so the
    /// client comes back after `delay`. Use it for temporary conditions (overload,
    /// maintenance); use [`Rejection::stop`] or a 4xx when retrying cannot help.
    pub fn back_off(delay: Duration) -> Self {
        Rejection {
            back_off: Some(delay),
            ..Self::status(StatusCode::OK)
        }
    }

    /// Add a header to the answer.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Set a plain-text body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The status the client gets.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }
}

/// What the hooks see of the request that opened a stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    last_event_id: Option<String>,
}

impl RequestContext {
    fn from_request<B>(req: &Request<B>) -> Self {
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let last_event_id = req
            .headers()
            .get("last-event-id")
            // Browsers send the id UTF-8 encoded; `to_str` would refuse any non-ASCII id.
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_owned)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == "lastEventId" || k == "last_event_id")
                    .map(|(_, v)| v.clone())
            });
        RequestContext {
            inner: Arc::new(ContextInner {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                query,
                peer: req.extensions().get::<PeerAddr>().map(|p| p.0),
                last_event_id,
            }),
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.inner.method
    }

    /// The request path.
    pub fn path(&self) -> &str {
        self.inner.uri.path()
    }

    /// The full request URI.
    pub fn uri(&self) -> &Uri {
        &self.inner.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.inner.version
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.inner
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, in order (`?room=a&room=b`).
    pub fn query_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.inner
            .query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All query parameters, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.inner.query
    }

    /// The peer's address, when known (see [`PeerAddr`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer
    }

    /// The id the client last saw: the `Last-Event-ID` header, or the `lastEventId` /
    /// `last_event_id` query parameter for clients that cannot set headers.
    pub fn last_event_id(&self) -> Option<&str> {
        self.inner.last_event_id.as_deref()
    }
}

/// The SSE endpoint as a [`tower::Service`]. Cheap to clone.
#[derive(Clone)]
pub struct SseEndpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    opts: SseOptions,
    /// `: connected`: the first bytes of every stream.
    preamble: Bytes,
    keep_alive_started: std::sync::Once,
    admission: Admission,
    /// Set when the server shuts down: no new stream.
    closing: std::sync::atomic::AtomicBool,
}

impl SseEndpoint {
    /// Check the options and build the endpoint.
    pub fn new(mut options: SseOptions) -> Result<SseEndpoint, ConfigError> {
        options.prefix = normalise_prefix(&options.prefix)?;
        if options.outbox_limit == 0 {
            return Err(ConfigError::OutboxLimit);
        }
        if let Some(room) = &options.auto_join_room {
            crate::hub::validate_room(room).map_err(ConfigError::AutoJoinRoom)?;
        }
        Ok(SseEndpoint {
            inner: Arc::new(EndpointInner {
                admission: Admission::new(options.limits),
                opts: options,
                preamble: frame::comment("connected"),
                keep_alive_started: std::sync::Once::new(),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Refuse new streams from now on (the server is shutting down).
    pub(crate) fn begin_shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    fn closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// How long a busy stream lets events gather (see [`SseOptions::batch_window`]).
    pub fn batch_window(&self) -> Duration {
        self.inner.opts.batch_window
    }

    /// The normalised path this endpoint serves.
    pub fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }

    /// The hub this endpoint's connections join.
    pub fn hub(&self) -> &Hub {
        &self.inner.opts.hub
    }

    /// Whether `path` is this endpoint's (exactly the prefix, with or without one
    /// trailing slash). Anything below it is not: `/sse/x` gets 404.
    pub fn matches(&self, path: &str) -> bool {
        let p = self.prefix();
        path == p || (path.len() == p.len() + 1 && path.starts_with(p) && path.ends_with('/'))
    }

    /// Answer one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<SseBody> {
        let opts = &self.inner.opts;
        if !self.matches(req.uri().path()) {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        let method = req.method();
        if method == Method::OPTIONS && opts.allow_any_origin {
            let mut res = plain(StatusCode::NO_CONTENT, "");
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("last-event-id, cache-control"),
            );
            return res;
        }
        if method != Method::GET && method != Method::HEAD {
            let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let ctx = RequestContext::from_request(&req);
        if let Some(authorize) = &opts.authorize {
            let verdict = AssertUnwindSafe(authorize(ctx.clone()))
                .catch_unwind()
                .await;
            match verdict {
                Ok(Ok(())) => {}
                Ok(Err(rejection)) => return self.reject(&req, rejection),
                Err(_) => {
                    tracing::error!(path = ctx.path(), "authorize hook panicked");
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
                }
            }
        }
        if method == Method::HEAD {
            return self.handshake(&req, SseBody::empty());
        }
        if self.closing() {
            return unavailable("shutting down");
        }
        let ip = ctx.peer_addr().map(|a| a.ip());
        if let Err(refused) = self.inner.admission.admit(ip) {
            tracing::warn!(peer = ?ctx.peer_addr(), reason = refused.reason(), "stream refused");
            return unavailable(refused.reason());
        }
        self.start_keep_alive();
        let conn = opts.hub.connect(ConnectionConfig {
            outbox_limit: opts.outbox_limit,
            policy: opts.slow_consumer,
            abort: req.extensions().get::<TransportAbort>().cloned(),
            batch_window: opts.batch_window,
        });
        self.inner.admission.bind(ip, &conn);
        let _ = conn.send_frame(self.inner.preamble.clone());
        if let Some(retry) = opts.retry {
            let _ = conn.send_frame(retry_frame(jitter(retry, conn.id())));
        }
        if let Some(room) = &opts.auto_join_room {
            let _ = conn.join(room);
        }
        // The close that triggers on_disconnect may happen on any thread: keep the handle.
        let rt = tokio::runtime::Handle::current();
        if let Some(hook) = &opts.on_disconnect {
            let hook = hook.clone();
            let rt = rt.clone();
            conn.on_closed(move |c| {
                spawn_hook(&rt, "on_disconnect", None, hook(c.clone()));
            });
        }
        if let Some(hook) = &opts.on_connect {
            spawn_hook(
                &rt,
                "on_connect",
                Some(conn.clone()),
                hook(conn.clone(), ctx),
            );
        }
        if self.closing() {
            // Shutdown began while this stream was being set up, possibly after the
            // server closed every stream it knew: close this one too (it still gets
            // what was queued, then its end).
            conn.close();
        }
        tracing::debug!(conn = %conn.id(), "stream opened");
        self.handshake(&req, SseBody::stream(conn))
    }

    fn reject<B>(&self, req: &Request<B>, rejection: Rejection) -> Response<SseBody> {
        if let Some(delay) = rejection.back_off {
            let mut body = frame::comment("back off").to_vec();
            body.extend_from_slice(&retry_frame(delay));
            return self.handshake(req, SseBody::full(Bytes::from(body)));
        }
        let mut res = plain(rejection.status, &rejection.body);
        res.headers_mut().extend(rejection.headers);
        res
    }

    fn handshake<B>(&self, req: &Request<B>, body: SseBody) -> Response<SseBody> {
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if req.version() == Version::HTTP_11 {
            h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        if self.inner.opts.allow_any_origin {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        res
    }

    /// One task per endpoint pings idle streams; no timer per connection.
    fn start_keep_alive(&self) {
        let Some(interval) = self.inner.opts.keep_alive else {
            return;
        };
        self.inner.keep_alive_started.call_once(|| {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(keep_alive(weak, interval));
        });
    }
}

async fn keep_alive(endpoint: Weak<EndpointInner>, interval: Duration) {
    let ping = frame::comment("ping");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        ticker.tick().await;
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        let n = endpoint.opts.hub.send_to_all(&ping, true);
        tracing::trace!(pinged = n, "keep-alive sweep");
    }
}

/// The reconnection delay a stream is told at shutdown when no `retry` is configured.
const RESTART_RETRY: Duration = Duration::from_secs(5);

impl SseEndpoint {
    /// The `retry:` frame a stream gets when the server shuts down: the configured delay
    /// (or 5 s), jittered per connection, so that clients do not all return together.
    pub(crate) fn restart_hint(&self, conn: &Connection) -> Bytes {
        let base = self.inner.opts.retry.unwrap_or(RESTART_RETRY);
        retry_frame(jitter(base, conn.id()))
    }
}

/// 80 to 100 % of `retry`, chosen per connection (from its random id), so that clients
/// dropped together (a restart, a network blip) do not all come back at the same instant.
fn jitter(retry: Duration, id: uuid::Uuid) -> Duration {
    let percent = 80 + (id.as_u128() % 21) as u32;
    // In whole milliseconds (what goes on the wire), divided first so that a huge
    // configured delay cannot overflow.
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    let percent = u64::from(percent);
    Duration::from_millis(ms / 100 * percent + ms % 100 * percent / 100)
}

fn retry_frame(delay: Duration) -> Bytes {
    Message::builder()
        .retry(delay)
        .build()
        .expect("a retry-only message is always valid")
        .encode()
}

/// Run a user hook on its own task; a panic is logged and closes `conn`, nothing else.
fn spawn_hook(
    rt: &tokio::runtime::Handle,
    name: &'static str,
    conn: Option<Connection>,
    fut: BoxFuture<()>,
) {
    rt.spawn(async move {
        if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
            tracing::error!(hook = name, "hook panicked");
            if let Some(c) = conn {
                c.close();
            }
        }
    });
}

/// 503 with `Retry-After`: come back in a few seconds.
fn unavailable(reason: &str) -> Response<SseBody> {
    let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, reason);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

fn plain(status: StatusCode, text: &str) -> Response<SseBody> {
    let mut res = Response::new(SseBody::full(Bytes::copy_from_slice(text.as_bytes())));
    *res.status_mut() = status;
    if !text.is_empty() {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    res
}

impl<B: Send + 'static> tower::Service<Request<B>> for SseEndpoint {
    type Response = Response<SseBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<SseBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

impl fmt::Debug for SseEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEndpoint")
            .field("options", &self.inner.opts)
            .finish()
    }
}

/// The endpoint's response body: a live stream fed by a connection's outbox, or a fixed
/// answer (errors, `HEAD`, back-off).
pub struct SseBody {
    kind: BodyKind,
}

enum BodyKind {
    Stream(Connection),
    Full(Option<Bytes>),
}

impl SseBody {
    fn stream(conn: Connection) -> Self {
        SseBody {
            kind: BodyKind::Stream(conn),
        }
    }

    fn full(bytes: Bytes) -> Self {
        SseBody {
            kind: BodyKind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// The connection behind a streaming body.
    pub fn connection(&self) -> Option<&Connection> {
        match &self.kind {
            BodyKind::Stream(c) => Some(c),
            BodyKind::Full(_) => None,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Stream(conn) => match conn.poll_outbox(cx.waker()) {
                Ok(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => Poll::Ready(None),
                Err(()) => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, BodyKind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Stream(_) => SizeHint::default(),
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // The transport dropped the response: the client is gone (or the server stops).
        if let BodyKind::Stream(conn) = &self.kind {
            conn.transport_closed();
        }
    }
}

impl fmt::Debug for SseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Stream(c) => f.debug_tuple("SseBody::Stream").field(c).finish(),
            BodyKind::Full(b) => f.debug_tuple("SseBody::Full").field(b).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalise_prefix("sse").unwrap(), "/sse");
        assert_eq!(normalise_prefix("/sse/").unwrap(), "/sse");
        assert_eq!(normalise_prefix("/a/b").unwrap(), "/a/b");
        assert!(normalise_prefix("/").is_err());
        assert!(normalise_prefix("").is_err());
        assert!(normalise_prefix("//").is_err());
    }

    #[test]
    fn retry_jitter_stays_within_80_to_100_percent() {
        let base = Duration::from_millis(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let d = jitter(base, uuid::Uuid::new_v4());
            assert!(d >= base * 80 / 100 && d <= base, "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "the delays are spread out: {}", seen.len());
    }

    #[test]
    fn strict_match() {
        let e = SseEndpoint::new(SseOptions::new()).unwrap();
        assert!(e.matches("/sse"));
        assert!(e.matches("/sse/"));
        assert!(!e.matches("/sse/x"));
        assert!(!e.matches("/ssex"));
        assert!(!e.matches("/sse//"));
    }
}
