//! Graceful shutdown with open streams: the server returns, the streams end, queued
//! events and the shutdown message are delivered first.

mod common;

use std::time::Duration;

use common::*;
use ssehub::decode::Item;
use ssehub::{Message, SseOptions};
use tokio::net::TcpStream;

#[tokio::test]
async fn stop_ends_every_open_stream() {
    let (options, mut handout) = Handout::wrap(SseOptions::new());
    let srv = TestServer::start_with(options, |s| {
        s.shutdown_message(
            Message::builder()
                .event("shutdown")
                .data("bye")
                .build()
                .unwrap(),
        )
    })
    .await;
    let addr = srv.addr;
    let hub = srv.hub.clone();
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for i in 0..5 {
        let (c, conn) = handout.open(&srv, &format!("/sse?room=r{}", i % 2)).await;
        clients.push(c);
        conns.push(conn);
    }
    // Queued but not yet read when the stop comes: still delivered.
    assert_eq!(
        hub.to("r0")
            .publish(&Message::new("before stop"))
            .unwrap()
            .delivered,
        3
    );
    srv.stop().await;

    for (i, c) in clients.iter_mut().enumerate() {
        let events: Vec<(String, String)> = c
            .until_end()
            .await
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(e) => Some((e.event, e.data)),
                _ => None,
            })
            .collect();
        let mut expected = Vec::new();
        if i % 2 == 0 {
            expected.push(("message".to_owned(), "before stop".to_owned()));
        }
        expected.push(("shutdown".to_owned(), "bye".to_owned()));
        assert_eq!(events, expected, "client {i}");
    }
    assert!(conns.iter().all(|c| c.is_closed()));
    assert_eq!((hub.connection_count(), hub.room_count()), (0, 0));
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn stop_is_bounded_with_a_client_that_does_not_read() {
    let (options, mut handout) = Handout::wrap(SseOptions::new().outbox_limit(64 * 1024 * 1024));
    let srv = TestServer::start_with(options, |s| s.grace(Duration::from_millis(300))).await;
    // A raw client that reads its response head and then nothing more.
    let (stalled, head) = raw_request(srv.addr, "GET /sse HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let conn = handout.next().await;
    // Far more than the socket buffers hold: the stream cannot finish flushing.
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..256 {
        conn.send_event("bulk", &chunk).unwrap();
    }
    // A well-behaved client alongside it.
    let (mut reader, _) = handout.open(&srv, "/sse").await;
    srv.stop().await; // returns after the grace period at the latest
    assert!(conn.is_closed());
    reader.until_end().await;
    drop(stalled);
}

/// The `retry:` of each stream in `clients` (after the server stopped): exactly one each.
async fn shutdown_retries(clients: &mut [SseClient]) -> Vec<Duration> {
    let mut out = Vec::new();
    for c in clients {
        let retries: Vec<Duration> = c
            .until_end()
            .await
            .into_iter()
            .filter_map(|item| match item {
                Item::Retry(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(retries.len(), 1, "one hint, at shutdown: {retries:?}");
        out.push(retries[0]);
    }
    out
}

#[tokio::test]
async fn stop_tells_every_stream_a_reconnection_delay_from_the_default_window() {
    // No retry configured: streams start without a hint and get one (1 s to 6 s) when
    // the server stops, so that they do not all come back together.
    let srv = TestServer::start(SseOptions::new()).await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(srv.sse("/sse").await);
    }
    eventually("30 streams", || srv.hub.connection_count() == 30).await;
    srv.stop().await;
    let delays = shutdown_retries(&mut clients).await;
    for d in &delays {
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(6)).contains(d),
            "{d:?}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(distinct.len() > 20, "spread out: {delays:?}");
}

#[tokio::test]
async fn the_shutdown_retries_are_spread_across_the_configured_window() {
    // A stream's own `retry` (at its start) does not narrow the window at shutdown.
    let (from, to) = (Duration::from_secs(2), Duration::from_secs(12));
    let options = SseOptions::new()
        .retry(Some(Duration::from_millis(700)))
        .shutdown_retry(from, to);
    let srv = TestServer::start(options).await;
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(srv.sse("/sse").await);
    }
    eventually("64 streams", || srv.hub.connection_count() == 64).await;
    srv.stop().await;
    let mut delays = Vec::new();
    for c in &mut clients {
        // The stream's first hint is its own 700 ms (jittered); the last, shutdown's.
        let retries: Vec<Duration> = c
            .until_end()
            .await
            .into_iter()
            .filter_map(|item| match item {
                Item::Retry(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(retries.len(), 2, "{retries:?}");
        assert!(retries[0] <= Duration::from_millis(700), "{retries:?}");
        delays.push(retries[1]);
    }
    // Every delay in the window, and every fifth of the window has some (with 64
    // uniform draws a fifth is empty with a chance of (4/5)^64, about 6e-7).
    let width = to - from;
    let mut fifths = [0usize; 5];
    for d in &delays {
        assert!((from..=to).contains(d), "{d:?} outside {from:?}..={to:?}");
        let i = ((*d - from).as_secs_f64() / width.as_secs_f64() * 5.0) as usize;
        fifths[i.min(4)] += 1;
    }
    assert!(
        fifths.iter().all(|&n| n > 0),
        "spread: {fifths:?} of {delays:?}"
    );
}

/// Grace period and header timeout far beyond every `within` bound: a shutdown that
/// waited for either would fail these tests.
fn patient(s: ssehub::Server) -> ssehub::Server {
    s.grace(Duration::from_secs(60))
        .header_timeout(Duration::from_secs(60))
}

#[tokio::test]
async fn a_client_that_sent_nothing_does_not_delay_shutdown() {
    let srv = TestServer::start_with(SseOptions::new(), patient).await;
    let _silent = TcpStream::connect(srv.addr).await.unwrap();
    let _open = srv.sse("/sse").await;
    eventually("one stream", || srv.hub.connection_count() == 1).await;
    srv.stop().await; // bounded by `within`
}

#[tokio::test]
async fn no_stream_opens_once_shutdown_has_begun() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(SseOptions::new(), patient).await;
    let hub = srv.hub.clone();
    let mut late = TcpStream::connect(srv.addr).await.unwrap();
    late.write_all(b"GET /sse HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = late.write_all(b"\r\n").await; // the rest of the head, after the stop
    let mut answer = Vec::new();
    let _ = within("the late client's end", late.read_to_end(&mut answer)).await;
    within("shutdown", stopping).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "a stream opened after shutdown began: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(hub.connection_count(), 0);
}
