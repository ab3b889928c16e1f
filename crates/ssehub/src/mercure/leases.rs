//! Active subscriptions across nodes (feature `redis`): each node keeps its
//! subscriptions in Redis under a lease, so that the subscriptions API of any node lists
//! every node's, and a node that dies without saying goodbye has its subscriptions ended
//! by another, within a bounded time.
//!
//! Keys, under the hub's prefix: `subs:<node>`, a hash from each subscription's topic to
//! its description (the JSON of its events); `alive:<node>`, renewed every
//! [`HEARTBEAT`] with a time to live of [`LEASE`]. Every heartbeat, a node also looks for
//! hashes whose node is no longer alive; the first to claim one (`reap:<node>`, `SET
//! NX`) publishes the end event of each of its subscriptions and deletes it. So a dead
//! node's subscriptions end at most `LEASE + HEARTBEAT` (20 s) after its last heartbeat.
//!
//! A node's own changes go through one task, in order (an end never overtakes its start
//! in Redis); the API reads Redis and this node's table, which holds what the task has
//! not written yet.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::mpsc;

use super::active::{Active, Entry};

/// How long a node's subscriptions outlive its last heartbeat.
pub(crate) const LEASE: Duration = Duration::from_secs(15);
/// How often a node renews its lease and looks for dead nodes.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

/// A change of this node's subscriptions, for Redis.
pub(crate) enum Change {
    Add(Vec<(String, String)>),
    Remove(Vec<String>),
}

/// This node's side.
pub(crate) struct Leases {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    node: String,
    changes: mpsc::UnboundedSender<Change>,
}

impl Leases {
    /// Connect, and start the task that writes this node's changes and heartbeats.
    pub(crate) async fn start(
        url: &str,
        prefix: &str,
        active: Weak<Active>,
    ) -> Result<Arc<Leases>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        let (changes, rx) = mpsc::unbounded_channel();
        let leases = Arc::new(Leases {
            conn,
            prefix: prefix.to_owned(),
            node: uuid::Uuid::new_v4().simple().to_string(),
            changes,
        });
        tokio::spawn(run(leases.clone(), rx, active));
        Ok(leases)
    }

    fn subs(&self, node: &str) -> String {
        format!("{}:subs:{node}", self.prefix)
    }

    fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    /// Queue a change of this node's subscriptions.
    pub(crate) fn change(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// Every live node's subscriptions, by topic (an error leaves them out: the caller
    /// still has its own).
    pub(crate) async fn all(&self) -> BTreeMap<String, Entry> {
        let mut conn = self.conn.clone();
        let mut out = BTreeMap::new();
        let Ok(keys) = scan(&mut conn, &format!("{}:subs:*", self.prefix)).await else {
            return out;
        };
        for key in keys {
            let Ok(map) = conn.hgetall::<_, Vec<(String, String)>>(&key).await else {
                continue;
            };
            for (topic, doc) in map {
                let entry = serde_json::from_str::<Value>(&doc)
                    .ok()
                    .and_then(|d| Entry::from_doc(&d));
                if let Some(e) = entry {
                    out.insert(topic, e);
                }
            }
        }
        out
    }
}

async fn scan(
    conn: &mut redis::aio::ConnectionManager,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    // Bounded: SCAN returns cursor 0 after a full pass; at most this many rounds.
    for _ in 0..10_000 {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(keys)
}

/// The node's task: its changes, in order, and its heartbeats; it ends with the hub.
async fn run(leases: Arc<Leases>, mut rx: mpsc::UnboundedReceiver<Change>, active: Weak<Active>) {
    let mut conn = leases.conn.clone();
    let own = leases.subs(&leases.node);
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            change = rx.recv() => {
                let result: redis::RedisResult<()> = match change {
                    None => return,
                    Some(Change::Add(items)) if !items.is_empty() => conn.hset_multiple(&own, &items).await,
                    Some(Change::Remove(topics)) if !topics.is_empty() => conn.hdel(&own, topics).await,
                    Some(_) => Ok(()),
                };
                if let Err(err) = result {
                    tracing::warn!(%err, "mercure subscriptions: not written to Redis");
                }
            }
            _ = beat.tick() => {
                let Some(active) = active.upgrade() else { return };
                if let Err(err) = heartbeat(&leases, &mut conn, &active).await {
                    tracing::warn!(%err, "mercure subscriptions: heartbeat failed");
                }
            }
        }
    }
}

/// Renew this node's lease; end the subscriptions of nodes whose lease ran out.
async fn heartbeat(
    leases: &Leases,
    conn: &mut redis::aio::ConnectionManager,
    active: &Active,
) -> redis::RedisResult<()> {
    let lease = LEASE.as_secs();
    let _: () = conn.set_ex(leases.alive(&leases.node), 1, lease).await?;
    let prefix = format!("{}:subs:", leases.prefix);
    for key in scan(conn, &format!("{prefix}*")).await? {
        let Some(node) = key.strip_prefix(&prefix) else {
            continue;
        };
        if node == leases.node || conn.exists::<_, bool>(leases.alive(node)).await? {
            continue;
        }
        // One node ends them: the first to claim the dead node's hash.
        let claim = format!("{}:reap:{node}", leases.prefix);
        let won: bool = redis::cmd("SET")
            .arg(&claim)
            .arg(&leases.node)
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async::<Option<String>>(conn)
            .await?
            .is_some();
        if !won {
            continue;
        }
        let map: Vec<(String, String)> = conn.hgetall(&key).await?;
        let ended: Vec<Entry> = map
            .iter()
            .filter_map(|(_, doc)| Entry::from_doc(&serde_json::from_str(doc).ok()?))
            .collect();
        tracing::info!(
            node,
            subscriptions = ended.len(),
            "mercure: a node's lease ran out; its subscriptions end"
        );
        active.end_remote(&ended);
        let _: () = conn.del(&key).await?;
    }
    Ok(())
}
