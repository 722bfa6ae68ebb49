//! `cargo xtask render`: what Helm renders for an environment and variant, exactly as the
//! snapshot tests render it (both build the release with [`crate::chart::release_spec`]).
use anyhow::Result;
use xshell::Shell;

use crate::chart::{self, Env, Variant};
use crate::helm::Helm;

/// Prints the manifests of `env` in shape `variant`, at `tag` (default: the chart's appVersion).
pub fn render(sh: &Shell, env: Env, variant: Variant, tag: Option<&str>) -> Result<()> {
    let manifests = Helm::new(sh)?.template(&chart::chart_dir(), &chart::release_spec(env, variant, tag))?;
    print!("{manifests}");
    Ok(())
}
