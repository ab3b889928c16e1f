//! The Mercure hub's 1.0 dialect (draft-08) end to end, over TCP, beside 0.x on the same
//! hub: `match` / `match_exact` / `match_urlpattern` selectors and their 400s; access
//! tokens (`typ`, `exp`, `aud`, `iss`, `authorization_details`) signed with HS256, RS256
//! and ES256 keys made here, and RFC 6750's answers; the 1.0 cookie and no query token;
//! draft-08's publish rules; `last_event_id` and `Mercure-Last-Event-ID`; subscription
//! events in both shapes; the subscriptions API and its cursor; the protected-resource
//! metadata.
#![cfg(feature = "mercure")]

mod common;
#[path = "support/mercure.rs"]
mod mercure;

use std::time::Duration;

use common::*;
use http::StatusCode;
use jsonwebtoken::{encode, EncodingKey};
use mercure::{at_jwt, grant, now, sign, token, v1_claims, MercureHub, DETAIL, HUB, RESOURCE};
use serde_json::{json, Value};
use ssehub::decode::Event;
use ssehub::{JwtAlgorithm, JwtVerifier, MercureConfig, METADATA_PATH};

/// Valid 1.0 claims with these authorization details, for a subject.
fn claims(details: Value) -> Value {
    let mut c = v1_claims(details);
    c["sub"] = json!("user-1");
    c
}

/// A 1.0 token (HS256) granting `actions` on `topics` (`[{match, match_type}]`).
fn v1_token(actions: &[&str], topics: Value) -> String {
    sign(
        &at_jwt(JwtAlgorithm::HS256),
        &claims(grant(actions, topics)),
    )
}

fn everything() -> String {
    v1_token(&["publish", "subscribe"], json!([{ "match": "*" }]))
}

/// A 0.x token with the `mercure` claim.
fn v0_token(claim: Value) -> String {
    token(json!({ "mercure": claim }))
}

fn config() -> MercureConfig {
    mercure::config().resource(RESOURCE)
}

/// A hub of `config` that these tests publish to with 1.0 tokens.
async fn start(config: MercureConfig) -> MercureHub {
    MercureHub::start(config)
        .await
        .publishing_with(everything())
}

// What only the 1.0 tests ask of a hub.
impl MercureHub {
    /// A subscription refused: its status, `WWW-Authenticate` and body.
    async fn refused(&self, query: &str, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
        let (status, h, body) =
            request(self.addr, "GET", &format!("{HUB}?{query}"), headers, "").await;
        assert_ne!(status, StatusCode::OK, "{query} was not refused");
        let challenge = h
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, challenge, body)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        request(self.addr, "GET", path, &headers, "").await
    }
}

fn q(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn next(c: &mut SseClient) -> Event {
    c.next_event().await
}

#[tokio::test]
async fn exact_url_pattern_and_star_matchers_each_get_an_update_once() {
    let hub = start(config()).await;
    let book = "https://example.com/books/1";
    let mut exact = hub.subscribe_query(&q(&[("match", book)]), &[]).await;
    let mut explicit = hub.subscribe_query(&q(&[("match_exact", book)]), &[]).await;
    let mut pattern = hub
        .subscribe_query(
            &q(&[("match_urlpattern", "https://example.com/books/:id")]),
            &[],
        )
        .await;
    let mut relative = hub
        .subscribe_query(&q(&[("match_urlpattern", "/books/:id")]), &[])
        .await;
    let mut star = hub
        .subscribe_query(&q(&[("match_urlpattern", "*")]), &[])
        .await;
    let mut all = hub
        .subscribe_query(
            &q(&[
                ("match", book),
                ("matchURLPattern", "https://example.com/books/:id"),
                ("match", "*"),
            ]),
            &[],
        )
        .await;
    let mut braces = hub
        .subscribe_query(&q(&[("match", "https://example.com/books/{id}")]), &[])
        .await;
    // A 0.x subscriber on the same hub, with a template.
    let mut old = hub
        .subscribe_query(&q(&[("topic", "https://example.com/books/{id}")]), &[])
        .await;
    let id = hub.publish(&[("topic", book), ("data", "b1")]).await;
    for c in [
        &mut exact,
        &mut explicit,
        &mut pattern,
        &mut star,
        &mut all,
        &mut old,
    ] {
        let e = next(c).await;
        assert_eq!(
            (e.data.as_str(), e.last_event_id.as_str()),
            ("b1", id.as_str())
        );
    }
    // Relative topics and patterns resolve against the hub's URL (the resource's).
    hub.publish(&[("topic", "/books/2"), ("data", "relative")])
        .await;
    assert_eq!(next(&mut relative).await.data, "relative");
    hub.publish(&[
        ("topic", "https://hub.example/books/3"),
        ("data", "absolute"),
    ])
    .await;
    assert_eq!(next(&mut relative).await.data, "absolute");
    // An exact 1.0 matcher with braces is no template: only that very topic.
    hub.publish(&[
        ("topic", "https://example.com/books/{id}"),
        ("data", "braces"),
    ])
    .await;
    assert_eq!(
        next(&mut braces).await.data,
        "braces",
        "b1 did not reach it"
    );
    hub.publish(&[
        ("topic", "https://example.com/authors/1"),
        ("data", "marker"),
    ])
    .await;
    for e in ["relative", "absolute", "braces", "marker"] {
        assert_eq!(next(&mut all).await.data, e, "b1 came once");
    }
    assert_eq!(next(&mut star).await.data, "relative");
    hub.stop().await;
}

#[tokio::test]
async fn malformed_subscriptions_are_400_naming_the_parameter() {
    let hub = start(config()).await;
    let cases: &[(&str, &str)] = &[
        ("topic=a&match=b", "\"match\""),
        ("match_urlpattern=/a/:b&topic=a", "\"match_urlpattern\""),
        ("match_regex=a", "\"match_regex\""),
        ("Match=a", "\"Match\""),
        ("match=a%07b", "control"),
        ("match=a%C2%85b", "control"),
        ("match=a%E2%80%8Bb", "format"),
        (
            "match_urlpattern=https%3A%2F%2Fe.com%2F(",
            "match_urlpattern",
        ),
        ("match=", "match"),
    ];
    for (query, says) in cases {
        let (status, challenge, body) = hub.refused(query, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{query}: {challenge}"
        );
    }
    hub.stop().await;
}

/// An RS256 key pair made for the test by `openssl`: (private PEM, public PEM).
fn rs256_pair() -> (String, String) {
    let dir = std::env::temp_dir().join(format!("ssehub-rs256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .expect("openssl makes the RSA key");
    assert!(status.success());
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(public.status.success());
    let private = std::fs::read_to_string(&key).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (private, String::from_utf8(public.stdout).unwrap())
}

fn es256_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

#[tokio::test]
async fn access_tokens_are_checked_as_draft_08_says() {
    let (rsa_private, rsa_public) = rs256_pair();
    let (ec_private, ec_public) = es256_pair();
    let rs = JwtVerifier::public_key_pem(rsa_public.as_bytes(), Some(JwtAlgorithm::RS256)).unwrap();
    let es = JwtVerifier::public_key_pem(ec_public.as_bytes(), Some(JwtAlgorithm::ES256)).unwrap();
    let hub = start(
        config()
            .anonymous(false)
            .trusted_issuer("https://self.example")
            .issuer_key("https://rsa.example", rs)
            .issuer_key("https://ec.example", es),
    )
    .await;
    let subscribe =
        json!([{ "type": DETAIL, "actions": ["subscribe"], "topics": [{ "match": "*" }] }]);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(subscribe.clone());
        c["iss"] = json!("https://self.example");
        edit(&mut c);
        c
    };
    let hs = |c: &Value| sign(&at_jwt(JwtAlgorithm::HS256), c);
    let rsa_key = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
    let rs256 = |c: &Value| encode(&at_jwt(JwtAlgorithm::RS256), c, &rsa_key).unwrap();
    let es256 = |c: &Value| encode(&at_jwt(JwtAlgorithm::ES256), c, &ec_key).unwrap();
    let iss = |i: &'static str| move |c: &mut Value| c["iss"] = json!(i);

    let good: Vec<(&str, String)> = vec![
        (
            "HS256, a trusted issuer with the subscriber key",
            hs(&with(&|_| {})),
        ),
        (
            "aud as an array",
            hs(&with(&|c| c["aud"] = json!(["other", RESOURCE]))),
        ),
        (
            "RS256, an issuer with its own key",
            rs256(&with(&iss("https://rsa.example"))),
        ),
        (
            "ES256, an issuer with its own key",
            es256(&with(&iss("https://ec.example"))),
        ),
        (
            "a detail of another type is someone else's",
            hs(&with(&|c| {
                c["authorization_details"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({ "type": "payment", "amount": 3 }))
            })),
        ),
    ];
    for (what, token) in &good {
        let bearer = format!("Bearer {token}");
        let c = SseClient::connect(
            hub.addr,
            &format!("{HUB}?match=a"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(c.status, StatusCode::OK, "{what}");
    }
    let mut jwt_typ = at_jwt(JwtAlgorithm::HS256);
    jwt_typ.typ = Some("JWT".into());
    let bad: Vec<(&str, String, &str)> = vec![
        ("typ JWT", sign(&jwt_typ, &with(&|_| {})), "typ"),
        (
            "no typ",
            sign(
                &{
                    let mut h = jwt_typ.clone();
                    h.typ = None;
                    h
                },
                &with(&|_| {}),
            ),
            "typ",
        ),
        (
            "wrong aud",
            hs(&with(&|c| c["aud"] = json!("https://other.example"))),
            "aud",
        ),
        (
            "no aud",
            hs(&with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            })),
            "aud",
        ),
        (
            "unknown iss",
            hs(&with(&iss("https://evil.example"))),
            "not trusted",
        ),
        (
            "no iss",
            hs(&with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            })),
            "iss",
        ),
        (
            "expired",
            hs(&with(&|c| c["exp"] = json!(now() - 600))),
            "expired",
        ),
        (
            "no exp",
            hs(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            "exp",
        ),
        (
            "an issuer's token signed with the shared secret",
            hs(&with(&iss("https://rsa.example"))),
            "",
        ),
        (
            "RS256 from an issuer trusted with the HMAC key",
            rs256(&with(&|_| {})),
            "",
        ),
        (
            "an unknown action",
            hs(&with(&|c| {
                c["authorization_details"][0]["actions"] = json!(["subscribe", "admin"])
            })),
            "authorization_details",
        ),
        (
            "no actions",
            hs(&with(&|c| {
                c["authorization_details"][0]["actions"] = json!([])
            })),
            "authorization_details",
        ),
        (
            "an unknown match_type",
            hs(&with(&|c| {
                c["authorization_details"][0]["topics"] =
                    json!([{ "match": "a", "match_type": "regex" }])
            })),
            "authorization_details",
        ),
        (
            "an invalid URL pattern",
            hs(&with(
                &|c| {
                    c["authorization_details"][0]["topics"] =
                        json!([{ "match": "https://e.com/(", "match_type": "urlpattern" }])
                },
            )),
            "authorization_details",
        ),
        (
            "a topic that is no object",
            hs(&with(&|c| {
                c["authorization_details"][0]["topics"] = json!(["*"])
            })),
            "authorization_details",
        ),
        (
            "an invalid entry beside a valid one",
            hs(&with(&|c| {
                c["authorization_details"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({ "type": DETAIL, "actions": ["subscribe"], "topics": [] }))
            })),
            "authorization_details",
        ),
    ];
    for (what, token, says) in &bad {
        let bearer = format!("Bearer {token}");
        let (status, challenge, body) = hub.refused("match=a", &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(body.contains(says), "{what}: {body}");
    }
    // No token: a bare challenge naming the metadata, no error code.
    let (status, challenge, _) = hub.refused("match=a", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!challenge.contains("error="), "{challenge}");
    assert!(
        challenge.starts_with("Bearer resource_metadata=\"https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure\""),
        "{challenge}"
    );
    // 1.0 reads no token from the query; its cookie is read.
    let good_token = &good[0].1;
    let (status, _, body) = hub
        .refused(&q(&[("match", "a"), ("authorization", good_token)]), &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("no token from the query"), "{body}");
    let cookie = format!("__Secure-mercure_access_token={good_token}");
    hub.subscribe_query("match=a", &[("cookie", &cookie)]).await;
    // A 0.x subscriber's query token is still read (0.x's rules), and a 1.0 token
    // serves a 0.x request as well: a token's shape says its rules.
    let v0 = v0_token(json!({ "subscribe": ["*"] }));
    hub.subscribe_query(&q(&[("topic", "a"), ("authorization", &v0)]), &[])
        .await;
    hub.subscribe_query(
        "topic=a",
        &[("authorization", &format!("Bearer {good_token}"))],
    )
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn publish_grants_and_rfc_6750_answers() {
    let hub = start(config()).await;
    let book = "https://example.com/books/1";
    let mut c = hub.subscribe_query(&q(&[("match", book)]), &[]).await;
    let books = v1_token(
        &["publish"],
        json!([{ "match": "https://example.com/books/:id", "match_type": "urlpattern" }]),
    );
    let (status, id, _) = hub
        .post_as(&[("topic", book), ("data", "granted")], &books)
        .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    assert_eq!(next(&mut c).await.data, "granted");
    let (status, body, h) = hub
        .post_as(
            &[("topic", "https://example.com/authors/1"), ("data", "x")],
            &books,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    let readers = v1_token(&["subscribe"], json!([{ "match": "*" }]));
    let (status, body, _) = hub
        .post_as(&[("topic", book), ("data", "x")], &readers)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "subscribe grants no publish: {body}"
    );
    let mut typ = at_jwt(JwtAlgorithm::HS256);
    typ.typ = Some("JWT".into());
    let bad = sign(
        &typ,
        &claims(json!([{ "type": DETAIL, "actions": ["publish"], "topics": [{ "match": "*" }] }])),
    );
    let (status, body, h) = hub.post_as(&[("topic", book), ("data", "x")], &bad).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    hub.stop().await;
}

#[tokio::test]
async fn draft_08_publish_rules_are_400() {
    let hub = start(config()).await;
    let token = everything();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("topic", "/.well-known/mercure/subscriptions/Exact/a/b")],
            "hub's own path",
        ),
        (
            &[("topic", "https://any.example/.well-known/mercure")],
            "hub's own path",
        ),
        (
            &[("topic", "/x/../.well-known/mercure/subscriptions")],
            "hub's own path",
        ),
        (
            &[("topic", "/.well-known/%6dercure/subscriptions")],
            "hub's own path",
        ),
        (&[("topic", "*")], "\"*\""),
        (&[("topic", "a\u{200B}b")], "U+200B"),
        (&[("topic", "t"), ("id", "earliest")], "earliest"),
        (&[("topic", "t"), ("id", "a\u{85}b")], "control"),
        (&[("topic", "t"), ("type", "mercure")], "reserved"),
    ];
    for (fields, says) in cases {
        let (status, body, _) = hub.post_as(fields, &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields:?}: {body}");
        assert!(body.contains(says), "{fields:?}: {body}");
    }
    // Near misses are fine.
    for t in ["/.well-known/mercurey", "https://e.com/.well-known"] {
        let (status, body, _) = hub.post_as(&[("topic", t)], &token).await;
        assert_eq!(status, StatusCode::OK, "{t}: {body}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn private_updates_follow_the_grants_live_and_on_replay_with_the_1_0_header() {
    let hub = start(config()).await;
    let pattern = q(&[("match_urlpattern", "https://example.com/books/:id")]);
    let one = v1_token(
        &["subscribe"],
        json!([{ "match": "https://example.com/books/1" }]),
    );
    let bearer = format!("Bearer {one}");
    let mut granted = hub
        .subscribe_query(&pattern, &[("authorization", &bearer)])
        .await;
    let mut anonymous = hub.subscribe_query(&pattern, &[]).await;
    let first = hub
        .publish(&[("topic", "https://example.com/books/0"), ("data", "public")])
        .await;
    hub.publish(&[
        ("topic", "https://example.com/books/2"),
        ("data", "not yours"),
        ("private", "on"),
    ])
    .await;
    hub.publish(&[
        ("topic", "https://example.com/books/1"),
        ("data", "yours"),
        ("private", ""),
    ])
    .await;
    hub.publish(&[("topic", "https://example.com/books/3"), ("data", "marker")])
        .await;
    for (c, expect) in [
        (&mut granted, &["public", "yours", "marker"][..]),
        (&mut anonymous, &["public", "marker"][..]),
    ] {
        for e in expect {
            assert_eq!(next(c).await.data, *e);
        }
    }
    // Resume after the first with `last_event_id`: the same rules on replay, and the
    // answer says where the replay starts, in 1.0's header.
    let query = format!("{pattern}&{}", q(&[("last_event_id", &first)]));
    let mut again = hub
        .subscribe_query(&query, &[("authorization", &bearer)])
        .await;
    assert_eq!(again.headers["mercure-last-event-id"], first.as_str());
    assert!(
        again.headers.get("last-event-id").is_none(),
        "0.x's header is 0.x's"
    );
    assert_eq!(next(&mut again).await.data, "yours");
    assert_eq!(next(&mut again).await.data, "marker");
    let unknown = format!("{pattern}&last_event_id=urn%3Auuid%3Anever");
    let c = hub.subscribe_query(&unknown, &[]).await;
    assert_eq!(c.headers["mercure-last-event-id"], "earliest");
    // A client id used twice resolves to the earliest.
    hub.publish(&[
        ("topic", "https://example.com/books/4"),
        ("id", "dup"),
        ("data", "d1"),
    ])
    .await;
    hub.publish(&[
        ("topic", "https://example.com/books/4"),
        ("id", "dup"),
        ("data", "d2"),
    ])
    .await;
    let mut from_dup = hub
        .subscribe_query(&format!("{pattern}&last_event_id=dup"), &[])
        .await;
    assert_eq!(next(&mut from_dup).await.data, "d2");
    hub.stop().await;
}

/// A token that may read every subscription event and the API.
fn watcher_token() -> String {
    v1_token(
        &["subscribe"],
        json!([{ "match": "/.well-known/mercure/subscriptions{/*}?", "match_type": "urlpattern" }]),
    )
}

#[tokio::test]
async fn subscription_events_in_both_shapes_to_those_allowed() {
    let hub = start(config().subscriptions(true)).await;
    let bearer = format!("Bearer {}", watcher_token());
    let events = q(&[("match_urlpattern", "/.well-known/mercure/subscriptions/*")]);
    let mut watcher = hub
        .subscribe_query(&events, &[("authorization", &bearer)])
        .await;
    // Its own subscription is announced to itself first.
    let own = next(&mut watcher).await;
    assert_eq!(own.event, "mercure");
    let mut nosy = hub.subscribe_query(&events, &[]).await; // no grant: private events never come
    assert_eq!(
        next(&mut watcher).await.event,
        "mercure",
        "the nosy one's subscription"
    );
    let mut claims_with_payload = claims(json!([
        { "type": DETAIL, "actions": ["subscribe"], "topics": [{ "match": "https://example.com/books/:id", "match_type": "urlpattern" }], "payload": { "name": "Ada" } }
    ]));
    claims_with_payload["sub"] = json!("ada");
    let with_payload = sign(&at_jwt(JwtAlgorithm::HS256), &claims_with_payload);
    let b = format!("Bearer {with_payload}");
    let books = q(&[("match_urlpattern", "https://example.com/books/:id")]);
    let one = hub.subscribe_query(&books, &[("authorization", &b)]).await;
    let e = next(&mut watcher).await;
    assert_eq!(e.event, "mercure");
    let doc: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(doc["type"], "subscription");
    assert_eq!(doc["match_type"], "URLPattern");
    assert_eq!(doc["match"], "https://example.com/books/:id");
    assert_eq!(doc["active"], true);
    assert_eq!(doc["payload"], json!({ "name": "Ada" }));
    let subscriber = doc["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    assert_ne!(subscriber, "ada", "the hub makes the id, unique per stream");
    let topic = format!(
        "/.well-known/mercure/subscriptions/URLPattern/{}/{}",
        "https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid",
        subscriber.replace(':', "%3A")
    );
    assert_eq!(doc["id"], topic.as_str());
    drop(one);
    let e = next(&mut watcher).await;
    let doc: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (doc["active"].as_bool(), doc["subscriber"].as_str()),
        (Some(false), Some(subscriber.as_str()))
    );
    // A 0.x subscriber's events are 0.x's: JSON-LD, a 0.x topic, no event type; a 0.x
    // watcher reads them through a template.
    let v0 = v0_token(
        json!({ "subscribe": ["/.well-known/mercure/subscriptions/{topic}/{subscriber}"], "payload": { "v": 0 } }),
    );
    let old_events = q(&[
        (
            "topic",
            "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
        ),
        ("authorization", &v0),
    ]);
    let mut old_watcher = hub.subscribe_query(&old_events, &[]).await;
    let own = next(&mut old_watcher).await;
    let doc: Value = serde_json::from_str(&own.data).unwrap();
    assert_eq!(own.event, "message");
    assert_eq!(doc["@context"], "https://mercure.rocks/");
    assert_eq!(doc["type"], "Subscription");
    assert_eq!(
        doc["topic"],
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}"
    );
    assert_eq!(doc["payload"], json!({ "v": 0 }));
    // The 1.0 watcher's grant covers 0.x topics under the path too.
    let e = next(&mut watcher).await;
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["type"],
        "Subscription"
    );
    // Nothing reached the one without a grant, though its selector matched them all.
    drop(old_watcher);
    let seen = within("nothing private for the nosy", async {
        tokio::time::timeout(Duration::from_millis(300), nosy.next_event()).await
    })
    .await;
    assert!(seen.is_err(), "the nosy subscriber got {seen:?}");
    hub.stop().await;
}

#[tokio::test]
async fn the_subscriptions_api_then_the_events_from_its_cursor_miss_nothing() {
    let hub = start(config().subscriptions(true)).await;
    let token = watcher_token();
    let books = q(&[("match_urlpattern", "https://example.com/books/:id")]);
    let _a = hub.subscribe_query(&books, &[]).await;
    let _old = hub
        .subscribe_query("topic=https%3A%2F%2Fexample.com%2Fa", &[])
        .await;
    let (status, h, body) = hub
        .get("/.well-known/mercure/subscriptions", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/ld+json");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["type"], "Subscriptions");
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 2);
    let cursor = all["lastEventID"].as_str().unwrap().to_owned();
    assert!(h["link"]
        .to_str()
        .unwrap()
        .contains(&format!("last-event-id=\"{cursor}\"")));
    // 1.0's collection of one matcher, and one subscription.
    let path =
        "/.well-known/mercure/subscriptions/URLPattern/https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let (status, h, body) = hub.get(path, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/json");
    let one: Value = serde_json::from_str(&body).unwrap();
    let subs = one["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    let id = subs[0]["id"].as_str().unwrap().to_owned();
    let (status, _, body) = hub.get(&id, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["id"],
        id.as_str()
    );
    let (status, _, _) = hub
        .get(&format!("{path}/urn%3Auuid%3Anobody"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Who may read it: a grant on the URL.
    let (status, _, _) = hub.get("/.well-known/mercure/subscriptions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = v1_token(
        &["subscribe"],
        json!([{ "match": "https://example.com/books/1" }]),
    );
    let (status, h, _) = hub
        .get("/.well-known/mercure/subscriptions", Some(&other))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    // A change after the snapshot, then a watcher from its cursor: that change, and
    // nothing the snapshot already had.
    let late = hub.subscribe_query(&q(&[("match", "late")]), &[]).await;
    let bearer = format!("Bearer {token}");
    let events = q(&[
        ("match_urlpattern", "/.well-known/mercure/subscriptions/*"),
        ("last_event_id", &cursor),
    ]);
    let mut watcher = hub
        .subscribe_query(&events, &[("authorization", &bearer)])
        .await;
    assert_eq!(watcher.headers["mercure-last-event-id"], cursor.as_str());
    let e: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(
        (e["match"].as_str(), e["active"].as_bool()),
        (Some("late"), Some(true))
    );
    let own: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(
        own["match"], "/.well-known/mercure/subscriptions/*",
        "then its own"
    );
    drop(late);
    let e: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(
        (e["match"].as_str(), e["active"].as_bool()),
        (Some("late"), Some(false))
    );
    // Off: no such resource.
    hub.stop().await;
    let off = start(config()).await;
    let (status, _, _) = off
        .get("/.well-known/mercure/subscriptions", Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    off.stop().await;
}

#[tokio::test]
async fn the_protected_resource_metadata_says_the_audience() {
    let hub = start(config().trusted_issuer("https://auth.example")).await;
    let (status, h, body) = hub.get(METADATA_PATH, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example"])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["mercure_version"], 8);
    hub.stop().await;
}
