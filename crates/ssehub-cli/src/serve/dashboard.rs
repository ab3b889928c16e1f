//! The live dashboard of `ssehub serve`: one page compiled into the binary
//! (`assets/dashboard.html`, no external asset), fed by the hub itself over SSE.
//!
//! Once a second a task takes a sample of the hub (its counters, the largest rooms,
//! the process's memory and CPU time) and publishes it as event `sample` to a hub of its
//! own, served at `PATH/events`: the dashboard's viewers are not counted among the
//! hub's clients, and the feed's history (the last five minutes) gives a page that
//! opens, or reconnects, its chart at once (`?history=300`). The page computes rates
//! from consecutive samples and asks `GET /rooms/{room}` for a room's connections.
//!
//! With a token (`--publish-token`), the page and its feed need it, as the API's routes
//! do: `Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser (the page passes
//! it on to its feed and, as a header, to `GET /rooms/{room}`). A feed opened with a
//! token that expires (a JWT's `exp`) ends then, after `ssehub.expired`.
//!
//! Cost: one sample a second (a few tens of microseconds with a thousand clients; the
//! sum of the outboxes visits every connection), whether or not anyone watches, so that
//! the history has no holes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use hyper::body::Incoming;
use serde_json::{json, Value};
use ssehub::{HistoryConfig, Hub, HubApi, HubConfig, Message, Rejection, Server, SseOptions};
use tokio::task::JoinHandle;

use super::page;
use super::token::{bearer, token_of};
use crate::procfs;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("../../assets/dashboard.html");
/// The feed's room.
const ROOM: &str = "dashboard";
/// Samples kept for a page that opens: five minutes.
const KEPT: usize = 300;
/// Rooms a sample lists, largest first.
const TOP_ROOMS: usize = 10;

/// The task that feeds the dashboard; it stops when this is dropped.
pub(super) struct Feed(JoinHandle<()>);

impl Drop for Feed {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve the dashboard of `api`'s hub at `path` (and its feed at `path/events`),
/// guarded by `api`'s token, if it has one.
pub(super) fn mount(server: Server, api: &HubApi, path: &str) -> anyhow::Result<(Server, Feed)> {
    let path = path.trim_end_matches('/');
    anyhow::ensure!(
        path.starts_with('/'),
        "--dashboard-path {path:?}: give a path such as /dashboard"
    );
    let history = HistoryConfig::default()
        .max_events(KEPT)
        .max_age(Duration::from_secs(KEPT as u64 + 60));
    let feed_hub = Hub::with_config(HubConfig::default().history(Some(history)));
    let mut events = SseOptions::new()
        .prefix(format!("{path}/events"))
        .with_hub(feed_hub.clone())
        .auto_join_room(ROOM)
        // The dashboard's own page only, as the demo's streams.
        .allowed_origins(Vec::<String>::new());
    if api.requires_token() {
        let api = api.clone();
        events = events.authorize(move |ctx| {
            let given = bearer(ctx.headers()).or_else(|| ctx.query("token").map(str::to_owned));
            // The token's identity, with its expiry: the endpoint ends the feed then
            // (after `ssehub.expired`), as it ends `/sse` streams, so an operator's token
            // does not outlive its `exp` on an open dashboard.
            let operator = api.operator_identity(&given.unwrap_or_default());
            async move { operator.ok_or_else(Rejection::unauthorized) }
        });
    }
    let page_api = api.clone();
    let page = move |req: Request<Incoming>| {
        let ok = page_api.accepts_token(&token_of(&req).unwrap_or_default());
        async move {
            if ok {
                page::html(&req, PAGE)
            } else {
                page::unauthorized()
            }
        }
    };
    let server = server
        .sse(events)
        .route(path, page.clone())
        .route(&format!("{path}/"), page);
    let task = tokio::spawn(feed(api.hub().clone(), feed_hub));
    Ok((server, Feed(task)))
}

/// Publish a sample of `hub` to `feed` every second.
async fn feed(hub: Hub, feed: Hub) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let sample = sample(&hub).await.to_string();
        let message = Message::builder().event("sample").data(sample).build();
        if let Err(e) = message
            .map_err(|e| e.to_string())
            .and_then(|m| feed.to(ROOM).publish(&m).map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "dashboard sample not sent");
        }
    }
}

/// What the page shows of one second: the hub's counters and gauges, the backplane's
/// state, the largest rooms, the process's memory and CPU time.
async fn sample(hub: &Hub) -> Value {
    let pid = std::process::id();
    let (_, rooms) = hub.rooms_page(0, TOP_ROOMS).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "t": now_ms,
        "hub": hub.stats(),
        "backplane": hub.backplane_status(),
        "rss_bytes": procfs::rss_bytes(pid).ok(),
        "cpu_seconds": procfs::cpu_seconds(pid).ok(),
        "top_rooms": rooms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sample_has_what_the_page_reads() {
        let hub = Hub::new();
        let s = sample(&hub).await;
        for field in ["t", "rss_bytes", "cpu_seconds"] {
            assert!(s[field].is_number(), "{field} in {s}");
        }
        assert_eq!(s["hub"]["connections"], 0);
        assert!(s["hub"]["deliveries"].is_number());
        assert!(s["top_rooms"].as_array().unwrap().is_empty());
        assert_eq!(s["backplane"]["connected"], true);
    }
}
