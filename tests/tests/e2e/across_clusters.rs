//! Production as it is: prod's and staging's values files as committed, each environment its
//! own cluster (the shared cluster plays dev and staging under context `staging-cluster`, the
//! production-shaped one prod under `prod-cluster`), a release moved dev -> staging -> prod by
//! one digest, prod's signature policy holding against every flag and, held by its cluster's
//! admission controller, against `kubectl set image` by hand, prod's NetworkPolicy enforced by
//! its cluster, and prod's canary on 10 replicas, with a worker drained in the middle of a
//! step, promoted, then another aborted.
//!
//! What differs from a user's is what a user also changes per cluster, the way they change it:
//! the kubeconfig holding both contexts, the namespaces (`--namespace`, `--from-namespace`), the
//! registry the cluster pulls from (`--set-string image.repository=...` on a standard deploy,
//! `--image-repository` for `admission apply`),
//! and the environment's signing key (`keys init`, when the checkout has none).
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use xtask::chart::Env;
use xtask::flows::canary::{self, Approval, Phase, Request, StartOptions, EXIT_PAUSED_WITHOUT_EVIDENCE};
use xtask::flows::images::Wanted;
use xtask::flows::{deploy, verify, Flow};
use xtask::journal::{RunResult, StepStatus};
use xtask::report::Outcome;

use crate::fixture::{self, said, LoadGenerator, OrPanic, TestNamespace};

/// prod's replica count, from deploy/envs/prod.yaml as committed (asserted, not assumed).
const PROD_PODS: usize = 10;

/// `cargo xtask <args>` as an operator runs it, against `kubeconfig`.
fn xtask(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(fixture::xtask_binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("SHIPSHAPE_COSIGN_PUBLIC_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The release's serving pods by node.
fn pods_by_node(flow: &Flow) -> std::collections::BTreeMap<String, Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
    let listed = flow.block_on(pods.list(&ListParams::default().labels(&xtask::chart::pod_selector(&flow.target.release)))).unwrap();
    let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for pod in listed.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let node = xtask::k8s::pods::node_of(pod).unwrap_or("unscheduled").to_owned();
        by_node.entry(node).or_default().push(pod.metadata.name.clone().unwrap_or_default());
    }
    by_node
}

/// `model-server probe URL` (one GET, 3 s) from a new pod in `namespace` of prod's cluster, as
/// a neighbour of the release would call it: whether it was answered, and what it printed.
fn probe_from(kubeconfig: &std::path::Path, namespace: &str, image: &str, url: &str) -> (bool, String) {
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("e2e-neighbour-{}-{}", std::process::id(), PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let out = fixture::kubectl(
        kubeconfig,
        &fixture::prod_context(),
        &["run", &name, "--namespace", namespace, "--image", image, "--restart=Never", "--attach", "--rm", "--quiet"]
            .into_iter()
            .chain(["--pod-running-timeout=120s", "--", "probe", "--timeout=3", url])
            .collect::<Vec<_>>(),
    );
    (out.status.success(), said(&out))
}

fn revisions(flow: &Flow) -> usize {
    flow.record().or_panic().history.len()
}

/// Production's scenarios, one after the other in one test: the production cluster holds one
/// at a time (its capacity: three workers of a 2-core host hold about 21 of prod's pods at their
/// 250m CPU request, a prod canary needs up to 20 at once; and a drained worker would evict
/// another scenario's pods in the middle of its checks). One test rather than two waiting on a
/// lock: the waiting one held one of the binary's four threads idle (measured: 150 s). Both run
/// even when the first fails; the test then fails with the first failure.
///
/// Every release is signed first, before any traffic (fixture::cpu_heavy waits for traffic
/// tests to end); this module's name starts it with the binary (main.rs).
#[test]
fn production_promotion_then_prod_canary_one_after_the_other_on_prod_s_cluster() {
    let shared = fixture::shared();
    let v1 = fixture::signed_release(&shared.v1);
    let theirs = fixture::signed_release_with_another_key(&shared.v1);
    let uncommitted = fixture::signed_uncommitted_release(&shared.v1);
    let v2 = fixture::signed_release(&shared.v2);
    let promotion = std::panic::catch_unwind(|| {
        a_release_moves_dev_to_staging_to_prod_by_one_digest_and_prod_refuses_what_its_policy_refuses(&v1, &theirs, &uncommitted)
    });
    let canary = std::panic::catch_unwind(|| {
        a_prod_canary_on_ten_replicas_rides_out_a_drained_worker_then_is_promoted_and_the_next_aborted(&v1, &v2)
    });
    // Production's cluster has no other user.
    fixture::production().cluster.remove_when_done();
    if let Err(failure) = promotion.and(canary) {
        std::panic::resume_unwind(failure);
    }
}

fn a_release_moves_dev_to_staging_to_prod_by_one_digest_and_prod_refuses_what_its_policy_refuses(
    v1: &xtask::image::Pinned,
    theirs: &xtask::image::Pinned,
    uncommitted: &xtask::image::Pinned,
) {
    let shared = fixture::shared();
    let production = fixture::production();
    let kubeconfig = &production.kubeconfig;
    let another_key = fixture::another_public_key();

    // dev, from a tag.
    let dev = TestNamespace::in_env(Env::Dev, kubeconfig, "promote-dev");
    deploy::deploy(&dev.flow(), &v1.tag, false).or_panic();
    // staging, from what dev runs: its own cluster context, its values (3 replicas, signatures).
    let staging = TestNamespace::in_env(Env::Staging, kubeconfig, "promote-staging");
    let from_dev = Wanted::From { env: Env::Dev, namespace: Some(dev.name.clone()) };
    deploy::deploy_wanted(&staging.deploy_flow(), &from_dev, false).or_panic();
    // prod, from what staging runs, on its own cluster: as an operator runs it. prod's cluster
    // holds its supply-chain policy too (supplyChain.admission in its values file).
    let prod = TestNamespace::in_env(Env::Prod, kubeconfig, "promote-prod");
    fixture::production_policy_controller();
    let repository = fixture::local_repository();
    let out = xtask(kubeconfig, &["admission", "apply", "--env", "prod", "--namespace", &prod.name, "--image-repository", &repository]);
    assert!(out.status.success(), "admission apply --env prod: {}", said(&out));
    let registry = fixture::local_registry_args();
    let out = xtask(
        kubeconfig,
        &[
            "deploy",
            "--env",
            "prod",
            "--namespace",
            &prod.name,
            "--from",
            "staging",
            "--from-namespace",
            &staging.name,
            &registry[0],
            &registry[1],
        ],
    );
    let text = said(&out);
    assert!(out.status.success(), "deploy --env prod --from staging: {text}");
    assert!(text.contains(&format!("context {}", fixture::prod_context())) && text.contains("API server"), "the target line: {text}");
    assert!(text.contains("deployed by that digest, not its tag"), "{text}");

    let digests: Vec<String> = [&dev, &staging, &prod].iter().map(|ns| ns.flow().record().or_panic().stable_image().unwrap()).collect();
    assert!(digests.iter().all(|d| *d == v1.reference()), "one digest everywhere: {digests:?}");
    let prod_flow = prod.flow();
    let record = prod_flow.record().or_panic();
    assert_eq!(record.values.replica_count as usize, PROD_PODS, "prod's values as committed");
    let runs = prod_flow.block_on(prod_flow.journal().entries()).or_panic();
    assert!(
        runs.last().unwrap().facts["promoted_from"].starts_with("staging: Helm revision 1, verified by deploy"),
        "{:#?}",
        runs.last().unwrap().facts
    );
    // prod asks for a signed scan at most 30 days old (supplyChain.scan in its values file).
    let proven = &runs.last().unwrap().facts["signature"];
    assert!(proven.contains("scanned 0 day(s) ago"), "the release's signed scan, held against prod's age: {proven}");

    // prod's NetworkPolicy, enforced by the cluster (kube-network-policies): the deploy above
    // verified through the API server's proxy and ran `helm test` against PostgreSQL under it;
    // a neighbour in the release's namespace reaches the API port, not the metrics port; a pod
    // of another namespace reaches neither.
    let service = format!("http://model-server.{}.svc", prod.name);
    let (ok, out) = probe_from(kubeconfig, &prod.name, &v1.reference(), &format!("{service}/health"));
    assert!(ok, "a neighbour in the namespace calls the API: {out}");
    let (ok, out) = probe_from(kubeconfig, &prod.name, &v1.reference(), &format!("{service}:9090/metrics"));
    assert!(!ok && out.contains(" within 3s"), "metrics are Prometheus's alone (no answer, not an HTTP error): {out}");
    let (ok, out) = probe_from(kubeconfig, "default", &v1.reference(), &format!("{service}/health"));
    assert!(!ok && out.contains(" within 3s"), "another namespace is not a client (no answer, not an HTTP error): {out}");

    // Every environment side by side, each from its own cluster.
    let ns_args = [format!("dev={}", dev.name), format!("staging={}", staging.name), format!("prod={}", prod.name)];
    let mut args = vec!["environments"];
    for arg in &ns_args {
        args.extend(["--namespace", arg.as_str()]);
    }
    let out = xtask(kubeconfig, &args);
    let table = said(&out);
    assert!(out.status.success(), "{table}");
    for env in ["dev ", "staging ", "prod "] {
        let line = table.lines().find(|l| l.starts_with(env)).unwrap_or_else(|| panic!("no {env}row: {table}"));
        assert!(line.contains(&v1.reference()) && line.contains("deployed"), "{line}");
    }
    assert!(table.lines().any(|l| l.starts_with("prod ") && l.contains("prod-cluster")), "{table}");

    // prod's policy, from its values file, against every way around it; nothing changes.
    let before = revisions(&prod_flow);
    let deploy_prod = |extra: &[&str]| -> String {
        let mut args = vec!["deploy", "--env", "prod", "--namespace", prod.name.as_str(), &registry[0], &registry[1]];
        args.extend(extra);
        let out = xtask(kubeconfig, &args);
        assert!(!out.status.success(), "prod accepted `{}`", args.join(" "));
        said(&out)
    };
    let unsigned = deploy_prod(&["--tag", &shared.v2]);
    assert!(unsigned.contains("cannot be deployed here") && unsigned.contains("nothing was changed"), "{unsigned}");
    let other_key = deploy_prod(&["--tag", &theirs.tag]);
    assert!(other_key.contains("cannot be deployed here"), "signed, but not with prod's key: {other_key}");
    let dirty = deploy_prod(&["--tag", &uncommitted.tag]);
    assert!(
        dirty.contains("cannot be deployed here") && dirty.contains("xtask-release-uncommitted") && dirty.contains("trustedBuilders"),
        "signed with prod's key, but built from uncommitted changes: {dirty}"
    );
    let skip = deploy_prod(&["--tag", &shared.v2, "--insecure-skip-signature", "--reason", "e2e"]);
    assert!(skip.contains("do not allow break-glass") && skip.contains("nothing was changed"), "{skip}");
    let key = deploy_prod(&["--tag", &theirs.tag, "--public-key", another_key.to_str().unwrap()]);
    assert!(key.contains("cannot replace them here") && key.contains("nothing was changed"), "{key}");
    let set = deploy_prod(&["--tag", &v1.tag, "--set", "supplyChain.requireSignature=false"]);
    assert!(set.contains("supplyChain is managed by this command itself"), "{set}");
    let wrong_cluster = deploy_prod(&["--tag", &v1.tag, "--context", "staging-cluster"]);
    assert!(wrong_cluster.contains("names cluster context prod-cluster") && wrong_cluster.contains("refused"), "{wrong_cluster}");
    // Past shipshape, by hand: prod's cluster refuses it.
    let by_hand = fixture::kubectl(
        kubeconfig,
        &fixture::prod_context(),
        &["-n", &prod.name, "set", "image", "deployment/model-server", &format!("api={}", fixture::image(&shared.v2))],
    );
    let refused = String::from_utf8_lossy(&by_hand.stderr);
    assert!(!by_hand.status.success() && refused.contains("denied the request") && refused.contains("shipshape-prod"), "{refused}");
    assert_eq!(revisions(&prod_flow), before, "no Helm revision came of any of them");
    assert_eq!(prod_flow.record().or_panic().stable_image().unwrap(), v1.reference(), "prod runs what it ran");

    // prod before its namespace exists: words, not the API's Status.
    let out = xtask(kubeconfig, &["deploy", "--env", "prod", "--namespace", "e2e-no-such-namespace", "--tag", &v1.tag]);
    let missing = said(&out);
    assert!(!out.status.success(), "{missing}");
    assert!(missing.contains("namespace e2e-no-such-namespace does not exist") && missing.contains("preflight"), "{missing}");
}

/// Prod's canary `10,30,50` on prod's 10 replicas across three workers: exactly 1, 3 and 5 canary
/// pods; a worker drained (`kubectl drain`, as a node upgrade does) in the middle of step 2's
/// analysis: the PDB holds, stable serves every request, the window whose pods were replaced
/// pauses the canary instead of judging it, every report says so; resumed, promoted by the
/// judged digest; then a second canary aborted.
fn a_prod_canary_on_ten_replicas_rides_out_a_drained_worker_then_is_promoted_and_the_next_aborted(
    v1: &xtask::image::Pinned,
    v2: &xtask::image::Pinned,
) {
    let production = fixture::production();
    let kubeconfig = &production.kubeconfig;
    let ns = TestNamespace::in_env(Env::Prod, kubeconfig, "prod-canary");
    let flow = ns.flow();
    deploy::deploy(&ns.deploy_flow(), &v1.tag, false).or_panic();
    let spread = pods_by_node(&flow);
    assert_eq!(spread.values().map(Vec::len).sum::<usize>(), PROD_PODS, "{spread:?}");
    assert!(spread.len() >= 3, "prod's pods spread over the workers: {spread:?}");
    let load = LoadGenerator::start(&ns);

    // The canary runs as an operator's process. 15 s windows: the drain below starts about 6 s
    // into step 2's, and one canary pod in ten gets about 37 of the load's 25 requests a second.
    let canary = std::process::Command::new(fixture::xtask_binary())
        .args(["canary", "start", "--env", "prod", "--namespace", &ns.name, "--tag", &v2.tag, "--steps", "10,30,50"])
        .args(["--analysis-seconds", "15", "--min-requests", "20", "--max-latency-ratio", "3", "--approval", "pause"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Step 2's window has begun: its three canary pods ready and smoke-tested a few seconds ago.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the canary never reached step 2");
        let runs = flow.block_on(flow.journal().entries()).or_panic();
        let step_2 = runs.iter().rev().find(|r| r.flow == "canary").and_then(|r| r.steps.iter().find(|s| s.id == "step-2").cloned());
        let canary_ready = pods_by_node(&flow).values().flatten().filter(|p| p.contains("-canary-")).count();
        if step_2.is_some_and(|s| s.status == StepStatus::Running) && canary_ready == 3 {
            std::thread::sleep(Duration::from_secs(6));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The worker with the most of the release's pods, but not PostgreSQL's (the database is
    // the environment's, not the release's).
    let postgres_node = {
        let pods: Api<Pod> = Api::namespaced(flow.client().clone(), &ns.name);
        let listed = flow.block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/name=model-server-postgres"))).unwrap();
        listed.items.first().and_then(|p| xtask::k8s::pods::node_of(p).map(str::to_owned)).unwrap_or_default()
    };
    let drained = pods_by_node(&flow)
        .into_iter()
        .filter(|(node, _)| node.contains("-worker") && *node != postgres_node)
        .max_by_key(|(_, pods)| pods.len())
        .map(|(node, _)| node)
        .expect("a worker runs the release's pods");
    let prod_context = fixture::prod_context();
    let drain = fixture::kubectl(
        kubeconfig,
        &prod_context,
        &["drain", &drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=240s"],
    );
    let drain_said = said(&drain);
    assert!(drain.status.success(), "kubectl drain {drained}: {drain_said}");
    assert!(drain_said.contains("disruption budget"), "the PDB held: evictions waited for it: {drain_said}");
    assert!(!pods_by_node(&flow).contains_key(&drained), "nothing of the release left on {drained}");

    let out = canary.wait_with_output().unwrap();
    let canary_said = said(&out);
    assert_eq!(
        out.status.code(),
        Some(EXIT_PAUSED_WITHOUT_EVIDENCE.into()),
        "a replaced window pauses, never passes or fails: {canary_said}"
    );
    assert!(canary_said.contains("pods changed during the analysis window"), "{canary_said}");

    // Every report says what happened, in words.
    let status = said(&xtask(kubeconfig, &["canary", "status", "--env", "prod", "--namespace", &ns.name]));
    assert!(status.contains("paused without evidence before step 2") && status.contains("pods changed"), "{status}");
    assert!(status.contains("canary 1 of") || status.contains("canary 3 of"), "the live split: {status}");
    let history = said(&xtask(kubeconfig, &["status", "--env", "prod", "--namespace", &ns.name]));
    assert!(history.contains("paused:") && history.contains("pods changed"), "{history}");
    let doctor = xtask(kubeconfig, &["doctor", "--env", "prod", "--namespace", &ns.name]);
    let doctor_said = said(&doctor);
    assert!(doctor_said.contains(&format!("node {drained} is cordoned")) && doctor_said.contains("kubectl uncordon"), "{doctor_said}");
    assert_eq!(verify::verify(&flow).or_panic().outcome, Outcome::Pass, "stable and canary serve from the other workers");

    // The maintenance is over: uncordoned, and the step measured again.
    let uncordon = fixture::kubectl(kubeconfig, &prod_context, &["uncordon", &drained]);
    assert!(uncordon.status.success(), "{}", said(&uncordon));
    let state = canary::continue_canary(&ns.flow(), Request::Resume, None).or_panic();
    assert_eq!(state.phase, Phase::Gate, "{state:#?}");
    let split: Vec<(u32, u32, f64)> = state.measured.iter().map(|m| (m.canary_pods, m.stable_pods, m.real_percent)).collect();
    assert_eq!(split, [(1, 9, 10.0), (3, 7, 30.0), (5, 5, 50.0)], "exactly 1, 3 and 5 of 10 pods: {state:#?}");

    let promoted = canary::continue_canary(&ns.flow(), Request::Promote, None).or_panic();
    assert_eq!(promoted.phase, Phase::Promoted);
    let record = flow.record().or_panic();
    assert_eq!(record.stable_image().unwrap(), v2.reference(), "the judged digest runs");
    assert_eq!(record.values.replica_count as usize, PROD_PODS);

    // The next canary, stopped at the gate.
    let next = StartOptions { analysis_seconds: 15, ..fixture::canary_options(&v1.tag, vec![10], Approval::Pause) };
    assert_eq!(canary::start_canary(&ns.flow(), &next).or_panic().phase, Phase::Gate);
    let aborted = canary::continue_canary(&ns.flow(), Request::Abort, None).or_panic();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(flow.record().or_panic().stable_image().unwrap(), v2.reference(), "stable unchanged by the abort");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert_eq!(runs.last().unwrap().result, RunResult::Aborted);

    let stats = load.stats();
    assert!(stats.ok > 500, "traffic flowed throughout: {stats:?}");
    stats.assert_none_failed();
}
