//! The SSE handshake over real TCP: headers, first bytes, HTTP/2, strict path match,
//! methods other than GET, origins, and the server's allowed hosts.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::decode::Item;
use ssehub::{ConfigError, Server, ServerError, SseOptions};
use tokio::net::TcpStream;

#[tokio::test]
async fn http1_handshake_headers_and_first_bytes() {
    let srv = TestServer::start(SseOptions::new()).await;
    let (mut s, head) = raw_request(
        srv.addr,
        "GET /sse HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\naccept-encoding: gzip, br\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.version, 1);
    assert_eq!(
        head.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    // Served on the bare socket, which answers nothing after the stream.
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(
        head.header("content-length"),
        None,
        "a stream has no length"
    );
    assert_eq!(
        head.header("content-encoding"),
        None,
        "never compressed, even when the client accepts gzip"
    );
    // Nothing was sent by the application, yet the preamble arrives.
    let mut rest = head.rest;
    read_until_contains(&mut s, &mut rest, b": connected\n\n").await;
    assert_eq!(srv.hub.connection_count(), 1);
    drop(s);
    srv.stop().await;
}

#[tokio::test]
async fn preamble_is_the_first_thing_on_the_stream() {
    let srv = TestServer::start(SseOptions::new()).await;
    let mut c = srv.sse("/sse").await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    assert!(c.raw.starts_with(b": connected\n\n"), "{:?}", c.raw);
    srv.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_has_no_connection_header() {
    let srv = TestServer::start(common::without_history()).await;
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("http://{}/sse", srv.addr))
        .header("accept-encoding", "gzip")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = within("h2 response", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), Version::HTTP_2);
    let h = res.headers();
    assert!(h.get("connection").is_none(), "HTTP/2 forbids it: {h:?}");
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none());
    let mut body = res.into_body();
    let frame = within("h2 first frame", body.frame())
        .await
        .expect("a frame")
        .unwrap();
    assert_eq!(
        frame.data_ref().map(|b| &b[..]),
        Some(&b": connected\n\n"[..])
    );
    eventually("h2 stream registered", || srv.hub.connection_count() == 1).await;
    srv.hub
        .to("__all")
        .publish(&ssehub::Message::new("over h2"))
        .unwrap();
    let frame = within("h2 event", body.frame()).await.unwrap().unwrap();
    assert_eq!(
        frame.data_ref().map(|b| &b[..]),
        Some(&b"data: over h2\n\n"[..])
    );
    srv.stop().await;
}

#[tokio::test]
async fn path_matching_is_strict() {
    let srv = TestServer::start(SseOptions::new().keep_alive(None)).await;
    let mut open = Vec::new();
    for path in ["/sse", "/sse/", "/sse?x=1", "/sse/?x=1"] {
        let mut c = srv.sse(path).await;
        assert_eq!(c.status, StatusCode::OK, "{path}");
        assert_eq!(
            c.next_item().await,
            Some(Item::Comment("connected".into())),
            "{path}"
        );
        open.push(c);
    }
    eventually("four streams", || srv.hub.connection_count() == 4).await;
    for path in ["/sse/anything", "/ssex", "/sse//", "/", "/SSE"] {
        let (status, _, _) = srv.request("GET", path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(srv.hub.stats().connections_total, 4, "404s open nothing");
    // Written as is on the wire, on a fresh connection (the bare socket's decision) and on
    // a reused one (hyper's): no decoding, no normalising, no case folding.
    let odd = [
        "/%73se", "/sse%2F", "//sse", "/sse/.", "/./sse", "/SSE", "/sse/..", "/sse;x",
    ];
    for reuse in [false, true] {
        for path in odd {
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            if reuse {
                let head = raw_exchange(&mut s, "HEAD /nothing HTTP/1.1\r\nhost: t\r\n\r\n").await;
                assert_eq!(head.status, 404);
            }
            let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
            let head = raw_exchange(&mut s, &req).await;
            assert_eq!(head.status, 404, "{path} (reused: {reuse})");
        }
    }
    assert_eq!(
        srv.hub.stats().connections_total,
        4,
        "odd paths open nothing"
    );
    srv.stop().await;
}

#[tokio::test]
async fn custom_prefix_is_normalised() {
    let srv = TestServer::start(SseOptions::new().prefix("events/")).await;
    let c = srv.sse("/events").await;
    assert_eq!(c.status, StatusCode::OK);
    let c2 = srv.sse("/events/").await;
    assert_eq!(c2.status, StatusCode::OK);
    let (status, _, _) = srv.request("GET", "/sse", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = srv.request("GET", "/events/x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    srv.stop().await;
}

#[tokio::test]
async fn root_prefix_is_refused_by_bind() {
    for bad in ["/", "", "//"] {
        let res = Server::new(([127, 0, 0, 1], 0))
            .sse(SseOptions::new().prefix(bad))
            .bind()
            .await;
        match res {
            Err(ServerError::Config(ConfigError::Prefix(p))) => assert_eq!(p, bad),
            Err(e) => panic!("{bad:?}: unexpected error {e}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
}

#[tokio::test]
async fn head_answers_the_handshake_without_a_stream() {
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let o = opened.clone();
    let srv = TestServer::start(SseOptions::new().on_connect(move |_c, _ctx| {
        let o = o.clone();
        async move {
            o.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }))
    .await;
    let (status, headers, body) = request(srv.addr, "HEAD", "/sse", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(body, "");
    assert_eq!(srv.hub.connection_count(), 0);
    assert_eq!(srv.hub.stats().connections_total, 0);
    assert_eq!(srv.hub.room_count(), 0);
    // A GET after it does open a stream (the HEAD did not merely fail to count).
    let _c = srv.sse("/sse").await;
    eventually("on_connect ran", || {
        opened.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(srv.hub.stats().connections_total, 1);
    srv.stop().await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let srv = TestServer::start(SseOptions::new()).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, headers, _) = srv.request(method, "/sse", "x").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers["allow"], "GET, HEAD", "{method}");
    }
    assert_eq!(srv.hub.stats().connections_total, 0);
    srv.stop().await;
}

#[tokio::test]
async fn cross_origin_is_opt_in() {
    let closed = TestServer::start(SseOptions::new()).await;
    let c = SseClient::connect(closed.addr, "/sse", &[("origin", "http://other.example")]).await;
    assert_eq!(c.status, StatusCode::OK);
    assert!(c.headers.get("access-control-allow-origin").is_none());
    let (status, _, _) = closed.request("OPTIONS", "/sse", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    closed.stop().await;

    let open = TestServer::start(SseOptions::new().allow_any_origin(true)).await;
    let c = SseClient::connect(open.addr, "/sse", &[("origin", "http://other.example")]).await;
    assert_eq!(c.headers["access-control-allow-origin"], "*");
    assert!(
        c.headers.get("access-control-allow-credentials").is_none(),
        "`*` never with credentials"
    );
    let (status, headers, _) = request(
        open.addr,
        "OPTIONS",
        "/sse",
        &[
            ("origin", "http://other.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "last-event-id"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-methods"], "GET, HEAD");
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("last-event-id"));
    assert_eq!(
        open.hub.stats().connections_total,
        1,
        "a preflight opens no stream"
    );
    open.stop().await;
}

#[tokio::test]
async fn allowed_origins_refuse_other_pages_before_any_stream() {
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .allowed_origins(["https://app.example"]),
    )
    .await;
    let own = format!("http://{}", srv.addr);
    // On the bare socket (a fresh connection) and through hyper (a reused one).
    for reuse in [false, true] {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        if reuse {
            let head = raw_exchange(&mut s, "HEAD /nothing HTTP/1.1\r\nhost: t\r\n\r\n").await;
            assert_eq!(head.status, 404);
        }
        let req = format!(
            "GET /sse HTTP/1.1\r\nhost: {}\r\norigin: https://evil.example\r\n\r\n",
            srv.addr
        );
        let head = raw_exchange(&mut s, &req).await;
        assert_eq!(head.status, 403, "reused: {reuse}");
    }
    assert_eq!(srv.hub.stats().connections_total, 0, "no stream opened");

    let listed = SseClient::connect(srv.addr, "/sse", &[("origin", "https://app.example")]).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        listed.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(listed.headers["vary"], "origin");
    let same = SseClient::connect(srv.addr, "/sse", &[("origin", own.as_str())]).await;
    assert_eq!(same.status, StatusCode::OK);
    assert!(same.headers.get("access-control-allow-origin").is_none());
    let none = srv.sse("/sse").await;
    assert_eq!(none.status, StatusCode::OK);
    let (status, headers, _) = request(
        srv.addr,
        "OPTIONS",
        "/sse",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert_eq!(srv.hub.stats().connections_total, 3);
    srv.stop().await;
}

#[tokio::test]
async fn allow_any_origin_and_allowed_origins_do_not_mix() {
    let options = SseOptions::new()
        .allow_any_origin(true)
        .allowed_origins(["https://a.example"]);
    let err = Server::new(([127, 0, 0, 1], 0))
        .sse(options)
        .bind()
        .await
        .err();
    assert!(
        matches!(err, Some(ServerError::Config(ConfigError::Origins))),
        "{err:?}"
    );
}

#[tokio::test]
async fn retry_hint_follows_the_preamble() {
    let base = std::time::Duration::from_millis(3000);
    let srv = TestServer::start(SseOptions::new().retry(Some(base))).await;
    for _ in 0..5 {
        let mut c = srv.sse("/sse").await;
        assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
        match c.next_item().await {
            Some(Item::Retry(d)) => assert!(d >= base * 8 / 10 && d <= base, "{d:?}"),
            other => panic!("expected a retry hint, got {other:?}"),
        }
    }
    srv.stop().await;
}

/// `Server::allowed_hosts`: a request naming another host is refused with 421 before any
/// route, whichever path it takes: the bare-socket take-over (a fresh HTTP/1.1 stream),
/// hyper (a reused connection, HEAD, another route, the fallback), HTTP/2 (`:authority`).
#[tokio::test]
async fn allowed_hosts_refuse_other_names_on_every_path() {
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |server| {
        server
            .allowed_hosts(["localhost", "127.0.0.1", "[::1]", "hub.test:8443"])
            .route("/route", |_req| async {
                http::Response::new(String::from("route"))
            })
            .fallback(tower::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("fallback")))
            }))
    })
    .await;
    let port = srv.addr.port();
    let refused = [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
        "hub.test".to_owned(),
        format!("hub.test:{port}"),
        "127.0.0.1.evil.example".to_owned(),
        "".to_owned(),
    ];
    let served = [
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "hub.test:8443".to_owned(),
    ];
    for (hosts, want) in [(&refused[..], 421), (&served[..], 200)] {
        for host in hosts.iter() {
            for (request, reuse) in [
                ("GET /sse HTTP/1.1", false),
                ("GET /sse HTTP/1.1", true),
                ("HEAD /sse HTTP/1.1", false),
                ("GET /route HTTP/1.1", false),
                ("GET /anything-else HTTP/1.1", false),
            ] {
                let mut s = TcpStream::connect(srv.addr).await.unwrap();
                if reuse {
                    let head = raw_exchange(
                        &mut s,
                        &format!("HEAD /route HTTP/1.1\r\nhost: localhost:{port}\r\n\r\n"),
                    )
                    .await;
                    assert_eq!(head.status, 200);
                }
                let head =
                    raw_exchange(&mut s, &format!("{request}\r\nhost: {host}\r\n\r\n")).await;
                assert_eq!(
                    head.status, want,
                    "{request} (reused: {reuse}) with Host {host:?}"
                );
            }
        }
    }
    // No `Host` at all (HTTP/1.0, a client that is no browser) names no other host.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let head = raw_exchange(&mut s, "GET /route HTTP/1.0\r\n\r\n").await;
    assert_eq!(head.status, 200);

    // HTTP/2: the name is the request's `:authority`.
    for (authority, want) in [
        (
            format!("evil.example:{port}"),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (format!("localhost:{port}"), StatusCode::OK),
    ] {
        let stream = TcpStream::connect(srv.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(format!("http://{authority}/sse"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = within("h2 response", sender.send_request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), want, "h2 {authority}");
    }
    assert_eq!(
        srv.hub.stats().connections_total,
        served.len() as u64 * 2 + 1,
        "only the served GETs opened streams"
    );
    srv.stop().await;
}
