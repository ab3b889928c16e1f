//! Active subscriptions (`MercureConfig::subscriptions`): the subscriptions of this
//! node's streams, and the private update the hub publishes when each starts and ends,
//! in the shape of the dialect the subscriber spoke:
//!
//! - 0.x: topic `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, JSON-LD
//!   `{"@context", id, type: "Subscription", topic, subscriber, active, payload}`;
//! - 1.0: topic `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`,
//!   JSON `{id, type: "subscription", match_type, match, subscriber, active, payload}`,
//!   SSE `event: mercure`.
//!
//! Each variable is percent-encoded whole, once (RFC 6570's simple expansion). The
//! subscriber id is made by the hub, a `urn:uuid:` unique to the stream, never taken
//! from the client. The payload is the one the token grants that subscription.
//!
//! ## No gap between the API's snapshot and the events
//! One mutex covers the table and the publication of each event, and the table
//! remembers the id of the last event it published. The API reads the table and that id
//! under the same mutex, so a change is either in the snapshot (and its event at or
//! before the cursor) or after the cursor (and replayed to a client that subscribes
//! from it). Publishing under the mutex is only enqueueing (the hub's fan-out never
//! waits on a socket). Over Redis, events reach every node as any update does, each
//! node's subscriptions are also kept in Redis under a lease (`leases.rs`), and the
//! API's cursor is `earliest` (a publish there gets its id later, from Redis).

use std::collections::BTreeMap;
#[cfg(feature = "redis")]
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::dialect::Version;
use super::selector::{MatchType, Selector};
use crate::connection::Connection;
use crate::hub::Hub;
use crate::message::Message;
use crate::sync::lock;

/// Where subscription topics live.
pub(crate) const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// RFC 3986's unreserved characters stay; everything else is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one path segment.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// One subscription: a stream's selector.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) version: Version,
    /// The selector as the subscriber wrote it.
    pub(crate) selector: String,
    /// Its 1.0 matcher type's canonical name (`Exact`, `URLPattern`); 0.x: none.
    pub(crate) match_type: Option<&'static str>,
    pub(crate) subscriber: String,
    pub(crate) payload: Option<Value>,
}

impl Entry {
    /// The topic of its events, which is also its id and its URL in the API.
    pub(crate) fn topic(&self) -> String {
        match self.match_type {
            Some(kind) => format!(
                "{SUBSCRIPTIONS_PATH}/{kind}/{}/{}",
                encode(&self.selector),
                encode(&self.subscriber)
            ),
            None => format!(
                "{SUBSCRIPTIONS_PATH}/{}/{}",
                encode(&self.selector),
                encode(&self.subscriber)
            ),
        }
    }

    /// The entry a description (`describe`) was made from (another node's, in Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_doc(doc: &Value) -> Option<Entry> {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        let match_type = match doc.get("match_type") {
            Some(t) => Some(MatchType::parse(t.as_str()?)?.name()),
            None => None,
        };
        Some(Entry {
            version: if match_type.is_some() {
                Version::V1
            } else {
                Version::V0
            },
            selector: s("match").or_else(|| s("topic"))?,
            match_type,
            subscriber: s("subscriber")?,
            payload: doc.get("payload").cloned(),
        })
    }

    /// Its description, in its dialect's shape (`active` as given).
    pub(crate) fn describe(&self, active: bool) -> Value {
        let mut doc = match self.match_type {
            Some(kind) => json!({
                "id": self.topic(),
                "type": "subscription",
                "match_type": kind,
                "match": self.selector,
                "subscriber": self.subscriber,
                "active": active,
            }),
            None => json!({
                "@context": "https://mercure.rocks/",
                "id": self.topic(),
                "type": "Subscription",
                "topic": self.selector,
                "subscriber": self.subscriber,
                "active": active,
            }),
        };
        if let Some(p) = &self.payload {
            doc["payload"] = p.clone();
        }
        doc
    }
}

/// The active subscriptions of this node.
pub(crate) struct Active {
    hub: Hub,
    state: Mutex<State>,
    /// Over Redis: this node's subscriptions there, and the end of dead nodes'.
    #[cfg(feature = "redis")]
    pub(crate) leases: OnceLock<Arc<super::leases::Leases>>,
}

#[derive(Default)]
struct State {
    /// By topic (unique: the subscriber id is the stream's own).
    table: BTreeMap<String, Entry>,
    /// The id of the last event published here (`None`: none yet).
    last_id: Option<String>,
}

/// What the API reads: the subscriptions that pass a filter, and the cursor to
/// subscribe from.
pub(crate) struct Snapshot {
    pub(crate) entries: Vec<Entry>,
    pub(crate) last_event_id: String,
}

impl Active {
    pub(crate) fn new(hub: Hub) -> Arc<Active> {
        Arc::new(Active {
            hub,
            state: Mutex::default(),
            #[cfg(feature = "redis")]
            leases: OnceLock::new(),
        })
    }

    /// A stream opened with `selectors`: record them and announce each; when it
    /// closes, forget them and announce their end.
    pub(crate) fn open(
        self: &Arc<Self>,
        conn: &Connection,
        version: Version,
        selectors: &[Selector],
        payload: impl Fn(&str) -> Option<Value>,
    ) {
        let subscriber = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let entries: Vec<Entry> = selectors
            .iter()
            .map(|s| Entry {
                version,
                selector: s.as_str().to_owned(),
                match_type: match version {
                    Version::V0 => None,
                    Version::V1 => s.match_type().map(|t| t.name()),
                },
                subscriber: subscriber.clone(),
                payload: payload(s.as_str()),
            })
            .collect();
        {
            let mut state = lock(&self.state);
            for e in &entries {
                state.table.insert(e.topic(), e.clone());
                self.announce(&mut state, e, true);
            }
            #[cfg(feature = "redis")]
            if let Some(leases) = self.leases.get() {
                let items = entries
                    .iter()
                    .map(|e| (e.topic(), e.describe(true).to_string()))
                    .collect();
                leases.change(super::leases::Change::Add(items));
            }
        }
        let this = self.clone();
        conn.on_closed(move |_| {
            // The close may come from inside a fan-out (a slow consumer's): announce
            // from a task of its own rather than publish from there.
            let end = move || {
                let mut state = lock(&this.state);
                for e in &entries {
                    state.table.remove(&e.topic());
                    this.announce(&mut state, e, false);
                }
                #[cfg(feature = "redis")]
                if let Some(leases) = this.leases.get() {
                    let topics = entries.iter().map(Entry::topic).collect();
                    leases.change(super::leases::Change::Remove(topics));
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { end() });
                }
                Err(_) => end(),
            }
        });
    }

    /// Publish the event of `e`'s start or end, private, under the state's lock.
    fn announce(&self, state: &mut State, e: &Entry, active: bool) {
        let mut b = Message::builder().data(e.describe(active).to_string());
        if e.version == Version::V1 {
            b = b.event("mercure");
        }
        let Ok(message) = b.build() else { return };
        let topic = e.topic();
        match self
            .hub
            .to([topic.as_str()])
            .unique()
            .private(true)
            .publish(&message)
        {
            Ok(p) => {
                if let Some(id) = p.id {
                    state.last_id = Some(id);
                }
            }
            Err(err) => tracing::warn!(%err, "mercure subscription event not published"),
        }
    }

    /// Announce the end of subscriptions of another node (one that died).
    #[cfg(feature = "redis")]
    pub(crate) fn end_remote(&self, ended: &[Entry]) {
        let mut state = lock(&self.state);
        for e in ended {
            self.announce(&mut state, e, false);
        }
    }

    /// The subscriptions `keep` accepts, in topic order, and the cursor: this node's,
    /// and over Redis every live node's.
    pub(crate) async fn snapshot(&self, keep: impl Fn(&Entry) -> bool) -> Snapshot {
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let (mut table, last_event_id) = {
            let state = lock(&self.state);
            let table: BTreeMap<String, Entry> = state
                .table
                .iter()
                .filter(|(_, e)| keep(e))
                .map(|(t, e)| (t.clone(), e.clone()))
                .collect();
            let last = state
                .last_id
                .clone()
                .unwrap_or_else(|| "earliest".to_owned());
            (table, last)
        };
        #[cfg(feature = "redis")]
        if let Some(leases) = self.leases.get() {
            for (topic, e) in leases.all().await {
                if keep(&e) {
                    table.entry(topic).or_insert(e);
                }
            }
        }
        Snapshot {
            entries: table.into_values().collect(),
            last_event_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_encode_each_variable_once() {
        let e = Entry {
            version: Version::V1,
            selector: "https://e.com/b/:id?x=%41".into(),
            match_type: Some("URLPattern"),
            subscriber: "urn:uuid:1".into(),
            payload: None,
        };
        assert_eq!(
            e.topic(),
            "/.well-known/mercure/subscriptions/URLPattern/\
             https%3A%2F%2Fe.com%2Fb%2F%3Aid%3Fx%3D%2541/urn%3Auuid%3A1"
        );
        let d = e.describe(false);
        assert_eq!(
            (d["type"].as_str(), d["active"].as_bool()),
            (Some("subscription"), Some(false))
        );
        let old = Entry {
            version: Version::V0,
            match_type: None,
            selector: "https://e.com/b/{id}".into(),
            ..e
        };
        assert!(old
            .topic()
            .starts_with("/.well-known/mercure/subscriptions/https%3A"));
        assert_eq!(old.describe(true)["type"], "Subscription");
    }
}
