//! What a dialect built on topics asks of the hub (Mercure, `crate::mercure`), and
//! nothing of the dialect itself: the hub learns only this seam.
//!
//! - **Topics are rooms.** An update's topics are the rooms it is published to; a topic
//!   may be a long IRI ([`TopicRules::max_name`]).
//! - **Patterns are rooms too.** A stream that subscribes with a pattern (a URI template,
//!   `*`) joins the room named by the pattern. [`Patterns`] says, for an update's topics,
//!   which such rooms match one of them; the fan-out adds them to the update's rooms and
//!   delivers once per connection. Every node resolves its own patterns, so an update
//!   travels between nodes with its topics only.
//! - **Private updates** reach only the connections whose [`crate::connection::Audience`]
//!   accepts one of their topics (checked per recipient, for private updates only), live
//!   and on replay.
//! - **Ids** may be URNs (`urn:uuid:…`) that still carry the hub's epoch and sequence
//!   number, and a caller's own id may repeat (a cursor then resolves to the earliest).

use std::fmt;
use std::sync::Arc;

/// Which pattern rooms match an update's topics.
pub(crate) trait Patterns: Send + Sync + 'static {
    /// The rooms named by a pattern that matches one of `topics`, among the patterns
    /// that have members on this node (a topic's own room is not among them).
    fn rooms_matching(&self, topics: &[String]) -> Vec<Arc<str>>;

    /// Whether one of `topics` is matched by one of the patterns among `rooms` (a
    /// stream's rooms; those that are not patterns are ignored). For replay.
    fn any_matches(&self, rooms: &[Arc<str>], topics: &[Arc<str>]) -> bool;

    /// Whether one of `rooms` is a pattern (a stream with one replays from the log).
    fn has_pattern(&self, rooms: &[Arc<str>]) -> bool;

    /// Room `room` got its first member on this node.
    fn room_added(&self, room: &str);

    /// Room `room` lost its last member on this node.
    fn room_removed(&self, room: &str);
}

/// How the ids of a hub look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum IdForm {
    /// `<epoch>-<seq>`.
    #[default]
    Plain,
    /// `urn:uuid:<epoch>-<seq, spread over the rest of a UUID's fields>`: an IRI, as
    /// Mercure wants its hub-made ids, that the hub still reads back as a cursor.
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    Urn,
}

/// The rules of a hub whose rooms are topics.
#[derive(Clone, Default)]
pub(crate) struct TopicRules {
    /// The longest room name, in bytes (`None`: [`crate::MAX_ROOM_NAME_LEN`]).
    pub(crate) max_name: Option<usize>,
    /// Whether a caller's own id may repeat in a room's history.
    pub(crate) repeat_ids: bool,
    pub(crate) ids: IdForm,
    pub(crate) patterns: Option<Arc<dyn Patterns>>,
}

impl fmt::Debug for TopicRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicRules")
            .field("max_name", &self.max_name)
            .field("repeat_ids", &self.repeat_ids)
            .field("ids", &self.ids)
            .field("patterns", &self.patterns.is_some())
            .finish()
    }
}
