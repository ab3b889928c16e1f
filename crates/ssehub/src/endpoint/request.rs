//! What a request brings to the endpoint ([`RequestContext`], [`PeerAddr`]) and what a
//! refused one gets back ([`Rejection`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::auth::Identity;
use crate::hub::Hub;
use crate::uri::query_pairs;

/// The peer's socket address, as a request extension. [`crate::Server`] inserts it; when
/// mounting the endpoint elsewhere, insert it yourself to see it in [`RequestContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Why a request may not open a stream: the answer the client gets instead.
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
    pub(crate) back_off: Option<Duration>,
}

impl Rejection {
    /// Answer with this status and an empty body.
    pub fn new(status: StatusCode) -> Self {
        Rejection {
            status,
            headers: HeaderMap::new(),
            body: String::new(),
            back_off: None,
        }
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED)
    }

    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN)
    }

    /// 204 No Content: the conventional way to tell an `EventSource` to stop for good
    /// (any non-200 answer makes it give up; 204 says "nothing for you", not an error).
    pub fn stop() -> Self {
        Self::new(StatusCode::NO_CONTENT)
    }

    /// Do not refuse outright: open the stream, send `retry: delay` and close it, so the
    /// client comes back after `delay`. Use it for temporary conditions (overload,
    /// maintenance); use [`Rejection::stop`] or a 4xx when retrying cannot help.
    pub fn back_off(delay: Duration) -> Self {
        Rejection {
            back_off: Some(delay),
            ..Self::new(StatusCode::OK)
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
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// What the hooks see of the request that opened a stream. Cheap to clone. Its `Debug`
/// leaves out the headers and the query, which may carry tokens.
#[derive(Clone)]
pub struct RequestContext {
    inner: Arc<ContextInner>,
}

#[derive(Clone)]
struct ContextInner {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    client: Option<IpAddr>,
    last_event_id: Option<String>,
    /// Who the request is, once known (auth, then `authorize`).
    identity: OnceLock<Identity>,
    hub: Hub,
}

impl RequestContext {
    /// The context of `req` to the endpoint of `hub`, whose client is at `client` (see
    /// [`crate::SseOptions::trusted_proxies`]).
    pub(crate) fn from_request<B>(req: &Request<B>, client: Option<IpAddr>, hub: &Hub) -> Self {
        let query = query_pairs(req.uri());
        let last_event_id = req
            .headers()
            .get("last-event-id")
            // Browsers send the id UTF-8 encoded; `to_str` would refuse any non-ASCII id.
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_owned)
            .or_else(|| {
                query
                    .iter()
                    // `lastEventID` is Mercure's (0.x), `last_event_id` its 1.0's.
                    .find(|(k, _)| k == "lastEventId" || k == "last_event_id" || k == "lastEventID")
                    .map(|(_, v)| v.clone())
            })
            // An empty id is no id (a browser sends none then): a first connection.
            .filter(|id| !id.is_empty());
        RequestContext {
            inner: Arc::new(ContextInner {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                query,
                peer: req.extensions().get::<PeerAddr>().map(|p| p.0),
                client,
                last_event_id,
                identity: OnceLock::new(),
                hub: hub.clone(),
            }),
        }
    }

    /// Record who the request is. The first identity is kept in place; a later one (an
    /// `authorize` hook's, after auth's) makes a new context, so a clone handed out
    /// before keeps what it saw.
    pub(crate) fn with_identity(self, identity: Identity) -> RequestContext {
        match self.inner.identity.set(identity) {
            Ok(()) => self,
            Err(identity) => {
                let mut inner = ContextInner::clone(&self.inner);
                inner.identity = OnceLock::from(identity);
                RequestContext {
                    inner: Arc::new(inner),
                }
            }
        }
    }

    /// The hub of the endpoint the request came to: where a stream joins its rooms.
    ///
    /// ```
    /// let options = ssehub::SseOptions::new().on_connect(|conn, ctx| async move {
    ///     let _ = ctx.hub().join("chat", &conn);
    /// });
    /// ```
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
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

    /// The client's address: the peer's, or, when the peer is a trusted proxy
    /// ([`crate::SseOptions::trusted_proxies`]), the one it forwards for.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.inner.client
    }

    /// The id the client last saw: the `Last-Event-ID` header, or the `lastEventId` /
    /// `last_event_id` query parameter for clients that cannot set headers. An empty
    /// one is `None`, as on a first connection.
    pub fn last_event_id(&self) -> Option<&str> {
        self.inner.last_event_id.as_deref()
    }

    /// Who the request is: the identity [`crate::SseOptions::auth`] verified, or the one
    /// an `authorize` hook returned; `None` for an anonymous request.
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.identity.get()
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RequestContext")
            .field("method", &i.method)
            .field("path", &i.uri.path())
            .field("version", &i.version)
            .field("peer", &i.peer)
            .field("client", &i.client)
            .field("last_event_id", &i.last_event_id)
            .field("subject", &self.identity().and_then(Identity::subject))
            .finish_non_exhaustive()
    }
}
