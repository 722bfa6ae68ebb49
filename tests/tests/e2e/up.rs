//! The main job, `cargo xtask up`, minus the cluster it shares: the chart installed with the
//! local images, a real PostgreSQL, and the health endpoints answered through the API server;
//! then `up` again on a release that has been used, as people rerun it when something looks
//! wrong (issue 39): it repairs, and never breaks what is there.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use xtask::cluster::external_secrets;
use xtask::flows::deploy;
use xtask::up::Database;

use crate::fixture::{self, OrPanic, TestNamespace};

const TOKEN_SECRET: &str = "model-server-admin-token";

/// Each model-server pod's name and start time: what a restart would change.
fn pods_started(ns: &TestNamespace) -> BTreeMap<String, String> {
    let flow = ns.flow();
    let api: Api<Pod> = Api::namespaced(flow.client().clone(), &ns.name);
    let listed = flow.block_on(api.list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=model-server"))).unwrap();
    listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.unwrap_or_default(), format!("{:?}", p.status.and_then(|s| s.start_time))))
        .collect()
}

/// The kinds of the objects that own the admin token's Secret.
fn token_owners(ns: &TestNamespace) -> Vec<String> {
    let flow = ns.flow();
    let secret = flow.block_on(Api::<Secret>::namespaced(flow.client().clone(), &ns.name).get(TOKEN_SECRET)).unwrap();
    secret.metadata.owner_references.unwrap_or_default().into_iter().map(|r| r.kind).collect()
}

fn token(ns: &TestNamespace) -> String {
    let flow = ns.flow();
    flow.block_on(xtask::k8s::secrets::read_key(&Api::<Secret>::namespaced(flow.client().clone(), &ns.name), TOKEN_SECRET, "token"))
        .or_panic()
}

/// A release whose admin token the Sealed Secrets controller delivers (as a sealed environment
/// deploys it), then `up`, whose dev values deliver it by hand: one run, it passes, the token is
/// kept (the handover takes the SealedSecret's ownership off before Helm removes it; before, the
/// garbage collector deleted the Secret and the rollout failed). The same from External Secrets
/// Operator's delivery. Then `up` again: a verified revision that restarts nothing and keeps the
/// token.
#[test]
fn up_on_a_sealed_or_external_release_keeps_its_token_and_up_again_restarts_nothing() {
    let shared = fixture::shared();
    fixture::sealed_secrets_controller();
    fixture::external_secrets_operator();
    let ns = TestNamespace::new("up-used");
    let the_token = token(&ns);
    let sealed =
        xtask::kubeseal::Kubeseal::new(&ns.sh).or_panic().seal(&ns.target().access(), &ns.name, TOKEN_SECRET, &the_token).or_panic();
    let dir = tempfile::tempdir().unwrap();
    let sealed_file = dir.path().join("sealed.json");
    std::fs::write(
        &sealed_file,
        serde_json::to_vec(&serde_json::json!({"sealedSecrets": {"enabled": true, "adminToken": {"encryptedToken": sealed}}})).unwrap(),
    )
    .unwrap();
    let flow = ns.flow();
    flow.set_overrides(&xtask::flows::Overrides { files: vec![sealed_file], ..Default::default() }, xtask::flows::DEPLOY_MANAGED_VALUES)
        .or_panic();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    assert!(token_owners(&ns).iter().any(|k| k == "SealedSecret"), "delivered by the controller first");

    let database = Database::At(fixture::shared_database_url().to_owned());
    let up = || xtask::up::deploy_dev(&ns.sh, &shared.cluster.cluster, &ns.name, &database).unwrap_or_else(|e| panic!("{e:#}"));
    let verified = up();
    let answer = |path: &str| verified.checks.iter().find(|(p, _, _)| p == path).cloned().unwrap_or_else(|| panic!("{path} not checked"));
    assert_eq!(answer("/health").1, 200);
    assert!(answer("/health").2.contains(r#""status":"healthy""#));
    assert!(answer("/ready").2.contains(r#""status":"ready""#), "{:?}", answer("/ready"));
    assert_eq!(answer("/health/db").2, r#"{"status":"connected"}"#, "the real PostgreSQL must answer");
    let tag = xtask::image::tag_of(&verified.image);
    assert!(answer("/version").2.contains(&tag), "the deployed version is the built image's tag: {:?}", answer("/version"));
    assert!(
        verified.image.starts_with("localhost:5001/") && verified.image.contains("@sha256:"),
        "through the registry, by digest: {}",
        verified.image
    );
    assert_eq!(token(&ns), the_token, "the token survived the switch from sealed to manual");
    assert!(token_owners(&ns).is_empty(), "dev delivers it by hand: {:?}", token_owners(&ns));
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let last = runs.last().unwrap();
    assert_eq!((last.flow.as_str(), last.result), ("deploy", xtask::journal::RunResult::Succeeded), "up is a deploy run: {last:#?}");

    // External Secrets Operator's delivery, from the store it reads, then `up` again.
    let store_secrets = Api::<Secret>::namespaced(flow.client().clone(), external_secrets::STORE_NAMESPACE);
    let remote_key = format!("{}-admin-token", ns.name);
    let data = || Ok(BTreeMap::from([("token".to_owned(), the_token.clone())]));
    if !flow.block_on(xtask::k8s::secrets::ensure(&store_secrets, &remote_key, data)).or_panic() {
        flow.block_on(xtask::k8s::secrets::write_key(&store_secrets, &remote_key, "token", &the_token)).or_panic();
    }
    let external_file = dir.path().join("external.json");
    let external = serde_json::json!({"externalSecrets": {
        "enabled": true,
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": external_secrets::STORE_NAME},
        "adminToken": {"remoteKey": remote_key, "remoteProperty": "token"},
    }});
    std::fs::write(&external_file, serde_json::to_vec(&external).unwrap()).unwrap();
    let flow = ns.flow();
    flow.set_overrides(&xtask::flows::Overrides { files: vec![external_file], ..Default::default() }, xtask::flows::DEPLOY_MANAGED_VALUES)
        .or_panic();
    deploy::deploy(&flow, &shared.v1, false).or_panic();
    assert!(token_owners(&ns).iter().any(|k| k == "ExternalSecret"), "delivered by the operator first");
    up();
    assert_eq!(token(&ns), the_token, "the token survived the switch from external to manual");
    assert!(token_owners(&ns).is_empty(), "dev delivers it by hand: {:?}", token_owners(&ns));

    let started = pods_started(&ns);
    let revisions = flow.record().or_panic().history.len();
    let again = up();
    assert_eq!(again.image, verified.image, "the same build, the same digest");
    assert_eq!(pods_started(&ns), started, "up again restarted no pod");
    assert_eq!(token(&ns), the_token, "up again kept the token");
    assert_eq!(flow.record().or_panic().history.len(), revisions + 1, "one verified revision");
}
