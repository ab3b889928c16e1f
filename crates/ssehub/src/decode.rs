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

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http_body::Body;

/// The default [`Decoder::max_data`]: 1 MiB of data per event.
pub const DEFAULT_MAX_DATA: usize = 1024 * 1024;

/// The default [`Decoder::max_line`]: a [`DEFAULT_MAX_DATA`] value plus 64 bytes for its
/// field name, so an event carrying the most data allowed fits on one `data:` line.
pub const DEFAULT_MAX_LINE: usize = DEFAULT_MAX_DATA + 64;

/// Why the decoder gave up on a stream. Both name the limit that was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
    started: bool,
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
            started: false,
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

    /// Whether any line has been read (the stream has started).
    pub fn started(&self) -> bool {
        self.started
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
            self.started = true;
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

/// Why an [`EventStream`] stopped before the body's end. Either way the stream is over:
/// [`EventStream::next`] returns `None` afterwards.
#[derive(Debug, thiserror::Error)]
pub enum EventStreamError<E> {
    /// The stream crossed one of the decoder's limits; the connection should be closed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Reading the body failed (the connection broke, the transport gave up).
    #[error("reading the event stream's body failed")]
    Body(#[source] E),
}

/// A [`Decoder`] reading an HTTP response body: the items of an event stream, one
/// [`next`](EventStream::next) at a time.
///
/// The body must be [`Unpin`] (hyper's `Incoming` is; pin any other with `Box::pin`).
/// Frames that carry no data (trailers) are skipped. `next` is cancel-safe: a frame
/// already read is in the decoder, so dropping the future (in a `select!`, say) loses
/// nothing.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use ssehub::decode::{EventStream, Item};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // In a client, the body is the response's: `EventStream::new(res.into_body())`.
/// let body = Full::new(Bytes::from_static(b": hi\n\nevent: tick\ndata: 1\n\n"));
/// let mut stream = EventStream::new(body);
/// assert_eq!(stream.next().await.unwrap().unwrap(), Item::Comment("hi".into()));
/// let tick = stream.next_event().await.unwrap().unwrap();
/// assert_eq!((tick.event.as_str(), tick.data.as_str()), ("tick", "1"));
/// assert!(stream.next().await.is_none());
/// # });
/// ```
#[derive(Debug)]
pub struct EventStream<B> {
    body: B,
    decoder: Decoder,
    /// The body ended or an error was returned: nothing more comes.
    done: bool,
}

impl<B> EventStream<B> {
    /// Read `body` as a new stream, with the default limits.
    pub fn new(body: B) -> EventStream<B> {
        EventStream::with_decoder(body, Decoder::new())
    }

    /// Read `body` with `decoder`: other limits, or one made by [`Decoder::resume`] for
    /// a reconnection.
    pub fn with_decoder(body: B, decoder: Decoder) -> EventStream<B> {
        EventStream {
            body,
            decoder,
            done: false,
        }
    }

    /// The decoder, for what it has seen so far ([`Decoder::last_event_id`]).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The body being read (to look at a wrapper's state, for instance).
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.body
    }
}

impl<B: Body + Unpin> EventStream<B> {
    /// The next item: `None` once the body has ended (an unfinished event at its end is
    /// dropped, as the standard says) or after an error was returned.
    pub async fn next(&mut self) -> Option<Result<Item, EventStreamError<B::Error>>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next dispatched event, skipping comments and `retry` hints.
    pub async fn next_event(&mut self) -> Option<Result<Event, EventStreamError<B::Error>>> {
        loop {
            match self.next().await? {
                Ok(Item::Event(e)) => return Some(Ok(e)),
                Ok(Item::Comment(_) | Item::Retry(_)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn poll_item(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Item, EventStreamError<B::Error>>>> {
        while !self.done {
            match self.decoder.next_item() {
                Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        // A `Buf` may hold its bytes in several pieces.
                        while data.has_remaining() {
                            let piece = data.chunk();
                            let n = piece.len();
                            self.decoder.feed(piece);
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(EventStreamError::Body(e))));
                }
                None => self.done = true,
            }
        }
        Poll::Ready(None)
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
            while let Some(i) = d.next_item().unwrap() {
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
        assert_eq!(d.next_item(), Ok(Some(ev("message", "a", "7"))));
        assert_eq!(d.next_item(), Ok(Some(ev("message", "b", "8"))));
    }

    #[test]
    fn id_only_moves_cursor_and_unfinished_event_is_dropped() {
        let mut d = Decoder::new();
        d.feed(b"id: 5\n\nevent: e\ndata: cut");
        assert_eq!(d.next_item(), Ok(None));
        assert_eq!(d.last_event_id(), "5");
    }

    /// Feed `chunks`, draining after each; the items, then the error if one came.
    fn decode_with(mut d: Decoder, chunks: &[&[u8]]) -> (Vec<Item>, Option<DecodeError>) {
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c);
            loop {
                match d.next_item() {
                    Ok(Some(i)) => out.push(i),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn a_line_of_exactly_max_line_passes_one_more_byte_fails() {
        use DecodeError::LineTooLong;
        let long = LineTooLong { limit: 9 };
        // "data: abc" is 9 bytes; its line end does not count, whichever it is.
        for end in ["\n", "\r", "\r\n"] {
            let input = format!("data: abc{end}{end}");
            let (items, err) = decode_with(Decoder::new().max_line(9), &[input.as_bytes()]);
            assert_eq!(
                (items, err),
                (vec![ev("message", "abc", "")], None),
                "{end:?}"
            );
            let input = format!("data: abcd{end}{end}");
            let (items, err) = decode_with(Decoder::new().max_line(9), &[input.as_bytes()]);
            assert_eq!((items, err), (vec![], Some(long)), "{end:?}");
        }
        // The same, a byte at a time: the unfinished line fails once it passes the limit.
        let bytes = b"data: abc\r\ndata: abcd";
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let (items, err) = decode_with(Decoder::new().max_line(9), &chunks);
        assert_eq!((items, err), (vec![], Some(long)));
        let (_, err) = decode_with(Decoder::new().max_line(9), &chunks[..chunks.len() - 1]);
        assert_eq!(
            err, None,
            "ten bytes of an unfinished line is not yet too long"
        );
    }

    #[test]
    fn items_before_the_long_line_come_first_and_the_error_is_final() {
        let mut d = Decoder::new().max_line(4);
        d.feed(b":a\n:b\n:toolong\n:c\n\n");
        assert_eq!(d.next_item(), Ok(Some(Item::Comment("a".into()))));
        assert_eq!(d.next_item(), Ok(Some(Item::Comment("b".into()))));
        let err = DecodeError::LineTooLong { limit: 4 };
        assert_eq!(d.next_item(), Err(err));
        assert_eq!(d.buffered_len(), 0);
        d.feed(b":ok\n\n");
        assert_eq!(d.buffered_len(), 0, "input after the error is dropped");
        assert_eq!(d.next_item(), Err(err));
        assert!(
            err.to_string().contains("max_line limit of 4 bytes"),
            "{err}"
        );
    }

    #[test]
    fn feed_alone_refuses_an_endless_line() {
        // A caller that feeds without draining still cannot make the decoder grow.
        let mut d = Decoder::new().max_line(100);
        for _ in 0..1000 {
            d.feed(&[b'x'; 64]);
            assert!(d.buffered_len() <= 100 + 64);
        }
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.next_item(), Err(DecodeError::LineTooLong { limit: 100 }));
    }

    #[test]
    fn event_data_is_capped_as_dispatched() {
        use DecodeError::DataTooLarge;
        // "ab\ncd\nef" is 8 bytes: the LFs between lines count, the last one does not.
        let input = b"data: ab\ndata: cd\ndata: ef\n\n";
        let (items, err) = decode_with(Decoder::new().max_data(8), &[input]);
        assert_eq!((items, err), (vec![ev("message", "ab\ncd\nef", "")], None));
        let (items, err) = decode_with(Decoder::new().max_data(7), &[input]);
        assert_eq!((items, err), (vec![], Some(DataTooLarge { limit: 7 })));
        // The cap is per event: dispatching starts the count again.
        let many: Vec<u8> = b"data: abcdefgh\n\n".repeat(100);
        let (items, err) = decode_with(Decoder::new().max_data(8), &[&many]);
        assert_eq!((items.len(), err), (100, None));
        // Endless data lines without a blank line are refused, not gathered.
        let mut d = Decoder::new().max_data(1000);
        let mut err = None;
        for _ in 0..1000 {
            d.feed(b"data: 0123456789\n");
            if let Err(e) = d.next_item() {
                err = Some(e);
                break;
            }
            assert!(d.buffered_len() <= 1000 + 1);
        }
        assert_eq!(err, Some(DataTooLarge { limit: 1000 }));
    }

    #[test]
    fn default_limits_take_a_full_mebibyte_of_data_on_one_line() {
        let data = "x".repeat(DEFAULT_MAX_DATA);
        let (items, err) = decode_with(Decoder::new(), &[format!("data: {data}\n\n").as_bytes()]);
        assert_eq!(err, None);
        assert!(matches!(&items[..], [Item::Event(e)] if e.data == data));
        let (_, err) = decode_with(Decoder::new(), &[format!("data: {data}x\n\n").as_bytes()]);
        assert_eq!(
            err,
            Some(DecodeError::DataTooLarge {
                limit: DEFAULT_MAX_DATA
            })
        );
    }

    mod event_stream {
        use super::*;
        use bytes::Bytes;
        use futures_util::stream;
        use http_body::Frame;
        use http_body_util::StreamBody;

        type Piece<D> = Result<Frame<D>, std::io::Error>;

        fn body<D>(
            pieces: Vec<Piece<D>>,
        ) -> StreamBody<stream::Iter<std::vec::IntoIter<Piece<D>>>> {
            StreamBody::new(stream::iter(pieces))
        }

        fn data(bytes: &[u8]) -> Piece<Bytes> {
            Ok(Frame::data(Bytes::copy_from_slice(bytes)))
        }

        async fn drain<B: Body + Unpin>(s: &mut EventStream<B>) -> Vec<Item>
        where
            B::Error: std::fmt::Debug,
        {
            let mut out = Vec::new();
            while let Some(item) = s.next().await {
                out.push(item.expect("a stream without errors"));
            }
            out
        }

        #[tokio::test]
        async fn frames_split_anywhere_give_the_items_of_the_whole() {
            let input: &[u8] =
                b"retry: 5\n: c\n\nid: 1\nevent: a\ndata: x\r\n\r\ndata: y\n\ndata: cut";
            let whole = events(&[input]);
            assert_eq!(whole.len(), 4);
            for split in 0..=input.len() {
                let trailers = Ok(Frame::trailers(http::HeaderMap::new()));
                let pieces = vec![data(&input[..split]), trailers, data(&input[split..])];
                let mut s = EventStream::new(body(pieces));
                assert_eq!(drain(&mut s).await, whole, "split at {split}");
                assert_eq!(s.decoder().last_event_id(), "1");
            }
        }

        #[tokio::test]
        async fn data_in_several_pieces_is_fed_whole() {
            let chained = Bytes::from_static(b"data: a").chain(Bytes::from_static(b"b\n\n"));
            let mut s = EventStream::new(body(vec![Ok(Frame::data(chained))]));
            let e = s.next_event().await.unwrap().unwrap();
            assert_eq!(e.data, "ab");
        }

        #[tokio::test]
        async fn a_body_error_comes_after_the_items_before_it_then_nothing() {
            let broken = Err(std::io::Error::other("reset"));
            let mut s = EventStream::new(body(vec![data(b"data: a\n\n: late"), broken]));
            assert_eq!(s.next().await.unwrap().unwrap(), ev("message", "a", ""));
            match s.next().await {
                Some(Err(EventStreamError::Body(e))) => assert_eq!(e.to_string(), "reset"),
                other => panic!("{other:?}"),
            }
            assert!(s.next().await.is_none());
        }

        #[tokio::test]
        async fn a_crossed_limit_is_the_decoders_error_then_nothing() {
            let pieces = vec![data(b":ok\n:far too long\n"), data(b"data: never\n\n")];
            let mut s = EventStream::with_decoder(body(pieces), Decoder::new().max_line(4));
            assert_eq!(s.next().await.unwrap().unwrap(), Item::Comment("ok".into()));
            let err = s.next().await.unwrap().unwrap_err();
            assert!(matches!(
                err,
                EventStreamError::Decode(DecodeError::LineTooLong { limit: 4 })
            ));
            assert!(
                err.to_string().contains("max_line limit of 4 bytes"),
                "{err}"
            );
            assert!(s.next().await.is_none());
        }
    }
}
