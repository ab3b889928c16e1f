//! End-to-end tests of the `ssehub` binary: the demo server (`serve`) started as a real
//! process on an ephemeral port, spoken to over TCP, and the `publish` and `listen`
//! commands run against it.

mod common;
#[path = "../../ssehub/tests/support/redis_server.rs"]
mod redis_server;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn the_demo_page_is_served_at_the_root() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-type").starts_with("text/html"));
    let html = page.text();
    for needle in [
        r#"id="status""#,
        r#"id="log""#,
        r#"new EventSource("/sse""#,
        r#"["message", "tick", "status"]"#,
        "[${name}] ${e.data}",
        r#"addEventListener("ssehub.gap""#,
        r#"id="drop""#,
        "last_event_id",
        r#"id="publish""#,
        r#"id="stats""#,
        "/publish",
    ] {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not load external resources"
    );
    let again = get(server.addr, "/index.html").await;
    assert_eq!(again.body, page.body);
    assert_eq!(
        get(server.addr, "/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn static_dir_replaces_the_demo_page() {
    let dir = std::env::temp_dir().join(format!("ssehub-cli-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>my own page</p>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    let server = ServeProcess::start(&["--tick-interval", "0", "--static", dir.to_str().unwrap()]);
    let page = get(server.addr, "/").await;
    let js = get(server.addr, "/app.js").await;
    // The SSE endpoint and the API stay where they were.
    let stats = stats(server.addr).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text(), "<p>my own page</p>");
    assert_eq!(js.text(), "console.log(1)");
    assert_eq!(stats["connections"], 0);
}

#[tokio::test]
async fn bad_settings_are_clear_errors() {
    let out = run_cli(
        &[
            "serve",
            "--port",
            &free_port().to_string(),
            "--bind",
            "127.0.0.1",
            "--static",
            "/definitely/not/here",
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("not a directory"), "{}", out.stderr);
    for flag in ["--tick-interval", "--batch-window"] {
        for bad in ["-1", "soon", "inf"] {
            let out = run_cli(&["serve", flag, bad], b"");
            assert!(!out.status.success(), "{flag} {bad} was accepted");
            assert!(out.stderr.contains(flag), "{}", out.stderr);
        }
    }
}

#[tokio::test]
async fn ticks_arrive_on_the_stream() {
    let server = ServeProcess::start(&["--tick-interval", "0.1"]);
    let mut sse = demo_stream(server.addr, "/sse").await;
    assert!(sse.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-cache"));
    let first = sse.next_of("tick").await;
    let second = sse.next_of("tick").await;
    let (n1, t1) = parse_tick(&first.data);
    let (n2, t2) = parse_tick(&second.data);
    assert!(n2 > n1, "{} then {}", first.data, second.data);
    assert!(t2 >= t1, "{t1} then {t2}");
}

/// `tick #N @ 2025-01-31T12:34:56.789Z` -> (N, the time), checking the time's shape.
fn parse_tick(data: &str) -> (u64, String) {
    let rest = data
        .strip_prefix("tick #")
        .unwrap_or_else(|| panic!("{data:?}"));
    let (n, time) = rest.split_once(" @ ").unwrap_or_else(|| panic!("{data:?}"));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("{data:?}"));
    let b = time.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    assert!(
        b.len() == 24
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'.'
            && digits(20..23)
            && b[23] == b'Z',
        "not an RFC 3339 UTC time: {time:?}"
    );
    (n, time.to_owned())
}

#[tokio::test]
async fn publishes_reach_their_room_only() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let mut a = demo_stream(addr, "/sse?room=a").await;
    let mut b = demo_stream(addr, "/sse?room=b").await;
    let mut ab = demo_stream(addr, "/sse?room=a&room=b").await;

    // Query form: the body is the data, as is.
    let r = publish_query(addr, "room=a&event=chat&id=7&retry=2500", "hello\nworld").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "delivered": 2, "id": "7", "replicated": true }),
        "the event keeps its id"
    );
    for s in [&mut a, &mut ab] {
        let e = s.next_event().await;
        assert_eq!(e.event, "chat");
        assert_eq!(e.data, "hello\nworld");
        assert_eq!(e.last_event_id, "7");
    }

    // JSON form: data that is not a string is sent serialised.
    let r = publish_json(
        addr,
        json!({ "room": "b", "event": "update", "data": { "n": 1 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["delivered"], 2);
    let given = r.json()["id"]
        .as_str()
        .expect("the history gives it an id")
        .to_owned();
    for s in [&mut b, &mut ab] {
        let e = s.next_event().await;
        assert_eq!(
            (e.event.as_str(), e.data.as_str()),
            ("update", r#"{"n":1}"#)
        );
        assert_eq!(e.last_event_id, given);
    }

    // Several rooms: a connection in both gets the event once.
    let r = publish_json(addr, json!({ "rooms": ["a", "b"], "data": "to both" })).await;
    assert_eq!(r.json()["delivered"], 3);

    // No room: `__all`, everyone.
    let r = publish_query(addr, "event=marker", "end").await;
    assert_eq!(r.json()["delivered"], 3);

    // What each one got after the first events: nothing from the other room, no
    // duplicate, in publish order.
    let rest = |e: ssehub::decode::Event| (e.event, e.data);
    assert_eq!(
        rest(a.next_event().await),
        ("message".into(), "to both".into())
    );
    assert_eq!(rest(a.next_event().await), ("marker".into(), "end".into()));
    assert_eq!(
        rest(b.next_event().await),
        ("message".into(), "to both".into())
    );
    assert_eq!(rest(b.next_event().await), ("marker".into(), "end".into()));
    assert_eq!(
        rest(ab.next_event().await),
        ("message".into(), "to both".into())
    );
    assert_eq!(rest(ab.next_event().await), ("marker".into(), "end".into()));

    // A room nobody is in.
    let r = publish_query(addr, "room=empty", "x").await;
    assert_eq!(r.json()["delivered"], 0, "kept in its history, though");
}

#[tokio::test]
async fn invalid_fields_are_refused_and_nothing_is_broadcast() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let mut sse = demo_stream(addr, "/sse").await;

    let cases: Vec<(Reply, Option<&str>, &str)> = vec![
        (
            publish_query(addr, "event=a%0Ab", "x").await,
            Some("event"),
            "event",
        ),
        (
            publish_json(addr, json!({ "event": "a\rb", "data": "x" })).await,
            Some("event"),
            "event",
        ),
        (publish_query(addr, "id=1%0A2", "x").await, Some("id"), "id"),
        (publish_query(addr, "id=1%002", "x").await, Some("id"), "id"),
        (
            publish_query(addr, "retry=soon", "x").await,
            Some("retry"),
            "retry",
        ),
        (
            publish_json(addr, json!({ "retry": "later" })).await,
            Some("retry"),
            "retry",
        ),
        (
            publish_query(addr, "room=", "x").await,
            Some("room"),
            "empty",
        ),
        (
            post(addr, "/publish", "application/json", "{not json").await,
            None,
            "JSON",
        ),
        (
            post(addr, "/publish", "application/json", "[1, 2]").await,
            None,
            "object",
        ),
        (
            post(addr, "/publish", "text/plain", &b"\xff\xfe"[..]).await,
            Some("data"),
            "UTF-8",
        ),
    ];
    for (reply, field, says) in &cases {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        let body = reply.json();
        assert_eq!(body["field"].as_str(), *field, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error:?} should mention {says:?}");
    }

    let s = stats(addr).await;
    assert_eq!(s["events_published"], 0, "{s}");
    assert_eq!(s["deliveries"], 0, "{s}");
    // The first event the listener sees after all that is the next valid one.
    publish_query(addr, "event=after", "ok").await;
    let e = sse.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("after", "ok"));
}

#[tokio::test]
async fn publish_bodies_over_the_limit_are_413() {
    const LIMIT: usize = 64 * 1024;
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let mut sse = demo_stream(addr, "/sse").await;

    // Exactly the limit (64 KiB by default) is fine.
    let r = post(addr, "/publish", "text/plain", vec![b'a'; LIMIT]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(sse.next_event().await.data.len(), LIMIT);

    // Declared too large: refused before reading the body.
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n",
        2 * LIMIT
    );
    let (status, body) = raw_exchange(addr, head.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("65536"), "{body}");

    // Chunked, no length given: refused once one byte past the limit has arrived.
    let mut req = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        LIMIT + 1
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'b', LIMIT + 1));
    req.extend_from_slice(b"\r\n");
    let (status, body) = raw_exchange(addr, &req).await;
    assert_eq!(status, 413, "{body}");

    let s = stats(addr).await;
    assert_eq!(
        s["events_published"], 1,
        "only the first publish went out: {s}"
    );
}

#[tokio::test]
async fn a_raised_body_limit_still_refuses_an_event_over_half_the_outbox() {
    let server = ServeProcess::start(&["--tick-interval", "0", "--max-publish-body", "4194304"]);
    let addr = server.addr;
    let mut readers = Vec::new();
    for _ in 0..5 {
        readers.push(demo_stream(addr, "/sse").await);
    }
    // 1 MiB of data, or 200 KiB of line breaks (each one a `data:` line on the wire):
    // both over 512 KiB encoded.
    for body in [vec![b'a'; MIB], vec![b'\n'; 200 * 1024]] {
        let r = post(addr, "/publish", "text/plain", body).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    }
    // Two large events that fit, back to back: every reader gets both, none is closed.
    let body = vec![b'c'; 300 * 1024];
    for _ in 0..2 {
        let r = post(addr, "/publish", "text/plain", body.clone()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }
    for r in &mut readers {
        for _ in 0..2 {
            assert_eq!(r.next_event().await.data.len(), body.len());
        }
    }
    let s = stats(addr).await;
    assert_eq!(s["slow_consumer_closes"], 0, "{s}");
}

/// The local address of the socket listening on `port`, from `/proc/net/tcp` (IPv4).
fn listening_address(port: u16) -> Option<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ip, p) = fields.get(1)?.split_once(':')?;
        // State 0A is LISTEN; the address is in the kernel's byte order (little endian).
        let listening = fields.get(3) == Some(&"0A");
        if !listening || u16::from_str_radix(p, 16).ok()? != port {
            return None;
        }
        let ip = u32::from_str_radix(ip, 16).ok()?;
        Some(std::net::Ipv4Addr::from(ip.swap_bytes()))
    })
}

#[tokio::test]
async fn the_demo_listens_on_loopback_unless_told_otherwise() {
    let server = ServeProcess::spawn(|port| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["serve", "--tick-interval", "0", "--port", &port.to_string()]);
        cmd
    });
    assert_eq!(
        listening_address(server.addr.port()),
        Some(std::net::Ipv4Addr::LOCALHOST)
    );
}

#[tokio::test]
async fn another_site_s_page_may_not_open_streams() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let from = |origin: &str| {
        http::Request::get("/sse")
            .header("origin", origin)
            .body(http_body_util::Full::<Bytes>::default())
            .unwrap()
    };
    let evil = ssehub_testkit::send(addr, from("https://evil.example")).await;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let own = ssehub_testkit::send(addr, from(&format!("http://{addr}"))).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(stats(addr).await["connections_total"], 1);
}

/// The status of `method path` to the server at `addr` with `Host: host` (a stream's
/// body is left unread), and the answer's text when it is not a stream.
async fn with_host(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let res = ssehub_testkit::send(addr, req).await;
    let status = res.status().as_u16();
    let stream = res
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        return (status, String::new());
    }
    let body = within(
        "the body",
        http_body_util::BodyExt::collect(res.into_body()),
    )
    .await
    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
    .unwrap_or_default();
    (status, body)
}

/// A DNS-rebinding page (another name that resolves to 127.0.0.1) passes the own-origin
/// checks, so the loopback demo answers only the names of loopback, whatever the route or
/// the path a request takes (the bare-socket take-over for `/sse` too), and the names
/// `server.allowed_hosts` adds.
#[tokio::test]
async fn a_loopback_demo_answers_only_its_own_host_names() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let port = addr.port();
    let routes = [
        ("GET", "/stats"),
        ("GET", "/sse"),
        ("GET", "/sse?room=a"),
        ("POST", "/publish?room=a"),
        ("GET", "/"),
        ("GET", "/rooms"),
        ("GET", "/metrics"),
        ("GET", "/dashboard"),
        ("GET", "/dashboard/events"),
    ];
    let evil = format!("evil.example:{port}");
    for (method, path) in routes {
        for host in [evil.as_str(), "evil.example", "localhost.evil.example"] {
            let (status, text) = with_host(addr, method, path, host).await;
            assert_eq!(status, 421, "{method} {path} with Host {host}: {text}");
            assert!(text.contains("host"), "{method} {path}: says why: {text}");
        }
        for host in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            "localhost".to_owned(),
            format!("LOCALHOST:{port}"),
        ] {
            let (status, text) = with_host(addr, method, path, &host).await;
            assert!(
                (200..300).contains(&status),
                "{method} {path} with Host {host}: {status} {text}"
            );
        }
    }
    assert_eq!(
        stats(addr).await["events_published"],
        4,
        "only the served publishes"
    );

    // Other names, from the configuration (here its variable).
    let named = ServeProcess::spawn(|port| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["serve", "--tick-interval", "0", "--port", &port.to_string()])
            .env("SSEHUB_SERVER_ALLOWED_HOSTS", "hub.test,other.test");
        cmd
    });
    let port = named.addr.port();
    for (host, status) in [
        (format!("hub.test:{port}"), 200),
        ("other.test".to_owned(), 200),
        (format!("localhost:{port}"), 200),
        (format!("evil.example:{port}"), 421),
    ] {
        let (got, text) = with_host(named.addr, "GET", "/stats", &host).await;
        assert_eq!(got, status, "{host}: {text}");
    }
}

#[tokio::test]
async fn a_publish_token_guards_publish_and_stats() {
    let server = ServeProcess::start(&["--tick-interval", "0", "--publish-token", "s3cret"]);
    let addr = server.addr;
    let mut sse = demo_stream(addr, "/sse").await;
    for reply in [
        publish_query(addr, "event=x", "no token").await,
        get(addr, "/stats").await,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
        assert!(reply.header("www-authenticate").starts_with("Bearer"));
    }
    let wrong = http::Request::get("/stats")
        .header("authorization", "Bearer s3cre")
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(request(addr, wrong).await.status, StatusCode::UNAUTHORIZED);
    // The publish command sends the token it is given.
    let url = server.url("");
    let args = [
        "publish", "--url", &url, "--token", "s3cret", "--event", "e", "hello",
    ];
    let out = run_cli_async(&args, b"").await;
    assert!(out.status.success(), "{}", out.stderr);
    let e = sse.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("e", "hello"));
    let right = http::Request::get("/stats")
        .header("authorization", "Bearer s3cret")
        .body(http_body_util::Full::default())
        .unwrap();
    let reply = request(addr, right).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["events_published"], 1);
}

/// Write `bytes` on a new connection, then read one response (parsed with httparse):
/// its status and body. Used where a well-behaved client cannot send the request.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, String) {
    within("a raw HTTP exchange", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = res.parse(&buf) {
                let content_length: usize = res
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .expect("a content-length");
                if buf.len() >= len + content_length || n == 0 {
                    let status = res.code.unwrap();
                    let end = (len + content_length).min(buf.len());
                    return (status, String::from_utf8_lossy(&buf[len..end]).into_owned());
                }
            }
            assert!(n > 0, "the connection closed before a full response");
        }
    })
    .await
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let r = get(server.addr, "/publish").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "POST");
    let put = Request::put("/publish").body(Full::default()).unwrap();
    let r = request(server.addr, put).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "POST");
    let r = post(server.addr, "/stats", "text/plain", "x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = post(server.addr, "/sse", "text/plain", "x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(stats(server.addr).await["events_published"], 0);
}

#[tokio::test]
async fn invalid_rooms_in_the_stream_query_are_400() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let long = "r".repeat(129);
    let many: String = (0..300).map(|i| format!("room=r{i}&")).collect();
    for (query, says) in [
        ("room=".to_owned(), "empty"),
        ("room=ok&room=a%01b".to_owned(), "control"),
        (format!("room={long}"), "128"),
        (many, "too many rooms"),
    ] {
        let r = get(server.addr, &format!("/sse?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            r.text().contains(says),
            "{:?} should say {says:?}",
            r.text()
        );
    }
    // The longest valid name is fine, and nobody was let in before.
    assert_eq!(stats(server.addr).await["connections_total"], 0);
    let ok = "r".repeat(128);
    let _s = demo_stream(server.addr, &format!("/sse?room={ok}")).await;
    assert_eq!(stats(server.addr).await["room_members"][&ok], 1);
}

#[tokio::test]
async fn stats_count_what_happened() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let mut fresh = stats(addr).await;
    // The process's own figures move by themselves: present, and numbers.
    let process = fresh.as_object_mut().unwrap().remove("process").unwrap();
    for figure in ["rss_bytes", "cpu_seconds", "open_fds", "max_fds"] {
        assert!(process[figure].is_number(), "{figure} in {process}");
    }
    assert_eq!(
        fresh,
        json!({
            "connections": 0, "rooms": 0, "room_members": {}, "events_published": 0,
            "deliveries": 0, "dropped_events": 0, "slow_consumer_closes": 0,
            "connections_total": 0, "replays": 0, "replayed_events": 0,
            "gaps": { "evicted": 0, "unknown-epoch": 0, "malformed": 0, "unknown-id": 0,
                      "replay-limit": 0, "outage": 0 },
            "history_rooms": 0, "history_events": 0, "history_bytes": 0,
            "delivered_bytes": 0, "outbox_bytes": 0,
            "connections_by_transport": { "h1": 0, "h1_hyper": 0, "h2": 0 },
            "refused": { "max_connections": 0, "max_connections_per_ip": 0, "authorize": 0,
                         "auth": 0, "origin": 0, "bad_request": 0, "shutting_down": 0,
                         "server_max_connections": 0, "max_pending_connections": 0,
                         "max_pending_per_ip": 0, "header_timeout": 0,
                         "max_requests_per_ip": 0 },
            "backplane": { "kind": "in-process", "connected": true, "outages": 0, "refused": 0 },
        })
    );
    let mut a = demo_stream(addr, "/sse?room=a").await;
    let mut ab = demo_stream(addr, "/sse?room=a&room=b").await;
    assert_eq!(
        publish_query(addr, "room=a", "1").await.json()["delivered"],
        2
    );
    assert_eq!(
        publish_query(addr, "room=b", "2").await.json()["delivered"],
        1
    );
    assert_eq!(publish_query(addr, "", "3").await.json()["delivered"], 2);
    a.next_event().await;
    ab.next_event().await;
    let mut counted = stats(addr).await;
    counted.as_object_mut().unwrap().remove("process");
    assert_eq!(
        counted,
        json!({
            "connections": 2, "rooms": 3,
            "room_members": { "__all": 2, "a": 2, "b": 1 },
            "events_published": 3, "deliveries": 5, "dropped_events": 0,
            "slow_consumer_closes": 0, "connections_total": 2,
            "replays": 0, "replayed_events": 0,
            "gaps": { "evicted": 0, "unknown-epoch": 0, "malformed": 0, "unknown-id": 0,
                      "replay-limit": 0, "outage": 0 },
            // Three events, one per room, each `id: <8 hex>-<n>\ndata: <n>\n\n`.
            "history_rooms": 3, "history_events": 3, "history_bytes": 3 * 24,
            // Five deliveries of those 24 bytes; both streams on the bare socket.
            "delivered_bytes": 5 * 24, "outbox_bytes": 0,
            "connections_by_transport": { "h1": 2, "h1_hyper": 0, "h2": 0 },
            "refused": { "max_connections": 0, "max_connections_per_ip": 0, "authorize": 0,
                         "auth": 0, "origin": 0, "bad_request": 0, "shutting_down": 0,
                         "server_max_connections": 0, "max_pending_connections": 0,
                         "max_pending_per_ip": 0, "header_timeout": 0,
                         "max_requests_per_ip": 0 },
            "backplane": { "kind": "in-process", "connected": true, "outages": 0, "refused": 0 },
        })
    );
    // A client that goes away leaves its rooms; an emptied room disappears.
    drop(ab);
    within("the departure to show in /stats", async {
        loop {
            let s = stats(addr).await;
            if s["connections"] == 1 {
                assert_eq!(s["room_members"], json!({ "__all": 1, "a": 1 }));
                assert_eq!(s["rooms"], 2);
                assert_eq!(s["connections_total"], 2);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn publish_command_posts_and_prints_the_count() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let url = server.url("");
    let mut sse = demo_stream(server.addr, "/sse?room=news").await;

    let out = run_cli(
        &[
            "publish",
            "--url",
            &url,
            "--room",
            "news",
            "--event",
            "headline",
            "--id",
            "42",
            "--retry",
            "1000",
            "extra, extra",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "delivered: 1");
    let e = sse.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str(), e.last_event_id.as_str()),
        ("headline", "extra, extra", "42")
    );

    // `-` reads the data from standard input.
    let out = run_cli(&["publish", "--url", &url, "-"], b"from\nstdin\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "delivered: 1");
    let e = sse.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("message", "from\nstdin\n")
    );

    // A refusal: the server's reason on stderr, a failing exit status.
    let out = run_cli(
        &["publish", "--url", &url, "--event", "two\nlines", "x"],
        b"",
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    assert!(out.stderr.contains("invalid event"), "{}", out.stderr);
    assert_eq!(stats(server.addr).await["events_published"], 2);

    // Nobody listening on that port.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = run_cli(&["publish", "--url", &nowhere, "x"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);
}

#[tokio::test]
async fn listen_command_prints_events() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);

    let out = run_cli(
        &["listen", &server.url("/sse"), "--count", "1", "--json"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let line: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        line,
        json!({ "event": "status", "data": "connected", "id": "" })
    );

    // A listener in a room sees what `ssehub publish` sends there.
    let mut listener = CliProcess::spawn(&[
        "listen",
        &server.url("/sse?room=ops"),
        "--json",
        "--count",
        "2",
    ]);
    let first: serde_json::Value = serde_json::from_str(&listener.next_line()).unwrap();
    assert_eq!(first["event"], "status");
    let out = run_cli(
        &[
            "publish",
            "--url",
            &server.url(""),
            "--room",
            "ops",
            "--id",
            "9",
            "--event",
            "note",
            "a\nb",
        ],
        b"",
    );
    assert_eq!(out.stdout.trim(), "delivered: 1", "{out:?}");
    let second: serde_json::Value = serde_json::from_str(&listener.next_line()).unwrap();
    assert_eq!(
        second,
        json!({ "event": "note", "data": "a\nb", "id": "9" })
    );
    let done = listener.finish();
    assert!(done.status.success(), "{done:?}");

    // The readable form, filtered by type.
    let mut listener = CliProcess::spawn(&[
        "listen",
        &server.url("/sse"),
        "--event",
        "shout",
        "--count",
        "1",
    ]);
    // The listener is connected (and in `__all`) once the server has counted its
    // connection: the third since the start.
    within("the listener to connect", async {
        while stats(server.addr).await["connections_total"] != 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    publish_query(server.addr, "event=whisper", "not this").await;
    publish_query(server.addr, "event=shout&id=x1", "HELLO").await;
    assert_eq!(listener.next_line(), "event: shout  id: x1");
    assert_eq!(listener.next_line(), "HELLO");
    assert!(listener.finish().status.success());
}

#[tokio::test]
async fn listen_command_fails_clearly() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    // Refused by the server: the status and its reason.
    let out = run_cli(&["listen", &server.url("/sse?room="), "--count", "1"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
    // Not an event stream.
    let out = run_cli(&["listen", &server.url("/stats"), "--count", "1"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("not an event stream"), "{}", out.stderr);
    // A 404.
    let out = run_cli(&["listen", &server.url("/sse/x"), "--count", "1"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    // Not http.
    let out = run_cli(&["listen", "https://127.0.0.1:1/sse"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("https"), "{}", out.stderr);
    // A bounded wait that runs out.
    let out = run_cli(
        &[
            "listen",
            &server.url("/sse"),
            "--event",
            "never",
            "--timeout",
            "0.5",
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
}

/// A scripted event-stream server (hyper, on an ephemeral port) that records each
/// request's `Last-Event-ID` and answers the n-th connection with `streams[n]`.
async fn scripted_server(
    streams: Vec<&'static str>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for body in streams {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let id = req
                    .headers()
                    .get("last-event-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                log.lock().unwrap().push(id);
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn listen_reconnects_with_last_event_id_after_the_retry_delay() {
    let (addr, seen) = scripted_server(vec![
        "retry: 50\nid: 5\nevent: one\ndata: first\n\n",
        "data: second\n\n",
    ])
    .await;
    let url = format!("http://{addr}/events");
    let args = [
        "listen",
        url.as_str(),
        "--json",
        "--count",
        "2",
        "--last-event-id",
        "start",
    ];
    let out = run_cli_async(&args, b"").await;
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({ "event": "one", "data": "first", "id": "5" }),
            // The last event id carries over the reconnection, as in a browser.
            json!({ "event": "message", "data": "second", "id": "5" }),
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("start".to_owned()), Some("5".to_owned())]
    );
}

#[tokio::test]
async fn listen_without_reconnect_stops_at_the_end_of_the_stream() {
    let (addr, seen) = scripted_server(vec!["data: only\n\n", "data: never\n\n"]).await;
    let url = format!("http://{addr}/events");
    let args = ["listen", url.as_str(), "--json", "--no-reconnect"];
    let out = run_cli_async(&args, b"").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Asked for more events than came: an error.
    let (addr, _) = scripted_server(vec!["data: only\n\n"]).await;
    let url = format!("http://{addr}/events");
    let args = ["listen", url.as_str(), "--count", "2", "--no-reconnect"];
    let out = run_cli_async(&args, b"").await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("1 of 2"), "{}", out.stderr);
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let mut server = ServeProcess::start(&["--tick-interval", "0"]);
    let mut sse = demo_stream(server.addr, "/sse").await;
    server.terminate();
    // The open stream gets the farewell and ends; the process exits successfully.
    let events = sse.events_until_end().await;
    assert_eq!(
        events.last().map(|e| (e.event.as_str(), e.data.as_str())),
        Some(("status", "server shutting down"))
    );
    let status = within("the server to exit after SIGTERM", async {
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bare_ssehub_serves_with_settings_from_the_environment() {
    let server = ServeProcess::spawn(|port| {
        let mut cmd = std::process::Command::new(bin());
        cmd.env("SSEHUB_PORT", port.to_string())
            .env("SSEHUB_BIND", "127.0.0.1");
        cmd
    });
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains(r#"id="log""#));
    // The default ticker runs once a second.
    let mut sse = demo_stream(server.addr, "/sse").await;
    let tick = sse.next_of("tick").await;
    parse_tick(&tick.data);
}

/// `ssehub bench` against `url` with `subscribers` subscribers and a few events.
fn bench_args(url: &str, subscribers: usize, extra: &[&str]) -> Vec<String> {
    let n = subscribers.to_string();
    let mut args = vec!["bench", "--url", url, "--subscribers", &n];
    args.extend(["--messages", "5", "--rate", "100", "--timeout", "30"]);
    args.extend(extra);
    args.into_iter().map(String::from).collect()
}

#[tokio::test]
async fn benches_run_back_to_back_against_one_server() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let url = server.url("");
    // The server may still be closing one run's subscribers when the next one starts.
    for run in 0..3 {
        let args = bench_args(&url, 2000, &[]);
        let out = tokio::task::spawn_blocking(move || run_cli(&args, b""))
            .await
            .unwrap();
        assert!(out.status.success(), "run {run}: {}", out.stderr);
        assert!(
            out.stdout.contains("deliveries:        10000 received"),
            "run {run}: {}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn bench_agents_hold_the_subscribers_of_two_nodes_and_replay() {
    let Some(redis) = redis_server::RedisServer::start_if_available() else {
        return;
    };
    let node = || ServeProcess::start(&["--tick-interval", "0", "--redis", &redis.url()]);
    let (one, two) = (node(), node());
    let (url1, url2) = (one.url(""), two.url(""));
    let mut args = bench_args(&url1, 300, &["--agents", "3", "--json"]);
    args.extend(["--sse-url", &url1, "--sse-url", &url2].map(String::from));
    let out = tokio::task::spawn_blocking(move || run_cli(&args, b""))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["server_connections"], 300);
    assert_eq!(report["expected_deliveries"], 1500, "the plan: 300 x 5");
    assert_eq!(
        report["received_deliveries"], 1500,
        "both nodes' subscribers, all"
    );
    assert_eq!(stats(two.addr).await["connections_total"], 150);
    // Agents resuming 3 events back, on both nodes: exactly 3 each.
    let mut args = bench_args(
        &url1,
        100,
        &["--agents", "2", "--json", "--replay-back", "3"],
    );
    args.extend(["--sse-url", &url1, "--sse-url", &url2].map(String::from));
    let out = tokio::task::spawn_blocking(move || run_cli(&args, b""))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["received_deliveries"], 500);
    assert_eq!(report["replay"]["events"], 300);
}

#[tokio::test]
async fn connections_closing_while_the_bench_connects_do_not_fail_it() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let addr = server.addr;
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(demo_stream(addr, "/sse?room=other").await);
    }
    let total0 = stats(addr).await["connections_total"].as_u64().unwrap();
    // One handshake at a time: the bench is still connecting when the others leave.
    let args = bench_args(&server.url(""), 500, &["--connect-concurrency", "1"]);
    let bench = tokio::task::spawn_blocking(move || run_cli(&args, b""));
    within("the bench to start connecting", async {
        while stats(addr).await["connections_total"].as_u64().unwrap() == total0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    drop(others);
    let out = bench.await.unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("deliveries:        2500 received"),
        "{}",
        out.stdout
    );
}
