//! The release as Helm and the cluster see it: its revisions, its values, the objects the chart
//! names after it, and whether the live Deployment still runs what Helm last applied.
use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;

use super::Flow;
use crate::helm::Revision;

/// A Helm storage record: base64 text of gzip of JSON (plain JSON in old records), read as `T`:
/// the fields `T` names are built, the rest (the chart's templates, above all) only skipped.
fn decode_helm_record<T: serde::de::DeserializeOwned>(encoded: &[u8]) -> Result<T> {
    use base64::Engine;
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).context("not base64")?;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut text).context("not gzip")?;
        text
    } else {
        bytes
    };
    serde_json::from_slice(&json).context("not JSON")
}

/// A revision's record: every one gives a row of the history; the values (`V` = Value: the
/// chart's defaults and the user's) and the applied objects (`M` = String) are read from the
/// newest only, and skipped, not built, in the others.
#[derive(serde::Deserialize)]
struct Record<V = serde::de::IgnoredAny, M = serde::de::IgnoredAny> {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    info: RecordInfo,
    #[serde(default)]
    chart: RecordChart<V>,
    config: Option<V>,
    manifest: Option<M>,
}

/// Every revision but the newest.
type RecordSummary = Record;
/// The newest revision: the values in force and the objects Helm applied.
type RecordInForce = Record<Value, String>;

impl<V, M> Record<V, M> {
    fn history_row(&self) -> Revision {
        let (info, metadata) = (&self.info, &self.chart.metadata);
        Revision {
            revision: self.version,
            updated: info.last_deployed.clone(),
            status: info.status.clone(),
            chart: format!("{}-{}", metadata.name, metadata.version),
            app_version: metadata.app_version.clone(),
            description: info.description.clone(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RecordInfo {
    last_deployed: String,
    status: String,
    description: String,
}

/// The chart in a record and its default values.
#[derive(serde::Deserialize)]
#[serde(default)]
struct RecordChart<V> {
    metadata: RecordChartMetadata,
    values: Option<V>,
}

impl<V> Default for RecordChart<V> {
    fn default() -> Self {
        RecordChart { metadata: RecordChartMetadata::default(), values: None }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RecordChartMetadata {
    name: String,
    version: String,
    app_version: String,
}

/// The revision in a storage Secret's name, `sh.helm.release.v1.<release>.v<N>`.
fn revision_in_name(name: &str) -> Option<u32> {
    name.rsplit_once(".v")?.1.parse().ok()
}

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
    /// The latest revision's rendered objects, as Helm applied them (empty when not installed).
    pub manifest: String,
}

impl ReleaseState {
    /// Helm's record of the release, read from the cluster (see [`ReleaseState::fetch`]).
    pub fn read(flow: &Flow) -> Result<ReleaseState> {
        flow.block_on(ReleaseState::fetch(&flow.client, &flow.target.namespace, &flow.target.release))
    }

    /// Reads Helm's own record of the release: its storage Secrets `sh.helm.release.v1.<name>.v<N>`
    /// (label owner=helm), each holding one revision as gzip-compressed JSON. One API call instead
    /// of a helm process per question; nothing is written.
    pub async fn fetch(client: &kube::Client, namespace: &str, release: &str) -> Result<ReleaseState> {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
        let listed = secrets
            .list(&kube::api::ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
            .with_context(|| format!("reading Helm's record of release {release}"))?;
        // Every revision gives a history row; only the newest is read for its values and objects
        // (each record holds the whole chart: `verify` should not build ten of them).
        let newest = listed.items.iter().filter_map(|s| revision_in_name(s.metadata.name.as_deref()?)).max();
        let mut history: Vec<Revision> = Vec::with_capacity(listed.items.len());
        let (mut values, mut manifest) = (Value::Null, String::new());
        for secret in &listed.items {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let encoded =
                secret.data.as_ref().and_then(|d| d.get("release")).with_context(|| format!("Helm record {name} has no release"))?;
            let reading = || format!("reading Helm record {name}");
            if newest.is_some_and(|newest| revision_in_name(&name) == Some(newest)) {
                let record: RecordInForce = decode_helm_record(&encoded.0).with_context(reading)?;
                history.push(record.history_row());
                values = record.chart.values.unwrap_or(Value::Null);
                crate::helm::merge(&mut values, &record.config.unwrap_or(Value::Null));
                manifest = record.manifest.unwrap_or_default();
            } else {
                let record: RecordSummary = decode_helm_record(&encoded.0).with_context(reading)?;
                history.push(record.history_row());
            }
        }
        history.sort_by_key(|r| r.revision);
        Ok(ReleaseState { history, values, manifest })
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

    /// `repository:tag` of the stable track (the live colour in blue/green) in these values.
    pub fn stable_image(&self) -> Option<String> {
        stable_image(&self.values, self.current()?)
    }

    /// The live colour when the release runs blue/green.
    pub fn live_slot(&self) -> Option<String> {
        live_slot(&self.values)
    }
}

/// The live colour when these values run blue/green.
pub fn live_slot(values: &Value) -> Option<String> {
    (values["blueGreen"]["enabled"].as_bool() == Some(true))
        .then(|| values["blueGreen"]["activeSlot"].as_str().unwrap_or("blue").to_owned())
}

/// The Deployment serving production traffic under these values: the stable one, or the live
/// colour's in blue/green.
pub fn live_deployment(release: &str, values: &Value) -> String {
    match live_slot(values) {
        Some(slot) => format!("{}-{slot}", fullname(release)),
        None => stable_deployment(release),
    }
}

/// Label selector for the pods that serve production traffic under these values (stable and
/// canary, or the live colour only).
pub fn live_pod_selector(release: &str, values: &Value) -> String {
    match live_slot(values) {
        Some(slot) => format!("{},shipshape.dev/slot={slot}", pod_selector(release)),
        None => pod_selector(release),
    }
}

pub fn canary_enabled(values: &Value) -> bool {
    values["canary"]["enabled"].as_bool().unwrap_or(false)
}

/// The stable image a revision's values (with defaults) give: the tag defaults to appVersion;
/// a tag with a recorded digest runs as `repository:tag@digest` (see the chart's imageDigests).
pub fn stable_image(values: &Value, revision: &Revision) -> Option<String> {
    let repository = values["image"]["repository"].as_str()?;
    let default = values["image"]["tag"].as_str().filter(|t| !t.is_empty()).unwrap_or(&revision.app_version);
    let tag = match live_slot(values) {
        Some(slot) => values["blueGreen"][slot.as_str()]["tag"].as_str().filter(|t| !t.is_empty()).unwrap_or(default),
        None => default,
    };
    Some(image_reference(values, repository, tag))
}

/// `repository:tag`, with `@digest` when these values record one for the tag: exactly the image
/// the chart renders for a workload running `tag`.
pub fn image_reference(values: &Value, repository: &str, tag: &str) -> String {
    match values["imageDigests"][tag].as_str() {
        Some(digest) => format!("{repository}:{tag}@{digest}"),
        None => format!("{repository}:{tag}"),
    }
}

/// An image reference's parts: repository (with any registry host and port), tag, digest.
fn split_reference(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' before the last '/' is a registry port, not a tag.
    let last_part = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_part..].rfind(':') {
        Some(i) => (&name[..last_part + i], Some(&name[last_part + i + 1..]), digest),
        None => (name, None, digest),
    }
}

/// The repository part of an image reference (`localhost:5001/shipshape/model-server`).
pub fn tag_of_repository(image: &str) -> &str {
    split_reference(image).0
}

/// The tag part of an image reference (`latest` when it has none).
pub fn tag_of(image: &str) -> &str {
    split_reference(image).1.unwrap_or("latest")
}

/// The digest part of an image reference, if it is pinned.
pub fn digest_of(image: &str) -> Option<&str> {
    split_reference(image).2
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
    let name = live_deployment(release, &state.values);
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
    // Who made the change: the same judgement of "not Helm, not a controller" as every report.
    let managers = super::ownership::foreign_fields(std::slice::from_ref(&deployment)).into_iter().map(|f| f.manager).collect();
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
    Ok(listed.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none() && crate::k8s::wait::pod_is_ready(p)).collect())
}

/// The container port named `http` (the chart's), or 8000.
pub fn http_port(pod: &k8s_openapi::api::core::v1::Pod) -> u16 {
    named_port(pod, "http", 8000)
}

/// The serving container's port named `name` (the chart names `http` and `metrics`), or `default`.
pub fn named_port(pod: &k8s_openapi::api::core::v1::Pod, name: &str, default: u16) -> u16 {
    let ports = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.ports.as_ref());
    ports.into_iter().flatten().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port as u16).unwrap_or(default)
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

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn references_split_with_registry_ports_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = format!("localhost:5001/shipshape/model-server:v2@{d}");
        assert_eq!(tag_of(&pinned), "v2");
        assert_eq!(tag_of_repository(&pinned), "localhost:5001/shipshape/model-server");
        assert_eq!(digest_of(&pinned), Some(d.as_str()));
        assert_eq!(tag_of("localhost:5001/shipshape/model-server"), "latest", "a port is not a tag");
        assert_eq!(tag_of("shipshape/model-server:0.1.0-abc"), "0.1.0-abc");
        assert_eq!(digest_of("shipshape/model-server:v1"), None);
    }

    #[test]
    fn a_recorded_digest_pins_the_tag() {
        let values = serde_json::json!({"imageDigests": {"v2": "sha256:x"}});
        assert_eq!(image_reference(&values, "r/m", "v2"), "r/m:v2@sha256:x");
        assert_eq!(image_reference(&values, "r/m", "v1"), "r/m:v1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage record as Helm writes it: JSON, gzip, base64.
    fn stored(record: &Value) -> Vec<u8> {
        use base64::Engine;
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(record.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gzip.finish().unwrap()).into_bytes()
    }

    #[test]
    fn a_record_gives_its_history_row_and_the_newest_its_values_and_objects() {
        let record = serde_json::json!({
            "name": "model-server", "version": 7,
            "info": {"status": "deployed", "last_deployed": "2026-12-02T06:00:00Z", "description": "Upgrade complete"},
            "chart": {"metadata": {"name": "model-server", "version": "0.3.0", "appVersion": "1.4.0"},
                      "values": {"replicaCount": 2, "image": {"tag": "a"}},
                      "templates": [{"name": "templates/deployment.yaml", "data": "a2luZDogRGVwbG95bWVudA=="}]},
            "config": {"image": {"tag": "b"}},
            "manifest": "kind: Deployment\n",
        });
        let summary: RecordSummary = decode_helm_record(&stored(&record)).unwrap();
        let row = summary.history_row();
        assert_eq!(
            (row.revision, row.status.as_str(), row.chart.as_str(), row.app_version.as_str(), row.description.as_str()),
            (7, "deployed", "model-server-0.3.0", "1.4.0", "Upgrade complete")
        );
        let in_force: RecordInForce = decode_helm_record(&stored(&record)).unwrap();
        let mut values = in_force.chart.values.unwrap();
        crate::helm::merge(&mut values, &in_force.config.unwrap());
        assert_eq!(values, serde_json::json!({"replicaCount": 2, "image": {"tag": "b"}}));
        assert_eq!(in_force.manifest.unwrap(), "kind: Deployment\n");
        // Plain JSON, as very old Helm records are.
        use base64::Engine;
        let plain = base64::engine::general_purpose::STANDARD.encode(record.to_string()).into_bytes();
        assert_eq!(decode_helm_record::<RecordSummary>(&plain).unwrap().version, 7);
    }

    #[test]
    fn the_revision_is_read_from_the_storage_secret_s_name() {
        assert_eq!(revision_in_name("sh.helm.release.v1.model-server.v12"), Some(12));
        assert_eq!(revision_in_name("sh.helm.release.v1.my.vault.v3"), Some(3));
        assert_eq!(revision_in_name("something-else"), None);
    }
}
