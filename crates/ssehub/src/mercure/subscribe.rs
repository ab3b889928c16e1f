//! `GET /.well-known/mercure?topic=...`: a subscriber's request, read as Mercure's
//! dialect of the endpoint (`endpoint/dialect.rs`): its selectors become the rooms it
//! joins (an exact topic's room, or a pattern's), its token's `mercure.subscribe` the
//! audience of its private updates, its `Last-Event-ID` (header, or `lastEventID`) the
//! cursor it resumes after; and the answer says in `Last-Event-ID` where the replay
//! starts, or `earliest` when the cursor cannot be honoured.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};

use super::auth::{self, Grants};
use super::selector::{Selector, Selectors};
use super::Shared;
use crate::auth::Identity;
use crate::connection::Audience;
use crate::endpoint::{Dialect, RequestContext, SseBody, Subscription};
use crate::hub::{validate_room_within, Resume};
use crate::log_limit::warn_limited;
use crate::metrics::Refusal;

/// The Mercure dialect of a stream's request.
pub(crate) struct Subscribe(pub(crate) Arc<Shared>);

/// The topics of private updates a subscriber may receive: its token's
/// `mercure.subscribe` selectors.
struct Grant(Selectors);

impl Audience for Grant {
    fn accepts(&self, topic: &str) -> bool {
        self.0.match_any(topic)
    }
}

impl Dialect for Subscribe {
    fn subscribe(
        &self,
        ctx: RequestContext,
    ) -> crate::endpoint::BoxFuture<Result<Subscription, Response<SseBody>>> {
        let shared = self.0.clone();
        Box::pin(async move {
            let refused = |why, res: Response<SseBody>| {
                shared.hub.count_refusal(why);
                res
            };
            let selectors = match selectors(&shared, &ctx) {
                Ok(s) => s,
                Err(why) => {
                    let res = crate::respond::text(StatusCode::BAD_REQUEST, format!("{why}\n"));
                    return Err(refused(Refusal::BadRequest, res));
                }
            };
            let grants = match grants(&shared, &ctx) {
                Ok(g) => g,
                Err(denied) => {
                    warn_limited!(client = ?ctx.client_ip(), reason = %denied.reason, "mercure subscriber refused");
                    return Err(refused(Refusal::Auth, denied.response()));
                }
            };
            let mut identity = Identity::new(grants.subject.as_deref().unwrap_or(""));
            if let Some(at) = grants.expiry {
                identity = identity.expires_at(at);
            }
            let ctx = ctx.with_identity(identity);
            let rooms: Vec<String> = selectors.iter().map(|s| s.as_str().to_owned()).collect();
            let cursor = ctx.last_event_id().map(str::to_owned);
            let keeps = shared.hub.config().keeps_history();
            let resume = cursor.clone().filter(|_| keeps).map(Resume::After);
            let mut sub = Subscription::new(ctx, rooms.clone(), resume);
            if let Some(cursor) = cursor {
                // Where the replay starts: after the cursor if the history can honour it.
                let holds = keeps && shared.hub.holds(&cursor, &rooms).await;
                let start = if holds { cursor } else { "earliest".to_owned() };
                if let Ok(v) = HeaderValue::from_str(&start) {
                    sub.headers.insert("last-event-id", v);
                }
            }
            sub.audience = Some(Arc::new(Grant(grants.subscribe)));
            Ok(sub)
        })
    }
}

/// The request's topic selectors, each a room name the hub accepts, at most as many as
/// the configuration allows; or why not.
fn selectors(shared: &Shared, ctx: &RequestContext) -> Result<Vec<Selector>, String> {
    let asked: Vec<&str> = ctx.query_all("topic").collect();
    if asked.is_empty() {
        return Err("missing topic: subscribe with ?topic=<selector> (one or more)".into());
    }
    let max = shared.config.max_selectors;
    if asked.len() > max {
        return Err(format!(
            "too many topic selectors: {} (at most {max})",
            asked.len()
        ));
    }
    let mut out: Vec<Selector> = Vec::with_capacity(asked.len());
    for s in asked {
        validate_room_within(s, super::MAX_TOPIC_LEN)
            .map_err(|e| format!("invalid topic selector {:?}: {e}", shown(s)))?;
        let selector = Selector::parse(s)
            .map_err(|e| format!("invalid topic selector {:?}: {e}", shown(s)))?;
        if !out.iter().any(|o| o.as_str() == s) {
            out.push(selector);
        }
    }
    Ok(out)
}

/// What the request's token grants: nothing for an anonymous subscriber (when the hub
/// lets them in), else its verified `mercure` claim.
fn grants(shared: &Shared, ctx: &RequestContext) -> Result<Grants, auth::Denied> {
    let config = &shared.config;
    match auth::token(ctx.headers(), ctx.uri(), &config.cookie_name) {
        Some((token, _)) => auth::grants(config.subscriber.as_deref(), &token, "subscriber"),
        None if config.anonymous => Ok(Grants::default()),
        None => Err(auth::Denied::unauthorized(
            "a token is required: this hub does not take anonymous subscribers \
             (send it as Authorization: Bearer, ?authorization=, or the cookie)",
        )),
    }
}

/// The first 60 characters of `s`, for an error message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
