//! `ssehub serve`: the demo server. (Being written.)

use clap::Parser;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "SSEHUB_PORT", default_value_t = 2015)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "SSEHUB_BIND", default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
}

#[derive(Parser)]
struct Standalone {
    #[command(flatten)]
    args: Args,
}

impl Args {
    /// The arguments of a bare `ssehub`: defaults, overridden by environment variables.
    pub fn from_env() -> anyhow::Result<Args> {
        Ok(Standalone::try_parse_from(["ssehub"])?.args)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let sse = ssehub::SseOptions::new();
    ssehub::Server::new((args.bind, args.port)).sse(sse).run().await?;
    Ok(())
}
