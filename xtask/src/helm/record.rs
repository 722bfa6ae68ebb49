//! Helm's own record of a release, read from its storage Secrets (`sh.helm.release.v1.<name>.v<N>`,
//! label owner=helm): its history, the values in force and the objects Helm applied. One API
//! call answers what `helm history` and `helm get values --all` would, without a helm process.
use anyhow::{Context, Result};
use kube::Api;
use serde_json::Value;

use super::Revision;
use crate::chart::Values;

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

/// What Helm says about a release now.
#[derive(Clone)]
pub struct ReleaseRecord {
    /// Oldest first; empty when the release is not installed.
    pub history: Vec<Revision>,
    /// The latest revision's values with the chart's defaults (Null when not installed).
    pub values_json: Value,
    /// The same, typed.
    pub values: Values,
    /// The latest revision's rendered objects, as Helm applied them (empty when not installed).
    pub manifest: String,
}

impl ReleaseRecord {
    /// Reads Helm's record of `release`. Every revision gives a history row; only the newest is
    /// read for its values and objects (each record holds the whole chart: `verify` should not
    /// build ten of them). Nothing is written.
    pub async fn fetch(client: &kube::Client, namespace: &str, release: &str) -> Result<ReleaseRecord> {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
        let listed = secrets
            .list(&kube::api::ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
            .with_context(|| format!("reading Helm's record of release {release}"))?;
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
                super::merge(&mut values, &record.config.unwrap_or(Value::Null));
                manifest = record.manifest.unwrap_or_default();
            } else {
                let record: RecordSummary = decode_helm_record(&encoded.0).with_context(reading)?;
                history.push(record.history_row());
            }
        }
        history.sort_by_key(|r| r.revision);
        let typed = Values::of(&values).with_context(|| format!("reading release {release}'s values"))?;
        Ok(ReleaseRecord { history, values_json: values, values: typed, manifest })
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

    /// The stable track's tag (the live colour's in blue/green).
    pub fn stable_tag(&self) -> Option<&str> {
        Some(self.values.stable_tag(&self.current()?.app_version))
    }

    /// `repository:tag[@digest]` of the stable track (the live colour in blue/green).
    pub fn stable_image(&self) -> Option<String> {
        Some(self.values.image_reference(self.stable_tag()?))
    }
}

#[cfg(test)]
impl ReleaseRecord {
    /// A record for the decisions' tests: revisions 1.. with these statuses (the newest last,
    /// chart appVersion 0.1.0), the newest with `values`.
    pub fn with_history(statuses: &[&str], values: Value) -> ReleaseRecord {
        let history = statuses
            .iter()
            .enumerate()
            .map(|(i, status)| Revision {
                revision: i as u32 + 1,
                updated: "2026-12-05T00:00:00Z".into(),
                status: (*status).into(),
                chart: "model-server-0.1.0".into(),
                app_version: "0.1.0".into(),
                description: String::new(),
            })
            .collect();
        ReleaseRecord { history, values: Values::of(&values).unwrap(), values_json: values, manifest: String::new() }
    }
}

/// The stable image a revision's values (with defaults) give: see [`Values::stable_tag`].
pub fn stable_image_of(values: &Values, revision: &Revision) -> String {
    values.image_reference(values.stable_tag(&revision.app_version))
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
