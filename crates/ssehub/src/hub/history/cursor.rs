//! Ids as cursors into the history, and the gap signal for a cursor that cannot be
//! honoured.
//!
//! ## Ids
//! One hub-wide sequence numbers every event recorded in any room's history. An event
//! without an id of its own gets `<epoch>-<seq>`: `epoch` is 8 hex digits drawn at
//! random when the history is created (so a cursor from before a restart is recognised
//! as such), `seq` the decimal sequence number. Clients treat ids as opaque. An event that
//! brings its own id keeps it; the id must then be unique within the history, non-empty,
//! not `earliest`, and not of the hub's own form.
//!

use bytes::Bytes;
use serde_json::json;

use crate::hub::publish_error::PublishError;
use crate::hub::topics::IdForm;
use crate::message::Message;

/// Why a cursor could not be honoured: the `reason` of the gap event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GapReason {
    /// Events after the cursor were dropped from the history (limits or age).
    Evicted,
    /// The cursor is from another epoch of the history (before a restart).
    UnknownEpoch,
    /// The cursor has the hub's form but cannot be read, or points past the newest event.
    Malformed,
    /// The cursor is an id of the caller's that the history does not hold (never seen,
    /// or dropped).
    UnknownId,
    /// More was missed than one replay may carry (half the outbox): the oldest part is
    /// left out.
    ReplayLimit,
    /// The backplane was unreachable for a while: events of other nodes may be missing.
    Outage,
}

impl GapReason {
    /// The reason as the gap event's JSON says it.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::UnknownEpoch => "unknown-epoch",
            GapReason::Malformed => "malformed",
            GapReason::UnknownId => "unknown-id",
            GapReason::ReplayLimit => "replay-limit",
            GapReason::Outage => "outage",
        }
    }

    /// Its place in [`GapReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Every reason, in a fixed order (for counters).
    pub(crate) const ALL: [GapReason; 6] = [
        GapReason::Evicted,
        GapReason::UnknownEpoch,
        GapReason::Malformed,
        GapReason::UnknownId,
        GapReason::ReplayLimit,
        GapReason::Outage,
    ];
}

/// Where a resuming stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// After the event bearing this id (the `Last-Event-ID`), or `earliest`.
    After(String),
    /// The newest `n` events (`?history=n`), for a first connection.
    Newest(usize),
}

/// Where `cursor` points: replay what follows this sequence number; or why it cannot be
/// honoured. `epoch` and `top` are the history's (its newest sequence number), `form`
/// how its ids look; `own` looks up an id a caller gave.
pub(crate) fn place(
    cursor: &str,
    epoch: &str,
    top: u64,
    form: IdForm,
    own: impl FnOnce() -> Option<u64>,
) -> Result<u64, GapReason> {
    if cursor == "earliest" {
        return Ok(0);
    }
    match hub_id(cursor, form) {
        Some(Ok((e, seq))) if e == epoch && seq <= top => Ok(seq),
        Some(Ok((e, _))) if e != epoch => Err(GapReason::UnknownEpoch),
        Some(_) => Err(GapReason::Malformed),
        None => own().ok_or(GapReason::UnknownId),
    }
}

/// Whether a caller's own id can be a cursor (apart from being unique) in a history whose
/// ids have `form`: not empty, not `earliest`, not of the hub's own form.
pub(crate) fn check_own_id(id: &str, form: IdForm) -> Result<(), PublishError> {
    if id.is_empty() {
        return Err(PublishError::EmptyId);
    }
    if id == "earliest" || hub_id(id, form).is_some() {
        return Err(PublishError::ReservedId(id.to_owned()));
    }
    Ok(())
}

/// The gap signal, named `event`: JSON `{"reason", "last_event_id", "rooms",
/// "first_id"}`; encoded for one stream, or published as it is to every node of a hub.
pub(crate) fn gap_message(
    event: &str,
    reason: GapReason,
    cursor: Option<&str>,
    rooms: &[String],
    first: Option<&str>,
) -> Message {
    let data = json!({
        "reason": reason.as_str(),
        "last_event_id": cursor,
        "rooms": rooms,
        "first_id": first,
    });
    Message::builder()
        .event(event)
        .data(data.to_string())
        .build()
        .unwrap_or_else(|_| Message::new(data.to_string()))
}

/// `id: <id>` alone: no event, but the client's cursor moves.
pub(crate) fn id_only_frame(id: &str) -> Bytes {
    Message::builder()
        .id(id)
        .build()
        .expect("the hub's ids are valid")
        .encode()
}

/// The hub's id of sequence number `seq` in `epoch`, in `form`.
pub(crate) fn hub_id_of(epoch: &str, seq: u64, form: IdForm) -> String {
    match form {
        IdForm::Plain => format!("{epoch}-{seq}"),
        // A UUID's layout with version 4 and variant bits: the epoch in its first field,
        // the number's high 16 bits in the second and low 48 bits in the last.
        IdForm::Urn => format!(
            "urn:uuid:{epoch}-{:04x}-4000-8000-{:012x}",
            seq >> 48,
            seq & 0xffff_ffff_ffff
        ),
    }
}

/// `Some` if `id` has the hub's form for `form`: `Ok((epoch, seq))`, or `Err(())` when
/// the number does not fit.
pub(crate) fn hub_id(id: &str, form: IdForm) -> Option<Result<(&str, u64), ()>> {
    match form {
        IdForm::Plain => hub_form(id),
        IdForm::Urn => urn_form(id).map(Ok),
    }
}

/// `Some((epoch, seq))` if `id` is `urn:uuid:EEEEEEEE-HHHH-4000-8000-LLLLLLLLLLLL` (hex,
/// lower case, as [`hub_id_of`] writes it).
fn urn_form(id: &str) -> Option<(&str, u64)> {
    let uuid = id.strip_prefix("urn:uuid:")?;
    let b = uuid.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    if b.len() != 36 || !hex(0..8) || !hex(9..13) || !hex(24..36) {
        return None;
    }
    if &uuid[8..9] != "-" || &uuid[13..24] != "-4000-8000-" {
        return None;
    }
    let high = u64::from_str_radix(&uuid[9..13], 16).ok()?;
    let low = u64::from_str_radix(&uuid[24..36], 16).ok()?;
    Some((&uuid[..8], high << 48 | low))
}

/// `Some` if `id` has the hub's form `<8 hex digits>-<digits>`: `Ok((epoch, seq))`,
/// or `Err(())` when the number does not fit.
pub(crate) fn hub_form(id: &str) -> Option<Result<(&str, u64), ()>> {
    let (epoch, seq) = id.split_once('-')?;
    let hex = epoch.len() == 8 && epoch.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit());
    if !hex || !digits {
        return None;
    }
    Some(seq.parse().map(|n| (epoch, n)).map_err(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_ids_carry_the_epoch_and_the_number_back() {
        for seq in [1, 42, 0xffff_ffff_ffff, 1 << 48, u64::MAX] {
            let id = hub_id_of("0badf00d", seq, IdForm::Urn);
            assert!(id.starts_with("urn:uuid:0badf00d-"), "{id}");
            assert_eq!(
                uuid::Uuid::parse_str(&id[9..]).unwrap().get_version_num(),
                4
            );
            assert_eq!(hub_id(&id, IdForm::Urn), Some(Ok(("0badf00d", seq))));
            assert_eq!(hub_id(&id, IdForm::Plain), None);
        }
        let random = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        assert_eq!(hub_id(&random, IdForm::Urn), None, "{random}");
        assert_eq!(
            hub_id("urn:uuid:0BADF00D-0000-4000-8000-000000000001", IdForm::Urn),
            None
        );
        assert!(check_own_id(&random, IdForm::Urn).is_ok());
        assert!(
            check_own_id("0badf00d-1", IdForm::Urn).is_ok(),
            "another form's"
        );
        assert!(check_own_id("0badf00d-1", IdForm::Plain).is_err());
    }
}
