//! A release's pods as the cluster runs them: the ready ones, their ports and their track.
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::chart;

/// The release's serving pods (stable and canary, or both colours) that are ready, not on their
/// way out.
pub async fn ready(client: &kube::Client, namespace: &str, release: &str) -> Result<Vec<Pod>> {
    ready_matching(client, namespace, &chart::pod_selector(release)).await
}

/// Ready pods matching a label selector, not on their way out.
pub async fn ready_matching(client: &kube::Client, namespace: &str, selector: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods.list(&kube::api::ListParams::default().labels(selector)).await.context("listing the release's pods")?;
    Ok(listed.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none() && super::wait::pod_is_ready(p)).collect())
}

/// The container port named `http` (the chart's), or 8000.
pub fn http_port(pod: &Pod) -> u16 {
    named_port(pod, "http", 8000)
}

/// The serving container's port named `name` (the chart names `http` and `metrics`), or `default`.
pub fn named_port(pod: &Pod, name: &str, default: u16) -> u16 {
    let ports = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.ports.as_ref());
    ports.into_iter().flatten().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port as u16).unwrap_or(default)
}

/// The track (stable, canary) of a pod.
pub fn track_of(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get(chart::TRACK_LABEL).cloned()).unwrap_or_default()
}

/// The node a pod runs on.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}
