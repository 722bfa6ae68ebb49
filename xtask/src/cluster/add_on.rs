//! Installing an add-on (the Sealed Secrets controller, External Secrets Operator, Prometheus,
//! the NetworkPolicy enforcer): its image, built here from its Go module, reaches the cluster
//! through the local registry as every image does; its chart is installed in its namespace; the
//! install ends when its Deployment has rolled out or its DaemonSet runs on every node.
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use super::docker::Docker;
use super::kind::RunningCluster;
use crate::helm::{Change, Writer};

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
    /// Install without the chart's `dependencies:`: for an optional, disabled one that lives
    /// where this machine cannot fetch it (Helm refuses a chart whose listed dependencies are
    /// absent, enabled or not).
    pub drop_dependencies: bool,
    /// What runs it, named as the release.
    pub workload: Workload,
}

/// An add-on's workload, which its install waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A controller: installed when its Deployment has rolled out.
    Deployment,
    /// A per-node agent (the NetworkPolicy enforcer): installed when every node runs it ready.
    DaemonSet,
}

/// Pushes `image` to the local registry, installs or upgrades the chart, and waits for the rollout.
pub fn install(sh: &Shell, cluster: &RunningCluster, image: &str, chart: &AddOnChart) -> Result<()> {
    let docker = Docker::connect(sh)?;
    super::registry::ensure_running(sh, &docker)?;
    super::app_images::push(&docker, image, super::registry::HOST)?;
    let AddOnChart { what, release, namespace, .. } = *chart;
    let running = chart_copy(chart.chart, super::go_image::tag_of(image), chart.drop_dependencies)?;
    let api = cluster.api()?;
    api.run(crate::k8s::ensure_namespace(api.client(), namespace))?;
    #[allow(clippy::disallowed_methods)] // an add-on's own release, no flow around it
    let writer = Writer::new(sh)?;
    writer.upgrade_with(running.path(), release, namespace, &chart.values, &Change::new(api.access(), format!("shipshape: {what}")))?;
    let kind = match chart.workload {
        Workload::Deployment => "deploy",
        Workload::DaemonSet => "daemonset",
    };
    api.run(async {
        let client = api.client();
        match chart.workload {
            Workload::Deployment => crate::k8s::wait::deployment_rolled_out(client, namespace, release, ROLLOUT_TIMEOUT).await,
            Workload::DaemonSet => crate::k8s::wait::daemon_set_ready(client, namespace, release, ROLLOUT_TIMEOUT).await,
        }
    })
    .with_context(|| format!("{what} did not start: `kubectl logs -n {namespace} {kind}/{release}` says why"))?;
    Ok(())
}

/// The copy of `chart` that is installed: its appVersion is the image that runs, so `helm list`
/// tells the truth (upstream bumps a chart's appVersion when it packages a release, so a
/// module's own chart names the release before it: Sealed Secrets v0.40.0's says 0.39.1,
/// External Secrets v0.20.4's v0.20.3), and, if asked, it lists no dependencies.
fn chart_copy(chart: &Path, app_version: &str, drop_dependencies: bool) -> Result<tempfile::TempDir> {
    let copy = tempfile::tempdir()?;
    super::layout::copy_tree(chart, copy.path(), &|_| true)?;
    let chart_yaml = copy.path().join("Chart.yaml");
    let mut text = std::fs::read_to_string(&chart_yaml).with_context(|| format!("reading {}", chart_yaml.display()))?;
    if drop_dependencies {
        text = without_dependencies(&text);
        let _ = std::fs::remove_file(copy.path().join("Chart.lock"));
    }
    std::fs::write(&chart_yaml, set_app_version(&text, app_version))?;
    Ok(copy)
}

/// Chart.yaml without its `dependencies:` block (which ends at the next top-level key).
fn without_dependencies(chart_yaml: &str) -> String {
    let kept: Vec<&str> = match chart_yaml.find("\ndependencies:") {
        Some(start) => {
            let (before, after) = chart_yaml.split_at(start + 1);
            let rest = after.lines().skip(1).skip_while(|l| l.starts_with(' ') || l.starts_with('-') || l.is_empty());
            before.lines().chain(rest).collect()
        }
        None => chart_yaml.lines().collect(),
    };
    kept.join("\n") + "\n"
}

fn set_app_version(chart_yaml: &str, version: &str) -> String {
    let line = format!("appVersion: {version:?}");
    let mut lines: Vec<String> = chart_yaml.lines().filter(|l| !l.starts_with("appVersion:")).map(str::to_owned).collect();
    lines.push(line);
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_version_is_the_running_image_s_whether_the_chart_had_one_or_not() {
        let sealed = "apiVersion: v2\nappVersion: 0.39.1\nname: sealed-secrets\nversion: 2.19.3\n";
        assert_eq!(
            super::set_app_version(sealed, "v0.40.0"),
            "apiVersion: v2\nname: sealed-secrets\nversion: 2.19.3\nappVersion: \"v0.40.0\"\n"
        );
        let ours = "apiVersion: v2\nname: prometheus\nversion: 0.1.0\n";
        assert!(super::set_app_version(ours, "v0.316.0").ends_with("appVersion: \"v0.316.0\"\n"));
    }

    #[test]
    fn the_chart_copy_lists_no_dependencies_and_keeps_the_rest() {
        let chart = tempfile::tempdir().unwrap();
        std::fs::write(
            chart.path().join("Chart.yaml"),
            "apiVersion: v2\nname: external-secrets\nmaintainers:\n  - name: a\ndependencies:\n  - name: bitwarden-sdk-server\n    \
             version: v0.5.1\n    condition: bitwarden-sdk-server.enabled\nversion: 0.20.4\n",
        )
        .unwrap();
        std::fs::write(chart.path().join("Chart.lock"), "dependencies: []\n").unwrap();
        std::fs::create_dir(chart.path().join("templates")).unwrap();
        std::fs::write(chart.path().join("templates/a.yaml"), "kind: ConfigMap\n").unwrap();
        let copy = super::chart_copy(chart.path(), "v0.20.4-kubernetes-only", true).unwrap();
        let text = std::fs::read_to_string(copy.path().join("Chart.yaml")).unwrap();
        assert_eq!(
            text,
            "apiVersion: v2\nname: external-secrets\nmaintainers:\n  - name: a\nversion: 0.20.4\nappVersion: \"v0.20.4-kubernetes-only\"\n"
        );
        assert!(copy.path().join("templates/a.yaml").is_file());
        assert!(!copy.path().join("Chart.lock").exists());
        // Not asked: the dependencies stay.
        let kept = super::chart_copy(chart.path(), "v1", false).unwrap();
        assert!(std::fs::read_to_string(kept.path().join("Chart.yaml")).unwrap().contains("dependencies:"));
    }
}
