//! `GET /rooms` and `GET /rooms/{room}` over real sockets: sizes, history depth, each
//! member's id, identity, peer, client, since and transport, pages, encoded names.

mod common;

use common::*;
use http::StatusCode;
use serde_json::Value;
use ssehub::{HubApi, SseOptions};

async fn get_json(srv: &TestServer, path: &str) -> Value {
    let (status, headers, body) = srv.request("GET", path, "").await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    assert_eq!(headers["cache-control"], "no-store");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn rooms_and_their_members() {
    let options = SseOptions::new()
        .keep_alive(None)
        .rooms_from_query(true)
        .no_auto_join()
        .on_connect(|conn, ctx| async move {
            if let Some(user) = ctx.query("user") {
                conn.set_identity(user);
            }
            let _ = conn.send_event("ready", "");
        });
    let api = HubApi::new(options.hub().clone());
    let srv = TestServer::start_with(options, |s| s.fallback(api)).await;
    let mut clients = Vec::new();
    for (room, user) in [
        ("big", "ann"),
        ("big", "bob"),
        ("big", "cy"),
        ("a/b", "dee"),
    ] {
        let path = format!("/sse?room={}&user={user}", room.replace('/', "%2F"));
        let mut c = srv.sse(&path).await;
        c.next_of("ready").await;
        clients.push(c);
    }
    srv.hub
        .to("big")
        .publish(
            &ssehub::Message::builder()
                .event("news")
                .data("kept")
                .build()
                .unwrap(),
        )
        .map(|p| p.delivered)
        .unwrap();

    let rooms = get_json(&srv, "/rooms").await;
    assert_eq!(rooms["total"], 2);
    assert_eq!(rooms["rooms"][0]["room"], "big", "largest first");
    assert_eq!(rooms["rooms"][0]["members"], 3);
    assert_eq!(rooms["rooms"][0]["history"], 1);
    assert_eq!(rooms["rooms"][1]["room"], "a/b");
    let page = get_json(&srv, "/rooms?offset=1&limit=1").await;
    assert_eq!(page["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(page["rooms"][0]["room"], "a/b");

    let big = get_json(&srv, "/rooms/big?limit=2").await;
    assert_eq!(big["members"], 3);
    let page = big["connections"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["identity"], "ann", "oldest first");
    assert_eq!(page[1]["identity"], "bob");
    assert_eq!(page[0]["transport"], "h1");
    assert!(page[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(page[0]["client"], "127.0.0.1");
    assert!(page[0]["since_ms"].as_u64().unwrap() <= page[1]["since_ms"].as_u64().unwrap());
    let rest = get_json(&srv, "/rooms/big?offset=2").await;
    assert_eq!(rest["connections"][0]["identity"], "cy");

    let slashed = get_json(&srv, "/rooms/a%2Fb").await;
    assert_eq!(slashed["room"], "a/b");
    assert_eq!(slashed["connections"][0]["identity"], "dee");
    let empty = get_json(&srv, "/rooms/nobody").await;
    assert_eq!(empty["members"], 0);
    for (method, path, refused) in [
        ("GET", "/rooms/big?limit=many", StatusCode::BAD_REQUEST),
        ("POST", "/rooms", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        assert_eq!(
            srv.request(method, path, "").await.0,
            refused,
            "{method} {path}"
        );
    }
    srv.stop().await;
}

/// Each stream is counted under the transport that carries it: the bare socket for a
/// fresh HTTP/1.1 connection, hyper for HTTP/1.0 and HTTP/2.
#[tokio::test]
async fn streams_are_counted_by_transport() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let srv = TestServer::start(without_history().keep_alive(None)).await;
    let _h1 = srv.sse("/sse").await;
    let (_h10, head) = raw_request(srv.addr, "GET /sse HTTP/1.0\r\nhost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/sse", srv.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut body = h2.send_request(req).await.unwrap().into_body();
    within("the h2 stream's first frame", body.frame()).await;
    eventually("three streams", || srv.hub.connection_count() == 3).await;
    let by = srv.hub.stats().connections_by_transport;
    assert_eq!((by["h1"], by["h1_hyper"], by["h2"]), (1, 1, 1), "{by:?}");
    let (total, members) = srv.hub.members_page(ssehub::ROOM_ALL, 0, 10);
    assert_eq!(total, 3);
    let mut kinds: Vec<&str> = members.iter().map(|m| m.transport.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["h1", "h1_hyper", "h2"]);
    srv.stop().await;
}

/// Behind a trusted proxy a member's peer is the proxy and its client the address the
/// proxy forwards for (the one the connection limits count).
#[tokio::test]
async fn a_member_behind_a_trusted_proxy_shows_its_client() {
    let options = without_history()
        .keep_alive(None)
        .trusted_proxies(["127.0.0.1".parse().unwrap()]);
    let srv = TestServer::start(options).await;
    let forwarded = [("x-forwarded-for", "203.0.113.7")];
    let _proxied = SseClient::connect(srv.addr, "/sse", &forwarded).await;
    let _direct = srv.sse("/sse").await;
    eventually("both streams", || srv.hub.connection_count() == 2).await;
    let (_, members) = srv.hub.members_page(ssehub::ROOM_ALL, 0, 10);
    let mut clients: Vec<String> = members
        .iter()
        .map(|m| m.client.unwrap().to_string())
        .collect();
    clients.sort_unstable();
    assert_eq!(clients, ["127.0.0.1", "203.0.113.7"]);
    for m in &members {
        assert_eq!(m.peer.unwrap().ip().to_string(), "127.0.0.1", "the proxy");
    }
    srv.stop().await;
}

/// Room names are the clients' (`?room=`): a room named like one of the API's routes is
/// still a room at `/rooms/{room}`, not that route.
#[tokio::test]
async fn a_room_named_like_a_route_is_still_a_room() {
    let options = without_history()
        .keep_alive(None)
        .rooms_from_query(true)
        .no_auto_join()
        .on_connect(|conn, _| async move {
            let _ = conn.send_event("ready", "");
        });
    let api = HubApi::new(options.hub().clone());
    let srv = TestServer::start_with(options, |s| s.fallback(api)).await;
    let mut clients = Vec::new();
    for room in ["rooms", "stats", "metrics", "publish"] {
        let mut c = srv.sse(&format!("/sse?room={room}")).await;
        c.next_of("ready").await;
        clients.push(c);
    }
    for room in ["rooms", "stats", "metrics", "publish"] {
        let page = get_json(&srv, &format!("/rooms/{room}")).await;
        assert_eq!(page["room"], room, "/rooms/{room}: {page}");
        assert_eq!(page["members"], 1, "/rooms/{room}");
    }
    srv.stop().await;
}
