//! HTTP to a Service through the API server's service proxy: works from anywhere the API server
//! is reachable, with no port-forward and no guessing of node ports.
use anyhow::{Context, Result};

pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET http://<service>.<namespace>:<port><path>` via the API server.
pub async fn get(client: &kube::Client, namespace: &str, service: &str, port: &str, path: &str) -> Result<Answer> {
    let uri = format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}");
    let request = http::Request::get(&uri).body(Vec::new()).context("building the proxy request")?;
    let response = client.send(request.map(kube::client::Body::from)).await.with_context(|| format!("GET {uri}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.with_context(|| format!("reading the answer to GET {uri}"))?;
    Ok(Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() })
}
