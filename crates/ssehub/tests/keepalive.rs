//! Keep-alive over real connections: idle streams get `: ping`, busy ones do not.
//!
//! No assertion is about time: the tests count comments relative to each other.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ssehub::decode::Item;
use ssehub::{Connection, SseOptions};
use tokio::sync::mpsc;

fn is_ping(i: &Item) -> bool {
    matches!(i, Item::Comment(c) if c == "ping")
}

#[tokio::test]
async fn idle_stream_is_pinged() {
    let srv =
        TestServer::start(SseOptions::new().keep_alive(Some(Duration::from_millis(100)))).await;
    let mut c = srv.sse("/sse").await;
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    for _ in 0..3 {
        let item = c.next_item().await.expect("stream open");
        assert!(is_ping(&item), "only pings on an idle stream: {item:?}");
    }
    let raw = String::from_utf8_lossy(&c.raw).into_owned();
    assert!(
        raw.starts_with(": connected\n\n: ping\n\n: ping\n\n"),
        "{raw:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn busy_stream_is_not_pinged_while_idle_one_is() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Connection>();
    let options = SseOptions::new()
        .keep_alive(Some(Duration::from_millis(150)))
        .on_connect(move |conn, ctx| {
            let tx = tx.clone();
            async move {
                if ctx.query("busy").is_some() {
                    let _ = tx.send(conn);
                }
            }
        });
    let srv = TestServer::start(options).await;
    let mut idle = srv.sse("/sse").await;
    let mut busy = srv.sse("/sse?busy=1").await;
    let conn = within("busy connection", rx.recv()).await.unwrap();

    // An OS thread sends to the busy stream every millisecond: far more often than the
    // keep-alive interval, so every sweep finds it active.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                if conn.send_event("tick", &n.to_string()).is_err() {
                    break;
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    // Let the busy stream start flowing before counting the idle stream's pings.
    let first = busy.next_event().await;
    assert_eq!(first.event, "tick");

    // Meanwhile, read the idle stream until it has been pinged five times, and read the
    // busy one concurrently so it never backs up.
    let busy_reader = tokio::spawn(async move {
        let (mut events, mut pings) = (1u64, 0u64);
        while let Some(item) = busy.next_item().await {
            match item {
                Item::Event(_) => events += 1,
                ref i if is_ping(i) => pings += 1,
                _ => {}
            }
        }
        (events, pings)
    });
    let mut idle_pings = 0;
    while idle_pings < 5 {
        match idle.next_item().await.expect("idle stream open") {
            ref i if is_ping(i) => idle_pings += 1,
            Item::Event(e) => panic!("the idle stream got an event: {e:?}"),
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    srv.hub.close_all(); // ends the busy stream after what is queued
    let (events, busy_pings) = within("busy reader", busy_reader).await.unwrap();
    assert_eq!(events, sent, "every event arrived");
    // Five sweeps pinged the idle stream; the busy stream had traffic at each of them.
    // One ping is tolerated, for a sender thread descheduled for a whole interval.
    assert!(
        busy_pings <= 1,
        "busy stream got {busy_pings} pings while the idle one got {idle_pings}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn keep_alive_none_sends_no_pings() {
    // Two endpoints on one server, one with keep-alive and one without: the first one's
    // pings are the clock that shows the second stayed silent.
    let quiet = SseOptions::new().prefix("/quiet").keep_alive(None);
    let loud = SseOptions::new()
        .prefix("/loud")
        .keep_alive(Some(Duration::from_millis(50)));
    let srv = TestServer::start_with(quiet, |s| s.sse(loud)).await;
    let mut q = srv.sse("/quiet").await;
    let mut l = srv.sse("/loud").await;
    assert_eq!(q.next_item().await, Some(Item::Comment("connected".into())));
    let mut pings = 0;
    while pings < 4 {
        if is_ping(&l.next_item().await.unwrap()) {
            pings += 1;
        }
    }
    // Anything the quiet stream got meanwhile comes before this marker.
    assert_eq!(
        srv.hub
            .to("__all")
            .publish(&ssehub::Message::new("marker"))
            .unwrap()
            .delivered,
        1
    );
    match q.next_item().await.unwrap() {
        Item::Event(e) => assert_eq!(e.data, "marker"),
        other => panic!("the quiet stream got {other:?} before the marker"),
    }
    srv.stop().await;
}

/// Keep-alive is each endpoint's: two endpoints on one hub, one pinging every 100 ms and
/// one not at all. The quiet one's stream sees no ping while the other's sees three.
#[tokio::test]
async fn two_endpoints_on_one_hub_ping_only_their_own_streams() {
    let hub = ssehub::Hub::new();
    let pinged = SseOptions::new()
        .prefix("/pinged")
        .with_hub(hub.clone())
        .keep_alive(Some(Duration::from_millis(100)));
    let quiet = SseOptions::new()
        .prefix("/quiet")
        .with_hub(hub.clone())
        .keep_alive(None);
    let srv = TestServer::start_with(pinged, |s| s.sse(quiet)).await;
    let mut p = srv.sse("/pinged").await;
    let mut q = srv.sse("/quiet").await;
    assert_eq!(p.next_item().await, Some(Item::Comment("connected".into())));
    assert_eq!(q.next_item().await, Some(Item::Comment("connected".into())));
    for _ in 0..3 {
        let item = p.next_item().await.expect("stream open");
        assert!(is_ping(&item), "the pinged endpoint's stream: {item:?}");
    }
    hub.to(ssehub::ROOM_ALL)
        .publish(&ssehub::Message::new("marker"))
        .unwrap();
    let item = q.next_item().await.expect("stream open");
    assert!(
        matches!(&item, Item::Event(e) if e.data == "marker"),
        "the quiet endpoint's stream got nothing before the marker: {item:?}"
    );
    srv.stop().await;
}
