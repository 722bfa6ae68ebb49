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
    let name = &values.service_account.name;
    let account = if name.is_empty() { full.clone() } else { name.clone() };
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
