//! `cargo xtask restart`: the runbook's "restart pods to pick up the new secret" on its own, as a
//! Helm revision (value `restartedAt`), never `kubectl rollout restart` behind Helm's back; for
//! every shape of release: the stable Deployment (and a canary's), or a blue/green release's live
//! colour. What `doctor` names when pods hold a Secret's old value, a rotation killed after it
//! wrote the Secret included (before, its fix was a `deploy`, which a blue/green release refuses).
use anyhow::{bail, Result};

use super::deploy::refuse_unsafe_start_for_restart;
use super::{print_plan, step, verify, Changes, Ending, Flow, Run, Undo};
use crate::chart;
use crate::helm::record::ReleaseRecord;
use crate::helm::Change;
use crate::k8s::wait;
use crate::report::{self, Outcome};

/// The Deployments a restart rolls and waits for: what serves (the stable Deployment, or the
/// live colour's), and a canary's.
pub fn serving_deployments(release: &str, state: &ReleaseRecord) -> Vec<String> {
    let stable = state.values.live_deployment(release);
    let canary = state.values.canary.enabled.then(|| chart::canary_deployment(release));
    std::iter::once(stable).chain(canary).collect()
}

/// The restart itself: one Helm revision that changes only `restartedAt`, so every pod of the
/// release is replaced (rotate-secret's restart too).
pub fn restart_revision(changes: &Changes, description: &str) -> Result<()> {
    changes.change_values(serde_json::json!({"restartedAt": crate::journal::now()}), description)
}

/// Until each of `deployments` has rolled out.
pub fn until_rolled_out(flow: &Flow, deployments: &[String]) -> Result<()> {
    flow.block_on(async {
        for deployment in deployments {
            wait::deployment_rolled_out(flow.client(), &flow.target.namespace, deployment, flow.rollout_timeout).await?;
        }
        anyhow::Ok(())
    })
}

pub fn restart(flow: &Flow, dry_run: bool) -> Result<()> {
    let t = &flow.target;
    let state = flow.record()?;
    let Some(current) = state.current().cloned() else {
        bail!("release {} is not installed in namespace {}: nothing to restart", t.release, t.namespace);
    };
    refuse_unsafe_start_for_restart(&state)?;
    let deployments = serving_deployments(&t.release, &state);
    let plan = vec![
        step("restart", format!("restart {} as a Helm revision (value restartedAt)", deployments.join(" and "))),
        step("rollout", format!("wait for {} to roll out", deployments.join(" and "))),
        step("verify", "run the post-deployment checks"),
    ];
    if dry_run {
        print_plan("restart", t, &plan);
        return Ok(());
    }
    let mut run = Run::begin(flow, "restart", String::new(), plan)?;
    let body = (|| -> Result<Ending<()>> {
        run.step("restart", |changes| restart_revision(changes, "shipshape restart"))?;
        run.step("rollout", |flow| until_rolled_out(flow, &deployments))?;
        run.step("verify", |flow| {
            let verification = verify::verify(flow)?;
            report::print_checks(&verification.checks);
            if verification.outcome == Outcome::Fail {
                bail!("the restarted pods do not pass the post-deployment checks");
            }
            Ok(Ending::Succeeded(()))
        })
    })();
    // The pods that served before are kept until the new ones are ready (a rolling update), so
    // the revision before the restart serves at once when it is put back.
    let undo = Undo::with(format!("roll back to Helm revision {}", current.revision), |changes| {
        let change = Change::new(&changes.target.access(), format!("shipshape restart failed: back to revision {}", current.revision));
        changes.rollback(current.revision, &change)?;
        until_rolled_out(changes, &deployments)?;
        Ok(format!("rolled back to Helm revision {}, which serves again", current.revision))
    });
    run.end(body, undo)
}

#[cfg(test)]
mod tests {
    use super::serving_deployments;
    use crate::helm::record::ReleaseRecord;
    use serde_json::json;

    #[test]
    fn a_restart_rolls_what_serves_whatever_the_release_s_shape() {
        let standard = ReleaseRecord::with_history(&["deployed"], json!({}));
        assert_eq!(serving_deployments("model-server", &standard), ["model-server"]);
        let canary = ReleaseRecord::with_history(&["deployed"], json!({"canary": {"enabled": true, "replicaCount": 1}}));
        assert_eq!(serving_deployments("model-server", &canary), ["model-server", "model-server-canary"]);
        let blue_green = ReleaseRecord::with_history(&["deployed"], json!({"blueGreen": {"enabled": true, "activeSlot": "green"}}));
        assert_eq!(serving_deployments("model-server", &blue_green), ["model-server-green"], "the live colour, not a `model-server`");
    }
}
