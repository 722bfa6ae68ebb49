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
    /// Install nothing on this machine: where something is missing (a Docker engine,
    /// debootstrap, PostgreSQL's server), stop and name it instead. Without it, `up` and `test`
    /// install only what is missing, and never change a package the machine already has.
    #[arg(long, global = true, env = "SHIPSHAPE_NO_INSTALL", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub no_install: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Up(Up),
    Preflight(Preflight),
    Deploy(Deploy),
    Verify(Verify),
    Rollback(Rollback),
    Reload(Reload),
    Restart(Restart),
    RotateSecret(RotateSecret),
    Doctor(Doctor),
    Status(Status),
    Environments(Environments),
    Canary(Canary),
    Bluegreen(BlueGreen),
    Cluster(Cluster),
    Image(Image),
    Tools(Tools),
    Render(Render),
    Test(Test),
    Bench(Bench),
    Env(ShellEnv),
    Keys(Keys),
    Admission(Admission),
    Release(ReleaseImage),
    Completions(Completions),
}

/// Which release, on which cluster. Every command that touches a release prints its target first.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Environment: its values (deploy/envs/<env>.yaml) and its namespace (model-server-<env>).
    #[arg(long, value_enum, default_value_t = Env::Dev)]
    pub env: Env,
    /// Namespace, when not model-server-<env> (`-n`, as kubectl's and helm's; $SHIPSHAPE_NAMESPACE
    /// as helm's $HELM_NAMESPACE, e.g. set per GitHub environment in a workflow).
    #[arg(short = 'n', long, env = "SHIPSHAPE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the local cluster's from
    /// `cargo xtask up`).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (as kubectl's and helm's). Default: the one the environment's
    /// values name (cluster.context in deploy/envs/<env>.yaml: each environment its own
    /// cluster), else the kubeconfig's current context. Another context than the one the
    /// environment names is refused.
    #[arg(long)]
    pub context: Option<String>,
}

/// The runbooks' prerequisite checks, before a deployment.
///
/// Checks, one line each with the fix for a failure: the cluster answers; the namespace exists;
/// helm and kubectl versions; the admin-token, MLflow and database Secrets the release
/// references exist with their keys; the ServiceAccount, Role and RoleBinding exist; RBAC lets
/// the ServiceAccount read those Secrets (a SubjectAccessReview); no Helm operation is stuck in
/// pending-*; no other shipshape flow holds the release. Exits 1 when a check fails.
#[derive(Args, Debug)]
pub struct Preflight {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// The standard deployment: upgrade the release to an image tag, wait, verify.
///
/// Steps: record the current version in the journal; check the image exists (on a node, or by
/// pulling it in the cluster) before anything changes; `helm upgrade --install` with the tag;
/// wait for the rollout, failing fast on CrashLoopBackOff, image pull errors or missing Secrets
/// (not after the 10-minute progress deadline); run `verify`. On any failure the release is
/// rolled back to the revision it had (or a first install is removed), so stable keeps serving.
/// Refuses to start while a canary runs or another flow holds the release.
#[derive(Args, Debug)]
pub struct Deploy {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub signature: SignatureArgs,
    #[command(flatten)]
    pub values: ValueOverrides,
    /// Image tag of shipshape/model-server to deploy.
    #[arg(long, required_unless_present = "from", value_parser = image_tag)]
    pub tag: Option<String>,
    /// Instead of --tag: what this earlier environment runs, by the digest verified there (read
    /// from its own cluster, the context its values name in the same kubeconfig), never its tag
    /// resolved again: `deploy --env prod --from staging`. Refused unless it is settled there
    /// (its latest flow succeeded, no hand change); checked against this environment's policy.
    #[arg(long, value_enum, conflicts_with = "tag", required_unless_present = "tag")]
    pub from: Option<Env>,
    /// With --from: the earlier environment's namespace, when not its own (model-server-<env>).
    #[arg(long, requires = "from")]
    pub from_namespace: Option<String>,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The runbook's seven post-deployment checks, run concurrently on every serving pod.
///
/// 1 replicas ready, 2 pods Running, 3 GET /health, 4 GET /ready, 5 GET /health/db (the
/// database), 6 error lines in the last 5 minutes of logs (a warning above 10), 7 the deployed
/// version (what Helm applied, what the Deployment runs, what each pod reports). Three additions
/// follow: 8 one real prediction (POST /v1/predict answers a label), 9 /metrics holds the series
/// a canary is judged on, 10 no pod started before a Secret it reads last changed (a warning).
/// Pods are reached through the API server's proxy. Exit code: 0 passed, 5 passed with
/// warnings, 1 failed (with --watch: ends only on Ctrl-C, or see --timeout).
#[derive(Args, Debug)]
pub struct Verify {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Roll the release back: the previous release (default), a Helm revision, or an image tag.
///
/// Steps: find the target (the newest earlier revision that ran a different stable version with
/// no canary, or --to-revision, or --to-tag); check its image exists before touching anything;
/// report any change made behind Helm's back (e.g. `kubectl rollout undo`) and take those fields
/// back; remove any canary and roll back stable in one Helm revision; wait; verify (unless
/// --skip-verification); write a summary (terminal, --output json, $GITHUB_STEP_SUMMARY).
#[derive(Args, Debug)]
pub struct Rollback {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub signature: SignatureArgs,
    /// Roll back to this Helm revision (`cargo xtask status` lists them).
    #[arg(long, conflicts_with = "to_tag")]
    pub to_revision: Option<u32>,
    /// Roll back to this image tag (the current values with image.tag set to it).
    #[arg(long, value_parser = image_tag)]
    pub to_tag: Option<String>,
    /// Do not run the post-deployment checks after the rollback.
    #[arg(long, env = "SHIPSHAPE_SKIP_VERIFICATION", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub skip_verification: bool,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A Helm operation left pending (helm refuses every change until it is cleared) is cleared
    /// once it is 2 minutes old, in case it still runs somewhere; with this, at once: you know
    /// its process is gone (killed, its machine lost).
    #[arg(long)]
    pub clear_pending: bool,
}

/// Reload the model on every pod (stable and canary): `POST /admin/reload` with the admin token.
///
/// The token is read from the Secret the release names (only its length is printed) and sent in
/// the X-Admin-Token header through the API server to each pod. Not needed when the release sets
/// env.modelAutoRefreshSeconds. Exits 1 unless every pod reloaded.
#[derive(Args, Debug)]
pub struct Reload {
    #[command(flatten)]
    pub target: TargetArgs,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Restart the pods that serve, as a Helm revision, so they read their Secrets anew.
///
/// The runbook's "restart pods to pick up the new secret" on its own: a Helm revision (value
/// restartedAt), never `kubectl rollout restart` behind Helm's back, of whatever serves (the
/// stable Deployment and a canary's, or a blue/green release's live colour); waits for the
/// rollouts and runs the post-deployment checks; rolls back to the revision before if the new
/// pods do not come up. `doctor` names it when pods hold a Secret's old value.
///
///     cargo xtask restart --env staging
#[derive(Args, Debug)]
pub struct Restart {
    #[command(flatten)]
    pub target: TargetArgs,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the Helm revision left, the result), progress on stderr; written whatever
    /// the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Rotate a secret: a new value, the Secret updated, pods restarted, proven.
///
/// Steps: the new value (the admin token's generated, 32 bytes hex; MLflow's password given
/// with --value-from after it was changed in MLflow; never printed, only its length); update the Secret the release
/// names; restart stable and canary as a Helm revision (value restartedAt); wait for the
/// rollouts; prove it: for the admin token, every pod accepts the new token on POST
/// /admin/reload and refuses the old one. If the restart fails, the old value is put back.
///
///     cargo xtask rotate-secret admin-token --env dev
///     cargo xtask rotate-secret admin-token --env prod --method external
///     cargo xtask rotate-secret mlflow --env staging --method sealed --value-from stdin < new-password
#[derive(Args, Debug)]
pub struct RotateSecret {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Which secret.
    #[arg(value_enum)]
    pub secret: SecretKind,
    /// How the Secret is managed: manual (shipshape writes the Secret), sealed (kubeseal and
    /// the release's SealedSecret; needs the Sealed Secrets controller in kube-system) or
    /// external (the value is written to the store behind the release's ExternalSecret and
    /// External Secrets Operator syncs it; a failed sync stops before any restart and puts the
    /// store's old value back).
    #[arg(long, value_enum, default_value_t = SecretMethod::Manual)]
    pub method: SecretMethod,
    /// Where the new value comes from: `stdin` (one line), `file:PATH` or `env:NAME`, never the
    /// command line. Required for mlflow unless --set-in-mlflow (set the password in MLflow first,
    /// then give it here); without it the admin token is generated.
    #[arg(long, value_name = "SOURCE", value_parser = clap::value_parser!(crate::flows::rotate::ValueSource))]
    pub value_from: Option<crate::flows::rotate::ValueSource>,
    /// mlflow: shipshape changes the password in MLflow itself, as the account that owns it
    /// (MLflow's auth API, with the current password from the Secret), then the Secret; the new
    /// one is generated unless --value-from names it. Needs the release's modelUri to be a model
    /// version on an MLflow in the cluster. A failure after the change sets the old password in
    /// MLflow again.
    #[arg(long)]
    pub set_in_mlflow: bool,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// The token that guards POST /admin/reload (env.adminTokenSecretName).
    AdminToken,
    /// The MLflow password (env.mlflowCredentialsSecretName); update it in MLflow first.
    Mlflow,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMethod {
    /// Update the Kubernetes Secret directly (the runbook's kubectl apply, through the API).
    Manual,
    /// Seal the value with kubeseal and set it in the release's SealedSecret (sealedSecrets.*
    /// values, a Helm revision); the Sealed Secrets controller unseals it into the Secret.
    Sealed,
    /// Write the value to the external store the release's ExternalSecret reads (its
    /// (Cluster)SecretStore; shipshape writes to the kubernetes provider), force External
    /// Secrets Operator to sync it now (the force-sync annotation), and wait for the Secret.
    External,
}

/// Diagnose a release: the runbooks' troubleshooting sections, as findings with fixes.
///
/// Looks for: Secrets not found or missing keys; RBAC that denies the ServiceAccount its
/// Secrets; ExternalSecrets not syncing; pods that cannot read their Secret
/// (CreateContainerConfigError); pods Pending (and why the scheduler says so); crash loops (with
/// the last lines of the previous container's log); image pull errors; slow or stalled
/// rollouts; Helm operations stuck in pending-*; changes made behind Helm's back. Exit code: 0
/// nothing wrong, 5 warnings only, 1 a problem found (with --watch: ends only on Ctrl-C, or see
/// --timeout).
#[derive(Args, Debug)]
pub struct Doctor {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Where the release stands: Helm's revisions and the journal's account of each run (who ran
/// what, when, with which result), and any flow running now.
///
/// Exit code: 0 when it could say, 1 when the cluster could not be read.
#[derive(Args, Debug)]
pub struct Status {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// How many journal entries to show (newest last).
    #[arg(long, default_value_t = 10)]
    pub last: usize,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Every environment side by side, each read from its own cluster (the kubeconfig context its
/// values name, cluster.context in deploy/envs/<env>.yaml): the version and digest it runs, its
/// Helm revision and status, and the latest flow with its result.
///
/// What to look at before `deploy --env prod --from staging`. Exit code: 0 every environment
/// read, 5 one could not be (no such context, unreachable: its row says why).
#[derive(Args, Debug)]
pub struct Environments {
    /// Kubeconfig file holding the environments' contexts (default: $KUBECONFIG, else
    /// ~/.kube/config, else the local cluster's).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// An environment's namespace when not its own (model-server-<env>), as ENV=NAMESPACE;
    /// repeatable.
    #[arg(long, value_name = "ENV=NAMESPACE", value_parser = env_namespace)]
    pub namespace: Vec<(Env, String)>,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

fn env_namespace(text: &str) -> Result<(Env, String), String> {
    let (env, namespace) = text.split_once('=').ok_or_else(|| format!("{text:?} is not ENV=NAMESPACE"))?;
    let env = Env::from_str(env, true).map_err(|_| format!("{env:?} is not an environment (dev, staging, prod)"))?;
    Ok((env, namespace.to_owned()))
}

/// Canary by replica ratio, with analysis at each step and a manual approval gate.
///
/// `canary start --tag T` runs the new version beside stable in steps (default 10, 30, 50 % of
/// the pods; the real percentage of pods is recorded), each a Helm revision. At each step: wait
/// until both tracks are ready, smoke-test the canary pods, hold an analysis window while traffic
/// flows and compare canary against stable from the pods' /metrics (error rate, p95 latency, a
/// minimum number of requests: too few is inconclusive and pauses, never passes). A failed step
/// or a crash-looping canary aborts: canary scaled to zero and removed, stable back to full
/// replicas, unchanged. After the last step comes the approval gate: a prompt on a terminal, or
/// the flow pauses with its state in the cluster until `canary promote` or `canary abort`, from
/// any machine (a CI job behind an environment approval runs `canary promote`).
#[derive(Args, Debug)]
pub struct Canary {
    #[command(subcommand)]
    pub action: CanaryAction,
}

#[derive(Subcommand, Debug)]
pub enum CanaryAction {
    /// Start a canary of --tag on the release (stable keeps serving throughout).
    ///
    /// Exit codes: 0 promoted, or waiting at the approval gate with every step passed
    /// (--approval pause: a CI job can go on to `canary promote`); 3 paused without evidence: a
    /// step's analysis was inconclusive (too few requests), and `canary resume` analyses it
    /// again; 1 failed: the canary was aborted (stable serves as before) or could not start.
    Start(Box<CanaryStart>),
    /// Approve: stable moves to the digest the analysis judged (checked against the environment's
    /// policy again) at full replicas, the canary is removed. Refused when a Helm revision was made
    /// by someone else since the canary's last step (e.g. a `helm rollback` by hand): what was
    /// judged no longer runs.
    Promote(CanaryContinue),
    /// Stop: canary scaled to zero and removed, stable restored to full replicas, unchanged.
    /// Idempotent: a canary already aborted or promoted is said so, exit 0.
    Abort(CanaryTarget),
    /// Carry on a canary whose run was interrupted (killed, machine gone) or paused as
    /// inconclusive, from the step it reached.
    ///
    /// Exit codes: 0 promoted, or waiting at the approval gate with every step passed
    /// (--approval pause: a CI job can go on to `canary promote`); 3 paused without evidence: a
    /// step's analysis was inconclusive (too few requests), and `canary resume` analyses it
    /// again; 1 failed: the canary was aborted (stable serves as before) or could not start.
    Resume(CanaryContinue),
    /// Where the canary stands: its step, measurements, and what the gate is waiting for.
    ///
    /// Says whether the run is running, interrupted (its process gone: `canary resume` or
    /// `canary abort`), at the gate, promoted or aborted, and the live traffic split with any
    /// hand change to it. Exit code: 0 when it could say (whatever the canary's state), 1 when
    /// the cluster could not be read.
    Status(CanaryStatus),
}

#[derive(Args, Debug)]
pub struct CanaryStart {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub signature: SignatureArgs,
    #[command(flatten)]
    pub values: ValueOverrides,
    /// Image tag of the version under test.
    #[arg(long, required_unless_present = "from", value_parser = image_tag)]
    pub tag: Option<String>,
    /// Instead of --tag: what this earlier environment runs, by the digest verified there (read
    /// from its own cluster, the context its values name in the same kubeconfig), never its tag
    /// resolved again: `deploy --env prod --from staging`. Refused unless it is settled there
    /// (its latest flow succeeded, no hand change); checked against this environment's policy.
    #[arg(long, value_enum, conflicts_with = "tag", required_unless_present = "tag")]
    pub from: Option<Env>,
    /// With --from: the earlier environment's namespace, when not its own (model-server-<env>).
    #[arg(long, requires = "from")]
    pub from_namespace: Option<String>,
    /// Canary shares of the pods, in percent, in order (promotion to 100 % follows the gate).
    /// These three may come from the environment ($SHIPSHAPE_CANARY_*), so a workflow tunes them
    /// per GitHub environment without a change to its command.
    #[arg(long, value_delimiter = ',', default_value = "10,30,50", env = "SHIPSHAPE_CANARY_STEPS")]
    pub steps: Vec<u32>,
    /// Seconds of traffic to observe at each step before judging it.
    #[arg(long, default_value_t = 60, env = "SHIPSHAPE_CANARY_ANALYSIS_SECONDS")]
    pub analysis_seconds: u64,
    /// Fewer canary requests than this in a window is inconclusive (the flow pauses).
    #[arg(long, default_value_t = crate::flows::analysis::Thresholds::default().min_requests, env = "SHIPSHAPE_CANARY_MIN_REQUESTS")]
    pub min_requests: u64,
    /// Highest acceptable canary error rate (HTTP 5xx share of /v1/predict), 0 to 1.
    #[arg(long, default_value_t = crate::flows::analysis::Thresholds::default().max_error_rate)]
    pub max_error_rate: f64,
    /// Canary p95 latency may be at most this times stable's (plus 50 ms of slack).
    #[arg(long, default_value_t = crate::flows::analysis::Thresholds::default().max_latency_ratio)]
    pub max_latency_ratio: f64,
    /// Canary memory (working set) per pod may be at most this times stable's (plus 16 MiB),
    /// from the kubelet's resource metrics (through the API server's node proxy).
    #[arg(long, default_value_t = crate::flows::analysis::MAX_MEMORY_RATIO)]
    pub max_memory_ratio: f64,
    /// Canary CPU per pod over the window may be at most this times stable's (plus 50m).
    #[arg(long, default_value_t = crate::flows::analysis::MAX_CPU_RATIO)]
    pub max_cpu_ratio: f64,
    /// The approval gate: `prompt` asks on a terminal, `pause` stops and waits for
    /// `canary promote` / `canary abort`, `approved` promotes (approval given in advance).
    /// Default: prompt on a terminal, else pause.
    #[arg(long, value_enum)]
    pub approval: Option<Approval>,
    /// Read the analysis from this in-cluster Prometheus instead of scraping the pods, e.g.
    /// http://prometheus-server.monitoring.svc:80 (reached through the API server). Its scrape
    /// configuration must keep the `namespace` and `pod` labels.
    #[arg(long)]
    pub prometheus: Option<crate::flows::analysis::Prometheus>,
    /// Custom checks for --prometheus: a directory of YAML files, each a named PromQL query, a
    /// threshold and which way is bad (`bad: above` or `below`); a query without data is
    /// inconclusive. Default: this checkout's deploy/analysis (see its files for the format).
    #[arg(long, requires = "prometheus")]
    pub checks: Option<std::path::PathBuf>,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    Prompt,
    Pause,
    Approved,
}

#[derive(Args, Debug)]
pub struct CanaryTarget {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Act only if the latest canary is this run (its journal entry, which `canary start` prints
    /// and writes to $GITHUB_OUTPUT as `run`): a workflow's later job never acts on a canary
    /// another run started.
    #[arg(long, value_name = "JOURNAL_ENTRY")]
    pub run: Option<String>,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
}

/// `canary promote` and `canary resume`: the target, the run, and what the image must prove
/// (promotion checks the judged digest against the environment's policy again).
#[derive(Args, Debug)]
pub struct CanaryContinue {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Act only if the latest canary is this run (see `canary abort --help`).
    #[arg(long, value_name = "JOURNAL_ENTRY")]
    pub run: Option<String>,
    #[command(flatten)]
    pub signature: SignatureArgs,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct CanaryStatus {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Blue/green: the new version on the idle colour, tested, then the live Service switched.
///
/// `bluegreen start --tag T`: deploy the idle colour at T and wait until it is ready; smoke-test
/// it through its own preview Service; switch the live Service to it (Helm value
/// blueGreen.activeSlot, so `helm history` explains it); verify; keep the old colour running for
/// a propagation delay (every node's kube-proxy must have switched), then scale it down. A
/// failure before the switch scales the idle colour back down; after it, traffic switches back.
/// On a release not installed yet, `start` installs it in blue/green shape (blue live).
/// `bluegreen rollback` switches back to the previous colour (scaling it up again first if it
/// was scaled down). Each step is journaled: `bluegreen resume` carries on an interrupted flow
/// from any machine, `bluegreen rollback` undoes it.
#[derive(Args, Debug)]
pub struct BlueGreen {
    #[command(subcommand)]
    pub action: BlueGreenAction,
}

#[derive(Subcommand, Debug)]
pub enum BlueGreenAction {
    /// Deploy --tag on the idle colour, test it, switch traffic to it, retire the old colour.
    Start(BlueGreenStart),
    /// Switch traffic back to the previous colour and retire the current one.
    Rollback(BlueGreenTarget),
    /// Carry on a blue/green flow that was interrupted, from the step it reached.
    Resume(BlueGreenTarget),
    /// Which colour is live, each colour's version and size, and the latest flow.
    ///
    /// Exit code: 0 when it could say, 1 when the cluster could not be read.
    Status(BlueGreenStatus),
}

#[derive(Args, Debug)]
pub struct BlueGreenStart {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub signature: SignatureArgs,
    #[command(flatten)]
    pub values: ValueOverrides,
    /// Image tag to deploy on the idle colour.
    #[arg(long, required_unless_present = "from", value_parser = image_tag)]
    pub tag: Option<String>,
    /// Instead of --tag: what this earlier environment runs, by the digest verified there (read
    /// from its own cluster, the context its values name in the same kubeconfig), never its tag
    /// resolved again: `deploy --env prod --from staging`. Refused unless it is settled there
    /// (its latest flow succeeded, no hand change); checked against this environment's policy.
    #[arg(long, value_enum, conflicts_with = "tag", required_unless_present = "tag")]
    pub from: Option<Env>,
    /// With --from: the earlier environment's namespace, when not its own (model-server-<env>).
    #[arg(long, requires = "from")]
    pub from_namespace: Option<String>,
    /// Seconds the old colour keeps running after the switch has reached the Service's
    /// endpoints, for every node's kube-proxy to follow (Argo Rollouts' default is the same;
    /// on a busy node kube-proxy took up to 30 s to program an endpoint change).
    #[arg(long, default_value_t = 30)]
    pub scale_down_delay: u64,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct BlueGreenStatus {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct BlueGreenTarget {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Seconds the old colour keeps running after the switch (rollback only).
    #[arg(long, default_value_t = 30)]
    pub scale_down_delay: u64,
    /// `json`: what the command did as one JSON document on stdout (its journal entries: steps,
    /// facts such as the digest deployed and the Helm revision left, the result), progress on
    /// stderr; written whatever the outcome.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long each wait may take (a rollout, a Secret's sync, a Deployment to go) before the
    /// flow fails and undoes what it changed; as helm takes it: 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Install or check the pinned external tools (helm, kind, crane, cosign, trivy, kubeseal,
/// actionlint, act, cargo-auditable, checkov, zizmor).
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
    #[arg(long, value_parser = image_tag)]
    pub tag: Option<String>,
    /// The tag's digest (sha256:...): environments that require signatures (staging, prod)
    /// render only tags pinned by digest, as the flows deploy them.
    #[arg(long)]
    pub digest: Option<String>,
}

/// Run the whole test suite: prepares what it needs, then `cargo test --workspace`.
///
/// First checks the disks' free space, removes test clusters left by killed runs, installs
/// missing pinned tools and finds or builds the kind node image and the application images (with
/// progress: a cold node image takes minutes), and makes the end-to-end tests' kind cluster with
/// the Sealed Secrets controller, External Secrets Operator and Prometheus; runs clippy with the
/// workspace's lints (warnings are errors). Then runs every tier: unit tests, model-server
/// against a real PostgreSQL server, rendered-manifest snapshots with
/// `helm lint --strict`, containers of the built images, and end to end on that cluster (needs a
/// Docker engine), which is deleted when the run ends. Snapshots are checked, never rewritten: to
/// accept an intended change, run `INSTA_UPDATE=always cargo test -p shipshape-tests` and review
/// the diff.
#[derive(Args, Debug)]
pub struct Test {
    /// Keep the end-to-end cluster when a test failed, for inspection (its name and kubeconfig are
    /// printed; later runs leave it until `cargo xtask cluster down --name <it>`).
    #[arg(long)]
    pub keep_cluster: bool,
    /// Print a backtrace with each failed test (off by default, whatever RUST_BACKTRACE says:
    /// an end-to-end failure's evidence is its message, which a backtrace pushes out of a CI
    /// log's tail).
    #[arg(long)]
    pub backtrace: bool,
    /// Extra arguments passed to `cargo test` after `--workspace` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
}

/// Measure where people wait, and write the table into docs/benchmarks.md.
///
/// verify: the runbook's verification script (tests/bench/post_deploy_verify.sh) against
/// `cargo xtask verify` through cargo, the `xtask` shell function of `cargo xtask env`, the
/// debug binary and the release binary (built here with `cargo build --release -p xtask`), on one deployment at 1 pod and at 10, runs
/// alternating. cluster start: `cluster up` of a new throwaway cluster, node image cached.
/// Reports min, median and max and the ratio of medians. Uses (or creates) the local cluster
/// and deletes its namespace after. A measurement only: it never fails on a time.
#[derive(Args, Debug)]
pub struct Bench {
    /// Measured runs of each verify contender (after one warm-up run each).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// New clusters to start and delete for the cluster-start row (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub cluster_starts: usize,
    /// Skip the verify rows.
    #[arg(long)]
    pub skip_verify: bool,
    /// The kind cluster the verify rows run on (created if missing).
    #[arg(long, default_value = "shipshape")]
    pub cluster: String,
    /// Print the table only; leave docs/benchmarks.md as it is.
    #[arg(long)]
    pub no_write: bool,
}

/// The main job: a local kind cluster with model-server deployed and verified.
///
/// Creates (or reuses) the kind cluster, builds and pushes the model-server and PostgreSQL
/// images, creates the Secrets the chart references that do not exist yet (saying which),
/// deploys this checkout's build with the dev values through `deploy` (journaled; rolled back
/// if it fails), and checks /health, /ready and /health/db through the API server. The cluster
/// stays up afterwards; `cargo xtask cluster down` removes it.
///
/// Run it again whenever something looks wrong: on a healthy cluster it changes nothing but a
/// verified Helm revision (no pod restarts, no new token); Secrets that exist keep their values,
/// also when the release delivered them another way (sealed, external). A release of another
/// shape (blue/green, a canary under way, an interrupted Helm operation) is left as it is, and
/// the error names the command that brings it back.
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
    /// an error. The local registry (and the images pushed to it) stays for the next cluster
    /// unless --remove-registry.
    Down(ClusterDown),
    /// Show whether the cluster exists, its node image, and its nodes and kube-system pods.
    Status(ClusterTarget),
    /// Find or build the kind node image (no cluster is created). Each build stage is cached
    /// under ~/.cache/shipshape/stages and reused; a failed stage names its log file.
    Image,
}

/// Print shell lines that put the pinned tools (helm, kind, kubeseal, kubectl) on PATH, point
/// KUBECONFIG at the local cluster, and define `xtask` (this checkout's `cargo xtask`, from any
/// directory), so the runbooks' own commands work as printed:
///
///     eval "$(cargo xtask env)"
///     helm history model-server --namespace model-server-dev
///
/// Only tools already built are added; nothing is installed. Your shell is changed only by the
/// `eval`, and only for that shell.
#[derive(Args, Debug)]
pub struct ShellEnv {
    #[command(flatten)]
    pub cluster: ClusterTarget,
}

/// Print shell completions for the `xtask` shell function that `cargo xtask env` defines:
///
///     eval "$(cargo xtask env)"
///     source <(cargo xtask completions bash)
///     xtask canary st<TAB>
#[derive(Args, Debug)]
pub struct Completions {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// An environment's supply-chain policy enforced by its cluster: the API server refuses what
/// the policy refuses, whoever asks (kubectl and helm by hand too), not only shipshape's check.
///
/// Needs sigstore policy-controller in the cluster (a local one: `cargo xtask cluster up --with
/// policy-controller`). What the cluster holds and what only shipshape holds: see
/// supplyChain.admission in helm/model-server/values.yaml.
#[derive(Args, Debug)]
pub struct Admission {
    #[command(subcommand)]
    pub action: AdmissionAction,
}

#[derive(Subcommand, Debug)]
pub enum AdmissionAction {
    /// Write the environment's ClusterImagePolicies (the release's repository: a key trusted now
    /// signed it and its SLSA provenance from a trusted builder; the repositories listed in
    /// supplyChain.admission.admitUnsigned: admitted unsigned) and label its namespace
    /// policy.sigstore.dev/include=true. Apply again after a change to the environment's keys
    /// (`keys rotate`, a key's window ending) or supplyChain values. Refuses an environment
    /// whose values do not set supplyChain.admission.enforce, and a cluster without
    /// policy-controller.
    Apply {
        #[command(flatten)]
        target: TargetArgs,
        /// The repository the release's images come from, when not the environment's
        /// image.repository (a local cluster: localhost:5001/shipshape/model-server).
        #[arg(long)]
        image_repository: Option<String>,
        /// `json`: what was written (policies, the namespace, keys left out) as one JSON
        /// document on stdout, with the exit code and any error.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

/// The cosign key pair releases are signed with.
#[derive(Args, Debug)]
pub struct Keys {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create the signing key pair: the private key, encrypted with $COSIGN_PASSWORD, outside the
    /// repository ($SHIPSHAPE_COSIGN_KEY, default ~/.config/shipshape/cosign.key, mode 600); the
    /// public key into deploy/keys/cosign.pub, to commit (environments verify against it).
    /// Refuses to replace either half of an existing pair, and an empty $COSIGN_PASSWORD.
    Init,
    /// Make a new signing key pair beside the old (a rotation, planned or after a leak): the new
    /// private key signs from now on, the old one is kept renamed (<key>.retired-<time>), the new
    /// public key goes to deploy/keys/cosign-<date>.pub. Environments keep trusting exactly what
    /// their values list: the command prints the supplyChain.publicKeys each needs (the new key
    /// first, the old ones kept until nothing signed with them must deploy, rollbacks
    /// included), a change to make through review.
    Rotate {
        /// Where to write the new public key (default deploy/keys/cosign-<today>.pub).
        #[arg(long)]
        public_key: Option<std::path::PathBuf>,
    },
}

/// Release model-server: build, scan, push, sign, attest; print what to deploy.
///
/// Steps: build the image from this checkout (labelled with its commit; the binary built with
/// cargo auditable); scan it with the pinned Trivy (the crates in the binary, the Debian
/// packages of the system libraries beside it) against --vuln-db (refused when older than
/// --max-vuln-db-age): a HIGH, CRITICAL or unscored (UNKNOWN) finding refuses the release unless
/// allow-listed in deploy/scan/.trivyignore.yaml (Trivy's format; each entry with a statement
/// and an expiry, expired_at); push it (default: the local registry); sign its digest with the private key (`cargo xtask keys init`; password from
/// $COSIGN_PASSWORD, never on a command line); attach a signed SLSA v1 provenance attestation
/// (builder, source repository, commit, dirty flag, Cargo.lock digest, build command, start and
/// end times). Offline: no transparency log and no certificate authority are used (said in the
/// output). Then `deploy`, `canary start` or `bluegreen start --tag <tag>` verify the signature and
/// provenance against the environment's public key before changing anything.
///
/// In CI the build must not see the signing key: `release build` and `release publish` are the
/// same release in two jobs (see their --help).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleaseImage {
    #[command(subcommand)]
    pub half: Option<ReleaseHalf>,
    /// Tag to release.
    #[arg(long, value_parser = image_tag, required = true)]
    pub tag: Option<String>,
    /// Registry (and optional path prefix) to push to.
    #[arg(long, default_value = crate::cluster::registry::HOST)]
    pub registry: String,
    #[command(flatten)]
    pub build: ReleaseBuildArgs,
    /// `json`: the release (tag, digest, reference) as one JSON document on stdout, progress on
    /// stderr.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// How a release is built and scanned.
#[derive(Args, Debug)]
pub struct ReleaseBuildArgs {
    /// Trivy's cache directory holding its vulnerability database (<dir>/db/trivy.db and
    /// metadata.json, as `trivy image --download-db-only --cache-dir DIR` leaves them). Without
    /// it, Trivy fetches its database into the cache (~/.cache/shipshape/trivy, again once older
    /// than --max-vuln-db-age) where its feed is reachable; an offline machine must give one. No
    /// database is never a pass.
    #[arg(long, env = "SHIPSHAPE_VULN_DB")]
    pub vuln_db: Option<std::path::PathBuf>,
    /// Refuse a vulnerability database built longer ago than this many days (a stale database
    /// passes what was published since).
    #[arg(long, env = "SHIPSHAPE_MAX_VULN_DB_AGE", default_value_t = crate::scan::MAX_AGE_DAYS, value_name = "DAYS")]
    pub max_vuln_db_age: u32,
    /// Release with uncommitted changes to what the image is built from (server/, Cargo.toml,
    /// Cargo.lock, .cargo/, deploy/image/): refused without it. The provenance then names
    /// another builder (xtask-release-uncommitted), which staging and prod do not trust.
    #[arg(long)]
    pub allow_dirty: bool,
}

/// A release in two halves, for CI: the build never holds the signing key, the signing job
/// builds nothing.
#[derive(Subcommand, Debug)]
pub enum ReleaseHalf {
    /// The first half, with no secret: build the image from this checkout and scan it (the same
    /// gate as `release`), then leave in --out the image archive (image.tar), its CycloneDX SBOM
    /// and the build record (record.json: tag, image ID, source, Cargo.lock digest, times): the
    /// workflow's artifact for the second half. Pushes and signs nothing.
    Build {
        /// Tag to release.
        #[arg(long, value_parser = image_tag)]
        tag: String,
        #[command(flatten)]
        build: ReleaseBuildArgs,
        /// Directory to leave the archive, SBOM and record in.
        #[arg(long)]
        out: std::path::PathBuf,
        /// `json`: the build record as one JSON document on stdout.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// The second half, building nothing: load the archive `release build` left in --from,
    /// refuse it unless it is the image its record names and this checkout is the commit it was
    /// built from, then push it, sign its digest and attest its SBOM and SLSA provenance (key
    /// and $COSIGN_PASSWORD as for `release`).
    Publish {
        /// The directory `release build --out` wrote.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Registry (and optional path prefix) to push to.
        #[arg(long, default_value = crate::cluster::registry::HOST)]
        registry: String,
        /// `json`: tag, digest and reference as one JSON document on stdout.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Values for this release on top of the environment's (deploy/envs/<env>.yaml), as helm takes
/// them: checked against the chart's schema before anything changes, and journaled. They apply
/// to the whole release (both tracks) from the flow's first revision on; keys the flow itself
/// manages (image.*, imageDigests, replicaCount in a canary, canary.*, blueGreen.*) are refused.
#[derive(Args, Debug, Clone, Default)]
pub struct ValueOverrides {
    /// A value typed as YAML types it, e.g. `--set resources.requests.cpu=500m`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    pub set: Vec<(String, String)>,
    /// A value kept as a string, e.g. `--set-string env.modelVersion=007`; repeatable.
    #[arg(long = "set-string", value_name = "KEY=VALUE", value_parser = key_value)]
    pub set_string: Vec<(String, String)>,
    /// A values file applied after the environment's; repeatable, the last one wins.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<std::path::PathBuf>,
}

/// `--output`: human lines, or one JSON document on stdout.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Human,
    Json,
}

/// `--watch`: a report repeated until Ctrl-C, for following a rollout or a canary.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct WatchArgs {
    /// Report again every --interval seconds until Ctrl-C. On a terminal the screen is redrawn
    /// (as `watch` does); otherwise each report follows the last, under a time stamp on stderr
    /// (with --output json, stdout is a stream of JSON documents). A round that fails (the API
    /// blinked) says why and the watch goes on.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between reports with --watch.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), requires = "watch")]
    pub interval: u64,
    /// With --watch, a CI gate (as `kubectl argo rollouts status --timeout`): stop as soon as the
    /// release settles, or after this long (90s, 5m), and exit with where it stands. `status`
    /// and `canary status`: 0 healthy (a canary at the approval gate too), 1 degraded (failed,
    /// aborted, interrupted), 3 paused (without evidence), 4 still changing at the timeout.
    /// `verify` and `doctor`: 0 once they pass, else their last exit code at the timeout.
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "watch")]
    pub timeout: Option<std::time::Duration>,
}

/// A duration as helm and kubectl take it: `90s`, `5m`, `1h`, `1m30s`.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let wrong = || format!("{text:?} is not a duration: a number and a unit (s, m or h), e.g. 90s, 5m, 1m30s");
    let (mut seconds, mut number, mut groups) = (0u64, String::new(), 0);
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            's' | 'm' | 'h' if !number.is_empty() => {
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                };
                seconds =
                    number.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)).and_then(|n| n.checked_add(seconds)).ok_or_else(wrong)?;
                number.clear();
                groups += 1;
            }
            _ => return Err(wrong()),
        }
    }
    if !number.is_empty() || groups == 0 || seconds == 0 {
        return Err(wrong());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// An image tag, checked where it enters (OCI's grammar): a tag like `v1;rm -rf /` is a usage
/// error before anything runs, so no journal entry and no advice ever carries it.
fn image_tag(text: &str) -> Result<String, String> {
    crate::image::check_tag(text).map(|()| text.to_owned()).map_err(|err| err.to_string())
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// What an image must prove before a command changes what runs.
#[derive(Args, Debug, Clone, Default)]
pub struct SignatureArgs {
    /// Public key to verify signatures and provenance with; repeat it for several (a rotation:
    /// the new key and the old). Default: the environment's supplyChain.publicKeys
    /// (deploy/keys/cosign.pub unless the values file says otherwise). Where the environment
    /// requires signatures, only its own keys are accepted.
    #[arg(long, env = "SHIPSHAPE_COSIGN_PUBLIC_KEY")]
    pub public_key: Vec<std::path::PathBuf>,
    /// Refuse an unsigned image even where the environment allows one (dev does; prod and
    /// staging require signatures: supplyChain.requireSignature in deploy/envs/).
    #[arg(long)]
    pub require_signature: bool,
    /// Deploy without checking the signature or provenance: said loudly, and journaled with who
    /// asked and --reason. Refused where the environment requires signatures
    /// (supplyChain.requireSignature), unless its values file allows break-glass
    /// (supplyChain.allowBreakGlass), and then only with --reason.
    #[arg(long, conflicts_with = "require_signature")]
    pub insecure_skip_signature: bool,
    /// Why the signature check is skipped (an incident number, what is broken): journaled.
    #[arg(long, requires = "insecure_skip_signature")]
    pub reason: Option<String>,
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
    /// Name the cluster's context in that kubeconfig (default: kind's `kind-<name>`), e.g. the
    /// context an environment's values name: `cluster up --name prod --context prod-cluster`.
    #[arg(long)]
    pub context: Option<String>,
}

/// `cluster down` options.
#[derive(Args, Debug, Clone)]
pub struct ClusterDown {
    #[command(flatten)]
    pub target: ClusterTarget,
    /// Also remove the local registry container and every image pushed to it (its volume).
    #[arg(long)]
    pub remove_registry: bool,
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
    /// Also install these into the cluster (each built from its Go module once, then cached),
    /// e.g. `--with external-secrets,prometheus`. Installing one already there updates it.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub with: Vec<AddOn>,
    /// Worker nodes beside the control plane, for production's shape (pods spread across nodes,
    /// a node drained under a canary). Used when the cluster is created; an existing cluster
    /// keeps its nodes.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub workers: u32,
}

/// What `cluster up --with` installs beside the cluster.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOn {
    /// The Sealed Secrets controller, in kube-system (for `rotate-secret --method sealed`).
    SealedSecrets,
    /// External Secrets Operator in external-secrets-system, and an example store: the
    /// ClusterSecretStore `shipshape-store` over the Secrets of namespace shipshape-store (for
    /// `rotate-secret --method external`).
    ExternalSecrets,
    /// A Prometheus server in namespace monitoring that scrapes every annotated pod (for
    /// `canary start --prometheus http://prometheus.monitoring.svc:9090`).
    Prometheus,
    /// kube-network-policies on every node, so the cluster enforces NetworkPolicies (staging's
    /// and prod's values turn the chart's on; without an enforcer they are accepted and
    /// ignored).
    NetworkPolicies,
    /// sigstore policy-controller in cosign-system: the cluster's API server refuses, in the
    /// namespaces `admission apply` opts in, any workload whose images the environment's
    /// supply-chain policy does not admit, whoever asks (kubectl, helm or shipshape).
    PolicyController,
    /// An MLflow tracking server in namespace mlflow, with MLflow's basic-auth app (its admin's
    /// password in Secret mlflow/mlflow-admin) and the shipped model registered as `iris`: the
    /// model registry staging's and prod's `modelUri` names (for `rotate-secret mlflow`).
    Mlflow,
}

/// Build the application images and push them to a registry the cluster pulls from.
#[derive(Args, Debug)]
pub struct Image {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Subcommand, Debug)]
pub enum ImageAction {
    /// Build shipshape/model-server:<tag> (release binary, its libraries and model, FROM scratch)
    /// and shipshape/postgres (Debian's PostgreSQL), push both, and print each as
    /// repository@sha256:... Then `cargo xtask deploy --tag <tag>` deploys exactly that digest.
    ///
    /// The default registry is the local one `cargo xtask up` runs beside the kind cluster
    /// (localhost:5001, started here if needed); `--registry HOST[/PREFIX]` pushes to your own
    /// (log in with `docker login HOST` first), for environments whose image.repository is there.
    Build {
        /// Tag for the model-server image.
        #[arg(long, default_value = crate::cluster::app_images::DEFAULT_TAG, value_parser = image_tag)]
        tag: String,
        /// Registry (and optional path prefix) to push to, e.g. registry.example.com/ml.
        #[arg(long, default_value = crate::cluster::registry::HOST)]
        registry: String,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn a_tag_outside_oci_s_grammar_is_a_usage_error_before_anything_runs() {
        let refused: [&[&str]; 5] = [
            &["xtask", "deploy", "--tag", "v1;rm -rf /"],
            &["xtask", "canary", "start", "--tag", "v1:latest"],
            &["xtask", "bluegreen", "start", "--tag", "v1 v2"],
            &["xtask", "rollback", "--to-tag", "$(id)"],
            &["xtask", "release", "--tag", ".hidden"],
        ];
        for args in refused {
            let err = Cli::try_parse_from(args).expect_err(args[args.len() - 1]);
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
            let tag = args[args.len() - 1];
            assert!(err.to_string().contains(&format!("{tag:?} is not an image tag")), "quoted: {err}");
        }
        Cli::try_parse_from(["xtask", "deploy", "--tag", "v1.2.3-rc_1"]).expect("a tag in the grammar");
    }

    #[test]
    fn the_flags_people_bring_from_kubectl_and_helm_are_there() {
        let parsed = Cli::try_parse_from([
            "xtask",
            "deploy",
            "-n",
            "ml",
            "--context",
            "prod-cluster",
            "--tag",
            "v1",
            "--timeout",
            "90s",
            "-o",
            "json",
        ]);
        let super::Command::Deploy(deploy) = parsed.expect("kubectl's and helm's flags").command else { panic!("not deploy") };
        assert_eq!((deploy.target.namespace.as_deref(), deploy.target.context.as_deref()), (Some("ml"), Some("prod-cluster")));
        assert_eq!((deploy.timeout.as_secs(), deploy.output), (90, super::Output::Json));
        for args in [
            &["xtask", "status", "-n", "ml", "-o", "json"][..],
            &["xtask", "canary", "abort", "-n", "ml", "-o", "json", "--timeout", "2m"],
            &["xtask", "admission", "apply", "--env", "prod", "-n", "ml", "--context", "prod-cluster", "-o", "json"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
        }
    }

    #[test]
    fn durations_are_read_as_helm_writes_them() {
        let secs = |text: &str| super::duration(text).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("1m30s"), Ok(90));
        for wrong in ["", "5", "m", "5x", "-5m", "0s", "1.5m", "99999999999999999999h"] {
            let said = super::duration(wrong).expect_err(wrong);
            assert!(said.contains("is not a duration"), "{said}");
        }
    }
}
