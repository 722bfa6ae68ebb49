//! A release's Secrets when the way they are delivered changes (manual, sealed, external: an
//! environment's values switching methods, or a rollback across such a switch): each Secret is
//! handed from its old owner to its new one before Helm makes the change, so it exists, with a
//! value the pods can use, at every moment.
//!
//! Left alone, two things go wrong (both seen on kind): Helm deletes the SealedSecret or
//! ExternalSecret that owned the Secret, and Kubernetes' garbage collector deletes the Secret
//! with it (the pods keep the value until their next restart, which then fails); and the Sealed
//! Secrets controller refuses a Secret it did not create ("already exists and is not managed by
//! SealedSecret"). External Secrets Operator adopts a Secret no other controller owns, and
//! refuses one a SealedSecret owns.
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::chart::Values;

/// Who makes a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nobody but the people and commands that write it (shipshape's `up`, `rotate-secret`).
    Manual,
    /// The Sealed Secrets controller, from the release's SealedSecret.
    Sealed,
    /// External Secrets Operator, from the release's ExternalSecret.
    External,
}

impl Delivery {
    /// The kind of the object that owns a Secret so delivered.
    fn owner_kind(self) -> Option<&'static str> {
        match self {
            Delivery::Manual => None,
            Delivery::Sealed => Some("SealedSecret"),
            Delivery::External => Some("ExternalSecret"),
        }
    }

    fn in_words(self) -> &'static str {
        match self {
            Delivery::Manual => "by hand (rotate-secret --method manual)",
            Delivery::Sealed => "by the Sealed Secrets controller",
            Delivery::External => "by External Secrets Operator",
        }
    }
}

/// How `values` deliver Secret `name`: the chart renders a SealedSecret or an ExternalSecret for
/// the admin token whenever the method is on, and for MLflow's credentials only when their
/// sealed value or remote key is given; the database URL is always written by hand.
pub fn delivery_of(values: &Values, name: &str) -> Delivery {
    let (admin_token, _) = values.admin_token_secret();
    let mlflow = &values.env.mlflow_credentials_secret_name;
    let is_admin = name == admin_token;
    let is_mlflow = !mlflow.is_empty() && name == mlflow;
    if values.sealed_secrets.enabled && (is_admin || (is_mlflow && !values.sealed_secrets.mlflow_credentials.encrypted_password.is_empty()))
    {
        Delivery::Sealed
    } else if values.external_secrets.enabled
        && (is_admin || (is_mlflow && !values.external_secrets.mlflow_credentials.remote_key.is_empty()))
    {
        Delivery::External
    } else {
        Delivery::Manual
    }
}

/// The Sealed Secrets controller updates a Secret it did not create only with this annotation.
const SEALED_SECRETS_MANAGED: &str = "sealedsecrets.bitnami.com/managed";

/// What to change on an existing Secret so that `wanted` delivers it next: the owner references
/// to keep (none of another delivery's), and whether to let the Sealed Secrets controller take
/// it over. None when the Secret is already where `wanted` puts it.
fn handing_over(secret: &Secret, wanted: Delivery) -> Option<(Vec<OwnerReference>, bool)> {
    let references = secret.metadata.owner_references.clone().unwrap_or_default();
    let is_delivery_owner = |r: &OwnerReference| r.kind == "SealedSecret" || r.kind == "ExternalSecret";
    let stray_owner = references.iter().any(|r| is_delivery_owner(r) && Some(r.kind.as_str()) != wanted.owner_kind());
    let annotated = secret.metadata.annotations.as_ref().and_then(|a| a.get(SEALED_SECRETS_MANAGED)).is_some_and(|v| v == "true");
    let let_sealed_in = wanted == Delivery::Sealed && awaits_new_owner(secret, wanted) && !annotated;
    if !stray_owner && !let_sealed_in {
        return None;
    }
    let kept = references.into_iter().filter(|r| !is_delivery_owner(r) || Some(r.kind.as_str()) == wanted.owner_kind()).collect();
    Some((kept, let_sealed_in))
}

/// Whether `secret` has yet to be taken by the controller `wanted` names: External Secrets
/// Operator adopts a Secret nobody owns on its own, with no patch, but some moments after Helm
/// made its ExternalSecret; the flow waits for that too (seen: a switch from manual to external
/// ended with the Secret still unowned, and the next change would start from an unsettled owner).
fn awaits_new_owner(secret: &Secret, wanted: Delivery) -> bool {
    let Some(kind) = wanted.owner_kind() else { return false };
    !secret.metadata.owner_references.iter().flatten().any(|r| r.kind == kind)
}

/// The field manager of the handover's writes (owner references and the Sealed Secrets
/// annotation): never the manager of a Secret's data.
pub const HANDOVER_MANAGER: &str = "shipshape-handover";

/// A Secret handed over: its name and the delivery that takes it.
pub struct Handed {
    pub secret: String,
    pub to: Delivery,
}

/// Hands each Secret `to` references over to the delivery `to` asks for, before the Helm change
/// that makes it; returns what changed hands (nothing: nothing does), said as it happens. A
/// Secret that does not exist is left to its new owner to create.
pub async fn hand_over(client: &kube::Client, namespace: &str, to: &Values) -> Result<Vec<Handed>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut handed = Vec::new();
    for reference in super::findings::secret_refs(to) {
        let Some(secret) = api.get_opt(&reference.name).await.with_context(|| format!("reading Secret {}", reference.name))? else {
            continue;
        };
        let wanted = delivery_of(to, &reference.name);
        let change = handing_over(&secret, wanted);
        if change.is_none() && !awaits_new_owner(&secret, wanted) {
            continue;
        }
        if let Some((kept, let_sealed_in)) = change {
            let mut patch = serde_json::json!({"metadata": {"ownerReferences": kept}});
            if let_sealed_in {
                patch["metadata"]["annotations"] = serde_json::json!({ SEALED_SECRETS_MANAGED: "true" });
            }
            // A field manager of its own: this write changes who owns the Secret, not its
            // value, and `findings::last_changed` must not take it for a new value.
            api.patch(
                &reference.name,
                &PatchParams { field_manager: Some(HANDOVER_MANAGER.to_owned()), ..Default::default() },
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("handing Secret {} over", reference.name))?;
        }
        println!(
            "  Secret {} ({}) kept with its value while its delivery changes: from now on it is delivered {}",
            reference.name,
            reference.purpose,
            wanted.in_words()
        );
        handed.push(Handed { secret: reference.name, to: wanted });
    }
    Ok(handed)
}

/// After the Helm change: waits until each handed Secret's new owner holds it (the controller
/// took it over, the operator adopted it), so the next change starts from a settled owner.
pub async fn until_taken_over(client: &kube::Client, namespace: &str, handed: &[Handed], timeout: std::time::Duration) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for Handed { secret, to } in handed {
        let Some(kind) = to.owner_kind() else { continue };
        let probe = || async {
            let held = api.get_opt(secret).await?;
            let owners: Vec<String> =
                held.iter().flat_map(|s| s.metadata.owner_references.iter().flatten()).map(|r| r.kind.clone()).collect();
            Ok(match held {
                None => crate::k8s::wait::Progress::Waiting(format!("Secret {secret} does not exist (yet)")),
                Some(_) if owners.iter().any(|k| k == kind) => {
                    crate::k8s::wait::Progress::Done(format!("Secret {secret} is delivered {}", to.in_words()))
                }
                Some(_) => crate::k8s::wait::Progress::Waiting(format!("Secret {secret} is not owned by its {kind} yet")),
            })
        };
        let what = format!("Secret {secret} taken over {}", to.in_words());
        crate::k8s::wait::polled(&what, timeout, std::time::Duration::from_millis(500), probe)
            .await
            .with_context(|| format!("Secret {secret} was not taken over: `cargo xtask doctor` names the {kind}'s reason"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{awaits_new_owner, delivery_of, handing_over, Delivery};
    use crate::chart::Values;

    fn values(json: serde_json::Value) -> Values {
        Values::of(&json).unwrap()
    }

    fn owned_by(kinds: &[&str], annotated: bool) -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "model-server-admin-token",
                "ownerReferences": kinds.iter().map(|k| serde_json::json!({"apiVersion": "x/v1", "kind": k, "name": "model-server-admin-token", "uid": "u", "controller": true})).collect::<Vec<_>>(),
                "annotations": if annotated { serde_json::json!({"sealedsecrets.bitnami.com/managed": "true"}) } else { serde_json::json!({}) },
            }
        }))
        .unwrap()
    }

    #[test]
    fn which_method_delivers_which_secret_is_what_the_chart_renders() {
        let env = serde_json::json!({"adminTokenSecretName": "t", "adminTokenSecretKey": "token", "mlflowCredentialsSecretName": "m", "databaseUrlSecretName": "d"});
        let manual = values(serde_json::json!({"env": env}));
        assert_eq!([delivery_of(&manual, "t"), delivery_of(&manual, "m"), delivery_of(&manual, "d")], [Delivery::Manual; 3]);
        let sealed = values(serde_json::json!({"env": env, "sealedSecrets": {"enabled": true}}));
        assert_eq!(
            [delivery_of(&sealed, "t"), delivery_of(&sealed, "m"), delivery_of(&sealed, "d")],
            [Delivery::Sealed, Delivery::Manual, Delivery::Manual]
        );
        let sealed_mlflow = values(
            serde_json::json!({"env": env, "sealedSecrets": {"enabled": true, "mlflowCredentials": {"encryptedPassword": "Ag..."}}}),
        );
        assert_eq!(delivery_of(&sealed_mlflow, "m"), Delivery::Sealed);
        let external =
            values(serde_json::json!({"env": env, "externalSecrets": {"enabled": true, "mlflowCredentials": {"remoteKey": "mlflow"}}}));
        assert_eq!(
            [delivery_of(&external, "t"), delivery_of(&external, "m"), delivery_of(&external, "d")],
            [Delivery::External, Delivery::External, Delivery::Manual]
        );
    }

    #[test]
    fn a_secret_changes_hands_only_when_its_delivery_changes() {
        // Where it is already: nothing to do.
        assert!(handing_over(&owned_by(&["SealedSecret"], false), Delivery::Sealed).is_none());
        assert!(handing_over(&owned_by(&["ExternalSecret"], false), Delivery::External).is_none());
        assert!(handing_over(&owned_by(&[], false), Delivery::Manual).is_none());
        // External Secrets Operator adopts a Secret nobody owns: nothing to patch, but the flow
        // waits until it has.
        assert!(handing_over(&owned_by(&[], false), Delivery::External).is_none());
        assert!(awaits_new_owner(&owned_by(&[], false), Delivery::External));
        assert!(awaits_new_owner(&owned_by(&["SealedSecret"], false), Delivery::External));
        assert!(!awaits_new_owner(&owned_by(&["ExternalSecret"], false), Delivery::External));
        assert!(awaits_new_owner(&owned_by(&[], true), Delivery::Sealed), "let in, not yet taken");
        assert!(!awaits_new_owner(&owned_by(&["SealedSecret"], false), Delivery::Manual), "nobody takes a manual one");
        // Away from an owner: its reference goes, so deleting it leaves the Secret.
        assert_eq!(handing_over(&owned_by(&["SealedSecret"], false), Delivery::Manual), Some((vec![], false)));
        assert_eq!(handing_over(&owned_by(&["SealedSecret"], false), Delivery::External), Some((vec![], false)));
        assert_eq!(handing_over(&owned_by(&["ExternalSecret"], false), Delivery::Manual), Some((vec![], false)));
        // To Sealed Secrets: the controller is let in (it refuses a Secret it did not create).
        assert_eq!(handing_over(&owned_by(&[], false), Delivery::Sealed), Some((vec![], true)));
        assert!(handing_over(&owned_by(&[], true), Delivery::Sealed).is_none(), "already let in");
        let (kept, let_in) = handing_over(&owned_by(&["ExternalSecret"], false), Delivery::Sealed).unwrap();
        assert!(kept.is_empty() && let_in);
        // Owners that are not a delivery's stay.
        let (kept, _) = handing_over(&owned_by(&["SealedSecret", "Application"], false), Delivery::Manual).unwrap();
        assert_eq!(kept.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["Application"]);
    }
}
