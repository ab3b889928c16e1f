//! Reconnection hints: `retry:` frames, their delays jittered per connection so that
//! clients dropped together do not all come back at the same instant. (Keep-alive pings
//! are the hub's: `hub/keepalive.rs`.)

use std::time::Duration;

use bytes::Bytes;

use crate::connection::ConnectionId;
use crate::message::Message;

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

/// A delay in `from..=to` (whole milliseconds), uniform over the connections' random
/// ids and stable per connection: a server's streams told to come back spread over the
/// window.
pub(crate) fn within_window(from: Duration, to: Duration, id: ConnectionId) -> Duration {
    let lo = u64::try_from(from.as_millis()).unwrap_or(u64::MAX);
    let hi = u64::try_from(to.as_millis()).unwrap_or(u64::MAX).max(lo);
    let width = u128::from(hi - lo) + 1;
    // The id's low 62 bits: all random in a v4 uuid (its version and variant bits are
    // above them).
    let draw = (id.spread() & ((1 << 62) - 1)) % width;
    Duration::from_millis(lo + u64::try_from(draw).unwrap_or(0))
}

/// The frame `retry: <delay>`.
pub(crate) fn retry_frame(delay: Duration) -> Bytes {
    Message::builder()
        .retry(delay)
        .build()
        .expect("a retry-only message is always valid")
        .encode()
}
