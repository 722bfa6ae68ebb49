//! An MLflow tracking server for a local cluster: the model registry staging and prod load their
//! model from, with MLflow's basic-auth app, so a release's MLflow credentials are checked by
//! MLflow itself. Its image is built with the application images (`app_images::build_mlflow`).
//! Installed with `deploy/kind/charts/mlflow` in namespace `mlflow`; its admin password is made
//! here, kept in a Secret there, never printed; the shipped model is registered as `iris` so the
//! environments' `modelUri` names a real version.
//!
//! A stand-in for the team's MLflow: one pod on the control-plane node, its store (SQLite and
//! artifacts) on that node's disk, so a restart or a worker drained keeps its users and models;
//! the cluster's deletion takes them.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::kind::RunningCluster;
use crate::mlflow::{Credentials, Server};

pub use super::app_images::MLFLOW_VERSION as VERSION;
pub const NAMESPACE: &str = "mlflow";
pub const SERVICE: &str = "mlflow";
pub const PORT: u16 = 5000;
/// The Secret holding the admin's credentials and the server's session key.
pub const ADMIN_SECRET: &str = "mlflow-admin";
/// The registered model the shipped model (server/models/iris-v1.json) is version 1 of.
pub const MODEL_NAME: &str = "iris";

pub fn server() -> Server {
    Server { namespace: NAMESPACE.to_owned(), service: SERVICE.to_owned(), port: PORT }
}

/// Builds the image (once), makes the admin's Secret (once), installs the chart, waits until
/// MLflow is ready and registers the shipped model unless MLflow has it.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let image = super::app_images::build_mlflow(sh, &Docker::connect(sh)?)?;
    let api = cluster.api()?;
    api.run(crate::k8s::ensure_namespace(api.client(), NAMESPACE))?;
    let secrets: Api<Secret> = Api::namespaced(api.client().clone(), NAMESPACE);
    api.run(crate::k8s::secrets::ensure(&secrets, ADMIN_SECRET, || {
        Ok(BTreeMap::from([
            ("username".to_owned(), "admin".to_owned()),
            ("password".to_owned(), crate::k8s::secrets::random_token()?),
            ("flask-secret-key".to_owned(), crate::k8s::secrets::random_token()?),
        ]))
    }))?;
    let chart = AddOnChart {
        what: "MLflow",
        chart: &crate::repo_root().join("deploy/kind/charts/mlflow"),
        release: SERVICE,
        namespace: NAMESPACE,
        values: serde_json::json!({
            "image": {"repository": format!("{}/{}", super::registry::HOST, super::app_images::MLFLOW_REPOSITORY), "tag": super::go_image::tag_of(&image)},
            "adminSecret": ADMIN_SECRET,
            "port": PORT,
        }),
        drop_dependencies: false,
        workload: Workload::Deployment,
    };
    super::add_on::install(sh, cluster, &image, &chart)?;
    let admin = api.run(admin(api.client()))?;
    let server = server();
    let model = std::fs::read(crate::repo_root().join("server/models/iris-v1.json"))?;
    let version = api.run(async {
        match server.latest_version(api.client(), &admin, MODEL_NAME).await? {
            Some(version) => anyhow::Ok(version),
            None => server.register_model(api.client(), &admin, MODEL_NAME, &model).await,
        }
    })?;
    println!(
        "MLflow {VERSION} runs in namespace {NAMESPACE}: model {MODEL_NAME} version {version} is {}",
        crate::mlflow::model_uri(&server, MODEL_NAME, &version)
    );
    Ok(())
}

/// The admin's credentials, from the Secret `install` made.
pub async fn admin(client: &kube::Client) -> Result<Credentials> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    Credentials::from_secret(&secrets, ADMIN_SECRET, "username", "password")
        .await
        .context("MLflow's admin credentials: is MLflow installed (`cargo xtask cluster up --with mlflow`)?")
}
