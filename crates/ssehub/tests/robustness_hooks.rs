//! A panic inside a user hook hurts no one else: a panicking on_disconnect is logged
//! and harmless, a panicking on_connect closes only its own stream while the streams
//! already open keep receiving.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{assert_boom_stream_ends_without_events, eventually, welcome_unless_boom, TestServer};
use ssehub::{Message, SseOptions};

#[tokio::test]
async fn panicking_hooks_leave_the_other_streams_running() {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let d = disconnects.clone();
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .on_connect(welcome_unless_boom)
            .on_disconnect(move |_| {
                let d = d.clone();
                async move {
                    d.fetch_add(1, Ordering::SeqCst);
                    panic!("on_disconnect failure (expected by the test)");
                }
            }),
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut c = srv.sse("/sse").await;
        assert_eq!(c.next_event().await.data, "ok");
        streams.push(c);
    }

    // One stream ends: its on_disconnect panics, nothing else notices.
    drop(streams.pop());
    eventually("the on_disconnect hook to run", || {
        disconnects.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(srv.hub.connection_count(), 2);

    // A new stream whose on_connect panics is closed, and its on_disconnect runs too.
    assert_boom_stream_ends_without_events(&srv).await;
    eventually("the panicked stream's on_disconnect", || {
        disconnects.load(Ordering::SeqCst) == 2
    })
    .await;

    // The streams open all along still receive, in order.
    for n in 0..20 {
        srv.hub
            .to("__all")
            .publish(&Message::new(format!("still here {n}")))
            .unwrap();
    }
    for c in &mut streams {
        for n in 0..20 {
            assert_eq!(c.next_event().await.data, format!("still here {n}"));
        }
    }
    // And new streams are welcome.
    let mut late = srv.sse("/sse").await;
    assert_eq!(late.next_event().await.data, "ok");
    assert_eq!(srv.hub.connection_count(), 3);
    let stats = srv.hub.stats();
    assert_eq!(stats.connections_total, 5, "{stats:?}");
    srv.stop().await;
    eventually("every on_disconnect, panicking or not", || {
        disconnects.load(Ordering::SeqCst) == 5
    })
    .await;
}
