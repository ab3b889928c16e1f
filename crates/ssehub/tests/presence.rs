//! Presence over real sockets: members of an opted-in room hear who joins and leaves,
//! coalesced (a burst of joins is a few events, not one per joiner), with identities;
//! other rooms hear nothing; with `presence_counts_only`, counts that name no one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use ssehub::{Hub, HubConfig, SseOptions};

fn options() -> SseOptions {
    options_with(|config| config)
}

fn options_with(change: impl FnOnce(HubConfig) -> HubConfig) -> SseOptions {
    let config = change(
        HubConfig::default()
            .history(None)
            .presence("chat.*".parse().unwrap())
            .presence_window(Duration::from_millis(200)),
    );
    SseOptions::new()
        .with_hub(Hub::with_config(config))
        .keep_alive(None)
        .rooms_from_query(true)
        .on_connect(|conn, ctx| async move {
            if let Some(user) = ctx.query("user") {
                conn.set_identity(user);
            }
            let _ = conn.send_event("ready", "");
        })
}

/// Read `event`s until their `count`s add up to `total`; returns how many events that took.
async fn tally(client: &mut SseClient, event: &str, total: u64) -> (usize, Vec<Value>) {
    let (mut events, mut seen, mut listed) = (0, 0, Vec::new());
    while seen < total {
        let e = client.next_of(event).await;
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["room"], "chat.lobby");
        seen += data["count"].as_u64().unwrap();
        listed.extend(data["connections"].as_array().unwrap().iter().cloned());
        events += 1;
    }
    assert_eq!(seen, total, "{event}: counted more than happened");
    (events, listed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_are_told_coalesced() {
    const BURST: usize = 40;
    let srv = TestServer::start(options()).await;
    let mut watcher = srv.sse("/sse?room=chat.lobby&user=watcher").await;
    watcher.next_of("ready").await;
    // Its own arrival is the first batch it hears.
    let (_, me) = tally(&mut watcher, "ssehub.join", 1).await;
    assert_eq!(me[0]["identity"], "watcher");

    let mut crowd = Vec::new();
    for i in 0..BURST {
        let path = format!("/sse?room=chat.lobby&user=u{i}");
        crowd.push(srv.sse(&path).await);
    }
    let (events, listed) = tally(&mut watcher, "ssehub.join", BURST as u64).await;
    assert!(events <= 4, "{BURST} joins took {events} events");
    assert!(listed
        .iter()
        .all(|c| c["identity"].as_str().is_some_and(|u| u.starts_with('u'))));
    let ids: std::collections::HashSet<_> = listed.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids.len(), BURST, "each joiner listed once");

    drop(crowd);
    let (events, _) = tally(&mut watcher, "ssehub.leave", BURST as u64).await;
    assert!(events <= 4, "{BURST} leaves took {events} events");
    srv.stop().await;
}

#[tokio::test]
async fn rooms_without_presence_hear_nothing() {
    let srv = TestServer::start(options()).await;
    let mut quiet = srv.sse("/sse?room=news").await;
    quiet.next_of("ready").await;
    let mut other = srv.sse("/sse?room=news").await;
    other.next_of("ready").await;
    drop(other);
    tokio::time::sleep(Duration::from_millis(400)).await;
    srv.hub
        .to("news")
        .publish(
            &ssehub::Message::builder()
                .event("marker")
                .data("after")
                .build()
                .unwrap(),
        )
        .map(|p| p.delivered)
        .unwrap();
    let next = quiet.next_event().await;
    assert_eq!(next.event, "marker", "no presence event came first");
    srv.stop().await;
}

#[tokio::test]
async fn counts_only_presence_names_no_one() {
    let srv = TestServer::start(options_with(|c| c.presence_counts_only(true))).await;
    let mut watcher = srv.sse("/sse?room=chat.lobby&user=watcher").await;
    watcher.next_of("ready").await;
    let mut told = Vec::new();
    let mut crowd = Vec::new();
    for i in 0..3 {
        crowd.push(
            srv.sse(&format!("/sse?room=chat.lobby&user=user-{i}"))
                .await,
        );
    }
    let mut joined = 0;
    while joined < 4 {
        let e = watcher.next_of("ssehub.join").await;
        let data: Value = serde_json::from_str(&e.data).unwrap();
        joined += data["count"].as_u64().unwrap();
        told.push(data);
    }
    assert_eq!(joined, 4, "the watcher and three others");
    drop(crowd);
    let mut left = 0;
    while left < 3 {
        let e = watcher.next_of("ssehub.leave").await;
        let data: Value = serde_json::from_str(&e.data).unwrap();
        left += data["count"].as_u64().unwrap();
        told.push(data);
    }
    for data in &told {
        let mut keys: Vec<&str> = data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["count", "room"], "{data}");
        let text = data.to_string();
        assert!(
            !text.contains("user-") && !text.contains("watcher"),
            "{text}"
        );
    }
    srv.stop().await;
}
