//! Cached build stages. Each stage's output lives in `<cache>/stages/<name>-<key>/`, where the
//! key spells out the pinned inputs (versions, and a recipe revision bumped whenever the recipe
//! changes). A stage is built into `<name>-<key>.partial/` and renamed into place only when it
//! finished, so an interrupted build resumes at the first unfinished stage and never yields a
//! half-built result. Each stage logs to `<cache>/logs/<name>-<key>.log`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub struct Stages {
    dir: PathBuf,
    logs: PathBuf,
    report: Vec<(String, Duration, bool)>,
}

impl Stages {
    pub fn new() -> Result<Stages> {
        let root = crate::cache::root()?;
        let (dir, logs) = (root.join("stages"), root.join("logs"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::create_dir_all(&logs)?;
        Ok(Stages { dir, logs, report: Vec::new() })
    }

    /// A log file for work that is not a cached stage (such as an image rebuilt every time).
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.logs.join(format!("{name}.log")))
    }

    /// Where a finished stage's output lives.
    fn done_dir(&self, name: &str, key: &str) -> PathBuf {
        self.dir.join(format!("{name}-{key}"))
    }

    pub fn is_done(&self, name: &str, key: &str) -> bool {
        self.done_dir(name, key).is_dir()
    }

    /// Drops a finished stage whose product turned out to be gone, so the next `get` rebuilds it.
    pub fn forget(&self, name: &str, key: &str) -> Result<()> {
        let done = self.done_dir(name, key);
        if done.exists() {
            remove_dir_all_robust(&done)?;
        }
        Ok(())
    }

    /// The output directory of stage `name` at `key`, built by `build(output_dir, log_file)`
    /// when it is not cached yet. `about` says what the stage makes, for the progress line.
    pub fn get(&mut self, name: &str, key: &str, about: &str, build: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<PathBuf> {
        let id = format!("{name}-{key}");
        let done = self.done_dir(name, key);
        let _held = crate::cache::hold(&self.dir.join(format!("{id}.lock")), name)?;
        if done.is_dir() {
            println!("[cached] {name}: {about}");
            self.report.push((name.to_owned(), Duration::ZERO, true));
            return Ok(done);
        }
        let partial = self.dir.join(format!("{id}.partial"));
        if partial.exists() {
            // Left by an interrupted run (a running one holds the lock): its content cannot be
            // trusted, start the stage over.
            remove_dir_all_robust(&partial)?;
        }
        std::fs::create_dir_all(&partial)?;
        let log = self.logs.join(format!("{id}.log"));
        std::fs::write(&log, "")?;
        println!("[build]  {name}: {about} (log: {})", log.display());
        let started = Instant::now();
        build(&partial, &log).with_context(|| format!("stage `{name}` failed; its log is {}", log.display()))?;
        std::fs::rename(&partial, &done).with_context(|| format!("moving {} into place", done.display()))?;
        let took = started.elapsed();
        println!("[done]   {name} in {:.0?}", took);
        self.report.push((name.to_owned(), took, false));
        Ok(done)
    }

    /// Takes the report of stages built beside these (in another thread, with their own `Stages`).
    pub fn absorb(&mut self, other: Stages) {
        self.report.extend(other.report);
    }

    /// One line per stage: built (with its time) or taken from the cache.
    pub fn print_summary(&self) {
        if self.report.is_empty() {
            return;
        }
        println!("stage timings:");
        for (name, took, cached) in &self.report {
            if *cached {
                println!("  {name:<12} cached");
            } else {
                println!("  {name:<12} {:>6.1}s", took.as_secs_f64());
            }
        }
        let total: Duration = self.report.iter().map(|(_, took, _)| *took).sum();
        println!("  {:<12} {:>6.1}s (stages built side by side overlap)", "sum", total.as_secs_f64());
    }
}

/// Go's module cache makes files read-only; a plain remove fails on them.
fn remove_dir_all_robust(dir: &Path) -> Result<()> {
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    make_writable(dir);
    std::fs::remove_dir_all(dir).with_context(|| format!("removing the interrupted stage {}", dir.display()))
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_dir() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    make_writable(&entry.path());
                }
            }
        }
    }
}
