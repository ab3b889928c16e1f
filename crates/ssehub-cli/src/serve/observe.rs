//! What an operator gets from `ssehub serve` besides the demo: `/metrics` for
//! Prometheus, the stats API (`/rooms`, `/rooms/{room}`), the live `/dashboard` and the
//! presence rooms (`--presence`).
//!
//! Every route is added here, in one place, and every one is guarded like `/stats`: by
//! the API's token (`--publish-token`) when there is one, and, with auth on, by an admin
//! token or a token whose claims say `"admin": true` (`serve/auth.rs`). The API's own
//! routes ask for `Authorization: Bearer TOKEN`; the dashboard's page and feed, which a
//! browser opens without headers, take it as `?token=TOKEN` too (`serve/token.rs`).

use std::convert::Infallible;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use ssehub::{HubApi, HubConfig, RoomSelector, Server};

use super::dashboard::{self, Feed};
use super::page;
use crate::config::ObserveSection;

/// The flags of the operator's routes; each overrides its key of `[observe]`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ObserveArgs {
    /// Where Prometheus scrapes the hub's metrics (an empty path turns them off)
    /// [default: /metrics].
    #[arg(long, value_name = "PATH")]
    pub metrics_path: Option<String>,
    /// Where the live dashboard is served (an empty path turns it off); its event stream
    /// is PATH/events [default: /dashboard].
    #[arg(long, value_name = "PATH")]
    pub dashboard_path: Option<String>,
    /// Rooms whose members get `ssehub.join` / `ssehub.leave` events when others join or
    /// leave: a name, `*`, or a prefix such as `chat.*` (repeatable).
    #[arg(long, value_name = "ROOMS")]
    pub presence: Vec<RoomSelector>,
    /// Presence events carry counts only: no connection ids, no token subjects.
    #[arg(long)]
    pub presence_counts_only: bool,
}

impl ObserveArgs {
    /// Set in `c` what these flags say.
    pub(crate) fn apply(&self, c: &mut ObserveSection) {
        if let Some(p) = &self.metrics_path {
            c.metrics_path.clone_from(p);
        }
        if let Some(p) = &self.dashboard_path {
            c.dashboard_path.clone_from(p);
        }
        c.presence.extend(self.presence.iter().cloned());
        c.presence_counts_only |= self.presence_counts_only;
    }
}

/// The hub's configuration with the presence rooms of `c`.
pub(super) fn hub_config(c: &ObserveSection, config: HubConfig) -> HubConfig {
    c.presence
        .iter()
        .fold(config, |config, rooms| config.presence(rooms.clone()))
        .presence_counts_only(c.presence_counts_only)
}

/// Add the operator's routes to `server` for the hub of `api`. The dashboard's feed,
/// if any, runs until it is dropped.
pub(super) fn mount(
    server: Server,
    api: &HubApi,
    args: &ObserveSection,
) -> anyhow::Result<(Server, Option<Feed>)> {
    let rooms = api.clone();
    let room = api.clone();
    let mut server = server
        .route("/rooms", move |req| rooms.rooms(&req))
        // `/rooms/{room}`: no exact route can hold it; what nothing else matched comes
        // here, and only that path is answered.
        .fallback(tower::service_fn(move |req: Request<Incoming>| {
            let answer = room_path(req.uri().path()).map(|name| room.room(&req, name));
            async move {
                Ok::<_, Infallible>(match answer {
                    Some(answer) => answer.await,
                    None => page::plain(StatusCode::NOT_FOUND, "not found"),
                })
            }
        }));
    if !args.metrics_path.is_empty() {
        let metrics = api.clone();
        server = server.route(&args.metrics_path, move |req: Request<Incoming>| {
            let api = metrics.clone();
            async move { api.metrics(&req) }
        });
    }
    if args.dashboard_path.is_empty() {
        return Ok((server, None));
    }
    let (server, feed) = dashboard::mount(server, api, &args.dashboard_path)?;
    Ok((server, Some(feed)))
}

/// The room of a `/rooms/{room}` path, still percent-encoded.
fn room_path(path: &str) -> Option<&str> {
    path.strip_prefix("/rooms/")
        .filter(|room| !room.is_empty() && !room.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_paths() {
        assert_eq!(room_path("/rooms/a%2Fb"), Some("a%2Fb"));
        assert_eq!(room_path("/rooms/"), None);
        assert_eq!(room_path("/rooms/a/b"), None);
        assert_eq!(room_path("/x/rooms/a"), None);
    }
}
