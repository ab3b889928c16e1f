//! JSON Web Tokens at the door, on a real server: a table of tokens (valid, expired, not
//! yet valid, wrong signature, wrong algorithm, wrong audience, missing claim, selectors
//! that match and miss) through each token source (header, cookie, query), for
//! subscribing and for publishing; the identity in `on_connect`; the end of a stream at
//! its token's `exp`; the operator's endpoint.
#![cfg(feature = "jwt")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{request, TestServer};
use http::StatusCode;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use ssehub::{Auth, HubApi, JwtAlgorithm, JwtVerifier, SseOptions};
use ssehub_testkit::SseClient;

const SECRET: &[u8] = b"a test secret, long enough for HS256";
const AUDIENCE: &str = "ssehub-tests";
/// `{"alg":"none","typ":"JWT"}`, base64url: the header of an unsigned token.
const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that grant `orders.*` and `news` to subscribe, `orders.*` to publish.
fn claims() -> Value {
    json!({
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now() + 600,
        "ssehub": { "subscribe": ["orders.*", "news"], "publish": ["orders.*"] }
    })
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(JwtAlgorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn signed(claims: Value) -> String {
    hs256(&claims, SECRET)
}

fn with(change: impl FnOnce(&mut Value)) -> String {
    let mut c = claims();
    change(&mut c);
    signed(c)
}

/// The same claims, unsigned, with `alg: none`.
fn unsigned() -> String {
    let token = signed(claims());
    let payload = token.split('.').nth(1).unwrap();
    format!("{NONE_HEADER}.{payload}.")
}

fn auth() -> Auth {
    let jwt = JwtVerifier::hmac(JwtAlgorithm::HS256, SECRET)
        .unwrap()
        .leeway(Duration::ZERO)
        .audience(AUDIENCE);
    Auth::new(jwt).allow_anonymous_subscribe(["public.*".parse().unwrap()])
}

/// A server whose streams join `?room=`s (no auto-join room), greet with the
/// subject `on_connect` reads from the context, and whose `/publish` and `/stats` are
/// guarded by the same [`Auth`].
async fn server(auth: Auth) -> TestServer {
    let sse = SseOptions::new()
        .no_auto_join()
        .rooms_from_query(true)
        .auth(auth.clone())
        .on_connect(|conn, ctx| async move {
            let who = ctx.identity().and_then(|i| i.subject()).unwrap_or("-");
            let _ = conn.send_event("welcome", who);
        });
    let api = HubApi::new(sse.hub().clone()).auth(auth);
    let stats = api.clone();
    TestServer::start_with(sse, move |s| {
        s.route("/publish", move |req| {
            let api = api.clone();
            async move { api.publish(req).await }
        })
        .route("/stats", move |req| {
            let api = stats.clone();
            async move { api.stats(&req) }
        })
    })
    .await
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Header,
    Cookie,
    Query,
}

/// The path and headers that carry `token` by `source`.
fn carry(source: Source, path: &str, token: &str) -> (String, Vec<(&'static str, String)>) {
    match source {
        Source::Header => (
            path.into(),
            vec![("authorization", format!("Bearer {token}"))],
        ),
        Source::Cookie => (
            path.into(),
            vec![("cookie", format!("theme=dark; ssehub_token={token}"))],
        ),
        Source::Query => {
            let sep = if path.contains('?') { '&' } else { '?' };
            (format!("{path}{sep}access_token={token}"), Vec::new())
        }
    }
}

/// One row: a token, the rooms, and the answer expected (status, and the reason code of
/// a 401's `WWW-Authenticate`).
struct Row {
    what: &'static str,
    token: Option<String>,
    room: &'static str,
    status: u16,
    reason: &'static str,
}

fn row(what: &'static str, token: Option<String>, room: &'static str, status: u16) -> Row {
    Row {
        what,
        token,
        room,
        status,
        reason: "",
    }
}

fn refused(what: &'static str, token: String, room: &'static str, reason: &'static str) -> Row {
    Row {
        what,
        token: Some(token),
        room,
        status: 401,
        reason,
    }
}

/// Every way a token can be wrong, and right, for a stream or a publish to `room`.
fn table() -> Vec<Row> {
    let es256_pub = es256_public_key_pem();
    vec![
        row("valid, exact room", Some(signed(claims())), "news", 200),
        row(
            "valid, prefix room",
            Some(signed(claims())),
            "orders.7",
            200,
        ),
        row("selector miss", Some(signed(claims())), "secret", 403),
        row(
            "prefix is not the bare name",
            Some(signed(claims())),
            "orders",
            403,
        ),
        row("no token, anonymous room", None, "public.lobby", 200),
        row("no token, private room", None, "news", 401),
        refused(
            "expired",
            with(|c| c["exp"] = json!(now() - 60)),
            "news",
            "expired",
        ),
        refused(
            "not yet valid",
            with(|c| c["nbf"] = json!(now() + 600)),
            "news",
            "not-yet-valid",
        ),
        refused(
            "wrong signature",
            hs256(&claims(), b"another secret, also long enough"),
            "news",
            "bad-signature",
        ),
        // `none` is no algorithm jsonwebtoken knows: the header itself is refused.
        refused("alg none", unsigned(), "news", "malformed"),
        refused(
            "HS256 signed with a public key as the secret",
            hs256(&claims(), es256_pub.as_bytes()),
            "news",
            "bad-signature",
        ),
        refused(
            "wrong audience",
            with(|c| c["aud"] = json!("another-service")),
            "news",
            "wrong-audience",
        ),
        refused(
            "missing exp",
            with(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "news",
            "missing-claim",
        ),
        refused(
            "missing aud",
            with(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "news",
            "missing-claim",
        ),
        refused(
            "a selector that is not one",
            with(|c| c["ssehub"]["subscribe"] = json!(["a*b"])),
            "news",
            "invalid-claim",
        ),
        refused("not a token", "garbage".into(), "news", "malformed"),
    ]
}

/// The reason code in a 401's `WWW-Authenticate`.
fn reason(challenge: &str) -> &str {
    challenge
        .split("error_description=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
}

/// `POST /publish?room=ROOM` of `x` with `Authorization: BEARER`.
async fn publish_as(
    srv: &TestServer,
    room: &str,
    bearer: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let path = format!("/publish?room={room}");
    request(srv.addr, "POST", &path, &[("authorization", bearer)], "x").await
}

#[tokio::test]
async fn subscribing_follows_the_token_table_through_every_source() {
    let srv = server(auth()).await;
    for source in [Source::Header, Source::Cookie, Source::Query] {
        for row in table() {
            let what = format!("{} ({source:?})", row.what);
            let path = format!("/sse?room={}", row.room);
            let (path, headers) = match &row.token {
                Some(t) => carry(source, &path, t),
                None => (path, Vec::new()),
            };
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut client = SseClient::connect(srv.addr, &path, &headers).await;
            assert_eq!(client.status.as_u16(), row.status, "{what}");
            let challenge = client
                .headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            match row.status {
                200 => {
                    let welcome = client.next_of("welcome").await;
                    let who = if row.token.is_some() { "alice" } else { "-" };
                    assert_eq!(welcome.data, who, "{what}: on_connect reads the identity");
                }
                401 => {
                    let challenge = challenge.expect("a 401 challenges");
                    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
                    assert_eq!(reason(&challenge), row.reason, "{what}: {challenge}");
                    assert!(!challenge.contains(std::str::from_utf8(SECRET).unwrap()));
                }
                403 => {
                    let challenge = challenge.expect("a 403 says why");
                    assert!(challenge.contains("insufficient_scope"), "{what}");
                }
                _ => unreachable!(),
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_refused_stream_names_the_room() {
    let srv = server(auth()).await;
    let token = signed(claims());
    let bearer = format!("Bearer {token}");
    let (status, headers, body) = request(
        srv.addr,
        "GET",
        "/sse?room=news&room=secret",
        &[("authorization", &bearer), ("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("\"secret\""), "{body}");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    srv.stop().await;
}

#[tokio::test]
async fn publishing_follows_the_token_table_through_every_source() {
    let srv = server(auth()).await;
    for source in [Source::Header, Source::Cookie, Source::Query] {
        for row in table() {
            let what = format!("{} ({source:?})", row.what);
            // Publishing grants `orders.*` only; the anonymous subscribe rooms do not
            // open publishing.
            let expected = match (row.status, row.room) {
                (200, "news") => 403,
                (200, "public.lobby") => 401,
                (200, _) => 202,
                (s, _) => s,
            };
            let path = format!("/publish?room={}", row.room);
            let (path, mut headers) = match &row.token {
                Some(t) => carry(source, &path, t),
                None => (path, Vec::new()),
            };
            // A publish the cookie authorizes comes from the hub's own page (`csrf.rs`).
            headers.push(("origin", format!("http://{}", srv.addr)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, h, body) = request(srv.addr, "POST", &path, &headers, "hello").await;
            assert_eq!(status.as_u16(), expected, "{what}: {body}");
            if expected == 403 {
                assert!(
                    body.contains(row.room),
                    "{what}: 403 names the room: {body}"
                );
            }
            if expected == 401 {
                let challenge = h["www-authenticate"].to_str().unwrap();
                assert!(challenge.starts_with("Bearer"), "{what}");
                if !row.reason.is_empty() {
                    assert_eq!(reason(challenge), row.reason, "{what}: {challenge}");
                }
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_publish_to_several_rooms_needs_every_one() {
    let srv = server(auth()).await;
    let bearer = format!("Bearer {}", signed(claims()));
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let body = r#"{"rooms": ["orders.1", "news"], "data": "x"}"#;
    let (status, _, answer) = request(srv.addr, "POST", "/publish", &headers, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(answer.contains("news"), "{answer}");
    let body = r#"{"rooms": ["orders.1", "orders.2"], "data": "x"}"#;
    let (status, _, answer) = request(srv.addr, "POST", "/publish", &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    srv.stop().await;
}

#[tokio::test]
async fn anonymous_publishing_only_when_allowed() {
    let srv = server(auth().allow_anonymous_publish(true)).await;
    let (status, _, body) = request(srv.addr, "POST", "/publish?room=any", &[], "x").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A token that is there but bad is still refused.
    let (status, _, _) = publish_as(&srv, "any", "Bearer garbage").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A valid token does not narrow what anyone may do.
    let bearer = format!("Bearer {}", signed(claims()));
    let (status, _, body) = publish_as(&srv, "news", &bearer).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn a_published_event_reaches_the_token_holder() {
    let srv = server(auth()).await;
    let token = signed(claims());
    let path = format!("/sse?room=orders.9&access_token={token}");
    let mut client = SseClient::open(srv.addr, &path).await;
    client.next_of("welcome").await;
    let bearer = format!("Bearer {token}");
    let (status, _, body) = request(
        srv.addr,
        "POST",
        "/publish?room=orders.9&event=order",
        &[("authorization", &bearer)],
        "shipped",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(client.next_of("order").await.data, "shipped");
    srv.stop().await;
}

#[tokio::test]
async fn the_operator_endpoint_needs_admin() {
    let srv = server(auth().admin_token("operator-secret")).await;
    let (status, h, _) = request(srv.addr, "GET", "/stats", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let user = format!("Bearer {}", signed(claims()));
    let (status, _, _) = request(srv.addr, "GET", "/stats", &[("authorization", &user)], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = format!("Bearer {}", with(|c| c["ssehub"]["admin"] = json!(true)));
    let (status, _, _) = request(srv.addr, "GET", "/stats", &[("authorization", &admin)], "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = request(
        srv.addr,
        "GET",
        "/stats",
        &[("authorization", "Bearer operator-secret")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn a_stream_ends_at_its_tokens_expiry() {
    let srv = server(auth()).await;
    let token = with(|c| c["exp"] = json!(now() + 2));
    let bearer = format!("Bearer {token}");
    let mut client =
        SseClient::connect(srv.addr, "/sse?room=news", &[("authorization", &bearer)]).await;
    assert_eq!(client.status, StatusCode::OK);
    client.next_of("welcome").await;
    // Bounded by the client's wait: a stream not ended at `exp` fails the test.
    let events = client.events_until_end().await;
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("ssehub.expired"),
        "{events:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn public_keys_fix_the_algorithm() {
    let (private, public) = es256_pair();
    let jwt = JwtVerifier::public_key_pem(public.as_bytes(), None).unwrap();
    assert_eq!(jwt.algorithm(), JwtAlgorithm::ES256);
    let srv = server(Auth::new(jwt)).await;
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    let es256 = encode(
        &Header::new(JwtAlgorithm::ES256),
        &c,
        &EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    let confused = hs256(&c, public.as_bytes());
    let rows = [
        (es256, 200, ""),
        (confused, 401, "wrong-algorithm"),
        (unsigned(), 401, "malformed"),
    ];
    for (token, status, why) in rows {
        let bearer = format!("Bearer {token}");
        let client =
            SseClient::connect(srv.addr, "/sse?room=news", &[("authorization", &bearer)]).await;
        assert_eq!(client.status.as_u16(), status, "{token}");
        if status == 401 {
            let challenge = client.headers["www-authenticate"].to_str().unwrap();
            assert_eq!(reason(challenge), why, "{challenge}");
        }
    }
    srv.stop().await;
}

/// An ES256 key pair made for the test: the private key (PKCS#8 PEM) and the public
/// one (SPKI PEM).
fn es256_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

fn es256_public_key_pem() -> String {
    es256_pair().1
}

#[tokio::test]
async fn after_expiry_a_fresh_token_and_the_last_id_miss_nothing() {
    let srv = server(auth()).await;
    let short = with(|c| c["exp"] = json!(now() + 2));
    let bearer = format!("Bearer {short}");
    let mut first =
        SseClient::connect(srv.addr, "/sse?room=news", &[("authorization", &bearer)]).await;
    assert_eq!(first.status, StatusCode::OK);
    first.next_of("welcome").await;
    srv.hub
        .to("news")
        .publish(&ssehub::Message::new("before"))
        .unwrap();
    assert_eq!(first.next_event().await.data, "before");
    let events = first.events_until_end().await;
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("ssehub.expired")
    );
    let cursor = first.last_event_id();
    assert!(
        !cursor.is_empty(),
        "the expiry event leaves the cursor where it was"
    );
    // Published while the client has no stream.
    srv.hub
        .to("news")
        .publish(&ssehub::Message::new("while away"))
        .unwrap();
    let fresh = format!("Bearer {}", signed(claims()));
    let mut second = SseClient::connect(
        srv.addr,
        "/sse?room=news",
        &[("authorization", &fresh), ("last-event-id", &cursor)],
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);
    second.next_of("welcome").await;
    // The replay comes at the end of the stream's set-up, after on_connect's welcome.
    let missed = second.next_event().await;
    assert_eq!(missed.data, "while away", "{missed:?}");
    srv.stop().await;
}

#[tokio::test]
async fn without_require_exp_an_expired_token_is_still_refused() {
    let jwt = JwtVerifier::hmac(JwtAlgorithm::HS256, SECRET)
        .unwrap()
        .leeway(Duration::ZERO)
        .audience(AUDIENCE)
        .require_exp(false);
    let srv = server(Auth::new(jwt)).await;
    let no_exp = with(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    let expired = with(|c| {
        c["exp"] = json!(now() - 60);
        c["ssehub"]["admin"] = json!(true);
    });
    let publish = |token: &str| format!("Bearer {token}");
    // `exp` not required: a token without one publishes.
    let (status, _, body) = publish_as(&srv, "orders.1", &publish(&no_exp)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // But one whose `exp` is past is refused everywhere.
    let bearer = publish(&expired);
    let (status, h, body) = publish_as(&srv, "orders.1", &bearer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "publish: {body}");
    assert_eq!(reason(h["www-authenticate"].to_str().unwrap()), "expired");
    let (status, _, body) =
        request(srv.addr, "GET", "/stats", &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "stats: {body}");
    let client =
        SseClient::connect(srv.addr, "/sse?room=news", &[("authorization", &bearer)]).await;
    assert_eq!(client.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        srv.hub.stats().events_published,
        1,
        "only the valid publish"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_exp_no_time_can_hold_is_a_401_not_a_dropped_connection() {
    let srv = server(auth()).await;
    let bearer = format!("Bearer {}", with(|c| c["exp"] = json!(u64::MAX)));
    let headers = [("authorization", bearer.as_str())];
    let (status, h, body) = publish_as(&srv, "orders.1", &bearer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "publish: {body}");
    assert_eq!(
        reason(h["www-authenticate"].to_str().unwrap()),
        "invalid-claim"
    );
    let client = SseClient::connect(srv.addr, "/sse?room=news", &headers).await;
    assert_eq!(client.status, StatusCode::UNAUTHORIZED);
    srv.stop().await;
}
