//! Every helm call shipshape makes. Architecture invariant: no other module runs helm.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;
use crate::tools::HELM;

/// The chart shipshape deploys, relative to the repository root.
pub const CHART_DIR: &str = "helm/model-server";

pub struct Helm<'a> {
    sh: &'a Shell,
    bin: PathBuf,
}

/// One release as rendered or deployed: name, namespace, values files (in order) and `--set`s.
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub values_files: Vec<PathBuf>,
    pub set: Vec<(String, String)>,
}

impl Release {
    /// `-f a.yaml -f b.yaml --set k=v ...`, in the order helm gives precedence.
    fn value_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.values_files {
            args.push("--values".to_owned());
            args.push(file.display().to_string());
        }
        for (key, value) in &self.set {
            args.push("--set-string".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }
}

impl<'a> Helm<'a> {
    /// The pinned helm (see `tools.rs`); fails with the fix when it is not installed.
    pub fn new(sh: &'a Shell) -> Result<Self> {
        Ok(Helm { sh, bin: HELM.find(sh)? })
    }

    /// `helm template`: the manifests the release would apply, with no cluster involved.
    pub fn template(&self, chart: &Path, release: &Release) -> Result<String> {
        let (bin, name, namespace, values) = (&self.bin, &release.name, &release.namespace, release.value_args());
        read_or_explain(cmd!(self.sh, "{bin} template {name} {chart} --namespace {namespace} {values...}"))
            .with_context(|| format!("rendering release {name}"))
    }

    /// `helm upgrade --install`: applies the release and returns at once; callers wait with
    /// their own watches (which fail fast, unlike helm's timeout).
    pub fn upgrade_install(&self, chart: &Path, release: &Release, kubeconfig: &Path) -> Result<()> {
        let (bin, name, namespace, values) = (&self.bin, &release.name, &release.namespace, release.value_args());
        read_or_explain(cmd!(
            self.sh,
            "{bin} upgrade --install {name} {chart} --namespace {namespace} --kubeconfig {kubeconfig} --history-max 20 {values...}"
        ))
        .with_context(|| format!("helm upgrade --install {name}"))?;
        Ok(())
    }

    /// `helm test`: runs the chart's test hook pods; `--logs` puts their output in the result
    /// (and so in the error when one fails).
    pub fn test(&self, release: &Release, kubeconfig: &Path) -> Result<String> {
        let (bin, name, namespace) = (&self.bin, &release.name, &release.namespace);
        read_or_explain(cmd!(self.sh, "{bin} test {name} --namespace {namespace} --kubeconfig {kubeconfig} --timeout 2m --logs"))
            .with_context(|| format!("helm test {name}"))
    }

    /// `helm lint --strict`: warnings are failures.
    pub fn lint_strict(&self, chart: &Path, release: &Release) -> Result<()> {
        let (bin, namespace, values) = (&self.bin, &release.namespace, release.value_args());
        read_or_explain(cmd!(self.sh, "{bin} lint --strict {chart} --namespace {namespace} {values...}"))
            .with_context(|| format!("linting release {}", release.name))?;
        Ok(())
    }
}
