//! A Prometheus server for a local cluster: built from Prometheus's Go module (with only the
//! Kubernetes service discovery compiled in, by upstream's own build tags), installed with
//! `deploy/kind/charts/prometheus` in namespace `monitoring`, scraping the pods that ask for it
//! with the `namespace` and `pod` labels that `canary start --prometheus` queries by.

use anyhow::Result;
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::go_image::GoImage;
use super::kind::RunningCluster;
use crate::go::{Go, WrapperBuild};

/// Prometheus 3.16.0: the Go module numbers v3.x.y as v0.3xx.y.
pub const MODULE_VERSION: &str = "v0.316.0";
const MODULE: &str = "github.com/prometheus/prometheus";
pub const NAMESPACE: &str = "monitoring";
pub const SERVICE: &str = "prometheus";
const IMAGE_REPOSITORY: &str = "shipshape/prometheus";

/// What `canary start --prometheus` is given for this server.
pub fn url() -> String {
    format!("http://{SERVICE}.{NAMESPACE}.svc:9090")
}

pub fn image(sh: &Shell, docker: &Docker) -> Result<String> {
    let source = Go::detect(sh).download(&format!("{MODULE}@{MODULE_VERSION}"))?;
    GoImage {
        name: "prometheus",
        about: "Prometheus server from its Go module (cold: minutes)",
        repository: IMAGE_REPOSITORY,
        binary_in_image: "/bin/prometheus",
        user: 65534,
        flavour: None,
        args_name_the_binary: false,
        build: WrapperBuild {
            // Upstream's plugin tags: every service discovery left out but Kubernetes's (the
            // cloud providers' SDKs are most of a full build).
            tags: vec!["remove_all_sd".to_owned(), "enable_kubernetes_sd".to_owned()],
            ldflags: "-s -w -X github.com/prometheus/common/version.Version=3.16.0".to_owned(),
            sums_from: Some(source.dir.join("go.sum")),
            ..WrapperBuild::new(MODULE, MODULE_VERSION, &[format!("{MODULE}/cmd/prometheus")])
        },
    }
    .ensure(sh, docker)
}

/// Builds the image (once per version), pushes it to the local registry, installs the chart and
/// waits until Prometheus is ready.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let image = image(sh, &Docker::connect(sh)?)?;
    let chart = AddOnChart {
        what: "Prometheus",
        chart: &crate::repo_root().join("deploy/kind/charts/prometheus"),
        release: SERVICE,
        namespace: NAMESPACE,
        values: serde_json::json!({
            "image": {"repository": format!("{}/{IMAGE_REPOSITORY}", super::registry::HOST), "tag": super::go_image::tag_of(&image)},
        }),
        drop_dependencies: false,
        workload: Workload::Deployment,
    };
    super::add_on::install(sh, cluster, &image, &chart)
}
