//! `GET /.well-known/mercure?topic=...` (0.x) or `?match=...` (1.0): a subscriber's
//! request, read as Mercure's dialect of the endpoint (`endpoint/dialect.rs`). Its
//! parameters choose the protocol's dialect (`dialect.rs`); its selectors become the
//! rooms it joins (an exact topic's room, or a pattern's), its token's subscribe grants
//! the audience of its private updates, its `Last-Event-ID` (header, or `lastEventID` /
//! `last_event_id`) the cursor it resumes after; and the answer says where the replay
//! starts (`Last-Event-ID` in 0.x, `Mercure-Last-Event-ID` in 1.0), or `earliest` when
//! the cursor cannot be honoured.

use std::sync::Arc;

use http::{HeaderValue, Response};

use super::auth::{self, Grants, Role, V1_COOKIE};
use super::dialect::{self, Version};
use super::selector::{MatchType, Selector, Selectors};
use super::Shared;
use crate::auth::Identity;
use crate::connection::Audience;
use crate::endpoint::{Dialect, RequestContext, SseBody, Subscription};
use crate::hub::{validate_room_within, Resume};
use crate::log_limit::warn_limited;
use crate::metrics::Refusal;

/// The Mercure dialect of a stream's request.
pub(crate) struct Subscribe(pub(crate) Arc<Shared>);

/// The topics of private updates a subscriber may receive: its token's subscribe
/// grants.
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
            let parsed = dialect::of_subscribe(ctx.query_pairs()).and_then(|(version, m)| {
                let selectors = match version {
                    Version::V0 => selectors(&shared, &ctx)?,
                    Version::V1 => matchers(&shared, &m)?,
                };
                Ok((version, selectors))
            });
            let (version, selectors) = match parsed {
                Ok(s) => s,
                Err(why) => {
                    return Err(refused(Refusal::BadRequest, auth::invalid_request(&why)));
                }
            };
            let grants = match grants(&shared, &ctx, version) {
                Ok(g) => g,
                Err(denied) => {
                    warn_limited!(client = ?ctx.client_ip(), reason = %denied.reason, "mercure subscriber refused");
                    let res = match version {
                        Version::V0 => denied.response(),
                        Version::V1 => denied.response_v1(&shared.config.metadata_url()),
                    };
                    return Err(refused(Refusal::Auth, res));
                }
            };
            let mut identity = Identity::new(grants.subject.as_deref().unwrap_or(""));
            if let Some(at) = grants.expiry {
                identity = identity.expires_at(at);
            }
            let ctx = ctx.with_identity(identity);
            let rooms: Vec<String> = selectors.iter().map(|s| s.room().into_owned()).collect();
            let cursor = ctx.last_event_id().map(str::to_owned);
            let keeps = shared.hub.config().keeps_history();
            let resume = cursor.clone().filter(|_| keeps).map(Resume::After);
            let mut sub = Subscription::new(ctx, rooms.clone(), resume);
            if let Some(cursor) = cursor {
                // Where the replay starts: after the cursor if the history can honour it.
                let holds = keeps && shared.hub.holds(&cursor, &rooms).await;
                let start = if holds { cursor } else { "earliest".to_owned() };
                let name = match version {
                    Version::V0 => "last-event-id",
                    Version::V1 => "mercure-last-event-id",
                };
                if let Ok(v) = HeaderValue::from_str(&start) {
                    sub.headers.insert(name, v);
                }
            }
            sub.audience = Some(Arc::new(Grant(grants.subscribe.clone())));
            if let Some(active) = shared.active.clone() {
                sub.on_open = Some(Box::new(move |conn| {
                    active.open(conn, version, &selectors, |s| {
                        grants.payload_for(s).cloned()
                    })
                }));
            }
            Ok(sub)
        })
    }
}

/// A 1.0 request's matchers, at most as many as the configuration allows; or why not.
fn matchers(shared: &Shared, asked: &[(MatchType, &str)]) -> Result<Vec<Selector>, String> {
    let max = shared.config.max_selectors;
    if asked.len() > max {
        return Err(format!(
            "too many matchers: {} (at most {max})",
            asked.len()
        ));
    }
    let base = shared.config.base_url();
    let mut out: Vec<Selector> = Vec::with_capacity(asked.len());
    for &(kind, s) in asked {
        let param = match kind {
            MatchType::Exact => "match",
            MatchType::UrlPattern => "match_urlpattern",
        };
        if s.is_empty() || s.len() > super::MAX_TOPIC_LEN {
            return Err(format!(
                "invalid {param} {:?}: 1 to {} bytes",
                shown(s),
                super::MAX_TOPIC_LEN
            ));
        }
        // A pattern another stream here already uses is reused, not compiled again
        // (its characters were checked then).
        let known = (kind == MatchType::UrlPattern && s != "*")
            .then(|| shared.patterns.selector(&Selector::url_pattern_room(s)))
            .flatten();
        let selector = match known {
            Some(selector) => selector,
            None => Selector::parse_v1(s, kind, &base)
                .map_err(|e| format!("invalid {param} {:?}: {e}", shown(s)))?,
        };
        if !out.iter().any(|o| o.room() == selector.room()) {
            out.push(selector);
        }
    }
    Ok(out)
}
/// The request's topic selectors, each a room name the hub accepts, at most as many as
/// the configuration allows; or why not.
fn selectors(shared: &Shared, ctx: &RequestContext) -> Result<Vec<Selector>, String> {
    let asked: Vec<&str> = ctx.query_all("topic").collect();
    if asked.is_empty() {
        return Err(
            "missing topic: subscribe with ?topic=<selector> (Mercure 0.x) or \
                    ?match=<topic> / ?match_urlpattern=<pattern> (1.0), one or more"
                .into(),
        );
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
        if s.starts_with(super::selector::RESERVED) {
            return Err(format!(
                "invalid topic selector {:?}: it starts with a reserved character",
                shown(s)
            ));
        }
        let selector = Selector::parse(s)
            .map_err(|e| format!("invalid topic selector {:?}: {e}", shown(s)))?;
        if !out.iter().any(|o| o.as_str() == s) {
            out.push(selector);
        }
    }
    Ok(out)
}

/// What the request's token grants: nothing for an anonymous subscriber (when the hub
/// lets them in), else what its verified token grants (a token's shape says which rules
/// it follows, whatever the request's dialect). A 1.0 request's token comes from the
/// header or 1.0's cookie only: never the query, where URLs get logged.
fn grants(shared: &Shared, ctx: &RequestContext, version: Version) -> Result<Grants, auth::Denied> {
    let config = &shared.config;
    let found = match version {
        Version::V0 => auth::token(ctx.headers(), Some(ctx.uri()), &[&config.cookie_name]),
        Version::V1 => auth::token(ctx.headers(), None, &[V1_COOKIE]),
    };
    match found {
        Some((token, _)) => auth::verify(config, Role::Subscriber, &token),
        None if config.anonymous => Ok(Grants::default()),
        None if version == Version::V0 => Err(auth::Denied::unauthorized(
            "a token is required: this hub does not take anonymous subscribers \
             (send it as Authorization: Bearer, ?authorization=, or the cookie)",
        )),
        None => Err(auth::Denied::missing(format!(
            "a token is required: this hub does not take anonymous subscribers \
             (send it as Authorization: Bearer or the cookie {V1_COOKIE}; Mercure 1.0 \
             reads no token from the query)"
        ))),
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
