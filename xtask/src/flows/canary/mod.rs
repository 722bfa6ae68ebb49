//! `cargo xtask canary`: both runbooks' canary, by replica ratio, with analysis and an approval
//! gate, driven from a checkout or CI with no controller in the cluster. Every change is a Helm
//! revision; the flow's state (phase, measurements, gate) lives in its journal entry, so
//! `promote`, `abort`, `resume` and `status` work from any machine. The decisions are in
//! [`state`], as pure functions; this module carries them out.
pub mod state;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::future::join_all;
use serde::Serialize;
use serde_json::json;

use super::analysis::checks;
use super::analysis::{self, Verdict};
use super::deploy::refuse_unsafe_start_for_restart;
use super::images::{self, Wanted};
use super::{print_plan, step, verify, Changes, Ending, Flow, Run, Step, Undo};
use crate::chart;
use crate::helm::record::ReleaseRecord;
use crate::image::Pinned;
use crate::journal::{Entry, RunResult};
use crate::k8s::{pods, proxy, wait};
use crate::report::{self, Outcome, Output};
use state::{after_step, at_gate, continue_request, made_since, real_percent, split, Continue, StepOutcome};
pub use state::{Approval, Measured, Phase, Request, State};

/// The journal fact holding the flow's state.
const STATE_FACT: &str = "canary_state";
/// `canary start` / `resume` exit code when a step's analysis was inconclusive and the flow
/// paused: distinct from 0 (at the gate, evidence in hand) so CI never mistakes one for the other.
pub const EXIT_PAUSED_WITHOUT_EVIDENCE: u8 = 3;
/// Where `--prometheus` finds custom checks unless `--checks` names a directory.
const DEFAULT_CHECKS: &str = "deploy/analysis";

/// What `canary start` is asked to do.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The version under test: a tag, or what an earlier environment runs (by its digest).
    pub image: Wanted,
    /// Canary shares of the pods, in percent, in order.
    pub steps: Vec<u32>,
    pub analysis_seconds: u64,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_latency_ratio: f64,
    /// Canary memory and CPU per pod against stable's (analysis::resources).
    pub max_memory_ratio: f64,
    pub max_cpu_ratio: f64,
    /// None: prompt on a terminal, else pause.
    pub approval: Option<Approval>,
    pub prometheus: Option<analysis::Prometheus>,
    /// Custom checks for Prometheus (default: this checkout's deploy/analysis).
    pub checks: Option<std::path::PathBuf>,
    pub dry_run: bool,
}

/// The latest canary run on the release and its state, if any ran.
pub fn latest(flow: &Flow) -> Result<Option<(Entry, State)>> {
    flow.latest_state::<State>("canary", STATE_FACT)
}

/// A finding when the latest unfinished canary's journal and the cluster disagree: someone made
/// a Helm revision since its last step (None: they agree, or no canary is under way).
pub fn disagreement(flow: &Flow, record: &ReleaseRecord) -> Result<Option<String>> {
    let Some((entry, state)) = latest(flow)? else { return Ok(None) };
    if matches!(state.phase, Phase::Promoted | Phase::Aborted) {
        return Ok(None);
    }
    Ok(made_since(&state, &record.history).map(|revision| {
        format!(
            "canary {} ({} -> {}) is {} in the journal, but Helm revision {} ({}, {}) was made after its last step, not by it",
            entry.id,
            state.stable_tag,
            state.canary_tag,
            entry.result,
            revision.revision,
            revision.description.lines().next().unwrap_or_default(),
            revision.updated
        )
    }))
}

/// `cargo xtask canary status`: where the latest canary stands, and the traffic split live.
pub fn status(flow: &Flow, output: Output) -> Result<report::Round> {
    let Some((entry, state)) = flow.latest_state::<State>("canary", STATE_FACT)? else {
        println!("no canary has run on this release");
        return Ok(Outcome::Pass.into());
    };
    let holder = flow.lease_holder()?;
    let record = flow.record()?;
    let where_it_is = state::describe(&entry, &state, holder.as_deref(), made_since(&state, &record.history));
    let live = flow.block_on(live_tracks(flow, &record))?;
    let standing = standing(&entry, &state, holder.is_some());
    match output {
        Output::Json => report::print_json(&json!({
            "run": entry.id, "result": entry.result, "where": where_it_is, "lease_holder": holder,
            "live": live, "state": state, "standing": standing
        }))?,
        Output::Human => print_status(&entry, &state, &where_it_is, &live),
    }
    Ok(report::Round { outcome: Outcome::Pass, standing: Some(standing) })
}

/// Writes where the canary stands to `$GITHUB_STEP_SUMMARY`, and its run, digest and outcome to
/// `$GITHUB_OUTPUT` (in GitHub Actions), whatever the outcome, from the journal: the same record
/// `canary status` reads. A later job names the run (`--run`), so it acts on this canary only.
pub fn with_step_summary(flow: &Flow, outcome: Result<State>) -> Result<State> {
    let in_actions = std::env::var_os("GITHUB_STEP_SUMMARY").is_some() || std::env::var_os("GITHUB_OUTPUT").is_some();
    if in_actions {
        if let Ok(Some((entry, state))) = flow.latest_state::<State>("canary", STATE_FACT) {
            let holder = flow.lease_holder().ok().flatten();
            let invalidated = flow.record().ok().and_then(|r| made_since(&state, &r.history).cloned());
            let where_it_is = state::describe(&entry, &state, holder.as_deref(), invalidated.as_ref());
            report::github_step_summary(&summary_markdown(&entry, &state, &where_it_is));
            report::github_output(&[
                ("run", entry.id.as_str()),
                ("digest", state.canary_digest.as_str()),
                ("outcome", outcome_word(&entry, &state)),
            ]);
        }
    }
    outcome
}

/// Where the release stands by its latest canary, for `canary status --watch --timeout`: as
/// `canary start` exits, at the gate (every step passed) is healthy and paused without evidence
/// is paused; aborted, failed or interrupted (no process holds it) is degraded.
fn standing(entry: &Entry, state: &State, held: bool) -> report::Standing {
    use report::Standing;
    match (&state.phase, entry.result) {
        _ if held => Standing::Changing,
        (Phase::Gate | Phase::Promoted, _) => Standing::Healthy,
        (Phase::Step(_), RunResult::Paused) => Standing::Paused,
        _ => Standing::Degraded,
    }
}

/// One word for a workflow to branch on: `gate` (every step passed, waiting for approval),
/// `paused` (a step without evidence, waiting for a person), `promoted`, `aborted`, `running`.
fn outcome_word(entry: &Entry, state: &State) -> &'static str {
    match (&state.phase, entry.result) {
        (Phase::Gate, _) => "gate",
        (Phase::Step(_), RunResult::Paused) => "paused",
        (Phase::Promoted, _) => "promoted",
        (Phase::Aborted, _) => "aborted",
        (_, RunResult::FailedNeedsAttention | RunResult::Failed) => "failed",
        _ => "running",
    }
}

fn summary_markdown(entry: &Entry, state: &State, where_it_is: &str) -> String {
    let mut md = format!(
        "### canary {} -> {} in {}: {}\n\n{where_it_is}\n\n| step | pods (canary + stable) | real share | analysis |\n| --- | --- | --- | --- |\n",
        state.stable_tag, state.canary_tag, entry.id, entry.result
    );
    for m in &state.measured {
        let analysis = m.analysis.as_ref().map(|a| format!("{}: {}", a.verdict.word(), a.reasons.join("; "))).unwrap_or_default();
        md.push_str(&format!(
            "| {} % | {} + {} | {:.0} % | {} |\n",
            m.requested_percent,
            m.canary_pods,
            m.stable_pods,
            m.real_percent,
            analysis.replace('|', "\\|")
        ));
    }
    md.push_str(&analysis_charts(state));
    md.push_str(&format!("\nrun by {} (journal entry `{}`)\n", entry.actor, entry.id));
    md
}

/// The analysed steps as two Mermaid charts (GitHub renders them in a job summary): error rate
/// and mean latency per step, canary as bars, stable as a line. Mean latency, not p95: the
/// journal keeps counts and sums, not the histograms (p95 is in each step's reasons above).
/// Empty when no step was analysed.
fn analysis_charts(state: &State) -> String {
    let analysed: Vec<(u32, &analysis::Analysis)> =
        state.measured.iter().filter_map(|m| m.analysis.as_ref().map(|a| (m.requested_percent, a))).collect();
    if analysed.is_empty() {
        return String::new();
    }
    let steps: Vec<String> = analysed.iter().map(|(percent, _)| format!("\"{percent} %\"")).collect();
    let series = |value: &dyn Fn(&analysis::Analysis) -> f64| -> String {
        analysed.iter().map(|(_, a)| format!("{:.2}", value(a))).collect::<Vec<_>>().join(", ")
    };
    let chart = |title: &str, axis: &str, canary: &dyn Fn(&analysis::Analysis) -> f64, stable: &dyn Fn(&analysis::Analysis) -> f64| {
        format!(
            "\n```mermaid\nxychart-beta\n    title \"{title}: canary (bars) against stable (line)\"\n    x-axis [{}]\n    \
             y-axis \"{axis}\"\n    bar [{}]\n    line [{}]\n```\n",
            steps.join(", "),
            series(canary),
            series(stable)
        )
    };
    let milliseconds = |track: &analysis::TrackSample| track.mean_latency().unwrap_or(0.0) * 1000.0;
    chart("error rate per step", "errors (%)", &|a| a.canary.error_rate() * 100.0, &|a| a.stable.error_rate() * 100.0)
        + &chart("mean latency per step", "latency (ms)", &|a| milliseconds(&a.canary), &|a| milliseconds(&a.stable))
}

/// 0 at the gate or done; [`EXIT_PAUSED_WITHOUT_EVIDENCE`] when a step paused as inconclusive.
pub fn exit_code(state: &State) -> Result<()> {
    if state::paused_without_evidence(state) {
        return Err(report::Exit(EXIT_PAUSED_WITHOUT_EVIDENCE).into());
    }
    Ok(())
}

/// Starts a canary; returns the state it ended in (paused, promoted or aborted).
pub fn start_canary(flow: &Flow, args: &StartOptions) -> Result<State> {
    let t = &flow.target;
    let source = args.image.source(flow)?;
    let record = flow.record()?;
    if !record.is_installed() {
        bail!("release {} is not installed in {}: deploy it first (cargo xtask deploy)", t.release, t.namespace);
    }
    refuse_unsafe_start_for_restart(&record)?;
    if record.values.canary.enabled {
        bail!("a canary is already running on this release: `cargo xtask canary status`, then promote, abort or resume it");
    }
    if record.values.blue_green.enabled {
        bail!("this release runs blue/green; a canary needs the standard shape (cargo xtask bluegreen)");
    }
    flow.policy()?;
    let stable_image = record.stable_image().unwrap_or_default();
    let total = record.values.replica_count.max(1);
    let approval = args.approval.unwrap_or(if std::io::stdin().is_terminal() { Approval::Prompt } else { Approval::Pause });
    let mut state = State {
        stable_tag: record.stable_tag().unwrap_or_default().to_owned(),
        canary_tag: source.tag().to_owned(),
        total_pods: total,
        steps: state::steps_from(&args.steps)?,
        analysis_seconds: args.analysis_seconds,
        thresholds: analysis::Thresholds {
            min_requests: args.min_requests,
            max_error_rate: args.max_error_rate,
            max_latency_ratio: args.max_latency_ratio,
            latency_slack_seconds: 0.05,
            max_memory_ratio: args.max_memory_ratio,
            max_cpu_ratio: args.max_cpu_ratio,
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
        last_revision: record.current().map(|r| r.revision),
    };
    if state.canary_tag == state.stable_tag {
        bail!("stable already runs {}: a canary needs another version", state.canary_tag);
    }
    let mut plan = Vec::from(images::plan_steps(&format!("the canary {}", source.in_words(&record.values.image.repository))));
    plan.extend(plan_from(&state));
    if args.dry_run {
        println!("stable: {stable_image}, {total} pods");
        print_plan("canary", t, &plan);
        return Ok(state);
    }
    let mut run = Run::begin(flow, "canary", format!("--tag {} --steps {:?}", state.canary_tag, state.steps), plan)?;
    run.fact("from_image", &stable_image)?;
    match images::source_and_check(&mut run, &record.values.image.repository, &source, &record.values.pull_secrets()) {
        Ok(pinned) => state.canary_digest = pinned.digest,
        Err(err) => {
            run.finish(RunResult::Failed, Some(&err))?;
            return Err(err.context("nothing was changed"));
        }
    }
    save(&mut run, &state)?;
    drive(run, state)
}

/// `promote`, `abort` or `resume` of the latest canary (`run`: only if it is that journal entry).
pub fn continue_canary(flow: &Flow, request: Request, run_id: Option<&str>) -> Result<State> {
    let Some((entry, mut state)) = flow.latest_state::<State>("canary", STATE_FACT)? else {
        bail!("no canary has run on release {} in {}", flow.target.release, flow.target.namespace);
    };
    let record = flow.record()?;
    let invalidated = made_since(&state, &record.history);
    match continue_request(&entry, &state, request, run_id, invalidated)? {
        Continue::AlreadyDone(said) => {
            println!("{said}");
            Ok(state)
        }
        Continue::From(phase) => {
            if request != Request::Resume {
                state.reason = None;
            }
            state.phase = phase;
            let plan = plan_from(&state);
            let run = Run::resume(flow, entry, plan)?;
            drive(run, state)
        }
    }
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
            format!(
                "promote: check {}@{} against the environment's policy again, stable to it at {} pods, then remove the canary, then verify",
                state.canary_tag,
                short_digest(&state.canary_digest),
                state.total_pods
            ),
        ));
    }
    if state.phase == Phase::Abort {
        plan.push(step("abort", format!("abort: canary to 0 and removed, stable {} back to {} pods", state.stable_tag, state.total_pods)));
    }
    plan
}

fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
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
            Phase::Step(index) => {
                let outcome = run_step(&mut run, &mut state, index);
                let transition = after_step(&state, index, outcome);
                state.phase = transition.phase;
                state.reason = transition.reason;
                if transition.pause {
                    save(&mut run, &state)?;
                    // What `status` shows beside the run: why it waits for a person.
                    run.fact("paused", state.reason.clone().unwrap_or_default())?;
                    println!("canary paused: {}", state.reason.clone().unwrap_or_default());
                    println!("  carry on with `cargo xtask canary resume` (analyses this step again), or `canary abort`");
                    return run.end(Ok(Ending::Paused(state)), Undo::NeedsAttention);
                }
            }
            Phase::Gate => {
                let answer = match state.approval {
                    Approval::Prompt => Some(ask_for_approval(&state)?),
                    _ => None,
                };
                let transition = at_gate(state.approval, answer);
                state.phase = transition.phase;
                state.reason = transition.reason;
                if transition.pause {
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
                    return run.end(Ok(Ending::Paused(state)), Undo::NeedsAttention);
                }
            }
            Phase::Promote => match run.step("promote", |changes| promote(changes, &state)) {
                Ok(revision) => {
                    state.last_revision = revision;
                    state.phase = Phase::Promoted;
                    save(&mut run, &state)?;
                    println!("canary of {} promoted: stable runs it at {} pods", state.canary_tag, state.total_pods);
                    return run.end(Ok(Ending::Succeeded(state)), Undo::NeedsAttention);
                }
                Err(err) => {
                    state.reason = Some(format!("promotion failed: {err:#}"));
                    state.phase = Phase::Abort;
                    save(&mut run, &state)?;
                    // Roll stable back to what it ran, then remove the canary.
                    let undone = run.compensate("abort", "abort after a failed promotion", |changes| abort(changes, &state));
                    return finish_abort(run, state, Some(err.context("the promotion failed")), undone);
                }
            },
            Phase::Abort => {
                let reason = state.reason.clone();
                let undone = if run.plan().iter().any(|s| s.id == "abort") {
                    run.step("abort", |changes| abort(changes, &state))
                } else {
                    run.compensate("abort", &format!("abort: {}", reason.clone().unwrap_or_default()), |changes| abort(changes, &state))
                };
                let failure = reason.map(|reason| anyhow::anyhow!("canary of {} aborted: {reason}", state.canary_tag));
                return finish_abort(run, state, failure, undone);
            }
            Phase::Promoted | Phase::Aborted => return run.end(Ok(Ending::Succeeded(state)), Undo::NeedsAttention),
        }
    }
}

/// Ends a run whose abort ran: aborted on purpose, failed (stable restored), or, when the abort
/// itself failed, failed-needs-attention with the phase left at Abort so `canary abort` retries.
fn finish_abort(mut run: Run, mut state: State, failure: Option<anyhow::Error>, undone: Result<Option<u32>>) -> Result<State> {
    let undone = undone.map(|revision| {
        state.last_revision = revision;
        state.phase = Phase::Aborted;
        format!("stable {} serves at {} pods", state.stable_tag, state.total_pods)
    });
    save(&mut run, &state)?;
    match (failure, undone) {
        (None, Ok(said)) => {
            println!("canary of {} aborted; {said}", state.canary_tag);
            run.end(Ok(Ending::Aborted(state)), Undo::NeedsAttention)
        }
        (Some(failure), undone) => run.end(Err(failure), Undo::Ran(undone)),
        (None, Err(err)) => run.end(
            Err(err.context(format!(
                "aborting the canary failed; stable {} is unchanged. See `cargo xtask canary status` and `cargo xtask doctor`, \
                 then run `cargo xtask canary abort` again (it changes only the canary and stable's replica count)",
                state.stable_tag
            ))),
            Undo::NeedsAttention,
        ),
    }
}

/// One step: the split as a Helm revision, both tracks ready, smoke tests, analysis. Pods
/// replaced during the analysis window (a node drained, an eviction) make it inconclusive: the
/// window no longer describes one set of pods, so it neither passes nor fails.
fn run_step(run: &mut Run, state: &mut State, index: usize) -> StepOutcome {
    let percent = state.steps[index];
    let (canary_pods, stable_pods) = split(state.total_pods, percent);
    let id = format!("step-{}", index + 1);
    let mut revision = None;
    let outcome = run.step(&id, |changes| {
        let t = &changes.target;
        let changed = Instant::now();
        let mut values = json!({"replicaCount": stable_pods, "canary": {"enabled": true, "replicaCount": canary_pods, "image": {"tag": state.canary_tag}}});
        crate::helm::merge(&mut values, &chart::digest_values(&state.canary_tag, &state.canary_digest));
        changes.change_values(
            values,
            &format!("shipshape canary {}: step {} at {percent} % ({canary_pods} canary, {stable_pods} stable)", state.canary_tag, index + 1),
        )?;
        revision = changes.record()?.current().map(|r| r.revision);
        let lag = changes.block_on(wait_tracks_ready(changes, &[chart::stable_deployment(&t.release), chart::canary_deployment(&t.release)]))?;
        let ready_seconds = changed.elapsed().as_secs_f64();
        changes.block_on(smoke_test(changes, &state.canary_tag))?;
        let before = changes.block_on(serving_pods(changes))?;
        let mut judged = match analyse(changes, state) {
            Ok(judged) => judged,
            Err(err) if err.chain().any(|e| e.is::<crate::interrupt::Interrupted>()) => return Err(err),
            // A metrics outage: no evidence either way (analysis::Analysis::without_evidence).
            Err(err) => analysis::Analysis::without_evidence(&format!("{err:#}"), state.analysis_seconds as f64),
        };
        let after = changes.block_on(serving_pods(changes))?;
        if let Some(replaced) = replaced_pods(&before, &after) {
            judged.verdict = Verdict::Inconclusive;
            judged.reasons.insert(0, format!("{replaced}: this window does not describe one set of pods"));
        }
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
    });
    if revision.is_some() {
        state.last_revision = revision;
    }
    match outcome {
        Err(err) => StepOutcome::Broken(format!("{err:#}")),
        Ok(measured) => {
            let analysis = measured.analysis.clone().expect("every step is analysed");
            // An inconclusive step is measured again on resume; keep only passed or failed ones.
            if analysis.verdict != Verdict::Inconclusive {
                state.measured.push(measured);
            }
            StepOutcome::Judged(analysis.verdict, analysis.reasons.join("; "))
        }
    }
}

/// The window's traffic, canary against stable, judged by the thresholds (and the custom checks
/// with Prometheus).
fn analyse(flow: &Flow, state: &State) -> Result<analysis::Analysis> {
    let t = &flow.target;
    let window = Duration::from_secs(state.analysis_seconds);
    let mut custom = Vec::new();
    let resources_at = || flow.block_on(analysis::resources::snapshot(flow.client(), &t.namespace, &t.release));
    let resources_before = resources_at();
    let tracks = match &state.prometheus {
        Some(url) => {
            let prometheus: analysis::Prometheus = url.parse()?;
            println!("  analysing {} s of traffic (from {prometheus})", window.as_secs());
            // An analysis window is an observation period by design, not a wait for a state.
            crate::interrupt::pause(window)?;
            let tracks = flow.block_on(prometheus.window(&flow.pod_client, &t.namespace, &t.release, window))?;
            for check in &state.checks {
                let query = checks::render(&check.query, &t.namespace, &t.release, window);
                let value =
                    flow.block_on(prometheus.value(&flow.pod_client, &query)).with_context(|| format!("custom check {}", check.name))?;
                custom.push(checks::evaluate(check, value));
            }
            tracks
        }
        None => {
            println!("  analysing {} s of traffic (from the pods' /metrics)", window.as_secs());
            let start = flow.block_on(analysis::snapshot(flow.client(), &flow.pod_client, &t.namespace, &t.release))?;
            crate::interrupt::pause(window)?;
            let end = flow.block_on(analysis::snapshot(flow.client(), &flow.pod_client, &t.namespace, &t.release))?;
            analysis::window(&start, &end)
        }
    };
    let resources = resources_before.and_then(|before| Ok(analysis::resources::usage(&before, &resources_at()?, window)));
    Ok(analysis::judge(&tracks, &state.thresholds, window).with_checks(custom).with_resources(resources, &state.thresholds))
}

/// The release's serving pods by name, with their track, and whether each is ready.
async fn serving_pods(flow: &Flow<'_>) -> Result<BTreeSet<(String, String)>> {
    let t = &flow.target;
    let ready = pods::ready(flow.client(), &t.namespace, &t.release).await?;
    Ok(ready.iter().map(|p| (pods::track_of(p), p.metadata.name.clone().unwrap_or_default())).collect())
}

/// Pods that left or joined the serving set between two readings, in words (None: the same).
pub fn replaced_pods(before: &BTreeSet<(String, String)>, after: &BTreeSet<(String, String)>) -> Option<String> {
    let gone: Vec<String> = before.difference(after).map(|(track, name)| format!("{track} {name}")).collect();
    let new: Vec<String> = after.difference(before).map(|(track, name)| format!("{track} {name}")).collect();
    if gone.is_empty() && new.is_empty() {
        return None;
    }
    Some(format!(
        "pods changed during the analysis window (a node drained, a pod evicted or replaced): {} left, {} joined{}{}",
        gone.len(),
        new.len(),
        if gone.is_empty() { String::new() } else { format!(" (left: {})", gone.join(", ")) },
        if new.is_empty() { String::new() } else { format!(" (joined: {})", new.join(", ")) }
    ))
}

/// The approval gate's prompt on a terminal: yes promotes, anything else aborts.
fn ask_for_approval(state: &State) -> Result<bool> {
    println!("all {} steps passed. Promote {} to stable at {} pods? [y/N] ", state.steps.len(), state.canary_tag, state.total_pods);
    // Read on a thread of its own, so that Ctrl-C at the prompt (a request while the run holds
    // the release: interrupt.rs) answers no, and the canary is aborted, instead of waiting on.
    let (said, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = said.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    loop {
        if let Err(interrupted) = crate::interrupt::checkpoint() {
            println!("  {interrupted}: not approved");
            return Ok(false);
        }
        match answer.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                let line = line?;
                return Ok(line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(false),
        }
    }
}

/// Stable to the digest the analysis judged, at full size (canary still serving), checked
/// against the environment's policy again first; then the canary removed; then the
/// post-deployment checks. Returns the last Helm revision made.
fn promote(changes: &Changes, state: &State) -> Result<Option<u32>> {
    let t = &changes.target;
    if state.canary_digest.is_empty() {
        bail!(
            "this canary's state records no digest (it was started before digests were journaled): promoting it would deploy \
             its tag resolved again, not what was judged. Abort it and start a new canary"
        );
    }
    let judged = Pinned {
        repository: changes.record()?.values.image.repository,
        tag: state.canary_tag.clone(),
        digest: state.canary_digest.clone(),
    };
    let proven = images::verify_pinned(changes, &judged).context("the canary's digest no longer passes the environment's policy")?;
    println!("  promoting {} (what the analysis judged): {proven}", judged.reference());
    let mut values = json!({"replicaCount": state.total_pods, "image": {"tag": state.canary_tag}});
    crate::helm::merge(&mut values, &chart::digest_values(&state.canary_tag, &state.canary_digest));
    changes.change_values(
        values,
        &format!("shipshape canary {}: promote stable to {}", state.canary_tag, short_digest(&state.canary_digest)),
    )?;
    changes.block_on(wait_tracks_ready(changes, &[chart::stable_deployment(&t.release)]))?;
    remove_canary(changes, &format!("shipshape canary {}: promoted, canary removed", state.canary_tag))?;
    let verification = verify::verify(changes)?;
    report::print_checks(&verification.checks);
    if verification.outcome == Outcome::Fail {
        bail!("post-deployment verification failed after promotion");
    }
    Ok(changes.record()?.current().map(|r| r.revision))
}

/// Canary to zero and stable back to full size (its version unchanged), then the canary
/// removed. Returns the last Helm revision made.
fn abort(changes: &Changes, state: &State) -> Result<Option<u32>> {
    let t = &changes.target;
    changes.change_values(
        json!({"replicaCount": state.total_pods, "image": {"tag": state.stable_tag}, "canary": {"replicaCount": 0}}),
        &format!("shipshape canary {}: abort, stable {} back to {} pods", state.canary_tag, state.stable_tag, state.total_pods),
    )?;
    changes.block_on(wait_tracks_ready(changes, &[chart::stable_deployment(&t.release)]))?;
    remove_canary(changes, &format!("shipshape canary {}: aborted, canary removed", state.canary_tag))?;
    Ok(changes.record()?.current().map(|r| r.revision))
}

fn remove_canary(changes: &Changes, description: &str) -> Result<()> {
    let t = &changes.target;
    changes.change_values(json!({"canary": {"enabled": false, "replicaCount": 1, "image": {"tag": ""}}}), description)?;
    let name = chart::canary_deployment(&t.release);
    changes.block_on(wait::deployment_gone(changes.client(), &t.namespace, &name, changes.rollout_timeout))
}

/// Waits until every named Deployment has rolled out (failing fast on stuck pods); returns how
/// long after the last pod turned Ready this was noticed.
async fn wait_tracks_ready(flow: &Flow<'_>, deployments: &[String]) -> Result<f64> {
    let t = &flow.target;
    let waits = deployments.iter().map(|d| wait::deployment_rolled_out(flow.client(), &t.namespace, d, flow.rollout_timeout));
    for result in join_all(waits).await {
        result?;
    }
    let noticed = k8s_openapi::jiff::Timestamp::now();
    let pods = pods::ready(flow.client(), &t.namespace, &t.release).await?;
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
    let pods: Vec<_> =
        pods::ready(flow.client(), &t.namespace, &t.release).await?.into_iter().filter(|p| pods::track_of(p) == "canary").collect();
    if pods.is_empty() {
        bail!("smoke test: no ready canary pod");
    }
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for path in ["/health", "/ready", "/version"] {
            let answer = proxy::get_pod(&flow.pod_client, &t.namespace, &name, pods::http_port(pod), path).await?;
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

/// The release's tracks as the cluster runs them: ready pods per track, the real share of
/// traffic, and replica counts that differ from Helm's record (hand scaling).
#[derive(Serialize)]
struct LiveTracks {
    pods: Vec<(String, u32)>,
    share: String,
    drift: Vec<String>,
}

async fn live_tracks(flow: &Flow<'_>, record: &ReleaseRecord) -> Result<LiveTracks> {
    let t = &flow.target;
    let (pods, deployments) = futures::join!(
        pods::ready(flow.client(), &t.namespace, &t.release),
        super::ownership::deployments(flow.client(), &t.namespace, &t.release)
    );
    let pods = pods?;
    let mut per_track: Vec<(String, u32)> = Vec::new();
    for track in ["stable", "canary"] {
        let n = pods.iter().filter(|p| pods::track_of(p) == track).count() as u32;
        if n > 0 || track == "stable" {
            per_track.push((track.to_owned(), n));
        }
    }
    let deployments = deployments?;
    let mut drift: Vec<String> =
        super::ownership::replica_drift(&deployments, &t.release, &record.values).iter().map(|d| d.to_string()).collect();
    drift.extend(super::ownership::canary_image_drift(&deployments, &t.release, &record.values));
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
    if !state.canary_digest.is_empty() {
        println!("  canary digest (what promotion deploys): {}", state.canary_digest);
    }
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
    use super::*;

    fn set(pods: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        pods.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect()
    }

    #[test]
    fn a_window_whose_pods_were_replaced_is_named_and_otherwise_not() {
        let before = set(&[("stable", "s-1"), ("stable", "s-2"), ("canary", "c-1")]);
        assert_eq!(replaced_pods(&before, &before), None);
        let drained = set(&[("stable", "s-1"), ("stable", "s-3"), ("canary", "c-2")]);
        let said = replaced_pods(&before, &drained).unwrap();
        assert!(said.contains("2 left, 2 joined") && said.contains("canary c-1") && said.contains("stable s-3"), "{said}");
        let evicted = set(&[("stable", "s-1"), ("canary", "c-1")]);
        assert!(replaced_pods(&before, &evicted).unwrap().contains("1 left, 0 joined"), "a pod gone and not replaced yet");
    }

    /// prod's canary: v1 -> v2 on 10 pods over `steps`, at `phase`.
    fn canary(steps: &[u32], phase: Phase) -> State {
        State {
            stable_tag: "v1".into(),
            canary_tag: "v2".into(),
            total_pods: 10,
            steps: steps.to_vec(),
            analysis_seconds: 8,
            thresholds: analysis::Thresholds {
                min_requests: 1,
                max_error_rate: 0.01,
                max_latency_ratio: 2.0,
                latency_slack_seconds: 0.05,
                ..Default::default()
            },
            approval: Approval::Pause,
            phase,
            measured: Vec::new(),
            reason: None,
            prometheus: None,
            canary_digest: format!("sha256:{}", "b".repeat(64)),
            checks: Vec::new(),
            last_revision: None,
        }
    }

    #[test]
    fn a_canary_s_standing_is_what_canary_start_would_exit_with() {
        use report::Standing;
        let run = |result| Entry { result, ..Default::default() };
        assert_eq!(standing(&run(RunResult::Paused), &canary(&[10], Phase::Gate), false), Standing::Healthy, "every step passed");
        assert_eq!(standing(&run(RunResult::Succeeded), &canary(&[10], Phase::Promoted), false), Standing::Healthy);
        assert_eq!(standing(&run(RunResult::Paused), &canary(&[10], Phase::Step(0)), false), Standing::Paused, "without evidence");
        assert_eq!(standing(&run(RunResult::Aborted), &canary(&[10], Phase::Aborted), false), Standing::Degraded);
        assert_eq!(standing(&run(RunResult::Running), &canary(&[10], Phase::Step(0)), false), Standing::Degraded, "interrupted");
        assert_eq!(standing(&run(RunResult::Running), &canary(&[10], Phase::Step(0)), true), Standing::Changing, "its process runs");
    }

    fn ids(plan: &[Step]) -> Vec<&str> {
        plan.iter().map(|s| s.id.as_str()).collect()
    }

    /// What a start, a resume after a kill at each step, the gate and an abort have left to do.
    #[test]
    fn the_plan_is_what_is_left_from_the_phase() {
        let steps = [10, 30, 50];
        let start = plan_from(&canary(&steps, Phase::Step(0)));
        assert_eq!(ids(&start), ["step-1", "step-2", "step-3", "gate", "promote"]);
        assert!(start[0].description.contains("1 canary + 9 stable pods (10 % real)"), "{}", start[0].description);
        assert!(start[2].description.contains("5 canary + 5 stable pods (50 % real)"), "{}", start[2].description);
        assert!(start[3].description.contains("pause until `cargo xtask canary promote`"), "{}", start[3].description);
        assert!(start[4].description.contains("v2@sha256:bbbbbbbbbbbb against the environment's policy"), "{}", start[4].description);
        for killed_at in 0..steps.len() {
            let left = plan_from(&canary(&steps, Phase::Step(killed_at)));
            assert_eq!(left.len(), steps.len() - killed_at + 2, "killed at step {}: {:?}", killed_at + 1, ids(&left));
            assert_eq!(left[0].id, format!("step-{}", killed_at + 1));
        }
        assert_eq!(ids(&plan_from(&canary(&steps, Phase::Gate))), ["gate", "promote"]);
        assert_eq!(ids(&plan_from(&canary(&steps, Phase::Promote))), ["promote"]);
        let abort = plan_from(&canary(&steps, Phase::Abort));
        assert_eq!(ids(&abort), ["abort"]);
        assert!(abort[0].description.contains("stable v1 back to 10 pods"), "{}", abort[0].description);
        assert!(plan_from(&canary(&steps, Phase::Promoted)).is_empty() && plan_from(&canary(&steps, Phase::Aborted)).is_empty());
    }

    #[test]
    fn the_gate_is_said_as_the_approval_asked() {
        let gate = |approval| {
            let mut state = canary(&[50], Phase::Gate);
            state.approval = approval;
            plan_from(&state)[0].description.clone()
        };
        assert!(gate(Approval::Prompt).contains("ask on this terminal"));
        assert!(gate(Approval::Approved).contains("approved in advance"));
    }

    /// A CI job branches on the exit code: 3 only for a step paused without evidence.
    #[test]
    fn only_a_step_without_evidence_exits_three() {
        let code = |phase| match exit_code(&canary(&[10, 50], phase)) {
            Ok(()) => 0,
            Err(err) => err.downcast_ref::<report::Exit>().map(|e| i32::from(e.0)).unwrap_or(1),
        };
        assert_eq!(code(Phase::Step(1)), i32::from(EXIT_PAUSED_WITHOUT_EVIDENCE));
        for done in [Phase::Gate, Phase::Promoted, Phase::Aborted] {
            assert_eq!(code(done.clone()), 0, "{done:?}");
        }
    }

    #[test]
    fn the_step_summary_has_a_row_per_measured_step() {
        let mut state = canary(&[10, 30], Phase::Gate);
        state.measured.push(state::Measured {
            requested_percent: 10,
            canary_pods: 1,
            stable_pods: 9,
            real_percent: 10.0,
            analysis: None,
            ready_seconds: 4.0,
            detection_lag_seconds: 0.0,
        });
        let entry = Entry { id: "run-7".into(), actor: "ci via https://x/runs/1".into(), result: RunResult::Paused, ..Default::default() };
        let md = summary_markdown(&entry, &state, "waiting at the approval gate");
        assert!(md.starts_with("### canary v1 -> v2 in run-7: paused"), "{md}");
        assert!(md.contains("| 10 % | 1 + 9 | 10 % |"), "{md}");
        assert!(md.contains("run by ci via https://x/runs/1 (journal entry `run-7`)"), "{md}");
        assert!(!md.contains("mermaid"), "no analysed step, no chart: {md}");
    }

    #[test]
    fn analysed_steps_are_charted_canary_against_stable() {
        let mut state = canary(&[10, 30], Phase::Gate);
        let track = |requests: f64, errors: f64, seconds: f64| analysis::TrackSample {
            requests,
            errors,
            latency_sum: seconds * requests,
            latency_count: requests,
            latency_buckets: Vec::new(),
        };
        for (percent, canary_errors) in [(10, 0.0), (30, 2.0)] {
            state.measured.push(state::Measured {
                requested_percent: percent,
                canary_pods: 1,
                stable_pods: 9,
                real_percent: f64::from(percent),
                analysis: Some(analysis::Analysis {
                    verdict: analysis::Verdict::Pass,
                    reasons: Vec::new(),
                    canary: track(100.0, canary_errors, 0.012),
                    stable: track(400.0, 0.0, 0.010),
                    window_seconds: 25.0,
                    checks: Vec::new(),
                    resources: Default::default(),
                }),
                ready_seconds: 4.0,
                detection_lag_seconds: 0.0,
            });
        }
        let md = analysis_charts(&state);
        assert_eq!(md.matches("```mermaid\nxychart-beta").count(), 2, "{md}");
        assert!(md.contains("x-axis [\"10 %\", \"30 %\"]"), "{md}");
        assert!(md.contains("bar [0.00, 2.00]") && md.contains("line [0.00, 0.00]"), "error rate in %: {md}");
        assert!(md.contains("bar [12.00, 12.00]") && md.contains("line [10.00, 10.00]"), "mean latency in ms: {md}");
    }

    #[test]
    fn a_workflow_reads_one_word_for_where_the_canary_is() {
        let entry = |result| Entry { result, ..Default::default() };
        let state = |phase| canary(&[50], phase);
        assert_eq!(outcome_word(&entry(RunResult::Paused), &state(Phase::Gate)), "gate");
        assert_eq!(outcome_word(&entry(RunResult::Paused), &state(Phase::Step(0))), "paused");
        assert_eq!(outcome_word(&entry(RunResult::Succeeded), &state(Phase::Promoted)), "promoted");
        assert_eq!(outcome_word(&entry(RunResult::Failed), &state(Phase::Aborted)), "aborted");
        assert_eq!(outcome_word(&entry(RunResult::FailedNeedsAttention), &state(Phase::Abort)), "failed");
        assert_eq!(outcome_word(&entry(RunResult::Running), &state(Phase::Step(0))), "running");
    }
}
