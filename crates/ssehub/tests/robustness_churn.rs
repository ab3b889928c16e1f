//! Churn: connections that come and go in every way (clean close, reset, dropped
//! mid-handshake, HEAD, headers never finished, half-closed) while events are broadcast
//! leave nothing behind: no connection, no room, every on_disconnect run once, and the
//! server's memory back near where it was.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    eventually, raw_request, read_until_contains, rss, stream_request, until_closed, within,
    SseClient, TestServer,
};
use futures_util::future::join_all;
use http::StatusCode;
use ssehub::decode::Item;
use ssehub::{Message, SseOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ROUNDS: usize = 6;
const PER_ROUND: usize = 60;
const KINDS: usize = 6;

/// One client of kind `i % KINDS`. Returns whether it opened a stream.
async fn churn_one(addr: SocketAddr, i: usize) -> bool {
    let path = format!("/sse?room=churn-{}", i % 7);
    match i % KINDS {
        // A real client that reads a little and closes cleanly.
        0 => {
            let mut c = SseClient::connect(addr, &path, &[]).await;
            assert_eq!(c.status, StatusCode::OK);
            assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
            true
        }
        // A stream reset by the client (RST instead of FIN).
        1 => {
            let (s, head) = raw_request(addr, &stream_request(addr, &path)).await;
            assert_eq!(head.status, 200);
            s.set_zero_linger().unwrap();
            true
        }
        // Dropped in the middle of its request headers.
        2 => {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /sse?room=x HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            false
        }
        // HEAD: the handshake headers, no stream.
        3 => {
            let (_s, head) =
                raw_request(addr, &format!("HEAD /sse HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
            assert_eq!(head.status, 200);
            false
        }
        // Headers never finished: the server's header timeout cuts it.
        4 => {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /sse HTTP/1.1\r\nHo").await.unwrap();
            until_closed("the server to close the connection", &mut s).await;
            false
        }
        // Half-closed: the client shuts its sending side after the stream opened and
        // keeps reading until the server ends the stream.
        _ => {
            let (mut s, head) = raw_request(addr, &stream_request(addr, &path)).await;
            assert_eq!(head.status, 200);
            let mut seen = head.rest;
            read_until_contains(&mut s, &mut seen, b": connected").await;
            s.shutdown().await.unwrap();
            until_closed("the server to close the connection", &mut s).await;
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let d = disconnects.clone();
    let options = SseOptions::new()
        .keep_alive(Some(Duration::from_millis(50)))
        .on_connect(|conn, ctx| async move {
            for room in ctx.query_all("room") {
                let _ = ctx.hub().join(room, &conn);
            }
        })
        .on_disconnect(move |_| {
            let d = d.clone();
            async move {
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
    let srv =
        TestServer::start_with(options, |s| s.header_timeout(Duration::from_millis(200))).await;

    // Events keep flowing to every room while clients come and go.
    let stop = Arc::new(AtomicBool::new(false));
    let broadcaster = {
        let hub = srv.hub.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let m = Message::new(format!("event {n}"));
                hub.to("__all").publish(&m).unwrap();
                hub.to(format!("churn-{}", n % 7)).publish(&m).unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };

    let mut streams = 0;
    let mut baseline = 0;
    for round in 0..ROUNDS {
        let clients = (0..PER_ROUND).map(|k| churn_one(srv.addr, round * PER_ROUND + k));
        let opened = within("a round of churn", join_all(clients)).await;
        streams += opened.iter().filter(|&&o| o).count();
        if round == 0 {
            // The first round warms up allocator arenas and runtime buffers.
            eventually("the first round to be gone", || {
                srv.hub.connection_count() == 0
            })
            .await;
            baseline = rss();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = within("the broadcaster", broadcaster).await.unwrap();
    assert!(sent > 0);

    eventually("every connection and room to be gone", || {
        srv.hub.connection_count() == 0 && srv.hub.room_count() == 0
    })
    .await;
    eventually("every on_disconnect to run", || {
        disconnects.load(Ordering::SeqCst) == streams
    })
    .await;
    let stats = srv.hub.stats();
    assert_eq!(stats.connections_total as usize, streams, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    let growth = rss().saturating_sub(baseline);
    eprintln!("{streams} streams, {sent} broadcasts, memory growth {growth} bytes");
    assert!(
        growth < 16 * 1024 * 1024,
        "memory grew by {growth} bytes over {} connections",
        ROUNDS * PER_ROUND
    );

    // Still serving.
    let mut c = srv.sse("/sse").await;
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    srv.hub
        .to("__all")
        .publish(&Message::new("after the storm"))
        .unwrap();
    assert_eq!(c.next_event().await.data, "after the storm");
    srv.stop().await;
}
