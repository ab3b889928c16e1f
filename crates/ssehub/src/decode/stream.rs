//! Events from an HTTP response body: the [`Decoder`] fed with the body's frames.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::Body;

use super::{DecodeError, Decoder, Event, Item};

/// Why an [`EventStream`] stopped before the body's end. Either way the stream is over:
/// [`EventStream::next`] returns `None` afterwards.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
