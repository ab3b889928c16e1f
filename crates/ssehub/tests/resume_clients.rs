//! Replay with real clients: headless Chromium's `EventSource` and the npm `eventsource`
//! package. The server cuts their streams while events are being published; each client
//! reconnects by itself, with its `Last-Event-ID`, and in the end holds every event once,
//! in order.
#![cfg(unix)]

mod browser;
mod common;
#[path = "browser/node.rs"]
mod node;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use ssehub::{Hub, HubConfig, SseOptions};

use browser::Browser;
use common::{eventually, TestServer};
use node::{node_available, NodeClient, NODE};

/// Events published in all; the last one is of type `last`.
const EVENTS: usize = 60;
/// The server cuts every stream after these many events.
const CUTS: [usize; 2] = [15, 40];
const CLIENT_WAIT: Duration = Duration::from_secs(30);

async fn server() -> TestServer {
    let sse = SseOptions::new()
        .with_hub(Hub::with_config(HubConfig::default()))
        .keep_alive(None)
        .retry(Some(Duration::from_millis(50)));
    let page = Bytes::from_static(PAGE.as_bytes());
    TestServer::start_with(sse, move |s| {
        s.route("/page", move |_req| {
            let page = page.clone();
            async move {
                let mut res = http::Response::new(http_body_util::Full::new(page));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                res
            }
        })
    })
    .await
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>resume</title></head><body><script>
"use strict";
window.__log = [];
window.__opens = 0;
const es = new EventSource("/sse");
es.onopen = () => { window.__opens += 1; };
for (const type of ["tick", "last"]) {
  es.addEventListener(type, (e) => window.__log.push({ type: e.type, data: e.data, id: e.lastEventId }));
}
</script></body></html>"#;

/// Publish the events, cutting every stream at [`CUTS`]; each cut waits until the
/// clients are back (`opens` says how many connections to expect by then).
async fn publish_with_cuts(srv: &TestServer, clients: usize) {
    let hub = srv.hub.clone();
    for n in 0..EVENTS {
        let event = if n + 1 == EVENTS { "last" } else { "tick" };
        hub.to(ssehub::ROOM_ALL)
            .publish(
                &ssehub::Message::builder()
                    .event(event)
                    .data(n.to_string())
                    .build()
                    .unwrap(),
            )
            .map(|p| p.delivered)
            .unwrap();
        if CUTS.contains(&n) {
            hub.close_all();
            eventually("the clients to reconnect", || {
                hub.connection_count() == clients
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every event once, in order, with ids that only grow.
#[track_caller]
fn assert_every_event_once(events: &[Value]) {
    let datas: Vec<String> = events
        .iter()
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..EVENTS).map(|n| n.to_string()).collect();
    assert_eq!(datas, want, "every event once, in order");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| {
            let id = e["id"].as_str().or(e["lastEventId"].as_str()).unwrap();
            id.rsplit_once('-').unwrap().1.parse().unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_resumes_after_the_server_cuts_its_stream_and_misses_nothing() {
    if !browser::require("chromedriver and Chromium", browser::available()) {
        return;
    }
    let srv = server().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/page", srv.addr)).await;
    eventually("the page's stream", || srv.hub.connection_count() == 1).await;
    publish_with_cuts(&srv, 1).await;
    let log = browser
        .poll(
            "every event on the page",
            "return window.__log;",
            CLIENT_WAIT,
            |v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|e| e["type"] == "last"))
            },
        )
        .await;
    assert_every_event_once(log.as_array().unwrap());
    let opens = browser.eval("return window.__opens;").await;
    assert_eq!(
        opens,
        json!(CUTS.len() + 1),
        "it reconnected after each cut"
    );
    assert_eq!(srv.hub.stats().replays as usize, CUTS.len());
    browser.quit().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_eventsource_resumes_after_the_server_cuts_its_stream_and_misses_nothing() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let srv = Arc::new(server().await);
    let config = json!({"types": ["tick", "last"], "until": "last", "timeoutMs": 30000});
    let mut client = NodeClient::spawn(&format!("http://{}/sse", srv.addr), config);
    eventually("the client's stream", || srv.hub.connection_count() == 1).await;
    let publisher = {
        let srv = srv.clone();
        tokio::spawn(async move { publish_with_cuts(&srv, 1).await })
    };
    let log = client.until_done().await;
    publisher.await.unwrap();
    let events: Vec<Value> = log
        .iter()
        .filter(|v| v["kind"] == "event")
        .cloned()
        .collect();
    assert_every_event_once(&events);
    let opens = log.iter().filter(|v| v["kind"] == "open").count();
    assert_eq!(opens, CUTS.len() + 1);
    let Ok(srv) = Arc::try_unwrap(srv) else {
        panic!("the server is still shared")
    };
    srv.stop().await;
}
