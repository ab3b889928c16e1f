//! Every counter the hub keeps, in one place.
//!
//! Counters are plain relaxed atomics bumped on the paths that already do the work (a
//! fan-out adds its recipients once, not once per recipient). Nothing here is read on a
//! hot path: readers take a snapshot ([`HubStats`]) when they ask, and the Prometheus
//! exposition (`prometheus.rs`) reads the same atomics at scrape time.
//!
//! - `labels.rs`: the few values metrics are split by ([`TransportKind`], refusals);
//! - `histogram.rs`: timing histograms, and which publications are timed;
//! - `process.rs`: the process's memory, CPU time and open files, from `/proc`.

mod histogram;
mod labels;
mod process;

pub use labels::TransportKind;

#[cfg(feature = "metrics")]
pub(crate) use histogram::HistogramSnapshot;
pub(crate) use histogram::{sample, Histogram, Sample};
pub(crate) use labels::Refusal;
pub(crate) use process::ProcessStats;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::collections::BTreeMap;

use serde::Serialize;

/// A monotonic counter.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open streams of one transport).
#[derive(Default)]
pub(crate) struct Gauge(AtomicUsize);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one hub, shared by the hub and its connections.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Publications (broadcasts) made.
    pub(crate) published: Counter,
    /// Frames queued to connections by publications.
    pub(crate) deliveries: Counter,
    /// Frames skipped by the `DropEvent` slow-consumer policy.
    pub(crate) dropped_events: Counter,
    /// Connections closed by the `Close` slow-consumer policy.
    pub(crate) slow_closes: Counter,
    /// Connections opened since the hub was created.
    pub(crate) connected_total: Counter,
    /// Streams that resumed from a cursor (each got a replay, maybe empty).
    pub(crate) replays: Counter,
    /// Events queued by replays.
    pub(crate) replayed_events: Counter,
    /// Gap signals sent, by reason (indexed as the hub's `GapReason::ALL`).
    pub(crate) gaps: [Counter; 6],
    /// Bytes queued to connections by publications (deliveries times frame lengths).
    pub(crate) delivered_bytes: Counter,
    /// Streams the endpoint refused, and connections the server closed before their
    /// first request, by reason (indexed as `Refusal::ALL`).
    pub(crate) refused: [Counter; Refusal::ALL.len()],
    /// Open connections, by transport (indexed as `TransportKind::ALL`).
    pub(crate) open: [Gauge; TransportKind::ALL.len()],
    /// How long a sampled publication took to be queued to every local member.
    pub(crate) fanout_seconds: Histogram,
    /// From a sampled publication's fan-out to the moment one of its recipients' writer
    /// took its frame for the socket.
    pub(crate) latency_seconds: Histogram,
}

/// A snapshot of a hub's counters ([`crate::Hub::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HubStats {
    /// Open connections.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Connections accepted since the hub was created.
    pub connections_total: u64,
    /// Broadcasts made.
    pub events_published: u64,
    /// Frames queued to connections by broadcasts.
    pub deliveries: u64,
    /// Frames dropped by the `DropEvent` slow-consumer policy.
    pub dropped_events: u64,
    /// Connections closed by the `Close` slow-consumer policy.
    pub slow_consumer_closes: u64,
    /// Streams that resumed from a cursor (`Last-Event-ID`, `last_event_id`, `history`).
    pub replays: u64,
    /// Events those streams were given from history.
    pub replayed_events: u64,
    /// Gap signals sent, by reason (`evicted`, `unknown-epoch`, ...).
    pub gaps: BTreeMap<&'static str, u64>,
    /// Rooms whose history holds events (with or without members).
    pub history_rooms: usize,
    /// Events held in all rooms' history (an event in several rooms counts in each).
    pub history_events: usize,
    /// Bytes of encoded frames held in all rooms' history.
    pub history_bytes: usize,
    /// Bytes queued to connections by broadcasts (each delivery counts its frame).
    pub delivered_bytes: u64,
    /// Bytes waiting in all connections' outboxes.
    pub outbox_bytes: usize,
    /// Open connections by transport (`h1`, `h1_hyper`, `h2`).
    pub connections_by_transport: BTreeMap<&'static str, usize>,
    /// Streams refused, by reason (`max_connections`, `authorize`, `bad_request`, ...),
    /// and connections the server closed before their first request
    /// (`server_max_connections`, `max_pending_connections`, `max_pending_per_ip`,
    /// `header_timeout`) or requests it refused (`max_requests_per_ip`), counted in the
    /// hub of each of its SSE endpoints.
    pub refused: BTreeMap<&'static str, u64>,
}

impl Metrics {
    /// The counters' part of a snapshot; the caller fills in the gauges it owns and
    /// names the gap counters.
    pub(crate) fn snapshot(&self, connections: usize, rooms: usize) -> HubStats {
        HubStats {
            connections,
            rooms,
            connections_total: self.connected_total.get(),
            events_published: self.published.get(),
            deliveries: self.deliveries.get(),
            dropped_events: self.dropped_events.get(),
            slow_consumer_closes: self.slow_closes.get(),
            replays: self.replays.get(),
            replayed_events: self.replayed_events.get(),
            gaps: BTreeMap::new(),
            history_rooms: 0,
            history_events: 0,
            history_bytes: 0,
            delivered_bytes: self.delivered_bytes.get(),
            outbox_bytes: 0,
            connections_by_transport: TransportKind::ALL
                .iter()
                .map(|t| (t.as_str(), self.open[t.index()].get()))
                .collect(),
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.as_str(), self.refused[r.index()].get()))
                .collect(),
        }
    }
}
