//! The token a request to the operator's routes carries. Both the routes
//! (`observe.rs`) and the dashboard (`dashboard.rs`) read it, so it lives apart from
//! either and the dashboard needs nothing from the module that mounts it.

use http::Request;

/// The token a request carries: `Authorization: Bearer TOKEN`, else `?token=TOKEN`
/// (what a browser can give a page it opens and an `EventSource`).
pub(super) fn token_of<B>(req: &Request<B>) -> Option<String> {
    bearer(req.headers()).or_else(|| {
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(super) fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_comes_before_the_query() {
        let req = |uri: &str, auth: Option<&str>| {
            let mut r = Request::get(uri);
            if let Some(a) = auth {
                r = r.header(http::header::AUTHORIZATION, a);
            }
            r.body(()).unwrap()
        };
        assert_eq!(
            token_of(&req("/d?token=a%20b", None)).as_deref(),
            Some("a b")
        );
        let both = req("/d?token=q", Some("Bearer h"));
        assert_eq!(token_of(&both).as_deref(), Some("h"));
        assert_eq!(token_of(&req("/d", Some("Basic x"))), None);
        assert_eq!(token_of(&req("/d", None)), None);
    }
}
