//! Looking at a release: preflight before, verify after, doctor when broken, status any time.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use xtask::flows::{deploy, doctor, preflight, verify};
use xtask::helm::Change;
use xtask::k8s::wait::{self, Progress};
use xtask::report::{Check, Outcome};

use crate::fixture::{self, OrPanic, TestNamespace};

fn find<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

#[test]
fn preflight_passes_on_a_prepared_namespace_and_names_the_fix_for_a_missing_secret() {
    let ns = TestNamespace::new("preflight");
    let flow = ns.flow();
    let checks = preflight::preflight(&flow).or_panic();
    assert!(checks.iter().all(|c| c.outcome != Outcome::Fail), "{checks:#?}");
    for name in ["cluster reachable", "namespace", "helm", "secret admin token", "secret database URL", "rbac objects", "helm release"] {
        assert_eq!(find(&checks, name).outcome, Outcome::Pass, "{:?}", find(&checks, name));
    }

    flow.block_on(Api::<Secret>::namespaced(flow.client().clone(), &ns.name).delete("model-server-admin-token", &DeleteParams::default()))
        .unwrap();
    let checks = preflight::preflight(&flow).or_panic();
    let secret = find(&checks, "secret admin token");
    assert_eq!(secret.outcome, Outcome::Fail);
    assert!(secret.detail.contains("model-server-admin-token not found"), "{secret:?}");
    assert!(secret.fix.as_ref().unwrap().contains("--from-file"), "the fix keeps the value off the command line: {secret:?}");
}

#[test]
fn preflight_checks_rbac_with_the_api_server_once_installed() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rbac");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let checks = preflight::preflight(&flow).or_panic();
    assert_eq!(find(&checks, "rbac allows").outcome, Outcome::Pass, "{checks:#?}");
    // Take the Role's rules away: the SubjectAccessReview must now say no.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(flow.client().clone(), &ns.name);
    let params = PatchParams { field_manager: Some("e2e".to_owned()), ..Default::default() };
    flow.block_on(roles.patch("model-server", &params, &Patch::Merge(serde_json::json!({"rules": []})))).unwrap();
    let checks = preflight::preflight(&flow).or_panic();
    let rbac = find(&checks, "rbac allows");
    assert_eq!(rbac.outcome, Outcome::Fail, "{rbac:?}");
    assert!(rbac.detail.contains("get secret model-server-admin-token denied"), "{rbac:?}");
}

#[test]
fn verify_with_the_database_down_fails_check_5_with_the_reason() {
    let shared = fixture::shared();
    let ns = TestNamespace::with_own_database("db-down");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let deployments: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    let params = PatchParams::default();
    flow.block_on(deployments.patch("model-server-postgres", &params, &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}))))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(flow.client().clone(), &ns.name);
    let config = watcher::Config::default().labels("app.kubernetes.io/name=model-server-postgres");
    flow.block_on(wait::until(pods, config, "PostgreSQL gone", Duration::from_secs(120), |found| {
        if found.is_empty() {
            Progress::Done("gone".to_owned())
        } else {
            Progress::Waiting("stopping".to_owned())
        }
    }))
    .or_panic();

    let verification = verify::verify(&flow).or_panic();
    assert_eq!(verification.outcome, Outcome::Fail);
    let database = &verification.checks[4];
    assert_eq!(database.name, "database", "check 5 is the database");
    assert_eq!(database.outcome, Outcome::Fail);
    assert!(database.detail.contains("503") && database.detail.contains("disconnected"), "{database:?}");
    assert!(database.detail.contains("reason"), "the server's reason is in the detail: {database:?}");
    assert_eq!(find(&verification.checks, "health").outcome, Outcome::Pass, "the process itself is healthy");
}

#[test]
fn doctor_diagnoses_a_crash_loop_and_a_missing_secret() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("doctor");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let checks = doctor::doctor(&flow).or_panic();
    assert!(checks.iter().all(|c| c.outcome == Outcome::Pass), "a healthy release: {checks:#?}");

    // A broken upgrade made straight with helm, as someone might at 3 a.m.
    let mut release = flow.target.chart_release(Some(&shared.crashing));
    release.namespace = ns.name.clone();
    #[allow(clippy::disallowed_methods)] // a change behind shipshape's back is what this test makes
    let helm = xtask::helm::Writer::new(&ns.sh).unwrap();
    helm.upgrade(&xtask::chart::chart_dir(), &release, &Change::new(&ns.target().access(), "manual")).or_panic();
    flow.block_on(Api::<Secret>::namespaced(flow.client().clone(), &ns.name).delete("model-server-database", &DeleteParams::default()))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(flow.client().clone(), &ns.name);
    let selector = watcher::Config::default().labels("app.kubernetes.io/instance=model-server,shipshape.dev/track=stable");
    flow.block_on(wait::until(pods, selector, "a stuck pod", Duration::from_secs(120), |found| {
        match found.iter().find_map(|p| wait::stuck_reason(p)) {
            Some(reason) => Progress::Done(reason),
            None => Progress::Waiting("starting".to_owned()),
        }
    }))
    .or_panic();

    let checks = doctor::doctor(&flow).or_panic();
    let secret = find(&checks, "secret database URL");
    assert_eq!(secret.outcome, Outcome::Fail, "{secret:?}");
    let stuck: Vec<&Check> = checks.iter().filter(|c| c.name.starts_with("pod ") && c.outcome == Outcome::Fail).collect();
    assert!(!stuck.is_empty(), "{checks:#?}");
    assert!(
        stuck.iter().any(|c| c.detail.contains("crash-looping") || c.detail.contains("cannot read its secret")),
        "the pod finding says why: {stuck:#?}"
    );
    assert!(stuck.iter().all(|c| c.fix.is_some()), "every finding has a fix");

    // The kubelet's Warning events for the stuck pod, as `kubectl get events` lists them, shown
    // beside the findings (an event may reach the API a moment after the pod's status).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = find(&doctor::doctor(&flow).or_panic(), "recent Warning events").clone();
        if !events.detail.starts_with("none") {
            assert!(events.detail.contains("(pod/model-server-"), "the stuck pod's events: {events:?}");
            assert!(!events.detail.contains("postgres"), "only the release's own objects: {events:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no Warning event for a stuck pod: {events:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn status_shows_helm_revisions_and_who_ran_what() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("status");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    deploy::deploy(&flow, &shared.v2, false).or_panic();
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert_eq!(runs.len(), 2);
    assert!(runs[0].started <= runs[1].started, "oldest first");
    assert!(runs.iter().all(|r| r.actor.contains('@') && r.finished.is_some()), "{runs:#?}");
    assert_eq!(
        runs[1].steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["record", "resolve", "check-image", "upgrade", "rollout", "verify"]
    );
    assert!(runs[1].steps.iter().all(|s| s.status == xtask::journal::StepStatus::Done));
    xtask::flows::status::show(&flow, 10, xtask::report::Output::Json).or_panic();
}

/// The troubleshooting case "pods still use the old value after a Secret update": the admin
/// token's Secret changed by hand (as `kubectl create secret ... --dry-run=client -o yaml |
/// kubectl apply -f -` does) with no restart. doctor names every pod that holds the old value and
/// gives the fix; the fix, run as printed, restarts them as a Helm revision and doctor is quiet.
#[test]
fn doctor_names_pods_that_hold_a_secrets_old_value_and_its_fix_restarts_them() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("stale-secret");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let stale = || find(&doctor::doctor(&flow).or_panic(), "pods hold current Secrets").clone();
    assert_eq!(stale().outcome, Outcome::Pass, "{:?}", stale());

    // Managed-fields times have whole seconds: the change lands in a later second than the pods'
    // start, as a person's would.
    std::thread::sleep(Duration::from_millis(1100));
    let secrets: Api<Secret> = Api::namespaced(flow.client().clone(), &ns.name);
    let changed: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "model-server-admin-token"},
        "stringData": {"token": "e2e-changed-by-hand-not-a-secret"}
    }))
    .unwrap();
    flow.block_on(secrets.patch(
        "model-server-admin-token",
        &PatchParams::apply("kubectl-client-side-apply").force(),
        &Patch::Apply(&changed),
    ))
    .unwrap();

    let found = stale();
    assert_eq!(found.outcome, Outcome::Warn, "{found:?}");
    let pods = flow.block_on(xtask::k8s::pods::ready(flow.client(), &ns.name, &flow.target.release)).or_panic();
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap();
        assert!(found.detail.contains(&format!("pod {name} started")), "{name} holds the old token: {found:?}");
    }
    assert!(found.detail.contains("model-server-admin-token"), "{found:?}");
    assert!(!found.detail.contains("e2e-changed-by-hand"), "the value is never shown: {found:?}");
    // verify warns too (its tenth check, an addition to the runbook's seven).
    let verified = verify::verify(&flow).or_panic();
    let secrets_current = find(&verified.checks, "secrets-current");
    assert_eq!((verified.outcome, secrets_current.outcome), (Outcome::Warn, Outcome::Warn), "{:#?}", verified.checks);

    // The fix as doctor prints it, run by a shell as a person pastes it.
    let fix = found.fix.clone().unwrap();
    let command = fix.split_once("cargo xtask ").map(|(_, rest)| rest).unwrap();
    let command = command.split(" (`").next().unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{} {command}", fixture::xtask_binary().display()))
        .env("KUBECONFIG", &ns.kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let after = stale();
    assert_eq!(after.outcome, Outcome::Pass, "restarted: {after:?}");
    assert_eq!(find(&verify::verify(&flow).or_panic().checks, "secrets-current").outcome, Outcome::Pass);
    assert!(flow.record().or_panic().history.len() >= 2, "the restart is a Helm revision");
}

/// The runbook's Pending-pods case when the namespace's ResourceQuota is full: the API server
/// refuses the new pod, so no pod exists to be Pending. A deploy fails at once in the API
/// server's words (not at its timeout) and rolls back; a hand scale-up past the quota is named
/// by doctor with what to do.
#[test]
fn a_full_resource_quota_fails_a_deploy_at_once_and_doctor_names_it() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("quota");
    let flow = ns.flow();
    // v2 first, so a node has it: the deploy under the quota then fails at its rollout, not at
    // the image check's pod (which a full quota refuses too, in its own words). The check looks
    // at the images the nodes report, which the kubelet updates a few seconds after a pull.
    deploy::deploy(&flow, &shared.v2, false).or_panic();
    let v2 = flow.record().or_panic().stable_image().unwrap();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(flow.client().clone());
    flow.block_on(wait::until(nodes, watcher::Config::default(), "a node reports v2", Duration::from_secs(60), |found| {
        let names = found.iter().filter_map(|n| n.status.as_ref()?.images.as_ref()).flatten().flat_map(|i| i.names.iter().flatten());
        match names.into_iter().any(|name| xtask::image::same_content(name, &v2)) {
            true => Progress::Done("reported".to_owned()),
            false => Progress::Waiting("not reported yet".to_owned()),
        }
    }))
    .or_panic();
    // Room for what runs (one model-server pod: the database is the shared cluster's), none for
    // a rollout's surge pod.
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = Api::namespaced(flow.client().clone(), &ns.name);
    let quota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "e2e-pods"},
        "spec": {"hard": {"pods": "1"}}
    }))
    .unwrap();
    flow.block_on(quotas.create(&Default::default(), &quota)).unwrap();
    // The quota controller counts what runs before it admits anything against it.
    flow.block_on(wait::until(quotas.clone(), watcher::Config::default(), "the quota counts the pods", Duration::from_secs(60), |found| {
        match found.first().and_then(|q| q.status.as_ref()?.used.as_ref()?.get("pods").cloned()) {
            Some(used) => Progress::Done(used.0),
            None => Progress::Waiting("not counted yet".to_owned()),
        }
    }))
    .or_panic();

    let mut flow = ns.flow();
    flow.rollout_timeout = Duration::from_secs(120);
    let started = std::time::Instant::now();
    let failed = fixture::failure(deploy::deploy(&flow, &shared.v2, false));
    assert!(failed.contains("exceeded quota") && failed.contains("kubectl describe resourcequota"), "{failed}");
    assert!(started.elapsed() < Duration::from_secs(100), "refused at once, not at the timeout: {:?}", started.elapsed());
    assert!(failed.contains("roll") || failed.contains("back"), "rolled back: {failed}");
    assert_eq!(fixture::unpinned(&flow.record().or_panic().stable_image().unwrap()), fixture::image(&shared.v1), "v1 serves");

    // By hand, one replica more than the quota allows.
    let deployments: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(deployments.patch("model-server", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}}))))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let rollout = loop {
        let checks = doctor::doctor(&flow).or_panic();
        let rollout = find(&checks, "rollout model-server").clone();
        if rollout.outcome == Outcome::Fail || std::time::Instant::now() > deadline {
            break rollout;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(rollout.outcome, Outcome::Fail, "{rollout:?}");
    assert!(rollout.detail.contains("exceeded quota") && rollout.detail.contains("e2e-pods"), "{rollout:?}");
}

/// Issue 23: the restarts and permissions of the troubleshooting sections, induced for real
/// with upgrades made straight with helm: a model bigger than the memory limit (the kernel
/// kills it: OOMKilled), a liveness probe that fails (the kubelet restarts the container), a
/// node selector no node matches, a version never ready (past its progress deadline: a stalled
/// rollout), and the pod template switched to
/// another ServiceAccount by hand. Doctor names each with its fix,
/// and its exit code and JSON carry them.
#[test]
fn doctor_names_oom_and_liveness_kills_an_unmatched_node_selector_and_a_foreign_service_account() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("doctor-restarts");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    #[allow(clippy::disallowed_methods)] // changes behind shipshape's back are what this test makes
    let helm = xtask::helm::Writer::new(&ns.sh).unwrap();
    let by_hand = |set: &[(&str, &str)]| {
        let mut release = flow.target.chart_release(Some(&shared.v1));
        release.set_typed = set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        helm.upgrade(&xtask::chart::chart_dir(), &release, &Change::new(&ns.target().access(), "manual")).or_panic();
    };
    let until_a_pod_finding = |what: &str, found: &dyn Fn(&Check) -> bool| -> Check {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let checks = doctor::doctor(&flow).or_panic();
            if let Some(check) = checks.iter().find(|c| c.name.starts_with("pod ") && found(c)) {
                return check.clone();
            }
            assert!(std::time::Instant::now() < deadline, "doctor never named {what}: {checks:#?}");
            std::thread::sleep(Duration::from_secs(2));
        }
    };

    // A model bigger than the memory limit.
    by_hand(&[("faults.memoryMiB", "96"), ("resources.requests.memory", "16Mi"), ("resources.limits.memory", "48Mi")]);
    let oom = until_a_pod_finding("an OOM kill", &|c| c.detail.contains("OOMKilled"));
    assert_eq!(oom.outcome, Outcome::Fail, "{oom:?}");
    assert!(oom.detail.contains("its limit (48Mi)"), "{oom:?}");
    assert!(oom.fix.as_deref().is_some_and(|f| f.contains("resources.limits.memory")), "{oom:?}");

    // A liveness probe that fails: /health answers 503, probed every second.
    by_hand(&[("faults.unhealthy", "true"), ("probes.liveness.periodSeconds", "1"), ("probes.liveness.failureThreshold", "1")]);
    let liveness = until_a_pod_finding("a liveness kill", &|c| c.detail.contains("liveness probe"));
    assert!(liveness.detail.contains("statuscode: 503"), "the kubelet's own words: {liveness:?}");
    assert!(liveness.fix.as_deref().is_some_and(|f| f.contains("probes.liveness")), "{liveness:?}");

    // A node selector no node matches: the new pod waits on the scheduler.
    by_hand(&[("nodeSelector.pool", "gpu")]);
    // Until the scheduler has said why: a pod just created is "Pending: waiting to start" before
    // its first scheduling attempt is recorded (seen on a fresh machine's busy node).
    let pending =
        until_a_pod_finding("a pod no node can take", &|c| c.detail.starts_with("Pending:") && c.detail.contains("node affinity/selector"));
    assert!(pending.detail.contains("didn't match Pod's node affinity/selector"), "the scheduler's words: {pending:?}");

    // A version whose readiness never succeeds: running, never serving; and past the
    // Deployment's progress deadline (10 s here), the runbook's slow rollout: stalled.
    by_hand(&[("faults.neverReady", "true"), ("progressDeadlineSeconds", "10")]);
    let unready = until_a_pod_finding("a pod running but never ready", &|c| c.detail.starts_with("Running but not ready"));
    assert_eq!(unready.outcome, Outcome::Warn, "{unready:?}");
    assert!(unready.fix.as_deref().is_some_and(|f| f.contains("log")), "{unready:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let stalled = loop {
        let checks = doctor::doctor(&flow).or_panic();
        if let Some(check) = checks.iter().find(|c| c.name == "rollout model-server" && c.detail.starts_with("stalled")) {
            break check.clone();
        }
        assert!(std::time::Instant::now() < deadline, "doctor never called the rollout stalled: {checks:#?}");
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(stalled.outcome, Outcome::Fail, "{stalled:?}");
    assert!(stalled.detail.contains("timed out progressing"), "the controller's own words: {stalled:?}");
    assert!(stalled.fix.as_deref().is_some_and(|f| f.contains("rollback")), "{stalled:?}");

    // Healthy again, then the pod template's ServiceAccount changed by hand.
    by_hand(&[]);
    flow.block_on(wait::deployment_rolled_out(flow.client(), &ns.name, "model-server", xtask::flows::ROLLOUT_TIMEOUT)).or_panic();
    let api: Api<Deployment> = Api::namespaced(flow.client().clone(), &ns.name);
    let params = PatchParams { field_manager: Some("kubectl-patch".to_owned()), ..Default::default() };
    let patch = serde_json::json!({"spec": {"template": {"spec": {"serviceAccountName": "default"}}}});
    flow.block_on(api.patch("model-server", &params, &Patch::Strategic(&patch))).unwrap();
    let foreign = until_a_pod_finding("a pod under another ServiceAccount", &|c| c.name.ends_with(" account"));
    assert!(foreign.detail.contains("runs as ServiceAccount default, not the release's model-server"), "{foreign:?}");

    let out = fixture::xtask_command(&ns).args(["doctor", "--namespace", &ns.name, "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a finding fails doctor: {}", fixture::said(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(document.to_string().contains("runs as ServiceAccount default"), "{document}");

    // The slow-rollout step `kubectl describe nodes | grep -A 5 "Allocated resources"`, read
    // from the API: the one node's requests against what it can give.
    let checks = doctor::doctor(&flow).or_panic();
    let nodes = find(&checks, "nodes");
    assert!(nodes.detail.contains("requested of allocatable: ") && nodes.detail.contains("-control-plane cpu "), "{nodes:?}");
}
