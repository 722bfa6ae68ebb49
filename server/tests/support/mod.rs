//! Shared by the service tests: start a real server in-process and talk HTTP to it.
pub mod postgres;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use model_server::client::{self, Response};
use model_server::{Config, RunningServer};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/iris-v1.json")
}

/// A server on ephemeral loopback ports, configured by `vars` on top of test defaults.
pub async fn start(vars: &[(&str, &str)]) -> RunningServer {
    let model = shipped_model().display().to_string();
    let mut all: Vec<(String, String)> = vec![
        ("BIND_ADDRESS".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("METRICS_PORT".into(), "0".into()),
        ("MODEL_URI".into(), model),
    ];
    for (key, value) in vars {
        all.retain(|(k, _)| k != key);
        all.push((key.to_string(), value.to_string()));
    }
    let config = Config::from_lookup(move |key| all.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())).unwrap();
    model_server::start(config).await.unwrap()
}

pub async fn get(server: &RunningServer, path: &str) -> Response {
    client::get(&format!("http://{}{path}", server.addr), &[], TIMEOUT).await.unwrap()
}

pub async fn post(server: &RunningServer, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    client::post(&format!("http://{}{path}", server.addr), headers, body.map(str::to_owned), TIMEOUT).await.unwrap()
}

pub async fn metrics(server: &RunningServer) -> String {
    client::get(&format!("http://{}/metrics", server.metrics_addr), &[], TIMEOUT).await.unwrap().body
}

/// Polls `path` until its body contains `wanted` or `within` passes; returns the last answer.
/// A bounded wait for an asynchronous event, not a timing assertion.
pub async fn wait_for(server: &RunningServer, path: &str, wanted: &str, within: Duration) -> Response {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(server, path).await;
        if answer.body.contains(wanted) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
