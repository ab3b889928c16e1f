//! The subscribers of one run, wherever they live: in this process's threads
//! ([`Subscribers`]), or spread over child processes ([`Agents`]) when one process's
//! open-file limit cannot hold them all. Either way the coordinator reads the same
//! counters ([`Shared`]).

use super::agents::Agents;
use super::subscribers::{Received, Shared, Subscribers};

pub(super) enum Fleet {
    Local(Subscribers),
    Agents(Agents),
}

impl Fleet {
    pub(super) fn shared(&self) -> &Shared {
        match self {
            Fleet::Local(s) => &s.shared,
            Fleet::Agents(a) => &a.shared,
        }
    }

    /// Stop every subscriber, closing its connection: what they received.
    pub(super) async fn finish(self) -> Received {
        match self {
            Fleet::Local(s) => s.finish(),
            Fleet::Agents(a) => a.finish().await,
        }
    }
}
