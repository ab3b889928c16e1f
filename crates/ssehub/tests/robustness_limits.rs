//! Limits with clear answers: connection caps (global and per client address) answer
//! 503 with `Retry-After` and open no stream, and give the slot back when a stream
//! closes; rooms per connection and room names are checked on join; clients that never
//! finish their request headers are cut by the header timeout and cost no connection.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, raw_exchange, stream_request, until_closed, within, RawHead, TestServer};
use http::StatusCode;
use ssehub::decode::Item;
use ssehub::{Hub, HubConfig, JoinError, Message, SseOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Connect to `addr` from the local address `from` (127.0.0.x).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    within("connect", sock.connect(addr)).await.unwrap()
}

/// A stream request from `from`: the response head, and the socket (kept open).
async fn open_from(from: [u8; 4], addr: SocketAddr) -> (RawHead, TcpStream) {
    let mut s = connect_from(from, addr).await;
    let head = raw_exchange(&mut s, &stream_request(addr, "/sse")).await;
    (head, s)
}

fn assert_refused(head: &RawHead) {
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("5"));
    assert_ne!(
        head.header("content-type"),
        Some("text/event-stream; charset=utf-8"),
        "a refusal is not a stream"
    );
}

#[tokio::test]
async fn global_cap_answers_503_and_gives_the_slot_back() {
    let srv = TestServer::start(SseOptions::new().keep_alive(None).max_connections(Some(3))).await;
    let mut open = Vec::new();
    for from in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]] {
        let (head, s) = open_from(from, srv.addr).await;
        assert_eq!(head.status, 200);
        open.push(s);
    }
    for from in [[127, 0, 0, 1], [127, 0, 0, 4]] {
        let (head, _s) = open_from(from, srv.addr).await;
        assert_refused(&head);
    }
    let stats = srv.hub.stats();
    assert_eq!(stats.connections_total, 3, "refusals opened no stream");
    assert_eq!(stats.connections, 3);
    // The open streams are untouched by the refusals.
    srv.hub
        .to("__all")
        .publish(&Message::new("to the three"))
        .unwrap();
    for s in &mut open {
        let mut buf = Vec::new();
        common::read_until_contains(s, &mut buf, b"data: to the three").await;
    }
    // One closes: its slot is given back.
    drop(open.remove(0));
    eventually("the closed stream to be forgotten", || {
        srv.hub.connection_count() == 2
    })
    .await;
    let (head, _s) = open_from([127, 0, 0, 4], srv.addr).await;
    assert_eq!(head.status, 200);
    assert_eq!(srv.hub.stats().connections_total, 4);
    srv.stop().await;
}

#[tokio::test]
async fn a_flood_of_refusals_logs_a_few_lines() {
    let (logs, _guard) = common::Logs::capture();
    let srv = TestServer::start(SseOptions::new().keep_alive(None).max_connections(Some(0))).await;
    for _ in 0..100 {
        let (head, _s) = open_from([127, 0, 0, 1], srv.addr).await;
        assert_refused(&head);
    }
    // At most 10 per 10 s from one call site (other tests' refusals may have taken some
    // of them: the limit is the process's).
    let lines = logs.count("stream refused");
    assert!(lines <= 10, "{lines} lines for 100 refusals");
    srv.stop().await;
}

#[tokio::test]
async fn per_address_cap_counts_each_address_apart() {
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .max_connections_per_ip(Some(2)),
    )
    .await;
    let (a1, _s1) = open_from([127, 0, 0, 1], srv.addr).await;
    let (a2, s2) = open_from([127, 0, 0, 1], srv.addr).await;
    assert_eq!((a1.status, a2.status), (200, 200));
    let (a3, _s3) = open_from([127, 0, 0, 1], srv.addr).await;
    assert_refused(&a3);
    // Another address has its own count.
    let (b1, _t1) = open_from([127, 0, 0, 2], srv.addr).await;
    let (b2, _t2) = open_from([127, 0, 0, 2], srv.addr).await;
    assert_eq!((b1.status, b2.status), (200, 200));
    let (b3, _t3) = open_from([127, 0, 0, 2], srv.addr).await;
    assert_refused(&b3);
    assert_eq!(srv.hub.connection_count(), 4);
    // A stream of 127.0.0.1 closes: 127.0.0.1 may open one again, 127.0.0.2 still not.
    drop(s2);
    eventually("the closed stream to be forgotten", || {
        srv.hub.connection_count() == 3
    })
    .await;
    let (b4, _t4) = open_from([127, 0, 0, 2], srv.addr).await;
    assert_refused(&b4);
    let (a4, _s4) = open_from([127, 0, 0, 1], srv.addr).await;
    assert_eq!(a4.status, 200);
    assert_eq!(srv.hub.stats().connections_total, 5);
    srv.stop().await;
}

/// A stream request from `from` with the extra header line `header`: its status.
async fn status_from(
    from: [u8; 4],
    addr: SocketAddr,
    header: &str,
    open: &mut Vec<TcpStream>,
) -> u16 {
    let mut s = connect_from(from, addr).await;
    let req = format!("GET /sse HTTP/1.1\r\nHost: {addr}\r\n{header}\r\n\r\n");
    let head = raw_exchange(&mut s, &req).await;
    open.push(s);
    head.status
}

#[tokio::test]
async fn ipv6_clients_behind_a_trusted_proxy_are_counted_per_64() {
    // This test is the proxy (127.0.0.1): it forwards for IPv6 clients.
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .max_connections_per_ip(Some(1))
            .trusted_proxies(["127.0.0.1".parse().unwrap()]),
    )
    .await;
    let (proxy, other) = ([127, 0, 0, 1], [127, 0, 0, 2]);
    let xff = |ip: &str| format!("X-Forwarded-For: 192.0.2.99, {ip}");
    let cases = [
        (proxy, xff("2001:db8:0:1::1"), 200),
        // Another address of the same /64: the same client.
        (proxy, xff("2001:db8:0:1::2"), 503),
        (
            proxy,
            "Forwarded: for=\"[2001:db8:0:1:ffff::9]:4711\"".into(),
            503,
        ),
        // Another /64, and another IPv4 client: others.
        (proxy, xff("2001:db8:0:2::1"), 200),
        (proxy, "Forwarded: for=198.51.100.4".into(), 200),
        // From a peer that is not a trusted proxy the header is the client's own word,
        // ignored: the peer's address counts.
        (other, xff("2001:db8:0:3::1"), 200),
        (other, xff("2001:db8:0:4::1"), 503),
    ];
    let mut open = Vec::new();
    for (from, header, expected) in cases {
        let status = status_from(from, srv.addr, &header, &mut open).await;
        assert_eq!(status, expected, "{from:?} {header}");
    }
    assert_eq!(srv.hub.connection_count(), 4);
    srv.stop().await;
}

/// An unfinished request head of about 8 KB (no blank line: hyper's business, past the
/// take-over's limit).
fn half_head() -> String {
    format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n",
        "p".repeat(8000)
    )
}

/// Whether the server has closed `s` (reads EOF or an error within a moment).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    use tokio::io::AsyncReadExt;
    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Half heads from `from`, each on a connection of its own.
async fn half_heads_from(from: [u8; 4], addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut s = connect_from(from, addr).await;
        s.write_all(half_head().as_bytes()).await.unwrap();
        conns.push(s);
    }
    conns
}

/// Wait until the hub has counted `n` refusals for `reason`, then sort `conns`: those
/// the server closed (how many), and those it holds. Which ones were closed depends on
/// the order the server read them in, not on the order they connected.
async fn once_refused(
    srv: &TestServer,
    reason: &str,
    n: u64,
    conns: Vec<TcpStream>,
) -> (usize, Vec<TcpStream>) {
    eventually(reason, || srv.hub.stats().refused[reason] >= n).await;
    let mut held = Vec::new();
    let mut closed = 0;
    for mut s in conns {
        if closed_by_server(&mut s).await {
            closed += 1;
        } else {
            held.push(s);
        }
    }
    (closed, held)
}

#[tokio::test]
async fn connections_without_a_request_are_capped_in_all_and_per_address() {
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(Duration::from_secs(60))
            .max_pending_connections(Some(6), Some(4))
    })
    .await;
    // Five half heads from one address: four held, one closed at once.
    let from_one = half_heads_from([127, 0, 0, 1], srv.addr, 5).await;
    let (closed, mut held) = once_refused(&srv, "max_pending_per_ip", 1, from_one).await;
    assert_eq!((closed, held.len()), (1, 4), "closed, held from 127.0.0.1");
    // Other addresses still get in, up to six in all. (Half a head counts at its first
    // read; one that sends nothing would, after a second:
    // silent_connections_are_capped_once_their_grace_is_over.)
    let mut others = Vec::new();
    for from in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        others.extend(half_heads_from(from, srv.addr, 1).await);
    }
    let (closed, others) = once_refused(&srv, "max_pending_connections", 1, others).await;
    assert_eq!((closed, others.len()), (1, 2), "closed, held in all");
    for s in &mut held {
        assert!(
            !closed_by_server(s).await,
            "a pending connection within the limits"
        );
    }
    // A connection that finishes its request (answered: 404) no longer counts: another
    // half head from its address is held in its place.
    assert_eq!(raw_exchange(&mut held[0], "\r\n").await.status, 404);
    let mut again = half_heads_from([127, 0, 0, 1], srv.addr, 1).await;
    assert!(
        !closed_by_server(&mut again[0]).await,
        "held in the freed place"
    );
    assert_eq!(srv.hub.stats().refused["max_pending_per_ip"], 1);
    // A complete request is never a slow one: from the capped address, served.
    let (head, _s) = open_from([127, 0, 0, 1], srv.addr).await;
    assert_eq!(head.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn joins_past_the_room_cap_or_with_bad_names_are_refused() {
    let hub = Hub::with_config(HubConfig::default().max_rooms_per_connection(3));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = SseOptions::new()
        .keep_alive(None)
        .no_auto_join()
        .with_hub(hub)
        .on_connect(move |conn, ctx| {
            let tx = tx.clone();
            async move {
                let results: Vec<_> = ctx
                    .query_all("room")
                    .map(|r| ctx.hub().join(r, &conn))
                    .collect();
                let _ = tx.send((conn, results));
            }
        });
    let srv = TestServer::start(options).await;
    let long = "r".repeat(129);
    let path = format!("/sse?room=a&room=b&room=a&room=c&room=d&room=&room=%0A&room={long}");
    let mut client = srv.sse(&path).await;
    assert_eq!(client.status, StatusCode::OK);
    let (conn, results) = within("on_connect", rx.recv()).await.unwrap();
    assert_eq!(results[0], Ok(true));
    assert_eq!(results[1], Ok(true));
    assert_eq!(results[2], Ok(false), "already in a");
    assert_eq!(results[3], Ok(true));
    assert_eq!(results[4], Err(JoinError::TooManyRooms(3)));
    assert!(
        matches!(results[5], Err(JoinError::InvalidRoom(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[6], Err(JoinError::InvalidRoom(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[7], Err(JoinError::InvalidRoom(_))),
        "{results:?}"
    );
    let mut rooms = conn.rooms();
    rooms.sort();
    assert_eq!(rooms, ["a", "b", "c"]);
    assert_eq!(srv.hub.room_count(), 3);
    // Leaving one makes room for another.
    assert!(srv.hub.leave("a", &conn));
    assert_eq!(srv.hub.join("d", &conn), Ok(true));
    srv.hub.to("d").publish(&Message::new("in d")).unwrap();
    assert_eq!(client.next_event().await.data, "in d");
    srv.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_by_the_header_timeout() {
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(Duration::from_millis(200))
    })
    .await;
    // Half a request line, then nothing.
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    half.write_all(b"GET /sse HT").await.unwrap();
    // A complete request line and one header, never the blank line.
    let mut most = TcpStream::connect(srv.addr).await.unwrap();
    most.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Connected, not a byte sent.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // Half the HTTP/2 connection preface.
    let mut preface = TcpStream::connect(srv.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for (what, s) in [
        ("half a request line cut", &mut half),
        ("unfinished headers cut", &mut most),
        ("a silent client cut", &mut silent),
        ("half an HTTP/2 preface cut", &mut preface),
    ] {
        let got = until_closed(what, s).await;
        assert!(
            !String::from_utf8_lossy(&got).contains("text/event-stream"),
            "no stream was opened"
        );
    }
    assert_eq!(srv.hub.stats().connections_total, 0);
    // The server keeps serving.
    let mut ok = srv.sse("/sse").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.next_item().await,
        Some(Item::Comment("connected".into()))
    );
    srv.stop().await;
}

#[tokio::test]
async fn no_rooms_allowed_and_an_auto_join_room_refuse_streams_plainly() {
    // A cap of 0 rooms per connection leaves none for the auto-join room: every stream
    // naming rooms is a 400 that says so (the count once went below zero).
    let hub = Hub::with_config(HubConfig::default().max_rooms_per_connection(0));
    let options = SseOptions::new()
        .keep_alive(None)
        .rooms_from_query(true)
        .with_hub(hub);
    let srv = TestServer::start(options).await;
    let client = srv.sse("/sse?room=a").await;
    assert_eq!(client.status, StatusCode::BAD_REQUEST);
    srv.stop().await;
}
