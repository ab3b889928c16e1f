//! A Mercure hub (feature `mercure`) at `/.well-known/mercure`, over a [`Hub`] of its
//! own, speaking both of the protocol's dialects side by side, each request by its
//! parameters: 0.x (draft-dunglas-mercure-07, what Symfony's Mercure component, API
//! Platform and the Laravel packages speak) and 1.0 (draft-08: exact and URL-pattern
//! matchers, OAuth access tokens), so that apps written for a Mercure hub switch to
//! ssehub without a change, and move to 1.0 one at a time.
//!
//! - `dialect.rs`: which dialect a subscriber's request speaks (`topic=` or `match*=`).
//! - `selector.rs`: topic selectors of both dialects (`*`, RFC 6570 URI templates,
//!   exact topics, URL patterns) and the rooms they name; `uri_template.rs`: the
//!   templates, compiled to linear-time matchers; `url_pattern.rs`: WHATWG URL
//!   Patterns, resolved against the hub's URL.
//! - `patterns.rs`: which pattern rooms match an update's topics (the hub's
//!   `Patterns` seam), with a cache per topic.
//! - `auth.rs`: the token (header, query, cookies), its verification by shape, the
//!   0.x `mercure` claim, RFC 6750 refusals; `access_token.rs`: 1.0 access tokens
//!   (`typ`, `exp`, `aud`, `iss`, `authorization_details`).
//! - `subscribe.rs`: `GET`: a subscriber's request as the endpoint's dialect.
//! - `publish.rs`: `POST`: an update from a form, and draft-08's refusals.
//! - `active.rs`: active subscriptions and their events; `leases.rs`: over Redis,
//!   every node's subscriptions and the end of a dead node's; `subscriptions_api.rs`:
//!   `GET /.well-known/mercure/subscriptions[/...]` and its cursor.
//! - `discovery.rs`: the OAuth protected-resource metadata.
//!
//! How Mercure maps onto the hub: an exact topic is a room; a pattern selector (a
//! template, a URL pattern, `*`) is a room named by the selector, which the fan-out adds
//! to every update with a topic it matches (each subscriber gets an update once); a
//! private update goes only to the subscribers whose token grants subscribe on one of
//! its topics, live and on replay. Ids are cursors into the hub's one history, as
//! `urn:uuid:` IRIs.

mod access_token;
mod active;
mod auth;
mod dialect;
mod discovery;
#[cfg(feature = "redis")]
mod leases;
mod patterns;
mod publish;
mod selector;
mod subscribe;
mod subscriptions_api;
mod uri_template;
mod url_pattern;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use self::auth::Role;
use self::patterns::PatternRooms;
use crate::auth::JwtVerifier;
use crate::endpoint::{ConfigError, SseBody, SseEndpoint, SseOptions};
use crate::hub::topics::{IdForm, TopicRules};
use crate::hub::{Fsync, HistoryConfig, Hub, HubConfig};

/// The longest topic (or selector) accepted, in bytes: long URLs fit.
pub(crate) const MAX_TOPIC_LEN: usize = 4096;

/// The path of a Mercure hub.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// The path of the hub's OAuth protected-resource metadata (RFC 9728, Mercure 1.0).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// How a [`Mercure`] hub behaves. The defaults are the reference hub's: no key (no
/// token accepted, so nobody may publish), subscribers need a token unless
/// [`MercureConfig::anonymous`], the cookie `mercureAuthorization`, a heartbeat every
/// 40 s.
///
/// ```
/// use ssehub::{JwtAlgorithm, JwtVerifier, MercureConfig};
///
/// let key = JwtVerifier::hmac(JwtAlgorithm::HS256, b"!ChangeThisMercureHubJWTSecretKey!")?;
/// let config = MercureConfig::new()
///     .publisher_key(key.clone())
///     .subscriber_key(key)
///     .anonymous(true)
///     .cors_origins(["https://app.example"]);
/// # Ok::<(), ssehub::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct MercureConfig {
    publisher: Option<Arc<JwtVerifier>>,
    subscriber: Option<Arc<JwtVerifier>>,
    anonymous: bool,
    cors_origins: Vec<String>,
    publish_origins: Vec<String>,
    cookie_name: String,
    heartbeat: Option<Duration>,
    max_selectors: usize,
    max_topics: usize,
    max_body: usize,
    history: Option<HistoryConfig>,
    history_total_bytes: usize,
    resource: Option<String>,
    hub_url: Option<url::Url>,
    issuers: Vec<String>,
    issuer_keys: Vec<(String, Arc<JwtVerifier>)>,
    subscriptions: bool,
    history_dir: Option<(std::path::PathBuf, Fsync)>,
}

impl Default for MercureConfig {
    fn default() -> Self {
        MercureConfig {
            publisher: None,
            subscriber: None,
            anonymous: false,
            cors_origins: Vec::new(),
            publish_origins: Vec::new(),
            cookie_name: "mercureAuthorization".into(),
            heartbeat: Some(Duration::from_secs(40)),
            max_selectors: 100,
            max_topics: 100,
            max_body: 1024 * 1024,
            history: Some(HistoryConfig::default()),
            history_total_bytes: 64 * 1024 * 1024,
            resource: None,
            hub_url: None,
            issuers: Vec::new(),
            issuer_keys: Vec::new(),
            subscriptions: false,
            history_dir: None,
        }
    }
}

impl MercureConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key publishers' tokens are verified with (its algorithm is the only one
    /// accepted). The tokens' `exp` is checked when present, not required.
    pub fn publisher_key(mut self, key: JwtVerifier) -> Self {
        self.publisher = Some(Arc::new(key.require_exp(false)));
        self
    }

    /// The key subscribers' tokens are verified with (often the publisher's).
    pub fn subscriber_key(mut self, key: JwtVerifier) -> Self {
        self.subscriber = Some(Arc::new(key.require_exp(false)));
        self
    }

    /// Let subscribers in without a token: they get public updates only.
    pub fn anonymous(mut self, anonymous: bool) -> Self {
        self.anonymous = anonymous;
        self
    }

    /// The web pages whose visitors may subscribe from another origin (with their
    /// cookies): their origins, never `*` with credentials.
    pub fn cors_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cors_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The origins whose pages may publish with the cookie (a cookie-authorized publish
    /// from any other origin is refused: cross-site request forgery). `*` allows any.
    pub fn publish_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.publish_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The cookie a token is read from (`mercureAuthorization`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The interval of the comment an idle stream gets (`None`: never).
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// The most topic selectors one subscriber may send (100); more is a 400.
    pub fn max_selectors(mut self, n: usize) -> Self {
        self.max_selectors = n;
        self
    }

    /// The most topics one update may have (100); more is a 400.
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = n;
        self
    }

    /// The largest publish body, in bytes (1 MiB); larger is a 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How much history each topic keeps for subscribers that reconnect (`None`: none,
    /// so no replay: `Last-Event-ID` then answers `earliest`).
    pub fn history(mut self, history: Option<HistoryConfig>) -> Self {
        self.history = history;
        self
    }

    /// The most bytes all topics' history together may hold (64 MiB).
    pub fn history_total_bytes(mut self, bytes: usize) -> Self {
        self.history_total_bytes = bytes;
        self
    }

    /// The hub's resource identifier (Mercure 1.0): the `aud` every 1.0 access token
    /// must carry, and the `resource` of its protected-resource metadata. Without it, no
    /// 1.0 token is accepted (1.0 subscribers may still come anonymously). Usually the
    /// hub's public URL, `https://example.com/.well-known/mercure`, which is then also
    /// the base of relative URL patterns and topics ([`MercureConfig::hub_url`]).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The hub's public URL, against which relative URL patterns and topics are
    /// resolved (default: the resource identifier when it is a URL, else
    /// `https://localhost/.well-known/mercure`). A URL that does not parse is an error.
    pub fn hub_url(mut self, url: &str) -> Result<Self, MercureError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| MercureError::HubUrl(url.to_owned(), e.to_string()))?;
        self.hub_url = Some(parsed);
        Ok(self)
    }

    /// Trust 1.0 tokens whose `iss` is `issuer`, verified with the publisher's or the
    /// subscriber's key (as the request's role says). With no issuer at all, any `iss`
    /// (or none) is accepted: self-issued tokens.
    pub fn trusted_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Trust 1.0 tokens whose `iss` is `issuer`, verified with a key of its own (for
    /// both roles).
    pub fn issuer_key(mut self, issuer: impl Into<String>, key: JwtVerifier) -> Self {
        self.issuer_keys.push((issuer.into(), Arc::new(key)));
        self
    }

    /// Active subscriptions: an update on each subscription's start and end, and the
    /// subscriptions API at `/.well-known/mercure/subscriptions` (off by default).
    pub fn subscriptions(mut self, on: bool) -> Self {
        self.subscriptions = on;
        self
    }

    /// The key `role`'s 0.x tokens (and self-issued 1.0 tokens) are verified with.
    fn key(&self, role: Role) -> Option<&JwtVerifier> {
        match role {
            Role::Publisher => self.publisher.as_deref(),
            Role::Subscriber => self.subscriber.as_deref(),
        }
    }

    /// The hub's URL: the base of relative URL patterns and topics.
    fn base_url(&self) -> url::Url {
        self.hub_url
            .clone()
            .or_else(|| {
                let r = url::Url::parse(self.resource.as_deref()?).ok()?;
                r.has_host().then_some(r)
            })
            .unwrap_or_else(|| {
                url::Url::parse("https://localhost/.well-known/mercure").expect("a valid URL")
            })
    }

    /// Where the protected-resource metadata is, as an absolute URL (RFC 9728: the
    /// well-known prefix before the hub's path).
    fn metadata_url(&self) -> String {
        let base = self.base_url();
        format!("{}{METADATA_PATH}", base.origin().ascii_serialization())
    }

    /// Keep the topics' history on disk in `dir`, so that it survives a restart, as
    /// [`HubConfig::history_dir`] does for a room hub (a directory of its own: one hub
    /// per directory). Open the hub with [`Mercure::open`]. Ignored over Redis.
    pub fn history_dir(mut self, dir: impl Into<std::path::PathBuf>, fsync: Fsync) -> Self {
        self.history_dir = Some((dir.into(), fsync));
        self
    }

    /// The hub's configuration: topics as rooms, patterns resolved per update.
    fn hub_config(&self, patterns: Arc<PatternRooms>) -> HubConfig {
        let config = match &self.history_dir {
            Some((dir, fsync)) => HubConfig::default().history_dir(dir.clone(), *fsync),
            None => HubConfig::default(),
        };
        config
            .max_rooms_per_connection(self.max_selectors)
            .max_rooms_per_publish(self.max_topics)
            .history(self.history)
            .history_total_bytes(self.history_total_bytes)
            .topics(TopicRules {
                // Room names of patterns carry a short prefix (`selector.rs`).
                max_name: Some(MAX_TOPIC_LEN + 32),
                repeat_ids: true,
                ids: IdForm::Urn,
                patterns: Some(patterns),
            })
    }
}

impl fmt::Debug for MercureConfig {
    /// Keys are not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MercureConfig")
            .field("publisher_key", &self.publisher.is_some())
            .field("subscriber_key", &self.subscriber.is_some())
            .field("anonymous", &self.anonymous)
            .field("cors_origins", &self.cors_origins)
            .field("publish_origins", &self.publish_origins)
            .field("cookie_name", &self.cookie_name)
            .field("heartbeat", &self.heartbeat)
            .field("max_selectors", &self.max_selectors)
            .field("max_topics", &self.max_topics)
            .field("resource", &self.resource)
            .field("issuers", &self.issuers)
            .field(
                "issuer_keys",
                &self.issuer_keys.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// What the hub's parts share.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) config: MercureConfig,
    /// The active subscriptions, when they are on.
    pub(crate) active: Option<Arc<active::Active>>,
    /// The pattern rooms with members here: a subscriber's URL pattern that is already
    /// one of them is not compiled again.
    pub(crate) patterns: Arc<PatternRooms>,
}

/// A Mercure hub: `GET` subscribes, `POST` publishes, at [`MERCURE_PATH`]. Mount it in
/// [`crate::Server`] with [`crate::Server::mercure`], or as a `tower::Service` (for
/// instance in axum, at `/.well-known/mercure`). Cheap to clone.
///
/// ```no_run
/// use ssehub::{JwtAlgorithm, JwtVerifier, Mercure, MercureConfig, Server};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let key = JwtVerifier::hmac(JwtAlgorithm::HS256, b"!ChangeThisMercureHubJWTSecretKey!")?;
/// let mercure = Mercure::new(MercureConfig::new().publisher_key(key.clone()).subscriber_key(key))?;
/// Server::new(([0, 0, 0, 0], 3000)).mercure(mercure).run().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mercure {
    shared: Arc<Shared>,
    endpoint: SseEndpoint,
}

impl Mercure {
    /// A hub in this process alone.
    ///
    /// # Panics
    /// With [`MercureConfig::history_dir`], if the history cannot be opened: use
    /// [`Mercure::open`] to get the reason as an error instead.
    pub fn new(config: MercureConfig) -> Result<Mercure, ConfigError> {
        let patterns = Arc::new(PatternRooms::new(config.base_url()));
        let hub = Hub::with_config(config.hub_config(patterns.clone()));
        Mercure::over(hub, config, patterns)
    }

    /// A hub in this process alone; with [`MercureConfig::history_dir`], its history read
    /// back from disk (as [`Hub::open`] does).
    pub fn open(config: MercureConfig) -> Result<Mercure, MercureError> {
        let patterns = Arc::new(PatternRooms::new(config.base_url()));
        let hub = Hub::open(config.hub_config(patterns.clone()))?;
        Ok(Mercure::over(hub, config, patterns)?)
    }

    /// A hub shared by every node on the same Redis (and key prefix): an update
    /// published on any node reaches the subscribers of every node, and a subscriber
    /// resumes on any node. Give it a prefix of its own if the nodes also run a room hub.
    #[cfg(feature = "redis")]
    pub async fn with_redis(
        config: MercureConfig,
        redis: crate::hub::RedisConfig,
    ) -> Result<Mercure, MercureError> {
        let patterns = Arc::new(PatternRooms::new(config.base_url()));
        let (url, prefix) = (redis.url().to_owned(), redis.key_prefix().to_owned());
        let hub = Hub::with_redis(config.hub_config(patterns.clone()), redis).await?;
        let mercure = Mercure::over(hub, config, patterns)?;
        if let Some(active) = &mercure.shared.active {
            let leases = leases::Leases::start(&url, &prefix, Arc::downgrade(active))
                .await
                .map_err(|e| MercureError::Redis(e.into()))?;
            let _ = active.leases.set(leases);
        }
        Ok(mercure)
    }

    fn over(
        hub: Hub,
        config: MercureConfig,
        patterns: Arc<PatternRooms>,
    ) -> Result<Mercure, ConfigError> {
        let mut options = SseOptions::new()
            .prefix(MERCURE_PATH)
            .no_auto_join()
            .with_hub(hub.clone())
            .keep_alive(config.heartbeat);
        if !config.cors_origins.is_empty() {
            options = options
                .allowed_origins(config.cors_origins.clone())
                .allow_credentials(true);
        }
        let active = config
            .subscriptions
            .then(|| active::Active::new(hub.clone()));
        let shared = Arc::new(Shared {
            hub,
            config,
            active,
            patterns,
        });
        options.dialect = Some(Arc::new(subscribe::Subscribe(shared.clone())));
        let endpoint = SseEndpoint::new(options)?;
        Ok(Mercure { shared, endpoint })
    }

    /// The hub the updates go through.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// The subscribers' endpoint (`GET` and `HEAD`), for a server that routes it apart
    /// from the other methods (as [`crate::Server::mercure`] does).
    pub fn endpoint(&self) -> &SseEndpoint {
        &self.endpoint
    }

    /// Answer one request at the hub's path: `GET`/`HEAD` subscribe, `POST` publishes,
    /// `OPTIONS` is the CORS preflight; other methods get 405.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<SseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let path = req.uri().path();
        if path == METADATA_PATH {
            let mut res = match *req.method() {
                Method::GET | Method::HEAD => discovery::metadata(&self.shared),
                _ => {
                    return crate::respond::allow_only(&req, &[Method::GET, Method::HEAD])
                        .unwrap_or_else(|| crate::respond::text(StatusCode::NOT_FOUND, ""))
                }
            };
            // Public, and read by pages of any origin (RFC 9728 has no secret in it).
            res.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            return res;
        }
        if path != MERCURE_PATH {
            let shared = &self.shared;
            let mut res = subscriptions_api::answer(
                shared,
                shared.active.as_deref(),
                req.method(),
                req.uri(),
                req.headers(),
            )
            .await;
            self.cors(origin, res.headers_mut());
            return res;
        }
        let mut res = match *req.method() {
            Method::GET | Method::HEAD => return self.endpoint.handle(req).await,
            Method::POST => publish::publish(&self.shared, req).await,
            Method::OPTIONS => crate::respond::text(StatusCode::NO_CONTENT, ""),
            _ => {
                let allowed = [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS];
                return crate::respond::allow_only(&req, &allowed)
                    .unwrap_or_else(|| crate::respond::text(StatusCode::NOT_FOUND, ""));
            }
        };
        self.cors(origin, res.headers_mut());
        res
    }

    /// CORS for a listed origin: echo it, with credentials, and say what a preflight may
    /// ask (publish with a token, subscribe with a cursor).
    fn cors(&self, origin: Option<HeaderValue>, h: &mut http::HeaderMap) {
        let config = &self.shared.config;
        let Some(origin) = origin else { return };
        let listed = origin.to_str().is_ok_and(|o| {
            config
                .cors_origins
                .iter()
                .chain(&config.publish_origins)
                .any(|l| l != "*" && l.trim_end_matches('/').eq_ignore_ascii_case(o))
        });
        if !listed {
            return;
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id, cache-control"),
        );
    }
}

impl fmt::Debug for Mercure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mercure")
            .field("config", &self.shared.config)
            .field("hub", &self.shared.hub)
            .finish()
    }
}

impl<B> tower::Service<Request<B>> for Mercure
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<SseBody>;
    type Error = Infallible;
    type Future = crate::endpoint::BoxFuture<Result<Response<SseBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// Why a Mercure hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MercureError {
    /// Its endpoint's options were refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hub's URL is no absolute URL.
    #[error("invalid mercure hub_url {0:?}: {1}")]
    HubUrl(String, String),
    /// Its history could not be opened on disk ([`MercureConfig::history_dir`]).
    #[error(transparent)]
    History(#[from] crate::hub::HistoryStoreError),
    /// Its Redis could not be reached.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] crate::hub::RedisError),
}
