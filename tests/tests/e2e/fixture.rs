//! The shared cluster, the model-server versions the tests deploy, and a namespace per test.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::Api;
use xtask::cli::{Env, TargetArgs};
use xtask::cluster::{app_images, docker::Docker, kind::Kind};
use xtask::flows::Flow;

use crate::support::TestCluster;

/// The cluster every test in this binary shares, and the versions loaded into it.
pub struct Shared {
    pub cluster: TestCluster,
    /// A good version, and another good version (same build, its own tag).
    pub v1: String,
    pub v2: String,
    /// A version that exits at start: a crash loop.
    pub crashing: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Runs when the test binary exits, after every test: a static is never dropped.
extern "C" fn remove_shared_cluster() {
    if let Some(shared) = SHARED.get() {
        shared.cluster.remove(A_TEST_FAILED.load(Ordering::SeqCst));
    }
}

pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let cluster = TestCluster::create_or_reuse("flows");
        // SAFETY: registers a plain function with the C library; it runs once at exit.
        unsafe { atexit(remove_shared_cluster) };
        let sh = xtask::repo_shell().unwrap();
        let docker = Docker::connect(&sh).unwrap();
        let v1 = app_images::build_model_server(&sh, &docker).unwrap();
        let v2 = app_images::variant(&docker, &v1, "v2", &[]).unwrap();
        let crashing = app_images::variant(&docker, &v1, "crash", &[("FAULT_CRASH_ON_START", "true")]).unwrap();
        let postgres = app_images::build_postgres(&sh, &docker).unwrap();
        let kind = Kind::new(&sh).unwrap();
        for image in [&v1, &v2, &crashing, &postgres] {
            kind.load_image(&cluster.cluster.name, image).unwrap();
        }
        let tag = |image: &str| image.rsplit_once(':').unwrap().1.to_owned();
        Shared { v1: tag(&v1), v2: tag(&v2), crashing: tag(&crashing), cluster }
    })
}

/// One test's namespace: the dev environment's Secrets and PostgreSQL, deleted when the test
/// ends (kept, with the cluster, when it fails and --keep-cluster asked).
pub struct TestNamespace {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub sh: xshell::Shell,
}

impl TestNamespace {
    pub fn new(purpose: &str) -> TestNamespace {
        let shared = shared();
        let name = format!("e2e-{purpose}");
        let kubeconfig = shared.cluster.cluster.kubeconfig.clone();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(xtask::up::provision(&kubeconfig, &name)).unwrap_or_else(|e| panic!("{e:#}"));
        TestNamespace { name, kubeconfig, sh: xtask::repo_shell().unwrap() }
    }

    pub fn args(&self) -> TargetArgs {
        TargetArgs { env: Env::Dev, namespace: Some(self.name.clone()), kubeconfig: Some(self.kubeconfig.clone()) }
    }

    pub fn flow(&self) -> Flow<'_> {
        Flow::connect(&self.sh, &self.args()).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            A_TEST_FAILED.store(true, Ordering::SeqCst);
            if crate::support::keep_requested() {
                eprintln!("keeping namespace {} for inspection", self.name);
                return;
            }
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _ = runtime.block_on(async {
            let client = xtask::k8s::client(&self.kubeconfig).await?;
            Api::<Namespace>::all(client).delete(&self.name, &DeleteParams::background()).await?;
            anyhow::Ok(())
        });
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
