//! The Sealed Secrets controller for a local cluster, from the same pinned module as kubeseal:
//! its binary built from source into an image pushed to the local registry, installed with the project's own
//! Helm chart in kube-system under the name kubeseal looks for.

use anyhow::Result;
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::go_image::GoImage;
use super::kind::RunningCluster;
use crate::go::{Go, WrapperBuild};
use crate::kubeseal::{CONTROLLER_NAME, CONTROLLER_NAMESPACE};
use crate::tools::KUBESEAL;

const CONTROLLER_IMAGE_REPOSITORY: &str = "shipshape/sealed-secrets-controller";

/// The controller image, built once per version.
pub fn controller_image(sh: &Shell, docker: &Docker) -> Result<String> {
    let (module, published_as) = KUBESEAL_MODULE;
    // Built under its go.mod's name from the proxy's copy (see tools::KUBESEAL).
    let source = Go::detect(sh).download(&format!("{published_as}@{}", KUBESEAL.version))?;
    let image = GoImage {
        name: "sealed-secrets-controller",
        about: "Sealed Secrets controller from its Go module",
        repository: CONTROLLER_IMAGE_REPOSITORY,
        binary_in_image: "/usr/local/bin/controller",
        user: 1001,
        flavour: None,
        args_name_the_binary: false,
        build: WrapperBuild {
            go_mod_extra: format!("replace {module} => {}", source.dir.display()),
            ..WrapperBuild::new(module, KUBESEAL.version, &[format!("{module}/cmd/controller")])
        },
    };
    image.ensure(sh, docker)
}

/// The module (as its go.mod names it, as the proxy serves it).
const KUBESEAL_MODULE: (&str, &str) = ("github.com/bitnami/sealed-secrets", "github.com/bitnami-labs/sealed-secrets");

/// Builds and loads the controller image and installs the controller's chart (from the module)
/// into kube-system; waits until it serves its certificate.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let image = controller_image(sh, &Docker::connect(sh)?)?;
    let source = Go::detect(sh).download(&format!("{}@{}", KUBESEAL_MODULE.1, KUBESEAL.version))?;
    let chart = AddOnChart {
        what: "the Sealed Secrets controller",
        chart: &source.dir.join("helm/sealed-secrets"),
        release: CONTROLLER_NAME,
        namespace: CONTROLLER_NAMESPACE,
        values: serde_json::json!({
            "fullnameOverride": CONTROLLER_NAME,
            "image": {"registry": super::registry::HOST, "repository": CONTROLLER_IMAGE_REPOSITORY, "tag": super::go_image::tag_of(&image), "pullPolicy": "IfNotPresent"},
        }),
        drop_dependencies: false,
        workload: Workload::Deployment,
    };
    super::add_on::install(sh, cluster, &image, &chart)
}
