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
    node_at(redis.url(), config).await
}

async fn node_at(url: String, config: HubConfig) -> TestServer {
    node_with(url, config, |sse| sse).await
}

/// A node whose endpoint `options` changes.
async fn node_with(
    url: String,
    config: HubConfig,
    options: impl FnOnce(SseOptions) -> SseOptions,
) -> TestServer {
    let redis = RedisConfig::new(url)
        .prefix("test")
        .probe_interval(Duration::from_millis(200));
    let hub = Hub::with_redis(config, redis).await.expect("join the hub");
    let sse = SseOptions::new()
        .with_hub(hub)
        .keep_alive(None)
        .no_auto_join()
        .rooms_from_query(true);
    TestServer::start(options(sse)).await
}

/// A hub whose rooms each keep their last `events` events.
fn keeping(events: usize) -> HubConfig {
    HubConfig::default().history(Some(HistoryConfig::default().max_events(events)))
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
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
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
    // Readers of a room hub read their rooms' streams: no hub-wide log is written.
    assert_eq!(redis.cmd(&["EXISTS", "test:log"]).text(), "0");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_to_another_node_with_its_last_id_and_misses_nothing() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
    let config = keeping(50);
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

/// A Redis of its own and two nodes on it; `None` without redis-server (the test is
/// skipped).
async fn two_nodes() -> Option<(RedisServer, TestServer, TestServer)> {
    let redis = RedisServer::start_if_available()?;
    let a = node(&redis, HubConfig::default()).await;
    let b = node(&redis, HubConfig::default()).await;
    Some((redis, a, b))
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
    let Some((mut redis, a, b)) = two_nodes().await else {
        return;
    };
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

/// Read `c` until it has had the event "after" and a gap signal, or 10 s: whether both
/// came, the data of its events and of its gap signals.
async fn until_after_and_a_gap(c: &mut SseClient) -> (bool, Vec<String>, Vec<String>) {
    let mut datas = Vec::new();
    let mut gaps = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        while !datas.iter().any(|d| d == "after") || gaps.is_empty() {
            let e = c.next_event().await;
            if e.event == "ssehub.gap" {
                gaps.push(e.data);
            } else {
                datas.push(e.data);
            }
        }
    })
    .await
    .is_ok();
    (done, datas, gaps)
}

/// A publication Redis never ran reaches its own node's clients only. Here Redis is dead
/// when it is published and comes back with all it had saved: no epoch changes, no
/// number is missing, so nothing else would tell the other node's clients. They get
/// the gap signal for its room, and never the publication itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_redis_never_ran_is_a_gap_on_the_other_nodes() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start_durable();
    let a = node(&redis, keeping(100)).await;
    let b = node(&redis, keeping(100)).await;
    let (mut ca, mut cb) = one_subscriber_each(&a, &b).await;
    assert!(publish(&a.hub, "r", "first").await.replicated);
    redis.kill();
    eventually("both nodes to notice", || {
        !a.hub.backplane_status().connected && !b.hub.backplane_status().connected
    })
    .await;
    assert!(
        !publish(&a.hub, "r", "alone").await.replicated,
        "Redis is dead"
    );
    redis.restart();
    eventually("both nodes back", || {
        a.hub.backplane_status().connected && b.hub.backplane_status().connected
    })
    .await;
    assert!(publish(&a.hub, "r", "after").await.replicated);

    let (done, seen, gaps) = until_after_and_a_gap(&mut cb).await;
    assert!(
        done,
        "node b: no gap signal within 10 s for a publication it never got (saw {seen:?})"
    );
    assert!(!seen.iter().any(|d| d == "alone"), "{seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("first"), "{seen:?}");
    let gap: serde_json::Value = serde_json::from_str(&gaps[0]).unwrap();
    assert_eq!(gap["reason"], "outage", "{gap}");
    assert_eq!(gap["rooms"], serde_json::json!(["r"]), "{gap}");
    // Its own node delivered it, in place.
    let (_, seen, _) = until_after_and_a_gap(&mut ca).await;
    assert_eq!(&seen[..3], ["first", "alone", "after"], "{seen:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_dies_its_clients_resume_on_another() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
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

/// The backplane's series in `hub`'s `/metrics`: (connected, outages).
#[cfg(feature = "metrics")]
fn backplane_series(hub: &Hub) -> (f64, f64) {
    (
        series(hub, "ssehub_backplane_connected{backplane=\"redis\"}"),
        series(hub, "ssehub_backplane_outages_total{backplane=\"redis\"}"),
    )
}

/// What each node shows of a hub shared through Redis: deliveries and their bytes where
/// they happen (the publisher's node, and the others, from the channel), history depths
/// read from Redis, and the backplane's state in `/metrics` through an outage.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_what_it_delivered_and_the_backplane_state() {
    let Some((redis, a, b)) = two_nodes().await else {
        return;
    };
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
    assert_eq!(backplane_series(&a.hub), (0.0, 1.0), "(connected, outages)");
    redis.resume();
    eventually("A back", || a.hub.backplane_status().connected).await;
    assert_eq!(backplane_series(&a.hub), (1.0, 1.0), "(connected, outages)");
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
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
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

/// Publish events `0..n` from `tasks` tasks at once (event `i` from task `i % tasks`),
/// each to the rooms and as the message `event(i)` says, and wait for every one.
async fn publish_from_tasks(
    hub: &Hub,
    tasks: usize,
    n: usize,
    event: impl Fn(usize) -> (Vec<String>, Message) + Send + Sync + 'static,
) {
    let event = Arc::new(event);
    let writers: Vec<_> = (0..tasks)
        .map(|w| {
            let (hub, event) = (hub.clone(), event.clone());
            tokio::spawn(async move {
                for i in (w..n).step_by(tasks) {
                    let (rooms, m) = event(i);
                    hub.to(&rooms)
                        .publish_and_wait(&m)
                        .await
                        .expect("published");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

/// `n` rooms: `r000`, `r001`, ...
fn many_rooms(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i:03}")).collect()
}

/// A stream in every one of `rooms`, from the earliest event kept.
fn earliest_in(rooms: &[String]) -> String {
    let query: Vec<String> = rooms.iter().map(|r| format!("room={r}")).collect();
    format!("/sse?{}&last_event_id=earliest", query.join("&"))
}

/// Resumes of 255 rooms, with a long history each, looping on one node: Redis must not
/// be held by any of them long enough for the other node to notice. (Before, one fetch
/// read every room's whole history in one script: a second or two during which every
/// publication waited and probes went unanswered, so the nodes declared an outage and
/// the resuming clients got an `outage` gap instead of their replay.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_of_255_rooms_stall_no_publication_and_no_node() {
    let Some((_redis, a, b)) = two_nodes().await else {
        return;
    };
    let rooms = Arc::new(many_rooms(255));
    // 255,000 entries: 1,000 events, each in every room (quick to write, and as much for
    // a fetch to read as 1,000 events of each room's own).
    let filler = "x".repeat(200);
    let every_room = rooms.clone();
    publish_from_tasks(&a.hub, 4, 1000, move |i| {
        (every_room.to_vec(), Message::new(format!("{i:04}{filler}")))
    })
    .await;
    let mut live = b.sse("/sse?room=live").await;
    eventually("the live stream on B", || b.hub.room_size("live") == 1).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resumers: Vec<_> = (0..3)
        .map(|_| {
            let (addr, path, stop) = (a.addr, earliest_in(&rooms), stop.clone());
            tokio::spawn(async move {
                let mut resumed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = SseClient::connect(addr, &path, &[]).await;
                    let mut e = c.next_event().await;
                    if e.event == "ssehub.gap" {
                        let gap: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                        assert_eq!(gap["reason"], "replay-limit", "{gap}");
                        e = c.next_event().await;
                    }
                    assert!(e.data.ends_with("xxx"), "a replayed event: {e:?}");
                    resumed += 1;
                }
                resumed
            })
        })
        .collect();
    // Meanwhile, on B: every publication replicated and delivered.
    for i in 0..40 {
        let data = format!("live-{i}");
        let p = publish(&b.hub, "live", &data).await;
        assert!(p.replicated, "{data} not replicated while A resumes");
        assert_eq!(live.next_event().await.data, data);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in resumers {
        assert!(r.await.unwrap() > 0, "each client resumed at least once");
    }
    for (name, n) in [("A", &a), ("B", &b)] {
        let status = n.hub.backplane_status();
        assert!(
            status.connected && status.outages == 0,
            "{name}: {status:?}"
        );
        assert_eq!(n.hub.stats().gaps["outage"], 0, "{name}");
    }
    a.stop().await;
    b.stop().await;
}

/// `INFO commandstats`: per command, `(calls, usec)`, the busiest first.
fn command_stats(redis: &RedisServer) -> Vec<(String, u64, u64)> {
    let info = redis.cmd(&["INFO", "commandstats"]).text();
    let mut stats: Vec<(String, u64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| -> u64 {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
                    .map_or(0, |v| v.parse().unwrap())
            };
            Some((name.to_owned(), field("calls"), field("usec")))
        })
        .collect();
    stats.sort_by_key(|(_, _, usec)| std::cmp::Reverse(*usec));
    stats
}

/// The longest command in Redis's slow log (but the test's own), in microseconds, and
/// its name.
fn slowest(redis: &RedisServer) -> (i64, String) {
    let redis_server::Reply::Array(entries) = redis.cmd(&["SLOWLOG", "GET", "100000"]) else {
        panic!("SLOWLOG GET");
    };
    entries
        .iter()
        .filter_map(|e| match e {
            redis_server::Reply::Array(f) => match (&f[2], &f[3]) {
                (redis_server::Reply::Int(us), redis_server::Reply::Array(args)) => {
                    let name = args[0].text().to_uppercase();
                    let own = ["SLOWLOG", "CONFIG", "INFO", "XLEN"].contains(&name.as_str());
                    (!own).then_some((*us, name))
                }
                _ => None,
            },
            _ => None,
        })
        .max()
        .unwrap_or_default()
}

/// Figures for the report, not a check (run with `--ignored --nocapture`): what one
/// resume of 255 rooms holding 1,000 events each (their own: 255,000 in all) costs
/// Redis, and what publications on another node see while three clients resume in a
/// loop. Writing the events takes most of the run; with `SSEHUB_MEASURE_REDIS=<port>`
/// it uses the Redis there (and its events, if it holds them already) and leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --test redis_backplane measure -- --ignored --nocapture"]
async fn measure_a_resume_of_255_rooms() {
    if !redis_server::available() {
        return;
    }
    let redis = match std::env::var("SSEHUB_MEASURE_REDIS") {
        Ok(port) => RedisServer::existing(port.parse().expect("a port")),
        Err(_) => RedisServer::start(),
    };
    let a = node(&redis, HubConfig::default()).await;
    let rooms = Arc::new(many_rooms(255));
    let started = std::time::Instant::now();
    let written = redis.cmd(&["XLEN", "test:room:r254"]).text() == "1000";
    if !written {
        let each_room = rooms.clone();
        publish_from_tasks(&a.hub, 64, 255_000, move |i| {
            let m = Message::new(format!("{i:06} {}", "x".repeat(60)));
            (vec![each_room[i % 255].clone()], m)
        })
        .await;
    }
    println!("set-up: 255,000 events in {:?}", started.elapsed());
    let path = earliest_in(&rooms);
    redis.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    redis.cmd(&["CONFIG", "SET", "slowlog-max-len", "100000"]);
    for round in 0..3 {
        redis.cmd(&["SLOWLOG", "RESET"]);
        redis.cmd(&["CONFIG", "RESETSTAT"]);
        let rss = rss();
        let t = std::time::Instant::now();
        let mut c = SseClient::connect(a.addr, &path, &[]).await;
        let first = c.next_event().await;
        let took = t.elapsed();
        let stats = command_stats(&redis);
        let total: u64 = stats.iter().map(|(_, _, usec)| usec).sum();
        let (slow_us, slow_cmd) = slowest(&redis);
        println!(
            "resume {round}: first event after {took:?} ({:?}); Redis: {total} us in all \
             commands, slowest {slow_us} us ({slow_cmd}), busiest {:?}; \
             this process's RSS {} -> {} MiB",
            first.event,
            &stats[..stats.len().min(4)],
            rss >> 20,
            common::rss() >> 20
        );
    }
    // Three clients resuming in a loop on A; publications on B meanwhile. B runs on a
    // runtime of its own, as another process would: what it sees of A is Redis.
    let (to_b, go) = tokio::sync::oneshot::channel::<()>();
    let (alone, b_alone) = tokio::sync::oneshot::channel::<()>();
    let url = redis.url();
    let b_side = std::thread::spawn(move || {
        let own = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        own.block_on(async move {
            let b = node_at(url, HubConfig::default()).await;
            let mut live = b.sse("/sse?room=live").await;
            eventually("the live stream on B", || b.hub.room_size("live") == 1).await;
            let mut rounds = Vec::new();
            let (mut alone, mut go) = (Some(alone), Some(go));
            for round in 0..2 {
                if round == 1 {
                    let _ = alone.take().unwrap().send(());
                    go.take().unwrap().await.unwrap();
                }
                let (mut latencies, mut unreplicated) = (Vec::new(), 0);
                for i in 0..100 {
                    let t = std::time::Instant::now();
                    let p = publish(&b.hub, "live", &format!("live-{i}")).await;
                    latencies.push(t.elapsed());
                    unreplicated += usize::from(!p.replicated);
                    live.next_event().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                latencies.sort();
                rounds.push((latencies, unreplicated));
            }
            let outages = b.hub.backplane_status().outages;
            b.stop().await;
            (rounds, outages)
        })
    });
    // B's first 100 publications with nothing else running, then the resumes start.
    within("B alone", b_alone).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resumers: Vec<_> = (0..3)
        .map(|_| {
            let (addr, path, stop) = (a.addr, path.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = SseClient::connect(addr, &path, &[]).await;
                    c.next_event().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    to_b.send(()).unwrap();
    let (rounds, b_outages) = tokio::task::spawn_blocking(move || b_side.join().unwrap())
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut resumes = 0;
    for r in resumers {
        resumes += r.await.unwrap();
    }
    for ((latencies, unreplicated), when) in rounds.iter().zip(["alone", "while A resumed"]) {
        println!(
            "100 publications on B {when}: latency p50 {:?} p99 {:?} max {:?}, \
             {unreplicated} not replicated",
            latencies[50], latencies[98], latencies[99],
        );
    }
    println!(
        "{resumes} resumes on A meanwhile; outages A {} B {b_outages}",
        a.hub.backplane_status().outages,
    );
    a.stop().await;
}

/// The epoch of a hub id (`<epoch>-<seq>`).
fn epoch_of(id: &str) -> &str {
    id.split_once('-').unwrap().0
}

/// The next event that is not the gap signal, and the reasons of the gap signals before it.
async fn after_gaps(c: &mut SseClient) -> (Vec<String>, Event) {
    let mut reasons = Vec::new();
    loop {
        let e = c.next_event().await;
        if e.event != "ssehub.gap" {
            return (reasons, e);
        }
        let gap: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        reasons.push(gap["reason"].as_str().unwrap().to_owned());
    }
}

/// Redis loses its data (`FLUSHALL`), or its sequence goes back (a failover to a replica
/// that lagged, played here by lowering the number): the nodes start a new epoch, tell
/// their clients, and deliver what comes next. (Before, every node took the new numbers
/// for ones it had delivered already and dropped every publication, in silence, until
/// the sequence passed the old one; publishers waited 2 s and were told `delivered: 0`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_that_goes_back_starts_a_new_epoch_and_is_told() {
    let Some((redis, a, b)) = two_nodes().await else {
        return;
    };
    let (mut ca, mut cb) = one_subscriber_each(&a, &b).await;
    let mut epoch = String::new();
    for i in 0..3 {
        let p = publish(&a.hub, "r", &format!("before-{i}")).await;
        epoch = epoch_of(&p.id.unwrap()).to_owned();
    }
    for c in [&mut ca, &mut cb] {
        for i in 0..3 {
            assert_eq!(c.next_event().await.data, format!("before-{i}"));
        }
    }
    let lower = |redis: &RedisServer| redis.cmd(&["HSET", "test:meta", "seq", "1"]);
    for (what, back) in [
        (
            "flushall",
            &(|r: &RedisServer| r.cmd(&["FLUSHALL"])) as &dyn Fn(&RedisServer) -> _,
        ),
        ("lowered", &lower),
    ] {
        back(&redis);
        for (k, publisher) in [&a, &b].into_iter().enumerate() {
            let data = format!("{what}-{k}");
            let p = publish(&publisher.hub, "r", &data).await;
            assert!(p.replicated, "{data}: {p:?}");
            assert_eq!(
                p.delivered, 1,
                "{data}: its node's subscriber, counted: {p:?}"
            );
            let id = p.id.unwrap();
            if k == 0 {
                assert_ne!(epoch_of(&id), epoch, "{what}: a new epoch");
                epoch = epoch_of(&id).to_owned();
            }
            assert_eq!(epoch_of(&id), epoch, "{data}: one epoch since");
            for (node, c) in [&mut ca, &mut cb].into_iter().enumerate() {
                let (gaps, e) = after_gaps(c).await;
                assert_eq!(e.data, data, "node {node}");
                assert_eq!(e.last_event_id, id, "node {node}");
                let told = if k == 0 {
                    vec!["unknown-epoch"]
                } else {
                    vec![]
                };
                assert_eq!(gaps, told, "node {node}, {data}");
            }
        }
    }
    for n in [&a, &b] {
        assert_eq!(n.hub.backplane_status().outages, 0);
    }
    a.stop().await;
    b.stop().await;
}

/// A publication Redis refuses (a room's key is not a stream) leaves the sequence and
/// the other rooms' streams as they were. (Before, the script had taken its number and
/// recorded it in the rooms before the failing one: a number no node could fill, and an
/// event in history that no client got live.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_redis_refuses_writes_nothing() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
    let a = node(&redis, HubConfig::default()).await;
    publish(&a.hub, "r", "first").await;
    redis.cmd(&["SET", "test:room:bad", "not a stream"]);
    let state = || {
        (
            redis.cmd(&["HGET", "test:meta", "seq"]).text(),
            redis.cmd(&["XLEN", "test:room:r"]).text(),
        )
    };
    let before = state();
    let p = a
        .hub
        .to(["r", "bad"])
        .publish_and_wait(&Message::new("refused"))
        .await
        .expect("delivered here");
    assert!(!p.replicated, "{p:?}");
    assert_eq!(state(), before, "(sequence, events in r)");
    a.stop().await;
}

/// `?history=18446744073709551615` on a Redis node: the history kept, no gap. (Before,
/// the count reached Lua as a double, `XREVRANGE ... COUNT 1.8446744073709552e+19` was
/// refused, and the client got an `outage` gap, counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_of_u64_max_is_all_the_history_kept() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
    let config = keeping(5);
    let a = node(&redis, config).await;
    for i in 0..8 {
        publish(&a.hub, "r", &i.to_string()).await;
    }
    let mut c = a.sse(&format!("/sse?room=r&history={}", u64::MAX)).await;
    eventually("the replay", || a.hub.stats().replays == 1).await;
    publish(&a.hub, "r", "live").await;
    let mut got = Vec::new();
    loop {
        let e = c.next_event().await;
        assert_ne!(e.event, "ssehub.gap", "{e:?}");
        if e.data == "live" {
            break;
        }
        got.push(e.data);
    }
    assert_eq!(got, ["3", "4", "5", "6", "7"]);
    let kept: Vec<String> = a
        .hub
        .history("r")
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(
        kept,
        ["4", "5", "6", "7", "live"],
        "read through the same walk"
    );
    let stats = a.hub.stats();
    assert!(stats.gaps.values().all(|n| *n == 0), "{:?}", stats.gaps);
    assert_eq!(a.hub.backplane_status().outages, 0);
    a.stop().await;
}

/// Messages put on the channel by something else than a node: one numbered far past
/// the sequence is refused (before, every later publication looked delivered already,
/// until the node restarted), and so is a frame with lines injected (before, its lines
/// reached the clients as they were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_on_the_channel_are_refused() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
    let a = node(&redis, HubConfig::default()).await;
    let mut c = a.sse("/sse?room=r").await;
    eventually("the stream", || a.hub.room_size("r") == 1).await;
    let id = publish(&a.hub, "r", "real-1").await.id.unwrap();
    assert_eq!(c.next_event().await.data, "real-1");
    let (epoch, seq) = id.split_once('-').unwrap();
    let seq: u64 = seq.parse().unwrap();
    // Node, token, unique, private, except, rooms: as the nodes' own.
    let header = "forger\x1f1\x1f0\x1f0\x1f\x1fr";
    // In this version's format, and in the previous one (`<seq>\n...`), refused too.
    let forge = |n: u64, frame: &str| {
        for first in [format!("{epoch}-{n}"), n.to_string()] {
            let payload = format!("{first}\n{header}\n{frame}");
            redis.cmd(&["PUBLISH", "test:events", &payload]);
        }
    };
    let huge = u64::MAX - 1;
    forge(huge, &format!("id: {epoch}-{huge}\ndata: forged\n\n"));
    publish(&a.hub, "r", "real-2").await;
    assert_eq!(c.next_event().await.data, "real-2");
    // Numbered as the next publication will be, so only its frame can tell.
    let next = seq + 2;
    forge(
        next,
        &format!("id: {epoch}-{next}\ndata: x\n\nevent: evil\ndata: injected\n\n"),
    );
    let p = publish(&a.hub, "r", "real-3").await;
    assert_eq!(p.id.unwrap(), format!("{epoch}-{next}"));
    let e = c.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "real-3"));
    let refused = a.hub.backplane_status().refused;
    assert_eq!(refused, 4, "two forgeries, each in two formats");
    a.stop().await;
}

/// A replay read from Redis is what the in-memory one would be: the newest events of
/// the stream's rooms that fit half its outbox, each once (events in several of its
/// rooms too), in order, after the gap signal that names the first; then live events.
/// Small pages, several rounds, events shared by rooms: the merge of the rooms' pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_redis_is_the_newest_that_fit_each_once_in_order() {
    let Some(redis) = RedisServer::start_if_available() else {
        return;
    };
    // Half of 4 KiB: about 70 of the 90 events below.
    let small = node_with(redis.url(), HubConfig::default(), |o| o.outbox_limit(4096)).await;
    let large = node(&redis, HubConfig::default()).await;
    let mut sent: Vec<(String, usize)> = Vec::new();
    for i in 0..90 {
        let rooms: &[&str] = match i % 3 {
            0 => &["x"],
            1 => &["y", "z"],
            _ => &["x", "y", "z"],
        };
        let data = format!("e{i:03}");
        let p = large
            .hub
            .to(rooms)
            .publish_and_wait(&Message::new(data.as_str()))
            .await
            .unwrap();
        let id = p.id.unwrap();
        let len = format!("id: {id}\ndata: {data}\n\n").len();
        sent.push((id, len));
    }
    let mut budget = 2048;
    let fit = sent
        .iter()
        .rev()
        .take_while(|(_, len)| {
            let fits = *len <= budget;
            budget = budget.saturating_sub(*len);
            fits
        })
        .count();
    assert!((10..90).contains(&fit), "{fit}");
    let path = "/sse?room=x&room=y&room=z&last_event_id=earliest";
    for (node, expected_first) in [(&small, 90 - fit), (&large, 0)] {
        let mut c = node.sse(path).await;
        eventually("the replay", || node.hub.stats().replays == 1).await;
        let e = c.next_event().await;
        let e = if expected_first > 0 {
            assert_eq!(e.event, "ssehub.gap");
            let gap: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(gap["reason"], "replay-limit");
            assert_eq!(gap["first_id"], sent[expected_first].0);
            c.next_event().await
        } else {
            e
        };
        let mut got = vec![e.last_event_id];
        for _ in expected_first + 1..90 {
            got.push(c.next_event().await.last_event_id);
        }
        let want: Vec<&String> = sent[expected_first..].iter().map(|(id, _)| id).collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
        publish(&large.hub, "z", "live").await;
        assert_eq!(c.next_event().await.data, "live");
    }
    small.stop().await;
    large.stop().await;
}

/// Clients that drop and resume over and over on one node, while another publishes
/// without a pause: every event once, in order, none skipped (the replay's switch to
/// live, with the node delivering past what the replay read meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_while_another_node_publishes_miss_nothing_and_repeat_nothing() {
    let Some((_redis, a, b)) = two_nodes().await else {
        return;
    };
    const N: usize = 1000;
    let publisher = {
        let hub = b.hub.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let rooms: &[&str] = match i % 4 {
                    0 => &["r0"],
                    1 => &["r1", "r2"],
                    2 => &["r2"],
                    _ => &["r0", "r1", "r2"],
                };
                // Once to a connection in several of its rooms, live as in a replay.
                hub.to(rooms)
                    .unique()
                    .publish(&Message::new(format!("{i}")))
                    .expect("published");
                if i % 4 == 3 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut got: Vec<usize> = Vec::new();
    let mut cursor = "earliest".to_owned();
    let mut sessions = 0;
    while got.last() != Some(&(N - 1)) {
        let mut c = SseClient::connect(
            a.addr,
            "/sse?room=r0&room=r1&room=r2",
            &[("last-event-id", &cursor)],
        )
        .await;
        sessions += 1;
        for _ in 0..(3 + sessions % 7) {
            let e = c.next_event().await;
            assert_ne!(e.event, "ssehub.gap", "after {got:?}: {e:?}");
            got.push(e.data.parse().unwrap());
            if got.last() == Some(&(N - 1)) {
                break;
            }
        }
        cursor = c.last_event_id();
    }
    publisher.await.unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "in {sessions} sessions");
    a.stop().await;
    b.stop().await;
}
