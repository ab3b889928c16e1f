//! `ssehub`: the demo server and the everyday tools around it.
//!
//! - `ssehub serve` (the default): the demo of the seed: page at `/`, `/sse`, a ticker,
//!   `POST /publish` and `GET /stats`, on 127.0.0.1:2015 (`--bind 0.0.0.0` to expose it,
//!   `--publish-token` to guard it); for its operator `/metrics`, `/rooms`,
//!   `/rooms/{room}` and the live `/dashboard` (behind the same credential).
//!   `ssehub serve --config FILE` reads a TOML configuration (`config.rs`).
//! - `ssehub check-config FILE`: check a configuration and print it as `serve` would run.
//! - `ssehub listen URL`: a terminal SSE client.
//! - `ssehub publish`: post one event to a running server.
//! - `ssehub bench`: a load generator that reports deliveries, latency and server cost.
//! - `ssehub soak`: a time-bounded abuse run that checks nothing is lost or left open.
//! - `ssehub top`: a running hub at a glance, refreshed every second.
// The workspace only denies unsafe code (a library test needs it); what ships forbids it.
#![forbid(unsafe_code)]

mod bench;
mod config;
mod fd_limit;
mod hub_client;
mod listen;
mod procfs;
mod publish;
mod serve;
mod server_process;
mod soak;
mod top;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ssehub",
    version,
    about = "Server-Sent Events hub: demo server, listener, publisher, load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo server (the default when no command is given).
    // Boxed: the largest arguments by far, and the enum is only as large as its largest.
    Serve(Box<serve::Args>),
    /// Check a configuration file (with the environment's overrides) and print the
    /// effective configuration, secrets hidden.
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
    },
    /// Connect to an SSE endpoint and print its events.
    Listen(listen::Args),
    /// Publish one event through a server's POST /publish.
    Publish(publish::Args),
    /// Load-test a server: subscribers, publishes, latency and server cost.
    Bench(bench::Args),
    /// Hold a share of `ssehub bench --agents`' subscribers (started by the bench).
    #[command(hide = true)]
    BenchAgent(bench::AgentArgs),
    /// Run a time-bounded abuse mix (churn, slow readers, rooms) and check nothing is lost.
    Soak(soak::Args),
    /// Watch a running server: connections, rates, largest rooms, drops (like `top`).
    Top(top::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        // `ssehub` alone serves the demo; flags still come from the environment.
        None => Command::Serve(Box::new(serve::Args::from_env()?)),
    };
    // The configuration is read before logging starts: it says the log level.
    let config = match &command {
        Command::Serve(a) => Some(a.config()?),
        Command::CheckConfig { file } => {
            let config = config::Config::load(Some(file))?;
            config.validate()?;
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            if config.mercure.enabled {
                eprintln!("{}", config.describe_mercure());
            }
            print!("{}", config.to_redacted_toml());
            return Ok(());
        }
        _ => None,
    };
    let level = config.as_ref().map_or("info", |c| c.log.level.as_str());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    for w in config.iter().flat_map(|c| &c.warnings) {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match command {
            Command::Serve(_) => serve::run(config.expect("read above")).await,
            Command::CheckConfig { .. } => unreachable!("answered above"),
            Command::Listen(a) => listen::run(a).await,
            Command::Publish(a) => publish::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::BenchAgent(a) => bench::run_agent(a).await,
            Command::Soak(a) => soak::run(a).await,
            Command::Top(a) => top::run(a).await,
        }
    })
}
