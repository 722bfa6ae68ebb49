//! A small HTTP/1 client: the `probe` subcommand (helm test, smoke tests) and model downloads.
//! Plain HTTP only: in-cluster traffic and registries; TLS ends at an ingress or mesh.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How a request that got nothing back is reported: its connection never accepted, or accepted
/// and never answered.
pub const NOT_ACCEPTED: &str = "connection not accepted within";
pub const NO_ANSWER: &str = "connected, but no answer within";

/// The connector's own timeout: hyper reports it as a connect error caused by TimedOut.
fn connect_timed_out(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

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
    // A connection never accepted (no SYN-ACK: routing, NAT) is told apart from one accepted
    // and never answered (the server): the load generator's reports say which.
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let served_by = response.headers().get(crate::app::SERVED_BY).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Response { status, body: String::from_utf8_lossy(&bytes).into_owned(), served_by })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Err(err)) if connect_timed_out(&err) => bail!("{method} {url}: {NOT_ACCEPTED} {timeout:?}"),
        Ok(result) => result.with_context(|| format!("{method} {url}")),
        Err(_) => bail!("{method} {url}: {NO_ANSWER} {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts and never answers is reported as such, not as a connection that
    /// was never accepted: the two point at different culprits (the server, the network).
    #[tokio::test]
    async fn an_accepted_connection_without_an_answer_is_named_apart() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let error = post(&format!("http://{address}/v1/predict"), &[], Some("{}".to_owned()), Duration::from_millis(300)).await;
        let said = format!("{:#}", error.err().expect("no answer is an error"));
        assert!(said.contains(NO_ANSWER) && !said.contains(NOT_ACCEPTED), "{said}");
        held.abort();
    }

    /// The connector's timeout arrives as an I/O TimedOut somewhere down the error chain.
    #[test]
    fn a_connect_timeout_is_found_down_the_chain() {
        let timed_out =
            anyhow::Error::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed")).context("tcp connect error");
        assert!(connect_timed_out(&timed_out.context("client error (Connect)")));
        let refused = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).context("tcp connect error");
        assert!(!connect_timed_out(&refused));
    }
}
