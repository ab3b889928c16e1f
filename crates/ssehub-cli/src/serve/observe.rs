//! What an operator gets from `ssehub serve` besides the demo: `/metrics` for
//! Prometheus, the stats API (`/rooms`, `/rooms/{room}`), the live `/dashboard` and the
//! presence rooms (`--presence`).
//!
//! Every route is added here, in one place, so that whatever guards the operator's
//! routes (an admin token) guards them all.

use http::Request;
use hyper::body::Incoming;
use ssehub::{HubApi, HubConfig, RoomSelector, Server};

use super::dashboard::{self, Feed};

#[derive(clap::Args, Debug, Clone)]
pub struct ObserveArgs {
    /// Where Prometheus scrapes the hub's metrics (an empty path turns them off).
    #[arg(long, value_name = "PATH", default_value = "/metrics")]
    pub metrics_path: String,
    /// Where the live dashboard is served (an empty path turns it off); its event stream
    /// is PATH/events.
    #[arg(long, value_name = "PATH", default_value = "/dashboard")]
    pub dashboard_path: String,
    /// Rooms whose members get `ssehub.join` / `ssehub.leave` events when others join or
    /// leave: a name, `*`, or a prefix such as `chat.*` (repeatable).
    #[arg(long, value_name = "ROOMS")]
    pub presence: Vec<RoomSelector>,
}

impl ObserveArgs {
    /// The hub's configuration with these presence rooms.
    pub fn hub_config(&self, config: HubConfig) -> HubConfig {
        self.presence
            .iter()
            .fold(config, |c, rooms| c.presence(rooms.clone()))
    }
}

/// Add the operator's routes to `server` for the hub of `api`. The dashboard's feed,
/// if any, runs until it is dropped.
pub fn mount(
    server: Server,
    api: &HubApi,
    args: &ObserveArgs,
) -> anyhow::Result<(Server, Option<Feed>)> {
    let rooms = api.clone();
    let mut server = server
        .route("/rooms", move |req| {
            let api = rooms.clone();
            async move { api.rooms(&req) }
        })
        // `/rooms/{room}`: no exact route can hold it; the API answers what nothing else
        // matched (404 for anything but its own paths).
        .fallback(api.clone());
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
    let (server, feed) = dashboard::mount(server, api.hub(), &args.dashboard_path)?;
    Ok((server, Some(feed)))
}
