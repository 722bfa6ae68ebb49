//! Hand changes to the release's Deployments, as the cluster records them: which fields another
//! field manager owns (`kubectl scale`, `set image`, `rollout undo`, `edit`), and replica counts
//! that differ from Helm's record (and so the real traffic share of each track).
//!
//! Architecture invariant: hand changes never disable the safety path. Every Helm change a flow
//! makes goes through [`super::Flow::upgrade`] or [`super::Flow::rollback`], which take back
//! fields other managers own (`--force-conflicts`) and report, measured from managedFields before
//! and after, what was taken back and from whom.
use std::collections::BTreeSet;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use kube::Api;
use serde_json::Value;

use crate::chart::{self, Slot, Values};
use crate::helm::record::ReleaseRecord;

/// Managers whose fields are not hand changes: Helm itself, and the controllers that keep
/// status and revision annotations.
const OWN_MANAGERS: [&str; 2] = ["helm", "kube-controller-manager"];

/// Fields of one Deployment that one other field manager owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignFields {
    pub deployment: String,
    /// e.g. `kubectl` (with subresource `scale`), `kubectl-set`, `kubectl-rollout`.
    pub manager: String,
    pub subresource: Option<String>,
    /// Paths such as `.spec.replicas`, `.spec.template.spec.containers[api].image`.
    pub fields: Vec<String>,
}

impl ForeignFields {
    pub fn who(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{} ({sub})", self.manager),
            None => self.manager.clone(),
        }
    }
}

impl std::fmt::Display for ForeignFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deployment {} {} set by {}", self.deployment, self.fields.join(", "), self.who())
    }
}

/// The release's Deployments (every track and colour).
pub async fn deployments(client: &kube::Client, namespace: &str, release: &str) -> Result<Vec<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let listed = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release},app.kubernetes.io/managed-by=Helm")))
        .await
        .with_context(|| format!("listing the Deployments of release {release}"))?;
    Ok(listed.items)
}

/// Every field of these Deployments owned by a manager other than Helm and the controllers.
pub fn foreign_fields(deployments: &[Deployment]) -> Vec<ForeignFields> {
    let mut found = Vec::new();
    for deployment in deployments {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        for entry in deployment.metadata.managed_fields.iter().flatten() {
            let manager = entry.manager.clone().unwrap_or_default();
            if OWN_MANAGERS.contains(&manager.as_str()) {
                continue;
            }
            let mut fields = Vec::new();
            if let Some(tree) = &entry.fields_v1 {
                leaf_paths(&tree.0, String::new(), &mut fields);
            }
            if !fields.is_empty() {
                found.push(ForeignFields { deployment: name.clone(), manager, subresource: entry.subresource.clone(), fields });
            }
        }
    }
    found.sort();
    found
}

/// The leaves of a managedFields `fieldsV1` tree as readable paths: `f:spec` -> `.spec`,
/// `k:{"name":"api"}` -> `[api]`, `v:"x"` -> `[x]`; a `.` key marks the element itself.
fn leaf_paths(tree: &Value, prefix: String, out: &mut Vec<String>) {
    let Some(children) = tree.as_object() else { return };
    let children: Vec<(&String, &Value)> = children.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    for (key, child) in children {
        let segment = if let Some(field) = key.strip_prefix("f:") {
            format!(".{field}")
        } else if let Some(keyed) = key.strip_prefix("k:") {
            let described = serde_json::from_str::<Value>(keyed)
                .ok()
                .and_then(|v| {
                    v.as_object().map(|o| o.values().map(|v| v.as_str().map(str::to_owned).unwrap_or(v.to_string())).collect::<Vec<_>>())
                })
                .map(|parts| parts.join(","))
                .unwrap_or_else(|| keyed.to_owned());
            format!("[{described}]")
        } else if let Some(value) = key.strip_prefix("v:") {
            format!("[{}]", value.trim_matches('"'))
        } else {
            format!(".{key}")
        };
        leaf_paths(child, format!("{prefix}{segment}"), out);
    }
}

/// What moved from other managers back to Helm between two readings: each (deployment, who,
/// field) that was foreign before and is not after.
pub fn taken_back(before: &[ForeignFields], after: &[ForeignFields]) -> Vec<ForeignFields> {
    let still: BTreeSet<(&str, &str, &str)> =
        after.iter().flat_map(|f| f.fields.iter().map(move |field| (f.deployment.as_str(), f.manager.as_str(), field.as_str()))).collect();
    before
        .iter()
        .filter_map(|f| {
            let fields: Vec<String> = f
                .fields
                .iter()
                .filter(|field| !still.contains(&(f.deployment.as_str(), f.manager.as_str(), field.as_str())))
                .cloned()
                .collect();
            (!fields.is_empty()).then(|| ForeignFields { fields, ..f.clone() })
        })
        .collect()
}

/// One Deployment's replica count: Helm's record against the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaDrift {
    pub deployment: String,
    pub recorded: i32,
    pub live: i32,
    /// Managers other than Helm that own `.spec.replicas` (who scaled it).
    pub by: Vec<String>,
}

impl std::fmt::Display for ReplicaDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by = if self.by.is_empty() { String::new() } else { format!(" (scaled by {})", self.by.join(", ")) };
        write!(f, "Deployment {} has {} replicas, Helm's record says {}{by}", self.deployment, self.live, self.recorded)
    }
}

/// The replica count Helm's record gives each of the release's Deployments, from the values the
/// chart rendered (the same rules as `model-server.workloads` in helm/model-server/templates/
/// _helpers.tpl; tests/tests/chart.rs checks the two agree).
pub fn recorded_replicas(release_name: &str, values: &Values) -> Vec<(String, i32)> {
    let total = values.replica_count as i32;
    let mut recorded = Vec::new();
    match values.live_slot() {
        Some(live) => {
            for slot in [Slot::Blue, Slot::Green] {
                let default = if slot == live { total } else { 0 };
                let count = values.slot(slot).replica_count.map_or(default, |n| n as i32);
                recorded.push((chart::slot_deployment(release_name, slot), count));
            }
        }
        None => recorded.push((chart::stable_deployment(release_name), total)),
    }
    if values.canary.enabled {
        recorded.push((chart::canary_deployment(release_name), values.canary.replica_count as i32));
    }
    recorded
}

/// Deployments whose live replica count differs from Helm's record.
pub fn replica_drift(deployments: &[Deployment], release_name: &str, values: &Values) -> Vec<ReplicaDrift> {
    let foreign = foreign_fields(deployments);
    recorded_replicas(release_name, values)
        .into_iter()
        .filter_map(|(name, recorded)| {
            let deployment = deployments.iter().find(|d| d.metadata.name.as_deref() == Some(name.as_str()))?;
            let live = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let by = foreign
                .iter()
                .filter(|f| f.deployment == name && f.fields.iter().any(|p| p == ".spec.replicas"))
                .map(ForeignFields::who)
                .collect();
            (live != recorded).then_some(ReplicaDrift { deployment: name, recorded, live, by })
        })
        .collect()
}

/// The canary Deployment running another image than Helm's record gives it (`kubectl set image`
/// on the canary): what serves the canary's share is then not what the flow resolved, checked
/// and judges. In words, with who changed it.
pub fn canary_image_drift(deployments: &[Deployment], release_name: &str, values: &Values) -> Option<String> {
    if !values.canary.enabled {
        return None;
    }
    let name = crate::chart::canary_deployment(release_name);
    let deployment = deployments.iter().find(|d| d.metadata.name.as_deref() == Some(name.as_str()))?;
    let live = deployment_image(deployment)?;
    let recorded = values.image_reference(&values.canary.image.tag);
    if live == recorded {
        return None;
    }
    let by: Vec<String> = foreign_fields(std::slice::from_ref(deployment))
        .iter()
        .filter(|f| f.fields.iter().any(|p| p.contains(".image")))
        .map(ForeignFields::who)
        .collect();
    let by = if by.is_empty() { String::new() } else { format!(", set by {}", by.join(", ")) };
    Some(format!("Deployment {name} runs {live}, but Helm's record gives the canary {recorded}{by}: the canary's share is served by an image the flow never checked"))
}

/// The share of serving pods each track has, as the cluster runs them: `stable 1 of 4 pods
/// (25 %), canary 3 of 4 pods (75 %)`. Traffic follows pods (one Service over both tracks).
pub fn traffic_share(tracks: &[(String, u32)]) -> String {
    let total: u32 = tracks.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return "no ready pods".to_owned();
    }
    tracks
        .iter()
        .map(|(track, n)| {
            format!("{track} {n} of {total} pod{} ({:.0} %)", if total == 1 { "" } else { "s" }, f64::from(*n) * 100.0 / f64::from(total))
        })
        .collect::<Vec<_>>()
        .join(", ")
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
pub async fn drift(client: &kube::Client, namespace: &str, release: &str, record: &ReleaseRecord) -> Result<Option<Drift>> {
    let (Some(helm_image), Some(current)) = (record.stable_image(), record.current()) else {
        return Ok(None);
    };
    let name = record.values.live_deployment(release);
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
    let managers = foreign_fields(std::slice::from_ref(&deployment)).into_iter().map(|f| f.manager).collect();
    Ok(Some(Drift { live_image, helm_image, revision: current.revision, managers }))
}

/// The image of a Deployment's serving container (the chart's first container).
pub fn deployment_image(deployment: &Deployment) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn values(json: Value) -> Values {
        Values::of(&json).unwrap()
    }

    fn deployment(name: &str, replicas: i32, managed: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "managedFields": managed},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}
        }))
        .unwrap()
    }

    /// What the API server recorded after `helm upgrade` then `kubectl scale --replicas=3`.
    fn scaled_canary() -> Deployment {
        deployment(
            "model-server-canary",
            3,
            json!([
                {"manager": "helm", "operation": "Apply", "apiVersion": "apps/v1",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {".": {}, "f:image": {}}}}}}}},
                {"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "subresource": "scale",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}}
            ]),
        )
    }

    #[test]
    fn a_hand_scaled_deployment_names_the_field_and_who_scaled_it() {
        let found = foreign_fields(&[scaled_canary()]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "Deployment model-server-canary .spec.replicas set by kubectl (scale)");
    }

    #[test]
    fn set_image_paths_name_the_container() {
        let d = deployment(
            "model-server",
            1,
            json!([{"manager": "kubectl-set", "operation": "Update", "apiVersion": "apps/v1",
                    "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {"f:image": {}}}}}}}}]),
        );
        assert_eq!(foreign_fields(&[d])[0].fields, [".spec.template.spec.containers[api].image"]);
    }

    #[test]
    fn taken_back_is_what_left_the_other_managers() {
        let before = foreign_fields(&[scaled_canary()]);
        assert_eq!(taken_back(&before, &[]), before);
        assert!(taken_back(&before, &before).is_empty());
    }

    #[test]
    fn replica_drift_compares_the_record_with_the_cluster() {
        let values = values(json!({"replicaCount": 1, "canary": {"enabled": true, "replicaCount": 1}}));
        let stable = deployment("model-server", 1, json!([]));
        let drift = replica_drift(&[stable, scaled_canary()], "model-server", &values);
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].to_string(), "Deployment model-server-canary has 3 replicas, Helm's record says 1 (scaled by kubectl (scale))");
    }

    #[test]
    fn recorded_replicas_follow_the_release_shape() {
        let bg = values(json!({"replicaCount": 3, "blueGreen": {"enabled": true, "activeSlot": "green", "blue": {"replicaCount": 3}}}));
        assert_eq!(recorded_replicas("model-server", &bg), [("model-server-blue".to_owned(), 3), ("model-server-green".to_owned(), 3)]);
        let idle = values(json!({"replicaCount": 2, "blueGreen": {"enabled": true, "activeSlot": "blue"}}));
        assert_eq!(recorded_replicas("model-server", &idle), [("model-server-blue".to_owned(), 2), ("model-server-green".to_owned(), 0)]);
    }

    #[test]
    fn traffic_share_is_per_track_with_counts() {
        assert_eq!(traffic_share(&[("stable".into(), 1), ("canary".into(), 3)]), "stable 1 of 4 pods (25 %), canary 3 of 4 pods (75 %)");
    }

    /// Issue 23: `kubectl set image` on the canary Deployment is seen, with who made it.
    #[test]
    fn a_canary_running_another_image_than_its_record_is_named_with_who_set_it() {
        let values = values(json!({
            "image": {"repository": "r/model-server", "tag": "v1"},
            "imageDigests": {"v2": "sha256:2"},
            "canary": {"enabled": true, "replicaCount": 1, "image": {"tag": "v2"}}
        }));
        let canary = |image: &str, managed: Value| -> Deployment {
            let mut d = deployment("model-server-canary", 1, managed);
            d.spec.as_mut().unwrap().template =
                serde_json::from_value(json!({"spec": {"containers": [{"name": "api", "image": image}]}})).unwrap();
            d
        };
        let helm = json!([{"manager": "helm", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        assert_eq!(canary_image_drift(&[canary("r/model-server:v2@sha256:2", helm.clone())], "model-server", &values), None);
        let by_hand = json!([{"manager": "kubectl-set", "operation": "Update",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {"f:image": {}}}}}}}}]);
        let said = canary_image_drift(&[canary("r/model-server:v9", by_hand)], "model-server", &values).unwrap();
        assert!(
            said.contains("runs r/model-server:v9") && said.contains("r/model-server:v2@sha256:2") && said.contains("kubectl-set"),
            "{said}"
        );
        let no_canary = Values { canary: Default::default(), ..values };
        assert_eq!(canary_image_drift(&[canary("r/model-server:v9", helm)], "model-server", &no_canary), None);
    }
}
