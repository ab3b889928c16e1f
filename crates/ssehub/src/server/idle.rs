//! How long a connection may sit with no request in progress: HTTP/2 connections (hyper
//! keeps one open, answering pings, for as long as the client likes, even after its last
//! stream) and kept-alive HTTP/1.1 ones alike.
//!
//! [`Activity`] counts one connection's requests in progress: a request is in progress
//! from the moment hyper hands it to the service until its response body is dropped
//! (for an SSE stream, the stream's whole life). [`Activity::idle`] completes once none
//! has been in progress for the timeout.
//!
//! ## Invariants
//! - The count is the number of live [`InFlight`] guards: each adds one when made and
//!   takes it away when dropped, through the watch channel's lock.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;

use super::gate::RequestSlot;

/// The requests in progress on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    open: std::sync::Arc<watch::Sender<usize>>,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            open: std::sync::Arc::new(watch::Sender::new(0)),
        }
    }

    /// A request begins; it ends when the guard is dropped.
    pub(crate) fn begin(&self) -> InFlight {
        self.open.send_modify(|n| *n += 1);
        InFlight {
            open: self.open.clone(),
        }
    }

    /// Completes once no request has been in progress for `timeout` (never for `None`).
    pub(crate) async fn idle(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        let mut open = self.open.subscribe();
        loop {
            if open.wait_for(|n| *n == 0).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(timeout) => return,
                changed = open.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// One request in progress (see [`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight {
    open: std::sync::Arc<watch::Sender<usize>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n -= 1);
    }
}

/// A response body that keeps its request in progress (and its slot among its
/// address's requests, if counted) until it is dropped.
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
    _slot: Option<RequestSlot>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, in_flight: InFlight, slot: Option<RequestSlot>) -> Tracked<B> {
        Tracked {
            body,
            _in_flight: in_flight,
            _slot: slot,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_s_end() {
        let activity = Activity::new();
        let t0 = tokio::time::Instant::now();
        let guard = activity.begin();
        let idle = tokio::spawn({
            let a = activity.clone();
            async move { a.idle(Some(Duration::from_secs(60))).await }
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!idle.is_finished(), "a request is in progress");
        drop(guard);
        idle.await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(160));
    }
}
