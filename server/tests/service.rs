//! model-server against real parts: a real PostgreSQL server, real HTTP on loopback, a real
//! registry endpoint that checks credentials. Nothing here is mocked.
mod support;

use std::time::Duration;

use support::postgres::Postgres;
use support::{get, metrics, post, start, wait_for, TIMEOUT};

#[tokio::test]
async fn db_check_follows_a_real_postgres_server() {
    let mut pg = Postgres::start();
    let server = start(&[("DATABASE_URL", &pg.url())]).await;

    let up = get(&server, "/health/db").await;
    assert_eq!((up.status, up.body.as_str()), (200, r#"{"status":"connected"}"#));

    pg.stop();
    let down = get(&server, "/health/db").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains(r#""status":"disconnected""#), "{}", down.body);
    assert!(!down.body.contains(&pg.url()), "the reason must not echo the connection string: {}", down.body);

    // The check reconnects by itself once the database is back.
    pg.start_again();
    let back = get(&server, "/health/db").await;
    assert_eq!((back.status, back.body.as_str()), (200, r#"{"status":"connected"}"#));
    server.shutdown();
}

/// A kept connection whose far end stops answering without closing (PostgreSQL's pod moved to
/// another node: its old address is gone, nothing resets the socket). Simulated for real: the
/// backend process serving the server's connection is stopped (SIGSTOP), while PostgreSQL still
/// accepts new connections. The check must answer about the database, not about the old socket.
#[tokio::test]
async fn db_check_is_not_fooled_by_a_kept_connection_that_stopped_answering() {
    let pg = Postgres::start();
    let server = start(&[("DATABASE_URL", &pg.url())]).await;
    let up = get(&server, "/health/db").await;
    assert_eq!(up.status, 200, "{}", up.body);

    // The server's connection is the one client backend besides ours.
    let (ours, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = ours
        .query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap();
    let pids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(pids.len(), 1, "the server keeps one connection: {pids:?}");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pids[0].to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} {}", pids[0]);
    };
    signal("STOP");
    let started = std::time::Instant::now();
    let answer = get(&server, "/health/db").await;
    let took = started.elapsed();
    signal("CONT");
    assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"status":"connected"}"#), "after {took:?}");
    server.shutdown();
}

#[tokio::test]
async fn db_check_without_a_database_url_says_why() {
    let server = start(&[]).await;
    let answer = get(&server, "/health/db").await;
    assert_eq!(answer.status, 503);
    assert!(answer.body.contains("DATABASE_URL is not set"), "{}", answer.body);
    server.shutdown();
}

#[tokio::test]
async fn health_ready_and_version_follow_the_contract() {
    let server = start(&[("APP_VERSION", "1.2.3")]).await;
    let health = get(&server, "/health").await;
    assert_eq!((health.status, health.body.as_str()), (200, r#"{"status":"healthy"}"#));
    let ready = wait_for(&server, "/ready", r#""status":"ready""#, TIMEOUT).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let version = get(&server, "/version").await;
    assert_eq!(version.body, r#"{"model_input_width":4,"model_name":"iris-centroid","model_version":"1","version":"1.2.3"}"#);
    server.shutdown();
}

#[tokio::test]
async fn not_ready_until_a_model_loads() {
    let server = start(&[("MODEL_URI", "/nonexistent/model.json")]).await;
    assert_eq!(get(&server, "/health").await.status, 200, "liveness must not depend on the model");
    let ready = get(&server, "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("not ready"), "{}", ready.body);
    server.shutdown();
}

#[tokio::test]
async fn predictions_come_from_the_model() {
    let server = start(&[]).await;
    wait_for(&server, "/ready", r#""status":"ready""#, TIMEOUT).await;
    let answer = post(&server, "/v1/predict", &[], Some(r#"{"instances":[[5.1,3.5,1.4,0.2],[6.9,3.1,5.8,2.2]]}"#)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["predictions"][0]["label"], "setosa");
    assert_eq!(body["predictions"][1]["label"], "virginica");
    let bad = post(&server, "/v1/predict", &[], Some(r#"{"instances":[[1.0]]}"#)).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    server.shutdown();
}

#[tokio::test]
async fn reload_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.json");
    std::fs::copy(support::shipped_model(), &model_path).unwrap();
    let uri = format!("file://{}", model_path.display());
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let server = start(&[("ADMIN_API_TOKEN", token), ("MODEL_URI", &uri)]).await;
    wait_for(&server, "/ready", r#""status":"ready""#, TIMEOUT).await;

    assert_eq!(post(&server, "/admin/reload", &[], None).await.status, 401, "no token");
    assert_eq!(post(&server, "/admin/reload", &[("X-Admin-Token", "wrong")], None).await.status, 401, "wrong token");
    let almost = &token[..token.len() - 1];
    assert_eq!(post(&server, "/admin/reload", &[("X-Admin-Token", almost)], None).await.status, 401, "a prefix of the token");

    // A new model version appears in the registry (here: the file); reload picks it up.
    let v2 = std::fs::read_to_string(&model_path).unwrap().replace(r#""version": "1""#, r#""version": "2""#);
    std::fs::write(&model_path, v2).unwrap();
    let answer = post(&server, "/admin/reload", &[("X-Admin-Token", token)], None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains(r#""model_version":"2""#), "{}", answer.body);
    assert!(get(&server, "/version").await.body.contains(r#""model_version":"2""#));
    assert!(metrics(&server).await.contains(r#"model_server_model_info{name="iris-centroid",version="2"} 1"#));
    server.shutdown();
}

#[tokio::test]
async fn reload_is_refused_when_no_token_is_configured() {
    let server = start(&[]).await;
    assert_eq!(post(&server, "/admin/reload", &[("X-Admin-Token", "")], None).await.status, 401);
    server.shutdown();
}

#[tokio::test]
async fn metrics_count_the_requests_made() {
    let server = start(&[("APP_VERSION", "9.9.9")]).await;
    for _ in 0..3 {
        get(&server, "/health").await;
    }
    post(&server, "/admin/reload", &[], None).await;
    let text = metrics(&server).await;
    assert!(text.contains(r#"http_requests_total{route="/health",status="200"} 3"#), "{text}");
    assert!(text.contains(r#"http_requests_total{route="/admin/reload",status="401"} 1"#), "{text}");
    assert!(text.contains(r#"http_request_duration_seconds_count{route="/health"} 3"#), "{text}");
    assert!(text.contains(r#"model_server_build_info{version="9.9.9"} 1"#), "{text}");
    server.shutdown();
}

#[tokio::test]
async fn auto_refresh_loads_a_new_model_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.json");
    std::fs::copy(support::shipped_model(), &model_path).unwrap();
    let server = start(&[("MODEL_URI", model_path.to_str().unwrap()), ("MODEL_AUTO_REFRESH_SECONDS", "1")]).await;
    wait_for(&server, "/ready", r#""model_version":"1""#, TIMEOUT).await;
    let v2 = std::fs::read_to_string(&model_path).unwrap().replace(r#""version": "1""#, r#""version": "2""#);
    std::fs::write(&model_path, v2).unwrap();
    let answer = wait_for(&server, "/version", r#""model_version":"2""#, Duration::from_secs(10)).await;
    assert!(answer.body.contains(r#""model_version":"2""#), "not refreshed: {}", answer.body);
    server.shutdown();
}

/// A model registry over HTTP that, like MLflow behind basic auth, refuses wrong credentials.
async fn start_registry(username: &'static str, password: &'static str) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use base64::Engine;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")));
    let model = std::fs::read_to_string(support::shipped_model()).unwrap();
    let app = axum::Router::new().route(
        "/api/2.0/mlflow-artifacts/artifacts/iris/model.json",
        axum::routing::get(move |headers: HeaderMap| async move {
            match headers.get("authorization") {
                Some(given) if given.as_bytes() == expected.as_bytes() => (StatusCode::OK, model.clone()),
                _ => (StatusCode::UNAUTHORIZED, String::new()),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn model_loads_from_a_registry_with_mlflow_credentials() {
    let registry = start_registry("mlflow-user", "mlflow-pass").await;
    let uri = format!("http://{registry}/api/2.0/mlflow-artifacts/artifacts/iris/model.json");

    let good =
        start(&[("MODEL_URI", &uri), ("MLFLOW_TRACKING_USERNAME", "mlflow-user"), ("MLFLOW_TRACKING_PASSWORD", "mlflow-pass")]).await;
    let ready = wait_for(&good, "/ready", r#""status":"ready""#, TIMEOUT).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    good.shutdown();

    let refused = start(&[("MODEL_URI", &uri), ("MLFLOW_TRACKING_USERNAME", "mlflow-user"), ("MLFLOW_TRACKING_PASSWORD", "stale")]).await;
    let text = loop {
        let text = metrics(&refused).await;
        if text.contains(r#"model_server_model_reloads_total{result="failed"}"#) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!text.contains(r#"result="ok""#), "{text}");
    assert_eq!(get(&refused, "/ready").await.status, 503, "stale credentials must leave the pod unready");
    refused.shutdown();
}

#[tokio::test]
async fn injected_error_rate_fails_that_share_of_predictions() {
    let server = start(&[("FAULT_ERROR_RATE", "0.5")]).await;
    wait_for(&server, "/ready", r#""status":"ready""#, TIMEOUT).await;
    let mut failed = 0;
    for _ in 0..10 {
        if post(&server, "/v1/predict", &[], Some(r#"{"instances":[[5.1,3.5,1.4,0.2]]}"#)).await.status == 500 {
            failed += 1;
        }
    }
    assert_eq!(failed, 5);
    assert_eq!(get(&server, "/health").await.status, 200, "health checks are not affected");
    server.shutdown();
}

#[tokio::test]
async fn injected_readiness_failure_keeps_the_pod_unready() {
    let server = start(&[("FAULT_NEVER_READY", "true")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = get(&server, "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("FAULT_NEVER_READY"), "{}", ready.body);
    server.shutdown();
}

#[tokio::test]
async fn injected_latency_delays_every_prediction_at_least_that_long() {
    let server = start(&[("FAULT_LATENCY_MS", "300")]).await;
    wait_for(&server, "/ready", r#""status":"ready""#, TIMEOUT).await;
    let asked = std::time::Instant::now();
    let answer = post(&server, "/v1/predict", &[], Some(r#"{"instances":[[5.1,3.5,1.4,0.2]]}"#)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A lower bound the sleep guarantees, not a timing guess.
    assert!(asked.elapsed() >= Duration::from_millis(300), "answered in {:?}", asked.elapsed());
    server.shutdown();
}

#[tokio::test]
async fn injected_liveness_failure_fails_health_and_held_memory_serves_on() {
    let server = start(&[("FAULT_UNHEALTHY", "true"), ("FAULT_MEMORY_MIB", "8")]).await;
    let health = get(&server, "/health").await;
    assert_eq!(health.status, 503, "the liveness probe's route fails");
    assert!(health.body.contains("FAULT_UNHEALTHY"), "{}", health.body);
    server.shutdown();
}
