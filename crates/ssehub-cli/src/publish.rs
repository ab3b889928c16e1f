//! `ssehub publish`. (Being written.)

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssehub publish` is not written yet")
}
