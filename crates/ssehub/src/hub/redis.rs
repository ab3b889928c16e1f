//! The Redis backplane: several nodes sharing rooms and history through one Redis.
//!
//! - `scripts.rs`: the keys and the Lua scripts (publish: number, record, trim,
//!   `PUBLISH`, atomically; probe: where the epoch and the sequence are). A hub with
//!   patterns (a topic dialect) also records every event in a hub-wide log, which its
//!   streams by pattern replay from; its ids are of the hub's form (`urn:uuid:` for
//!   Mercure), and a caller's id may repeat where the hub allows it.
//! - `wire.rs`: what a node tells the others on the channel.
//! - `subscriber.rs`: the task that listens to the channel and delivers on this node, in
//!   sequence order, what passes its checks; probes a silent Redis; moves to a new
//!   epoch; survives outages and catches up.
//! - `replay.rs`: reading history in bounded commands; a resuming stream's replay.
//!
//! ## Order
//! Every publication gets the next number of one hub-wide sequence, inside the publish
//! script, and reaches every node on one channel, so every node sees the same order.
//! Nodes deliver only what comes from the channel (the publisher too, then answers
//! with the count it delivered): no node can put its own publication before one it has
//! not seen yet. `delivered` (the number of the newest publication delivered here) is
//! held while a publication is delivered and while a replay switches to live: the same
//! ordered step as the in-process history's. It is a number of one epoch: a history that
//! Redis lost, or that went back (a failover to a replica that lagged), is found by the
//! scripts, given the node's watermark, and by the listener, and starts a new epoch
//! (`subscriber.rs`), never a silence.
//!
//! ## Outages
//! Without Redis a node keeps working alone: publications are delivered here, without a
//! number, and answered as not replicated. The subscriber reconnects with back-off and,
//! back, delivers from the streams what it missed, or the gap signal where it cannot.
//! A publication Redis never ran reached this node's clients only: once a probe sent
//! after it has come back on the channel (so the publication, had it run, would have
//! come first), this node publishes the gap signal to its rooms through Redis, for the
//! other nodes' clients (and for resumes: it is recorded like any event). Its own
//! clients get it too, a signal more than they need; none is missed.

mod replay;
mod scripts;
mod subscriber;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::backplane::{
    deliver_unrecorded, Backplane, BackplaneStatus, BoxFuture, Published, Resumed,
};
use super::fanout::{Local, Publication};
use super::history::{check_own_id, hub_id, History, HistoryConfig, HistoryRules, Resume, Size};
use super::publish_error::PublishError;
use super::topics::IdForm;
use crate::connection::Connection;
use crate::message::Message;
use crate::sync::lock;

/// Where the Redis backplane connects, and how.
///
/// ```no_run
/// # async fn demo() -> Result<(), ssehub::RedisError> {
/// use ssehub::{Hub, HubConfig, RedisConfig};
///
/// let hub = Hub::with_redis(HubConfig::default(), RedisConfig::new("redis://127.0.0.1:6379/0")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    url: String,
    prefix: String,
    probe: Duration,
}

impl RedisConfig {
    /// Connect to `url` (`redis://[user:password@]host:port/db`, or `rediss://` for TLS
    /// when the `redis` crate is built with it), keys under the prefix `ssehub`, a probe
    /// every second.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "ssehub".into(),
            probe: Duration::from_secs(1),
        }
    }

    /// Put every key under `prefix` (several hubs can share one Redis).
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// The URL.
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    pub(crate) fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// How often a node checks that Redis answers; three missed probes are an outage.
    pub fn probe_interval(mut self, every: Duration) -> RedisConfig {
        self.probe = every.max(Duration::from_millis(50));
        self
    }
}

/// Why the Redis backplane could not start.
#[derive(Debug, thiserror::Error)]
#[error("redis backplane: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// The key names, under the prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
    fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
    fn stream(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }
    fn room_meta(&self, room: &str) -> String {
        format!("{}:roommeta:{room}", self.prefix)
    }
    fn own_id(&self, id: &str) -> String {
        format!("{}:id:{id}", self.prefix)
    }
    /// The hub-wide log (a hub with patterns only; `scripts.rs`).
    fn log(&self) -> String {
        format!("{}:log", self.prefix)
    }
    fn log_meta(&self) -> String {
        format!("{}:logmeta", self.prefix)
    }
}

/// The most entries the hub-wide log keeps, whatever their size (its bytes are bounded
/// by `HubConfig::history_total_bytes`, as the in-memory history's are).
pub(super) const LOG_EVENTS: usize = 1 << 20;

/// The limits of the hub-wide log, for a hub with patterns: every event recorded in a
/// room goes there too, kept as long as the longest-lived room history would keep it
/// (by age), within the hub's cap on all history (by bytes) and [`LOG_EVENTS`].
fn log_limits(rules: &HistoryRules) -> HistoryConfig {
    let longest = std::iter::once(rules.default)
        .chain(rules.overrides.iter().map(|(_, h)| *h))
        .flatten()
        .map(|h| h.age())
        .max()
        .unwrap_or_default();
    HistoryConfig::default()
        .max_events(LOG_EVENTS)
        .max_bytes(rules.total_bytes)
        .max_age(longest)
}

/// Where this node is in the sequence: the newest publication it delivered, of which
/// epoch.
#[derive(Debug, Default)]
struct Watermark {
    epoch: String,
    seq: u64,
}

/// A local publisher waiting for its publication (by its token) to come back from the
/// channel.
enum Waiter {
    Waiting(oneshot::Sender<usize>),
    /// Delivered before the publisher asked (the channel beat the script's answer).
    Done(usize),
}

/// What the backplane's parts share.
struct Shared {
    local: Arc<Local>,
    rules: HistoryRules,
    /// The hub-wide log's limits, on a hub with patterns (`None`: no log; a room hub's
    /// readers all read their rooms' streams).
    log: Option<HistoryConfig>,
    keys: Keys,
    /// This node's name on the channel.
    node: String,
    client: redis::Client,
    /// Publications and probes.
    conn: ConnectionManager,
    /// Reads of history (replays, catch-up): a large answer never delays a publication.
    reads: ConnectionManager,
    publish: redis::Script,
    probe: redis::Script,
    probe_every: Duration,
    /// The newest publication delivered on this node; locked while one is delivered and
    /// while a replay switches to live.
    delivered: Mutex<Watermark>,
    /// Publishers waiting, by token.
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Numbers this node gives its own publications (in the header).
    tokens: AtomicU64,
    /// This node's publications delivered here alone because Redis did not answer in
    /// time: if Redis ran them after all, they come back and must not be delivered
    /// twice here. Bounded: the oldest are forgotten.
    local_only: Mutex<std::collections::HashSet<u64>>,
    /// The same publications, with their rooms, until it is known whether Redis ran
    /// them: after the probe numbered `after + 1` ([`Unreplicated`]). Locked before
    /// `local_only` where both are.
    unreplicated: Mutex<Vec<Unreplicated>>,
    /// Probes sent by this node, and this node's probes heard back on the channel with
    /// everything numbered before them delivered (or, after a reconnection, as good as).
    probes_sent: AtomicU64,
    probes_heard: AtomicU64,
    connected: AtomicBool,
    outages: AtomicU64,
    /// Messages from the channel refused (see `subscriber.rs`).
    refused: AtomicU64,
    /// A probe out of turn is on its way.
    probing: AtomicBool,
}

/// A publication Redis did not answer for, delivered here alone: `token` (`None`: a
/// few merged, each taken as lost), its rooms, and whether it was private (then so is
/// its gap signal: who may not see the update is not told of it either). Sent before
/// probe `after + 1`, so once that many probes of this node are heard, it came back or
/// it never ran.
struct Unreplicated {
    token: Option<u64>,
    rooms: Vec<String>,
    private: bool,
    after: u64,
}

/// The most publications kept apart in `Shared::unreplicated`; more are merged into one
/// entry (its rooms then get the gap signal whatever became of them).
const UNREPLICATED_KEPT: usize = 1024;

/// The Redis backplane (see the module's doc).
pub(crate) struct RedisBackplane {
    shared: Arc<Shared>,
    /// `publish` (which must not wait) hands its publications, in order, to a task.
    queue: mpsc::UnboundedSender<(Publication, Message)>,
}

/// How long a publisher waits for its publication to come back from the channel.
const ECHO_WAIT: Duration = Duration::from_secs(2);

impl RedisBackplane {
    /// Connect, read the sequence, and start listening.
    pub(crate) async fn connect(
        local: Arc<Local>,
        rules: HistoryRules,
        config: RedisConfig,
    ) -> Result<RedisBackplane, RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(manager.clone())
            .await?;
        let reads = client.get_connection_manager_with_config(manager).await?;
        let log = local.patterns.is_some().then(|| log_limits(&rules));
        let shared = Arc::new(Shared {
            local,
            rules,
            log,
            keys: Keys {
                prefix: config.prefix,
            },
            node: uuid::Uuid::new_v4().simple().to_string(),
            client,
            conn,
            reads,
            publish: scripts::publish(),
            probe: scripts::probe(),
            probe_every: config.probe,
            delivered: Mutex::default(),
            waiters: Mutex::default(),
            tokens: AtomicU64::new(1),
            local_only: Mutex::default(),
            unreplicated: Mutex::default(),
            probes_sent: AtomicU64::new(0),
            probes_heard: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            outages: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        });
        subscriber::start(shared.clone()).await?;
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(Arc::downgrade(&shared), jobs));
        Ok(RedisBackplane { shared, queue })
    }
}

/// The task behind `publish`: one publication after the other, in the order given.
async fn publish_in_order(
    shared: std::sync::Weak<Shared>,
    mut jobs: mpsc::UnboundedReceiver<(Publication, Message)>,
) {
    while let Some((p, message)) = jobs.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.publish(p, message, false).await {
            tracing::warn!(error = %e, "event not published");
        }
    }
}

impl Shared {
    /// This node's publication `token` to `rooms` was delivered here alone: keep it
    /// until the listener knows whether Redis ran it (`subscriber::settle`).
    fn unreplicated(&self, token: u64, p: &Publication) {
        let after = self.probes_sent.load(Ordering::Acquire);
        let mut pending = lock(&self.unreplicated);
        if pending.len() >= UNREPLICATED_KEPT {
            let mut private = p.private;
            let mut merged = p.rooms.clone();
            for u in pending.drain(..) {
                private &= u.private;
                merged.extend(u.rooms);
            }
            merged.sort_unstable();
            merged.dedup();
            pending.push(Unreplicated {
                token: None,
                rooms: merged,
                private,
                after,
            });
            return;
        }
        pending.push(Unreplicated {
            token: Some(token),
            rooms: p.rooms.clone(),
            private: p.private,
            after,
        });
    }

    /// Publish through Redis; `wait`: until this node has delivered it too.
    async fn publish(
        &self,
        p: Publication,
        message: Message,
        wait: bool,
    ) -> Result<Published, PublishError> {
        let recorded: Vec<(&String, HistoryConfig)> = p
            .rooms
            .iter()
            .filter_map(|r| self.rules.for_room(r).map(|h| (r, h)))
            .collect();
        check_id(&message, !recorded.is_empty(), self.rules.ids)?;
        let own = message.id().unwrap_or("").to_owned();
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(self.keys.meta())
            .key(self.keys.own_id(&own))
            .key(self.keys.log())
            .key(self.keys.log_meta());
        for (room, _) in &recorded {
            invocation
                .key(self.keys.stream(room))
                .key(self.keys.room_meta(room));
        }
        let rest = message.encode_with_id(None);
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        let flags = wire::Flags {
            unique: p.unique,
            private: p.private,
        };
        let header = wire::header(&self.node, token, flags, p.except, &p.rooms);
        let (epoch, seen) = {
            let d = lock(&self.delivered);
            (d.epoch.clone(), d.seq)
        };
        invocation
            .arg(&rest[..])
            .arg(&own)
            .arg(History::fresh_epoch())
            .arg(recorded.len())
            .arg(header)
            .arg(self.keys.channel())
            .arg(epoch)
            .arg(seen)
            .arg(match self.rules.ids {
                IdForm::Plain => "plain",
                IdForm::Urn => "urn",
            })
            .arg(u8::from(self.rules.repeat_ids))
            .arg(u8::from(self.log.is_some()));
        let limits = |invocation: &mut redis::ScriptInvocation<'_>, h: &HistoryConfig| {
            let age = u64::try_from(h.age().as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            invocation.arg(h.events()).arg(h.bytes()).arg(age);
        };
        limits(&mut invocation, &self.log.unwrap_or_default());
        for (_, h) in &recorded {
            limits(&mut invocation, h);
        }
        let answer: Result<(u64, String, String), redis::RedisError> =
            invocation.invoke_async(&mut self.conn.clone()).await;
        let id = match answer {
            Ok((_seq, id, _epoch)) => id,
            Err(e) if e.to_string().contains("DUPLICATE") => {
                return Err(PublishError::DuplicateId(own));
            }
            Err(e) => {
                // Redis is away: this node alone, and said so. (If Redis ran it after
                // all, the others get it, and this node does not deliver it again.)
                tracing::debug!(error = %e, "publish not replicated");
                {
                    let mut pending = lock(&self.unreplicated);
                    let mut local_only = lock(&self.local_only);
                    if local_only.len() > 100_000 {
                        local_only.clear();
                        // Their tokens are forgotten: whatever became of them, they
                        // count as lost (a gap signal too many, never one too few).
                        pending.iter_mut().for_each(|u| u.token = None);
                    }
                    local_only.insert(token);
                }
                self.unreplicated(token, &p);
                let mut published = deliver_unrecorded(&self.local, &p, &message);
                published.replicated = false;
                return Ok(published);
            }
        };
        // Without the channel the echo cannot come; the catch-up delivers it here later.
        let listening = self.connected.load(Ordering::Relaxed);
        let delivered = if wait && listening {
            self.echo(token).await
        } else {
            0
        };
        // The frame every node delivers: the id line the script put before the rest.
        let frame_len = rest.len() + if id.is_empty() { 0 } else { id.len() + 5 };
        Ok(Published {
            id: (!id.is_empty()).then_some(id),
            delivered,
            bytes: (delivered * frame_len) as u64,
            replicated: true,
        })
    }

    /// Wait for this node's publication `token` to be delivered here; its count. (By
    /// token, not by number: a new epoch numbers from 1 again.)
    async fn echo(&self, token: u64) -> usize {
        let rx = {
            let mut waiters = lock(&self.waiters);
            if let Some(Waiter::Done(n)) = waiters.remove(&token) {
                return n;
            }
            let (tx, rx) = oneshot::channel();
            waiters.insert(token, Waiter::Waiting(tx));
            rx
        };
        let n = tokio::time::timeout(ECHO_WAIT, rx).await;
        lock(&self.waiters).remove(&token);
        n.ok().and_then(Result::ok).unwrap_or(0)
    }

    /// This node's publication `token` was delivered to `n` connections.
    fn delivered_own(&self, token: u64, n: usize) {
        let mut waiters = lock(&self.waiters);
        match waiters.remove(&token) {
            Some(Waiter::Waiting(tx)) => {
                let _ = tx.send(n);
            }
            _ => {
                // The script's answer is still on its way: keep the count for it (a
                // publisher that gave up leaves it; the map is trimmed when large).
                if waiters.len() > 10_000 {
                    waiters.retain(|_, w| matches!(w, Waiter::Waiting(_)));
                }
                waiters.insert(token, Waiter::Done(n));
            }
        }
    }
}

/// Whether `message`'s own id may go through Redis: as a cursor if it goes to rooms with
/// history; and never of the hub's form (`form`), in any room, since the nodes refuse a
/// frame whose id of that form is not its number's (`wire::check_frame`).
fn check_id(message: &Message, recorded: bool, form: IdForm) -> Result<(), PublishError> {
    match message.id() {
        Some(id) if recorded => check_own_id(id, form),
        Some(id) if hub_id(id, form).is_some() => Err(PublishError::ReservedId(id.to_owned())),
        _ => Ok(()),
    }
}

impl Backplane for RedisBackplane {
    fn publish(&self, p: &Publication, message: &Message) -> Result<Published, PublishError> {
        let recorded = p
            .rooms
            .iter()
            .any(|r| self.shared.rules.for_room(r).is_some());
        check_id(message, recorded, self.shared.rules.ids)?;
        if self.queue.send((p.clone(), message.clone())).is_err() {
            return Ok(deliver_unrecorded(&self.shared.local, p, message));
        }
        Ok(Published {
            id: None,
            delivered: 0,
            bytes: 0,
            replicated: true,
        })
    }

    fn publish_wait(
        &self,
        p: Publication,
        message: Message,
    ) -> BoxFuture<Result<Published, PublishError>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.publish(p, message, true).await })
    }

    fn publish_unrecorded(&self, p: &Publication, message: &Message) -> Published {
        deliver_unrecorded(&self.shared.local, p, message)
    }

    fn resume(&self, conn: Connection, resume: Resume) -> BoxFuture<Resumed> {
        let shared = self.shared.clone();
        Box::pin(async move { replay::resume(&shared, &conn, &resume).await })
    }

    fn holds(&self, cursor: String, rooms: Vec<Arc<str>>) -> BoxFuture<bool> {
        let shared = self.shared.clone();
        Box::pin(async move { replay::holds(&shared, &cursor, &rooms).await })
    }

    fn history(&self, room: String) -> BoxFuture<Vec<Bytes>> {
        let shared = self.shared.clone();
        Box::pin(async move { replay::history(&shared, &room).await.unwrap_or_default() })
    }

    fn history_size(&self) -> Size {
        // Kept in Redis, not counted here.
        Size::default()
    }

    fn history_depths(&self, rooms: Vec<String>) -> BoxFuture<Vec<usize>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            if rooms.is_empty() {
                return Vec::new();
            }
            // With each room's epoch: a stream of another epoch holds nothing of this one.
            let mut pipe = redis::pipe();
            pipe.hget(shared.keys.meta(), "epoch");
            for room in &rooms {
                pipe.xlen(shared.keys.stream(room))
                    .hget(shared.keys.room_meta(room), "epoch");
            }
            let values: Vec<redis::Value> = match pipe.query_async(&mut shared.reads.clone()).await
            {
                Ok(values) => values,
                // Redis away: no depth to tell, as no history to read.
                Err(_) => return vec![0; rooms.len()],
            };
            let mut values = values.into_iter();
            let epoch: Option<String> = values.next().and_then(|v| redis::from_redis_value(v).ok());
            rooms
                .iter()
                .map(|_| {
                    let len: usize = values
                        .next()
                        .and_then(|v| redis::from_redis_value(v).ok())
                        .unwrap_or(0);
                    let of: Option<String> =
                        values.next().and_then(|v| redis::from_redis_value(v).ok());
                    if epoch.is_some() && of == epoch {
                        len
                    } else {
                        0
                    }
                })
                .collect()
        })
    }

    fn status(&self) -> BackplaneStatus {
        BackplaneStatus {
            kind: "redis",
            connected: self.shared.connected.load(Ordering::Relaxed),
            outages: self.shared.outages.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }
}
