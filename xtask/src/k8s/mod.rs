//! Kubernetes API work, through kube-rs (never kubectl subprocesses): clients, waits with
//! timeouts and progress, HTTP to Services through the API server.
mod connection;
pub mod external_secrets;
pub mod lease;
pub mod pods;
pub mod port_forward;
pub mod proxy;
pub mod secrets;
pub mod wait;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use connection::Connection;

/// Which cluster: a kubeconfig file and a context in it (None: its current context). helm and
/// every client take both, so the context a command prints is the one every call uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAccess {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
}

impl ClusterAccess {
    /// The kubeconfig's current context.
    pub fn current(kubeconfig: &Path) -> ClusterAccess {
        ClusterAccess { kubeconfig: kubeconfig.to_path_buf(), context: None }
    }

    /// `--kubeconfig FILE [--kube-context NAME]`, as helm takes them.
    pub fn helm_args(&self) -> Vec<String> {
        let mut args = vec!["--kubeconfig".to_owned(), self.kubeconfig.display().to_string()];
        if let Some(context) = &self.context {
            args.extend(["--kube-context".to_owned(), context.clone()]);
        }
        args
    }

    /// The context this names, in words: `context prod-cluster` or `current context`.
    pub fn context_in_words(&self) -> String {
        match &self.context {
            Some(context) => format!("context {context}"),
            None => "its current context".to_owned(),
        }
    }
}

/// A client for one context of a kubeconfig. It retries the API server's 429/503/504 answers
/// with backoff, as kube-rs does by default. Commands reach it through [`Connection`].
pub async fn client_for(access: &ClusterAccess) -> Result<kube::Client> {
    kube::Client::try_from(config(access).await?).context("creating the Kubernetes client")
}

/// The API server a context points at, for the line every command prints first.
pub async fn server_of(access: &ClusterAccess) -> Result<String> {
    Ok(config(access).await?.cluster_url.to_string())
}

/// Creates namespace `name` unless it exists (server-side apply: an existing one is left as it is).
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))?;
    kube::Api::<Namespace>::all(client.clone())
        .patch(name, &kube::api::PatchParams::apply("shipshape").force(), &kube::api::Patch::Apply(&namespace))
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Server-side applies every CustomResourceDefinition of a multi-document YAML bundle (an
/// operator's), then waits until the API server serves them all.
pub async fn apply_crds(client: &kube::Client, bundle: &str) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(bundle).context("reading the CRD bundle")?;
    let api = kube::Api::<CustomResourceDefinition>::all(client.clone());
    let apply = kube::api::PatchParams::apply("shipshape").force();
    let mut names = Vec::new();
    for crd in &crds {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        api.patch(&name, &apply, &kube::api::Patch::Apply(crd)).await.with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    let config = kube::runtime::watcher::Config::default();
    let wanted = names.len();
    wait::until(api, config, &format!("{wanted} CRDs established"), std::time::Duration::from_secs(60), |found| {
        let established = found
            .iter()
            .filter(|crd| names.contains(crd.metadata.name.as_ref().unwrap_or(&String::new())))
            .filter(|crd| {
                let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            })
            .count();
        if established == wanted {
            wait::Progress::Done(format!("{established} established"))
        } else {
            wait::Progress::Waiting("not all established yet".to_owned())
        }
    })
    .await
    .map(drop)
}

/// A client for HTTP to pods through the API server's proxy (verify, analysis, smoke tests).
///
/// It speaks HTTP/2 when the API server offers it (every API server does): checks ask every pod
/// at once, and over HTTP/1.1 each concurrent request is its own connection and TLS handshake
/// (measured, 40 pod requests through the proxy: 180 ms over HTTP/1.1 connections, 40 ms over
/// one HTTP/2 connection). kube-rs's default client offers HTTP/1.1 only, so this one is built
/// from kube's own parts: its TLS settings, base URI, auth and header layers.
///
/// It never retries: a pod's 503 (e.g. /health/db with the database down) is the answer a
/// check wants, and kube-rs's default retry would repeat it with backoff until the caller's
/// timeout.
pub async fn pod_client(access: &ClusterAccess) -> Result<kube::Client> {
    use kube::client::ConfigExt;
    let config = config(access).await?;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config().context("the kubeconfig's TLS settings")?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls_pki_types::ServerName::try_from(name.clone()).context("the kubeconfig's tls-server-name")?;
        builder = builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = builder.enable_http1().enable_http2().wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new()).build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().context("the kubeconfig's credentials")?)
        .layer(config.extra_headers_layer().context("the kubeconfig's headers")?)
        .map_err(|err| -> Box<dyn std::error::Error + Send + Sync> { Box::new(err) })
        .service(client);
    let client = kube::Client::new(service, config.default_namespace);
    // One request first, so the pool holds the HTTP/2 connection before checks ask every pod at
    // once: until a connection has negotiated its protocol, each concurrent request would open
    // its own. Best effort: an unreachable cluster is reported by the command's first real call.
    let _ = client.apiserver_version().await;
    Ok(client)
}

async fn config(access: &ClusterAccess) -> Result<kube::Config> {
    let path = &access.kubeconfig;
    let file = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    if let Some(context) = &access.context {
        if !file.contexts.iter().any(|c| &c.name == context) {
            let known: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "kubeconfig {} has no context {context} (it has: {}): point --kubeconfig or KUBECONFIG at the file that \
                 reaches that cluster",
                path.display(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            );
        }
    }
    let options = KubeConfigOptions { context: access.context.clone(), ..Default::default() };
    kube::Config::from_custom_kubeconfig(file, &options).await.with_context(|| format!("using kubeconfig {}", path.display()))
}

/// A kube error in words for people: the API server's code, reason and message, not a Debug
/// dump of its Status.
pub fn in_words(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("the API server answered {} {}: {}", status.code, status.reason, status.message),
        other => other.to_string(),
    }
}
