//! Sealed values a rotation replaced, so the next deploy cannot put them back.
//!
//! `rotate-secret --method sealed` writes the new ciphertext into the release's values (a Helm
//! revision); the environment's values file still holds the old one until someone commits the
//! new one. A `deploy` rendering that file would hand the old ciphertext to the controller,
//! which unseals it into the Secret: the old token back, silently, and in the pods at their next
//! restart (seen on kind). rotate-secret journals a fingerprint of the value it replaced;
//! deploy refuses to render a value so recorded, and rotate-secret says where the new one goes.
use crate::chart::{self, SealedSecretsValues};
use crate::journal::{Entry, RunResult};

/// The journal fact rotate-secret writes: `<path> <fingerprint>` of the sealed value it replaced.
pub const REPLACED_FACT: &str = "sealed_value_replaced";

/// A ciphertext's fingerprint (sha256, hex, 16 digits): enough to recognise it, and the journal
/// holds no copy of it.
pub fn fingerprint(sealed: &str) -> String {
    crate::signing::hex_sha256(sealed.as_bytes())[..16].to_owned()
}

/// The fact recording that `replaced` was the value at `path` before a rotation.
pub fn replaced_fact(path: &str, replaced: &str) -> String {
    format!("{path} {}", fingerprint(replaced))
}

/// A sealed value a deploy would put back: where, and which rotation replaced it.
#[derive(Debug, PartialEq)]
pub struct PutBack {
    pub path: &'static str,
    pub replaced_by_run: String,
    pub replaced_at: String,
}

/// The sealed values `planned` would render that differ from what the release runs (`current`)
/// and that a successful rotation replaced (`runs`, the release's journal). A value that was
/// never replaced is a person's change (a new value sealed by hand, a committed rotation) and
/// passes; a failed rotation replaced nothing (its undo put the old value back).
pub fn put_back(current: &SealedSecretsValues, planned: &SealedSecretsValues, runs: &[Entry]) -> Vec<PutBack> {
    if !planned.enabled {
        return Vec::new();
    }
    let running: Vec<(&str, &str)> = current.by_path();
    planned
        .by_path()
        .into_iter()
        .filter(|(path, sealed)| !running.contains(&(path, sealed)))
        .filter_map(|(path, sealed)| {
            let fact = format!("{path} {}", fingerprint(sealed));
            runs.iter()
                .rev()
                .filter(|run| run.result == RunResult::Succeeded)
                .find(|run| run.facts.get(REPLACED_FACT) == Some(&fact))
                .map(|run| PutBack { path, replaced_by_run: run.id.clone(), replaced_at: run.started.clone() })
        })
        .collect()
}

/// Why a deploy that would put back `found` is refused, and what to do.
pub fn refusal(found: &[PutBack], release: &str, namespace: &str) -> String {
    let each: Vec<String> =
        found.iter().map(|p| format!("{} (replaced by rotate-secret run {}, {})", p.path, p.replaced_by_run, p.replaced_at)).collect();
    format!(
        "these values would put back a sealed value a rotation replaced: {}. The controller would unseal the old \
         secret into its Secret, and the pods would take it at their next restart. Put the sealed value the release \
         runs in the values file you deploy with (it is safe to commit; rotate-secret printed it, and `helm get values \
         {release} -n {namespace}` shows it), then deploy again. Nothing was changed.",
        each.join(", ")
    )
}

/// The YAML block holding `sealed` at `path`, for the values file: what rotate-secret prints.
pub fn values_block(path: &str, sealed: &str) -> String {
    let keys: Vec<&str> = path.split('.').collect();
    let mut block = String::new();
    for (depth, key) in keys.iter().enumerate() {
        let indent = "  ".repeat(depth);
        if depth + 1 == keys.len() {
            block.push_str(&format!("{indent}{key}: {sealed}\n"));
        } else {
            block.push_str(&format!("{indent}{key}:\n"));
        }
    }
    block
}

/// The values change setting `path` to `sealed` (merged into the release's values).
pub fn values_change(path: &str, sealed: &str) -> serde_json::Value {
    path.rsplit('.').fold(serde_json::Value::String(sealed.to_owned()), |inner, key| serde_json::json!({ key: inner }))
}

/// The path of the sealed value holding `kind`'s secret (the password for MLflow).
pub fn path_of(values: &chart::Values, kind_is_admin_token: bool) -> (&'static str, String) {
    if kind_is_admin_token {
        ("sealedSecrets.adminToken.encryptedToken", values.sealed_secrets.admin_token.encrypted_token.clone())
    } else {
        ("sealedSecrets.mlflowCredentials.encryptedPassword", values.sealed_secrets.mlflow_credentials.encrypted_password.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(token: &str) -> SealedSecretsValues {
        SealedSecretsValues {
            enabled: true,
            admin_token: chart::SealedAdminToken { encrypted_token: token.to_owned() },
            ..Default::default()
        }
    }

    fn run(id: &str, result: RunResult, replaced: &str) -> Entry {
        let mut entry =
            Entry { id: id.to_owned(), flow: "rotate-secret".to_owned(), result, started: "t".to_owned(), ..Default::default() };
        entry.facts.insert(REPLACED_FACT.to_owned(), replaced_fact("sealedSecrets.adminToken.encryptedToken", replaced));
        entry
    }

    #[test]
    fn a_value_a_rotation_replaced_is_never_put_back_by_a_deploy() {
        let rotated = [run("r1", RunResult::Succeeded, "AgOLD")];
        let found = put_back(&sealed("AgNEW"), &sealed("AgOLD"), &rotated);
        assert_eq!(
            found,
            [PutBack { path: "sealedSecrets.adminToken.encryptedToken", replaced_by_run: "r1".into(), replaced_at: "t".into() }]
        );
        let said = refusal(&found, "model-server", "dev");
        assert!(said.contains("rotate-secret run r1") && said.contains("Nothing was changed") && !said.contains("AgOLD"), "{said}");
    }

    #[test]
    fn the_running_value_a_new_one_and_a_failed_rotation_s_old_one_pass() {
        let rotated = [run("r1", RunResult::Succeeded, "AgOLD")];
        assert!(put_back(&sealed("AgNEW"), &sealed("AgNEW"), &rotated).is_empty(), "what runs");
        assert!(put_back(&sealed("AgNEW"), &sealed("AgNEWER"), &rotated).is_empty(), "a value sealed by hand since");
        let failed = [run("r1", RunResult::Failed, "AgOLD")];
        assert!(put_back(&sealed("AgOLD"), &sealed("AgOLD"), &failed).is_empty(), "a failed rotation put the old value back");
        assert!(put_back(&sealed("AgNEW"), &sealed("AgOLD"), &failed).is_empty(), "and replaced nothing");
        let off = SealedSecretsValues { enabled: false, ..sealed("AgOLD") };
        assert!(put_back(&sealed("AgNEW"), &off, &rotated).is_empty(), "nothing sealed is rendered");
    }

    #[test]
    fn the_values_block_and_change_nest_the_path() {
        assert_eq!(
            values_change("sealedSecrets.adminToken.encryptedToken", "AgB"),
            serde_json::json!({"sealedSecrets": {"adminToken": {"encryptedToken": "AgB"}}})
        );
        assert_eq!(
            values_block("sealedSecrets.adminToken.encryptedToken", "AgB"),
            "sealedSecrets:\n  adminToken:\n    encryptedToken: AgB\n"
        );
    }
}
