//! Keep-alive: idle streams get `: ping` at the interval their endpoint asked for.
//!
//! The hub runs one sweep task per distinct interval among its connections (started by
//! the first connection with that interval, ended with the hub), not a timer per
//! connection. A sweep visits only the connections that asked for its interval, so two
//! endpoints sharing a hub never ping each other's streams, and each connection is
//! visited by one sweep only: its "traffic since the last sweep" flag means what it says.

use std::collections::HashSet;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::fanout;
use super::HubInner;
use crate::message;
use crate::sync::lock;

/// The intervals whose sweeps run.
#[derive(Default)]
pub(super) struct Sweeps {
    running: Mutex<HashSet<Duration>>,
}

impl Sweeps {
    /// Make sure a sweep runs every `interval` for `hub` (needs a tokio runtime; without
    /// one there is nothing to ping with).
    pub(super) fn ensure(&self, hub: &Weak<HubInner>, interval: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if lock(&self.running).insert(interval) {
            rt.spawn(sweep(hub.clone(), interval));
        }
    }
}

/// Every `interval`, ping the streams of `hub` that asked for this interval and had no
/// traffic since the last sweep. Ends with the hub.
async fn sweep(hub: Weak<HubInner>, interval: Duration) {
    let ping = message::comment("ping");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        ticker.tick().await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let conns: Vec<_> = lock(&hub.connections)
            .values()
            .filter(|c| c.keep_alive() == Some(interval))
            .cloned()
            .collect();
        let n = fanout::to_each(&hub.local, &conns, &ping, true);
        tracing::trace!(pinged = n, ?interval, "keep-alive sweep");
    }
}
