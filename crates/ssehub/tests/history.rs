//! Resumable streams over real sockets: history per room, replay after a cursor in one
//! room and across several, the header and the query parameter, `earliest` and
//! `history=N`, the gap signal for every cursor that cannot be honoured, a replay larger
//! than the outbox, joins in `on_connect`, and rooms that outlive their members.

mod common;

use std::time::Duration;

use serde_json::Value;
use ssehub::decode::Event;
use ssehub::{HistoryConfig, Hub, HubConfig, Message, SseOptions};

use common::*;

/// Options of a history-keeping hub whose streams pick their rooms with `?room=`.
fn options(config: HubConfig) -> SseOptions {
    SseOptions::new()
        .with_hub(Hub::with_config(config))
        .keep_alive(None)
        .rooms_from_query(true)
}

/// Publish `data` to `rooms`; its id.
fn publish(hub: &Hub, rooms: &[&str], data: &str) -> String {
    hub.to(rooms)
        .unique()
        .publish(&Message::new(data))
        .unwrap()
        .id
        .unwrap()
}

async fn resume(srv: &TestServer, path: &str, last: &str) -> SseClient {
    let client = SseClient::connect(srv.addr, path, &[("last-event-id", last)]).await;
    assert_eq!(client.status, http::StatusCode::OK, "GET {path}");
    client
}

/// The data of the next `n` events.
async fn datas(client: &mut SseClient, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.next_event().await.data);
    }
    out
}

fn gap(e: &Event) -> Value {
    assert_eq!(e.event, "ssehub.gap", "{e:?}");
    serde_json::from_str(&e.data).unwrap()
}

/// Wait until the hub counts `n` streams, so a publish reaches them all.
async fn connected(srv: &TestServer, n: usize) {
    eventually("the streams to be registered", || {
        srv.hub.connection_count() == n
    })
    .await;
}

#[tokio::test]
async fn a_reconnect_gets_what_it_missed_then_live_events() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    let ids: Vec<String> = (1..=5)
        .map(|i| publish(&srv.hub, &["a"], &i.to_string()))
        .collect();
    let mut c = resume(&srv, "/sse?room=a", &ids[1]).await;
    assert_eq!(datas(&mut c, 3).await, ["3", "4", "5"]);
    assert_eq!(c.last_event_id(), ids[4]);
    publish(&srv.hub, &["a"], "6");
    let live = c.next_event().await;
    assert_eq!(live.data, "6");
    assert_eq!(srv.hub.stats().replays, 1);
    assert_eq!(srv.hub.stats().replayed_events, 3);
    srv.stop().await;
}

#[tokio::test]
async fn an_empty_last_event_id_is_a_first_connection() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    publish(&srv.hub, &["a"], "old");
    let mut by_header = resume(&srv, "/sse?room=a", "").await;
    let mut by_query = SseClient::open(srv.addr, "/sse?room=a&last_event_id=").await;
    connected(&srv, 2).await;
    publish(&srv.hub, &["a"], "new");
    // No replay and no gap signal: the next event is the live one.
    assert_eq!(by_header.next_event().await.data, "new");
    assert_eq!(by_query.next_event().await.data, "new");
    assert_eq!(srv.hub.stats().replays, 0);
    srv.stop().await;
}

#[tokio::test]
async fn across_three_rooms_each_missed_event_comes_once_in_order() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    let first = publish(&srv.hub, &["a"], "a1");
    publish(&srv.hub, &["b"], "b2");
    publish(&srv.hub, &["a", "b"], "ab3");
    publish(&srv.hub, &["elsewhere"], "x4");
    publish(&srv.hub, &["c"], "c5");
    publish(&srv.hub, &["c", "a"], "ca6");
    let mut c = resume(&srv, "/sse?room=a&room=b&room=c", &first).await;
    assert_eq!(datas(&mut c, 4).await, ["b2", "ab3", "c5", "ca6"]);
    publish(&srv.hub, &["b"], "b7");
    assert_eq!(
        c.next_event().await.data,
        "b7",
        "nothing else came in between"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_header_wins_over_the_query_parameter() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    let ids: Vec<String> = (1..=4)
        .map(|i| publish(&srv.hub, &["a"], &i.to_string()))
        .collect();
    // Browsers reconnect to the same URL: its parameter is stale, the header is not.
    let path = format!("/sse?room=a&last_event_id={}", ids[0]);
    let mut c = resume(&srv, &path, &ids[2]).await;
    assert_eq!(datas(&mut c, 1).await, ["4"]);
    // Without the header, the parameter (either spelling) is the cursor.
    let mut c = srv
        .sse(&format!("/sse?room=a&lastEventId={}", ids[1]))
        .await;
    assert_eq!(datas(&mut c, 2).await, ["3", "4"]);
    srv.stop().await;
}

#[tokio::test]
async fn earliest_and_history_n_bootstrap_a_first_connection() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    for i in 1..=5 {
        publish(&srv.hub, &["a"], &i.to_string());
    }
    publish(&srv.hub, &["b"], "other room");
    let mut c = srv.sse("/sse?room=a&last_event_id=earliest").await;
    assert_eq!(datas(&mut c, 5).await, ["1", "2", "3", "4", "5"]);
    let mut c = srv.sse("/sse?room=a&history=2").await;
    assert_eq!(datas(&mut c, 2).await, ["4", "5"]);
    publish(&srv.hub, &["a"], "6");
    assert_eq!(c.next_event().await.data, "6");
    let refused = SseClient::connect(srv.addr, "/sse?history=lots", &[]).await;
    assert_eq!(refused.status, http::StatusCode::BAD_REQUEST);
    srv.stop().await;
}

#[tokio::test]
async fn a_cursor_that_cannot_be_honoured_gets_the_gap_signal_first() {
    let config = HubConfig::default().history(Some(HistoryConfig::default().max_events(3)));
    let srv = TestServer::start(options(config).no_auto_join()).await;
    let ids: Vec<String> = (1..=6)
        .map(|i| publish(&srv.hub, &["a"], &i.to_string()))
        .collect();
    let epoch = ids[0].split('-').next().unwrap().to_owned();
    let other_epoch = if epoch == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let cases = [
        (ids[0].clone(), "evicted"),
        (format!("{other_epoch}-3"), "unknown-epoch"),
        (format!("{epoch}-999"), "malformed"),
        ("never-published".to_owned(), "unknown-id"),
    ];
    for (cursor, reason) in cases {
        let mut c = resume(&srv, "/sse?room=a", &cursor).await;
        let g = gap(&c.next_event().await);
        assert_eq!(g["reason"], reason, "{cursor}");
        assert_eq!(g["last_event_id"], cursor.as_str());
        assert_eq!(g["rooms"], serde_json::json!(["a"]));
        // Then whatever history remains, then live events.
        assert_eq!(datas(&mut c, 3).await, ["4", "5", "6"], "{cursor}");
    }
    let gaps = srv.hub.stats().gaps;
    for reason in ["evicted", "unknown-epoch", "malformed", "unknown-id"] {
        assert_eq!(gaps[reason], 1, "{reason}: {gaps:?}");
    }
    // A cursor the history still covers gets no gap.
    let mut c = resume(&srv, "/sse?room=a", &ids[3]).await;
    assert_eq!(datas(&mut c, 2).await, ["5", "6"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_replay_larger_than_the_outbox_is_capped_and_the_client_stays() {
    let srv = TestServer::start(options(HubConfig::default()).outbox_limit(8 * 1024)).await;
    let body = "x".repeat(200);
    for i in 0..200 {
        publish(&srv.hub, &["a"], &format!("{i:03} {body}"));
    }
    let mut c = srv.sse("/sse?room=a&last_event_id=earliest").await;
    let g = gap(&c.next_event().await);
    assert_eq!(g["reason"], "replay-limit");
    let first = g["first_id"].as_str().unwrap().to_owned();
    let mut got = Vec::new();
    loop {
        let e = c.next_event().await;
        got.push(e.data[..3].to_owned());
        if got.last().unwrap() == "199" {
            break;
        }
    }
    // The newest events that fit half the outbox, in order, ending with the last.
    assert!(got.len() >= 10 && got.len() < 30, "{}", got.len());
    let start: usize = got[0].parse().unwrap();
    let expected: Vec<String> = (start..200).map(|i| format!("{i:03}")).collect();
    assert_eq!(got, expected);
    assert!(
        first.ends_with(&format!("-{}", start + 1)),
        "{first} vs {start}"
    );
    publish(&srv.hub, &["a"], "live");
    assert_eq!(
        c.next_event().await.data,
        "live",
        "not closed as a slow consumer"
    );
    assert_eq!(srv.hub.stats().slow_consumer_closes, 0);
    srv.stop().await;
}

#[tokio::test]
async fn rooms_joined_in_on_connect_are_part_of_the_replay() {
    let sse = options(HubConfig::default())
        .no_auto_join()
        .on_connect(|conn, ctx| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ctx.hub().join("late", &conn).unwrap();
        });
    let srv = TestServer::start(sse).await;
    let first = publish(&srv.hub, &["late"], "1");
    publish(&srv.hub, &["late"], "2");
    let mut c = resume(&srv, "/sse", &first).await;
    // Published while on_connect runs: it comes with the replay, once.
    connected(&srv, 1).await;
    publish(&srv.hub, &["late"], "3");
    assert_eq!(datas(&mut c, 2).await, ["2", "3"]);
    publish(&srv.hub, &["late"], "4");
    assert_eq!(c.next_event().await.data, "4");
    srv.stop().await;
}

#[tokio::test]
async fn rooms_without_history_keep_the_callers_id_or_none() {
    let config = HubConfig::default().room_history("live.*".parse().unwrap(), None);
    let srv = TestServer::start(options(config)).await;
    let mut c = srv.sse("/sse?room=live.cursor").await;
    connected(&srv, 1).await;
    srv.hub
        .to("live.cursor")
        .publish(&Message::new("no id"))
        .unwrap();
    let own = Message::builder().id("").data("reset").build().unwrap();
    assert_eq!(
        srv.hub.to("live.cursor").publish(&own).unwrap().delivered,
        1,
        "an empty id is fine here"
    );
    let e = c.next_event().await;
    assert_eq!((e.data.as_str(), e.last_event_id.as_str()), ("no id", ""));
    assert_eq!(c.next_event().await.data, "reset");
    assert!(srv.hub.history("live.cursor").await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn a_duplicate_id_is_refused_and_nothing_is_sent() {
    let srv = TestServer::start(options(HubConfig::default())).await;
    let mut c = srv.sse("/sse?room=a").await;
    connected(&srv, 1).await;
    let own = Message::builder()
        .id("order-1")
        .data("first")
        .build()
        .unwrap();
    srv.hub.to("a").publish(&own).unwrap();
    let again = srv.hub.to("a").publish(&own);
    assert_eq!(
        again,
        Err(ssehub::PublishError::DuplicateId("order-1".into()))
    );
    // No silent fallback: the refused event reached nobody.
    srv.hub.to("a").publish(&Message::new("marker")).unwrap();
    assert_eq!(c.next_event().await.data, "first");
    assert_eq!(c.next_event().await.data, "marker");
    assert_eq!(
        srv.hub.history("a").await.len(),
        2,
        "recorded once, and the marker"
    );
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_room_outlives_its_members_until_its_history_expires() {
    let config = HubConfig::default().history(Some(
        HistoryConfig::default().max_age(Duration::from_secs(60)),
    ));
    let hub = Hub::with_config(config);
    hub.to("news")
        .publish(
            &ssehub::Message::builder()
                .event("headline")
                .data("hello")
                .build()
                .unwrap(),
        )
        .map(|p| p.delivered)
        .unwrap();
    assert_eq!(hub.room_count(), 0, "no member: not in the room table");
    let stats = hub.stats();
    assert_eq!((stats.history_rooms, stats.history_events), (1, 1));
    assert!(stats.history_bytes > 0);
    assert_eq!(hub.history("news").await[0].data, "hello");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(hub.stats().history_events, 1, "30 s old: kept");
    tokio::time::sleep(Duration::from_secs(32)).await;
    let stats = hub.stats();
    assert_eq!(
        (
            stats.history_rooms,
            stats.history_events,
            stats.history_bytes
        ),
        (0, 0, 0),
        "expired and gone"
    );
}

#[tokio::test]
async fn a_cursor_into_a_history_that_expired_whole_gets_the_gap_signal() {
    let config = HubConfig::default().history(Some(
        HistoryConfig::default().max_age(Duration::from_millis(300)),
    ));
    let srv = TestServer::start(options(config)).await;
    let first = publish(&srv.hub, &["r"], "old-0");
    publish(&srv.hub, &["r"], "old-1");
    // Both expire, the room's history with them; then the room records again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    eventually("the history to expire", || {
        srv.hub.stats().history_events == 0
    })
    .await;
    publish(&srv.hub, &["r"], "young");
    let mut c = resume(&srv, "/sse?room=r", &first).await;
    assert_eq!(gap(&c.next_event().await)["reason"], "evicted");
    assert_eq!(c.next_event().await.data, "young");
    srv.stop().await;
}
