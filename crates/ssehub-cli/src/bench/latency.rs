//! The send time a bench event carries, and the latencies measured from it.
//!
//! A publisher puts its wall-clock time at the start of each event's data
//! ([`event_data`]); a subscriber subtracts it from its own clock on receipt. Both read
//! `CLOCK_REALTIME` ([`now_ns`]), so the publisher may be another process.

use hdrhistogram::Histogram;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in nanoseconds since the Unix epoch: the clock both the publisher
/// (possibly another process) and the subscribers read.
pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The data of bench event: `~<send time in ns>` then padding, `size` bytes in all.
pub(super) fn event_data(size: usize) -> String {
    let mut data = format!("~{}", now_ns());
    if data.len() < size {
        data.push(' ');
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// Microseconds from `sent` to `at` (both ns since the epoch), at least 1.
pub(super) fn micros(at: u64, sent: u64) -> u64 {
    (at.saturating_sub(sent) / 1000).max(1)
}

/// A fresh latency histogram, in microseconds, 1 us to 10 minutes.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency histograms, in microseconds, of one subscriber thread or of all together.
pub(super) struct Latencies {
    /// Send time to the wall clock after the socket was drained.
    pub end_to_end: Histogram<u64>,
    /// Send time to the kernel's receive timestamp of the read (empty where the kernel
    /// gives none).
    pub at_socket: Histogram<u64>,
}

impl Latencies {
    pub(super) fn new() -> Latencies {
        Latencies {
            end_to_end: new_histogram(),
            at_socket: new_histogram(),
        }
    }

    pub(super) fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.end_to_end.add(&other.end_to_end);
        let _ = self.at_socket.add(&other.at_socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_has_the_requested_size_and_a_parsable_time() {
        let d = event_data(64);
        assert_eq!(d.len(), 64);
        assert!(d.starts_with('~'));
        let digits: String = d[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
        assert!(digits.parse::<u64>().unwrap() > 1_600_000_000_000_000_000);
    }
}
