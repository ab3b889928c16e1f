//! The application's hooks (`authorize`, `on_connect`, `on_disconnect`) and how they
//! run: each on its own task, wrapped in `catch_unwind`, so a panicking hook costs its
//! own stream and nothing else.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::request::{Rejection, RequestContext};
use crate::auth::Identity;
use crate::connection::Connection;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type AuthorizeHook =
    Arc<dyn Fn(RequestContext) -> BoxFuture<Result<Identity, Rejection>> + Send + Sync>;
pub(crate) type ConnectHook =
    Arc<dyn Fn(Connection, RequestContext) -> BoxFuture<()> + Send + Sync>;
pub(crate) type DisconnectHook = Arc<dyn Fn(Connection) -> BoxFuture<()> + Send + Sync>;

/// What `authorize` decided.
pub(crate) enum Verdict {
    /// Admitted as this identity (anonymous: the hook did not say who).
    Admit(Identity),
    Refuse(Rejection),
    /// The hook panicked (answered 500).
    Panicked,
}

/// Run `authorize` on `ctx`, turning a panic into a verdict.
pub(crate) async fn run_authorize(hook: &AuthorizeHook, ctx: RequestContext) -> Verdict {
    match AssertUnwindSafe(hook(ctx.clone())).catch_unwind().await {
        Ok(Ok(identity)) => Verdict::Admit(identity),
        Ok(Err(rejection)) => Verdict::Refuse(rejection),
        Err(_) => {
            tracing::error!(path = ctx.path(), "authorize hook panicked");
            Verdict::Panicked
        }
    }
}

/// Run a user hook on its own task; a panic is logged and closes `conn`, nothing else.
pub(crate) fn spawn_hook(
    rt: &tokio::runtime::Handle,
    name: &'static str,
    conn: Option<Connection>,
    fut: BoxFuture<()>,
) {
    rt.spawn(async move {
        if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
            tracing::error!(hook = name, "hook panicked");
            if let Some(c) = conn {
                c.close();
            }
        }
    });
}

/// How long a resuming stream's replay waits for `on_connect`: rooms it joins within
/// this time (or before it returns) are part of the replay; later joins start live.
pub(crate) const SET_UP_DEADLINE: Duration = Duration::from_secs(1);

/// Start the hooks of a new stream: `on_disconnect` when it closes (on whatever thread
/// closes it, hence the runtime handle), `on_connect` now. `set_up` runs once
/// `on_connect` has returned (or after [`SET_UP_DEADLINE`], or at once without it):
/// the stream's rooms are then known.
pub(crate) fn start(
    conn: &Connection,
    ctx: RequestContext,
    on_connect: Option<&ConnectHook>,
    on_disconnect: Option<&DisconnectHook>,
    set_up: impl FnOnce() + Send + 'static,
) {
    let rt = tokio::runtime::Handle::current();
    if let Some(hook) = on_disconnect {
        let hook = hook.clone();
        let rt = rt.clone();
        conn.on_closed(move |c| {
            spawn_hook(&rt, "on_disconnect", None, hook(c.clone()));
        });
    }
    let Some(hook) = on_connect else {
        return set_up();
    };
    let fut = hook(conn.clone(), ctx);
    let conn = conn.clone();
    rt.spawn(async move {
        let mut fut = std::pin::pin!(AssertUnwindSafe(fut).catch_unwind());
        let early = tokio::select! {
            done = &mut fut => Some(done),
            _ = tokio::time::sleep(SET_UP_DEADLINE) => None,
        };
        set_up();
        let done = match early {
            Some(done) => done,
            None => fut.await,
        };
        if done.is_err() {
            tracing::error!(hook = "on_connect", "hook panicked");
            conn.close();
        }
    });
}
