//! `cargo xtask doctor`: the runbooks' troubleshooting sections as diagnoses. Each finding says
//! what is wrong, the evidence, and the fix. The pods' findings: pods.rs; the nodes': nodes.rs.
use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::Api;

use super::{findings, ownership, Flow, Target};
use crate::chart;
use crate::report::{self, Check, Outcome, Output};

pub mod nodes;
pub mod pods;

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
        checks.extend(findings::model_registry_credentials(flow.client(), t, &state.values).await);
        if state.values.external_secrets.enabled {
            checks.push(external_secrets(flow.client(), t).await);
        }
        // The release's pods and Deployments, read once for every check that looks at them.
        let release_pods = Api::<Pod>::namespaced(flow.client().clone(), &t.namespace)
            .list(&ListParams::default().labels(&chart::pod_selector(&t.release)))
            .await?
            .items;
        let deployments = ownership::deployments(flow.client(), &t.namespace, &t.release).await?;
        let events = release_warning_events(flow.client(), t, &release_pods, &deployments).await?;
        checks.extend(pods::pods(flow.client(), t, &release_pods, &state.values, &events).await);
        let read = findings::secrets_read(flow.client(), t, &release_pods).await?;
        checks.push(findings::stale_secrets(t, &release_pods, &read));
        checks.extend(rollouts(flow.client(), t).await?);
        checks.extend(admitted_now(flow.client(), t, &deployments).await);
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
        if let Some(drift) = ownership::canary_image_drift(&deployments, &t.release, &state.values) {
            checks.push(Check::new("canary image as recorded", Outcome::Fail, drift).with_fix(
                "`cargo xtask canary abort` removes the canary (stable is untouched); start a new canary with the image you meant",
            ));
        }
        checks.push(findings::no_flow_running(flow.client(), t).await);
        checks.push(nodes::nodes(flow.client(), &release_pods).await);
        checks.push(findings::warning_events(&events, k8s_openapi::jiff::Timestamp::now(), WARNING_WINDOW));
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
/// Shown as evidence beside the findings, not a verdict (a rollout leaves a readiness warning or
/// two); the pods' findings read the kubelet's probe failures from them.
async fn release_warning_events(client: &kube::Client, t: &Target, pods: &[Pod], deployments: &[Deployment]) -> Result<Vec<Event>> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let selector = ListParams::default().labels(&chart::pod_selector(&t.release));
    let mut uids = std::collections::BTreeSet::new();
    uids.extend(pods.iter().filter_map(|p| p.metadata.uid.clone()));
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), &t.namespace).list(&selector).await?.items;
    uids.extend(replica_sets.into_iter().filter_map(|r| r.metadata.uid));
    uids.extend(deployments.iter().filter_map(|d| d.metadata.uid.clone()));
    let events = Api::<Event>::namespaced(client.clone(), &t.namespace).list(&ListParams::default().fields("type=Warning")).await?.items;
    Ok(events.into_iter().filter(|e| e.involved_object.uid.as_ref().is_some_and(|uid| uids.contains(uid))).collect())
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

/// Would the cluster admit each Deployment's pods now? A pod made from its template, created
/// with `dryRun=All`: the API server runs every admission check (quotas, LimitRanges, webhooks
/// such as the image policy) and stores nothing. What a rollout's own status may never say: a
/// webhook that refuses the controller's ReplicaSet update (a scale-up after the image policy
/// changed) leaves no event and no condition, only a Deployment whose new spec is never seen.
async fn admitted_now(client: &kube::Client, t: &Target, deployments: &[Deployment]) -> Vec<Check> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &t.namespace);
    let mut checks = Vec::new();
    for deployment in deployments {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let Some(template) = deployment.spec.as_ref().map(|s| s.template.clone()) else { continue };
        let mut pod = Pod { metadata: template.metadata.unwrap_or_default(), spec: template.spec, ..Default::default() };
        pod.metadata.generate_name = Some(format!("{name}-admission-check-"));
        pod.metadata.namespace = Some(t.namespace.clone());
        let params = kube::api::PostParams { dry_run: true, field_manager: Some("shipshape-doctor".to_owned()) };
        let check = match pods.create(&params, &pod).await {
            Ok(_) => Check::new(format!("admission {name}"), Outcome::Pass, "the cluster would admit its pods now (a dry-run create)"),
            Err(kube::Error::Api(status)) if status.code == 403 || status.code == 400 || status.code == 422 => {
                Check::new(format!("admission {name}"), Outcome::Fail, format!("the cluster would refuse its pods now: {}", status.message))
                    .with_fix(crate::k8s::wait::refused_pods_advice(&status.message, &t.namespace))
            }
            Err(err) => Check::new(format!("admission {name}"), Outcome::Warn, format!("cannot ask the cluster (a dry-run create): {err}")),
        };
        checks.push(check);
    }
    checks
}

/// The runbook's "slow rollout": a Deployment not progressing, or past its deadline.
async fn rollouts(client: &kube::Client, t: &Target) -> Result<Vec<Check>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &t.namespace);
    let mut checks = Vec::new();
    // Every Deployment a release may have: stable and canary, or a blue/green release's colours.
    let colours = [chart::Slot::Blue, chart::Slot::Green].map(|slot| chart::slot_deployment(&t.release, slot));
    for name in [chart::stable_deployment(&t.release), chart::canary_deployment(&t.release)].into_iter().chain(colours) {
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
