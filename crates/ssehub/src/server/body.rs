//! The response body every route of the server answers with, whatever made it (the
//! endpoint, a route, static files, hyper's errors): one boxed type.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::respond;

/// Boxed error type of response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body every route of the server answers with.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Box any body into the server's [`Body`].
pub(crate) fn box_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond::text::<Full<Bytes>>(status, body).map(box_body)
}
