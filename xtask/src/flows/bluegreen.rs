//! `cargo xtask bluegreen`: the TenSafe runbook's blue/green, with both colours as Deployments of
//! one release and the switch as a Helm value (`blueGreen.activeSlot`). The flow's state (which
//! colours, which step next) lives in its journal entry, so it can be resumed or rolled back
//! from any machine.
use std::time::Duration;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::Api;
use serde::{Deserialize, Serialize};
use serde_json::json;
use xshell::Shell;

use super::deploy::{pull_secrets, refuse_unsafe_start_for_restart, ROLLOUT_TIMEOUT};
use super::release::{self, ReleaseState};
use super::{images, print_plan, step, verify, Flow, Run, Step};
use crate::cli::{BlueGreen, BlueGreenAction, BlueGreenStart, BlueGreenStatus};
use crate::helm::{Change, Release};
use crate::journal::Entry;
use crate::k8s::{proxy, wait};
use crate::report::Output;
use crate::report::{self, Outcome};

const STATE_FACT: &str = "bluegreen_state";

/// What a blue/green flow does and how far it got.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct State {
    pub kind: Kind,
    /// The colour live when the flow started, and the one it makes live.
    pub from_slot: String,
    pub to_slot: String,
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
    fn steps(&self) -> Vec<Step> {
        let (to, from, tag) = (&self.to_slot, &self.from_slot, &self.to_tag);
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
}

impl BlueGreen {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.action {
            BlueGreenAction::Start(start) => {
                let flow = Flow::connect(sh, &start.target)?;
                flow.set_overrides(&start.values, super::FLOW_MANAGED_VALUES)?;
                start_flow(&flow, &start).map(drop)
            }
            BlueGreenAction::Rollback(t) => rollback(&Flow::connect(sh, &t.target)?, t.scale_down_delay, t.dry_run).map(drop),
            BlueGreenAction::Resume(t) => resume(&Flow::connect(sh, &t.target)?).map(drop),
            BlueGreenAction::Status(t) => {
                let flow = Flow::connect(sh, &t.target)?;
                report::repeat(t.watch, || status(&flow, &t).map(|()| report::Outcome::Pass))
            }
        }
    }
}

/// `bluegreen start`.
pub fn start_flow(flow: &Flow, args: &BlueGreenStart) -> Result<State> {
    let t = &flow.target;
    let current = ReleaseState::read(flow)?;
    refuse_unsafe_start_for_restart(&current)?;
    refuse_unfinished(flow)?;
    let planned = flow.environment_values()?;
    let mut state = if !current.is_installed() {
        State {
            kind: Kind::Install,
            from_slot: "green".to_owned(),
            to_slot: "blue".to_owned(),
            from_tag: String::new(),
            to_tag: args.tag.clone(),
            to_digest: String::new(),
            replicas: planned["replicaCount"].as_u64().unwrap_or(1),
            scale_down_delay: args.scale_down_delay,
            next: 0,
        }
    } else {
        let Some(live) = current.live_slot() else {
            bail!(
                "release {} runs the standard shape (one stable Deployment); blue/green needs a release installed by \
                 `cargo xtask bluegreen start` (converting in place would briefly leave the Service without ready pods)",
                t.release
            );
        };
        let idle = other(&live);
        let from_tag = release::tag_of(&current.stable_image().unwrap_or_default()).to_owned();
        if from_tag == args.tag {
            bail!("the live colour {live} already runs {}", args.tag);
        }
        State {
            kind: Kind::Switch,
            from_slot: live,
            to_slot: idle.to_owned(),
            from_tag,
            to_tag: args.tag.clone(),
            to_digest: String::new(),
            replicas: current.values["replicaCount"].as_u64().unwrap_or(1),
            scale_down_delay: args.scale_down_delay,
            next: 0,
        }
    };
    let mut plan = Vec::from(images::plan_steps(&format!("tag {}", state.to_tag)));
    plan.extend(state.steps());
    if args.dry_run {
        print_plan("bluegreen", t, &plan);
        return Ok(state);
    }
    // What the release runs (or, not installed yet, what the environment's values give).
    let values = if current.is_installed() { &current.values } else { planned };
    let repository = values["image"]["repository"].as_str().unwrap_or("shipshape/model-server").to_owned();
    let mut run = Run::begin(flow, "bluegreen", format!("start --tag {}", state.to_tag), plan)?;
    run.fact("from_image", current.stable_image().unwrap_or_default())?;
    let checked = images::resolve_and_check(&mut run, &repository, &state.to_tag, &args.signature, &pull_secrets(values));
    if let Ok(pinned) = &checked {
        state.to_digest = pinned.digest.clone();
    }
    if let Err(err) = checked {
        run.finish("failed", Some(&err))?;
        return Err(err.context("nothing was changed"));
    }
    drive(run, state)
}

/// `bluegreen rollback`: back to the other colour, or, for a flow interrupted before its switch,
/// the idle colour scaled back down.
pub fn rollback(flow: &Flow, scale_down_delay: u64, dry_run: bool) -> Result<State> {
    let t = &flow.target;
    let current = ReleaseState::read(flow)?;
    refuse_unsafe_start_for_restart(&current)?;
    let Some(live) = current.live_slot() else {
        bail!("release {} does not run blue/green: use `cargo xtask rollback`", t.release);
    };
    let previous = other(&live).to_owned();
    let previous_tag = current.values["blueGreen"][previous.as_str()]["tag"].as_str().unwrap_or_default().to_owned();
    if previous_tag.is_empty() {
        bail!("the other colour ({previous}) has never run a version: there is nothing to switch back to");
    }
    let unfinished = flow
        .latest_state::<State>("bluegreen", STATE_FACT)?
        .filter(|(entry, _)| entry.result != "succeeded" && entry.finished.is_some() || entry.result == "running");
    let state = State {
        kind: Kind::Rollback,
        from_slot: live.clone(),
        to_slot: previous.clone(),
        from_tag: release::tag_of(&current.stable_image().unwrap_or_default()).to_owned(),
        to_tag: previous_tag,
        to_digest: String::new(),
        replicas: current.values["replicaCount"].as_u64().unwrap_or(1),
        scale_down_delay,
        next: 0,
    };
    // An interrupted switch that never switched: live is unchanged, only the idle colour to undo.
    if let Some((entry, interrupted)) = unfinished {
        if interrupted.kind == Kind::Switch && interrupted.from_slot == live {
            let plan = vec![step("scale-down-idle", format!("scale the idle colour {previous} (never made live) back down to 0"))];
            if dry_run {
                print_plan("bluegreen rollback", t, &plan);
                return Ok(interrupted);
            }
            let mut run = Run::resume(flow, entry, plan)?;
            let result = run.step("scale-down-idle", |flow| scale_down(flow, &previous));
            return match result {
                Ok(()) => {
                    run.finish("rolled-back", None)?;
                    Ok(interrupted)
                }
                Err(err) => {
                    run.finish("failed-needs-attention", Some(&err))?;
                    Err(err)
                }
            };
        }
    }
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
    if entry.result == "succeeded" || entry.result == "rolled-back" || state.next >= state.steps().len() {
        bail!("the latest blue/green flow ({}) is {}: nothing to resume", entry.id, entry.result);
    }
    let plan: Vec<Step> = state.steps().into_iter().skip(state.next).collect();
    let run = Run::resume(flow, entry, plan)?;
    drive(run, state)
}

fn status(flow: &Flow, args: &BlueGreenStatus) -> Result<()> {
    let t = &flow.target;
    let current = ReleaseState::read(flow)?;
    let mut colours = Vec::new();
    if let Some(live) = current.live_slot() {
        for slot in ["blue", "green"] {
            let tag = current.values["blueGreen"][slot]["tag"].as_str().unwrap_or_default().to_owned();
            let ready = flow.block_on(slot_pods(flow, slot))?.len();
            colours.push(json!({"slot": slot, "live": slot == live, "tag": tag, "ready_pods": ready}));
        }
    }
    let latest = flow.latest_state::<State>("bluegreen", STATE_FACT)?;
    let holder = flow.lease_holder()?;
    let where_it_is = latest.as_ref().map(|(entry, state)| describe(entry, state, holder.as_deref()));
    if args.output == Output::Json {
        let latest_json =
            latest.as_ref().map(|(entry, state)| json!({"run": entry.id, "actor": entry.actor, "result": entry.result, "state": state}));
        println!("{}", serde_json::to_string_pretty(&json!({"colours": colours, "latest": latest_json, "where": where_it_is}))?);
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

/// Where a blue/green flow is, in words.
fn describe(entry: &Entry, state: &State, lease_holder: Option<&str>) -> String {
    let what = match state.kind {
        Kind::Install => format!("install of {} on {}", state.to_tag, state.to_slot),
        Kind::Switch => format!("switch from {} ({}) to {} ({})", state.from_slot, state.from_tag, state.to_slot, state.to_tag),
        Kind::Rollback => format!("switch back from {} to {} ({})", state.from_slot, state.to_slot, state.to_tag),
    };
    let steps = state.steps();
    match (entry.result.as_str(), steps.get(state.next)) {
        ("running", Some(next)) if lease_holder.is_none() => format!(
            "{what}: interrupted before \"{}\" (its process is gone): `cargo xtask bluegreen resume` or `bluegreen rollback`",
            next.description
        ),
        ("running", _) => format!("{what}: running (held by {})", lease_holder.unwrap_or("?")),
        (result, Some(next)) if result != "succeeded" => {
            format!("{what}: {result} before \"{}\": `cargo xtask bluegreen resume` or `bluegreen rollback`", next.description)
        }
        (result, _) => format!("{what}: {result}"),
    }
}

fn other(slot: &str) -> &'static str {
    if slot == "blue" {
        "green"
    } else {
        "blue"
    }
}

/// Blue/green flows already in progress must be finished first.
fn refuse_unfinished(flow: &Flow) -> Result<()> {
    if let Some((entry, state)) = flow.latest_state::<State>("bluegreen", STATE_FACT)? {
        let unfinished = entry.result != "succeeded" && entry.result != "rolled-back" && state.next < state.steps().len();
        if unfinished && entry.result != "failed" {
            bail!(
                "blue/green flow {} is unfinished ({}): `cargo xtask bluegreen resume` or `bluegreen rollback` first",
                entry.id,
                entry.result
            );
        }
    }
    Ok(())
}

/// Runs the remaining steps, journaling the position after each; compensates on failure.
fn drive(mut run: Run, mut state: State) -> Result<State> {
    let steps = state.steps();
    run.fact(STATE_FACT, serde_json::to_string(&state)?)?;
    while state.next < steps.len() {
        let id = steps[state.next].id.clone();
        let result = run.step(&id, |flow| do_step(flow, &state, &id));
        if let Err(err) = result {
            let switched = steps.iter().position(|s| s.id == "switch").is_some_and(|switch| state.next > switch);
            return fail(run, &state, err, switched || id == "switch");
        }
        state.next += 1;
        run.fact(STATE_FACT, serde_json::to_string(&state)?)?;
    }
    println!("blue/green: {} is live at {}", state.to_slot, state.to_tag);
    run.finish("succeeded", None)?;
    Ok(state)
}

/// Undoes a failed flow: before the switch, the idle colour goes back down; after it (or when
/// the switch itself failed), traffic goes back to the old colour first.
fn fail(mut run: Run, state: &State, err: anyhow::Error, switched: bool) -> Result<State> {
    if state.kind == Kind::Install {
        run.finish("failed-needs-attention", Some(&err))?;
        return Err(err.context("the blue/green install failed: `cargo xtask doctor`"));
    }
    let undo = if switched {
        run.compensate("switch-back", &format!("switch the live Service back to {}, then scale {} down", state.from_slot, state.to_slot), |flow| {
            flow.change_values(json!({"blueGreen": {"activeSlot": state.from_slot, state.from_slot.as_str(): {"replicaCount": null}, state.to_slot.as_str(): {"replicaCount": state.replicas}}}), "shipshape bluegreen: switch back")?;
            flow.block_on(wait_endpoints(flow, &live_service(flow), &state.from_slot))?;
            scale_down(flow, &state.to_slot)
        })
    } else {
        run.compensate(
            "scale-down-idle",
            &format!("scale the idle colour {} back down (live {} untouched)", state.to_slot, state.from_slot),
            |flow| scale_down(flow, &state.to_slot),
        )
    };
    match undo {
        Ok(()) => {
            run.finish("failed", Some(&err))?;
            Err(err.context(format!("blue/green failed; {} ({}) serves as before", state.from_slot, state.from_tag)))
        }
        Err(undo_err) => {
            run.finish("failed-needs-attention", Some(&err))?;
            Err(err.context(format!("blue/green failed, and undoing it failed too ({undo_err:#}): `cargo xtask bluegreen status`")))
        }
    }
}

fn do_step(flow: &Flow, state: &State, id: &str) -> Result<()> {
    let t = &flow.target;
    let (to, from) = (state.to_slot.as_str(), state.from_slot.as_str());
    match id {
        "install" => {
            let mut overlay =
                json!({"image": {"tag": state.to_tag}, "blueGreen": {"enabled": true, "activeSlot": to, to: {"tag": state.to_tag}}});
            crate::helm::merge(&mut overlay, &images::digest_values(&state.to_tag, &state.to_digest));
            let file = tempfile::Builder::new().prefix("shipshape-values-").suffix(".json").tempfile()?;
            std::fs::write(file.path(), serde_json::to_vec(&overlay)?)?;
            let env_release = t.chart_release(None);
            let release = Release {
                values_files: env_release.values_files.iter().cloned().chain([file.path().to_path_buf()]).collect(),
                ..env_release
            };
            flow.upgrade(&release, &Change::new(&t.kubeconfig, format!("shipshape bluegreen: install, {to} live at {}", state.to_tag)))
        }
        "deploy-idle" => flow.change_values(
            {
                let mut changes = json!({"blueGreen": {to: {"tag": state.to_tag, "replicaCount": state.replicas}}});
                crate::helm::merge(&mut changes, &images::digest_values(&state.to_tag, &state.to_digest));
                changes
            },
            &format!("shipshape bluegreen: {} on idle {to}", state.to_tag),
        ),
        "wait-idle" => {
            let name = format!("{}-{to}", release::fullname(&t.release));
            flow.block_on(wait::deployment_rolled_out(&flow.client, &t.namespace, &name, ROLLOUT_TIMEOUT)).map(drop)
        }
        "smoke" => {
            let preview = format!("{}-preview", release::fullname(&t.release));
            flow.block_on(wait_endpoints(flow, &preview, to))?;
            flow.block_on(smoke(flow, &preview, &state.to_tag))
        }
        "switch" => flow.change_values(
            json!({"blueGreen": {"activeSlot": to, to: {"replicaCount": null}, from: {"replicaCount": state.replicas}}}),
            &format!("shipshape bluegreen: switch live from {from} to {to} ({})", state.to_tag),
        ),
        "verify" => {
            let verification = verify::verify(flow)?;
            report::print_checks(&verification.checks);
            if verification.outcome == Outcome::Fail {
                bail!("post-deployment verification of {to} failed");
            }
            Ok(())
        }
        "propagate" => {
            flow.block_on(wait_endpoints(flow, &live_service(flow), to))?;
            println!("  holding {from} for {} s more: every node's kube-proxy must have switched too", state.scale_down_delay);
            std::thread::sleep(Duration::from_secs(state.scale_down_delay));
            Ok(())
        }
        "scale-down" => scale_down(flow, from),
        other => bail!("unknown blue/green step {other}"),
    }
}

fn live_service(flow: &Flow) -> String {
    release::fullname(&flow.target.release)
}

/// Scales `slot` to 0 (its chart default when idle) and waits until its pods are gone.
fn scale_down(flow: &Flow, slot: &str) -> Result<()> {
    flow.change_values(json!({"blueGreen": {slot: {"replicaCount": null}}}), &format!("shipshape bluegreen: scale {slot} down"))?;
    let t = &flow.target;
    let selector = format!("{},shipshape.dev/slot={slot}", release::pod_selector(&t.release));
    flow.block_on(wait::until(
        Api::<Pod>::namespaced(flow.client.clone(), &t.namespace),
        watcher::Config::default().labels(&selector),
        &format!("{slot} pods gone"),
        ROLLOUT_TIMEOUT,
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

async fn slot_pods(flow: &Flow<'_>, slot: &str) -> Result<Vec<Pod>> {
    let t = &flow.target;
    let selector = format!("{},shipshape.dev/slot={slot}", release::pod_selector(&t.release));
    let pods = Api::<Pod>::namespaced(flow.client.clone(), &t.namespace).list(&ListParams::default().labels(&selector)).await?;
    Ok(pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none() && wait::pod_is_ready(p)).collect())
}

/// Until Service `service`'s ready endpoints are exactly the ready pods of `slot`.
async fn wait_endpoints(flow: &Flow<'_>, service: &str, slot: &str) -> Result<()> {
    let t = &flow.target;
    let wanted: std::collections::BTreeSet<String> = slot_pods(flow, slot).await?.into_iter().filter_map(|p| p.metadata.name).collect();
    if wanted.is_empty() {
        bail!("no ready {slot} pods for Service {service}");
    }
    wait::service_ready_endpoints(&flow.client, &t.namespace, service, ROLLOUT_TIMEOUT, |ready| {
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
