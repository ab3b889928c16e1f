//! The pattern rooms of one node: which selectors with subscribers here (`*`, URI
//! templates, URL patterns, 1.0's exact topics with braces) match an update's topics, so that the hub's fan-out adds their rooms to
//! the update's own (`crate::hub`'s `Patterns` seam).
//!
//! The answer for a topic is cached: an update to a topic seen before costs a lookup,
//! not a match against every template. The cache is emptied whenever a pattern room
//! appears or goes (rare next to updates) and when it holds too many topics.
//!
//! ## Concurrency
//! One mutex guards the active patterns and the cache together, so that an answer is
//! never cached from a set of patterns that has changed since. It is held for a cache
//! lookup, or for a miss's matching (once per topic and change of patterns).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use url::Url;

use super::selector::{is_pattern_name, Selector};
use crate::hub::topics::Patterns;
use crate::sync::lock;

/// The most topics whose answers are cached; past it the cache starts afresh.
const CACHED_TOPICS: usize = 65_536;

pub(crate) struct PatternRooms {
    /// The hub's URL: relative URL patterns and topics are resolved against it.
    base: Url,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The pattern rooms with members on this node, by name.
    active: HashMap<Arc<str>, Arc<Selector>>,
    /// Topic -> the pattern rooms that match it.
    cache: HashMap<Box<str>, Arc<[Arc<str>]>>,
}

impl State {
    fn matching(&mut self, topic: &str) -> Arc<[Arc<str>]> {
        if let Some(hit) = self.cache.get(topic) {
            return hit.clone();
        }
        let found: Arc<[Arc<str>]> = self
            .active
            .iter()
            .filter(|(_, s)| s.matches(topic))
            .map(|(name, _)| name.clone())
            .collect();
        if self.cache.len() >= CACHED_TOPICS {
            self.cache.clear();
        }
        self.cache.insert(topic.into(), found.clone());
        found
    }
}

impl PatternRooms {
    pub(crate) fn new(base: Url) -> PatternRooms {
        PatternRooms {
            base,
            state: Mutex::default(),
        }
    }

    /// The selector of pattern room `room`, if it has members here (compiled when its
    /// first member came: a URL pattern's compilation costs far more than a lookup).
    pub(crate) fn selector(&self, room: &str) -> Option<Selector> {
        lock(&self.state).active.get(room).map(|s| (**s).clone())
    }

    /// How many pattern rooms have members here.
    #[cfg(test)]
    fn active(&self) -> usize {
        lock(&self.state).active.len()
    }
}

impl Patterns for PatternRooms {
    fn rooms_matching(&self, topics: &[String]) -> Vec<Arc<str>> {
        let mut state = lock(&self.state);
        if state.active.is_empty() {
            return Vec::new();
        }
        let mut rooms: Vec<Arc<str>> = Vec::new();
        for topic in topics {
            for room in state.matching(topic).iter() {
                if !rooms.contains(room) {
                    rooms.push(room.clone());
                }
            }
        }
        rooms
    }

    fn any_matches(&self, rooms: &[Arc<str>], topics: &[Arc<str>]) -> bool {
        let state = lock(&self.state);
        rooms
            .iter()
            .filter_map(|r| state.active.get(r))
            .any(|s| topics.iter().any(|t| s.matches(t)))
    }

    fn has_pattern(&self, rooms: &[Arc<str>]) -> bool {
        rooms.iter().any(|r| is_pattern_name(r))
    }

    fn room_added(&self, room: &str) {
        if !is_pattern_name(room) {
            return;
        }
        // Its subscriber's request was checked; a name that is no selector is no pattern.
        let Some(selector) = Selector::from_room(room, &self.base) else {
            return;
        };
        let mut state = lock(&self.state);
        state.active.insert(Arc::from(room), Arc::new(selector));
        state.cache.clear();
    }

    fn room_removed(&self, room: &str) {
        let mut state = lock(&self.state);
        if state.active.remove(room).is_some() {
            state.cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_with_members_match_and_the_cache_follows_them() {
        let p = PatternRooms::new(Url::parse("https://hub.example/.well-known/mercure").unwrap());
        let topic = |t: &str| vec![t.to_owned()];
        assert!(p.rooms_matching(&topic("https://e.com/books/1")).is_empty());
        p.room_added("https://e.com/books/{id}");
        p.room_added("https://e.com/books/1"); // an exact topic: not a pattern
        p.room_added("*");
        assert_eq!(p.active(), 2);
        let mut m = p.rooms_matching(&topic("https://e.com/books/1"));
        m.sort();
        assert_eq!(&*m[0], "*");
        assert_eq!(&*m[1], "https://e.com/books/{id}");
        assert_eq!(p.rooms_matching(&topic("https://e.com/authors/1")).len(), 1);
        p.room_removed("*");
        assert!(p
            .rooms_matching(&topic("https://e.com/authors/1"))
            .is_empty());
        assert_eq!(p.rooms_matching(&topic("https://e.com/books/2")).len(), 1);
        let rooms: Vec<Arc<str>> = vec![Arc::from("https://e.com/books/{id}")];
        assert!(p.any_matches(&rooms, &[Arc::from("https://e.com/books/3")]));
        assert!(!p.any_matches(&rooms, &[Arc::from("https://e.com/x")]));
        assert!(p.has_pattern(&rooms));
    }

    #[test]
    fn url_patterns_are_pattern_rooms_cached_per_topic() {
        use super::super::selector::MatchType;
        let base = Url::parse("https://hub.example/.well-known/mercure").unwrap();
        let p = PatternRooms::new(base.clone());
        let books = Selector::parse_v1("https://e.com/books/:id", MatchType::UrlPattern, &base)
            .unwrap()
            .room()
            .into_owned();
        p.room_added(&books);
        let topic = |t: &str| vec![t.to_owned()];
        assert_eq!(p.rooms_matching(&topic("https://e.com/books/1")).len(), 1);
        assert_eq!(
            p.rooms_matching(&topic("https://e.com/books/1")).len(),
            1,
            "cached"
        );
        assert!(p
            .rooms_matching(&topic("https://e.com/authors/1"))
            .is_empty());
        assert_eq!(lock(&p.state).cache.len(), 2);
        p.room_removed(&books);
        assert!(p.rooms_matching(&topic("https://e.com/books/1")).is_empty());
    }
}
