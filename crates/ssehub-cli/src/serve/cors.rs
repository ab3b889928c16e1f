//! Cross-origin pages, from `[cors]`: tower-http's CORS layer around the publish API
//! (its preflights included), and the matching rule for the streams, which the SSE
//! endpoint applies itself (its bare-socket path is under no tower layer).
//!
//! `allowed_origins = ["*"]` is `SseOptions::allow_any_origin` for the streams and
//! `Access-Control-Allow-Origin: *` for the API, never with credentials; a list is
//! `SseOptions::allowed_origins` (other pages' streams are refused with 403) and an
//! echoed origin for the API. Empty: the hub's own pages only, and no CORS headers.
//!
//! The CORS layer only adds headers: a page of any origin can still make a browser POST
//! `text/plain` with the hub's cookie, without a preflight. So the listed origins (never
//! `*`) are also the pages besides the hub's own that may publish with the token cookie
//! (`HubApi::allowed_origins`, which refuses the others).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use ssehub::{ApiBody, HubApi, SseOptions};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsSection;

/// A route handler, as `Server::route` takes it.
pub(super) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<ApiBody>> + Send>>
        + Send
        + Sync,
>;

/// The streams' side of `[cors]`.
pub(super) fn sse_origins(options: SseOptions, c: &CorsSection) -> SseOptions {
    if c.allowed_origins.iter().any(|o| o == "*") {
        return options.allow_any_origin(true);
    }
    options
        .allowed_origins(c.allowed_origins.clone())
        .allow_credentials(c.allow_credentials)
}

/// The pages that may publish with the token cookie: the listed ones (`*` is none:
/// the library ignores it), besides the hub's own.
pub(super) fn cookie_origins(api: HubApi, c: &CorsSection) -> HubApi {
    api.allowed_origins(c.allowed_origins.iter().cloned())
}

/// The API's layer (`None`: no cross-origin page may use it).
pub(super) fn api_layer(c: &CorsSection) -> anyhow::Result<Option<CorsLayer>> {
    if c.allowed_origins.is_empty() {
        return Ok(None);
    }
    let origin = if c.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = c
            .allowed_origins
            .iter()
            .map(|o| HeaderValue::from_str(o.trim_end_matches('/')))
            .collect::<Result<Vec<_>, _>>()
            .context("cors.allowed_origins")?;
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(c.allow_credentials)
        .max_age(c.max_age);
    Ok(Some(layer))
}

/// `handler`, under `layer` if any.
pub(super) fn wrap<F, Fut>(layer: Option<CorsLayer>, handler: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ApiBody>> + Send + 'static,
{
    let Some(layer) = layer else {
        return Arc::new(move |req| Box::pin(handler(req)));
    };
    let svc = layer.layer(tower::service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    }));
    Arc::new(move |req| {
        let svc = svc.clone();
        Box::pin(async move {
            match svc.oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            }
        })
    })
}
