//! `cargo xtask bench`: measures where people wait, on this machine, and writes the table into
//! docs/benchmarks.md. A measurement, never a test: nothing here asserts a time.
//!
//! - verify: the runbook's own script (tests/bench/post_deploy_verify.sh) against `cargo xtask
//!   verify` through cargo, the debug binary and the release binary, on the same deployment at
//!   1 pod and at 10 (prod's replica count). Runs alternate, in a rotating order, so a slow
//!   moment of the machine falls on every contender alike.
//! - cluster start: `cluster up` of a new cluster, node image cached, to ready.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::chart::Env;
use crate::cluster::lifecycle::{ClusterTarget, ClusterUp};
use crate::cluster::{app_images, docker::Docker, lifecycle, node_image, registry};
use crate::flows::{self, deploy, Flow, Overrides, Target};

const BENCH_NAMESPACE: &str = "shipshape-bench";
const START_CLUSTER: &str = "shipshape-bench-start";
const TABLE_BEGIN: &str = "<!-- cargo xtask bench: begin -->";
const TABLE_END: &str = "<!-- cargo xtask bench: end -->";

/// One measured row: what, its times, and the baseline it is compared with.
struct Row {
    what: String,
    times: Vec<Duration>,
    baseline: Option<usize>,
}

/// What `cargo xtask bench` is asked.
pub struct BenchOptions {
    pub runs: usize,
    pub cluster_starts: usize,
    pub skip_verify: bool,
    pub cluster: String,
    pub no_write: bool,
}

impl BenchOptions {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let mut rows: Vec<Row> = Vec::new();
        if !self.skip_verify {
            let cluster = lifecycle::up(
                sh,
                &ClusterUp {
                    target: ClusterTarget { name: self.cluster.clone(), kubeconfig: None, context: None },
                    keep: false,
                    with: Vec::new(),
                    ..Default::default()
                },
            )?;
            bench_verify(sh, &cluster.kubeconfig, self.runs, &mut rows)?;
        }
        if self.cluster_starts > 0 {
            bench_cluster_start(sh, self.cluster_starts, &mut rows)?;
        }
        let table = table(&rows);
        println!("\n{table}");
        if self.no_write {
            return Ok(());
        }
        let path = crate::repo_root().join("docs/benchmarks.md");
        write_between_markers(&path, &table)?;
        println!("wrote the table into {}", path.display());
        Ok(())
    }
}

/// The four ways to verify, each a command run to completion with its output discarded.
fn bench_verify(sh: &Shell, kubeconfig: &Path, runs: usize, rows: &mut Vec<Row>) -> Result<()> {
    let docker = Docker::connect(sh)?;
    let pushed = app_images::push(&docker, &app_images::build_model_server(sh, &docker)?, registry::HOST)?;
    app_images::push(&docker, &app_images::build_postgres(sh, &docker)?, registry::HOST)?;
    let api = crate::k8s::Connection::open(crate::k8s::ClusterAccess::current(kubeconfig))?;
    api.run(crate::up::provision(api.client(), BENCH_NAMESPACE))?;
    let pinned_kubectl =
        node_image::built_kubectl()?.context("the pinned kubectl is built with the node image: run `cargo xtask cluster image`")?;
    println!("building the release binary of xtask (what CI can build once and call): cargo build --release -p xtask");
    crate::cargo::command(sh, ["build", "--quiet", "--release", "--locked", "-p", "xtask"]).run().context("building the release binary")?;
    // This binary is <target>/debug/xtask (CARGO_TARGET_DIR may move <target>).
    let this = std::env::current_exe()?;
    let target_dir = this.parent().and_then(Path::parent).context("where is the target directory?")?.to_owned();
    let script = crate::repo_root().join("tests/bench/post_deploy_verify.sh");

    for pods in [1, 10] {
        let target = Target::new(Env::Dev, Some(BENCH_NAMESPACE.to_owned()), Some(kubeconfig), None)?;
        let flow = Flow::connect(sh, target)?;
        let replicas = Overrides { set: vec![("replicaCount".to_owned(), pods.to_string())], ..Default::default() };
        flow.set_overrides(&replicas, flows::DEPLOY_MANAGED_VALUES)?;
        println!("deploying {} at {pods} pods in {BENCH_NAMESPACE}", pushed.pinned().tag);
        deploy::deploy(&flow, &pushed.pinned().tag, false)?;

        let verify = |program: &Path| Contender::new(program, ["verify", "--namespace", BENCH_NAMESPACE]);
        let function = crate::tools::xtask_function(&crate::repo_root(), &target_dir.join("debug/xtask"));
        let suffix = format!("{pods} pod{}", plural(pods));
        let contenders = [
            (
                format!("runbook script (kubectl), {suffix}"),
                Contender::new(Path::new("bash"), [script.as_os_str(), BENCH_NAMESPACE.as_ref()]).with_env("KUBECTL", &pinned_kubectl),
            ),
            (
                format!("cargo xtask verify, {suffix}"),
                Contender::new(Path::new(&crate::cargo::program()), ["xtask", "verify", "--namespace", BENCH_NAMESPACE]),
            ),
            (
                format!("`xtask` of `cargo xtask env`, {suffix}"),
                Contender::new(Path::new("bash"), ["-c".to_owned(), format!("{function}xtask verify --namespace {BENCH_NAMESPACE}")]),
            ),
            (format!("debug binary, {suffix}"), verify(&target_dir.join("debug/xtask"))),
            (format!("release binary, {suffix}"), verify(&target_dir.join("release/xtask"))),
        ];
        let times = alternate(sh, &contenders, kubeconfig, runs)?;
        let baseline = rows.len();
        for (i, ((what, _), times)) in contenders.into_iter().zip(times).enumerate() {
            rows.push(Row { what, times, baseline: (i > 0).then_some(baseline) });
        }
    }
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(api.client().clone());
    let _ = api.run(namespaces.delete(BENCH_NAMESPACE, &Default::default()));
    Ok(())
}

/// A command to time: run to completion, its output discarded.
struct Contender {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Contender {
    fn new<A: AsRef<std::ffi::OsStr>>(program: &Path, args: impl IntoIterator<Item = A>) -> Contender {
        Contender { program: program.into(), args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(), env: Vec::new() }
    }

    fn with_env(mut self, key: &str, value: &Path) -> Contender {
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

/// Runs every contender `runs` times (plus one warm-up each), round by round, each round
/// starting one contender later than the last. Every one sees the same KUBECONFIG.
fn alternate(sh: &Shell, contenders: &[(String, Contender)], kubeconfig: &Path, runs: usize) -> Result<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::with_capacity(runs); contenders.len()];
    for round in 0..=runs {
        print!("\r  round {round}/{runs}");
        std::io::Write::flush(&mut std::io::stdout())?;
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            let (what, Contender { program, args, env }) = &contenders[i];
            // As from an engineer's shell: without the variables cargo set for this process.
            let command = crate::cargo::without_running_crate(cmd!(sh, "{program} {args...}"))
                .env("KUBECONFIG", kubeconfig)
                .envs(env.iter().cloned());
            let started = Instant::now();
            let finished = command.quiet().ignore_stdout().ignore_stderr().run();
            let elapsed = started.elapsed();
            finished.with_context(|| format!("{what} failed: run it by hand to see why"))?;
            if round > 0 {
                times[i].push(elapsed);
            }
        }
    }
    println!();
    Ok(times)
}

/// `cluster up` of a new cluster, `starts` times, each deleted after.
fn bench_cluster_start(sh: &Shell, starts: usize, rows: &mut Vec<Row>) -> Result<()> {
    let target = ClusterTarget { name: START_CLUSTER.to_owned(), kubeconfig: None, context: None };
    lifecycle::down(sh, &target)?;
    let mut times = Vec::new();
    for run in 1..=starts {
        println!("cluster start {run}/{starts}: cargo xtask cluster up --name {START_CLUSTER}");
        let started = Instant::now();
        let up = lifecycle::up(
            sh,
            &ClusterUp {
                target: ClusterTarget { name: START_CLUSTER.to_owned(), kubeconfig: None, context: None },
                keep: false,
                with: Vec::new(),
                ..Default::default()
            },
        );
        let elapsed = started.elapsed();
        lifecycle::down(sh, &target)?;
        up?;
        times.push(elapsed);
    }
    rows.push(Row { what: "new cluster to ready, node image cached (`cluster up`)".to_owned(), times, baseline: None });
    Ok(())
}

/// The Markdown table: min, median and max, and the ratio of medians to the row's baseline.
fn table(rows: &[Row]) -> String {
    let date = crate::journal::now();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut out = format!(
        "Measured by `cargo xtask bench` on {}, {cores} cores, {date}.\n\n\
         | what | runs | min | median | max | vs baseline (medians) |\n| --- | --- | --- | --- | --- | --- |\n",
        std::env::consts::OS
    );
    for row in rows {
        let ratio = row
            .baseline
            .map(|b| format!("**{:.1}x** faster", median(&rows[b].times) / median(&row.times)))
            .unwrap_or_else(|| "baseline".to_owned());
        let ratio = if row.baseline.is_none() && !row.what.contains("script") { String::new() } else { ratio };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {ratio} |\n",
            row.what,
            row.times.len(),
            show(row.times.iter().copied().min().unwrap_or_default()),
            show(Duration::from_secs_f64(median(&row.times))),
            show(row.times.iter().copied().max().unwrap_or_default()),
        ));
    }
    out
}

fn median(times: &[Duration]) -> f64 {
    let mut sorted: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn show(time: Duration) -> String {
    if time >= Duration::from_secs(10) {
        format!("{:.1} s", time.as_secs_f64())
    } else {
        format!("{:.0} ms", time.as_secs_f64() * 1e3)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Replaces what lies between the bench markers in `path`, keeping the hand-written rest.
fn write_between_markers(path: &PathBuf, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(TABLE_BEGIN), text.find(TABLE_END)) else {
        bail!("{} has no `{TABLE_BEGIN}` ... `{TABLE_END}` markers to write between", path.display());
    };
    let updated = format!("{}{TABLE_BEGIN}\n{table}{}", &text[..begin], &text[end..]);
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}
