//! `cargo xtask deploy`: the runbook's standard deployment. Record the current state, check the
//! image, `helm upgrade --install`, watch the rollout, verify; on failure, back to where it was.
use anyhow::{bail, Context, Result};

use super::images::{self, Source, Wanted};
use super::verify::{self, Verification};
use super::{ownership, print_plan, sealed, step, Changes, Ending, Flow, Run, Undo};
use crate::chart;
use crate::helm::record::ReleaseRecord;
use crate::helm::Change;
use crate::k8s::wait;
use crate::report::{self, Outcome};

/// Deploys `tag`; returns the verification (None for a dry run).
pub fn deploy(flow: &Flow, tag: &str, dry_run: bool) -> Result<Option<Verification>> {
    deploy_wanted(flow, &Wanted::Tag(tag.to_owned()), dry_run)
}

/// Deploys a tag, or what an earlier environment runs (`--from`, by its digest).
pub fn deploy_wanted(flow: &Flow, wanted: &Wanted, dry_run: bool) -> Result<Option<Verification>> {
    let t = &flow.target;
    let source = wanted.source(flow)?;
    let tag = source.tag();
    let state = flow.record()?;
    refuse_unsafe_start(&state)?;
    flow.policy()?;
    let drift = flow.block_on(ownership::drift(flow.client(), &t.namespace, &t.release, &state))?;
    let mut chart_release = t.chart_release(Some(tag));
    // Repository and pull secrets are the environment's with the user's values (the tag changes
    // neither).
    let planned = flow.planned()?;
    refuse_putting_back_a_replaced_sealed_value(flow, &state, &planned)?;
    let repository = planned.image.repository.clone();
    let image = source.in_words(&repository);
    let pull_secrets = planned.pull_secrets();
    let from = state.current().map(|r| (r.revision, state.stable_image().unwrap_or_default()));
    let stable = chart::stable_deployment(&t.release);

    let plan = vec![
        step(
            "record",
            match &from {
                Some((revision, image)) => format!("record the current state in the journal: Helm revision {revision}, {image}"),
                None => "record that nothing is installed yet".to_owned(),
            },
        ),
        images::plan_steps(&image)[0].clone(),
        images::plan_steps(&image)[1].clone(),
        step(
            "upgrade",
            format!(
                "helm upgrade --install {} with image.tag={tag} and deploy/envs/{}.yaml{}",
                t.release,
                t.env.name(),
                if drift.is_some() { ", taking back fields changed behind Helm's back" } else { "" }
            ),
        ),
        step("rollout", format!("wait for Deployment {stable} to roll out (fails fast on crash loops, pull errors, failing readiness)")),
        step("verify", "run the seven post-deployment checks"),
    ];
    if dry_run {
        print_plan("deploy", t, &plan);
        if let Some(drift) = &drift {
            println!("note: {drift}");
        }
        print_diff(flow, &state, &chart_release, &repository, &source)?;
        return Ok(None);
    }

    let args = match wanted {
        Wanted::Tag(tag) => format!("--env {} --tag {tag}", t.env.name()),
        Wanted::From { env, .. } => format!("--env {} --from {}", t.env.name(), env.name()),
    };
    let mut run = Run::begin(flow, "deploy", args, plan)?;
    run.fact("to_image", &image)?;
    if let Some(drift) = &drift {
        println!("note: {drift}; this deployment takes those fields back");
        run.fact("drift", drift.to_string())?;
    }
    let body = (|| -> Result<Ending<Verification>> {
        run.step("record", |_| {
            if let Some((revision, image)) = &from {
                println!("  current: Helm revision {revision}, {image}");
            }
            Ok(())
        })?;
        if let Some((revision, image)) = &from {
            run.fact("from_revision", revision.to_string())?;
            run.fact("from_image", image)?;
        }
        let pinned = images::source_and_check(&mut run, &repository, &source, &pull_secrets)?;
        chart_release.set.push(chart::digest_set(&pinned));
        run.step("upgrade", |changes| {
            let mut change = Change::new(&t.access(), format!("shipshape deploy {tag} by {}", crate::journal::actor()));
            change.force_conflicts = drift.is_some();
            changes.upgrade(&chart_release, &change)
        })?;
        run.step("rollout", |flow| flow.block_on(wait::deployment_rolled_out(flow.client(), &t.namespace, &stable, flow.rollout_timeout)))?;
        run.step("verify", |flow| {
            let verification = verify::verify(flow)?;
            report::print_checks(&verification.checks);
            if verification.outcome == Outcome::Fail {
                let failed: Vec<&str> =
                    verification.checks.iter().filter(|c| c.outcome == Outcome::Fail).map(|c| c.name.as_str()).collect();
                bail!("post-deployment verification failed: {}", failed.join(", "));
            }
            Ok(Ending::Succeeded(verification))
        })
    })();
    let from_revision = from.as_ref().map(|(revision, _)| *revision);
    let undo = Undo::with(
        match from_revision {
            Some(revision) => format!("roll back to Helm revision {revision}"),
            None => "uninstall the release that never became healthy".to_owned(),
        },
        move |changes| restore(changes, tag, from_revision),
    );
    run.end(body.map_err(|err| err.context(format!("deploy of {tag} failed"))), undo).map(Some)
}

/// What the upgrade would change, object by object, against Helm's record of the live release
/// (read-only: the tag is resolved to render its digest, nothing is checked or changed).
fn print_diff(
    flow: &Flow,
    state: &ReleaseRecord,
    chart_release: &crate::helm::ReleaseSpec,
    repository: &str,
    source: &Source,
) -> Result<()> {
    let mut planned = flow.as_first_upgrade(chart_release);
    let pinned = match source {
        Source::Tag(tag) => images::resolve(flow.sh, repository, tag),
        Source::Promoted { pinned, .. } => Ok(pinned.clone()),
    };
    match pinned {
        Ok(pinned) => planned.set.push(chart::digest_set(&pinned)),
        Err(err) => println!("note: {err:#}; the diff shows the tag without a digest"),
    }
    let rendered = flow.helm()?.template(&chart::chart_dir(), &planned)?;
    let diff = super::diff::describe(&state.manifest, &rendered);
    if diff.is_empty() {
        println!("objects: no change from Helm revision {}", state.current().map(|r| r.revision).unwrap_or(0));
    } else {
        let against = state.current().map(|r| format!("Helm revision {}", r.revision)).unwrap_or_else(|| "nothing installed".to_owned());
        println!("objects that would change (against {against}; Secret data hidden):\n{diff}");
    }
    Ok(())
}

/// The compensation: back to the revision the release had, or no release if it had none.
fn restore(changes: &Changes, tag: &str, from_revision: Option<u32>) -> Result<String> {
    let t = &changes.target;
    match from_revision {
        Some(revision) => {
            let mut change = Change::new(&t.access(), format!("shipshape deploy of {tag} failed: back to revision {revision}"));
            change.force_conflicts = true;
            changes.rollback(revision, &change)?;
            let stable = chart::stable_deployment(&t.release);
            changes
                .block_on(wait::deployment_rolled_out(changes.client(), &t.namespace, &stable, changes.rollout_timeout))
                .context("the restored revision did not roll out")?;
            Ok(format!("rolled back to Helm revision {revision}, which serves again"))
        }
        None => {
            changes.uninstall()?;
            Ok("the new release was uninstalled".to_owned())
        }
    }
}

/// States in which starting a deployment would make things worse.
/// A sealed value `rotate-secret` replaced, still in the values this deploy renders (the
/// environment's file not yet updated): refused before anything changes (flows/sealed.rs).
fn refuse_putting_back_a_replaced_sealed_value(flow: &Flow, state: &ReleaseRecord, planned: &chart::Values) -> Result<()> {
    if !planned.sealed_secrets.enabled || state.current().is_none() {
        return Ok(());
    }
    let runs = flow.block_on(flow.journal().entries())?;
    let found = sealed::put_back(&state.values.sealed_secrets, &planned.sealed_secrets, &runs);
    if !found.is_empty() {
        bail!(sealed::refusal(&found, &flow.target.release, &flow.target.namespace));
    }
    Ok(())
}

pub fn refuse_unsafe_start(state: &ReleaseRecord) -> Result<()> {
    refuse_unsafe_start_for_restart(state)?;
    if state.values.canary.enabled {
        bail!("a canary is running on this release: finish it first (promote or abort), or `cargo xtask rollback` to remove it");
    }
    if let Some(live) = state.values.live_slot() {
        // The environment's values are the standard shape: applying them would replace both
        // colours by one new Deployment at once, leaving the Service without ready pods.
        bail!("this release runs blue/green ({live} is live): deploy with `cargo xtask bluegreen start --tag <tag>`");
    }
    Ok(())
}

/// States in which no Helm change can be made (a restart included).
pub fn refuse_unsafe_start_for_restart(state: &ReleaseRecord) -> Result<()> {
    if let Some(current) = state.current().filter(|r| r.is_pending()) {
        bail!(
            "Helm revision {} of this release is {} (an operation was interrupted), so helm refuses every change. \
             Return to the last deployed revision with `cargo xtask rollback`, then deploy again.",
            current.revision,
            current.status
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(statuses: &[&str], values: serde_json::Value) -> ReleaseRecord {
        ReleaseRecord::with_history(statuses, values)
    }

    #[test]
    fn an_interrupted_helm_operation_refuses_every_change_and_names_the_way_out() {
        for pending in ["pending-install", "pending-upgrade", "pending-rollback"] {
            let state = record(&["superseded", pending], json!({}));
            for refused in [refuse_unsafe_start(&state), refuse_unsafe_start_for_restart(&state)] {
                let said = refused.unwrap_err().to_string();
                assert!(
                    said.contains(&format!("revision 2 of this release is {pending}")) && said.contains("cargo xtask rollback"),
                    "{said}"
                );
            }
        }
        // An older pending revision that a later one replaced does not block.
        assert!(refuse_unsafe_start(&record(&["pending-upgrade", "deployed"], json!({}))).is_ok());
        // A failed upgrade is history, not a lock: the next deploy may fix it.
        assert!(refuse_unsafe_start(&record(&["deployed", "failed"], json!({}))).is_ok());
        assert!(refuse_unsafe_start(&record(&[], serde_json::Value::Null)).is_ok(), "nothing installed yet");
    }

    #[test]
    fn a_deploy_waits_for_a_running_canary_and_leaves_blue_green_to_its_flow_but_a_restart_does_not() {
        let canary = record(&["deployed"], json!({"canary": {"enabled": true, "replicaCount": 1, "tag": "v2"}}));
        let said = refuse_unsafe_start(&canary).unwrap_err().to_string();
        assert!(said.contains("a canary is running") && said.contains("promote or abort"), "{said}");
        assert!(refuse_unsafe_start_for_restart(&canary).is_ok(), "a restart (rotation) keeps the canary as it is");

        let blue_green = record(&["deployed"], json!({"blueGreen": {"enabled": true, "activeSlot": "green"}}));
        let said = refuse_unsafe_start(&blue_green).unwrap_err().to_string();
        assert!(said.contains("blue/green (green is live)") && said.contains("bluegreen start"), "{said}");
        assert!(refuse_unsafe_start_for_restart(&blue_green).is_ok());
    }
}
