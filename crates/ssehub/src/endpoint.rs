//! The SSE endpoint: path match, methods, the handshake, admission, and the start of
//! each stream.
//!
//! [`SseEndpoint`] is a [`tower::Service`], so it runs in [`crate::Server`] or in any
//! hyper, tower or axum application (see `examples/axum.rs`). Behind it:
//! - `options.rs`: [`SseOptions`] and their check;
//! - `request.rs`: what the hooks see ([`RequestContext`]) and [`Rejection`];
//! - `client_addr.rs`: the client's address, behind trusted proxies too;
//! - `cors.rs`: which web pages may open streams ([`SseOptions::allowed_origins`]);
//! - `dialect.rs`: the seam through which a request becomes a stream (the room dialect
//!   is this module's own; `crate::mercure` is another);
//! - `stream_auth.rs`: [`SseOptions::auth`] at a stream's door, and its end at expiry;
//! - `hooks.rs`: how hooks run (own task, panics contained);
//! - `retry.rs`: `retry:` hints, jittered per connection (at the start of a stream;
//!   at shutdown, drawn from [`SseOptions::shutdown_retry`]'s window);
//! - `body.rs`: [`SseBody`], the outbox as a streaming response body.
//!
//! ## Where we differ from SimpleW
//! - `authorize` runs before the handshake and can answer any status, so a refused
//!   client never gets a stream (a non-200 answer also stops `EventSource` retrying).
//! - The first bytes (`: connected`) are flushed with the headers so `onopen` fires at
//!   once, not at the first event.
//! - `HEAD` answers the handshake headers; other methods get 405 with `Allow`.
//! - `Connection: keep-alive` is sent on HTTP/1.1 only; HTTP/2 forbids it. (The server's
//!   bare-socket path says `close` instead: it answers nothing after the stream.)

mod body;
mod client_addr;
mod cors;
mod dialect;
mod hooks;
mod options;
mod request;
mod retry;
mod stream_auth;

pub use body::SseBody;
pub use options::{ConfigError, SseOptions};
pub use request::{PeerAddr, Rejection, RequestContext};

pub(crate) use dialect::{Dialect, Subscription};
pub(crate) use hooks::BoxFuture;

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use self::cors::OriginVerdict;
use self::hooks::Verdict;
use self::retry::{jitter, retry_frame, within_window};
use crate::admission::Admission;
use crate::connection::{Connection, ConnectionConfig, Origin, TransportAbort};
use crate::hub::{check_room, validate_room, Hub, Resume};
use crate::log_limit::warn_limited;
use crate::message;
use crate::metrics::{Refusal, TransportKind};
use crate::respond;

/// The SSE endpoint as a [`tower::Service`]. Cheap to clone.
#[derive(Clone)]
pub struct SseEndpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    opts: SseOptions,
    /// `: connected`: the first bytes of every stream.
    preamble: Bytes,
    admission: Admission,
    /// Set when the server shuts down: no new stream.
    closing: AtomicBool,
}

impl SseEndpoint {
    /// Check the options and build the endpoint.
    pub fn new(mut options: SseOptions) -> Result<SseEndpoint, ConfigError> {
        options.prefix = options::normalise_prefix(&options.prefix)?;
        if options.outbox_limit == 0 {
            return Err(ConfigError::OutboxLimit);
        }
        if let Some(room) = &options.auto_join_room {
            validate_room(room).map_err(ConfigError::AutoJoinRoom)?;
        }
        if options.allow_any_origin && options.origins.is_some() {
            return Err(ConfigError::Origins);
        }
        Ok(SseEndpoint {
            inner: Arc::new(EndpointInner {
                admission: Admission::new(options.limits),
                opts: options,
                preamble: message::comment("connected"),
                closing: AtomicBool::new(false),
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
        if let Some(answer) = self.answer_method(&req) {
            return answer;
        }
        let refused = |why| self.hub().count_refusal(why);
        if self.origin(&req) == Some(OriginVerdict::Refused) {
            warn_limited!(origin = ?req.headers().get(header::ORIGIN), "stream refused: origin not allowed");
            refused(Refusal::Origin);
            return respond::text(StatusCode::FORBIDDEN, "this origin may not open streams");
        }
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        let client = client_addr::client_ip(peer, req.headers(), &self.inner.opts.trusted_proxies);
        let ctx = RequestContext::from_request(&req, client, self.hub());
        let admitted = match &self.inner.opts.dialect {
            Some(dialect) => dialect.subscribe(ctx).await,
            None => self.subscribe(&head_of(&req), ctx).await,
        };
        let mut sub = match admitted {
            Ok(sub) => sub,
            Err(refusal) => return refusal,
        };
        if req.method() == Method::HEAD {
            let mut res = self.handshake(&req, SseBody::empty());
            res.headers_mut().extend(sub.headers);
            return res;
        }
        if self.closing() {
            refused(Refusal::ShuttingDown);
            return unavailable("shutting down");
        }
        let ip = sub.ctx.client_ip();
        if let Err(refusal) = self.inner.admission.admit(ip) {
            warn_limited!(client = ?ip, reason = refusal.reason(), "stream refused");
            refused(refusal.counted_as());
            return unavailable(refusal.reason());
        }
        let abort = req.extensions().get::<TransportAbort>().cloned();
        // The server says which transport carries the request; mounted elsewhere, it is
        // hyper's (or the host server's), by HTTP version.
        let transport = req.extensions().get::<TransportKind>().copied();
        let origin = Origin::new(
            sub.ctx.peer_addr(),
            ip,
            transport.unwrap_or_else(|| TransportKind::of_hyper(req.version())),
        )
        .with_audience(sub.audience.clone());
        let headers = std::mem::take(&mut sub.headers);
        let conn = self.open_stream(ip, abort, sub, origin);
        let mut res = self.handshake(&req, SseBody::stream(conn));
        res.headers_mut().extend(headers);
        res
    }

    /// The room dialect: the rooms `?room=` names (with [`SseOptions::rooms_from_query`])
    /// and the auto-join room, checked by [`SseOptions::auth`] and the `authorize` hook;
    /// the cursor of `Last-Event-ID` or `?history=`.
    async fn subscribe(
        &self,
        req: &Request<()>,
        ctx: RequestContext,
    ) -> Result<Subscription, Response<SseBody>> {
        let refused = |why| self.hub().count_refusal(why);
        if let Err(why) = self.check_query_rooms(&ctx) {
            refused(Refusal::BadRequest);
            return Err(respond::text(StatusCode::BAD_REQUEST, why));
        }
        let mut ctx = match stream_auth::admit(&self.inner.opts, ctx) {
            Ok(ctx) => ctx,
            Err(denied) => {
                refused(Refusal::Auth);
                return Err(stream_auth::refusal(&denied));
            }
        };
        if let Some(hook) = &self.inner.opts.authorize {
            match hooks::run_authorize(hook, ctx.clone()).await {
                Verdict::Admit(id) if id.is_anonymous() => {}
                Verdict::Admit(id) => ctx = ctx.with_identity(id),
                Verdict::Refuse(rejection) => {
                    refused(Refusal::Authorize);
                    return Err(self.reject(req, rejection));
                }
                Verdict::Panicked => {
                    refused(Refusal::Authorize);
                    let error = StatusCode::INTERNAL_SERVER_ERROR;
                    return Err(respond::text(error, "internal error"));
                }
            }
        }
        let resume = match self.resume_of(&ctx) {
            Ok(resume) => resume,
            Err(why) => {
                refused(Refusal::BadRequest);
                return Err(respond::text(StatusCode::BAD_REQUEST, why));
            }
        };
        let opts = &self.inner.opts;
        let mut rooms: Vec<String> = opts.auto_join_room.iter().cloned().collect();
        if opts.rooms_from_query {
            rooms.extend(ctx.query_all("room").map(str::to_owned));
        }
        Ok(Subscription::new(ctx, rooms, resume))
    }

    /// The answer for a request that is not a `GET` or `HEAD` of this endpoint: 404
    /// off the path, the CORS preflight, 405 for other methods. `None`: go on.
    fn answer_method<B>(&self, req: &Request<B>) -> Option<Response<SseBody>> {
        if !self.matches(req.uri().path()) {
            return Some(respond::text(StatusCode::NOT_FOUND, "not found"));
        }
        let method = req.method();
        let allowed = match self.origin(req) {
            _ if self.inner.opts.allow_any_origin => Some(HeaderValue::from_static("*")),
            Some(OriginVerdict::Listed(origin)) => Some(origin),
            _ => None,
        };
        if let (true, Some(allowed)) = (method == Method::OPTIONS, allowed) {
            let mut res = respond::text(StatusCode::NO_CONTENT, "");
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            h.insert(header::VARY, HeaderValue::from_static("origin"));
            self.credentials(h);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("last-event-id, cache-control"),
            );
            return Some(res);
        }
        respond::allow_only(req, &[Method::GET, Method::HEAD])
    }

    /// Create the connection of an admitted stream: its first frames, its auto-join
    /// room, its hooks.
    fn open_stream(
        &self,
        ip: Option<std::net::IpAddr>,
        abort: Option<TransportAbort>,
        sub: Subscription,
        origin: Origin,
    ) -> Connection {
        let Subscription {
            ctx,
            rooms,
            resume,
            on_open,
            ..
        } = sub;
        let opts = &self.inner.opts;
        let config = ConnectionConfig {
            outbox_limit: opts.outbox_limit,
            policy: opts.slow_consumer,
            abort,
            batch_window: opts.batch_window,
            resuming: resume.is_some(),
            adaptive: opts.adaptive_batching,
            keep_alive: opts.keep_alive,
        };
        let conn = opts.hub.connect_from(config, origin);
        // Before its first join: presence and `/rooms` show who it is from the start.
        stream_auth::name(&conn, &ctx);
        self.inner.admission.bind(ip, &conn);
        let _ = conn.send_frame(self.inner.preamble.clone());
        if let Some(retry) = opts.retry {
            let _ = conn.send_frame(retry_frame(jitter(retry, conn.id())));
        }
        for room in &rooms {
            let _ = opts.hub.join(room, &conn);
        }
        if let Some(on_open) = on_open {
            on_open(&conn);
        }
        let set_up = {
            let (conn, hub) = (conn.clone(), opts.hub.clone());
            move || {
                let Some(resume) = resume else { return };
                // In-process the replay is ready at once; a distributed history is read
                // on its own task.
                let mut replay = Box::pin(async move { hub.resume(&conn, resume).await });
                if (&mut replay).now_or_never().is_none() {
                    tokio::spawn(replay);
                }
            }
        };
        stream_auth::end_at_expiry(&conn, &ctx);
        hooks::start(
            &conn,
            ctx,
            opts.on_connect.as_ref(),
            opts.on_disconnect.as_ref(),
            set_up,
        );
        if self.closing() {
            // Shutdown began while this stream was being set up, possibly after the
            // server closed every stream it knew: close this one too (it still gets
            // what was queued, then its end).
            conn.close();
        }
        tracing::debug!(conn = %conn.id(), "stream opened");
        conn
    }

    /// Where a stream resumes, when its hub keeps history: after its `Last-Event-ID`
    /// (header, or `last_event_id` / `lastEventId` parameter; `earliest` for everything
    /// kept), or with the newest `history=N` events. An unreadable `history` is refused.
    fn resume_of(&self, ctx: &RequestContext) -> Result<Option<Resume>, &'static str> {
        if !self.hub().config().keeps_history() {
            return Ok(None);
        }
        if let Some(cursor) = ctx.last_event_id() {
            return Ok(Some(Resume::After(cursor.to_owned())));
        }
        match ctx.query("history") {
            None => Ok(None),
            Some(n) => match n.parse() {
                Ok(n) => Ok(Some(Resume::Newest(n))),
                Err(_) => Err("invalid history: it must be a whole number of events"),
            },
        }
    }

    /// With [`SseOptions::rooms_from_query`]: why the rooms the request names are
    /// refused, if they are.
    fn check_query_rooms(&self, ctx: &RequestContext) -> Result<(), String> {
        let opts = &self.inner.opts;
        if !opts.rooms_from_query {
            return Ok(());
        }
        let mut distinct = std::collections::HashSet::new();
        for room in ctx.query_all("room") {
            check_room(room)?;
            distinct.insert(room);
        }
        if let Some(auto) = &opts.auto_join_room {
            distinct.insert(auto.as_str());
        }
        let max = opts.hub.config().rooms_per_connection();
        if distinct.len() > max {
            let asked = distinct.len() - usize::from(opts.auto_join_room.is_some());
            let left = max.saturating_sub(usize::from(opts.auto_join_room.is_some()));
            return Err(format!("too many rooms: {asked} asked for, at most {left}"));
        }
        Ok(())
    }

    fn reject<B>(&self, req: &Request<B>, rejection: Rejection) -> Response<SseBody> {
        if let Some(delay) = rejection.back_off {
            let mut body = message::comment("back off").to_vec();
            body.extend_from_slice(&retry_frame(delay));
            return self.handshake(req, SseBody::full(Bytes::from(body)));
        }
        let mut res = respond::text(rejection.status(), rejection.body);
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
        // Never with `Access-Control-Allow-Credentials`: `*` must not meet credentials,
        // and an echoed origin gets no cookies either.
        if self.inner.opts.allow_any_origin {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if let Some(OriginVerdict::Listed(origin)) = self.origin(req) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::VARY, HeaderValue::from_static("origin"));
            self.credentials(h);
        }
        res
    }

    /// `Access-Control-Allow-Credentials` for an echoed origin, when allowed (never with
    /// `*`).
    fn credentials(&self, h: &mut http::HeaderMap) {
        let opts = &self.inner.opts;
        if opts.allow_credentials && !opts.allow_any_origin {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// What the allowed origins say of `req` (`None`: the check is off).
    fn origin<B>(&self, req: &Request<B>) -> Option<OriginVerdict> {
        Some(self.inner.opts.origins.as_ref()?.verdict(req))
    }

    /// The `retry:` frame a stream gets when the server shuts down: a delay drawn per
    /// connection from [`SseOptions::shutdown_retry`]'s window, so that clients do not
    /// all return together.
    pub(crate) fn restart_hint(&self, conn: &Connection) -> Bytes {
        let (from, to) = self.inner.opts.shutdown_retry;
        retry_frame(within_window(from, to, conn.id()))
    }
}

/// The head of `req` (what an answer is built from), to hold across awaits whatever
/// its body.
fn head_of<B>(req: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// 503 with `Retry-After`: come back in a few seconds.
fn unavailable(reason: &str) -> Response<SseBody> {
    let mut res = respond::text(StatusCode::SERVICE_UNAVAILABLE, reason);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
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

#[cfg(test)]
mod tests;
