//! `cargo xtask test`: the README's test command, and exactly what `.ci/run` runs.
use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::cli::Test;

impl Test {
    pub fn run(self, sh: &Shell) -> Result<()> {
        // The snapshot tests render with the pinned helm: build what the cache lacks first, so
        // a fresh machine needs no separate step.
        crate::tools::install_all(sh).context("installing the pinned tools the tests use")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let extra = self.cargo_args;
        cmd!(sh, "{cargo} test --workspace --locked {extra...}")
            // Snapshots are checked here, never written: a mismatch fails the run.
            .env("INSTA_UPDATE", "no")
            .run()
            .context("the test suite failed (failures are listed above)")?;
        Ok(())
    }
}
