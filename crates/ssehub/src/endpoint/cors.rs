//! Which web pages may open streams: the `Origin` a browser sends with a cross-origin
//! request, checked against [`crate::SseOptions::allowed_origins`].
//!
//! A request without `Origin` (a non-browser client, a same-origin `GET`) and one whose
//! `Origin` names this server's own host (its `Host` header, whatever the scheme, so that
//! a TLS proxy in front changes nothing) are the server's own; any other origin must be
//! in the list, compared ASCII case-insensitively (`null`, sent by sandboxed pages, only if
//! listed).

use http::header::{self, HeaderValue};
use http::Request;

/// The allowed origins of an endpoint (the check is on when the endpoint has them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    listed: Vec<String>,
}

/// What an `Origin` header says of a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OriginVerdict {
    /// No `Origin`, or this server's own: nothing to add.
    Own,
    /// A listed origin: echo it in `Access-Control-Allow-Origin`.
    Listed(HeaderValue),
    /// Any other: 403.
    Refused,
}

impl Origins {
    pub(crate) fn new<I, S>(origins: I) -> Origins
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Origins {
            listed: origins
                .into_iter()
                .map(|o| o.into().trim().trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    pub(crate) fn verdict<B>(&self, req: &Request<B>) -> OriginVerdict {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return OriginVerdict::Own;
        };
        let Ok(text) = origin.to_str() else {
            return OriginVerdict::Refused;
        };
        if self.listed.iter().any(|o| o.eq_ignore_ascii_case(text)) {
            return OriginVerdict::Listed(origin.clone());
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let own = text
            .split_once("://")
            .zip(host)
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host));
        if own {
            OriginVerdict::Own
        } else {
            OriginVerdict::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(origins: &Origins, origin: Option<&str>, host: &str) -> OriginVerdict {
        let mut req = Request::builder().uri("/sse").header("host", host);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        origins.verdict(&req.body(()).unwrap())
    }

    #[test]
    fn own_and_listed_origins_pass_others_do_not() {
        let o = Origins::new(["https://app.example", "http://localhost:3000/"]);
        let h = "hub.example:2015";
        assert_eq!(verdict(&o, None, h), OriginVerdict::Own);
        assert_eq!(
            verdict(&o, Some("http://hub.example:2015"), h),
            OriginVerdict::Own
        );
        assert_eq!(
            verdict(&o, Some("https://HUB.example:2015"), h),
            OriginVerdict::Own
        );
        assert!(matches!(
            verdict(&o, Some("https://app.example"), h),
            OriginVerdict::Listed(_)
        ));
        assert!(matches!(
            verdict(&o, Some("http://localhost:3000"), h),
            OriginVerdict::Listed(_)
        ));
        for refused in [
            "https://evil.example",
            "null",
            "https://app.example.evil",
            "hub.example:2015",
        ] {
            assert_eq!(
                verdict(&o, Some(refused), h),
                OriginVerdict::Refused,
                "{refused}"
            );
        }
        assert_eq!(
            verdict(&o, Some("http://hub.example"), h),
            OriginVerdict::Refused,
            "another port"
        );
    }
}
