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
use xshell::Shell;

use super::deploy::{pull_secrets, ROLLOUT_TIMEOUT};
use super::release::{self, ReleaseState};
use super::verify::{self, Verification};
use super::{images, print_plan, step, Flow, Run};
use crate::cli::Rollback;
use crate::helm::Change;
use crate::k8s::wait;
use crate::report::{self, Outcome, Output};

/// A pending Helm operation younger than this may still be running somewhere: leave it alone.
const PENDING_PRESUMED_DEAD: Duration = Duration::from_secs(120);

/// Where to roll back to.
pub enum To {
    Previous,
    Revision(u32),
    Tag(String),
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

impl Rollback {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let mut flow = Flow::connect(sh, &self.target)?;
        flow.signature = self.signature.clone();
        let to = match (self.to_revision, self.to_tag) {
            (Some(revision), _) => To::Revision(revision),
            (None, Some(tag)) => To::Tag(tag),
            (None, None) => To::Previous,
        };
        let Some(summary) = rollback(&flow, to, self.skip_verification, self.dry_run)? else { return Ok(()) };
        match self.output {
            Output::Human => print_summary(&summary),
            Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        }
        report::github_step_summary(&markdown(&summary));
        match &summary.verification {
            Some(v) => report::exit_for(v.outcome),
            None => Ok(()),
        }
    }
}

enum ToKind {
    Previous,
    Given,
}

/// The target revision or values, decided before anything changes.
enum Plan {
    Revision { revision: u32, values: Value },
    Tag { tag: String, values: Value },
}

pub fn rollback(flow: &Flow, to: To, skip_verification: bool, dry_run: bool) -> Result<Option<Summary>> {
    let t = &flow.target;
    let state = ReleaseState::read(flow)?;
    let Some(current) = state.current().cloned() else {
        bail!("release {} is not installed in namespace {}: there is nothing to roll back", t.release, t.namespace);
    };
    let drift = flow.block_on(release::drift(&flow.client, &t.namespace, &t.release, &state))?;
    // Where the rollback starts is what runs, which a hand change may have made other than
    // Helm's record.
    let recorded_image = state.stable_image().unwrap_or_default();
    let from_image = drift.as_ref().map(|d| d.live_image.clone()).unwrap_or_else(|| recorded_image.clone());
    let canary_name = release::canary_deployment(&t.release);
    let live_canary = flow.block_on(Api::<Deployment>::namespaced(flow.client.clone(), &t.namespace).get_opt(&canary_name))?.is_some();
    let orphan_canary = live_canary && !state.canary_enabled();

    let to_kind = match &to {
        To::Previous => ToKind::Previous,
        _ => ToKind::Given,
    };
    let mut signature = None;
    let target = match to {
        To::Revision(revision) => {
            let Some(found) = state.history.iter().find(|r| r.revision == revision) else {
                bail!("release {} has no revision {revision}; it has {}", t.release, list_revisions(&state));
            };
            let values = flow.helm()?.values(&t.release, &t.namespace, &t.kubeconfig, Some(revision), true)?;
            if release::canary_enabled(&values) {
                bail!("revision {revision} ran a canary; pick a revision without one ({})", list_revisions(&state));
            }
            let _ = found;
            Plan::Revision { revision, values }
        }
        To::Previous => match previous_release(flow, &state, &current, &recorded_image) {
            Ok(plan) => plan,
            // What runs was changed behind Helm's back (`kubectl set image`, `rollout undo`) and
            // Helm has nothing earlier: going back is returning to Helm's record.
            Err(_) if drift.is_some() && !state.canary_enabled() => {
                let values = flow.helm()?.values(&t.release, &t.namespace, &t.kubeconfig, Some(current.revision), true)?;
                println!("the Deployment was changed behind Helm's back: rolling back to Helm's record (revision {})", current.revision);
                Plan::Revision { revision: current.revision, values }
            }
            Err(err) => return Err(err),
        },
        To::Tag(_) if state.live_slot().is_some() => {
            bail!("this release runs blue/green: roll back with `cargo xtask bluegreen rollback`, or deploy a tag with `bluegreen start --tag`")
        }
        To::Tag(tag) => {
            // Resolved once, before anything changes: the rollback runs exactly this digest.
            let repository = state.values["image"]["repository"].as_str().unwrap_or("shipshape/model-server");
            let (pinned, proven) = images::resolve_verified(flow, repository, &tag, &flow.signature)?;
            signature = Some(proven);
            let mut values = flow.helm()?.values(&t.release, &t.namespace, &t.kubeconfig, None, false)?;
            crate::helm::merge(&mut values, &serde_json::json!({"image": {"tag": tag}, "canary": {"enabled": false}}));
            crate::helm::merge(&mut values, &pinned.values());
            Plan::Tag { tag, values }
        }
    };
    let to_image = match &target {
        Plan::Revision { revision, values } => {
            let revision_info = state.history.iter().find(|r| r.revision == *revision).expect("chosen from history");
            release::stable_image(values, revision_info).unwrap_or_default()
        }
        Plan::Tag { tag, values } => {
            release::image_reference(values, state.values["image"]["repository"].as_str().unwrap_or_default(), tag)
        }
    };
    let to_words = match &target {
        Plan::Revision { revision, .. } => format!("Helm revision {revision}"),
        Plan::Tag { tag, .. } => format!("tag {tag}"),
    };
    let pending = current.is_pending();
    if pending {
        let age = age_of(&current.updated);
        if age.is_some_and(|a| a < PENDING_PRESUMED_DEAD) {
            bail!(
                "Helm revision {} is {} and was updated {}s ago: that operation may still be running. Try again in {}s.",
                current.revision,
                current.status,
                age.unwrap_or_default().as_secs(),
                PENDING_PRESUMED_DEAD.as_secs()
            );
        }
    }
    // The Deployment that will serve once rolled back (the live colour, for a blue/green release).
    let stable = match &target {
        Plan::Revision { values, .. } | Plan::Tag { values, .. } => release::live_deployment(&t.release, values),
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
    let canary_words = if state.canary_enabled() { format!(", removing the canary {canary_name}") } else { String::new() };
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

    let args = match (&to_kind, &target) {
        (ToKind::Previous, _) => format!("previous release ({to_words})"),
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
    let result = (|| -> Result<Option<Verification>> {
        if pending {
            run.step("clear-pending", |flow| {
                let storage = format!("sh.helm.release.v1.{}.v{}", t.release, current.revision);
                match flow.block_on(Api::<Secret>::namespaced(flow.client.clone(), &t.namespace).delete(&storage, &DeleteParams::default()))
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(err) => Err(err).with_context(|| format!("deleting Helm's record {storage}")),
                }
            })?;
        }
        run.step("check-image", |flow| {
            let found = flow.block_on(images::ensure_exists(&flow.client, &t.namespace, &to_image, &pull_secrets(&state.values)))?;
            println!("  {found}");
            Ok(())
        })?;
        if orphan_canary {
            run.step("remove-orphan-canary", |flow| {
                flow.block_on(
                    Api::<Deployment>::namespaced(flow.client.clone(), &t.namespace).delete(&canary_name, &DeleteParams::foreground()),
                )?;
                Ok(())
            })?;
        }
        run.step("rollback", |flow| {
            let mut change = Change::new(&t.kubeconfig, format!("shipshape rollback to {to_words} by {}", crate::journal::actor()));
            change.force_conflicts = drift.is_some();
            match &target {
                Plan::Revision { revision, .. } => flow.rollback(*revision, &change),
                Plan::Tag { values, .. } => flow.upgrade_with_values(values, &change),
            }
        })?;
        run.step("rollout", |flow| {
            flow.block_on(async {
                let rolled_out = wait::deployment_rolled_out(&flow.client, &t.namespace, &stable, ROLLOUT_TIMEOUT).await?;
                if live_canary {
                    wait::deployment_gone(&flow.client, &t.namespace, &canary_name, ROLLOUT_TIMEOUT).await?;
                }
                anyhow::Ok(rolled_out)
            })
        })?;
        if skip_verification {
            return Ok(None);
        }
        run.step("verify", |flow| {
            let verification = verify::verify(flow)?;
            report::print_checks(&verification.checks);
            Ok(Some(verification))
        })
    })();
    let new_revision = flow.helm()?.history(&t.release, &t.namespace, &t.kubeconfig).ok().and_then(|h| h.last().map(|r| r.revision));
    let failed = match &result {
        Ok(Some(v)) => v.outcome == Outcome::Fail,
        Ok(None) => false,
        Err(_) => true,
    };
    let outcome = if failed { "failed-needs-attention" } else { "succeeded" };
    match result {
        Err(err) => {
            // A rollback is itself the compensation: there is nothing safer to go back to.
            run.finish(outcome, Some(&err))?;
            Err(err.context("the rollback failed: `cargo xtask doctor` shows the state of the release"))
        }
        Ok(verification) => {
            run.finish(outcome, None)?;
            Ok(Some(Summary {
                release: t.release.clone(),
                namespace: t.namespace.clone(),
                result: outcome.to_owned(),
                from_revision: current.revision,
                from_image,
                to_image,
                to: to_words,
                new_revision,
                canary_removed: state.canary_enabled() || orphan_canary,
                drift: drift.map(|d| d.to_string()),
                verification,
            }))
        }
    }
}

/// The newest earlier revision that served a different stable version with no canary.
fn previous_release(flow: &Flow, state: &ReleaseState, current: &crate::helm::Revision, current_image: &str) -> Result<Plan> {
    let t = &flow.target;
    for candidate in state.history.iter().rev().filter(|r| r.revision < current.revision) {
        if !matches!(candidate.status.as_str(), "superseded" | "deployed") {
            continue;
        }
        let values = flow.helm()?.values(&t.release, &t.namespace, &t.kubeconfig, Some(candidate.revision), true)?;
        if release::canary_enabled(&values) {
            continue;
        }
        if release::stable_image(&values, candidate).as_deref() != Some(current_image) {
            return Ok(Plan::Revision { revision: candidate.revision, values });
        }
    }
    bail!(
        "release {} has no previous release to roll back to: no earlier revision ran a version other than {current_image} ({}). \
         Use --to-tag to pick a version.",
        t.release,
        list_revisions(state)
    )
}

fn list_revisions(state: &ReleaseState) -> String {
    let listed: Vec<String> = state.history.iter().map(|r| format!("{} {}", r.revision, r.status)).collect();
    format!("revisions: {}", listed.join(", "))
}

/// How long ago an RFC 3339 time was.
fn age_of(time: &str) -> Option<Duration> {
    let then: k8s_openapi::jiff::Timestamp = time.parse().ok()?;
    k8s_openapi::jiff::Timestamp::now().duration_since(then).try_into().ok()
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
