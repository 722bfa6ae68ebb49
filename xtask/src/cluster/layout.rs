//! Directory trees laid out to become images: files placed into them, and the tree packed into
//! the tarball `docker import` takes. The node image and the application images share these.
use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::process::run_logged;

/// Copies `from` (following symlinks, keeping its mode) to `to`, creating `to`'s parents.
pub fn place(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().context("a file's place needs a parent directory")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Packs the tree at `dir` into `tarball` with numeric owners (the tree's, not this machine's names).
pub fn pack(sh: &Shell, dir: &Path, tarball: &Path, log: &Path, what: &str) -> Result<()> {
    run_logged(cmd!(sh, "tar --numeric-owner -C {dir} -cf {tarball} ."), log, what)
}

/// Copies a directory tree, the entries whose name `keep` accepts (the module cache's files are
/// read-only; the copies are writable).
pub fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if !keep(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target, keep)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mut permissions = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions)?;
        }
    }
    Ok(())
}
