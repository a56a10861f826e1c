//! `imagelabel demo` and `imagelabel sim`.

use std::process::ExitCode;

use super::{DemoArgs, SimArgs};

pub async fn serve_sim(_args: SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the simulator is not wired yet")
}

pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the demo is not wired yet")
}
