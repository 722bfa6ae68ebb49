//! Every git call shipshape makes: where a release was built from (its provenance).
use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;

/// The checkout a release is built from.
pub struct Source {
    pub commit: String,
    /// Uncommitted changes: the build is not exactly `commit`.
    pub dirty: bool,
    /// `origin`'s URL, or the checkout's path when it has none.
    pub repository: String,
}

pub fn source(sh: &Shell) -> Result<Source> {
    let commit =
        read_or_explain(cmd!(sh, "git rev-parse HEAD")).context("reading the checkout's commit (git rev-parse HEAD)")?.trim().to_owned();
    let dirty = !read_or_explain(cmd!(sh, "git status --porcelain --untracked-files=no"))?.trim().is_empty();
    let repository = match read_or_explain(cmd!(sh, "git remote get-url origin")) {
        Ok(url) => url.trim().to_owned(),
        Err(_) => format!("file://{}", crate::repo_root().display()),
    };
    Ok(Source { commit, dirty, repository })
}
