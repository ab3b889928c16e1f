//! Where a request goes: an SSE endpoint, an exact route, the static files, the
//! fallback service, or 404. And the few response helpers routes share.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::endpoint::{clean_prefix, SseEndpoint};
use crate::respond;

/// Boxed error type of response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body every route of the server answers with.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<Response<Body>> + Send + Sync>;
pub(crate) type Fallback = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// Static files served from a folder.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    path: PathBuf,
    prefix: String,
    max_age: Option<Duration>,
}

impl StaticFiles {
    /// Serve the folder `path` at `/`, with `index.html` for directories and no caching.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StaticFiles {
            path: path.into(),
            prefix: "/".into(),
            max_age: None,
        }
    }

    /// The URL prefix to serve the folder at (such as `/assets`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = clean_prefix(&prefix.into());
        self
    }

    /// Send `Cache-Control: public, max-age=…` with every file.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The path below the prefix, if `path` is under it.
    fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.prefix == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(&self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

/// Everything a connection's requests are dispatched to.
pub(crate) struct App {
    pub(crate) sse: Vec<SseEndpoint>,
    pub(crate) routes: HashMap<String, Handler>,
    pub(crate) statics: Option<(StaticFiles, ServeDir)>,
    pub(crate) fallback: Option<Fallback>,
}

impl App {
    pub(crate) fn new(
        sse: Vec<SseEndpoint>,
        routes: HashMap<String, Handler>,
        statics: Option<StaticFiles>,
        fallback: Option<Fallback>,
    ) -> App {
        let statics = statics.map(|s| {
            let dir = ServeDir::new(&s.path).append_index_html_on_directories(true);
            (s, dir)
        });
        App {
            sse,
            routes,
            statics,
            fallback,
        }
    }

    pub(crate) async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let path = path.as_str();
        // The endpoint that serves exactly this path first (as the bare-socket path
        // picks it), then one whose prefix the path is below (it answers 404).
        let ep = self.sse.iter().find(|e| e.matches(path)).or_else(|| {
            self.sse.iter().find(|e| {
                path.strip_prefix(e.prefix())
                    .is_some_and(|r| r.starts_with('/'))
            })
        });
        if let Some(ep) = ep {
            return ep.handle(req).await.map(box_body);
        }
        if let Some(handler) = self.routes.get(path) {
            return handler(req).await;
        }
        if let Some((files, dir)) = &self.statics {
            if let Some(rest) = files.strip(path) {
                let rest = rest.to_owned();
                return serve_static(files, dir, req, rest).await;
            }
        }
        if let Some(fallback) = &self.fallback {
            return match fallback.clone().oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
        }
        text(StatusCode::NOT_FOUND, "not found")
    }
}

async fn serve_static(
    files: &StaticFiles,
    dir: &ServeDir,
    req: Request<Incoming>,
    rest: String,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let rest = if rest.is_empty() { "/".into() } else { rest };
    let pq = match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    match pq.parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, "bad path"),
    }
    let req = Request::from_parts(parts, body);
    let mut res = match dir.clone().oneshot(req).await {
        Ok(res) => res.map(box_body),
        Err(never) => match never {},
    };
    if let Some(age) = files.max_age {
        if res.status().is_success() {
            let v = format!("public, max-age={}", age.as_secs());
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
    }
    res
}

/// Box any body into the server's [`Body`].
pub(crate) fn box_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond::text::<Full<Bytes>>(status, body).map(box_body)
}
