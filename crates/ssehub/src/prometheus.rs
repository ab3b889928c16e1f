//! `/metrics`: the hub's counters in the Prometheus text format (version 0.0.4), through
//! the `prometheus-client` crate and an explicit registry (no global state). Behind the
//! `metrics` feature.
//!
//! Every figure is read when scraped, from the atomics the hub keeps anyway
//! (`metrics.rs`): a scrape costs the hub nothing between scrapes, and an event costs
//! nothing more for being exposed. Nothing is labelled by room, address or identity, so
//! the exposition stays a few kilobytes however busy the hub is; per-room figures are
//! the stats API's (`GET /rooms`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::hub::{BackplaneStatus, Hub};
use crate::metrics::{HistogramSnapshot, HubStats, ProcessStats};

/// The `Content-Type` of [`prometheus_text`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The hub's metrics, for a `prometheus-client` [`Registry`] of your own (next to your
/// application's metrics). [`prometheus_text`] is the short way.
///
/// ```
/// use prometheus_client::registry::Registry;
///
/// let hub = ssehub::Hub::new();
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(ssehub::MetricsCollector::new(hub)));
/// let mut text = String::new();
/// prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
/// assert!(text.contains("ssehub_deliveries_total 0"));
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsCollector {
    hub: Hub,
}

impl MetricsCollector {
    /// The metrics of `hub` (and of this process: memory, CPU time, open files).
    pub fn new(hub: Hub) -> MetricsCollector {
        MetricsCollector { hub }
    }
}

/// The metrics of `hub` and of this process, in the Prometheus text format.
///
/// ```
/// let hub = ssehub::Hub::new();
/// let text = ssehub::prometheus_text(&hub);
/// assert!(text.contains("# TYPE ssehub_connections gauge"));
/// ```
pub fn prometheus_text(hub: &Hub) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(MetricsCollector::new(hub.clone())));
    let mut text = String::new();
    // Writing to a String does not fail, nor does any of our encoders.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// One metric family being written.
struct Families<'a, 'b> {
    encoder: &'a mut DescriptorEncoder<'b>,
}

impl Families<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
        let metric = ConstCounter::new(value);
        metric.encode(
            self.encoder
                .encode_descriptor(name, help, None, metric.metric_type())?,
        )
    }

    fn gauge<N: Into<i64>>(
        &mut self,
        name: &str,
        help: &str,
        value: N,
    ) -> Result<(), std::fmt::Error> {
        let metric = ConstGauge::new(value.into());
        metric.encode(
            self.encoder
                .encode_descriptor(name, help, None, metric.metric_type())?,
        )
    }

    /// A family of `kind` with one member per `(label value, value)`.
    fn labelled<'v>(
        &mut self,
        (name, help, kind): (&str, &str, MetricType),
        label: &str,
        values: impl IntoIterator<Item = (&'v str, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (value, n) in values {
            let labels = [(label, value)];
            let member = family.encode_family(&labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(n).encode(member)?,
                _ => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(member)?,
            }
        }
        Ok(())
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        h: &HistogramSnapshot,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        metric.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }
}

fn saturating(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for MetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.hub.stats();
        let mut f = Families {
            encoder: &mut encoder,
        };
        connections(&mut f, &stats)?;
        events(&mut f, &stats)?;
        history(&mut f, &stats)?;
        backplane(&mut f, &self.hub.backplane_status())?;
        let m = self.hub.metrics();
        f.histogram(
            "ssehub_fanout_duration_seconds",
            "Time a publication takes to be queued to every local member (1 publication in 64).",
            &m.fanout_seconds.snapshot(),
        )?;
        f.histogram(
            "ssehub_delivery_latency_seconds",
            "Time from a publication to its frame being taken for one recipient's socket (1 publication in 64, one recipient each).",
            &m.latency_seconds.snapshot(),
        )?;
        process(&mut f, &ProcessStats::read())
    }
}

fn connections(f: &mut Families, s: &HubStats) -> Result<(), std::fmt::Error> {
    f.labelled(
        (
            "ssehub_connections",
            "Open SSE streams, by transport.",
            MetricType::Gauge,
        ),
        "transport",
        s.connections_by_transport
            .iter()
            .map(|(k, v)| (*k, *v as u64)),
    )?;
    f.counter(
        "ssehub_connections",
        "SSE streams opened since the hub was created.",
        s.connections_total,
    )?;
    f.labelled(
        (
            "ssehub_refused",
            "Streams the endpoint refused, and connections the server closed before their first request, by reason.",
            MetricType::Counter,
        ),
        "reason",
        s.refused.iter().map(|(k, v)| (*k, *v)),
    )?;
    f.gauge(
        "ssehub_rooms",
        "Rooms with at least one member.",
        saturating(s.rooms),
    )?;
    f.gauge(
        "ssehub_outbox_bytes",
        "Bytes waiting in all connections' outboxes.",
        saturating(s.outbox_bytes),
    )
}

fn events(f: &mut Families, s: &HubStats) -> Result<(), std::fmt::Error> {
    f.counter(
        "ssehub_events_published",
        "Publications (broadcasts) made.",
        s.events_published,
    )?;
    f.counter(
        "ssehub_deliveries",
        "Frames queued to connections by publications.",
        s.deliveries,
    )?;
    f.counter(
        "ssehub_delivered_bytes",
        "Bytes queued to connections by publications.",
        s.delivered_bytes,
    )?;
    f.counter(
        "ssehub_dropped_events",
        "Frames skipped for a slow client by the DropEvent policy.",
        s.dropped_events,
    )?;
    f.counter(
        "ssehub_slow_consumer_closes",
        "Connections closed by the Close slow-consumer policy.",
        s.slow_consumer_closes,
    )
}

fn history(f: &mut Families, s: &HubStats) -> Result<(), std::fmt::Error> {
    f.counter(
        "ssehub_replays",
        "Streams that resumed from a cursor.",
        s.replays,
    )?;
    f.counter(
        "ssehub_replayed_events",
        "Events given to resuming streams from history.",
        s.replayed_events,
    )?;
    f.labelled(
        (
            "ssehub_gaps",
            "Gap signals sent to resuming streams, by reason.",
            MetricType::Counter,
        ),
        "reason",
        s.gaps.iter().map(|(k, v)| (*k, *v)),
    )?;
    f.gauge(
        "ssehub_history_rooms",
        "Rooms whose history holds events.",
        saturating(s.history_rooms),
    )?;
    f.gauge(
        "ssehub_history_events",
        "Events held in all rooms' history.",
        saturating(s.history_events),
    )?;
    f.gauge(
        "ssehub_history_bytes",
        "Bytes held in all rooms' history.",
        saturating(s.history_bytes),
    )
}

/// Whether publications reach every node, and how often they could not: labelled by
/// the backplane's kind (`in-process`, `redis`), one member each.
fn backplane(f: &mut Families, b: &BackplaneStatus) -> Result<(), std::fmt::Error> {
    f.labelled(
        (
            "ssehub_backplane_connected",
            "1 while publications reach every node (in-process: always), 0 while degraded to this node.",
            MetricType::Gauge,
        ),
        "backplane",
        [(b.kind, u64::from(b.connected))],
    )?;
    f.labelled(
        (
            "ssehub_backplane_outages",
            "Times the backplane was lost since the hub was created.",
            MetricType::Counter,
        ),
        "backplane",
        [(b.kind, b.outages)],
    )?;
    f.labelled(
        (
            "ssehub_backplane_refused",
            "Messages from other nodes refused (malformed, or numbered past the sequence).",
            MetricType::Counter,
        ),
        "backplane",
        [(b.kind, b.refused)],
    )
}

/// The conventional process metrics (the names every Prometheus client uses, so the
/// usual dashboards find them).
fn process(f: &mut Families, p: &ProcessStats) -> Result<(), std::fmt::Error> {
    if let Some(rss) = p.rss_bytes {
        f.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            saturating(rss as usize),
        )?;
    }
    if let Some(cpu) = p.cpu_seconds {
        let metric = ConstCounter::new(cpu);
        let help = "Total user and system CPU time spent in seconds.";
        metric.encode(f.encoder.encode_descriptor(
            "process_cpu_seconds",
            help,
            None,
            metric.metric_type(),
        )?)?;
    }
    if let Some(n) = p.open_fds {
        f.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            saturating(n as usize),
        )?;
    }
    if let Some(n) = p.max_fds {
        f.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            saturating(n as usize),
        )?;
    }
    Ok(())
}
