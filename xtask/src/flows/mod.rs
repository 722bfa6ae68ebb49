//! The runbooks' paths, one module each. Every flow is a list of named steps (the plan): with
//! `--dry-run` the plan is printed and nothing changes; otherwise each step is announced, timed
//! and written to the journal in the cluster as it runs, under a Lease that keeps a second flow
//! off the same release. A failing flow runs its compensation so stable keeps serving.
pub mod analysis;
pub mod bluegreen;
pub mod canary;
pub mod deploy;
pub mod diff;
pub mod doctor;
pub mod findings;
pub mod images;
pub mod ownership;
pub mod preflight;
pub mod release;
pub mod reload;
pub mod rollback;
pub mod rotate;
pub mod status;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::cli::{Env, TargetArgs, Variant};
use crate::helm::{Helm, Release};
use crate::journal::{self, Entry, Journal, StepRecord};
use crate::k8s::lease;
use crate::render;

/// Which release on which cluster a flow works on.
#[derive(Clone, Debug)]
pub struct Target {
    pub env: Env,
    pub namespace: String,
    pub release: String,
    pub kubeconfig: PathBuf,
}

impl TargetArgs {
    pub fn target(&self) -> Result<Target> {
        Ok(Target {
            env: self.env,
            namespace: self.namespace.clone().unwrap_or_else(|| render::namespace(self.env)),
            release: render::RELEASE_NAME.to_owned(),
            kubeconfig: resolve_kubeconfig(self.kubeconfig.as_deref())?,
        })
    }
}

/// `--kubeconfig`, else $KUBECONFIG (clap reads it into the same field), else ~/.kube/config,
/// else the local cluster `cargo xtask up` made. Every flow prints which one it uses.
fn resolve_kubeconfig(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        if path.to_string_lossy().contains(':') {
            anyhow::bail!("KUBECONFIG lists several files ({}); pass one with --kubeconfig", path.display());
        }
        return Ok(path.to_path_buf());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let default = Path::new(&home).join(".kube/config");
        if default.exists() {
            return Ok(default);
        }
    }
    let local = crate::cache::root()?.join("clusters/shipshape/kubeconfig");
    if local.exists() {
        return Ok(local);
    }
    anyhow::bail!("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create the local cluster with `cargo xtask up`")
}

impl Target {
    /// The chart release for this target's environment (standard shape) with `set` values.
    pub fn chart_release(&self, tag: Option<&str>) -> Release {
        let mut release = render::release(self.env, Variant::Stable, tag);
        release.namespace = self.namespace.clone();
        release.name = self.release.clone();
        release
    }

    pub fn lease_name(&self) -> String {
        format!("shipshape-lock-{}", self.release)
    }
}

/// A connection to the target: the shell for helm, a tokio runtime and a kube client.
pub struct Flow<'a> {
    pub sh: &'a Shell,
    pub target: Target,
    /// Found on first use: commands that never run helm (verify, status) do not pay for it.
    helm: std::cell::OnceCell<Helm<'a>>,
    /// See [`Flow::environment_values`].
    environment_values: std::cell::OnceCell<serde_json::Value>,
    /// Fields taken back from other field managers by this process's Helm changes, not yet
    /// journaled (a running step journals them: see [`Run::step`]).
    taken_back: std::cell::RefCell<Vec<String>>,
    pub client: kube::Client,
    /// For HTTP to pods through the API server (see [`crate::k8s::pod_client`]).
    pub pod_client: kube::Client,
    /// What an image must prove before this flow deploys it (commands that change what runs
    /// set it from their flags).
    pub signature: crate::cli::SignatureArgs,
    /// The user's values for this release (`--set`, `--set-string`, `-f`): applied by the
    /// flow's first Helm upgrade, which takes them; later revisions keep them as Helm does.
    overrides: std::cell::RefCell<Option<crate::cli::ValueOverrides>>,
    runtime: tokio::runtime::Runtime,
}

impl<'a> Flow<'a> {
    /// Connects, and prints which cluster, namespace and release the command works on.
    pub fn connect(sh: &'a Shell, args: &TargetArgs) -> Result<Flow<'a>> {
        let target = args.target()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let client = runtime.block_on(crate::k8s::client(&target.kubeconfig))?;
        let pod_client = runtime.block_on(crate::k8s::pod_client(&target.kubeconfig))?;
        eprintln!(
            "target: release {} in namespace {} ({}), kubeconfig {}",
            target.release,
            target.namespace,
            target.env.name(),
            target.kubeconfig.display()
        );
        Ok(Flow {
            sh,
            helm: std::cell::OnceCell::new(),
            environment_values: std::cell::OnceCell::new(),
            taken_back: Default::default(),
            target,
            client,
            pod_client,
            signature: Default::default(),
            overrides: Default::default(),
            runtime,
        })
    }

    /// Who holds the release's Lease now, if a live process does.
    pub fn lease_holder(&self) -> Result<Option<String>> {
        let t = &self.target;
        self.block_on(lease::current_holder(&self.client, &t.namespace, &t.lease_name()))
    }

    /// The environment's values for the release (chart defaults and deploy/envs/<env>.yaml, no
    /// user overrides): what the environment asks of an image. Rendered once per flow.
    pub fn environment_values(&self) -> Result<&serde_json::Value> {
        if let Some(values) = self.environment_values.get() {
            return Ok(values);
        }
        let values = self.helm()?.planned_values(&render::chart(), &self.target.chart_release(None))?;
        Ok(self.environment_values.get_or_init(|| values))
    }

    /// The pinned helm (checked on first use).
    pub fn helm(&self) -> Result<&Helm<'a>> {
        if let Some(helm) = self.helm.get() {
            return Ok(helm);
        }
        let helm = Helm::new(self.sh)?;
        Ok(self.helm.get_or_init(|| helm))
    }

    /// Runs async API work from the synchronous flow (helm calls stay off the runtime).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// `helm upgrade` of the release with exactly `values` (a release's supplied values, changed):
    /// for changes that keep everything else as it is, like a restart or a rollback to a tag.
    pub fn upgrade_with_values(&self, values: &serde_json::Value, change: &crate::helm::Change) -> Result<()> {
        // helm reads JSON as YAML; the file holds no secrets (values name Secrets, never hold them).
        let file = tempfile::Builder::new().prefix("shipshape-values-").suffix(".json").tempfile()?;
        std::fs::write(file.path(), serde_json::to_vec(values)?)?;
        let release = Release {
            name: self.target.release.clone(),
            namespace: self.target.namespace.clone(),
            values_files: vec![file.path().to_path_buf()],
            set: Vec::new(),
            set_typed: Vec::new(),
        };
        self.upgrade(&release, change)
    }

    /// Every `helm upgrade` a flow makes. Fields another field manager took (kubectl scale, set
    /// image, rollout undo) are taken back, and what was taken back, from whom, is reported.
    /// The first one also applies the user's values.
    pub fn upgrade(&self, release: &Release, change: &crate::helm::Change) -> Result<()> {
        let release = self.as_first_upgrade(release);
        self.overrides.borrow_mut().take();
        self.taking_back(change, |change| self.helm()?.upgrade(&render::chart(), &release, change))
    }

    /// Sets the user's values for this flow, after checking them: no key the flow manages
    /// itself, and what the chart renders with them passes its schema (nothing changes before).
    pub fn set_overrides(&self, overrides: &crate::cli::ValueOverrides, managed: &[&str]) -> Result<()> {
        if overrides.set.is_empty() && overrides.set_string.is_empty() && overrides.values.is_empty() {
            return Ok(());
        }
        for (key, _) in overrides.set.iter().chain(&overrides.set_string) {
            if let Some(prefix) = managed.iter().find(|m| key == *m || key.starts_with(&format!("{m}."))) {
                anyhow::bail!("--set {key}: {prefix} is managed by this command itself (nothing was changed)");
            }
        }
        for file in &overrides.values {
            if !file.is_file() {
                anyhow::bail!("values file {} does not exist (nothing was changed)", file.display());
            }
        }
        let release = with_overrides(&self.target.chart_release(None), overrides);
        self.helm()?.planned_values(&render::chart(), &release).context("the chart refuses these values (nothing was changed)")?;
        *self.overrides.borrow_mut() = Some(overrides.clone());
        Ok(())
    }

    /// `release` as the flow's first upgrade will apply it: with the user's values, if any.
    pub fn as_first_upgrade(&self, release: &Release) -> Release {
        match self.overrides.borrow().as_ref() {
            Some(overrides) => with_overrides(release, overrides),
            None => release.clone(),
        }
    }

    /// The user's values in words, for the journal.
    fn overrides_in_words(&self) -> Option<String> {
        let overrides = self.overrides.borrow();
        let o = overrides.as_ref()?;
        let mut words: Vec<String> = o.values.iter().map(|f| format!("-f {}", f.display())).collect();
        words.extend(o.set.iter().map(|(k, v)| format!("--set {k}={v}")));
        words.extend(o.set_string.iter().map(|(k, v)| format!("--set-string {k}={v}")));
        Some(words.join(" "))
    }

    /// Every `helm rollback` a flow makes, taking back fields as [`Flow::upgrade`] does.
    pub fn rollback(&self, revision: u32, change: &crate::helm::Change) -> Result<()> {
        let t = &self.target;
        self.taking_back(change, |change| self.helm()?.rollback(&t.release, &t.namespace, revision, change))
    }

    /// Reads who owns what on the release's Deployments, applies with `--force-conflicts` when
    /// another manager owns fields (Helm 4's server-side apply refuses them otherwise: a hand-
    /// scaled canary would make `canary abort` fail), then reads again to report what moved back.
    fn taking_back(&self, change: &crate::helm::Change, apply: impl FnOnce(&crate::helm::Change) -> Result<()>) -> Result<()> {
        let t = &self.target;
        let read = || -> Result<Vec<ownership::ForeignFields>> {
            Ok(ownership::foreign_fields(&self.block_on(ownership::deployments(&self.client, &t.namespace, &t.release))?))
        };
        let before = read()?;
        let mut change = change.clone();
        for foreign in &before {
            println!("  changed behind Helm's back: {foreign}");
            change.force_conflicts = true;
        }
        apply(&change)?;
        if !before.is_empty() {
            for taken in ownership::taken_back(&before, &read()?) {
                println!("  took back {} of Deployment {} from {}", taken.fields.join(", "), taken.deployment, taken.who());
                self.taken_back.borrow_mut().push(taken.to_string());
            }
        }
        Ok(())
    }

    /// One Helm revision that changes only `changes` (merged into the release's supplied values,
    /// a null removing a key): every traffic switch, scale and restart a flow makes.
    pub fn change_values(&self, changes: serde_json::Value, description: &str) -> Result<()> {
        let t = &self.target;
        let mut values = self.helm()?.values(&t.release, &t.namespace, &t.kubeconfig, None, false)?;
        crate::helm::merge(&mut values, &changes);
        self.upgrade_with_values(&values, &crate::helm::Change::new(&t.kubeconfig, description))
    }

    /// The newest run of flow `name` that keeps its state in journal fact `fact`, with that state.
    pub fn latest_state<S: serde::de::DeserializeOwned>(&self, name: &str, fact: &str) -> Result<Option<(Entry, S)>> {
        let entries = self.block_on(self.journal().entries())?;
        let Some(entry) = entries.into_iter().rev().find(|e| e.flow == name && e.facts.contains_key(fact)) else {
            return Ok(None);
        };
        let state = serde_json::from_str(&entry.facts[fact])
            .with_context(|| format!("reading the {name} state from journal entry {}", entry.id))?;
        Ok(Some((entry, state)))
    }

    pub fn journal(&self) -> Journal {
        Journal::new(&self.client, &self.target.namespace, &self.target.release)
    }
}

/// The values a standard deploy sets itself (the image it resolved and verified); `--set` may
/// not touch them.
pub const DEPLOY_MANAGED_VALUES: &[&str] = &["image", "imageDigests"];

/// The values progressive flows set at every step; `--set` may not touch them.
pub const FLOW_MANAGED_VALUES: &[&str] = &["image", "imageDigests", "replicaCount", "canary", "blueGreen"];

/// `release` with the user's values after its own: files, then strings, then typed values.
fn with_overrides(release: &Release, overrides: &crate::cli::ValueOverrides) -> Release {
    let mut release = release.clone();
    release.values_files.extend(overrides.values.iter().cloned());
    release.set.extend(overrides.set_string.iter().cloned());
    release.set_typed.extend(overrides.set.iter().cloned());
    release
}

/// One step of a plan: an id (stable, for the journal) and what it will do, in words.
#[derive(Clone)]
pub struct Step {
    pub id: String,
    pub description: String,
}

pub fn step(id: impl Into<String>, description: impl Into<String>) -> Step {
    Step { id: id.into(), description: description.into() }
}

/// Prints a plan, as `--dry-run` does.
pub fn print_plan(flow: &str, target: &Target, plan: &[Step]) {
    println!("plan for `{flow}` on release {} in {} (dry run: nothing will change):", target.release, target.namespace);
    for (n, step) in plan.iter().enumerate() {
        println!("  {}. {}", n + 1, step.description);
    }
}

/// A flow in progress: holds the release's Lease and keeps its journal entry current.
pub struct Run<'f, 'a> {
    flow: &'f Flow<'a>,
    plan: Vec<Step>,
    pub entry: Entry,
    lease: Option<lease::Held>,
    started: Instant,
}

impl<'f, 'a> Run<'f, 'a> {
    /// Takes the Lease (or fails naming its holder) and journals the run as started.
    pub fn begin(flow: &'f Flow<'a>, name: &str, args: String, plan: Vec<Step>) -> Result<Run<'f, 'a>> {
        let actor = journal::actor();
        let started_at = journal::now();
        let id = format!("{}-{name}-{:04x}", started_at.replace([':', '-'], ""), std::process::id() & 0xffff);
        let holder = format!("{actor} ({name} {id}, pid {})", std::process::id());
        let lease = flow.block_on(lease::acquire(&flow.client, &flow.target.namespace, &flow.target.lease_name(), &holder))?;
        let mut entry =
            Entry { id, flow: name.to_owned(), args, actor, started: started_at, result: "running".to_owned(), ..Default::default() };
        if let Some(overrides) = flow.overrides_in_words() {
            entry.facts.insert("values".to_owned(), overrides);
        }
        let run = Run { flow, plan, entry, lease: Some(lease), started: Instant::now() };
        run.save()?;
        println!("{name}: {} steps (journal entry {})", run.plan.len(), run.entry.id);
        Ok(run)
    }

    /// Takes the Lease and carries on an earlier run's journal entry (a paused or interrupted
    /// flow continued from this machine), with the plan of what is left.
    pub fn resume(flow: &'f Flow<'a>, mut entry: Entry, plan: Vec<Step>) -> Result<Run<'f, 'a>> {
        let holder = format!("{} ({} {}, pid {})", journal::actor(), entry.flow, entry.id, std::process::id());
        let lease = flow.block_on(lease::acquire(&flow.client, &flow.target.namespace, &flow.target.lease_name(), &holder))?;
        entry.result = "running".to_owned();
        entry.finished = None;
        entry.error = None;
        entry.facts.insert(format!("resumed_by_{}", entry.steps.len()), journal::actor());
        let run = Run { flow, plan, entry, lease: Some(lease), started: Instant::now() };
        run.save()?;
        println!("{}: continuing journal entry {} ({} steps left)", run.entry.flow, run.entry.id, run.plan.len());
        Ok(run)
    }

    /// Runs the planned step `id`: announces it, times it, journals its outcome.
    pub fn step<T>(&mut self, id: &str, work: impl FnOnce(&Flow<'a>) -> Result<T>) -> Result<T> {
        let position = self.plan.iter().position(|s| s.id == id).unwrap_or_else(|| panic!("step {id} is not in the plan"));
        let description = self.plan[position].description.clone();
        println!("[{}/{}] {description}", position + 1, self.plan.len());
        self.record(id, &description, "running", String::new(), 0.0)?;
        let started = Instant::now();
        let result = work(self.flow);
        let seconds = started.elapsed().as_secs_f64();
        self.journal_taken_back()?;
        match &result {
            Ok(_) => self.record(id, &description, "done", String::new(), seconds)?,
            Err(err) => self.record(id, &description, "failed", format!("{err:#}"), seconds)?,
        }
        result.with_context(|| format!("step {} ({description}) failed", position + 1))
    }

    /// Runs an unplanned step that undoes earlier ones after a failure.
    pub fn compensate<T>(&mut self, id: &str, description: &str, work: impl FnOnce(&Flow<'a>) -> Result<T>) -> Result<T> {
        println!("[undo] {description}");
        let started = Instant::now();
        let result = work(self.flow);
        self.journal_taken_back()?;
        let status = if result.is_ok() { "compensation" } else { "compensation-failed" };
        let detail = result.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default();
        self.record(id, description, status, detail, started.elapsed().as_secs_f64())?;
        result
    }

    /// Remembers a fact (from/to versions, findings) in the journal.
    pub fn fact(&mut self, key: &str, value: impl Into<String>) -> Result<()> {
        self.entry.facts.insert(key.to_owned(), value.into());
        self.save()
    }

    /// Journals the fields this run's Helm changes took back from other managers (fact
    /// `taken_back`, each change on its own line).
    fn journal_taken_back(&mut self) -> Result<()> {
        let taken: Vec<String> = self.flow.taken_back.borrow_mut().drain(..).collect();
        if taken.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = self.entry.facts.get("taken_back").map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default();
        lines.extend(taken);
        self.fact("taken_back", lines.join("\n"))
    }

    fn record(&mut self, id: &str, description: &str, status: &str, detail: String, seconds: f64) -> Result<()> {
        let record = StepRecord { id: id.to_owned(), description: description.to_owned(), status: status.to_owned(), detail, seconds };
        match self.entry.steps.iter_mut().rev().find(|s| s.id == id && s.status == "running") {
            Some(existing) => *existing = record,
            None => self.entry.steps.push(record),
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        self.flow.block_on(self.flow.journal().write(&self.entry))
    }

    /// The plan still ahead of this run.
    pub fn plan(&self) -> &[Step] {
        &self.plan
    }

    /// Journals the outcome and releases the Lease. `result` is "succeeded" or, for a failure,
    /// "failed" (compensated: stable serves as before) or "failed-needs-attention".
    pub fn finish(mut self, result: &str, error: Option<&anyhow::Error>) -> Result<()> {
        self.entry.result = result.to_owned();
        self.entry.finished = Some(journal::now());
        self.entry.error = error.map(|e| format!("{e:#}"));
        let saved = self.save();
        let lease = self.lease.take().expect("a run holds its lease until it finishes");
        let released = self.flow.block_on(lease.release());
        println!("{}: {result} in {:.1}s (journal entry {})", self.entry.flow, self.started.elapsed().as_secs_f64(), self.entry.id);
        saved.and(released)
    }
}

impl Drop for Run<'_, '_> {
    /// A run dropped without `finish` (a panic) still lets go of the Lease at once.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = self.flow.block_on(lease.release());
        }
    }
}
