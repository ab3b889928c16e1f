//! The processes of a fault soak: a `redis-server` and N `ssehub serve` nodes on it
//! (or one node with `--history-dir`), each on a loopback port of its own that it keeps
//! across restarts, in a temporary directory. Every process is one this soak started,
//! signalled and stopped by its pid; all are killed when the cluster is dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::server_process::wait_accepting;

/// How long a stopped process may take to exit, and a started one to accept.
const PATIENCE: Duration = Duration::from_secs(15);

/// Where the nodes keep their history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FaultMode {
    /// N nodes on one Redis: faults are node kills and restarts, Redis paused, killed
    /// and restarted (empty: a new epoch), and client cuts.
    Redis,
    /// One node with `--history-dir`: faults are its kills and restarts, and client cuts.
    Disk,
}

/// A process of the cluster: how to start it, and the running one.
struct Proc {
    name: String,
    port: u16,
    command: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.command[0]))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to this process's pid.
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name);
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} ({}) failed", self.name);
        }
        Ok(())
    }

    /// Signal it and wait for it to exit (SIGKILL after [`PATIENCE`]).
    async fn stop(&mut self, signal: &str) -> anyhow::Result<()> {
        self.signal(signal)?;
        let deadline = Instant::now() + PATIENCE;
        let child = self.child.as_mut().expect("signalled, so running");
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "soak: {} did not exit {PATIENCE:?} after SIG{signal}; killing it",
                    self.name
                );
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = None;
        Ok(())
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL ends a stopped process too; SIGCONT first all the same, so that
            // nothing this soak paused is ever left stopped.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Redis and the nodes.
pub(super) struct Cluster {
    dir: PathBuf,
    redis: Option<Proc>,
    nodes: Vec<Proc>,
    /// Keep the directory (the processes' logs) after the run: it failed.
    pub(super) keep: bool,
}

/// A loopback port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Start Redis (in `Redis` mode) and `nodes` nodes, and wait until all accept.
    pub(super) async fn start(
        mode: FaultMode,
        nodes: usize,
        redis_server: &str,
    ) -> anyhow::Result<Cluster> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ssehub-soak-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let exe = std::env::current_exe().context("locating the ssehub executable")?;
        let exe = exe.to_string_lossy().into_owned();
        let mut cluster = Cluster {
            dir: dir.clone(),
            redis: None,
            nodes: Vec::new(),
            keep: false,
        };
        let node_args;
        if mode == FaultMode::Redis {
            let port = free_port()?;
            let command = [
                redis_server,
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.to_string_lossy(),
            ]
            .map(str::to_owned)
            .to_vec();
            let mut redis = Proc {
                name: "redis".into(),
                port,
                command,
                log: dir.join("redis.log"),
                child: None,
            };
            redis
                .start()
                .context("is redis-server installed? (--redis-server)")?;
            wait_accepting(redis.addr(), PATIENCE).await?;
            node_args = vec!["--redis".to_owned(), format!("redis://127.0.0.1:{port}/0")];
            cluster.redis = Some(redis);
        } else {
            let history = dir.join("history");
            node_args = vec![
                "--history-dir".to_owned(),
                history.to_string_lossy().into_owned(),
            ];
        }
        for i in 0..nodes {
            let port = free_port()?;
            let mut command = vec![
                exe.clone(),
                "serve".into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--tick-interval".into(),
                "0".into(),
            ];
            command.extend(node_args.iter().cloned());
            let mut node = Proc {
                name: format!("node {i}"),
                port,
                command,
                log: dir.join(format!("node-{i}.log")),
                child: None,
            };
            node.start()?;
            cluster.nodes.push(node);
        }
        for n in &cluster.nodes {
            wait_accepting(n.addr(), PATIENCE).await?;
        }
        Ok(cluster)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every node's address (kept across its restarts).
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Proc::addr).collect()
    }

    pub(super) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The pid of node `i`, while it runs.
    pub(super) fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].pid()
    }

    /// Stop node `i` with `signal` (`KILL` or `TERM`), wait `down`, start it again.
    pub(super) async fn restart_node(
        &mut self,
        i: usize,
        signal: &str,
        down: Duration,
    ) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        node.stop(signal).await?;
        tokio::time::sleep(down).await;
        node.start()?;
        wait_accepting(node.addr(), PATIENCE).await
    }

    /// Pause Redis (SIGSTOP) for `pause`, then let it go on (SIGCONT).
    pub(super) async fn pause_redis(&mut self, pause: Duration) -> anyhow::Result<()> {
        let redis = self.redis.as_ref().context("no Redis in this mode")?;
        redis.signal("STOP")?;
        tokio::time::sleep(pause).await;
        redis.signal("CONT")
    }

    /// SIGKILL Redis, wait `down`, start it again (empty: it keeps nothing on disk).
    pub(super) async fn restart_redis(&mut self, down: Duration) -> anyhow::Result<()> {
        let redis = self.redis.as_mut().context("no Redis in this mode")?;
        redis.stop("KILL").await?;
        tokio::time::sleep(down).await;
        redis.start()?;
        wait_accepting(redis.addr(), PATIENCE).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes first, so that none sees its Redis vanish at the end.
        self.nodes.clear();
        self.redis = None;
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
