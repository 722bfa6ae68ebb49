//! `cargo xtask canary`: both runbooks' canary, by replica ratio, with analysis and an approval
//! gate, driven from a checkout or CI with no controller in the cluster. Every change is a Helm
//! revision; the flow's state (phase, measurements, gate) lives in its journal entry, so
//! `promote`, `abort`, `resume` and `status` work from any machine.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use xshell::Shell;

use super::analysis::checks::{self, CustomCheck};
use super::analysis::{self, Analysis, Thresholds, Verdict};
use super::deploy::{pull_secrets, refuse_unsafe_start_for_restart, ROLLOUT_TIMEOUT};
use super::release::{self, ReleaseState};
use super::{images, print_plan, step, verify, Flow, Run, Step};
use crate::cli::{Approval, Canary, CanaryAction, CanaryStart};
use crate::journal::Entry;
use crate::k8s::{proxy, wait};
use crate::report::{self, Outcome, Output};

/// The journal fact holding the flow's state.
const STATE_FACT: &str = "canary_state";
/// `canary start` / `resume` exit code when a step's analysis was inconclusive and the flow
/// paused: distinct from 0 (at the gate, evidence in hand) so CI never mistakes one for the other.
pub const EXIT_PAUSED_WITHOUT_EVIDENCE: u8 = 3;

/// Where a canary flow is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "phase", content = "step")]
pub enum Phase {
    /// Next: the step with this index.
    Step(usize),
    /// Every step passed; waiting for approval.
    Gate,
    Promote,
    Abort,
    Promoted,
    Aborted,
}

/// Where `--prometheus` finds custom checks unless `--checks` names a directory.
const DEFAULT_CHECKS: &str = "deploy/analysis";

/// One step's outcome.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Measured {
    pub requested_percent: u32,
    pub canary_pods: u32,
    pub stable_pods: u32,
    /// The real share of pods running the canary.
    pub real_percent: f64,
    pub analysis: Option<Analysis>,
    /// Seconds from the Helm change until both tracks were ready, and how long after the last
    /// pod turned ready shipshape noticed it.
    pub ready_seconds: f64,
    pub detection_lag_seconds: f64,
}

/// A canary flow's whole state, kept in its journal entry.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct State {
    pub stable_tag: String,
    pub canary_tag: String,
    pub total_pods: u32,
    pub steps: Vec<u32>,
    pub analysis_seconds: u64,
    pub thresholds: Thresholds,
    pub approval: Approval,
    pub phase: Phase,
    pub measured: Vec<Measured>,
    /// Why the flow aborted or paused, in words.
    pub reason: Option<String>,
    /// Where the analysis reads from: an in-cluster Prometheus, or (None) the pods themselves.
    #[serde(default)]
    pub prometheus: Option<String>,
    /// The digest the canary's tag was resolved to at start: every step runs exactly that.
    #[serde(default)]
    pub canary_digest: String,
    /// Custom checks run at every step (with Prometheus), read once at start: a resumed flow
    /// judges by the same checks.
    #[serde(default)]
    pub checks: Vec<CustomCheck>,
}

impl Canary {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.action {
            CanaryAction::Start(start) => {
                let flow = Flow::connect(sh, &start.target)?;
                flow.set_overrides(&start.values, super::FLOW_MANAGED_VALUES)?;
                if start.dry_run {
                    return start_canary(&flow, &start).map(drop);
                }
                exit_code(&with_step_summary(&flow, start_canary(&flow, &start))?)
            }
            CanaryAction::Promote(t) => {
                let flow = Flow::connect(sh, &t.target)?;
                with_step_summary(&flow, continue_canary(&flow, Some(Phase::Promote))).map(drop)
            }
            CanaryAction::Abort(t) => {
                let flow = Flow::connect(sh, &t.target)?;
                with_step_summary(&flow, continue_canary(&flow, Some(Phase::Abort))).map(drop)
            }
            CanaryAction::Resume(t) => {
                let flow = Flow::connect(sh, &t.target)?;
                exit_code(&with_step_summary(&flow, continue_canary(&flow, None))?)
            }
            CanaryAction::Status(s) => {
                let flow = Flow::connect(sh, &s.target)?;
                report::repeat(s.watch, || {
                    let Some((entry, state)) = flow.latest_state::<State>("canary", STATE_FACT)? else {
                        println!("no canary has run on this release");
                        return Ok(report::Outcome::Pass);
                    };
                    let holder = flow.lease_holder()?;
                    let where_it_is = describe(&entry, &state, holder.as_deref());
                    let live = flow.block_on(live_tracks(&flow))?;
                    match s.output {
                        Output::Json => println!(
                            "{}",
                            serde_json::to_string_pretty(&json!({
                                "run": entry.id, "result": entry.result, "where": where_it_is, "lease_holder": holder,
                                "live": live, "state": state
                            }))?
                        ),
                        Output::Human => print_status(&entry, &state, &where_it_is, &live),
                    }
                    Ok(report::Outcome::Pass)
                })
            }
        }
    }
}

/// Writes where the canary stands to `$GITHUB_STEP_SUMMARY` (in GitHub Actions), whatever the
/// outcome, from the journal: the same record `canary status` reads.
fn with_step_summary(flow: &Flow, outcome: Result<State>) -> Result<State> {
    if std::env::var_os("GITHUB_STEP_SUMMARY").is_some() {
        if let Ok(Some((entry, state))) = flow.latest_state::<State>("canary", STATE_FACT) {
            let holder = flow.lease_holder().ok().flatten();
            report::github_step_summary(&summary_markdown(&entry, &state, &describe(&entry, &state, holder.as_deref())));
        }
    }
    outcome
}

fn summary_markdown(entry: &Entry, state: &State, where_it_is: &str) -> String {
    let mut md = format!(
        "### canary {} -> {} in {}: {}

{where_it_is}

| step | pods (canary + stable) | real share | analysis |
| --- | --- | --- | --- |
",
        state.stable_tag, state.canary_tag, entry.id, entry.result
    );
    for m in &state.measured {
        let analysis = m.analysis.as_ref().map(|a| format!("{}: {}", a.verdict.word(), a.reasons.join("; "))).unwrap_or_default();
        md.push_str(&format!(
            "| {} % | {} + {} | {:.0} % | {} |
",
            m.requested_percent,
            m.canary_pods,
            m.stable_pods,
            m.real_percent,
            analysis.replace('|', "\\|")
        ));
    }
    md.push_str(&format!(
        "
run by {} (journal entry `{}`)
",
        entry.actor, entry.id
    ));
    md
}

/// 0 at the gate or promoted; [`EXIT_PAUSED_WITHOUT_EVIDENCE`] when a step paused as inconclusive.
fn exit_code(state: &State) -> Result<()> {
    match state.phase {
        Phase::Step(_) => Err(report::Exit(EXIT_PAUSED_WITHOUT_EVIDENCE).into()),
        _ => Ok(()),
    }
}

/// Pods of each track at `percent`: at least one canary pod, and stable keeps at least one
/// until promotion (so with 1 pod the canary runs beside it: 50 %).
pub fn split(total: u32, percent: u32) -> (u32, u32) {
    let total = total.max(1);
    let canary = ((f64::from(total) * f64::from(percent) / 100.0).round() as u32).clamp(1, total);
    let stable = (total - canary).max(1);
    (canary, stable)
}

/// Starts a canary; returns the state it ended in (paused, promoted or aborted).
pub fn start_canary(flow: &Flow, args: &CanaryStart) -> Result<State> {
    let t = &flow.target;
    let release_state = ReleaseState::read(flow)?;
    if !release_state.is_installed() {
        bail!("release {} is not installed in {}: deploy it first (cargo xtask deploy)", t.release, t.namespace);
    }
    refuse_unsafe_start_for_restart(&release_state)?;
    if release_state.canary_enabled() {
        bail!("a canary is already running on this release: `cargo xtask canary status`, then promote, abort or resume it");
    }
    if release_state.values["blueGreen"]["enabled"].as_bool() == Some(true) {
        bail!("this release runs blue/green; a canary needs the standard shape (cargo xtask bluegreen)");
    }
    let mut steps: Vec<u32> = args.steps.iter().copied().filter(|p| (1..100).contains(p)).collect();
    steps.dedup();
    if steps.is_empty() {
        bail!("--steps needs at least one percentage between 1 and 99 (promotion to 100 % follows the approval gate)");
    }
    let stable_image = release_state.stable_image().unwrap_or_default();
    let total = release_state.values["replicaCount"].as_u64().unwrap_or(1) as u32;
    let approval = args.approval.unwrap_or(if std::io::stdin().is_terminal() { Approval::Prompt } else { Approval::Pause });
    let state = State {
        stable_tag: release::tag_of(&stable_image).to_owned(),
        canary_tag: args.tag.clone(),
        total_pods: total,
        steps,
        analysis_seconds: args.analysis_seconds,
        thresholds: Thresholds {
            min_requests: args.min_requests,
            max_error_rate: args.max_error_rate,
            max_latency_ratio: args.max_latency_ratio,
            latency_slack_seconds: 0.05,
        },
        approval,
        phase: Phase::Step(0),
        measured: Vec::new(),
        reason: None,
        prometheus: args.prometheus.as_ref().map(|p| p.to_string()),
        canary_digest: String::new(),
        checks: match (&args.prometheus, &args.checks) {
            (None, _) => Vec::new(),
            (Some(_), Some(dir)) => checks::load(dir)?,
            (Some(_), None) => checks::load(&crate::repo_root().join(DEFAULT_CHECKS))?,
        },
    };
    if state.canary_tag == state.stable_tag {
        bail!("stable already runs {}: a canary needs another version", state.canary_tag);
    }
    let mut plan = Vec::from(images::plan_steps(&format!("the canary's tag {}", state.canary_tag)));
    plan.extend(plan_from(&state));
    if args.dry_run {
        println!("stable: {stable_image}, {total} pods");
        print_plan("canary", t, &plan);
        return Ok(state);
    }
    let mut state = state;
    let mut run = Run::begin(flow, "canary", format!("--tag {} --steps {:?}", state.canary_tag, state.steps), plan)?;
    run.fact("from_image", &stable_image)?;
    let repository = release::tag_of_repository(&stable_image).to_owned();
    let checked =
        images::resolve_and_check(&mut run, &repository, &state.canary_tag, &args.signature, &pull_secrets(&release_state.values));
    if let Ok(pinned) = &checked {
        state.canary_digest = pinned.digest.clone();
    }
    if let Err(err) = checked {
        run.finish("failed", Some(&err))?;
        return Err(err.context("nothing was changed"));
    }
    save(&mut run, &state)?;
    drive(run, state)
}

/// `promote`, `abort` (with the phase to go to) or `resume` (None: carry on where it was).
pub fn continue_canary(flow: &Flow, to: Option<Phase>) -> Result<State> {
    let Some((entry, mut state)) = flow.latest_state::<State>("canary", STATE_FACT)? else {
        bail!("no canary has run on release {} in {}", flow.target.release, flow.target.namespace);
    };
    if matches!(state.phase, Phase::Promoted | Phase::Aborted) {
        bail!("the latest canary ({} to {}) is already {}: nothing to continue", state.stable_tag, state.canary_tag, entry.result);
    }
    match &to {
        Some(Phase::Promote) if !matches!(state.phase, Phase::Gate | Phase::Promote) => {
            let (done, of) = (state.measured.len(), state.steps.len());
            bail!("the canary has not passed its steps yet ({done} of {of} done, phase {:?}): it cannot be promoted; `canary resume` carries on", state.phase)
        }
        Some(phase) => state.phase = phase.clone(),
        None => {}
    }
    if to.is_some() {
        state.reason = None;
    }
    let plan = plan_from(&state);
    let run = Run::resume(flow, entry, plan)?;
    drive(run, state)
}

/// What is left to do from `state.phase`.
fn plan_from(state: &State) -> Vec<Step> {
    let mut plan = Vec::new();
    if let Phase::Step(first) = state.phase {
        for (index, percent) in state.steps.iter().enumerate().skip(first) {
            let (canary, stable) = split(state.total_pods, *percent);
            plan.push(step(
                format!("step-{}", index + 1),
                format!(
                    "canary at {percent} %: {canary} canary + {stable} stable pods ({:.0} % real); wait ready, smoke-test, analyse {} s of traffic",
                    real_percent(canary, stable),
                    state.analysis_seconds
                ),
            ));
        }
    }
    if matches!(state.phase, Phase::Step(_) | Phase::Gate) {
        plan.push(step(
            "gate",
            match state.approval {
                Approval::Prompt => "approval gate: ask on this terminal",
                Approval::Pause => "approval gate: pause until `cargo xtask canary promote` or `canary abort`",
                Approval::Approved => "approval gate: approved in advance (--approval approved)",
            },
        ));
    }
    if matches!(state.phase, Phase::Step(_) | Phase::Gate | Phase::Promote) {
        plan.push(step(
            "promote",
            format!("promote: stable to {} at {} pods, then remove the canary, then verify", state.canary_tag, state.total_pods),
        ));
    }
    if state.phase == Phase::Abort {
        plan.push(step("abort", format!("abort: canary to 0 and removed, stable {} back to {} pods", state.stable_tag, state.total_pods)));
    }
    plan
}

fn real_percent(canary: u32, stable: u32) -> f64 {
    f64::from(canary) * 100.0 / f64::from(canary + stable)
}

fn save(run: &mut Run, state: &State) -> Result<()> {
    run.fact(STATE_FACT, serde_json::to_string(state)?)
}

/// Runs phases until the flow pauses or ends; every transition is journaled first.
fn drive(mut run: Run, mut state: State) -> Result<State> {
    loop {
        save(&mut run, &state)?;
        match state.phase.clone() {
            Phase::Step(index) if index >= state.steps.len() => state.phase = Phase::Gate,
            Phase::Step(index) => match run_step(&mut run, &mut state, index) {
                Ok(Verdict::Pass) => state.phase = Phase::Step(index + 1),
                Ok(Verdict::Inconclusive) => {
                    save(&mut run, &state)?;
                    println!("canary paused: {}", state.reason.clone().unwrap_or_default());
                    println!("  carry on with `cargo xtask canary resume` (analyses this step again), or `canary abort`");
                    run.finish("paused", None)?;
                    return Ok(state);
                }
                Ok(Verdict::Fail) => state.phase = Phase::Abort,
                Err(err) => {
                    state.reason = Some(format!("{err:#}"));
                    state.phase = Phase::Abort;
                }
            },
            Phase::Gate => match gate(&run, &state)? {
                Some(Phase::Promote) => state.phase = Phase::Promote,
                Some(other) => {
                    state.reason = Some("not approved at the gate".to_owned());
                    state.phase = other;
                }
                None => {
                    save(&mut run, &state)?;
                    println!("canary paused at the approval gate; all {} steps passed:", state.steps.len());
                    for m in &state.measured {
                        println!(
                            "  {:>3} % ({:.0} % of pods): {}",
                            m.requested_percent,
                            m.real_percent,
                            m.analysis.as_ref().map(|a| a.reasons.join("; ")).unwrap_or_default()
                        );
                    }
                    println!("  approve with `cargo xtask canary promote`, or stop with `cargo xtask canary abort` (from any machine)");
                    run.finish("paused", None)?;
                    return Ok(state);
                }
            },
            Phase::Promote => {
                let result = run.step("promote", |flow| promote(flow, &state));
                match result {
                    Ok(()) => state.phase = Phase::Promoted,
                    Err(err) => {
                        state.reason = Some(format!("promotion failed: {err:#}"));
                        save(&mut run, &state)?;
                        // Roll stable back to what it ran, then remove the canary.
                        let undo = run.compensate("abort", "abort after a failed promotion", |flow| abort(flow, &state));
                        state.phase = Phase::Aborted;
                        save(&mut run, &state)?;
                        let outcome = if undo.is_ok() { "failed" } else { "failed-needs-attention" };
                        run.finish(outcome, Some(&err))?;
                        return Err(err.context("the promotion failed; the canary was aborted"));
                    }
                }
            }
            Phase::Abort => {
                let reason = state.reason.clone();
                let result = if run.plan().iter().any(|s| s.id == "abort") {
                    run.step("abort", |flow| abort(flow, &state))
                } else {
                    run.compensate("abort", &format!("abort: {}", reason.clone().unwrap_or_default()), |flow| abort(flow, &state))
                };
                state.phase = Phase::Aborted;
                save(&mut run, &state)?;
                return match (result, reason) {
                    (Ok(()), Some(reason)) => {
                        let err = anyhow::anyhow!(
                            "canary of {} aborted: {reason}; stable {} serves at {} pods",
                            state.canary_tag,
                            state.stable_tag,
                            state.total_pods
                        );
                        run.finish("failed", Some(&err))?;
                        Err(err)
                    }
                    (Ok(()), None) => {
                        println!("canary of {} aborted; stable {} serves at {} pods", state.canary_tag, state.stable_tag, state.total_pods);
                        run.finish("aborted", None)?;
                        Ok(state)
                    }
                    (Err(err), _) => {
                        run.finish("failed-needs-attention", Some(&err))?;
                        // Not `rollback`: it would also move stable off the version it runs.
                        Err(err.context(format!(
                            "aborting the canary failed; stable {} is unchanged. See `cargo xtask canary status` and \
                             `cargo xtask doctor`, then run `cargo xtask canary abort` again (it changes only the canary and \
                             stable's replica count)",
                            state.stable_tag
                        )))
                    }
                };
            }
            Phase::Promoted | Phase::Aborted => {
                println!("canary of {} promoted: stable runs it at {} pods", state.canary_tag, state.total_pods);
                run.finish("succeeded", None)?;
                return Ok(state);
            }
        }
    }
}

/// One step: the split as a Helm revision, both tracks ready, smoke tests, analysis.
fn run_step(run: &mut Run, state: &mut State, index: usize) -> Result<Verdict> {
    let percent = state.steps[index];
    let (canary_pods, stable_pods) = split(state.total_pods, percent);
    let id = format!("step-{}", index + 1);
    let outcome = run.step(&id, |flow| {
        let t = &flow.target;
        let changed = Instant::now();
        let mut changes = json!({"replicaCount": stable_pods, "canary": {"enabled": true, "replicaCount": canary_pods, "image": {"tag": state.canary_tag}}});
        crate::helm::merge(&mut changes, &images::digest_values(&state.canary_tag, &state.canary_digest));
        flow.change_values(changes,
            &format!("shipshape canary {}: step {} at {percent} % ({canary_pods} canary, {stable_pods} stable)", state.canary_tag, index + 1),
        )?;
        let lag = flow.block_on(wait_tracks_ready(flow, &[release::stable_deployment(&t.release), release::canary_deployment(&t.release)]))?;
        let ready_seconds = changed.elapsed().as_secs_f64();
        flow.block_on(smoke_test(flow, &state.canary_tag))?;
        let window = Duration::from_secs(state.analysis_seconds);
        let mut custom = Vec::new();
        let tracks = match &state.prometheus {
            Some(url) => {
                let prometheus: analysis::Prometheus = url.parse()?;
                println!("  analysing {} s of traffic (from {prometheus})", window.as_secs());
                // An analysis window is an observation period by design, not a wait for a state.
                std::thread::sleep(window);
                let tracks = flow.block_on(prometheus.window(&flow.pod_client, &t.namespace, &t.release, window))?;
                let mut results = Vec::new();
                for check in &state.checks {
                    let query = checks::render(&check.query, &t.namespace, &t.release, window);
                    let value = flow.block_on(prometheus.value(&flow.pod_client, &query)).with_context(|| format!("custom check {}", check.name))?;
                    results.push(checks::evaluate(check, value));
                }
                custom = results;
                tracks
            }
            None => {
                println!("  analysing {} s of traffic (from the pods' /metrics)", window.as_secs());
                let start = flow.block_on(analysis::snapshot(&flow.client, &flow.pod_client, &t.namespace, &t.release))?;
                std::thread::sleep(window);
                let end = flow.block_on(analysis::snapshot(&flow.client, &flow.pod_client, &t.namespace, &t.release))?;
                analysis::window(&start, &end)
            }
        };
        let judged = analysis::judge(&tracks, &state.thresholds, window).with_checks(custom);
        println!("  analysis: {}: {}", judged.verdict.word(), judged.reasons.join("; "));
        for check in &judged.checks {
            println!("    {check}");
        }
        Ok(Measured {
            requested_percent: percent,
            canary_pods,
            stable_pods,
            real_percent: real_percent(canary_pods, stable_pods),
            analysis: Some(judged),
            ready_seconds,
            detection_lag_seconds: lag,
        })
    })?;
    let verdict = outcome.analysis.as_ref().map(|a| a.verdict.clone()).unwrap_or(Verdict::Inconclusive);
    let reasons = outcome.analysis.as_ref().map(|a| a.reasons.join("; ")).unwrap_or_default();
    state.reason = (verdict != Verdict::Pass).then(|| format!("step {} ({percent} %): {reasons}", index + 1));
    // An inconclusive step is measured again on resume; keep only passed or failed ones.
    if verdict != Verdict::Inconclusive {
        state.measured.push(outcome);
    }
    Ok(verdict)
}

/// The approval gate: `Some(Promote)`, `Some(Abort)` or `None` (pause).
fn gate(run: &Run, state: &State) -> Result<Option<Phase>> {
    let _ = run;
    match state.approval {
        Approval::Approved => Ok(Some(Phase::Promote)),
        Approval::Pause => Ok(None),
        Approval::Prompt => {
            println!("all {} steps passed. Promote {} to stable at {} pods? [y/N] ", state.steps.len(), state.canary_tag, state.total_pods);
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            Ok(Some(if answer.trim().eq_ignore_ascii_case("y") || answer.trim().eq_ignore_ascii_case("yes") {
                Phase::Promote
            } else {
                Phase::Abort
            }))
        }
    }
}

/// Stable to the canary's version at full size (canary still serving), then the canary
/// removed, then the post-deployment checks.
fn promote(flow: &Flow, state: &State) -> Result<()> {
    let t = &flow.target;
    flow.change_values(
        json!({"replicaCount": state.total_pods, "image": {"tag": state.canary_tag}}),
        &format!("shipshape canary {}: promote stable", state.canary_tag),
    )?;
    flow.block_on(wait_tracks_ready(flow, &[release::stable_deployment(&t.release)]))?;
    remove_canary(flow, &format!("shipshape canary {}: promoted, canary removed", state.canary_tag))?;
    let verification = verify::verify(flow)?;
    report::print_checks(&verification.checks);
    if verification.outcome == Outcome::Fail {
        bail!("post-deployment verification failed after promotion");
    }
    Ok(())
}

/// Canary to zero and stable back to full size (its version unchanged), then the canary removed.
fn abort(flow: &Flow, state: &State) -> Result<()> {
    let t = &flow.target;
    flow.change_values(
        json!({"replicaCount": state.total_pods, "image": {"tag": state.stable_tag}, "canary": {"replicaCount": 0}}),
        &format!("shipshape canary {}: abort, stable {} back to {} pods", state.canary_tag, state.stable_tag, state.total_pods),
    )?;
    flow.block_on(wait_tracks_ready(flow, &[release::stable_deployment(&t.release)]))?;
    remove_canary(flow, &format!("shipshape canary {}: aborted, canary removed", state.canary_tag))
}

fn remove_canary(flow: &Flow, description: &str) -> Result<()> {
    let t = &flow.target;
    flow.change_values(json!({"canary": {"enabled": false, "replicaCount": 1, "image": {"tag": ""}}}), description)?;
    let name = release::canary_deployment(&t.release);
    flow.block_on(wait::deployment_gone(&flow.client, &t.namespace, &name, ROLLOUT_TIMEOUT))
}

/// Waits until every named Deployment has rolled out (failing fast on stuck pods); returns how
/// long after the last pod turned Ready this was noticed.
async fn wait_tracks_ready(flow: &Flow<'_>, deployments: &[String]) -> Result<f64> {
    let t = &flow.target;
    let waits = deployments.iter().map(|d| wait::deployment_rolled_out(&flow.client, &t.namespace, d, ROLLOUT_TIMEOUT));
    for result in join_all(waits).await {
        result?;
    }
    let noticed = k8s_openapi::jiff::Timestamp::now();
    let pods = release::ready_pods(&flow.client, &t.namespace, &t.release).await?;
    let last_ready = pods
        .iter()
        .filter_map(|p| {
            p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref().map(|t| t.0)
        })
        .max();
    Ok(last_ready.map(|at| noticed.duration_since(at).as_secs_f64()).unwrap_or_default())
}

/// GET /health, /ready and /version on every canary pod: it answers, and runs the canary tag.
async fn smoke_test(flow: &Flow<'_>, canary_tag: &str) -> Result<()> {
    let t = &flow.target;
    let pods: Vec<_> = release::ready_pods(&flow.client, &t.namespace, &t.release)
        .await?
        .into_iter()
        .filter(|p| release::track_of(p) == "canary")
        .collect();
    if pods.is_empty() {
        bail!("smoke test: no ready canary pod");
    }
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for path in ["/health", "/ready", "/version"] {
            let answer = proxy::get_pod(&flow.pod_client, &t.namespace, &name, release::http_port(pod), path).await?;
            if answer.status != 200 {
                bail!("smoke test: canary pod {name} answered {} to GET {path}: {}", answer.status, answer.body.trim());
            }
            if path == "/version" && !answer.body.contains(canary_tag) {
                bail!("smoke test: canary pod {name} reports {} instead of {canary_tag}", answer.body.trim());
            }
        }
    }
    println!("  smoke tests passed on {} canary pod(s)", pods.len());
    Ok(())
}

/// Where the flow is, in words: the phase, and whether a live process is driving it.
fn describe(entry: &Entry, state: &State, lease_holder: Option<&str>) -> String {
    let n = state.steps.len();
    let at = |i: usize| {
        let percent = state.steps.get(i).copied().unwrap_or(100);
        let (canary, stable) = split(state.total_pods, percent);
        format!("step {} of {n} ({percent} %, {:.0} % of pods)", i + 1, real_percent(canary, stable))
    };
    match (&state.phase, entry.result.as_str()) {
        (Phase::Step(_) | Phase::Promote | Phase::Abort, "running") if lease_holder.is_none() => {
            let what = match &state.phase {
                Phase::Step(i) => format!("at {}", at(*i)),
                Phase::Promote => "while promoting".to_owned(),
                _ => "while aborting".to_owned(),
            };
            format!(
                "interrupted {what}: the run started {} by {} holds no lease any more (its process is gone): \
                 `cargo xtask canary resume` or `cargo xtask canary abort`",
                entry.started, entry.actor
            )
        }
        (Phase::Step(i), "running") => format!("running {} (held by {})", at(*i), lease_holder.unwrap_or("?")),
        (Phase::Step(i), _) => format!(
            "paused without evidence before {}: {}: `cargo xtask canary resume` analyses it again, or `canary abort`",
            at(*i),
            state.reason.clone().unwrap_or_else(|| "analysis inconclusive".to_owned())
        ),
        (Phase::Gate, _) => {
            format!("waiting at the approval gate, all {n} steps passed: `cargo xtask canary promote` or `cargo xtask canary abort`")
        }
        (Phase::Promote, _) => "promoting".to_owned(),
        (Phase::Abort, _) => "aborting".to_owned(),
        (Phase::Promoted, _) => format!("promoted: stable runs {}", state.canary_tag),
        (Phase::Aborted, _) => format!("aborted: stable runs {}", state.stable_tag),
    }
}

/// The release's tracks as the cluster runs them: ready pods per track, the real share of
/// traffic, and replica counts that differ from Helm's record (hand scaling).
#[derive(Serialize)]
struct LiveTracks {
    pods: Vec<(String, u32)>,
    share: String,
    drift: Vec<String>,
}

async fn live_tracks(flow: &Flow<'_>) -> Result<LiveTracks> {
    let t = &flow.target;
    let (pods, deployments, state) = futures::join!(
        release::ready_pods(&flow.client, &t.namespace, &t.release),
        super::ownership::deployments(&flow.client, &t.namespace, &t.release),
        ReleaseState::fetch(&flow.client, &t.namespace, &t.release)
    );
    let pods = pods?;
    let mut per_track: Vec<(String, u32)> = Vec::new();
    for track in ["stable", "canary"] {
        let n = pods.iter().filter(|p| release::track_of(p) == track).count() as u32;
        if n > 0 || track == "stable" {
            per_track.push((track.to_owned(), n));
        }
    }
    let drift = super::ownership::replica_drift(&deployments?, &t.release, &state?.values).iter().map(|d| d.to_string()).collect();
    Ok(LiveTracks { share: super::ownership::traffic_share(&per_track), pods: per_track, drift })
}

fn print_status(entry: &Entry, state: &State, where_it_is: &str, live: &LiveTracks) {
    println!(
        "canary {} -> {} ({} pods), run {} by {}: {}",
        state.stable_tag, state.canary_tag, state.total_pods, entry.id, entry.actor, entry.result
    );
    println!("  where: {where_it_is}");
    println!("  serving now: {}", live.share);
    for drift in &live.drift {
        println!("  DRIFT: {drift}; the flow's next Helm change takes it back");
    }
    let steps: Vec<String> = state.steps.iter().map(|p| format!("{p} %")).collect();
    let gate = match state.approval {
        Approval::Prompt => "a prompt on the terminal",
        Approval::Pause => "pause for `canary promote`",
        Approval::Approved => "approved in advance",
    };
    println!("  steps: {}, analysis {} s each; gate: {gate}", steps.join(", "), state.analysis_seconds);
    println!(
        "  thresholds: at least {} canary requests, error rate <= {:.1} %, p95 latency <= stable's x {} + {} ms",
        state.thresholds.min_requests,
        state.thresholds.max_error_rate * 100.0,
        state.thresholds.max_latency_ratio,
        state.thresholds.latency_slack_seconds * 1e3
    );
    for m in &state.measured {
        println!(
            "  {:>3} % requested, {} canary + {} stable pods ({:.0} % real), ready in {:.1} s (noticed {:.2} s after): {}",
            m.requested_percent,
            m.canary_pods,
            m.stable_pods,
            m.real_percent,
            m.ready_seconds,
            m.detection_lag_seconds,
            m.analysis.as_ref().map(|a| format!("{}, {}", a.verdict.word(), a.reasons.join("; "))).unwrap_or_default()
        );
        for check in m.analysis.iter().flat_map(|a| &a.checks) {
            println!("        {check}");
        }
    }
    if let Some(reason) = &state.reason {
        println!("  reason: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn replica_split_keeps_one_of_each_and_records_reality() {
        assert_eq!(split(10, 10), (1, 9));
        assert_eq!(split(10, 30), (3, 7));
        assert_eq!(split(10, 50), (5, 5));
        assert_eq!(split(4, 10), (1, 3), "at least one canary pod: 25 % real");
        assert_eq!(split(4, 50), (2, 2));
        assert_eq!(split(1, 10), (1, 1), "one pod: the canary runs beside it");
        assert_eq!(split(3, 90), (3, 1), "stable keeps a pod until promotion");
    }
}
