//! Waiting on the cluster: driven by watch events (never a fixed sleep), bounded by a timeout,
//! printing progress whenever what we wait for changes, and failing fast on states that will
//! not fix themselves (CrashLoopBackOff, image pull errors, missing Secrets).
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Where a wait stands after an event.
pub enum Progress {
    Done(String),
    Waiting(String),
    /// A state that will not resolve by waiting: stop now, with the reason.
    Failed(String),
}

/// How often an unchanged wait still reports that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Watches `api` (filtered by `list`) and re-evaluates `check` on the whole current set after
/// every event, until it is done, failed, or `timeout` passes.
pub async fn until<K>(
    api: Api<K>,
    list: watcher::Config,
    what: &str,
    timeout: Duration,
    check: impl Fn(&[&K]) -> Progress,
) -> Result<String>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    until_of_type(api, Default::default(), list, what, timeout, check).await
}

/// [`until`] for a kind known only at run time (a `DynamicObject` of an operator's CRD).
pub async fn until_of_type<K>(
    api: Api<K>,
    dynamic_type: K::DynamicType,
    list: watcher::Config,
    what: &str,
    timeout: Duration,
    check: impl Fn(&[&K]) -> Progress,
) -> Result<String>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let writer = reflector::store::Writer::new(dynamic_type);
    let store = writer.as_reader();
    let events = reflector(writer, watcher(api, list)).default_backoff().map(|event| event.map(drop));
    drive(events, what, timeout, || {
        if !is_complete(&store) {
            return None;
        }
        let objects = store.state();
        let refs: Vec<&K> = objects.iter().map(|o| o.as_ref()).collect();
        Some(check(&refs))
    })
    .await
}

/// The one wait loop: after every event (and every [`HEARTBEAT`]) asks `check` where things
/// stand (`None`: the watched lists are not complete yet), prints progress when it changes, and
/// gives up at `timeout`. Watch errors are retried by the watchers themselves; they are reported.
async fn drive(
    events: impl Stream<Item = Result<(), watcher::Error>>,
    what: &str,
    timeout: Duration,
    check: impl Fn() -> Option<Progress>,
) -> Result<String> {
    futures::pin_mut!(events);
    let mut progress = crate::progress::Spinner::start(HEARTBEAT);
    let mut last_said = String::new();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => bail!("timed out after {timeout:?} waiting for {what}: {last_said}"),
            event = events.next() => match event {
                None => bail!("the watch on {what} ended unexpectedly"),
                Some(Err(err)) => progress.say(&format!("{what}: watch interrupted, retrying ({err})")),
                Some(Ok(())) => {}
            },
            _ = tokio::time::sleep(HEARTBEAT) => {}
            // Ctrl-C or a CI cancel during a flow: a safe point (interrupt.rs).
            _ = crate::interrupt::requested() => {
                crate::interrupt::checkpoint().with_context(|| format!("stopped waiting for {what}"))?;
            }
        }
        match check() {
            None => continue,
            Some(Progress::Done(message)) => {
                progress.say(&format!("{what}: {message}"));
                return Ok(message);
            }
            Some(Progress::Failed(reason)) => bail!("{what}: {reason}"),
            Some(Progress::Waiting(message)) if message != last_said => {
                progress.say(&format!("{what}: {message}"));
                last_said = message;
            }
            Some(Progress::Waiting(message)) => progress.still(&format!("{what}: {message}")),
        }
    }
}

/// Until `probe` is done or failed, asking it every `every`: for a state that no single watch
/// shows (an object's status together with the events about it). A probe that cannot read
/// says so as progress and is asked again.
pub async fn polled<F, Fut>(what: &str, timeout: Duration, every: Duration, probe: F) -> Result<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Progress>>,
{
    let latest = std::sync::Mutex::new(None);
    let ticks = futures::stream::unfold((), |()| async {
        let progress = probe().await.unwrap_or_else(|err| Progress::Waiting(format!("cannot read it yet ({err:#})")));
        *latest.lock().unwrap() = Some(progress);
        tokio::time::sleep(every).await;
        Some((Ok(()), ()))
    });
    drive(ticks, what, timeout, || latest.lock().unwrap().take()).await
}

/// A reflector's store is published only once its initial list is complete (InitDone).
fn is_complete<K: kube::Resource + Clone + 'static>(store: &reflector::Store<K>) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some()
}

/// Until Deployment `name` no longer exists (e.g. a canary Helm has removed).
pub async fn deployment_gone(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    until(api, config, &format!("Deployment {name} removed"), timeout, |found| {
        if found.is_empty() {
            Progress::Done("removed".to_owned())
        } else {
            Progress::Waiting("still there".to_owned())
        }
    })
    .await
    .map(drop)
}

/// Every node Ready.
pub async fn nodes_ready(client: &Client, timeout: Duration) -> Result<String> {
    until(Api::<Node>::all(client.clone()), watcher::Config::default(), "nodes Ready", timeout, |nodes| {
        if nodes.is_empty() {
            return Progress::Waiting("no node registered yet".to_owned());
        }
        let not_ready: Vec<String> =
            nodes.iter().filter(|n| !node_is_ready(n)).map(|n| n.metadata.name.clone().unwrap_or_default()).collect();
        if not_ready.is_empty() {
            Progress::Done(format!("{} node(s) Ready", nodes.len()))
        } else {
            Progress::Waiting(format!("not Ready yet: {}", not_ready.join(", ")))
        }
    })
    .await
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Every pod in `namespace` Running with all containers ready (or Succeeded), at least `min`.
pub async fn pods_running(client: &Client, namespace: &str, list: watcher::Config, min: usize, timeout: Duration) -> Result<String> {
    let what = format!("pods in {namespace}");
    until(Api::<Pod>::namespaced(client.clone(), namespace), list, &what, timeout, |pods| {
        if pods.len() < min {
            return Progress::Waiting(format!("{} of at least {min} pods exist", pods.len()));
        }
        let mut waiting = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Some(reason) = stuck_reason(pod) {
                return Progress::Failed(format!("pod {name} {reason}"));
            }
            if !pod_is_ready(pod) {
                waiting.push(name);
            }
        }
        if waiting.is_empty() {
            Progress::Done(format!("{} pods running and ready", pods.len()))
        } else {
            Progress::Waiting(format!("{}/{} ready; waiting for {}", pods.len() - waiting.len(), pods.len(), waiting.join(", ")))
        }
    })
    .await
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
        return true;
    }
    status.and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A container that has run this long without its pod becoming ready is failing its readiness
/// probe, not starting slowly (the chart probes /ready every 2 s; the model loads in well under
/// a second from the image, a few seconds from a registry).
pub const READINESS_GRACE: Duration = Duration::from_secs(45);

/// Why a running pod is not ready after `grace`: its readiness probe keeps failing.
pub fn readiness_failing(pod: &Pod, grace: Duration) -> Option<String> {
    if pod_is_ready(pod) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut oldest_start: Option<k8s_openapi::jiff::Timestamp> = None;
    for status in statuses {
        let started = status.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0;
        oldest_start = Some(oldest_start.map_or(started, |o| o.min(started)));
    }
    let running_for = now.duration_since(oldest_start?);
    (running_for.as_secs() as u64 >= grace.as_secs())
        .then(|| format!("has been running {}s without becoming ready: its readiness probe keeps failing", running_for.as_secs()))
}

/// Why a pod will not become ready by waiting, if it will not: the states `kubectl rollout
/// status` sits through until the progress deadline.
pub fn stuck_reason(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    for status in statuses {
        let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or_default();
        let message = waiting.and_then(|w| w.message.as_deref()).unwrap_or_default();
        match reason {
            "CrashLoopBackOff" => {
                let last = status
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(" (last exit code {}{})", t.exit_code, t.reason.as_ref().map(|r| format!(", {r}")).unwrap_or_default())
                    })
                    .unwrap_or_default();
                return Some(format!("is crash-looping: container {} restarted {} times{last}", status.name, status.restart_count));
            }
            "ImagePullBackOff" | "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName" => {
                return Some(format!("cannot get its image {} ({reason}: {message})", status.image));
            }
            // A missing Secret or key will not appear by waiting; a kubelet that is slow to sync its
            // secret cache ("failed to sync secret cache: timed out") retries by itself.
            "CreateContainerConfigError" if message.contains("not found") || message.contains("couldn't find key") => {
                return Some(format!("cannot start container {}: {message}", status.name))
            }
            _ => {}
        }
    }
    None
}

/// Why the scheduler has not placed a pod, in its own words (`0/4 nodes are available: 3
/// Insufficient cpu, ...`): not a failure by itself (a node may be added or freed), but what a
/// rollout that waits on it is waiting for.
pub fn unschedulable(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    let scheduled = status.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
    (scheduled.status == "False").then(|| scheduled.message.clone().unwrap_or_else(|| "no node fits it".to_owned()))
}

/// `; 2 pods unschedulable (0/4 nodes are available: ...)`, the scheduler's messages once each,
/// or nothing.
fn unscheduled_in_words(messages: &[String]) -> String {
    if messages.is_empty() {
        return String::new();
    }
    let mut distinct: Vec<&str> = messages.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let pods = if messages.len() == 1 { "1 pod" } else { &format!("{} pods", messages.len()) };
    format!("; {pods} not scheduled ({})", distinct.join("; "))
}

/// DaemonSet `name` runs its current spec, ready, on every node it is scheduled to.
pub async fn daemon_set_ready(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<String> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    until(daemon_sets, config, &format!("DaemonSet {namespace}/{name} ready on every node"), timeout, |found| {
        let Some(daemon_set) = found.first() else { return Progress::Waiting("not created yet".to_owned()) };
        daemon_set_progress(daemon_set)
    })
    .await
}

fn daemon_set_progress(daemon_set: &k8s_openapi::api::apps::v1::DaemonSet) -> Progress {
    let Some(status) = &daemon_set.status else { return Progress::Waiting("no status yet".to_owned()) };
    let generation = daemon_set.metadata.generation.unwrap_or(0);
    let wanted = status.desired_number_scheduled;
    let (updated, ready) = (status.updated_number_scheduled.unwrap_or(0), status.number_ready);
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("its controller has not seen the current spec".to_owned());
    }
    if wanted > 0 && updated == wanted && ready == wanted {
        Progress::Done(format!("{ready} of {wanted} nodes"))
    } else {
        Progress::Waiting(format!("{ready} of {wanted} nodes ready, {updated} updated"))
    }
}

/// Deployment `name` fully rolled out: the controller has seen the current spec
/// (observedGeneration), every replica is updated, ready and available, and no old replica is
/// left. Watches the Deployment and its pods together, so a pod that is stuck
/// (CrashLoopBackOff, image pull, missing Secret) fails the wait at once, not at the progress
/// deadline.
pub async fn deployment_rolled_out(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<String> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let current = deployments.get(name).await.with_context(|| format!("reading Deployment {namespace}/{name}"))?;
    let selector = current
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .with_context(|| format!("Deployment {name} has no matchLabels selector"))?;
    let (deployment_store, deployment_writer) = reflector::store();
    let (replica_set_store, replica_set_writer) = reflector::store();
    let (pod_store, pod_writer) = reflector::store();
    let deployment_events =
        reflector(deployment_writer, watcher(deployments, watcher::Config::default().fields(&format!("metadata.name={name}"))))
            .default_backoff();
    let replica_set_events = reflector(
        replica_set_writer,
        watcher(Api::<ReplicaSet>::namespaced(client.clone(), namespace), watcher::Config::default().labels(&selector)),
    )
    .default_backoff();
    let pod_events =
        reflector(pod_writer, watcher(Api::<Pod>::namespaced(client.clone(), namespace), watcher::Config::default().labels(&selector)))
            .default_backoff();
    let events = futures::stream::select(
        futures::stream::select(deployment_events.map(|e| e.map(drop)), replica_set_events.map(|e| e.map(drop))),
        pod_events.map(|e| e.map(drop)),
    );
    drive(events, &format!("the rollout of {namespace}/{name}"), timeout, || {
        if !is_complete(&deployment_store) || !is_complete(&replica_set_store) || !is_complete(&pod_store) {
            return None;
        }
        let Some(deployment) = deployment_store.state().into_iter().next() else {
            return Some(Progress::Failed(format!("Deployment {name} was deleted")));
        };
        if let Some(refused) = pods_refused(&deployment) {
            return Some(Progress::Failed(refused));
        }
        // Only the current template's pods decide: after a rollback, the pods of the version
        // rolled back from are still crash-looping on their way out.
        let current_hash = current_template_hash(&deployment, &replica_set_store.state());
        let mut unscheduled = Vec::new();
        for pod in pod_store.state() {
            let hash = pod.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
            if current_hash.is_none() || hash != current_hash.as_ref() || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(reason) = stuck_reason(&pod).or_else(|| readiness_failing(&pod, READINESS_GRACE)) {
                return Some(Progress::Failed(format!("pod {} {reason}", pod.metadata.name.clone().unwrap_or_default())));
            }
            unscheduled.extend(unschedulable(&pod));
        }
        Some(match rollout_state(&deployment) {
            Ok(done) => Progress::Done(done),
            Err(waiting) => Progress::Waiting(waiting + &unscheduled_in_words(&unscheduled)),
        })
    })
    .await
}

/// The `pod-template-hash` of the Deployment's current ReplicaSet (the one carrying its
/// revision), once the controller has made it.
fn current_template_hash(
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    replica_sets: &[std::sync::Arc<ReplicaSet>],
) -> Option<String> {
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let generation = deployment.metadata.generation.unwrap_or(0);
    if deployment.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) < generation {
        return None;
    }
    let revision = deployment.metadata.annotations.as_ref()?.get(REVISION)?;
    let uid = deployment.metadata.uid.as_ref()?;
    replica_sets
        .iter()
        .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| &o.uid == uid))
        .find(|rs| rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) == Some(revision))
        .and_then(|rs| rs.metadata.labels.as_ref()?.get("pod-template-hash").cloned())
}

/// The API server refuses the Deployment's new pods (its ReplicaFailure condition, which the
/// controller copies from the ReplicaSet that failed to create them): a ResourceQuota exceeded,
/// a LimitRange or an admission webhook said no. No wait makes that pass: the rollout fails at
/// once, in the API server's words and with what to do.
pub fn pods_refused(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Option<String> {
    let condition = deployment.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    let message = condition.message.clone().unwrap_or_default();
    let what_to_do = refused_pods_advice(&message, &deployment.metadata.namespace.clone().unwrap_or_default());
    Some(format!("the cluster refuses to create its pods ({}): {message}; {what_to_do}", condition.reason.clone().unwrap_or_default()))
}

/// What to do about pods of `namespace` the API server refuses to create, read from its words
/// (`message`): a full ResourceQuota, the environment's image policy held by the cluster
/// (sigstore policy-controller, flows/admission.rs), or another admission check, which its
/// words name. One judgement for a rollout's refused pods, doctor's dry-run and the image check.
pub fn refused_pods_advice(message: &str, namespace: &str) -> String {
    if message.contains("exceeded quota") {
        format!(
            "a ResourceQuota of namespace {namespace} allows no more: `kubectl describe resourcequota -n {namespace}` shows what \
             is used; raise it, or lower the release's requests or replicas"
        )
    } else if message.contains("admission webhook \"policy.sigstore.dev\"") {
        "the cluster's image policy (sigstore policy-controller) refuses the image: it is not signed, with its provenance, by \
         a key the namespace's ClusterImagePolicies trust (`kubectl get clusterimagepolicies` lists them). If the environment's \
         keys changed (`keys rotate`), `cargo xtask admission apply --env <env>` writes its policy again; else deploy or roll \
         back to a release signed by a trusted key"
            .to_owned()
    } else {
        "the API server refuses them: its words above say which policy".to_owned()
    }
}

/// `Ok` when the rollout is complete (observed, every replica updated, ready and available, no
/// old one left), else where it stands. The one judgement of "rolled out" (waits and doctor).
pub fn rollout_state(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Result<String, String> {
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return Err("no status yet".to_owned());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("the controller has not seen the new spec yet".to_owned());
    }
    let (total, updated, ready, available) = (
        status.replicas.unwrap_or(0),
        status.updated_replicas.unwrap_or(0),
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    if updated == wanted && total == wanted && ready == wanted && available == wanted {
        return Ok(format!("{wanted}/{wanted} replicas updated, ready and available"));
    }
    Err(format!("{updated}/{wanted} updated, {ready} ready, {available} available, {} old", total - updated))
}

/// Until Service `service` lists at least one ready endpoint: a new Service's pods can be ready
/// before the EndpointSlice controller has published them, and a client connecting then is
/// refused (kube-proxy rejects traffic to a Service with no endpoints).
pub async fn service_has_ready_endpoint(client: &Client, namespace: &str, service: &str, timeout: Duration) -> Result<()> {
    service_ready_endpoints(client, namespace, service, timeout, |ready| {
        if ready.is_empty() {
            Progress::Waiting("no ready endpoint yet".to_owned())
        } else {
            Progress::Done(format!("{} ready endpoints", ready.len()))
        }
    })
    .await
}

/// Until `check` is done with the names of the pods that `service`'s EndpointSlices list as
/// ready: what kube-proxy routes to.
pub async fn service_ready_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    timeout: Duration,
    check: impl Fn(&BTreeSet<String>) -> Progress,
) -> Result<()> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    until(api, config, &format!("Service {service} endpoints"), timeout, |slices| {
        let ready: BTreeSet<String> = slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()))
            .collect();
        check(&ready)
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod daemon_set_tests {
    use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};

    fn daemon_set(generation: i64, observed: i64, wanted: i32, updated: i32, ready: i32) -> DaemonSet {
        let mut d = DaemonSet::default();
        d.metadata.generation = Some(generation);
        d.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: wanted,
            updated_number_scheduled: Some(updated),
            number_ready: ready,
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_daemon_set_is_ready_when_every_node_runs_its_current_spec() {
        use super::Progress::*;
        assert!(matches!(super::daemon_set_progress(&daemon_set(2, 2, 4, 4, 4)), Done(s) if s == "4 of 4 nodes"));
        assert!(matches!(super::daemon_set_progress(&daemon_set(2, 2, 4, 4, 3)), Waiting(s) if s.contains("3 of 4 nodes ready")));
        assert!(matches!(super::daemon_set_progress(&daemon_set(2, 2, 4, 3, 4)), Waiting(_)), "one node still runs the old spec");
        assert!(matches!(super::daemon_set_progress(&daemon_set(3, 2, 4, 4, 4)), Waiting(s) if s.contains("not seen")));
        assert!(matches!(super::daemon_set_progress(&daemon_set(1, 1, 0, 0, 0)), Waiting(_)), "scheduled nowhere yet");
        assert!(matches!(super::daemon_set_progress(&DaemonSet::default()), Waiting(_)));
    }
}

#[cfg(test)]
mod scheduling_tests {
    use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};

    fn pod(phase: &str, scheduled: Option<(&str, &str)>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.to_owned()),
                conditions: scheduled.map(|(status, message)| {
                    vec![PodCondition {
                        type_: "PodScheduled".to_owned(),
                        status: status.to_owned(),
                        reason: Some("Unschedulable".to_owned()),
                        message: Some(message.to_owned()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const FULL: &str = "0/4 nodes are available: 1 node(s) had untolerated taint(s), 3 Insufficient cpu.";

    #[test]
    fn a_pending_pod_the_scheduler_cannot_place_is_named_with_its_reason() {
        assert_eq!(super::unschedulable(&pod("Pending", Some(("False", FULL)))).as_deref(), Some(FULL));
        assert_eq!(super::unschedulable(&pod("Pending", Some(("True", "")))), None, "scheduled, pulling its image");
        assert_eq!(super::unschedulable(&pod("Pending", None)), None, "not seen by the scheduler yet");
        assert_eq!(super::unschedulable(&pod("Running", Some(("False", FULL)))), None);
    }

    #[test]
    fn a_rollout_waiting_on_the_scheduler_says_so_once_per_reason() {
        assert_eq!(super::unscheduled_in_words(&[]), "");
        let two = [FULL.to_owned(), FULL.to_owned()];
        assert_eq!(super::unscheduled_in_words(&two), format!("; 2 pods not scheduled ({FULL})"));
        assert_eq!(super::unscheduled_in_words(&two[..1]), format!("; 1 pod not scheduled ({FULL})"));
    }
}

#[cfg(test)]
mod refused_tests {
    use k8s_openapi::api::apps::v1::Deployment;

    fn deployment(conditions: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "model-server", "namespace": "ml"},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn pods_the_api_server_refuses_fail_a_rollout_in_its_words() {
        let quota = deployment(serde_json::json!([
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "pods \"model-server-6d4-x\" is forbidden: exceeded quota: e2e-pods, requested: pods=1, used: pods=2, limited: pods=2"}
        ]));
        let said = super::pods_refused(&quota).unwrap();
        assert!(said.contains("FailedCreate") && said.contains("exceeded quota: e2e-pods"), "{said}");
        assert!(said.contains("kubectl describe resourcequota -n ml"), "what to do: {said}");
        let webhook = deployment(serde_json::json!([
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "admission webhook \"policy\" denied the request"}
        ]));
        assert!(super::pods_refused(&webhook).unwrap().contains("which policy"));
        let image_policy = deployment(serde_json::json!([
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "admission webhook \"policy.sigstore.dev\" denied the request: validation failed: failed policy: shipshape-prod: \
                         no matching attestations"}
        ]));
        let said = super::pods_refused(&image_policy).unwrap();
        assert!(said.contains("failed policy: shipshape-prod") && said.contains("admission apply --env"), "{said}");
        let recovered = deployment(serde_json::json!([{"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate"}]));
        assert_eq!(super::pods_refused(&recovered), None);
        assert_eq!(super::pods_refused(&Deployment::default()), None);
    }
}
