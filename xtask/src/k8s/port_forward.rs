//! HTTP to a Service's pod through a port-forward (the API server's `portforward` subresource),
//! for a server that authenticates its callers with an `Authorization` header of its own
//! (MLflow's basic-auth app): the API server's proxy (`proxy.rs`) authenticates the caller with
//! that header and strips it before forwarding (kubernetes/kubernetes#38775).
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use super::proxy::Answer;

/// One request; headers are sent as given (a credential travels in the request, never on a
/// command line, and is never printed).
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query, e.g. `/api/2.0/mlflow/users/create`.
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request { method: "GET", path, headers: Vec::new(), body: Vec::new() }
    }

    /// A JSON body (MLflow's REST API).
    pub fn json(method: &'a str, path: &'a str, body: &serde_json::Value) -> Request<'a> {
        Request { method, path, headers: vec![("content-type", "application/json".to_owned())], body: body.to_string().into_bytes() }
    }

    pub fn header(mut self, name: &'a str, value: String) -> Request<'a> {
        self.headers.push((name, value));
        self
    }
}

/// How long one exchange may take, connection included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` to port `port` of Service `service` in `namespace`, through one of its ready
/// pods.
pub async fn send(client: &kube::Client, namespace: &str, service: &str, port: u16, request: &Request<'_>) -> Result<Answer> {
    let (pod, pod_port) = ready_pod_behind(client, namespace, service, port).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let shown = format!("{} {} on {namespace}/{pod}:{pod_port} (port-forward)", request.method, request.path);
    let exchange = async {
        let mut forwarder = pods.portforward(&pod, &[pod_port]).await.with_context(|| format!("port-forward to {namespace}/{pod}"))?;
        let mut stream = forwarder.take_stream(pod_port).context("the port-forward gave no stream")?;
        stream.write_all(&http_1_0(service, request)).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        drop(stream);
        forwarder.join().await.ok();
        parse_answer(&raw)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{shown}: no answer within {EXCHANGE_TIMEOUT:?}"))?
        .context(shown)
}

/// A ready pod behind the Service and the pod's port for the Service's `port`.
async fn ready_pod_behind(client: &kube::Client, namespace: &str, service: &str, port: u16) -> Result<(String, u16)> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = services.get_opt(service).await?.with_context(|| format!("no Service {service} in namespace {namespace}"))?;
    let spec = svc.spec.unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        bail!("Service {namespace}/{service} selects no pods (no selector): nothing to forward to");
    }
    let target = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.port == i32::from(port))
        .with_context(|| format!("Service {namespace}/{service} has no port {port}"))?
        .target_port;
    let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let ready = super::pods::ready_matching(client, namespace, &selector.join(",")).await?;
    let pod =
        ready.first().with_context(|| format!("Service {namespace}/{service} has no ready pod: `kubectl get pods -n {namespace}`"))?;
    let pod_port = match target {
        None => port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(number)) => number as u16,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) => super::pods::named_port(pod, &name, port),
    };
    Ok((pod.metadata.name.clone().unwrap_or_default(), pod_port))
}

/// HTTP/1.0: the server closes the connection after its answer and sends no chunked body, so
/// the answer is everything read until the stream ends.
fn http_1_0(host: &str, request: &Request) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.0\r\nhost: {host}\r\ncontent-length: {}\r\n", request.method, request.path, request.body.len());
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    bytes
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) =
        text.split_once("\r\n\r\n").with_context(|| format!("not an HTTP answer: {:?}", text.chars().take(80).collect::<String>()))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
    Ok(Answer { status, body: body.to_owned() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_is_http_1_0_with_its_length_and_an_answer_is_read_to_its_end() {
        let request = super::Request::json("POST", "/api/2.0/mlflow/users/create", &serde_json::json!({"username": "u"}))
            .header("authorization", "Basic dTpw".to_owned());
        let sent = String::from_utf8(super::http_1_0("mlflow", &request)).unwrap();
        assert_eq!(
            sent,
            "POST /api/2.0/mlflow/users/create HTTP/1.0\r\nhost: mlflow\r\ncontent-length: 16\r\ncontent-type: application/json\r\n\
             authorization: Basic dTpw\r\n\r\n{\"username\":\"u\"}"
        );
        let answer =
            super::parse_answer(b"HTTP/1.1 401 UNAUTHORIZED\r\ncontent-type: text/plain\r\n\r\nYou are not authenticated.").unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (401, "You are not authenticated."));
        assert!(super::parse_answer(b"garbage").is_err());
    }
}
