//! The admin token: model reload with it, and its rotation.
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DeleteParams;
use kube::Api;
use xtask::cli::{SecretKind, SecretMethod};
use xtask::flows::release::ReleaseState;
use xtask::flows::{deploy, reload, rotate};
use xtask::k8s::secrets;

use crate::fixture::{self, failure, OrPanic, TestNamespace};

const TOKEN_SECRET: &str = "model-server-admin-token";

fn token(ns: &TestNamespace) -> String {
    let flow = ns.flow();
    flow.block_on(secrets::read_key(&Api::<Secret>::namespaced(flow.client.clone(), &ns.name), TOKEN_SECRET, "token")).or_panic()
}

#[test]
fn reload_reaches_every_pod_with_the_token_from_its_secret() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("reload");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let answers = reload::reload(&flow, false).or_panic();
    assert!(!answers.is_empty());
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body.contains(r#""status":"reloaded""#), "{answer:?}");
        assert_eq!(answer.track, "stable");
    }
    let wrong = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", "not-the-token")).or_panic();
    assert!(wrong.iter().all(|a| a.status == 401), "a wrong token is refused: {wrong:?}");
}

#[test]
fn rotating_the_admin_token_makes_the_new_one_work_and_the_old_one_fail() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rotate");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let old = token(&ns);

    rotate::rotate(&flow, SecretKind::AdminToken, SecretMethod::Manual, false).or_panic();
    let new = token(&ns);
    assert_ne!(old, new);
    assert_eq!(new.len(), 64, "32 random bytes, hex");
    let with_new = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", &new)).or_panic();
    assert!(with_new.iter().all(|a| a.status == 200), "{with_new:?}");
    let with_old = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", &old)).or_panic();
    assert!(with_old.iter().all(|a| a.status == 401), "{with_old:?}");

    let state = ReleaseState::read(&flow).or_panic();
    assert!(state.current().unwrap().description.contains("rotate-secret"), "the restart is a Helm revision: {:?}", state.history);
    let journal = flow.block_on(Api::<ConfigMap>::namespaced(flow.client.clone(), &ns.name).get("shipshape-journal-model-server")).unwrap();
    let text = serde_json::to_string(&journal.data).unwrap();
    assert!(!text.contains(&old) && !text.contains(&new), "no token value is ever journaled");
}

#[test]
fn rotation_with_the_secret_missing_changes_nothing() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rotate-missing");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    flow.block_on(Api::<Secret>::namespaced(flow.client.clone(), &ns.name).delete(TOKEN_SECRET, &DeleteParams::default())).unwrap();

    let error = failure(rotate::rotate(&flow, SecretKind::AdminToken, SecretMethod::Manual, false));
    assert!(error.contains(&format!("Secret {TOKEN_SECRET} does not exist")), "{error}");
    assert!(error.contains("preflight"), "the error says what to do next: {error}");
    assert_eq!(ReleaseState::read(&flow).or_panic().history.len(), 1, "no restart happened");
    let error = failure(rotate::rotate(&flow, SecretKind::Mlflow, SecretMethod::Manual, false));
    assert!(error.contains("uses no MLflow credentials"), "{error}");
}

#[test]
fn rotating_a_sealed_admin_token_goes_through_kubeseal_and_the_controller() {
    let shared = fixture::shared();
    fixture::sealed_secrets_controller();
    let ns = TestNamespace::new("rotate-sealed");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    // Hand the admin token to Sealed Secrets: the controller manages only a Secret it created.
    let secrets_api = Api::<Secret>::namespaced(flow.client.clone(), &ns.name);
    flow.block_on(secrets_api.delete(TOKEN_SECRET, &DeleteParams::default())).unwrap();
    let first = "e2e-first-sealed-token";
    let sealed = xtask::kubeseal::Kubeseal::new(&ns.sh).or_panic().seal(&ns.kubeconfig, &ns.name, TOKEN_SECRET, first).or_panic();
    let mut values = flow.helm().unwrap().values("model-server", &ns.name, &ns.kubeconfig, None, false).or_panic();
    values["sealedSecrets"] = serde_json::json!({"enabled": true, "adminToken": {"encryptedToken": sealed}});
    flow.upgrade_with_values(&values, &xtask::helm::Change::new(&ns.kubeconfig, "e2e: sealed secrets")).or_panic();
    flow.block_on(secrets::until_key_is(&secrets_api, TOKEN_SECRET, "token", first, std::time::Duration::from_secs(60))).or_panic();

    rotate::rotate(&flow, SecretKind::AdminToken, SecretMethod::Sealed, false).or_panic();
    let new = token(&ns);
    assert_ne!(new, first);
    assert_eq!(new.len(), 64);
    let with_new = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", &new)).or_panic();
    assert!(with_new.iter().all(|a| a.status == 200), "{with_new:?}");
    let with_old = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", first)).or_panic();
    assert!(with_old.iter().all(|a| a.status == 401), "{with_old:?}");
    let state = ReleaseState::read(&flow).or_panic();
    assert!(
        state.history.iter().any(|r| r.description.contains("new sealed value")),
        "the sealed value is a Helm revision: {:?}",
        state.history
    );
}
