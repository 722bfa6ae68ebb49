//! shipshape's automation, in layers that point down (a tidy test holds it): commands ([`cli`],
//! [`commands`], [`up`], [`test`], [`bench`], [`render`]) -> [`flows`] -> [`cluster`], [`k8s`]
//! and the tool wrappers -> base (process, report, progress, cache, journal, image). External
//! tools are called only from their wrapper ([`helm`], [`go`], [`cosign`], [`crane`], ...),
//! [`cluster`] (kind, docker, the image builds) and [`host`] (apt, dockerd).
pub mod bench;
pub mod cache;
pub mod cargo;
pub mod chart;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod cosign;
pub mod crane;
pub mod flows;
pub mod git;
pub mod go;
pub mod helm;
pub mod host;
pub mod image;
pub mod interrupt;
pub mod journal;
pub mod k8s;
pub mod keys;
pub mod kubeseal;
pub mod mlflow;
mod process;
pub mod progress;
pub mod render;
pub mod report;
pub mod scan;
pub mod signing;
pub mod test;
pub mod tools;
pub mod up;

use std::path::{Path, PathBuf};

/// The repository root: the parent of this crate's directory, fixed at compile time so every
/// command behaves the same whatever directory it is started from.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the root").to_path_buf()
}

/// The one shell every command uses, with its working directory at the repository root.
pub fn repo_shell() -> anyhow::Result<xshell::Shell> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(repo_root());
    Ok(sh)
}
