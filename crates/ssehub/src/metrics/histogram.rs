//! Timing histograms of relaxed atomics, and the sampler that decides which
//! publications are timed.
//!
//! One publication in [`SAMPLE_EVERY`] is timed (its fan-out, and its way to the socket
//! of one of its recipients): a clock read and three atomic adds on shared cache lines
//! cost little once, but a publication to one subscriber costs about a microsecond in
//! all, so timing every one would be measurable (BENCHMARKS.md). The choice is made
//! per thread, with no shared state.
//!
//! ## Invariants
//! - Each observation adds 1 to exactly one bucket and its duration to `sum_ns`; the
//!   count is the sum of the buckets, so a snapshot taken while others observe may
//!   lag by a few observations but its buckets never exceed its count.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One publication in this many is timed.
pub(crate) const SAMPLE_EVERY: u32 = 64;

/// Upper bounds of the buckets, in seconds (10 us to 10 s; an overflow bucket follows).
pub(crate) const BOUNDS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

thread_local! {
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// A publication chosen to be timed: when it started, and a number to pick one of its
/// recipients with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) seed: u32,
}

/// Whether the publication starting now is timed (one in [`SAMPLE_EVERY`] on this
/// thread).
pub(crate) fn sample() -> Option<Sample> {
    let n = TICKS.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n
    });
    n.is_multiple_of(SAMPLE_EVERY).then(|| Sample {
        at: Instant::now(),
        // Spread over the recipients (Knuth's multiplicative hash of the tick).
        seed: (n / SAMPLE_EVERY).wrapping_mul(2_654_435_761),
    })
}

/// A histogram of durations, with the buckets of [`BOUNDS`].
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

/// What a histogram held at one moment (read by the Prometheus exposition).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) sum_seconds: f64,
    pub(crate) count: u64,
    /// `(upper bound, observations at or under it)`, cumulative, `+Inf` last.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        HistogramSnapshot {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.000_01, 2), "at or under 10 us");
        assert_eq!(s.buckets[8], (0.005, 3));
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 4));
        assert!((s.sum_seconds - 60.003_015).abs() < 1e-9);
    }

    #[test]
    fn one_publication_in_so_many_is_sampled() {
        let n = (0..SAMPLE_EVERY * 10)
            .filter(|_| sample().is_some())
            .count();
        assert_eq!(n, 10);
    }
}
