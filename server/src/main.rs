//! `model-server [serve]` runs the service; `model-server probe URL...` is the smoke-test
//! client the same image runs as a `helm test` hook (no curl in a minimal image).
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "model-server", version, about = "The ML model service the shipshape runbooks deploy")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (default). Configured by environment: PORT, METRICS_PORT, MODEL_URI,
    /// ADMIN_API_TOKEN, DATABASE_URL, MODEL_AUTO_REFRESH_SECONDS, APP_VERSION,
    /// MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, FAULT_* (tests only).
    Serve,
    /// GET each URL; exit non-zero unless every one answers 2xx. Prints each answer.
    Probe {
        #[arg(required = true)]
        urls: Vec<String>,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// Keep retrying a URL that fails for up to this many seconds (0: one attempt). A new
        /// Service needs a moment before every node routes to it; each retry is printed.
        #[arg(long, default_value_t = 0)]
        retry_for: u64,
    },
    /// Send steady traffic (POST /v1/predict bodies) to URL until stopped, counting every
    /// outcome by the version that answered; GET /stats on --listen reports the counts.
    Load {
        url: String,
        /// Requests per second.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Where to serve GET /stats.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// Seconds one request may take before it counts as failed.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    model_server::log::init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = model_server::Config::from_env()?;
            let server = model_server::start(config).await?;
            shutdown_signal().await;
            tracing::info!("model-server stopping");
            server.shutdown();
            Ok(())
        }
        Command::Load { url, rate, listen, timeout } => model_server::load::run(url, rate, listen, Duration::from_secs(timeout)).await,
        Command::Probe { urls, timeout, retry_for } => {
            let mut failed = 0;
            for url in &urls {
                if !probe(url, Duration::from_secs(timeout), Duration::from_secs(retry_for)).await {
                    failed += 1;
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} probes failed", urls.len());
            Ok(())
        }
    }
}

/// One URL: `ok` on a 2xx answer, retried every second for up to `retry_for`.
async fn probe(url: &str, timeout: Duration, retry_for: Duration) -> bool {
    let deadline = std::time::Instant::now() + retry_for;
    loop {
        let outcome = match model_server::client::get(url, &[], timeout).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                println!("ok   {url} {} {}", answer.status, answer.body.trim());
                return true;
            }
            Ok(answer) => format!("{} {}", answer.status, answer.body.trim()),
            Err(err) => format!("{err:#}"),
        };
        if std::time::Instant::now() >= deadline {
            println!("FAIL {url} {outcome}");
            return false;
        }
        println!("retry {url} {outcome}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
