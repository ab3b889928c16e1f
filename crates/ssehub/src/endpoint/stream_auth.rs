//! [`crate::SseOptions::auth`] at a stream's door: its token and every room it asks for,
//! checked before the handshake; and its end at its identity's expiry.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{header, Response};

use super::body::SseBody;
use super::options::SseOptions;
use super::request::RequestContext;
use crate::auth::{Denied, Identity};
use crate::connection::Connection;
use crate::log_limit::warn_limited;
use crate::message::Message;

/// The event a stream gets when its identity expires, just before it is closed.
pub(crate) const EXPIRED_EVENT: &str = "ssehub.expired";

/// The context of an admitted stream, with its identity; or why it is refused.
pub(super) fn admit(opts: &SseOptions, ctx: RequestContext) -> Result<RequestContext, Denied> {
    let Some(auth) = &opts.auth else {
        return Ok(ctx);
    };
    let asked = opts.rooms_from_query.then(|| ctx.query_all("room"));
    let rooms = opts
        .auto_join_room
        .as_deref()
        .into_iter()
        .chain(asked.into_iter().flatten());
    let verdict = auth.admit_stream(ctx.headers(), ctx.uri(), ctx.client_ip(), rooms);
    match verdict {
        Ok(Some(identity)) => {
            tracing::debug!(sub = identity.subject(), client = ?ctx.client_ip(), "stream admitted");
            Ok(ctx.with_identity(identity))
        }
        Ok(None) => Ok(ctx),
        Err(denied) => {
            warn_limited!(client = ?ctx.client_ip(), status = denied.status().as_u16(), reason = %denied.message(), "stream refused");
            Err(denied)
        }
    }
}

/// The 401 or 403 a refused stream gets, with `WWW-Authenticate`; or the 429 of an
/// address out of its budget of failed tokens, with `Retry-After`.
pub(super) fn refusal(denied: &Denied) -> Response<SseBody> {
    let mut res = crate::respond::text(denied.status(), denied.message());
    let headers = res.headers_mut();
    match denied {
        Denied::Throttled(secs) => {
            headers.insert(header::RETRY_AFTER, http::HeaderValue::from(*secs));
        }
        _ => {
            headers.insert(header::WWW_AUTHENTICATE, denied.challenge());
        }
    }
    res
}

/// Give `conn` the subject of `ctx`'s identity (a token's `sub`), for presence events,
/// `/rooms/{room}` and the logs.
pub(super) fn name(conn: &Connection, ctx: &RequestContext) {
    if let Some(subject) = ctx.identity().and_then(Identity::subject) {
        conn.set_identity(subject);
    }
}

/// When `ctx`'s identity expires, send `conn` the [`EXPIRED_EVENT`] and close it (what it
/// has queued goes first). The watch ends with the stream.
pub(super) fn end_at_expiry(conn: &Connection, ctx: &RequestContext) {
    let Some(at) = ctx.identity().and_then(Identity::expiry) else {
        return;
    };
    let left = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let conn = conn.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = conn.closed() => {}
            _ = tokio::time::sleep(left) => {
                tracing::debug!(conn = %conn.id(), "token expired: stream closed");
                let _ = conn.send(expired());
                conn.close();
            }
        }
    });
}

/// The [`EXPIRED_EVENT`] message, without an id: the client's cursor stays where it was,
/// so that it resumes from the last event it got.
fn expired() -> &'static Message {
    static EXPIRED: OnceLock<Message> = OnceLock::new();
    EXPIRED.get_or_init(|| {
        Message::builder()
            .event(EXPIRED_EVENT)
            .data("the token has expired: reconnect with a fresh one")
            .build()
            .expect("a fixed, valid message")
    })
}
