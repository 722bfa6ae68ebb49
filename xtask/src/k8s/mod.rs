//! Kubernetes API work, through kube-rs (never kubectl subprocesses): clients, waits with
//! timeouts and progress, HTTP to Services through the API server.
pub mod lease;
pub mod proxy;
pub mod secrets;
pub mod wait;

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the cluster a kubeconfig file describes (its current context).
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let file = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

/// One multi-threaded runtime for the synchronous commands that need the API. xshell is
/// synchronous, so commands stay plain functions and enter async only here.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("starting the tokio runtime").block_on(future)
}
