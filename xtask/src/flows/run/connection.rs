//! A flow's connection to its target: the shell for helm, the cluster connection (one tokio
//! runtime and its clients, [`crate::k8s::Connection`]), and what the environment asks. Everything here reads; changes to the release are made only
//! through a [`super::Run`]'s [`super::Changes`], which is why the write state below is visible
//! to `run` alone.
use std::cell::{OnceCell, RefCell};

use anyhow::{Context, Result};
use xshell::Shell;

use super::super::{Overrides, Target};
use crate::chart;
use crate::helm::record::ReleaseRecord;
use crate::helm::{Helm, Writer};
use crate::journal::{Entry, Journal};
use crate::k8s::lease;

pub struct Flow<'a> {
    pub sh: &'a Shell,
    pub target: Target,
    /// The runtime and client every API call of the flow shares.
    connection: crate::k8s::Connection,
    /// For HTTP to pods through the API server (see [`crate::k8s::pod_client`]).
    pub pod_client: kube::Client,
    /// What the person asks of the signature check (commands that change what runs set it
    /// from their flags); the environment's values decide with it ([`Flow::policy`]).
    pub signature: crate::signing::Request,
    /// Found on first use: commands that never run helm (verify, status) do not pay for it.
    helm: OnceCell<Helm<'a>>,
    /// See [`Flow::environment_values`].
    environment_values: OnceCell<serde_json::Value>,
    /// See [`Flow::planned`]: set with the user's values.
    planned_values: OnceCell<serde_json::Value>,
    /// The helm that changes the release: only a run reaches it (see [`super::Changes`]).
    pub(super) writer: OnceCell<Writer<'a>>,
    /// Fields taken back from other field managers by this process's Helm changes, not yet
    /// journaled (a running step journals them).
    pub(super) taken_back: RefCell<Vec<String>>,
    /// The user's values for this release (`--set`, `--set-string`, `-f`): applied by the
    /// flow's first Helm upgrade, which takes them; later revisions keep them as Helm does.
    pub(super) overrides: RefCell<Option<Overrides>>,
    /// The journal entries of the runs this process ended, as they ended: what `--output json`
    /// and `$GITHUB_OUTPUT` report.
    pub(super) ended_runs: RefCell<Vec<Entry>>,
    /// How long each wait of a changing flow may take (a rollout, a Secret's sync, a Deployment
    /// gone) before the flow fails and undoes what it changed: `--timeout`, as helm's.
    pub rollout_timeout: std::time::Duration,
}

/// The default `--timeout`: a rollout that has not finished in this long fails (stuck pods fail
/// it much sooner).
pub const ROLLOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl<'a> Flow<'a> {
    /// Connects, and prints which cluster, namespace and release the command works on.
    pub fn connect(sh: &'a Shell, target: Target) -> Result<Flow<'a>> {
        let access = target.access();
        let connection = crate::k8s::Connection::open(access.clone())?;
        let pod_client = connection.pod_client()?;
        let server = connection.server()?;
        eprintln!(
            "target: release {} in namespace {} ({}), {} of kubeconfig {}, API server {server}",
            target.release,
            target.namespace,
            target.env.name(),
            access.context_in_words(),
            target.kubeconfig.display()
        );
        Ok(Flow::over(sh, target, connection, pod_client))
    }

    /// A connection over clients made elsewhere (the skeleton's tests: a mock API server).
    #[cfg(test)]
    pub(crate) fn with_client(sh: &'a Shell, target: Target, runtime: tokio::runtime::Runtime, client: kube::Client) -> Flow<'a> {
        let access = target.access();
        let pod_client = client.clone();
        Flow::over(sh, target, crate::k8s::Connection::over(runtime, client, access), pod_client)
    }

    /// A flow over an open connection, nothing read yet.
    fn over(sh: &'a Shell, target: Target, connection: crate::k8s::Connection, pod_client: kube::Client) -> Flow<'a> {
        Flow {
            sh,
            target,
            connection,
            pod_client,
            signature: Default::default(),
            helm: OnceCell::new(),
            environment_values: OnceCell::new(),
            planned_values: OnceCell::new(),
            writer: OnceCell::new(),
            taken_back: Default::default(),
            overrides: Default::default(),
            ended_runs: Default::default(),
            rollout_timeout: ROLLOUT_TIMEOUT,
        }
    }

    /// The journal entries of the runs this process ended (a canary resumed and promoted in one
    /// command ends one run; a command refused before its run began, none).
    pub fn ended_runs(&self) -> Vec<Entry> {
        self.ended_runs.borrow().clone()
    }

    /// Runs async API work from the synchronous flow (helm calls stay off the runtime).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.connection.run(future)
    }

    /// The client the flow's API calls share.
    pub fn client(&self) -> &kube::Client {
        self.connection.client()
    }

    /// The flow's cluster connection, for cluster-layer calls made on its target.
    pub fn connection(&self) -> &crate::k8s::Connection {
        &self.connection
    }

    /// Helm's record of the release now (see [`ReleaseRecord::fetch`]).
    pub fn record(&self) -> Result<ReleaseRecord> {
        self.block_on(ReleaseRecord::fetch(self.client(), &self.target.namespace, &self.target.release))
    }

    /// Who holds the release's Lease now, if a live process does.
    pub fn lease_holder(&self) -> Result<Option<String>> {
        let t = &self.target;
        self.block_on(lease::current_holder(self.client(), &t.namespace, &t.lease_name()))
    }

    /// The environment's values for the release (chart defaults and deploy/envs/<env>.yaml, no
    /// user overrides): what the environment asks of an image. Rendered once per flow.
    pub fn environment_values(&self) -> Result<&serde_json::Value> {
        if let Some(values) = self.environment_values.get() {
            return Ok(values);
        }
        let values = self.helm()?.planned_values(&chart::chart_dir(), &self.target.chart_release(None))?;
        Ok(self.environment_values.get_or_init(|| values))
    }

    /// The environment's values, typed.
    pub fn environment(&self) -> Result<chart::Values> {
        chart::Values::of(self.environment_values()?)
    }

    /// The values a fresh deploy applies: the environment's with the user's (`-f`, `--set`), as
    /// [`Flow::set_overrides`] checked them. The registry an image is resolved in and the pull
    /// secrets come from here: a local prod cluster pulls from the local registry with `--set
    /// image.repository=localhost:5001/shipshape/model-server`.
    pub fn planned(&self) -> Result<chart::Values> {
        match self.planned_values.get() {
            Some(values) => chart::Values::of(values),
            None => self.environment(),
        }
    }

    /// What an image must prove before this flow deploys it: the environment's policy with the
    /// person's request, refused where the request would weaken it.
    pub fn policy(&self) -> Result<crate::signing::Policy> {
        crate::signing::Policy::decide(
            self.target.env.name(),
            &self.environment()?.supply_chain,
            &self.signature,
            k8s_openapi::jiff::Timestamp::now(),
        )
    }

    /// The pinned helm, for reading (checked on first use).
    pub fn helm(&self) -> Result<&Helm<'a>> {
        if let Some(helm) = self.helm.get() {
            return Ok(helm);
        }
        let helm = Helm::new(self.sh)?;
        Ok(self.helm.get_or_init(|| helm))
    }

    /// The release's supplied values now (what `helm get values` prints).
    pub fn supplied_values(&self) -> Result<serde_json::Value> {
        let t = &self.target;
        self.helm()?.values(&t.release, &t.namespace, &t.access(), None, false)
    }

    /// Sets the user's values for this flow, after checking them: no key the flow manages
    /// itself, the environment's signature policy unchanged, and what the chart renders with them
    /// passes its schema (nothing changes before).
    pub fn set_overrides(&self, overrides: &Overrides, managed: &[&str]) -> Result<()> {
        if overrides.is_empty() {
            return Ok(());
        }
        for (key, _) in overrides.set.iter().chain(&overrides.set_string) {
            if let Some(prefix) = managed.iter().find(|m| key == *m || key.starts_with(&format!("{m}."))) {
                anyhow::bail!("--set {key}: {prefix} is managed by this command itself (nothing was changed)");
            }
        }
        for file in &overrides.files {
            if !file.is_file() {
                anyhow::bail!("values file {} does not exist (nothing was changed)", file.display());
            }
        }
        let release = overrides.applied_to(&self.target.chart_release(None));
        let planned =
            self.helm()?.planned_values(&chart::chart_dir(), &release).context("the chart refuses these values (nothing was changed)")?;
        // The environment's signature policy is its values file: a values file given here may
        // not change it (`--set supplyChain.*` is refused above, as a managed key).
        let environment = self.environment_values()?;
        if planned["supplyChain"] != environment["supplyChain"] {
            anyhow::bail!(
                "a values file given here changes supplyChain, the environment's signature policy: it is set only in \
                 deploy/envs/{}.yaml (nothing was changed)",
                self.target.env.name()
            );
        }
        // A canary or a new colour runs from the registry the release runs from, where its
        // image was checked; moving registries is a standard deploy's change.
        if managed.contains(&"image") && planned["image"]["repository"] != environment["image"]["repository"] {
            anyhow::bail!(
                "a values file given here changes image.repository: a progressive flow runs its image from the release's \
                 registry; move registries with `cargo xtask deploy --set image.repository=...` (nothing was changed)"
            );
        }
        // Whatever the key before the first `=` said, what Helm made of the overrides is judged:
        // Helm splits `--set`/`--set-string` values on commas (`env.x=a,imageDigests.v1=sha256:..`
        // is two keys), and a values file may hold any key.
        if let Some(key) = super::super::changed_managed_key(&planned, environment, managed) {
            anyhow::bail!(
                "these values change {key}, which this command sets itself: from a values file (-f), or from a --set or \
                 --set-string value that Helm splits on a comma into another key (write a comma inside a value as \\,). \
                 Refused (nothing was changed)"
            );
        }
        *self.overrides.borrow_mut() = Some(overrides.clone());
        let _ = self.planned_values.set(planned);
        Ok(())
    }

    /// `release` as the flow's first upgrade will apply it: with the user's values, if any.
    pub fn as_first_upgrade(&self, release: &crate::helm::ReleaseSpec) -> crate::helm::ReleaseSpec {
        match self.overrides.borrow().as_ref() {
            Some(overrides) => overrides.applied_to(release),
            None => release.clone(),
        }
    }

    /// The user's values in words, for the journal.
    pub(super) fn overrides_in_words(&self) -> Option<String> {
        let overrides = self.overrides.borrow();
        let o = overrides.as_ref()?;
        let mut words: Vec<String> = o.files.iter().map(|f| format!("-f {}", f.display())).collect();
        words.extend(o.set.iter().map(|(k, v)| format!("--set {k}={v}")));
        words.extend(o.set_string.iter().map(|(k, v)| format!("--set-string {k}={v}")));
        Some(words.join(" "))
    }

    /// The newest run of flow `name` that keeps its state in journal fact `fact`, with that state.
    pub fn latest_state<S: serde::de::DeserializeOwned>(&self, name: &str, fact: &str) -> Result<Option<(Entry, S)>> {
        let entries = self.block_on(self.journal().entries())?;
        let Some(mut entry) = entries.into_iter().rev().find(|e| e.flow == name && e.facts.contains_key(fact)) else {
            return Ok(None);
        };
        self.close_if_stale(&mut entry)?;
        let state = serde_json::from_str(&entry.facts[fact])
            .with_context(|| format!("reading the {name} state from journal entry {}", entry.id))?;
        Ok(Some((entry, state)))
    }

    /// Closes unfinished run `entry` when its release is no longer the one it worked on
    /// (`fence.rs`): journaled closed, with what was found, so that no command is held by it.
    /// Whichever command reads it first closes it, a report too: it is a fact of the cluster.
    fn close_if_stale(&self, entry: &mut Entry) -> Result<()> {
        if !entry.result.is_unfinished() || self.lease_holder()?.is_some() {
            return Ok(());
        }
        let record = self.record()?;
        let Some(found) = super::fence::no_longer_matches(entry, &record.history, record.values.live_slot().is_some()) else {
            return Ok(());
        };
        entry.facts.insert("closed_from".to_owned(), entry.result.word().to_owned());
        entry.result = crate::journal::RunResult::Closed;
        entry.finished = Some(crate::journal::now());
        entry.error = Some(format!("closed by {}: {found}", crate::journal::actor()));
        match self.block_on(self.journal().write(entry)) {
            Ok(()) => eprintln!("note: {} run {} closed without going on: {found}", entry.flow, entry.id),
            // A reader without the right to write still sees it closed; the next change writes it.
            Err(err) => {
                eprintln!("note: {} run {} no longer matches its release ({found}); closing it failed: {err:#}", entry.flow, entry.id)
            }
        }
        Ok(())
    }

    pub fn journal(&self) -> Journal {
        Journal::new(self.client(), &self.target.namespace, &self.target.release)
    }
}
