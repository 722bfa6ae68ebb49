//! The release as Helm and the cluster see it: its revisions, its values, the objects the chart
//! names after it, and whether the live Deployment still runs what Helm last applied.
use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;

use super::Flow;
use crate::helm::Revision;

/// The chart's name (helm/model-server/Chart.yaml).
const CHART_NAME: &str = "model-server";

/// The chart's base name for a release (`model-server.fullname` in _helpers.tpl, no overrides).
pub fn fullname(release: &str) -> String {
    let full = if release.contains(CHART_NAME) { release.to_owned() } else { format!("{release}-{CHART_NAME}") };
    full.chars().take(52).collect::<String>().trim_end_matches('-').to_owned()
}

/// The Deployment serving production traffic.
pub fn stable_deployment(release: &str) -> String {
    fullname(release)
}

pub fn canary_deployment(release: &str) -> String {
    format!("{}-canary", fullname(release))
}

/// Label selector for the release's serving pods, every track (the `helm test` pod has no track).
pub fn pod_selector(release: &str) -> String {
    format!("app.kubernetes.io/name={CHART_NAME},app.kubernetes.io/instance={release},shipshape.dev/track")
}

/// What Helm says about the release now.
pub struct ReleaseState {
    /// Oldest first; empty when the release is not installed.
    pub history: Vec<Revision>,
    /// The latest revision's values with the chart's defaults (Null when not installed).
    pub values: Value,
}

impl ReleaseState {
    pub fn read(flow: &Flow) -> Result<ReleaseState> {
        let t = &flow.target;
        let history = flow.helm.history(&t.release, &t.namespace, &t.kubeconfig)?;
        let values = if history.is_empty() { Value::Null } else { flow.helm.values(&t.release, &t.namespace, &t.kubeconfig, None, true)? };
        Ok(ReleaseState { history, values })
    }

    pub fn current(&self) -> Option<&Revision> {
        self.history.last()
    }

    pub fn is_installed(&self) -> bool {
        !self.history.is_empty()
    }

    /// The newest revision Helm says is deployed.
    pub fn deployed(&self) -> Option<&Revision> {
        self.history.iter().rev().find(|r| r.status == "deployed")
    }

    pub fn canary_enabled(&self) -> bool {
        canary_enabled(&self.values)
    }

    /// `repository:tag` of the stable track in these values.
    pub fn stable_image(&self) -> Option<String> {
        stable_image(&self.values, self.current()?)
    }
}

pub fn canary_enabled(values: &Value) -> bool {
    values["canary"]["enabled"].as_bool().unwrap_or(false)
}

/// The stable image a revision's values (with defaults) give: the tag defaults to appVersion.
pub fn stable_image(values: &Value, revision: &Revision) -> Option<String> {
    let repository = values["image"]["repository"].as_str()?;
    let tag = values["image"]["tag"].as_str().filter(|t| !t.is_empty()).unwrap_or(&revision.app_version);
    Some(format!("{repository}:{tag}"))
}

/// The tag part of an image reference.
pub fn tag_of(image: &str) -> &str {
    image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("latest")
}

/// A change made to the stable Deployment behind Helm's back (`kubectl rollout undo`,
/// `kubectl set image`): the live image differs from the one Helm last applied.
pub struct Drift {
    pub live_image: String,
    pub helm_image: String,
    pub revision: u32,
    /// Field managers other than Helm that own parts of the pod template.
    pub managers: Vec<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Deployment runs {} but Helm revision {} applied {}: it was changed behind Helm's back{}",
            self.live_image,
            self.revision,
            self.helm_image,
            if self.managers.is_empty() { String::new() } else { format!(" (by {})", self.managers.join(", ")) }
        )
    }
}

/// The stable Deployment's live state against Helm's, if they differ.
pub async fn drift(client: &kube::Client, namespace: &str, release: &str, state: &ReleaseState) -> Result<Option<Drift>> {
    let (Some(helm_image), Some(current)) = (state.stable_image(), state.current()) else {
        return Ok(None);
    };
    let name = stable_deployment(release);
    let Some(deployment) = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(&name)
        .await
        .with_context(|| format!("reading Deployment {name}"))?
    else {
        return Ok(None);
    };
    let live_image = deployment_image(&deployment).unwrap_or_default();
    if live_image == helm_image {
        return Ok(None);
    }
    let managers = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .filter(|m| m != "helm" && m != "kube-controller-manager")
        .collect();
    Ok(Some(Drift { live_image, helm_image, revision: current.revision, managers }))
}

/// The image of a Deployment's serving container (the chart's first container).
pub fn deployment_image(deployment: &Deployment) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone()
}

/// The release's serving pods (stable and canary) that are ready, not on their way out.
pub async fn ready_pods(client: &kube::Client, namespace: &str, release: &str) -> Result<Vec<k8s_openapi::api::core::v1::Pod>> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods.list(&kube::api::ListParams::default().labels(&pod_selector(release))).await.context("listing the release's pods")?;
    Ok(listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && crate::k8s::wait::pod_is_ready(p))
        .collect())
}

/// The container port named `http` (the chart's), or 8000.
pub fn http_port(pod: &k8s_openapi::api::core::v1::Pod) -> u16 {
    let ports = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.ports.as_ref());
    ports.into_iter().flatten().find(|p| p.name.as_deref() == Some("http")).map(|p| p.container_port as u16).unwrap_or(8000)
}

/// Secret name and key of the admin token in a release's values.
pub fn admin_token_secret(values: &Value) -> (String, String) {
    let env = &values["env"];
    (
        env["adminTokenSecretName"].as_str().unwrap_or("model-server-admin-token").to_owned(),
        env["adminTokenSecretKey"].as_str().unwrap_or("token").to_owned(),
    )
}

/// The track (stable, canary) of a pod.
pub fn track_of(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get("shipshape.dev/track").cloned()).unwrap_or_default()
}
