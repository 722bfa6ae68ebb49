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

/// An exclusive hold on one thing being made in the cache (a stage, a tool), released when the
/// returned file is dropped. Builders build into `<thing>.partial` and treat a `.partial` they
/// find as an interrupted build's, which they delete: without the hold, a second builder of the
/// same thing (the other lane of `cargo xtask test`, or a `cargo xtask up` started beside it)
/// deleted the first one's work in progress. The second waits instead, then finds it made.
pub fn hold(lock_file: &std::path::Path, what: &str) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    if let Some(dir) = lock_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file)
        .with_context(|| format!("opening {}", lock_file.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            println!("[wait]   {what}: being made by another build (this run's other lane, or another shipshape command); waiting for it");
            file.lock().with_context(|| format!("waiting for {}", lock_file.display()))?;
        }
        Err(std::fs::TryLockError::Error(err)) => return Err(err).with_context(|| format!("locking {}", lock_file.display())),
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    /// A second holder waits until the first lets go; it never runs beside it.
    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("thing.lock");
        let first = super::hold(&lock, "thing").unwrap();
        let (done, waited) = std::sync::mpsc::channel();
        let lock_for_second = lock.clone();
        let second = std::thread::spawn(move || {
            let _held = super::hold(&lock_for_second, "thing").unwrap();
            done.send(()).unwrap();
        });
        assert!(waited.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "the second holder ran beside the first");
        drop(first);
        waited.recv_timeout(std::time::Duration::from_secs(10)).expect("the second holder never got the thing after the first let go");
        second.join().unwrap();
    }
}
