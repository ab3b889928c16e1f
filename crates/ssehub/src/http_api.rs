//! The hub's HTTP API for publishers and operators, as one `tower::Service` any server
//! can mount (the `ssehub` command's demo does):
//!
//! - `POST .../publish`: broadcast one event (`publish.rs` has the two request forms).
//! - `GET .../stats`: the hub's counters and the member count of every room, as JSON.
//!
//! Both are open unless [`HubApi::bearer_token`] (`bearer.rs`) or [`HubApi::auth`]
//! (`guard.rs`) is set: `/stats` names every room, and `/publish` reaches every client.
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

mod bearer;
mod guard;
mod publish;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use self::bearer::Bearer;
use self::guard::{access, Need};
use crate::auth::Auth;
use crate::hub::{BackplaneStatus, Hub};
use crate::metrics::HubStats;
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
    /// When set, both routes need `Authorization: Bearer <token>`.
    bearer: Option<Bearer>,
    /// When set, publishers need rights on their rooms, operators an admin credential.
    auth: Option<Auth>,
}

/// What the API's responses carry.
pub type ApiBody = Full<Bytes>;

/// `GET /stats`: the hub's counters, flattened, plus the member count of every room.
#[derive(Serialize)]
struct Stats {
    #[serde(flatten)]
    hub: HubStats,
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
            }),
        }
    }

    /// The largest publish body accepted; a larger one gets 413.
    pub fn max_publish_body(self, bytes: usize) -> HubApi {
        self.with(|inner| inner.max_body = bytes)
    }

    /// Require `Authorization: Bearer <token>` on both routes: without it, or with
    /// another token, a request gets 401 with `WWW-Authenticate: Bearer`. The token is
    /// compared in constant time.
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

    /// The hub this API publishes to.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// `POST /publish`: broadcast one event, answer `202 {"delivered": N}`; a bad request
    /// is a 4xx with `{"error": ..., "field": ...}` and nothing is sent. See the forms in
    /// the crate's README.
    pub async fn publish<B>(&self, req: Request<B>) -> Response<ApiBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
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
            room_members: hub.room_sizes().into_iter().collect(),
            backplane: hub.backplane_status(),
        };
        let mut res = json(StatusCode::OK, &stats);
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Mounted as a service, the API answers by the request path's last segment:
/// `.../publish` and `.../stats`; anything else is 404.
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let path = req.uri().path();
            Ok(if path.ends_with("/publish") {
                api.publish(req).await
            } else if path.ends_with("/stats") {
                api.stats(&req)
            } else {
                text(StatusCode::NOT_FOUND, "not found")
            })
        })
    }
}
