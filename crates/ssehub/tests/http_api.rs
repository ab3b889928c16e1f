//! The hub's HTTP API (`POST /publish`, `GET /stats`, and as the fallback `/rooms`,
//! `/rooms/{room}`, `/metrics`) mounted on a real server: what it refuses before
//! anything is sent, and a cookie-authorized publish from another site's page.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{json, Value};
use ssehub::{Auth, AuthError, HubApi, Identity, RoomSelector, SseOptions, TokenVerifier};

/// A server with `/publish` and `/stats` from `api(hub)`, and the API as its fallback.
async fn start(api: impl FnOnce(ssehub::Hub) -> HubApi) -> TestServer {
    let options = SseOptions::new().keep_alive(None).rooms_from_query(true);
    let api = api(options.hub().clone());
    TestServer::start_with(options, move |server| {
        let publish = api.clone();
        let stats = api.clone();
        server
            .fallback(api)
            .route("/publish", move |req| {
                let api = publish.clone();
                async move { api.publish(req).await }
            })
            .route("/stats", move |req| {
                let api = stats.clone();
                async move { api.stats(&req) }
            })
    })
    .await
}

async fn publish_json(srv: &TestServer, body: &Value) -> (StatusCode, Value) {
    let (status, text) = publish_json_text(srv, &body.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /publish` with `body` as JSON (whether it is or not): the status and the text.
async fn publish_json_text(srv: &TestServer, body: &str) -> (StatusCode, String) {
    let json = [("content-type", "application/json")];
    let (status, _, text) = request(srv.addr, "POST", "/publish", &json, body).await;
    (status, text)
}

#[tokio::test]
async fn a_room_repeated_in_a_publish_counts_once_and_too_many_rooms_are_400() {
    let srv = start(HubApi::new).await;
    let mut sub = srv.sse("/sse?room=a").await;
    assert_eq!(sub.status, StatusCode::OK);
    eventually("joined", || srv.hub.room_size("a") == 1).await;

    let (status, body) =
        publish_json(&srv, &json!({"rooms": vec!["a"; 20_000], "data": "x"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["delivered"], 1);
    assert_eq!(sub.next_event().await.data, "x");

    let rooms: Vec<String> = (0..257).map(|i| format!("r{i}")).collect();
    let (status, body) = publish_json(&srv, &json!({"rooms": rooms, "data": "y"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "rooms");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("257") && error.contains("256"), "{error}");
    assert_eq!(srv.hub.stats().events_published, 1, "nothing else was sent");
    srv.stop().await;
}

#[tokio::test]
async fn an_event_over_half_the_outbox_is_413_and_readers_stay() {
    let srv = start(|hub| HubApi::new(hub).max_publish_body(4 << 20)).await;
    let mut readers = Vec::new();
    for _ in 0..5 {
        let mut c = srv.sse("/sse").await;
        assert_eq!(c.status, StatusCode::OK);
        c.next_item().await;
        readers.push(c);
    }
    eventually("five readers", || srv.hub.room_size("__all") == 5).await;
    // 600 KiB of newlines is 3.5 MiB on the wire: over the default limit (512 KiB, half
    // the default outbox) whatever its size as a body.
    for body in ["a".repeat(600 * 1024), "\n".repeat(100 * 1024)] {
        let (status, _, text) = srv.request("POST", "/publish", &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert!(text.contains("524288"), "{text}");
    }
    // Two events that fit, back to back: every reader gets both.
    let body = "b".repeat(400 * 1024);
    for _ in 0..2 {
        let (status, _, text) = srv.request("POST", "/publish", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    }
    for r in &mut readers {
        for _ in 0..2 {
            assert_eq!(r.next_event().await.data.len(), body.len());
        }
    }
    let stats = srv.hub.stats();
    assert_eq!(stats.slow_consumer_closes, 0);
    assert_eq!(stats.events_published, 2);
    srv.stop().await;
}

#[tokio::test]
async fn a_bearer_token_guards_every_route() {
    let srv = start(|hub| HubApi::new(hub).bearer_token("s3cret")).await;
    let mut routes = vec![
        ("POST", "/publish"),
        ("GET", "/stats"),
        ("GET", "/rooms"),
        ("GET", "/rooms/r"),
    ];
    if cfg!(feature = "metrics") {
        routes.push(("GET", "/metrics"));
    }
    for (method, path) in routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cretx"),
            Some("Basic s3cret"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            let (status, h, _) = request(srv.addr, method, path, &headers, "x").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            assert!(h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
        let ok = [("authorization", "Bearer s3cret")];
        let (status, _, text) = request(srv.addr, method, path, &ok, "x").await;
        assert!(status.is_success(), "{method} {path}: {status} {text}");
    }
    assert_eq!(
        srv.hub.stats().events_published,
        1,
        "only the authorised publish"
    );
    srv.stop().await;
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_not_a_crash() {
    let srv = start(HubApi::new).await;
    let deep = format!(
        "{{\"data\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, text) = publish_json_text(&srv, &deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
    // Nesting within serde_json's limit is data like any other.
    let nested = format!("{{\"data\": {}{}}}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        publish_json_text(&srv, &nested).await.0,
        StatusCode::ACCEPTED
    );
    srv.stop().await;
}

/// One token, `victim`, that may publish anywhere.
struct VictimToken;

impl TokenVerifier for VictimToken {
    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match token {
            "victim" => Ok(Identity::new("victim").publish([RoomSelector::any()])),
            _ => Err(AuthError::BadSignature),
        }
    }
}

/// `POST /publish?room=a` (or `path`) with `headers`: the status and the answer's text.
async fn publish_with(srv: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("content-type", "text/plain")];
    all.extend_from_slice(headers);
    let (status, _, text) = request(srv.addr, "POST", path, &all, "pwned").await;
    (status.as_u16(), text)
}

/// A page of another origin can make the browser send the hub's cookie with a
/// `text/plain` POST (`fetch` in `no-cors` mode, or a form): no preflight, so CORS never
/// gets to say no. A publish the cookie authorizes must show where it comes from: an
/// `Origin` (or `Referer`) of the hub itself or of a listed page, or
/// `Sec-Fetch-Site: same-origin`. A token in `Authorization` (which a page of another
/// origin cannot set without a preflight) or in the URL (which it would have to know)
/// is not ambient, and is not asked.
#[tokio::test]
async fn a_cookie_publish_needs_the_hubs_own_origin_or_a_listed_one() {
    let srv = start(|hub| {
        HubApi::new(hub)
            .auth(Auth::new(VictimToken))
            .allowed_origins(["https://app.example"])
    })
    .await;
    let mut sub = srv.sse("/sse?room=a").await;
    assert_eq!(sub.status, StatusCode::OK);
    eventually("joined", || srv.hub.room_size("a") == 1).await;

    let own = format!("http://{}", srv.addr);
    let own_page = format!("{own}/index.html");
    let other_port = format!("http://127.0.0.1:{}", srv.addr.port() + 1);
    let cookie = ("cookie", "theme=dark; ssehub_token=victim");
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![cookie],
        vec![cookie, ("origin", "https://evil.example")],
        vec![cookie, ("origin", "null")],
        vec![cookie, ("origin", &other_port)],
        vec![cookie, ("origin", "https://app.example.evil")],
        vec![cookie, ("referer", "https://evil.example/attack.html")],
        vec![cookie, ("sec-fetch-site", "cross-site")],
        vec![cookie, ("sec-fetch-site", "same-site")],
        // A bad cookie from another site is refused for where it comes from first.
        vec![
            ("cookie", "ssehub_token=forged"),
            ("origin", "https://evil.example"),
        ],
    ];
    for headers in &refused {
        let (status, text) = publish_with(&srv, "/publish?room=a", headers).await;
        assert_eq!(status, 403, "{headers:?}: {text}");
        assert!(
            text.contains("origin"),
            "{headers:?}: the 403 says why: {text}"
        );
    }
    let accepted: Vec<Vec<(&str, &str)>> = vec![
        vec![cookie, ("origin", &own)],
        vec![cookie, ("origin", "https://app.example")],
        vec![cookie, ("referer", &own_page)],
        vec![cookie, ("sec-fetch-site", "same-origin")],
        // Not the cookie: the header's token, with or without a page's origin.
        vec![("authorization", "Bearer victim")],
        vec![
            ("authorization", "Bearer victim"),
            cookie,
            ("origin", "https://evil.example"),
        ],
    ];
    for headers in &accepted {
        let (status, text) = publish_with(&srv, "/publish?room=a", headers).await;
        assert_eq!(status, 202, "{headers:?}: {text}");
    }
    let (status, text) = publish_with(&srv, "/publish?room=a&access_token=victim", &[]).await;
    assert_eq!(status, 202, "a token in the URL: {text}");

    // The subscriber got the accepted publishes only.
    let published = srv.hub.stats().events_published;
    assert_eq!(published, accepted.len() as u64 + 1);
    for _ in 0..published {
        assert_eq!(sub.next_event().await.data, "pwned");
    }
    srv.stop().await;
}
