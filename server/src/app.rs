//! The HTTP service: routes, shared state, and start-up of both listeners.
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::db::Database;
use crate::log;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::model::{self, Model};

/// How long to wait between attempts while the first model load keeps failing.
const LOAD_RETRY: Duration = Duration::from_secs(5);

pub struct AppState {
    config: Config,
    model: RwLock<Option<Arc<Model>>>,
    database: Database,
    metrics: Metrics,
}

/// Both listeners, bound and serving. Dropping it does not stop them; `shutdown` does.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: Arc<AppState>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Binds both ports, starts loading the model in the background (so `/health` answers at
/// once and `/ready` only once the model is in), and serves until the tasks are stopped.
pub async fn start(config: Config) -> Result<RunningServer> {
    if config.faults.crash_on_start {
        log::fatal("crashing on start as FAULT_CRASH_ON_START asks");
        std::process::exit(1);
    }
    if config.faults.any() {
        tracing::warn!(config = ?config.faults, "fault injection is on");
    }
    // Held until the process ends; vec! of a non-zero byte writes every page, so the memory is
    // resident, as a loaded model's is (black_box: the optimiser may not drop an allocation
    // nothing reads).
    let held: &'static [u8] = config.faults.hold_memory().leak();
    std::hint::black_box(held);
    if config.admin_token.is_none() {
        tracing::warn!("ADMIN_API_TOKEN is not set: every POST /admin/reload will be refused");
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let metrics_listener =
        tokio::net::TcpListener::bind(config.metrics_listen).await.with_context(|| format!("binding {}", config.metrics_listen))?;
    let (addr, metrics_addr) = (listener.local_addr()?, metrics_listener.local_addr()?);
    let state = Arc::new(AppState {
        metrics: Metrics::new(&config.app_version),
        database: Database::new(config.database_url.clone()),
        model: RwLock::new(None),
        config,
    });
    tracing::info!(
        version = %state.config.app_version,
        listen = %addr,
        metrics = %metrics_addr,
        model_uri = %state.config.model_uri,
        "model-server starting"
    );
    let mut tasks = vec![
        tokio::spawn(serve(listener, routes(state.clone()))),
        tokio::spawn(serve(metrics_listener, Router::new().route("/metrics", get(metrics)).with_state(state.clone()))),
        tokio::spawn(load_until_ready(state.clone())),
    ];
    if let Some(every) = state.config.auto_refresh {
        tasks.push(tokio::spawn(auto_refresh(state.clone(), every)));
    }
    Ok(RunningServer { addr, metrics_addr, state, tasks })
}

async fn serve(listener: tokio::net::TcpListener, router: Router) {
    if let Err(err) = axum::serve(listener, router).await {
        tracing::error!(reason = %err, "listener stopped");
    }
}

fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/health/db", get(health_db))
        .route("/version", get(version))
        .route("/v1/predict", post(predict))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), count_requests))
        // Every request in a span (method, uri, version): records logged while serving it carry
        // them. No record per request or per failure: /metrics counts those, and a line per
        // failed request would make verify's error-line count follow the traffic.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .with_state(state)
}

/// Counts and times every routed request for `/metrics`.
async fn count_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.requests.get_or_create(&RequestLabels { route: route.clone(), status }).inc();
    state.metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    // Which version answered: lets a client behind a Service split its outcomes by version
    // (stable against canary) with no access to the cluster.
    if let Ok(version) = axum::http::HeaderValue::from_str(&state.config.app_version) {
        response.headers_mut().insert(SERVED_BY, version);
    }
    response
}

/// The response header naming the version that answered.
pub const SERVED_BY: &str = "x-served-by";

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.config.faults.unhealthy {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "reason": "FAULT_UNHEALTHY is set"}))).into_response();
    }
    Json(json!({"status": "healthy"})).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let loaded = state.model.read().unwrap().clone();
    match loaded {
        _ if state.config.faults.never_ready => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reason": "FAULT_NEVER_READY is set"}))).into_response()
        }
        Some(model) => Json(json!({"status": "ready", "model_version": model.version})).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reason": "model not loaded yet"}))).into_response(),
    }
}

async fn health_db(State(state): State<Arc<AppState>>) -> Response {
    match state.database.check().await {
        Ok(()) => Json(json!({"status": "connected"})).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "disconnected", "reason": reason}))).into_response(),
    }
}

async fn version(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let model = state.model.read().unwrap().clone();
    Json(json!({
        "version": state.config.app_version,
        "model_name": model.as_ref().map(|m| m.name.clone()),
        "model_version": model.as_ref().map(|m| m.version.clone()),
        // How many numbers one instance of POST /v1/predict takes: what a client (verify's
        // prediction check) needs to ask the model anything.
        "model_input_width": model.as_ref().map(|m| m.input_width()),
    }))
}

#[derive(Deserialize)]
struct PredictRequest {
    instances: Vec<Vec<f64>>,
}

async fn predict(State(state): State<Arc<AppState>>, Json(request): Json<PredictRequest>) -> Response {
    if let Some(delay) = state.config.faults.latency {
        tokio::time::sleep(delay).await;
    }
    state.config.faults.burn_cpu();
    if state.config.faults.fail_this_request() {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "injected fault (FAULT_ERROR_RATE)"}))).into_response();
    }
    let Some(model) = state.model.read().unwrap().clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "model not loaded yet"}))).into_response();
    };
    let predictions: Result<Vec<_>> = request.instances.iter().map(|x| model.predict(x)).collect();
    match predictions {
        Ok(predictions) => Json(json!({"predictions": predictions, "model_version": model.version})).into_response(),
        Err(err) => (StatusCode::BAD_REQUEST, Json(json!({"error": err.to_string()}))).into_response(),
    }
}

/// `POST /admin/reload`: the runbook's model refresh. The token is compared in constant time
/// and never logged; only whether a token was presented is.
async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let presented = headers.get("x-admin-token").map(|v| v.as_bytes());
    let authorized = match (&state.config.admin_token, presented) {
        (Some(expected), Some(given)) => bool::from(expected.as_bytes().ct_eq(given)),
        _ => false,
    };
    if !authorized {
        tracing::warn!(token_presented = presented.is_some(), "refused POST /admin/reload");
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "missing or wrong X-Admin-Token"}))).into_response();
    }
    match load_model(&state).await {
        Ok(model) => Json(json!({"status": "reloaded", "model_name": model.name, "model_version": model.version})).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": format!("{err:#}")}))).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

/// Loads the model and swaps it in; on failure the previous model keeps serving.
async fn load_model(state: &AppState) -> Result<Arc<Model>> {
    match model::load(&state.config.model_uri, &state.config.registry_credentials).await {
        Ok(model) => {
            let model = Arc::new(model);
            *state.model.write().unwrap() = Some(model.clone());
            state.metrics.model_loaded(&model.name, &model.version);
            state.metrics.reloaded(true);
            tracing::info!(model_name = %model.name, model_version = %model.version, "model loaded");
            Ok(model)
        }
        Err(err) => {
            state.metrics.reloaded(false);
            tracing::error!(reason = %format!("{err:#}"), "model load failed");
            Err(err)
        }
    }
}

async fn load_until_ready(state: Arc<AppState>) {
    while load_model(&state).await.is_err() {
        tokio::time::sleep(LOAD_RETRY).await;
    }
}

async fn auto_refresh(state: Arc<AppState>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await; // the first tick is immediate; the initial load already ran
    loop {
        ticks.tick().await;
        let _ = load_model(&state).await;
    }
}
