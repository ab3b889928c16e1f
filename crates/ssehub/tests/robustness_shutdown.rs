//! Graceful shutdown: every stream gets what was queued before the shutdown, then the
//! shutdown message, then a clean end; a client that does not read cannot hold the
//! server past its grace period, and what it never got is logged. Reconnection hints
//! are spread out so a restart does not bring every client back at once.

mod common;

use std::time::Duration;

use common::{stalled_client, until_closed, within, Handout, Logs, SseClient, TestServer};
use ssehub::decode::Item;
use ssehub::{Message, SseOptions};

fn farewell() -> Message {
    Message::builder()
        .event("bye")
        .data("server shutting down")
        .build()
        .unwrap()
}

/// Events (name, data) until the stream ends.
async fn read_to_end(mut c: SseClient) -> Vec<(String, String)> {
    c.until_end()
        .await
        .into_iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some((e.event, e.data)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn shutdown_delivers_what_was_queued_then_the_farewell() {
    const STREAMS: usize = 10;
    const EVENTS: usize = 200;
    // Batching after every write: the events gather in the outboxes, unwritten.
    let sse = SseOptions::new().keep_alive(None).adaptive_batching(false);
    let (options, mut handout) = Handout::wrap(sse);
    let srv = TestServer::start_with(options, |s| s.shutdown_message(farewell())).await;
    let mut readers = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..STREAMS {
        let (client, conn) = handout.open(&srv, "/sse").await;
        readers.push(tokio::spawn(read_to_end(client)));
        conns.push(conn);
    }
    let payload = "p".repeat(1024);
    for n in 0..EVENTS {
        let m = Message::builder()
            .event("n")
            .data(format!("{n} {payload}"))
            .build()
            .unwrap();
        assert_eq!(srv.hub.to("__all").publish(&m).unwrap().delivered, STREAMS);
    }
    // Nothing has been written yet (this runtime has one thread and the readers have
    // not run): every stream has its events queued when the shutdown starts.
    for c in &conns {
        assert!(c.queued_bytes() > EVENTS * 1024, "{}", c.queued_bytes());
    }
    srv.stop().await;
    for r in readers {
        let events = within("a reader", r).await.unwrap();
        assert_eq!(
            events.len(),
            EVENTS + 1,
            "everything queued, then the farewell"
        );
        for (n, (name, data)) in events[..EVENTS].iter().enumerate() {
            assert_eq!(name, "n");
            assert_eq!(data, &format!("{n} {payload}"), "in order");
        }
        assert_eq!(
            events[EVENTS],
            ("bye".to_string(), "server shutting down".to_string())
        );
    }
    assert!(conns.iter().all(|c| c.is_closed()));
}

#[tokio::test]
async fn a_client_that_does_not_read_cannot_hold_the_shutdown() {
    // This test's runtime has one thread: the subscriber sees the server's logs.
    let (logs, _guard) = Logs::capture();

    let (options, mut handout) =
        Handout::wrap(SseOptions::new().keep_alive(None).outbox_limit(32 << 20));
    let srv = TestServer::start_with(options, |s| {
        s.shutdown_message(farewell())
            .grace(Duration::from_millis(300))
    })
    .await;
    let (good, _good_conn) = handout.open(&srv, "/sse").await;
    let reader = tokio::spawn(read_to_end(good));
    let mut stalled = stalled_client(srv.addr, "/sse").await;
    let stalled_conn = handout.next().await;

    // Broadcast until the kernel buffers of the stalled client are full and events
    // wait in its outbox.
    let payload = "s".repeat(16 * 1024);
    let mut sent = 0;
    within("the stalled client's outbox to fill", async {
        while stalled_conn.queued_bytes() < 256 * 1024 {
            assert!(sent < 1600, "24 MiB sent and still nothing queued");
            let m = Message::builder()
                .event("n")
                .data(format!("{sent} {payload}"))
                .build()
                .unwrap();
            assert_eq!(srv.hub.to("__all").publish(&m).unwrap().delivered, 2);
            sent += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let queued = stalled_conn.queued_bytes();

    // Returns within its grace period although one client never reads.
    srv.stop().await;

    let events = within("the good reader", reader).await.unwrap();
    assert_eq!(events.len(), sent + 1, "the reading client got everything");
    assert_eq!(events[sent].0, "bye");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("grace period over"))
        .unwrap_or_else(|| panic!("no grace-period log in {text:?}"));
    assert!(line.contains("open_streams=1"), "{line}");
    assert!(line.contains("streams_with_queued_events=1"), "{line}");
    let logged: usize = line
        .split("queued_bytes=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"));
    assert!(logged >= queued, "{logged} < {queued}");
    // The dropped stream's transport is gone: what was in flight drains, then it ends.
    until_closed("the stalled socket to end", &mut stalled).await;
}

#[tokio::test]
async fn retry_hints_are_spread_between_80_and_100_percent() {
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .retry(Some(Duration::from_millis(1000))),
    )
    .await;
    let mut hints = Vec::new();
    for _ in 0..50 {
        let mut c = srv.sse("/sse").await;
        assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
        match c.next_item().await {
            Some(Item::Retry(d)) => hints.push(d.as_millis()),
            other => panic!("expected a retry hint, got {other:?}"),
        }
    }
    assert!(
        hints.iter().all(|ms| (800..=1000).contains(ms)),
        "{hints:?}"
    );
    hints.sort();
    hints.dedup();
    assert!(
        hints.len() > 1,
        "every connection got the same hint: {hints:?}"
    );
    srv.stop().await;
}
