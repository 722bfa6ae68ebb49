//! The cache outside the repository where slow-to-make things live (built tools, later images).
//! One place decides where it is, so `tools check` and every builder agree.
use std::path::PathBuf;

/// `$SHIPSHAPE_CACHE`, else `$XDG_CACHE_HOME/shipshape`, else `~/.cache/shipshape`.
pub fn root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SHIPSHAPE_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("shipshape"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("shipshape")),
        None => anyhow::bail!("cannot place the cache: set SHIPSHAPE_CACHE (or HOME) to a writable directory"),
    }
}
