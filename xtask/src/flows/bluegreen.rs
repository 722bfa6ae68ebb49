//! `cargo xtask bluegreen`: the TenSafe runbook's blue/green, with both colours as Deployments of
//! one release and the switch as a Helm value (`blueGreen.activeSlot`). The flow's state (which
//! colours, which step next) lives in its journal entry, so it can be resumed or rolled back
//! from any machine. Its decisions (what a start, a rollback or a resume does from the journal's
//! state; what a failure at each step undoes) are pure functions, tested below without a cluster.
use std::time::Duration;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::deploy::refuse_unsafe_start_for_restart;
use super::images::{self, Wanted};
use super::{print_plan, step, verify, Changes, Flow, Run, Step};
use crate::chart::{self, Slot};
use crate::helm::record::ReleaseRecord;
use crate::helm::{Change, ReleaseSpec};
use crate::journal::{Entry, RunResult};
use crate::k8s::{pods, proxy, wait};
use crate::report::{self, Outcome, Output};

const STATE_FACT: &str = "bluegreen_state";

/// How often a blue/green hold asks the fence whether someone else changed the release.
const FENCE_EVERY_DURING_A_HOLD: Duration = Duration::from_secs(2);
/// What `bluegreen start` is asked to do.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// What goes on the idle colour: a tag, or what an earlier environment runs (by digest).
    pub image: Wanted,
    /// Seconds the old colour keeps running after the switch reached the Service's endpoints.
    pub scale_down_delay: u64,
    pub dry_run: bool,
}

/// What a blue/green flow does and how far it got.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct State {
    pub kind: Kind,
    /// The colour live when the flow started, and the one it makes live.
    pub from_slot: Slot,
    pub to_slot: Slot,
    pub from_tag: String,
    pub to_tag: String,
    /// The digest `to_tag` was resolved to when the flow started (empty for a switch back to a
    /// colour whose digest the release already records).
    #[serde(default)]
    pub to_digest: String,
    pub replicas: u64,
    pub scale_down_delay: u64,
    /// Index of the next step in `steps()`.
    pub next: usize,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// First install, in blue/green shape.
    Install,
    /// A new version on the idle colour, then the switch.
    Switch,
    /// Back to the previous colour.
    Rollback,
}

impl State {
    pub fn steps(&self) -> Vec<Step> {
        let (to, from, tag) = (self.to_slot, self.from_slot, &self.to_tag);
        match self.kind {
            Kind::Install => vec![
                step("install", format!("helm upgrade --install in blue/green shape: {to} live at {tag}")),
                step("wait-idle", format!("wait for the {to} Deployment to roll out")),
                step("verify", "run the seven post-deployment checks"),
            ],
            Kind::Switch | Kind::Rollback => vec![
                if self.kind == Kind::Switch {
                    step("deploy-idle", format!("deploy {tag} on the idle colour {to} at {} pods", self.replicas))
                } else {
                    step("deploy-idle", format!("scale the previous colour {to} ({tag}) up to {} pods", self.replicas))
                },
                step("wait-idle", format!("wait for the {to} Deployment to roll out (fails fast on crash loops and pull errors)")),
                step("smoke", format!("smoke-test {to} through the preview Service: /health, /ready, /version = {tag}")),
                step("switch", format!("switch the live Service from {from} to {to} (blueGreen.activeSlot, a Helm revision)")),
                step("verify", "run the seven post-deployment checks on the live colour"),
                step(
                    "propagate",
                    format!(
                        "keep {from} running until the live Service's endpoints are all {to}, then {} s more for kube-proxy",
                        self.scale_down_delay
                    ),
                ),
                step("scale-down", format!("scale {from} down to 0")),
            ],
        }
    }

    /// Whether the live Service had been switched when the step at `failed` failed (the switch
    /// itself counts: its Helm revision may have landed).
    fn switched_by(&self, failed: usize) -> bool {
        self.steps().iter().position(|s| s.id == "switch").is_some_and(|switch| failed >= switch)
    }
}

/// What undoes a flow that failed at step index `failed`.
#[derive(Debug, PartialEq)]
pub enum Undo {
    /// A first install has nothing to go back to: a person must look.
    NeedsAttention,
    /// Before the switch: the idle colour goes back down; live is untouched.
    ScaleDownIdle(Slot),
    /// After it: traffic back to `to` first, then `from` down.
    SwitchBack { to: Slot, from: Slot },
}

pub fn undo_after_failure(state: &State, failed: usize) -> Undo {
    match state.kind {
        Kind::Install => Undo::NeedsAttention,
        _ if state.switched_by(failed) => Undo::SwitchBack { to: state.from_slot, from: state.to_slot },
        _ => Undo::ScaleDownIdle(state.to_slot),
    }
}

/// The latest flow is unfinished and must be resumed or rolled back before a new one starts
/// (one that failed was compensated, and does not hold the release).
pub fn refuse_unfinished(entry: &Entry, state: &State) -> Result<()> {
    let unfinished = matches!(entry.result, RunResult::Running | RunResult::FailedNeedsAttention) && state.next < state.steps().len();
    if unfinished {
        bail!(
            "blue/green flow {} is unfinished ({}): `cargo xtask bluegreen resume` or `bluegreen rollback` first",
            entry.id,
            entry.result
        );
    }
    Ok(())
}

/// What `bluegreen resume` continues: the steps left of the latest flow, or why there are none.
pub fn resumable(entry: &Entry, state: &State) -> Result<Vec<Step>> {
    // Closed: its release changed under it (a hand rollback, a reinstall); going on from its
    // plan would act on a release it no longer describes (scale down a colour made live again).
    if matches!(entry.result, RunResult::Succeeded | RunResult::RolledBack | RunResult::Closed) || state.next >= state.steps().len() {
        bail!("the latest blue/green flow ({}) is {}: nothing to resume", entry.id, entry.result);
    }
    Ok(state.steps().into_iter().skip(state.next).collect())
}

/// What `bluegreen rollback` does, from the live colour and the latest flow.
#[derive(Debug, PartialEq)]
pub enum RollbackPlan {
    /// A switch interrupted before it switched: live is as it was; only its idle colour, never
    /// made live, goes back down (the interrupted run's journal entry is carried on).
    ScaleDownIdle(Slot),
    /// Switch back to the other colour (scaled up again first if it was scaled down).
    SwitchBack,
}

pub fn rollback_plan(live: Slot, latest: Option<(&Entry, &State)>) -> RollbackPlan {
    match latest {
        Some((entry, state))
            if state.kind == Kind::Switch
                && state.from_slot == live
                && !matches!(entry.result, RunResult::Succeeded | RunResult::RolledBack)
                && (entry.result == RunResult::Running || entry.finished.is_some()) =>
        {
            RollbackPlan::ScaleDownIdle(state.to_slot)
        }
        _ => RollbackPlan::SwitchBack,
    }
}

/// Where a blue/green flow is, in words.
pub fn describe(entry: &Entry, state: &State, lease_holder: Option<&str>) -> String {
    let what = match state.kind {
        Kind::Install => format!("install of {} on {}", state.to_tag, state.to_slot),
        Kind::Switch => format!("switch from {} ({}) to {} ({})", state.from_slot, state.from_tag, state.to_slot, state.to_tag),
        Kind::Rollback => format!("switch back from {} to {} ({})", state.from_slot, state.to_slot, state.to_tag),
    };
    let steps = state.steps();
    match (entry.result, steps.get(state.next)) {
        (RunResult::Running, Some(next)) if lease_holder.is_none() => format!(
            "{what}: interrupted before \"{}\" (its process is gone): `cargo xtask bluegreen resume` or `bluegreen rollback`",
            next.description
        ),
        (RunResult::Running, _) => format!("{what}: running (held by {})", lease_holder.unwrap_or("?")),
        // Undone on purpose: nothing of it is left to resume.
        (RunResult::RolledBack, _) => format!("{what}: rolled back"),
        (RunResult::Closed, _) => format!(
            "{what}: closed, its release changed under it ({}): `cargo xtask bluegreen rollback` undoes what is left of it, \
             or `bluegreen start` begins anew",
            entry.error.as_deref().and_then(|e| e.rsplit(": ").next()).unwrap_or("see `cargo xtask status`")
        ),
        (result, Some(next)) if result != RunResult::Succeeded => {
            format!("{what}: {result} before \"{}\": `cargo xtask bluegreen resume` or `bluegreen rollback`", next.description)
        }
        (result, _) => format!("{what}: {result}"),
    }
}

/// What `bluegreen start` of `tag` does from Helm's record: a first install in blue/green shape
/// (blue live, at the environment's `planned` replicas), or the new version on the idle colour
/// and the switch; refused on a release of the standard shape and when live runs `tag` already.
pub fn start_state(release: &str, current: &ReleaseRecord, planned: &chart::Values, tag: &str, scale_down_delay: u64) -> Result<State> {
    if !current.is_installed() {
        return Ok(State {
            kind: Kind::Install,
            from_slot: Slot::Green,
            to_slot: Slot::Blue,
            from_tag: String::new(),
            to_tag: tag.to_owned(),
            to_digest: String::new(),
            replicas: u64::from(planned.replica_count),
            scale_down_delay,
            next: 0,
        });
    }
    let Some(live) = current.values.live_slot() else {
        bail!(
            "release {release} runs the standard shape (one stable Deployment); blue/green needs a release installed by \
             `cargo xtask bluegreen start` (converting in place would briefly leave the Service without ready pods)"
        );
    };
    let from_tag = current.stable_tag().unwrap_or_default().to_owned();
    if from_tag == tag {
        bail!("the live colour {live} already runs {tag}");
    }
    Ok(State {
        kind: Kind::Switch,
        from_slot: live,
        to_slot: live.other(),
        from_tag,
        to_tag: tag.to_owned(),
        to_digest: String::new(),
        replicas: u64::from(current.values.replica_count),
        scale_down_delay,
        next: 0,
    })
}

/// `bluegreen start`.
pub fn start_flow(flow: &Flow, args: &StartOptions) -> Result<State> {
    let t = &flow.target;
    let source = args.image.source(flow)?;
    let tag = source.tag().to_owned();
    let current = flow.record()?;
    refuse_unsafe_start_for_restart(&current)?;
    if let Some((entry, state)) = flow.latest_state::<State>("bluegreen", STATE_FACT)? {
        refuse_unfinished(&entry, &state)?;
    }
    flow.policy()?;
    let planned = flow.planned()?;
    let mut state = start_state(&t.release, &current, &planned, &tag, args.scale_down_delay)?;
    let mut plan = Vec::from(images::plan_steps(&source.in_words(&planned.image.repository)));
    plan.extend(state.steps());
    if args.dry_run {
        print_plan("bluegreen", t, &plan);
        return Ok(state);
    }
    // What the release runs (or, not installed yet, what the environment's values give).
    let values = if current.is_installed() { &current.values } else { &planned };
    let mut run = Run::begin(flow, "bluegreen", format!("start --tag {}", state.to_tag), plan)?;
    run.fact("from_image", current.stable_image().unwrap_or_default())?;
    match images::source_and_check(&mut run, &values.image.repository, &source, &values.pull_secrets()) {
        Ok(pinned) => state.to_digest = pinned.digest,
        Err(err) => {
            run.finish(RunResult::Failed, Some(&err))?;
            return Err(err.context("nothing was changed"));
        }
    }
    drive(run, state)
}

/// `bluegreen rollback`: back to the other colour, or, for a flow interrupted before its switch,
/// the idle colour scaled back down.
pub fn rollback(flow: &Flow, scale_down_delay: u64, dry_run: bool) -> Result<State> {
    let t = &flow.target;
    let current = flow.record()?;
    refuse_unsafe_start_for_restart(&current)?;
    let Some(live) = current.values.live_slot() else {
        bail!("release {} does not run blue/green: use `cargo xtask rollback`", t.release);
    };
    let previous = live.other();
    let previous_tag = current.values.slot(previous).tag.clone();
    if previous_tag.is_empty() {
        bail!("the other colour ({previous}) has never run a version: there is nothing to switch back to");
    }
    let latest = flow.latest_state::<State>("bluegreen", STATE_FACT)?;
    if let (RollbackPlan::ScaleDownIdle(idle), Some((entry, interrupted))) =
        (rollback_plan(live, latest.as_ref().map(|(e, s)| (e, s))), latest.clone())
    {
        let plan = vec![step("scale-down-idle", format!("scale the idle colour {idle} (never made live) back down to 0"))];
        if dry_run {
            print_plan("bluegreen rollback", t, &plan);
            return Ok(interrupted);
        }
        let mut run = Run::resume(flow, entry, plan)?;
        let outcome = run.step("scale-down-idle", |changes| scale_down(changes, idle)).map(|()| super::Ending::RolledBack(interrupted));
        return run.end(outcome, super::Undo::NeedsAttention);
    }
    let state = State {
        kind: Kind::Rollback,
        from_slot: live,
        to_slot: previous,
        from_tag: current.stable_tag().unwrap_or_default().to_owned(),
        to_tag: previous_tag,
        to_digest: String::new(),
        replicas: u64::from(current.values.replica_count),
        scale_down_delay,
        next: 0,
    };
    if dry_run {
        print_plan("bluegreen rollback", t, &state.steps());
        return Ok(state);
    }
    let run = Run::begin(flow, "bluegreen", format!("rollback to {previous}"), state.steps())?;
    drive(run, state)
}

/// `bluegreen resume`: the latest unfinished flow, from its next step.
pub fn resume(flow: &Flow) -> Result<State> {
    let Some((entry, state)) = flow.latest_state::<State>("bluegreen", STATE_FACT)? else {
        bail!("no blue/green flow has run on this release");
    };
    let plan = resumable(&entry, &state)?;
    let run = Run::resume(flow, entry, plan)?;
    drive(run, state)
}

/// `bluegreen status`: each colour's tag and ready pods, and where the latest flow is.
pub fn status(flow: &Flow, output: Output) -> Result<()> {
    let t = &flow.target;
    let current = flow.record()?;
    let mut colours = Vec::new();
    if let Some(live) = current.values.live_slot() {
        for slot in [Slot::Blue, Slot::Green] {
            let ready = flow.block_on(slot_pods(flow, slot))?.len();
            colours.push(json!({"slot": slot, "live": slot == live, "tag": current.values.slot(slot).tag, "ready_pods": ready}));
        }
    }
    let latest = flow.latest_state::<State>("bluegreen", STATE_FACT)?;
    let holder = flow.lease_holder()?;
    let where_it_is = latest.as_ref().map(|(entry, state)| describe(entry, state, holder.as_deref()));
    if output == Output::Json {
        let latest_json =
            latest.as_ref().map(|(entry, state)| json!({"run": entry.id, "actor": entry.actor, "result": entry.result, "state": state}));
        report::print_json(&json!({"colours": colours, "latest": latest_json, "where": where_it_is}))?;
        return Ok(());
    }
    if colours.is_empty() {
        println!("release {} does not run blue/green", t.release);
    }
    for c in &colours {
        let role = if c["live"] == true { "LIVE" } else { "idle" };
        println!(
            "  {:<5} {role:<5} tag {:<28} {} ready pods",
            c["slot"].as_str().unwrap_or_default(),
            c["tag"].as_str().unwrap_or_default(),
            c["ready_pods"]
        );
    }
    if let (Some((entry, _)), Some(where_it_is)) = (&latest, &where_it_is) {
        println!("latest flow {} by {}: {}", entry.id, entry.actor, where_it_is);
    }
    Ok(())
}

/// Runs the remaining steps, journaling the position after each; compensates on failure.
fn drive(mut run: Run, mut state: State) -> Result<State> {
    let steps = state.steps();
    run.fact(STATE_FACT, serde_json::to_string(&state)?)?;
    while state.next < steps.len() {
        let id = steps[state.next].id.clone();
        if let Err(err) = run.step(&id, |changes| do_step(changes, &state, &id)) {
            return fail(run, &state, err);
        }
        state.next += 1;
        run.fact(STATE_FACT, serde_json::to_string(&state)?)?;
    }
    println!("blue/green: {} is live at {}", state.to_slot, state.to_tag);
    run.end(Ok(super::Ending::Succeeded(state)), super::Undo::NeedsAttention)
}

/// Undoes a failed flow (see [`undo_after_failure`]) and ends its run.
fn fail(run: Run, state: &State, err: anyhow::Error) -> Result<State> {
    let (from_slot, from_tag, replicas) = (state.from_slot, state.from_tag.clone(), state.replicas);
    let undo = match undo_after_failure(state, state.next) {
        Undo::NeedsAttention => {
            return run.end(Err(err.context("the blue/green install failed: `cargo xtask doctor`")), super::Undo::NeedsAttention)
        }
        Undo::ScaleDownIdle(idle) => {
            super::Undo::with(format!("scale the idle colour {idle} back down (live {from_slot} untouched)"), move |changes| {
                scale_down(changes, idle)?;
                Ok(format!("blue/green failed; {from_slot} ({from_tag}) serves as before"))
            })
        }
        Undo::SwitchBack { to, from } => {
            super::Undo::with(format!("switch the live Service back to {to}, then scale {from} down"), move |changes| {
                changes.change_values(
                    json!({"blueGreen": {"activeSlot": to, to.name(): {"replicaCount": null}, from.name(): {"replicaCount": replicas}}}),
                    "shipshape bluegreen: switch back",
                )?;
                changes.block_on(wait_endpoints(changes, &chart::live_service(&changes.target.release), to))?;
                scale_down(changes, from)?;
                Ok(format!("blue/green failed; {to} ({from_tag}) serves as before"))
            })
        }
    };
    run.end(Err(err), undo)
}

fn do_step(changes: &Changes, state: &State, id: &str) -> Result<()> {
    let t = &changes.target;
    let (to, from) = (state.to_slot, state.from_slot);
    match id {
        "install" => {
            let mut overlay =
                json!({"image": {"tag": state.to_tag}, "blueGreen": {"enabled": true, "activeSlot": to, to.name(): {"tag": state.to_tag}}});
            crate::helm::merge(&mut overlay, &chart::digest_values(&state.to_tag, &state.to_digest));
            let file = tempfile::Builder::new().prefix("shipshape-values-").suffix(".json").tempfile()?;
            std::fs::write(file.path(), serde_json::to_vec(&overlay)?)?;
            let env_release = t.chart_release(None);
            let release = ReleaseSpec {
                values_files: env_release.values_files.iter().cloned().chain([file.path().to_path_buf()]).collect(),
                ..env_release
            };
            changes.upgrade(&release, &Change::new(&t.access(), format!("shipshape bluegreen: install, {to} live at {}", state.to_tag)))
        }
        "deploy-idle" => {
            let mut values = json!({"blueGreen": {to.name(): {"tag": state.to_tag, "replicaCount": state.replicas}}});
            crate::helm::merge(&mut values, &chart::digest_values(&state.to_tag, &state.to_digest));
            changes.change_values(values, &format!("shipshape bluegreen: {} on idle {to}", state.to_tag))
        }
        "wait-idle" => {
            let name = chart::slot_deployment(&t.release, to);
            changes.block_on(wait::deployment_rolled_out(changes.client(), &t.namespace, &name, changes.rollout_timeout)).map(drop)
        }
        "smoke" => {
            let preview = chart::preview_service(&t.release);
            changes.block_on(wait_endpoints(changes, &preview, to))?;
            changes.block_on(smoke(changes, &preview, &state.to_tag))
        }
        "switch" => changes.change_values(
            json!({"blueGreen": {"activeSlot": to, to.name(): {"replicaCount": null}, from.name(): {"replicaCount": state.replicas}}}),
            &format!("shipshape bluegreen: switch live from {from} to {to} ({})", state.to_tag),
        ),
        "verify" => {
            let verification = verify::verify(changes)?;
            report::print_checks(&verification.checks);
            if verification.outcome == Outcome::Fail {
                bail!("post-deployment verification of {to} failed");
            }
            Ok(())
        }
        "propagate" => {
            changes.block_on(wait_endpoints(changes, &chart::live_service(&t.release), to))?;
            println!("  holding {from} for {} s more: every node's kube-proxy must have switched too", state.scale_down_delay);
            // A hold for kube-proxy on nodes the API cannot observe, by design; not a wait for a
            // state. The fence is asked through it: a hand `helm rollback` meanwhile ends the flow
            // within seconds (seen: it went on to "scale green down", scaling nothing, then waited
            // 300 s for green's serving pods to go).
            let until = std::time::Instant::now() + Duration::from_secs(state.scale_down_delay);
            loop {
                changes.fence()?;
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                crate::interrupt::pause(left.min(FENCE_EVERY_DURING_A_HOLD))?;
            }
        }
        "scale-down" => scale_down(changes, from),
        other => bail!("unknown blue/green step {other}"),
    }
}

/// Scales `slot` to 0 (its chart default when idle) and waits until its pods are gone.
fn scale_down(changes: &Changes, slot: Slot) -> Result<()> {
    changes
        .change_values(json!({"blueGreen": {slot.name(): {"replicaCount": null}}}), &format!("shipshape bluegreen: scale {slot} down"))?;
    let t = &changes.target;
    changes
        .block_on(wait::until(
            Api::<Pod>::namespaced(changes.client().clone(), &t.namespace),
            watcher::Config::default().labels(&chart::slot_selector(&t.release, slot)),
            &format!("{slot} pods gone"),
            changes.rollout_timeout,
            |pods| {
                if pods.is_empty() {
                    wait::Progress::Done("none left".to_owned())
                } else {
                    wait::Progress::Waiting(format!("{} left", pods.len()))
                }
            },
        ))
        .map(drop)
}

async fn slot_pods(flow: &Flow<'_>, slot: Slot) -> Result<Vec<Pod>> {
    let t = &flow.target;
    pods::ready_matching(flow.client(), &t.namespace, &chart::slot_selector(&t.release, slot)).await
}

/// Until Service `service`'s ready endpoints are exactly the ready pods of `slot`.
async fn wait_endpoints(flow: &Flow<'_>, service: &str, slot: Slot) -> Result<()> {
    let t = &flow.target;
    let wanted: std::collections::BTreeSet<String> = slot_pods(flow, slot).await?.into_iter().filter_map(|p| p.metadata.name).collect();
    if wanted.is_empty() {
        bail!("no ready {slot} pods for Service {service}");
    }
    wait::service_ready_endpoints(flow.client(), &t.namespace, service, flow.rollout_timeout, |ready| {
        if *ready == wanted {
            wait::Progress::Done(format!("{} ready endpoints, all {slot}", ready.len()))
        } else {
            wait::Progress::Waiting(format!("{} ready endpoints, {} of them {slot}", ready.len(), ready.intersection(&wanted).count()))
        }
    })
    .await
}

/// GET /health, /ready, /version through `service` (the API server's service proxy).
async fn smoke(flow: &Flow<'_>, service: &str, tag: &str) -> Result<()> {
    let t = &flow.target;
    for path in ["/health", "/ready", "/version"] {
        let answer = proxy::get(&flow.pod_client, &t.namespace, service, "http", path).await?;
        if answer.status != 200 {
            bail!("smoke test: {service} answered {} to GET {path}: {}", answer.status, answer.body.trim());
        }
        if path == "/version" && !answer.body.contains(tag) {
            bail!("smoke test: {service} reports {} instead of {tag}", answer.body.trim());
        }
        println!("  {service} {path}: {}", answer.body.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: Kind, next: usize) -> State {
        State {
            kind,
            from_slot: Slot::Blue,
            to_slot: Slot::Green,
            from_tag: "v1".into(),
            to_tag: "v2".into(),
            to_digest: String::new(),
            replicas: 4,
            scale_down_delay: 30,
            next,
        }
    }

    fn entry(result: RunResult, finished: bool) -> Entry {
        Entry {
            id: "run-1".into(),
            flow: "bluegreen".into(),
            result,
            finished: finished.then(|| "2026-12-05T00:00:00Z".to_owned()),
            ..Default::default()
        }
    }

    fn index_of(kind: Kind, id: &str) -> usize {
        state(kind, 0).steps().iter().position(|s| s.id == id).unwrap()
    }

    #[test]
    fn a_first_start_installs_blue_at_the_environment_s_size_and_a_later_one_switches_to_the_idle_colour() {
        let planned = crate::chart::Values::of(&serde_json::json!({"replicaCount": 10})).unwrap();
        let none = ReleaseRecord::with_history(&[], serde_json::Value::Null);
        let install = start_state("model-server", &none, &planned, "v1", 30).unwrap();
        assert_eq!((install.kind, install.to_slot, install.replicas, install.to_tag.as_str()), (Kind::Install, Slot::Blue, 10, "v1"));
        assert_eq!(install.steps().len(), 3);

        let green_live = serde_json::json!({
            "replicaCount": 4,
            "blueGreen": {"enabled": true, "activeSlot": "green", "blue": {"tag": "v1"}, "green": {"tag": "v2"}},
        });
        let installed = ReleaseRecord::with_history(&["superseded", "deployed"], green_live);
        let switch = start_state("model-server", &installed, &planned, "v3", 30).unwrap();
        assert_eq!((switch.kind, switch.from_slot, switch.to_slot), (Kind::Switch, Slot::Green, Slot::Blue));
        assert_eq!(
            (switch.from_tag.as_str(), switch.to_tag.as_str(), switch.replicas),
            ("v2", "v3", 4),
            "the release's size, not the file's"
        );
        assert_eq!(switch.steps().len(), 7);

        let again = start_state("model-server", &installed, &planned, "v2", 30).unwrap_err().to_string();
        assert!(again.contains("green already runs v2"), "{again}");
        let standard = ReleaseRecord::with_history(&["deployed"], serde_json::json!({"image": {"tag": "v1"}}));
        let refused = start_state("model-server", &standard, &planned, "v2", 30).unwrap_err().to_string();
        assert!(refused.contains("runs the standard shape") && refused.contains("without ready pods"), "{refused}");
    }

    /// A kill or failure at each step: before the switch only the idle colour is undone; from the
    /// switch on (its revision may have landed) traffic goes back first.
    #[test]
    fn a_failure_at_each_step_is_undone_by_what_it_reached() {
        let expected = [
            ("deploy-idle", Undo::ScaleDownIdle(Slot::Green)),
            ("wait-idle", Undo::ScaleDownIdle(Slot::Green)),
            ("smoke", Undo::ScaleDownIdle(Slot::Green)),
            ("switch", Undo::SwitchBack { to: Slot::Blue, from: Slot::Green }),
            ("verify", Undo::SwitchBack { to: Slot::Blue, from: Slot::Green }),
            ("propagate", Undo::SwitchBack { to: Slot::Blue, from: Slot::Green }),
            ("scale-down", Undo::SwitchBack { to: Slot::Blue, from: Slot::Green }),
        ];
        for kind in [Kind::Switch, Kind::Rollback] {
            assert_eq!(state(kind, 0).steps().len(), expected.len(), "every step has a case");
            for (id, undo) in &expected {
                assert_eq!(&undo_after_failure(&state(kind, 0), index_of(kind, id)), undo, "{kind:?} failing at {id}");
            }
        }
        for id in ["install", "wait-idle", "verify"] {
            assert_eq!(undo_after_failure(&state(Kind::Install, 0), index_of(Kind::Install, id)), Undo::NeedsAttention);
        }
    }

    #[test]
    fn only_an_unfinished_flow_holds_the_next_one_back() {
        let middle = state(Kind::Switch, 3);
        let cases = [
            (RunResult::Running, true, "a run whose process died (or still runs)"),
            (RunResult::FailedNeedsAttention, true, "a failure whose undo failed"),
            (RunResult::Failed, false, "a failure that was compensated"),
            (RunResult::Succeeded, false, "done"),
            (RunResult::RolledBack, false, "undone"),
        ];
        for (result, refused, why) in cases {
            assert_eq!(refuse_unfinished(&entry(result, true), &middle).is_err(), refused, "{why}");
        }
        let done = state(Kind::Switch, middle.steps().len());
        assert!(refuse_unfinished(&entry(RunResult::Running, false), &done).is_ok(), "no step left");
        let said = refuse_unfinished(&entry(RunResult::Running, false), &middle).unwrap_err().to_string();
        assert!(said.contains("bluegreen resume") && said.contains("bluegreen rollback"), "{said}");
    }

    #[test]
    fn resume_carries_on_from_the_next_step_of_an_unfinished_flow() {
        let at_smoke = state(Kind::Switch, 2);
        let left: Vec<String> = resumable(&entry(RunResult::Running, false), &at_smoke).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(left, ["smoke", "switch", "verify", "propagate", "scale-down"]);
        assert!(resumable(&entry(RunResult::Succeeded, true), &at_smoke).is_err());
        assert!(resumable(&entry(RunResult::RolledBack, true), &at_smoke).is_err());
        // Stopped by the fence (a hand rollback mid-hold) or closed for a reinstall: its plan no
        // longer describes the release, and resuming would scale down a colour made live again.
        assert!(resumable(&entry(RunResult::Closed, true), &at_smoke).is_err());
        let mut closed = entry(RunResult::Closed, true);
        closed.error = Some("step 9 failed: stopped before changing the release again: Helm revision 8 was made by someone else".into());
        let said = describe(&closed, &at_smoke, None);
        assert!(said.contains("closed, its release changed under it (Helm revision 8 was made by someone else)"), "{said}");
        assert!(said.contains("bluegreen rollback") && !said.contains("resume"), "{said}");
        let said = describe(&entry(RunResult::RolledBack, true), &at_smoke, None);
        assert!(said.ends_with(": rolled back"), "found by hand: a rolled-back switch was said to be resumable: {said}");
        let finished = state(Kind::Switch, 7);
        assert!(resumable(&entry(RunResult::Running, false), &finished).unwrap_err().to_string().contains("nothing to resume"));
    }

    #[test]
    fn rollback_of_a_switch_that_never_switched_scales_its_idle_colour_down() {
        let killed = state(Kind::Switch, 2);
        assert_eq!(rollback_plan(Slot::Blue, Some((&entry(RunResult::Running, false), &killed))), RollbackPlan::ScaleDownIdle(Slot::Green));
        assert_eq!(
            rollback_plan(Slot::Blue, Some((&entry(RunResult::Failed, true), &killed))),
            RollbackPlan::ScaleDownIdle(Slot::Green),
            "a failed switch whose compensation ran: scaling down again is harmless"
        );
        // Live is the new colour: the switch happened, so going back is a switch back.
        assert_eq!(rollback_plan(Slot::Green, Some((&entry(RunResult::Running, false), &killed))), RollbackPlan::SwitchBack);
        assert_eq!(
            rollback_plan(Slot::Blue, Some((&entry(RunResult::Succeeded, true), &state(Kind::Switch, 7)))),
            RollbackPlan::SwitchBack
        );
        assert_eq!(
            rollback_plan(Slot::Blue, Some((&entry(RunResult::Running, false), &state(Kind::Rollback, 2)))),
            RollbackPlan::SwitchBack
        );
        assert_eq!(rollback_plan(Slot::Blue, None), RollbackPlan::SwitchBack);
    }

    #[test]
    fn status_says_whether_a_run_is_alive_interrupted_or_done() {
        let at_propagate = state(Kind::Switch, 5);
        let dead = describe(&entry(RunResult::Running, false), &at_propagate, None);
        assert!(dead.contains("interrupted before") && dead.contains("bluegreen resume"), "{dead}");
        let alive = describe(&entry(RunResult::Running, false), &at_propagate, Some("ci via run 7"));
        assert!(alive.contains("running (held by ci via run 7)"), "{alive}");
        let failed = describe(&entry(RunResult::FailedNeedsAttention, true), &at_propagate, None);
        assert!(failed.contains("failed-needs-attention before"), "{failed}");
        let done = describe(&entry(RunResult::Succeeded, true), &state(Kind::Switch, 7), None);
        assert_eq!(done, "switch from blue (v1) to green (v2): succeeded");
    }

    /// Journals written when colours were strings read the same.
    #[test]
    fn the_journal_s_state_keeps_its_words() {
        let written = r#"{"kind":"switch","from_slot":"blue","to_slot":"green","from_tag":"v1","to_tag":"v2","replicas":4,"scale_down_delay":30,"next":3}"#;
        let read: State = serde_json::from_str(written).unwrap();
        assert_eq!(read, state(Kind::Switch, 3));
        assert_eq!(serde_json::to_value(&read).unwrap()["to_slot"], "green");
    }
}
