//! `cargo xtask verify`: the runbook's post-deployment verification script, its seven checks run
//! concurrently against every serving pod through the API server (no exec, no curl), and three
//! additions after them: one real prediction per pod, the metrics a canary is judged on, and
//! every Secret the pods read existing, with no pod holding its old value (a warning).
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::Api;
use serde::Serialize;

use super::analysis::ROUTE;
use super::{ownership, Flow, Target};
use crate::chart;
use crate::helm::record::ReleaseRecord;
use crate::k8s::{pods, proxy, wait};
use crate::report::{self, Check, Outcome, Output};

/// The runbook's threshold: more error lines than this in 5 minutes is a warning.
const ERROR_LINES_WARNING: usize = 10;
/// The runbook's log window.
const LOG_WINDOW_SECONDS: i64 = 300;
/// One pod request that takes longer than this is a failure of that check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
pub struct Verification {
    pub release: String,
    pub namespace: String,
    pub outcome: Outcome,
    pub checks: Vec<Check>,
    pub seconds: f64,
}

/// `cargo xtask verify`: the checks, printed (or as JSON), in the step summary too.
pub fn show(flow: &Flow, output: Output) -> Result<Outcome> {
    let verification = verify(flow)?;
    match output {
        Output::Human => {
            println!("post-deployment verification of {} in {}:", verification.release, verification.namespace);
            report::print_checks(&verification.checks);
            println!("verification: {} ({:.2}s)", verification.outcome.label(), verification.seconds);
        }
        Output::Json => report::print_json(&verification)?,
    }
    report::github_step_summary(&report::markdown_checks(&format!("verify {}", verification.namespace), &verification.checks));
    Ok(verification.outcome)
}

/// Runs the seven checks on the flow's target.
pub fn verify(flow: &Flow) -> Result<Verification> {
    flow.block_on(checks(flow.client(), &flow.pod_client, &flow.target))
}

/// Names and times one check.
async fn timed<'f>(name: &'static str, check: std::pin::Pin<Box<dyn std::future::Future<Output = Check> + Send + 'f>>) -> Check {
    let started = Instant::now();
    let mut check = check.await;
    check.name = name.to_owned();
    check.seconds = started.elapsed().as_secs_f64();
    check
}

/// The deployments and pods every check looks at, read once.
struct Observed {
    deployments: Vec<Deployment>,
    pods: Vec<Pod>,
}

impl Observed {
    /// The pods whose serving container runs: checks 3-7 ask only these (a pod that is not
    /// running is check 2's one finding, said once, not an error from every later check).
    fn running(&self) -> Vec<&Pod> {
        self.pods.iter().filter(|p| is_running(p)).collect()
    }

    /// What checks 3-7 say about the pods they skipped.
    fn skipped(&self) -> String {
        let skipped: Vec<String> =
            self.pods.iter().filter(|p| !is_running(p)).map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped, not running: {}; see pods-running)", skipped.join(", "))
        }
    }
}

fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == "api"))
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

pub async fn checks(client: &kube::Client, pod_client: &kube::Client, target: &Target) -> Result<Verification> {
    let started = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    // Helm's record and everything the release runs, read at once; which of it serves (stable
    // and canary, or the live colour) is decided from the record afterwards.
    let by_release = ListParams::default().labels(&format!("app.kubernetes.io/instance={}", target.release));
    let every_pod = ListParams::default().labels(&chart::pod_selector(&target.release));
    let (state, listed_deployments, listed_pods) = futures::join!(
        ReleaseRecord::fetch(client, &target.namespace, &target.release),
        deployments.list(&by_release),
        pods.list(&every_pod)
    );
    let state = &state?;
    let serving = [state.values.live_deployment(&target.release), chart::canary_deployment(&target.release)];
    let live_slot = state.values.live_slot().map(|s| s.name().to_owned());
    let observed = Observed {
        deployments: listed_deployments?
            .items
            .into_iter()
            .filter(|d| d.metadata.name.as_ref().is_some_and(|n| serving.contains(n)))
            .collect(),
        // Pods on their way out (a finished rollout's old pods draining) are not serving, nor
        // is the idle colour.
        pods: listed_pods?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| live_slot.is_none() || p.metadata.labels.as_ref().and_then(|l| l.get(chart::SLOT_LABEL)) == live_slot.as_ref())
            .collect(),
    };
    if !state.is_installed() {
        let missing =
            Check::new("release", Outcome::Fail, format!("release {} is not installed in namespace {}", target.release, target.namespace))
                .with_fix("check --namespace / --env and the kubeconfig printed above; deploy with cargo xtask deploy");
        return Ok(Verification {
            release: target.release.clone(),
            namespace: target.namespace.clone(),
            outcome: Outcome::Fail,
            checks: vec![missing],
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let o = &observed;
    // The additions ask in order: a new pod has no series for the predict route until it has
    // answered one.
    let additions = async {
        let prediction = timed("prediction", Box::pin(prediction(pod_client, target, o))).await;
        let metrics = timed("metrics", Box::pin(metrics_series(pod_client, target, o))).await;
        [prediction, metrics]
    };
    let secrets_current = timed("secrets-current", Box::pin(secrets_current(client, target, o)));
    let runbook_checks = join_all([
        timed("replicas-ready", Box::pin(async { replicas_ready(o, &target.release, &state.values) })),
        timed("pods-running", Box::pin(async { pods_running(o) })),
        timed("health", Box::pin(endpoint(pod_client, target, o, "/health", "healthy"))),
        timed("ready", Box::pin(endpoint(pod_client, target, o, "/ready", "ready"))),
        timed("database", Box::pin(endpoint(pod_client, target, o, "/health/db", "connected"))),
        // Over the pod client too: one HTTP/2 connection carries every pod's requests at once.
        timed("error-logs", Box::pin(error_logs(pod_client, target, o))),
        timed("version", Box::pin(version(pod_client, target, o, state))),
    ]);
    let (mut checks, additions, secrets_current) = futures::join!(runbook_checks, additions, secrets_current);
    checks.extend(additions);
    checks.push(secrets_current);
    Ok(Verification {
        release: target.release.clone(),
        namespace: target.namespace.clone(),
        outcome: report::overall(&checks),
        checks,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn fail(detail: impl Into<String>) -> Check {
    Check::new("", Outcome::Fail, detail)
}

/// [1/7] every Deployment of the release has all its replicas ready, as many as Helm's record
/// says (a hand-scaled track changes the traffic split: a warning, with who scaled it).
fn replicas_ready(o: &Observed, release_name: &str, values: &crate::chart::Values) -> Check {
    if o.deployments.is_empty() {
        return fail("the release has no Deployment").with_fix("deploy it: cargo xtask deploy --env <env> --tag <tag>");
    }
    let mut parts = Vec::new();
    let mut short = false;
    for d in &o.deployments {
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        short |= ready < wanted;
        parts.push(format!("{} {ready}/{wanted}", d.metadata.name.clone().unwrap_or_default()));
    }
    let detail = format!("{} replicas ready", parts.join(", "));
    let drift = super::ownership::replica_drift(&o.deployments, release_name, values);
    if short {
        fail(detail).with_fix("cargo xtask doctor shows why pods are not ready")
    } else if !drift.is_empty() {
        let drift: Vec<String> = drift.iter().map(|d| d.to_string()).collect();
        Check::new("", Outcome::Warn, format!("{detail}; {}", drift.join("; "))).with_fix(
            "the next shipshape change to the release takes the record back (e.g. `cargo xtask canary abort`, or `canary resume`)",
        )
    } else {
        Check::new("", Outcome::Pass, detail)
    }
}

/// [2/7] every pod Running and ready, none stuck.
fn pods_running(o: &Observed) -> Check {
    if o.pods.is_empty() {
        return fail("no serving pods").with_fix("cargo xtask doctor");
    }
    let mut bad = Vec::new();
    for pod in &o.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if let Some(reason) = wait::stuck_reason(pod) {
            bad.push(format!("{name} {reason}"));
        } else if phase != "Running" {
            // Say why in the kubelet's words when it has said (ErrImagePull, ContainerCreating).
            let waiting = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()));
            bad.push(match waiting {
                Some(reason) => format!("{name} is {phase} ({reason})"),
                None => format!("{name} is {phase}"),
            });
        }
    }
    if bad.is_empty() {
        Check::new("", Outcome::Pass, format!("all {} pods Running", o.pods.len()))
    } else {
        fail(format!("{} of {} pods not Running: {}", bad.len(), o.pods.len(), bad.join("; "))).with_fix("cargo xtask doctor")
    }
}

async fn get(client: &kube::Client, namespace: &str, pod: &Pod, path: &str) -> Result<proxy::Answer> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    within(proxy::get_pod(client, namespace, &name, pods::http_port(pod), path)).await
}

async fn post_json(client: &kube::Client, namespace: &str, pod: &Pod, path: &str, body: &serde_json::Value) -> Result<proxy::Answer> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    within(proxy::post_pod_json(client, namespace, &name, pods::http_port(pod), path, body)).await
}

/// A pod's answer, or a failure after [`REQUEST_TIMEOUT`].
async fn within(answer: impl std::future::Future<Output = Result<proxy::Answer>>) -> Result<proxy::Answer> {
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(answer) => answer,
        Err(_) => anyhow::bail!("no answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// How many times a pod is asked before its answer counts, and the pause between: a pod that
/// just became ready may not have reached its database yet (seen three runs in a row on the
/// production cluster, which enforces NetworkPolicies, right after a promotion: 2 of 10 new pods'
/// first /health/db took over 3 s; the cause is not found). A pod that answers only on a later
/// attempt passes, and the check says which pods and what they answered first.
const ATTEMPTS: usize = 3;
const BETWEEN_ATTEMPTS: Duration = Duration::from_secs(2);

/// Asks one pod up to [`ATTEMPTS`] times until `good` takes an answer: `Ok` with what it took
/// and the earlier bad answers, else every answer, in words.
async fn ask_until<T, F: std::future::Future<Output = Result<proxy::Answer>>>(
    ask: impl Fn() -> F,
    good: impl Fn(&proxy::Answer) -> Option<T>,
) -> Result<(T, Vec<String>), Vec<String>> {
    let mut bad = Vec::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BETWEEN_ATTEMPTS).await;
        }
        match ask().await {
            Ok(answer) => match good(&answer) {
                Some(taken) => return Ok((taken, bad)),
                None => bad.push(format!("answered {}: {}", answer.status, answer.body.trim())),
            },
            Err(err) => bad.push(format!("{err:#}")),
        }
    }
    Err(bad)
}

/// One pod's answers to `path`: `Ok` with the earlier bad answers if one was good, else every one.
async fn ask_until_good(client: &kube::Client, namespace: &str, pod: &Pod, path: &str, wanted: &str) -> Result<Vec<String>, Vec<String>> {
    let good = |a: &proxy::Answer| (a.status == 200 && a.body.contains(wanted)).then_some(());
    ask_until(|| get(client, namespace, pod, path), good).await.map(|((), bad)| bad)
}

/// What a pod's answers say, for the check's detail.
fn answers_in_words(name: &str, answers: &[String]) -> String {
    let mut distinct: Vec<&String> = Vec::new();
    for answer in answers {
        if !distinct.contains(&answer) {
            distinct.push(answer);
        }
    }
    let times = if answers.len() > 1 { format!(" ({} times)", answers.len()) } else { String::new() };
    format!("{name} {}{times}", distinct.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", then "))
}

/// [3-5/7] `path` answers 200 with `"status":"<status>"` on every pod (each asked up to
/// [`ATTEMPTS`] times).
async fn endpoint(client: &kube::Client, target: &Target, o: &Observed, path: &str, status: &str) -> Check {
    let running = o.running();
    if running.is_empty() {
        return fail(format!("no running pod to ask{}", o.skipped()));
    }
    let wanted = format!(r#""status":"{status}""#);
    let answers = join_all(running.iter().map(|pod| ask_until_good(client, &target.namespace, pod, path, &wanted))).await;
    let (mut bad, mut late) = (Vec::new(), Vec::new());
    for (pod, answer) in running.iter().zip(answers) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match answer {
            Ok(earlier) if earlier.is_empty() => {}
            Ok(earlier) => late.push(answers_in_words(&name, &earlier)),
            Err(all) => bad.push(answers_in_words(&name, &all)),
        }
    }
    if bad.is_empty() {
        let late = if late.is_empty() {
            String::new()
        } else {
            format!(" ({} first, then {status}: {} pod(s) needed another try)", late.join("; "), late.len())
        };
        Check::new("", Outcome::Pass, format!("GET {path} answered {status} on {} pods{}{late}", running.len(), o.skipped()))
    } else {
        let fix = match path {
            "/health/db" => {
                "the database is unreachable or refuses the credentials: check its pods and the DATABASE_URL Secret (cargo xtask doctor)"
            }
            _ => "cargo xtask doctor; the pod's logs say why",
        };
        fail(format!("GET {path}: {}{}", bad.join("; "), o.skipped())).with_fix(fix)
    }
}

/// The instance verify's prediction sends: zeros, as many as the model takes.
fn prediction_request(width: u64) -> serde_json::Value {
    serde_json::json!({"instances": [vec![0.0; width as usize]]})
}

/// The label a prediction answered, if it answered one.
fn label_of(answer: &proxy::Answer) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
    let label = body["predictions"][0]["label"].as_str()?;
    (answer.status == 200 && !label.is_empty()).then(|| label.to_owned())
}

/// [8, an addition to the runbook's seven] one real prediction on every pod: POST /v1/predict
/// with an instance as wide as the model says it takes (GET /version: model_input_width); the
/// model must answer with a label (each pod asked up to [`ATTEMPTS`] times).
async fn prediction(client: &kube::Client, target: &Target, o: &Observed) -> Check {
    let running = o.running();
    if running.is_empty() {
        return fail(format!("no running pod to ask{}", o.skipped()));
    }
    let asked = join_all(running.iter().map(|pod| async move {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let version = get(client, &target.namespace, pod, "/version").await.map_err(|err| format!("{name}: GET /version: {err:#}"))?;
        let width = serde_json::from_str::<serde_json::Value>(&version.body).ok().and_then(|v| v["model_input_width"].as_u64());
        let Some(width) = width else { return Ok(None) };
        let request = prediction_request(width);
        match ask_until(|| post_json(client, &target.namespace, pod, ROUTE, &request), label_of).await {
            Ok((label, _)) => Ok(Some(label)),
            Err(answers) => Err(answers_in_words(&name, &answers)),
        }
    }))
    .await;
    let (mut labels, mut bad, mut unknown_width) = (Vec::new(), Vec::new(), 0);
    for result in asked {
        match result {
            Ok(Some(label)) => labels.push(label),
            Ok(None) => unknown_width += 1,
            Err(said) => bad.push(said),
        }
    }
    if !bad.is_empty() {
        return fail(format!("POST {ROUTE}: {}{}", bad.join("; "), o.skipped()))
            .with_fix("the model does not answer: the pod's logs say why (cargo xtask doctor)");
    }
    if unknown_width > 0 {
        return Check::new(
            "",
            Outcome::Warn,
            format!("{unknown_width} pod(s) do not say their model's input width (GET /version: model_input_width): no prediction asked"),
        )
        .with_fix("an image older than this check: the next release's image says it");
    }
    labels.sort();
    labels.dedup();
    Check::new("", Outcome::Pass, format!("POST {ROUTE} answered a label on {} pods ({}){}", running.len(), labels.join(", "), o.skipped()))
}

/// [9, an addition] every pod's /metrics holds the series the canary analysis reads for the
/// predict route: requests by status and the latency histogram.
async fn metrics_series(client: &kube::Client, target: &Target, o: &Observed) -> Check {
    let running = o.running();
    if running.is_empty() {
        return fail(format!("no running pod to ask{}", o.skipped()));
    }
    let scraped = join_all(running.iter().map(|pod| async move {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let port = super::analysis::metrics_port(pod);
        match tokio::time::timeout(REQUEST_TIMEOUT, proxy::get_pod(client, &target.namespace, &name, port, "/metrics")).await {
            Ok(Ok(answer)) if answer.status == 200 => missing_series(&answer.body).map(|missing| format!("{name} lacks {missing}")),
            Ok(Ok(answer)) => Some(format!("{name}: GET /metrics on port {port} answered {}", answer.status)),
            Ok(Err(err)) => Some(format!("{name}: {err:#}")),
            Err(_) => Some(format!("{name}: no answer from /metrics within {REQUEST_TIMEOUT:?}")),
        }
    }))
    .await;
    let bad: Vec<String> = scraped.into_iter().flatten().collect();
    if bad.is_empty() {
        Check::new(
            "",
            Outcome::Pass,
            format!("/metrics on {} pods has the canary analysis' series for {ROUTE}{}", running.len(), o.skipped()),
        )
    } else {
        fail(bad.join("; ")).with_fix(
            "a canary of this release could not be judged: the image must export http_requests_total and \
             http_request_duration_seconds with a route label on its metrics port",
        )
    }
}

/// [10, an addition] every Secret the pods read exists (a failure), and no pod holds a Secret's
/// old value (a warning at most): each started after the Secrets it reads last changed (the
/// runbook's "pods still use the old value after a Secret update"; doctor says the same, with
/// the fix).
async fn secrets_current(client: &kube::Client, target: &Target, o: &Observed) -> Check {
    let read = match super::findings::secrets_read(client, target, &o.pods).await {
        Ok(read) => read,
        Err(err) => return Check::new("", Outcome::Warn, format!("could not read the Secrets the pods read: {err:#}")),
    };
    // First that each exists: a Secret gone (its owner deleted, a method switched by hand) is
    // held by the running pods until their next restart, which then fails.
    let missing: Vec<&str> = read.iter().filter(|(_, secret)| secret.is_none()).map(|(name, _)| name.as_str()).collect();
    if !missing.is_empty() {
        return fail(format!(
            "Secret(s) {} read by the pods do not exist: the pods hold the old values until they restart, and a restart fails",
            missing.join(", ")
        ))
        .with_fix(format!("`cargo xtask preflight --env {}` says how each is made", target.env.name()));
    }
    super::findings::stale_secrets(target, &o.pods, &read)
}

/// What of the analysis' series for the predict route a /metrics text lacks, in words.
fn missing_series(text: &str) -> Option<String> {
    let sample = super::analysis::parse(text);
    let mut missing = Vec::new();
    if sample.requests == 0.0 {
        missing.push("http_requests_total");
    }
    if sample.latency_count == 0.0 || sample.latency_buckets.is_empty() {
        missing.push("the http_request_duration_seconds histogram");
    }
    (!missing.is_empty()).then(|| format!("{} for route {ROUTE}", missing.join(" and ")))
}

/// [6/7] lines saying error/exception/fatal in each pod's last 5 minutes of logs.
async fn error_logs(client: &kube::Client, target: &Target, o: &Observed) -> Check {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let params = LogParams { container: Some("api".to_owned()), since_seconds: Some(LOG_WINDOW_SECONDS), ..Default::default() };
    let running = o.running();
    let logs = join_all(running.iter().map(|p| pods.logs(p.metadata.name.as_deref().unwrap_or_default(), &params))).await;
    let mut counts = Vec::new();
    let mut worst = 0;
    for (pod, log) in running.iter().zip(logs) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match log {
            Ok(text) => {
                let count = count_error_lines(&text);
                worst = worst.max(count);
                counts.push(format!("{name}: {count}"));
            }
            Err(err) => return fail(format!("reading the logs of {name}: {}", crate::k8s::in_words(&err))),
        }
    }
    let detail = format!(
        "error lines in the last 5 minutes: {}{}",
        if counts.is_empty() { "no running pods".to_owned() } else { counts.join(", ") },
        o.skipped()
    );
    if worst > ERROR_LINES_WARNING {
        Check::new("", Outcome::Warn, detail)
            .with_fix("read them: cargo xtask doctor, or kubectl logs -l app.kubernetes.io/instance=<release>")
    } else {
        Check::new("", Outcome::Pass, detail)
    }
}

/// The runbook's `grep -i "error\|exception\|fatal"`.
pub fn count_error_lines(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.contains("error") || line.contains("exception") || line.contains("fatal")
        })
        .count()
}

/// [7/7] the deployed version: the Deployment runs what Helm applied, and every pod reports it.
async fn version(client: &kube::Client, target: &Target, o: &Observed, state: &ReleaseRecord) -> Check {
    let stable_name = state.values.live_deployment(&target.release);
    let Some(stable) = o.deployments.iter().find(|d| d.metadata.name.as_deref() == Some(stable_name.as_str())) else {
        return fail("no stable Deployment");
    };
    let image = ownership::deployment_image(stable).unwrap_or_default();
    let running = o.running();
    let answers = join_all(running.iter().map(|pod| get(client, &target.namespace, pod, "/version"))).await;
    let mut mismatched = Vec::new();
    for (pod, answer) in running.iter().zip(answers) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pod_image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
        let reported = answer
            .ok()
            .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.body).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        if reported != Some(crate::image::tag_of(&pod_image)) {
            mismatched.push(format!("{name} runs {pod_image} but reports {}", reported.unwrap_or_else(|| "nothing".to_owned())));
        }
    }
    let revision = state.current().map(|r| r.revision).unwrap_or(0);
    if !mismatched.is_empty() {
        return fail(format!("pods disagree with their images: {}", mismatched.join("; ")));
    }
    let reported = format!("{}{}", versions_by_track(running.iter().copied()), o.skipped());
    match state.stable_image() {
        Some(helm_image) if helm_image != image => Check::new(
            "",
            Outcome::Warn,
            format!("Deployment runs {image} but Helm revision {revision} applied {helm_image}: changed behind Helm's back"),
        )
        .with_fix("return to a Helm revision: cargo xtask rollback (it takes the fields back and says so)"),
        _ => Check::new("", Outcome::Pass, format!("{image} (Helm revision {revision}); {reported}")),
    }
}

/// What the pods report, per track with counts: `stable: 1 pod reports v2; canary: 3 pods report v3`.
fn versions_by_track<'p>(pods: impl IntoIterator<Item = &'p Pod>) -> String {
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for pod in pods {
        let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
        let track = pods::track_of(pod);
        *counts.entry((if track.is_empty() { "stable".to_owned() } else { track }, crate::image::tag_of(&image))).or_default() += 1;
    }
    // stable first, then canary
    let mut parts: Vec<((String, String), usize)> = counts.into_iter().collect();
    parts.sort_by_key(|((track, _), _)| track != "stable");
    parts
        .iter()
        .map(|((track, version), n)| {
            format!("{track}: {n} pod{} report{} {version}", if *n == 1 { "" } else { "s" }, if *n == 1 { "s" } else { "" })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pods_answers_are_told_once_each_with_how_many() {
        let timeout = r#"answered 503: {"reason":"no answer from the database within 3s","status":"disconnected"}"#.to_owned();
        assert_eq!(answers_in_words("p", std::slice::from_ref(&timeout)), format!("p {timeout}"));
        assert_eq!(answers_in_words("p", &[timeout.clone(), timeout.clone(), timeout.clone()]), format!("p {timeout} (3 times)"));
        let refused = "answered 503: refused".to_owned();
        assert_eq!(answers_in_words("p", &[timeout.clone(), refused.clone()]), format!("p {timeout}, then {refused} (2 times)"));
    }

    #[test]
    fn error_lines_are_counted_like_the_runbooks_grep() {
        let log = "level=info msg=ok\nlevel=error msg=boom\nERROR: x\nan Exception here\nFATAL\nfine\n";
        assert_eq!(super::count_error_lines(log), 4);
    }

    fn deployment(name: &str, wanted: i32, ready: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": wanted, "selector": {}, "template": {}},
            "status": {"readyReplicas": ready},
        }))
        .unwrap()
    }

    /// A pod of `track` running `image`, in `phase`, its container waiting for `waiting` if given.
    fn pod(name: &str, track: &str, image: &str, phase: &str, waiting: Option<&str>) -> Pod {
        let state = match waiting {
            Some(reason) => json!({"waiting": {"reason": reason, "message": "m"}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"shipshape.dev/track": track}},
            "spec": {"containers": [{"name": "api", "image": image}]},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "api", "image": image, "imageID": "", "ready": waiting.is_none(), "restartCount": 3, "state": state,
            }]},
        }))
        .unwrap()
    }

    fn values(replicas: u32, canary: Option<u32>) -> crate::chart::Values {
        let canary = match canary {
            Some(n) => json!({"enabled": true, "replicaCount": n, "tag": "v2"}),
            None => json!({"enabled": false}),
        };
        crate::chart::Values::of(&json!({"replicaCount": replicas, "canary": canary})).unwrap()
    }

    #[test]
    fn replicas_pass_when_every_track_is_ready_at_helm_s_count() {
        let o = Observed { deployments: vec![deployment("model-server", 3, 3), deployment("model-server-canary", 1, 1)], pods: vec![] };
        let check = replicas_ready(&o, "model-server", &values(3, Some(1)));
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
        assert!(check.detail.contains("model-server 3/3, model-server-canary 1/1"), "{check:?}");
    }

    #[test]
    fn replicas_fail_when_short_or_absent_and_warn_when_scaled_behind_helm() {
        let short = Observed { deployments: vec![deployment("model-server", 3, 2)], pods: vec![] };
        let check = replicas_ready(&short, "model-server", &values(3, None));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.fix.as_deref().is_some_and(|f| f.contains("doctor")), "{check:?}");

        let none = Observed { deployments: vec![], pods: vec![] };
        let check = replicas_ready(&none, "model-server", &values(3, None));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.fix.as_deref().is_some_and(|f| f.contains("cargo xtask deploy")), "{check:?}");

        // `kubectl scale` to 5: every pod ready, but not what Helm recorded.
        let scaled = Observed { deployments: vec![deployment("model-server", 5, 5)], pods: vec![] };
        let check = replicas_ready(&scaled, "model-server", &values(3, None));
        assert_eq!(check.outcome, Outcome::Warn, "{check:?}");
        assert!(check.detail.contains('3') && check.detail.contains('5'), "recorded and live: {check:?}");
    }

    #[test]
    fn pods_not_running_are_named_with_the_kubelet_s_reason() {
        let image = "r/m:v1@sha256:aa";
        let healthy = Observed { deployments: vec![], pods: vec![pod("a", "stable", image, "Running", None)] };
        assert_eq!(pods_running(&healthy).outcome, Outcome::Pass);

        let crashing = pod("b", "stable", image, "Running", Some("CrashLoopBackOff"));
        let pulling = pod("c", "canary", image, "Pending", Some("ContainerCreating"));
        let o = Observed { deployments: vec![], pods: vec![pod("a", "stable", image, "Running", None), crashing, pulling] };
        let check = pods_running(&o);
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.detail.starts_with("2 of 3 pods not Running"), "{check:?}");
        assert!(check.detail.contains("b is crash-looping") && check.detail.contains("c is Pending (ContainerCreating)"), "{check:?}");
        assert_eq!(o.running().len(), 1, "later checks ask only the running pod");
        assert!(o.skipped().contains("b, c"), "{}", o.skipped());

        let empty = Observed { deployments: vec![], pods: vec![] };
        assert_eq!(pods_running(&empty).outcome, Outcome::Fail);
    }

    #[test]
    fn versions_are_reported_per_track_stable_first() {
        let (v2, v3) = (format!("r/m:v2@sha256:{}", "a".repeat(64)), format!("r/m:v3@sha256:{}", "b".repeat(64)));
        let pods = [
            pod("c1", "canary", &v3, "Running", None),
            pod("s1", "stable", &v2, "Running", None),
            pod("c2", "canary", &v3, "Running", None),
        ];
        assert_eq!(versions_by_track(pods.iter()), "stable: 1 pod reports v2; canary: 2 pods report v3");
    }
}

#[cfg(test)]
mod addition_tests {
    use super::*;

    fn answer(status: u16, body: &str) -> proxy::Answer {
        proxy::Answer { status, body: body.to_owned() }
    }

    #[test]
    fn a_prediction_passes_only_with_a_label() {
        assert_eq!(prediction_request(4), serde_json::json!({"instances": [[0.0, 0.0, 0.0, 0.0]]}));
        let labelled = r#"{"predictions":[{"label":"setosa","scores":[1.0,0.2,0.1]}],"model_version":"1"}"#;
        assert_eq!(label_of(&answer(200, labelled)).as_deref(), Some("setosa"));
        assert_eq!(label_of(&answer(500, r#"{"error":"injected fault (FAULT_ERROR_RATE)"}"#)), None);
        assert_eq!(label_of(&answer(400, r#"{"error":"each instance needs 4 numbers, got 3"}"#)), None);
        assert_eq!(label_of(&answer(200, r#"{"predictions":[{"label":""}]}"#)), None, "an empty label is none");
        assert_eq!(label_of(&answer(200, "not json")), None);
    }

    #[test]
    fn metrics_without_the_predict_route_s_series_are_named() {
        let served = "# TYPE http_requests_total counter\n\
            http_requests_total{route=\"/v1/predict\",status=\"200\"} 3\n\
            # TYPE http_request_duration_seconds histogram\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.005\"} 3\n\
            http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 3\n\
            http_request_duration_seconds_sum{route=\"/v1/predict\"} 0.004\n\
            http_request_duration_seconds_count{route=\"/v1/predict\"} 3\n";
        assert_eq!(missing_series(served), None);
        let health_only = "# TYPE http_requests_total counter\nhttp_requests_total{route=\"/health\",status=\"200\"} 9\n";
        let missing = missing_series(health_only).unwrap();
        assert!(missing.contains("http_requests_total") && missing.contains("histogram") && missing.contains("/v1/predict"), "{missing}");
        let no_histogram = "# TYPE http_requests_total counter\nhttp_requests_total{route=\"/v1/predict\",status=\"200\"} 3\n";
        assert_eq!(missing_series(no_histogram).as_deref(), Some("the http_request_duration_seconds histogram for route /v1/predict"));
    }
}
