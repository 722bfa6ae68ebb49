//! Installing an add-on (the Sealed Secrets controller, External Secrets Operator, Prometheus):
//! its image, built here from its Go module, reaches the cluster through the local registry as
//! every image does; its chart is installed in its namespace; the install ends when its
//! Deployment has rolled out.
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use super::docker::Docker;
use super::lifecycle::RunningCluster;
use crate::helm::{Change, Helm};

/// How long an add-on's pods may take to start (its image is in the local registry already).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

/// One add-on's chart: its release, which names its Deployment too, and the values that point it
/// at the pushed image.
pub struct AddOnChart<'a> {
    /// Said in Helm's history and in errors ("External Secrets Operator").
    pub what: &'static str,
    pub chart: &'a Path,
    pub release: &'static str,
    pub namespace: &'static str,
    pub values: serde_json::Value,
}

/// Pushes `image` to the local registry, installs or upgrades the chart, and waits for the rollout.
pub fn install(sh: &Shell, cluster: &RunningCluster, image: &str, chart: &AddOnChart) -> Result<()> {
    let docker = Docker::connect(sh)?;
    super::registry::ensure_running(sh, &docker)?;
    super::app_images::push(&docker, image, super::registry::HOST)?;
    let AddOnChart { what, release, namespace, .. } = *chart;
    let kubeconfig = &cluster.kubeconfig;
    crate::k8s::block_on(async { crate::k8s::ensure_namespace(&crate::k8s::client(kubeconfig).await?, namespace).await })?;
    Helm::new(sh)?.upgrade_with(chart.chart, release, namespace, &chart.values, &Change::new(kubeconfig, format!("shipshape: {what}")))?;
    crate::k8s::block_on(async {
        let client = crate::k8s::client(kubeconfig).await?;
        crate::k8s::wait::deployment_rolled_out(&client, namespace, release, ROLLOUT_TIMEOUT).await
    })
    .with_context(|| format!("{what} did not start: `kubectl logs -n {namespace} deploy/{release}` says why"))?;
    Ok(())
}
