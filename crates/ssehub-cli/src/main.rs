//! `ssehub`: the demo server and the everyday tools around it.
//!
//! - `ssehub serve` (the default): the demo of the seed: page at `/`, `/sse`, a ticker,
//!   `POST /publish` and `GET /stats`, on 127.0.0.1:2015 (`--bind 0.0.0.0` to expose it,
//!   `--publish-token` to guard it); for its operator `/metrics`, `/rooms`,
//!   `/rooms/{room}` and the live `/dashboard` (behind the same token).
//! - `ssehub listen URL`: a terminal SSE client.
//! - `ssehub publish`: post one event to a running server.
//! - `ssehub bench`: a load generator that reports deliveries, latency and server cost.
//! - `ssehub soak`: a time-bounded abuse run that checks nothing is lost or left open.
//! - `ssehub top`: a running hub at a glance, refreshed every second.

mod bench;
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
    Serve(serve::Args),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = match cli.command {
        Some(c) => c,
        // `ssehub` alone serves the demo; flags still come from the environment.
        None => Command::Serve(serve::Args::from_env()?),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match command {
            Command::Serve(a) => serve::run(a).await,
            Command::Listen(a) => listen::run(a).await,
            Command::Publish(a) => publish::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::BenchAgent(a) => bench::run_agent(a).await,
            Command::Soak(a) => soak::run(a).await,
            Command::Top(a) => top::run(a).await,
        }
    })
}
