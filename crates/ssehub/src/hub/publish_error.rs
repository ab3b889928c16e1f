//! Why a publication is refused before anything is sent: its rooms, its size, or an id
//! of its own that cannot be a cursor in a room with history.

/// Why a publication was refused: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Its id is already the id of an event in the history.
    #[error("id {0:?} is already in the history: in rooms with history an id must be unique")]
    DuplicateId(String),
    /// Its id is empty (which would reset the client's cursor).
    #[error("an empty id cannot be a cursor: rooms with history need a non-empty id or none")]
    EmptyId,
    /// Its id has the form of the hub's own ids, or is `earliest`.
    #[error("id {0:?} is reserved: `earliest` and ids of the form <8 hex digits>-<number> are the hub's")]
    ReservedId(String),
    /// It names more distinct rooms than [`crate::HubConfig::max_rooms_per_publish`].
    #[error("too many rooms: {rooms} distinct, at most {max} in one publish")]
    TooManyRooms {
        /// The distinct rooms it names.
        rooms: usize,
        /// The hub's limit.
        max: usize,
    },
    /// The durable history ([`crate::HubConfig::history_dir`]) could not write it (the
    /// disk is full, or failing): it was not numbered, kept or sent.
    #[error("the history could not write the event: {0}")]
    Storage(String),
    /// Encoded, it is larger than [`crate::HubConfig::max_event_bytes`].
    #[error("the event is {bytes} bytes encoded, over the limit of {max}")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The hub's limit.
        max: usize,
    },
}
