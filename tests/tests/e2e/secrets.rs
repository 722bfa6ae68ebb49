//! The admin token: model reload with it, and its rotation (manual, sealed, external).
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DeleteParams;
use kube::Api;
use xtask::cluster::external_secrets;
use xtask::flows::rotate::{Rotation, SecretKind, SecretMethod, ValueSource};

use xtask::flows::{deploy, doctor, reload, rotate};
use xtask::k8s::secrets;
use xtask::report::Outcome;

use crate::fixture::{self, failure, OrPanic, TestNamespace};

const TOKEN_SECRET: &str = "model-server-admin-token";

fn token(ns: &TestNamespace) -> String {
    let flow = ns.flow();
    flow.block_on(secrets::read_key(&Api::<Secret>::namespaced(flow.client().clone(), &ns.name), TOKEN_SECRET, "token")).or_panic()
}

/// Every pod accepts `new` on POST /admin/reload and refuses `old`.
fn assert_new_token_accepted_old_refused(ns: &TestNamespace, new: &str, old: &str) {
    let flow = ns.flow();
    let with_new = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", new)).or_panic();
    assert!(with_new.iter().all(|a| a.status == 200), "{with_new:?}");
    let with_old = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", old)).or_panic();
    assert!(with_old.iter().all(|a| a.status == 401), "{with_old:?}");
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

    rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::Manual, ValueSource::Generate), false).or_panic();
    let new = token(&ns);
    assert_ne!(old, new);
    assert_eq!(new.len(), 64, "32 random bytes, hex");
    assert_new_token_accepted_old_refused(&ns, &new, &old);

    let state = flow.record().or_panic();
    assert!(state.current().unwrap().description.contains("rotate-secret"), "the restart is a Helm revision: {:?}", state.history);
    let journal =
        flow.block_on(Api::<ConfigMap>::namespaced(flow.client().clone(), &ns.name).get("shipshape-journal-model-server")).unwrap();
    let text = serde_json::to_string(&journal.data).unwrap();
    assert!(!text.contains(&old) && !text.contains(&new), "no token value is ever journaled");

    the_rotation_lasts(&ns, &new, &old, None);
}

/// Issue 22: a rotation lasts through the flows that follow it. A deploy and a rollback render
/// the release again (an ExternalSecret re-rendered syncs the store's value again); a canary
/// starts pods of another version; every pod, canary included, takes the new token and refuses
/// the old, and the Secret still holds the new one.
/// `values`: the file that delivers the Secrets as the release does (what the environment's
/// values file would say), for the deploy.
fn the_rotation_lasts(ns: &TestNamespace, new: &str, old: &str, values: Option<&std::path::Path>) {
    let shared = fixture::shared();
    let flow = ns.flow();
    if let Some(file) = values {
        let overrides = xtask::flows::Overrides { files: vec![file.to_path_buf()], ..Default::default() };
        flow.set_overrides(&overrides, xtask::flows::DEPLOY_MANAGED_VALUES).or_panic();
    }
    deploy::deploy(&flow, &shared.v2, false).or_panic();
    assert_eq!(token(ns), new, "a deploy leaves the rotated Secret as it is");
    assert_new_token_accepted_old_refused(ns, new, old);
    xtask::flows::rollback::rollback(&flow, xtask::flows::rollback::To::Previous, &Default::default()).or_panic();
    assert_new_token_accepted_old_refused(ns, new, old);
    let load = fixture::LoadGenerator::start(ns);
    let at_the_gate = fixture::canary_options(&shared.v2, vec![50], xtask::flows::canary::Approval::Pause);
    let state = xtask::flows::canary::start_canary(&flow, &at_the_gate).or_panic();
    assert_eq!(state.phase, xtask::flows::canary::Phase::Gate, "{state:#?}");
    let answers = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", new)).or_panic();
    assert!(answers.iter().any(|a| a.track == "canary") && answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_new_token_accepted_old_refused(ns, new, old);
    xtask::flows::canary::continue_canary(&flow, xtask::flows::canary::Request::Abort, None).or_panic();
    drop(load);
    assert_eq!(token(ns), new, "after the canary too");
}

#[test]
fn rotation_with_the_secret_missing_changes_nothing() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rotate-missing");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    flow.block_on(Api::<Secret>::namespaced(flow.client().clone(), &ns.name).delete(TOKEN_SECRET, &DeleteParams::default())).unwrap();

    let error = failure(rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::Manual, ValueSource::Generate), false));
    assert!(error.contains(&format!("Secret {TOKEN_SECRET} does not exist")), "{error}");
    assert!(error.contains("preflight"), "the error says what to do next: {error}");
    assert_eq!(flow.record().or_panic().history.len(), 1, "no restart happened");
    let error = failure(rotate::rotate(
        &flow,
        &Rotation::new(SecretKind::Mlflow, SecretMethod::Manual, ValueSource::Env("E2E_UNUSED".to_owned())),
        false,
    ));
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
    let secrets_api = Api::<Secret>::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(secrets_api.delete(TOKEN_SECRET, &DeleteParams::default())).unwrap();
    let first = "e2e-first-sealed-token";
    let sealed = xtask::kubeseal::Kubeseal::new(&ns.sh).or_panic().seal(&ns.target().access(), &ns.name, TOKEN_SECRET, first).or_panic();
    let mut values = flow.helm().unwrap().values("model-server", &ns.name, &ns.target().access(), None, false).or_panic();
    values["sealedSecrets"] = serde_json::json!({"enabled": true, "adminToken": {"encryptedToken": sealed}});
    fixture::helm_upgrade_by_hand(&ns, &values, "e2e: sealed secrets");
    flow.block_on(secrets::until_key_is(&secrets_api, TOKEN_SECRET, "token", first, std::time::Duration::from_secs(60))).or_panic();

    rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::Sealed, ValueSource::Generate), false).or_panic();
    let new = token(&ns);
    assert_ne!(new, first);
    assert_eq!(new.len(), 64);
    assert_new_token_accepted_old_refused(&ns, &new, first);
    let state = flow.record().or_panic();
    assert!(
        state.history.iter().any(|r| r.description.contains("new sealed value")),
        "the sealed value is a Helm revision: {:?}",
        state.history
    );

    // The next deploy, from values that still hold the sealed value the rotation replaced (the
    // environment's file before anyone committed the new one): refused, nothing changed; the
    // controller would have unsealed the old token into the Secret.
    let deploy_with_sealed = |encrypted: &str| {
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        let values = serde_json::json!({"sealedSecrets": {"enabled": true, "adminToken": {"encryptedToken": encrypted}}});
        std::fs::write(file.path(), serde_json::to_vec(&values).unwrap()).unwrap();
        let flow = ns.flow();
        let overrides = xtask::flows::Overrides { files: vec![file.path().to_path_buf()], ..Default::default() };
        flow.set_overrides(&overrides, xtask::flows::DEPLOY_MANAGED_VALUES).or_panic();
        deploy::deploy(&flow, &shared.v1, false)
    };
    let revisions = state.history.len();
    let refused = failure(deploy_with_sealed(&sealed));
    assert!(refused.contains("put back a sealed value a rotation replaced") && refused.contains("Nothing was changed"), "{refused}");
    assert!(!refused.contains(&sealed) && !refused.contains(first), "{refused}");
    assert_eq!(flow.record().or_panic().history.len(), revisions, "no Helm revision");
    assert_eq!(token(&ns), new, "the Secret holds the new token");
    // With the new sealed value in the values, as rotate-secret said: deployed, the new token kept.
    let rotated = state.values.sealed_secrets.admin_token.encrypted_token.clone();
    assert_ne!(rotated, sealed);
    deploy_with_sealed(&rotated).or_panic();
    assert_eq!(token(&ns), new, "the Secret still holds the new token");
    assert_new_token_accepted_old_refused(&ns, &new, first);
}

/// Hands the release's admin token to External Secrets Operator: the store (`store_secrets`,
/// read through store `store`) holds `first` under `remote_key`; the chart renders the
/// ExternalSecret and the operator makes the Secret from it.
fn deliver_by_external_secrets(ns: &TestNamespace, store: (&str, &str), store_secrets: &Api<Secret>, remote_key: &str, first: &str) {
    let flow = ns.flow();
    let data = || Ok(std::collections::BTreeMap::from([("token".to_owned(), first.to_owned())]));
    // A store outlives the tests: a value left by an earlier run is replaced.
    if !flow.block_on(secrets::ensure(store_secrets, remote_key, data)).or_panic() {
        flow.block_on(secrets::write_key(store_secrets, remote_key, "token", first)).or_panic();
    }
    // The operator owns the Secret it creates: the one the fixture made goes first.
    let secrets_api = Api::<Secret>::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(secrets_api.delete(TOKEN_SECRET, &DeleteParams::default())).unwrap();
    let mut values = flow.helm().unwrap().values("model-server", &ns.name, &ns.target().access(), None, false).or_panic();
    values["externalSecrets"] = serde_json::json!({
        "enabled": true,
        "refreshInterval": "1h0m0s",
        "secretStoreRef": {"kind": store.0, "name": store.1},
        "adminToken": {"remoteKey": remote_key, "remoteProperty": "token"},
    });
    fixture::helm_upgrade_by_hand(ns, &values, "e2e: external secrets");
    flow.block_on(secrets::until_key_is(&secrets_api, TOKEN_SECRET, "token", first, std::time::Duration::from_secs(90))).or_panic();
    // The operator writes the Secret first and its own status after: until every ExternalSecret
    // says Ready, `doctor` (a snapshot) rightly reports "not synced yet" (seen in a rehearsal).
    let external = xtask::k8s::external_secrets::external_secrets(flow.client(), &ns.name);
    let all_ready = || async {
        let listed = external.list(&Default::default()).await?;
        let waiting: Vec<String> = listed
            .items
            .iter()
            .filter(|e| !xtask::k8s::external_secrets::ready(e).is_some_and(|r| r.status))
            .map(|e| e.metadata.name.clone().unwrap_or_default())
            .collect();
        Ok(if waiting.is_empty() && !listed.items.is_empty() {
            xtask::k8s::wait::Progress::Done("every ExternalSecret is Ready".to_owned())
        } else {
            xtask::k8s::wait::Progress::Waiting(format!("not Ready yet: {}", waiting.join(", ")))
        })
    };
    let every = std::time::Duration::from_millis(250);
    flow.block_on(xtask::k8s::wait::polled("ExternalSecrets ready", std::time::Duration::from_secs(60), every, all_ready)).or_panic();
}

#[test]
fn rotating_an_external_admin_token_writes_the_store_and_the_operator_delivers_it() {
    let shared = fixture::shared();
    fixture::external_secrets_operator();
    let ns = TestNamespace::new("rotate-external");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    let store_secrets = Api::<Secret>::namespaced(flow.client().clone(), external_secrets::STORE_NAMESPACE);
    let remote_key = format!("{}-admin-token", ns.name);
    let first = "e2e-first-external-token";
    deliver_by_external_secrets(&ns, ("ClusterSecretStore", external_secrets::STORE_NAME), &store_secrets, &remote_key, first);
    let checks = doctor::doctor(&flow).or_panic();
    let synced = checks.iter().find(|c| c.name == "external secrets").expect("doctor checks ExternalSecrets");
    assert_eq!(synced.outcome, Outcome::Pass, "{synced:?}");

    let started = std::time::Instant::now();
    rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::External, ValueSource::Generate), false).or_panic();
    eprintln!("external rotation, from the store's write to the new token proven: {:.1} s", started.elapsed().as_secs_f64());
    let new = token(&ns);
    assert_ne!(new, first);
    assert_eq!(new.len(), 64);
    let in_store = flow.block_on(secrets::read_key(&store_secrets, &remote_key, "token")).or_panic();
    assert_eq!(in_store, new, "the store holds the new value: the operator's next refresh keeps it");
    assert_new_token_accepted_old_refused(&ns, &new, first);
    let state = flow.record().or_panic();
    assert!(state.current().unwrap().description.contains("rotate-secret"), "the restart is a Helm revision: {:?}", state.history);
    // The environment's values deliver the token by External Secrets, as the release does.
    let dir = tempfile::tempdir().unwrap();
    let external = dir.path().join("external.json");
    let values = serde_json::json!({"externalSecrets": state.values_json["externalSecrets"].clone()});
    std::fs::write(&external, serde_json::to_vec(&values).unwrap()).unwrap();
    the_rotation_lasts(&ns, &new, first, Some(&external));
    assert!(token_owners(&ns).iter().any(|k| k == "ExternalSecret"), "still delivered by the operator");
    assert_eq!(flow.block_on(secrets::read_key(&store_secrets, &remote_key, "token")).or_panic(), new, "the store still holds it");
}

#[test]
fn a_failed_external_sync_puts_the_old_value_back_restarts_nothing_and_doctor_says_why() {
    let shared = fixture::shared();
    fixture::external_secrets_operator();
    let ns = TestNamespace::new("external-fails");
    let flow = ns.flow();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    // A store of this namespace alone, so breaking it touches no other test.
    let sh = xtask::repo_shell().unwrap();
    xtask::cluster::external_secrets::install_store(&sh, flow.connection(), &ns.name, "SecretStore").or_panic();
    let store_secrets = Api::<Secret>::namespaced(flow.client().clone(), &ns.name);
    let first = "e2e-first-external-token";
    deliver_by_external_secrets(&ns, ("SecretStore", external_secrets::STORE_NAME), &store_secrets, "store-admin-token", first);
    let revisions = flow.record().or_panic().history.len();

    // The store's reader loses its access, as when a Vault policy or IAM role is changed.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(bindings.delete(&format!("{}-reader", external_secrets::STORE_NAME), &DeleteParams::default())).unwrap();
    let error =
        failure(rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::External, ValueSource::Generate), false));
    assert!(error.contains("could not sync"), "the operator's verdict: {error}");
    assert!(error.contains("forbidden"), "and its reason, from its event: {error}");
    assert!(error.contains("old value is back"), "{error}");
    assert_eq!(flow.block_on(secrets::read_key(&store_secrets, "store-admin-token", "token")).or_panic(), first, "the store is as it was");
    assert_eq!(token(&ns), first, "the Secret is as it was");
    assert_eq!(flow.record().or_panic().history.len(), revisions, "nothing restarted");

    let checks = doctor::doctor(&flow).or_panic();
    let check = checks.iter().find(|c| c.name == "external secrets").expect("doctor checks ExternalSecrets");
    assert_eq!(check.outcome, Outcome::Fail, "{check:?}");
    assert!(check.detail.contains(TOKEN_SECRET) && check.detail.contains("SecretSyncedError"), "{check:?}");
    assert!(check.detail.contains("forbidden"), "the reason, not only the condition: {check:?}");

    // A store reference that names no store.
    let mut values = flow.helm().unwrap().values("model-server", &ns.name, &ns.target().access(), None, false).or_panic();
    values["externalSecrets"]["secretStoreRef"]["name"] = serde_json::json!("no-such-store");
    fixture::helm_upgrade_by_hand(&ns, &values, "e2e: a wrong store");
    let detail = doctor_external_secrets_until(&flow, "no-such-store");
    assert!(detail.contains(TOKEN_SECRET), "{detail}");
    let error =
        failure(rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::External, ValueSource::Generate), false));
    assert!(error.contains("does not sync now") && error.contains("doctor"), "refused before any change: {error}");

    // A working store without the key the release names.
    values["externalSecrets"]["secretStoreRef"] = serde_json::json!({"kind": "ClusterSecretStore", "name": external_secrets::STORE_NAME});
    values["externalSecrets"]["adminToken"]["remoteKey"] = serde_json::json!("no-such-key");
    fixture::helm_upgrade_by_hand(&ns, &values, "e2e: a missing key");
    let detail = doctor_external_secrets_until(&flow, "no-such-key");
    assert!(detail.contains("not found"), "{detail}");
}

/// doctor's ExternalSecret finding, once it mentions `expected` (the operator reports within
/// seconds of a change).
fn doctor_external_secrets_until(flow: &xtask::flows::Flow, expected: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let checks = doctor::doctor(flow).or_panic();
        let check = checks.iter().find(|c| c.name == "external secrets").expect("doctor checks ExternalSecrets").clone();
        if check.outcome == Outcome::Fail && check.detail.contains(expected) {
            return check.detail;
        }
        assert!(std::time::Instant::now() < deadline, "doctor never said {expected:?}: {check:?}");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// The release's MLflow account, from its Secret (staging's `model-server-mlflow`).
fn mlflow_account(ns: &TestNamespace) -> xtask::mlflow::Credentials {
    let flow = ns.flow();
    let secrets_api = Api::<Secret>::namespaced(flow.client().clone(), &ns.name);
    flow.block_on(xtask::mlflow::Credentials::from_secret(&secrets_api, "model-server-mlflow", "username", "password")).or_panic()
}

/// Issue 22: MLflow's password rotated against a real MLflow (the cluster's, with its basic-auth
/// app), which staging loads its model from, both of the runbook's ways: shipshape changes it
/// in MLflow as the account that owns it (`--set-in-mlflow`); then an operator's new password
/// that MLflow does not have yet is refused before any change, and once the operator has set it
/// in MLflow (as the account) and gives it from a variable, it goes through. Each time every
/// pod restarts and loads its model from MLflow with the new password (a pod is ready only
/// then), and MLflow refuses the old one. No password is in what the commands printed, the
/// journal, Helm's record or the namespace's events.
#[test]
fn rotating_mlflow_s_password_changes_it_in_mlflow_and_every_pod_loads_its_model_with_the_new_one() {
    let shared = fixture::shared();
    let signed = fixture::signed_release(&shared.v1);
    let ns = TestNamespace::in_env(xtask::chart::Env::Staging, fixture::staging_kubeconfig(), "rotate-mlflow");
    deploy::deploy(&ns.deploy_flow(), &signed.tag, false).or_panic();
    let flow = ns.flow();
    let model_uri = flow.record().or_panic().values.env.model_uri;
    let artifact = xtask::mlflow::ModelArtifact::from_model_uri(&model_uri).expect("staging loads its model from the cluster's MLflow");
    let status = |user: &xtask::mlflow::Credentials| flow.block_on(artifact.status_for(flow.client(), user)).or_panic();
    let first = mlflow_account(&ns);
    assert_eq!(status(&first), 200, "the deploy's pods loaded the model with the account's password");
    let revisions = || flow.record().or_panic().history.len();
    let mut printed = String::new();
    let mut run = |args: &[&str], variable: Option<&str>| {
        let mut command = fixture::xtask_command(&ns);
        command.args(["rotate-secret", "mlflow", "--env", "staging", "-n", &ns.name]).args(args);
        if let Some(value) = variable {
            command.env("E2E_MLFLOW_PASSWORD", value);
        }
        let out = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        printed.push_str(&text);
        (out.status.success(), text)
    };

    // shipshape changes it in MLflow.
    let before = revisions();
    let (rotated, said) = run(&["--set-in-mlflow"], None);
    assert!(rotated, "{said}");
    assert!(said.contains(&format!("password of MLflow user {} changed in MLflow", first.username)), "{said}");
    assert!(said.contains("MLflow: new password -> 200, old password -> 401"), "{said}");
    let second = mlflow_account(&ns);
    assert_ne!(second.password, first.password);
    assert_eq!((status(&second), status(&first)), (200, 401), "MLflow takes the new password and refuses the old");
    assert!(revisions() > before, "the pods restarted as a Helm revision");

    // The operator's way: a password MLflow does not have yet is refused before any change.
    let third = xtask::k8s::secrets::random_token().or_panic();
    let before = revisions();
    let (rotated, said) = run(&["--value-from", "env:E2E_MLFLOW_PASSWORD"], Some(&third));
    assert!(!rotated && said.contains("set the new password in MLflow first"), "{said}");
    assert_eq!(mlflow_account(&ns).password, second.password, "the Secret is as it was");
    assert_eq!(revisions(), before, "nothing restarted");
    // Set in MLflow by the account (what the operator does in MLflow), then given from a variable.
    flow.block_on(artifact.server.change_password(flow.client(), &second, &third)).or_panic();
    let (rotated, said) = run(&["--value-from", "env:E2E_MLFLOW_PASSWORD"], Some(&third));
    assert!(rotated, "{said}");
    assert!(said.contains("MLflow takes the new password"), "{said}");
    let now = mlflow_account(&ns);
    assert_eq!(now.password, third);
    assert_eq!((status(&now), status(&second)), (200, 401));
    let pods = flow.block_on(xtask::k8s::pods::ready(flow.client(), &ns.name, "model-server")).or_panic();
    assert_eq!(pods.len(), 3, "staging's three pods, each ready with its model from MLflow");

    // Never shown, never kept.
    let journal =
        flow.block_on(Api::<ConfigMap>::namespaced(flow.client().clone(), &ns.name).get("shipshape-journal-model-server")).unwrap();
    let journaled = serde_json::to_string(&journal.data).unwrap();
    let helm_values = flow.helm().unwrap().values("model-server", &ns.name, &ns.target().access(), None, true).or_panic().to_string();
    let events = flow
        .block_on(Api::<k8s_openapi::api::core::v1::Event>::namespaced(flow.client().clone(), &ns.name).list(&Default::default()))
        .unwrap();
    let events = serde_json::to_string(&events.items).unwrap();
    for password in [&first.password, &second.password, &third] {
        for (place, text) in [("printed", &printed), ("journal", &journaled), ("Helm's values", &helm_values), ("events", &events)] {
            assert!(!text.contains(password.as_str()), "a password is in {place}");
        }
    }
}

/// The kinds of the objects that own the admin token's Secret.
fn token_owners(ns: &TestNamespace) -> Vec<String> {
    let flow = ns.flow();
    let secret = flow.block_on(Api::<Secret>::namespaced(flow.client().clone(), &ns.name).get(TOKEN_SECRET)).unwrap();
    secret.metadata.owner_references.unwrap_or_default().into_iter().map(|r| r.kind).collect()
}

/// Issue 22: an environment switching how its admin token is delivered, every way (manual ->
/// sealed -> external -> sealed -> manual -> external -> manual), each switch a `deploy` of the
/// environment's values with the method's values file or without (as an operator changes the
/// file): the Secret exists at every moment (read every 100 ms through all six switches), holds
/// the token the pods use, is held by the owner the values name once each deploy ends, and
/// every pod takes the token and refuses another.
#[test]
fn switching_the_admin_token_s_delivery_every_way_keeps_the_secret_at_every_moment() {
    let shared = fixture::shared();
    fixture::sealed_secrets_controller();
    fixture::external_secrets_operator();
    let ns = TestNamespace::new("switch-methods");
    deploy::deploy(&ns.flow(), &shared.v1, false).or_panic();
    let the_token = token(&ns);
    // The same token, sealed for this namespace, and in the store.
    let sealed =
        xtask::kubeseal::Kubeseal::new(&ns.sh).or_panic().seal(&ns.target().access(), &ns.name, TOKEN_SECRET, &the_token).or_panic();
    let flow = ns.flow();
    let store_secrets = Api::<Secret>::namespaced(flow.client().clone(), external_secrets::STORE_NAMESPACE);
    let remote_key = format!("{}-admin-token", ns.name);
    let data = || Ok(std::collections::BTreeMap::from([("token".to_owned(), the_token.clone())]));
    if !flow.block_on(secrets::ensure(&store_secrets, &remote_key, data)).or_panic() {
        flow.block_on(secrets::write_key(&store_secrets, &remote_key, "token", &the_token)).or_panic();
    }
    let dir = tempfile::tempdir().unwrap();
    let values_file = |name: &str, values: serde_json::Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&values).unwrap()).unwrap();
        path
    };
    let sealed_file =
        values_file("sealed.json", serde_json::json!({"sealedSecrets": {"enabled": true, "adminToken": {"encryptedToken": sealed}}}));
    let external_file = values_file(
        "external.json",
        serde_json::json!({"externalSecrets": {
            "enabled": true,
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": external_secrets::STORE_NAME},
            "adminToken": {"remoteKey": remote_key, "remoteProperty": "token"},
        }}),
    );
    let switches = [
        ("sealed", Some(&sealed_file), "SealedSecret"),
        ("external", Some(&external_file), "ExternalSecret"),
        ("sealed", Some(&sealed_file), "SealedSecret"),
        ("manual", None, ""),
        ("external", Some(&external_file), "ExternalSecret"),
        ("manual", None, ""),
    ];
    let access = ns.target().access();
    let namespace = ns.name.clone();
    let watching = std::sync::atomic::AtomicBool::new(true);
    let (missing, reads) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let api = xtask::k8s::Connection::open(access).or_panic();
            let secrets_api = Api::<Secret>::namespaced(api.client().clone(), &namespace);
            let (mut missing, mut reads) = (Vec::new(), 0);
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                // An unanswered read says nothing about the Secret: only "not found" counts.
                if let Ok(None) = api.run(secrets_api.get_opt(TOKEN_SECRET)) {
                    missing.push(xtask::journal::now());
                }
                reads += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            (missing, reads)
        });
        // Stops the watcher however the switches end: a failed assertion below must not leave it
        // reading forever (the scope waits for it).
        struct StopWatching<'w>(&'w std::sync::atomic::AtomicBool);
        impl Drop for StopWatching<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = StopWatching(&watching);
        for (method, file, owner) in switches {
            let flow = ns.flow();
            if let Some(file) = file {
                let overrides = xtask::flows::Overrides { files: vec![file.clone()], ..Default::default() };
                flow.set_overrides(&overrides, xtask::flows::DEPLOY_MANAGED_VALUES).or_panic();
            }
            deploy::deploy(&flow, &shared.v1, false).unwrap_or_else(|e| panic!("deploy switching to {method}: {e:#}"));
            let owners = token_owners(&ns);
            assert!(owners.iter().any(|k| k == owner) || (owner.is_empty() && owners.is_empty()), "{method}: owned by {owners:?}");
            assert_eq!(token(&ns), the_token, "{method}: the Secret holds the token the pods use");
            assert_new_token_accepted_old_refused(&ns, &the_token, "not-the-token");
            // The value never changed, so no pod is told to restart (the handover's writes are
            // to the Secret's owners, not its value).
            let verified = xtask::flows::verify::verify(&flow).or_panic();
            let current = verified.checks.iter().find(|c| c.name == "secrets-current").expect("verify's secrets-current check");
            assert_eq!(current.outcome, Outcome::Pass, "{method}: {}", current.detail);
        }
        drop(stop);
        watcher.join().unwrap()
    });
    assert!(reads > 100, "the Secret was read through the switches ({reads} reads)");
    assert!(missing.is_empty(), "the Secret was missing at {missing:?} ({} of {reads} reads)", missing.len());
}

/// Issue 22, blue/green: a release installed by `bluegreen start` has no `model-server`
/// Deployment, only its colours. A rotation restarts the live colour's pods (every pod takes the
/// new token, refuses the old), and the next switch starts the other colour with it too.
#[test]
fn a_rotation_in_a_blue_green_release_lasts_through_the_next_switch() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("rotate-bluegreen");
    let flow = ns.flow();
    let start = |tag: &str| xtask::flows::bluegreen::StartOptions {
        image: xtask::flows::images::Wanted::Tag(tag.to_owned()),
        scale_down_delay: 0,
        dry_run: false,
    };
    xtask::flows::bluegreen::start_flow(&flow, &start(&shared.v1)).or_panic();
    let old = token(&ns);
    rotate::rotate(&flow, &Rotation::new(SecretKind::AdminToken, SecretMethod::Manual, ValueSource::Generate), false).or_panic();
    let new = token(&ns);
    assert_ne!(old, new);
    assert_new_token_accepted_old_refused(&ns, &new, &old);
    let switched = xtask::flows::bluegreen::start_flow(&flow, &start(&shared.v2)).or_panic();
    assert_eq!(switched.to_slot, xtask::chart::Slot::Green);
    let answers = flow.block_on(reload::post_reload(&flow.pod_client, &ns.name, "model-server", &new)).or_panic();
    assert!(!answers.is_empty() && answers.iter().all(|a| a.status == 200), "the new colour's pods take the new token: {answers:?}");
    assert_new_token_accepted_old_refused(&ns, &new, &old);
}
