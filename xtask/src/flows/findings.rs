//! Checks shared by `preflight` (before a deployment) and `doctor` (when something is wrong):
//! the Secrets a release references, the RBAC around them, Helm's state, the Lease.
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::Api;

use super::Target;
use crate::chart::{self, Values};
use crate::helm::record::ReleaseRecord;
use crate::k8s::lease;
use crate::report::{Check, Outcome};

/// A Secret the release's pods read, and the keys they read from it.
pub struct SecretRef {
    pub purpose: &'static str,
    pub name: String,
    pub keys: Vec<String>,
}

/// Every Secret the values make the pods read (admin token always; MLflow and database when named).
pub fn secret_refs(values: &Values) -> Vec<SecretRef> {
    let env = &values.env;
    let (admin, admin_key) = values.admin_token_secret();
    let mut refs = vec![SecretRef { purpose: "admin token", name: admin, keys: vec![admin_key] }];
    if !env.mlflow_credentials_secret_name.is_empty() {
        refs.push(SecretRef {
            purpose: "MLflow credentials",
            name: env.mlflow_credentials_secret_name.clone(),
            keys: vec![env.mlflow_username_key.clone(), env.mlflow_password_key.clone()],
        });
    }
    if !env.database_url_secret_name.is_empty() {
        refs.push(SecretRef {
            purpose: "database URL",
            name: env.database_url_secret_name.clone(),
            keys: vec![env.database_url_secret_key.clone()],
        });
    }
    refs
}

/// MLflow takes the credentials in the release's Secret for the model its `modelUri` names (an
/// in-cluster MLflow): a password changed in MLflow but not in the Secret, or the other way
/// round, leaves every new pod unready (it never loads its model). None where the model is not
/// on an MLflow shipshape reaches, or the Secret cannot be read (`secrets_present` says so).
pub async fn model_registry_credentials(client: &kube::Client, target: &Target, values: &Values) -> Option<Check> {
    const NAME: &str = "MLflow takes the credentials";
    let artifact = crate::mlflow::ModelArtifact::from_model_uri(&values.env.model_uri)?;
    let env = &values.env;
    if env.mlflow_credentials_secret_name.is_empty() {
        return None;
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let secret = &env.mlflow_credentials_secret_name;
    let user = crate::mlflow::Credentials::from_secret(&api, secret, &env.mlflow_username_key, &env.mlflow_password_key).await.ok()?;
    let server = &artifact.server;
    Some(match artifact.status_for(client, &user).await {
        Ok(200) => Check::new(NAME, Outcome::Pass, format!("MLflow ({}/{}) serves the model to user {} with the password in Secret {secret}", server.namespace, server.service, user.username)),
        Ok(status @ (401 | 403)) => Check::new(
            NAME,
            Outcome::Fail,
            format!("MLflow answers {status} to user {} with the password in Secret {secret}: pods that start now never load their model", user.username),
        )
        .with_fix(format!(
            "put MLflow's password in the Secret and restart: `cargo xtask rotate-secret mlflow --env {} --value-from stdin` (or change it in MLflow too: --set-in-mlflow)",
            target.env.name()
        )),
        Ok(status) => Check::new(NAME, Outcome::Warn, format!("MLflow answers {status} for the model ({}): is that model version registered?", values.env.model_uri)),
        Err(err) => Check::new(NAME, Outcome::Warn, format!("MLflow ({}/{}) could not be asked: {err:#}", server.namespace, server.service))
            .with_fix(format!("`kubectl get pods -n {}`: MLflow must run for pods to load their model", server.namespace)),
    })
}

/// Each referenced Secret exists and has its keys (values are never read out).
pub async fn secrets_present(client: &kube::Client, target: &Target, values: &Values) -> Vec<Check> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let mut checks = Vec::new();
    for secret in secret_refs(values) {
        let name = format!("secret {}", secret.purpose);
        let how = if values.external_secrets.enabled {
            "External Secrets Operator creates it from the ExternalSecret: check its status (cargo xtask doctor)".to_owned()
        } else if values.sealed_secrets.enabled {
            "the Sealed Secrets controller creates it from the SealedSecret: check that the controller runs".to_owned()
        } else {
            format!(
                "create it without putting the value on a command line, e.g. `kubectl create secret generic {} -n {} {}`",
                secret.name,
                target.namespace,
                secret.keys.iter().map(|k| format!("--from-file={k}=<file>")).collect::<Vec<_>>().join(" ")
            )
        };
        match api.get_opt(&secret.name).await {
            Ok(None) => checks
                .push(Check::new(name, Outcome::Fail, format!("Secret {} not found in {}", secret.name, target.namespace)).with_fix(how)),
            Ok(Some(found)) => {
                let data = found.data.unwrap_or_default();
                let missing: Vec<&String> = secret.keys.iter().filter(|k| !data.contains_key(*k)).collect();
                let empty: Vec<&String> = secret.keys.iter().filter(|k| data.get(*k).is_some_and(|v| v.0.is_empty())).collect();
                if !missing.is_empty() {
                    let has: Vec<&String> = data.keys().collect();
                    checks.push(
                        Check::new(name, Outcome::Fail, format!("Secret {} lacks key(s) {missing:?} (it has {has:?})", secret.name))
                            .with_fix("add the key, or point the release's env.*Key value at the key the Secret has"),
                    );
                } else if !empty.is_empty() {
                    checks
                        .push(Check::new(name, Outcome::Fail, format!("Secret {} has empty key(s) {empty:?}", secret.name)).with_fix(how));
                } else {
                    checks.push(Check::new(name, Outcome::Pass, format!("Secret {} has {:?}", secret.name, secret.keys)));
                }
            }
            Err(err) => checks.push(
                Check::new(name, Outcome::Fail, format!("cannot read Secret {}: {err}", secret.name))
                    .with_fix("your own credentials cannot read Secrets in this namespace: ask for get on secrets"),
            ),
        }
    }
    checks
}

/// The ServiceAccount, Role and RoleBinding exist, and RBAC lets the ServiceAccount get each
/// referenced Secret (asked of the API server itself with a SubjectAccessReview).
pub async fn rbac(client: &kube::Client, target: &Target, values: &Values, installed: bool) -> Vec<Check> {
    let full = chart::fullname(&target.release);
    let account = values.service_account_name(&target.release);
    if !installed {
        return vec![Check::new(
            "rbac objects",
            Outcome::Pass,
            format!("release not installed yet: the chart creates ServiceAccount {account}, Role and RoleBinding {full}"),
        )];
    }
    let ns = &target.namespace;
    let (accounts, roles, bindings) = (
        Api::<ServiceAccount>::namespaced(client.clone(), ns),
        Api::<Role>::namespaced(client.clone(), ns),
        Api::<RoleBinding>::namespaced(client.clone(), ns),
    );
    let (sa, role, binding) = futures::join!(accounts.get_opt(&account), roles.get_opt(&full), bindings.get_opt(&full));
    let mut missing = Vec::new();
    if !matches!(sa, Ok(Some(_))) {
        missing.push(format!("ServiceAccount {account}"));
    }
    if !matches!(role, Ok(Some(_))) {
        missing.push(format!("Role {full}"));
    }
    match &binding {
        Ok(Some(b)) => {
            let binds_account = b.subjects.iter().flatten().any(|s| s.kind == "ServiceAccount" && s.name == account);
            if !binds_account {
                missing.push(format!("RoleBinding {full} subject ServiceAccount {account}"));
            }
        }
        _ => missing.push(format!("RoleBinding {full}")),
    }
    let mut checks = vec![if missing.is_empty() {
        Check::new("rbac objects", Outcome::Pass, format!("ServiceAccount {account}, Role and RoleBinding {full} exist and are linked"))
    } else {
        Check::new("rbac objects", Outcome::Fail, format!("missing: {}", missing.join(", ")))
            .with_fix("the chart creates them (serviceAccount.create, rbac.create): deploy again, or check that nobody deleted them")
    }];
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    let mut denied = Vec::new();
    let refs = secret_refs(values);
    for secret in &refs {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{ns}:{account}")),
                groups: Some(vec!["system:serviceaccounts".to_owned(), format!("system:serviceaccounts:{ns}")]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns.clone()),
                    verb: Some("get".to_owned()),
                    resource: Some("secrets".to_owned()),
                    name: Some(secret.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(answer) => denied.push(format!(
                "get secret {} denied{}",
                secret.name,
                answer.status.and_then(|s| s.reason).filter(|r| !r.is_empty()).map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            Err(err) => denied.push(format!("cannot ask the API server about secret {}: {err}", secret.name)),
        }
    }
    checks.push(if denied.is_empty() {
        Check::new("rbac allows", Outcome::Pass, format!("ServiceAccount {account} may get {} Secret(s)", refs.len()))
    } else {
        Check::new("rbac allows", Outcome::Fail, denied.join("; "))
            .with_fix(format!("Role {full} must allow get on these Secrets by name and RoleBinding {full} must bind it to {account}"))
    });
    checks
}

/// No Helm operation left half-done.
pub fn helm_not_pending(state: &ReleaseRecord) -> Check {
    match state.current() {
        None => Check::new("helm release", Outcome::Pass, "not installed yet (the first deploy installs it)"),
        Some(current) if current.is_pending() => Check::new(
            "helm release",
            Outcome::Fail,
            format!(
                "revision {} is {} since {}: an operation was interrupted and helm refuses changes",
                current.revision, current.status, current.updated
            ),
        )
        .with_fix("cargo xtask rollback (it clears the stuck revision and returns to the last deployed one)"),
        Some(current) if current.status == "failed" => {
            let served = state
                .deployed()
                .map(|r| format!("revision {} is what serves", r.revision))
                .unwrap_or_else(|| "no revision is deployed".to_owned());
            Check::new(
                "helm release",
                Outcome::Warn,
                format!(
                    "the last operation failed (revision {}: {}); {served}",
                    current.revision,
                    current.description.lines().next().unwrap_or_default()
                ),
            )
            .with_fix("cargo xtask doctor says why; deploy again or cargo xtask rollback")
        }
        Some(current) => Check::new("helm release", Outcome::Pass, format!("revision {} {}", current.revision, current.status)),
    }
}

/// No other shipshape flow is running on the release.
pub async fn no_flow_running(client: &kube::Client, target: &Target) -> Check {
    match lease::current_holder(client, &target.namespace, &target.lease_name()).await {
        Ok(None) => Check::new("no flow running", Outcome::Pass, "no shipshape flow holds the release"),
        Ok(Some(holder)) => Check::new("no flow running", Outcome::Warn, format!("a flow is running: {holder}"))
            .with_fix("wait for it (cargo xtask status); a dead run's lease expires within a minute"),
        Err(err) => Check::new("no flow running", Outcome::Fail, format!("cannot read the Lease: {err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_secrets_a_release_reads_come_from_its_values_each_with_its_keys() {
        let dev = Values::of(&json!({"env": {"adminTokenSecretName": "admin", "adminTokenSecretKey": "token"}})).unwrap();
        let names: Vec<(&str, String, Vec<String>)> = secret_refs(&dev).into_iter().map(|r| (r.purpose, r.name, r.keys)).collect();
        assert_eq!(names, [("admin token", "admin".to_owned(), vec!["token".to_owned()])], "dev reads the admin token alone");

        let prod = Values::of(&json!({"env": {
            "adminTokenSecretName": "admin", "adminTokenSecretKey": "token",
            "mlflowCredentialsSecretName": "mlflow", "mlflowUsernameKey": "user", "mlflowPasswordKey": "pass",
            "databaseUrlSecretName": "db", "databaseUrlSecretKey": "url",
        }}))
        .unwrap();
        let refs = secret_refs(&prod);
        assert_eq!(refs.iter().map(|r| r.purpose).collect::<Vec<_>>(), ["admin token", "MLflow credentials", "database URL"]);
        assert_eq!(refs[1].keys, ["user", "pass"]);
        assert_eq!((refs[2].name.as_str(), refs[2].keys.as_slice()), ("db", ["url".to_owned()].as_slice()));
    }

    #[test]
    fn helm_s_state_is_a_finding_with_the_way_out() {
        let check = |statuses: &[&str]| helm_not_pending(&ReleaseRecord::with_history(statuses, json!({})));
        assert_eq!(check(&[]).outcome, Outcome::Pass, "not installed yet");
        assert_eq!(check(&["superseded", "deployed"]).outcome, Outcome::Pass);

        let stuck = check(&["deployed", "pending-upgrade"]);
        assert_eq!(stuck.outcome, Outcome::Fail);
        assert!(stuck.detail.contains("revision 2 is pending-upgrade") && stuck.fix.as_deref().unwrap_or_default().contains("rollback"));

        let failed = check(&["deployed", "failed"]);
        assert_eq!(failed.outcome, Outcome::Warn, "a failed upgrade leaves the last deployed revision serving");
        assert!(failed.detail.contains("revision 1 is what serves"), "{}", failed.detail);
        assert!(check(&["failed"]).detail.contains("no revision is deployed"));
    }
}

/// When a Secret's value last changed: the newest write of a field manager that owns its data
/// (each manager's entry records when it last changed a field it owns), else its creation. A
/// manager that only owns metadata (the handover's owner references, a label) changed no value:
/// counting it told pods that hold the current value to restart (seen after every switch of
/// delivery method). An entry that does not say which fields it owns counts.
pub fn last_changed(secret: &Secret) -> Option<k8s_openapi::jiff::Timestamp> {
    let owns_data = |m: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        m.fields_v1.as_ref().is_none_or(|f| f.0.get("f:data").is_some() || f.0.get("f:stringData").is_some())
    };
    let writes = secret.metadata.managed_fields.iter().flatten().filter(owns_data).filter_map(|m| m.time.as_ref().map(|t| t.0));
    writes.max().or_else(|| secret.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The Secrets a pod reads: env `secretKeyRef`, `envFrom` and secret volumes, by name.
pub fn secrets_read_by(pod: &k8s_openapi::api::core::v1::Pod) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else { return names };
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for env in container.env.iter().flatten() {
            names.extend(env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        }
        for from in container.env_from.iter().flatten() {
            names.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    for volume in spec.volumes.iter().flatten() {
        names.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
    }
    names
}

/// The Secrets `pods` read, each as the API has it now (None: it does not exist), read once for
/// the checks that look at them ([`stale_secrets`], verify's missing ones).
pub async fn secrets_read(
    client: &kube::Client,
    t: &Target,
    pods: &[k8s_openapi::api::core::v1::Pod],
) -> anyhow::Result<std::collections::BTreeMap<String, Option<Secret>>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &t.namespace);
    let mut read = std::collections::BTreeMap::new();
    for name in pods.iter().flat_map(secrets_read_by).collect::<std::collections::BTreeSet<_>>() {
        let secret = secrets.get_opt(&name).await?;
        read.insert(name, secret);
    }
    Ok(read)
}

/// Pods holding a Secret's old value ([`stale_pods`]), judged from the Secrets they read
/// ([`secrets_read`]), with this release's restart as the fix: a Helm revision (restartedAt),
/// not `kubectl rollout restart` behind Helm's back.
pub fn stale_secrets(
    t: &Target,
    pods: &[k8s_openapi::api::core::v1::Pod],
    read: &std::collections::BTreeMap<String, Option<Secret>>,
) -> Check {
    // A missing Secret is the secret checks' finding, not this one's.
    let changed = read.iter().filter_map(|(name, secret)| Some((name.clone(), last_changed(secret.as_ref()?)?))).collect();
    let fix = format!(
        "restart them as a Helm revision: cargo xtask restart --env {} --namespace {} (`cargo xtask rotate-secret` restarts \
         them itself after a rotation; one killed after it wrote the Secret leaves this to do)",
        t.env.name(),
        t.namespace
    );
    stale_pods(pods, &changed, &fix)
}

/// The troubleshooting case "pods still use the old value after a Secret update": a pod whose
/// containers started before a Secret it reads last changed holds the old value (env is read
/// once, at start; the server reads its token and database URL at start too). `changed` maps
/// each Secret's name to [`last_changed`]; `fix` is how this release restarts its pods.
pub fn stale_pods(
    pods: &[k8s_openapi::api::core::v1::Pod],
    changed: &std::collections::BTreeMap<String, k8s_openapi::jiff::Timestamp>,
    fix: &str,
) -> Check {
    let mut stale = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        let started = statuses.into_iter().flatten().filter_map(|c| Some(c.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0)).min();
        let Some(started) = started else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        for secret in secrets_read_by(pod) {
            if let Some(when) = changed.get(&secret).filter(|when| **when > started) {
                stale.push(format!("pod {name} started {started} and reads Secret {secret}, changed since ({when})"));
            }
        }
    }
    if stale.is_empty() {
        return Check::new("pods hold current Secrets", Outcome::Pass, "every pod started after the Secrets it reads last changed");
    }
    Check::new("pods hold current Secrets", Outcome::Warn, format!("{}: they hold the old values until restarted", stale.join("; ")))
        .with_fix(fix.to_owned())
}

/// Warning events newer than `window`, the same reason and message told once (with how many
/// times), newest first, at most five: evidence, so the check passes whatever they say.
pub fn warning_events(
    events: &[k8s_openapi::api::core::v1::Event],
    now: k8s_openapi::jiff::Timestamp,
    window: std::time::Duration,
) -> Check {
    const SHOWN: usize = 5;
    let since = now - k8s_openapi::jiff::SignedDuration::try_from(window).unwrap_or_default();
    // (last seen, reason, message, object, count) per reason and message.
    let mut seen: Vec<(k8s_openapi::jiff::Timestamp, String, String, String, i32)> = Vec::new();
    for event in events.iter().filter(|e| e.type_.as_deref() == Some("Warning")) {
        let when = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
            .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let Some(when) = when.filter(|when| *when >= since) else { continue };
        let reason = event.reason.clone().unwrap_or_default();
        let message = event.message.clone().unwrap_or_default().trim().to_owned();
        let object = format!(
            "{}/{}",
            event.involved_object.kind.as_deref().unwrap_or("object").to_lowercase(),
            event.involved_object.name.as_deref().unwrap_or_default()
        );
        let count = event.count.unwrap_or(1).max(1);
        match seen.iter_mut().find(|s| s.1 == reason && s.2 == message) {
            Some(entry) => {
                entry.4 += count;
                if when > entry.0 {
                    (entry.0, entry.3) = (when, object);
                }
            }
            None => seen.push((when, reason, message, object, count)),
        }
    }
    let name = "recent Warning events";
    let minutes = window.as_secs() / 60;
    if seen.is_empty() {
        return Check::new(name, Outcome::Pass, format!("none for the release's objects in the last {minutes} minutes"));
    }
    seen.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let told: Vec<String> = seen
        .iter()
        .take(SHOWN)
        .map(|(_, reason, message, object, count)| {
            let times = if *count > 1 { format!(", {count} times") } else { String::new() };
            format!("{reason} ({object}{times}): {message}")
        })
        .collect();
    let more = if seen.len() > SHOWN { format!("; {} more", seen.len() - SHOWN) } else { String::new() };
    Check::new(
        name,
        Outcome::Pass,
        format!("{} in the last {minutes} minutes, newest first (evidence for the findings above): {}{more}", seen.len(), told.join("; ")),
    )
}

#[cfg(test)]
mod events_tests {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use crate::report::Outcome;

    fn event(kind: &str, reason: &str, message: &str, object: &str, at: &str, count: i32) -> Event {
        Event {
            type_: Some(kind.to_owned()),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            involved_object: ObjectReference { kind: Some("Pod".to_owned()), name: Some(object.to_owned()), ..Default::default() },
            last_timestamp: Some(Time(at.parse().unwrap())),
            count: Some(count),
            ..Default::default()
        }
    }

    #[test]
    fn warnings_are_told_once_each_newest_first_within_the_window() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let window = std::time::Duration::from_secs(15 * 60);
        let events = [
            event("Warning", "BackOff", "Back-off restarting failed container api", "model-server-a", "2026-12-05T11:58:00Z", 4),
            event("Warning", "BackOff", "Back-off restarting failed container api", "model-server-b", "2026-12-05T11:59:00Z", 2),
            event("Warning", "Unhealthy", "Readiness probe failed: 503", "model-server-a", "2026-12-05T11:50:00Z", 1),
            event("Warning", "FailedScheduling", "0/4 nodes are available", "model-server-c", "2026-12-05T11:30:00Z", 1),
            event("Normal", "Pulled", "Container image pulled", "model-server-a", "2026-12-05T11:59:30Z", 1),
        ];
        let check = super::warning_events(&events, now, window);
        assert_eq!(check.outcome, Outcome::Pass, "evidence, not a verdict");
        assert!(check.detail.starts_with("2 in the last 15 minutes"), "{}", check.detail);
        let backoff = check.detail.find("BackOff (pod/model-server-b, 6 times)").expect(&check.detail);
        let unhealthy = check.detail.find("Unhealthy (pod/model-server-a)").expect(&check.detail);
        assert!(backoff < unhealthy, "newest first: {}", check.detail);
        assert!(!check.detail.contains("FailedScheduling") && !check.detail.contains("Pulled"), "{}", check.detail);
        assert!(super::warning_events(&events[4..], now, window).detail.starts_with("none"));
    }
}

#[cfg(test)]
mod stale_tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStatus, EnvVar, EnvVarSource, Pod, PodSpec, PodStatus, Secret,
        SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::Timestamp;

    use crate::report::Outcome;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn pod(name: &str, reads: &str, started: &str) -> Pod {
        let env = EnvVar {
            name: "ADMIN_TOKEN".to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name: reads.to_owned(), key: "token".to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container { name: "api".to_owned(), env: Some(vec![env]), ..Default::default() }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "api".to_owned(),
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning { started_at: Some(Time(at(started))) }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.name = Some(name.to_owned());
        pod
    }

    #[test]
    fn a_secret_changes_time_is_its_newest_write() {
        let mut secret = Secret::default();
        secret.metadata.creation_timestamp = Some(Time(at("2026-12-01T10:00:00Z")));
        assert_eq!(super::last_changed(&secret), Some(at("2026-12-01T10:00:00Z")), "never written since its creation");
        secret.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry { time: Some(Time(at("2026-12-02T10:00:00Z"))), ..Default::default() },
            ManagedFieldsEntry { time: Some(Time(at("2026-12-03T10:00:00Z"))), ..Default::default() },
        ]);
        assert_eq!(super::last_changed(&secret), Some(at("2026-12-03T10:00:00Z")));
        // A later write of metadata alone (the handover's owner references) is not a new value.
        let fields = |json: serde_json::Value| Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(json));
        secret.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry {
                manager: Some("kube-rs".into()),
                time: Some(Time(at("2026-12-03T10:00:00Z"))),
                fields_v1: fields(serde_json::json!({"f:data": {"f:token": {}}})),
                ..Default::default()
            },
            ManagedFieldsEntry {
                manager: Some(crate::flows::handover::HANDOVER_MANAGER.into()),
                time: Some(Time(at("2026-12-04T10:00:00Z"))),
                fields_v1: fields(serde_json::json!({"f:metadata": {"f:ownerReferences": {}}})),
                ..Default::default()
            },
        ]);
        assert_eq!(super::last_changed(&secret), Some(at("2026-12-03T10:00:00Z")), "the data's newest write");
    }

    #[test]
    fn pods_started_before_a_secret_they_read_changed_are_named_with_the_fix() {
        let pods = [
            pod("old", "model-server-admin-token", "2026-12-05T09:00:00Z"),
            pod("new", "model-server-admin-token", "2026-12-05T11:00:00Z"),
        ];
        let changed = BTreeMap::from([("model-server-admin-token".to_owned(), at("2026-12-05T10:00:00Z"))]);
        let check = super::stale_pods(&pods, &changed, "restart them");
        assert_eq!(check.outcome, Outcome::Warn);
        assert!(check.detail.contains("pod old started") && !check.detail.contains("pod new"), "{}", check.detail);
        assert_eq!(check.fix.as_deref(), Some("restart them"));

        let unrelated = BTreeMap::from([("another-secret".to_owned(), at("2026-12-05T10:00:00Z"))]);
        assert_eq!(super::stale_pods(&pods, &unrelated, "").outcome, Outcome::Pass, "a Secret no pod reads");
        let earlier = BTreeMap::from([("model-server-admin-token".to_owned(), at("2026-12-05T08:00:00Z"))]);
        assert_eq!(super::stale_pods(&pods, &earlier, "").outcome, Outcome::Pass, "changed before every pod started");
        assert!(super::secrets_read_by(&pods[0]).contains("model-server-admin-token"));
    }
}
