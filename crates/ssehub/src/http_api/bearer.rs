//! The API's bearer check: `Authorization: Bearer <token>` against one configured token,
//! compared in constant time, so that the answer's timing tells nothing of how much of a
//! guess was right.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::bearer;
use crate::respond::json;

/// The one token the API accepts.
#[derive(Clone)]
pub(super) struct Bearer {
    token: Box<[u8]>,
}

impl Bearer {
    pub(super) fn new(token: &str) -> Bearer {
        Bearer {
            token: token.as_bytes().into(),
        }
    }

    /// Whether `given` is the token. An empty token is no credential, even if the
    /// configured one is empty too.
    pub(super) fn accepts(&self, given: &[u8]) -> bool {
        // `ct_eq` on slices of different lengths says no at once: only the length leaks.
        !given.is_empty() && bool::from(given.ct_eq(&self.token))
    }

    /// `None` if `req` carries the token; else the 401 it gets.
    pub(super) fn refuse<B: From<Bytes>, R>(&self, req: &Request<R>) -> Option<Response<B>> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        if given.is_some_and(|g| self.accepts(g.as_bytes())) {
            return None;
        }
        let mut res = json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "a valid bearer token is required (Authorization: Bearer <token>)" }),
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ssehub\""),
        );
        Some(res)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(auth: Option<&str>) -> Option<StatusCode> {
        let mut req = Request::new(());
        if let Some(a) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        Bearer::new("s3cret")
            .refuse::<http_body_util::Full<Bytes>, _>(&req)
            .map(|r| r.status())
    }

    #[test]
    fn only_the_token_passes() {
        assert_eq!(answer(Some("Bearer s3cret")), None);
        assert_eq!(answer(Some("bearer s3cret")), None);
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cretx"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert_eq!(answer(wrong), Some(StatusCode::UNAUTHORIZED), "{wrong:?}");
        }
    }

    #[test]
    fn an_empty_token_opens_nothing() {
        let empty = Bearer::new("");
        assert!(!empty.accepts(b""));
        assert!(!empty.accepts(b"x"));
        assert!(!Bearer::new("s3cret").accepts(b""));
    }
}
