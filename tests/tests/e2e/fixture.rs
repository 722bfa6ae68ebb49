//! The shared cluster, the model-server versions the tests deploy, and a namespace per test.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::Api;
use xtask::chart::Env;
use xtask::cluster::{app_images, docker::Docker, registry};
use xtask::flows::{Flow, Target};
use xtask::up::Database;

use crate::support::TestCluster;

/// The cluster every test in this binary shares, and the versions loaded into it.
pub struct Shared {
    pub cluster: TestCluster,
    /// A good version, and another good version (same build, its own tag).
    pub v1: String,
    pub v2: String,
    /// A version that exits at start: a crash loop.
    pub crashing: String,
    /// A version that answers half of its predictions with HTTP 500.
    pub failing_half: String,
    /// A version that takes 200 ms longer over every prediction.
    pub slow: String,
    /// A version that holds 96 MiB more than stable (within its limit).
    pub hungry: String,
    /// A version that spends 30 ms of CPU on every prediction (p95 still within stable's x3 +
    /// 50 ms; at 25 % of 25 requests a second, about 190m of CPU per pod against stable's few).
    pub burning: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// When the binary's first test asked for the shared cluster: the timeline's zero.
static SUITE_START: OnceLock<std::time::Instant> = OnceLock::new();

/// Seconds since [`SUITE_START`].
fn since_suite_start(at: std::time::Instant) -> f64 {
    at.saturating_duration_since(*SUITE_START.get_or_init(std::time::Instant::now)).as_secs_f64()
}

/// Where the suite's time went, printed once every test has run (`cargo xtask test` shows it,
/// since it is printed outside any test): each test's namespace (from, to), and each
/// CPU-heavy step's wait for the quiet node and its hold (all seconds since the first test).
static NAMESPACE_TIMES: std::sync::Mutex<Vec<(String, f64, f64)>> = std::sync::Mutex::new(Vec::new());
/// Each namespace's provisioning (its Secrets, its own PostgreSQL up and routed where it has
/// one, MLflow's account), in seconds, by namespace: time a test spends before its namespace's
/// timeline starts.
static PROVISIONING_TIMES: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());
static HEAVY_TIMES: std::sync::Mutex<Vec<(f64, f64, f64)>> = std::sync::Mutex::new(Vec::new());
/// Each traffic test's last count read ([`LoadGenerator::stats`]), by namespace: requests sent,
/// failed, retried. The figures a closing note quotes, printed whether the tests pass or not.
static TRAFFIC: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64, u64)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Runs when the test binary exits, after every test: a static is never dropped.
extern "C" fn remove_shared_cluster() {
    let mut times = NAMESPACE_TIMES.lock().map(|t| t.clone()).unwrap_or_default();
    if !times.is_empty() {
        times.sort_by(|a, b| (b.2 - b.1).total_cmp(&(a.2 - a.1)));
        let total: f64 = times.iter().map(|(_, from, to)| to - from).sum();
        eprintln!(
            "e2e namespaces, longest first ({total:.0} s in all, tests running side by side; from-to: seconds since the first test):"
        );
        for (name, from, to) in &times {
            eprintln!("  {:>6.1} s  {from:>5.0}-{to:<5.0} {name}", to - from);
        }
    }
    let mut provisioning = PROVISIONING_TIMES.lock().map(|t| t.clone()).unwrap_or_default();
    if !provisioning.is_empty() {
        provisioning.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = provisioning.iter().map(|(_, took)| took).sum();
        let longest: Vec<String> = provisioning.iter().take(5).map(|(name, took)| format!("{name} {took:.1} s")).collect();
        eprintln!(
            "e2e namespaces provisioned (before each timeline above): {} in {total:.0} s in all; longest: {}",
            provisioning.len(),
            longest.join(", ")
        );
    }
    let heavy = HEAVY_TIMES.lock().map(|t| t.clone()).unwrap_or_default();
    if !heavy.is_empty() {
        let waited: f64 = heavy.iter().map(|(asked, got, _)| got - asked).sum();
        let held: f64 = heavy.iter().map(|(_, got, done)| done - got).sum();
        eprintln!(
            "e2e CPU-heavy steps (traffic tests paused): {} held the node {held:.0} s in all, after waiting {waited:.0} s for it:",
            heavy.len()
        );
        for (asked, got, done) in &heavy {
            eprintln!("  asked {asked:>5.0}, held {got:>5.0}-{done:<5.0}");
        }
    }
    let traffic = TRAFFIC.lock().map(|t| t.clone()).unwrap_or_default();
    if !traffic.is_empty() {
        eprintln!("e2e traffic (each test's last count since its baseline: sent, failed, sent again after no answer):");
        for (name, (sent, failed, retried)) in &traffic {
            eprintln!("  {sent:>6} sent {failed:>4} failed {retried:>4} retried  {name}");
        }
    }
    remove_environment_key();
    if let Some(production) = PRODUCTION.get() {
        production.cluster.remove(A_TEST_FAILED.load(Ordering::SeqCst));
    }
    if let Some(shared) = SHARED.get() {
        shared.cluster.remove(A_TEST_FAILED.load(Ordering::SeqCst));
    }
}

pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        SUITE_START.get_or_init(std::time::Instant::now);
        let cluster = TestCluster::create_or_reuse("flows");
        // SAFETY: registers a plain function with the C library; it runs once at exit.
        unsafe { atexit(remove_shared_cluster) };
        let sh = xtask::repo_shell().unwrap();
        let docker = Docker::connect(&sh).unwrap();
        let v1 = app_images::build_model_server(&sh, &docker).unwrap();
        let v2 = app_images::variant(&docker, &v1, "v2", &[]).unwrap();
        let crashing = app_images::variant(&docker, &v1, "crash", &[("FAULT_CRASH_ON_START", "true")]).unwrap();
        let failing_half = app_images::variant(&docker, &v1, "errors", &[("FAULT_ERROR_RATE", "0.5")]).unwrap();
        let slow = app_images::variant(&docker, &v1, "slow", &[("FAULT_LATENCY_MS", "200")]).unwrap();
        let hungry = app_images::variant(&docker, &v1, "hungry", &[("FAULT_MEMORY_MIB", "96")]).unwrap();
        let burning = app_images::variant(&docker, &v1, "burning", &[("FAULT_CPU_MS", "30")]).unwrap();
        let postgres = app_images::build_postgres(&sh, &docker).unwrap();
        // Through the local registry, as every flow gets its images (cluster up started it).
        for image in [&v1, &v2, &crashing, &failing_half, &slow, &hungry, &burning, &postgres] {
            app_images::push(&docker, image, registry::HOST).unwrap();
        }
        let tag = |image: &str| image.rsplit_once(':').unwrap().1.to_owned();
        Shared {
            v1: tag(&v1),
            v2: tag(&v2),
            crashing: tag(&crashing),
            failing_half: tag(&failing_half),
            slow: tag(&slow),
            hungry: tag(&hungry),
            burning: tag(&burning),
            cluster,
        }
    })
}

/// One test's namespace: an environment's Secrets (the admin token, the database URL, and
/// MLflow's credentials where the environment names them) and its PostgreSQL or the URL of the
/// shared one, deleted when the test ends (kept, with the cluster, when it fails and
/// --keep-cluster asked).
pub struct TestNamespace {
    pub name: String,
    pub env: Env,
    pub kubeconfig: PathBuf,
    pub sh: xshell::Shell,
    created: std::time::Instant,
}

impl TestNamespace {
    /// A dev namespace on the shared cluster, its database the shared cluster's
    /// [`shared_database_url`].
    pub fn new(purpose: &str) -> TestNamespace {
        let database = Database::At(shared_database_url().to_owned());
        TestNamespace::provisioned(Env::Dev, &shared().cluster.cluster.kubeconfig, purpose, &database)
    }

    /// A dev namespace on the shared cluster with a PostgreSQL of its own, for a test that
    /// stops its database.
    pub fn with_own_database(purpose: &str) -> TestNamespace {
        TestNamespace::provisioned(Env::Dev, &shared().cluster.cluster.kubeconfig, purpose, &Database::Own)
    }

    /// A namespace of environment `env` on the cluster its values name (its context) in
    /// `kubeconfig`, provisioned as an operator prepares one before a first deploy (its own
    /// PostgreSQL: staging's and prod's NetworkPolicies let the pods reach their own namespace's).
    pub fn in_env(env: Env, kubeconfig: &std::path::Path, purpose: &str) -> TestNamespace {
        TestNamespace::provisioned(env, kubeconfig, purpose, &Database::Own)
    }

    fn provisioned(env: Env, kubeconfig: &std::path::Path, purpose: &str, database: &Database) -> TestNamespace {
        shared();
        let asked = std::time::Instant::now();
        let name = format!("e2e-{purpose}");
        let api = connect(env, &name, kubeconfig).or_panic();
        api.run(provision_afresh(api.client(), &name, database)).unwrap_or_else(|e| panic!("{e:#}"));
        let values = chart_values_of(env);
        if !values.env.mlflow_credentials_secret_name.is_empty() {
            // An MLflow account of its own (the environments load their model from the
            // cluster's MLflow), as MLflow's admin makes one for a team, and its Secret.
            let user = xtask::mlflow::Credentials {
                username: format!("model-server-{name}"),
                password: xtask::k8s::secrets::random_token().or_panic(),
            };
            if let Some(artifact) = xtask::mlflow::ModelArtifact::from_model_uri(&values.env.model_uri) {
                api.run(async {
                    let admin = xtask::cluster::mlflow::admin(api.client()).await?;
                    artifact.server.set_user(api.client(), &admin, &user).await
                })
                .or_panic();
            }
            api.run(async {
                let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(api.client().clone(), &name);
                let data = || {
                    Ok(std::collections::BTreeMap::from([
                        (values.env.mlflow_username_key.clone(), user.username.clone()),
                        (values.env.mlflow_password_key.clone(), user.password.clone()),
                    ]))
                };
                xtask::k8s::secrets::ensure(&secrets, &values.env.mlflow_credentials_secret_name, data).await
            })
            .or_panic();
        }
        if let Ok(mut times) = PROVISIONING_TIMES.lock() {
            times.push((name.clone(), asked.elapsed().as_secs_f64()));
        }
        TestNamespace {
            name,
            env,
            kubeconfig: kubeconfig.to_path_buf(),
            sh: xtask::repo_shell().unwrap(),
            created: std::time::Instant::now(),
        }
    }

    pub fn target(&self) -> Target {
        Target::new(self.env, Some(self.name.clone()), Some(&self.kubeconfig), None).or_panic()
    }

    pub fn flow(&self) -> Flow<'_> {
        Flow::connect(&self.sh, self.target()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A flow for a standard deploy here. Staging's and prod's values name no registry of
    /// ours; their local clusters pull from the local one, as an operator's `deploy --set
    /// image.repository=...` ([`local_registry_args`]) makes them.
    pub fn deploy_flow(&self) -> Flow<'_> {
        let flow = self.flow();
        if self.env != Env::Dev {
            let overrides =
                xtask::flows::Overrides { set_string: vec![("image.repository".to_owned(), local_repository())], ..Default::default() };
            flow.set_overrides(&overrides, xtask::flows::DEPLOY_MANAGED_VALUES).or_panic();
        }
        flow
    }
}

/// The namespace of the shared cluster's one PostgreSQL, which every dev test namespace's
/// model-server checks (`/health/db`): one database server instead of one per test (each test
/// waited about 5 s for its own to start, initialise and be routed: 294 s in all for 54
/// namespaces; 19 connections at the busiest). Tests that stop their database have their own
/// ([`TestNamespace::with_own_database`]).
const SHARED_DATABASE_NAMESPACE: &str = "e2e-database";

/// The shared cluster's PostgreSQL, provisioned as `up` provisions a namespace's, by the URL
/// other namespaces reach it at.
pub fn shared_database_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let api = connect(Env::Dev, SHARED_DATABASE_NAMESPACE, &shared().cluster.cluster.kubeconfig).or_panic();
        api.run(async {
            provision_afresh(api.client(), SHARED_DATABASE_NAMESPACE, &Database::Own).await?;
            xtask::up::database_url_for_other_namespaces(api.client(), SHARED_DATABASE_NAMESPACE).await
        })
        .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

/// The local registry's model-server repository, as the local clusters' nodes pull it.
pub fn local_repository() -> String {
    app_images::in_registry(app_images::MODEL_SERVER_REPOSITORY, registry::HOST)
}

/// `deploy`'s arguments that point staging's or prod's release at the local registry.
pub fn local_registry_args() -> [String; 2] {
    ["--set-string".to_owned(), format!("image.repository={}", local_repository())]
}

/// An environment's values as the chart gives them (defaults and deploy/envs/<env>.yaml).
fn chart_values_of(env: Env) -> xtask::chart::Values {
    let sh = xtask::repo_shell().unwrap();
    let helm = xtask::helm::Helm::new(&sh).or_panic();
    xtask::chart::Values::of(
        &helm.planned_values(&xtask::chart::chart_dir(), &xtask::chart::release_spec(env, xtask::chart::Variant::Stable, None)).or_panic(),
    )
    .or_panic()
}

/// A connection to `namespace` on environment `env`'s cluster (its context) in `kubeconfig`.
fn connect(env: Env, namespace: &str, kubeconfig: &std::path::Path) -> anyhow::Result<xtask::k8s::Connection> {
    xtask::k8s::Connection::open(Target::new(env, Some(namespace.to_owned()), Some(kubeconfig), None)?.access())
}

/// `name` provisioned as `up` provisions a namespace, once any namespace of that name an earlier
/// run left terminating (on a reused cluster) is gone.
async fn provision_afresh(client: &kube::Client, name: &str, database: &Database) -> anyhow::Result<()> {
    until_gone_if_terminating(client, name).await?;
    xtask::up::provision_with(client, name, database).await
}

/// A namespace of the same name left terminating by an earlier run (on a reused cluster).
async fn until_gone_if_terminating(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespaces.get_opt(name).await?.is_some_and(|ns| ns.metadata.deletion_timestamp.is_some()) {
        let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
        xtask::k8s::wait::until(namespaces, config, &format!("namespace {name} deleted"), std::time::Duration::from_secs(120), |found| {
            if found.is_empty() {
                xtask::k8s::wait::Progress::Done("gone".to_owned())
            } else {
                xtask::k8s::wait::Progress::Waiting("terminating".to_owned())
            }
        })
        .await?;
    }
    Ok(())
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Shown with --nocapture: how long each end-to-end test took after its namespace was ready.
        let seconds = self.created.elapsed().as_secs_f64();
        eprintln!("e2e timing: namespace {} used for {seconds:.1} s", self.name);
        if let Ok(mut times) = NAMESPACE_TIMES.lock() {
            times.push((self.name.clone(), since_suite_start(self.created), since_suite_start(std::time::Instant::now())));
        }
        if std::thread::panicking() {
            A_TEST_FAILED.store(true, Ordering::SeqCst);
            if crate::support::keep_requested() {
                eprintln!("keeping namespace {} for inspection", self.name);
                return;
            }
        }
        let delete = || {
            let api = connect(self.env, &self.name, &self.kubeconfig)?;
            api.run(Api::<Namespace>::all(api.client().clone()).delete(&self.name, &DeleteParams::background()))?;
            anyhow::Ok(())
        };
        let _ = delete();
    }
}

/// The production-shaped cluster (a control plane and three workers, its context named as
/// prod's values name it): the one `cargo xtask test` made, else one made here and deleted at
/// exit. One test uses it, running production's scenarios one after the other
/// (across_clusters.rs says why).
pub struct Production {
    pub cluster: TestCluster,
    /// A kubeconfig holding `staging-cluster` (the shared cluster, current) and `prod-cluster`:
    /// the environments' contexts, as a release manager's kubeconfig holds them.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

static PRODUCTION: OnceLock<Production> = OnceLock::new();

/// Prod's context name, from deploy/envs/prod.yaml as committed.
pub fn prod_context() -> String {
    Env::Prod.cluster_context().or_panic().expect("deploy/envs/prod.yaml names its cluster's context")
}

/// The production cluster.
pub fn production() -> &'static Production {
    let production = PRODUCTION.get_or_init(|| {
        shared();
        let cluster = TestCluster::production("prod", &prod_context());
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let staging = Env::Staging.cluster_context().or_panic().expect("deploy/envs/staging.yaml names its cluster's context");
        write_environments_kubeconfig(&shared().cluster.cluster.kubeconfig, &staging, &cluster.cluster.kubeconfig, &kubeconfig);
        Production { cluster, kubeconfig, _dir: dir }
    });
    production
}

/// One kubeconfig with the shared cluster as context `staging` (current) and the production
/// cluster's own context: `KUBECONFIG=a:b` merged, as kubectl would, then the context renamed.
fn write_environments_kubeconfig(shared: &std::path::Path, staging: &str, prod: &std::path::Path, out: &std::path::Path) {
    let merged = as_staging(shared, staging).merge(kube::config::Kubeconfig::read_from(prod).unwrap()).unwrap();
    std::fs::write(out, serde_json::to_vec_pretty(&merged).unwrap()).unwrap();
}

/// The shared cluster's kubeconfig with its context named `staging` (and current).
fn as_staging(shared: &std::path::Path, staging: &str) -> kube::config::Kubeconfig {
    let mut config = kube::config::Kubeconfig::read_from(shared).unwrap();
    for context in &mut config.contexts {
        context.name = staging.to_owned();
    }
    config.current_context = Some(staging.to_owned());
    config
}

/// The environment's signing key pair: the public half where the environments' values look for
/// it (deploy/keys/cosign.pub, as `cargo xtask keys init` writes it), the private half and its
/// password in this process's environment, as `release` reads them. Made here when the checkout
/// has no key (and removed at exit); a checkout with its own key needs its private half in
/// SHIPSHAPE_COSIGN_KEY.
pub struct EnvironmentKey {
    pub private: PathBuf,
    pub public: PathBuf,
    made_here: bool,
    _dir: tempfile::TempDir,
}

static ENVIRONMENT_KEY: OnceLock<EnvironmentKey> = OnceLock::new();

pub fn environment_key() -> &'static EnvironmentKey {
    ENVIRONMENT_KEY.get_or_init(|| {
        std::env::set_var("COSIGN_PASSWORD", "e2e-not-a-secret");
        let public = xtask::repo_root().join(xtask::keys::PUBLIC_KEY);
        let owner = owner_marker(&public);
        let dir = tempfile::tempdir().unwrap();
        // A key this suite made in a run that was killed before its exit handler (a machine shut
        // down, a SIGKILL): its owner is gone, so it is ours to replace, not the checkout's key.
        if let Some(pid) = std::fs::read_to_string(&owner).ok().and_then(|text| text.trim().parse::<u32>().ok()) {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                panic!("{} is the key of another end-to-end run still going (process {pid}): wait for it to end", public.display());
            }
            eprintln!("removing {}: an end-to-end run (process {pid}) made it and was killed before it could", public.display());
            let _ = std::fs::remove_file(&public);
            let _ = std::fs::remove_file(&owner);
        }
        if public.exists() {
            let private = std::env::var_os("SHIPSHAPE_COSIGN_KEY").map(PathBuf::from).unwrap_or_else(|| {
                panic!(
                    "{} exists (this checkout's own key): the production tests sign releases with the environment's key, so \
                     set SHIPSHAPE_COSIGN_KEY (and COSIGN_PASSWORD) to its private half",
                    public.display()
                )
            });
            return EnvironmentKey { private, public, made_here: false, _dir: dir };
        }
        let private = dir.path().join("environment.key");
        xtask::keys::init_keys(&xtask::repo_shell().unwrap(), &private, &public).or_panic();
        std::fs::write(&owner, std::process::id().to_string()).unwrap();
        EnvironmentKey { private, public, made_here: true, _dir: dir }
    })
}

/// Removes the key pair [`environment_key`] made (at exit: a static is never dropped).
pub fn remove_environment_key() {
    if let Some(key) = ENVIRONMENT_KEY.get().filter(|k| k.made_here) {
        let _ = std::fs::remove_file(&key.public);
        let _ = std::fs::remove_file(owner_marker(&key.public));
        let _ = std::fs::remove_dir(key.public.parent().unwrap());
    }
}

/// Beside a key the suite made: the process that made it, so a later run knows a leftover.
fn owner_marker(public: &std::path::Path) -> PathBuf {
    public.with_extension("pub.made-by-e2e")
}

/// A release of this checkout as `<version>-environment-signed`, built, scanned, pushed, signed
/// and attested with the environment's key (once per version in a run). The suffix is this
/// function's own: the registry's tags are shared by every test, and a test releasing the same
/// tag with its own key moves it under another (seen: `-signed`, pushed by `artifacts` between
/// this release and its deploy, failed the signature check).
pub fn signed_release(version: &str) -> xtask::image::Pinned {
    let tag = format!("{version}-environment-signed");
    static RELEASED: std::sync::Mutex<Vec<xtask::image::Pinned>> = std::sync::Mutex::new(Vec::new());
    let mut released = RELEASED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = released.iter().find(|p| p.tag == tag) {
        return found.clone();
    }
    let key = environment_key();
    let database = clean_vulnerability_database();
    let _heavy = cpu_heavy();
    let pinned =
        xtask::flows::release::release(&xtask::repo_shell().unwrap(), &tag, registry::HOST, &key.private, database, true).or_panic();
    released.push(pinned.clone());
    pinned
}

/// Another key pair than the environment's (someone else's), for the refusals.
fn another_key() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static ANOTHER: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    ANOTHER.get_or_init(|| {
        environment_key();
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("theirs.key"), dir.path().join("theirs.pub"));
        xtask::keys::init_keys(&xtask::repo_shell().unwrap(), &private, &public).or_panic();
        (dir, private, public)
    })
}

/// The public half of [`another_key`].
pub fn another_public_key() -> PathBuf {
    another_key().2.clone()
}

/// A release signed with someone else's key, as `<version>-another-key` (the suffix is its own,
/// as [`signed_release`]'s): real signatures and provenance, the wrong signer.
pub fn signed_release_with_another_key(version: &str) -> xtask::image::Pinned {
    let (_, private, _) = another_key();
    let _heavy = cpu_heavy();
    let tag = format!("{version}-another-key");
    xtask::flows::release::release(&xtask::repo_shell().unwrap(), &tag, registry::HOST, private, clean_vulnerability_database(), true)
        .or_panic()
}

/// A release signed with the environment's key whose provenance says it was built with
/// uncommitted changes, as `release --allow-dirty` from a dirty checkout makes it, as
/// `<version>-uncommitted`. Made from this checkout with its source described as dirty: the
/// tests running beside this one need the checkout as it is.
pub fn signed_uncommitted_release(version: &str) -> xtask::image::Pinned {
    let key = environment_key();
    let sh = xtask::repo_shell().unwrap();
    let mut source = xtask::git::source(&sh).or_panic();
    source.dirty = true;
    let _heavy = cpu_heavy();
    let tag = format!("{version}-uncommitted");
    xtask::flows::release::release_source(&sh, &source, &tag, registry::HOST, &key.private, clean_vulnerability_database()).or_panic()
}

/// The pinned kubectl (built with the node image) on `context` of `kubeconfig`, as an operator
/// runs it: the runbooks' own commands (`drain`, `uncordon`, `rollout undo`).
pub fn kubectl(kubeconfig: &std::path::Path, context: &str, args: &[&str]) -> std::process::Output {
    let kubectl = xtask::cluster::node_image::built_kubectl().or_panic().expect("the pinned kubectl is built with the node image");
    std::process::Command::new(kubectl)
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", context])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A Trivy database with advisories the build is not affected by.
pub fn clean_vulnerability_database() -> &'static xtask::scan::Database {
    static CLEAN: OnceLock<TestDatabase> = OnceLock::new();
    &CLEAN.get_or_init(|| vulnerability_database("0.1.0")).database
}

/// A vulnerability database in a directory of its own, removed when dropped.
pub struct TestDatabase {
    _dir: tempfile::TempDir,
    pub database: xtask::scan::Database,
}

/// A Trivy database built now holding one CRITICAL advisory against the axum crate model-server
/// links: `fixed` decides whether the linked version is affected.
pub fn vulnerability_database(fixed: &str) -> TestDatabase {
    advisory_database(fixed, true, k8s_openapi::jiff::Timestamp::now())
}

/// A Trivy database holding one advisory against the axum crate model-server links: `fixed`
/// decides whether the linked version is affected, `scored` whether the advisory has a severity
/// (without one Trivy reports it UNKNOWN), `built` how current the database is. Beside it, in
/// Debian's bucket (the image records the build machine's libc6 and libgcc-s1), a glibc
/// advisory no release of it is affected by.
pub fn advisory_database(fixed: &str, scored: bool, built: k8s_openapi::jiff::Timestamp) -> TestDatabase {
    databases(fixed, "0.1", scored, built)
}

/// The clean database, but with a HIGH advisory against the glibc the image holds (Debian's
/// source package of libc6, fixed in a version no machine has): the system libraries are scanned.
pub fn system_library_advisory_database() -> TestDatabase {
    databases("0.1.0", "99.0", true, k8s_openapi::jiff::Timestamp::now())
}

/// Writes the database with trivy-db's own Go packages (tests/trivy-db), as Trivy's is built.
fn databases(axum_fixed: &str, glibc_fixed: &str, scored: bool, built: k8s_openapi::jiff::Timestamp) -> TestDatabase {
    let dir = tempfile::tempdir().unwrap();
    // The Debian release the image's libraries come from: the build machine's (this one's).
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian = os_release.lines().find_map(|l| l.strip_prefix("VERSION_ID=")).unwrap_or("12").trim_matches('"').to_owned();
    let advisories = serde_json::json!({
        "updatedAt": built.to_string(),
        "advisories": [
            {"id": "RUSTSEC-2099-0001", "source": "cargo::shipshape fixture", "package": "axum",
             "vulnerableVersions": [format!("<{axum_fixed}")], "severity": if scored { "CRITICAL" } else { "" }},
            {"id": "DSA-9099-1", "source": format!("debian {debian}"), "package": "glibc",
             "fixedVersion": glibc_fixed, "severity": "HIGH"},
        ]
    });
    let writer = xtask::test::trivy_db_writer(&xtask::repo_shell().unwrap()).or_panic();
    let mut child = std::process::Command::new(&writer)
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", writer.display()));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), advisories.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "{} could not write the database", writer.display());
    let database = xtask::scan::Database { dir: dir.path().to_owned(), max_age_days: xtask::scan::MAX_AGE_DAYS };
    TestDatabase { _dir: dir, database }
}

/// Stable pods in the progressive tests: 25 % and 50 % steps are real percentages, and a
/// promotion never leaves the Service on a single pod that is being replaced.
pub const PODS: u64 = 4;

/// A canary of `tag` through `steps`, as the tests judge one: 8 s of traffic per step, at least
/// 20 canary requests, 1 % errors, p95 at most 3 times stable's (a busy 2-core host), the default
/// resource ratios; `approval` at the gate.
pub fn canary_options(tag: &str, steps: Vec<u32>, approval: xtask::flows::canary::Approval) -> xtask::flows::canary::StartOptions {
    xtask::flows::canary::StartOptions {
        image: xtask::flows::images::Wanted::Tag(tag.to_owned()),
        steps,
        analysis_seconds: 8,
        min_requests: 20,
        max_error_rate: 0.01,
        max_latency_ratio: 3.0,
        max_memory_ratio: xtask::flows::analysis::MAX_MEMORY_RATIO,
        max_cpu_ratio: xtask::flows::analysis::MAX_CPU_RATIO,
        approval: Some(approval),
        prometheus: None,
        checks: None,
        dry_run: false,
    }
}

/// The release at `tag` with [`PODS`] stable pods, as an operator would have it before a canary:
/// deployed with `--set replicaCount=4`.
pub fn stable_at<'n>(ns: &'n TestNamespace, tag: &str) -> Flow<'n> {
    let flow = ns.flow();
    let replicas = xtask::flows::Overrides { set: vec![("replicaCount".to_owned(), PODS.to_string())], ..Default::default() };
    flow.set_overrides(&replicas, xtask::flows::DEPLOY_MANAGED_VALUES).or_panic();
    xtask::flows::deploy::deploy(&flow, tag, false).or_panic();
    flow
}

/// The pinned `helm` (`xtask::tools::HELM.find`) run by hand against `kubeconfig`'s cluster, as
/// the runbooks' readers run it beside shipshape (`helm rollback`, `helm uninstall`): it must
/// succeed; its stderr is the failure's message.
pub fn helm_by_hand(helm: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(helm).args(args).arg("--kubeconfig").arg(kubeconfig).output().unwrap();
    assert!(out.status.success(), "helm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// `helm upgrade` of the release with exactly `values`, by hand, outside any flow: how the tests
/// set up a release's shape (its Secrets' source, a wrong store) the way an operator would with
/// `helm upgrade -f values.yaml`.
pub fn helm_upgrade_by_hand(ns: &TestNamespace, values: &serde_json::Value, description: &str) {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(values).unwrap()).unwrap();
    let release = xtask::helm::ReleaseSpec {
        name: "model-server".to_owned(),
        namespace: ns.name.clone(),
        values_files: vec![file.path().to_path_buf()],
        set: Vec::new(),
        set_typed: Vec::new(),
    };
    #[allow(clippy::disallowed_methods)] // a change outside shipshape's flows is the point
    let helm = xtask::helm::Writer::new(&ns.sh).or_panic();
    helm.upgrade(&xtask::chart::chart_dir(), &release, &xtask::helm::Change::new(&ns.target().access(), description)).or_panic();
}

/// Tests that judge live traffic (zero failed requests) and tests that load both cores (image
/// builds, scans, signing) never overlap: on a 2-core node a busy CPU delays kube-proxy's
/// endpoint updates by seconds, and a request then reaches a pod already gone (seen: one
/// request with no answer in 2,444 during a blue/green switch beside a release's scan). Traffic
/// tests share the lock; CPU-heavy steps take it alone.
static QUIET_NODE: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn under_traffic() -> std::sync::RwLockReadGuard<'static, ()> {
    QUIET_NODE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// At most this many tests send traffic at once, across both clusters: with four traffic tests
/// and their rollouts at once, a starved 2-core host delayed kube-proxy past the pods' 15 s drain
/// (seen: 2 of 1,614 connections to the canary-gate test's Service never accepted, while the
/// canary kill, good-canary and costly-canary tests ran beside it).
const TRAFFIC_TESTS_AT_ONCE: usize = 3;

static TRAFFIC_SLOTS: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One of the [`TRAFFIC_TESTS_AT_ONCE`] places for a test's traffic, given back when dropped.
pub struct TrafficSlot(());

fn traffic_slot() -> TrafficSlot {
    let (taken, freed) = &TRAFFIC_SLOTS;
    let mut taken = taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    while *taken >= TRAFFIC_TESTS_AT_ONCE {
        taken = freed.wait(taken).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    *taken += 1;
    TrafficSlot(())
}

impl Drop for TrafficSlot {
    fn drop(&mut self) {
        let (taken, freed) = &TRAFFIC_SLOTS;
        *taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// The node to itself, for a CPU-heavy step: traffic tests wait until it is dropped.
pub struct CpuHeavy {
    _node: std::sync::RwLockWriteGuard<'static, ()>,
    asked: std::time::Instant,
    got: std::time::Instant,
}

pub fn cpu_heavy() -> CpuHeavy {
    let asked = std::time::Instant::now();
    let node = QUIET_NODE.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    CpuHeavy { _node: node, asked, got: std::time::Instant::now() }
}

impl Drop for CpuHeavy {
    fn drop(&mut self) {
        let done = since_suite_start(std::time::Instant::now());
        if let Ok(mut times) = HEAVY_TIMES.lock() {
            times.push((since_suite_start(self.asked), since_suite_start(self.got), done));
        }
    }
}

/// How the dev environment names a version: `localhost:5001/shipshape/model-server:<tag>`.
pub fn image(tag: &str) -> String {
    app_images::in_registry(&format!("{}:{tag}", app_images::MODEL_SERVER_REPOSITORY), registry::HOST)
}

/// An image reference without its digest: flows deploy `repository:tag@digest`, tests compare
/// versions by tag (and check the digest where it is the point).
pub fn unpinned(image: &str) -> String {
    image.split('@').next().unwrap_or(image).to_owned()
}

/// This checkout's xtask as a separate process, the way a person or a CI job runs it: the
/// test's kubeconfig, no stdin.
pub fn xtask_command(ns: &TestNamespace) -> std::process::Command {
    let mut command = std::process::Command::new(xtask_binary());
    command.env("KUBECONFIG", &ns.kubeconfig).stdin(std::process::Stdio::null());
    command
}

/// What a `--watch` command printed (stdout, then stderr) in `seconds`, then stopped as Ctrl-C
/// would stop it. The watch must stop within [`CTRL_C_GRACE`] of the signal: a test fails,
/// never hangs, on a watch Ctrl-C would not stop.
pub fn watched(ns: &TestNamespace, args: &[&str], seconds: u64) -> String {
    use std::os::unix::process::CommandExt;
    let mut command = xtask_command(ns);
    command.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // A terminal's foreground job gets Ctrl-C's default action. This test process may not have
    // it: a run started in the background by a non-interactive shell (`cargo xtask test &`,
    // nohup) inherits SIGINT ignored, and so would the watch, which then never stopped (seen:
    // a hung run, the watch printing for 11 minutes).
    // SAFETY: signal() is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let pid = child.id();
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    // SIGINT, as Ctrl-C sends: the watch has no other end.
    let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match output.recv_timeout(CTRL_C_GRACE) {
        Ok(output) => said(&output.unwrap()),
        Err(_) => {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("`xtask {}` still ran {CTRL_C_GRACE:?} after SIGINT (Ctrl-C): killed", args.join(" "));
        }
    }
}

/// How long a `--watch` may take to stop after Ctrl-C.
const CTRL_C_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a command printed (stdout, then stderr), checked for Debug formatting.
pub fn said(output: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_plain_words(&text);
    text
}

/// A command's human output speaks words: no Rust Debug formatting and no raw API Status JSON
/// reaches a user (issue: reports an SRE can read at 3 a.m.).
pub fn assert_plain_words(output: &str) {
    for shape in ["Some(", "None,", "Step(", "Status {", "ApiError", r#"{"kind":"Status""#] {
        assert!(!output.contains(shape), "Debug formatting or raw API JSON ({shape:?}) in a command's output:\n{output}");
    }
}

/// Unwraps with the whole error chain in the panic message.
pub trait OrPanic<T> {
    fn or_panic(self) -> T;
}

impl<T> OrPanic<T> for anyhow::Result<T> {
    fn or_panic(self) -> T {
        self.unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// The error's whole chain, for a test that expects a failure.
pub fn failure<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected a failure, but it succeeded"),
        Err(err) => format!("{err:#}"),
    }
}

/// The `xtask` binary of this checkout, for tests that must run the CLI as a process, e.g. to
/// kill it: the one running `cargo xtask test`, or one built apart from the test's own target
/// directory (which `cargo test` holds locked).
pub fn xtask_binary() -> &'static std::path::Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| xtask::test::e2e_xtask_binary(&xtask::repo_shell().unwrap()).or_panic())
}

/// Steady traffic at the live Service from inside the cluster (`model-server load`, a pod in
/// the test's namespace), counting every outcome by the version that answered.
pub struct LoadGenerator<'n> {
    namespace: &'n TestNamespace,
    /// Held while traffic is judged: no CPU-heavy step of another test runs meanwhile.
    _quiet: std::sync::RwLockReadGuard<'static, ()>,
    /// Taken before the load pod starts: at most [`TRAFFIC_TESTS_AT_ONCE`] tests send traffic.
    _slot: TrafficSlot,
    /// The counts once traffic flows: a Service a few seconds old may still be refused by a node
    /// whose kube-proxy has not programmed its endpoints yet. Flows are judged from here on.
    baseline: LoadStats,
}

/// The load generator's counts (`GET /stats`). Every field shows in assertion messages.
#[derive(serde::Deserialize, Debug, Default)]
#[allow(dead_code)]
pub struct LoadStats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub by_version: std::collections::BTreeMap<String, VersionStats>,
    pub failures: std::collections::BTreeMap<String, u64>,
    /// The generator's last few failures, with when each request was sent.
    #[serde(default)]
    pub recent_failures: Vec<LoadFailure>,
    /// Answers slower than a second, and the slowest (over the generator's life).
    #[serde(default)]
    pub slow: u64,
    #[serde(default)]
    pub slowest_ms: u128,
    /// Requests whose connection got no answer, sent once more (and the last few of them).
    #[serde(default)]
    pub retried: u64,
    #[serde(default)]
    pub retries: Vec<LoadFailure>,
}

#[derive(serde::Deserialize, Debug, Clone)]
#[allow(dead_code)]
pub struct LoadFailure {
    pub sent_at_ms: u128,
    pub kind: String,
    pub version: String,
}

impl LoadStats {
    /// Traffic flowed and not one request failed. One connection that got no answer at all and
    /// whose request then succeeded on a new connection is tolerated, and said: twice a run saw
    /// exactly one such connection in ~2,500 requests, once before any switch began, with every
    /// pod up and the slowest answer at 138 ms (the node's networking, not the flow). Two or
    /// more fail the test, as does any refusal, reset, error answer or failed retry.
    pub fn assert_none_failed(&self) {
        assert!(self.ok > 0, "traffic flowed: {self:?}");
        assert!(self.failed == 0, "{}\n{self:?}", self.failures_in_words());
        assert!(self.retried <= 1, "{} connections got no answer (each retried once): {:?}\n{self:?}", self.retried, self.retries);
        if self.retried == 1 {
            // Written past libtest's capture (it takes only the print macros), so a passing
            // test's tolerated connection still reaches the log: the evidence for finding it.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: one connection got nothing back and its request succeeded on a new one: {:?}",
                self.retries
            );
        }
    }

    /// The failures in words, each with how long before now its request was sent, to place it
    /// among a flow's steps.
    pub fn failures_in_words(&self) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let lines: Vec<String> = self
            .recent_failures
            .iter()
            .map(|f| format!("  {:.1} s ago, to {}: {}", now.saturating_sub(f.sent_at_ms) as f64 / 1000.0, f.version, f.kind))
            .collect();
        format!(
            "{} of {} requests failed ({} answers took over a second, the slowest {} ms):\n{}",
            self.failed,
            self.sent,
            self.slow,
            self.slowest_ms,
            lines.join("\n")
        )
    }
}

#[derive(serde::Deserialize, Debug, Clone, Copy, Default)]
pub struct VersionStats {
    pub ok: u64,
    pub failed: u64,
}

const LOAD_POD: &str = "load-generator";
/// Requests per second: enough for an analysis window of a few seconds to see dozens.
const LOAD_RATE: &str = "25";
/// How long one request may take before its connection counts as unanswered: as long as a
/// patient client's timeouts, not the generator's default 5 s. A connection that got no answer
/// is retried once on a new one and counted apart (`retried`; see `assert_none_failed`): a run
/// lost one connection that never answered in 15 s, with every pod up and the slowest answer at
/// 138 ms, so no timeout would have saved it. Slow answers are counted too (`slow`).
const LOAD_TIMEOUT_SECONDS: &str = "15";

impl<'n> LoadGenerator<'n> {
    pub fn start(namespace: &'n TestNamespace) -> LoadGenerator<'n> {
        let shared = shared();
        let slot = traffic_slot();
        let flow = namespace.flow();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(flow.client().clone(), &namespace.name);
        let url = live_service_url(&flow, &namespace.name);
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": LOAD_POD, "labels": {"app.kubernetes.io/name": "load-generator"}},
            "spec": {
                "automountServiceAccountToken": false,
                // On the control plane, where no test drains a node (a production-shaped
                // cluster's workers may be drained mid-flow; the traffic must go on).
                "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{
                    "name": "load", "image": image(&shared.v1), "imagePullPolicy": "IfNotPresent",
                    "args": ["load", url, "--rate", LOAD_RATE, "--timeout", LOAD_TIMEOUT_SECONDS, "--listen", "0.0.0.0:8080"],
                    "ports": [{"name": "stats", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1}
                }]
            }
        }))
        .unwrap();
        flow.block_on(pods.create(&Default::default(), &pod)).unwrap();
        let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={LOAD_POD}"));
        flow.block_on(xtask::k8s::wait::pods_running(flow.client(), &namespace.name, config, 1, std::time::Duration::from_secs(60)))
            .or_panic();
        let mut load = LoadGenerator { namespace, _quiet: under_traffic(), _slot: slot, baseline: LoadStats::default() };
        // Count from the first second of successful traffic on.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut first_ok = None;
        loop {
            let now = load.stats();
            match first_ok {
                None if now.ok > 0 => first_ok = Some(now.ok),
                Some(first) if now.ok >= first + 25 => {
                    load.baseline = now;
                    return load;
                }
                _ => {}
            }
            assert!(std::time::Instant::now() < deadline, "the live Service never answered the load generator: {now:?}");
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// Counts since the baseline (all of them before it is taken).
    pub fn stats(&self) -> LoadStats {
        let flow = self.namespace.flow();
        let answer = flow.block_on(xtask::k8s::proxy::get_pod(&flow.pod_client, &self.namespace.name, LOAD_POD, 8080, "/stats")).or_panic();
        let now: LoadStats = serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
        let base = &self.baseline;
        let mut by_version = now.by_version.clone();
        for (version, counts) in by_version.iter_mut() {
            let before = base.by_version.get(version).copied().unwrap_or_default();
            *counts = VersionStats { ok: counts.ok - before.ok, failed: counts.failed - before.failed };
        }
        let mut failures = now.failures.clone();
        for (kind, count) in failures.iter_mut() {
            *count -= base.failures.get(kind).copied().unwrap_or_default();
        }
        failures.retain(|_, count| *count > 0);
        // The last few of each list, less those already there at the baseline.
        let since_base = |now: &[LoadFailure], base: &[LoadFailure]| -> Vec<LoadFailure> {
            now.iter().filter(|f| !base.iter().any(|b| b.sent_at_ms == f.sent_at_ms)).cloned().collect()
        };
        let recent_failures = since_base(&now.recent_failures, &base.recent_failures);
        if let Ok(mut traffic) = TRAFFIC.lock() {
            traffic.insert(self.namespace.name.clone(), (now.sent - base.sent, now.failed - base.failed, now.retried - base.retried));
        }
        LoadStats {
            sent: now.sent - base.sent,
            ok: now.ok - base.ok,
            failed: now.failed - base.failed,
            by_version,
            failures,
            recent_failures,
            slow: now.slow - base.slow,
            slowest_ms: now.slowest_ms,
            retried: now.retried - base.retried,
            retries: since_base(&now.retries, &base.retries),
        }
    }
}

/// The live Service's predict URL by its cluster IP, not its DNS name: the tests judge the
/// Service's routing during a flow, and a name lookup per request would add the cluster's DNS
/// (two CoreDNS pods then, and the kernel's conntrack race on parallel A/AAAA queries) to what a
/// failure could mean.
fn live_service_url(flow: &Flow, namespace: &str) -> String {
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(flow.client().clone(), namespace);
    let service = flow.block_on(services.get(&xtask::chart::live_service(&flow.target.release))).unwrap();
    let spec = service.spec.unwrap_or_default();
    let ip = spec.cluster_ip.expect("the live Service has a cluster IP");
    let port = spec.ports.unwrap_or_default().iter().find(|p| p.name.as_deref() == Some("http")).map_or(80, |p| p.port);
    format!("http://{ip}:{port}/v1/predict")
}

impl Drop for LoadGenerator<'_> {
    fn drop(&mut self) {
        let flow = self.namespace.flow();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(flow.client().clone(), &self.namespace.name);
        let _ = flow.block_on(pods.delete(LOAD_POD, &DeleteParams::default()));
    }
}

/// Installs an add-on in the shared cluster, once, on first use, unless `cargo xtask test` made
/// the cluster with every add-on already.
fn add_on_once(installed: &'static OnceLock<()>, install: impl FnOnce(&xshell::Shell, &xtask::cluster::lifecycle::RunningCluster)) {
    installed.get_or_init(|| {
        if !shared().cluster.add_ons_installed {
            install(&xtask::repo_shell().unwrap(), &shared().cluster.cluster);
        }
    });
}

/// sigstore policy-controller in the shared cluster: admission enforcement, for the namespaces
/// `admission apply` opts in (none but the test's).
pub fn policy_controller() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    add_on_once(&INSTALLED, |sh, cluster| xtask::cluster::policy_controller::install(sh, cluster).or_panic());
}

/// sigstore policy-controller in the production cluster (`cargo xtask test` installs it there).
pub fn production_policy_controller() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let production = production();
        if !production.cluster.add_ons_installed {
            xtask::cluster::policy_controller::install(&xtask::repo_shell().unwrap(), &production.cluster.cluster).or_panic();
        }
    });
}

/// A kubeconfig whose one context is staging's (deploy/envs/staging.yaml's `staging-cluster`)
/// on the shared cluster: staging's commands run there, as a release manager's kubeconfig
/// names it.
pub fn staging_kubeconfig() -> &'static std::path::Path {
    static STAGING: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = STAGING.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let staging = Env::Staging.cluster_context().or_panic().expect("deploy/envs/staging.yaml names its cluster's context");
        let config = as_staging(&shared().cluster.cluster.kubeconfig, &staging);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        (dir, path)
    });
    path
}

/// External Secrets Operator and the suite's external store (a ClusterSecretStore over
/// namespace shipshape-store) in the shared cluster.
pub fn external_secrets_operator() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    add_on_once(&INSTALLED, |sh, cluster| {
        xtask::cluster::external_secrets::install(sh, cluster).or_panic();
        let namespace = xtask::cluster::external_secrets::STORE_NAMESPACE;
        xtask::cluster::external_secrets::install_store(sh, cluster.api().or_panic(), namespace, "ClusterSecretStore").or_panic();
    });
}

/// A Prometheus server in the shared cluster scraping every model-server pod; its URL for
/// `--prometheus`.
pub fn prometheus() -> String {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    add_on_once(&INSTALLED, |sh, cluster| xtask::cluster::prometheus::install(sh, cluster).or_panic());
    xtask::cluster::prometheus::url()
}

/// The Sealed Secrets controller in the shared cluster.
pub fn sealed_secrets_controller() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    add_on_once(&INSTALLED, |sh, cluster| xtask::cluster::sealed_secrets::install(sh, cluster).or_panic());
}
