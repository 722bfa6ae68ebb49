//! Operators change things by hand during a flow, as the runbooks' own snippets do (`kubectl
//! scale` of a canary): the safety paths still work, and every report sees the change.
use std::process::Output;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use xtask::flows::canary::{self, Approval, Phase, StartOptions as CanaryStart, EXIT_PAUSED_WITHOUT_EVIDENCE};
use xtask::flows::{deploy, doctor, verify, Flow};
use xtask::report::Outcome;

use crate::fixture::{self, LoadGenerator, OrPanic, TestNamespace};

use fixture::PODS;

fn stable_at_v1(ns: &TestNamespace) -> Flow<'_> {
    fixture::stable_at(ns, &fixture::shared().v1)
}

/// A canary of v2 at 50 %, judged on 8 s of traffic, left paused at the approval gate.
fn v2_to_the_gate() -> CanaryStart {
    fixture::canary_options(&fixture::shared().v2, vec![50], Approval::Pause)
}

/// `kubectl scale deployment NAME --replicas=N`: the scale subresource, field manager "kubectl".
fn kubectl_scale(flow: &Flow, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
    let params = PatchParams { field_manager: Some("kubectl".to_owned()), ..Default::default() };
    flow.block_on(api.patch_scale(name, &params, &Patch::Merge(json!({"spec": {"replicas": replicas}})))).unwrap();
    flow.block_on(xtask::k8s::wait::deployment_rolled_out(flow.client(), &flow.target.namespace, name, xtask::flows::ROLLOUT_TIMEOUT))
        .or_panic();
}

fn replicas(flow: &Flow, name: &str) -> Option<i32> {
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
    flow.block_on(api.get_opt(name)).unwrap().map(|d| d.spec.unwrap().replicas.unwrap_or(1))
}

/// Runs the CLI as a person would: a separate process, no stdin, in the test's namespace.
fn xtask(ns: &TestNamespace, args: &[&str]) -> Output {
    fixture::xtask_command(ns).args(args).args(["--namespace", &ns.name]).output().unwrap()
}

use fixture::said as text;

#[test]
fn a_hand_scaled_canary_is_seen_by_every_report_and_still_aborts_under_traffic() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("hand-scaled");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);
    let args = v2_to_the_gate();
    let state = canary::start_canary(&flow, &args).or_panic();
    assert_eq!(state.phase, Phase::Gate);
    assert_eq!(replicas(&flow, "model-server-canary"), Some(2));

    // The operator scales the canary up by hand, as the TenSafe runbook does.
    kubectl_scale(&flow, "model-server-canary", 5);

    let verification = verify::verify(&flow).or_panic();
    let check = |name: &str| verification.checks.iter().find(|c| c.name == name).unwrap().clone();
    let replicas_check = check("replicas-ready");
    assert_eq!(replicas_check.outcome, Outcome::Warn, "{replicas_check:?}");
    assert!(
        replicas_check.detail.contains("model-server-canary has 5 replicas, Helm's record says 2")
            && replicas_check.detail.contains("kubectl (scale)"),
        "{replicas_check:?}"
    );
    let version = check("version").detail;
    assert!(
        version.contains(&format!("stable: 2 pods report {}", shared.v1))
            && version.contains(&format!("canary: 5 pods report {}", shared.v2)),
        "{version}"
    );

    let findings = doctor::doctor(&flow).or_panic();
    let drift = findings.iter().find(|c| c.name == "replicas as recorded").unwrap();
    assert_eq!(drift.outcome, Outcome::Warn, "{drift:?}");

    let status = xtask(&ns, &["canary", "status"]);
    let status_text = text(&status);
    assert!(status.status.success(), "{status_text}");
    assert!(status_text.contains("stable 2 of 7 pods (29 %), canary 5 of 7 pods (71 %)"), "the real share: {status_text}");
    assert!(status_text.contains("DRIFT: Deployment model-server-canary has 5 replicas"), "{status_text}");
    assert!(status_text.contains("waiting at the approval gate"), "{status_text}");
    // Followed with --watch: the same report round after round, until stopped.
    let watched = fixture::watched(&ns, &["canary", "status", "--namespace", &ns.name, "--watch", "--interval", "1"], 3);
    assert!(watched.matches("waiting at the approval gate").count() >= 2, "at least two rounds in 3 s: {watched}");
    assert!(watched.contains("every 1 s (Ctrl-C stops)"), "{watched}");

    // The safety path: abort takes the field back from kubectl and says so.
    let aborted = xtask(&ns, &["canary", "abort"]);
    let aborted_text = text(&aborted);
    assert!(aborted.status.success(), "canary abort failed after a hand scale: {aborted_text}");
    assert!(aborted_text.contains("took back .spec.replicas of Deployment model-server-canary from kubectl (scale)"), "{aborted_text}");
    assert_eq!(replicas(&flow, "model-server-canary"), None, "the canary is removed");
    assert_eq!(replicas(&flow, "model-server"), Some(PODS as i32), "stable back to full size");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert_eq!(run.result, xtask::journal::RunResult::Aborted);
    assert!(
        run.facts.get("taken_back").is_some_and(|t| t.contains("model-server-canary .spec.replicas set by kubectl (scale)")),
        "{run:#?}"
    );

    let stats = load.stats();
    let stable = stats.by_version.get(&shared.v1).copied().unwrap_or_default();
    assert!(stable.ok > 100, "{stats:?}");
    assert_eq!(stable.failed, 0, "stable served every request it got: {stats:?}");
    stats.assert_none_failed();
    let state = flow.record().or_panic();
    assert!(!state.values.canary.enabled);
}

#[test]
fn a_canary_paused_without_evidence_exits_apart_from_one_at_the_gate() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("exit-codes");
    let _flow = stable_at_v1(&ns);
    // No traffic at all: the analysis cannot reach its minimum of requests. Run as a workflow's
    // step runs it: `-o json` for the step's own use, $GITHUB_OUTPUT for the next job's.
    let github_output = tempfile::NamedTempFile::new().unwrap();
    let inconclusive = fixture::xtask_command(&ns)
        .args(["canary", "start", "--namespace", &ns.name, "--tag", &shared.v2, "--steps", "50", "--analysis-seconds", "5"])
        .args(["--min-requests", "20", "--approval", "pause", "-o", "json"])
        .env("GITHUB_OUTPUT", github_output.path())
        .output()
        .unwrap();
    let out = text(&inconclusive);
    assert_eq!(inconclusive.status.code(), Some(i32::from(EXIT_PAUSED_WITHOUT_EVIDENCE)), "{out}");
    assert!(String::from_utf8_lossy(&inconclusive.stderr).contains("canary paused"), "progress on stderr: {out}");
    // stdout holds the JSON document alone: the target line, progress and helm's output went to
    // stderr.
    let document: serde_json::Value = serde_json::from_slice(&inconclusive.stdout)
        .unwrap_or_else(|err| panic!("stdout is one JSON document ({err}): {}", String::from_utf8_lossy(&inconclusive.stdout)));
    assert_eq!(document["command"], "canary start");
    assert_eq!(document["exit_code"], i64::from(EXIT_PAUSED_WITHOUT_EVIDENCE));
    assert!(document["error"].is_null(), "a pause is no error: {document:#}");
    let run = &document["runs"][0];
    assert_eq!((run["flow"].as_str(), run["result"].as_str()), (Some("canary"), Some("paused")), "{document:#}");
    let digest = run["facts"]["to_digest"].as_str().expect("the digest under test is a fact");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let revision = run["facts"]["helm_revision"].as_str().expect("the Helm revision the run left");
    let outputs = std::fs::read_to_string(github_output.path()).unwrap();
    for line in [format!("journal-entry={}", run["id"].as_str().unwrap()), "result=paused".to_owned(), format!("helm-revision={revision}")]
    {
        assert!(outputs.lines().any(|l| l == line), "{line} in $GITHUB_OUTPUT: {outputs}");
    }
    assert!(outputs.lines().any(|l| l == format!("digest={digest}")), "{outputs}");
    // A report's JSON is alone on stdout too.
    let verified = xtask(&ns, &["verify", "-o", "json"]);
    let verification: serde_json::Value = serde_json::from_slice(&verified.stdout)
        .unwrap_or_else(|err| panic!("verify -o json: one JSON document ({err}): {}", text(&verified)));
    assert!(verification["checks"].as_array().is_some_and(|c| !c.is_empty()), "{verification:#}");
    let status = text(&xtask(&ns, &["canary", "status"]));
    assert!(status.contains("paused without evidence before step 1 of 1"), "{status}");
    assert!(!status.contains("Step(") && !status.contains("Some("), "no Debug formatting: {status}");

    // A CI gate on where the release stands: settled, so the watch ends at once, with its code.
    let gate = |args: &[&str]| {
        let watched = xtask(&ns, &[args, &["--watch", "--interval", "1", "--timeout", "60s"]].concat());
        (watched.status.code(), text(&watched))
    };
    let (code, out) = gate(&["status"]);
    assert_eq!(code, Some(3), "paused: {out}");
    assert!(out.contains(": paused"), "{out}");
    assert_eq!(gate(&["canary", "status"]).0, Some(3));

    // With traffic, the same canary passes its step and waits at the gate: exit 0.
    let load = LoadGenerator::start(&ns);
    let resumed = xtask(&ns, &["canary", "resume"]);
    let out = text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{out}");
    assert!(out.contains("paused at the approval gate"), "{out}");
    assert_eq!(gate(&["canary", "status"]).0, Some(0), "at the gate, every step passed: healthy");
    let aborted = xtask(&ns, &["canary", "abort"]);
    assert!(aborted.status.success(), "{}", text(&aborted));
    let (code, out) = gate(&["status"]);
    assert_eq!(code, Some(1), "an aborted change is degraded, as Argo Rollouts says: {out}");
    load.stats().assert_none_failed();
}

/// `kubectl set image deployment/<deployment> api=<image>`, field manager "kubectl-set".
fn kubectl_set_image(flow: &Flow, deployment: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
    let params = PatchParams { field_manager: Some("kubectl-set".to_owned()), ..Default::default() };
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
    flow.block_on(api.patch(deployment, &params, &Patch::Strategic(&patch))).unwrap();
}

/// Issue 23: `kubectl set image` on the canary Deployment at the gate (tried: doctor said
/// "nothing wrong found" and `canary status` named the canary's version). Doctor names it with
/// who set it, `canary status` shows the drift, and abort removes the canary.
#[test]
fn a_hand_set_image_on_the_canary_is_named_by_doctor_and_canary_status_and_abort_removes_it() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-set-image");
    let flow = stable_at_v1(&ns);
    // Traffic for the analysis to judge (none is no evidence: the canary would pause before the
    // gate). Its counts are not this test's point: the hand change replaces the canary's pods.
    let load = LoadGenerator::start(&ns);
    assert_eq!(canary::start_canary(&flow, &v2_to_the_gate()).or_panic().phase, Phase::Gate);
    // The canary's pods now run stable's version: its share of traffic is no longer v2's.
    let by_hand = fixture::image(&shared.v1);
    kubectl_set_image(&flow, "model-server-canary", &by_hand);

    let findings = doctor::doctor(&flow).or_panic();
    let drift = findings.iter().find(|c| c.name == "canary image as recorded").unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(drift.outcome, Outcome::Fail, "{drift:?}");
    assert!(drift.detail.contains(&format!("runs {by_hand}")) && drift.detail.contains("kubectl-set"), "{drift:?}");
    let status = text(&xtask(&ns, &["canary", "status"]));
    assert!(status.contains(&format!("DRIFT: Deployment model-server-canary runs {by_hand}")), "{status}");

    let aborted = xtask(&ns, &["canary", "abort"]);
    assert!(aborted.status.success(), "{}", text(&aborted));
    assert_eq!(replicas(&flow, "model-server-canary"), None, "the canary is removed");
    assert!(doctor::doctor(&flow).or_panic().iter().all(|c| c.name != "canary image as recorded"));
    drop(load);
}

#[test]
fn a_stuck_hand_set_image_fails_doctor_and_plain_rollback_returns_to_helms_record() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("set-image");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let broken = fixture::image("v9.9.9");
    kubectl_set_image(&flow, "model-server", &broken);
    // The new ReplicaSet's pod cannot pull; the old pod keeps serving.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let findings = doctor::doctor(&flow).or_panic();
        let stuck = findings.iter().any(|c| c.name.starts_with("pod ") && c.outcome == Outcome::Fail);
        if stuck {
            let rollout = findings.iter().find(|c| c.name == "rollout model-server").unwrap();
            assert_ne!(rollout.outcome, Outcome::Pass, "a stuck rollout is not passed: {rollout:?}");
            assert!(rollout.detail.starts_with("not rolled out"), "{rollout:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pull never failed: {findings:?}");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }

    // verify: the stuck pod is one finding, in words; the later checks say they skipped it.
    let verified = xtask(&ns, &["verify"]);
    let out = text(&verified);
    assert_eq!(verified.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL pods-running") && out.contains("1 of 2 pods not Running"), "one finding, in words: {out}");
    assert!(out.contains("skipped, not running"), "checks 3-7 say what they skipped: {out}");
    let doctor = text(&xtask(&ns, &["doctor"]));
    assert!(!doctor.contains("PASS rollout model-server"), "{doctor}");

    // No earlier Helm revision, but the live Deployment is not Helm's record: go back to it.
    let rolled = xtask(&ns, &["rollback"]);
    let out = text(&rolled);
    assert!(rolled.status.success(), "{out}");
    assert!(out.contains(&format!("from: Helm revision 1, {broken}")), "the summary starts from what ran: {out}");
    assert!(out.contains("rolling back to Helm's record"), "{out}");
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    let live = xtask::flows::ownership::deployment_image(&flow.block_on(api.get("model-server")).unwrap()).unwrap();
    assert_eq!(fixture::unpinned(&live), fixture::image(&shared.v1));
    assert_eq!(verify::verify(&flow).or_panic().outcome, Outcome::Pass);
}

/// An operator rolls the release back by hand (`helm rollback` to the revision before the
/// canary) while the canary waits at its gate: what the analysis judged no longer runs. Every
/// report says the journal and the cluster disagree, promote refuses and says what changed,
/// and abort still ends the canary (issue 19: promote used to deploy the canary's tag anyway).
#[test]
fn a_helm_rollback_by_hand_at_the_gate_invalidates_the_promotion() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("hand-rollback");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);
    let before_canary = flow.record().or_panic().current().unwrap().revision;
    let args = v2_to_the_gate();
    assert_eq!(canary::start_canary(&flow, &args).or_panic().phase, Phase::Gate);

    // The runbook's "Rollback Using Helm", by hand, with the pinned helm.
    let helm = xtask::tools::HELM.find(&ns.sh).or_panic();
    fixture::helm_by_hand(&helm, &ns.kubeconfig, &["rollback", "model-server", &before_canary.to_string(), "--namespace", &ns.name]);
    flow.block_on(xtask::k8s::wait::deployment_gone(flow.client(), &ns.name, "model-server-canary", xtask::flows::ROLLOUT_TIMEOUT))
        .or_panic();

    let status = text(&xtask(&ns, &["canary", "status"]));
    assert!(status.contains("the journal and the cluster disagree") && status.contains("Rollback to"), "{status}");
    let findings = doctor::doctor(&flow).or_panic();
    let disagree = findings.iter().find(|c| c.name == "journal and cluster agree").unwrap();
    assert_eq!(disagree.outcome, Outcome::Warn, "{findings:#?}");

    let revisions = flow.record().or_panic().history.len();
    let promote = xtask(&ns, &["canary", "promote"]);
    let refused = text(&promote);
    assert!(!promote.status.success(), "promote after a hand rollback: {refused}");
    assert!(refused.contains("was made after this canary's last step") && refused.contains("Promotion refused"), "{refused}");
    assert_eq!(flow.record().or_panic().history.len(), revisions, "nothing changed");
    let running = flow.record().or_panic().stable_image().unwrap();
    assert_eq!(fixture::unpinned(&running), fixture::image(&shared.v1), "the operator's rollback stands");

    let abort = xtask(&ns, &["canary", "abort"]);
    assert!(abort.status.success(), "{}", text(&abort));
    assert_eq!(fixture::unpinned(&flow.record().or_panic().stable_image().unwrap()), fixture::image(&shared.v1));
    let again = xtask(&ns, &["canary", "abort"]);
    assert!(again.status.success() && text(&again).contains("already aborted"), "idempotent: {}", text(&again));
    load.stats().assert_none_failed();
}

/// Issue 23, the rollback runbook's hard cases, induced for real: a `helm upgrade --wait` killed
/// mid-way (the release stuck in pending-upgrade: helm refuses every change) and a canary
/// Deployment Helm does not know about (applied by hand). doctor names the stuck operation;
/// rollback refuses a pending operation young enough to still run, clears it at once with
/// --clear-pending, removes the orphan canary and returns to what was deployed.
#[test]
fn a_killed_helm_upgrade_and_an_orphan_canary_are_cleared_by_rollback() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("pending-orphan");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let deployed = flow.record().or_panic().current().unwrap().revision;

    // A canary Deployment applied by hand: Helm's record has no canary.
    let orphan: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "model-server-canary", "labels": {"app.kubernetes.io/instance": "model-server", "shipshape.dev/track": "canary"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "model-server", "shipshape.dev/track": "canary"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": "model-server", "shipshape.dev/track": "canary"}},
                "spec": {"containers": [{"name": "api", "image": fixture::image(&shared.v2)}]}
            }
        }
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(deployments.create(&Default::default(), &orphan)).unwrap();

    // `helm upgrade --wait` of a crashing version, killed while it waits.
    let helm = xtask::tools::HELM.find(&ns.sh).or_panic();
    let mut upgrade = std::process::Command::new(helm)
        .args(["upgrade", "model-server", xtask::chart::chart_dir().to_str().unwrap(), "--namespace", &ns.name, "--reuse-values"])
        .args(["--set-string", &format!("image.tag={}", shared.crashing), "--wait", "--timeout", "5m"])
        .env("KUBECONFIG", &ns.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while flow.record().or_panic().current().map(|c| c.status.clone()) != Some("pending-upgrade".to_owned()) {
        assert!(std::time::Instant::now() < deadline, "helm never began its upgrade");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    upgrade.kill().unwrap();
    upgrade.wait().unwrap();

    let findings = doctor::doctor(&flow).or_panic();
    let stuck = findings.iter().find(|c| c.name == "helm release").unwrap();
    assert_eq!(stuck.outcome, Outcome::Fail, "{stuck:?}");
    assert!(stuck.detail.contains("pending-upgrade") && stuck.fix.as_deref().is_some_and(|f| f.contains("rollback")), "{stuck:?}");

    // Young: it may still run somewhere. Refused, and nothing changes.
    let refused = xtask(&ns, &["rollback"]);
    let said = text(&refused);
    assert!(!refused.status.success() && said.contains("may still be running") && said.contains("--clear-pending"), "{said}");
    assert_eq!(flow.record().or_panic().current().unwrap().status, "pending-upgrade");

    let cleared = xtask(&ns, &["rollback", "--clear-pending"]);
    let said = text(&cleared);
    assert!(cleared.status.success(), "{said}");
    assert!(said.contains("model-server-canary"), "the orphan canary's removal is said: {said}");
    let record = flow.record().or_panic();
    assert_eq!(record.current().unwrap().status, "deployed");
    assert_eq!(fixture::unpinned(&record.stable_image().unwrap()), fixture::image(&shared.v1), "back to revision {deployed}'s version");
    assert!(flow.block_on(deployments.get_opt("model-server-canary")).unwrap().is_none(), "the orphan canary is gone");
    assert_eq!(verify::verify(&flow).or_panic().outcome, Outcome::Pass);
}
