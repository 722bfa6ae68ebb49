//! Secrets: created through the API (never a command line), values never printed.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

/// A 32-byte token from the OS's randomness, hex encoded (the runbook's `openssl rand -hex 32`).
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes).context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates Secret `name` with `data()` unless it exists; an existing Secret is left as it is.
/// Returns whether it was created.
pub async fn ensure(api: &Api<Secret>, name: &str, data: impl FnOnce() -> Result<BTreeMap<String, String>>) -> Result<bool> {
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "shipshape".to_owned())])),
            ..Default::default()
        },
        string_data: Some(data()?),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await.with_context(|| format!("creating Secret {name}"))?;
    Ok(true)
}

/// The value under `key` in Secret `name`, with errors that say which is missing.
pub async fn read_key(api: &Api<Secret>, name: &str, key: &str) -> Result<String> {
    let secret = api.get_opt(name).await.with_context(|| format!("reading Secret {name}"))?;
    let Some(secret) = secret else {
        anyhow::bail!("Secret {name} does not exist");
    };
    let data = secret.data.unwrap_or_default();
    let Some(value) = data.get(key) else {
        let keys: Vec<&String> = data.keys().collect();
        anyhow::bail!("Secret {name} has no key {key:?} (it has {keys:?})");
    };
    String::from_utf8(value.0.clone()).with_context(|| format!("Secret {name} key {key} is not UTF-8"))
}

/// Sets `key` in Secret `name` to `value` (a merge patch: other keys stay).
pub async fn write_key(api: &Api<Secret>, name: &str, key: &str, value: &str) -> Result<()> {
    let patch = serde_json::json!({"stringData": {key: value}});
    api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .with_context(|| format!("updating Secret {name}"))?;
    Ok(())
}

/// Until Secret `name`'s `key` holds `value` (another writer, e.g. the Sealed Secrets
/// controller, is expected to put it there). Progress never shows the value.
pub async fn until_key_is(api: &Api<Secret>, name: &str, key: &str, value: &str, timeout: std::time::Duration) -> Result<()> {
    let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
    // Used both ways (a new value arriving, an old one put back): the words name neither.
    super::wait::until(api.clone(), config, &format!("Secret {name} key {key}"), timeout, |found| {
        let current = found.first().and_then(|s| s.data.as_ref()).and_then(|d| d.get(key));
        match current {
            Some(bytes) if bytes.0 == value.as_bytes() => super::wait::Progress::Done("holds the intended value".to_owned()),
            Some(_) => super::wait::Progress::Waiting("another value so far".to_owned()),
            None => super::wait::Progress::Waiting("no such key yet".to_owned()),
        }
    })
    .await
    .map(drop)
}
