//! The Mercure hub over several nodes, through a real Redis (started by each test on a
//! free port): an update published on one node reaches the right subscribers of every
//! node once (exact topics, URI templates, `*`, each node matching its own
//! subscribers' selectors); a private update only the granted ones; ids are `urn:uuid:`
//! everywhere; a subscriber that reconnects to the other node with its `Last-Event-ID`
//! (or `lastEventID`) gets exactly what it missed, by topic or by template, private
//! updates only where granted, and is told where its replay starts; 1.0's URL patterns,
//! grants and subscription events across nodes, and the subscriptions API listing every
//! node's with a cursor that misses no change.
#![cfg(all(feature = "mercure", feature = "redis"))]

mod common;
#[path = "support/mercure.rs"]
mod mercure;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::ops::Deref;
use std::time::Duration;

use common::*;
use http::StatusCode;
use mercure::{publisher, query, subscriber, MercureHub, RESOURCE};
use redis_server::RedisServer;
use serde_json::{json, Value};
use ssehub::decode::Event;
use ssehub::{Mercure, MercureConfig, RedisConfig};

fn bearer_for(topics: &[&str]) -> String {
    format!("Bearer {}", subscriber(topics))
}

fn config() -> MercureConfig {
    mercure::config().heartbeat(None)
}

/// For 1.0's tokens, the hub's URL; and subscription events.
fn v1_config() -> MercureConfig {
    config().resource(RESOURCE).subscriptions(true)
}

/// One node: a Mercure hub on `redis`, served on its own port.
struct Node(MercureHub);

impl Node {
    async fn start(redis: &RedisServer, config: MercureConfig) -> Node {
        let backplane = RedisConfig::new(redis.url())
            .prefix("m")
            .probe_interval(Duration::from_millis(200));
        let mercure = Mercure::with_redis(config, backplane)
            .await
            .expect("join the hub");
        Node(MercureHub::serve(mercure, |s| s).await)
    }

    async fn stop(self) {
        // Every node took every message of the others: none refused (ids, headers).
        assert_eq!(self.mercure.hub().backplane_status().refused, 0);
        self.0.stop().await;
    }
}

// To its clients, a node is a hub like any other.
impl Deref for Node {
    type Target = MercureHub;

    fn deref(&self) -> &MercureHub {
        &self.0
    }
}

/// A Redis of its own and two nodes of `config` on it; `None` without redis-server
/// (the test is skipped).
async fn two_nodes(config: MercureConfig) -> Option<(RedisServer, Node, Node)> {
    let redis = RedisServer::start_if_available()?;
    let a = Node::start(&redis, config.clone()).await;
    let b = Node::start(&redis, config).await;
    Some((redis, a, b))
}

/// The next event's data and id.
async fn next(c: &mut SseClient) -> (String, String) {
    let e: Event = c.next_event().await;
    (e.data, e.last_event_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_on_one_node_reaches_the_right_subscribers_of_both_once() {
    let Some((redis, a, b)) = two_nodes(config()).await else {
        return;
    };
    let book = "https://example.com/books/1";
    let template = "https://example.com/books/{id}";
    let mut reached = Vec::new();
    let mut others = Vec::new();
    for n in [&a, &b] {
        reached.push(n.subscribe(&[book], &[]).await);
        reached.push(n.subscribe(&[template], &[]).await);
        reached.push(n.subscribe(&["*"], &[]).await);
        reached.push(n.subscribe(&[book, template, "*"], &[]).await);
        others.push(
            n.subscribe(&["https://example.com/authors/{id}"], &[])
                .await,
        );
    }
    let id = a
        .publish(&[
            ("topic", book),
            ("topic", "https://example.com/alt/1"),
            ("data", "b1"),
        ])
        .await;
    assert!(id.starts_with("urn:uuid:"), "{id}");
    for c in &mut reached {
        assert_eq!(next(c).await, ("b1".to_owned(), id.clone()));
    }
    // Nothing else was queued: the next event each gets is the marker.
    let marker = b.publish(&[("topic", book), ("data", "marker")]).await;
    assert!(marker.starts_with("urn:uuid:"), "{marker}");
    assert_ne!(marker, id);
    for c in &mut reached {
        assert_eq!(next(c).await, ("marker".to_owned(), marker.clone()), "once");
    }
    b.publish(&[("topic", "https://example.com/authors/7"), ("data", "a7")])
        .await;
    for c in &mut others {
        assert_eq!(next(c).await.0, "a7", "a book is no author");
    }
    // The log the templates replay from is kept, for a hub of topics.
    assert_eq!(redis.cmd(&["EXISTS", "m:log"]).text(), "1");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_update_reaches_only_the_granted_subscribers_of_every_node() {
    let Some((_redis, a, b)) = two_nodes(config()).await else {
        return;
    };
    let topic = "https://e.com/orders/1";
    let granted = bearer_for(&["https://e.com/orders/{id}"]);
    let other = bearer_for(&["https://e.com/users/{id}"]);
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for n in [&a, &b] {
        yes.push(n.subscribe(&[topic], &[("authorization", &granted)]).await);
        yes.push(n.subscribe(&["*"], &[("authorization", &granted)]).await);
        no.push(n.subscribe(&["https://e.com/orders/{id}"], &[]).await);
        no.push(n.subscribe(&["*"], &[("authorization", &other)]).await);
    }
    a.publish(&[("topic", topic), ("data", "public")]).await;
    a.publish(&[("topic", topic), ("data", "secret"), ("private", "on")])
        .await;
    b.publish(&[("topic", topic), ("data", "marker")]).await;
    for c in &mut yes {
        for want in ["public", "secret", "marker"] {
            assert_eq!(next(c).await.0, want);
        }
    }
    for c in &mut no {
        assert_eq!(next(c).await.0, "public");
        assert_eq!(next(c).await.0, "marker", "no private update");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_on_the_other_node_with_exactly_what_it_missed() {
    let Some((_redis, a, b)) = two_nodes(config()).await else {
        return;
    };
    let topic = "https://e.com/orders/1";
    let template = "https://e.com/orders/{id}";
    let granted = bearer_for(&[template]);
    let auth = [("authorization", granted.as_str())];
    // On A: by topic (granted), by template (granted), by template (anonymous).
    let mut exact = a.subscribe(&[topic], &auth).await;
    let mut by_template = a.subscribe(&[template], &auth).await;
    let mut anonymous = a.subscribe(&[template], &[]).await;
    let first = b.publish(&[("topic", topic), ("data", "0")]).await;
    for c in [&mut exact, &mut by_template, &mut anonymous] {
        assert_eq!(next(c).await, ("0".to_owned(), first.clone()));
    }
    drop((exact, by_template, anonymous));
    // Missed, published on A and on B: what each of them should get, in order.
    a.publish(&[("topic", topic), ("data", "1")]).await;
    b.publish(&[("topic", "https://e.com/orders/2"), ("data", "2")])
        .await;
    a.publish(&[("topic", "https://e.com/users/1"), ("data", "nobody's")])
        .await;
    a.publish(&[("topic", topic), ("data", "3"), ("private", "")])
        .await;
    b.publish(&[
        ("topic", "https://e.com/orders/4"),
        ("data", "4"),
        ("private", ""),
    ])
    .await;
    let last = a.publish(&[("topic", topic), ("data", "5")]).await;
    // On B, by the header and by the query parameter.
    let mut exact = b
        .subscribe(&[topic], &[("last-event-id", &first), auth[0]])
        .await;
    assert_eq!(exact.headers["last-event-id"], first.as_str());
    let q = format!(
        "{}&{}",
        query("topic", &[template]),
        query("lastEventID", &[&first])
    );
    let mut by_template = b.subscribe_query(&q, &auth).await;
    assert_eq!(by_template.headers["last-event-id"], first.as_str());
    let mut anonymous = b.subscribe_query(&q, &[]).await;
    for (c, want) in [
        (&mut exact, &["1", "3", "5"][..]),
        (&mut by_template, &["1", "2", "3", "4", "5"]),
        (&mut anonymous, &["1", "2", "5"]),
    ] {
        let mut got = Vec::new();
        for _ in want {
            got.push(next(c).await.0);
        }
        assert_eq!(got, want);
        assert_eq!(c.last_event_id(), last);
    }
    // Then live, nothing twice: the next event is the marker, published on A.
    let marker = a.publish(&[("topic", topic), ("data", "marker")]).await;
    for c in [&mut exact, &mut by_template, &mut anonymous] {
        assert_eq!(next(c).await, ("marker".to_owned(), marker.clone()));
    }
    // A cursor nobody made: `earliest`, and everything kept.
    let unknown = b
        .subscribe(&[topic], &[("last-event-id", "never-seen")])
        .await;
    assert_eq!(unknown.headers["last-event-id"], "earliest");
    let mut all = a
        .subscribe(&[template], &[("last-event-id", "earliest")])
        .await;
    assert_eq!(all.headers["last-event-id"], "earliest");
    for want in ["0", "1", "2", "5", "marker"] {
        assert_eq!(next(&mut all).await.0, want);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_id_may_repeat_and_resolves_to_its_earliest() {
    let Some((_redis, a, b)) = two_nodes(config()).await else {
        return;
    };
    let topic = "https://e.com/orders/1";
    assert_eq!(
        a.publish(&[("topic", topic), ("id", "order-7"), ("data", "first")])
            .await,
        "order-7"
    );
    a.publish(&[("topic", topic), ("data", "between")]).await;
    assert_eq!(
        b.publish(&[("topic", topic), ("id", "order-7"), ("data", "again")])
            .await,
        "order-7",
        "the same id, from another node"
    );
    // Mercure's URN form is the hub's: a caller may not forge one.
    let forged = "urn:uuid:0badf00d-0000-4000-8000-000000000001";
    let (status, body, _) = a
        .post_as(&[("topic", topic), ("id", forged)], &publisher(&["*"]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // After the earliest event that carried it: the later one too (a duplicate at
    // worst, never a loss), on either node, by topic or by template.
    for (node, sel) in [(&b, topic), (&a, "https://e.com/orders/{id}")] {
        let mut c = node
            .subscribe(&[sel], &[("last-event-id", "order-7")])
            .await;
        assert_eq!(c.headers["last-event-id"], "order-7");
        assert_eq!(next(&mut c).await.0, "between");
        assert_eq!(
            next(&mut c).await,
            ("again".to_owned(), "order-7".to_owned())
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_resuming_past_what_the_log_keeps_is_told() {
    // Room for a few updates of 200 bytes in the log, more in each topic's history.
    let Some((redis, a, b)) = two_nodes(config().history_total_bytes(1500)).await else {
        return;
    };
    let template = "https://e.com/orders/{id}";
    let first = a
        .publish(&[("topic", "https://e.com/orders/0"), ("data", "0")])
        .await;
    let data = |i: usize| format!("{i} {}", "x".repeat(200));
    for i in 1..=20 {
        let topic = format!("https://e.com/orders/{}", i % 3);
        b.publish(&[("topic", &topic), ("data", &data(i))]).await;
    }
    let kept: usize = redis.cmd(&["XLEN", "m:log"]).text().parse().unwrap();
    assert!(kept < 10, "the log is bounded by the hub's total: {kept}");
    let mut c = b.subscribe(&[template], &[("last-event-id", &first)]).await;
    assert_eq!(c.headers["last-event-id"], "earliest", "cannot be honoured");
    let gap = c.next_of("ssehub.gap").await;
    let gap: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["reason"], "evicted", "{gap}");
    // Then the newest the log kept, in order, up to the last.
    let mut got = Vec::new();
    while got.last() != Some(&data(20)) {
        got.push(next(&mut c).await.0);
    }
    assert_eq!(got.len(), kept, "{got:?}");
    let want: Vec<String> = (21 - kept..=20).map(data).collect();
    assert_eq!(got, want);
    // An exact topic's own history still holds it: its replay has no gap.
    let mut exact = a
        .subscribe(&["https://e.com/orders/0"], &[("last-event-id", &first)])
        .await;
    assert_eq!(exact.headers["last-event-id"], first.as_str());
    assert_eq!(next(&mut exact).await.0, data(3));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_channel_lost_reaches_templates_from_the_log() {
    let Some((redis, a, b)) = two_nodes(config()).await else {
        return;
    };
    let mut star = b.subscribe(&["*"], &[]).await;
    let mut template = a.subscribe(&["https://e.com/lost/{id}"], &[]).await;
    let id = a
        .publish(&[("topic", "https://e.com/lost/0"), ("data", "0")])
        .await;
    assert_eq!(next(&mut star).await.0, "0");
    assert_eq!(next(&mut template).await.0, "0");
    // An update recorded as the publish script records it, whose message on the channel
    // was lost (PUB/SUB is at most once): the nodes' probes find its number, and they
    // read it from the log, the only place that has it for a subscriber by pattern.
    let epoch = &id["urn:uuid:".len()..][..8];
    let seq: u64 = redis
        .cmd(&["HGET", "m:meta", "seq"])
        .text()
        .parse()
        .unwrap();
    let next_seq = seq + 1;
    let lost = format!("urn:uuid:{epoch}-0000-4000-8000-{next_seq:012x}");
    let frame = format!("id: {lost}\ndata: lost\n\n");
    let header = "elsewhere\x1f1\x1f1\x1f0\x1f\x1fhttps://e.com/lost/1";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let entry = format!("{next_seq}-1");
    redis.cmd(&[
        "XADD", "m:log", &entry, "f", &frame, "t", &now, "c", "", "h", header,
    ]);
    redis.cmd(&["HSET", "m:logmeta", "last", &next_seq.to_string()]);
    redis.cmd(&["HINCRBY", "m:meta", "seq", "1"]);
    for c in [&mut star, &mut template] {
        assert_eq!(next(c).await, ("lost".to_owned(), lost.clone()));
    }
    let after = b
        .publish(&[("topic", "https://e.com/lost/2"), ("data", "2")])
        .await;
    for c in [&mut star, &mut template] {
        assert_eq!(next(c).await, ("2".to_owned(), after.clone()), "once");
    }
    a.stop().await;
    b.stop().await;
}

/// A Mercure 1.0 access token (HS256) granting `actions` on the URL pattern `pattern`.
fn v1_token(actions: &[&str], pattern: &str) -> String {
    mercure::v1_token(
        actions,
        json!([{ "match": pattern, "match_type": "urlpattern" }]),
    )
}

#[tokio::test]
async fn url_patterns_private_grants_and_subscription_events_across_nodes() {
    let redis = RedisServer::start();
    let a = Node::start(&redis, v1_config()).await;
    let b = Node::start(&redis, v1_config()).await;
    let watch = format!(
        "Bearer {}",
        v1_token(&["subscribe"], "/.well-known/mercure/subscriptions/*")
    );
    let events = "match_urlpattern=%2F.well-known%2Fmercure%2Fsubscriptions%2F*";
    let mut watcher = b
        .subscribe_query(events, &[("authorization", &watch)])
        .await;
    let own: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(
        own["active"], true,
        "its own subscription, announced on its node"
    );
    // A 1.0 subscriber on A: its subscription is announced to the watcher on B.
    let books = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let one = format!(
        "Bearer {}",
        v1_token(&["subscribe"], "https://example.com/books/1")
    );
    let mut reader = a.subscribe_query(books, &[("authorization", &one)]).await;
    let e = watcher.next_event().await;
    assert_eq!(e.event, "mercure");
    let doc: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (doc["match"].as_str(), doc["active"].as_bool()),
        (Some("https://example.com/books/:id"), Some(true))
    );
    // Updates published on B reach the pattern on A once, private ones where granted.
    b.publish(&[
        ("topic", "https://example.com/books/2"),
        ("data", "not yours"),
        ("private", "on"),
    ])
    .await;
    b.publish(&[
        ("topic", "https://example.com/books/1"),
        ("data", "yours"),
        ("private", "on"),
    ])
    .await;
    b.publish(&[("topic", "https://example.com/books/3"), ("data", "public")])
        .await;
    assert_eq!(reader.next_event().await.data, "yours");
    assert_eq!(reader.next_event().await.data, "public");
    // Its end too, from the other node.
    drop(reader);
    let doc: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(
        (doc["match"].as_str(), doc["active"].as_bool()),
        (Some("https://example.com/books/:id"), Some(false))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_subscriptions_api_lists_every_node_and_its_cursor_misses_no_change() {
    let redis = RedisServer::start();
    let a = Node::start(&redis, v1_config()).await;
    let b = Node::start(&redis, v1_config()).await;
    let token = v1_token(&["subscribe"], "/.well-known/mercure/subscriptions{/*}?");
    let bearer = format!("Bearer {token}");
    let _x = a.subscribe_query("match=x", &[]).await;
    // B's snapshot lists A's subscription (once A's lease holds it).
    let snapshot = || async {
        let (status, _, body) = request(
            b.addr,
            "GET",
            "/.well-known/mercure/subscriptions",
            &[("authorization", bearer.as_str())],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let mut listed = snapshot().await;
    for _ in 0..200 {
        if !listed["subscriptions"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        listed = snapshot().await;
    }
    let subs = listed["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{listed}");
    assert_eq!(subs[0]["match"], "x");
    let cursor = listed["lastEventID"].as_str().unwrap().to_owned();
    // A change after the snapshot, on A; then a watcher on B from the cursor gets it.
    let y = a.subscribe_query("match=y", &[]).await;
    let events = format!(
        "match_urlpattern=%2F.well-known%2Fmercure%2Fsubscriptions%2F*&last_event_id={}",
        cursor.replace(':', "%3A")
    );
    let mut watcher = b
        .subscribe_query(&events, &[("authorization", &bearer)])
        .await;
    let mut seen = Vec::new();
    while !seen.contains(&("y".to_owned(), true)) {
        let doc: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
        seen.push((
            doc["match"].as_str().unwrap_or_default().to_owned(),
            doc["active"].as_bool().unwrap_or_default(),
        ));
        assert!(seen.len() < 10, "{seen:?}");
    }
    drop(y);
    for n in 0.. {
        assert!(n < 10, "no end of y among the next ten events");
        let doc: Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
        if doc["match"] == "y" && doc["active"] == false {
            break;
        }
    }
    a.stop().await;
    b.stop().await;
}
