//! A server the load tools start themselves (`--spawn-server`): `ssehub serve` with the
//! ticker off, on the target's address, stopped when the run is over.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpStream;

use crate::hub_client::Target;

/// A running `ssehub serve` child process; killed and reaped when dropped, so an error
/// anywhere in a run does not leave it behind.
pub(crate) struct ServerProcess(Child);

impl ServerProcess {
    /// Start `ssehub serve --tick-interval 0` on `target`'s address, pinned with
    /// `taskset -c <cpus>` unless `cpus` is empty.
    pub(crate) fn spawn(target: &Target, cpus: &str) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("locating the ssehub executable")?;
        let port = target.addr.port().to_string();
        let bind = target.addr.ip().to_string();
        let serve = [
            "serve",
            "--tick-interval",
            "0",
            "--bind",
            bind.as_str(),
            "--port",
            port.as_str(),
        ];
        let mut cmd = if cpus.is_empty() {
            Command::new(&exe)
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&exe);
            c
        };
        cmd.args(serve)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let hint = if cpus.is_empty() {
            ""
        } else {
            "; is taskset installed?"
        };
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the server ({cmd:?}){hint}"))?;
        Ok(ServerProcess(child))
    }

    /// The process id (of `taskset`, which becomes the server: it execs it).
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until something accepts connections on `addr`, for at most `patience`.
pub(crate) async fn wait_accepting(addr: SocketAddr, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not accept on {addr} within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
