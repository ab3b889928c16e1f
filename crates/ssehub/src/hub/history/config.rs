//! How much history a room keeps, and which rooms keep it.

use std::time::Duration;

use crate::hub::topics::IdForm;
use crate::selector::RoomSelector;

/// How much history a room keeps: at most this many events, this many bytes (of encoded
/// frames) and this old, whichever bound is reached first.
///
/// ```
/// use std::time::Duration;
/// use ssehub::HistoryConfig;
///
/// let audit = HistoryConfig::default()
///     .max_events(100_000)
///     .max_bytes(32 << 20)
///     .max_age(Duration::from_secs(24 * 3600));
/// assert_eq!(audit.events(), 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl Default for HistoryConfig {
    /// 1,000 events, 1 MiB, 10 minutes.
    fn default() -> Self {
        HistoryConfig {
            max_events: 1000,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(600),
        }
    }
}

impl HistoryConfig {
    /// At most this many events (at least 1).
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// At most this many bytes of encoded frames. A single larger event is still kept
    /// (alone), as an outbox keeps one larger frame.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Events older than this are dropped.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The most events kept.
    pub fn events(&self) -> usize {
        self.max_events
    }

    /// The most bytes kept.
    pub fn bytes(&self) -> usize {
        self.max_bytes
    }

    /// The oldest an event may be.
    pub fn age(&self) -> Duration {
        self.max_age
    }
}

/// Which rooms keep history, and how much: a default, overrides by room selector (the
/// first that matches wins), a cap on all history, the name of the gap event.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRules {
    pub(crate) default: Option<HistoryConfig>,
    pub(crate) overrides: Vec<(RoomSelector, Option<HistoryConfig>)>,
    pub(crate) total_bytes: usize,
    pub(crate) gap_event: String,
    /// How the hub's own ids look (`hub/topics.rs`).
    pub(crate) ids: IdForm,
    /// Whether a caller's own id may repeat within a room's history.
    pub(crate) repeat_ids: bool,
    /// Where the history is kept on disk (`None`: in memory only).
    pub(crate) store: Option<super::StoreConfig>,
}

impl Default for HistoryRules {
    fn default() -> Self {
        HistoryRules {
            default: Some(HistoryConfig::default()),
            overrides: Vec::new(),
            total_bytes: 64 * 1024 * 1024,
            gap_event: "ssehub.gap".into(),
            ids: IdForm::Plain,
            repeat_ids: false,
            store: None,
        }
    }
}

impl HistoryRules {
    /// The history `room` keeps, if any.
    pub(crate) fn for_room(&self, room: &str) -> Option<HistoryConfig> {
        self.overrides
            .iter()
            .find(|(s, _)| s.matches(room))
            .map_or(self.default, |(_, h)| *h)
    }

    /// Whether any room keeps history.
    pub(crate) fn any(&self) -> bool {
        self.default.is_some() || self.overrides.iter().any(|(_, h)| h.is_some())
    }
}
