//! Every helm call shipshape makes (architecture invariant: no other module runs helm), and
//! Helm's own record of a release, read from its storage ([`record`]).
pub mod record;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::k8s::ClusterAccess;
use crate::process::{read_or_explain, read_or_explain_shielded};
use crate::tools::HELM;

pub struct Helm<'a> {
    sh: &'a Shell,
    bin: PathBuf,
}

/// A release to render or apply: name, namespace, values files (in order), then
/// `--set-string`s and `--set`s. (What Helm recorded of an installed release is
/// [`record::ReleaseRecord`].)
#[derive(Clone)]
pub struct ReleaseSpec {
    pub name: String,
    pub namespace: String,
    pub values_files: Vec<PathBuf>,
    /// `--set-string key=value`: the value stays a string.
    pub set: Vec<(String, String)>,
    /// `--set key=value`: the value is typed as YAML types it (numbers, booleans).
    pub set_typed: Vec<(String, String)>,
}

impl ReleaseSpec {
    /// `-f a.yaml -f b.yaml --set k=v ...`, in the order helm gives precedence.
    fn value_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.values_files {
            args.push("--values".to_owned());
            args.push(file.display().to_string());
        }
        for (key, value) in &self.set {
            args.push("--set-string".to_owned());
            args.push(format!("{key}={value}"));
        }
        for (key, value) in &self.set_typed {
            args.push("--set".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }
}

impl<'a> Helm<'a> {
    /// The pinned helm (see `tools.rs`); fails with the fix when it is not installed.
    pub fn new(sh: &'a Shell) -> Result<Self> {
        Ok(Helm { sh, bin: HELM.find(sh)? })
    }

    /// `helm template`: the manifests the release would apply, with no cluster involved.
    pub fn template(&self, chart: &Path, release: &ReleaseSpec) -> Result<String> {
        let (bin, name, namespace, values) = (&self.bin, &release.name, &release.namespace, release.value_args());
        read_or_explain(cmd!(self.sh, "{bin} template {name} {chart} --namespace {namespace} {values...}"))
            .with_context(|| format!("rendering release {name}"))
    }

    /// `helm history`, oldest first; empty when the release does not exist.
    pub fn history(&self, name: &str, namespace: &str, cluster: &ClusterAccess) -> Result<Vec<Revision>> {
        let (bin, cluster) = (&self.bin, cluster.helm_args());
        let max = HISTORY_MAX.to_string();
        match read_or_explain(cmd!(self.sh, "{bin} history {name} --namespace {namespace} {cluster...} --max {max} -o json")) {
            Ok(json) => serde_json::from_str(&json).context("reading helm history's JSON"),
            Err(err) if format!("{err:#}").contains("release: not found") => Ok(Vec::new()),
            Err(err) => Err(err.context(format!("helm history {name}"))),
        }
    }

    /// The values of a deployed revision (the latest when `revision` is None): only what was
    /// supplied, or with `all` the chart's defaults merged in (what the templates saw).
    pub fn values(&self, name: &str, namespace: &str, cluster: &ClusterAccess, revision: Option<u32>, all: bool) -> Result<Value> {
        let (bin, cluster) = (&self.bin, cluster.helm_args());
        let mut options = Vec::new();
        if let Some(revision) = revision {
            options.extend(["--revision".to_owned(), revision.to_string()]);
        }
        if all {
            options.push("--all".to_owned());
        }
        let json = read_or_explain(cmd!(self.sh, "{bin} get values {name} --namespace {namespace} {cluster...} {options...} -o json"))
            .with_context(|| format!("helm get values {name}"))?;
        // A release installed with no values prints `null`.
        Ok(match serde_json::from_str(&json).context("reading helm get values' JSON")? {
            Value::Null => Value::Object(Default::default()),
            values => values,
        })
    }

    /// The values a release would get if it were installed now, chart defaults included, with
    /// no cluster involved (an install dry run renders them as JSON).
    ///
    /// The chart refuses to render a tag without its digest where signatures are required; only
    /// the values are wanted here, so the dry run pins every tag it might render to a placeholder
    /// digest (`imageDigests.*`, typed as strings, after the release's own values), and the
    /// placeholder is taken out of the answer. Nothing is installed; no placeholder leaves here.
    pub fn planned_values(&self, chart: &Path, release: &ReleaseSpec) -> Result<Value> {
        let (bin, name, namespace, values) = (&self.bin, &release.name, &release.namespace, release.value_args());
        let (placeholders, placed_for) = placeholder_digests(chart, release)?;
        let json = read_or_explain(cmd!(
            self.sh,
            "{bin} install {name} {chart} --namespace {namespace} --dry-run=client -o json {values...} {placeholders...}"
        ))
        .with_context(|| format!("computing the values of release {name}"))?;
        let planned: Value = serde_json::from_str(&json).context("reading helm install --dry-run's JSON")?;
        let mut merged = planned["chart"]["values"].clone();
        merge(&mut merged, &planned["config"]);
        // Only the placeholders placed here go: a digest the values give stays, even one that
        // reads like a placeholder (the checks on managed values must see it).
        if let Some(digests) = merged.get_mut("imageDigests").and_then(Value::as_object_mut) {
            digests.retain(|tag, digest| !(placed_for.contains(tag) && digest.as_str() == Some(PLACEHOLDER_DIGEST)));
        }
        Ok(merged)
    }

    /// `helm test`: runs the chart's test hook pods; `--logs` puts their output in the result
    /// (and so in the error when one fails).
    pub fn test(&self, release: &ReleaseSpec, cluster: &ClusterAccess) -> Result<String> {
        let (bin, name, namespace, cluster) = (&self.bin, &release.name, &release.namespace, cluster.helm_args());
        read_or_explain(cmd!(self.sh, "{bin} test {name} --namespace {namespace} {cluster...} --timeout 2m --logs"))
            .with_context(|| format!("helm test {name}"))
    }

    /// `helm version`: the client's version string (e.g. `v4.3.1`).
    pub fn version(&self) -> Result<String> {
        let bin = &self.bin;
        let short = read_or_explain(cmd!(self.sh, "{bin} version --short"))?;
        Ok(short.trim().split('+').next().unwrap_or_default().to_owned())
    }

    /// `helm lint --strict`: warnings are failures.
    pub fn lint_strict(&self, chart: &Path, release: &ReleaseSpec) -> Result<()> {
        let (bin, namespace, values) = (&self.bin, &release.namespace, release.value_args());
        read_or_explain(cmd!(self.sh, "{bin} lint --strict {chart} --namespace {namespace} {values...}"))
            .with_context(|| format!("linting release {}", release.name))?;
        Ok(())
    }
}

/// The helm calls that change a release: upgrade, rollback, uninstall. Flows get one only
/// through their run (flows/run), whose changes take back hand-changed fields and are journaled;
/// `up` and the cluster's add-ons use it directly. clippy.toml refuses `Writer::new` elsewhere.
pub struct Writer<'a> {
    helm: Helm<'a>,
}

impl<'a> Writer<'a> {
    /// The pinned helm, for changes (see [`Helm::new`]).
    pub fn new(sh: &'a Shell) -> Result<Self> {
        Ok(Writer { helm: Helm::new(sh)? })
    }

    /// `helm upgrade --install`: applies the release and returns at once; callers wait with
    /// their own watches (which fail fast, unlike helm's timeout).
    pub fn upgrade_install(&self, chart: &Path, release: &ReleaseSpec, cluster: &ClusterAccess) -> Result<()> {
        self.upgrade(chart, release, &Change::new(cluster, "shipshape up"))
    }

    /// `helm upgrade --install` with a description (shown by `helm history`) and, when a flow has
    /// found fields taken behind Helm's back, `--force-conflicts` to take them back.
    pub fn upgrade(&self, chart: &Path, release: &ReleaseSpec, change: &Change) -> Result<()> {
        let (bin, name, namespace, values) = (&self.helm.bin, &release.name, &release.namespace, release.value_args());
        let (cluster, description, force) = (change.cluster.helm_args(), &change.description, change.force_conflicts_flag());
        let history_max = HISTORY_MAX.to_string();
        read_or_explain_shielded(cmd!(
            self.helm.sh,
            "{bin} upgrade --install {name} {chart} --namespace {namespace} {cluster...} --history-max {history_max} --description {description} {force...} {values...}"
        ))
        .with_context(|| format!("helm upgrade --install {name}"))?;
        Ok(())
    }

    /// `helm upgrade --install` of a cluster add-on (an operator, Prometheus) with `values`
    /// (written to a file for helm, removed afterwards).
    pub fn upgrade_with(&self, chart: &Path, name: &str, namespace: &str, values: &serde_json::Value, change: &Change) -> Result<()> {
        let file = tempfile::Builder::new().suffix(".json").tempfile()?;
        std::fs::write(file.path(), serde_json::to_vec(values)?)?;
        let release = ReleaseSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            values_files: vec![file.path().to_path_buf()],
            set: Vec::new(),
            set_typed: Vec::new(),
        };
        self.upgrade(chart, &release, change)
    }

    /// `helm rollback NAME REVISION`: a new revision with revision N's manifest and values.
    pub fn rollback(&self, name: &str, namespace: &str, revision: u32, change: &Change) -> Result<()> {
        let (bin, cluster, description, force) =
            (&self.helm.bin, change.cluster.helm_args(), &change.description, change.force_conflicts_flag());
        let (revision, history_max) = (revision.to_string(), HISTORY_MAX.to_string());
        read_or_explain_shielded(cmd!(
            self.helm.sh,
            "{bin} rollback {name} {revision} --namespace {namespace} {cluster...} --history-max {history_max} --description {description} {force...}"
        ))
        .with_context(|| format!("helm rollback {name} {revision}"))?;
        Ok(())
    }

    /// `helm uninstall`: used only to undo a first install that never became healthy.
    pub fn uninstall(&self, name: &str, namespace: &str, cluster: &ClusterAccess) -> Result<()> {
        let (bin, cluster) = (&self.helm.bin, cluster.helm_args());
        read_or_explain_shielded(cmd!(self.helm.sh, "{bin} uninstall {name} --namespace {namespace} {cluster...} --wait"))
            .with_context(|| format!("helm uninstall {name}"))?;
        Ok(())
    }
}

/// The digest [`Helm::planned_values`] pins unpinned tags to while it only computes values.
const PLACEHOLDER_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// `--set-string imageDigests.<tag>=<placeholder>` for the tags a dry run may render that the
/// release does not pin: the chart's appVersion and the release's `image.tag`.
fn placeholder_digests(chart: &Path, release: &ReleaseSpec) -> Result<(Vec<String>, Vec<String>)> {
    let chart_yaml =
        std::fs::read_to_string(chart.join("Chart.yaml")).with_context(|| format!("reading {}/Chart.yaml", chart.display()))?;
    let app_version = chart_yaml.lines().find_map(|l| l.strip_prefix("appVersion:")).map(|v| v.trim().trim_matches('"').to_owned());
    let tag = release.set.iter().chain(&release.set_typed).rev().find(|(k, _)| k == "image.tag").map(|(_, v)| v.clone());
    // Pinned already by a value given (`--set-string imageDigests.<tag>=`, or a values file).
    let files: Vec<Value> = release
        .values_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| serde_saphyr::from_str::<Value>(&text).ok())
        .collect();
    let pinned = |tag: &str| {
        release.set.iter().any(|(k, _)| *k == format!("imageDigests.{}", tag.replace('.', "\\.")))
            || files.iter().any(|values| values["imageDigests"][tag].is_string())
    };
    let (mut args, mut placed_for) = (Vec::new(), Vec::new());
    for tag in app_version.into_iter().chain(tag).filter(|t| !t.is_empty() && !pinned(t)) {
        args.extend(["--set-string".to_owned(), format!("imageDigests.{}={PLACEHOLDER_DIGEST}", tag.replace('.', "\\."))]);
        placed_for.push(tag);
    }
    Ok((args, placed_for))
}

/// Revisions kept per release (`--history-max`): enough to roll back across a canary's steps.
const HISTORY_MAX: u32 = 30;

/// One line of `helm history -o json`.
#[derive(Deserialize, Debug, Clone, serde::Serialize)]
pub struct Revision {
    pub revision: u32,
    pub updated: String,
    pub status: String,
    pub chart: String,
    pub app_version: String,
    pub description: String,
}

impl Revision {
    /// An operation that never finished (`pending-install`, `pending-upgrade`,
    /// `pending-rollback`): helm refuses every further change ("another operation is in progress").
    pub fn is_pending(&self) -> bool {
        self.status.starts_with("pending-")
    }
}

/// How a change is applied: which cluster, what `helm history` will say about it, and whether
/// fields another manager took (e.g. `kubectl rollout undo`) are taken back.
#[derive(Clone)]
pub struct Change {
    pub cluster: ClusterAccess,
    pub description: String,
    pub force_conflicts: bool,
}

impl Change {
    pub fn new(cluster: &ClusterAccess, description: impl Into<String>) -> Change {
        // helm rejects descriptions over 256 characters.
        let description: String = description.into().chars().take(250).collect();
        Change { cluster: cluster.clone(), description, force_conflicts: false }
    }

    fn force_conflicts_flag(&self) -> Option<&'static str> {
        self.force_conflicts.then_some("--force-conflicts")
    }
}

/// Helm's own merge of values: maps merge key by key, a null removes the key (so the chart's
/// default applies again), anything else replaces.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                if value.is_null() {
                    base.remove(key);
                } else {
                    merge(base.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}
