//! The seam between the endpoint and a dialect: how a request on the endpoint's path
//! becomes a stream. The room dialect (`?room=`, [`crate::SseOptions::auth`], the
//! `authorize` hook) is the endpoint's own; another dialect (`crate::mercure`) parses its
//! own parameters and tokens and answers its own refusals, and the endpoint does the
//! rest alike for both: admission, the connection, its rooms, the replay, keep-alive,
//! the bare-socket writer.

use std::sync::Arc;

use http::{HeaderMap, Response};

use super::body::SseBody;
use super::hooks::BoxFuture;
use super::request::RequestContext;
use crate::connection::Audience;
use crate::connection::Connection;
use crate::hub::Resume;

/// How a stream's request is read by a dialect.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The stream `ctx` asks for, or the answer that refuses it (counted by the dialect:
    /// `Hub::count_refusal`).
    fn subscribe(&self, ctx: RequestContext) -> BoxFuture<Result<Subscription, Response<SseBody>>>;
}

/// What a dialect decided of a stream.
pub(crate) struct Subscription {
    /// The request, with the identity the dialect gave it (its expiry ends the stream).
    pub(crate) ctx: RequestContext,
    /// The rooms it joins before its replay.
    pub(crate) rooms: Vec<String>,
    pub(crate) resume: Option<Resume>,
    /// Which private updates it may receive (none without).
    pub(crate) audience: Option<Arc<dyn Audience>>,
    /// Headers of the answer, beside the handshake's.
    pub(crate) headers: HeaderMap,
    /// Called once the stream's connection exists and has joined its rooms, before its
    /// replay (a dialect that announces streams: Mercure's subscription events).
    pub(crate) on_open: Option<OnOpen>,
}

/// What a dialect does when its stream opens.
pub(crate) type OnOpen = Box<dyn FnOnce(&Connection) + Send>;

impl Subscription {
    /// A stream of `ctx` in `rooms`, resuming at `resume`, with no private update and no
    /// header of its own.
    pub(crate) fn new(ctx: RequestContext, rooms: Vec<String>, resume: Option<Resume>) -> Self {
        Subscription {
            ctx,
            rooms,
            resume,
            audience: None,
            headers: HeaderMap::new(),
            on_open: None,
        }
    }
}
