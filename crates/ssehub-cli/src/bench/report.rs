//! What `ssehub bench` reports: the figures of one run, derived from what was measured,
//! printed for a reader or serialised as JSON.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::publishers::Published;
use super::replay::Replayed;
use super::subscribers::Received;
use super::Args;
use crate::hub_client::ServerStats;

/// What one run measured, before any figure is derived from it.
pub(super) struct Measured {
    pub connect_seconds: f64,
    /// The server's open connections once it counted every subscriber.
    pub server_connections: u64,
    /// The server's stats before the subscribers connected, and after the drain.
    pub stats: (ServerStats, ServerStats),
    /// Wall-clock ns of the first publish.
    pub start_ns: u64,
    pub published: Published,
    pub received: Received,
    pub replayed: Option<Replayed>,
    pub costs: Costs,
}

/// What the run cost, where it could be read.
pub(super) struct Costs {
    /// CPU seconds the server used while publishing and draining.
    pub server_cpu: Option<f64>,
    /// The same for this process, the generator.
    pub generator_cpu: Option<f64>,
    /// The server's RSS before the subscribers connected, and with all of them idle.
    pub rss_before: Option<u64>,
    pub rss_idle: Option<u64>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(hist: &Histogram<u64>) -> Option<Latency> {
        (!hist.is_empty()).then(|| Latency {
            p50: hist.value_at_quantile(0.50),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        })
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub label: Option<String>,
    pub subscribers: usize,
    pub rooms: usize,
    pub messages: u64,
    pub size: usize,
    pub rate: Option<f64>,
    pub publishers: usize,
    pub connect_seconds: f64,
    pub server_connections: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_seconds: f64,
    pub publish_rate: f64,
    /// Sum of the server's `delivered` counts.
    pub expected_deliveries: u64,
    /// What the room plan predicts (differs if others are connected to the bench rooms).
    pub planned_deliveries: u64,
    pub received_deliveries: u64,
    pub lost_deliveries: u64,
    pub dropped_events: u64,
    pub slow_consumer_closes: u64,
    pub stream_failures: usize,
    /// First publish to last receive.
    pub duration_seconds: f64,
    pub deliveries_per_second: f64,
    pub latency_us: Option<Latency>,
    /// Send time to the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the read that
    /// completed the event: without the generator's own queueing.
    pub latency_at_socket_us: Option<Latency>,
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub generator_cpu_us_per_delivery: Option<f64>,
    pub server_rss_before_bytes: Option<u64>,
    pub server_rss_idle_bytes: Option<u64>,
    pub server_rss_per_connection_bytes: Option<f64>,
    /// The reconnect-and-replay phase (`--replay-back`).
    pub replay: Option<Replayed>,
    pub first_error: Option<String>,
}

impl Report {
    pub(super) fn new(args: &Args, m: Measured) -> Report {
        let n = args.subscribers;
        let received = m.received.count;
        let expected = m.published.delivered;
        let last_ns = m.received.last_ns;
        let duration_seconds = if received > 0 && last_ns > m.start_ns {
            (last_ns - m.start_ns) as f64 / 1e9
        } else {
            0.0
        };
        let per_delivery = |cpu: f64| (received > 0).then(|| cpu * 1e6 / received as f64);
        let rate = |count: f64, seconds: f64| if seconds > 0.0 { count / seconds } else { 0.0 };
        let (before, after) = m.stats;
        let costs = m.costs;
        Report {
            label: args.label.clone(),
            subscribers: n,
            rooms: args.rooms,
            messages: args.messages,
            size: args.size,
            rate: args.rate,
            publishers: args.publishers,
            connect_seconds: m.connect_seconds,
            server_connections: m.server_connections,
            published: m.published.count,
            publish_errors: m.published.errors,
            publish_seconds: m.published.seconds,
            publish_rate: rate(m.published.count as f64, m.published.seconds),
            expected_deliveries: expected,
            planned_deliveries: planned_deliveries(args.messages, args.rooms, n),
            received_deliveries: received,
            lost_deliveries: expected.saturating_sub(received),
            dropped_events: after.dropped_events.saturating_sub(before.dropped_events),
            slow_consumer_closes: after
                .slow_consumer_closes
                .saturating_sub(before.slow_consumer_closes),
            stream_failures: m.received.failures,
            duration_seconds,
            deliveries_per_second: rate(received as f64, duration_seconds),
            latency_us: Latency::of(&m.received.latencies.end_to_end),
            latency_at_socket_us: Latency::of(&m.received.latencies.at_socket),
            server_cpu_seconds: costs.server_cpu,
            server_cpu_us_per_delivery: costs.server_cpu.and_then(per_delivery),
            generator_cpu_us_per_delivery: costs.generator_cpu.and_then(per_delivery),
            server_rss_before_bytes: costs.rss_before,
            server_rss_idle_bytes: costs.rss_idle,
            server_rss_per_connection_bytes: costs
                .rss_before
                .zip(costs.rss_idle)
                .map(|(a, b)| (b as f64 - a as f64) / n as f64),
            replay: m.replayed,
            first_error: m.received.first_error.or(m.published.first_error),
        }
    }

    /// Print the report for a reader.
    pub(super) fn print(&self) {
        let r = self;
        if let Some(label) = &r.label {
            println!("server:            {label}");
        }
        println!(
            "load:              {} subscribers in {} room(s), {} events of {} bytes, {}, {} publisher(s)",
            r.subscribers,
            r.rooms,
            r.messages,
            r.size,
            r.rate.map_or("as fast as possible".to_owned(), |x| format!("{x} events/s")),
            r.publishers
        );
        println!(
            "connected:         {} in {:.2} s (server reports {})",
            r.subscribers, r.connect_seconds, r.server_connections
        );
        println!(
            "published:         {} in {:.2} s ({:.0}/s), {} errors",
            r.published, r.publish_seconds, r.publish_rate, r.publish_errors
        );
        println!(
            "deliveries:        {} received of {} expected ({} planned) in {:.2} s: {:.0}/s",
            r.received_deliveries,
            r.expected_deliveries,
            r.planned_deliveries,
            r.duration_seconds,
            r.deliveries_per_second
        );
        println!(
            "lost:              {} (server: {} dropped events, {} slow-consumer closes; {} streams failed)",
            r.lost_deliveries, r.dropped_events, r.slow_consumer_closes, r.stream_failures
        );
        let latency = |what: &str, l: &Latency| {
            println!(
                "{what:<19}p50 {} us, p99 {} us, p999 {} us, max {} us, mean {:.0} us",
                l.p50, l.p99, l.p999, l.max, l.mean
            );
        };
        if let Some(l) = &r.latency_us {
            latency("latency:", l);
            match &r.latency_at_socket_us {
                Some(l) => latency("latency at socket:", l),
                None => println!("latency at socket: n/a (no kernel receive timestamps)"),
            }
        }
        self.print_costs();
        if let Some(p) = &r.replay {
            println!(
                "replay:            {} subscribers {} events back: all live again in {:.3} s, {} events, server CPU {} per replayed event",
                r.subscribers,
                p.back,
                p.seconds,
                p.events,
                p.server_cpu_us_per_replayed_event
                    .map_or("n/a".into(), |us| format!("{us:.2} us")),
            );
        }
        if let Some(e) = &r.first_error {
            println!("first error:       {e}");
        }
    }

    /// The server's CPU and memory lines, and the generator's CPU.
    fn print_costs(&self) {
        let r = self;
        let opt = |v: Option<f64>, unit: &str, why: &str| match v {
            Some(v) => format!("{v:.2} {unit}"),
            None => format!("n/a ({why})"),
        };
        let no_pid = "no --server-pid";
        let per_delivery_why = if r.server_cpu_seconds.is_some() {
            "no deliveries"
        } else {
            no_pid
        };
        println!(
            "server CPU:        {} total, {} per delivery",
            opt(r.server_cpu_seconds, "s", no_pid),
            opt(r.server_cpu_us_per_delivery, "us", per_delivery_why)
        );
        println!(
            "generator CPU:     {} per delivery",
            opt(r.generator_cpu_us_per_delivery, "us", "no deliveries")
        );
        println!(
            "server memory:     {} per idle connection (RSS {} -> {} KiB)",
            opt(
                r.server_rss_per_connection_bytes.map(|b| b / 1024.0),
                "KiB",
                no_pid
            ),
            r.server_rss_before_bytes
                .map_or("?".into(), |b| (b / 1024).to_string()),
            r.server_rss_idle_bytes
                .map_or("?".into(), |b| (b / 1024).to_string()),
        );
    }

    /// Deliveries lost although the server reports no overflow (which would explain
    /// them): a fault of the server or of the bench.
    pub(super) fn unexplained_loss(&self) -> Option<u64> {
        let explained = self.dropped_events > 0 || self.slow_consumer_closes > 0;
        (self.lost_deliveries > 0 && !explained).then_some(self.lost_deliveries)
    }
}

/// Deliveries the room plan predicts: event `i` goes to room `i % rooms`, whose members
/// are the subscribers `j` with `j % rooms` equal to it.
pub(super) fn planned_deliveries(messages: u64, rooms: usize, subscribers: usize) -> u64 {
    (0..messages)
        .map(|i| {
            let room = (i % rooms as u64) as usize;
            (subscribers / rooms + usize::from(room < subscribers % rooms)) as u64
        })
        .sum()
}
