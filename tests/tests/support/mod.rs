//! Shared by the end-to-end tests: throwaway kind clusters with unique names, always deleted
//! (kept only for a failing test when `cargo xtask test --keep-cluster` asked).
#![allow(dead_code)] // each test binary uses part of it
use xtask::cluster::lifecycle::{self, RunningCluster};
use xtask::cluster::lifecycle::{ClusterTarget, ClusterUp};

pub struct TestCluster {
    pub cluster: RunningCluster,
    target: ClusterTarget,
    /// False for a cluster the developer named (SHIPSHAPE_E2E_CLUSTER) or `cargo xtask test`
    /// made: never deleted here.
    owned: bool,
    /// `cargo xtask test` installed every add-on (Sealed Secrets, External Secrets, Prometheus).
    pub add_ons_installed: bool,
    _dir: tempfile::TempDir,
}

/// Names an existing cluster for the end-to-end tests to use instead of creating one (faster
/// while working on a test; the cluster is left running).
pub const REUSE_CLUSTER_ENV: &str = "SHIPSHAPE_E2E_CLUSTER";

impl TestCluster {
    /// A new cluster named `shipshape-e2e-<purpose>-<pid>`, ready to use.
    pub fn create(purpose: &str) -> TestCluster {
        let sh = xtask::repo_shell().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = ClusterTarget {
            name: format!("{}{purpose}-{}", lifecycle::TEST_CLUSTER_PREFIX, std::process::id()),
            kubeconfig: Some(dir.path().join("kubeconfig")),
            context: None,
        };
        // keep: false here: a cluster that never became ready is deleted by `up` itself.
        let cluster = lifecycle::up(&sh, &ClusterUp { target: target.clone(), keep: false, with: Vec::new(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{e:#}"));
        TestCluster { cluster, target, owned: true, add_ons_installed: false, _dir: dir }
    }

    /// The cluster `cargo xtask test` made for this run, with its add-ons; else the one named by
    /// SHIPSHAPE_E2E_CLUSTER (brought up if needed); else a new one as [`TestCluster::create`]
    /// makes. Only the last is deleted by the tests.
    pub fn create_or_reuse(purpose: &str) -> TestCluster {
        let named = |variable: &str| std::env::var(variable).ok().filter(|n| !n.is_empty());
        let (name, add_ons_installed) = match (named(xtask::test::PREPARED_CLUSTER_ENV), named(REUSE_CLUSTER_ENV)) {
            (Some(prepared), _) => (prepared, true),
            (None, Some(reused)) => (reused, false),
            (None, None) => return TestCluster::create(purpose),
        };
        let sh = xtask::repo_shell().unwrap();
        let target = ClusterTarget { name, kubeconfig: None, context: None };
        let cluster = lifecycle::up(&sh, &ClusterUp { target: target.clone(), keep: true, with: Vec::new(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{e:#}"));
        TestCluster { cluster, target, owned: false, add_ons_installed, _dir: tempfile::tempdir().unwrap() }
    }

    /// Production's shape: a control plane and three workers, its context named `context`. The
    /// one `cargo xtask test` made with its add-ons, else a new one (none), deleted at exit.
    pub fn production(purpose: &str, context: &str) -> TestCluster {
        let sh = xtask::repo_shell().unwrap();
        let prepared = std::env::var(xtask::test::PREPARED_PRODUCTION_ENV).ok().filter(|n| !n.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let (name, kubeconfig, owned) = match prepared {
            Some(name) => (name, None, false),
            None => {
                (format!("{}{purpose}-{}", lifecycle::TEST_CLUSTER_PREFIX, std::process::id()), Some(dir.path().join("kubeconfig")), true)
            }
        };
        let target = ClusterTarget { name, kubeconfig, context: Some(context.to_owned()) };
        let up = ClusterUp { target: target.clone(), keep: !owned, workers: xtask::test::PRODUCTION_WORKERS, ..Default::default() };
        let cluster = lifecycle::up(&sh, &up).unwrap_or_else(|e| panic!("{e:#}"));
        // `cargo xtask test` made it with its add-ons (NetworkPolicies, admission).
        TestCluster { cluster, target, owned, add_ons_installed: !owned, _dir: dir }
    }

    /// Deletes the cluster, unless a test failed and `--keep-cluster` asked to keep it.
    pub fn remove(&self, a_test_failed: bool) {
        if !self.owned {
            return;
        }
        if a_test_failed && keep_requested() {
            let _ = lifecycle::mark_kept(&self.target.name);
            eprintln!(
                "keeping cluster {} for inspection: export KUBECONFIG={} (delete it with `cargo xtask cluster down --name {}`)",
                self.target.name,
                self.cluster.kubeconfig.display(),
                self.target.name
            );
            return;
        }
        self.delete();
    }

    /// Deletes the cluster now that its last user is done, whoever made it, rather than at the
    /// binary's exit: an idle cluster's API server, etcd and kubelets took about a fifth of a core
    /// beside the tests still running (production's four nodes, `top` during a run). Not with
    /// `--keep-cluster`: the run may still keep it for inspection.
    pub fn remove_when_done(&self) {
        if keep_requested() {
            return;
        }
        self.delete();
    }

    fn delete(&self) {
        let sh = xtask::repo_shell().unwrap();
        if let Err(err) = lifecycle::down(&sh, &self.target) {
            eprintln!("could not delete test cluster {}: {err:#}", self.target.name);
        }
    }
}

/// `cargo xtask test --keep-cluster` was given.
pub fn keep_requested() -> bool {
    std::env::var(xtask::test::KEEP_CLUSTER_ENV).is_ok_and(|v| v == "1")
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.remove(std::thread::panicking());
    }
}
