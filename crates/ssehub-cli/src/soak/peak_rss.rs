//! The server's peak memory over a soak: its RSS sampled every 200 ms while the run
//! goes, and once more at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Resident memory of a process, in bytes, if it can be read.
fn rss_bytes(pid: u32) -> Option<u64> {
    crate::procfs::rss_bytes(pid).ok()
}

/// A sampler of a process's memory (doing nothing without a pid).
pub(super) struct PeakRss {
    pid: Option<u32>,
    /// The RSS at the start, if it could be read.
    base: Option<u64>,
    peak: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl PeakRss {
    pub(super) fn start(pid: Option<u32>) -> PeakRss {
        let base = pid.and_then(rss_bytes);
        let peak = Arc::new(AtomicU64::new(base.unwrap_or(0)));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = pid.map(|pid| {
            let peak = peak.clone();
            let sampling = sampling.clone();
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(b) = rss_bytes(pid) {
                        peak.fetch_max(b, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        PeakRss {
            pid,
            base,
            peak,
            sampling,
            sampler,
        }
    }

    /// Stop sampling: the RSS at the start and the peak, if the start could be read.
    pub(super) async fn finish(self) -> Option<(u64, u64)> {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(s) = self.sampler {
            let _ = s.await;
        }
        if let Some(b) = self.pid.and_then(rss_bytes) {
            self.peak.fetch_max(b, Ordering::Relaxed);
        }
        self.base.map(|b| (b, self.peak.load(Ordering::Relaxed)))
    }
}
