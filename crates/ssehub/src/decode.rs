//! An incremental event-stream decoder: the client side of the wire format.
//!
//! It follows the HTML Living Standard's "event stream interpretation" step by step:
//! the stream is UTF-8 (invalid sequences become U+FFFD) with one leading BOM stripped;
//! lines end with CRLF, LF or a lone CR (a CRLF split across two reads is one line end);
//! a blank line dispatches; `:` starts a comment; a line with no colon is a field with an
//! empty value; one space after the colon is stripped; `retry` counts only when it is
//! all ASCII digits; an `id` containing NUL is ignored; an event cut off by the end of the
//! stream is never dispatched.
//!
//! ```
//! use ssehub::decode::{Decoder, Item};
//!
//! let mut d = Decoder::new();
//! d.feed(b"event: tick\ndata: a\r");
//! d.feed(b"\ndata: b\n\n");
//! match d.next_item() {
//!     Some(Item::Event(e)) => {
//!         assert_eq!(e.event, "tick");
//!         assert_eq!(e.data, "a\nb");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert!(d.next_item().is_none());
//! ```

use std::time::Duration;

use bytes::{Buf, BytesMut};

/// A dispatched event, as a browser's `EventSource` would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type (`message` when the stream named none).
    pub event: String,
    /// The data, lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched.
    pub last_event_id: String,
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(Event),
    /// A comment line (the text after the colon, one leading space stripped).
    Comment(String),
    /// A valid `retry` field: the client's new reconnection delay.
    Retry(Duration),
}

/// Incremental decoder. Feed it bytes as they arrive, then drain [`Decoder::next_item`].
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// The previous chunk ended in CR: a LF at the start of the next one is part of it.
    skip_lf: bool,
    /// Past the start of the stream: a BOM is stripped only before this is set.
    past_start: bool,
    event_type: String,
    data: String,
    last_event_id_buffer: String,
    last_event_id: String,
    started: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// A decoder for a reconnected stream: the last event id carries over, as it does in
    /// a browser's `EventSource`, until the new stream sets another.
    pub fn resume(last_event_id: impl Into<String>) -> Decoder {
        let id = last_event_id.into();
        Decoder {
            last_event_id_buffer: id.clone(),
            last_event_id: id,
            ..Decoder::new()
        }
    }

    /// Append bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The last event id the decoder has seen (what a client sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Whether any line has been read (the stream has started).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The next item that the bytes fed so far complete, if any.
    pub fn next_item(&mut self) -> Option<Item> {
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            let end = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let line = self.buf.split_to(end);
            let terminator = self.buf[0];
            self.buf.advance(1);
            if terminator == b'\r' {
                self.skip_lf = true;
            }
            self.started = true;
            let mut text: &[u8] = &line;
            if !self.past_start {
                self.past_start = true;
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            if let Some(item) = self.process_line(text) {
                return Some(item);
            }
        }
    }

    fn process_line(&mut self, line: &[u8]) -> Option<Item> {
        if line.is_empty() {
            return self.dispatch();
        }
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = comment.strip_prefix(b" ").unwrap_or(comment);
            return Some(Item::Comment(String::from_utf8_lossy(comment).into_owned()));
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event_type = value.into_owned(),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => self.last_event_id_buffer = value.into_owned(),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so the parse fails only on overflow: saturate.
                let ms = value.parse::<u64>().unwrap_or(u64::MAX);
                return Some(Item::Retry(Duration::from_millis(ms)));
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Item> {
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF appended after the last data line
        let event = match std::mem::take(&mut self.event_type) {
            e if e.is_empty() => "message".to_owned(),
            e => e,
        };
        Some(Item::Event(Event {
            event,
            data,
            last_event_id: self.last_event_id.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Item> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c);
            while let Some(i) = d.next_item() {
                out.push(i);
            }
        }
        out
    }

    fn ev(event: &str, data: &str, id: &str) -> Item {
        Item::Event(Event {
            event: event.into(),
            data: data.into(),
            last_event_id: id.into(),
        })
    }

    #[test]
    fn standard_example_streams() {
        // From the standard's examples.
        let got = events(&[b"data: YHOO\ndata: +2\ndata: 10\n\n"]);
        assert_eq!(got, vec![ev("message", "YHOO\n+2\n10", "")]);
        let got = events(&[b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"]);
        assert_eq!(
            got,
            vec![
                Item::Comment("test stream".into()),
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", ""),
            ]
        );
        let got = events(&[b"data\n\ndata\ndata\n\ndata:"]);
        assert_eq!(got, vec![ev("message", "", ""), ev("message", "\n", "")]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        let got = events(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(got, vec![ev("message", "a\nb", "")]);
    }

    #[test]
    fn bom_stripped_once_and_lone_cr_ends_lines() {
        let got = events(&[b"\xEF\xBB", b"\xBFdata: x\r\r\xEF\xBB\xBFdata: y\r\r"]);
        assert_eq!(
            got,
            vec![ev("message", "x", "")] // second BOM makes the field name unknown
        );
    }

    #[test]
    fn retry_digits_only_and_nul_id_ignored() {
        let got = events(&[b"retry: 12a\nretry: 250\nid: a\0b\ndata: x\n\n"]);
        assert_eq!(
            got,
            vec![
                Item::Retry(Duration::from_millis(250)),
                ev("message", "x", "")
            ]
        );
    }

    #[test]
    fn resumed_decoder_keeps_the_last_id_until_a_new_one() {
        let mut d = Decoder::resume("7");
        d.feed(b"data: a\n\nid: 8\ndata: b\n\n");
        assert_eq!(d.next_item(), Some(ev("message", "a", "7")));
        assert_eq!(d.next_item(), Some(ev("message", "b", "8")));
    }

    #[test]
    fn id_only_moves_cursor_and_unfinished_event_is_dropped() {
        let mut d = Decoder::new();
        d.feed(b"id: 5\n\nevent: e\ndata: cut");
        assert_eq!(d.next_item(), None);
        assert_eq!(d.last_event_id(), "5");
    }
}
