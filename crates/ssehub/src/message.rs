//! The SSE wire format: [`Message`], its validation, and its encoding to [`Bytes`].
//!
//! The HTML Living Standard ("Server-sent events", event stream interpretation) is the
//! authority. A stream is UTF-8 text made of lines; a blank line dispatches the event
//! built so far. The encoder here guarantees that no field of a [`Message`] can break
//! out of its line: `event` and `id` may not contain CR or LF (and `id` may not contain
//! NUL, which makes a conforming client ignore the field). Those are rejected with a
//! [`FrameError`] when the message is built, so a `Message` that exists is always
//! encodable. `data` may contain any line ending: LF, CRLF and a lone CR each end a line,
//! exactly as the client's parser splits them, and every line becomes its own `data:`
//! line.
//!
//! Encoding happens once per broadcast; every recipient shares the same [`Bytes`].

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// Why a field cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The `event` name contains a CR or LF, which would inject fields into the stream.
    #[error("event name must not contain CR or LF")]
    EventLineBreak,
    /// The `id` contains a CR or LF, which would inject fields into the stream.
    #[error("id must not contain CR or LF")]
    IdLineBreak,
    /// The `id` contains NUL; a conforming client ignores such an id, so it is refused.
    #[error("id must not contain NUL")]
    IdNul,
    /// A JSON payload could not be serialised.
    #[error("data could not be serialised to JSON: {0}")]
    Json(String),
}

impl FrameError {
    /// The name of the offending field (`"event"`, `"id"` or `"data"`), for error reports.
    pub fn field(&self) -> &'static str {
        match self {
            FrameError::EventLineBreak => "event",
            FrameError::IdLineBreak | FrameError::IdNul => "id",
            FrameError::Json(_) => "data",
        }
    }
}

/// One server-sent event: optional `id`, `event` name, `retry` hint and `data`.
///
/// A `Message` is always valid: its fields were checked when it was built.
///
/// ```
/// use ssehub::Message;
///
/// let m = Message::builder().event("tick").id("42").data("hello\nworld").build()?;
/// assert_eq!(
///     &m.encode()[..],
///     b"id: 42\nevent: tick\ndata: hello\ndata: world\n\n"
/// );
///
/// // Fields that would inject lines into the stream are refused.
/// assert!(Message::builder().event("a\nb").build().is_err());
/// # Ok::<(), ssehub::FrameError>(())
/// ```
///
/// ## Data encoding
///
/// Each line of `data` (split on LF, CRLF or a lone CR) becomes one `data:` line, and
/// the client joins them back with LF. A trailing line break therefore produces a final
/// empty `data:` line, and the client receives the data with a trailing `\n` (a CRLF or
/// CR line ending arrives as LF). An empty string is one empty `data:` line, so the
/// client still dispatches an event, with empty data. A message with no data at all
/// (only an `id` and/or `retry`) dispatches nothing: it moves the client's last event id
/// or reconnection delay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    id: Option<String>,
    event: Option<String>,
    retry: Option<Duration>,
    data: Option<String>,
}

impl Message {
    /// A message with this data and the default event type (`message`).
    ///
    /// Data cannot be invalid, so this never fails.
    pub fn new(data: impl Into<String>) -> Message {
        Message {
            data: Some(data.into()),
            ..Message::default()
        }
    }

    /// A message whose data is `value` serialised as JSON (one line).
    ///
    /// ```
    /// let m = ssehub::Message::json(&serde_json::json!({"n": 1}))?;
    /// assert_eq!(m.data(), Some(r#"{"n":1}"#));
    /// # Ok::<(), ssehub::FrameError>(())
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Message, FrameError> {
        let data = serde_json::to_string(value).map_err(|e| FrameError::Json(e.to_string()))?;
        Ok(Message::new(data))
    }

    /// Start building a message with several fields.
    pub fn builder() -> MessageBuilder {
        MessageBuilder::default()
    }

    /// The `id` field, if any. `Some("")` resets the client's last event id.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The `event` name, if any (absent means `message`).
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The `retry` hint, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The data, if any. `None` means the message dispatches no event.
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// Encode the message to its wire form, ending with the blank line that dispatches it.
    pub fn encode(&self) -> Bytes {
        self.encode_with_id(self.id.as_deref())
    }

    /// Encode the message with `id` in place of its own (the hub's history gives ids to
    /// messages that have none). `id` must be a valid id: the caller made it.
    pub(crate) fn encode_with_id(&self, id: Option<&str>) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len_hint() + id.map_or(0, str::len));
        if let Some(id) = id {
            put_field(&mut buf, "id", id);
        }
        if let Some(event) = self.event.as_deref().filter(|e| !e.is_empty()) {
            put_field(&mut buf, "event", event);
        }
        if let Some(retry) = self.retry {
            let mut digits = String::new();
            let _ = write!(digits, "{}", retry.as_millis());
            put_field(&mut buf, "retry", &digits);
        }
        if let Some(data) = &self.data {
            for line in Lines::new(data) {
                put_field(&mut buf, "data", line);
            }
        }
        buf.put_u8(b'\n');
        buf.freeze()
    }

    /// How many bytes [`Message::encode`] makes of it, counted without encoding (a
    /// history's own id adds its `id:` line on top).
    ///
    /// ```
    /// let m = ssehub::Message::builder().event("e").data("a\nb").build()?;
    /// assert_eq!(m.encoded_len(), m.encode().len());
    /// # Ok::<(), ssehub::FrameError>(())
    /// ```
    pub fn encoded_len(&self) -> usize {
        let field =
            |name: &str, value: &str| name.len() + 2 + value.len() + usize::from(!value.is_empty());
        let mut len = 1;
        if let Some(id) = &self.id {
            len += field("id", id);
        }
        if let Some(event) = self.event.as_deref().filter(|e| !e.is_empty()) {
            len += field("event", event);
        }
        if let Some(retry) = self.retry {
            len += field("retry", &retry.as_millis().to_string());
        }
        if let Some(data) = &self.data {
            len += Lines::new(data)
                .map(|line| field("data", line))
                .sum::<usize>();
        }
        len
    }

    fn encoded_len_hint(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 8);
        len(&self.id) + len(&self.event) + len(&self.data) + 24
    }
}

/// Builds a [`Message`], checking every field in [`MessageBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct MessageBuilder {
    msg: Message,
}

impl MessageBuilder {
    /// Set the `id`. An empty id resets the client's last event id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.msg.id = Some(id.into());
        self
    }

    /// Set the event name (the type the client listens for).
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.msg.event = Some(event.into());
        self
    }

    /// Set the reconnection delay hint; it is written in whole milliseconds.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.msg.retry = Some(retry);
        self
    }

    /// Set the data. Any line ending (LF, CRLF, CR) starts a new `data:` line.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.msg.data = Some(data.into());
        self
    }

    /// Set the data to `value` serialised as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self, FrameError> {
        self.msg.data =
            Some(serde_json::to_string(value).map_err(|e| FrameError::Json(e.to_string()))?);
        Ok(self)
    }

    /// Check the fields and return the message.
    pub fn build(self) -> Result<Message, FrameError> {
        if let Some(event) = &self.msg.event {
            if has_line_break(event) {
                return Err(FrameError::EventLineBreak);
            }
        }
        if let Some(id) = &self.msg.id {
            if has_line_break(id) {
                return Err(FrameError::IdLineBreak);
            }
            if id.contains('\0') {
                return Err(FrameError::IdNul);
            }
        }
        Ok(self.msg)
    }
}

/// Encode a comment. Each line of `text` becomes its own `:` line; the frame ends with a
/// blank line, which a client ignores (it dispatches nothing when no data is buffered).
/// (`: ping` for `"ping"`; applications send comments with `Connection::send_comment`.)
pub(crate) fn comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    for line in Lines::new(text) {
        if line.is_empty() {
            buf.put_slice(b":\n");
        } else {
            buf.put_slice(b": ");
            buf.put_slice(line.as_bytes());
            buf.put_u8(b'\n');
        }
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\n' || b == b'\r')
}

/// Write `name: value\n`. The space after the colon is always written, so a value that
/// starts with a space keeps it (the client strips exactly one). An empty value is
/// written as `name:` alone.
fn put_field(buf: &mut BytesMut, name: &str, value: &str) {
    buf.put_slice(name.as_bytes());
    buf.put_u8(b':');
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value.as_bytes());
    }
    buf.put_u8(b'\n');
}

/// Splits text into lines on LF, CRLF or a lone CR, as the event stream parser does.
/// Unlike [`str::lines`], a trailing line break yields a final empty line, and an empty
/// string yields one empty line.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(s: &'a str) -> Self {
        Lines { rest: Some(s) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match s.bytes().position(|b| b == b'\n' || b == b'\r') {
            None => {
                self.rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                self.rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: Message) -> String {
        String::from_utf8(m.encode().to_vec()).unwrap()
    }

    #[test]
    fn data_lines_split_on_every_line_ending() {
        let m = Message::new("a\nb\r\nc\rd");
        assert_eq!(enc(m), "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn trailing_newline_gives_an_empty_last_line() {
        assert_eq!(enc(Message::new("a\n")), "data: a\ndata:\n\n");
    }

    #[test]
    fn empty_data_still_dispatches() {
        assert_eq!(enc(Message::new("")), "data:\n\n");
    }

    #[test]
    fn leading_spaces_survive() {
        assert_eq!(enc(Message::new("  x")), "data:   x\n\n");
    }

    #[test]
    fn all_fields_in_order() {
        let m = Message::builder()
            .id("7")
            .event("chat")
            .retry(Duration::from_millis(2500))
            .data("hi")
            .build()
            .unwrap();
        assert_eq!(enc(m), "id: 7\nevent: chat\nretry: 2500\ndata: hi\n\n");
    }

    #[test]
    fn empty_id_resets_and_id_only_moves_cursor() {
        let m = Message::builder().id("").build().unwrap();
        assert_eq!(enc(m), "id:\n\n");
    }

    #[test]
    fn injection_is_refused() {
        let e = |s: &str| Message::builder().event(s).build().unwrap_err();
        assert_eq!(e("a\nb"), FrameError::EventLineBreak);
        assert_eq!(e("a\rb"), FrameError::EventLineBreak);
        let i = |s: &str| Message::builder().id(s).build().unwrap_err();
        assert_eq!(i("1\n\ndata: x"), FrameError::IdLineBreak);
        assert_eq!(i("1\0"), FrameError::IdNul);
        assert_eq!(i("1\0").field(), "id");
    }

    #[test]
    fn encoded_len_is_the_encoding_s() {
        let msgs = [
            Message::new(""),
            Message::new("a\r\nb\rc\n"),
            Message::builder()
                .id("")
                .event("e")
                .retry(Duration::from_millis(1500))
                .data("  x")
                .build()
                .unwrap(),
            Message::builder().id("7").build().unwrap(),
            Message::new("\n".repeat(1000)),
        ];
        for m in msgs {
            assert_eq!(m.encoded_len(), m.encode().len(), "{m:?}");
        }
    }

    #[test]
    fn comments_are_one_line_each() {
        assert_eq!(&comment("ping")[..], b": ping\n\n");
        assert_eq!(&comment("a\nb")[..], b": a\n: b\n\n");
        assert_eq!(&comment("")[..], b":\n\n");
    }
}
