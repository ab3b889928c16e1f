//! The hub's HTTP API for publishers and operators, as one `tower::Service` any server
//! can mount (the `ssehub` command's demo does):
//!
//! - `POST .../publish`: broadcast one event (`publish.rs` has the two request forms).
//! - `GET .../stats`: the hub's counters, the process's memory, CPU time and open files,
//!   and the member count of every room, as JSON.
//! - `GET .../rooms`, `GET .../rooms/{room}`: the rooms, largest first, and the members
//!   of one, paginated (`rooms.rs`).
//! - `GET .../metrics` (feature `metrics`): the counters in the Prometheus text format.
//!
//! All are open unless [`HubApi::bearer_token`] (`bearer.rs`) or [`HubApi::auth`]
//! (`access.rs`) is set: `/stats` and `/rooms` name every room, `/rooms/{room}` every
//! member's address, and `/publish` reaches every client. A publish authorized by the
//! token cookie must come from the hub's own pages or [`HubApi::allowed_origins`]
//! (`csrf.rs`).
//!
//! ```
//! use ssehub::{Hub, HubApi, Server};
//!
//! let hub = Hub::new();
//! let api = HubApi::new(hub.clone());
//! let publish = api.clone();
//! let server = Server::new(([127, 0, 0, 1], 0))
//!     .route("/publish", move |req| {
//!         let api = publish.clone();
//!         async move { api.publish(req).await }
//!     })
//!     .route("/stats", move |req| {
//!         let api = api.clone();
//!         async move { api.stats(&req) }
//!     });
//! ```

mod access;
mod bearer;
mod csrf;
mod publish;
mod rooms;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use self::access::{access, Need};
use self::bearer::Bearer;
use self::csrf::CookieOrigins;
use crate::auth::{Auth, Identity, TokenSource};
use crate::hub::{BackplaneStatus, Hub};
use crate::metrics::{HubStats, ProcessStats};
use crate::respond::{allow_only, json, text};

/// The largest `POST /publish` body accepted by default.
pub const DEFAULT_MAX_PUBLISH_BODY: usize = 1024 * 1024;

/// `POST /publish` and `GET /stats` for one hub. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HubApi {
    inner: Arc<ApiInner>,
}

#[derive(Debug, Clone)]
struct ApiInner {
    hub: Hub,
    max_body: usize,
    /// When set, every route needs `Authorization: Bearer <token>`.
    bearer: Option<Bearer>,
    /// When set, publishers need rights on their rooms, operators an admin credential.
    auth: Option<Auth>,
    /// Where the service is mounted, when the host server does not strip it (`""`).
    prefix: String,
    /// Pages besides the hub's own that may publish with the token cookie.
    cookie_origins: CookieOrigins,
}

/// What the API's responses carry.
pub type ApiBody = Full<Bytes>;

/// `GET /stats`: the hub's counters, flattened, plus the member count of every room.
#[derive(Serialize)]
struct Stats {
    #[serde(flatten)]
    hub: HubStats,
    process: ProcessStats,
    room_members: BTreeMap<String, usize>,
    backplane: BackplaneStatus,
}

impl HubApi {
    /// The API of `hub`, with a 1 MiB limit on publish bodies and no credentials asked
    /// (mount it where only trusted callers reach it, or see [`HubApi::bearer_token`]).
    pub fn new(hub: Hub) -> HubApi {
        HubApi {
            inner: Arc::new(ApiInner {
                hub,
                max_body: DEFAULT_MAX_PUBLISH_BODY,
                bearer: None,
                auth: None,
                prefix: String::new(),
                cookie_origins: CookieOrigins::default(),
            }),
        }
    }

    /// Serve the routes under `prefix` (`/api`: `/api/publish`, `/api/stats`, ...) when
    /// the API is mounted as a [`tower::Service`] by a server that hands it the whole
    /// path (this crate's [`crate::Server::fallback`] does; axum's `nest_service`
    /// strips the prefix itself). Without it the routes are `/publish`, `/stats`,
    /// `/rooms`, `/rooms/{room}` and `/metrics`.
    ///
    /// ```
    /// let api = ssehub::HubApi::new(ssehub::Hub::new()).prefix("/api");
    /// let server = ssehub::Server::new(([127, 0, 0, 1], 0)).fallback(api);
    /// ```
    pub fn prefix(self, prefix: impl AsRef<str>) -> HubApi {
        let prefix = crate::uri::clean_prefix(prefix.as_ref());
        let prefix = if prefix == "/" { String::new() } else { prefix };
        self.with(|inner| inner.prefix = prefix)
    }

    /// The pages (origins: `https://app.example`) that may publish with a token from
    /// the cookie ([`Auth::cookie`]), besides the hub's own. A browser sends the cookie
    /// with a `text/plain` POST made by a page of any origin, without a CORS preflight:
    /// so a publish the cookie authorizes must carry an `Origin` (or, without one, a
    /// `Referer`) that names the request's `Host` or one of these, or, without either,
    /// `Sec-Fetch-Site: same-origin`; else it gets 403 saying why, and nothing is sent.
    /// `Origin: null` never passes, and `*` is ignored: any page could be either. A
    /// token in `Authorization` or in the query parameter is not checked (a page of
    /// another origin cannot add the one without CORS's consent, nor know the other).
    /// Empty by default: the hub's own pages only.
    ///
    /// ```
    /// # #[cfg(feature = "jwt")] {
    /// use ssehub::{Auth, Hub, HubApi, JwtAlgorithm, JwtVerifier};
    ///
    /// let jwt = JwtVerifier::hmac(JwtAlgorithm::HS256, b"a long random secret")?;
    /// let api = HubApi::new(Hub::new())
    ///     .auth(Auth::new(jwt))
    ///     .allowed_origins(["https://app.example"]);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowed_origins<I, S>(self, origins: I) -> HubApi
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let origins = CookieOrigins::new(origins);
        self.with(|inner| inner.cookie_origins = origins)
    }

    /// The largest publish body accepted; a larger one gets 413.
    pub fn max_publish_body(self, bytes: usize) -> HubApi {
        self.with(|inner| inner.max_body = bytes)
    }

    /// Require `Authorization: Bearer <token>` on every route (`/publish`, `/stats`,
    /// `/rooms`, `/rooms/{room}`, `/metrics`): without it, or with another token, a
    /// request gets 401 with `WWW-Authenticate: Bearer`. The token is compared in
    /// constant time.
    ///
    /// ```
    /// let api = ssehub::HubApi::new(ssehub::Hub::new()).bearer_token("s3cret");
    /// ```
    pub fn bearer_token(self, token: impl AsRef<str>) -> HubApi {
        let bearer = Bearer::new(token.as_ref());
        self.with(|inner| inner.bearer = Some(bearer))
    }

    /// Check publishers and operators with `auth` (see [`Auth`]): `POST /publish` needs
    /// a token whose `publish` selectors grant every target room (403 naming the room;
    /// no token: 401, unless anonymous publishing is allowed); `GET /stats` needs a token
    /// with `"admin": true` or [`Auth::admin_token`]. The static
    /// [`HubApi::bearer_token`], if also set, still grants both.
    ///
    /// ```
    /// let auth = ssehub::Auth::without_tokens().admin_token("operator-secret");
    /// let api = ssehub::HubApi::new(ssehub::Hub::new()).auth(auth);
    /// ```
    pub fn auth(self, auth: Auth) -> HubApi {
        self.with(|inner| inner.auth = Some(auth))
    }

    /// The 401 or 403 for `req` on an operator's route (`/stats`, and any other a server
    /// adds for its operator), if it lacks the credential; `None`: go on.
    pub fn refuse_operator<R>(&self, req: &Request<R>) -> Option<Response<ApiBody>> {
        let inner = &self.inner;
        let refused = access(
            inner.bearer.as_ref(),
            inner.auth.as_ref(),
            req,
            Need::Operator,
        );
        refused.err().map(|res| *res)
    }

    fn with(self, change: impl FnOnce(&mut ApiInner)) -> HubApi {
        let mut inner = ApiInner::clone(&self.inner);
        change(&mut inner);
        HubApi {
            inner: Arc::new(inner),
        }
    }

    /// Whether `token` opens the operator's routes: the [`HubApi::bearer_token`], or,
    /// with [`HubApi::auth`], its admin token or a token whose claims say
    /// `"admin": true` (any token does when nothing is required). Compared in constant
    /// time: for routes of your own that take the token elsewhere than in
    /// `Authorization` (a page a browser opens, an `EventSource`, which cannot set
    /// headers).
    ///
    /// ```
    /// let api = ssehub::HubApi::new(ssehub::Hub::new()).bearer_token("s3cret");
    /// assert!(api.accepts_token("s3cret"));
    /// assert!(!api.accepts_token("guess"));
    /// ```
    pub fn accepts_token(&self, token: &str) -> bool {
        self.operator_identity(token).is_some()
    }

    /// Who `token` is, if it opens the operator's routes ([`HubApi::accepts_token`]):
    /// the verified identity of a token whose claims say `"admin": true`, with its
    /// expiry; `operator` (admin, no expiry) for the [`HubApi::bearer_token`]; the
    /// [`Auth::admin_token`]'s; the anonymous identity when nothing is required. `None`
    /// for any other token, and for one already past its expiry (which the verifier's
    /// leeway would still accept). For a stream of your own that an operator's token
    /// opens: return it from [`crate::SseOptions::authorize`], and the stream is ended
    /// at the token's expiry, after an event `ssehub.expired`, as the endpoint's own
    /// streams are.
    ///
    /// ```
    /// use ssehub::{HubApi, Rejection, SseOptions};
    ///
    /// let api = HubApi::new(ssehub::Hub::new()).bearer_token("s3cret");
    /// assert!(api.operator_identity("s3cret").is_some_and(|id| id.is_admin()));
    /// assert!(api.operator_identity("guess").is_none());
    /// let feed = SseOptions::new().prefix("/ops/events").authorize(move |ctx| {
    ///     let who = api.operator_identity(ctx.query("token").unwrap_or_default());
    ///     async move { who.ok_or_else(Rejection::unauthorized) }
    /// });
    /// ```
    pub fn operator_identity(&self, token: &str) -> Option<Identity> {
        let inner = &self.inner;
        if !self.requires_token() {
            return Some(Identity::anonymous());
        }
        if inner
            .bearer
            .as_ref()
            .is_some_and(|b| b.accepts(token.as_bytes()))
        {
            return Some(Identity::new("operator").admin(true));
        }
        let identity = inner.auth.as_ref()?.operator_identity(token)?;
        let expired = identity.expiry().is_some_and(|at| at <= SystemTime::now());
        (!expired).then_some(identity)
    }

    /// Whether the operator's routes need a credential ([`HubApi::bearer_token`] or
    /// [`HubApi::auth`]).
    pub fn requires_token(&self) -> bool {
        self.inner.bearer.is_some() || self.inner.auth.is_some()
    }

    /// The hub this API publishes to.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// `POST /publish`: broadcast one event, answer `202 {"delivered": N}`; a bad request
    /// is a 4xx with `{"error": ..., "field": ...}` and nothing is sent. See the forms in
    /// the crate's README. With [`HubApi::auth`], a publish authorized by the token
    /// cookie must come from the hub's own pages or [`HubApi::allowed_origins`] (403).
    pub async fn publish<B>(&self, req: Request<B>) -> Response<ApiBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
        // Before the token is even looked at: a forged request learns nothing of it.
        let by_cookie = inner.auth.as_ref().is_some_and(|auth| {
            auth.token_source(req.headers(), req.uri()) == Some(TokenSource::Cookie)
        });
        if let Some(refused) = by_cookie
            .then(|| inner.cookie_origins.refuse(&req))
            .flatten()
        {
            return refused;
        }
        match access(
            inner.bearer.as_ref(),
            inner.auth.as_ref(),
            &req,
            Need::Publish,
        ) {
            Ok(granted) => publish::publish(&inner.hub, inner.max_body, &granted, req).await,
            Err(refused) => *refused,
        }
    }

    /// `GET /stats` (or `HEAD`): the hub's counters and room sizes as JSON.
    pub fn stats<B>(&self, req: &Request<B>) -> Response<ApiBody> {
        if let Some(refused) = self.refuse_operator(req) {
            return refused;
        }
        if let Some(refused) = allow_only(req, &[Method::GET, Method::HEAD]) {
            return refused;
        }
        let hub = &self.inner.hub;
        let stats = Stats {
            hub: hub.stats(),
            process: ProcessStats::read(),
            room_members: hub.room_sizes().into_iter().collect(),
            backplane: hub.backplane_status(),
        };
        let res = json(StatusCode::OK, &stats);
        no_store(res)
    }

    /// `GET /rooms` (or `HEAD`): every room with members, largest first, with its
    /// history depth; `?offset=N&limit=M` pages (100 by default, 1,000 at most). The
    /// request is read at once: the future borrows nothing of it.
    pub fn rooms<B>(
        &self,
        req: &Request<B>,
    ) -> impl Future<Output = Response<ApiBody>> + Send + 'static {
        let refused = self.refuse_operator(req);
        let answer = rooms::rooms(&self.inner.hub, req);
        async move {
            match refused {
                Some(refused) => refused,
                None => no_store(answer.await),
            }
        }
    }

    /// `GET /rooms/{room}` (or `HEAD`), `room` percent-encoded: its members (id,
    /// identity, peer address, since, transport, queued bytes), oldest first, paged as
    /// [`HubApi::rooms`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let api = ssehub::HubApi::new(ssehub::Hub::new());
    /// let req = http::Request::get("/rooms/news").body(()).unwrap();
    /// assert_eq!(api.room(&req, "news").await.status(), 200);
    /// # }
    /// ```
    pub fn room<B>(
        &self,
        req: &Request<B>,
        room: &str,
    ) -> impl Future<Output = Response<ApiBody>> + Send + 'static {
        let refused = self.refuse_operator(req);
        let answer = rooms::room(&self.inner.hub, req, room);
        async move {
            match refused {
                Some(refused) => refused,
                None => no_store(answer.await),
            }
        }
    }

    /// `GET /metrics` (or `HEAD`): [`crate::prometheus_text`] of this hub.
    #[cfg(feature = "metrics")]
    pub fn metrics<B>(&self, req: &Request<B>) -> Response<ApiBody> {
        if let Some(refused) = self.refuse_operator(req) {
            return refused;
        }
        if let Some(refused) = allow_only(req, &[Method::GET, Method::HEAD]) {
            return refused;
        }
        let text = crate::prometheus::prometheus_text(&self.inner.hub);
        let content_type = crate::prometheus::PROMETHEUS_CONTENT_TYPE;
        no_store(crate::respond::bytes(
            StatusCode::OK,
            content_type,
            Bytes::from(text),
        ))
    }
}

/// Figures are of this instant: no cache keeps them.
fn no_store(mut res: Response<ApiBody>) -> Response<ApiBody> {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The API's routes, relative to where it is mounted ([`HubApi::prefix`]).
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Publish,
    Stats,
    Rooms,
    /// `/rooms/{room}`, the name still percent-encoded.
    Room(&'a str),
    Metrics,
}

impl<'a> Route<'a> {
    /// The route of `path` under `prefix`, if it is one: exact paths only, so that
    /// `/rooms/{room}` is a room whatever its name (`rooms`, `stats`, ...).
    fn of(prefix: &str, path: &'a str) -> Option<Route<'a>> {
        let rest = path.strip_prefix(prefix)?;
        Some(match rest {
            "/publish" => Route::Publish,
            "/stats" => Route::Stats,
            "/rooms" => Route::Rooms,
            "/metrics" => Route::Metrics,
            _ => match rest.strip_prefix("/rooms/") {
                Some(room) if !room.is_empty() && !room.contains('/') => Route::Room(room),
                _ => return None,
            },
        })
    }
}

impl<B> tower::Service<Request<B>> for HubApi
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ApiBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ApiBody>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Routes `/publish`, `/stats`, `/rooms`, `/rooms/{room}` and `/metrics` under
    /// [`HubApi::prefix`]; anything else is 404 (and so is `/metrics` without the
    /// feature `metrics`).
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let route = Route::of(&api.inner.prefix, req.uri().path());
            Ok(match route {
                Some(Route::Publish) => api.publish(req).await,
                Some(Route::Stats) => api.stats(&req),
                Some(Route::Rooms) => api.rooms(&req).await,
                Some(Route::Room(room)) => api.room(&req, room).await,
                #[cfg(feature = "metrics")]
                Some(Route::Metrics) => api.metrics(&req),
                _ => text(StatusCode::NOT_FOUND, "not found"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn routes_are_exact_paths_under_the_prefix() {
        assert_eq!(Route::of("", "/publish"), Some(Route::Publish));
        assert_eq!(Route::of("", "/rooms/a%2Fb"), Some(Route::Room("a%2Fb")));
        assert_eq!(Route::of("", "/rooms/stats"), Some(Route::Room("stats")));
        assert_eq!(
            Route::of("/api", "/api/rooms/chat"),
            Some(Route::Room("chat"))
        );
        assert_eq!(Route::of("/api", "/api/stats"), Some(Route::Stats));
        assert_eq!(Route::of("", "/api/stats"), None, "not under another path");
        assert_eq!(Route::of("/api", "/stats"), None, "not outside the prefix");
        assert_eq!(Route::of("", "/my-stats"), None);
        assert_eq!(Route::of("", "/rooms/"), None);
        assert_eq!(Route::of("", "/rooms/a/b"), None);
        assert_eq!(Route::of("", "/metrics"), Some(Route::Metrics));
    }
}
