//! `cargo xtask render`: what Helm renders for an environment and variant. The snapshot tests
//! call [`release`] too, so the CLI and the tests can never render different things.
use std::path::PathBuf;

use anyhow::Result;
use xshell::Shell;

use crate::cli::{Env, Render, Variant};
use crate::helm::{Helm, Release, CHART_DIR};

/// The release name every environment uses (the runbooks' `<release>`).
pub const RELEASE_NAME: &str = "model-server";

/// The namespace each environment deploys to.
pub fn namespace(env: Env) -> String {
    format!("model-server-{}", env.name())
}

/// Values for one environment and variant: the environment's file, then the variant's.
pub fn values_files(env: Env, variant: Variant) -> Vec<PathBuf> {
    let root = crate::repo_root();
    vec![
        root.join("deploy/envs").join(format!("{}.yaml", env.name())),
        root.join(CHART_DIR).join("ci").join(format!("{}-values.yaml", variant.name())),
    ]
}

pub fn release(env: Env, variant: Variant, tag: Option<&str>) -> Release {
    Release {
        name: RELEASE_NAME.to_owned(),
        namespace: namespace(env),
        values_files: values_files(env, variant),
        set: tag.map(|t| vec![("image.tag".to_owned(), t.to_owned())]).unwrap_or_default(),
        set_typed: Vec::new(),
    }
}

pub fn chart() -> PathBuf {
    crate::repo_root().join(CHART_DIR)
}

impl Render {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let manifests = Helm::new(sh)?.template(&chart(), &release(self.env, self.variant, self.tag.as_deref()))?;
        print!("{manifests}");
        Ok(())
    }
}
