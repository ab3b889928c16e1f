//! `POST /.well-known/mercure`: an update, `application/x-www-form-urlencoded`.
//!
//! Fields: `topic` (one or more; the first is canonical, every one dispatches), `data`
//! (split into `data:` lines on CR, LF and CRLF), `private` (present: private, whatever
//! its value), `id` (not starting with `#`), `type` (the SSE event), `retry` (digits
//! only); others are ignored. The token (publisher key; a 0.x token's
//! `mercure.publish`, a 1.0 token's `publish` grants) must select every topic; one that
//! came from a cookie also needs an `Origin` (or `Referer`) among the publish origins,
//! against cross-site requests. The answer is 200 `text/plain` with the update's id: the
//! caller's, or one the hub made (`urn:uuid:...`).
//!
//! draft-08's rules hold for every publish, whichever dialect its publisher speaks,
//! since each closes a hole in both: no topic inside the hub's own path (after
//! resolving it against the hub's URL, dot segments and percent-encoding), where the
//! hub's subscription events live and a publisher could forge them; no topic `*` (it
//! would reach every subscriber's `*` only, and cannot be selected alone); no
//! control, format or reserved character in a topic; no `id` `earliest` (the cursor
//! that means "everything") nor one with a control character; no `type` `mercure`
//! (1.0's subscription events).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::auth::{self, Denied, Role, Source, V1_COOKIE};
use super::selector::{forbidden_char, Selectors};
use super::Shared;
use crate::endpoint::SseBody;
use crate::hub::{validate_room_within, PublishError as HubRefusal};
use crate::log_limit::warn_limited;
use crate::message::{FrameError, Message};

/// An update as the form says it.
#[derive(Debug, Default)]
struct Update {
    topics: Vec<String>,
    data: Option<String>,
    private: bool,
    id: Option<String>,
    event: Option<String>,
    retry: Option<u64>,
}

/// Answer one publish request.
pub(crate) async fn publish<B>(shared: &Shared, req: Request<B>) -> Response<SseBody>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if let Err(denied) = csrf(shared, &parts.headers, &parts.uri) {
        return denied.response();
    }
    let form = match read(shared, &parts.headers, body).await {
        Ok(form) => form,
        Err(res) => return res,
    };
    let update = match parse(&form) {
        Ok(u) => u,
        Err(why) => return bad(why),
    };
    if let Err(why) = check_topics(shared, &update.topics) {
        return bad(why);
    }
    if let Err(denied) = authorize(shared, &parts.headers, &parts.uri, &update.topics) {
        warn_limited!(reason = %denied.reason, "mercure publish refused");
        return denied.response();
    }
    let message = match message(shared, &update) {
        Ok(m) => m,
        Err(e) => return bad(format!("invalid {}: {e}", e.field())),
    };
    let published = shared
        .hub
        .to(&update.topics)
        .unique()
        .private(update.private)
        .publish_and_wait(&message)
        .await;
    match published {
        Ok(p) => {
            let id =
                p.id.or_else(|| message.id().map(str::to_owned))
                    .unwrap_or_default();
            crate::respond::text(StatusCode::OK, id)
        }
        Err(HubRefusal::TooLarge { bytes, max }) => crate::respond::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the update is {bytes} bytes encoded, over the limit of {max}\n"),
        ),
        Err(e) => bad(e.to_string()),
    }
}

/// A 400 saying why.
fn bad(why: impl std::fmt::Display) -> Response<SseBody> {
    crate::respond::text(StatusCode::BAD_REQUEST, format!("{why}\n"))
}

/// The form's fields, in order, from a body of at most the configured size.
async fn read<B>(
    shared: &Shared,
    headers: &HeaderMap,
    body: B,
) -> Result<Vec<(String, String)>, Response<SseBody>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(crate::respond::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an update is a form: Content-Type: application/x-www-form-urlencoded\n",
        ));
    }
    let max = shared.config.max_body;
    let too_large = || {
        crate::respond::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {max} bytes\n"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(b) => Ok(form_urlencoded::parse(&b.to_bytes()).into_owned().collect()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(bad(format!("could not read the body: {e}"))),
    }
}

fn parse(form: &[(String, String)]) -> Result<Update, String> {
    let mut u = Update::default();
    for (k, v) in form {
        match k.as_str() {
            "topic" => u.topics.push(v.clone()),
            "data" => u.data = Some(v.clone()),
            "private" => u.private = true,
            "id" if v.starts_with('#') => {
                return Err(format!("invalid id {v:?}: an id may not start with '#'"))
            }
            "id" if v == "earliest" => {
                return Err("invalid id \"earliest\": it is the cursor of the whole history".into())
            }
            "id" if v.chars().any(char::is_control) => {
                return Err(format!("invalid id {v:?}: it contains a control character"))
            }
            "type" if v == "mercure" => {
                return Err(
                    "invalid type \"mercure\": it is reserved for the hub's subscription events"
                        .into(),
                )
            }
            "id" => u.id = Some(v.clone()),
            "type" => u.event = Some(v.clone()),
            "retry" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                u.retry = Some(
                    v.parse()
                        .map_err(|_| format!("invalid retry {v:?}: too large"))?,
                )
            }
            "retry" => return Err(format!("invalid retry {v:?}: digits only (milliseconds)")),
            _ => {}
        }
    }
    if u.topics.is_empty() {
        return Err("missing topic: an update needs at least one topic".into());
    }
    Ok(u)
}

/// Topics the hub accepts as room names, at most as many as configured.
fn check_topics(shared: &Shared, topics: &[String]) -> Result<(), String> {
    let max = shared.config.max_topics;
    if topics.len() > max {
        return Err(format!(
            "too many topics: {} (at most {max} per update)",
            topics.len()
        ));
    }
    let base = shared.config.base_url();
    for t in topics {
        validate_room_within(t, super::MAX_TOPIC_LEN)
            .map_err(|e| format!("invalid topic {t:?}: {e}"))?;
        if t == "*" {
            return Err("invalid topic \"*\": it is the selector of every topic".into());
        }
        if let Some(c) = forbidden_char(t) {
            return Err(format!(
                "invalid topic {t:?}: it contains the character U+{:04X}",
                c as u32
            ));
        }
        if in_hub_path(&base, t) {
            return Err(format!(
                "invalid topic {t:?}: it is inside the hub's own path {}, which only the \
                 hub publishes to",
                super::MERCURE_PATH
            ));
        }
    }
    Ok(())
}

/// Whether `topic`, resolved against the hub's URL, is the hub's path or under it,
/// whatever its scheme and host; dot segments are resolved and percent-encoding
/// decoded first (then resolved again), so `/a/../.well-known/%6Dercure/x` is caught.
fn in_hub_path(base: &url::Url, topic: &str) -> bool {
    let inside = |path: &str| {
        path == super::MERCURE_PATH
            || path
                .strip_prefix(super::MERCURE_PATH)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let Ok(url) = base.join(topic) else {
        return false;
    };
    if inside(url.path()) {
        return true;
    }
    let decoded = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
    base.join(&decoded).is_ok_and(|again| inside(again.path()))
}

/// A publish authorized by the cookie comes from a page; one on another origin than the
/// publish origins could be a cross-site request forgery: 403. Bearer and query tokens
/// are not sent by a browser on its own, so they need no such check.
fn csrf(shared: &Shared, headers: &HeaderMap, uri: &http::Uri) -> Result<(), Denied> {
    let config = &shared.config;
    let cookies = [config.cookie_name.as_str(), V1_COOKIE];
    let Some((_, Source::Cookie)) = auth::token(headers, Some(uri), &cookies) else {
        return Ok(());
    };
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let referer = headers.get(header::REFERER)?.to_str().ok()?;
            let url: http::Uri = referer.parse().ok()?;
            Some(format!("{}://{}", url.scheme_str()?, url.authority()?))
        });
    let Some(origin) = origin.filter(|o| o != "null") else {
        return Err(Denied::forbidden(
            "a publish authorized by the cookie needs an Origin or Referer header",
        ));
    };
    let listed = config
        .publish_origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(&origin));
    if listed {
        Ok(())
    } else {
        Err(Denied::forbidden(format!(
            "origin {origin} may not publish with the cookie (not in publish_origins)"
        )))
    }
}

/// The token must verify with the publisher key and hold `mercure.publish` selectors
/// that match every topic.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &http::Uri,
    topics: &[String],
) -> Result<(), Denied> {
    let config = &shared.config;
    let cookies = [config.cookie_name.as_str(), V1_COOKIE];
    let Some((token, _)) = auth::token(headers, Some(uri), &cookies) else {
        return Err(Denied::unauthorized(
            "a publisher token is required (Authorization: Bearer, ?authorization=, or the cookie)",
        ));
    };
    let grants = auth::verify(config, Role::Publisher, &token)?;
    let Some(Selectors(allowed)) = grants.publish else {
        return Err(Denied::unauthorized(
            "the token has no mercure.publish claim: it may not publish",
        ));
    };
    if let Some(t) = topics
        .iter()
        .find(|t| !allowed.iter().any(|s| s.matches(t)))
    {
        return Err(Denied::forbidden(format!(
            "topic {t:?} is not granted by the token's mercure.publish (or 1.0 publish grants)"
        )));
    }
    Ok(())
}

/// The update as an SSE message; a hub without history still gives it an id.
fn message(shared: &Shared, u: &Update) -> Result<Message, FrameError> {
    let mut b = Message::builder();
    match &u.id {
        Some(id) => b = b.id(id.clone()),
        None if !shared.hub.config().keeps_history() => {
            b = b.id(format!("urn:uuid:{}", uuid::Uuid::new_v4()))
        }
        None => {}
    }
    if let Some(event) = &u.event {
        b = b.event(event.clone());
    }
    if let Some(ms) = u.retry {
        b = b.retry(Duration::from_millis(ms));
    }
    b.data(u.data.clone().unwrap_or_default()).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_is_read_as_the_draft_says() {
        let u = parse(&form(&[
            ("topic", "https://e.com/a"),
            ("topic", "https://e.com/b"),
            ("data", "x"),
            ("private", ""),
            ("id", "mine"),
            ("type", "t"),
            ("retry", "100"),
            ("unknown", "ignored"),
        ]))
        .unwrap();
        assert_eq!(u.topics, ["https://e.com/a", "https://e.com/b"]);
        assert!(u.private);
        assert_eq!(
            (u.id.as_deref(), u.event.as_deref(), u.retry),
            (Some("mine"), Some("t"), Some(100))
        );
        assert!(parse(&form(&[("data", "x")]))
            .unwrap_err()
            .contains("missing topic"));
        assert!(parse(&form(&[("topic", "t"), ("id", "#x")]))
            .unwrap_err()
            .contains("'#'"));
        assert!(parse(&form(&[("topic", "t"), ("retry", "1s")]))
            .unwrap_err()
            .contains("digits"));
        assert!(parse(&form(&[("topic", "t"), ("retry", "")])).is_err());
        for bad in [("id", "earliest"), ("id", "a\u{85}b"), ("type", "mercure")] {
            let why = parse(&form(&[("topic", "t"), bad])).unwrap_err();
            assert!(why.contains(bad.0), "{why}");
        }
    }

    #[test]
    fn topics_in_the_hubs_path_are_refused_however_written() {
        let base = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
        for t in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/Exact/x/y",
            "https://other.example/.well-known/mercure/subscriptions",
            "/a/../.well-known/mercure/x",
            "/.well-known/%6Dercure/x",
            "/a/%2e%2e/.well-known/mercure/x",
            "/a/..%2F.well-known/mercure/x",
            "mercure/x",
        ] {
            assert!(in_hub_path(&base, t), "{t}");
        }
        for t in [
            "/.well-known/mercurey",
            "https://e.com/books/1",
            "plain",
            "/.well-known",
        ] {
            assert!(!in_hub_path(&base, t), "{t}");
        }
    }
}
