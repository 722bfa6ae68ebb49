//! The chart shipshape deploys (`helm/model-server`) and its environments: which values an
//! environment and a variant render with, what the chart names after a release, and a typed view
//! of the values the flows read. One place for each: the snapshot tests, `render` and every flow
//! build a release from [`release_spec`], and name its objects with the functions here.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::helm::ReleaseSpec;

/// The chart, relative to the repository root.
pub const CHART_DIR: &str = "helm/model-server";
/// The chart's name (Chart.yaml), the base of every object's name.
const CHART_NAME: &str = "model-server";
/// The release name every environment uses (the runbooks' `<release>`).
pub const RELEASE_NAME: &str = "model-server";

/// The label the chart puts on every serving pod: `stable` or `canary`.
pub const TRACK_LABEL: &str = "shipshape.dev/track";
/// The label on blue/green pods: `blue` or `green`.
pub const SLOT_LABEL: &str = "shipshape.dev/slot";

pub fn chart_dir() -> PathBuf {
    crate::repo_root().join(CHART_DIR)
}

/// The environments shipshape deploys to; each has deploy/envs/<name>.yaml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Dev,
    Staging,
    Prod,
}

impl Env {
    pub const ALL: [Env; 3] = [Env::Dev, Env::Staging, Env::Prod];

    pub fn name(self) -> &'static str {
        match self {
            Env::Dev => "dev",
            Env::Staging => "staging",
            Env::Prod => "prod",
        }
    }

    /// The namespace the environment deploys to.
    pub fn namespace(self) -> String {
        format!("model-server-{}", self.name())
    }

    /// deploy/envs/<env>.yaml.
    pub fn values_file(self) -> PathBuf {
        crate::repo_root().join("deploy/envs").join(format!("{}.yaml", self.name()))
    }

    /// The kubeconfig context the environment's values file names for its cluster (`cluster.
    /// context`), if any: read from the file itself, before any cluster is reached.
    pub fn cluster_context(self) -> anyhow::Result<Option<String>> {
        let values = self.file_values()?;
        Ok(values["cluster"]["context"].as_str().filter(|c| !c.is_empty()).map(str::to_owned))
    }

    /// deploy/envs/<env>.yaml as written, without the chart's defaults: what a command reads
    /// of an environment before any cluster or helm is reached.
    pub fn file_values(self) -> anyhow::Result<serde_json::Value> {
        let path = self.values_file();
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not valid YAML: {e}", path.display()))
    }
}

/// The shapes a release can take, each with helm/model-server/ci/<name>-values.yaml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Stable,
    Canary,
    Blue,
    Green,
    ExternalSecrets,
    SealedSecrets,
}

impl Variant {
    pub const ALL: [Variant; 6] =
        [Variant::Stable, Variant::Canary, Variant::Blue, Variant::Green, Variant::ExternalSecrets, Variant::SealedSecrets];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Canary => "canary",
            Variant::Blue => "blue",
            Variant::Green => "green",
            Variant::ExternalSecrets => "external-secrets",
            Variant::SealedSecrets => "sealed-secrets",
        }
    }
}

/// The chart's appVersion (Chart.yaml): the tag a release runs when its values name none.
pub fn app_version() -> anyhow::Result<String> {
    let path = chart_dir().join("Chart.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or_else(|| anyhow::anyhow!("{} has no appVersion", path.display()))
}

/// The release for an environment and variant: the environment's values, then the variant's.
pub fn release_spec(env: Env, variant: Variant, tag: Option<&str>) -> ReleaseSpec {
    ReleaseSpec {
        name: RELEASE_NAME.to_owned(),
        namespace: env.namespace(),
        values_files: vec![env.values_file(), chart_dir().join("ci").join(format!("{}-values.yaml", variant.name()))],
        set: tag.map(|t| vec![("image.tag".to_owned(), t.to_owned())]).unwrap_or_default(),
        set_typed: Vec::new(),
    }
}

/// The release's base name (`model-server.fullname` in _helpers.tpl, no overrides).
pub fn fullname(release: &str) -> String {
    let full = if release.contains(CHART_NAME) { release.to_owned() } else { format!("{release}-{CHART_NAME}") };
    full.chars().take(52).collect::<String>().trim_end_matches('-').to_owned()
}

/// The Deployment serving production traffic in the standard shape; also the live Service.
pub fn stable_deployment(release: &str) -> String {
    fullname(release)
}

pub fn canary_deployment(release: &str) -> String {
    format!("{}-canary", fullname(release))
}

pub fn slot_deployment(release: &str, slot: Slot) -> String {
    format!("{}-{}", fullname(release), slot.name())
}

/// The Service production traffic goes to (stable and canary, or the live colour).
pub fn live_service(release: &str) -> String {
    fullname(release)
}

/// The Service that always selects the idle colour in blue/green.
pub fn preview_service(release: &str) -> String {
    format!("{}-preview", fullname(release))
}

/// Label selector for the release's serving pods, every track (the `helm test` pod has none).
pub fn pod_selector(release: &str) -> String {
    format!("app.kubernetes.io/name={CHART_NAME},app.kubernetes.io/instance={release},{TRACK_LABEL}")
}

/// Label selector for one colour's pods.
pub fn slot_selector(release: &str, slot: Slot) -> String {
    format!("{},{SLOT_LABEL}={}", pod_selector(release), slot.name())
}

/// The values that pin `tag` to `digest` (`imageDigests`); none for an empty digest (a flow
/// whose state predates digests).
pub fn digest_values(tag: &str, digest: &str) -> serde_json::Value {
    if digest.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"imageDigests": {tag: digest}})
    }
}

/// The same as a `--set-string` pair (dots in the tag escaped: they separate keys).
pub fn digest_set(pinned: &crate::image::Pinned) -> (String, String) {
    (format!("imageDigests.{}", pinned.tag.replace('.', "\\.")), pinned.digest.clone())
}

/// A blue/green colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    #[default]
    Blue,
    Green,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The values the flows read, typed: a view of the chart's values (defaults merged), checked
/// against values.schema.json by a test. Flows write values as JSON changes merged into Helm's
/// record (`Flow::change_values`), and read them through this.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Values {
    pub replica_count: u32,
    pub image: ImageValues,
    pub image_digests: BTreeMap<String, String>,
    pub image_pull_secrets: Vec<NameRef>,
    pub supply_chain: SupplyChain,
    pub canary: CanaryValues,
    pub blue_green: BlueGreenValues,
    pub env: EnvValues,
    pub external_secrets: ExternalSecretsValues,
    pub sealed_secrets: SealedSecretsValues,
    pub service_account: ServiceAccountValues,
    pub pod_disruption_budget: Enabled,
    pub cluster: ClusterValues,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ClusterValues {
    pub context: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageValues {
    pub repository: String,
    pub tag: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct NameRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SupplyChain {
    pub require_signature: bool,
    /// Every key a release may be signed with: a key rotation lists the old and the new until
    /// nothing signed with the old one must deploy (rollbacks included).
    pub public_keys: Vec<TrustedKey>,
    /// What a release's SLSA provenance must say to run here.
    pub provenance: ProvenancePolicy,
    /// How recent a release's signed vulnerability scan must be to run here.
    pub scan: ScanPolicy,
    /// Lets `--insecure-skip-signature --reason` deploy an unverified image where signatures are
    /// required: the environment's consent to break-glass, given in its values file.
    pub allow_break_glass: bool,
    /// What the environment's cluster enforces at admission (flows/admission.rs).
    pub admission: AdmissionPolicy,
}

/// The environment's policy as its cluster's admission controller holds it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AdmissionPolicy {
    /// `cargo xtask admission apply` writes the policy and opts the namespace in.
    pub enforce: bool,
    /// Repositories of the release's registry admitted without a signature, each with why.
    pub admit_unsigned: Vec<UnsignedImage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct UnsignedImage {
    /// Relative to the release's registry, e.g. `shipshape/postgres`.
    pub repository: String,
    pub reason: String,
}

/// The vulnerability scan a release must carry (`release` attests it, signed with the release's
/// key).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ScanPolicy {
    /// Refuse a release whose newest signed scan is older than this many days (0: no scan
    /// asked for).
    pub max_age_days: u32,
}

/// A public key an environment trusts, and when (RFC 3339 times; either end may be open).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TrustedKey {
    /// Relative to the repository root.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// What an environment accepts of a release's SLSA provenance (SLSA's verification steps: the
/// builder in a trusted set, the parameters as expected). An empty list accepts any value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProvenancePolicy {
    /// `runDetails.builder.id` values trusted to build what runs here.
    pub trusted_builders: Vec<String>,
    /// Repositories releases may be built from (`externalParameters.source.repository`).
    pub source_repositories: Vec<String>,
    /// Refuse a release built with uncommitted changes to the image's inputs.
    pub require_clean_tree: bool,
    /// Git refs releases may be built from (`externalParameters.source.ref`, e.g. a protected
    /// `refs/heads/main`).
    pub refs: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryValues {
    pub enabled: bool,
    pub replica_count: u32,
    pub image: TagValues,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct TagValues {
    pub tag: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BlueGreenValues {
    pub enabled: bool,
    pub active_slot: Slot,
    pub blue: SlotValues,
    pub green: SlotValues,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SlotValues {
    pub tag: String,
    /// None: replicaCount when live, 0 when idle.
    pub replica_count: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvValues {
    pub admin_token_secret_name: String,
    pub admin_token_secret_key: String,
    pub mlflow_credentials_secret_name: String,
    pub mlflow_username_key: String,
    pub mlflow_password_key: String,
    /// Where the model comes from (a path in the image, or an http:// registry URL).
    pub model_uri: String,
    pub database_url_secret_name: String,
    pub database_url_secret_key: String,
    pub model_auto_refresh_seconds: u64,
}

/// The release's Secrets as SealedSecrets: ciphertexts only the cluster's controller unseals
/// (safe to keep in Git, which is where the runbook keeps them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SealedSecretsValues {
    pub enabled: bool,
    pub admin_token: SealedAdminToken,
    pub mlflow_credentials: SealedMlflowCredentials,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SealedAdminToken {
    pub encrypted_token: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SealedMlflowCredentials {
    pub encrypted_username: String,
    pub encrypted_password: String,
}

impl SealedSecretsValues {
    /// Each sealed value the values hold, by its path (`sealedSecrets.adminToken.encryptedToken`).
    pub fn by_path(&self) -> Vec<(&'static str, &str)> {
        [
            ("sealedSecrets.adminToken.encryptedToken", self.admin_token.encrypted_token.as_str()),
            ("sealedSecrets.mlflowCredentials.encryptedUsername", self.mlflow_credentials.encrypted_username.as_str()),
            ("sealedSecrets.mlflowCredentials.encryptedPassword", self.mlflow_credentials.encrypted_password.as_str()),
        ]
        .into_iter()
        .filter(|(_, sealed)| !sealed.is_empty())
        .collect()
    }
}

/// `externalSecrets`: what of it decides which Secrets are delivered by an ExternalSecret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ExternalSecretsValues {
    pub enabled: bool,
    pub mlflow_credentials: ExternalMlflowCredentials,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ExternalMlflowCredentials {
    /// The store's key for MLflow's credentials: empty, no ExternalSecret for them.
    pub remote_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ServiceAccountValues {
    pub create: bool,
    pub name: String,
}

impl Values {
    /// The typed view of a release's values (chart defaults merged); Null (nothing installed)
    /// reads as all defaults. A value of the wrong type is an error, never a default.
    pub fn of(values: &serde_json::Value) -> anyhow::Result<Values> {
        if values.is_null() {
            return Ok(Values::default());
        }
        serde_json::from_value(values.clone()).map_err(|e| anyhow::anyhow!("the release's values do not fit the chart: {e}"))
    }

    /// The colour serving production traffic, when the release runs blue/green.
    pub fn live_slot(&self) -> Option<Slot> {
        self.blue_green.enabled.then_some(self.blue_green.active_slot)
    }

    pub fn slot(&self, slot: Slot) -> &SlotValues {
        match slot {
            Slot::Blue => &self.blue_green.blue,
            Slot::Green => &self.blue_green.green,
        }
    }

    /// The Deployment serving production traffic: the stable one, or the live colour's.
    pub fn live_deployment(&self, release: &str) -> String {
        match self.live_slot() {
            Some(slot) => slot_deployment(release, slot),
            None => stable_deployment(release),
        }
    }

    /// Pods that serve production traffic: stable and canary, or the live colour only.
    pub fn live_pod_selector(&self, release: &str) -> String {
        match self.live_slot() {
            Some(slot) => slot_selector(release, slot),
            None => pod_selector(release),
        }
    }

    /// The tag the stable track (the live colour in blue/green) runs; `app_version` when the
    /// values name none (the chart's default).
    pub fn stable_tag<'a>(&'a self, app_version: &'a str) -> &'a str {
        let default = if self.image.tag.is_empty() { app_version } else { &self.image.tag };
        match self.live_slot() {
            Some(slot) if !self.slot(slot).tag.is_empty() => &self.slot(slot).tag,
            _ => default,
        }
    }

    /// `repository:tag`, with `@digest` when these values record one for the tag: exactly the
    /// image the chart renders for a workload running `tag`.
    pub fn image_reference(&self, tag: &str) -> String {
        match self.image_digests.get(tag) {
            Some(digest) => format!("{}:{tag}@{digest}", self.image.repository),
            None => format!("{}:{tag}", self.image.repository),
        }
    }

    /// The ServiceAccount the release's pods run as: `serviceAccount.name`, else the release's
    /// full name (the chart's rule).
    pub fn service_account_name(&self, release: &str) -> String {
        let name = &self.service_account.name;
        if name.is_empty() {
            fullname(release)
        } else {
            name.clone()
        }
    }

    /// The stable track's image pinned to the digest these values record for `tag`, if they
    /// record one.
    pub fn pinned(&self, tag: &str) -> Option<crate::image::Pinned> {
        let digest = self.image_digests.get(tag)?;
        Some(crate::image::Pinned { repository: self.image.repository.clone(), tag: tag.to_owned(), digest: digest.clone() })
    }

    /// `imagePullSecrets` names.
    pub fn pull_secrets(&self) -> Vec<String> {
        self.image_pull_secrets.iter().map(|s| s.name.clone()).collect()
    }

    /// Secret name and key of the admin token.
    pub fn admin_token_secret(&self) -> (String, String) {
        (self.env.admin_token_secret_name.clone(), self.env.admin_token_secret_key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn objects_are_named_as_the_chart_names_them() {
        assert_eq!(fullname("model-server"), "model-server");
        assert_eq!(fullname("prod"), "prod-model-server");
        assert_eq!(canary_deployment("model-server"), "model-server-canary");
        assert_eq!(slot_deployment("model-server", Slot::Green), "model-server-green");
        assert_eq!(preview_service("model-server"), "model-server-preview");
        assert_eq!(fullname(&"x".repeat(60)).len(), 52, "room for a -canary suffix in 63 characters");
        assert_eq!(slot_selector("model-server", Slot::Blue), format!("{},{SLOT_LABEL}=blue", pod_selector("model-server")));
    }

    #[test]
    fn slots_name_each_other() {
        assert_eq!(Slot::Blue.other(), Slot::Green);
        assert_eq!(Slot::Green.other().other(), Slot::Green);
        assert_eq!(serde_json::to_value(Slot::Green).unwrap(), json!("green"), "the journal keeps the word");
    }

    /// The chart's own values.yaml, read through the typed view.
    fn chart_defaults() -> Values {
        let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
        let yaml: Value = serde_saphyr::from_str(&text).unwrap();
        Values::of(&yaml).unwrap()
    }

    #[test]
    fn the_typed_view_reads_the_chart_s_defaults() {
        let values = chart_defaults();
        assert_eq!(values.replica_count, 2);
        assert_eq!(values.image.repository, "shipshape/model-server");
        assert_eq!(values.admin_token_secret(), ("model-server-admin-token".to_owned(), "token".to_owned()));
        assert_eq!(values.env.mlflow_password_key, "password");
        assert_eq!(values.blue_green.active_slot, Slot::Blue);
        assert_eq!(values.blue_green.green.replica_count, None);
        assert!(!values.canary.enabled && !values.blue_green.enabled && values.pod_disruption_budget.enabled);
    }

    /// Every key of the typed view is a key of values.schema.json, of a type the schema allows:
    /// a renamed value in the chart fails here, not as a silently defaulted field in a flow.
    #[test]
    fn every_typed_value_is_in_the_chart_s_schema() {
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap()).unwrap();
        let mut full = Values { image_pull_secrets: vec![NameRef::default()], ..Values::default() };
        full.image_digests.insert("v1".into(), "sha256:x".into());
        full.blue_green.blue.replica_count = Some(1);
        fn walk(path: &str, value: &Value, schema: &Value, missing: &mut Vec<String>) {
            let types: Vec<&str> = match &schema["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let json_type = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            // A schema enum without a type (pullPolicy, activeSlot) holds strings.
            let enum_of_strings = schema["enum"].as_array().is_some_and(|e| e.iter().all(Value::is_string)) && json_type == "string";
            let allowed = types.is_empty() || types.contains(&json_type) || (json_type == "integer" && types.contains(&"number"));
            if !allowed && !enum_of_strings {
                missing.push(format!("{path}: {json_type}, the schema says {types:?}"));
            }
            if let Value::Object(fields) = value {
                for (key, field) in fields {
                    let child = match (&schema["properties"][key], &schema["additionalProperties"]) {
                        (Value::Null, Value::Object(_)) => &schema["additionalProperties"],
                        (Value::Null, _) => {
                            missing.push(format!("{path}.{key}: not in the schema"));
                            continue;
                        }
                        (found, _) => found,
                    };
                    walk(&format!("{path}.{key}"), field, child, missing);
                }
            }
            if let Value::Array(items) = value {
                for item in items {
                    walk(&format!("{path}[]"), item, &schema["items"], missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk("", &serde_json::to_value(&full).unwrap(), &schema, &mut missing);
        assert!(missing.is_empty(), "typed values the schema does not allow:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_stable_image_is_the_live_colour_s_and_pinned_where_recorded() {
        let values = Values::of(&json!({
            "image": {"repository": "r/m", "tag": "v1"},
            "imageDigests": {"v2": "sha256:x"},
            "blueGreen": {"enabled": true, "activeSlot": "green", "green": {"tag": "v2"}}
        }))
        .unwrap();
        assert_eq!(values.stable_tag("0.1.0"), "v2");
        assert_eq!(values.image_reference("v2"), "r/m:v2@sha256:x");
        assert_eq!(values.image_reference("v1"), "r/m:v1");
        assert_eq!(values.live_deployment("model-server"), "model-server-green");
        let standard = Values::of(&json!({"image": {"repository": "r/m", "tag": ""}})).unwrap();
        assert_eq!(standard.stable_tag("0.1.0"), "0.1.0", "no tag: the chart's appVersion");
        assert_eq!(standard.live_pod_selector("model-server"), pod_selector("model-server"));
        assert!(Values::of(&json!({"replicaCount": "ten"})).is_err(), "a value of the wrong type is an error, not a default");
    }
}
