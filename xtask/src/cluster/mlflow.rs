//! An MLflow tracking server for a local cluster: the model registry staging and prod load their
//! model from, with MLflow's basic-auth app, so a release's MLflow credentials are checked by
//! MLflow itself. No container image can be pulled: the image is Debian's python3 in a
//! debootstrapped root filesystem plus MLflow's pinned wheels from the Python package index
//! (`deploy/image/mlflow-requirements.txt`). Installed with `deploy/kind/charts/mlflow` in
//! namespace `mlflow`; its admin password is made here, kept in a Secret there, never printed;
//! the shipped model is registered as `iris` so the environments' `modelUri` names a real version.
//!
//! A stand-in for the team's MLflow: its store (SQLite and artifacts) lives on the pod's
//! emptyDir, so `cluster up --with mlflow` registers the model again after a restart, and
//! the users made since (a release's account) are gone with it.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use xshell::{cmd, Shell};

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::kind::RunningCluster;
use super::stage::Stages;
use crate::mlflow::{Credentials, Server};
use crate::process::run_logged;

pub const VERSION: &str = "3.17.2";
pub const NAMESPACE: &str = "mlflow";
pub const SERVICE: &str = "mlflow";
pub const PORT: u16 = 5000;
/// The Secret holding the admin's credentials and the server's session key.
pub const ADMIN_SECRET: &str = "mlflow-admin";
/// The registered model the shipped model (server/models/iris-v1.json) is version 1 of.
pub const MODEL_NAME: &str = "iris";
const IMAGE_REPOSITORY: &str = "shipshape/mlflow";
/// Bumped whenever the recipe below changes (the requirements file's hash is in the key too).
const RECIPE: &str = "r1";

pub fn server() -> Server {
    Server { namespace: NAMESPACE.to_owned(), service: SERVICE.to_owned(), port: PORT }
}

/// The image, built once per requirements file and recipe.
pub fn image(sh: &Shell, docker: &Docker) -> Result<String> {
    let requirements = crate::repo_root().join("deploy/image/mlflow-requirements.txt");
    let pins = std::fs::read(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let key = format!("{VERSION}-{RECIPE}-{}", &crate::signing::hex_sha256(&pins)[..12]);
    let reference = format!("{IMAGE_REPOSITORY}:{key}");
    if docker.image_exists(&reference) {
        return Ok(reference);
    }
    let mut stages = Stages::new()?;
    let rootfs = stages.get("mlflow", &key, "MLflow rootfs: Debian's python3 and MLflow's pinned wheels", |out, log| {
        let rootfs = out.join("rootfs");
        run_logged(
            cmd!(sh, "debootstrap --variant=minbase --include=python3,ca-certificates bookworm {rootfs} http://deb.debian.org/debian"),
            log,
            "debootstrap (MLflow's python3)",
        )?;
        // pip from a throwaway environment of the host's python3, installing into the image's
        // tree for the image's Python (bookworm's 3.11), wheels only: nothing is compiled, and
        // nothing is installed into the host's Python.
        let pip_env = out.join("pip-env");
        run_logged(cmd!(sh, "python3 -m venv {pip_env}"), log, "python3 -m venv (Debian: the python3-venv package)")?;
        let target = rootfs.join("opt/mlflow");
        let pip = pip_env.join("bin/pip");
        run_logged(
            cmd!(
                sh,
                "{pip} install --quiet --no-input --disable-pip-version-check --no-deps --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --target {target} -r {requirements}"
            ),
            log,
            "pip install MLflow's pinned wheels",
        )?;
        let cleanup = "rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* && mkdir -p /mlflow && chown 65532:65532 /mlflow";
        run_logged(cmd!(sh, "chroot {rootfs} /bin/sh -c {cleanup}"), log, "trimming the MLflow rootfs")?;
        super::layout::pack(sh, &rootfs, &out.join("rootfs.tar"), log, "packing the MLflow rootfs")?;
        std::fs::remove_dir_all(&rootfs)?;
        std::fs::remove_dir_all(&pip_env)?;
        Ok(())
    })?;
    let log = stages.log_path("mlflow-image")?;
    let changes = [
        "USER 65532:65532".to_owned(),
        "ENV PYTHONPATH=/opt/mlflow PATH=/opt/mlflow/bin:/usr/bin:/bin HOME=/mlflow".to_owned(),
        "EXPOSE 5000".to_owned(),
    ];
    docker.import(&rootfs.join("rootfs.tar"), &reference, &changes, &log)?;
    stages.print_summary();
    Ok(reference)
}

/// Builds the image (once), makes the admin's Secret (once), installs the chart, waits until
/// MLflow is ready and registers the shipped model unless MLflow has it.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let image = image(sh, &Docker::connect(sh)?)?;
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
            "image": {"repository": format!("{}/{IMAGE_REPOSITORY}", super::registry::HOST), "tag": super::go_image::tag_of(&image)},
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
    Ok(Credentials {
        username: crate::k8s::secrets::read_key(&secrets, ADMIN_SECRET, "username").await?,
        password: crate::k8s::secrets::read_key(&secrets, ADMIN_SECRET, "password")
            .await
            .context("MLflow's admin password: is MLflow installed (`cargo xtask cluster up --with mlflow`)?")?,
    })
}
