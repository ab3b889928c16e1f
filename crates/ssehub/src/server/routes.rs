//! Where a request goes: nowhere if it names a host the server does not answer to
//! (421); else an SSE endpoint, an exact route, the static files (`static_files.rs`),
//! the fallback service, or 404. And the few response helpers routes share.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use super::body::{box_body, text, Body};
use super::static_files::{Ready, StaticFiles};
use crate::endpoint::SseEndpoint;
use crate::hosts::{refusal_text, AllowedHosts};
use crate::log_limit::warn_limited;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<Response<Body>> + Send + Sync>;
pub(crate) type Fallback = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// Everything a connection's requests are dispatched to.
pub(crate) struct App {
    pub(crate) sse: Vec<SseEndpoint>,
    pub(crate) routes: HashMap<String, Handler>,
    pub(crate) statics: Option<Ready>,
    pub(crate) fallback: Option<Fallback>,
    /// Checked before anything else, here and on the bare-socket path (`transport`).
    pub(crate) hosts: AllowedHosts,
}

impl App {
    pub(crate) fn new(
        sse: Vec<SseEndpoint>,
        routes: HashMap<String, Handler>,
        statics: Option<StaticFiles>,
        fallback: Option<Fallback>,
        hosts: AllowedHosts,
    ) -> App {
        let statics = statics.map(StaticFiles::ready);
        App {
            sse,
            routes,
            statics,
            fallback,
            hosts,
        }
    }

    pub(crate) async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(host) = self.hosts.refused(&req) {
            warn_limited!(host = %host, path = %req.uri().path(), "request for another host refused");
            return text(StatusCode::MISDIRECTED_REQUEST, refusal_text(&host));
        }
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
            // The endpoint streams (`GET`, `HEAD`); other methods on its exact path go to
            // a route there, if any (a Mercure hub's publishes), and any method below it
            // to a route at `<prefix>/*` (a Mercure hub's subscriptions API).
            let streams = req.method() == Method::GET || req.method() == Method::HEAD;
            if let Some(handler) = self.routes.get(path).filter(|_| !streams) {
                return handler(req).await;
            }
            if !ep.matches(path) {
                if let Some(handler) = self.routes.get(&format!("{}/*", ep.prefix())) {
                    return handler(req).await;
                }
            }
            return ep.handle(req).await.map(box_body);
        }
        if let Some(handler) = self.routes.get(path) {
            return handler(req).await;
        }
        if let Some(files) = &self.statics {
            if let Some(rest) = files.strip(path) {
                let rest = rest.to_owned();
                return files.serve(req, rest).await;
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
