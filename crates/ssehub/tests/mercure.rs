//! The Mercure hub (0.x dialect) end to end, over TCP: subscribe with exact topics,
//! templates and `*`; publish with forms; the token's grants, sources and refusals;
//! private updates live and on replay; reconnection with `Last-Event-ID` and
//! `lastEventID`; CSRF through the cookie; CORS preflights.
#![cfg(feature = "mercure")]

mod common;
#[path = "support/mercure.rs"]
mod mercure;

use std::time::Duration;

use common::*;
use http::StatusCode;
use jsonwebtoken::{encode, EncodingKey, Header};
use mercure::{config, now, publisher, query, subscriber, token, MercureHub, HUB};
use serde_json::json;
use ssehub::decode::{Event, Item};

/// The next event, skipping heartbeats.
async fn next(c: &mut SseClient) -> Event {
    c.next_event().await
}

#[tokio::test]
async fn exact_topics_templates_and_star_each_get_an_update_once() {
    let hub = MercureHub::start(config()).await;
    let book = "https://example.com/books/1";
    let mut exact = hub.subscribe(&[book], &[]).await;
    let mut template = hub
        .subscribe(&["https://example.com/books/{id}"], &[])
        .await;
    let mut star = hub.subscribe(&["*"], &[]).await;
    let mut all_three = hub
        .subscribe(&[book, "https://example.com/books/{id}", "*"], &[])
        .await;
    let mut other = hub
        .subscribe(&["https://example.com/authors/{id}"], &[])
        .await;
    let id = hub
        .publish(&[
            ("topic", book),
            ("topic", "https://example.com/alt/1"),
            ("data", "b1"),
        ])
        .await;
    assert!(id.starts_with("urn:uuid:"), "{id}");
    for c in [&mut exact, &mut template, &mut star, &mut all_three] {
        let e = next(c).await;
        assert_eq!(
            (e.data.as_str(), e.last_event_id.as_str()),
            ("b1", id.as_str())
        );
    }
    // Nothing else was queued: the next event anyone gets is the marker.
    hub.publish(&[
        ("topic", "https://example.com/authors/7"),
        ("data", "marker"),
    ])
    .await;
    assert_eq!(next(&mut star).await.data, "marker");
    assert_eq!(next(&mut all_three).await.data, "marker", "b1 came once");
    assert_eq!(next(&mut other).await.data, "marker", "a book is no author");
    hub.publish(&[("topic", book), ("data", "b2")]).await;
    assert_eq!(next(&mut exact).await.data, "b2");
    assert_eq!(next(&mut template).await.data, "b2");
    hub.stop().await;
}

#[tokio::test]
async fn the_form_becomes_the_event_and_the_answer_is_its_id() {
    let hub = MercureHub::start(config()).await;
    let mut c = hub.subscribe(&["t"], &[]).await;
    let id = hub
        .publish(&[
            ("topic", "t"),
            ("data", "a\r\nb\rc\nd"),
            ("type", "update"),
            ("retry", "2500"),
            ("id", "order-7"),
            ("unknown", "ignored"),
        ])
        .await;
    assert_eq!(id, "order-7");
    assert_eq!(
        c.next_item().await,
        Some(Item::Retry(Duration::from_millis(2500)))
    );
    let e = next(&mut c).await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("update", "a\nb\nc\nd")
    );
    assert_eq!(e.last_event_id, "order-7");
    // A caller's id used twice is accepted.
    assert_eq!(
        hub.publish(&[("topic", "t"), ("id", "order-7"), ("data", "again")])
            .await,
        "order-7"
    );
    assert_eq!(next(&mut c).await.data, "again");
    hub.stop().await;
}

#[tokio::test]
async fn bad_updates_are_refused_with_the_field_named() {
    let hub = MercureHub::start(config().max_topics(3).max_body(1024)).await;
    let bearer = format!("Bearer {}", publisher(&["*"]));
    let auth = [("authorization", bearer.as_str())];
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("data", "x")],
            StatusCode::BAD_REQUEST,
            "missing topic",
        ),
        (
            vec![("topic", "t"), ("id", "#x")],
            StatusCode::BAD_REQUEST,
            "'#'",
        ),
        (
            vec![("topic", "t"), ("retry", "2s")],
            StatusCode::BAD_REQUEST,
            "retry",
        ),
        (
            vec![("topic", "t"), ("type", "a\nb")],
            StatusCode::BAD_REQUEST,
            "event",
        ),
        (
            vec![
                ("topic", "a"),
                ("topic", "b"),
                ("topic", "c"),
                ("topic", "d"),
            ],
            StatusCode::BAD_REQUEST,
            "too many topics",
        ),
        (
            vec![("topic", "a\u{1}b")],
            StatusCode::BAD_REQUEST,
            "invalid topic",
        ),
    ];
    for (fields, status, says) in cases {
        let (got, body, _) = hub.post(&fields, &auth).await;
        assert_eq!(got, status, "{fields:?}: {body}");
        assert!(body.contains(says), "{fields:?}: {body}");
    }
    let big = "x".repeat(2000);
    let (got, _, _) = hub.post(&[("topic", "t"), ("data", &big)], &auth).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    let (got, _, _) = request(hub.addr, "POST", HUB, &auth, "topic=t").await;
    assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not a form");
    hub.stop().await;
}

#[tokio::test]
async fn publishers_need_a_token_granting_every_topic_and_are_told_why_not() {
    let hub = MercureHub::start(config()).await;
    let fields = [
        ("topic", "https://e.com/a"),
        ("topic", "https://e.com/b"),
        ("data", "x"),
    ];
    let wrong_key = encode(
        &Header::default(),
        &json!({ "mercure": { "publish": ["*"] } }),
        &EncodingKey::from_secret(b"another secret").unwrap(),
    )
    .unwrap();
    let cases = [
        (None, StatusCode::UNAUTHORIZED, "token is required"),
        (Some(wrong_key), StatusCode::UNAUTHORIZED, "signature"),
        (
            Some("not.a.jwt".to_owned()),
            StatusCode::UNAUTHORIZED,
            "not a JWT",
        ),
        (
            Some(subscriber(&["*"])),
            StatusCode::UNAUTHORIZED,
            "no mercure.publish",
        ),
        (
            Some(publisher(&["https://e.com/a"])),
            StatusCode::FORBIDDEN,
            "\"https://e.com/b\" is not granted",
        ),
        (Some(publisher(&["https://e.com/{x}"])), StatusCode::OK, ""),
    ];
    for (token, status, says) in cases {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let (got, body, h) = hub.post(&fields, &headers).await;
        assert_eq!(got, status, "{body}");
        assert!(body.contains(says), "{body}");
        if status != StatusCode::OK {
            let challenge = h["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer "), "{challenge}");
            // The reason, quotes turned into apostrophes inside the quoted description.
            assert!(challenge.contains(&says.replace('"', "'")), "{challenge}");
        }
    }
    hub.stop().await;
}

#[tokio::test]
async fn the_header_then_the_query_then_the_cookie_carry_the_token() {
    let hub = MercureHub::start(config().publish_origins(["https://app.example"])).await;
    let good = publisher(&["*"]);
    let bad = "bad.token.here";
    let post = |path: String, headers: Vec<(String, String)>| {
        let addr = hub.addr;
        async move {
            let body = "topic=t&data=x";
            let mut h: Vec<(&str, &str)> =
                vec![("content-type", "application/x-www-form-urlencoded")];
            h.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            request(addr, "POST", &path, &h, body).await.0
        }
    };
    let own = ("origin".to_owned(), "https://app.example".to_owned());
    let cookie = |t: &str| ("cookie".to_owned(), format!("mercureAuthorization={t}"));
    let auth = |t: &str| ("authorization".to_owned(), format!("Bearer {t}"));
    let q = |t: &str| format!("{HUB}?authorization={t}");
    // The header wins over the query, which wins over the cookie.
    assert_eq!(
        post(q(&good), vec![auth(bad)]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(q(bad), vec![auth(&good)]).await, StatusCode::OK);
    assert_eq!(
        post(q(bad), vec![cookie(&good), own.clone()]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(q(&good), vec![cookie(bad)]).await, StatusCode::OK);
    assert_eq!(
        post(HUB.to_owned(), vec![cookie(&good), own]).await,
        StatusCode::OK
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_cookie_publish_needs_one_of_the_publish_origins() {
    let hub = MercureHub::start(config().publish_origins(["https://app.example"])).await;
    let cookie = format!("mercureAuthorization={}", publisher(&["*"]));
    let fields = [("topic", "t"), ("data", "x")];
    let cases = [
        (vec![], StatusCode::FORBIDDEN),
        (
            vec![("origin", "https://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (vec![("origin", "null")], StatusCode::FORBIDDEN),
        (vec![("origin", "https://app.example")], StatusCode::OK),
        (
            vec![("referer", "https://app.example/page")],
            StatusCode::OK,
        ),
        (
            vec![("referer", "https://evil.example/app.example")],
            StatusCode::FORBIDDEN,
        ),
    ];
    for (extra, status) in cases {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(extra.iter().copied());
        let (got, body, _) = hub.post(&fields, &headers).await;
        assert_eq!(got, status, "{extra:?}: {body}");
    }
    // A bearer token is no cookie: no origin needed.
    let bearer = format!("Bearer {}", publisher(&["*"]));
    let (got, _, _) = hub.post(&fields, &[("authorization", &bearer)]).await;
    assert_eq!(got, StatusCode::OK);
    hub.stop().await;
}

#[tokio::test]
async fn private_updates_reach_only_the_subscribers_granted_live_and_on_replay() {
    let hub = MercureHub::start(config()).await;
    let topic = "https://e.com/orders/1";
    let granted = subscriber(&["https://e.com/orders/{id}"]);
    let other = subscriber(&["https://e.com/users/{id}"]);
    let bearer = |t: &str| format!("Bearer {t}");
    let mut anon = hub.subscribe(&["https://e.com/orders/{id}"], &[]).await;
    let g = bearer(&granted);
    let mut yes = hub.subscribe(&[topic], &[("authorization", &g)]).await;
    let o = bearer(&other);
    let mut no = hub.subscribe(&["*"], &[("authorization", &o)]).await;
    let first = hub.publish(&[("topic", topic), ("data", "public")]).await;
    hub.publish(&[("topic", topic), ("data", "secret"), ("private", "on")])
        .await;
    hub.publish(&[("topic", topic), ("data", "marker")]).await;
    assert_eq!(next(&mut yes).await.data, "public");
    assert_eq!(next(&mut yes).await.data, "secret");
    assert_eq!(next(&mut yes).await.data, "marker");
    for c in [&mut anon, &mut no] {
        assert_eq!(next(c).await.data, "public");
        assert_eq!(next(c).await.data, "marker", "no private update");
    }
    // On replay too.
    let h = [("last-event-id", first.as_str())];
    let mut again = hub.subscribe(&[topic], &h).await;
    assert_eq!(next(&mut again).await.data, "marker");
    let h = [
        ("last-event-id", first.as_str()),
        ("authorization", g.as_str()),
    ];
    let mut again = hub.subscribe(&["https://e.com/orders/{id}"], &h).await;
    assert_eq!(next(&mut again).await.data, "secret");
    assert_eq!(next(&mut again).await.data, "marker");
    hub.stop().await;
}

#[tokio::test]
async fn subscribers_need_a_token_unless_anonymous_and_bad_selectors_are_400() {
    let hub = MercureHub::start(config().anonymous(false).max_selectors(2)).await;
    let c = SseClient::connect(hub.addr, &format!("{HUB}?topic=t"), &[]).await;
    assert_eq!(c.status, StatusCode::UNAUTHORIZED);
    assert!(c.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let bad = SseClient::connect(
        hub.addr,
        &format!("{HUB}?topic=t"),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let token = format!("Bearer {}", subscriber(&[]));
    let auth = [("authorization", token.as_str())];
    for q in [
        String::new(),
        query("topic", &["https://e.com/{unclosed"]),
        query("topic", &["a", "b", "c"]),
    ] {
        let c = SseClient::connect(hub.addr, &format!("{HUB}?{q}"), &auth).await;
        assert_eq!(c.status, StatusCode::BAD_REQUEST, "{q}");
    }
    let mut ok = hub.subscribe(&["t"], &auth).await;
    hub.publish(&[("topic", "t"), ("data", "x")]).await;
    assert_eq!(next(&mut ok).await.data, "x");
    hub.stop().await;
}

#[tokio::test]
async fn a_subscriber_resumes_after_its_last_event_id_and_is_told_where() {
    let hub = MercureHub::start(config()).await;
    let topic = "https://e.com/books/1";
    let a = hub.publish(&[("topic", topic), ("data", "1")]).await;
    hub.publish(&[("topic", "https://e.com/other"), ("data", "x")])
        .await;
    hub.publish(&[("topic", topic), ("data", "2")]).await;
    // The header, and the query parameter; the header wins.
    let mut by_header = hub.subscribe(&[topic], &[("last-event-id", &a)]).await;
    assert_eq!(by_header.headers["last-event-id"], a.as_str());
    assert_eq!(next(&mut by_header).await.data, "2");
    let q = format!(
        "{}&lastEventID={}",
        query("topic", &["https://e.com/books/{id}"]),
        a
    );
    let mut by_query = hub.subscribe_query(&q, &[]).await;
    assert_eq!(next(&mut by_query).await.data, "2");
    let mut both = hub
        .subscribe_query(
            &format!("{}&lastEventID=earliest", query("topic", &[topic])),
            &[("last-event-id", &a)],
        )
        .await;
    assert_eq!(next(&mut both).await.data, "2", "the header wins");
    // `earliest`: everything kept; an unknown id: `earliest` in the answer.
    let mut all = hub
        .subscribe(&["*"], &[("last-event-id", "earliest")])
        .await;
    assert_eq!(all.headers["last-event-id"], "earliest");
    for want in ["1", "x", "2"] {
        assert_eq!(next(&mut all).await.data, want);
    }
    let unknown = hub
        .subscribe(&[topic], &[("last-event-id", "never-seen")])
        .await;
    assert_eq!(unknown.headers["last-event-id"], "earliest");
    // Then live, with nothing in between or twice.
    hub.publish(&[("topic", topic), ("data", "3")]).await;
    assert_eq!(next(&mut by_header).await.data, "3");
    assert_eq!(next(&mut by_query).await.data, "3");
    assert_eq!(next(&mut all).await.data, "3");
    hub.stop().await;
}

#[tokio::test]
async fn a_stream_ends_at_its_tokens_exp() {
    let hub = MercureHub::start(config()).await;
    let t = token(json!({ "exp": now() + 2, "mercure": { "subscribe": ["*"] } }));
    let bearer = format!("Bearer {t}");
    let mut c = hub.subscribe(&["t"], &[("authorization", &bearer)]).await;
    let mut seen = Vec::new();
    while let Some(item) = c.next_item().await {
        seen.push(item);
    }
    assert!(
        seen.iter()
            .any(|i| matches!(i, Item::Event(e) if e.event == "ssehub.expired")),
        "{seen:?}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_preflight_allows_publishing_and_subscribing_from_the_cors_origins() {
    let hub = MercureHub::start(config().cors_origins(["https://app.example"])).await;
    let (status, h, _) = request(
        hub.addr,
        "OPTIONS",
        HUB,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    let (_, h, _) = request(
        hub.addr,
        "OPTIONS",
        HUB,
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none());
    let c = SseClient::connect(
        hub.addr,
        &format!("{HUB}?topic=t"),
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(
        c.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(hub.mercure.hub().connection_count(), 1);
    hub.stop().await;
}
