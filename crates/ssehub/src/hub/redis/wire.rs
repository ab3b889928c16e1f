//! What one node tells the others about a publication, on the PUB/SUB channel:
//! `<seq>\n<header>\n<frame>`, the header being
//! `<node>\x1f<token>\x1f<unique>\x1f<except>\x1f<rooms>` (the token numbers the node's
//! own publications) with the rooms separated by `\x1e` (room names hold no control characters, so neither
//! separator can occur in one). Sequence number 0 is a probe: `0\n<node>\n`.

use bytes::Bytes;

use crate::connection::ConnectionId;

/// A publication as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    pub(super) seq: u64,
    /// The node that published it.
    pub(super) node: String,
    /// That node's number for it.
    pub(super) token: u64,
    pub(super) unique: bool,
    /// A connection of the publishing node to skip.
    pub(super) except: Option<ConnectionId>,
    pub(super) rooms: Vec<String>,
    pub(super) frame: Bytes,
}

/// What came in on the channel.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming {
    Event(Wire),
    /// A probe sent by `node`.
    Probe(String),
}

/// The header part of a message, for the publish script.
pub(super) fn header(
    node: &str,
    token: u64,
    unique: bool,
    except: Option<ConnectionId>,
    rooms: &[String],
) -> String {
    let except = except.map(|c| c.to_string()).unwrap_or_default();
    format!(
        "{node}\x1f{token}\x1f{}\x1f{except}\x1f{}",
        u8::from(unique),
        rooms.join("\x1e")
    )
}

/// A probe message.
pub(super) fn probe(node: &str) -> String {
    format!("0\n{node}\n")
}

/// Read a message; `None` if it is not one of ours.
pub(super) fn parse(payload: &[u8]) -> Option<Incoming> {
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let seq: u64 = std::str::from_utf8(&payload[..nl]).ok()?.parse().ok()?;
    let rest = &payload[nl + 1..];
    let nl2 = rest.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&rest[..nl2]).ok()?;
    if seq == 0 {
        return Some(Incoming::Probe(header.to_owned()));
    }
    let frame = Bytes::copy_from_slice(&rest[nl2 + 1..]);
    event(seq, header, frame).map(Incoming::Event)
}

/// A publication from its number, header and frame (off the channel, or a stream).
pub(super) fn event(seq: u64, header: &str, frame: Bytes) -> Option<Wire> {
    let mut parts = header.splitn(5, '\x1f');
    let node = parts.next()?.to_owned();
    let token = parts.next()?.parse().ok()?;
    let unique = parts.next()? == "1";
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
        except,
        rooms,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_written() {
        let rooms = vec!["a".to_owned(), "b c".to_owned()];
        let h = header("n1", 9, true, None, &rooms);
        let payload = format!("42\n{h}\nid: x\ndata: y\n\n");
        assert_eq!(
            parse(payload.as_bytes()),
            Some(Incoming::Event(Wire {
                seq: 42,
                node: "n1".into(),
                token: 9,
                unique: true,
                except: None,
                rooms,
                frame: Bytes::from_static(b"id: x\ndata: y\n\n"),
            }))
        );
        assert_eq!(
            parse(probe("n2").as_bytes()),
            Some(Incoming::Probe("n2".into()))
        );
        assert_eq!(parse(b"garbage"), None);
    }
}
