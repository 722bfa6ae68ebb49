//! The Sealed Secrets controller for a local cluster, from the same pinned module as kubeseal:
//! its binary built from source into an image pushed to the local registry, installed with the project's own
//! Helm chart in kube-system under the name kubeseal looks for.
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use super::docker::Docker;
use super::layout::{pack, place};
use super::lifecycle::RunningCluster;
use super::stage::Stages;
use crate::go::Go;
use crate::helm::{Change, Helm, Release};
use crate::kubeseal::{CONTROLLER_NAME, CONTROLLER_NAMESPACE};
use crate::tools::KUBESEAL;

const CONTROLLER_IMAGE_REPOSITORY: &str = "shipshape/sealed-secrets-controller";

/// The controller image, built once per version.
pub fn controller_image(sh: &Shell, docker: &Docker) -> Result<String> {
    let image = format!("{CONTROLLER_IMAGE_REPOSITORY}:{}", KUBESEAL.version);
    if docker.image_exists(&image) {
        return Ok(image);
    }
    let renamed = KUBESEAL_MODULE;
    let mut stages = Stages::new()?;
    let built = stages.get("sealed-secrets-controller", KUBESEAL.version, "Sealed Secrets controller from its Go module", |out, log| {
        let go = Go::detect(sh);
        let source = go.download(&format!("{}@{}", renamed.1, KUBESEAL.version))?;
        let replace = format!("replace {} => {}", renamed.0, source.dir.display());
        let package = format!("{}/cmd/controller", renamed.0);
        go.build_in_wrapper(renamed.0, KUBESEAL.version, &replace, &[package], "-s -w", out, log)?;
        let rootfs = out.join("rootfs");
        place(&out.join("controller"), &rootfs.join("usr/local/bin/controller"))?;
        std::fs::create_dir_all(rootfs.join("tmp"))?;
        pack(sh, &rootfs, &out.join("rootfs.tar"), log, "packing the controller image")?;
        std::fs::remove_dir_all(&rootfs)?;
        Ok(())
    })?;
    let log = stages.log_path("sealed-secrets-controller-image")?;
    let changes = ["USER 1001".to_owned(), "ENV PATH=/usr/local/bin".to_owned(), r#"ENTRYPOINT ["controller"]"#.to_owned()];
    docker.import(&built.join("rootfs.tar"), &image, &changes, &log)?;
    Ok(image)
}

/// The module (as its go.mod names it, as the proxy serves it).
const KUBESEAL_MODULE: (&str, &str) = ("github.com/bitnami/sealed-secrets", "github.com/bitnami-labs/sealed-secrets");

/// Builds and loads the controller image and installs the controller's chart (from the module)
/// into kube-system; waits until it serves its certificate.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let docker = Docker::connect(sh)?;
    let image = controller_image(sh, &docker)?;
    // Through the local registry, as every image reaches shipshape's clusters.
    super::registry::ensure_running(sh, &docker)?;
    super::app_images::push(&docker, &image, super::registry::HOST)?;
    let source = Go::detect(sh).download(&format!("{}@{}", KUBESEAL_MODULE.1, KUBESEAL.version))?;
    let values = serde_json::json!({
        "fullnameOverride": CONTROLLER_NAME,
        "image": {"registry": super::registry::HOST, "repository": CONTROLLER_IMAGE_REPOSITORY, "tag": KUBESEAL.version, "pullPolicy": "IfNotPresent"},
    });
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), serde_json::to_vec(&values)?)?;
    let release = Release {
        name: CONTROLLER_NAME.to_owned(),
        namespace: CONTROLLER_NAMESPACE.to_owned(),
        values_files: vec![file.path().to_path_buf()],
        set: Vec::new(),
        set_typed: Vec::new(),
    };
    Helm::new(sh)?.upgrade(
        &source.dir.join("helm/sealed-secrets"),
        &release,
        &Change::new(&cluster.kubeconfig, "shipshape: Sealed Secrets controller"),
    )?;
    crate::k8s::block_on(async {
        let client = crate::k8s::client(&cluster.kubeconfig).await?;
        crate::k8s::wait::deployment_rolled_out(&client, CONTROLLER_NAMESPACE, CONTROLLER_NAME, Duration::from_secs(180)).await
    })
    .context("the Sealed Secrets controller did not start")?;
    Ok(())
}
