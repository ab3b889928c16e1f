//! Answering with one of the pages compiled into the binary (the demo, the dashboard),
//! and the few plain-text answers around them.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

/// `html` for `GET` or `HEAD`, never cached (a new binary may bring a new page);
/// anything else is 405.
pub(super) fn html<B>(req: &Request<B>, html: &'static str) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let mut res = Response::new(Full::new(Bytes::from_static(html.as_bytes())));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The answer to a page request without the token it needs.
pub(super) fn unauthorized() -> Response<Full<Bytes>> {
    let why = "this page needs the server's token: open it as PATH?token=TOKEN";
    let mut res = plain(StatusCode::UNAUTHORIZED, why);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `text` as `status`, in plain text.
pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
