//! doctor's view of the release's pods: cannot read their Secret, Pending, crash-looping (and
//! why: the kernel's OOM killer, the liveness probe, or the previous log), image pull errors,
//! running but never ready, and running under another ServiceAccount than the release's.
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::LogParams;
use kube::Api;

use super::super::Target;
use crate::chart::Values;
use crate::k8s::wait;
use crate::report::{Check, Outcome};

/// Lines of a crashed container's previous log shown as evidence.
const CRASH_LOG_LINES: i64 = 10;

/// The findings for each pod that has one; one passing check when none has.
pub(super) async fn pods(client: &kube::Client, t: &Target, pods: &[Pod], values: &Values, events: &[Event]) -> Vec<Check> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &t.namespace);
    let account = values.service_account_name(&t.release);
    let mut checks = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        if let Some(finding) = foreign_service_account(pod, &account) {
            checks.push(finding);
        }
        let cause = restart_cause(pod, events);
        if let Some(reason) = wait::stuck_reason(pod) {
            let waiting = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .unwrap_or_default();
            let check = match (waiting.as_str(), cause) {
                ("CreateContainerConfigError", _) => {
                    Check::new(format!("pod {name}"), Outcome::Fail, format!("cannot read its secret: {reason}"))
                        .with_fix("the Secret or key it names is missing: see the secret checks above; pods start once it exists")
                }
                ("CrashLoopBackOff", Some(cause)) => {
                    Check::new(format!("pod {name}"), Outcome::Fail, format!("{reason}: {}", cause.detail)).with_fix(cause.fix)
                }
                ("CrashLoopBackOff", None) => {
                    let previous = LogParams {
                        container: Some("api".to_owned()),
                        previous: true,
                        tail_lines: Some(CRASH_LOG_LINES),
                        ..Default::default()
                    };
                    let log = api.logs(&name, &previous).await.unwrap_or_default();
                    let tail = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
                    Check::new(format!("pod {name}"), Outcome::Fail, format!("{reason}; previous log: {tail}"))
                        .with_fix("configuration errors (ConfigMap/Secrets), the database, or memory limits: the log above says which; roll back with cargo xtask rollback")
                }
                _ => Check::new(format!("pod {name}"), Outcome::Fail, reason).with_fix(
                    "check the image name and tag, and the registry credentials (imagePullSecrets); roll back with cargo xtask rollback",
                ),
            };
            checks.push(check);
            continue;
        }
        if let Some(cause) = cause {
            // Restarted, and running again for now: the next kill is a matter of time.
            checks.push(Check::new(format!("pod {name}"), Outcome::Fail, cause.detail).with_fix(cause.fix));
            continue;
        }
        if status.phase.as_deref() == Some("Pending") {
            let why = wait::unschedulable(pod).unwrap_or_else(|| "waiting to start".to_owned());
            checks.push(Check::new(format!("pod {name}"), Outcome::Fail, format!("Pending: {why}")).with_fix(
                "insufficient resources (quotas, node capacity: the nodes check shows what is requested of each), node \
                 selectors or affinity: compare the pod's requests and affinity with the nodes",
            ));
            continue;
        }
        if status.phase.as_deref() == Some("Running") && !wait::pod_is_ready(pod) {
            checks.push(
                Check::new(format!("pod {name}"), Outcome::Warn, "Running but not ready: its readiness probe (GET /ready) fails")
                    .with_fix("the model may not load: check the pod's log and env.modelUri"),
            );
        }
    }
    if checks.is_empty() {
        checks.push(Check::new("pods", Outcome::Pass, format!("{} pods, none stuck", pods.len())));
    }
    checks
}

/// Why a container was killed and restarted, in words, with the fix.
#[derive(Debug, PartialEq)]
pub struct RestartCause {
    pub detail: String,
    pub fix: String,
}

/// Why the pod's containers were restarted, when the cluster says: its last termination was the
/// kernel's OOM killer (with the memory limit it exceeded), or the kubelet acting on a failing
/// liveness probe (its `Unhealthy` events say "Liveness probe failed").
pub fn restart_cause(pod: &Pod, events: &[Event]) -> Option<RestartCause> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    for status in statuses.iter().filter(|s| s.restart_count > 0) {
        let container = &status.name;
        let terminated = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if terminated.and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
            let limit = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| &c.name == container))
                .and_then(|c| c.resources.as_ref()?.limits.as_ref()?.get("memory").map(|q| q.0.clone()))
                .unwrap_or_else(|| "none set".to_owned());
            return Some(RestartCause {
                detail: format!(
                    "container {container} was killed for using more memory than its limit ({limit}): OOMKilled, restarted {} \
                     time(s)",
                    status.restart_count
                ),
                fix: "raise resources.limits.memory (and requests.memory with it) in the environment's values, or find what \
                      grew (a bigger model?); cargo xtask rollback returns to the release that fit"
                    .to_owned(),
            });
        }
        let liveness = events.iter().find(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some("Unhealthy")
                && e.message.as_deref().is_some_and(|m| m.starts_with("Liveness probe failed"))
        });
        if let Some(event) = liveness {
            return Some(RestartCause {
                detail: format!(
                    "container {container} is restarted by its liveness probe ({}), {} restart(s) so far",
                    event.message.as_deref().unwrap_or_default().trim(),
                    status.restart_count
                ),
                fix: "GET /health fails inside the container: its log says why (`kubectl logs --previous`); a probe too \
                      strict for a slow start needs probes.liveness (periodSeconds, failureThreshold); cargo xtask rollback \
                      returns to the previous release"
                    .to_owned(),
            });
        }
    }
    None
}

/// A pod running as another ServiceAccount than the release's: the RBAC the release grants
/// (reading its Secrets) is not what it runs with, and whatever that account may do, it can.
pub fn foreign_service_account(pod: &Pod, release_account: &str) -> Option<Check> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    (account != release_account).then(|| {
        Check::new(
            format!("pod {name} account"),
            Outcome::Fail,
            format!(
                "runs as ServiceAccount {account}, not the release's {release_account}: it has that account's permissions, not \
                 the release's (its Role grants reading the release's Secrets)"
            ),
        )
        .with_fix(
            "the pod template was changed behind Helm's back (`kubectl get deployment -o yaml` shows serviceAccountName): \
             cargo xtask rollback returns the Deployment to Helm's record",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(restarts: i32, last_reason: &str, limit: &str, account: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "model-server-abc"},
            "spec": {"serviceAccountName": account, "containers": [{"name": "api", "resources": {"limits": {"memory": limit}}}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "api", "ready": false, "restartCount": restarts, "image": "i", "imageID": "",
                "lastState": {"terminated": {"exitCode": 137, "reason": last_reason}}
            }]}
        }))
        .unwrap()
    }

    fn event(pod: &str, reason: &str, message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": "e"}, "type": "Warning", "reason": reason, "message": message,
            "involvedObject": {"kind": "Pod", "name": pod}
        }))
        .unwrap()
    }

    #[test]
    fn an_oom_kill_is_named_with_the_limit_it_exceeded() {
        let cause = restart_cause(&pod(3, "OOMKilled", "32Mi", "model-server"), &[]).unwrap();
        assert!(cause.detail.contains("OOMKilled") && cause.detail.contains("32Mi") && cause.detail.contains("3 time"), "{cause:?}");
        assert!(cause.fix.contains("resources.limits.memory"), "{cause:?}");
        assert_eq!(restart_cause(&pod(0, "OOMKilled", "32Mi", "model-server"), &[]), None, "never restarted");
    }

    #[test]
    fn a_liveness_kill_is_named_from_the_kubelet_s_events() {
        let failing = event("model-server-abc", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 503");
        let cause = restart_cause(&pod(2, "Error", "256Mi", "model-server"), std::slice::from_ref(&failing)).unwrap();
        assert!(cause.detail.contains("liveness probe (Liveness probe failed: HTTP probe failed with statuscode: 503)"), "{cause:?}");
        assert!(cause.fix.contains("probes.liveness"), "{cause:?}");
        let readiness = event("model-server-abc", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503");
        assert_eq!(restart_cause(&pod(2, "Error", "256Mi", "model-server"), &[readiness]), None, "readiness restarts nothing");
        let elsewhere = event("model-server-other", "Unhealthy", "Liveness probe failed: timeout");
        assert_eq!(restart_cause(&pod(2, "Error", "256Mi", "model-server"), &[elsewhere]), None, "another pod's probe");
    }

    #[test]
    fn a_pod_under_another_service_account_is_named() {
        assert!(foreign_service_account(&pod(0, "", "1Gi", "model-server"), "model-server").is_none());
        let finding = foreign_service_account(&pod(0, "", "1Gi", "default"), "model-server").unwrap();
        assert_eq!(finding.outcome, Outcome::Fail);
        assert!(finding.detail.contains("runs as ServiceAccount default, not the release's model-server"), "{finding:?}");
    }
}
