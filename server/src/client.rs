//! A small HTTP/1 client: the `probe` subcommand (helm test, smoke tests) and model downloads.
//! Plain HTTP only: in-cluster traffic and registries; TLS ends at an ingress or mesh.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub struct Response {
    pub status: u16,
    pub body: String,
    /// The `x-served-by` header: the server version that answered, when it says.
    pub served_by: Option<String>,
}

pub async fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Response> {
    send("GET", url, headers, None, timeout).await
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: Option<String>, timeout: Duration) -> Result<Response> {
    send("POST", url, headers, body, timeout).await
}

async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>, timeout: Duration) -> Result<Response> {
    if url.starts_with("https://") {
        bail!("{url}: https is not supported by model-server's client; use plain http inside the cluster");
    }
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request =
        request.body(Full::new(Bytes::from(body.unwrap_or_default()))).with_context(|| format!("{url} is not a valid http:// URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let served_by = response.headers().get(crate::app::SERVED_BY).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Response { status, body: String::from_utf8_lossy(&bytes).into_owned(), served_by })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.with_context(|| format!("{method} {url}")),
        Err(_) => bail!("{method} {url}: no answer within {timeout:?}"),
    }
}
