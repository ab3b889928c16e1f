//! Bounded waits: a test that hangs fails after [`WAIT`] instead of blocking CI.

use std::future::Future;
use std::time::Duration;

/// Upper bound on any single wait in a test (generous: CI machines are shared).
pub const WAIT: Duration = Duration::from_secs(15);

/// `fut`'s output; panics, naming `what`, if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// Poll `cond` every 10 ms until it holds (bounded by [`WAIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
