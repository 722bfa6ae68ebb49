//! External Secrets Operator for a local cluster: its controller built from the pinned module,
//! installed with the module's own chart in the namespace the runbook's commands name
//! (`external-secrets-system`); and, for the end-to-end suite, a store for it to read: the
//! kubernetes provider over Secrets in namespace `shipshape-store` (chart
//! `deploy/kind/charts/secret-store`), standing for Vault or a cloud secret manager.

use anyhow::{Context, Result};
use xshell::Shell;

use super::add_on::{AddOnChart, Workload};
use super::docker::Docker;
use super::go_image::{patched_copy, GoImage};
use super::kind::RunningCluster;
use crate::go::{Go, WrapperBuild};
use crate::helm::{Change, Writer};

/// The newest release the module proxy serves whole. v1.x replaces ~60 nested modules that no
/// proxy serves; v0.20.4 is one module, for client-go 0.34 (the cluster's Kubernetes 1.34).
pub const VERSION: &str = "v0.20.4";
const MODULE: &str = "github.com/external-secrets/external-secrets";
/// The one replace directive of its go.mod, which a dependency does not inherit.
const SPRIG_REPLACE: &str = "replace github.com/Masterminds/sprig/v3 => github.com/external-secrets/sprig/v3 v3.3.0";
pub const NAMESPACE: &str = "external-secrets-system";
const RELEASE: &str = "external-secrets";
const IMAGE_REPOSITORY: &str = "shipshape/external-secrets";

/// Where the end-to-end suite's external store keeps its values, and the store's name.
pub const STORE_NAMESPACE: &str = "shipshape-store";
pub const STORE_NAME: &str = "shipshape-store";

/// The providers and generators compiled in. Upstream registers every one it has (~40
/// providers, most with a cloud SDK: a 193 MB binary, 6 minutes to build here, 2.7 GB of modules
/// to download); shipshape's clusters need the kubernetes provider (and fake, a store without a
/// backend). The two registration lists are rewritten in a copy of the module, nothing else
/// changes, and the image's tag says so.
const PROVIDERS: &[&str] = &["kubernetes", "fake"];
const GENERATORS: &[&str] = &["fake", "password", "uuid"];
const FLAVOUR: &str = "kubernetes-only";

/// The controller image, built once per version.
pub fn controller_image(sh: &Shell, docker: &Docker) -> Result<String> {
    let source = Go::detect(sh).download(&format!("{MODULE}@{VERSION}"))?;
    let trimmed = patched_copy(
        &source.dir,
        &format!("external-secrets-{VERSION}-{FLAVOUR}"),
        &[
            ("pkg/provider/register/register.go", registrations("provider", PROVIDERS)),
            ("pkg/generator/register/register.go", registrations("generator", GENERATORS)),
        ],
        &[],
    )?;
    GoImage {
        name: "external-secrets",
        about: "External Secrets Operator from its Go module (kubernetes and fake providers)",
        repository: IMAGE_REPOSITORY,
        binary_in_image: "/bin/external-secrets",
        // The distroless image's nobody, as upstream's Dockerfile.
        user: 65534,
        flavour: Some(FLAVOUR),
        args_name_the_binary: false,
        build: WrapperBuild {
            go_mod_extra: format!("{SPRIG_REPLACE}\nreplace {MODULE} => {}", trimmed.display()),
            sums_from: Some(source.dir.join("go.sum")),
            ..WrapperBuild::new(MODULE, VERSION, &[MODULE.to_owned()])
        },
    }
    .ensure(sh, docker)
}

/// A registration list importing only `names` of `pkg/<kind>/`.
fn registrations(kind: &str, names: &[&str]) -> String {
    let imports: String = names.iter().map(|n| format!("\t_ \"{MODULE}/pkg/{kind}/{n}\"\n")).collect();
    format!(
        "// Rewritten by shipshape: only what its clusters use (cluster/external_secrets.rs).\npackage register\n\nimport (\n{imports})\n"
    )
}

/// Builds the controller image (once per version), pushes it to the local registry and
/// installs the operator with its CRDs; waits until its controller runs. Only the controller:
/// its validating webhook and the certificate controller that serves it are left out (they
/// check SecretStore specs on admission, which a local cluster does without).
pub fn install(sh: &Shell, cluster: &RunningCluster) -> Result<()> {
    let source = Go::detect(sh).download(&format!("{MODULE}@{VERSION}"))?;
    let image = controller_image(sh, &Docker::connect(sh)?)?;
    // The chart's CRD templates are generated when upstream packages it; the module has them as
    // one bundle. Applied through the API on every install, so a new version updates them
    // (Helm's crds/ directory would create them once and never update them).
    let bundle = std::fs::read_to_string(source.dir.join("deploy/crds/bundle.yaml")).context("reading the CRD bundle")?;
    let api = cluster.api()?;
    api.run(crate::k8s::apply_crds(api.client(), &bundle))?;
    let chart = AddOnChart {
        what: "External Secrets Operator",
        chart: &source.dir.join("deploy/charts/external-secrets"),
        release: RELEASE,
        namespace: NAMESPACE,
        values: serde_json::json!({
            "fullnameOverride": RELEASE,
            "installCRDs": false,
            "image": {"repository": format!("{}/{IMAGE_REPOSITORY}", super::registry::HOST), "tag": super::go_image::tag_of(&image), "pullPolicy": "IfNotPresent"},
            "webhook": {"create": false},
            "certController": {"create": false},
            "crds": {"conversion": {"enabled": false}},
            // The suite's rotations force a sync; the controller needs no more than one worker.
            "concurrent": 1,
        }),
        // Its optional bitwarden-sdk-server chart, disabled, is in an OCI registry this machine
        // cannot reach.
        drop_dependencies: true,
        workload: Workload::Deployment,
    };
    super::add_on::install(sh, cluster, &image, &chart)
}

/// An external store for tests: the kubernetes provider over the Secrets of `namespace`, as a
/// ClusterSecretStore ([`STORE_NAMESPACE`] in the suite) or a SecretStore of that namespace only,
/// named [`STORE_NAME`] either way. Needs the operator's CRDs ([`install`]).
pub fn install_store(sh: &Shell, api: &crate::k8s::Connection, namespace: &str, kind: &str) -> Result<()> {
    api.run(crate::k8s::ensure_namespace(api.client(), namespace))?;
    let chart = crate::repo_root().join("deploy/kind/charts/secret-store");
    let values = serde_json::json!({"storeName": STORE_NAME, "kind": kind});
    let change = Change::new(api.access(), "shipshape: an external secret store for tests");
    #[allow(clippy::disallowed_methods)] // the tests' store: its own release, no flow around it
    let writer = Writer::new(sh)?;
    writer.upgrade_with(&chart, "secret-store", namespace, &values, &change)
}
