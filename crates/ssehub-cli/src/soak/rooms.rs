//! The soak's rooms and who reads them: small rooms `soak-0..K` with a few fast readers
//! each, the large room with many, and the bulk room, whose large events two fast readers
//! follow while the slow readers stall on them.

use super::Args;

pub(super) const LARGE_ROOM: &str = "soak-large";
pub(super) const BULK_ROOM: &str = "soak-bulk";
/// Bytes of data of an event to a small room.
const SMALL_SIZE: usize = 48;
/// Fast readers of the bulk room.
const BULK_READERS: usize = 2;

/// Every room of the run, in publishing order: the small ones, the large one, the bulk
/// one.
pub(super) struct Rooms {
    pub names: Vec<String>,
    /// Bytes of data of an event to each room.
    pub sizes: Vec<usize>,
}

impl Rooms {
    pub(super) fn new(args: &Args) -> Rooms {
        let mut names: Vec<String> = (0..args.rooms).map(|k| format!("soak-{k}")).collect();
        let mut sizes = vec![SMALL_SIZE; names.len()];
        names.push(LARGE_ROOM.into());
        sizes.push(args.large_size);
        names.push(BULK_ROOM.into());
        sizes.push(args.bulk_size);
        Rooms { names, sizes }
    }

    /// The room (an index into [`Rooms::names`]) of each fast reader.
    pub(super) fn fast_readers(&self, args: &Args) -> Vec<usize> {
        let mut plan = Vec::new();
        for k in 0..args.rooms as usize {
            plan.resize(plan.len() + args.readers_per_room as usize, k);
        }
        plan.resize(plan.len() + args.large_room as usize, self.names.len() - 2);
        plan.resize(plan.len() + BULK_READERS, self.names.len() - 1);
        plan
    }
}
