//! Canary and blue/green under continuous traffic: a load generator in the cluster sends
//! requests to the live Service during every flow and counts each failure by the version that
//! answered it.
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use xtask::flows::analysis::{parse_buckets_by_le, parse_instant_value, Prometheus, TrackSample, Verdict, LATENCY_QUANTILE};
use xtask::flows::bluegreen::StartOptions as BlueGreenStart;
use xtask::flows::canary::{self, Approval, Phase, Request, StartOptions as CanaryStart};
use xtask::flows::images::Wanted;
use xtask::flows::{bluegreen, deploy, ownership, Flow};
use xtask::journal::{RunResult, StepStatus};

use xtask::chart::Slot;

use crate::fixture::{self, failure, LoadGenerator, LoadStats, OrPanic, TestNamespace};

use fixture::PODS;

/// Issue 23: the canary judges what users feel and what it costs. A canary 200 ms slower per
/// prediction is aborted on p95 latency; one that holds 96 MiB more per pod than stable (its
/// limit allows it) is aborted on memory, and one that spends 30 ms of CPU per prediction on
/// CPU, from the kubelet's resource metrics. Each abort says the numbers; stable serves
/// throughout.
#[test]
fn a_canary_costlier_than_stable_in_p95_memory_or_cpu_is_aborted_with_the_numbers() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-costly");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let slow = failure(canary::start_canary(&flow, &canary_args(&ns, &shared.slow, Approval::Approved)));
    assert!(slow.contains("aborted") && slow.contains("canary p95 latency") && slow.contains(" is above "), "{slow}");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);

    let hungry = failure(canary::start_canary(&flow, &canary_args(&ns, &shared.hungry, Approval::Approved)));
    assert!(hungry.contains("aborted") && hungry.contains("canary memory") && hungry.contains("MiB per pod is above"), "{hungry}");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v1)), "stable unchanged");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);
    let (_, state) = canary::latest(&flow).or_panic().expect("the canary's journaled state");
    let judged = state.measured.last().and_then(|m| m.analysis.as_ref()).expect("the failed step's analysis, journaled");
    assert!(judged.resources["canary"].memory_bytes > 96.0 * 1024.0 * 1024.0, "{:?}", judged.resources);

    let burning = failure(canary::start_canary(&flow, &canary_args(&ns, &shared.burning, Approval::Approved)));
    assert!(burning.contains("aborted") && burning.contains("canary CPU") && burning.contains("m per pod is above"), "{burning}");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);

    let stats = load.stats();
    let stable = stats.by_version.get(&shared.v1).copied().unwrap_or_default();
    assert!(stable.ok > 100 && stable.failed == 0, "stable served every request it got: {stats:?}");
}

fn deployment_image(flow: &Flow, name: &str) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(flow.client().clone(), &flow.target.namespace);
    flow.block_on(deployments.get_opt(name)).unwrap().map(|d| fixture::unpinned(&ownership::deployment_image(&d).unwrap()))
}

fn stable_at_v1(ns: &TestNamespace) -> Flow<'_> {
    fixture::stable_at(ns, &fixture::shared().v1)
}

fn canary_args(ns: &TestNamespace, tag: &str, approval: Approval) -> CanaryStart {
    let _ = ns;
    fixture::canary_options(tag, vec![25, 50], approval)
}

use fixture::image;

/// Traffic flowed throughout a progressive flow (over 100 answers), and none failed.
fn assert_no_failures(stats: &LoadStats) {
    assert!(stats.ok > 100, "traffic flowed throughout: {stats:?}");
    stats.assert_none_failed();
}

#[test]
fn a_good_canary_is_promoted_through_every_step_with_no_failed_request() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-good");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let state = canary::start_canary(&flow, &canary_args(&ns, &shared.v2, Approval::Approved)).or_panic();
    assert_eq!(state.phase, Phase::Promoted);
    for m in &state.measured {
        eprintln!(
            "canary step {} %: ready {:.2} s after the Helm change, noticed {:.2} s after the last pod turned Ready",
            m.requested_percent, m.ready_seconds, m.detection_lag_seconds
        );
    }
    let real: Vec<f64> = state.measured.iter().map(|m| m.real_percent).collect();
    assert_eq!(real, [25.0, 50.0], "the real share of pods is recorded: {state:#?}");
    assert!(state.measured.iter().all(|m| m.analysis.as_ref().unwrap().verdict == xtask::flows::analysis::Verdict::Pass));
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v2)));
    assert_eq!(deployment_image(&flow, "model-server-canary"), None, "the canary is removed");

    let stats = load.stats();
    assert_no_failures(&stats);
    assert!(stats.by_version.get(&shared.v2).is_some_and(|v| v.ok > 0), "the canary served traffic: {stats:?}");
}

#[test]
fn a_canary_failing_half_its_requests_is_aborted_at_the_first_analysis() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-bad");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let error = failure(canary::start_canary(&flow, &canary_args(&ns, &shared.failing_half, Approval::Approved)));
    assert!(error.contains("aborted") && error.contains("error rate"), "{error}");
    assert!(error.contains("step 1"), "at the first analysis: {error}");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v1)), "stable unchanged");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);
    let values = flow.helm().unwrap().values("model-server", &ns.name, &ns.target().access(), None, true).or_panic();
    assert_eq!(values["replicaCount"], PODS, "stable back to full size");

    let stats = load.stats();
    let stable = stats.by_version.get(&shared.v1).copied().unwrap_or_default();
    assert!(stable.ok > 100, "{stats:?}");
    assert_eq!(stable.failed, 0, "stable served every request it got: {stats:?}");
    assert!(stats.by_version.get(&shared.failing_half).is_some_and(|v| v.failed > 0), "the bad canary's own errors: {stats:?}");
    assert_eq!(stats.failed, stats.by_version[&shared.failing_half].failed, "no failure without an answer: {stats:?}");
}

/// The analysis read from a real Prometheus (built from its module, scraping the pods by their
/// annotations), with the shipped custom checks (deploy/analysis): a failing canary aborted, a
/// good one promoted, every check's value shown by `canary status`.
#[test]
fn a_bad_canary_judged_on_prometheus_data_is_aborted_and_a_good_one_promoted() {
    let shared = fixture::shared();
    let prometheus: Prometheus = fixture::prometheus().parse().unwrap();
    let ns = TestNamespace::new("canary-prometheus");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);
    // One step, with a window of four scrapes: rate() and increase() need two samples of a
    // pod that appeared with the step.
    let args = |tag: &str| CanaryStart {
        prometheus: Some(prometheus.clone()),
        steps: vec![50],
        analysis_seconds: 20,
        ..canary_args(&ns, tag, Approval::Approved)
    };

    let error = failure(canary::start_canary(&flow, &args(&shared.failing_half)));
    assert!(error.contains("aborted") && error.contains("error rate"), "{error}");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v1)), "stable unchanged");

    let state = canary::start_canary(&flow, &args(&shared.v2)).or_panic();
    assert_eq!(state.phase, Phase::Promoted, "{state:#?}");
    let analysis = state.measured[0].analysis.as_ref().unwrap();
    assert!(analysis.canary.requests >= 20.0, "Prometheus counted the canary's traffic: {analysis:?}");
    let shipped: Vec<&str> = analysis.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(shipped, ["canary-p99-latency", "canary-serves-traffic"], "{analysis:?}");
    assert!(analysis.checks.iter().all(|c| c.value.is_some() && c.verdict == Verdict::Pass), "{:?}", analysis.checks);

    let status = fixture::xtask_command(&ns).args(["canary", "status", "--namespace", &ns.name]).output().unwrap();
    let said = fixture::said(&status);
    assert!(said.contains("check canary-p99-latency: ") && said.contains("(fails above 0.5): passed"), "{said}");

    // One computation of p95 for both sources: the buckets Prometheus sums, read by shipshape,
    // give what Prometheus's own histogram_quantile gives, on the same data at the same instant.
    let at = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 5) as f64;
    let selector = format!(r#"namespace="{}",route="/v1/predict""#, ns.name);
    let buckets = format!("sum by (le) (increase(http_request_duration_seconds_bucket{{{selector}}}[60s]))");
    let answer = flow.block_on(prometheus.query_at(&flow.pod_client, &buckets, Some(at))).or_panic();
    let ours = TrackSample { latency_buckets: parse_buckets_by_le(&answer).or_panic(), ..Default::default() };
    let theirs = format!("histogram_quantile({LATENCY_QUANTILE}, {buckets})");
    let theirs = parse_instant_value(&flow.block_on(prometheus.query_at(&flow.pod_client, &theirs, Some(at))).or_panic()).or_panic();
    let ours = ours.latency_quantile(LATENCY_QUANTILE).expect("observations in the window");
    eprintln!("p95 of the last minute: shipshape {:.6} s, Prometheus {theirs:.6} s", ours);
    assert!((ours - theirs).abs() < 1e-9, "shipshape's p95 {ours} != histogram_quantile's {theirs}");

    let stats = load.stats();
    assert!(stats.ok > 100, "traffic flowed throughout: {stats:?}");
    let bad_canary = stats.by_version.get(&shared.failing_half).map_or(0, |v| v.failed);
    assert_eq!(stats.failed, bad_canary, "the failing canary's own answers are the only failures: {}", stats.failures_in_words());
}

#[test]
fn a_crash_looping_canary_is_aborted_without_waiting_for_the_deadline() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-crash");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let started = Instant::now();
    let error = failure(canary::start_canary(&flow, &canary_args(&ns, &shared.crashing, Approval::Approved)));
    let took = started.elapsed();
    assert!(error.contains("crash-looping"), "{error}");
    eprintln!("crash-looping canary aborted after {took:?} (progress deadline: 600 s)");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v1)));
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);
    assert_no_failures(&load.stats());
}

#[test]
fn a_canary_paused_at_the_gate_is_promoted_by_a_second_command_and_another_aborted() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-gate");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let state = canary::start_canary(&flow, &canary_args(&ns, &shared.v2, Approval::Pause)).or_panic();
    assert_eq!(state.phase, Phase::Gate);
    assert!(deployment_image(&flow, "model-server-canary").is_some(), "the canary keeps running at the gate");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    assert_eq!(runs.last().unwrap().result, RunResult::Paused);

    let other_machine = ns.flow();
    let state = canary::continue_canary(&other_machine, Request::Promote, None).or_panic();
    assert_eq!(state.phase, Phase::Promoted);
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v2)));

    let state = canary::start_canary(&flow, &canary_args(&ns, &shared.v1, Approval::Pause)).or_panic();
    assert_eq!(state.phase, Phase::Gate);
    let state = canary::continue_canary(&ns.flow(), Request::Abort, None).or_panic();
    assert_eq!(state.phase, Phase::Aborted);
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v2)), "stable unchanged by the abort");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None);
    assert_no_failures(&load.stats());
}

/// Waits (two minutes at most) until the journal, as `entries` reads it, shows step `step` of a
/// `flow` run under way and `also` holds.
fn until_step_runs(entries: impl Fn() -> Vec<xtask::journal::Entry>, flow: &str, step: &str, also: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the {flow} run never reached its step {step}");
        // A run still under way: a killed or closed run's last step stays "running" in its entry.
        let running = entries().iter().any(|r| {
            r.flow == flow && r.result == RunResult::Running && r.steps.iter().any(|s| s.id == step && s.status == StepStatus::Running)
        });
        if running && also() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Until a canary's first step runs with its Deployment made, then 5 s more: inside its first
/// analysis window.
fn until_inside_the_first_window(flow: &Flow) {
    until_step_runs(
        || flow.block_on(flow.journal().entries()).or_panic(),
        "canary",
        "step-1",
        || deployment_image(flow, "model-server-canary").is_some(),
    );
    // The canary is up and its smoke tests take a second or two.
    std::thread::sleep(Duration::from_secs(5));
}

/// Issue 33: a CI cancel (SIGTERM, as GitHub sends it) during a canary's analysis: the run id is
/// in `$GITHUB_OUTPUT` from the start (the workflow's abort job finds it), the canary stops at
/// once, aborts itself, and stable serves alone; a second signal during the abort is ignored;
/// no request fails.
#[test]
fn a_canary_cancelled_mid_window_aborts_itself_and_stable_serves_throughout() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-cancel");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);
    let outputs = tempfile::NamedTempFile::new().unwrap();
    let child = std::process::Command::new(fixture::xtask_binary())
        .args(["canary", "start", "--namespace", &ns.name, "--tag", &shared.v2, "--steps", "50", "--analysis-seconds", "60"])
        .args(["--approval", "pause"])
        .env("KUBECONFIG", &ns.kubeconfig)
        .env("GITHUB_OUTPUT", outputs.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_inside_the_first_window(&flow);
    let written = std::fs::read_to_string(outputs.path()).unwrap();
    let run_id = written.lines().find_map(|l| l.strip_prefix("run=")).map(str::to_owned);
    assert!(run_id.is_some(), "the run id reaches $GITHUB_OUTPUT when the run begins: {written:?}");
    let pid = child.id().to_string();
    // The second while the first's abort runs (its helm upgrade alone takes over a second).
    for _ in 0..2 {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        std::thread::sleep(Duration::from_millis(500));
    }
    let output = child.wait_with_output().unwrap();
    let said = fixture::said(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("SIGTERM: stopping at the next safe point") && said.contains("SIGTERM ignored: already stopping"), "{said}");
    assert!(said.contains("interrupted (SIGTERM)"), "{said}");
    assert_eq!(deployment_image(&flow, "model-server-canary"), None, "the canary is removed");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v1)), "stable as before");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert_eq!(Some(&run.id), run_id.as_ref());
    assert_eq!(run.result, RunResult::Failed, "failed and undone: {run:#?}");
    assert!(run.facts.get("interrupted").is_some_and(|f| f.starts_with("SIGTERM")), "{run:#?}");
    assert_no_failures(&load.stats());
}

#[test]
fn a_canary_killed_mid_step_is_resumed_from_another_process_and_finishes() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("canary-kill");
    let flow = stable_at_v1(&ns);
    let load = LoadGenerator::start(&ns);

    let mut child = std::process::Command::new(fixture::xtask_binary())
        .args(["canary", "start", "--namespace", &ns.name, "--tag", &shared.v2, "--steps", "25,50", "--analysis-seconds", "15"])
        .args(["--min-requests", "20", "--approval", "approved", "--max-latency-ratio", "3"])
        .env("KUBECONFIG", &ns.kubeconfig)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it during its first analysis window (15 s: the kill comes 5 s after the step began).
    until_inside_the_first_window(&flow);
    child.kill().unwrap();
    child.wait().unwrap();

    let state = canary::continue_canary(&ns.flow(), Request::Resume, None).or_panic();
    assert_eq!(state.phase, Phase::Promoted, "{state:#?}");
    assert_eq!(deployment_image(&flow, "model-server"), Some(image(&shared.v2)));
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert_eq!(run.result, RunResult::Succeeded);
    assert!(run.facts.keys().any(|k| k.starts_with("resumed_by")), "the journal says it was resumed: {run:#?}");
    assert_no_failures(&load.stats());
}

#[test]
fn a_blue_green_switch_and_its_rollback_drop_no_request() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("bluegreen");
    let flow = ns.flow();
    // The product's default hold (30 s): shorter ones dropped requests on a busy node.
    let start = |tag: &str| BlueGreenStart { image: Wanted::Tag(tag.to_owned()), scale_down_delay: 30, dry_run: false };
    let installed = bluegreen::start_flow(&flow, &start(&shared.v1)).or_panic();
    assert_eq!(installed.to_slot, Slot::Blue);
    let refused = failure(deploy::deploy(&flow, &shared.v2, false));
    assert!(refused.contains("runs blue/green"), "a standard deploy would replace both colours at once: {refused}");
    let load = LoadGenerator::start(&ns);

    let switched = bluegreen::start_flow(&flow, &start(&shared.v2)).or_panic();
    assert_eq!((switched.from_slot, switched.to_slot), (Slot::Blue, Slot::Green));
    assert_eq!(deployment_image(&flow, "model-server-green"), Some(image(&shared.v2)));
    let state = flow.record().or_panic();
    assert_eq!(state.values.live_slot(), Some(Slot::Green));
    assert!(state.history.iter().any(|r| r.description.contains("switch live from blue to green")), "helm history explains the switch");
    let after_switch = load.stats();
    assert!(after_switch.by_version.get(&shared.v2).is_some_and(|v| v.ok > 0), "{after_switch:?}");
    // Issue 39: `up` on a blue/green release leaves it serving (no conversion in place, which
    // would leave the Service without ready pods) and names what does bring it back.
    let revisions = flow.record().or_panic().history.len();
    let database = xtask::up::Database::At(fixture::shared_database_url().to_owned());
    let refused = failure(xtask::up::deploy_dev(&ns.sh, &shared.cluster.cluster, &ns.name, &database));
    assert!(refused.contains("runs blue/green (green is live") && refused.contains("bluegreen start --tag"), "{refused}");
    assert!(refused.contains("nothing was changed") && refused.contains("helm uninstall model-server"), "{refused}");
    assert_eq!(flow.record().or_panic().history.len(), revisions, "up made no revision");

    let back = bluegreen::rollback(&flow, 30, false).or_panic();
    assert_eq!(back.to_slot, Slot::Blue);
    assert_eq!(flow.record().or_panic().values.live_slot(), Some(Slot::Blue));
    assert_no_failures(&load.stats());
}

/// `bluegreen start` of `tag` in `ns` as its own process, killed (SIGKILL) while it holds the old
/// colour after the switch.
fn blue_green_switch_killed_in_its_hold(ns: &TestNamespace, flow: &Flow, tag: &str) {
    let mut child = std::process::Command::new(fixture::xtask_binary())
        .args(["bluegreen", "start", "--namespace", &ns.name, "--tag", tag, "--scale-down-delay", "30"])
        .env("KUBECONFIG", &ns.kubeconfig)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_step_runs(|| flow.block_on(flow.journal().entries()).or_panic(), "bluegreen", "propagate", || true);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 39: a blue/green switch killed mid-hold, then the release uninstalled and installed
/// again by hand: the killed run no longer describes the release, so the next `bluegreen start`
/// closes it (saying what it found) and goes on, instead of refusing for a run that neither
/// `resume` nor `rollback` can finish.
#[test]
fn a_killed_blue_green_run_whose_release_was_uninstalled_blocks_no_new_start() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("bluegreen-stale");
    let flow = ns.flow();
    let start = |tag: &str| BlueGreenStart { image: Wanted::Tag(tag.to_owned()), scale_down_delay: 5, dry_run: false };
    bluegreen::start_flow(&flow, &start(&shared.v1)).or_panic();
    blue_green_switch_killed_in_its_hold(&ns, &flow, &shared.v2);
    let helm = xtask::tools::HELM.find(&ns.sh).or_panic();
    fixture::helm_by_hand(&helm, &ns.kubeconfig, &["uninstall", "model-server", "--wait", "--namespace", &ns.name]);

    let installed = bluegreen::start_flow(&ns.flow(), &start(&shared.v1)).unwrap_or_else(|e| panic!("start after the uninstall: {e:#}"));
    assert_eq!(installed.to_slot, Slot::Blue, "a first install again");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let killed = runs.iter().find(|r| r.flow == "bluegreen" && r.args.contains(&shared.v2)).expect("the killed run is journaled");
    assert_eq!(killed.result, RunResult::Closed, "{killed:#?}");
    assert!(killed.error.as_deref().is_some_and(|e| e.contains("not installed any more")), "{killed:#?}");
    assert_eq!(runs.last().unwrap().result, RunResult::Succeeded);

    // Issue 33: a colleague's `helm rollback` during the next switch's hold. The flow stops within
    // its fence's look (2 s), not at the hold's end, and leaves the rollback in place: blue is
    // live again, green is not scaled down over it, and the run is closed (not resumable).
    let before_switch = flow.record().or_panic().current().unwrap().revision;
    let hold = BlueGreenStart { image: Wanted::Tag(shared.v2.clone()), scale_down_delay: 120, dry_run: false };
    let (access, name, kubeconfig) = (ns.target().access(), ns.name.clone(), ns.kubeconfig.clone());
    let colleague = std::thread::spawn(move || {
        let api = xtask::k8s::Connection::open(access).or_panic();
        let journal = xtask::journal::Journal::new(api.client(), &name, "model-server");
        until_step_runs(|| api.run(journal.entries()).or_panic(), "bluegreen", "propagate", || true);
        // Into the hold itself: the step first waits for the Service's endpoints to be all green
        // (a second or so), which a rollback would never let happen.
        std::thread::sleep(Duration::from_secs(5));
        fixture::helm_by_hand(&helm, &kubeconfig, &["rollback", "model-server", &before_switch.to_string(), "--namespace", &name]);
        Instant::now()
    });
    let stopped = bluegreen::start_flow(&ns.flow(), &hold).map(drop);
    let rolled_back_at = colleague.join().unwrap();
    let stopped_after = rolled_back_at.elapsed();
    let said = failure(stopped);
    assert!(said.contains("changed by someone else mid-flow") && said.contains(&format!("Rollback to {before_switch}")), "{said}");
    eprintln!("the switch stopped {:.1} s after the hand rollback (its hold was 120 s)", stopped_after.as_secs_f64());
    let state = flow.record().or_panic();
    assert_eq!(state.values.live_slot(), Some(Slot::Blue), "the hand rollback stands");
    assert!(state.current().unwrap().description.starts_with(&format!("Rollback to {before_switch}")), "no revision made over it");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let switch = runs.iter().rev().find(|r| r.flow == "bluegreen").unwrap();
    assert_eq!(switch.result, RunResult::Closed, "{switch:#?}");
    assert!(failure(bluegreen::resume(&ns.flow())).contains("nothing to resume"), "a closed run is not resumed");
}

#[test]
fn a_blue_green_switch_killed_while_holding_the_old_colour_is_resumed_and_finishes() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("bluegreen-kill");
    let flow = ns.flow();
    let install = BlueGreenStart { image: Wanted::Tag(shared.v1.clone()), scale_down_delay: 30, dry_run: false };
    bluegreen::start_flow(&flow, &install).or_panic();
    let load = LoadGenerator::start(&ns);

    // Kill it while it holds the old colour after the switch.
    blue_green_switch_killed_in_its_hold(&ns, &flow, &shared.v2);
    assert_eq!(flow.record().or_panic().values.live_slot(), Some(Slot::Green), "killed after the switch");
    let status = fixture::xtask_command(&ns).args(["bluegreen", "status", "--namespace", &ns.name]).output().unwrap();
    let said = fixture::said(&status);
    assert!(said.contains("interrupted before") && said.contains("bluegreen resume"), "status sees the dead run: {said}");

    let state = bluegreen::resume(&ns.flow()).or_panic();
    assert_eq!(state.to_slot, Slot::Green);
    let pods = |slot: &str| {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(flow.client().clone(), &ns.name);
        let selector = format!("app.kubernetes.io/instance=model-server,shipshape.dev/slot={slot}");
        flow.block_on(api.list(&kube::api::ListParams::default().labels(&selector))).unwrap().items.len()
    };
    assert_eq!(pods("blue"), 0, "the resumed flow scaled the old colour down");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let run = runs.iter().rev().find(|r| r.flow == "bluegreen").unwrap();
    assert_eq!(run.result, RunResult::Succeeded);
    assert!(run.facts.keys().any(|k| k.starts_with("resumed_by")), "{run:#?}");
    assert_no_failures(&load.stats());
}
