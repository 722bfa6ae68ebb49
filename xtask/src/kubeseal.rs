//! Every kubeseal call: sealing one value for one Secret with the cluster's Sealed Secrets
//! controller key. The value goes in on stdin, never on the command line.
use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::k8s::ClusterAccess;
use crate::process::read_or_explain;
use crate::tools::KUBESEAL;

/// Where the controller runs (the name kubeseal looks for by default, and its namespace).
pub const CONTROLLER_NAMESPACE: &str = "kube-system";
pub const CONTROLLER_NAME: &str = "sealed-secrets-controller";

pub struct Kubeseal<'a> {
    sh: &'a Shell,
    bin: PathBuf,
}

impl<'a> Kubeseal<'a> {
    pub fn new(sh: &'a Shell) -> Result<Kubeseal<'a>> {
        Ok(Kubeseal { sh, bin: KUBESEAL.find(sh)? })
    }

    /// `kubeseal --raw`: `value` encrypted for key `key`'s Secret `name` in `namespace` (strict
    /// scope: it unseals only there, under that name), fetching the controller's certificate
    /// through the API server.
    pub fn seal(&self, cluster: &ClusterAccess, namespace: &str, name: &str, value: &str) -> Result<String> {
        let bin = &self.bin;
        // kubeseal spells the context flag `--context` (kubectl's), not helm's `--kube-context`.
        let kubeconfig = &cluster.kubeconfig;
        let context: Vec<String> = cluster.context.iter().flat_map(|c| ["--context".to_owned(), c.clone()]).collect();
        let (controller_namespace, controller) = (CONTROLLER_NAMESPACE, CONTROLLER_NAME);
        let sealed = read_or_explain(
            cmd!(
                self.sh,
                "{bin} --raw --scope strict --namespace {namespace} --name {name} --from-file=/dev/stdin --kubeconfig {kubeconfig} {context...} --controller-namespace {controller_namespace} --controller-name {controller}"
            )
            .stdin(value),
        )
        .with_context(|| format!("sealing a value for Secret {namespace}/{name}"))?;
        Ok(sealed.trim().to_owned())
    }
}
