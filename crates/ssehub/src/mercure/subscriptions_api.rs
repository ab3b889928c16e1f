//! `GET /.well-known/mercure/subscriptions[/...]`: the active subscriptions, for apps
//! that show who is listening (presence). Paths, each segment percent-encoded:
//!
//! - `/subscriptions`: all (JSON-LD, `application/ld+json`; each subscription in its
//!   dialect's shape);
//! - 0.x: `/subscriptions/{topic}` and `/subscriptions/{topic}/{subscriber}`
//!   (`application/ld+json`);
//! - 1.0: `/subscriptions/{match_type}/{match}` and
//!   `/subscriptions/{match_type}/{match}/{subscriber}` (`application/json`), told from
//!   0.x's two-segment form by a first segment that is a matcher type (`Exact`,
//!   `URLPattern`).
//!
//! A request is authorized as a subscription to the path would be: its token (either
//! dialect's) must grant subscribe on the path itself. The cursor, the id to subscribe
//! from so that no change is missed after the snapshot (`active.rs`), is in 0.x's
//! `lastEventID` field and in 1.0's `Link: <hub>; rel="mercure"; last-event-id="..."`
//! (both are always given). An unknown subscription is a 404. Over Redis it lists every
//! live node's subscriptions (`leases.rs`).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::active::{Active, Entry, SUBSCRIPTIONS_PATH};
use super::auth::{self, Denied, Role, V1_COOKIE};
use super::dialect::Version;
use super::selector::MatchType;
use super::Shared;
use crate::endpoint::SseBody;

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Query {
    All,
    Topic(String),
    Single0 {
        topic: String,
        subscriber: String,
    },
    Match {
        kind: &'static str,
        selector: String,
    },
    Single1 {
        kind: &'static str,
        selector: String,
        subscriber: String,
    },
}

impl Query {
    fn parse(rest: &str) -> Option<Query> {
        if rest.is_empty() {
            return Some(Query::All);
        }
        let rest = rest.strip_prefix('/')?;
        let segments: Vec<String> = rest
            .split('/')
            .map(|s| {
                percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            })
            .collect::<Option<_>>()?;
        if segments.iter().any(String::is_empty) {
            return None;
        }
        let kind = || MatchType::parse(&segments[0]).map(MatchType::name);
        let raw_kind = |s: &str| s == "Exact" || s == "URLPattern";
        Some(match segments.len() {
            1 => Query::Topic(segments[0].clone()),
            2 if raw_kind(&segments[0]) => Query::Match {
                kind: kind()?,
                selector: segments[1].clone(),
            },
            2 => Query::Single0 {
                topic: segments[0].clone(),
                subscriber: segments[1].clone(),
            },
            3 => Query::Single1 {
                kind: kind()?,
                selector: segments[1].clone(),
                subscriber: segments[2].clone(),
            },
            _ => return None,
        })
    }

    fn keeps(&self, e: &Entry) -> bool {
        match self {
            Query::All => true,
            Query::Topic(t) => e.version == Version::V0 && e.selector == *t,
            Query::Single0 { topic, subscriber } => {
                e.version == Version::V0 && e.selector == *topic && e.subscriber == *subscriber
            }
            Query::Match { kind, selector } => {
                e.match_type == Some(kind) && e.selector == *selector
            }
            Query::Single1 {
                kind,
                selector,
                subscriber,
            } => {
                e.match_type == Some(kind) && e.selector == *selector && e.subscriber == *subscriber
            }
        }
    }

    fn single(&self) -> bool {
        matches!(self, Query::Single0 { .. } | Query::Single1 { .. })
    }

    fn v1(&self) -> bool {
        matches!(self, Query::Match { .. } | Query::Single1 { .. })
    }
}

/// Answer a request below the hub's path.
pub(crate) async fn answer(
    shared: &Shared,
    active: Option<&Active>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<SseBody> {
    let path = uri.path();
    let (Some(active), Some(rest)) = (active, path.strip_prefix(SUBSCRIPTIONS_PATH)) else {
        return crate::respond::text(StatusCode::NOT_FOUND, "not found\n");
    };
    if method != Method::GET && method != Method::HEAD {
        return crate::respond::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let Some(query) = Query::parse(rest) else {
        return crate::respond::text(StatusCode::NOT_FOUND, "no such subscription resource\n");
    };
    if let Err(denied) = authorize(shared, uri, headers, path) {
        return if query.v1() {
            denied.response_v1(&shared.config.metadata_url())
        } else {
            denied.response()
        };
    }
    let snapshot = active.snapshot(|e| query.keeps(e)).await;
    let cursor = snapshot.last_event_id;
    let mut doc = if query.single() {
        let Some(e) = snapshot.entries.first() else {
            return crate::respond::text(StatusCode::NOT_FOUND, "no such subscription\n");
        };
        e.describe(true)
    } else {
        let list: Vec<Value> = snapshot.entries.iter().map(|e| e.describe(true)).collect();
        if query.v1() {
            json!({ "id": path, "type": "subscriptions", "subscriptions": list })
        } else {
            json!({
                "@context": "https://mercure.rocks/",
                "id": path,
                "type": "Subscriptions",
                "subscriptions": list,
            })
        }
    };
    let (content_type, cursor_field) = if query.v1() {
        ("application/json", "last_event_id")
    } else {
        ("application/ld+json", "lastEventID")
    };
    doc[cursor_field] = json!(cursor);
    let mut res = crate::respond::text(StatusCode::OK, format!("{doc}\n"));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The snapshot is stale at once: never cached without asking again.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let link = format!(
        r#"<{}>; rel="mercure"; last-event-id="{}""#,
        super::MERCURE_PATH,
        cursor.replace('"', "%22")
    );
    if let Ok(v) = HeaderValue::from_str(&link) {
        h.insert(header::LINK, v);
    }
    res
}

/// The request's token (either dialect's sources) must grant subscribe on `path`.
fn authorize(shared: &Shared, uri: &Uri, headers: &HeaderMap, path: &str) -> Result<(), Denied> {
    let config = &shared.config;
    let cookies = [config.cookie_name.as_str(), V1_COOKIE];
    let Some((token, _)) = auth::token(headers, Some(uri), &cookies) else {
        return Err(Denied::missing(
            "a token is required: the subscriptions API answers tokens that grant \
             subscribe on its URL",
        ));
    };
    let grants = auth::verify(config, Role::Subscriber, &token)?;
    if grants.subscribe.match_any(path) {
        Ok(())
    } else {
        Err(Denied::forbidden(format!(
            "the token does not grant subscribe on {path}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_say_what_they_ask() {
        assert_eq!(Query::parse(""), Some(Query::All));
        assert_eq!(Query::parse("/a%2Fb"), Some(Query::Topic("a/b".into())));
        assert_eq!(
            Query::parse("/t/urn%3Auuid%3A1"),
            Some(Query::Single0 {
                topic: "t".into(),
                subscriber: "urn:uuid:1".into()
            })
        );
        assert_eq!(
            Query::parse("/URLPattern/%2Fb%2F%3Aid"),
            Some(Query::Match {
                kind: "URLPattern",
                selector: "/b/:id".into()
            })
        );
        assert!(matches!(
            Query::parse("/Exact/x/s"),
            Some(Query::Single1 { .. })
        ));
        assert_eq!(Query::parse("/Regex/x/s"), None);
        assert_eq!(Query::parse("x"), None);
        assert_eq!(Query::parse("/a/b/c/d"), None);
    }
}
