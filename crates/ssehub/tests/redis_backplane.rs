//! Several nodes, one hub, through a real Redis (started by each test on a free port):
//! every publication reaches every node's subscribers once, in one order; a client moves
//! to another node with its last id and misses nothing; a silent (SIGSTOP) or dead
//! (SIGKILL) Redis leaves each node delivering its own publications, and once Redis is
//! back every client has every event or the gap signal, never a silent loss; a node
//! that dies leaves its clients to resume on another.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ssehub::decode::Event;
use ssehub::{HistoryConfig, Hub, HubConfig, Message, RedisConfig, SseOptions};

use common::*;
use redis_server::RedisServer;

/// A node of the hub on `redis`: its own server, its own hub.
async fn node(redis: &RedisServer, config: HubConfig) -> TestServer {
    let redis = RedisConfig::new(redis.url())
        .prefix("test")
        .probe_interval(Duration::from_millis(200));
    let hub = Hub::with_redis(config, redis).await.expect("join the hub");
    let sse = SseOptions::new()
        .with_hub(hub)
        .keep_alive(None)
        .no_auto_join()
        .rooms_from_query(true);
    TestServer::start(sse).await
}

async fn publish(hub: &Hub, room: &str, data: &str) -> ssehub::Published {
    hub.to(room)
        .publish_and_wait(&Message::new(data))
        .await
        .expect("published")
}

fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_publication_once_in_one_order() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis, HubConfig::default()).await);
    }
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(n.sse("/sse?room=r").await);
        eventually("the stream", || n.hub.room_size("r") == 1).await;
    }
    const EACH: usize = 40;
    let publishers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let hub = n.hub.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let p = publish(&hub, "r", &format!("n{k}-{i}")).await;
                    assert!(p.replicated);
                    assert_eq!(p.delivered, 1, "its own node's subscriber, counted");
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut orders = Vec::new();
    for c in &mut clients {
        let mut got: Vec<Event> = Vec::new();
        for _ in 0..3 * EACH {
            got.push(c.next_event().await);
        }
        let datas: HashSet<&str> = got.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(datas.len(), 3 * EACH, "each publication once");
        let seqs: Vec<u64> = got.iter().map(|e| seq_of(&e.last_event_id)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in sequence order");
        orders.push(got.iter().map(|e| e.data.clone()).collect::<Vec<_>>());
    }
    assert_eq!(orders[0], orders[1], "the same order on every node");
    assert_eq!(orders[1], orders[2]);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_to_another_node_with_its_last_id_and_misses_nothing() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let config = HubConfig::default().history(Some(HistoryConfig::default().max_events(50)));
    let a = node(&redis, config.clone()).await;
    let b = node(&redis, config).await;
    let mut c = a.sse("/sse?room=r").await;
    eventually("the stream on A", || a.hub.room_size("r") == 1).await;
    let first = publish(&b.hub, "r", "0").await.id.unwrap();
    for i in 1..10 {
        publish(&b.hub, "r", &i.to_string()).await;
    }
    for i in 0..10 {
        assert_eq!(c.next_event().await.data, i.to_string());
    }
    let last = c.last_event_id();
    drop(c);
    for i in 10..20 {
        publish(&a.hub, "r", &i.to_string()).await;
    }
    // On B, resuming after the last id it had: exactly what it missed, then live.
    let mut c = SseClient::connect(b.addr, "/sse?room=r", &[("last-event-id", &last)]).await;
    for i in 10..20 {
        assert_eq!(c.next_event().await.data, i.to_string());
    }
    publish(&a.hub, "r", "live").await;
    assert_eq!(c.next_event().await.data, "live");
    // A cursor older than what Redis keeps gets the gap signal first.
    for i in 21..80 {
        publish(&a.hub, "r", &i.to_string()).await;
    }
    let mut old = SseClient::connect(b.addr, "/sse?room=r", &[("last-event-id", &first)]).await;
    let gap = old.next_event().await;
    assert_eq!(gap.event, "ssehub.gap");
    let gap: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["reason"], "evicted");
    assert_eq!(
        old.next_event().await.data,
        "30",
        "then the 50 Redis still holds"
    );
    a.stop().await;
    b.stop().await;
}

async fn two_nodes(redis: &RedisServer) -> (TestServer, TestServer) {
    let a = node(redis, HubConfig::default()).await;
    let b = node(redis, HubConfig::default()).await;
    (a, b)
}

/// A subscriber to room `r` on each of `a` and `b`, in it once this returns.
async fn one_subscriber_each(a: &TestServer, b: &TestServer) -> (SseClient, SseClient) {
    let ca = a.sse("/sse?room=r").await;
    let cb = b.sse("/sse?room=r").await;
    eventually("both streams", || {
        a.hub.room_size("r") == 1 && b.hub.room_size("r") == 1
    })
    .await;
    (ca, cb)
}

/// What one client saw: the data of its events, and how many gap signals.
struct Seen {
    datas: HashSet<String>,
    gaps: usize,
}

async fn read_until(c: &mut SseClient, last: &str) -> Seen {
    let mut seen = Seen {
        datas: HashSet::new(),
        gaps: 0,
    };
    loop {
        let e = c.next_event().await;
        if e.event == "ssehub.gap" {
            seen.gaps += 1;
            continue;
        }
        let done = e.data == last;
        seen.datas.insert(e.data);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_silent_and_a_dead_redis_nothing_is_lost_silently() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let (mut ca, mut cb) = one_subscriber_each(&a, &b).await;
    let mut sent: Vec<(usize, String, bool)> = Vec::new();
    let round = |phase: &'static str, n: usize| {
        let hubs = [a.hub.clone(), b.hub.clone()];
        async move {
            let mut out = Vec::new();
            for i in 0..n {
                let k = i % 2;
                let data = format!("{phase}-{i}");
                let p = publish(&hubs[k], "r", &data).await;
                out.push((k, data, p.replicated));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out
        }
    };
    sent.extend(round("before", 10).await);
    redis.pause();
    eventually("both nodes to notice the silence", || {
        !a.hub.backplane_status().connected && !b.hub.backplane_status().connected
    })
    .await;
    let during = round("paused", 4).await;
    assert!(
        during.iter().all(|(_, _, replicated)| !replicated),
        "said so"
    );
    sent.extend(during);
    redis.resume();
    eventually("both nodes back", || {
        a.hub.backplane_status().connected && b.hub.backplane_status().connected
    })
    .await;
    sent.extend(round("resumed", 10).await);
    redis.restart();
    eventually("both nodes to notice the loss", || {
        a.hub.backplane_status().outages >= 2
    })
    .await;
    sent.extend(round("restarted", 10).await);
    eventually("both nodes back again", || {
        a.hub.backplane_status().connected && b.hub.backplane_status().connected
    })
    .await;
    sent.extend(round("after", 10).await);
    let last = &sent.last().unwrap().1;
    for (node_index, c) in [&mut ca, &mut cb].into_iter().enumerate() {
        let seen = read_until(c, last).await;
        for (from, data, _) in &sent {
            if *from == node_index {
                assert!(
                    seen.datas.contains(data),
                    "node {node_index}: its own {data} lost"
                );
            }
        }
        let missing: Vec<&String> = sent
            .iter()
            .filter(|(_, d, _)| !seen.datas.contains(d))
            .map(|(_, d, _)| d)
            .collect();
        assert!(
            missing.is_empty() || seen.gaps > 0,
            "node {node_index} lost {missing:?} without a gap signal"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_dies_its_clients_resume_on_another() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let a = node(&redis, HubConfig::default()).await;
    let b = Arc::new(node(&redis, HubConfig::default()).await);
    let mut c = a.sse("/sse?room=r").await;
    eventually("the stream on A", || a.hub.room_size("r") == 1).await;
    for i in 0..5 {
        publish(&b.hub, "r", &i.to_string()).await;
    }
    for i in 0..5 {
        assert_eq!(c.next_event().await.data, i.to_string());
    }
    let last = c.last_event_id();
    a.stop().await;
    for i in 5..10 {
        publish(&b.hub, "r", &i.to_string()).await;
    }
    let mut c = SseClient::connect(b.addr, "/sse?room=r", &[("last-event-id", &last)]).await;
    for i in 5..10 {
        assert_eq!(c.next_event().await.data, i.to_string());
    }
    let Ok(b) = Arc::try_unwrap(b) else {
        panic!("shared")
    };
    b.stop().await;
}

/// The value of one series of `hub`'s `/metrics`.
#[cfg(feature = "metrics")]
fn series(hub: &Hub, name: &str) -> f64 {
    let text = ssehub::prometheus_text(hub);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// What each node shows of a hub shared through Redis: deliveries and their bytes where
/// they happen (the publisher's node, and the others, from the channel), history depths
/// read from Redis, and the backplane's state in `/metrics` through an outage.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_what_it_delivered_and_the_backplane_state() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let (mut ca, mut cb) = one_subscriber_each(&a, &b).await;
    let mut frame_bytes = 0;
    for i in 0..3 {
        let data = format!("e{i}");
        let p = publish(&a.hub, "r", &data).await;
        let id = p.id.clone().unwrap();
        let frame = format!("id: {id}\n").len() + Message::new(data.as_str()).encode().len();
        assert_eq!((p.delivered, p.bytes), (1, frame as u64), "{p:?}");
        frame_bytes += frame as u64;
        assert_eq!(ca.next_event().await.data, data);
        assert_eq!(cb.next_event().await.data, data);
    }
    for (name, n, published) in [("A", &a, 3), ("B", &b, 0)] {
        let stats = n.hub.stats();
        assert_eq!(stats.events_published, published, "{name}");
        assert_eq!(stats.deliveries, 3, "{name}: its own subscriber's");
        assert_eq!(stats.delivered_bytes, frame_bytes, "{name}");
        let (total, rooms) = n.hub.rooms_page(0, 10).await;
        assert_eq!(total, 1, "{name}");
        assert_eq!(
            (rooms[0].members, rooms[0].history),
            (1, 3),
            "{name}: {rooms:?}"
        );
        assert_eq!(n.hub.history_depth("r").await, 3, "{name}");
        assert_eq!(n.hub.history_depth("nothing").await, 0, "{name}");
        assert_eq!(
            series(&n.hub, "ssehub_backplane_connected{backplane=\"redis\"}"),
            1.0
        );
    }
    redis.pause();
    eventually("A notices the silence", || {
        !a.hub.backplane_status().connected
    })
    .await;
    assert_eq!(
        series(&a.hub, "ssehub_backplane_connected{backplane=\"redis\"}"),
        0.0
    );
    assert_eq!(
        series(
            &a.hub,
            "ssehub_backplane_outages_total{backplane=\"redis\"}"
        ),
        1.0
    );
    redis.resume();
    eventually("A back", || a.hub.backplane_status().connected).await;
    assert_eq!(
        series(&a.hub, "ssehub_backplane_connected{backplane=\"redis\"}"),
        1.0
    );
    assert_eq!(
        series(
            &a.hub,
            "ssehub_backplane_outages_total{backplane=\"redis\"}"
        ),
        1.0
    );
    a.stop().await;
    b.stop().await;
}

/// Resume after `cursor` on `server`: the gap reason if the first event was the gap
/// signal, then the data of the replayed events up to (and without) the `marker` event
/// published live afterwards.
async fn resume(server: &TestServer, cursor: &str, marker: &str) -> (Option<String>, Vec<String>) {
    let mut c = SseClient::connect(server.addr, "/sse?room=r", &[("last-event-id", cursor)]).await;
    eventually("the resumed stream", || server.hub.room_size("r") == 1).await;
    publish(&server.hub, "r", marker).await;
    let mut gap = None;
    let mut data = Vec::new();
    loop {
        let e = c.next_event().await;
        if e.event == "ssehub.gap" {
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            gap = Some(v["reason"].as_str().unwrap().to_string());
        } else if e.data == marker {
            return (gap, data);
        } else {
            data.push(e.data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_history_is_trimmed_by_bytes_and_by_age() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    // Each event is about 120 bytes on the wire: 1 KiB holds a few, never all 30.
    let by_bytes = HistoryConfig::default().max_bytes(1024);
    let a = node(&redis, HubConfig::default().history(Some(by_bytes))).await;
    let data = |i: usize| format!("{i:03}{}", "x".repeat(100));
    let first = publish(&a.hub, "r", &data(0)).await.id.unwrap();
    for i in 1..30 {
        publish(&a.hub, "r", &data(i)).await;
    }
    let (gap, kept) = resume(&a, &first, "live-1").await;
    assert_eq!(gap.as_deref(), Some("evicted"));
    let n = kept.len();
    assert!(
        (2..20).contains(&n),
        "a byte-bounded suffix, got {n} events"
    );
    let newest: Vec<String> = (30 - n..30).map(data).collect();
    assert_eq!(kept, newest, "the newest events, in order, none skipped");
    a.stop().await;

    // By age: what is older than the bound is gone, what is younger is kept.
    let by_age = HistoryConfig::default().max_age(Duration::from_millis(400));
    let b = node(&redis, HubConfig::default().history(Some(by_age))).await;
    let first = publish(&b.hub, "r", "old-0").await.id.unwrap();
    publish(&b.hub, "r", "old-1").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    publish(&b.hub, "r", "young").await;
    let (gap, kept) = resume(&b, &first, "live-2").await;
    assert_eq!(gap.as_deref(), Some("evicted"));
    assert_eq!(kept, vec!["young".to_string()]);
    b.stop().await;
}
