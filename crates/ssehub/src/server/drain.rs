//! What shutdown does to the SSE streams: refuse new ones, tell each open one when to
//! come back (jittered, so clients do not return together), let each flush what it has
//! queued, and drop whatever is still open when the grace period runs out, saying how
//! many streams still had events queued.

use crate::connection::Connection;
use crate::endpoint::SseEndpoint;
use crate::message::Message;

/// The streams being drained.
pub(crate) struct Drain<'a> {
    endpoints: Vec<&'a SseEndpoint>,
    /// Every stream closed here: they leave the hub at once, though their clients may
    /// still be reading what they had queued; kept to be dropped if the grace runs out.
    streams: Vec<Connection>,
}

/// Close every stream of `endpoints`, after `farewell` if given and a restart hint.
pub(crate) fn begin<'a>(endpoints: &'a [SseEndpoint], farewell: Option<&Message>) -> Drain<'a> {
    for ep in endpoints {
        // A stream still being set up (its authorize hook running) is refused or, if it
        // got in, closed: nothing opens behind the close below.
        ep.begin_shutdown();
    }
    // One pass per hub, though several endpoints may share one.
    let mut distinct: Vec<&SseEndpoint> = Vec::new();
    for ep in endpoints {
        if !distinct.iter().any(|e| e.hub().same_as(ep.hub())) {
            distinct.push(ep);
        }
    }
    let mut streams = Vec::new();
    for ep in &distinct {
        let hub = ep.hub();
        if let Some(m) = farewell {
            hub.send_to_all(&m.encode());
        }
        // A jittered reconnection delay: no reconnect storm when we come back.
        let conns = hub.connections();
        for c in &conns {
            let _ = c.send_frame(ep.restart_hint(c));
        }
        streams.extend(conns);
        // Each stream flushes what it has queued, then ends.
        hub.close_all();
    }
    Drain {
        endpoints: distinct,
        streams,
    }
}

impl Drain<'_> {
    /// The grace period is over: drop every stream still attached to its transport.
    /// Never half-delivered without a trace: say how many still had events queued
    /// (their clients were not reading) when they were dropped.
    pub(crate) fn give_up(mut self) {
        // ...and any that opened since (refused by now, but racing in before).
        let late = self.endpoints.iter().flat_map(|e| e.hub().connections());
        self.streams.extend(late);
        let open: Vec<_> = self
            .streams
            .iter()
            .filter(|c| c.transport_attached())
            .collect();
        let queued: Vec<usize> = open
            .iter()
            .map(|c| c.queued_bytes())
            .filter(|&b| b > 0)
            .collect();
        tracing::warn!(
            open_streams = open.len(),
            streams_with_queued_events = queued.len(),
            queued_bytes = queued.iter().sum::<usize>(),
            "grace period over; dropping open connections"
        );
        for c in open {
            c.abort();
        }
    }
}
