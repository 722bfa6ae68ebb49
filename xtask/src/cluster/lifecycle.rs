//! `cargo xtask cluster up|down|status|image`: a kind cluster's whole life.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::Api;
use xshell::Shell;

use super::docker::Docker;
use super::kind::Kind;
pub use super::kind::RunningCluster;
use super::node_image::{self, KINDEST_NODE, LOCAL_NODE_IMAGE};
use super::registry;
use crate::k8s;

/// A new node must be Ready, and kube-system running, within this.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// kube-system's pods on the control plane: etcd, apiserver, controller-manager, scheduler,
/// kube-proxy and CoreDNS (one replica, see `tune_coredns`); each worker adds a kube-proxy.
const KUBE_SYSTEM_PODS: usize = 6;

/// Which kind cluster, and where its kubeconfig goes.
#[derive(Clone, Debug, Default)]
pub struct ClusterTarget {
    pub name: String,
    /// Default: ~/.cache/shipshape/clusters/<name>/kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// The context's name in that kubeconfig (default: kind's `kind-<name>`), e.g. the one an
    /// environment's values name (`staging-cluster`).
    pub context: Option<String>,
}

/// What `cluster up` is asked for.
#[derive(Clone, Debug, Default)]
pub struct ClusterUp {
    pub target: ClusterTarget,
    /// Keep a cluster this command created even if it never became ready.
    pub keep: bool,
    /// Add-ons to install or update once it is ready.
    pub with: Vec<AddOn>,
    /// Worker nodes beside the control plane (0: one node that runs everything).
    pub workers: u32,
}

/// What `cluster up --with` installs beside the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOn {
    /// The Sealed Secrets controller, in kube-system.
    SealedSecrets,
    /// External Secrets Operator in external-secrets-system, and the example store.
    ExternalSecrets,
    /// A Prometheus server in namespace monitoring.
    Prometheus,
    /// kube-network-policies in kube-system: the cluster enforces NetworkPolicies.
    NetworkPolicies,
    /// sigstore policy-controller in cosign-system: the cluster enforces image policies.
    PolicyController,
    /// An MLflow tracking server with its basic-auth app in namespace mlflow: the model
    /// registry staging and prod load their model from.
    Mlflow,
}

impl ClusterTarget {
    pub fn kubeconfig_path(&self) -> Result<PathBuf> {
        match &self.kubeconfig {
            Some(path) => Ok(path.clone()),
            None => Ok(cluster_dir(&self.name)?.join("kubeconfig")),
        }
    }

    fn node_container(&self) -> String {
        format!("{}-control-plane", self.name)
    }

    fn validate(&self) -> Result<()> {
        let valid = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-');
        if !valid {
            bail!("cluster name {:?} is not valid: use up to 40 lowercase letters, digits and '-'", self.name);
        }
        Ok(())
    }
}

fn cluster_dir(name: &str) -> Result<PathBuf> {
    Ok(crate::cache::root()?.join("clusters").join(name))
}

/// Every cluster the end-to-end tests make is `shipshape-e2e-<purpose>-<pid>`, the pid of the
/// process that made it and deletes it when it ends.
pub const TEST_CLUSTER_PREFIX: &str = "shipshape-e2e-";
/// In a cluster's cache directory: a person asked to keep this test cluster (`--keep-cluster`).
const KEPT_MARKER: &str = "kept-for-inspection";

/// Marks a test cluster as kept for inspection: [`remove_abandoned_test_clusters`] leaves it.
pub fn mark_kept(name: &str) -> Result<()> {
    let dir = cluster_dir(name)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(KEPT_MARKER), "kept by --keep-cluster after a failed test\n")?;
    Ok(())
}

/// Deletes the test clusters whose run was killed (Ctrl-C, a CI timeout) before it could delete
/// them, each named: every one holds a node's disk (about 1.7 GB), and runs that leave them add
/// up until a disk is full. A cluster whose process still runs, or kept with `--keep-cluster`,
/// stays.
pub fn remove_abandoned_test_clusters(sh: &Shell) -> Result<()> {
    // No kind yet: no cluster shipshape made.
    let Ok(kind) = Kind::new(sh) else { return Ok(()) };
    for name in kind.clusters()? {
        let Some(pid) = test_cluster_owner(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() || cluster_dir(&name)?.join(KEPT_MARKER).exists() {
            continue;
        }
        println!("removing test cluster {name}: the run that made it (process {pid}) is gone, and nobody asked to keep it");
        down(sh, &ClusterTarget { name, kubeconfig: None, context: None })?;
    }
    Ok(())
}

/// The process that made a test cluster, from its name.
fn test_cluster_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEST_CLUSTER_PREFIX)?.rsplit_once('-')?.1.parse().ok()
}

fn install_add_on(sh: &Shell, cluster: &RunningCluster, add_on: AddOn) -> Result<()> {
    match add_on {
        AddOn::SealedSecrets => super::sealed_secrets::install(sh, cluster)?,
        AddOn::ExternalSecrets => {
            super::external_secrets::install(sh, cluster)?;
            let namespace = super::external_secrets::STORE_NAMESPACE;
            super::external_secrets::install_store(sh, cluster.api()?, namespace, "ClusterSecretStore")?;
            println!(
                "External Secrets Operator runs in {}; ClusterSecretStore {} reads the Secrets of namespace {namespace}",
                super::external_secrets::NAMESPACE,
                super::external_secrets::STORE_NAME
            );
        }
        AddOn::Prometheus => {
            super::prometheus::install(sh, cluster)?;
            println!("Prometheus runs: canary start --prometheus {}", super::prometheus::url());
        }
        AddOn::NetworkPolicies => {
            super::network_policies::install(sh, cluster)?;
            println!("NetworkPolicies are enforced on every node (kube-network-policies {})", super::network_policies::VERSION);
        }
        AddOn::PolicyController => {
            super::policy_controller::install(sh, cluster)?;
            println!(
                "sigstore policy-controller {} runs in {}: enforce an environment's supply-chain policy with `cargo xtask admission apply --env <env>`",
                super::policy_controller::VERSION,
                super::policy_controller::NAMESPACE
            );
        }
        AddOn::Mlflow => super::mlflow::install(sh, cluster)?,
    }
    Ok(())
}

/// `cluster down`: the cluster, and the local registry too if asked (else it is said to stay).
pub fn down_with_registry(sh: &Shell, target: &ClusterTarget, remove_registry: bool) -> Result<()> {
    down(sh, target)?;
    if remove_registry {
        registry::remove(&Docker::connect(sh)?);
    } else if Docker::connect(sh)?.is_running(registry::CONTAINER) {
        println!("the local registry {} keeps running with its images (--remove-registry removes it)", registry::CONTAINER);
    }
    Ok(())
}

/// `cluster image`: finds or builds the node image, and names it.
pub fn print_node_image(sh: &Shell) -> Result<()> {
    let docker = Docker::connect(sh)?;
    let image = node_image::ensure(sh, &docker)?;
    println!("node image: {image}");
    Ok(())
}

pub fn print_how_to_use(cluster: &RunningCluster) {
    println!("cluster {} is up. Use it with:\n  export KUBECONFIG={}", cluster.name, cluster.kubeconfig.display());
}

/// Creates the cluster, or reuses it when it already runs a shipshape node image; waits until
/// it is ready; then installs or updates the add-ons `args.with` names. Idempotent.
pub fn up(sh: &Shell, args: &ClusterUp) -> Result<RunningCluster> {
    let cluster = ready_cluster(sh, args)?;
    for add_on in &args.with {
        install_add_on(sh, &cluster, *add_on)?;
    }
    Ok(cluster)
}

/// [`up`] without the add-ons.
fn ready_cluster(sh: &Shell, args: &ClusterUp) -> Result<RunningCluster> {
    let target = &args.target;
    target.validate()?;
    crate::host::require_docker(sh)?;
    crate::tools::install(sh, &[&crate::tools::KIND])?;
    let docker = Docker::connect(sh)?;
    let kind = Kind::new(sh)?;
    let kubeconfig = target.kubeconfig_path()?;
    let cluster = RunningCluster::new(target.name.clone(), kubeconfig.clone());
    match docker.container(&target.node_container())? {
        Some(node) if node.kind_cluster.as_deref() == Some(target.name.as_str()) => {
            if node.image != KINDEST_NODE && node.image != LOCAL_NODE_IMAGE {
                bail!(
                    "kind cluster {} exists but runs node image {}, not shipshape's ({} or {}): \
                     delete it with `cargo xtask cluster down --name {}` or choose another --name",
                    target.name,
                    node.image,
                    KINDEST_NODE,
                    LOCAL_NODE_IMAGE,
                    target.name
                );
            }
            println!("cluster {} exists (node image {}): checking it", target.name, node.image);
            kind.export_kubeconfig(&target.name, &kubeconfig)?;
            name_context(target, &kubeconfig)?;
            let nodes = kind.nodes(&target.name)?;
            wait_ready(cluster.api()?, nodes.len())?;
            if node.image == LOCAL_NODE_IMAGE {
                // Again (idempotent): a cluster made before pods could leave a lone node, or a
                // node restarted (its iptables rules are not kept).
                let workers = u32::try_from(nodes.len().saturating_sub(1))?;
                super::pod_network::connect(&docker, &super::pod_network::node_containers(&target.name, workers))?;
            }
            registry::ensure_running(sh, &docker)?;
            registry::attach(&docker, &nodes, cluster.api()?)?;
            Ok(cluster)
        }
        Some(node) => bail!(
            "the name {} is taken: a container {} exists and is not a node of kind cluster {} (it runs {}). \
             Remove that container or choose another --name",
            target.name,
            target.node_container(),
            target.name,
            node.image
        ),
        None => {
            let image = node_image::ensure(sh, &docker)?;
            let nodes = super::pod_network::node_containers(&target.name, args.workers);
            let config = effective_config(&target.name, &image, &nodes)?;
            if let Some(parent) = kubeconfig.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let shape = if args.workers == 0 { String::new() } else { format!(" (a control plane and {} workers)", args.workers) };
            println!("creating kind cluster {}{shape} with {image}", target.name);
            // The registry starts before the cluster; the nodes are pointed at it once they exist.
            registry::ensure_running(sh, &docker)?;
            let created = kind
                .create(&target.name, &image, &config, &kubeconfig)
                .and_then(|()| name_context(target, &kubeconfig))
                .and_then(|()| {
                    // One node too: its pods reach beyond it (the local registry, for the
                    // admission webhook) only through the node's masquerade.
                    if image == LOCAL_NODE_IMAGE {
                        super::pod_network::connect(&docker, &nodes)?;
                    }
                    Ok(())
                })
                .and_then(|()| registry::attach(&docker, &nodes, cluster.api()?))
                .and_then(|()| cluster.api()?.run(tune_coredns(cluster.api()?.client())))
                .and_then(|()| wait_ready(cluster.api()?, nodes.len()));
            if let Err(err) = created {
                if args.keep {
                    return Err(err.context(format!(
                        "cluster {} is kept for inspection (--keep); remove it with `cargo xtask cluster down --name {}`",
                        target.name, target.name
                    )));
                }
                let _ = kind.delete(&target.name, &kubeconfig);
                return Err(
                    err.context(format!("cluster {} did not come up and was deleted (rerun with --keep to inspect it)", target.name))
                );
            }
            Ok(cluster)
        }
    }
}

/// Renames kind's context (`kind-<name>`) in the cluster's kubeconfig to the one asked for, and
/// makes it current. Written back as JSON, which every kubeconfig reader takes, owner-only.
fn name_context(target: &ClusterTarget, kubeconfig: &Path) -> Result<()> {
    let Some(wanted) = &target.context else { return Ok(()) };
    let kind_name = format!("kind-{}", target.name);
    let mut file = kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    rename_context(&mut file, &kind_name, wanted).with_context(|| format!("kubeconfig {}", kubeconfig.display()))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .mode(0o600)
        .open(kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    std::io::Write::write_all(&mut out, &serde_json::to_vec_pretty(&file)?)?;
    Ok(())
}

/// Renames kind's context to the environment's. On a reused cluster, `kind export kubeconfig`
/// writes `kind-<name>` again next to the context named before: the old one goes, so the file
/// never holds two contexts of one name (kubectl and helm would pick either).
fn rename_context(file: &mut kube::config::Kubeconfig, kind_name: &str, wanted: &str) -> Result<()> {
    if file.contexts.iter().any(|c| c.name == kind_name) {
        file.contexts.retain(|c| c.name != wanted);
        for context in &mut file.contexts {
            if context.name == kind_name {
                context.name = wanted.to_owned();
            }
        }
    }
    if !file.contexts.iter().any(|c| c.name == wanted) {
        bail!("no context {kind_name} to name {wanted}");
    }
    file.current_context = Some(wanted.to_owned());
    Ok(())
}

/// deploy/kind/cluster.yaml, plus what a locally built node image needs, with `nodes` as the
/// cluster's nodes (the file's one control plane, or that and workers).
fn effective_config(name: &str, image: &str, nodes: &[String]) -> Result<PathBuf> {
    let base = std::fs::read_to_string(crate::repo_root().join("deploy/kind/cluster.yaml"))?;
    if base.lines().any(|l| l.starts_with("networking:")) {
        bail!("deploy/kind/cluster.yaml must not set `networking:`; `cluster up` decides disableDefaultCNI by node image");
    }
    let single = "nodes:\n  - role: control-plane\n";
    if !base.contains(single) {
        bail!("deploy/kind/cluster.yaml must list its one control-plane node as `{single}`: `cluster up --workers` adds the workers");
    }
    let mut config = base;
    if nodes.len() > 1 {
        // Each node of the locally built image mounts its own pod range's CNI config; kindest/node's
        // kindnetd hands out ranges itself.
        let configs = super::pod_network::node_configs(&cluster_dir(name)?.join("cni"), nodes)?;
        let mut listed = super::pod_network::kind_nodes_yaml(&configs);
        if image != LOCAL_NODE_IMAGE {
            listed = (0..nodes.len()).map(|i| if i == 0 { "  - role: control-plane\n" } else { "  - role: worker\n" }).collect();
            listed.insert_str(0, "nodes:\n");
        }
        config = config.replace(single, &listed);
    }
    if image == LOCAL_NODE_IMAGE {
        config.push_str("networking:\n  disableDefaultCNI: true\n");
    }
    let path = cluster_dir(name)?.join("kind-config.yaml");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, config)?;
    Ok(path)
}

/// CoreDNS as kubeadm installs it made a new cluster wait ~30 s more (measured: ready 37 s after
/// it started). Its first call to the API goes through the `kubernetes` Service IP, often before
/// kube-proxy has programmed that IP: the SYN is tracked un-NATed, every retransmission follows
/// it, and client-go's 30 s dial timeout passes before CoreDNS retries and turns ready. So, on the
/// single node shipshape creates:
/// - CoreDNS talks to the API server on its node (`status.hostIP:6443`, a name in the API
///   server's certificate), not through kube-proxy;
/// - its readiness is probed every second, not every 10 s;
/// - one replica, not two: a single node gains nothing from a second, and two DNS backends meet
///   the kernel's conntrack race on parallel A/AAAA queries (a lookup lost, 5 s to retry).
///
/// It runs on the control-plane node (whose address is the API server's; kubeadm's CoreDNS
/// tolerates that node's taint), so the same holds on a cluster with workers.
///
/// The change rolls CoreDNS's pods once, seconds after they were created.
async fn tune_coredns(client: &kube::Client) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let patch = serde_json::json!({
        "spec": {
            "replicas": 1,
            "template": {"spec": {
                "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                "containers": [{
                "name": "coredns",
                "env": [
                    {"name": "KUBERNETES_SERVICE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}
                ],
                "readinessProbe": {"periodSeconds": 1}
            }]}}
        }
    });
    Api::<Deployment>::namespaced(client.clone(), "kube-system")
        .patch("coredns", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .context("tuning CoreDNS for a single-node cluster (kube-system/coredns)")?;
    Ok(())
}

/// Ready: every node, kube-proxy and the control plane's pods running, CoreDNS rolled out (which
/// also proves the controller manager and the scheduler work).
fn wait_ready(api: &k8s::Connection, nodes: usize) -> Result<()> {
    api.run(async {
        let client = api.client();
        k8s::wait::nodes_ready(client, CLUSTER_READY_TIMEOUT).await?;
        k8s::wait::deployment_rolled_out(client, "kube-system", "coredns", CLUSTER_READY_TIMEOUT).await?;
        let pods = KUBE_SYSTEM_PODS + nodes.saturating_sub(1);
        k8s::wait::pods_running(client, "kube-system", watcher::Config::default(), pods, CLUSTER_READY_TIMEOUT).await?;
        anyhow::Ok(())
    })
    .context("the cluster did not become ready")
}

/// Deletes the cluster and its kubeconfig; a cluster that does not exist is not an error.
pub fn down(sh: &Shell, target: &ClusterTarget) -> Result<()> {
    target.validate()?;
    let kind = Kind::new(sh)?;
    Docker::connect(sh)?;
    let kubeconfig = target.kubeconfig_path()?;
    if kind.clusters()?.contains(&target.name) {
        kind.delete(&target.name, &kubeconfig)?;
    } else {
        println!("no kind cluster named {}: nothing to delete", target.name);
    }
    let _ = std::fs::remove_file(&kubeconfig);
    let dir = cluster_dir(&target.name)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

pub fn status(sh: &Shell, target: &ClusterTarget) -> Result<()> {
    target.validate()?;
    let docker = Docker::connect(sh)?;
    let Some(node) = docker.container(&target.node_container())? else {
        println!("cluster {}: not created (`cargo xtask cluster up --name {}` creates it)", target.name, target.name);
        return Ok(());
    };
    println!("cluster {}: node image {}", target.name, node.image);
    let kubeconfig = target.kubeconfig_path()?;
    Kind::new(sh)?.export_kubeconfig(&target.name, &kubeconfig)?;
    println!("kubeconfig: {}", kubeconfig.display());
    let api = k8s::Connection::open(k8s::ClusterAccess::current(&kubeconfig))?;
    api.run(async {
        let client = api.client().clone();
        for node in Api::<Node>::all(client.clone()).list(&ListParams::default()).await? {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone())
                .unwrap_or_default();
            println!("node {} Ready={ready}", node.metadata.name.unwrap_or_default());
        }
        for pod in Api::<Pod>::namespaced(client, "kube-system").list(&ListParams::default()).await? {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let ready = if k8s::wait::pod_is_ready(&pod) { "ready" } else { "not ready" };
            let stuck = k8s::wait::stuck_reason(&pod).map(|r| format!(" ({r})")).unwrap_or_default();
            println!("kube-system/{} {phase} {ready}{stuck}", pod.metadata.name.unwrap_or_default());
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_cluster_names_the_process_that_made_it() {
        assert_eq!(super::test_cluster_owner("shipshape-e2e-flows-31635"), Some(31635));
        assert_eq!(super::test_cluster_owner("shipshape-e2e-flows"), None);
        assert_eq!(super::test_cluster_owner("shipshape"), None);
        assert_eq!(super::test_cluster_owner("my-e2e-flows-12"), None);
    }

    fn contexts(names: &[&str]) -> kube::config::Kubeconfig {
        let contexts =
            names.iter().map(|n| kube::config::NamedContext { name: (*n).to_owned(), context: None, other: Default::default() }).collect();
        kube::config::Kubeconfig { contexts, ..Default::default() }
    }

    fn names(file: &kube::config::Kubeconfig) -> Vec<&str> {
        file.contexts.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_reused_cluster_keeps_one_context_of_its_environments_name() {
        let mut first = contexts(&["kind-p", "other"]);
        super::rename_context(&mut first, "kind-p", "prod-cluster").unwrap();
        assert_eq!(names(&first), ["prod-cluster", "other"]);
        assert_eq!(first.current_context.as_deref(), Some("prod-cluster"));

        // kind exported its name again next to the renamed one.
        let mut again = contexts(&["prod-cluster", "other", "kind-p"]);
        super::rename_context(&mut again, "kind-p", "prod-cluster").unwrap();
        assert_eq!(names(&again), ["other", "prod-cluster"]);

        // Already named, nothing from kind: left as it is.
        let mut named = contexts(&["prod-cluster"]);
        super::rename_context(&mut named, "kind-p", "prod-cluster").unwrap();
        assert_eq!(names(&named), ["prod-cluster"]);

        let error = super::rename_context(&mut contexts(&["other"]), "kind-p", "prod-cluster").unwrap_err();
        assert!(error.to_string().contains("no context kind-p"), "{error}");
    }
}
