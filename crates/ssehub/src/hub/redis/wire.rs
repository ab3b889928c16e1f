//! What one node tells the others on the PUB/SUB channel.
//!
//! - A publication: `<epoch>-<seq>\n<header>\n<frame>`, the header being
//!   `<node>\x1f<token>\x1f<unique>\x1f<private>\x1f<except>\x1f<rooms>` (the token
//!   numbers the node's own publications; `unique` and `private` are `0` or `1`) with the
//!   rooms separated by `\x1e` (room names hold no control characters, so neither
//!   separator can occur in one). The streams keep the header with each entry, so a
//!   replay or a catch-up knows an event's rooms (topics) and whether it is private as
//!   the channel told them.
//! - A probe: `probe <epoch>-<seq>\n<node>\n`, the epoch and the sequence when the probe
//!   was sent: every publication before it on the channel has a number up to `seq`.
//!
//! Anyone who may `PUBLISH` on the channel can put anything on it, so what comes from it
//! is checked before it reaches a client: the frame must be one event exactly as this
//! crate encodes one ([`check_frame`]), and the number is checked against Redis's
//! sequence by the listener (`subscriber.rs`).

use bytes::Bytes;

use crate::connection::ConnectionId;
use crate::hub::history::{hub_id, hub_id_of};
use crate::hub::topics::IdForm;

/// A publication as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    pub(super) seq: u64,
    /// The node that published it.
    pub(super) node: String,
    /// That node's number for it.
    pub(super) token: u64,
    pub(super) unique: bool,
    /// Only for the connections whose audience accepts one of its rooms (topics).
    pub(super) private: bool,
    /// A connection of the publishing node to skip.
    pub(super) except: Option<ConnectionId>,
    pub(super) rooms: Vec<String>,
    pub(super) frame: Bytes,
}

/// What came in on the channel.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming {
    Event {
        epoch: String,
        wire: Wire,
    },
    /// A probe sent by `node`, when the sequence was at `seq`.
    Probe {
        node: String,
        epoch: String,
        seq: u64,
    },
}

/// What a publication's header says besides its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flags {
    pub(super) unique: bool,
    pub(super) private: bool,
}

/// The header part of a message, for the publish script.
pub(super) fn header(
    node: &str,
    token: u64,
    flags: Flags,
    except: Option<ConnectionId>,
    rooms: &[String],
) -> String {
    let except = except.map(|c| c.to_string()).unwrap_or_default();
    format!(
        "{node}\x1f{token}\x1f{}\x1f{}\x1f{except}\x1f{}",
        u8::from(flags.unique),
        u8::from(flags.private),
        rooms.join("\x1e")
    )
}

/// `<epoch>-<seq>`: the epoch is never empty (the scripts draw one when there is none)
/// and holds no `-`.
fn place(s: &str) -> Option<(String, u64)> {
    let (epoch, seq) = s.split_once('-')?;
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((epoch.to_owned(), seq.parse().ok()?))
}

/// Read a message; `None` if it is not one of ours.
pub(super) fn parse(payload: &[u8]) -> Option<Incoming> {
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let first = std::str::from_utf8(&payload[..nl]).ok()?;
    let rest = &payload[nl + 1..];
    let nl2 = rest.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&rest[..nl2]).ok()?;
    if let Some(at) = first.strip_prefix("probe ") {
        let (epoch, seq) = place(at)?;
        return Some(Incoming::Probe {
            node: header.to_owned(),
            epoch,
            seq,
        });
    }
    let (epoch, seq) = place(first)?;
    if seq == 0 {
        return None;
    }
    let frame = Bytes::copy_from_slice(&rest[nl2 + 1..]);
    let wire = event(seq, header, frame)?;
    Some(Incoming::Event { epoch, wire })
}

/// A publication from its number, header and frame (off the channel, or a stream).
pub(super) fn event(seq: u64, header: &str, frame: Bytes) -> Option<Wire> {
    let mut parts = header.splitn(6, '\x1f');
    let node = parts.next()?.to_owned();
    let token = parts.next()?.parse().ok()?;
    let unique = flag(parts.next()?)?;
    let private = flag(parts.next()?)?;
    let except = match parts.next()? {
        "" => None,
        id => id.parse().ok(),
    };
    let rooms = parts.next()?.split('\x1e').map(str::to_owned).collect();
    Some(Wire {
        seq,
        node,
        token,
        unique,
        private,
        except,
        rooms,
        frame,
    })
}

/// What a stream entry's header says a reader needs: whether it is private, and its
/// rooms (topics); `None` if it is not a header (a reader then skips the entry, as a
/// catch-up refuses it).
pub(super) fn audience(header: &str) -> Option<(bool, impl Iterator<Item = &str>)> {
    let mut parts = header.splitn(6, '\x1f');
    parts.next()?;
    parts.next()?.parse::<u64>().ok()?;
    flag(parts.next()?)?;
    let private = flag(parts.next()?)?;
    parts.next()?;
    Some((private, parts.next()?.split('\x1e')))
}

/// `0` or `1`; anything else is no header of ours (a private flag misread as `0` would
/// send a private update to everyone).
fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Whether `frame` is one event exactly as `Message::encode_with_id` writes one, with
/// the id publication `seq` of `epoch` may carry: an `id` line first, if any (of the
/// hub's form, `form`, only as the id of `seq` in `epoch`), then `event`, `retry` (digits), `data` lines,
/// each at most once but `data`, in that order, and the blank line that ends it; UTF-8,
/// no CR, no other blank line. Why not, if not.
pub(super) fn check_frame(
    frame: &[u8],
    epoch: &str,
    seq: u64,
    form: IdForm,
) -> Result<(), &'static str> {
    let text = std::str::from_utf8(frame).map_err(|_| "not UTF-8")?;
    let body = text.strip_suffix('\n').ok_or("no blank line at its end")?;
    if body.contains('\r') {
        return Err("a CR");
    }
    if body.is_empty() {
        return Ok(());
    }
    let body = body.strip_suffix('\n').ok_or("no blank line at its end")?;
    // The order fields come in; each but `data` at most once.
    let mut at = 0;
    for line in body.split('\n') {
        let (name, value) = line.split_once(':').ok_or("a line that is no field")?;
        let value = match value {
            "" => "",
            v => v.strip_prefix(' ').ok_or("a field without its space")?,
        };
        let rank = match name {
            "id" => 1,
            "event" => 2,
            "retry" => 3,
            "data" => 4,
            _ => return Err("an unknown field, or more than one event"),
        };
        if rank < at || (rank == at && rank != 4) {
            return Err("fields out of order, or repeated");
        }
        at = rank;
        match name {
            "id" if value.contains('\0') => return Err("a NUL in the id"),
            "id" if hub_id(value, form).is_some() && value != hub_id_of(epoch, seq, form) => {
                return Err("an id that is not its number's");
            }
            "event" if value.is_empty() => return Err("an empty event name"),
            "retry" if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) => {
                return Err("a retry that is not a number");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn a_message_reads_back_as_written() {
        let rooms = vec!["a".to_owned(), "b c".to_owned()];
        for (unique, private) in [(true, false), (false, true)] {
            let flags = Flags { unique, private };
            let h = header("n1", 9, flags, None, &rooms);
            let payload = format!("0badcafe-42\n{h}\nid: x\ndata: y\n\n");
            assert_eq!(
                parse(payload.as_bytes()),
                Some(Incoming::Event {
                    epoch: "0badcafe".into(),
                    wire: Wire {
                        seq: 42,
                        node: "n1".into(),
                        token: 9,
                        unique,
                        private,
                        except: None,
                        rooms: rooms.clone(),
                        frame: Bytes::from_static(b"id: x\ndata: y\n\n"),
                    }
                })
            );
            let (p, r) = audience(&h).unwrap();
            assert_eq!((p, r.collect::<Vec<_>>()), (private, vec!["a", "b c"]));
        }
        assert_eq!(
            parse(b"probe 0badcafe-7\nn2\n"),
            Some(Incoming::Probe {
                node: "n2".into(),
                epoch: "0badcafe".into(),
                seq: 7
            })
        );
        for garbage in [
            &b"garbage"[..],
            b"42\nn1\x1f1\x1f0\x1f0\x1f\x1fr\ndata: x\n\n",
            b"0badcafe-0\nn1\x1f1\x1f0\x1f0\x1f\x1fr\ndata: x\n\n",
            b"-5\nn1\x1f1\x1f0\x1f0\x1f\x1fr\ndata: x\n\n",
            b"0badcafe-99999999999999999999\nn1\x1f1\x1f0\x1f0\x1f\x1fr\ndata: x\n\n",
            b"probe 0badcafe\nn2\n",
            // The header of before the private flag: its rooms would be read as a flag.
            b"0badcafe-5\nn1\x1f1\x1f0\x1f\x1fr\ndata: x\n\n",
            // A private flag that is neither: never taken for "public".
            b"0badcafe-5\nn1\x1f1\x1f0\x1fyes\x1f\x1fr\ndata: x\n\n",
        ] {
            assert_eq!(
                parse(garbage),
                None,
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn a_frame_is_one_event_as_encoded() {
        let with_id = |m: &Message, id: Option<&str>| m.encode_with_id(id);
        let full = Message::builder()
            .event("tick")
            .retry(std::time::Duration::from_millis(1500))
            .data("a\nb\r\n\nc")
            .build()
            .unwrap();
        for (frame, why) in [
            (with_id(&full, Some("0badcafe-7")), "the hub's id"),
            (with_id(&full, Some("mine")), "an id of the caller's"),
            (with_id(&full, None), "no id"),
            (with_id(&full, Some("")), "an empty id"),
            (Message::new("").encode(), "empty data"),
            (Message::default().encode(), "nothing"),
            (
                Message::builder().id("x").build().unwrap().encode(),
                "an id only",
            ),
        ] {
            assert_eq!(
                check_frame(&frame, "0badcafe", 7, IdForm::Plain),
                Ok(()),
                "{why}"
            );
        }
        // A hub of URN ids: its own number's URN, and a caller's id of the plain form.
        let urn = hub_id_of("0badcafe", 7, IdForm::Urn);
        for id in [urn.as_str(), "0badcafe-8", "mine"] {
            let frame = with_id(&full, Some(id));
            assert_eq!(
                check_frame(&frame, "0badcafe", 7, IdForm::Urn),
                Ok(()),
                "{id}"
            );
        }
        for id in [
            hub_id_of("0badcafe", 8, IdForm::Urn),
            hub_id_of("00000000", 7, IdForm::Urn),
        ] {
            let frame = with_id(&full, Some(&id));
            assert!(
                check_frame(&frame, "0badcafe", 7, IdForm::Urn).is_err(),
                "{id}"
            );
        }
        for (frame, why) in [
            (&b"data: a\n\ndata: b\n\n"[..], "two events"),
            (b"data: a\n\nevent: evil\ndata: b\n\n", "an injected event"),
            (b"data: a\nevent: late\n\n", "fields out of order"),
            (b"event: a\nevent: b\ndata: c\n\n", "a field twice"),
            (b"id: 0badcafe-8\ndata: a\n\n", "another number's id"),
            (b"id: 00000000-7\ndata: a\n\n", "another epoch's id"),
            (b"data: a\n", "no blank line"),
            (b"data: a", "no line end"),
            (b"data: a\r\n\r\n", "CRs"),
            (b": comment\ndata: a\n\n", "a comment"),
            (b"bogus: a\n\n", "an unknown field"),
            (b"data:a\n\n", "no space"),
            (b"retry: soon\n\n", "a retry in words"),
            (b"data: \xff\n\n", "not UTF-8"),
            (b"id: a\0b\ndata: x\n\n", "NUL in the id"),
        ] {
            assert!(
                check_frame(frame, "0badcafe", 7, IdForm::Plain).is_err(),
                "{why}"
            );
        }
    }
}
