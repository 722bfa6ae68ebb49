//! The standard paths: deploy (and its compensation), rollback of every kind, one flow at a time.
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;

use xtask::flows::rollback::{self, To};
use xtask::flows::{deploy, verify};
use xtask::report::Outcome;

use crate::fixture::{self, failure, OrPanic, TestNamespace};

use fixture::{image, unpinned};

/// The stable Deployment's image as it runs: `repository:tag@digest`.
fn pinned_stable_image(ns: &TestNamespace) -> String {
    let flow = ns.flow();
    let deployment = flow.block_on(Api::<Deployment>::namespaced(flow.client().clone(), &ns.name).get("model-server")).unwrap();
    xtask::flows::ownership::deployment_image(&deployment).unwrap()
}

fn stable_image(ns: &TestNamespace) -> String {
    unpinned(&pinned_stable_image(ns))
}

#[test]
fn deploy_installs_then_upgrades_verifying_each_and_a_dry_run_changes_nothing() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("deploy");
    let flow = ns.flow();

    let first = deploy::deploy(&flow, &shared.v1, false).or_panic().expect("not a dry run");
    assert_eq!(first.outcome, Outcome::Pass, "{:#?}", first.checks);
    let second = deploy::deploy(&flow, &shared.v2, false).or_panic().expect("not a dry run");
    assert_eq!(second.outcome, Outcome::Pass, "{:#?}", second.checks);
    let version = second.checks.iter().find(|c| c.name == "version").unwrap();
    assert!(version.detail.contains(&shared.v2), "{version:?}");
    // The runbook's seven in their order, then the two additions: a real prediction with a
    // label from the model, the series the canary analysis reads, and no pod holding a Secret's
    // old value.
    let names: Vec<&str> = second.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "replicas-ready",
            "pods-running",
            "health",
            "ready",
            "database",
            "error-logs",
            "version",
            "prediction",
            "metrics",
            "secrets-current"
        ]
    );
    let prediction = &second.checks[7];
    assert!(prediction.outcome == Outcome::Pass && prediction.detail.contains("answered a label"), "{prediction:?}");
    let metrics = &second.checks[8];
    assert!(metrics.outcome == Outcome::Pass && metrics.detail.contains("/v1/predict"), "{metrics:?}");
    assert_eq!(stable_image(&ns), image(&shared.v2));

    assert!(deploy::deploy(&flow, &shared.v1, true).or_panic().is_none());
    let state = flow.record().or_panic();
    assert_eq!(state.history.len(), 2, "a dry run makes no revision");
    assert_eq!(stable_image(&ns), image(&shared.v2), "a dry run changes nothing");

    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let deploys: Vec<_> = runs.iter().filter(|r| r.flow == "deploy").collect();
    assert_eq!(deploys.len(), 2, "dry runs are not journaled: {runs:#?}");
    assert!(deploys.iter().all(|r| r.result == xtask::journal::RunResult::Succeeded));
    assert_eq!(unpinned(&deploys[1].facts["from_image"]), image(&shared.v1));
    assert_eq!(unpinned(&deploys[1].facts["to_image"]), image(&shared.v2));
    // Deployed by digest: the one the registry served when the flow resolved the tag.
    let digest = &deploys[1].facts["to_digest"];
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(pinned_stable_image(&ns), format!("{}@{digest}", image(&shared.v2)));
}

#[test]
fn deploy_of_a_tag_with_no_image_fails_before_changing_anything() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("no-image");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();

    let error = failure(deploy::deploy(&flow, "does-not-exist", false));
    assert!(error.contains("shipshape/model-server:does-not-exist cannot be used: its registry does not serve it"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    let state = flow.record().or_panic();
    assert_eq!(state.history.len(), 1, "no Helm revision was made");
    assert_eq!(state.current().unwrap().status, "deployed");
    assert_eq!(verify::verify(&flow).or_panic().outcome, Outcome::Pass, "stable still serves");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert_eq!(runs.last().unwrap().result, xtask::journal::RunResult::Failed);
}

#[test]
fn deploy_of_a_crash_looping_version_fails_fast_and_rolls_back() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("crash");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();

    let error = failure(deploy::deploy(&flow, &shared.crashing, false));
    assert!(error.contains("crash-looping"), "the wait names the cause: {error}");
    assert!(error.contains("rolled back to Helm revision 1"), "{error}");
    assert_eq!(stable_image(&ns), image(&shared.v1));
    assert_eq!(verify::verify(&flow).or_panic().outcome, Outcome::Pass, "stable serves again");
    let state = flow.record().or_panic();
    assert_eq!(state.current().unwrap().status, "deployed", "the release is consistent: {:?}", state.history);
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let last = runs.last().unwrap();
    assert_eq!(last.result, xtask::journal::RunResult::Failed);
    assert!(last.steps.iter().any(|s| s.id == "restore" && s.status == xtask::journal::StepStatus::Compensation), "{last:#?}");
}

#[test]
fn rollback_to_the_previous_release_a_tag_and_a_revision() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rollback");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    deploy::deploy(&flow, &shared.v2, false).or_panic();

    let summary = rollback::rollback(&flow, To::Previous, &rollback::Options::default()).or_panic().expect("not a dry run");
    assert_eq!(unpinned(&summary.to_image), image(&shared.v1));
    assert_eq!(unpinned(&summary.from_image), image(&shared.v2));
    assert_eq!(summary.verification.as_ref().unwrap().outcome, Outcome::Pass);
    assert_eq!(stable_image(&ns), image(&shared.v1));

    let summary =
        rollback::rollback(&flow, To::Tag(shared.v2.clone()), &rollback::Options { skip_verification: true, ..Default::default() })
            .or_panic()
            .unwrap();
    assert!(summary.verification.is_none(), "--skip-verification");
    assert_eq!(stable_image(&ns), image(&shared.v2));

    let summary = rollback::rollback(&flow, To::Revision(1), &rollback::Options::default()).or_panic().unwrap();
    assert_eq!(summary.to, "Helm revision 1");
    assert_eq!(stable_image(&ns), image(&shared.v1));
    let error = failure(rollback::rollback(&flow, To::Tag("does-not-exist".to_owned()), &rollback::Options::default()));
    assert!(error.contains("cannot be used"), "the image is checked before anything changes: {error}");
    assert_eq!(stable_image(&ns), image(&shared.v1));
}

#[test]
fn rollback_with_no_previous_release_is_refused() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("no-previous");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let error = failure(rollback::rollback(&flow, To::Previous, &rollback::Options::default()));
    assert!(error.contains("no previous release to roll back to"), "{error}");
    assert_eq!(flow.record().or_panic().history.len(), 1);
    let error = failure(rollback::rollback(&flow, To::Revision(7), &rollback::Options::default()));
    assert!(error.contains("has no revision 7"), "{error}");
}

#[test]
fn rollback_reports_and_repairs_a_kubectl_rollout_undo_behind_helms_back() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("undo");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    deploy::deploy(&flow, &shared.v2, false).or_panic();

    // What `kubectl rollout undo` does: the previous ReplicaSet's pod template, patched onto the
    // Deployment by its own field manager.
    let deployments: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(flow.client().clone(), &ns.name);
    let listed = flow
        .block_on(replica_sets.list(&ListParams::default().labels("app.kubernetes.io/instance=model-server,shipshape.dev/track=stable")))
        .unwrap();
    let previous = listed
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")).map(String::as_str) == Some("1")
        })
        .expect("the first revision's ReplicaSet");
    let mut template = serde_json::to_value(previous.spec.unwrap().template.unwrap()).unwrap();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    let undo = serde_json::json!({"spec": {"template": template}});
    let params = PatchParams { field_manager: Some("kubectl-rollout".to_owned()), ..Default::default() };
    flow.block_on(deployments.patch("model-server", &params, &Patch::Strategic(&undo))).unwrap();
    flow.block_on(xtask::k8s::wait::deployment_rolled_out(flow.client(), &ns.name, "model-server", xtask::flows::ROLLOUT_TIMEOUT))
        .or_panic();

    let version = verify::verify(&flow).or_panic().checks.into_iter().find(|c| c.name == "version").unwrap();
    assert_eq!(version.outcome, Outcome::Warn, "verify reports the drift: {version:?}");
    assert!(version.detail.contains("behind Helm's back"), "{version:?}");

    let summary = rollback::rollback(&flow, To::Previous, &rollback::Options::default()).or_panic().unwrap();
    let drift = summary.drift.expect("the rollback reports the change made behind Helm's back");
    assert!(drift.contains("kubectl-rollout"), "it names who made it: {drift}");
    assert_eq!(summary.verification.unwrap().outcome, Outcome::Pass, "after the rollback Helm owns the Deployment again");
}

#[test]
fn two_flows_at_once_on_one_release_one_is_refused_naming_the_holder() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("lease");
    ns.flow();
    deploy::deploy(&ns.flow(), &shared.v1, false).or_panic();

    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&shared.v2, &shared.v1]
            .into_iter()
            .map(|tag| {
                let target = ns.target();
                scope.spawn(move || {
                    let sh = xtask::repo_shell().unwrap();
                    let flow = xtask::flows::Flow::connect(&sh, target)?;
                    deploy::deploy(&flow, tag, false).map(drop)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))).collect();
    assert_eq!(refused.len(), 1, "exactly one of two simultaneous deploys runs: {refused:?}");
    assert!(refused[0].contains("another shipshape flow is running on this release"), "{}", refused[0]);
    assert!(refused[0].contains("(deploy "), "the error names the holder's flow: {}", refused[0]);
    assert_eq!(verify::verify(&ns.flow()).or_panic().outcome, Outcome::Pass);
}

/// The loop from a checkout, through the README's commands as processes: build and push an
/// image, deploy its tag; the new version serves, pinned to the digest the push reported.
#[test]
fn the_dev_loop_image_build_then_deploy_serves_the_new_version() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("dev-loop");
    let tag = format!("{}-loop", shared.v1);
    let built = {
        let _heavy = fixture::cpu_heavy();
        fixture::xtask_command(&ns).args(["image", "build", "--tag", &tag]).output().unwrap()
    };
    let out = fixture::said(&built);
    assert!(built.status.success(), "{out}");
    let pushed = out.lines().find_map(|l| l.strip_prefix(&format!("pushed {} = ", image(&tag)))).unwrap_or_else(|| panic!("{out}"));
    let digest = pushed.split_once('@').unwrap().1.to_owned();

    let deployed = fixture::xtask_command(&ns).args(["deploy", "--tag", &tag, "--namespace", &ns.name]).output().unwrap();
    let out = fixture::said(&deployed);
    assert!(deployed.status.success(), "{out}");
    assert!(out.contains(&format!("stable: 1 pod reports {tag}")), "the new version serves: {out}");
    assert_eq!(pinned_stable_image(&ns), format!("{}@{digest}", image(&tag)), "by the digest the push reported");
}

/// `--set`, `--set-string` and `-f` as helm users give them: checked against the chart's schema
/// before anything changes, applied, journaled; keys the command manages itself refused.
#[test]
fn deploy_takes_values_as_helm_does_and_refuses_bad_ones_before_any_change() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("values");
    let deploy = |args: &[&str]| {
        let out = fixture::xtask_command(&ns).args(["deploy", "--namespace", &ns.name]).args(args).output().unwrap();
        (out.status.success(), fixture::said(&out))
    };
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), "podDisruptionBudget:\n  enabled: true\n  maxUnavailable: 1\n").unwrap();
    let file_arg = file.path().display().to_string();
    let (ok, out) = deploy(&["--tag", &shared.v1, "--set", "replicaCount=2", "-f", &file_arg]);
    assert!(ok, "{out}");
    let flow = ns.flow();
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    assert_eq!(flow.block_on(api.get("model-server")).unwrap().spec.unwrap().replicas, Some(2));
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert_eq!(runs.last().unwrap().facts["values"], format!("-f {file_arg} --set replicaCount=2"));

    // A dry run says what would change, object by object, and changes nothing.
    let (ok, out) = deploy(&["--tag", &shared.v2, "--set", "replicaCount=3", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("~ Deployment/model-server"), "{out}");
    assert!(out.contains("-   replicas: 2") && out.contains("+   replicas: 3"), "{out}");
    let new_image = format!("image: {}", image(&shared.v2));
    assert!(out.lines().any(|l| l.trim_start().starts_with('+') && l.contains(&new_image)), "the new image, pinned: {out}");

    let (ok, out) = deploy(&["--tag", &shared.v2, "--set", "replicaCount=-1"]);
    assert!(!ok && out.contains("replicaCount") && out.contains("nothing was changed"), "the schema names the key: {out}");
    let (ok, out) = deploy(&["--tag", &shared.v2, "--set", "image.tag=other"]);
    assert!(!ok && out.contains("managed by this command"), "{out}");
    // Issue 34: a digest nobody verified, smuggled past the key check in a value Helm splits on
    // its comma; a values file that would start a canary its flow never checked.
    let other = format!("imageDigests.{}=sha256:{}", shared.v2.replace('.', "\\."), "1".repeat(64));
    let (ok, out) = deploy(&["--tag", &shared.v2, "--set-string", &format!("env.adminTokenSecretKey=token,{other}")]);
    assert!(!ok && out.contains("these values change imageDigests") && out.contains("nothing was changed"), "{out}");
    let canary_file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(canary_file.path(), r#"{"canary": {"enabled": true, "replicaCount": 1, "image": {"tag": "v9"}}}"#).unwrap();
    let (ok, out) = deploy(&["--tag", &shared.v2, "-f", canary_file.path().to_str().unwrap()]);
    assert!(!ok && out.contains("these values change canary"), "{out}");
    assert_eq!(flow.record().or_panic().history.len(), 1, "no revision from a refused deploy");
}
