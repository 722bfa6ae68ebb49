//! HTTP to Services and pods through the API server's proxy: works from anywhere the API server
//! is reachable, with no port-forward, no exec and no curl in the image.
use anyhow::{Context, Result};

pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET http://<service>.<namespace>:<port><path>` via the API server.
pub async fn get(client: &kube::Client, namespace: &str, service: &str, port: &str, path: &str) -> Result<Answer> {
    send(client, http::Request::get(format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}")), None).await
}

/// `GET http://<pod>:<port><path>` via the API server: one pod, not whichever the Service picks.
pub async fn get_pod(client: &kube::Client, namespace: &str, pod: &str, port: u16, path: &str) -> Result<Answer> {
    send(client, http::Request::get(format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}")), None).await
}

/// `GET <path>` of a node's kubelet (e.g. `/metrics/resource`) via the API server's node proxy.
pub async fn get_node(client: &kube::Client, node: &str, path: &str) -> Result<Answer> {
    send(client, http::Request::get(format!("/api/v1/nodes/{node}/proxy{path}")), None).await
}

/// `POST http://<pod>:<port><path>` with one header (e.g. a token: it travels in the request to
/// the API server, never on a command line).
pub async fn post_pod(client: &kube::Client, namespace: &str, pod: &str, port: u16, path: &str, header: (&str, &str)) -> Result<Answer> {
    let request = http::Request::post(format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"));
    send(client, request, Some(header)).await
}

/// `POST http://<pod>:<port><path>` with a JSON body (a prediction request).
pub async fn post_pod_json(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
    body: &serde_json::Value,
) -> Result<Answer> {
    let request = http::Request::post(format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"));
    send_body(client, request, Some(("content-type", "application/json")), serde_json::to_vec(body)?).await
}

async fn send(client: &kube::Client, request: http::request::Builder, header: Option<(&str, &str)>) -> Result<Answer> {
    send_body(client, request, header, Vec::new()).await
}

async fn send_body(
    client: &kube::Client,
    mut request: http::request::Builder,
    header: Option<(&str, &str)>,
    body: Vec<u8>,
) -> Result<Answer> {
    let shown = format!(
        "{} {}",
        request.method_ref().map(|m| m.as_str()).unwrap_or("?"),
        request.uri_ref().map(|u| u.to_string()).unwrap_or_default()
    );
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let request = request.body(body).context("building the proxy request")?;
    let response = client.send(request.map(kube::client::Body::from)).await.with_context(|| shown.clone())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.with_context(|| format!("reading the answer to {shown}"))?;
    Ok(Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() })
}
