//! The soak's publisher: one keep-alive connection posting `soak` events round-robin over
//! the rooms, each carrying its room's sequence number, then a `soak-end` marker per room
//! carrying the count.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http::Method;

use super::rooms::Rooms;
use super::{connect, timeout};
use crate::hub_client::Target;

/// Events published to each room, and deliveries the server reported.
pub(super) struct Published {
    pub per_room: Vec<u64>,
    pub deliveries: u64,
}

/// Publish round-robin over the rooms at `rate` until `deadline`, then each room's end
/// marker.
pub(super) async fn publish(
    target: &Target,
    rooms: &Rooms,
    rate: u64,
    deadline: Instant,
) -> anyhow::Result<Published> {
    let (names, sizes) = (&rooms.names, &rooms.sizes);
    let mut http = connect(target).await?;
    let mut out = Published {
        per_room: vec![0; names.len()],
        deliveries: 0,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pads: Vec<String> = sizes.iter().map(|&s| "x".repeat(s)).collect();
    let paths: Vec<String> = names
        .iter()
        .map(|name| target.path(&format!("/publish?room={name}&event=soak")))
        .collect();
    let mut i = 0;
    while Instant::now() < deadline {
        ticker.tick().await;
        let room = i % names.len();
        i += 1;
        let seq = out.per_room[room];
        let data = format!("{seq} {}", pads[room]);
        let path = &paths[room];
        let (status, body) = timeout(
            "a response",
            http.request(Method::POST, path, Bytes::from(data)),
        )
        .await??;
        if !status.is_success() {
            bail!("POST {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        out.deliveries += v.get("delivered").and_then(|d| d.as_u64()).unwrap_or(0);
        out.per_room[room] += 1;
    }
    for (room, name) in names.iter().enumerate() {
        let path = target.path(&format!("/publish?room={name}&event=soak-end"));
        let count = Bytes::from(out.per_room[room].to_string());
        let (status, _) = timeout("a response", http.request(Method::POST, &path, count)).await??;
        if !status.is_success() {
            bail!("POST {path}: {status}");
        }
    }
    Ok(out)
}
