//! Benchmark: `cargo xtask verify` against the runbook's own verification script
//! (tests/bench/post_deploy_verify.sh, adapted only to reach pods through the API server) on the
//! same deployment. Prints the times and the ratio; asserts nothing about time.
//!
//!   cargo bench -p shipshape-tests --bench verify            # a new throwaway cluster
//!   SHIPSHAPE_E2E_CLUSTER=shipshape cargo bench -p shipshape-tests --bench verify
//!
//! Needs the pinned kubectl, which is built with the node image (`cargo xtask cluster image`).
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xtask::cli::{Env, TargetArgs};
use xtask::cluster::{app_images, docker::Docker, registry};
use xtask::flows::{deploy, verify, Flow};

const RUNS: usize = 10;

fn main() {
    let cluster = support::TestCluster::create_or_reuse("bench");
    let kubeconfig = cluster.cluster.kubeconfig.clone();
    let sh = xtask::repo_shell().unwrap();
    let docker = Docker::connect(&sh).unwrap();
    let image = app_images::build_model_server(&sh, &docker).unwrap();
    app_images::push(&docker, &image, registry::HOST).unwrap();
    app_images::push(&docker, &app_images::build_postgres(&sh, &docker).unwrap(), registry::HOST).unwrap();
    let namespace = "bench-verify";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(xtask::up::provision(&kubeconfig, namespace)).unwrap();
    let args = TargetArgs { env: Env::Dev, namespace: Some(namespace.to_owned()), kubeconfig: Some(kubeconfig.clone()) };
    let flow = Flow::connect(&sh, &args).unwrap();
    deploy::deploy(&flow, image.rsplit_once(':').unwrap().1, false).unwrap();

    let kubectl = xtask::cluster::node_image::built_kubectl().unwrap().expect("the pinned kubectl: cargo xtask cluster image builds it");
    let script = xtask::repo_root().join("tests/bench/post_deploy_verify.sh");
    let quiet = |mut command: Command| {
        command.env("KUBECONFIG", &kubeconfig).env("KUBECTL", &kubectl).stdout(Stdio::null()).stderr(Stdio::null());
        move || assert!(command.status().unwrap().success(), "{command:?} failed")
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command.current_dir(xtask::repo_root()).args(["xtask", "verify", "--namespace", namespace]);
    let mut cargo_xtask = quiet(command);
    cargo_xtask(); // builds the binary once, outside the measurement
    let mut command = Command::new(xtask::repo_root().join("target/debug/xtask"));
    command.args(["verify", "--namespace", namespace]);
    let mut xtask_binary = quiet(command);
    let mut command = Command::new("bash");
    command.arg(&script).arg(namespace);
    let mut runbook_script = quiet(command);

    let script_times = measure(&mut runbook_script);
    let command_times = measure(&mut cargo_xtask);
    let binary_times = measure(&mut xtask_binary);
    let in_process = measure(&mut || assert_eq!(verify::verify(&flow).unwrap().outcome, xtask::report::Outcome::Pass));

    println!("verify benchmark, {RUNS} runs each, same deployment (namespace {namespace}):");
    report("runbook script (kubectl)", &script_times, None);
    report("cargo xtask verify", &command_times, Some(&script_times));
    report("xtask binary (no cargo)", &binary_times, Some(&script_times));
    report("verify() in process", &in_process, Some(&script_times));
    let _ = runtime.block_on(async {
        let client = xtask::k8s::client(&kubeconfig).await?;
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client).delete(namespace, &Default::default()).await?;
        anyhow::Ok(())
    });
}

fn measure(run: &mut dyn FnMut()) -> Vec<Duration> {
    run(); // warm: connections, page cache
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .collect()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(what: &str, times: &[Duration], baseline: Option<&[Duration]>) {
    let min = times.iter().min().unwrap();
    let ratio = baseline.map(|b| format!("  {:.1}x faster than the script", median(b).as_secs_f64() / median(times).as_secs_f64()));
    println!(
        "  {what:<28} median {:>7.1} ms  min {:>7.1} ms{}",
        median(times).as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        ratio.unwrap_or_default()
    );
}
