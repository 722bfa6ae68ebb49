//! `cargo xtask up`, the main job: a kind cluster with model-server deployed and verified, as
//! the dev environment describes it (deploy/envs/dev.yaml), including a real PostgreSQL.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use xshell::Shell;

use crate::chart::{self, Env};
use crate::cluster::app_images::{self, POSTGRES_IMAGE};
use crate::cluster::docker::Docker;
use crate::cluster::lifecycle::{self, ClusterUp, RunningCluster};
use crate::cluster::registry;
use crate::flows::{deploy, Flow, Target};
use crate::helm::record::ReleaseRecord;
use crate::helm::Helm;
use crate::k8s::{self, proxy, secrets};

/// Pods must be ready within this (the image is local: this is start-up, not a pull).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);
/// The PostgreSQL that /health/db checks in dev; kept outside the Helm release on purpose (it
/// is the environment's database, not part of the service).
const POSTGRES_NAME: &str = "model-server-postgres";

/// `cargo xtask up`: the cluster (with `cluster`'s options), then the dev release, verified.
pub fn up(sh: &Shell, cluster: &ClusterUp) -> Result<()> {
    // A fresh machine: everything `up` needs is found or set up here, each step announced.
    crate::host::require_go(sh)?;
    crate::host::require_docker(sh)?;
    crate::host::disk::require_room_for_setup(sh, &Docker::connect(sh)?, false, "`cargo xtask up`")?;
    // helm installs the release; crane resolves tags to digests for every later `deploy`.
    crate::tools::install(sh, &[&crate::tools::HELM, &crate::tools::CRANE])?;
    crate::tools::CARGO_AUDITABLE.install(sh)?;
    let cluster = lifecycle::up(sh, cluster)?;
    let report = deploy_dev(sh, &cluster, &Env::Dev.namespace(), &Database::Own)?;
    println!("{report}");
    lifecycle::print_how_to_use(&cluster);
    println!("  helm history model-server --namespace {}", Env::Dev.namespace());
    println!("(`eval \"$(cargo xtask env)\"` puts the pinned helm, kind and kubectl on PATH and sets KUBECONFIG)");
    Ok(())
}

/// What `deploy_dev` checked, for the person or test that asked.
pub struct Verified {
    pub image: String,
    pub checks: Vec<(String, u16, String)>,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model-server {} is deployed and answers through the API server:", self.image)?;
        for (path, status, body) in &self.checks {
            writeln!(f, "  {path:<11} {status} {body}")?;
        }
        Ok(())
    }
}

/// Builds and pushes the images, provisions the dev namespace (Secrets, PostgreSQL), deploys
/// the build with the `deploy` flow (the release's Lease, its journal, the Secrets' handover
/// between delivery methods, verification, and a rollback on failure, as every deploy), and
/// checks the runbooks' health endpoints through the API server.
///
/// On a cluster that has been used, `up` repairs and never breaks: a release in another shape
/// (blue/green, a canary under way, an interrupted Helm operation) is refused before anything is
/// built or changed, naming what does bring it back; Secrets that exist keep their values.
pub fn deploy_dev(sh: &Shell, cluster: &RunningCluster, namespace: &str, database: &Database) -> Result<Verified> {
    let target = Target::new(Env::Dev, Some(namespace.to_owned()), Some(&cluster.kubeconfig), None)?;
    let flow = Flow::connect(sh, target)?;
    refuse_another_shape(&flow.record()?, namespace)?;

    let docker = Docker::connect(sh)?;
    let image = app_images::build_model_server(sh, &docker)?;
    let postgres = app_images::build_postgres(sh, &docker)?;
    // Through the local registry, as any cluster gets its images: the digest the push reports
    // is the one deployed.
    let pushed = app_images::push(&docker, &image, registry::HOST)?;
    println!("pushed {}", pushed.by_digest());
    println!("pushed {}", app_images::push(&docker, &postgres, registry::HOST)?.by_digest());
    let api = cluster.api()?;
    api.run(provision_with(api.client(), namespace, database))?;

    let pinned = pushed.pinned();
    println!("cargo xtask deploy --env dev --tag {} ({})", pinned.tag, pinned.reference());
    deploy::deploy(&flow, &pinned.tag, false)?;
    let release = chart::RELEASE_NAME;
    let checks = api.run(wait_and_check(api.client(), namespace, release))?;
    println!("helm test {release}");
    Helm::new(sh)?
        .test(&flow.target.chart_release(Some(&pinned.tag)), api.access())
        .context("the chart's smoke test failed inside the cluster")?;
    Ok(Verified { image: pinned.reference(), checks })
}

/// `up` brings dev to its standard shape only where that serves without a gap: a release that
/// runs blue/green or a canary, or whose last Helm operation was interrupted, is said and left
/// as it is (nothing was built or changed), with the commands that do bring it back.
fn refuse_another_shape(state: &ReleaseRecord, namespace: &str) -> Result<()> {
    let release = chart::RELEASE_NAME;
    let start_over = format!(
        "to start dev over in its standard shape: `eval \"$(cargo xtask env)\" && helm uninstall {release} --namespace {namespace} && \
         cargo xtask up` (Secrets the release made go with it, and `up` says which it makes anew)"
    );
    if let Some(current) = state.current().filter(|r| r.is_pending()) {
        bail!(
            "release {release} in {namespace}: Helm revision {} is {} (an operation was interrupted), so helm refuses every change; \
             `up` changed nothing. `cargo xtask rollback --env dev` returns it to its last deployed revision, then run `cargo xtask \
             up` again",
            current.revision,
            current.status
        );
    }
    if state.values.canary.enabled {
        bail!(
            "release {release} in {namespace} has a canary under way (canary {}, stable {}): `up` left it as it is (nothing was \
             changed). `cargo xtask canary status` says where it stands; `cargo xtask canary abort` (or `canary promote`) ends it; \
             then run `cargo xtask up` again",
            state.values.canary.image.tag,
            state.stable_image().unwrap_or_default()
        );
    }
    if let Some(live) = state.values.live_slot() {
        // Replacing both colours by one new Deployment in one Helm revision leaves the Service
        // without ready pods until the new one is ready: requests fail meanwhile.
        bail!(
            "release {release} in {namespace} runs blue/green ({live} is live, {}): `up` left it serving as it is (nothing was \
             changed); it does not convert a blue/green release in place, which would leave its Service without ready pods for a \
             while. To deploy this checkout's build on the idle colour: `cargo xtask image build --tag <tag>` then `cargo xtask \
             bluegreen start --tag <tag>`; {start_over}",
            state.values.slot(live).tag
        );
    }
    Ok(())
}

/// Where a namespace's model-server finds its PostgreSQL.
pub enum Database {
    /// Its own, in the namespace (what `up` makes).
    Own,
    /// A server elsewhere in the cluster, by its URL (see [`database_url_for_other_namespaces`]):
    /// many short-lived namespaces sharing one database server, as the end-to-end tests' do.
    At(String),
}

/// The Secret holding the database URL the dev values reference (`env.databaseUrlSecretName`).
const DATABASE_URL_SECRET: &str = "model-server-database";

/// The namespace, the Secrets the dev values reference, and PostgreSQL. Existing Secrets are
/// kept: `up` never rotates credentials.
pub async fn provision(client: &kube::Client, namespace: &str) -> Result<()> {
    provision_with(client, namespace, &Database::Own).await
}

/// [`provision`], with the namespace's database in the namespace or elsewhere.
pub async fn provision_with(client: &kube::Client, namespace: &str, database: &Database) -> Result<()> {
    k8s::ensure_namespace(client, namespace).await?;
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if secrets::ensure(&secret_api, "model-server-admin-token", || Ok(BTreeMap::from([("token".to_owned(), secrets::random_token()?)])))
        .await?
    {
        println!("created Secret model-server-admin-token (a new random token)");
    }
    match database {
        Database::Own => provision_postgres(client, namespace).await,
        Database::At(url) => {
            let wanted = BTreeMap::from([("url".to_owned(), url.clone())]);
            if secrets::read_key(&secret_api, DATABASE_URL_SECRET, "url").await.ok().as_ref() != Some(url) {
                let _ = secret_api.delete(DATABASE_URL_SECRET, &Default::default()).await;
                secrets::ensure(&secret_api, DATABASE_URL_SECRET, || Ok(wanted.clone())).await?;
                println!("created Secret {DATABASE_URL_SECRET} (a database elsewhere in the cluster)");
            }
            Ok(())
        }
    }
}

/// The URL of `namespace`'s own PostgreSQL (made by [`provision`]) as pods of other namespaces
/// reach it: by its Service's cluster DNS name.
pub async fn database_url_for_other_namespaces(client: &kube::Client, namespace: &str) -> Result<String> {
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let password = secrets::read_key(&secret_api, POSTGRES_NAME, "password")
        .await
        .with_context(|| format!("namespace {namespace} has no PostgreSQL of its own (provision it first)"))?;
    Ok(postgres_url(&password, &format!("{POSTGRES_NAME}.{namespace}.svc")))
}

/// The URL model-server is given for the PostgreSQL [`provision`] makes, reached at `host`.
fn postgres_url(password: &str, host: &str) -> String {
    format!("postgres://app:{password}@{host}:5432/app?sslmode=disable")
}

/// PostgreSQL in `namespace`, its password in a Secret and its URL in [`DATABASE_URL_SECRET`].
async fn provision_postgres(client: &kube::Client, namespace: &str) -> Result<()> {
    let apply = PatchParams::apply("shipshape").force();
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let password = match secret_api.get_opt(POSTGRES_NAME).await? {
        Some(_) => None,
        None => Some(secrets::random_token()?),
    };
    if let Some(password) = &password {
        secrets::ensure(&secret_api, POSTGRES_NAME, || Ok(BTreeMap::from([("password".to_owned(), password.clone())]))).await?;
        let url = postgres_url(password, POSTGRES_NAME);
        // Replace any URL left from an earlier database: it must match the new password.
        let _ = secret_api.delete(DATABASE_URL_SECRET, &Default::default()).await;
        secrets::ensure(&secret_api, DATABASE_URL_SECRET, || Ok(BTreeMap::from([("url".to_owned(), url)]))).await?;
        println!("created Secrets {POSTGRES_NAME} and {DATABASE_URL_SECRET} (a new random password)");
    }

    let labels = json!({"app.kubernetes.io/name": POSTGRES_NAME, "app.kubernetes.io/managed-by": "shipshape"});
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": POSTGRES_NAME, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": POSTGRES_NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{
                        "name": "postgres",
                        "image": app_images::in_registry(POSTGRES_IMAGE, registry::HOST),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "postgres", "containerPort": 5432}],
                        "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": POSTGRES_NAME, "key": "password"}}}],
                        "readinessProbe": {"tcpSocket": {"port": "postgres"}, "periodSeconds": 2},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), namespace).patch(POSTGRES_NAME, &apply, &Patch::Apply(&deployment)).await?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": POSTGRES_NAME, "labels": labels},
        "spec": {"selector": {"app.kubernetes.io/name": POSTGRES_NAME}, "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace).patch(POSTGRES_NAME, &apply, &Patch::Apply(&service)).await?;
    let selector = watcher::Config::default().labels(&format!("app.kubernetes.io/name={POSTGRES_NAME}"));
    k8s::wait::pods_running(client, namespace, selector, 1, ROLLOUT_TIMEOUT).await.context("PostgreSQL did not start")?;
    // Seen: model-server's first /health/db refused ("Connection refused") 3 s after the
    // PostgreSQL pod turned ready, its new Service not yet routed.
    k8s::wait::service_has_ready_endpoint(client, namespace, POSTGRES_NAME, ROLLOUT_TIMEOUT)
        .await
        .context("PostgreSQL's Service has no ready endpoint")?;
    Ok(())
}

/// Waits for the release's pods, then asks the runbooks' health endpoints through the API server.
async fn wait_and_check(client: &kube::Client, namespace: &str, release: &str) -> Result<Vec<(String, u16, String)>> {
    // The stable Deployment is named after the release (helm/model-server/templates/_helpers.tpl).
    k8s::wait::deployment_rolled_out(client, namespace, release, ROLLOUT_TIMEOUT).await.context("model-server did not roll out")?;
    let mut checks = Vec::new();
    for path in ["/health", "/ready", "/health/db", "/version"] {
        let answer = proxy::get(client, namespace, release, "http", path).await?;
        checks.push((path.to_owned(), answer.status, answer.body.trim().to_owned()));
    }
    let failed: Vec<String> =
        checks.iter().filter(|(_, status, _)| *status != 200).map(|(p, s, b)| format!("{p} answered {s}: {b}")).collect();
    if !failed.is_empty() {
        bail!("model-server is running but not healthy: {}", failed.join("; "));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::refuse_another_shape;
    use crate::helm::record::ReleaseRecord;
    use serde_json::json;

    fn refusal(statuses: &[&str], values: serde_json::Value) -> String {
        refuse_another_shape(&ReleaseRecord::with_history(statuses, values), "model-server-dev").unwrap_err().to_string()
    }

    #[test]
    fn up_repairs_the_standard_shape_and_installs_on_nothing() {
        assert!(refuse_another_shape(&ReleaseRecord::with_history(&[], serde_json::Value::Null), "model-server-dev").is_ok());
        assert!(refuse_another_shape(&ReleaseRecord::with_history(&["superseded", "deployed"], json!({})), "ns").is_ok());
        // A failed upgrade is history: up's deploy repairs it.
        assert!(refuse_another_shape(&ReleaseRecord::with_history(&["deployed", "failed"], json!({})), "ns").is_ok());
    }

    #[test]
    fn up_leaves_another_shape_serving_and_names_the_commands_that_bring_it_back() {
        let said = refusal(&["deployed"], json!({"blueGreen": {"enabled": true, "activeSlot": "green", "green": {"tag": "v3"}}}));
        for words in [
            "runs blue/green (green is live, v3)",
            "nothing was changed",
            "bluegreen start --tag <tag>",
            "helm uninstall model-server --namespace model-server-dev && cargo xtask up",
        ] {
            assert!(said.contains(words), "{words:?} in: {said}");
        }
        let said = refusal(&["deployed"], json!({"canary": {"enabled": true, "replicaCount": 1, "image": {"tag": "v2"}}}));
        for words in ["canary under way (canary v2", "nothing was changed", "canary status", "canary abort", "cargo xtask up` again"] {
            assert!(said.contains(words), "{words:?} in: {said}");
        }
        let said = refusal(&["deployed", "pending-upgrade"], json!({}));
        assert!(said.contains("revision 2 is pending-upgrade") && said.contains("cargo xtask rollback --env dev"), "{said}");
    }
}
