//! What Linux's `/proc` says about this process: resident memory, CPU time, open files.
//! Read when asked (a scrape, `GET /stats`), never kept. Elsewhere than Linux every
//! figure is absent.

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The process's own figures, each `None` where `/proc` cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct ProcessStats {
    /// Resident set size, in bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// CPU time used (user + system, all threads), in seconds.
    pub(crate) cpu_seconds: Option<f64>,
    /// Open file descriptors (every SSE client holds one).
    pub(crate) open_fds: Option<u64>,
    /// The open-file soft limit.
    pub(crate) max_fds: Option<u64>,
}

impl ProcessStats {
    /// Read this process's figures now.
    pub(crate) fn read() -> ProcessStats {
        ProcessStats {
            rss_bytes: rss_bytes(),
            cpu_seconds: cpu_seconds(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: max_fds(),
        }
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15, and `rest` starts at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen() {
        let p = ProcessStats::read();
        assert!(p.rss_bytes.unwrap() > 1024 * 1024);
        assert!(p.cpu_seconds.is_some());
        assert!(p.open_fds.unwrap() >= 3);
        assert!(p.max_fds.unwrap() >= p.open_fds.unwrap());
    }
}
