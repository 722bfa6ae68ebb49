//! HTTP to Services and pods through the API server's proxy: works from anywhere the API server
//! is reachable, with no port-forward, no exec and no curl in the image.
use anyhow::{Context, Result};

pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body in words: when the API server answered for the target (a Service with no ready
    /// endpoint, a pod gone: a `Status` object), its message, not the raw JSON.
    pub fn in_words(&self) -> String {
        let status: Option<serde_json::Value> = serde_json::from_str(&self.body).ok();
        match status.as_ref().filter(|s| s["kind"] == "Status").and_then(|s| s["message"].as_str()) {
            Some(message) => format!("the API server says: {message}"),
            None => self.body.trim().to_owned(),
        }
    }
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

/// How long a pod (a Service, a kubelet) may take to answer one request through the proxy. The
/// runbooks' endpoints answer in milliseconds; a Ready pod that hangs would otherwise hold a
/// flow's step (and the release's Lease) forever, renewing it all the while.
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

async fn send(client: &kube::Client, request: http::request::Builder, header: Option<(&str, &str)>) -> Result<Answer> {
    send_body(client, request, header, Vec::new()).await
}

async fn send_body(client: &kube::Client, request: http::request::Builder, header: Option<(&str, &str)>, body: Vec<u8>) -> Result<Answer> {
    send_within(ANSWER_TIMEOUT, client, request, header, body).await
}

async fn send_within(
    timeout: std::time::Duration,
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
    let answered = tokio::time::timeout(timeout, async {
        let response = client.send(request.map(kube::client::Body::from)).await.with_context(|| shown.clone())?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect_bytes().await.with_context(|| format!("reading the answer to {shown}"))?;
        anyhow::Ok(Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() })
    })
    .await;
    match answered {
        Ok(answer) => answer,
        Err(_) => anyhow::bail!("no answer to {shown} within {} s: it hangs (`cargo xtask doctor` shows the pod)", timeout.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_api_server_status_is_said_in_its_words_and_a_body_as_it_is() {
        let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no endpoints available for service \"prometheus\"","reason":"ServiceUnavailable","code":503}"#;
        let answer = super::Answer { status: 503, body: status.to_owned() };
        assert_eq!(answer.in_words(), r#"the API server says: no endpoints available for service "prometheus""#);
        assert_eq!(super::Answer { status: 500, body: "boom\n".to_owned() }.in_words(), "boom");
    }

    /// A pod that never answers: the request fails, naming the pod and the path, instead of
    /// holding its caller forever.
    #[test]
    fn a_pod_that_never_answers_fails_the_request_naming_it() {
        #[allow(clippy::disallowed_methods)] // a runtime for the mock API server, as kube-rs tests its client
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let said = runtime.block_on(async {
            let (service, _handle) = tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
            let client = kube::Client::new(service, "ns");
            let request = http::Request::get("/api/v1/namespaces/ns/pods/model-server-abc:8000/proxy/health/db");
            let hung = super::send_within(std::time::Duration::from_millis(50), &client, request, None, Vec::new()).await;
            format!("{:#}", hung.err().expect("a hung pod is an error"))
        });
        assert!(said.contains("no answer to GET /api/v1/namespaces/ns/pods/model-server-abc:8000/proxy/health/db"), "{said}");
        assert!(said.contains("it hangs"), "{said}");
    }
}
