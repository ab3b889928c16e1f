//! Small response builders shared by the server's own answers and the HTTP API, for any
//! body that can be made from `Bytes`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::Serialize;

/// A response with a fixed body and content type (none for an empty body: a 204 says
/// nothing).
pub(crate) fn bytes<B: From<Bytes>>(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<B> {
    let typed = !body.is_empty();
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    if typed {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    res
}

/// A plain-text response.
pub(crate) fn text<B: From<Bytes>>(status: StatusCode, body: impl Into<String>) -> Response<B> {
    bytes(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.into()),
    )
}

/// A JSON response.
pub(crate) fn json<B: From<Bytes>, T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<B> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", Bytes::from(body)),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `405` naming the methods allowed, unless `req` uses one of them.
pub(crate) fn allow_only<B: From<Bytes>, R>(
    req: &Request<R>,
    allowed: &[Method],
) -> Option<Response<B>> {
    if allowed.contains(req.method()) {
        return None;
    }
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    Some(res)
}
