//! `model-server load`: steady traffic at a URL (a Service, from inside the cluster), counting
//! every outcome by the version that answered (`x-served-by`). The end-to-end tests run it
//! during progressive deployments and read `GET /stats` on its own port: a deployment that drops
//! a request shows up here. Each request opens its own connection, as a fresh client would, so
//! it is routed by the Service to a ready endpoint, never held to a pod that is going away.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// What the generator has seen since it started.
#[derive(Serialize, Default, Clone, Debug)]
pub struct Stats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Answers per version that gave them: version -> (ok, failed).
    pub by_version: BTreeMap<String, Outcomes>,
    /// Failures by kind (`http 500`, or the connection error).
    pub failures: BTreeMap<String, u64>,
    /// The last few failures, when they happened: a test that sees one can tell which step of a
    /// flow it fell in.
    pub recent_failures: Vec<Failure>,
    /// Answers that took over a second, and the slowest answer (ms): a stall that stayed under
    /// the timeout still shows.
    pub slow: u64,
    pub slowest_ms: u128,
    /// Requests whose connection got no answer and that were sent again once, and the last few.
    pub retried: u64,
    pub retries: Vec<Failure>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Failure {
    /// When the request was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u128,
    pub kind: String,
    pub version: String,
}

/// How many failures `recent_failures` keeps.
const RECENT_FAILURES: usize = 20;

/// Keeps the last `RECENT_FAILURES` of a list.
fn push_recent(list: &mut Vec<Failure>, failure: Failure) {
    if list.len() == RECENT_FAILURES {
        list.remove(0);
    }
    list.push(failure);
}

#[derive(Serialize, Default, Clone, Copy, Debug)]
pub struct Outcomes {
    pub ok: u64,
    pub failed: u64,
}

/// A prediction request for the iris model.
const BODY: &str = r#"{"instances":[[5.1,3.5,1.4,0.2]]}"#;

/// Sends `rate` requests a second to `url` until the process is stopped; serves the counts on
/// `listen` (`GET /stats`).
pub async fn run(url: String, rate: u32, listen: SocketAddr, timeout: Duration) -> Result<()> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let shared = stats.clone();
    let router = Router::new()
        .route("/stats", get(move || async move { Json(shared.lock().unwrap().clone()) }))
        .route("/health", get(|| async { Json(serde_json::json!({"status": "healthy"})) }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    tracing::info!(url = %url, rate, stats = %listen, "load generator started");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (url, stats) = (url.clone(), stats.clone());
        stats.lock().unwrap().sent += 1;
        tokio::spawn(async move {
            let sent_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            let started = std::time::Instant::now();
            let mut outcome = crate::client::post(&url, &[], Some(BODY.to_owned()), timeout).await;
            // A connection that got no answer at all is tried once more on a new connection, as
            // HTTP clients do for a pure request like a prediction. Counted apart, never hidden:
            // a refusal, a reset or an error answer is not retried.
            let no_answer = match &outcome {
                Err(err) => Some(format!("{err:#}"))
                    .filter(|why| why.contains(crate::client::NO_ANSWER) || why.contains(crate::client::NOT_ACCEPTED)),
                Ok(_) => None,
            };
            if let Some(why) = no_answer {
                {
                    let mut counts = stats.lock().unwrap();
                    counts.retried += 1;
                    push_recent(
                        &mut counts.retries,
                        Failure { sent_at_ms, kind: why.chars().take(120).collect(), version: "no answer".to_owned() },
                    );
                }
                outcome = crate::client::post(&url, &[], Some(BODY.to_owned()), timeout).await;
            }
            let took = started.elapsed();
            let mut stats = stats.lock().unwrap();
            if outcome.is_ok() {
                stats.slowest_ms = stats.slowest_ms.max(took.as_millis());
                stats.slow += u64::from(took > Duration::from_secs(1));
            }
            record(&mut stats, sent_at_ms, outcome);
        });
    }
}

fn record(stats: &mut Stats, sent_at_ms: u128, outcome: Result<crate::client::Response>) {
    let (ok, version, kind) = match outcome {
        Ok(answer) if (200..300).contains(&answer.status) => {
            (true, answer.served_by.unwrap_or_else(|| "unknown".to_owned()), String::new())
        }
        Ok(answer) => (false, answer.served_by.unwrap_or_else(|| "unknown".to_owned()), format!("http {}", answer.status)),
        Err(err) => (false, "no answer".to_owned(), format!("{:#}", err).chars().take(120).collect()),
    };
    let per_version = stats.by_version.entry(version.clone()).or_default();
    if ok {
        stats.ok += 1;
        per_version.ok += 1;
    } else {
        stats.failed += 1;
        per_version.failed += 1;
        *stats.failures.entry(kind.clone()).or_default() += 1;
        tracing::warn!(kind = %kind, version = %version, sent_at_ms = %sent_at_ms, "request failed");
        push_recent(&mut stats.recent_failures, Failure { sent_at_ms, kind, version });
    }
}
