//! The process's open-file limit: the load tools hold a descriptor per connection, and
//! the usual soft limit (1024) is far below what they open.
//!
//! The `naive_axum` example includes this file as a module of its own, so it uses
//! nothing else of the crate.

/// Raise the soft open-file limit to the hard one; returns the limit in force (1024, the
/// usual default, if it cannot be read or raised).
pub(crate) fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}
