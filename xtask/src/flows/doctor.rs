//! `cargo xtask doctor`: the runbooks' troubleshooting sections as diagnoses. Each finding says
//! what is wrong, the evidence, and the fix.
use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::Api;

use super::{findings, ownership, Flow, Target};
use crate::chart;
use crate::k8s::wait;
use crate::report::{self, Check, Outcome, Output};

/// Lines of a crashed container's previous log shown as evidence.
const CRASH_LOG_LINES: i64 = 10;

/// `cargo xtask doctor`: the findings, printed (or as JSON), in the step summary too.
pub fn show(flow: &Flow, output: Output) -> Result<Outcome> {
    let checks = doctor(flow)?;
    report::emit("doctor", &flow.target.namespace, &checks, output, "findings", |outcome| {
        if outcome == Outcome::Pass { "nothing wrong found" } else { "problems found (fixes above)" }.to_owned()
    })
}

/// The troubleshooting sections' checks on the flow's target.
pub fn doctor(flow: &Flow) -> Result<Vec<Check>> {
    let t = &flow.target;
    let state = flow.record()?;
    let mut checks = vec![findings::helm_not_pending(&state)];
    if !state.is_installed() {
        checks.push(
            Check::new("release", Outcome::Fail, format!("release {} is not installed in {}", t.release, t.namespace))
                .with_fix(format!("cargo xtask preflight --env {0}, then cargo xtask deploy --env {0} --tag <tag>", t.env.name())),
        );
        return Ok(checks);
    }
    flow.block_on(async {
        checks.extend(findings::secrets_present(flow.client(), t, &state.values).await);
        checks.extend(findings::rbac(flow.client(), t, &state.values, true).await);
        if state.values.external_secrets.enabled {
            checks.push(external_secrets(flow.client(), t).await);
        }
        // The release's pods and Deployments, read once for every check that looks at them.
        let release_pods = Api::<Pod>::namespaced(flow.client().clone(), &t.namespace)
            .list(&ListParams::default().labels(&chart::pod_selector(&t.release)))
            .await?
            .items;
        let deployments = ownership::deployments(flow.client(), &t.namespace, &t.release).await?;
        checks.extend(pods(flow.client(), t, &release_pods).await);
        checks.push(findings::stale_secrets(flow.client(), t, &release_pods, &state.values.image.tag).await?);
        checks.extend(rollouts(flow.client(), t).await?);
        checks.push(match ownership::drift(flow.client(), &t.namespace, &t.release, &state).await? {
            None => Check::new("helm owns the release", Outcome::Pass, "the Deployment runs what Helm applied"),
            Some(drift) => Check::new("helm owns the release", Outcome::Warn, drift.to_string())
                .with_fix("cargo xtask rollback (or deploy) returns the Deployment to a Helm revision"),
        });
        let drift = ownership::replica_drift(&deployments, &t.release, &state.values);
        checks.push(if drift.is_empty() {
            Check::new("replicas as recorded", Outcome::Pass, "every Deployment runs the replica count Helm's record gives it")
        } else {
            let drift: Vec<String> = drift.iter().map(|d| d.to_string()).collect();
            Check::new("replicas as recorded", Outcome::Warn, format!("{}: the traffic split is not the one recorded", drift.join("; ")))
                .with_fix(
                    "a running canary: `cargo xtask canary abort` or `canary resume` takes the record back; otherwise `cargo xtask deploy`",
                )
        });
        checks.push(findings::no_flow_running(flow.client(), t).await);
        checks.push(nodes(flow.client(), &release_pods).await);
        checks.push(recent_warnings(flow.client(), t, &release_pods, &deployments).await?);
        anyhow::Ok(())
    })?;
    checks.push(match super::canary::disagreement(flow, &state)? {
        None => Check::new("journal and cluster agree", Outcome::Pass, "no canary under way that someone changed behind it"),
        Some(said) => Check::new("journal and cluster agree", Outcome::Warn, said)
            .with_fix("`cargo xtask canary abort` ends the canary (promote and resume refuse); then start a new one"),
    });
    Ok(checks)
}

/// How far back the Warning events doctor shows go.
const WARNING_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The TenSafe runbook's first diagnosis step (`kubectl get events --sort-by=.lastTimestamp`),
/// for the release's own objects only: its Deployments, ReplicaSets and pods as they are now.
/// Evidence beside the findings, not a verdict (a rollout leaves a readiness warning or two).
async fn recent_warnings(client: &kube::Client, t: &Target, pods: &[Pod], deployments: &[Deployment]) -> Result<Check> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Event;
    let selector = ListParams::default().labels(&chart::pod_selector(&t.release));
    let mut uids = std::collections::BTreeSet::new();
    uids.extend(pods.iter().filter_map(|p| p.metadata.uid.clone()));
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), &t.namespace).list(&selector).await?.items;
    uids.extend(replica_sets.into_iter().filter_map(|r| r.metadata.uid));
    uids.extend(deployments.iter().filter_map(|d| d.metadata.uid.clone()));
    let events = Api::<Event>::namespaced(client.clone(), &t.namespace).list(&ListParams::default().fields("type=Warning")).await?.items;
    let ours: Vec<Event> = events.into_iter().filter(|e| e.involved_object.uid.as_ref().is_some_and(|uid| uids.contains(uid))).collect();
    Ok(findings::warning_events(&ours, k8s_openapi::jiff::Timestamp::now(), WARNING_WINDOW))
}

/// The nodes the release's pods run on, as the troubleshooting sections read them (`kubectl get
/// nodes`, `describe nodes`): cordoned ones (a drain, an upgrade), not Ready ones, and pressure.
async fn nodes(client: &kube::Client, pods: &[Pod]) -> Check {
    use k8s_openapi::api::core::v1::Node;
    let nodes = match Api::<Node>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(err) => {
            return Check::new("nodes", Outcome::Pass, format!("not read ({}): nodes are cluster-wide", crate::k8s::in_words(&err)))
        }
    };
    let on = |node: &str| pods.iter().filter(|p| crate::k8s::pods::node_of(p) == Some(node)).count();
    node_findings(&nodes, on)
}

/// The nodes' state in words (`pods_on`: how many of the release's pods a node runs).
pub fn node_findings(nodes: &[k8s_openapi::api::core::v1::Node], pods_on: impl Fn(&str) -> usize) -> Check {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind).map(|c| c.status == "True");
        if condition("Ready") != Some(true) {
            problems.push(format!("node {name} is not Ready ({} of the release's pods on it)", pods_on(&name)));
        }
        for pressure in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            if condition(pressure) == Some(true) {
                warnings.push(format!("node {name} reports {pressure}"));
            }
        }
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            warnings.push(format!(
                "node {name} is cordoned (SchedulingDisabled: drained, or being upgraded): no new pod starts there, {} of the \
                 release's pods run on it; `kubectl uncordon {name}` once its maintenance is done",
                pods_on(&name)
            ));
        }
    }
    match (problems.is_empty(), warnings.is_empty()) {
        (true, true) => Check::new("nodes", Outcome::Pass, format!("{} node(s) Ready and schedulable, no pressure", nodes.len())),
        (true, false) => Check::new("nodes", Outcome::Warn, warnings.join("; ")),
        (false, _) => Check::new("nodes", Outcome::Fail, problems.into_iter().chain(warnings).collect::<Vec<_>>().join("; "))
            .with_fix("`kubectl describe node <name>` says why; the pods on it are rescheduled once it is gone"),
    }
}

/// ExternalSecret objects Ready (the runbook's `SecretSyncedError` diagnosis).
async fn external_secrets(client: &kube::Client, t: &Target) -> Check {
    let api = crate::k8s::external_secrets::external_secrets(client, &t.namespace);
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Check::new("external secrets", Outcome::Fail, "the ExternalSecret kind does not exist in this cluster")
                .with_fix("install External Secrets Operator (external-secrets.io/v1), or deploy with externalSecrets.enabled=false")
        }
        Err(err) => Check::new("external secrets", Outcome::Fail, format!("cannot list ExternalSecrets: {err}")),
        Ok(list) => {
            let mut bad = Vec::new();
            for object in &list.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                match crate::k8s::external_secrets::ready(object) {
                    Some(ready) if ready.status => {}
                    Some(ready) => {
                        let why = crate::k8s::external_secrets::last_warning(client, &t.namespace, &name).await;
                        bad.push(format!("{name}: {ready}{}", why.map(|(w, _)| format!(" ({w})")).unwrap_or_default()));
                    }
                    None => bad.push(format!("{name}: not synced yet")),
                }
            }
            if bad.is_empty() {
                Check::new("external secrets", Outcome::Pass, format!("{} ExternalSecret(s) synced", list.items.len()))
            } else {
                Check::new("external secrets", Outcome::Fail, bad.join("; ")).with_fix(
                    "check the SecretStore, that the key exists in the external store, its credentials, and the operator's logs \
                     (kubectl logs -n external-secrets-system -l app.kubernetes.io/name=external-secrets)",
                )
            }
        }
    }
}

/// The pods' troubles: cannot read their Secret, Pending, crash-looping, image pull errors,
/// running but never ready.
async fn pods(client: &kube::Client, t: &Target, pods: &[Pod]) -> Vec<Check> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &t.namespace);
    let mut checks = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        if let Some(reason) = wait::stuck_reason(pod) {
            let waiting = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .unwrap_or_default();
            let check = match waiting.as_str() {
                "CreateContainerConfigError" => {
                    Check::new(format!("pod {name}"), Outcome::Fail, format!("cannot read its secret: {reason}"))
                        .with_fix("the Secret or key it names is missing: see the secret checks above; pods start once it exists")
                }
                "CrashLoopBackOff" => {
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
        if status.phase.as_deref() == Some("Pending") {
            let why = wait::unschedulable(pod).unwrap_or_else(|| "waiting to start".to_owned());
            checks.push(Check::new(format!("pod {name}"), Outcome::Fail, format!("Pending: {why}")).with_fix(
                "insufficient resources (quotas, node capacity), node selectors or affinity: compare the pod's requests with the nodes",
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

/// The runbook's "slow rollout": a Deployment not progressing, or past its deadline.
async fn rollouts(client: &kube::Client, t: &Target) -> Result<Vec<Check>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &t.namespace);
    let mut checks = Vec::new();
    for name in [chart::stable_deployment(&t.release), chart::canary_deployment(&t.release)] {
        let Some(deployment) = api.get_opt(&name).await? else { continue };
        let status = deployment.status.clone().unwrap_or_default();
        let progressing = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing");
        // Judged as the waits judge it: every replica of the current template updated, ready and
        // available, and no old pod left (a ready old pod beside a stuck new one is no rollout).
        let refused = crate::k8s::wait::pods_refused(&deployment);
        let check = match crate::k8s::wait::rollout_state(&deployment) {
            _ if refused.is_some() => Check::new(format!("rollout {name}"), Outcome::Fail, refused.unwrap_or_default())
                .with_fix("once the cluster admits them (the detail says what refuses them), the controller creates the pods by itself; or `cargo xtask rollback`"),
            _ if progressing.is_some_and(|c| c.status == "False") => Check::new(
                format!("rollout {name}"),
                Outcome::Fail,
                format!("stalled: {}", progressing.and_then(|c| c.message.clone()).unwrap_or_default()),
            )
            .with_fix("the pod findings above say why; cargo xtask rollback returns to the previous release"),
            Ok(done) => Check::new(format!("rollout {name}"), Outcome::Pass, done),
            Err(waiting) => Check::new(format!("rollout {name}"), Outcome::Warn, format!("not rolled out: {waiting}"))
                .with_fix("the pod findings above say why (a new pod stuck in ImagePullBackOff, CrashLoopBackOff, Pending); cargo xtask rollback returns to Helm's record"),
        };
        checks.push(check);
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, cordoned: bool, pressure: Option<&str>) -> k8s_openapi::api::core::v1::Node {
        let mut conditions = vec![serde_json::json!({"type": "Ready", "status": if ready { "True" } else { "False" }})];
        if let Some(kind) = pressure {
            conditions.push(serde_json::json!({"type": kind, "status": "True"}));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"unschedulable": cordoned},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn nodes_drained_lost_or_under_pressure_are_named_with_what_runs_there() {
        let healthy = [node("w1", true, false, None), node("w2", true, false, None)];
        assert_eq!(node_findings(&healthy, |_| 3).outcome, Outcome::Pass);
        let drained = [node("w1", true, false, None), node("w2", true, true, None)];
        let said = node_findings(&drained, |n| if n == "w2" { 0 } else { 5 });
        assert_eq!(said.outcome, Outcome::Warn);
        assert!(
            said.detail.contains("node w2 is cordoned")
                && said.detail.contains("0 of the release's pods")
                && said.detail.contains("kubectl uncordon w2"),
            "{said:?}"
        );
        let lost = [node("w1", false, false, Some("DiskPressure"))];
        let said = node_findings(&lost, |_| 4);
        assert_eq!(said.outcome, Outcome::Fail);
        assert!(said.detail.contains("w1 is not Ready (4 of") && said.detail.contains("DiskPressure") && said.fix.is_some(), "{said:?}");
    }
}
