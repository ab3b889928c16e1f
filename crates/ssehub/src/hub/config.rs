//! The hub's configuration: what it enforces (rooms per connection and per publish, the
//! size of one event), which rooms keep history, and which have presence (its options
//! are in `presence.rs`).

use super::history::{Fsync, HistoryConfig, HistoryRules, StoreConfig};
use super::presence::PresenceRules;
use super::topics::TopicRules;
use crate::selector::RoomSelector;

/// What a hub enforces and keeps: limits per connection and per publish, and which rooms
/// keep history.
///
/// By default every room keeps a history ([`HistoryConfig::default`]: 1,000 events,
/// 1 MiB, 10 minutes), all history together at most 64 MiB, and a stream that resumes
/// from a `Last-Event-ID` gets what it missed.
///
/// ```
/// use ssehub::{HistoryConfig, HubConfig};
///
/// let config = HubConfig::default()
///     .max_rooms_per_connection(16)
///     .room_history("cursors.*".parse()?, None) // live positions: no history
///     .room_history("audit".parse()?, Some(HistoryConfig::default().max_events(100_000)));
/// let hub = ssehub::Hub::with_config(config);
/// # Ok::<(), ssehub::SelectorError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    max_rooms_per_connection: usize,
    max_rooms_per_publish: usize,
    max_event_bytes: usize,
    history: HistoryRules,
    /// Set by [`HubConfig::presence`], [`HubConfig::presence_window`] and
    /// [`HubConfig::presence_counts_only`].
    pub(super) presence: PresenceRules,
    /// A dialect with topics (`topics.rs`): long names, patterns, URN ids.
    pub(super) topics: TopicRules,
}

/// The default of [`HubConfig::max_event_bytes`]: half the default outbox bound
/// ([`crate::SseOptions::outbox_limit`], 1 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 512 * 1024;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_rooms_per_connection: 256,
            max_rooms_per_publish: 256,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            history: HistoryRules::default(),
            presence: PresenceRules::default(),
            topics: TopicRules::default(),
        }
    }
}

impl HubConfig {
    /// The most rooms one connection may be in (256 by default).
    pub fn max_rooms_per_connection(mut self, n: usize) -> Self {
        self.max_rooms_per_connection = n;
        self
    }

    /// The most distinct rooms one publish may name (256 by default, as many as a
    /// connection may be in). A room named twice counts once. Past it the publish is
    /// refused, with nothing sent: [`crate::PublishError::TooManyRooms`] from
    /// [`crate::Broadcast::publish`].
    pub fn max_rooms_per_publish(mut self, n: usize) -> Self {
        self.max_rooms_per_publish = n;
        self
    }

    /// The most bytes one event may take on the wire, encoded (512 KiB by default, half
    /// the default outbox bound). Keep it at most half of every endpoint's
    /// [`crate::SseOptions::outbox_limit`]: then a client that reads never becomes a slow
    /// consumer because of one event, even with another still queued before it. A larger
    /// message is refused, with nothing sent: [`crate::PublishError::TooLarge`] from
    /// [`crate::Broadcast::publish`], [`crate::SendError::TooLarge`] from
    /// [`crate::Connection::send`].
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The history every room keeps unless a [`HubConfig::room_history`] rule says
    /// otherwise; `None`: no history (events keep the caller's id, or none).
    pub fn history(mut self, history: Option<HistoryConfig>) -> Self {
        self.history.default = history;
        self
    }

    /// The history of the rooms `selector` matches (`None`: none). Rules are tried in the
    /// order they were added; the first that matches wins.
    pub fn room_history(mut self, selector: RoomSelector, history: Option<HistoryConfig>) -> Self {
        self.history.overrides.push((selector, history));
        self
    }

    /// The most bytes all rooms' history may hold together (64 MiB by default); past it
    /// the oldest events go first, whatever their room.
    pub fn history_total_bytes(mut self, bytes: usize) -> Self {
        self.history.total_bytes = bytes.max(1);
        self
    }

    /// Keep the history on disk in `dir` (created if missing), so that it survives a
    /// restart: the rings, the epoch and the sequence. A client that resumes with its
    /// last id after the process stopped (even killed) gets exactly what it missed,
    /// within the limits, which apply on disk too. Every event is written to the OS
    /// before it is delivered or its publish answered; `fsync` says what a machine crash
    /// may take (see [`Fsync`]). Open it with [`crate::Hub::open`], which says why it
    /// could not be opened. One hub per directory at a time (a lock file says so).
    /// Ignored by `Hub::with_redis` (the history lives in Redis) and when no
    /// room keeps history.
    pub fn history_dir(mut self, dir: impl Into<std::path::PathBuf>, fsync: Fsync) -> Self {
        self.history.store = Some(StoreConfig {
            dir: dir.into(),
            fsync,
            segment_bytes: None,
        });
        self
    }

    /// The largest segment file of a durable history before a new one is started (by
    /// default a sixteenth of [`HubConfig::history_total_bytes`], between 256 KiB and
    /// 64 MiB). Files are deleted whole: smaller ones follow the limits more closely.
    pub fn history_segment_bytes(mut self, bytes: u64) -> Self {
        if let Some(store) = &mut self.history.store {
            store.segment_bytes = Some(bytes.max(4096));
        }
        self
    }

    /// Where the history is kept on disk, if it is ([`HubConfig::history_dir`]).
    pub fn history_location(&self) -> Option<(&std::path::Path, Fsync)> {
        self.history
            .store
            .as_ref()
            .map(|s| (s.dir.as_path(), s.fsync))
    }

    /// The event type of the gap signal (`ssehub.gap` by default).
    pub fn gap_event(mut self, name: impl Into<String>) -> Self {
        self.history.gap_event = name.into();
        self
    }

    /// The most rooms one connection may be in.
    pub fn rooms_per_connection(&self) -> usize {
        self.max_rooms_per_connection
    }

    /// The most distinct rooms one publish may name.
    pub fn rooms_per_publish(&self) -> usize {
        self.max_rooms_per_publish
    }

    /// The most bytes one encoded event may take.
    pub fn event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    pub(crate) fn history_rules(&self) -> &HistoryRules {
        &self.history
    }

    /// A hub whose rooms are the topics of `rules` (`topics.rs`).
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    pub(crate) fn topics(mut self, rules: TopicRules) -> Self {
        self.history.ids = rules.ids;
        self.history.repeat_ids = rules.repeat_ids;
        self.topics = rules;
        self
    }

    pub(crate) fn topic_rules(&self) -> &TopicRules {
        &self.topics
    }

    /// The longest room name this hub accepts.
    pub(crate) fn max_room_name(&self) -> usize {
        self.topics.max_name.unwrap_or(super::MAX_ROOM_NAME_LEN)
    }

    pub(crate) fn presence_rules(&self) -> &PresenceRules {
        &self.presence
    }

    /// Whether any room keeps history.
    pub fn keeps_history(&self) -> bool {
        self.history.any()
    }
}
