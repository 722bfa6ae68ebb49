//! The whole command tree. The `///` lines here are what `--help` prints: keep them teaching.
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "shipshape: the model-server deploy runbooks as commands",
    long_about = "shipshape: the model-server deploy runbooks as commands.\n\n\
        Every step of the runbooks is a command here (docs/runbook.md maps them). \
        External tools (helm, kind) are pinned and built into a cache outside the repository \
        (~/.cache/shipshape); nothing on your PATH is assumed. With no container registry, \
        the kind node image and the application images are built locally too.",
    after_help = "Start here:\n  cargo xtask up              a local kind cluster with model-server deployed and verified\n  \
        cargo xtask test            run the whole test suite\n  \
        cargo xtask render --env prod   see what would be deployed to prod\n  \
        cargo xtask cluster down    remove the local cluster"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Up(Up),
    Cluster(Cluster),
    Image(Image),
    Tools(Tools),
    Render(Render),
    Test(Test),
}

/// Install or check the pinned external tools (helm, kind).
///
/// Each tool is built from its Go module at the pinned version, stamped so that
/// `helm version` / `kind version` print the real version, and kept in
/// `~/.cache/shipshape/tools/<tool>-<version>/` (override with SHIPSHAPE_CACHE).
/// Every other command finds tools only there.
#[derive(Args, Debug)]
pub struct Tools {
    #[command(subcommand)]
    pub action: ToolsAction,
}

#[derive(Subcommand, Debug)]
pub enum ToolsAction {
    /// Build every missing tool (needs Go; a cold build of helm takes a few minutes).
    /// Tools already in the cache are reused.
    Install,
    /// Print each tool, its version and where it is, and what to do about anything missing.
    /// Exits non-zero when a pinned tool is missing or reports the wrong version.
    Check,
}

/// Print the manifests Helm renders for an environment and a deployment variant.
///
/// Needs no cluster: this is `helm template` with deploy/envs/<env>.yaml and the
/// variant's helm/model-server/ci/<variant>-values.yaml, exactly as the snapshot
/// tests render them. Use it to review a change before deploying it.
#[derive(Args, Debug)]
pub struct Render {
    /// Environment whose values to use (deploy/envs/<env>.yaml).
    #[arg(long, value_enum, default_value_t = Env::Dev)]
    pub env: Env,
    /// Deployment shape: stable only, with a canary, a blue/green slot live, or a secret source.
    #[arg(long, value_enum, default_value_t = Variant::Stable)]
    pub variant: Variant,
    /// Image tag to render (default: the chart's appVersion).
    #[arg(long)]
    pub tag: Option<String>,
}

/// Run the whole test suite: prepares what it needs, then `cargo test --workspace`.
///
/// First installs missing pinned tools and finds or builds the kind node image and the
/// application images (with progress: a cold node image takes minutes). Then runs every tier:
/// unit tests, model-server against a real PostgreSQL server, rendered-manifest snapshots with
/// `helm lint --strict`, containers of the built images, and end to end on real kind clusters
/// (needs a Docker engine). Snapshots are checked, never rewritten: to accept an intended change,
/// run `INSTA_UPDATE=always cargo test -p shipshape-tests` and review the diff.
#[derive(Args, Debug)]
pub struct Test {
    /// Keep the kind cluster of a failing end-to-end test for inspection (its name is printed).
    #[arg(long)]
    pub keep_cluster: bool,
    /// Extra arguments passed to `cargo test` after `--workspace` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
}

/// The main job: a local kind cluster with model-server deployed and verified.
///
/// Creates (or reuses) the kind cluster, builds and loads the model-server and PostgreSQL
/// images, creates the Secrets the chart references, installs the chart with the dev values,
/// waits for the rollout, and checks /health, /ready and /health/db through the API server.
/// The cluster stays up afterwards; `cargo xtask cluster down` removes it.
#[derive(Args, Debug)]
pub struct Up {
    #[command(flatten)]
    pub cluster: ClusterUp,
}

/// Local kind clusters that work with no container registry.
///
/// The node image is kindest/node at the pinned Kubernetes version when Docker has it or can
/// pull it; otherwise it is built here from Debian packages and Go modules (`cluster image`).
#[derive(Args, Debug)]
pub struct Cluster {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Create the cluster, or check and reuse it if it already runs; then wait until the node is
    /// Ready and every kube-system pod runs. Builds the node image first when needed.
    Up(ClusterUp),
    /// Delete the cluster and its kubeconfig file. Deleting a cluster that does not exist is not
    /// an error.
    Down(ClusterTarget),
    /// Show whether the cluster exists, its node image, and its nodes and kube-system pods.
    Status(ClusterTarget),
    /// Find or build the kind node image (no cluster is created). Each build stage is cached
    /// under ~/.cache/shipshape/stages and reused; a failed stage names its log file.
    Image,
}

/// Which cluster, and where its kubeconfig goes.
#[derive(Args, Debug, Clone)]
pub struct ClusterTarget {
    /// The kind cluster's name.
    #[arg(long, default_value = "shipshape")]
    pub name: String,
    /// Where to write the cluster's kubeconfig (default: ~/.cache/shipshape/clusters/<name>/kubeconfig).
    /// Your default kubeconfig and its current context are never touched.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// `cluster up` options.
#[derive(Args, Debug, Clone)]
pub struct ClusterUp {
    #[command(flatten)]
    pub target: ClusterTarget,
    /// Keep a cluster this command created even if it never became ready (to inspect it).
    /// Without it, such a cluster is deleted, so a failure leaves nothing half-made.
    #[arg(long)]
    pub keep: bool,
}

/// Build the application images locally: model-server and PostgreSQL (from Debian packages).
#[derive(Args, Debug)]
pub struct Image {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Subcommand, Debug)]
pub enum ImageAction {
    /// Build shipshape/model-server:<tag> (release binary, its libraries and model, FROM scratch)
    /// and shipshape/postgres:<version> (Debian's PostgreSQL). No registry is used.
    Build {
        /// Tag for the model-server image.
        #[arg(long, default_value = crate::cluster::app_images::DEFAULT_TAG)]
        tag: String,
    },
}

/// The environments shipshape deploys to; each has deploy/envs/<name>.yaml.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Env {
    Dev,
    Staging,
    Prod,
}

/// The shapes a release can take, each with helm/model-server/ci/<name>-values.yaml.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Stable track only: the standard deployment.
    Stable,
    /// Stable track plus a canary Deployment behind the same Service.
    Canary,
    /// Blue/green with the blue slot live and green as preview.
    Blue,
    /// Blue/green with the green slot live and blue as preview.
    Green,
    /// Secrets delivered by External Secrets Operator (ExternalSecret objects).
    ExternalSecrets,
    /// Secrets delivered as Bitnami SealedSecret objects.
    SealedSecrets,
}

impl Env {
    pub const ALL: [Env; 3] = [Env::Dev, Env::Staging, Env::Prod];

    pub fn name(self) -> &'static str {
        match self {
            Env::Dev => "dev",
            Env::Staging => "staging",
            Env::Prod => "prod",
        }
    }
}

impl Variant {
    pub const ALL: [Variant; 6] =
        [Variant::Stable, Variant::Canary, Variant::Blue, Variant::Green, Variant::ExternalSecrets, Variant::SealedSecrets];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Canary => "canary",
            Variant::Blue => "blue",
            Variant::Green => "green",
            Variant::ExternalSecrets => "external-secrets",
            Variant::SealedSecrets => "sealed-secrets",
        }
    }
}
