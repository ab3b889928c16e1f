//! `ssehub bench`. (Being written.)

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssehub bench` is not written yet")
}
