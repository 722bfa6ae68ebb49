//! Every git call shipshape makes: where a release was built from (its provenance).
use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;

/// The checkout a release is built from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub commit: String,
    /// Uncommitted changes to what the image is built from ([`IMAGE_INPUTS`]): the build is not
    /// exactly `commit`.
    pub dirty: bool,
    /// `origin`'s URL, or the checkout's path when it has none.
    pub repository: String,
    /// The ref the release was built from: `$GITHUB_REF` in GitHub Actions (a checkout there is
    /// detached), else the branch checked out; empty when detached.
    pub git_ref: String,
}

/// What the model-server image is built from (cluster/app_images.rs): a change elsewhere (the
/// tests, the docs, xtask's other commands) does not change the image, and does not make a
/// release built beside it dirty.
pub const IMAGE_INPUTS: &[&str] = &["server", "Cargo.toml", "Cargo.lock", ".cargo", "deploy/image", "xtask/src/cluster/app_images.rs"];

pub fn source(sh: &Shell) -> Result<Source> {
    let commit =
        read_or_explain(cmd!(sh, "git rev-parse HEAD")).context("reading the checkout's commit (git rev-parse HEAD)")?.trim().to_owned();
    let inputs = IMAGE_INPUTS;
    let dirty = !read_or_explain(cmd!(sh, "git status --porcelain --untracked-files=normal -- {inputs...}"))?.trim().is_empty();
    let repository = match read_or_explain(cmd!(sh, "git remote get-url origin")) {
        Ok(url) => url.trim().to_owned(),
        Err(_) => format!("file://{}", crate::repo_root().display()),
    };
    let git_ref = match std::env::var("GITHUB_REF").ok().filter(|r| !r.is_empty()) {
        Some(github_ref) => github_ref,
        None => read_or_explain(cmd!(sh, "git symbolic-ref -q HEAD")).unwrap_or_default().trim().to_owned(),
    };
    Ok(Source { commit, dirty, repository, git_ref })
}
