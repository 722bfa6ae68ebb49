//! Shared by the end-to-end tests: throwaway kind clusters with unique names, always deleted
//! (kept only for a failing test when `cargo xtask test --keep-cluster` asked).
use xtask::cli::{ClusterTarget, ClusterUp};
use xtask::cluster::lifecycle::{self, RunningCluster};

pub struct TestCluster {
    pub cluster: RunningCluster,
    target: ClusterTarget,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// A new cluster named `shipshape-e2e-<purpose>-<pid>`, ready to use.
    pub fn create(purpose: &str) -> TestCluster {
        let sh = xtask::repo_shell().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = ClusterTarget {
            name: format!("shipshape-e2e-{purpose}-{}", std::process::id()),
            kubeconfig: Some(dir.path().join("kubeconfig")),
        };
        // keep: false here: a cluster that never became ready is deleted by `up` itself.
        let cluster = lifecycle::up(&sh, &ClusterUp { target: target.clone(), keep: false }).unwrap_or_else(|e| panic!("{e:#}"));
        TestCluster { cluster, target, _dir: dir }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let keep = std::env::var(xtask::test::KEEP_CLUSTER_ENV).is_ok_and(|v| v == "1");
        if std::thread::panicking() && keep {
            eprintln!(
                "keeping cluster {} for inspection: export KUBECONFIG={} (delete it with `cargo xtask cluster down --name {}`)",
                self.target.name,
                self.cluster.kubeconfig.display(),
                self.target.name
            );
            return;
        }
        let sh = xtask::repo_shell().unwrap();
        if let Err(err) = lifecycle::down(&sh, &self.target) {
            eprintln!("could not delete test cluster {}: {err:#}", self.target.name);
        }
    }
}
