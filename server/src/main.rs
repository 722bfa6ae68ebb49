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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = model_server::Config::from_env()?;
            let server = model_server::start(config).await?;
            shutdown_signal().await;
            model_server::log::info("model-server stopping", &[]);
            server.shutdown();
            Ok(())
        }
        Command::Probe { urls, timeout } => {
            let mut failed = 0;
            for url in &urls {
                match model_server::client::get(url, &[], Duration::from_secs(timeout)).await {
                    Ok(answer) if (200..300).contains(&answer.status) => println!("ok   {url} {} {}", answer.status, answer.body.trim()),
                    Ok(answer) => {
                        failed += 1;
                        println!("FAIL {url} {} {}", answer.status, answer.body.trim());
                    }
                    Err(err) => {
                        failed += 1;
                        println!("FAIL {url} {err:#}");
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} probes failed", urls.len());
            Ok(())
        }
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
