//! Every kind call shipshape makes, with the pinned kind (see tools.rs).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::process::read_or_explain;
use crate::tools::KIND;

/// A cluster that is up, the kubeconfig that reaches it, and the one API connection every
/// step of a command shares (opened on first use: the kubeconfig exists only once kind wrote it).
pub struct RunningCluster {
    pub name: String,
    pub kubeconfig: PathBuf,
    connection: std::sync::OnceLock<crate::k8s::Connection>,
}

impl RunningCluster {
    pub fn new(name: String, kubeconfig: PathBuf) -> RunningCluster {
        RunningCluster { name, kubeconfig, connection: std::sync::OnceLock::new() }
    }

    /// The cluster's API (its kubeconfig's current context: kind names it after the cluster).
    pub fn api(&self) -> Result<&crate::k8s::Connection> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection);
        }
        let opened = crate::k8s::Connection::open(crate::k8s::ClusterAccess::current(&self.kubeconfig))?;
        // Two threads may open at once (the suite shares a cluster): the first stored wins.
        Ok(self.connection.get_or_init(|| opened))
    }
}

pub struct Kind<'a> {
    sh: &'a Shell,
    bin: PathBuf,
}

impl<'a> Kind<'a> {
    pub fn new(sh: &'a Shell) -> Result<Kind<'a>> {
        Ok(Kind { sh, bin: KIND.find(sh)? })
    }

    pub fn clusters(&self) -> Result<Vec<String>> {
        let bin = &self.bin;
        // "No kind clusters found." goes to stderr; stdout lists one name per line.
        Ok(read_or_explain(cmd!(self.sh, "{bin} get clusters"))?.lines().map(str::to_owned).collect())
    }

    /// Creates the cluster; kind prints its own progress. The kubeconfig goes to `kubeconfig`
    /// only: the user's default kubeconfig is not touched.
    pub fn create(&self, name: &str, image: &str, config: &Path, kubeconfig: &Path) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} create cluster --name {name} --image {image} --config {config} --kubeconfig {kubeconfig}")
            .run()
            .with_context(|| format!("kind could not create cluster {name} (its output is above)"))
    }

    pub fn delete(&self, name: &str, kubeconfig: &Path) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} delete cluster --name {name} --kubeconfig {kubeconfig}")
            .run()
            .with_context(|| format!("kind could not delete cluster {name}"))
    }

    /// The cluster's node containers.
    pub fn nodes(&self, name: &str) -> Result<Vec<String>> {
        let bin = &self.bin;
        Ok(read_or_explain(cmd!(self.sh, "{bin} get nodes --name {name}"))?.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect())
    }

    /// (Re)writes the cluster's credentials into `kubeconfig`.
    pub fn export_kubeconfig(&self, name: &str, kubeconfig: &Path) -> Result<()> {
        let bin = &self.bin;
        read_or_explain(cmd!(self.sh, "{bin} export kubeconfig --name {name} --kubeconfig {kubeconfig}"))?;
        Ok(())
    }
}
