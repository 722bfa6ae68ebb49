//! `cargo xtask rollback`: the runbooks' rollbacks (Helm revision, previous release, image tag)
//! and the canary runbook's automated "Rollback to Previous Release", which also removes any
//! canary, verifies, and writes a summary.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::Api;
use serde::Serialize;
use serde_json::Value;

use super::verify::{self, Verification};
use super::{images, ownership, print_plan, step, Ending, Flow, Run, Undo};
use crate::chart::{self, Values};
use crate::helm::record::stable_image_of;
use crate::helm::{Change, Revision};
use crate::journal::RunResult;
use crate::k8s::wait;
use crate::report::{self, Outcome, Output};

/// A pending Helm operation younger than this may still be running somewhere: leave it alone.
const PENDING_PRESUMED_DEAD: Duration = Duration::from_secs(120);

/// Where to roll back to.
#[derive(Clone, Debug, PartialEq)]
pub enum To {
    Previous,
    Revision(u32),
    Tag(String),
}

/// What the rollback will do, decided from Helm's record before anything changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// `helm rollback` to this revision.
    Revision { revision: u32, why: Why },
    /// The current values with the stable image set to this tag.
    Tag(String),
}

/// Why a revision was chosen, said in the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    Asked,
    /// The newest earlier revision that ran another stable version and no canary.
    Previous,
    /// What runs was changed behind Helm's back and Helm has nothing earlier: back to its record.
    HelmsRecord,
}

/// The facts the decision needs, read from the cluster.
pub struct Facts<'a> {
    pub history: &'a [Revision],
    /// The stable image Helm's current revision records.
    pub recorded_image: &'a str,
    /// The live Deployment runs something else than Helm's record (a hand change).
    pub drifted: bool,
    /// The current revision runs a canary.
    pub canary_running: bool,
    pub blue_green: bool,
}

/// Chooses the target. `values_of(revision)` gives a revision's values (a helm call each, made
/// only for the revisions considered).
pub fn decide(facts: &Facts, to: &To, mut values_of: impl FnMut(u32) -> Result<Values>) -> Result<Decision> {
    let revisions = || {
        let listed: Vec<String> = facts.history.iter().map(|r| format!("{} {}", r.revision, r.status)).collect();
        format!("revisions: {}", listed.join(", "))
    };
    let Some(current) = facts.history.last() else {
        bail!("the release is not installed: there is nothing to roll back");
    };
    match to {
        To::Revision(revision) => {
            if !facts.history.iter().any(|r| r.revision == *revision) {
                bail!("the release has no revision {revision}; it has {}", revisions());
            }
            if values_of(*revision)?.canary.enabled {
                bail!("revision {revision} ran a canary; pick a revision without one ({})", revisions());
            }
            Ok(Decision::Revision { revision: *revision, why: Why::Asked })
        }
        To::Tag(_) if facts.blue_green => {
            bail!("this release runs blue/green: roll back with `cargo xtask bluegreen rollback`, or deploy a tag with `bluegreen start --tag`")
        }
        To::Tag(tag) => Ok(Decision::Tag(tag.clone())),
        To::Previous => {
            for candidate in facts.history.iter().rev().filter(|r| r.revision < current.revision) {
                if !matches!(candidate.status.as_str(), "superseded" | "deployed") {
                    continue;
                }
                let values = values_of(candidate.revision)?;
                if !values.canary.enabled && stable_image_of(&values, candidate) != facts.recorded_image {
                    return Ok(Decision::Revision { revision: candidate.revision, why: Why::Previous });
                }
            }
            if facts.drifted && !facts.canary_running {
                return Ok(Decision::Revision { revision: current.revision, why: Why::HelmsRecord });
            }
            bail!(
                "the release has no previous release to roll back to: no earlier revision ran a version other than {} ({}). \
                 Use --to-tag to pick a version.",
                facts.recorded_image,
                revisions()
            )
        }
    }
}

/// What a rollback did, for the terminal, `--output json` and the GitHub step summary.
#[derive(Serialize)]
pub struct Summary {
    pub release: String,
    pub namespace: String,
    pub result: String,
    pub from_revision: u32,
    pub from_image: String,
    pub to_image: String,
    pub to: String,
    pub new_revision: Option<u32>,
    pub canary_removed: bool,
    pub drift: Option<String>,
    pub verification: Option<Verification>,
}

/// The target revision or values, decided before anything changes.
enum Plan {
    Revision {
        revision: u32,
        values: Values,
    },
    /// `supplied`: the values to apply (the release's own, changed); `values`: with defaults.
    Tag {
        tag: String,
        values: Values,
        supplied: Value,
    },
}

/// How a rollback runs (the command line's switches).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Do not run the post-deployment checks after it.
    pub skip_verification: bool,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Clear a pending Helm operation however young: the person knows its process is gone.
    pub clear_pending: bool,
}

pub fn rollback(flow: &Flow, to: To, options: &Options) -> Result<Option<Summary>> {
    let Options { skip_verification, dry_run, clear_pending } = *options;
    let t = &flow.target;
    let state = flow.record()?;
    let Some(current) = state.current().cloned() else {
        bail!("release {} is not installed in namespace {}: there is nothing to roll back", t.release, t.namespace);
    };
    let drift = flow.block_on(ownership::drift(flow.client(), &t.namespace, &t.release, &state))?;
    // Where the rollback starts is what runs, which a hand change may have made other than
    // Helm's record.
    let recorded_image = state.stable_image().unwrap_or_default();
    let from_image = drift.as_ref().map(|d| d.live_image.clone()).unwrap_or_else(|| recorded_image.clone());
    let canary_name = chart::canary_deployment(&t.release);
    let live_canary = flow.block_on(Api::<Deployment>::namespaced(flow.client().clone(), &t.namespace).get_opt(&canary_name))?.is_some();
    let orphan_canary = live_canary && !state.values.canary.enabled;

    let facts = Facts {
        history: &state.history,
        recorded_image: &recorded_image,
        drifted: drift.is_some(),
        canary_running: state.values.canary.enabled,
        blue_green: state.values.live_slot().is_some(),
    };
    let values_of = |revision: u32| -> Result<Values> {
        Values::of(&flow.helm()?.values(&t.release, &t.namespace, &t.access(), Some(revision), true)?)
    };
    let decision = decide(&facts, &to, values_of).with_context(|| format!("release {} in {}", t.release, t.namespace))?;
    let mut signature = None;
    let target = match &decision {
        Decision::Revision { revision, why } => {
            if *why == Why::HelmsRecord {
                println!("the Deployment was changed behind Helm's back: rolling back to Helm's record (revision {revision})");
            }
            let values = Values::of(&flow.helm()?.values(&t.release, &t.namespace, &t.access(), Some(*revision), true)?)?;
            Plan::Revision { revision: *revision, values }
        }
        Decision::Tag(tag) => {
            // Resolved once, before anything changes: the rollback runs exactly this digest.
            let policy = flow.policy()?.for_rollback();
            let (pinned, proven) = images::resolve_verified_by(flow, &state.values.image.repository, tag, &policy)?;
            signature = Some(proven);
            let mut supplied = flow.helm()?.values(&t.release, &t.namespace, &t.access(), None, false)?;
            crate::helm::merge(&mut supplied, &serde_json::json!({"image": {"tag": tag}, "canary": {"enabled": false}}));
            crate::helm::merge(&mut supplied, &chart::digest_values(&pinned.tag, &pinned.digest));
            let mut all = state.values_json.clone();
            crate::helm::merge(&mut all, &supplied);
            Plan::Tag { tag: tag.clone(), values: Values::of(&all)?, supplied }
        }
    };
    let to_image = match &target {
        Plan::Revision { revision, values } => {
            let revision_info = state.history.iter().find(|r| r.revision == *revision).expect("chosen from history");
            stable_image_of(values, revision_info)
        }
        Plan::Tag { tag, values, .. } => values.image_reference(tag),
    };
    if let Plan::Revision { revision, values } = &target {
        signature = revision_signature(flow, *revision, values, &state.history)?;
    }
    let to_words = match &target {
        Plan::Revision { revision, .. } => format!("Helm revision {revision}"),
        Plan::Tag { tag, .. } => format!("tag {tag}"),
    };
    let pending = pending_to_clear(&current, age_of(&current.updated), clear_pending)?;
    // The Deployment that will serve once rolled back (the live colour, for a blue/green release).
    let stable = match &target {
        Plan::Revision { values, .. } | Plan::Tag { values, .. } => values.live_deployment(&t.release),
    };

    let mut plan = Vec::new();
    if pending {
        plan.push(step(
            "clear-pending",
            format!(
                "clear Helm revision {} stuck in {} (its operation died; helm refuses every change until then)",
                current.revision, current.status
            ),
        ));
    }
    plan.push(step("check-image", format!("check that {to_image} exists before touching anything")));
    if orphan_canary {
        plan.push(step("remove-orphan-canary", format!("delete Deployment {canary_name}, a canary Helm does not know about")));
    }
    let canary_words = if state.values.canary.enabled { format!(", removing the canary {canary_name}") } else { String::new() };
    let force_words = if drift.is_some() { "; take back fields changed behind Helm's back" } else { "" };
    plan.push(step(
        "rollback",
        match &target {
            Plan::Revision { revision, .. } => {
                format!("helm rollback {} {revision}: stable back to {to_image}{canary_words}{force_words}", t.release)
            }
            Plan::Tag { tag, .. } => format!("helm upgrade {} with image.tag={tag} (current values){canary_words}{force_words}", t.release),
        },
    ));
    plan.push(step("rollout", format!("wait for Deployment {stable} to roll out and no canary to remain")));
    if !skip_verification {
        plan.push(step("verify", "run the seven post-deployment checks"));
    }
    if dry_run {
        println!("current: Helm revision {} ({}), {from_image}", current.revision, current.status);
        if let Some(drift) = &drift {
            println!("note: {drift}");
        }
        print_plan("rollback", t, &plan);
        return Ok(None);
    }

    let args = match (&to, &target) {
        (To::Previous, _) => format!("previous release ({to_words})"),
        (_, Plan::Revision { revision, .. }) => format!("--to-revision {revision}"),
        (_, Plan::Tag { tag, .. }) => format!("--to-tag {tag}"),
    };
    let mut run = Run::begin(flow, "rollback", args, plan)?;
    run.fact("from_revision", current.revision.to_string())?;
    run.fact("from_image", &from_image)?;
    run.fact("to_image", &to_image)?;
    if let Some(proven) = signature {
        run.fact("signature", proven)?;
    }
    if let Some(drift) = &drift {
        println!("detected: {drift}");
        run.fact("drift", drift.to_string())?;
    }
    let body = (|| -> Result<Ending<Option<Verification>>> {
        if pending {
            run.step("clear-pending", |changes| {
                // Helm's own record of the dead operation: removing it is a change to the release.
                changes.about_to_change()?;
                let storage = format!("sh.helm.release.v1.{}.v{}", t.release, current.revision);
                match changes
                    .block_on(Api::<Secret>::namespaced(changes.client().clone(), &t.namespace).delete(&storage, &DeleteParams::default()))
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => return Err(err).with_context(|| format!("deleting Helm's record {storage}")),
                }
                changes.knows_the_current_revision()
            })?;
        }
        run.step("check-image", |flow| {
            let found = flow.block_on(images::ensure_exists(flow.client(), &t.namespace, &to_image, &state.values.pull_secrets()))?;
            println!("  {found}");
            Ok(())
        })?;
        if orphan_canary {
            run.step("remove-orphan-canary", |changes| {
                changes.about_to_change()?;
                changes.block_on(
                    Api::<Deployment>::namespaced(changes.client().clone(), &t.namespace).delete(&canary_name, &DeleteParams::foreground()),
                )?;
                Ok(())
            })?;
        }
        run.step("rollback", |changes| {
            let mut change = Change::new(&t.access(), format!("shipshape rollback to {to_words} by {}", crate::journal::actor()));
            change.force_conflicts = drift.is_some();
            match &target {
                Plan::Revision { revision, .. } => changes.rollback(*revision, &change),
                Plan::Tag { supplied, .. } => changes.upgrade_with_values(supplied, &change),
            }
        })?;
        run.step("rollout", |flow| {
            flow.block_on(async {
                let rolled_out = wait::deployment_rolled_out(flow.client(), &t.namespace, &stable, flow.rollout_timeout).await?;
                if live_canary {
                    wait::deployment_gone(flow.client(), &t.namespace, &canary_name, flow.rollout_timeout).await?;
                }
                anyhow::Ok(rolled_out)
            })
        })?;
        if skip_verification {
            return Ok(Ending::Succeeded(None));
        }
        let verification = run.step("verify", |flow| {
            let verification = verify::verify(flow)?;
            report::print_checks(&verification.checks);
            Ok(verification)
        })?;
        Ok(if verification.outcome == Outcome::Fail {
            Ending::NeedsAttention(Some(verification))
        } else {
            Ending::Succeeded(Some(verification))
        })
    })();
    // A rollback is itself the way back: there is nothing safer to compensate with.
    let verification = run.end(body.map_err(|err| err.context("the rollback failed")), Undo::NeedsAttention)?;
    let new_revision = flow.record().ok().and_then(|r| r.current().map(|r| r.revision));
    let failed = verification.as_ref().is_some_and(|v| v.outcome == Outcome::Fail);
    Ok(Some(Summary {
        release: t.release.clone(),
        namespace: t.namespace.clone(),
        result: if failed { RunResult::FailedNeedsAttention } else { RunResult::Succeeded }.word().to_owned(),
        from_revision: current.revision,
        from_image,
        to_image,
        to: to_words,
        new_revision,
        canary_removed: state.values.canary.enabled || orphan_canary,
        drift: drift.map(|d| d.to_string()),
        verification,
    }))
}

/// Whether the current revision is a dead pending operation to clear first (helm refuses every
/// change while one is pending). One younger than [`PENDING_PRESUMED_DEAD`] may still be running
/// somewhere: refused, saying when to try again, unless the person says its process is gone
/// (`clear_pending`). An age that cannot be read counts as old: the lease already keeps
/// shipshape's own flows apart.
fn pending_to_clear(current: &Revision, age: Option<Duration>, clear_pending: bool) -> Result<bool> {
    if !current.is_pending() {
        return Ok(false);
    }
    if let Some(age) = age.filter(|a| *a < PENDING_PRESUMED_DEAD && !clear_pending) {
        bail!(
            "Helm revision {} is {} and was updated {}s ago: that operation may still be running (nothing was changed). \
             Try again in {}s, or, if you know its process is gone (killed, its machine lost), now with --clear-pending.",
            current.revision,
            current.status,
            age.as_secs(),
            (PENDING_PRESUMED_DEAD - age).as_secs()
        );
    }
    Ok(true)
}

/// How long ago an RFC 3339 time was.
fn age_of(time: &str) -> Option<Duration> {
    let then: k8s_openapi::jiff::Timestamp = time.parse().ok()?;
    k8s_openapi::jiff::Timestamp::now().duration_since(then).try_into().ok()
}

/// `cargo xtask rollback`'s report: on the terminal or as JSON, and in the step summary; the
/// verification's outcome decides the exit code.
pub fn show(summary: &Summary, output: Output) -> Result<()> {
    match output {
        Output::Human => print_summary(summary),
        Output::Json => report::print_json(summary)?,
    }
    report::github_step_summary(&markdown(summary));
    match &summary.verification {
        Some(v) => report::exit_for(v.outcome),
        None => Ok(()),
    }
}

fn print_summary(s: &Summary) {
    println!("rollback of {} in {}: {}", s.release, s.namespace, s.result);
    println!("  from: Helm revision {}, {}", s.from_revision, s.from_image);
    println!("  to:   {}, {} (now Helm revision {})", s.to, s.to_image, s.new_revision.map(|r| r.to_string()).unwrap_or_default());
    if s.canary_removed {
        println!("  canary removed");
    }
    if let Some(drift) = &s.drift {
        println!("  found before rolling back: {drift}");
    }
    if let Some(v) = &s.verification {
        println!("  verification: {}", v.outcome.label());
    }
}

fn markdown(s: &Summary) -> String {
    let mut md = format!(
        "## Rollback of {} in {}: {}\n\n| | |\n| --- | --- |\n| from | revision {}, `{}` |\n| to | {}, `{}` |\n| new revision | {} |\n| canary removed | {} |\n",
        s.release,
        s.namespace,
        s.result,
        s.from_revision,
        s.from_image,
        s.to,
        s.to_image,
        s.new_revision.map(|r| r.to_string()).unwrap_or_default(),
        s.canary_removed
    );
    if let Some(drift) = &s.drift {
        md.push_str(&format!("| changed behind Helm's back | {drift} |\n"));
    }
    if let Some(v) = &s.verification {
        md.push('\n');
        md.push_str(&report::markdown_checks("verification", &v.checks));
    }
    md
}

/// Where the environment requires signatures, the image a revision would bring back is checked
/// against the policy in force now, as a deploy's is: a key retired or removed since that
/// revision was deployed (a rotation after a leak) no longer vouches for it. Before any change.
fn revision_signature(flow: &Flow, revision: u32, values: &Values, history: &[Revision]) -> Result<Option<String>> {
    let policy = flow.policy()?.for_rollback();
    if !policy.require {
        return Ok(None);
    }
    let app_version = history.iter().find(|r| r.revision == revision).map(|r| r.app_version.as_str()).unwrap_or_default();
    let tag = values.stable_tag(app_version);
    let Some(pinned) = values.pinned(tag) else {
        bail!(
            "Helm revision {revision} runs {tag} without a recorded digest (deployed before digests were pinned), and this \
             environment requires a verified signature: roll back by tag instead (`rollback --to-tag {tag}` resolves and \
             checks it); nothing was changed"
        );
    };
    let proven = crate::signing::check(flow.sh, &policy, &pinned)
        .with_context(|| format!("rolling back to Helm revision {revision} (nothing was changed)"))?;
    Ok(Some(proven))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn revision(revision: u32, status: &str) -> Revision {
        Revision {
            revision,
            updated: "2026-12-05T00:00:00Z".into(),
            status: status.into(),
            chart: "model-server-0.1.0".into(),
            app_version: "0.1.0".into(),
            description: String::new(),
        }
    }

    /// A release's values at one revision: the stable tag and whether a canary ran.
    fn at(tag: &str, canary: bool) -> Values {
        Values::of(&json!({"image": {"repository": "r/m", "tag": tag}, "canary": {"enabled": canary, "replicaCount": 1}})).unwrap()
    }

    /// Runs the decision over a history given as (status, stable tag, canary) per revision,
    /// the newest last; the current stable image is the newest revision's.
    fn decide_over(history: &[(&str, &str, bool)], drifted: bool, blue_green: bool, to: To) -> Result<Decision> {
        let revisions: Vec<Revision> = history.iter().enumerate().map(|(i, (status, _, _))| revision(i as u32 + 1, status)).collect();
        let (_, current_tag, canary_running) = history.last().copied().unwrap_or(("", "", false));
        let recorded = format!("r/m:{current_tag}");
        let facts = Facts { history: &revisions, recorded_image: &recorded, drifted, canary_running, blue_green };
        decide(&facts, &to, |n| Ok(at(history[n as usize - 1].1, history[n as usize - 1].2)))
    }

    fn to_revision(revision: u32, why: Why) -> Decision {
        Decision::Revision { revision, why }
    }

    /// A scenario: its name, the history as (status, stable tag, canary) per revision, the decision.
    type Scenario<'s> = (&'s str, &'s [(&'s str, &'s str, bool)], Decision);

    #[test]
    fn the_previous_release_is_the_newest_earlier_revision_with_another_version_and_no_canary() {
        let cases: &[Scenario] = &[
            ("one step back", &[("superseded", "v1", false), ("deployed", "v2", false)], to_revision(1, Why::Previous)),
            (
                "skips revisions of the same version (a restart, a scale)",
                &[("superseded", "v1", false), ("superseded", "v2", false), ("deployed", "v2", false)],
                to_revision(1, Why::Previous),
            ),
            (
                "skips a canary's steps and its promotion revision's predecessor with a canary",
                &[("superseded", "v1", false), ("superseded", "v1", true), ("superseded", "v1", true), ("deployed", "v2", false)],
                to_revision(1, Why::Previous),
            ),
            (
                "skips failed and pending revisions",
                &[("superseded", "v1", false), ("failed", "v3", false), ("pending-upgrade", "v4", false), ("deployed", "v2", false)],
                to_revision(1, Why::Previous),
            ),
            (
                "a canary running now is rolled back to stable's last version before it",
                &[("superseded", "v1", false), ("superseded", "v2", false), ("deployed", "v2", true)],
                to_revision(1, Why::Previous),
            ),
        ];
        for (name, history, expected) in cases {
            assert_eq!(&decide_over(history, false, false, To::Previous).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn with_nothing_earlier_a_hand_change_goes_back_to_helm_s_record_and_otherwise_it_says_so() {
        let one = [("deployed", "v1", false)];
        assert_eq!(decide_over(&one, true, false, To::Previous).unwrap(), to_revision(1, Why::HelmsRecord));
        let error = decide_over(&one, false, false, To::Previous).unwrap_err().to_string();
        assert!(error.contains("no previous release") && error.contains("--to-tag") && error.contains("1 deployed"), "{error}");
        let same_version = [("superseded", "v1", false), ("deployed", "v1", false)];
        assert!(decide_over(&same_version, false, false, To::Previous).is_err(), "nothing ran another version");
        let canary_now = [("deployed", "v1", true)];
        assert!(decide_over(&canary_now, true, false, To::Previous).is_err(), "a drifted canary is not Helm's record to go back to");
    }

    #[test]
    fn an_asked_revision_must_exist_and_run_no_canary() {
        let history = [("superseded", "v1", false), ("superseded", "v1", true), ("deployed", "v2", false)];
        assert_eq!(decide_over(&history, false, false, To::Revision(1)).unwrap(), to_revision(1, Why::Asked));
        let canary = decide_over(&history, false, false, To::Revision(2)).unwrap_err().to_string();
        assert!(canary.contains("ran a canary"), "{canary}");
        let missing = decide_over(&history, false, false, To::Revision(9)).unwrap_err().to_string();
        assert!(missing.contains("no revision 9") && missing.contains("3 deployed"), "{missing}");
    }

    #[test]
    fn a_pending_operation_is_cleared_only_once_it_is_presumed_dead() {
        let pending = revision(3, "pending-upgrade");
        let said = pending_to_clear(&pending, Some(Duration::from_secs(30)), false).unwrap_err().to_string();
        assert!(said.contains("revision 3 is pending-upgrade and was updated 30s ago") && said.contains("Try again in 90s"), "{said}");
        assert!(said.contains("--clear-pending"), "{said}");
        assert!(pending_to_clear(&pending, Some(Duration::from_secs(30)), true).unwrap(), "the person knows it is dead");
        assert!(pending_to_clear(&pending, Some(Duration::from_secs(121)), false).unwrap(), "older than two minutes: cleared");
        assert!(pending_to_clear(&pending, None, false).unwrap(), "an unreadable time counts as old");
        for settled in ["deployed", "failed", "superseded"] {
            assert!(!pending_to_clear(&revision(3, settled), Some(Duration::ZERO), true).unwrap(), "{settled}");
        }
        assert!(age_of("2026-12-05T00:00:00Z").is_some() && age_of("yesterday").is_none());
    }

    #[test]
    fn the_step_summary_says_from_where_to_where_and_what_was_found() {
        let summary = Summary {
            release: "model-server".into(),
            namespace: "prod".into(),
            result: "succeeded".into(),
            from_revision: 7,
            from_image: "r/m:v3@sha256:cc".into(),
            to_image: "r/m:v2@sha256:bb".into(),
            to: "Helm revision 5".into(),
            new_revision: Some(8),
            canary_removed: true,
            drift: Some("Deployment model-server runs r/m:v9 (kubectl set image)".into()),
            verification: None,
        };
        let md = markdown(&summary);
        assert!(md.starts_with("## Rollback of model-server in prod: succeeded"), "{md}");
        assert!(
            md.contains("| from | revision 7, `r/m:v3@sha256:cc` |") && md.contains("| to | Helm revision 5, `r/m:v2@sha256:bb` |"),
            "{md}"
        );
        assert!(md.contains("| new revision | 8 |") && md.contains("| canary removed | true |"), "{md}");
        assert!(md.contains("| changed behind Helm's back | Deployment model-server runs r/m:v9"), "{md}");
    }

    #[test]
    fn a_tag_is_taken_as_asked_except_on_blue_green() {
        let history = [("deployed", "v2", false)];
        assert_eq!(decide_over(&history, false, false, To::Tag("v1".into())).unwrap(), Decision::Tag("v1".into()));
        let refused = decide_over(&history, false, true, To::Tag("v1".into())).unwrap_err().to_string();
        assert!(refused.contains("bluegreen rollback"), "{refused}");
        assert!(decide_over(&[], false, false, To::Previous).is_err(), "nothing installed");
    }
}
