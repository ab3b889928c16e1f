//! Races over real connections: closing from many places at once, many senders on one
//! stream, joins racing with leaves and with close.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use common::*;
use ssehub::decode::Item;
use ssehub::{Connection, SseOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_fires_exactly_once_under_concurrent_close() {
    const ROUNDS: usize = 20;
    let disconnects = Arc::new(AtomicUsize::new(0));
    let d = disconnects.clone();
    let (options, mut handout) = Handout::wrap(SseOptions::new().keep_alive(None).on_disconnect(
        move |_conn| {
            let d = d.clone();
            async move {
                d.fetch_add(1, Ordering::SeqCst);
            }
        },
    ));
    // `Handout::wrap` replaced on_connect only; on_disconnect stays.
    let srv = TestServer::start(options).await;
    let callbacks = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        let (client, conn) = handout.open(&srv, "/sse?room=a&room=b").await;
        let cb = callbacks.clone();
        conn.on_closed(move |c| {
            assert!(c.is_closed());
            assert!(c.rooms().is_empty(), "rooms are left before callbacks run");
            cb.fetch_add(1, Ordering::SeqCst);
        });
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.closed().await })
            })
            .collect();
        let start = Arc::new(Barrier::new(9));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, start) = (conn.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    c.close();
                })
            })
            .collect();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.close() })
            })
            .collect();
        start.wait();
        drop(client); // and the client leaves at the same time
        for t in threads {
            t.join().unwrap();
        }
        for t in tasks {
            within("close task", t).await.unwrap();
        }
        for w in waiters {
            within("closed() resolves", w).await.unwrap();
        }
        within("closed() after the fact", conn.closed()).await;
        assert_eq!(callbacks.load(Ordering::SeqCst), round + 1, "round {round}");
    }
    eventually("every on_disconnect ran", || {
        disconnects.load(Ordering::SeqCst) == ROUNDS
    })
    .await;
    assert_eq!(srv.hub.connection_count(), 0);
    assert_eq!(srv.hub.room_count(), 0);
    srv.stop().await; // every transport is gone now: no late close is left to come
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(callbacks.load(Ordering::SeqCst), ROUNDS);
    assert_eq!(disconnects.load(Ordering::SeqCst), ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_never_interleave() {
    const SENDERS: usize = 8;
    const EACH: usize = 250;
    let (options, mut handout) = Handout::wrap(
        SseOptions::new()
            .keep_alive(None)
            .outbox_limit(64 * 1024 * 1024),
    );
    let srv = TestServer::start(options).await;
    let (mut client, conn) = handout.open(&srv, "/sse").await;
    // Multi-line events with some bulk, so a torn write would corrupt a frame.
    let padding = "x".repeat(300);
    let start = Arc::new(Barrier::new(SENDERS));
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (c, start, padding) = (conn.clone(), start.clone(), padding.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..EACH {
                    let data = format!("{s} {i}\n{padding}\nend {s} {i}");
                    let m = ssehub::Message::builder()
                        .id(format!("{s}-{i}"))
                        .event(format!("sender-{s}"))
                        .data(data)
                        .build()
                        .unwrap();
                    c.send(&m).unwrap();
                }
            })
        })
        .collect();
    let mut next: HashMap<usize, usize> = HashMap::new();
    for _ in 0..SENDERS * EACH {
        let e = client.next_event().await;
        let lines: Vec<&str> = e.data.split('\n').collect();
        assert_eq!(lines.len(), 3, "intact event: {e:?}");
        let (s, i) = lines[0].split_once(' ').expect("first line");
        let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
        assert_eq!(lines[1], padding);
        assert_eq!(lines[2], format!("end {s} {i}"));
        assert_eq!(e.event, format!("sender-{s}"));
        assert_eq!(e.last_event_id, format!("{s}-{i}"));
        let expected = next.entry(s).or_default();
        assert_eq!(i, *expected, "sender {s}'s events arrive in order");
        *expected += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(next.len(), SENDERS);
    assert!(next.values().all(|&n| n == EACH));
    // Nothing else is on the stream: a marker comes right after.
    conn.send_event("end", "marker").unwrap();
    assert_eq!(client.next_event().await.data, "marker");
    srv.stop().await;
}

/// A server whose streams join no room by themselves, and the hand-out of their
/// connections.
async fn start_without_auto_join() -> (TestServer, Handout) {
    let (options, handout) = Handout::wrap(SseOptions::new().keep_alive(None).no_auto_join());
    (TestServer::start(options).await, handout)
}

/// Whether `conn` is a member of `room` according to the hub's room table.
fn listed(srv: &TestServer, room: &str, conn: &Connection) -> bool {
    srv.hub.members(room).contains(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_with_last_leave_leave_no_stranded_member() {
    const ITERATIONS: usize = 300;
    const OPS: usize = 50;
    let (srv, mut handout) = start_without_auto_join().await;
    let (_a, ca) = handout.open(&srv, "/sse").await;
    let (_b, cb) = handout.open(&srv, "/sse").await;
    for iteration in 0..ITERATIONS {
        let start = Barrier::new(2);
        std::thread::scope(|scope| {
            for (k, conn) in [&ca, &cb].into_iter().enumerate() {
                let (start, hub) = (&start, &srv.hub);
                scope.spawn(move || {
                    start.wait();
                    // Different patterns per thread and per iteration.
                    for op in 0..OPS {
                        if (op + k + iteration) % 3 == 0 {
                            let _ = hub.leave("race", conn);
                        } else if (op * (k + 1) + iteration) % 2 == 0 {
                            hub.join("race", conn).unwrap();
                        } else {
                            let _ = hub.leave("race", conn);
                        }
                    }
                });
            }
        });
        let mut believers = 0;
        for conn in [&ca, &cb] {
            let believes = conn.rooms().iter().any(|r| r == "race");
            assert_eq!(
                believes,
                listed(&srv, "race", conn),
                "iteration {iteration}: the connection's view and the room table agree"
            );
            believers += usize::from(believes);
        }
        assert_eq!(srv.hub.room_size("race"), believers);
        assert_eq!(
            srv.hub.room_names().contains(&"race".to_owned()),
            believers > 0,
            "iteration {iteration}: an empty room does not exist"
        );
        assert_eq!(
            srv.hub
                .to("race")
                .publish(&ssehub::Message::new("x"))
                .unwrap()
                .delivered,
            believers
        );
        // Start the next iteration from a random-ish state, sometimes empty.
        if iteration % 2 == 0 {
            srv.hub.leave("race", &ca);
            srv.hub.leave("race", &cb);
            assert_eq!(srv.hub.room_count(), 0);
        }
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_with_close_leave_no_trace() {
    const CONNECTIONS: usize = 40;
    let (srv, mut handout) = start_without_auto_join().await;
    let (_keeper, keeper) = handout.open(&srv, "/sse").await;
    srv.hub.join("shared", &keeper).unwrap();
    for n in 0..CONNECTIONS {
        let (client, conn) = handout.open(&srv, "/sse").await;
        let start = Barrier::new(2);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                start.wait();
                for r in 0..30 {
                    let _ = srv.hub.join(&format!("room-{}", r % 7), &conn);
                    let _ = srv.hub.join("shared", &conn);
                    if r % 4 == 0 {
                        srv.hub.leave("shared", &conn);
                    }
                }
            });
            scope.spawn(|| {
                start.wait();
                if n % 2 == 0 {
                    conn.close();
                }
            });
        });
        drop(client);
        // `closed()` resolves once the close is complete, whichever thread ran it (the
        // closing thread, or the server's when the client left first).
        within("the close completes", conn.closed()).await;
        assert!(conn.rooms().is_empty(), "connection {n}");
        assert_eq!(srv.hub.room_names(), ["shared"], "connection {n}");
        assert_eq!(srv.hub.members("shared"), vec![keeper.clone()]);
    }
    assert_eq!(srv.hub.connection_count(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_many_broadcasts_all_delivered_in_order() {
    const CLIENTS: usize = 20;
    const EVENTS: usize = 200;
    let (options, mut handout) = Handout::wrap(SseOptions::new().keep_alive(None));
    let srv = TestServer::start(options).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(handout.open(&srv, "/sse").await.0);
    }
    let hub = srv.hub.clone();
    let publisher = std::thread::spawn(move || {
        (0..EVENTS)
            .map(|i| {
                hub.to("__all")
                    .publish(&ssehub::Message::new(i.to_string()))
                    .unwrap()
                    .delivered
            })
            .sum::<usize>()
    });
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for i in 0..EVENTS {
                    match c.next_item().await {
                        Some(Item::Event(e)) => assert_eq!(e.data, i.to_string()),
                        other => panic!("expected event {i}, got {other:?}"),
                    }
                }
            })
        })
        .collect();
    for r in readers {
        within("reader", r).await.unwrap();
    }
    assert_eq!(publisher.join().unwrap(), CLIENTS * EVENTS);
    srv.stop().await;
}
