//! The built images, run as containers (testcontainers): model-server's `/health/db` through a
//! real PostgreSQL container on a private Docker network, connected and then disconnected.
use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use xtask::cluster::{app_images, docker::Docker};

fn split(reference: &str) -> (String, String) {
    let (name, tag) = reference.rsplit_once(':').unwrap();
    (name.to_owned(), tag.to_owned())
}

#[test]
fn model_server_image_reaches_the_postgres_image() {
    let sh = xtask::repo_shell().unwrap();
    let docker = Docker::connect(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    // Cached by `cargo xtask test` beforehand; here this only returns the references.
    let server_image = app_images::build_model_server(&sh, &docker).unwrap_or_else(|e| panic!("{e:#}"));
    let postgres_image = app_images::build_postgres(&sh, &docker).unwrap_or_else(|e| panic!("{e:#}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let network = format!("shipshape-test-{}", std::process::id());
        let database_host = format!("{network}-postgres");
        let password = xtask::k8s::secrets::random_token().unwrap();

        let (name, tag) = split(&postgres_image);
        let postgres = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_env_var("POSTGRES_PASSWORD", &password)
            .with_network(&network)
            .with_container_name(&database_host)
            .start()
            .await
            .expect("starting the PostgreSQL image");

        let (name, tag) = split(&server_image);
        let server = GenericImage::new(name, tag)
            .with_exposed_port(8000.tcp())
            .with_wait_for(WaitFor::message_on_stdout("model loaded"))
            .with_env_var("DATABASE_URL", format!("postgres://app:{password}@{database_host}:5432/app?sslmode=disable"))
            .with_network(&network)
            .start()
            .await
            .expect("starting the model-server image");
        let port = server.get_host_port_ipv4(8000.tcp()).await.unwrap();
        let url = format!("http://127.0.0.1:{port}/health/db");

        let up = model_server::client::get(&url, &[], Duration::from_secs(5)).await.unwrap();
        assert_eq!((up.status, up.body.as_str()), (200, r#"{"status":"connected"}"#));

        postgres.stop().await.unwrap();
        let down = model_server::client::get(&url, &[], Duration::from_secs(10)).await.unwrap();
        assert_eq!(down.status, 503, "{}", down.body);
        assert!(down.body.contains(r#""status":"disconnected""#), "{}", down.body);
    });
}
