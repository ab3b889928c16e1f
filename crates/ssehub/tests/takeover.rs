//! A fresh connection whose first request opens a stream is served on the bare socket
//! (also with `Connection: close` or bytes pipelined after the head); a stream opened on
//! a reused keep-alive connection goes through hyper. Both paths must behave the same:
//! handshake, delivery, chunked framing, and clean-up when the client leaves, even one
//! that sent more than its request. A stream on the bare socket says `connection: close`:
//! nothing after it on that connection is ever answered.

mod common;

use common::*;
use ssehub::{Message, SseOptions};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Open a stream with `request` on `stream`, then check delivery and clean-up. `connection`:
/// the `Connection` header the answer must carry.
async fn check_stream(srv: &TestServer, mut stream: TcpStream, request: &str, connection: &str) {
    let head = raw_exchange(&mut stream, request).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("connection"), Some(connection), "{request:?}");
    assert_eq!(
        head.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);
    assert!(head.header("date").is_some());
    let mut buf = head.rest;
    read_until_contains(&mut stream, &mut buf, b": connected\n\n").await;
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    let m = Message::builder()
        .event("e")
        .data("one\ntwo!!")
        .build()
        .unwrap();
    assert_eq!(srv.hub.to("r").publish(&m).unwrap().delivered, 1);
    // One chunk: its size line, the frame, CRLF.
    // The frame is 32 (0x20) bytes, a size with no hex letters: hyper writes chunk sizes
    // in upper case, the bare-socket path in lower case (both are valid).
    let frame = "event: e\ndata: one\ndata: two!!\n\n";
    assert_eq!(frame.len(), 0x20);
    let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
    read_until_contains(&mut stream, &mut buf, chunk.as_bytes()).await;
    drop(stream);
    eventually("connection gone", || srv.hub.connection_count() == 0).await;
    assert_eq!(srv.hub.room_count(), 0);
}

fn sse_options() -> SseOptions {
    common::without_history()
        .keep_alive(None)
        .auto_join_room("r")
}

#[tokio::test]
async fn first_request_stream_is_taken_over() {
    let srv = TestServer::start(sse_options()).await;
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    check_stream(
        &srv,
        stream,
        "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n",
        "close",
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn stream_on_a_reused_connection_goes_through_hyper() {
    let srv = TestServer::start(sse_options()).await;
    let (mut stream, first) =
        raw_request(srv.addr, "GET /nothing HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(first.status, 404);
    let len: usize = first.header("content-length").unwrap().parse().unwrap();
    let mut body = first.rest;
    while body.len() < len {
        let mut chunk = [0u8; 256];
        let n = within("404 body", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "nothing beyond the 404's body");
    // hyper can answer what follows the stream on this connection.
    let request = "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n";
    check_stream(&srv, stream, request, "keep-alive").await;
    srv.stop().await;
}

#[tokio::test]
async fn connection_close_and_pipelined_requests_are_taken_over_too() {
    let srv = TestServer::start(sse_options()).await;
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    check_stream(
        &srv,
        stream,
        "GET /sse HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        "close",
    )
    .await;
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    check_stream(
        &srv,
        stream,
        "GET /sse HTTP/1.1\r\nhost: t\r\n\r\nGET /other HTTP/1.1\r\nhost: t\r\n\r\n",
        // The pipelined request is never answered: no proxy may wait for it.
        "close",
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_body_length_other_than_one_content_length_zero_goes_to_hyper() {
    let srv = TestServer::start(sse_options()).await;
    // hyper refuses conflicting lengths: the bare-socket path must not open a stream
    // (and leave "hello" to be read as junk, or as a smuggled request).
    for request in [
        "GET /sse HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\ncontent-length: 5\r\n\r\nhello",
        "GET /sse HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ncontent-length: 0\r\n\r\nhello",
    ] {
        let (_stream, head) = raw_request(srv.addr, request).await;
        assert_eq!(head.status, 400, "{request:?}");
    }
    assert_eq!(srv.hub.stats().connections_total, 0, "no stream opened");
    // A body hyper can read: the stream opens through hyper, which can go on with the
    // connection afterwards (so it says keep-alive, and the bare socket would not).
    let request = "GET /sse HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello";
    let (_stream, head) = raw_request(srv.addr, request).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("connection"), Some("keep-alive"));
    srv.stop().await;
}

#[tokio::test]
async fn refusals_on_the_taken_over_path_are_complete_answers() {
    let srv = TestServer::start(
        sse_options()
            .authorize(|_| async { Err::<(), _>(ssehub::Rejection::forbidden().body("no")) }),
    )
    .await;
    let (mut stream, head) = raw_request(srv.addr, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 403);
    assert_eq!(head.header("content-length"), Some("2"));
    assert_eq!(head.header("connection"), Some("close"));
    let mut rest = head.rest;
    within("end of answer", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(rest, b"no");
    assert_eq!(srv.hub.connection_count(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_stream_that_keeps_up_writes_each_event_at_once_whatever_its_window() {
    // A window far longer than the read's bound: each event must come without it.
    let window = std::time::Duration::from_secs(120);
    let srv = TestServer::start(sse_options().batch_window(window)).await;
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let head = raw_exchange(&mut stream, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let mut buf = head.rest;
    read_until_contains(&mut stream, &mut buf, b": connected\n\n").await;
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    for data in ["a", "b", "c"] {
        assert_eq!(
            srv.hub
                .to("r")
                .publish(&Message::new(data))
                .unwrap()
                .delivered,
            1
        );
        let frame = format!("data: {data}\n\n");
        let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
        read_until_contains(&mut stream, &mut buf, chunk.as_bytes()).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_busy_stream_gets_what_gathered_in_its_batching_window_in_one_write() {
    let window = std::time::Duration::from_millis(400);
    let options = sse_options().batch_window(window).adaptive_batching(false);
    let srv = TestServer::start(options).await;
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let head = raw_exchange(&mut stream, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let mut buf = head.rest;
    read_until_contains(&mut stream, &mut buf, b": connected\n\n").await;
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    assert_eq!(
        srv.hub
            .to("r")
            .publish(&Message::new("a"))
            .unwrap()
            .delivered,
        1
    );
    read_until_contains(&mut stream, &mut buf, b"data: a\n\n").await;
    // The stream has just written: `b` waits for the window to pass, and `c`, sent a
    // moment later, joins it in the same write. Without a window, `b` would have gone
    // out alone, before `c` was sent.
    assert_eq!(
        srv.hub
            .to("r")
            .publish(&Message::new("b"))
            .unwrap()
            .delivered,
        1
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        srv.hub
            .to("r")
            .publish(&Message::new("c"))
            .unwrap()
            .delivered,
        1
    );
    let frames = "data: b\n\ndata: c\n\n";
    let chunk = format!("{:x}\r\n{frames}\r\n", frames.len());
    read_until_contains(&mut stream, &mut buf, chunk.as_bytes()).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_204_on_the_taken_over_path_has_no_content_length() {
    let srv = TestServer::start(
        sse_options().authorize(|_| async { Err::<(), _>(ssehub::Rejection::stop()) }),
    )
    .await;
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let head = raw_exchange(&mut stream, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 204);
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("transfer-encoding"), None);
    srv.stop().await;
}

/// Decode a chunked body: the data of every complete chunk, in order.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(httparse::Status::Complete((at, len))) = httparse::parse_chunk_size(raw) {
        let len = len as usize;
        if len == 0 || raw.len() < at + len + 2 {
            break;
        }
        body.extend_from_slice(&raw[at..at + len]);
        assert_eq!(&raw[at + len..at + len + 2], b"\r\n", "chunk framing");
        raw = &raw[at + len + 2..];
    }
    body
}

#[tokio::test]
async fn events_written_straight_to_a_full_socket_arrive_whole_and_in_order() {
    // No batching window: every event for an idle stream is written by the sender. The
    // client does not read, so its socket fills and writes are cut short; what a write
    // left must go out next, before anything queued after it.
    let srv = TestServer::start(
        sse_options()
            .batch_window(std::time::Duration::ZERO)
            .outbox_limit(64 << 20),
    )
    .await;
    let mut stalled = stalled_client(srv.addr, "/sse").await;
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    let pad = "p".repeat(3000);
    let mut expected = Vec::new();
    for i in 0..1500 {
        let m = Message::new(format!("{i} {pad}"));
        expected.extend_from_slice(&m.encode());
        assert_eq!(srv.hub.to("r").publish(&m).unwrap().delivered, 1);
        if i % 10 == 0 {
            // Let the stream's task run: it parks again once it has caught up.
            tokio::task::yield_now().await;
        }
    }
    let conn = srv.hub.members("r").pop().unwrap();
    assert!(conn.queued_bytes() > 0, "the socket never filled up");
    conn.close();
    let raw = until_closed("the stream to end", &mut stalled).await;
    let body = dechunk(&raw);
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "the stream ends with the last chunk"
    );
    assert!(
        body.ends_with(&expected),
        "every event, whole and in order ({} bytes of {})",
        body.len(),
        expected.len()
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_much_after_its_request_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let srv = TestServer::start(sse_options()).await;
    let (stream, head) = raw_request(srv.addr, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let (mut rx, mut tx) = stream.into_split();
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    // A little (a request pipelined after the stream's) is read and ignored.
    tx.write_all(b"GET /other HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        srv.hub
            .to("r")
            .publish(&Message::new("still here"))
            .unwrap()
            .delivered,
        1
    );
    let mut buf = head.rest;
    let mut rx_stream = rx.reunite(tx).unwrap();
    read_until_contains(&mut rx_stream, &mut buf, b"data: still here\n\n").await;
    (rx, tx) = rx_stream.into_split();
    // Much more is not: the stream ends long before 16 MiB have been read.
    let junk = tokio::spawn(async move {
        let chunk = vec![b'j'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 16 << 20 {
            if tx.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    eventually("the stream cut off", || srv.hub.connection_count() == 0).await;
    let mut rest = Vec::new();
    let _ = within(
        "the end",
        tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut rest),
    )
    .await;
    let sent = within("the junk writer", junk).await.unwrap();
    assert!(sent < 16 << 20, "the server read all {sent} bytes");
    srv.stop().await;
}

/// Send `request` on a fresh connection: the response head.
async fn answer(srv: &TestServer, request: &str) -> RawHead {
    raw_request(srv.addr, request).await.1
}

#[tokio::test]
async fn what_the_bare_socket_does_not_take_goes_to_hyper() {
    let srv = TestServer::start(sse_options()).await;
    // Each of these opens a stream through hyper (which can go on with the connection
    // afterwards, so says keep-alive) or gets hyper's own answer, never the bare socket's.
    let big = format!(
        "GET /sse HTTP/1.1\r\nhost: t\r\nx-pad: {}\r\n\r\n",
        "p".repeat(9000)
    );
    let through_hyper = [
        "GET /sse HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /sse HTTP/1.1\r\nhost: t\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
        "GET /sse HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\n\r\n",
        big.as_str(),
    ];
    for request in through_hyper {
        let head = answer(&srv, request).await;
        assert_eq!(head.status, 200, "{:.60}", request);
        assert_eq!(
            head.header("connection"),
            Some("keep-alive"),
            "{:.60}",
            request
        );
    }
    // HTTP/1.0: hyper answers in HTTP/1.0.
    let head = answer(&srv, "GET /sse HTTP/1.0\r\nhost: t\r\n\r\n").await;
    assert_eq!((head.status, head.version), (200, 0));
    // HEAD: the handshake's headers, no stream.
    let head = answer(&srv, "HEAD /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("connection"), Some("keep-alive"));
    srv.stop().await;
}

#[tokio::test]
async fn authorize_and_admission_answer_alike_on_both_paths() {
    let srv = TestServer::start(sse_options().max_connections(Some(1)).authorize(
        |ctx| async move {
            match ctx.query("token") {
                Some("ok") => Ok(()),
                _ => Err(ssehub::Rejection::forbidden().body("no")),
            }
        },
    ))
    .await;
    // The same requests on a fresh connection (bare socket) and after a first request
    // on the same connection (hyper).
    let on = |reuse: bool, path: &'static str| {
        let addr = srv.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if reuse {
                let head = raw_exchange(&mut s, "HEAD /nothing HTTP/1.1\r\nhost: t\r\n\r\n").await;
                assert_eq!(head.status, 404);
            }
            let head =
                raw_exchange(&mut s, &format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n")).await;
            (head, s)
        }
    };
    for reuse in [false, true] {
        let (refused, _s) = on(reuse, "/sse").await;
        assert_eq!(refused.status, 403, "reused: {reuse}");
        let (first, s) = on(reuse, "/sse?token=ok").await;
        assert_eq!(first.status, 200, "reused: {reuse}");
        let (full, _s) = on(reuse, "/sse?token=ok").await;
        assert_eq!(full.status, 503, "reused: {reuse}");
        assert_eq!(full.header("retry-after"), Some("5"));
        drop(s);
        eventually("the slot given back", || srv.hub.connection_count() == 0).await;
    }
    assert_eq!(srv.hub.stats().connections_total, 2);
    srv.stop().await;
}
