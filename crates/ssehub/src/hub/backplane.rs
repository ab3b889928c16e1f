//! The backplane seam: where a publication goes between the hub that takes it and the
//! fan-outs that deliver it.
//!
//! "Publish" (give the publication its place in the order of events, and make it reach
//! every node that serves the hub's rooms) is kept apart from "deliver locally" (fan it
//! out to this process's members, [`super::fanout::deliver`]). The hub calls only
//! [`Backplane::publish`]; nothing above this seam knows which backplane is in use.
//!
//! [`InProcess`] is the embedded default: one process is the whole hub, so publishing
//! is delivering, at once and on the caller's thread.

use super::fanout::{self, Publication};
use super::rooms::Rooms;

/// Where publications go. Implementations must keep, for one publisher, the order of
/// its publications on every node.
pub(crate) trait Backplane: Send + Sync {
    /// Take `publication`, deliver it to the local members through `local`, and reach
    /// the other nodes. Returns how many local connections it reached.
    fn publish(&self, publication: &Publication, local: &Rooms) -> usize;
}

/// One process, no other node: publishing is the local fan-out.
#[derive(Debug, Default)]
pub(crate) struct InProcess;

impl Backplane for InProcess {
    fn publish(&self, publication: &Publication, local: &Rooms) -> usize {
        fanout::deliver(local, publication)
    }
}
