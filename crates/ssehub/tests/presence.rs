//! Presence over real sockets: members of an opted-in room hear who joins and leaves,
//! coalesced (a burst of joins is a few events, not one per joiner), with identities;
//! other rooms hear nothing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use ssehub::{Hub, HubConfig, SseOptions};

fn options() -> SseOptions {
    let config = HubConfig::default()
        .history(None)
        .presence("chat.*".parse().unwrap())
        .presence_window(Duration::from_millis(200));
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
