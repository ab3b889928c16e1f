//! A Mercure hub for the library's Mercure tests ([`MercureHub`], on an ephemeral port)
//! and what they send it: tokens signed with the key it is configured with, in both
//! dialects (0.x's `mercure` claim, 1.0's access tokens), subscriptions and publications.
//! Included with `#[path = "support/mercure.rs"] mod mercure;` beside `mod common;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use ssehub::decode::Item;
use ssehub::{JwtAlgorithm, JwtVerifier, Mercure, MercureConfig, Server};

use crate::common::{request, Running, SseClient};

/// The HS256 key of the hub's publishers and subscribers: the reference hub's example.
pub(crate) const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";
pub(crate) const HUB: &str = "/.well-known/mercure";
/// The hub's URL as 1.0 access tokens name it (`aud`), for a hub configured with it
/// ([`MercureConfig::resource`]).
pub(crate) const RESOURCE: &str = "https://hub.example/.well-known/mercure";
/// The `type` of Mercure's entries in a token's `authorization_details`.
pub(crate) const DETAIL: &str = "https://mercure.rocks/authorization-detail";

/// A hub that knows [`SECRET`] for publishers and subscribers, and lets anyone subscribe
/// to public updates.
pub(crate) fn config() -> MercureConfig {
    let key = JwtVerifier::hmac(JwtAlgorithm::HS256, SECRET.as_bytes()).unwrap();
    MercureConfig::new()
        .publisher_key(key.clone())
        .subscriber_key(key)
        .anonymous(true)
}

/// Seconds since the epoch, for a token's `exp`.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `claims` signed with [`SECRET`].
pub(crate) fn sign(header: &Header, claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    encode(header, claims, &key).unwrap()
}

/// A 0.x token (HS256) with these claims.
pub(crate) fn token(claims: Value) -> String {
    sign(&Header::default(), &claims)
}

/// A 0.x token that may publish to `topics`.
pub(crate) fn publisher(topics: &[&str]) -> String {
    token(json!({ "mercure": { "publish": topics } }))
}

/// A 0.x token that may subscribe to `topics`, private updates included.
pub(crate) fn subscriber(topics: &[&str]) -> String {
    token(json!({ "mercure": { "subscribe": topics } }))
}

/// The header of a 1.0 access token (`typ` `at+jwt`) signed with `alg`.
pub(crate) fn at_jwt(alg: JwtAlgorithm) -> Header {
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    h
}

/// Claims of a 1.0 access token for [`RESOURCE`], valid ten minutes, with these
/// `authorization_details`.
pub(crate) fn v1_claims(details: Value) -> Value {
    json!({
        "aud": RESOURCE,
        "exp": now() + 600,
        "authorization_details": details,
    })
}

/// The `authorization_details` granting `actions` on `topics` (`[{match, match_type}]`).
pub(crate) fn grant(actions: &[&str], topics: Value) -> Value {
    json!([{ "type": DETAIL, "actions": actions, "topics": topics }])
}

/// A 1.0 access token (HS256) granting `actions` on `topics`.
pub(crate) fn v1_token(actions: &[&str], topics: Value) -> String {
    sign(
        &at_jwt(JwtAlgorithm::HS256),
        &v1_claims(grant(actions, topics)),
    )
}

/// The query string `name=value` for each of `values`.
pub(crate) fn query(name: &str, values: &[&str]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for v in values {
        q.append_pair(name, v);
    }
    q.finish()
}

/// A Mercure hub served on an ephemeral port of 127.0.0.1.
pub(crate) struct MercureHub {
    pub addr: SocketAddr,
    pub mercure: Mercure,
    server: Running,
    /// The token [`MercureHub::publish`] publishes with.
    publisher: String,
}

impl MercureHub {
    /// A hub of `config`, alone on its server.
    pub(crate) async fn start(config: MercureConfig) -> MercureHub {
        Self::serve(Mercure::new(config).unwrap(), |s| s).await
    }

    /// `mercure` on a server that `f` may add to (a route beside the hub).
    pub(crate) async fn serve(mercure: Mercure, f: impl FnOnce(Server) -> Server) -> MercureHub {
        let server = Server::new(([127, 0, 0, 1], 0)).mercure(mercure.clone());
        let server = Running::start(f(server)).await;
        MercureHub {
            addr: server.addr,
            mercure,
            server,
            publisher: publisher(&["*"]),
        }
    }

    /// Publish with `token` from now on (by default, a 0.x token that may publish
    /// anywhere).
    pub(crate) fn publishing_with(mut self, token: String) -> MercureHub {
        self.publisher = token;
        self
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    /// A subscriber to `topics` (0.x selectors) with `headers`, its stream open.
    pub(crate) async fn subscribe(&self, topics: &[&str], headers: &[(&str, &str)]) -> SseClient {
        self.subscribe_query(&query("topic", topics), headers).await
    }

    /// A subscriber with the query string `query` and `headers`, its stream open.
    pub(crate) async fn subscribe_query(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut c = SseClient::connect(self.addr, &format!("{HUB}?{query}"), headers).await;
        assert_eq!(c.status, StatusCode::OK, "subscribe {query}");
        assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
        c
    }

    /// `POST` the form `fields` with `headers`: (status, body, headers).
    pub(crate) async fn post(
        &self,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, HeaderMap) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        let (status, h, text) = request(self.addr, "POST", HUB, &all, &body).await;
        (status, text, h)
    }

    /// [`MercureHub::post`] with `token` as the bearer token.
    pub(crate) async fn post_as(
        &self,
        fields: &[(&str, &str)],
        token: &str,
    ) -> (StatusCode, String, HeaderMap) {
        let bearer = format!("Bearer {token}");
        self.post(fields, &[("authorization", &bearer)]).await
    }

    /// Publish the form `fields`; the update's id, which the answer is (as text).
    pub(crate) async fn publish(&self, fields: &[(&str, &str)]) -> String {
        let (status, body, h) = self.post_as(fields, &self.publisher).await;
        assert_eq!(status, StatusCode::OK, "publish {fields:?}: {body}");
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        body
    }
}
