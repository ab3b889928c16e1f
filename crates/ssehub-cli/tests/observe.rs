//! What an operator gets from a real `ssehub serve`: `ssehub top --once --json`,
//! `/metrics`, `/rooms`, presence with `--presence`, and all of it behind
//! `--publish-token`.

mod common;

use common::*;
use serde_json::Value;

/// `ssehub top --once --json` of the server at `url`, with `more` arguments: its view.
async fn top_once_json(url: &str, more: &[&str]) -> Value {
    let args = ["top", "--url", url, "--once", "--json", "--interval", "0.2"];
    let out = run_cli_async(&[&args[..], more].concat(), b"").await;
    assert!(out.status.success(), "{}", out.stderr);
    serde_json::from_str(out.stdout.trim()).expect("one JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_reports_the_running_hub() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let _a = demo_stream(server.addr, "/sse?room=top-room").await;
    let _b = demo_stream(server.addr, "/sse?room=top-room").await;
    let reply = publish_query(server.addr, "room=top-room", "counted").await;
    assert_eq!(reply.status.as_u16(), 202);

    let url = server.url("");
    let view = top_once_json(&url, &[]).await;
    assert_eq!(view["connections"], 2);
    assert_eq!(view["connections_by_transport"]["h1"], 2);
    assert_eq!(view["deliveries"], 2);
    assert_eq!(view["events_published"], 1);
    let rooms = view["top_rooms"].as_array().unwrap();
    let room = rooms
        .iter()
        .find(|r| r["room"] == "top-room")
        .expect("top-room listed");
    assert_eq!(room["members"], 2);
    assert!(view["rss_bytes"].as_u64().unwrap() > 0);
    assert!(view["events_per_second"].is_number());

    // The terminal view, once.
    let out = run_cli_async(&["top", "--url", &url, "--once", "--interval", "0.1"], b"").await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("top-room"), "{}", out.stdout);
    assert!(out.stdout.contains("connections"), "{}", out.stdout);
}

#[tokio::test]
async fn serve_exposes_metrics_rooms_and_presence() {
    let server = ServeProcess::start(&["--tick-interval", "0", "--presence", "lobby"]);
    let mut watcher = demo_stream(server.addr, "/sse?room=lobby").await;
    let join = watcher.next_of("ssehub.join").await;
    let data: Value = serde_json::from_str(&join.data).unwrap();
    assert_eq!(
        (data["room"].as_str(), data["count"].as_u64()),
        (Some("lobby"), Some(1))
    );

    let metrics = get(server.addr, "/metrics").await;
    assert_eq!(metrics.status.as_u16(), 200);
    let text = metrics.text();
    assert!(
        text.contains("ssehub_connections{transport=\"h1\"} 1"),
        "{text}"
    );
    for series in [
        "ssehub_backplane_connected{backplane=\"in-process\"} 1",
        "ssehub_backplane_outages_total{backplane=\"in-process\"} 0",
        "ssehub_gaps_total{reason=\"outage\"} 0",
        "ssehub_refused_total{reason=\"origin\"} 0",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    assert!(text.contains("process_resident_memory_bytes"));

    let rooms = get(server.addr, "/rooms").await.json();
    assert_eq!(rooms["total"], 2, "lobby and __all: {rooms}");
    let lobby = get(server.addr, "/rooms/lobby").await.json();
    assert_eq!(lobby["connections"][0]["id"], data["connections"][0]["id"]);

    let page = get(server.addr, "/dashboard").await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text().contains("ssehub dashboard"));
    assert_eq!(get(server.addr, "/nothing-here").await.status.as_u16(), 404);
    // Only `/rooms/{room}` falls through to the API: its other paths are not served
    // under other names.
    for path in ["/x/metrics", "/x/stats", "/rooms/a/b"] {
        assert_eq!(get(server.addr, path).await.status.as_u16(), 404, "{path}");
    }
}

/// `GET path` with `Authorization: Bearer token`.
async fn get_with(addr: std::net::SocketAddr, path: &str, token: &str) -> Reply {
    let req = http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::default())
        .unwrap();
    request(addr, req).await
}

#[tokio::test]
async fn a_publish_token_guards_every_operator_route() {
    let server = ServeProcess::start(&[
        "--tick-interval",
        "0",
        "--publish-token",
        "s3cret",
        "--presence",
        "lobby",
    ]);
    let addr = server.addr;
    let _member = demo_stream(addr, "/sse?room=lobby").await;
    for path in ["/metrics", "/rooms", "/rooms/lobby"] {
        let refused = get(addr, path).await;
        assert_eq!(refused.status.as_u16(), 401, "{path}: {}", refused.text());
        assert!(refused.header("www-authenticate").starts_with("Bearer"));
        assert_eq!(get_with(addr, path, "s3cre").await.status.as_u16(), 401);
        assert_eq!(get_with(addr, path, "s3cret").await.status.as_u16(), 200);
    }
    let lobby = get_with(addr, "/rooms/lobby", "s3cret").await.json();
    assert_eq!(lobby["members"], 1);
    assert_eq!(lobby["connections"][0]["client"], "127.0.0.1");
    // The dashboard, which a browser opens without headers, takes it in the query too.
    for (path, status) in [
        ("/dashboard", 401),
        ("/dashboard?token=guess", 401),
        ("/dashboard?token=s3cret", 200),
        ("/dashboard/?token=s3cret&room=lobby", 200),
        ("/dashboard/events", 401),
        ("/dashboard/events?token=guess", 401),
    ] {
        assert_eq!(get(addr, path).await.status.as_u16(), status, "{path}");
    }
    assert_eq!(
        get_with(addr, "/dashboard", "s3cret").await.status.as_u16(),
        200
    );
    let mut feed = SseClient::open(addr, "/dashboard/events?token=s3cret&history=5").await;
    let sample: Value = serde_json::from_str(&feed.next_of("sample").await.data).unwrap();
    assert_eq!(sample["backplane"]["kind"], "in-process");

    // `ssehub top` sends the token it is given, and fails clearly without it.
    let url = server.url("");
    let top = ["top", "--url", &url, "--once", "--json"];
    let out = run_cli_async(&top, b"").await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    let view = top_once_json(&url, &["--token", "s3cret"]).await;
    assert_eq!(view["connections"], 1);
    assert_eq!(view["backplane"]["connected"], true);
}

#[tokio::test]
async fn the_operator_paths_are_where_they_are_told_to_be() {
    let server = ServeProcess::start(&[
        "--tick-interval",
        "0",
        "--metrics-path",
        "/prom",
        "--dashboard-path",
        "",
    ]);
    for (path, status) in [("/prom", 200), ("/metrics", 404), ("/dashboard", 404)] {
        assert_eq!(
            get(server.addr, path).await.status.as_u16(),
            status,
            "{path}"
        );
    }
}

/// An HS256 token for `ssehub serve --jwt-secret secret`.
fn jwt(secret: &str, claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_dashboard_feed_ends_at_its_operator_tokens_expiry() {
    const SECRET: &str = "a secret for the dashboard's expiry, long enough";
    let server = ServeProcess::start(&["--tick-interval", "0", "--jwt-secret", SECRET]);
    let addr = server.addr;
    let admin = |exp: u64| {
        jwt(
            SECRET,
            serde_json::json!({ "sub": "ops", "exp": exp, "ssehub": { "admin": true } }),
        )
    };
    let short = admin(unix_now() + 2);
    let path = format!("/dashboard/events?token={short}");
    let mut feed = SseClient::open(addr, &path).await;
    assert_eq!(feed.status.as_u16(), 200);
    feed.next_of("sample").await;
    // Samples come every second: only the end at `exp` ends the feed (bounded).
    let events = within("the feed's end at the token's exp", feed.events_until_end()).await;
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("ssehub.expired"),
        "{:?}",
        events.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    // Past its `exp` (within the verifier's leeway, so it still verifies) the token
    // opens no feed, as it opens no stream, rather than one that ends at once and comes
    // straight back.
    let again = SseClient::connect(addr, &path, &[]).await;
    assert_eq!(again.status.as_u16(), 401);
}

/// `--presence-counts-only`: the presence events of `ssehub serve` say how many, not who.
#[tokio::test]
async fn presence_counts_only_from_the_flag_and_the_config() {
    for how in ["flag", "variable"] {
        let server = ServeProcess::spawn(move |port| {
            let mut cmd = std::process::Command::new(bin());
            cmd.args(["serve", "--tick-interval", "0", "--presence", "lobby"])
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
            if how == "flag" {
                cmd.arg("--presence-counts-only");
            } else {
                cmd.env("SSEHUB_OBSERVE_PRESENCE_COUNTS_ONLY", "true");
            }
            cmd
        });
        let mut watcher = demo_stream(server.addr, "/sse?room=lobby").await;
        let join = watcher.next_of("ssehub.join").await;
        let data: Value = serde_json::from_str(&join.data).unwrap();
        assert_eq!(
            data,
            serde_json::json!({ "room": "lobby", "count": 1 }),
            "{how}"
        );
    }
}
