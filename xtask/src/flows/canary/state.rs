//! A canary's state, kept as JSON in its journal entry, and every decision the flow makes from
//! it, as functions of (state, what was observed): the split at a step, what follows a step's
//! verdict, the gate, what `promote`, `abort` and `resume` may do, whether a Helm revision made
//! by someone else since the gate invalidates it. No cluster here: the tests below hold each
//! decision case by case (Argo Rollouts tests its controller the same way).
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::super::analysis::checks::CustomCheck;
use super::super::analysis::{Analysis, Thresholds, Verdict};
use crate::helm::Revision;
use crate::journal::{Entry, RunResult};

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

/// How the approval gate is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Asked on the terminal.
    Prompt,
    /// The flow pauses until `canary promote` or `canary abort`, from any machine.
    Pause,
    /// Given in advance.
    Approved,
}

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
    /// The digest the canary's tag was resolved to at start: every step runs exactly that, and
    /// promotion deploys it.
    #[serde(default)]
    pub canary_digest: String,
    /// Custom checks run at every step (with Prometheus), read once at start: a resumed flow
    /// judges by the same checks.
    #[serde(default)]
    pub checks: Vec<CustomCheck>,
    /// The Helm revision this flow made last: a newer one was made by someone else, and the
    /// analysis it passed no longer describes what runs.
    #[serde(default)]
    pub last_revision: Option<u32>,
}

/// Pods of each track at `percent`: at least one canary pod, and stable keeps at least one
/// until promotion (so with 1 pod the canary runs beside it: 50 %).
pub fn split(total: u32, percent: u32) -> (u32, u32) {
    let total = total.max(1);
    let canary = ((f64::from(total) * f64::from(percent) / 100.0).round() as u32).clamp(1, total);
    let stable = (total - canary).max(1);
    (canary, stable)
}

pub fn real_percent(canary: u32, stable: u32) -> f64 {
    f64::from(canary) * 100.0 / f64::from(canary + stable)
}

/// `--steps` as the flow runs them: within 1..99 (promotion to 100 % follows the gate), in the
/// order given, a repeated step once.
pub fn steps_from(asked: &[u32]) -> Result<Vec<u32>> {
    let mut steps: Vec<u32> = asked.iter().copied().filter(|p| (1..100).contains(p)).collect();
    steps.dedup();
    if steps.is_empty() {
        bail!("--steps needs at least one percentage between 1 and 99 (promotion to 100 % follows the approval gate)");
    }
    Ok(steps)
}

/// How a step ended: judged by the analysis, or broken before a verdict (a crash loop, a
/// smoke test that failed, an API error).
pub enum StepOutcome {
    Judged(Verdict, String),
    Broken(String),
}

/// What follows a step: the next phase, and why the flow stops, if it does.
#[derive(Debug, PartialEq)]
pub struct Transition {
    pub phase: Phase,
    pub reason: Option<String>,
    pub pause: bool,
}

/// A passed step moves on (to the gate after the last); an inconclusive one is measured again on
/// resume (the flow pauses at the same step, never passing on no evidence); a failed or broken
/// one aborts.
pub fn after_step(state: &State, index: usize, outcome: StepOutcome) -> Transition {
    let at = |why: &str| format!("step {} ({} %): {why}", index + 1, state.steps.get(index).copied().unwrap_or(0));
    match outcome {
        StepOutcome::Judged(Verdict::Pass, _) if index + 1 >= state.steps.len() => {
            Transition { phase: Phase::Gate, reason: None, pause: false }
        }
        StepOutcome::Judged(Verdict::Pass, _) => Transition { phase: Phase::Step(index + 1), reason: None, pause: false },
        StepOutcome::Judged(Verdict::Inconclusive, why) => Transition { phase: Phase::Step(index), reason: Some(at(&why)), pause: true },
        StepOutcome::Judged(Verdict::Fail, why) | StepOutcome::Broken(why) => {
            Transition { phase: Phase::Abort, reason: Some(at(&why)), pause: false }
        }
    }
}

/// The gate: `Some(true)` approved, `Some(false)` refused (at a prompt), `None` wait for a
/// person. What happens next.
pub fn at_gate(approval: Approval, answer: Option<bool>) -> Transition {
    match (approval, answer) {
        (Approval::Approved, _) | (Approval::Prompt, Some(true)) => Transition { phase: Phase::Promote, reason: None, pause: false },
        (Approval::Prompt, Some(false)) => {
            Transition { phase: Phase::Abort, reason: Some("not approved at the gate".to_owned()), pause: false }
        }
        (Approval::Pause, _) | (Approval::Prompt, None) => Transition { phase: Phase::Gate, reason: None, pause: true },
    }
}

/// What a later command asks of the latest canary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request {
    Promote,
    Abort,
    Resume,
}

/// What that command does.
#[derive(Debug, PartialEq)]
pub enum Continue {
    /// Carry on the run from this phase.
    From(Phase),
    /// Nothing to do, and that is not an error: said in these words, exit 0 (an abort of a
    /// canary already aborted or promoted: the deploy workflow's abort job after a self-abort).
    AlreadyDone(String),
}

/// Whether `request` may continue the latest canary (`run`: the journal entry a CI job names, so
/// it never acts on another run's canary), and from which phase. `invalidated`: a Helm revision
/// made by someone else since the flow's last one ([`made_since`]).
pub fn continue_request(
    entry: &Entry,
    state: &State,
    request: Request,
    run: Option<&str>,
    invalidated: Option<&Revision>,
) -> Result<Continue> {
    if let Some(wanted) = run.filter(|wanted| *wanted != entry.id) {
        bail!(
            "the latest canary on this release is run {} ({} to {}, by {}), not run {wanted}: nothing was changed",
            entry.id,
            state.stable_tag,
            state.canary_tag,
            entry.actor
        );
    }
    match (&state.phase, request) {
        (Phase::Aborted, Request::Abort) => {
            return Ok(Continue::AlreadyDone(format!(
                "the canary of {} (run {}) is already aborted: stable runs {}",
                state.canary_tag, entry.id, state.stable_tag
            )))
        }
        (Phase::Promoted, Request::Abort) => {
            return Ok(Continue::AlreadyDone(format!(
                "the canary of {} (run {}) was already promoted: stable runs it; `cargo xtask rollback` goes back to {}",
                state.canary_tag, entry.id, state.stable_tag
            )))
        }
        (Phase::Promoted | Phase::Aborted, _) => bail!(
            "the latest canary ({} to {}, run {}) is already {}: nothing to continue",
            state.stable_tag,
            state.canary_tag,
            entry.id,
            if state.phase == Phase::Promoted { "promoted" } else { "aborted" }
        ),
        _ => {}
    }
    // An abort is the safety path: it goes on whatever was changed by hand (and takes it back).
    if request == Request::Abort {
        return Ok(Continue::From(Phase::Abort));
    }
    if let Some(revision) = invalidated {
        bail!(
            "Helm revision {} ({}, {}) was made after this canary's last step, not by it: what the analysis judged no \
             longer runs. {} refused (nothing was changed): `cargo xtask canary abort` ends the canary, then start a new one",
            revision.revision,
            revision.description.lines().next().unwrap_or_default(),
            revision.updated,
            if request == Request::Promote { "Promotion" } else { "Resuming" }
        );
    }
    match (&state.phase, request) {
        (Phase::Gate | Phase::Promote, Request::Promote) => Ok(Continue::From(Phase::Promote)),
        (_, Request::Promote) => {
            let (done, of) = (state.measured.len(), state.steps.len());
            bail!(
                "the canary has not passed its steps yet ({done} of {of} done, {}): it cannot be promoted; `canary resume` carries on",
                phase_in_words(&state.phase)
            )
        }
        (phase, _) => Ok(Continue::From(phase.clone())),
    }
}

/// The newest Helm revision made after `state.last_revision` by someone else (`helm rollback`,
/// `helm upgrade`, another tool), if any. A revision that describes itself as this canary's is
/// the flow's own: a run killed between its upgrade and its journal write leaves one behind,
/// and resuming must not call it foreign.
pub fn made_since<'h>(state: &State, history: &'h [Revision]) -> Option<&'h Revision> {
    let last = state.last_revision?;
    let own = format!("shipshape canary {}:", state.canary_tag);
    history.iter().filter(|r| r.revision > last && !r.description.starts_with(&own)).max_by_key(|r| r.revision)
}

fn phase_in_words(phase: &Phase) -> String {
    match phase {
        Phase::Step(i) => format!("next is step {}", i + 1),
        Phase::Gate => "at the gate".to_owned(),
        Phase::Promote => "promoting".to_owned(),
        Phase::Abort => "aborting".to_owned(),
        Phase::Promoted => "promoted".to_owned(),
        Phase::Aborted => "aborted".to_owned(),
    }
}

/// Where the flow is, in words: the phase, whether a live process drives it, and whether the
/// cluster still runs what the journal says (`invalidated`).
pub fn describe(entry: &Entry, state: &State, lease_holder: Option<&str>, invalidated: Option<&Revision>) -> String {
    let n = state.steps.len();
    let at = |i: usize| {
        let percent = state.steps.get(i).copied().unwrap_or(100);
        let (canary, stable) = split(state.total_pods, percent);
        format!("step {} of {n} ({percent} %, {:.0} % of pods)", i + 1, real_percent(canary, stable))
    };
    let said = match (&state.phase, entry.result) {
        (Phase::Step(_) | Phase::Promote | Phase::Abort, RunResult::Running) if lease_holder.is_none() => {
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
        (Phase::Step(i), RunResult::Running) => format!("running {} (held by {})", at(*i), lease_holder.unwrap_or("?")),
        (Phase::Step(i), _) => format!(
            "paused without evidence before {}: {}: `cargo xtask canary resume` analyses it again, or `canary abort`",
            at(*i),
            state.reason.clone().unwrap_or_else(|| "analysis inconclusive".to_owned())
        ),
        (Phase::Gate, _) => {
            format!("waiting at the approval gate, all {n} steps passed: `cargo xtask canary promote` or `cargo xtask canary abort`")
        }
        (Phase::Promote, _) => "promoting".to_owned(),
        (Phase::Abort, RunResult::FailedNeedsAttention) => format!(
            "aborting failed ({}): stable {} may not be at full size; `cargo xtask canary abort` tries again",
            state.reason.clone().unwrap_or_default(),
            state.stable_tag
        ),
        (Phase::Abort, _) => "aborting".to_owned(),
        (Phase::Promoted, _) => format!("promoted: stable runs {}", state.canary_tag),
        (Phase::Aborted, _) => format!("aborted: stable runs {}", state.stable_tag),
    };
    match invalidated {
        Some(revision) if !matches!(state.phase, Phase::Promoted | Phase::Aborted) => format!(
            "{said}. BUT the journal and the cluster disagree: Helm revision {} ({}, {}) was made after this canary's last \
             step, not by it; promote and resume refuse, `cargo xtask canary abort` ends the canary",
            revision.revision,
            revision.description.lines().next().unwrap_or_default(),
            revision.updated
        ),
        _ => said,
    }
}

/// The run's result as the exit code a CI job branches on: 0 at the gate or done; 3 paused
/// without evidence (a step inconclusive).
pub fn paused_without_evidence(state: &State) -> bool {
    matches!(state.phase, Phase::Step(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(steps: &[u32], phase: Phase) -> State {
        State {
            stable_tag: "v1".into(),
            canary_tag: "v2".into(),
            total_pods: 10,
            steps: steps.to_vec(),
            analysis_seconds: 60,
            thresholds: Thresholds {
                min_requests: 50,
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
            canary_digest: format!("sha256:{}", "a".repeat(64)),
            checks: Vec::new(),
            last_revision: Some(5),
        }
    }

    fn entry(id: &str, result: RunResult) -> Entry {
        Entry { id: id.into(), flow: "canary".into(), result, actor: "ci".into(), ..Default::default() }
    }

    fn revision(revision: u32, description: &str) -> Revision {
        Revision {
            revision,
            updated: "2026-12-05T01:00:00Z".into(),
            status: "deployed".into(),
            chart: "model-server-0.1.0".into(),
            app_version: "0.1.0".into(),
            description: description.into(),
        }
    }

    #[test]
    fn replica_split_keeps_one_of_each_and_records_reality() {
        assert_eq!(split(10, 10), (1, 9));
        assert_eq!(split(10, 30), (3, 7));
        assert_eq!(split(10, 50), (5, 5));
        assert_eq!(split(4, 10), (1, 3), "at least one canary pod: 25 % real");
        assert_eq!(split(4, 50), (2, 2));
        assert_eq!(split(1, 10), (1, 1), "one pod: the canary runs beside it");
        assert_eq!(split(3, 90), (3, 1), "stable keeps a pod until promotion");
        assert_eq!(split(0, 50), (1, 1), "no pods recorded reads as one");
        assert_eq!(real_percent(1, 9), 10.0);
        assert_eq!(real_percent(1, 3), 25.0);
    }

    #[test]
    fn steps_are_kept_in_range_and_order() {
        assert_eq!(steps_from(&[10, 30, 50]).unwrap(), [10, 30, 50]);
        assert_eq!(steps_from(&[0, 10, 10, 100, 30]).unwrap(), [10, 30], "0 and 100 are not steps; a repeat runs once");
        assert!(steps_from(&[100]).is_err());
        assert!(steps_from(&[]).is_err());
    }

    /// Each verdict at each position of a three-step canary.
    #[test]
    fn what_follows_each_step_s_verdict() {
        let s = state(&[10, 30, 50], Phase::Step(0));
        let pass = |i| after_step(&s, i, StepOutcome::Judged(Verdict::Pass, String::new()));
        assert_eq!(pass(0).phase, Phase::Step(1));
        assert_eq!(pass(1).phase, Phase::Step(2));
        assert_eq!(pass(2), Transition { phase: Phase::Gate, reason: None, pause: false }, "the last step leads to the gate");
        for i in 0..3 {
            let inconclusive = after_step(&s, i, StepOutcome::Judged(Verdict::Inconclusive, "12 canary requests, fewer than 50".into()));
            assert_eq!(inconclusive.phase, Phase::Step(i), "measured again on resume, never passed");
            assert!(inconclusive.pause);
            assert_eq!(inconclusive.reason.unwrap(), format!("step {} ({} %): 12 canary requests, fewer than 50", i + 1, s.steps[i]));
            let failed = after_step(&s, i, StepOutcome::Judged(Verdict::Fail, "error rate 50 %".into()));
            assert_eq!((failed.phase, failed.pause), (Phase::Abort, false));
            let broken = after_step(&s, i, StepOutcome::Broken("canary pod crash-looping".into()));
            assert_eq!(broken.phase, Phase::Abort);
            assert!(broken.reason.unwrap().contains("crash-looping"));
        }
    }

    #[test]
    fn the_gate_promotes_aborts_or_waits() {
        assert_eq!(at_gate(Approval::Approved, None).phase, Phase::Promote);
        assert_eq!(at_gate(Approval::Prompt, Some(true)).phase, Phase::Promote);
        let refused = at_gate(Approval::Prompt, Some(false));
        assert_eq!((refused.phase, refused.reason.as_deref()), (Phase::Abort, Some("not approved at the gate")));
        let paused = at_gate(Approval::Pause, None);
        assert_eq!((paused.phase, paused.pause), (Phase::Gate, true));
        assert!(at_gate(Approval::Prompt, None).pause, "no answer (stdin closed): wait, never promote");
    }

    /// Every request against every phase, no hand change.
    #[test]
    fn what_promote_abort_and_resume_may_do_from_each_phase() {
        use Continue::{AlreadyDone, From};
        let phases = [Phase::Step(1), Phase::Gate, Phase::Promote, Phase::Abort, Phase::Promoted, Phase::Aborted];
        for phase in phases {
            let s = state(&[10, 30, 50], phase.clone());
            let e =
                entry("run-1", if matches!(phase, Phase::Promoted | Phase::Aborted) { RunResult::Succeeded } else { RunResult::Paused });
            let ask = |request| continue_request(&e, &s, request, None, None);
            match phase {
                Phase::Step(1) => {
                    assert!(ask(Request::Promote).unwrap_err().to_string().contains("0 of 3 done, next is step 2"));
                    assert_eq!(ask(Request::Abort).unwrap(), From(Phase::Abort));
                    assert_eq!(ask(Request::Resume).unwrap(), From(Phase::Step(1)));
                }
                Phase::Gate | Phase::Promote => {
                    assert_eq!(ask(Request::Promote).unwrap(), From(Phase::Promote));
                    assert_eq!(ask(Request::Abort).unwrap(), From(Phase::Abort));
                    assert_eq!(ask(Request::Resume).unwrap(), From(phase.clone()));
                }
                Phase::Abort => {
                    assert!(ask(Request::Promote).is_err(), "an abort under way is not promoted");
                    assert_eq!(ask(Request::Abort).unwrap(), From(Phase::Abort), "an interrupted abort is carried on");
                    assert_eq!(ask(Request::Resume).unwrap(), From(Phase::Abort));
                }
                Phase::Promoted => {
                    assert!(
                        matches!(ask(Request::Abort).unwrap(), AlreadyDone(said) if said.contains("already promoted") && said.contains("rollback"))
                    );
                    assert!(ask(Request::Promote).unwrap_err().to_string().contains("already promoted"));
                    assert!(ask(Request::Resume).is_err());
                }
                Phase::Aborted => {
                    assert!(matches!(ask(Request::Abort).unwrap(), AlreadyDone(said) if said.contains("already aborted")));
                    assert!(ask(Request::Promote).unwrap_err().to_string().contains("already aborted"));
                    assert!(ask(Request::Resume).is_err());
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn a_command_naming_another_run_leaves_the_latest_canary_alone() {
        let s = state(&[50], Phase::Gate);
        let e = entry("run-2", RunResult::Paused);
        for request in [Request::Promote, Request::Abort, Request::Resume] {
            let refused = continue_request(&e, &s, request, Some("run-1"), None).unwrap_err().to_string();
            assert!(
                refused.contains("is run run-2") && refused.contains("not run run-1") && refused.contains("nothing was changed"),
                "{refused}"
            );
        }
        assert_eq!(continue_request(&e, &s, Request::Promote, Some("run-2"), None).unwrap(), Continue::From(Phase::Promote));
    }

    /// Issue 19: `helm rollback` by hand after the gate; promote must not deploy the canary.
    #[test]
    fn a_helm_revision_made_by_someone_else_since_the_last_step_invalidates_the_gate() {
        let s = state(&[10, 30, 50], Phase::Gate);
        let history =
            [revision(4, "shipshape canary v2: step 2"), revision(5, "shipshape canary v2: step 3"), revision(6, "Rollback to 2")];
        let made = made_since(&s, &history).expect("revision 6 is not the flow's");
        assert_eq!(made.revision, 6);
        let e = entry("run-1", RunResult::Paused);
        let refused = continue_request(&e, &s, Request::Promote, None, Some(made)).unwrap_err().to_string();
        assert!(refused.contains("Helm revision 6 (Rollback to 2") && refused.contains("Promotion refused"), "{refused}");
        assert!(continue_request(&e, &s, Request::Resume, None, Some(made)).unwrap_err().to_string().contains("Resuming refused"));
        assert_eq!(
            continue_request(&e, &s, Request::Abort, None, Some(made)).unwrap(),
            Continue::From(Phase::Abort),
            "abort stays possible"
        );
        assert!(made_since(&s, &history[..2]).is_none(), "only the flow's own revisions");
        let killed_before_its_journal = [revision(5, "shipshape canary v2: step 3"), revision(6, "shipshape canary v2: step 3")];
        assert!(made_since(&s, &killed_before_its_journal).is_none(), "the flow's own upgrade, not yet journaled");
        let another_canary = [revision(6, "shipshape canary v3: step 1 at 10 %")];
        assert_eq!(made_since(&s, &another_canary).map(|r| r.revision), Some(6), "another canary's revision is foreign");
        let own_then_hand = [revision(6, "shipshape canary v2: step 3"), revision(7, "Rollback to 2")];
        assert_eq!(made_since(&s, &own_then_hand).map(|r| r.revision), Some(7));
        let mut older = state(&[50], Phase::Gate);
        older.last_revision = None;
        assert!(made_since(&older, &history).is_none(), "a state from before this field");
        let said = describe(&e, &s, None, Some(made));
        assert!(said.contains("waiting at the approval gate") && said.contains("the journal and the cluster disagree"), "{said}");
        assert!(!describe(&e, &state(&[50], Phase::Promoted), None, Some(made)).contains("disagree"), "a finished canary is history");
    }

    #[test]
    fn status_says_running_interrupted_paused_or_done() {
        let running = entry("r", RunResult::Running);
        let s = state(&[10, 30, 50], Phase::Step(1));
        assert!(describe(&running, &s, Some("ci (canary r, pid 7)"), None).starts_with("running step 2 of 3 (30 %, 30 % of pods)"));
        let dead = describe(&running, &s, None, None);
        assert!(dead.starts_with("interrupted at step 2 of 3") && dead.contains("canary resume"), "{dead}");
        let mut paused = s.clone();
        paused.reason = Some("step 2 (30 %): too few requests".into());
        let said = describe(&entry("r", RunResult::Paused), &paused, None, None);
        assert!(said.starts_with("paused without evidence before step 2") && said.contains("too few requests"), "{said}");
        assert!(describe(&entry("r", RunResult::Paused), &state(&[50], Phase::Gate), None, None).contains("approval gate"));
        let failed_abort = describe(&entry("r", RunResult::FailedNeedsAttention), &state(&[50], Phase::Abort), None, None);
        assert!(failed_abort.contains("canary abort` tries again"), "{failed_abort}");
        assert_eq!(describe(&entry("r", RunResult::Succeeded), &state(&[50], Phase::Promoted), None, None), "promoted: stable runs v2");
        assert!(paused_without_evidence(&s) && !paused_without_evidence(&state(&[50], Phase::Gate)));
    }

    /// Journals already in clusters hold states without the newer fields.
    #[test]
    fn an_older_state_reads_with_defaults() {
        let written = r#"{"stable_tag":"v1","canary_tag":"v2","total_pods":4,"steps":[25,50],"analysis_seconds":8,
            "thresholds":{"min_requests":20,"max_error_rate":0.01,"max_latency_ratio":3.0,"latency_slack_seconds":0.05},
            "approval":"pause","phase":{"phase":"step","step":1},"measured":[],"reason":null}"#;
        let read: State = serde_json::from_str(written).unwrap();
        assert_eq!(read.phase, Phase::Step(1));
        assert_eq!((read.canary_digest.as_str(), read.last_revision), ("", None));
        assert_eq!(serde_json::to_value(Phase::Gate).unwrap(), serde_json::json!({"phase": "gate"}));
    }
}
