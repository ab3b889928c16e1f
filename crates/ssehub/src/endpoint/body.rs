//! [`SseBody`]: the endpoint's response body, for hyper (or any server) to poll. A live
//! stream reads its connection's outbox; a fixed answer (errors, `HEAD`, back-off) is
//! one frame.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::connection::Connection;

/// The endpoint's response body: a live stream fed by a connection's outbox, or a fixed
/// answer (errors, `HEAD`, back-off).
pub struct SseBody {
    kind: BodyKind,
}

enum BodyKind {
    Stream(Connection),
    Full(Option<Bytes>),
}

/// A body of these bytes, all at once (the answers that are not streams).
impl From<Bytes> for SseBody {
    fn from(bytes: Bytes) -> SseBody {
        SseBody::full(bytes)
    }
}

impl SseBody {
    pub(crate) fn stream(conn: Connection) -> Self {
        SseBody {
            kind: BodyKind::Stream(conn),
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        SseBody {
            kind: BodyKind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// The connection behind a streaming body.
    pub(crate) fn connection(&self) -> Option<&Connection> {
        match &self.kind {
            BodyKind::Stream(c) => Some(c),
            BodyKind::Full(_) => None,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Stream(conn) => match conn.poll_outbox(cx.waker()) {
                Ok(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => Poll::Ready(None),
                Err(()) => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, BodyKind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Stream(_) => SizeHint::default(),
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // The transport dropped the response: the client is gone (or the server stops).
        if let BodyKind::Stream(conn) = &self.kind {
            conn.transport_closed();
        }
    }
}

impl fmt::Debug for SseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Stream(c) => f.debug_tuple("SseBody::Stream").field(c).finish(),
            BodyKind::Full(b) => f.debug_tuple("SseBody::Full").field(b).finish(),
        }
    }
}
