//! Shutdown signals: the one place that knows how a process is asked to stop.

use std::future::Future;
use std::pin::Pin;

/// A future that completes when the server should stop.
pub struct Shutdown {
    fut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Shutdown {
    /// Ctrl-C, or SIGTERM on Unix.
    pub fn signal() -> Shutdown {
        Shutdown {
            fut: Box::pin(async {
                let ctrl_c = async {
                    if tokio::signal::ctrl_c().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                #[cfg(unix)]
                let term = async {
                    use tokio::signal::unix::{signal, SignalKind};
                    match signal(SignalKind::terminate()) {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let term = std::future::pending::<()>();
                tokio::select! {
                    _ = ctrl_c => tracing::info!("Ctrl-C received"),
                    _ = term => tracing::info!("SIGTERM received"),
                }
            }),
        }
    }

    /// Any future.
    pub fn on(fut: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        Shutdown { fut: Box::pin(fut) }
    }

    /// Wait for it.
    pub async fn wait(self) {
        self.fut.await
    }
}
