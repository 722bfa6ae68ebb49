//! External Secrets Operator's objects as shipshape reads and drives them: an ExternalSecret's
//! Ready condition, where it reads each key from, a forced sync and the wait for it, and the
//! store behind it (`ExternalStore`: what `rotate-secret --method external` writes the new value to).
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};

use super::secrets;
use super::wait::{self, Progress};

/// The API group and version of the objects the chart renders (`external-secrets.io/v1`, ESO >= 0.17).
const GROUP: &str = "external-secrets.io";
const VERSION: &str = "v1";
/// The annotation whose change makes ESO sync an ExternalSecret now (its documented force-sync).
const FORCE_SYNC: &str = "force-sync";

pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind))
}

pub fn external_secrets(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource("ExternalSecret"))
}

/// An ExternalSecret's Ready condition.
#[derive(Debug)]
pub struct Ready {
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub since: Option<Timestamp>,
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.reason, self.message)
    }
}

/// None: the operator has not reported on it yet.
pub fn ready(object: &DynamicObject) -> Option<Ready> {
    let conditions = object.data["status"]["conditions"].as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some(Ready {
        status: ready["status"] == "True",
        reason: ready["reason"].as_str().unwrap_or_default().to_owned(),
        message: ready["message"].as_str().unwrap_or_default().to_owned(),
        since: ready["lastTransitionTime"].as_str().and_then(|t| t.parse().ok()),
    })
}

/// When the operator last synced it successfully (`status.refreshTime`, whole seconds).
fn refreshed_at(object: &DynamicObject) -> Option<Timestamp> {
    object.data["status"]["refreshTime"].as_str().and_then(|t| t.parse().ok())
}

/// Where an ExternalSecret reads one key of its target Secret from.
#[derive(Debug, PartialEq)]
pub struct RemoteRef {
    pub key: String,
    pub property: Option<String>,
}

/// The remote reference of the `data` entry that fills `secret_key`.
pub fn remote_ref(object: &DynamicObject, secret_key: &str) -> Result<RemoteRef> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let entries = object.data["spec"]["data"].as_array().cloned().unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e["secretKey"] == secret_key)
        .with_context(|| format!("ExternalSecret {name} fills no key {secret_key:?} of its Secret (spec.data has no such secretKey)"))?;
    let remote = &entry["remoteRef"];
    Ok(RemoteRef {
        key: remote["key"].as_str().with_context(|| format!("ExternalSecret {name}: no remoteRef.key for {secret_key}"))?.to_owned(),
        property: remote["property"].as_str().map(str::to_owned),
    })
}

/// The (kind, name) of the store an ExternalSecret reads from.
pub fn store_ref(object: &DynamicObject) -> (String, String) {
    let store = &object.data["spec"]["secretStoreRef"];
    (store["kind"].as_str().unwrap_or("SecretStore").to_owned(), store["name"].as_str().unwrap_or_default().to_owned())
}

/// Asks the operator to sync `name` now, and waits until it has: done when it reports a
/// successful sync after the request, failed (with the operator's reason) when it reports a
/// failure after it. Progress says only the operator's words, never a value.
pub async fn sync_now(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
    let api = external_secrets(client, namespace);
    // The operator's times have whole seconds: the request is made at the start of a second,
    // so a time at or after it is the operator's answer, and one before is from an earlier sync.
    let now = Timestamp::now();
    let requested = Timestamp::from_second(now.as_second() + 1)?;
    tokio::time::sleep(requested.duration_since(now).unsigned_abs()).await;
    let patch = serde_json::json!({"metadata": {"annotations": {FORCE_SYNC: requested.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.with_context(|| format!("annotating ExternalSecret {name}"))?;
    let probe = || async {
        let Some(object) = api.get_opt(name).await? else { return Ok(Progress::Failed(format!("ExternalSecret {name} was deleted"))) };
        let ready = ready(&object);
        if let Some(r) = ready.as_ref().filter(|r| r.status) {
            if refreshed_at(&object).is_some_and(|at| at >= requested) {
                return Ok(Progress::Done(format!("synced by the operator ({})", r.reason)));
            }
            return Ok(Progress::Waiting("waiting for the operator".to_owned()));
        }
        // A failure the operator reports again keeps its condition's time; its event is new.
        let warning = last_warning(client, namespace, name).await;
        let failed_since_request = ready.as_ref().and_then(|r| r.since).is_some_and(|since| since >= requested)
            || warning.as_ref().is_some_and(|(_, at)| *at >= requested);
        let said = warning.map(|(message, _)| format!(": {message}")).unwrap_or_default();
        Ok(match (ready, failed_since_request) {
            (Some(r), true) => Progress::Failed(format!("the operator could not sync it: {r}{said}")),
            (Some(r), false) => Progress::Waiting(format!("not synced yet (before the request: {r})")),
            (None, _) => Progress::Waiting("waiting for the operator".to_owned()),
        })
    };
    wait::polled(&format!("ExternalSecret {name} synced"), timeout, Duration::from_secs(1), probe).await.map(drop)
}

/// The operator's newest warning about ExternalSecret `name`, and when it was last given: its
/// Ready condition says only "could not get secret data from provider"; the event says why
/// (403, not found, ...).
pub async fn last_warning(client: &Client, namespace: &str, name: &str) -> Option<(String, Timestamp)> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let fields = format!("involvedObject.kind=ExternalSecret,involvedObject.name={name},type=Warning");
    let list = events.list(&kube::api::ListParams::default().fields(&fields)).await.ok()?;
    let when = |e: &Event| {
        e.last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)).or(e
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0))
    };
    let newest = list.items.into_iter().max_by_key(when)?;
    let at = when(&newest)?;
    Some((newest.message?, at))
}

/// An external store shipshape can write a new value to. Each variant is a provider of
/// ESO's SecretStore spec; a store of any other provider is refused with what to do instead.
pub enum ExternalStore {
    /// ESO's `kubernetes` provider: the remote key is a Secret in `remoteNamespace`, the
    /// property one of its keys (in tests, it stands for Vault or a cloud secret manager).
    Kubernetes { secrets: Api<Secret>, namespace: String },
}

impl ExternalStore {
    /// The store a (Cluster)SecretStore describes. `namespace` is the ExternalSecret's (a
    /// namespaced SecretStore lives there).
    pub async fn connect(client: &Client, kind: &str, name: &str, namespace: &str) -> Result<ExternalStore> {
        let api: Api<DynamicObject> = match kind {
            "ClusterSecretStore" => Api::all_with(client.clone(), &resource(kind)),
            "SecretStore" => Api::namespaced_with(client.clone(), namespace, &resource(kind)),
            other => bail!("unknown secret store kind {other:?} (expected SecretStore or ClusterSecretStore)"),
        };
        let store = api.get_opt(name).await.with_context(|| format!("reading {kind} {name}"))?;
        let Some(store) = store else { bail!("{kind} {name} does not exist: the ExternalSecret cannot sync from it") };
        let provider = &store.data["spec"]["provider"];
        if let Some(kubernetes) = provider.get("kubernetes") {
            let remote = kubernetes["remoteNamespace"].as_str().unwrap_or("default").to_owned();
            return Ok(ExternalStore::Kubernetes { secrets: Api::namespaced(client.clone(), &remote), namespace: remote });
        }
        let names: Vec<&String> = provider.as_object().map(|p| p.keys().collect()).unwrap_or_default();
        bail!(
            "{kind} {name} uses provider {names:?}; shipshape writes new values only to the kubernetes provider. \
             Write the new value into that store with its own tools, then force a sync \
             (kubectl annotate externalsecret <name> force-sync=$(date +%s) --overwrite) and restart (cargo xtask rotate-secret --help)"
        )
    }

    pub fn describe(&self) -> String {
        match self {
            ExternalStore::Kubernetes { namespace, .. } => format!("the kubernetes provider's Secrets in namespace {namespace}"),
        }
    }

    pub async fn read(&self, remote: &RemoteRef) -> Result<String> {
        match self {
            ExternalStore::Kubernetes { secrets: api, .. } => secrets::read_key(api, &remote.key, property(remote)?).await,
        }
    }

    pub async fn write(&self, remote: &RemoteRef, value: &str) -> Result<()> {
        match self {
            ExternalStore::Kubernetes { secrets: api, .. } => secrets::write_key(api, &remote.key, property(remote)?, value).await,
        }
    }
}

/// The key within the remote Secret. Without one ESO would map the whole Secret, which a
/// rotation of one value cannot write.
fn property(remote: &RemoteRef) -> Result<&str> {
    remote.property.as_deref().with_context(|| format!("remote key {} names no property: shipshape rotates one value", remote.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_external_secret_says_where_each_key_comes_from_and_how_it_stands() {
        let es = object(serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "mlflow"},
            "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"}, "data": [
                {"secretKey": "username", "remoteRef": {"key": "ml/mlflow", "property": "username"}},
                {"secretKey": "password", "remoteRef": {"key": "ml/mlflow", "property": "password"}},
            ]},
            "status": {"refreshTime": "2026-12-02T03:00:05Z", "conditions": [
                {"type": "Ready", "status": "False", "reason": "SecretSyncedError", "message": "could not get secret data from provider",
                 "lastTransitionTime": "2026-12-02T03:00:07Z"},
            ]},
        }));
        assert_eq!(remote_ref(&es, "password").unwrap(), RemoteRef { key: "ml/mlflow".into(), property: Some("password".into()) });
        let missing = remote_ref(&es, "token").unwrap_err().to_string();
        assert!(missing.contains("fills no key \"token\""), "{missing}");
        assert_eq!(store_ref(&es), ("ClusterSecretStore".to_owned(), "vault".to_owned()));
        let ready = ready(&es).unwrap();
        assert!(!ready.status);
        assert_eq!(ready.to_string(), "SecretSyncedError could not get secret data from provider");
        assert_eq!(ready.since, Some("2026-12-02T03:00:07Z".parse().unwrap()));
        assert_eq!(refreshed_at(&es), Some("2026-12-02T03:00:05Z".parse().unwrap()));
    }
}
