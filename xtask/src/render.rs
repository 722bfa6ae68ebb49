//! `cargo xtask render`: what Helm renders for an environment and variant, exactly as the
//! snapshot tests render it (both build the release with [`crate::chart::release_spec`]).
use anyhow::Result;
use xshell::Shell;

use crate::chart::{self, Env, Variant};
use crate::helm::Helm;

/// Prints the manifests of `env` in shape `variant`, at `tag` (default: the chart's appVersion),
/// pinned to `digest` when given (environments that require signatures render only pinned tags).
pub fn render(sh: &Shell, env: Env, variant: Variant, tag: Option<&str>, digest: Option<&str>) -> Result<()> {
    let mut release = chart::release_spec(env, variant, tag);
    if let Some(digest) = digest {
        crate::image::check_digest(digest)?;
        let tag = tag.map(str::to_owned).unwrap_or(chart::app_version()?);
        release.set.push(chart::digest_set(&crate::image::Pinned { repository: String::new(), tag, digest: digest.to_owned() }));
    }
    let manifests = Helm::new(sh)?.template(&chart::chart_dir(), &release)?;
    print!("{manifests}");
    Ok(())
}
