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
//! # Limits and cost
//!
//! The standard sets no limits, but a client must not trust its server: a line that never
//! ends, or `data:` lines that never reach a blank line, would otherwise grow the decoder
//! without bound. So the decoder refuses
//!
//! - a line longer than [`Decoder::max_line`] bytes (default [`DEFAULT_MAX_LINE`],
//!   1 MiB plus 64 bytes: room for a 1 MiB value after its field name), and
//! - an event whose data grows past [`Decoder::max_data`] bytes (default
//!   [`DEFAULT_MAX_DATA`], 1 MiB),
//!
//! with a [`DecodeError`] from [`Decoder::next_item`]. The error is final: the decoder
//! drops what it holds, ignores later input and returns the same error again, since the
//! rest of such a stream cannot be trusted; the caller should close the connection.
//! A caller that drains `next_item` after each [`Decoder::feed`] keeps the decoder's
//! memory ([`Decoder::buffered_len`]) under `max_line + max_data` plus one read.
//!
//! Decoding takes time linear in the input, however it is split into reads: the decoder
//! remembers how far it has searched the unfinished line for its end, so each byte is
//! looked at a bounded number of times even when a long line arrives a byte at a time.
//!
//! ```
//! use ssehub::decode::{Decoder, Item};
//!
//! let mut d = Decoder::new();
//! d.feed(b"event: tick\ndata: a\r");
//! d.feed(b"\ndata: b\n\n");
//! match d.next_item() {
//!     Ok(Some(Item::Event(e))) => {
//!         assert_eq!(e.event, "tick");
//!         assert_eq!(e.data, "a\nb");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(d.next_item(), Ok(None));
//! ```
//!
//! Hostile input meets a typed error:
//!
//! ```
//! use ssehub::decode::{DecodeError, Decoder};
//!
//! let mut d = Decoder::new().max_line(16);
//! d.feed(b"data: this line is far too long for the limit");
//! assert_eq!(d.next_item(), Err(DecodeError::LineTooLong { limit: 16 }));
//! assert_eq!(d.buffered_len(), 0);
//! ```
//!
//! # Reading a response body
//!
//! [`EventStream`] drives a decoder from an HTTP response body (anything that implements
//! [`http_body::Body`], such as hyper's `Incoming`): it feeds each data frame in and
//! yields what the decoder completes, so a client does not write the read-feed-drain loop
//! itself.

use std::time::Duration;

use bytes::{Buf, BytesMut};

/// The default [`Decoder::max_data`]: 1 MiB of data per event.
pub const DEFAULT_MAX_DATA: usize = 1024 * 1024;

/// The default [`Decoder::max_line`]: a [`DEFAULT_MAX_DATA`] value plus 64 bytes for its
/// field name, so an event carrying the most data allowed fits on one `data:` line.
pub const DEFAULT_MAX_LINE: usize = DEFAULT_MAX_DATA + 64;

/// Why the decoder gave up on a stream. Both name the limit that was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A line (not counting its line end) is longer than [`Decoder::max_line`], or has
    /// not ended within that many bytes.
    #[error("an event-stream line is longer than the decoder's max_line limit of {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The `data` lines of one event add up to more than [`Decoder::max_data`] bytes.
    #[error("an event's data is larger than the decoder's max_data limit of {limit} bytes")]
    DataTooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// A dispatched event, as a browser's `EventSource` would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum Item {
    /// A dispatched event.
    Event(Event),
    /// A comment line (the text after the colon, one leading space stripped).
    Comment(String),
    /// A valid `retry` field: the client's new reconnection delay.
    Retry(Duration),
}

/// Incremental decoder. Feed it bytes as they arrive, then drain [`Decoder::next_item`]
/// until it returns `Ok(None)`.
///
/// Invariants: `buf` starts at the start of an unfinished line (or at the LF of a CRLF
/// whose CR ended the previous line, when `skip_lf` is set); `buf[..scanned]` holds no
/// CR or LF, so the search for a line end resumes at `scanned`; once `failed` is set,
/// `buf` and `data` are empty and stay so.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// How many bytes at the start of `buf` are known to hold no line end.
    scanned: usize,
    /// The previous chunk ended in CR: a LF at the start of the next one is part of it.
    skip_lf: bool,
    /// Past the start of the stream: a BOM is stripped only before this is set.
    past_start: bool,
    event_type: String,
    data: String,
    last_event_id_buffer: String,
    last_event_id: String,
    max_line: usize,
    max_data: usize,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            past_start: false,
            event_type: String::new(),
            data: String::new(),
            last_event_id_buffer: String::new(),
            last_event_id: String::new(),
            max_line: DEFAULT_MAX_LINE,
            max_data: DEFAULT_MAX_DATA,
            failed: None,
        }
    }
}

impl Decoder {
    /// A decoder at the start of a stream, with the default limits.
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

    /// The longest line accepted, in bytes, not counting its line end (default
    /// [`DEFAULT_MAX_LINE`]). A longer line, or one that has not ended within this many
    /// bytes, makes [`Decoder::next_item`] return [`DecodeError::LineTooLong`].
    ///
    /// ```
    /// use ssehub::decode::{Decoder, Item};
    ///
    /// let mut d = Decoder::new().max_line(8 << 20).max_data(8 << 20);
    /// d.feed(format!("data: {}\n\n", "x".repeat(2 << 20)).as_bytes());
    /// assert!(matches!(d.next_item(), Ok(Some(Item::Event(e))) if e.data.len() == 2 << 20));
    /// ```
    pub fn max_line(mut self, bytes: usize) -> Decoder {
        self.max_line = bytes;
        self
    }

    /// The most data one event may gather, in bytes: its `data` values joined with LF, as
    /// it would be dispatched (default [`DEFAULT_MAX_DATA`]). More makes
    /// [`Decoder::next_item`] return [`DecodeError::DataTooLarge`].
    ///
    /// ```
    /// use ssehub::decode::{DecodeError, Decoder};
    ///
    /// let mut d = Decoder::new().max_data(5);
    /// d.feed(b"data: abc\ndata: def\n\n");
    /// assert_eq!(d.next_item(), Err(DecodeError::DataTooLarge { limit: 5 }));
    /// ```
    pub fn max_data(mut self, bytes: usize) -> Decoder {
        self.max_data = bytes;
        self
    }

    /// Append bytes read from the stream. After an error they are dropped.
    ///
    /// Cheap: the search for a line end resumes where the last one stopped. When the
    /// unfinished line has already outgrown [`Decoder::max_line`], the decoder fails
    /// here, without keeping the bytes, even if the caller does not drain
    /// [`Decoder::next_item`] in between.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.max_line && self.find_line_end().is_none() {
            self.fail(DecodeError::LineTooLong {
                limit: self.max_line,
            });
        }
    }

    /// The last event id the decoder has seen (what a client sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The bytes the decoder holds: input not yet read as lines, and the data of the
    /// event being built. Bounded as the [module docs](self) say.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// The next item that the bytes fed so far complete: `Ok(None)` when they complete
    /// none (feed more), an error when the stream crossed a limit (then always that error).
    pub fn next_item(&mut self) -> Result<Option<Item>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            let Some(end) = self.find_line_end() else {
                if self.buf.len() > self.max_line {
                    return Err(self.fail(DecodeError::LineTooLong {
                        limit: self.max_line,
                    }));
                }
                return Ok(None);
            };
            if end > self.max_line {
                return Err(self.fail(DecodeError::LineTooLong {
                    limit: self.max_line,
                }));
            }
            let line = self.buf.split_to(end);
            let terminator = self.buf[0];
            self.buf.advance(1);
            self.scanned = 0;
            if terminator == b'\r' {
                self.skip_lf = true;
            }
            let mut text: &[u8] = &line;
            if !self.past_start {
                self.past_start = true;
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            match self.process_line(text) {
                Ok(None) => {}
                Ok(Some(item)) => return Ok(Some(item)),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Where the first line end in `buf` is, searching only bytes not searched before.
    fn find_line_end(&mut self) -> Option<usize> {
        let from = self.scanned;
        match self.buf[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            Some(i) => {
                self.scanned = from + i;
                Some(from + i)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Give up on the stream: free what it holds and remember why.
    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e);
        self.buf = BytesMut::new();
        self.scanned = 0;
        self.data = String::new();
        self.event_type = String::new();
        e
    }

    fn process_line(&mut self, line: &[u8]) -> Result<Option<Item>, DecodeError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = comment.strip_prefix(b" ").unwrap_or(comment);
            return Ok(Some(Item::Comment(
                String::from_utf8_lossy(comment).into_owned(),
            )));
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
                // `data` holds a LF after each line; the dispatched data drops the last.
                if self.data.len() + value.len() > self.max_data {
                    return Err(DecodeError::DataTooLarge {
                        limit: self.max_data,
                    });
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => self.last_event_id_buffer = value.into_owned(),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so the parse fails only on overflow: saturate.
                let ms = value.parse::<u64>().unwrap_or(u64::MAX);
                return Ok(Some(Item::Retry(Duration::from_millis(ms))));
            }
            _ => {}
        }
        Ok(None)
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

mod stream;
pub use stream::{EventStream, EventStreamError};

#[cfg(test)]
mod tests;
