//! Log lines that may repeat at a stranger's will (a refused stream, a slow consumer, a
//! failed accept) are rate-limited: at most [`LINES`] per [`INTERVAL`] from one call
//! site, then one summary line, "suppressed K similar lines", with the next line that is
//! written. A flood of refusals then costs a few lines, not a flood of lines.
//!
//! [`warn_limited!`] is the way to use it: each use is its own call site, with its own
//! [`LogLimit`] in a `static`.
//!
//! ## Invariants (under the limit's mutex)
//! - At most `max` lines are allowed in one window; a window starts with the first line
//!   after the previous one ended.
//! - Every line refused is counted once, and the count is handed, once, to the first
//!   line allowed after it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Lines allowed per call site and interval.
pub(crate) const LINES: u32 = 10;
/// The interval.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The window of one call site.
pub(crate) struct LogLimit {
    max: u32,
    interval: Duration,
    window: Mutex<Window>,
}

struct Window {
    /// When the current window began; `None` before the first line.
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogLimit {
    pub(crate) const fn new(max: u32, interval: Duration) -> LogLimit {
        LogLimit {
            max,
            interval,
            window: Mutex::new(Window {
                start: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be written at `now`: `Some(k)` if so, `k` being how many were
    /// suppressed since the last one written (to report first); `None` if not.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut w = lock(&self.window);
        let over = w
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if over {
            w.start = Some(now);
            w.written = 0;
        }
        if w.written >= self.max {
            w.suppressed += 1;
            return None;
        }
        w.written += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// `tracing::warn!`, at most [`LINES`] times per [`INTERVAL`] from this call site; the
/// first line written after others were suppressed is preceded by a summary.
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimit =
            $crate::log_limit::LogLimit::new($crate::log_limit::LINES, $crate::log_limit::INTERVAL);
        if let Some(suppressed) = LIMIT.allow(std::time::Instant::now()) {
            if suppressed > 0 {
                tracing::warn!(suppressed, "suppressed {suppressed} similar lines");
            }
            tracing::warn!($($arg)+);
        }
    }};
}

pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_per_interval_then_one_summary() {
        let limit = LogLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let verdicts: Vec<Option<u64>> = (0..6).map(|_| limit.allow(at(1))).collect();
        assert_eq!(verdicts, [Some(0), Some(0), Some(0), None, None, None]);
        assert_eq!(limit.allow(at(9)), None, "the window began at 1 s");
        // A new window: the first line carries the count of those suppressed.
        assert_eq!(limit.allow(at(11)), Some(4));
        assert_eq!(limit.allow(at(11)), Some(0));
        assert_eq!(limit.allow(at(12)), Some(0));
        assert_eq!(limit.allow(at(12)), None);
        assert_eq!(limit.allow(at(30)), Some(1));
    }
}
