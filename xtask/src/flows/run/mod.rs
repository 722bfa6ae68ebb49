//! The one skeleton every flow runs on: a plan of named steps; [`Run`] takes the release's Lease,
//! journals the run as it goes, announces and times each step, and ends the run in one place
//! ([`Run::end`]): on a failure it runs the flow's compensation if anything was changed, and the
//! journal says which of succeeded, failed (compensated: stable serves as before) or
//! failed-needs-attention it was.
//!
//! Architecture invariant: a flow changes its release only through [`Changes`], which a run
//! hands to its steps and compensations; the [`Flow`] connection itself can only read. Every
//! change through it takes back fields another field manager changed (`kubectl scale`, `set
//! image`, `rollout undo`) and reports and journals what it took back, and from whom.
mod connection;
pub mod fence;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::time::Instant;

use anyhow::{Context, Result};

pub use connection::{Flow, ROLLOUT_TIMEOUT};

use super::{ownership, Target};
use crate::chart;
use crate::helm::{Change, ReleaseSpec, Writer};
use crate::journal::{self, Entry, RunResult, StepRecord, StepStatus};
use crate::k8s::lease;

/// One step of a plan: an id (stable, for the journal) and what it will do, in words.
#[derive(Clone, Debug)]
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

/// How a flow's body ended when it did not fail.
pub enum Ending<T> {
    Succeeded(T),
    /// Stopped on purpose, to be carried on by a later command (a canary at its gate).
    Paused(T),
    /// Stopped on purpose by the person running it.
    Aborted(T),
    /// An unfinished flow undone on purpose.
    RolledBack(T),
    /// Every step ran, but what the last one checked failed and there is nothing safer to go
    /// back to (a rollback whose verification fails): journaled failed-needs-attention, and
    /// given back to the caller to report.
    NeedsAttention(T),
}

/// A compensation: it undoes with the run's [`Changes`] and says what it restored.
pub type Compensation<'u> = Box<dyn FnOnce(&Changes) -> Result<String> + 'u>;

/// What a failed flow does about what it changed.
pub enum Undo<'u> {
    /// Nothing it does needs undoing (a reload changes no desired state).
    Nothing,
    /// The flow is itself the way back (a rollback): its failure needs a person.
    NeedsAttention,
    /// Run this compensation (described in the journal) when the body changed anything; it says
    /// what it restored.
    With(String, Compensation<'u>),
    /// The flow ran its compensation itself, as one of its steps (a canary's abort); this is
    /// how that went.
    Ran(Result<String>),
}

impl<'u> Undo<'u> {
    pub fn with(description: impl Into<String>, work: impl FnOnce(&Changes) -> Result<String> + 'u) -> Undo<'u> {
        Undo::With(description.into(), Box::new(work))
    }
}

/// A flow in progress: holds the release's Lease and keeps its journal entry current.
/// The journal fact holding the Helm revision a run left the release at (runs that changed it).
pub const HELM_REVISION_FACT: &str = "helm_revision";

pub struct Run<'f, 'a> {
    changes: Changes<'f, 'a>,
    plan: Vec<Step>,
    pub entry: Entry,
    lease: Option<lease::Held>,
    started: Instant,
}

impl<'f, 'a> Run<'f, 'a> {
    /// Takes the Lease (or fails naming its holder) and journals the run as started.
    pub fn begin(flow: &'f Flow<'a>, name: &str, args: String, plan: Vec<Step>) -> Result<Run<'f, 'a>> {
        require_namespace(flow)?;
        let actor = journal::actor();
        let started_at = journal::now();
        let id = format!("{}-{name}-{:04x}", started_at.replace([':', '-'], ""), std::process::id() & 0xffff);
        let holder = format!("{actor} ({name} {id}, pid {})", std::process::id());
        let lease = flow.block_on(lease::acquire(flow.client(), &flow.target.namespace, &flow.target.lease_name(), &holder))?;
        let mut entry = Entry { id, flow: name.to_owned(), args, actor, started: started_at, ..Default::default() };
        if let Some(overrides) = flow.overrides_in_words() {
            entry.facts.insert("values".to_owned(), overrides);
        }
        let run = Run::holding(flow, entry, plan, lease, &holder)?;
        // For a workflow's next job now, not when the run ends: a cancelled or killed job's
        // abort job still finds the run (`needs.<job>.outputs.run`).
        crate::report::github_output(&[("run", run.entry.id.as_str()), ("journal-entry", run.entry.id.as_str())]);
        println!("{name}: {} steps (journal entry {})", run.plan.len(), run.entry.id);
        Ok(run)
    }

    /// Takes the Lease and carries on an earlier run's journal entry (a paused or interrupted
    /// flow continued from this machine), with the plan of what is left.
    pub fn resume(flow: &'f Flow<'a>, mut entry: Entry, plan: Vec<Step>) -> Result<Run<'f, 'a>> {
        let holder = format!("{} ({} {}, pid {})", journal::actor(), entry.flow, entry.id, std::process::id());
        let lease = flow.block_on(lease::acquire(flow.client(), &flow.target.namespace, &flow.target.lease_name(), &holder))?;
        entry.result = RunResult::Running;
        entry.finished = None;
        entry.error = None;
        entry.facts.insert(format!("resumed_by_{}", entry.steps.len()), journal::actor());
        let run = Run::holding(flow, entry, plan, lease, &holder)?;
        println!("{}: continuing journal entry {} ({} steps left)", run.entry.flow, run.entry.id, run.plan.len());
        Ok(run)
    }

    /// A run that holds the Lease as `holder`: the release's latest revision read now, under the
    /// Lease (where the fence starts from), and its entry journaled. A failure lets go of the
    /// Lease at once.
    fn holding(flow: &'f Flow<'a>, mut entry: Entry, plan: Vec<Step>, lease: lease::Held, holder: &str) -> Result<Run<'f, 'a>> {
        let seen = match flow.record() {
            Ok(record) => fence::seen(record.current()),
            Err(err) => {
                let _ = flow.block_on(lease.release());
                return Err(err);
            }
        };
        entry.facts.insert(fence::SEEN_REVISION_FACT.to_owned(), seen.clone());
        let changes = Changes::new(flow, &entry.id, holder, &seen);
        crate::interrupt::run_began();
        let run = Run { changes, plan, entry, lease: Some(lease), started: Instant::now() };
        run.save()?;
        Ok(run)
    }

    /// The connection, to read with between steps.
    pub fn flow(&self) -> &'f Flow<'a> {
        self.changes.flow
    }

    /// Runs the planned step `id`: announces it, times it, journals its outcome.
    pub fn step<T>(&mut self, id: &str, work: impl FnOnce(&Changes<'f, 'a>) -> Result<T>) -> Result<T> {
        let position = self.plan.iter().position(|s| s.id == id).unwrap_or_else(|| panic!("step {id} is not in the plan"));
        let description = self.plan[position].description.clone();
        // A safe point: a Ctrl-C or a CI cancel stops the run here, before the step (interrupt.rs).
        if let Err(interrupted) = crate::interrupt::checkpoint() {
            return Err(anyhow::Error::new(interrupted).context(format!("stopped before step {} ({description})", position + 1)));
        }
        println!("[{}/{}] {description}", position + 1, self.plan.len());
        self.record(id, &description, StepStatus::Running, String::new(), 0.0)?;
        let started = Instant::now();
        let result = work(&self.changes);
        let seconds = started.elapsed().as_secs_f64();
        self.journal_taken_back()?;
        match &result {
            Ok(_) => self.record(id, &description, StepStatus::Done, String::new(), seconds)?,
            Err(err) => self.record(id, &description, StepStatus::Failed, format!("{err:#}"), seconds)?,
        }
        result.with_context(|| format!("step {} ({description}) failed", position + 1))
    }

    /// Runs an unplanned step that undoes earlier ones after a failure.
    pub fn compensate<T>(&mut self, id: &str, description: &str, work: impl FnOnce(&Changes<'f, 'a>) -> Result<T>) -> Result<T> {
        println!("[undo] {description}");
        let started = Instant::now();
        let result = work(&self.changes);
        self.journal_taken_back()?;
        let status = if result.is_ok() { StepStatus::Compensation } else { StepStatus::CompensationFailed };
        let detail = result.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default();
        self.record(id, description, status, detail, started.elapsed().as_secs_f64())?;
        result
    }

    /// Remembers a fact (from/to versions, findings) in the journal.
    pub fn fact(&mut self, key: &str, value: impl Into<String>) -> Result<()> {
        self.entry.facts.insert(key.to_owned(), value.into());
        self.save()
    }

    /// Whether this run has changed anything yet (a Helm revision, or a change the flow marked).
    pub fn changed_anything(&self) -> bool {
        self.changes.changed.get()
    }

    /// The plan still ahead of this run.
    pub fn plan(&self) -> &[Step] {
        &self.plan
    }

    /// Ends the run, the one way every flow ends: an ending journals its result; a failure
    /// before any change is "failed, nothing was changed"; a failure after one runs `undo` and is
    /// "failed" (compensated) or, when undoing failed too, "failed-needs-attention".
    pub fn end<T>(mut self, outcome: Result<Ending<T>>, undo: Undo) -> Result<T> {
        if let Some(signal) = crate::interrupt::delivered() {
            self.entry.facts.insert("interrupted".to_owned(), format!("{signal}: the run stopped at its next safe point"));
        }
        let err = match outcome {
            Ok(Ending::Succeeded(value)) => return self.finish(RunResult::Succeeded, None).map(|()| value),
            Ok(Ending::Paused(value)) => return self.finish(RunResult::Paused, None).map(|()| value),
            Ok(Ending::Aborted(value)) => return self.finish(RunResult::Aborted, None).map(|()| value),
            Ok(Ending::RolledBack(value)) => return self.finish(RunResult::RolledBack, None).map(|()| value),
            Ok(Ending::NeedsAttention(value)) => return self.finish(RunResult::FailedNeedsAttention, None).map(|()| value),
            Err(err) => err,
        };
        if let Some(fenced) = fence::fenced(&err) {
            // Someone else changed the release (or the Lease is no longer this run's): their
            // change stays, since undoing this run's would overwrite it; and the run is closed,
            // not left to be resumed, since its plan no longer describes the release (a resumed
            // blue/green switch would scale down the colour a hand rollback made live again).
            self.entry.facts.insert("fenced".to_owned(), fenced.0.clone());
            self.finish(RunResult::Closed, Some(&err))?;
            return Err(err.context(
                "the release was changed by someone else mid-flow; that change is left in place (this run undid nothing over \
                 it) and the run is closed: `cargo xtask status` shows who changed what, `cargo xtask doctor` where the release \
                 stands",
            ));
        }
        match undo {
            _ if !self.changed_anything() => {
                self.finish(RunResult::Failed, Some(&err))?;
                Err(err.context("nothing was changed"))
            }
            Undo::NeedsAttention => {
                self.finish(RunResult::FailedNeedsAttention, Some(&err))?;
                Err(err.context("`cargo xtask doctor` shows the state of the release"))
            }
            Undo::Nothing => {
                self.finish(RunResult::Failed, Some(&err))?;
                Err(err)
            }
            Undo::Ran(Ok(restored)) => {
                self.finish(RunResult::Failed, Some(&err))?;
                Err(err.context(restored))
            }
            Undo::Ran(Err(undo_err)) => {
                self.finish(RunResult::FailedNeedsAttention, Some(&err))?;
                Err(err.context(format!("undoing it failed too ({undo_err:#}); run `cargo xtask doctor`")))
            }
            Undo::With(description, work) => match self.compensate("restore", &description, |changes| work(changes)) {
                Ok(restored) => {
                    self.finish(RunResult::Failed, Some(&err))?;
                    Err(err.context(restored))
                }
                Err(undo_err) => {
                    self.finish(RunResult::FailedNeedsAttention, Some(&err))?;
                    Err(err.context(format!("undoing it failed too ({undo_err:#}); run `cargo xtask doctor`")))
                }
            },
        }
    }

    /// Journals the outcome and releases the Lease (for flows whose ending is their own state
    /// machine's; most end with [`Run::end`]).
    pub fn finish(mut self, result: RunResult, error: Option<&anyhow::Error>) -> Result<()> {
        self.entry.result = result;
        self.entry.finished = Some(journal::now());
        self.entry.error = error.map(|e| format!("{e:#}"));
        // Where the release stands after the run, for a workflow's next job and the journal's
        // reader: read, not assumed (a compensation makes a revision of its own).
        if self.changed_anything() {
            if let Some(current) = self.changes.flow.record().ok().and_then(|record| record.current().cloned()) {
                self.entry.facts.insert(HELM_REVISION_FACT.to_owned(), current.revision.to_string());
            }
        }
        self.changes.flow.ended_runs.borrow_mut().push(self.entry.clone());
        let saved = self.save();
        let lease = self.lease.take().expect("a run holds its lease until it finishes");
        let released = self.changes.flow.block_on(lease.release());
        crate::interrupt::run_ended();
        println!("{}: {result} in {:.1}s (journal entry {})", self.entry.flow, self.started.elapsed().as_secs_f64(), self.entry.id);
        saved.and(released)
    }

    /// Journals the fields this run's Helm changes took back from other managers (fact
    /// `taken_back`, each change on its own line).
    fn journal_taken_back(&mut self) -> Result<()> {
        let taken: Vec<String> = self.changes.flow.taken_back.borrow_mut().drain(..).collect();
        if taken.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = self.entry.facts.get("taken_back").map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default();
        lines.extend(taken);
        self.fact("taken_back", lines.join("\n"))
    }

    fn record(&mut self, id: &str, description: &str, status: StepStatus, detail: String, seconds: f64) -> Result<()> {
        let record = StepRecord { id: id.to_owned(), description: description.to_owned(), status, detail, seconds };
        match self.entry.steps.iter_mut().rev().find(|s| s.id == id && s.status == StepStatus::Running) {
            Some(existing) => *existing = record,
            None => self.entry.steps.push(record),
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        let flow = self.changes.flow;
        flow.block_on(flow.journal().write(&self.entry))
    }
}

impl Drop for Run<'_, '_> {
    /// A run dropped without finishing (a panic) still lets go of the Lease at once.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = self.changes.flow.block_on(lease.release());
            crate::interrupt::run_ended();
        }
    }
}

/// A namespace that does not exist, said in words (the API's answer would be a raw 404 Status
/// from creating the Lease).
fn require_namespace(flow: &Flow) -> Result<()> {
    let t = &flow.target;
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(flow.client().clone());
    match flow.block_on(namespaces.get_opt(&t.namespace)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => anyhow::bail!(
            "namespace {} does not exist on this cluster ({} of kubeconfig {}): create it and the Secrets the release \
             reads first; `cargo xtask preflight --env {}{}` lists what is missing (nothing was changed)",
            t.namespace,
            t.access().context_in_words(),
            t.kubeconfig.display(),
            t.env.name(),
            if t.namespace == t.env.namespace() { String::new() } else { format!(" --namespace {}", t.namespace) }
        ),
        // No right to read namespaces is not a reason to stop: the Lease's own error says more.
        Err(_) => Ok(()),
    }
}

/// What a step may change the release with. Reads go through to the [`Flow`] (it derefs to
/// it); every change here takes back fields other managers changed and counts as a change for
/// [`Run::end`].
pub struct Changes<'f, 'a> {
    flow: &'f Flow<'a>,
    changed: Cell<bool>,
    /// The run's journal id, in every Helm revision's description (`fence::stamp`).
    run_id: String,
    /// The run's identity in the release's Lease, and the latest revision it saw when it began:
    /// what the fence checks before every write.
    holder: String,
    seen: std::cell::RefCell<String>,
}

impl<'f, 'a> std::ops::Deref for Changes<'f, 'a> {
    type Target = Flow<'a>;
    fn deref(&self) -> &Flow<'a> {
        self.flow
    }
}

impl<'f, 'a> Changes<'f, 'a> {
    fn new(flow: &'f Flow<'a>, run_id: &str, holder: &str, seen: &str) -> Changes<'f, 'a> {
        Changes {
            flow,
            changed: Cell::new(false),
            run_id: run_id.to_owned(),
            holder: holder.to_owned(),
            seen: std::cell::RefCell::new(seen.to_owned()),
        }
    }

    /// The fence, before every write (`fence.rs`): this run still holds the release's Lease,
    /// read now, and the release's latest Helm revision is one it made or the one it saw. Also
    /// asked during a long hold, so that a hand change ends the run in seconds, not at its end.
    pub fn fence(&self) -> Result<()> {
        let t = &self.flow.target;
        let client = self.flow.client();
        if let Some(lost) = self.flow.block_on(lease::still_held(client, &t.namespace, &t.lease_name(), &self.holder))? {
            return Err(fence::Fenced(lost).into());
        }
        let record = self.flow.record().context("reading Helm's record before a change")?;
        match fence::made_by_someone_else(record.current(), &self.run_id, &self.seen.borrow()) {
            Some(found) => Err(fence::Fenced(found).into()),
            None => Ok(()),
        }
    }

    /// `change` as this run makes it: its description says which run made the revision.
    fn stamped(&self, change: &Change) -> Change {
        Change { description: fence::stamp(&change.description, &self.run_id), ..change.clone() }
    }

    fn writer(&self) -> Result<&Writer<'a>> {
        if let Some(writer) = self.flow.writer.get() {
            return Ok(writer);
        }
        #[allow(clippy::disallowed_methods)] // the one place a flow gets helm's writes
        let writer = Writer::new(self.flow.sh)?;
        Ok(self.flow.writer.get_or_init(|| writer))
    }

    /// After this run changed Helm's history itself without a revision (removed the record of a
    /// dead operation): the release's latest revision now is one it knows.
    pub fn knows_the_current_revision(&self) -> Result<()> {
        self.seen.replace(fence::seen(self.flow.record()?.current()));
        Ok(())
    }

    /// Before a change made outside Helm (a Secret written, an object deleted), which a failure
    /// must undo: the fence, then the run counts as having changed something.
    pub fn about_to_change(&self) -> Result<()> {
        self.fence()?;
        self.changed.set(true);
        Ok(())
    }

    /// Every `helm upgrade` a flow makes. The first one also applies the user's values.
    pub fn upgrade(&self, release: &ReleaseSpec, change: &Change) -> Result<()> {
        self.fence()?;
        let release = self.flow.as_first_upgrade(release);
        self.flow.overrides.borrow_mut().take();
        let planned = self.flow.helm()?.planned_values(&chart::chart_dir(), &release)?;
        let handed = self.hand_over_secrets(&chart::Values::of(&planned)?)?;
        self.taking_back(&self.stamped(change), |change| self.writer()?.upgrade(&chart::chart_dir(), &release, change))?;
        self.until_taken_over(&handed)
    }

    /// Before a Helm change that delivers the release's Secrets another way (manual, sealed,
    /// external): each existing Secret handed to its next owner, so none is ever missing
    /// (`handover.rs`).
    fn hand_over_secrets(&self, to: &chart::Values) -> Result<Vec<super::handover::Handed>> {
        let t = &self.flow.target;
        let handed = self.flow.block_on(super::handover::hand_over(self.flow.client(), &t.namespace, to))?;
        if !handed.is_empty() {
            self.changed.set(true);
        }
        Ok(handed)
    }

    /// After that change: the new owners hold them.
    fn until_taken_over(&self, handed: &[super::handover::Handed]) -> Result<()> {
        let t = &self.flow.target;
        self.flow.block_on(super::handover::until_taken_over(self.flow.client(), &t.namespace, handed, self.rollout_timeout))
    }

    /// `helm upgrade` of the release with exactly `values` (a release's supplied values, changed):
    /// for changes that keep everything else as it is, like a restart or a rollback to a tag.
    pub fn upgrade_with_values(&self, values: &serde_json::Value, change: &Change) -> Result<()> {
        // helm reads JSON as YAML; the file holds no secrets (values name Secrets, never hold them).
        let file = tempfile::Builder::new().prefix("shipshape-values-").suffix(".json").tempfile()?;
        std::fs::write(file.path(), serde_json::to_vec(values)?)?;
        let release = ReleaseSpec {
            name: self.flow.target.release.clone(),
            namespace: self.flow.target.namespace.clone(),
            values_files: vec![file.path().to_path_buf()],
            set: Vec::new(),
            set_typed: Vec::new(),
        };
        self.upgrade(&release, change)
    }

    /// One Helm revision that changes only `changes` (merged into the release's supplied values,
    /// a null removing a key): every traffic switch, scale and restart a flow makes.
    pub fn change_values(&self, changes: serde_json::Value, description: &str) -> Result<()> {
        let mut values = self.flow.supplied_values()?;
        crate::helm::merge(&mut values, &changes);
        self.upgrade_with_values(&values, &Change::new(&self.flow.target.access(), description))
    }

    /// Every `helm rollback` a flow makes.
    pub fn rollback(&self, revision: u32, change: &Change) -> Result<()> {
        self.fence()?;
        let t = &self.flow.target;
        let returning_to = self.flow.helm()?.values(&t.release, &t.namespace, &t.access(), Some(revision), true)?;
        let handed = self.hand_over_secrets(&chart::Values::of(&returning_to)?)?;
        self.taking_back(&self.stamped(change), |change| self.writer()?.rollback(&t.release, &t.namespace, revision, change))?;
        self.until_taken_over(&handed)
    }

    /// `helm uninstall`: only to undo a first install that never became healthy.
    pub fn uninstall(&self) -> Result<()> {
        self.fence()?;
        let t = &self.flow.target;
        self.changed.set(true);
        self.writer()?.uninstall(&t.release, &t.namespace, &t.access())
    }

    /// Reads who owns what on the release's Deployments, applies with `--force-conflicts` when
    /// another manager owns fields (Helm 4's server-side apply refuses them otherwise: a hand-
    /// scaled canary would make `canary abort` fail), then reads again to report what moved back.
    fn taking_back(&self, change: &Change, apply: impl FnOnce(&Change) -> Result<()>) -> Result<()> {
        let t = &self.flow.target;
        let read = || -> Result<Vec<ownership::ForeignFields>> {
            Ok(ownership::foreign_fields(&self.flow.block_on(ownership::deployments(self.flow.client(), &t.namespace, &t.release))?))
        };
        let before = read()?;
        let mut change = change.clone();
        for foreign in &before {
            println!("  changed behind Helm's back: {foreign}");
            change.force_conflicts = true;
        }
        // A helm call that fails may still have written a revision: count it as a change.
        self.changed.set(true);
        apply(&change)?;
        if !before.is_empty() {
            for taken in ownership::taken_back(&before, &read()?) {
                println!("  took back {} of Deployment {} from {}", taken.fields.join(", "), taken.deployment, taken.who());
                self.flow.taken_back.borrow_mut().push(taken.to_string());
            }
        }
        Ok(())
    }
}
