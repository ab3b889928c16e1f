//! An event-stream client for tests: hyper's HTTP/1 client, the library's
//! [`EventStream`] on top, and a copy of every byte the server sent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use hyper::body::Incoming;
use ssehub::decode::{Event, EventStream, EventStreamError, Item};

use crate::{send, within};

/// An open event stream.
pub struct SseClient {
    /// The response's status code.
    pub status: StatusCode,
    /// The response's headers.
    pub headers: HeaderMap,
    stream: EventStream<Recorded<Incoming>>,
    /// Every body byte read so far, as the server framed it (tests may clear it).
    pub raw: Vec<u8>,
}

impl SseClient {
    /// `GET path` with `Accept: text/event-stream` and `headers`, whatever the answer.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req = Request::get(path)
            .header(header::HOST, addr.to_string())
            .header(header::ACCEPT, "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        SseClient::from_response(send(addr, req).await)
    }

    /// `GET path`, checking that the answer is a 200 event stream.
    pub async fn open(addr: SocketAddr, path: &str) -> SseClient {
        let client = SseClient::connect(addr, path, &[]).await;
        assert_eq!(client.status, StatusCode::OK, "GET {path}");
        let headers = &client.headers;
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{headers:?}"
        );
        client
    }

    /// Read an answer already received (over HTTP/2, say) as an event stream.
    pub fn from_response(res: Response<Incoming>) -> SseClient {
        let (parts, body) = res.into_parts();
        SseClient {
            status: parts.status,
            headers: parts.headers,
            stream: EventStream::new(Recorded::new(body)),
            raw: Vec::new(),
        }
    }

    /// The next decoded item, or `None` when the stream ends or breaks (each bounded by
    /// [`crate::WAIT`]; a stream past the decoder's limits panics).
    pub async fn next_item(&mut self) -> Option<Item> {
        let next = within("next SSE item", self.stream.next()).await;
        self.raw.append(&mut self.stream.get_mut().seen);
        match next? {
            Ok(item) => Some(item),
            Err(EventStreamError::Decode(e)) => panic!("a stream within limits: {e}"),
            Err(EventStreamError::Body(_)) => None,
            Err(e) => panic!("a stream error this client does not know: {e}"),
        }
    }

    /// The client's cursor: the last event id the decoder has seen (an id-only frame
    /// moves it too), what a reconnecting `EventSource` would send.
    pub fn last_event_id(&self) -> String {
        self.stream.decoder().last_event_id().to_owned()
    }

    /// The next dispatched event, skipping comments and retry hints; panics if the
    /// stream ends first.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next_item().await {
                Some(Item::Event(e)) => return e,
                Some(_) => continue,
                None => panic!("stream ended while waiting for an event"),
            }
        }
    }

    /// The next event of type `event`, skipping others (bounded by [`crate::WAIT`]).
    pub async fn next_of(&mut self, event: &str) -> Event {
        within("an event of the right type", async {
            loop {
                let e = self.next_event().await;
                if e.event == event {
                    return e;
                }
            }
        })
        .await
    }

    /// Read until the stream ends; the items seen.
    pub async fn until_end(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(i) = self.next_item().await {
            items.push(i);
        }
        items
    }

    /// Read until the stream ends; the events seen.
    pub async fn events_until_end(&mut self) -> Vec<Event> {
        let items = self.until_end().await;
        items
            .into_iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}

/// A body that keeps a copy of the data it yields, for [`SseClient::raw`].
struct Recorded<B> {
    inner: B,
    seen: Vec<u8>,
}

impl<B> Recorded<B> {
    fn new(inner: B) -> Recorded<B> {
        Recorded {
            inner,
            seen: Vec::new(),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Recorded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.seen.extend_from_slice(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
