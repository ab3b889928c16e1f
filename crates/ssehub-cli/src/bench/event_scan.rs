//! Reading a subscriber's response body cheaply: de-chunk it (HTTP/1.1 chunked, what
//! hyper and axum send, or close-delimited) and find the bench's own events in it.
//!
//! Not an event-stream decoder: lines are found with `memchr`, and only `data: ~<nanos>`
//! lines count, their digits being the send time the publisher embedded (see
//! [`super::latency::event_data`]). Everything else the server sends is skipped unread.

use anyhow::bail;

/// Where the body de-chunker is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, this many bytes of its CRLF left.
    DataEnd(u8),
    /// Not chunked: everything until close is payload.
    Identity,
    /// The last chunk arrived.
    Done,
}

/// De-chunks a response body and scans it for bench events.
pub(super) struct BodyParser {
    body: Body,
    /// Raw bytes of a chunk-size line split across reads.
    stash: Vec<u8>,
    /// De-chunked bytes not yet ending in a newline.
    payload: Vec<u8>,
}

/// Events found in one batch of reads.
#[derive(Default)]
pub(super) struct Events {
    /// Send times (ns since the epoch) of the bench events.
    pub sent_ns: Vec<u64>,
}

impl BodyParser {
    pub(super) fn new(chunked: bool) -> BodyParser {
        BodyParser {
            body: if chunked {
                Body::ChunkSize
            } else {
                Body::Identity
            },
            stash: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Whether the body's last chunk has arrived.
    pub(super) fn done(&self) -> bool {
        self.body == Body::Done
    }

    /// Feed raw body bytes: de-chunk them, then scan complete lines.
    pub(super) fn feed(&mut self, input: &[u8], events: &mut Events) -> anyhow::Result<()> {
        if self.stash.is_empty() {
            self.dechunk(input)?;
        } else {
            let mut joined = std::mem::take(&mut self.stash);
            joined.extend_from_slice(input);
            self.dechunk(&joined)?;
        }
        self.scan(events);
        Ok(())
    }

    fn dechunk(&mut self, mut input: &[u8]) -> anyhow::Result<()> {
        while !input.is_empty() {
            match self.body {
                Body::Identity => {
                    self.payload.extend_from_slice(input);
                    return Ok(());
                }
                Body::ChunkSize => match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        input = &input[used..];
                        self.body = if size == 0 {
                            Body::Done
                        } else {
                            Body::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        self.stash.extend_from_slice(input);
                        return Ok(());
                    }
                    Err(_) => bail!("invalid chunk size line"),
                },
                Body::Data(left) => {
                    let take = (left.min(input.len() as u64)) as usize;
                    self.payload.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.body = if left == 0 {
                        Body::DataEnd(2)
                    } else {
                        Body::Data(left)
                    };
                }
                Body::DataEnd(left) => {
                    let take = (left as usize).min(input.len());
                    input = &input[take..];
                    let left = left - take as u8;
                    self.body = if left == 0 {
                        Body::ChunkSize
                    } else {
                        Body::DataEnd(left)
                    };
                }
                Body::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Find complete lines in the payload; record every `data: ~<nanos>` line.
    fn scan(&mut self, events: &mut Events) {
        const MARK: &[u8] = b"data: ~";
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.payload[start..]) {
            let line = &self.payload[start..start + nl];
            if line.starts_with(MARK) {
                let mut sent = 0u64;
                for &b in &line[MARK.len()..] {
                    if !b.is_ascii_digit() {
                        break;
                    }
                    sent = sent.wrapping_mul(10).wrapping_add((b - b'0') as u64);
                }
                events.sent_ns.push(sent);
            }
            start += nl + 1;
        }
        if start == self.payload.len() {
            self.payload.clear();
        } else if start > 0 {
            self.payload.drain(..start);
        }
        // An idle connection keeps no payload buffer around.
        if self.payload.is_empty() && self.payload.capacity() > 4096 {
            self.payload = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_events_split_anywhere_are_all_found() {
        let mut body = Vec::new();
        for piece in [
            "retry: 2000\n: welcome\n\ndata: ~",
            "123 xxx\n\nevent: a\ndata: ~456 yy\n\n",
            "",
        ] {
            body.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
        }
        // Every split point of the same stream yields the same two send times.
        for split in 0..body.len() {
            let mut p = BodyParser::new(true);
            let mut events = Events::default();
            p.feed(&body[..split], &mut events).unwrap();
            p.feed(&body[split..], &mut events).unwrap();
            assert_eq!(events.sent_ns, vec![123, 456], "split at {split}");
            assert_eq!(p.body, Body::Done, "split at {split}");
        }
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut p = BodyParser::new(true);
        assert!(p
            .feed(b"zz\r\ndata: ~1\n\n", &mut Events::default())
            .is_err());
    }

    #[test]
    fn identity_body_is_scanned_as_is() {
        let mut p = BodyParser::new(false);
        let mut events = Events::default();
        p.feed(b"data: ~7 x\n\ndata: not ours\n\ndata: ~8", &mut events)
            .unwrap();
        assert_eq!(events.sent_ns, vec![7]);
        p.feed(b"9\n\n", &mut events).unwrap();
        assert_eq!(events.sent_ns, vec![7, 89]);
    }
}
