//! `cargo xtask admission apply`: an environment's supply-chain policy, enforced by its cluster.
//! The client-side check (signing.rs) holds only for people who deploy through shipshape; the
//! API server holds for everyone: with sigstore policy-controller installed (`cluster up --with
//! policy-controller` on a local cluster), this writes the environment's ClusterImagePolicies
//! and labels its namespace `policy.sigstore.dev/include=true`. From then on a workload there
//! runs only images that
//! - are the release's repository, signed by a key the environment trusts now, with a SLSA
//!   provenance attestation signed by that same key naming a trusted builder; or
//! - are a repository listed under `supplyChain.admission.admitUnsigned`, each with its reason.
//!
//! Anything else (another repository, an unsigned tag) is refused by the API server, whoever
//! asks: `kubectl set image`, `helm upgrade`, or a ReplicaSet creating pods. What stays with
//! the client: the keys' validity windows as time passes (the policy holds the keys trusted
//! when it was applied: apply again after `keys rotate` or a window's end), the provenance's
//! source repository, clean tree and refs, and the scan's age.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use super::Flow;
use crate::chart::{SupplyChain, Values};
use crate::report::{Check, Outcome};

/// The label policy-controller's webhooks select namespaces by.
pub const NAMESPACE_LABEL: &str = "policy.sigstore.dev/include";
/// The attestation the release carries (cosign.rs attests SLSA provenance v1).
const PROVENANCE_PREDICATE: &str = crate::cosign::PROVENANCE_PREDICATE;
const FIELD_MANAGER: &str = "shipshape-admission";

/// The policies an environment's values ask the cluster to hold, by name.
#[derive(Debug, PartialEq)]
pub struct ClusterPolicies {
    /// `shipshape-<env>` (the release's images) and, when images are admitted unsigned,
    /// `shipshape-<env>-unsigned`: each a ClusterImagePolicy's `spec`.
    pub specs: BTreeMap<String, Value>,
    /// The trusted keys left out (outside their window now), in words.
    pub keys_left_out: Vec<String>,
}

/// The ClusterImagePolicies for `env` guarding `repository`, from its supply-chain values, with
/// the keys trusted at `now` (`read_key` gives a key file's PEM).
pub fn cluster_policies(
    env: &str,
    supply_chain: &SupplyChain,
    repository: &str,
    now: Timestamp,
    read_key: &dyn Fn(&str) -> Result<String>,
) -> Result<ClusterPolicies> {
    let (authorities, keys_left_out) = authorities(env, supply_chain, now, read_key)?;
    let repository = fully_qualified(repository);
    let mut specs = BTreeMap::new();
    specs.insert(format!("shipshape-{env}"), json!({"mode": "enforce", "images": globs(&repository), "authorities": authorities}));
    let admitted = &supply_chain.admission.admit_unsigned;
    if !admitted.is_empty() {
        let registry = repository.split_once('/').map_or("", |(registry, _)| registry);
        let mut images = Vec::new();
        for image in admitted {
            if image.reason.trim().is_empty() {
                bail!(
                    "{env}'s supplyChain.admission.admitUnsigned lists {} without a reason: say why it may run unsigned",
                    image.repository
                );
            }
            images.extend(globs(&format!("{registry}/{}", image.repository)));
        }
        specs.insert(
            format!("shipshape-{env}-unsigned"),
            json!({"mode": "enforce", "images": images, "authorities": [{"name": "admitted-unsigned", "static": {"action": "pass"}}]}),
        );
    }
    Ok(ClusterPolicies { specs, keys_left_out })
}

/// One authority per key trusted at `now`, each asking for the release's provenance signed by
/// that key (from a trusted builder, where the values name any); and the keys left out, in words.
fn authorities(
    env: &str,
    supply_chain: &SupplyChain,
    now: Timestamp,
    read_key: &dyn Fn(&str) -> Result<String>,
) -> Result<(Vec<Value>, Vec<String>)> {
    let mut authorities = Vec::new();
    let mut keys_left_out = Vec::new();
    for key in &supply_chain.public_keys {
        if let Some(why) = crate::signing::trust_window(key, now)? {
            keys_left_out.push(format!("{} ({why})", key.path));
            continue;
        }
        let mut attestation = json!({"name": "provenance", "predicateType": PROVENANCE_PREDICATE});
        let builders = &supply_chain.provenance.trusted_builders;
        if !builders.is_empty() {
            attestation["policy"] = json!({"type": "cue", "data": builder_policy(builders)});
        }
        authorities.push(json!({
            "name": authority_name(&key.path),
            "key": {"data": read_key(&key.path)?, "hashAlgorithm": "sha256"},
            "attestations": [attestation],
        }));
    }
    if authorities.is_empty() {
        bail!(
            "no key in {env}'s supplyChain.publicKeys is trusted now ({}): the policy would admit none of its releases. \
             Fix the keys' windows (or `cargo xtask keys rotate`); nothing was changed",
            keys_left_out.join(", ")
        );
    }
    Ok((authorities, keys_left_out))
}

/// A repository as policy-controller matches it: with its registry (Docker Hub's spelled out).
fn fully_qualified(repository: &str) -> String {
    let first = repository.split('/').next().unwrap_or_default();
    let has_registry = repository.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        repository.to_owned()
    } else if repository.contains('/') {
        format!("index.docker.io/{repository}")
    } else {
        format!("index.docker.io/library/{repository}")
    }
}

/// The repository's images by any tag or digest, and nothing else (`**` alone would also match
/// `model-server-other`).
fn globs(repository: &str) -> Vec<Value> {
    vec![json!({"glob": format!("{repository}:**")}), json!({"glob": format!("{repository}@**")})]
}

/// CUE the provenance statement must unify with: the builder is one of the trusted.
fn builder_policy(builders: &[String]) -> String {
    let choices: Vec<String> = builders.iter().map(|b| serde_json::to_string(b).unwrap_or_default()).collect();
    format!("predicateType: {PROVENANCE_PREDICATE:?}\npredicate: runDetails: builder: id: {}\n", choices.join(" | "))
}

/// `deploy/keys/cosign-2026-12-05.pub` -> `key-cosign-2026-12-05` (an authority's name).
fn authority_name(path: &str) -> String {
    let stem = Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("key");
    let cleaned: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    format!("key-{cleaned}")
}

/// A public key's PEM, its path relative to the repository root (as the values give it).
fn read_key_file(path: &str) -> Result<String> {
    std::fs::read_to_string(crate::repo_root().join(path)).with_context(|| format!("reading public key {path}"))
}

/// The cluster knows ClusterImagePolicies: policy-controller's CRD is installed.
async fn has_policy_controller(client: &kube::Client) -> Result<bool> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let found = crds.get_opt("clusterimagepolicies.policy.sigstore.dev").await.context("reading the cluster's CRDs")?;
    Ok(found.is_some())
}

fn cluster_image_policy() -> ApiResource {
    ApiResource {
        group: "policy.sigstore.dev".to_owned(),
        version: "v1beta1".to_owned(),
        api_version: "policy.sigstore.dev/v1beta1".to_owned(),
        kind: "ClusterImagePolicy".to_owned(),
        plural: "clusterimagepolicies".to_owned(),
    }
}

/// What `admission apply` changed (its `-o json` document, beside the command and exit code).
#[derive(serde::Serialize, Debug, Default)]
pub struct Applied {
    pub env: String,
    pub namespace: String,
    /// The repository whose images the policy holds.
    pub repository: String,
    /// ClusterImagePolicies written.
    pub policies: Vec<String>,
    /// ClusterImagePolicies removed (one the values no longer ask for).
    pub deleted: Vec<String>,
    /// Trusted keys outside their window now, left out, in words.
    pub keys_left_out: Vec<String>,
    /// When the policy written now stops being the values' (a key's window opens or closes), in
    /// words: the cluster holds keys as of this apply, so it must be applied again then.
    pub apply_again: Option<String>,
}

/// The first moment after `now` at which a key's window opens or closes: from then on the
/// policy applied at `now` trusts other keys than the values do. With the key and what happens.
pub fn next_window_change(supply_chain: &SupplyChain, now: Timestamp) -> Result<Option<(Timestamp, String)>> {
    let mut changes = Vec::new();
    for key in &supply_chain.public_keys {
        let (not_before, not_after) = crate::signing::window_of(key)?;
        for (at, happens) in [(not_before, "becomes trusted"), (not_after, "retires")] {
            if let Some(at) = at.filter(|at| *at > now) {
                changes.push((at, format!("{} {happens}", key.path)));
            }
        }
    }
    Ok(changes.into_iter().min_by_key(|(at, _)| *at))
}

/// Writes the environment's policies into the cluster and opts its namespace in; says what it
/// wrote. Refuses an environment that does not ask for enforcement, and a cluster without
/// policy-controller (nothing would hold the policy).
pub fn apply(flow: &Flow, values: &Values, repository: &str) -> Result<Applied> {
    let t = &flow.target;
    let env = t.env.name();
    let supply_chain = &values.supply_chain;
    if !supply_chain.admission.enforce {
        bail!(
            "deploy/envs/{env}.yaml does not ask its cluster to enforce its supply-chain policy (supplyChain.admission.enforce): \
             nothing was changed"
        );
    }
    let policies = cluster_policies(env, supply_chain, repository, Timestamp::now(), &read_key_file)?;
    for left_out in &policies.keys_left_out {
        println!("  key {left_out}: not trusted now, left out of the cluster's policy");
    }
    let apply_again = next_window_change(supply_chain, Timestamp::now())?.map(|(at, what)| {
        format!("at {at} ({what}): run `cargo xtask admission apply --env {env}` again then (preflight says when they part)")
    });
    let mut applied = Applied {
        env: env.to_owned(),
        namespace: t.namespace.clone(),
        repository: repository.to_owned(),
        keys_left_out: policies.keys_left_out.clone(),
        apply_again: apply_again.clone(),
        ..Default::default()
    };
    let client = flow.client().clone();
    flow.block_on(async {
        if !has_policy_controller(&client).await? {
            bail!(
                "the cluster has no sigstore policy-controller (no ClusterImagePolicy resource): nothing would enforce the policy. \
                 Install it (a local cluster: `cargo xtask cluster up --with policy-controller`); nothing was changed"
            );
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_image_policy());
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        for (name, spec) in &policies.specs {
            let object = json!({
                "apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "shipshape", "shipshape.dev/env": env}},
                "spec": spec,
            });
            api.patch(name, &apply, &Patch::Apply(&object)).await.with_context(|| format!("applying ClusterImagePolicy {name}"))?;
            println!("  ClusterImagePolicy {name} applied");
            applied.policies.push(name.clone());
        }
        // A policy this environment no longer asks for (its admitUnsigned list emptied) goes.
        let unsigned = format!("shipshape-{env}-unsigned");
        if !policies.specs.contains_key(&unsigned) && api.get_opt(&unsigned).await?.is_some() {
            api.delete(&unsigned, &Default::default()).await?;
            println!("  ClusterImagePolicy {unsigned} deleted (admitUnsigned is empty)");
            applied.deleted.push(unsigned);
        }
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
        let label = json!({"metadata": {"labels": {NAMESPACE_LABEL: "true"}}});
        namespaces
            .patch(&t.namespace, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .with_context(|| format!("labelling namespace {} {NAMESPACE_LABEL}=true", t.namespace))?;
        println!("  namespace {} enforced ({NAMESPACE_LABEL}=true)", t.namespace);
        anyhow::Ok(())
    })?;
    println!(
        "{env}'s supply-chain policy is enforced by the cluster in namespace {}: workloads there run only {repository} signed \
         by a trusted key with its provenance{}",
        t.namespace,
        if supply_chain.admission.admit_unsigned.is_empty() { String::new() } else { ", and the images admitUnsigned lists".to_owned() }
    );
    // The cluster holds the keys trusted now; a window that opens or closes later is not in it.
    if let Some(again) = &apply_again {
        println!("  the policy holds the keys trusted now; a key's window changes {again}");
    }
    Ok(applied)
}

/// Preflight's check, for an environment whose values ask its cluster to enforce: the cluster
/// has policy-controller, the namespace is opted in, and the cluster's policy trusts the keys and
/// builders the values give now (a rotation or a window's end changes them). None for an
/// environment that does not ask.
pub async fn held(client: &kube::Client, env: &str, namespace: &str, supply_chain: &SupplyChain) -> Option<Check> {
    if !supply_chain.admission.enforce {
        return None;
    }
    let name = "admission policy";
    let fix = format!("cargo xtask admission apply --env {env}");
    let wanted = match authorities(env, supply_chain, Timestamp::now(), &read_key_file) {
        Ok((authorities, _)) => Value::Array(authorities),
        Err(err) => return Some(Check::new(name, Outcome::Fail, format!("{err:#}"))),
    };
    match has_policy_controller(client).await {
        Ok(true) => {}
        Ok(false) => {
            return Some(
                Check::new(name, Outcome::Warn, "the cluster has no sigstore policy-controller: only shipshape's commands hold the policy")
                    .with_fix("install it (a local cluster: `cargo xtask cluster up --with policy-controller`), then ".to_owned() + &fix),
            )
        }
        Err(err) => return Some(Check::new(name, Outcome::Fail, format!("{err:#}"))),
    }
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_image_policy());
    let live = match api.get_opt(&format!("shipshape-{env}")).await {
        Err(err) => return Some(Check::new(name, Outcome::Fail, format!("cannot read ClusterImagePolicies: {err}"))),
        Ok(live) => live,
    };
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let enforced = match namespaces.get_opt(namespace).await {
        Ok(found) => found.and_then(|n| n.metadata.labels).is_some_and(|labels| labels.get(NAMESPACE_LABEL).is_some_and(|v| v == "true")),
        Err(err) => return Some(Check::new(name, Outcome::Fail, format!("cannot read namespace {namespace}: {err}"))),
    };
    let check = match live {
        None => Check::new(name, Outcome::Warn, format!("the cluster holds no policy for {env} (ClusterImagePolicy shipshape-{env})"))
            .with_fix(fix),
        Some(_) if !enforced => {
            Check::new(name, Outcome::Warn, format!("namespace {namespace} is not enforced ({NAMESPACE_LABEL}=true is not set)"))
                .with_fix(fix)
        }
        Some(live) if live.data["spec"]["authorities"] != wanted => Check::new(
            name,
            Outcome::Warn,
            format!("the cluster's policy shipshape-{env} trusts other keys or builders than deploy/envs/{env}.yaml gives now"),
        )
        .with_fix(fix),
        Some(_) => Check::new(name, Outcome::Pass, format!("the cluster holds {env}'s policy in namespace {namespace}")),
    };
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{AdmissionPolicy, ProvenancePolicy, TrustedKey, UnsignedImage};

    fn prod_like() -> SupplyChain {
        SupplyChain {
            require_signature: true,
            public_keys: vec![
                TrustedKey { path: "deploy/keys/cosign-2026-12-05.pub".to_owned(), ..Default::default() },
                TrustedKey {
                    path: "deploy/keys/cosign.pub".to_owned(),
                    not_after: Some("2026-01-01T00:00:00Z".to_owned()),
                    ..Default::default()
                },
            ],
            provenance: ProvenancePolicy { trusted_builders: vec!["https://example/builder@v1".to_owned()], ..Default::default() },
            admission: AdmissionPolicy {
                enforce: true,
                admit_unsigned: vec![UnsignedImage { repository: "shipshape/postgres".to_owned(), reason: "the database".to_owned() }],
            },
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        "2026-12-05T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_keys_trusted_now_become_authorities_each_asking_for_its_own_provenance() {
        let policies =
            cluster_policies("prod", &prod_like(), "localhost:5001/shipshape/model-server", now(), &|p| Ok(format!("PEM of {p}"))).unwrap();
        let release = &policies.specs["shipshape-prod"];
        assert_eq!(release["mode"], "enforce");
        assert_eq!(
            release["images"],
            json!([{"glob": "localhost:5001/shipshape/model-server:**"}, {"glob": "localhost:5001/shipshape/model-server@**"}])
        );
        let authorities = release["authorities"].as_array().unwrap();
        assert_eq!(authorities.len(), 1, "the retired key is left out: {authorities:?}");
        assert_eq!(authorities[0]["name"], "key-cosign-2026-12-05");
        assert_eq!(authorities[0]["key"]["data"], "PEM of deploy/keys/cosign-2026-12-05.pub");
        let attestation = &authorities[0]["attestations"][0];
        assert_eq!(attestation["predicateType"], "https://slsa.dev/provenance/v1");
        assert_eq!(attestation["policy"]["type"], "cue");
        assert!(attestation["policy"]["data"].as_str().unwrap().contains(r#"builder: id: "https://example/builder@v1""#));
        assert_eq!(policies.keys_left_out, vec!["deploy/keys/cosign.pub (trusted until 2026-01-01T00:00:00Z: retired)".to_owned()]);
    }

    #[test]
    fn the_next_window_change_says_when_the_policy_must_be_applied_again() {
        let mut supply_chain = prod_like();
        assert_eq!(next_window_change(&supply_chain, now()).unwrap(), None, "the retired key's window closed before now");
        supply_chain.public_keys.push(TrustedKey {
            path: "deploy/keys/next.pub".to_owned(),
            not_before: Some("2027-01-01T00:00:00Z".to_owned()),
            not_after: Some("2028-01-01T00:00:00Z".to_owned()),
        });
        supply_chain.public_keys[0].not_after = Some("2027-03-01T00:00:00Z".to_owned());
        let (at, what) = next_window_change(&supply_chain, now()).unwrap().unwrap();
        assert_eq!((at.to_string().as_str(), what.as_str()), ("2027-01-01T00:00:00Z", "deploy/keys/next.pub becomes trusted"));
        let later: Timestamp = "2027-02-01T00:00:00Z".parse().unwrap();
        let (at, what) = next_window_change(&supply_chain, later).unwrap().unwrap();
        assert_eq!((at.to_string().as_str(), what.as_str()), ("2027-03-01T00:00:00Z", "deploy/keys/cosign-2026-12-05.pub retires"));
        supply_chain.public_keys[0].not_after = Some("March".to_owned());
        assert!(next_window_change(&supply_chain, now()).unwrap_err().to_string().contains("RFC 3339"));
    }

    #[test]
    fn images_admitted_unsigned_live_in_the_release_s_registry_and_pass_by_a_policy_of_their_own() {
        let policies =
            cluster_policies("prod", &prod_like(), "localhost:5001/shipshape/model-server", now(), &|_| Ok(String::new())).unwrap();
        let unsigned = &policies.specs["shipshape-prod-unsigned"];
        assert_eq!(
            unsigned["images"],
            json!([{"glob": "localhost:5001/shipshape/postgres:**"}, {"glob": "localhost:5001/shipshape/postgres@**"}])
        );
        assert_eq!(unsigned["authorities"], json!([{"name": "admitted-unsigned", "static": {"action": "pass"}}]));
        // Without a reason, refused.
        let mut no_reason = prod_like();
        no_reason.admission.admit_unsigned[0].reason = " ".to_owned();
        let err = cluster_policies("prod", &no_reason, "r.example/a/b", now(), &|_| Ok(String::new())).unwrap_err();
        assert!(err.to_string().contains("without a reason"), "{err}");
    }

    #[test]
    fn no_key_trusted_now_is_refused_rather_than_a_policy_admitting_nothing() {
        let mut retired = prod_like();
        retired.public_keys.remove(0);
        let err = cluster_policies("prod", &retired, "r.example/a/b", now(), &|_| Ok(String::new())).unwrap_err();
        assert!(err.to_string().contains("no key in prod's supplyChain.publicKeys is trusted now"), "{err}");
    }

    #[test]
    fn repositories_are_matched_with_their_registry_as_policy_controller_sees_them() {
        assert_eq!(fully_qualified("localhost:5001/shipshape/model-server"), "localhost:5001/shipshape/model-server");
        assert_eq!(fully_qualified("ghcr.io/acme/model-server"), "ghcr.io/acme/model-server");
        assert_eq!(fully_qualified("shipshape/model-server"), "index.docker.io/shipshape/model-server");
        assert_eq!(fully_qualified("busybox"), "index.docker.io/library/busybox");
        // Without trusted builders, the provenance need only be there, signed.
        let mut any_builder = prod_like();
        any_builder.provenance.trusted_builders.clear();
        let policies = cluster_policies("staging", &any_builder, "shipshape/model-server", now(), &|_| Ok(String::new())).unwrap();
        assert!(policies.specs["shipshape-staging"]["authorities"][0]["attestations"][0].get("policy").is_none());
    }
}
