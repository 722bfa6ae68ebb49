//! Admission enforcement for a local cluster: sigstore policy-controller's webhook, built from
//! its Go module, installed with `deploy/kind/charts/policy-controller` (the module's own
//! manifests) in namespace `cosign-system`, its CRDs (ClusterImagePolicy, TrustRoot) applied
//! from the module. It refuses, in every namespace labelled `policy.sigstore.dev/include=true`,
//! a workload whose images the cluster's ClusterImagePolicies do not admit: by hand
//! (`kubectl set image`, `helm upgrade`) as through shipshape. `cargo xtask admission apply`
//! writes an environment's policy and labels its namespace (flows/admission.rs).
//!
//! Beside the webhook runs registry-forwarder (deploy/kind/registry-forwarder): the images are
//! named `localhost:5001/...` as kind's local-registry convention has it, and in the webhook's
//! pod that name must reach the registry too.

use anyhow::{Context, Result};
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::go_image::GoImage;
use super::kind::RunningCluster;
use crate::go::{Go, WrapperBuild};

/// The newest release the module proxy serves (its version list names only v0.13.1; v0.14.0
/// answers an explicit download). Both verify key-signed images in cosign's tag-based format
/// only (`.sig`, `.att`), which is why cosign.rs signs in that format.
pub const VERSION: &str = "v0.14.0";
const MODULE: &str = "github.com/sigstore/policy-controller";
pub const NAMESPACE: &str = "cosign-system";
const RELEASE: &str = "policy-controller";
const IMAGE_REPOSITORY: &str = "shipshape/policy-controller";
const FORWARDER_REPOSITORY: &str = "shipshape/registry-forwarder";
const FORWARDER_MODULE: &str = "shipshape.local/registry-forwarder";
/// The CRDs, as the module ships them.
const CRD_FILES: &[&str] = &["config/300-clusterimagepolicy.yaml", "config/300-trustroot.yaml"];

/// The webhook's image, built once per version.
pub fn image(sh: &Shell, docker: &Docker) -> Result<String> {
    let source = Go::detect(sh).download(&format!("{MODULE}@{VERSION}"))?;
    let go_mod = std::fs::read_to_string(&source.go_mod).context("reading policy-controller's go.mod")?;
    GoImage {
        name: "policy-controller",
        about: "sigstore policy-controller (admission webhook) from its Go module (cold: minutes)",
        repository: IMAGE_REPOSITORY,
        binary_in_image: "/bin/policy-controller",
        // distroless's nonroot, as upstream's ko image.
        user: 65532,
        flavour: None,
        args_name_the_binary: false,
        build: WrapperBuild {
            // Its replace directives apply only to the main module: the wrapper repeats them.
            go_mod_extra: replace_directives(&go_mod),
            sums_from: Some(source.dir.join("go.sum")),
            ..WrapperBuild::new(MODULE, VERSION, &[format!("{MODULE}/cmd/webhook")])
        },
    }
    .ensure(sh, docker)
}

/// The forwarder's image, tagged by its source's content (a change rebuilds it).
pub fn forwarder_image(sh: &Shell, docker: &Docker) -> Result<String> {
    let dir = crate::repo_root().join("deploy/kind/registry-forwarder");
    let source = std::fs::read(dir.join("main.go")).context("reading deploy/kind/registry-forwarder/main.go")?;
    let content = crate::signing::hex_sha256(&source);
    GoImage {
        name: "registry-forwarder",
        about: "registry-forwarder (deploy/kind/registry-forwarder)",
        repository: FORWARDER_REPOSITORY,
        binary_in_image: "/bin/registry-forwarder",
        user: 65532,
        flavour: Some(&content[..12]),
        args_name_the_binary: false,
        build: WrapperBuild {
            go_mod_extra: format!("replace {FORWARDER_MODULE} => {}", dir.display()),
            ..WrapperBuild::new(FORWARDER_MODULE, "v0.0.0", &[FORWARDER_MODULE.to_owned()])
        },
    }
    .ensure(sh, docker)
}

/// The `replace` lines of a go.mod, single and in blocks, as lines a wrapper's go.mod takes.
fn replace_directives(go_mod: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let code = line.split("//").next().unwrap_or_default().trim();
        if in_block {
            if code == ")" {
                in_block = false;
            } else if !code.is_empty() {
                out.push_str(&format!("replace {code}\n"));
            }
        } else if code == "replace (" {
            in_block = true;
        } else if code.starts_with("replace ") {
            out.push_str(&format!("{code}\n"));
        }
    }
    out
}

/// Builds both images (once each), applies the CRDs, installs the chart and waits until the
/// webhook is ready: from then on the labelled namespaces are enforced.
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let docker = Docker::connect(sh)?;
    let image = image(sh, &docker)?;
    let forwarder = forwarder_image(sh, &docker)?;
    super::registry::ensure_running(sh, &docker)?;
    super::app_images::push(&docker, &forwarder, super::registry::HOST)?;
    let source = Go::detect(sh).download(&format!("{MODULE}@{VERSION}"))?;
    let api = cluster.api()?;
    for file in CRD_FILES {
        let crd = std::fs::read_to_string(source.dir.join(file)).with_context(|| format!("reading policy-controller's {file}"))?;
        api.run(crate::k8s::apply_crds(api.client(), &crd))?;
    }
    let in_registry = |repository: &str| super::app_images::in_registry(repository, super::registry::HOST);
    let chart = AddOnChart {
        what: "sigstore policy-controller",
        chart: &crate::repo_root().join("deploy/kind/charts/policy-controller"),
        release: RELEASE,
        namespace: NAMESPACE,
        values: serde_json::json!({
            "image": {"repository": in_registry(IMAGE_REPOSITORY), "tag": super::go_image::tag_of(&image)},
            "registryForwarder": {
                "image": {"repository": in_registry(FORWARDER_REPOSITORY), "tag": super::go_image::tag_of(&forwarder)},
                "listen": format!("127.0.0.1:{}", super::registry::HOST.rsplit_once(':').map_or("5001", |(_, port)| port)),
                "target": super::registry::IN_KIND_NETWORK,
            },
        }),
        drop_dependencies: false,
        workload: Workload::Deployment,
    };
    super::add_on::install(sh, cluster, &image, &chart)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wrapper_repeats_every_replace_directive_single_or_in_a_block() {
        let go_mod = "module github.com/sigstore/policy-controller\n\nrequire (\n\tk8s.io/api v0.32.0\n)\n\n\
            replace github.com/golang/glog => github.com/jdolitsky/glog v0.0.0-20220729172235-78744e90d087\n\n\
            replace (\n\t// knative deps require an old gengo\n\tk8s.io/code-generator => k8s.io/code-generator v0.29.4\n\
            \tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-20231010175941-2dd684a91f00 // pinned\n)\n";
        assert_eq!(
            super::replace_directives(go_mod),
            "replace github.com/golang/glog => github.com/jdolitsky/glog v0.0.0-20220729172235-78744e90d087\n\
             replace k8s.io/code-generator => k8s.io/code-generator v0.29.4\n\
             replace k8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-20231010175941-2dd684a91f00\n"
        );
    }
}
