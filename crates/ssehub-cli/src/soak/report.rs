//! The soak's balance sheet: what was published, delivered, received, dropped by policy
//! and lost without one, tallied from every role's account and the server's `/stats`.

use super::churners::ChurnCounts;
use super::publisher::Published;
use super::readers::ReaderReport;
use super::rooms::Rooms;
use super::Args;
use crate::hub_client::ServerStats;

/// What a run ended with, before anything is tallied.
pub(super) struct Outcome {
    pub rooms: Rooms,
    pub published: Published,
    pub readers: Vec<ReaderReport>,
    /// Slow streams opened, replacements included.
    pub slow_opened: u64,
    pub churn: ChurnCounts,
    /// The server's stats before the run, and once every client has gone.
    pub before: ServerStats,
    pub after: ServerStats,
    /// The server's RSS at the start and at its peak.
    pub rss: Option<(u64, u64)>,
}

pub(super) struct Report {
    seconds: u64,
    url: String,
    readers: usize,
    slow: u64,
    published: Vec<(String, u64)>,
    deliveries: u64,
    received: u64,
    dropped: u64,
    slow_closes: u64,
    /// Events the fast readers should have received but did not: must be 0.
    pub lost: u64,
    disorder: u64,
    cut: usize,
    churn: ChurnCounts,
    rss: Option<(u64, u64)>,
    /// Connections the server still held once every client had gone: must be 0.
    pub leftover: u64,
}

impl Report {
    /// Tally `o`; a fast reader that was cut off is named on standard error.
    pub(super) fn new(args: &Args, o: Outcome) -> Report {
        let names = &o.rooms.names;
        let mut lost = 0;
        let mut received = 0;
        let mut disorder = 0;
        let mut cut = 0;
        for r in &o.readers {
            let expected = o.published.per_room[r.room];
            received += r.received;
            disorder += r.disorder;
            lost += expected.saturating_sub(r.received);
            if let Some(why) = &r.cut {
                cut += 1;
                eprintln!("a reader of {} was cut off: {why}", names[r.room]);
            }
        }
        let (before, after) = (o.before, o.after);
        Report {
            seconds: args.duration,
            url: args.url.clone(),
            readers: o.readers.len(),
            slow: o.slow_opened,
            published: names
                .iter()
                .cloned()
                .zip(o.published.per_room.iter().copied())
                .collect(),
            deliveries: o.published.deliveries,
            received,
            dropped: after.dropped_events - before.dropped_events.min(after.dropped_events),
            slow_closes: after.slow_consumer_closes
                - before.slow_consumer_closes.min(after.slow_consumer_closes),
            lost,
            disorder,
            cut,
            churn: o.churn,
            rss: o.rss,
            leftover: after.connections,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let total: u64 = self.published.iter().map(|(_, n)| n).sum();
        let rooms: Vec<String> = self
            .published
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let c = &self.churn;
        writeln!(f, "soak: {} s against {}", self.seconds, self.url)?;
        writeln!(
            f,
            "clients: {} fast readers, {} slow readers, {} churned connections \
             (clean {}, reset {}, half request {}, HEAD {}, stats {}; {} failed)",
            self.readers,
            self.slow,
            c.total(),
            c.clean,
            c.reset,
            c.half_request,
            c.head,
            c.stats,
            c.errors
        )?;
        writeln!(f, "events published: {total} ({})", rooms.join(", "))?;
        writeln!(f, "deliveries (server): {}", self.deliveries)?;
        writeln!(f, "received by fast readers: {}", self.received)?;
        writeln!(
            f,
            "dropped by policy: {} (events dropped {}, slow consumers closed {})",
            self.dropped + self.slow_closes,
            self.dropped,
            self.slow_closes
        )?;
        writeln!(f, "lost without policy: {}", self.lost)?;
        writeln!(f, "out of order or repeated: {}", self.disorder)?;
        writeln!(f, "fast readers cut off: {}", self.cut)?;
        match self.rss {
            Some((base, peak)) => writeln!(
                f,
                "peak server RSS: {:.1} MiB (at start {:.1} MiB)",
                mib(peak),
                mib(base)
            )?,
            None => writeln!(f, "peak server RSS: n/a (no --server-pid)")?,
        }
        write!(f, "connections left open: {}", self.leftover)
    }
}
