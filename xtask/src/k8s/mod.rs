//! Kubernetes API work, through kube-rs (never kubectl subprocesses): clients, waits with
//! timeouts and progress, HTTP to Services through the API server.
pub mod lease;
pub mod proxy;
pub mod secrets;
pub mod wait;

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the cluster a kubeconfig file describes (its current context). It retries the
/// API server's 429/503/504 answers with backoff, as kube-rs does by default.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    kube::Client::try_from(config(kubeconfig).await?).context("creating the Kubernetes client")
}

/// A client for HTTP to pods through the API server's proxy. It never retries: a pod's 503
/// (e.g. /health/db with the database down) is the answer a check wants, and kube-rs's default
/// retry would repeat it with backoff until the caller's timeout.
pub async fn pod_client(kubeconfig: &Path) -> Result<kube::Client> {
    let mut config = config(kubeconfig).await?;
    config.default_retry = false;
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

async fn config(kubeconfig: &Path) -> Result<kube::Config> {
    let file = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", kubeconfig.display()))
}

/// One multi-threaded runtime for the synchronous commands that need the API. xshell is
/// synchronous, so commands stay plain functions and enter async only here.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("starting the tokio runtime").block_on(future)
}

/// A kube error in words for people: the API server's code, reason and message, not a Debug
/// dump of its Status.
pub fn in_words(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("the API server answered {} {}: {}", status.code, status.reason, status.message),
        other => other.to_string(),
    }
}
