//! "Verify the target image exists" before anything changes. First the tag is resolved, once,
//! to the digest its registry serves ([`resolve`]): every flow deploys `repository:tag@digest`,
//! so what was checked is what runs even if the tag moves. Then the cluster must be able to get
//! it: a node that already has it answers at once (Node status lists its images); otherwise a
//! short-lived pod pulls it, with the cluster's own credentials, exactly as the rollout would.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;

use crate::image::Pinned;
use crate::k8s::wait::{self, Progress};

/// A pull that has not finished (or failed) within this is reported as unknown.
const PULL_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the image was found.
pub async fn ensure_exists(client: &kube::Client, namespace: &str, image: &str, pull_secrets: &[String]) -> Result<String> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.context("listing nodes")?;
    for node in &nodes {
        let listed = node.status.as_ref().and_then(|s| s.images.as_ref()).into_iter().flatten();
        if listed.flat_map(|i| i.names.iter().flatten()).any(|name| crate::image::same_content(name, image)) {
            return Ok(format!("image {image} is present on node {}", node.metadata.name.clone().unwrap_or_default()));
        }
    }
    pull(client, namespace, image, pull_secrets).await
}

/// The two steps that open every flow that changes what runs, in its plan.
pub fn plan_steps(image: &str) -> [super::Step; 2] {
    [
        super::step("resolve", format!("resolve {image} to its digest; verify its signature and provenance as the environment asks")),
        super::step(
            "check-image",
            format!("check that the cluster can get {image}@<digest> (on a node, or by pulling it inside the cluster)"),
        ),
    ]
}

/// Runs those two steps: the tag resolved once to the digest every later change deploys, its
/// signature and provenance checked, and the cluster able to get it; journals image, digest and
/// what was proven (facts `to_image`, `to_digest`, `signature`).
pub fn resolve_and_check(run: &mut super::Run, repository: &str, tag: &str, pull_secrets: &[String]) -> Result<Pinned> {
    let (pinned, proven) = run.step("resolve", |flow| resolve_verified(flow, repository, tag))?;
    run.fact("signature", proven)?;
    run.fact("to_image", pinned.reference())?;
    run.fact("to_digest", &pinned.digest)?;
    run.step("check-image", |flow| {
        let found = flow.block_on(ensure_exists(&flow.client, &flow.target.namespace, &pinned.reference(), pull_secrets))?;
        println!("  {found}");
        Ok(())
    })?;
    Ok(pinned)
}

/// Resolves `tag` of the release's repository to its digest, then checks what the environment
/// asks of it (signature and provenance: [`crate::signing::check`], under [`super::Flow::policy`]).
/// Returns the pinned image and what was proven, in words, for the journal.
pub fn resolve_verified(flow: &super::Flow, repository: &str, tag: &str) -> Result<(Pinned, String)> {
    let policy = flow.policy()?;
    let pinned = resolve(flow.sh, repository, tag)?;
    let proven = crate::signing::check(flow.sh, &policy, &pinned)?;
    Ok((pinned, proven))
}

/// Checks a digest already resolved (a canary's, at promotion) against the environment's policy
/// again: what the analysis judged is what is promoted, and it still proves what it must.
pub fn verify_pinned(flow: &super::Flow, pinned: &Pinned) -> Result<String> {
    crate::signing::check(flow.sh, &flow.policy()?, pinned)
}

/// Resolves `repository:tag` to the digest its registry serves, once, before any change.
pub fn resolve(sh: &xshell::Shell, repository: &str, tag: &str) -> Result<Pinned> {
    let reference = format!("{repository}:{tag}");
    let crane = crate::crane::Crane::new(sh)?;
    match crane.digest(&reference) {
        Ok(digest) => {
            println!("  {reference} is {digest} in its registry (what runs is pinned to it)");
            Ok(Pinned { repository: repository.to_owned(), tag: tag.to_owned(), digest })
        }
        Err(err) => {
            let why = format!("{err:#}");
            let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&why).trim().to_owned();
            let hint = if repository.starts_with(crate::cluster::registry::HOST) {
                format!("push it first: `cargo xtask image build --tag {tag}` builds and pushes it to the local registry")
            } else {
                "push it to that registry first (and `docker login` to it if it needs credentials)".to_owned()
            };
            bail!("image {reference} cannot be used: its registry does not serve it ({why}); {hint}")
        }
    }
}

async fn pull(client: &kube::Client, namespace: &str, image: &str, pull_secrets: &[String]) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let name = format!("shipshape-image-check-{:x}", std::process::id());
    let secrets: Vec<_> = pull_secrets.iter().map(|s| json!({"name": s})).collect();
    // The container only has to exist: once the image is pulled its start may fail, which is fine.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "shipshape", "app.kubernetes.io/component": "image-check"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "imagePullSecrets": secrets,
            "containers": [{"name": "check", "image": image, "imagePullPolicy": "IfNotPresent", "args": ["--version"],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
        }
    }))?;
    let _ = pods.delete(&name, &DeleteParams::default()).await;
    pods.create(&PostParams::default(), &pod).await.with_context(|| format!("creating pod {name} to pull {image}"))?;
    let outcome = wait::until(
        pods.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        &format!("pulling {image}"),
        PULL_TIMEOUT,
        |found| {
            let Some(pod) = found.first() else { return Progress::Waiting("pod not created yet".to_owned()) };
            let Some(status) = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|s| s.first()) else {
                return Progress::Waiting("scheduling".to_owned());
            };
            let state = status.state.as_ref();
            if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
                return Progress::Done(format!("image {image} pulled"));
            }
            match state
                .and_then(|s| s.waiting.as_ref())
                .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()))
            {
                Some((reason, message))
                    if matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull") =>
                {
                    Progress::Failed(format!("{reason}: {message}"))
                }
                Some((reason, _)) if reason == "ContainerCreating" => Progress::Waiting("pulling".to_owned()),
                // Pulled, then failed to start (e.g. no such entrypoint flag): the image exists.
                Some((reason, _)) => Progress::Done(format!("image {image} pulled ({reason})")),
                None => Progress::Waiting("pulling".to_owned()),
            }
        },
    )
    .await;
    let _ = pods.delete(&name, &DeleteParams::default()).await;
    match outcome {
        Ok(found) => Ok(found),
        Err(err) => bail!("image {image} cannot be used: no node has it and pulling it failed: {err:#}"),
    }
}
