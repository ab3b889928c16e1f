//! Cross-site request forgery on `POST /publish`: a page of another origin can make its
//! visitor's browser send the hub's cookie with a `text/plain` POST (`fetch` in
//! `no-cors` mode, or a form). Such a request needs no preflight, so CORS never gets to
//! refuse it: it only decides whether the page may read the answer, and by then the event
//! is published. So a publish that the cookie token authorizes must say where it comes
//! from, and that must be the hub itself or a page [`super::HubApi::allowed_origins`]
//! lists:
//!
//! - `Origin` (every browser sends it with a POST): this server's own (its authority is
//!   the request's `Host`, whatever the scheme, as the endpoint's own-origin rule says) or
//!   a listed one; `null` (a sandboxed page, a `file:` page, a redirect across origins)
//!   never, listed or not: any page can make itself `null`.
//! - Without `Origin`, the origin of `Referer`, by the same rule.
//! - Without either, `Sec-Fetch-Site: same-origin`.
//! - Else (a request that says nothing of where it comes from): refused, since the cookie
//!   proves nothing about who made it. A client that is no browser sends its token in
//!   `Authorization` instead.
//!
//! A token in `Authorization` (which another origin's page cannot set without a
//! preflight, that CORS then answers) or in the URL (which an attacker would have to
//! know) is not ambient: those requests are not asked.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::json;

use super::ApiBody;
use crate::log_limit::warn_limited;
use crate::respond::json;

/// The origins besides the hub's own whose pages may publish with the cookie.
#[derive(Debug, Clone, Default)]
pub(super) struct CookieOrigins {
    listed: Vec<String>,
}

impl CookieOrigins {
    pub(super) fn new<I, S>(origins: I) -> CookieOrigins
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CookieOrigins {
            listed: origins
                .into_iter()
                .map(|o| o.into().trim().trim_end_matches('/').to_owned())
                // No wildcard: with `*`, every page on the web could publish with its
                // visitors' cookies.
                .filter(|o| !o.is_empty() && o != "*")
                .collect(),
        }
    }

    /// The 403 for a publish the cookie authorizes, unless it comes from the hub's own
    /// pages or a listed one.
    pub(super) fn refuse<B>(&self, req: &Request<B>) -> Option<Response<ApiBody>> {
        let why = self.why_not(req)?;
        warn_limited!(reason = %why, "cookie-authorized publish refused");
        let message = format!(
            "a publish authorized by the token cookie must come from this hub's own pages \
             or an allowed origin, and this one comes from {why}; a client that is not a \
             web page sends its token as Authorization: Bearer"
        );
        let mut res = json(StatusCode::FORBIDDEN, &json!({ "error": message }));
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
        Some(res)
    }

    /// Where `req` comes from, if that is not the hub itself nor a listed origin.
    fn why_not<B>(&self, req: &Request<B>) -> Option<String> {
        let headers = req.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        if let Some(origin) = headers.get(header::ORIGIN) {
            let Ok(origin) = origin.to_str() else {
                return Some("an unreadable origin".into());
            };
            if origin.trim() == "null" {
                return Some(
                    "an opaque origin (Origin: null: a sandboxed or file: page, or a \
                     redirect)"
                        .into(),
                );
            }
            return (!self.admits(origin, host)).then(|| format!("the origin {origin:?}"));
        }
        if let Some(referer) = headers.get(header::REFERER) {
            let origin = referer.to_str().ok().and_then(origin_of);
            return match origin {
                Some(origin) if self.admits(origin, host) => None,
                Some(origin) => Some(format!("a page of the origin {origin:?} (its Referer)")),
                None => Some("an unreadable Referer, and no origin".into()),
            };
        }
        let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
        if site == Some(b"same-origin") {
            return None;
        }
        Some("nowhere it says (no Origin, no Referer, no Sec-Fetch-Site: same-origin)".into())
    }

    /// Whether `origin` (`scheme://authority`) is the server's own (`host`) or listed.
    fn admits(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim();
        if self.listed.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        origin
            .split_once("://")
            .zip(host)
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host))
    }
}

/// The origin (`scheme://authority`) of a URL, if it has one.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials in a Referer never name the origin; refuse rather than guess.
    if scheme.is_empty() || authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(&url[..scheme.len() + 3 + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(origins: &CookieOrigins, headers: &[(&str, &str)]) -> Option<String> {
        let mut req = Request::post("/publish").header("host", "hub.example:2015");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        origins.why_not(&req.body(()).unwrap())
    }

    #[test]
    fn own_and_listed_origins_pass_others_do_not() {
        let o = CookieOrigins::new(["https://app.example/", "null", "*"]);
        for passes in [
            vec![("origin", "http://hub.example:2015")],
            vec![("origin", "https://HUB.example:2015")],
            vec![("origin", "https://app.example")],
            vec![("referer", "http://hub.example:2015/page?x#y")],
            vec![("referer", "https://app.example")],
            vec![("sec-fetch-site", "same-origin")],
            // The origin decides when there is one.
            vec![
                ("origin", "https://app.example"),
                ("referer", "https://evil.example/"),
            ],
        ] {
            assert_eq!(verdict(&o, &passes), None, "{passes:?}");
        }
        for refused in [
            vec![],
            vec![("origin", "null")],
            vec![("origin", "https://evil.example")],
            vec![("origin", "http://hub.example")],
            vec![("origin", "http://hub.example:20150")],
            vec![("origin", "https://app.example.evil")],
            vec![("origin", "*")],
            vec![("referer", "https://evil.example/hub.example:2015")],
            vec![("referer", "http://hub.example:2015@evil.example/")],
            vec![("referer", "not a url")],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "none")],
            vec![
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "same-origin"),
            ],
        ] {
            assert!(verdict(&o, &refused).is_some(), "{refused:?}");
        }
    }

    #[test]
    fn origins_of_urls() {
        assert_eq!(origin_of("https://a.example/x"), Some("https://a.example"));
        assert_eq!(origin_of("http://a:1?q"), Some("http://a:1"));
        assert_eq!(origin_of("http://a:1"), Some("http://a:1"));
        assert_eq!(origin_of("http:///x"), None);
        assert_eq!(origin_of("a.example/x"), None);
    }
}
