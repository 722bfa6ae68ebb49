//! `cargo xtask test`: the README's test command, and exactly what `.ci/run` runs.
use anyhow::{Context, Result};
use xshell::Shell;

use crate::cluster::lifecycle::{AddOn, ClusterTarget, ClusterUp};
use crate::cluster::{app_images, docker::Docker, node_image};

/// Tests run at once in each test binary (libtest's default is the number of cores: 2 here).
/// Four: measured against five on a fresh machine, five made the binary slower (456.6 s against
/// 414.6 s), every traffic test longer (canary-kill 167 s against 82 s) and the production tests
/// start later.
const E2E_TEST_THREADS: &str = "4";

/// Tells end-to-end tests to keep the cluster of a failing test.
pub const KEEP_CLUSTER_ENV: &str = "SHIPSHAPE_KEEP_CLUSTER";

/// Names the cluster this run made for the end-to-end tests, with every add-on installed. The
/// tests use it and never delete it; the run deletes it after them (or keeps it, with
/// `--keep-cluster`, when a test failed).
pub const PREPARED_CLUSTER_ENV: &str = "SHIPSHAPE_E2E_PREPARED_CLUSTER";

/// Names the production-shaped cluster this run made (a control plane and
/// [`PRODUCTION_WORKERS`] workers, its context named as prod's values name it), kept and
/// deleted as the other.
pub const PREPARED_PRODUCTION_ENV: &str = "SHIPSHAPE_E2E_PRODUCTION_CLUSTER";

/// Workers of the production-shaped cluster: prod's 10 replicas spread over three nodes, one of
/// which a test drains.
pub const PRODUCTION_WORKERS: u32 = 3;

/// What `cargo xtask test` is asked.
pub struct TestOptions {
    pub keep_cluster: bool,
    pub backtrace: bool,
    pub cargo_args: Vec<String>,
}

impl TestOptions {
    pub fn run(self, sh: &Shell) -> Result<()> {
        // A fresh machine: what the suite needs from the host is found or set up first, each
        // step announced (host.rs installs only what is missing and changes nothing the host has).
        // The host is not ours: its packages are listed before and after the set-up, and the run
        // fails if any it had changed (in CI this is the test of that invariant).
        let packages_before = crate::host::package_snapshot(sh);
        crate::host::require_go(sh)?;
        crate::host::require(sh, &[&crate::host::POSTGRES_SERVER], "model-server's service tests")?;
        crate::host::require_docker(sh).context("the container and end-to-end tests need a Docker engine")?;
        let docker = Docker::connect(sh)?;
        crate::cluster::lifecycle::remove_abandoned_test_clusters(sh)?;
        crate::host::disk::require_room_for_setup(sh, &docker, true, "the test suite")?;
        // The PostgreSQL image is made with debootstrap (the cluster lane's last step).
        crate::host::require(sh, &[&crate::host::DEBOOTSTRAP], "building the PostgreSQL image")?;
        // Everything slow is prepared here, where its progress shows (cargo test captures a
        // test's output); the tests then find it all cached. In two lanes side by side: a Go or
        // Rust build leaves a core idle while it links, waits on a dependency chain or
        // downloads, and the other lane fills it. The lanes are balanced to end together
        // (measured on a fresh machine, docs/benchmarks.md):
        // - the cluster lane: the node image and the registry, then the end-to-end tests'
        //   cluster (it needs kind and helm, from the other lane), whose operators' images are
        //   built as it installs them, then the PostgreSQL image (debootstrap: mostly waiting);
        // - the tools lane: the pinned tools, then the images of the cluster lane's last
        //   operators (Prometheus, the production cluster's NetworkPolicy enforcer, the
        //   admission webhook and its registry forwarder: built here meanwhile; the stage lock
        //   makes that lane wait for them instead of building them again), the model-server
        //   image and the suite's compilation.
        // The cluster boots and its operators start while the other lane compiles: they cost
        // the tests nothing.
        let mut prepared = PreparedCluster::new(
            "flows",
            Vec::from([AddOn::SealedSecrets, AddOn::ExternalSecrets, AddOn::Prometheus, AddOn::PolicyController, AddOn::Mlflow]),
            0,
            None,
        );
        // Production's shape beside it: prod's values name its context (deploy/envs/prod.yaml).
        let mut production = PreparedCluster::new(
            "prod",
            Vec::from([AddOn::NetworkPolicies, AddOn::PolicyController, AddOn::Mlflow]),
            PRODUCTION_WORKERS,
            crate::chart::Env::Prod.cluster_context()?,
        );
        let (tools_ready, tools_installed) = std::sync::mpsc::channel::<()>();
        let e2e_xtask = std::thread::scope(|scope| -> Result<std::path::PathBuf> {
            let (prepared, production) = (&prepared, &production);
            let cluster_lane = scope.spawn(move || -> Result<()> {
                let sh = crate::repo_shell()?;
                let docker = Docker::connect(&sh).context("the container and end-to-end tests need a Docker engine")?;
                println!("node image: {}", node_image::ensure(&sh, &docker)?);
                crate::cluster::registry::ensure_running(&sh, &docker)?;
                println!("local registry: {}", crate::cluster::registry::HOST);
                tools_installed.recv().context("the pinned tools were not installed (the other lane's error says why)")?;
                prepared.create()?;
                production.create()?;
                println!("image: {}", app_images::build_postgres(&sh, &docker)?);
                Ok(())
            });
            let ours = (|| -> Result<std::path::PathBuf> {
                // Every tool first, though the cluster lane needs only kind and helm: started
                // after those two, its operators' builds ran beside Trivy's on a fresh machine
                // and the tests began 4.9 minutes later (Trivy took 637 s instead of 432).
                crate::tools::install_all(sh).context("installing the pinned tools the tests use")?;
                let _ = tools_ready.send(());
                println!("image: {}", crate::cluster::prometheus::image(sh, &docker)?);
                println!("image: {}", crate::cluster::network_policies::image(sh, &docker)?);
                println!("image: {}", crate::cluster::policy_controller::image(sh, &docker)?);
                println!("image: {}", crate::cluster::policy_controller::forwarder_image(sh, &docker)?);
                println!("image: {}", app_images::build_mlflow(sh, &docker)?);
                println!("the tests' Trivy database writer: {}", trivy_db_writer(sh)?.display());
                println!("image: {}", app_images::build_model_server(sh, &docker)?);
                // Named here, not built by the first test that needs it: a cold build running
                // beside the end-to-end tests starves the node, and kube-proxy then lags endpoint
                // changes by tens of seconds (requests to stopped pods fail).
                let e2e_xtask = running_binary_for_e2e()?;
                println!("xtask binary for the end-to-end tests: {}", e2e_xtask.display());
                // The suite's own compilation, while the other lane may still be building.
                crate::cargo::command(sh, ["test", "--workspace", "--locked", "--no-run", "--quiet"])
                    .run()
                    .context("compiling the test suite")?;
                // The rules clippy holds (Cargo.toml's [workspace.lints], each crate's
                // clippy.toml: which module alone may run a process or change a release).
                println!("clippy: the workspace's lints, warnings as errors");
                crate::cargo::command(sh, ["clippy", "--workspace", "--all-targets", "--locked", "--quiet", "--", "-D", "warnings"])
                    .run()
                    .context("clippy found problems (listed above); fix them, or `#[allow]` one with a comment saying why")?;
                Ok(e2e_xtask)
            })();
            let theirs = cluster_lane.join().unwrap_or_else(|_| Err(anyhow::anyhow!("preparing the cluster panicked")));
            ours.and_then(|binary| theirs.map(|()| binary))
        })?;
        crate::host::packages_unchanged_since(sh, &packages_before)?;
        let args = ["test", "--workspace", "--locked"].into_iter().chain(self.cargo_args.iter().map(String::as_str));
        let tested = crate::cargo::command(sh, args)
            .env(PREPARED_CLUSTER_ENV, &prepared.up.target.name)
            .env(PREPARED_PRODUCTION_ENV, &production.up.target.name)
            .env(E2E_XTASK_BINARY_ENV, &e2e_xtask)
            // Snapshots are checked here, never written: a mismatch fails the run.
            .env("INSTA_UPDATE", "no")
            .env(KEEP_CLUSTER_ENV, if self.keep_cluster { "1" } else { "" })
            .env("RUST_BACKTRACE", if self.backtrace { "1" } else { "0" })
            // End-to-end tests mostly wait (rollouts, analysis windows, holds), so more of them
            // run side by side than there are cores; CPU-heavy steps still run alone beside the
            // traffic tests (fixture::cpu_heavy). A value you set wins.
            .env("RUST_TEST_THREADS", std::env::var("RUST_TEST_THREADS").unwrap_or_else(|_| E2E_TEST_THREADS.to_owned()))
            .run()
            .context("the test suite failed (failures are listed above)");
        prepared.keep = tested.is_err() && self.keep_cluster;
        production.keep = prepared.keep;
        tested
    }
}

/// A cluster the end-to-end tests use, made during the set-up and deleted when this run ends
/// however it ends (a failed build, a failed test, a panic), unless kept for inspection.
struct PreparedCluster {
    up: ClusterUp,
    /// Set by the lane that creates it.
    created: std::sync::atomic::AtomicBool,
    keep: bool,
}

impl PreparedCluster {
    /// `shipshape-e2e-<purpose>-<pid>`, with these add-ons, workers and context name.
    fn new(purpose: &str, with: Vec<AddOn>, workers: u32, context: Option<String>) -> PreparedCluster {
        let name = format!("{}{purpose}-{}", crate::cluster::lifecycle::TEST_CLUSTER_PREFIX, std::process::id());
        let up = ClusterUp { target: ClusterTarget { name, kubeconfig: None, context }, keep: false, with, workers };
        PreparedCluster { up, created: false.into(), keep: false }
    }

    fn create(&self) -> Result<()> {
        let sh = crate::repo_shell()?;
        // Marked first: a cluster that came up but whose add-ons failed is deleted too.
        self.created.store(true, std::sync::atomic::Ordering::SeqCst);
        crate::cluster::lifecycle::up(&sh, &self.up)
            .with_context(|| format!("creating the end-to-end tests' cluster {}", self.up.target.name))?;
        Ok(())
    }
}

impl Drop for PreparedCluster {
    fn drop(&mut self) {
        let target = &self.up.target;
        let name = &target.name;
        if !self.created.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if self.keep {
            let _ = crate::cluster::lifecycle::mark_kept(name);
            let kubeconfig = target.kubeconfig_path().map(|p| p.display().to_string()).unwrap_or_default();
            println!(
                "keeping cluster {name} for inspection: export KUBECONFIG={kubeconfig} (delete it with `cargo xtask cluster down --name {name}`)"
            );
            return;
        }
        let removed = crate::repo_shell().and_then(|sh| crate::cluster::lifecycle::down(&sh, target));
        if let Err(err) = removed {
            eprintln!("could not delete the end-to-end tests' cluster {name}: {err:#} (`cargo xtask cluster down --name {name}`)");
        }
    }
}

/// The end-to-end tests' writer of Trivy vulnerability databases (tests/trivy-db: trivy-db's own
/// Go packages, as Trivy's database is built; no feed is reachable from these machines), built
/// once per version of its source and cached as the pinned tools are.
pub fn trivy_db_writer(sh: &Shell) -> Result<std::path::PathBuf> {
    let module = crate::repo_root().join("tests/trivy-db");
    let mut source = Vec::new();
    for file in ["go.mod", "go.sum", "main.go"] {
        source.extend(std::fs::read(module.join(file)).with_context(|| format!("reading tests/trivy-db/{file}"))?);
    }
    let version = &crate::signing::hex_sha256(&source)[..12];
    let (name, binary) = ("trivy-db-writer", "trivy-db");
    let how = "building tests/trivy-db with go (the tests' Trivy database writer)";
    crate::tools::build_into_place(sh, name, version, binary, how, |partial| {
        let go = crate::go::Go::detect(sh);
        go.require(crate::go::GO_MIN, "building the tests' Trivy database writer")?;
        std::fs::create_dir_all(partial)?;
        let log = crate::cluster::stage::Stages::new()?.log_path(name)?;
        go.build_local(&module, &partial.join(binary), &log)
    })?;
    Ok(crate::tools::tool_dir(name, version)?.join(binary))
}

/// Names the xtask binary the end-to-end tests run as a process (set by `cargo xtask test`).
pub const E2E_XTASK_BINARY_ENV: &str = "SHIPSHAPE_E2E_XTASK_BINARY";

/// The xtask binary the end-to-end tests run as a real process (to kill it mid-flow): the one
/// [`E2E_XTASK_BINARY_ENV`] names, else one built apart from the workspace's target directory,
/// which `cargo test` holds locked while it runs.
pub fn e2e_xtask_binary(sh: &Shell) -> Result<std::path::PathBuf> {
    if let Some(binary) = std::env::var_os(E2E_XTASK_BINARY_ENV) {
        return Ok(binary.into());
    }
    let target_dir = crate::cargo::image_build_target_dir();
    crate::cargo::command(sh, ["build", "--quiet", "--locked", "--package", "xtask", "--target-dir"])
        .arg(&target_dir)
        .run()
        .context("building the xtask binary for the end-to-end tests")?;
    Ok(target_dir.join("debug/xtask"))
}

/// The binary running `cargo xtask test`, which cargo has just built from this checkout, kept
/// for the end-to-end tests under a name of its own: building it again in another target
/// directory compiled every dependency a second time (a cold build's kube, TLS and tokio
/// stacks), and `cargo test --workspace` may replace `target/debug/xtask` while building the
/// suite. A hard link (the file cargo replaces is unlinked, not rewritten), else a copy.
fn running_binary_for_e2e() -> Result<std::path::PathBuf> {
    let running = std::env::current_exe().context("finding the running xtask binary")?;
    let kept = crate::repo_root().join("target/e2e/xtask");
    std::fs::create_dir_all(kept.parent().expect("target/e2e"))?;
    match std::fs::remove_file(&kept) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err).context(format!("removing {}", kept.display())),
        _ => {}
    }
    if std::fs::hard_link(&running, &kept).is_err() {
        std::fs::copy(&running, &kept).with_context(|| format!("copying {} to {}", running.display(), kept.display()))?;
    }
    Ok(kept)
}
