//! Discovery for Mercure 1.0 clients: the hub's OAuth 2.0 protected-resource metadata
//! (RFC 9728) at `/.well-known/oauth-protected-resource/.well-known/mercure`, which
//! tells a client the `aud` its tokens must carry (`resource`), who issues them, and how
//! to present them; 1.0's `401` challenges point to it (`resource_metadata`).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::json;

use super::Shared;
use crate::endpoint::SseBody;

/// The metadata document, `application/json`.
pub(crate) fn metadata(shared: &Shared) -> Response<SseBody> {
    let config = &shared.config;
    let resource = config
        .resource
        .clone()
        .unwrap_or_else(|| config.base_url().to_string());
    let mut doc = json!({
        "resource": resource,
        // The query parameter is 0.x's only: 1.0 keeps tokens out of URLs.
        "bearer_methods_supported": ["header"],
        "mercure_cookie": true,
        "mercure_version": 8,
    });
    let issuers: Vec<&str> = config
        .issuers
        .iter()
        .map(String::as_str)
        .chain(config.issuer_keys.iter().map(|(n, _)| n.as_str()))
        .collect();
    if !issuers.is_empty() {
        doc["authorization_servers"] = json!(issuers);
    }
    let mut res = crate::respond::text(StatusCode::OK, format!("{doc}\n"));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
