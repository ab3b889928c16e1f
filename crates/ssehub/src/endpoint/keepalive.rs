//! Keep-alive and reconnection hints: one sweep task per endpoint pings idle streams
//! (no timer per connection), and `retry:` delays are jittered per connection so that
//! clients dropped together do not all come back at the same instant.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;

use crate::connection::ConnectionId;
use crate::hub::Hub;
use crate::message::{self, Message};

/// Every `interval`, ping the streams of `hub` that had no traffic since the last
/// sweep. Ends when the endpoint (whatever `alive` points at) is gone.
pub(crate) async fn sweep<T: Send + Sync + 'static>(alive: Weak<T>, hub: Hub, interval: Duration) {
    let ping = message::comment("ping");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        ticker.tick().await;
        if alive.strong_count() == 0 {
            return;
        }
        let n = hub.send_to_all(&ping, true);
        tracing::trace!(pinged = n, "keep-alive sweep");
    }
}

/// 80 to 100 % of `retry`, chosen per connection (from its random id), so that clients
/// dropped together (a restart, a network blip) do not all come back at the same instant.
pub(crate) fn jitter(retry: Duration, id: ConnectionId) -> Duration {
    let percent = 80 + (id.spread() % 21) as u32;
    // In whole milliseconds (what goes on the wire), divided first so that a huge
    // configured delay cannot overflow.
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    let percent = u64::from(percent);
    Duration::from_millis(ms / 100 * percent + ms % 100 * percent / 100)
}

/// The frame `retry: <delay>`.
pub(crate) fn retry_frame(delay: Duration) -> Bytes {
    Message::builder()
        .retry(delay)
        .build()
        .expect("a retry-only message is always valid")
        .encode()
}
