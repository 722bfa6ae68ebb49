//! `cargo xtask preflight`: the runbooks' prerequisite checks, one line each, with the fix.
use std::time::Instant;

use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use super::{findings, Flow};
use crate::cluster::node_image::{self, KUBERNETES_VERSION};
use crate::report::{self, Check, Outcome, Output};
use crate::tools::HELM;

/// `cargo xtask preflight`: the checks, printed (or as JSON); Fail when one failed (warnings,
/// such as no kubectl for you to use, do not stop a deployment).
pub fn show(flow: &Flow, output: Output) -> Result<Outcome> {
    let checks = preflight(flow)?;
    let outcome = report::emit("preflight", &flow.target.namespace, &checks, output, "checks", |o| o.label().to_owned())?;
    Ok(if outcome == Outcome::Fail { Outcome::Fail } else { Outcome::Pass })
}

pub fn preflight(flow: &Flow) -> Result<Vec<Check>> {
    let t = &flow.target;
    let mut checks = Vec::new();
    let timed = |started: Instant, mut check: Check| {
        check.seconds = started.elapsed().as_secs_f64();
        check
    };

    let started = Instant::now();
    let server = flow.block_on(flow.client().apiserver_version());
    let reachable = server.is_ok();
    checks.push(timed(
        started,
        match &server {
            Ok(info) => Check::new("cluster reachable", Outcome::Pass, format!("Kubernetes {} answers", info.git_version)),
            Err(err) => Check::new("cluster reachable", Outcome::Fail, format!("{err}"))
                .with_fix("check the kubeconfig printed above; for the local cluster run `cargo xtask up`"),
        },
    ));
    if !reachable {
        return Ok(checks);
    }

    let started = Instant::now();
    let namespace = flow.block_on(Api::<Namespace>::all(flow.client().clone()).get_opt(&t.namespace));
    checks.push(timed(
        started,
        match namespace {
            Ok(Some(_)) => Check::new("namespace", Outcome::Pass, format!("{} exists", t.namespace)),
            Ok(None) => Check::new("namespace", Outcome::Fail, format!("{} does not exist", t.namespace)).with_fix(format!(
                "create it (kubectl create namespace {}) with its Secrets; `cargo xtask up` does both for dev",
                t.namespace
            )),
            Err(err) => Check::new("namespace", Outcome::Fail, format!("cannot read namespace {}: {err}", t.namespace)),
        },
    ));

    let started = Instant::now();
    checks.push(timed(
        started,
        match flow.helm()?.version() {
            Ok(version) if version == HELM.version => Check::new("helm", Outcome::Pass, format!("{version} (pinned)")),
            Ok(version) => {
                Check::new("helm", Outcome::Fail, format!("{version}, pinned {}", HELM.version)).with_fix("cargo xtask tools install")
            }
            Err(err) => Check::new("helm", Outcome::Fail, format!("{err:#}")).with_fix("cargo xtask tools install"),
        },
    ));
    let server_version = server.map(|s| s.git_version).unwrap_or_default();
    checks.push(match node_image::built_kubectl()? {
        Some(path) if minor(&server_version).abs_diff(minor(KUBERNETES_VERSION)) <= 1 => Check::new(
            "kubectl",
            Outcome::Pass,
            format!("{KUBERNETES_VERSION} at {} (server {server_version}, within one minor version)", path.display()),
        ),
        Some(_) => Check::new(
            "kubectl",
            Outcome::Warn,
            format!("pinned {KUBERNETES_VERSION} is more than one minor version from the server's {server_version}"),
        )
        .with_fix("use a kubectl within one minor version of the server for manual work"),
        None => Check::new(
            "kubectl",
            Outcome::Warn,
            format!("the pinned kubectl {KUBERNETES_VERSION} is not built (shipshape itself never runs kubectl)"),
        )
        .with_fix("`cargo xtask cluster image` builds it with the node image"),
    });

    let state = flow.record()?;
    // Before the first install, check what the environment's values will reference.
    let values = if state.is_installed() { state.values.clone() } else { flow.environment()? };
    let started = Instant::now();
    let secret_checks = flow.block_on(findings::secrets_present(flow.client(), t, &values));
    checks.extend(secret_checks.into_iter().map(|c| timed(started, c)));
    let started = Instant::now();
    if let Some(check) = flow.block_on(findings::model_registry_credentials(flow.client(), t, &values)) {
        checks.push(timed(started, check));
    }
    let started = Instant::now();
    let rbac_checks = flow.block_on(findings::rbac(flow.client(), t, &values, state.is_installed()));
    checks.extend(rbac_checks.into_iter().map(|c| timed(started, c)));
    checks.push(findings::helm_not_pending(&state));
    checks.push(flow.block_on(findings::no_flow_running(flow.client(), t)));
    let started = Instant::now();
    if let Some(check) = flow.block_on(super::admission::held(flow.client(), t.env.name(), &t.namespace, &values.supply_chain)) {
        checks.push(timed(started, check));
    }
    Ok(checks)
}

/// The minor version of `v1.34.0`.
fn minor(version: &str) -> u32 {
    version.trim_start_matches('v').split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// The server's minor version against the pinned kubectl's: kubectl supports one minor either way.
    #[test]
    fn a_minor_version_is_read_from_either_spelling() {
        assert_eq!(super::minor("v1.34.0"), 34);
        assert_eq!(super::minor("1.33.2+k3s1"), 33);
        assert_eq!(super::minor("v1.35.0-rc.1"), 35);
        assert_eq!(super::minor("garbage"), 0, "unknown: never within one minor of the pin");
    }
}
