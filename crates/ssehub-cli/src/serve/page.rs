//! Answering with one of the pages compiled into the binary (the demo, the dashboard).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

/// `html` for `GET` or `HEAD`, never cached (a new binary may bring a new page);
/// anything else is 405.
pub fn html<B>(req: &Request<B>, html: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(html.as_bytes())));
    if req.method() != Method::GET && req.method() != Method::HEAD {
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        *res.body_mut() = Full::new(Bytes::from_static(b"method not allowed"));
        let h = res.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return res;
    }
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
