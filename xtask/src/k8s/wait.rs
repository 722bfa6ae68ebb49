//! Waiting on the cluster: driven by watch events (never a fixed sleep), bounded by a timeout,
//! printing progress whenever what we wait for changes, and failing fast on states that will
//! not fix themselves (CrashLoopBackOff, image pull errors, missing Secrets).
use std::fmt::Debug;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::{FutureExt, StreamExt};
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
    let (store, writer) = reflector::store();
    // Raw events, not touched_objects(): the store is published only at InitDone, which
    // touched_objects() does not yield, and that is the moment a wait can first decide.
    let stream = reflector(writer, watcher(api, list)).default_backoff();
    futures::pin_mut!(stream);
    let started = Instant::now();
    let mut last_said = String::new();
    let mut last_time = Instant::now();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => bail!("timed out after {timeout:?} waiting for {what}: {last_said}"),
            event = stream.next() => {
                match event {
                    Some(Err(err)) => {
                        // The watcher retries with backoff by itself; say so, keep waiting.
                        say(what, &format!("watch interrupted, retrying ({err})"), started);
                        continue;
                    }
                    None => bail!("the watch on {what} ended unexpectedly"),
                    // The initial list is still arriving: the store is not complete yet.
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(_)) => {}
                }
            }
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        if store.wait_until_ready().now_or_never().is_none() {
            continue;
        }
        let objects = store.state();
        let refs: Vec<&K> = objects.iter().map(|o| o.as_ref()).collect();
        match check(&refs) {
            Progress::Done(message) => {
                say(what, &message, started);
                return Ok(message);
            }
            Progress::Failed(reason) => bail!("{what}: {reason}"),
            Progress::Waiting(message) => {
                if message != last_said || last_time.elapsed() >= HEARTBEAT {
                    say(what, &message, started);
                    last_said = message;
                    last_time = Instant::now();
                }
            }
        }
    }
}

fn say(what: &str, message: &str, started: Instant) {
    println!("  [{:>4.0}s] {what}: {message}", started.elapsed().as_secs_f64());
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
            "CreateContainerConfigError" => return Some(format!("cannot start container {}: {message}", status.name)),
            _ => {}
        }
    }
    None
}
