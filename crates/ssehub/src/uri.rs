//! What the library reads of a request's URI, for every module that serves one (the SSE
//! endpoint, the hub's HTTP API, static files): query parameters and path prefixes.

use http::Uri;

/// The decoded query parameters of `uri`, in order.
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A path prefix in one form: a leading slash, no trailing one (`/` stays `/`).
pub(crate) fn clean_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}
