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

use crate::chart::Env;
use crate::helm::record::ReleaseRecord;
use crate::image::Pinned;
use crate::journal::{Entry, RunResult};
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

/// Where a flow's image comes from: a tag, resolved once to its digest; or what an earlier
/// environment runs, by the digest that was verified there (never its tag resolved again).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Tag(String),
    /// The stable image `environment` runs, already pinned (see [`promoted_from`]), and how it
    /// was found, for the journal.
    Promoted {
        pinned: Pinned,
        environment: Env,
        evidence: String,
    },
}

/// What the person asked to deploy: a tag, or what an earlier environment runs (`--from`, in
/// its own namespace unless `--from-namespace` names another).
#[derive(Clone, Debug, PartialEq)]
pub enum Wanted {
    Tag(String),
    From { env: Env, namespace: Option<String> },
}

impl Wanted {
    /// The source, read before anything changes: a tag checked against OCI's grammar, or the
    /// digest the earlier environment runs and verified (from its own cluster).
    pub fn source(&self, flow: &super::Flow) -> Result<Source> {
        match self {
            Wanted::Tag(tag) => {
                crate::image::check_tag(tag).context("nothing was changed")?;
                Ok(Source::Tag(tag.clone()))
            }
            Wanted::From { env, .. } if *env == flow.target.env => {
                bail!("--from {0}: this is {0} itself; promote from the environment before it", env.name())
            }
            Wanted::From { env, namespace } => promoted_from(flow.sh, *env, namespace.clone(), &flow.target.kubeconfig),
        }
    }
}

impl Source {
    pub fn tag(&self) -> &str {
        match self {
            Source::Tag(tag) => tag,
            Source::Promoted { pinned, .. } => &pinned.tag,
        }
    }

    /// The source in words, for plans.
    pub fn in_words(&self, repository: &str) -> String {
        match self {
            Source::Tag(tag) => format!("{repository}:{tag}"),
            Source::Promoted { pinned, environment, .. } => format!("{} (what {} runs)", pinned.reference(), environment.name()),
        }
    }
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

/// Runs those two steps: the tag resolved once to the digest every later change deploys (or the
/// digest an earlier environment verified, taken as it is), its signature and provenance checked
/// against this environment's policy, and the cluster able to get it; journals image, digest,
/// where it came from and what was proven (facts `to_image`, `to_digest`, `promoted_from`,
/// `signature`).
pub fn source_and_check(run: &mut super::Run, repository: &str, source: &Source, pull_secrets: &[String]) -> Result<Pinned> {
    if let Source::Promoted { pinned, environment, evidence } = source {
        if pinned.repository != repository {
            anyhow::bail!(
                "{} runs {} from {}, but this environment pulls from {repository}: copy the image there by digest first \
                 (nothing was changed)",
                environment.name(),
                pinned.reference(),
                pinned.repository
            );
        }
        run.fact("promoted_from", format!("{}: {evidence}", environment.name()))?;
    }
    let (pinned, proven) = run.step("resolve", |flow| match source {
        Source::Tag(tag) => resolve_verified(flow, repository, tag),
        Source::Promoted { pinned, environment, evidence } => {
            println!("  {} is what {} runs ({evidence}): deployed by that digest, not its tag", pinned.reference(), environment.name());
            Ok((pinned.clone(), verify_pinned(flow, pinned)?))
        }
    })?;
    run.fact("signature", proven)?;
    run.fact("to_image", pinned.reference())?;
    run.fact("to_digest", &pinned.digest)?;
    run.step("check-image", |flow| {
        let found = flow.block_on(ensure_exists(flow.client(), &flow.target.namespace, &pinned.reference(), pull_secrets))?;
        println!("  {found}");
        Ok(())
    })?;
    Ok(pinned)
}

/// Resolves `tag` of the release's repository to its digest, then checks what the environment
/// asks of it (signature and provenance: [`crate::signing::check`], under [`super::Flow::policy`]).
/// Returns the pinned image and what was proven, in words, for the journal.
pub fn resolve_verified(flow: &super::Flow, repository: &str, tag: &str) -> Result<(Pinned, String)> {
    resolve_verified_by(flow, repository, tag, &flow.policy()?)
}

/// [`resolve_verified`] against `policy` (a rollback's: [`crate::signing::Policy::for_rollback`]).
pub fn resolve_verified_by(flow: &super::Flow, repository: &str, tag: &str, policy: &crate::signing::Policy) -> Result<(Pinned, String)> {
    let pinned = resolve(flow.sh, repository, tag)?;
    let proven = crate::signing::check(flow.sh, policy, &pinned)?;
    Ok((pinned, proven))
}

/// Checks a digest already resolved (a canary's, at promotion; an earlier environment's) against
/// this environment's policy: what was judged is what runs, and it still proves what it must.
pub fn verify_pinned(flow: &super::Flow, pinned: &Pinned) -> Result<String> {
    crate::signing::check(flow.sh, &flow.policy()?, pinned)
}

/// What environment `from` runs and verified, read from its own cluster (the context its values
/// name, in `kubeconfig`): its stable tag pinned to the digest its Helm record holds. Refused
/// when that is not settled there: a flow still running, paused or failed; a revision not
/// deployed; no digest recorded; the live Deployment running something else (a hand change).
pub fn promoted_from(sh: &xshell::Shell, from: Env, namespace: Option<String>, kubeconfig: &std::path::Path) -> Result<Source> {
    let source = super::Flow::connect(sh, super::Target::new(from, namespace, Some(kubeconfig), None)?)
        .with_context(|| format!("reaching {}'s cluster to read what it runs", from.name()))?;
    let record = source.record()?;
    let entries = source.block_on(source.journal().entries())?;
    let drift = source.block_on(super::ownership::drift(source.client(), &source.target.namespace, &source.target.release, &record))?;
    let pinned = settled_image(from, &record, entries.last(), drift.is_some())?;
    let revision = record.current().map(|r| r.revision).unwrap_or_default();
    let evidence = match entries.last() {
        Some(last) => format!("Helm revision {revision}, verified by {} {} ({}, {})", last.flow, last.id, last.result, last.actor),
        None => format!("Helm revision {revision}"),
    };
    Ok(Source::Promoted { pinned, environment: from, evidence })
}

/// The stable image `from`'s record pins, when it is settled (see [`promoted_from`]).
pub fn settled_image(from: Env, record: &ReleaseRecord, last_run: Option<&Entry>, drifted: bool) -> Result<Pinned> {
    let name = from.name();
    let Some(current) = record.current() else {
        bail!("{name} has no release installed: nothing to promote from it");
    };
    if current.status != "deployed" {
        bail!("{name}'s Helm revision {} is {}: what runs there is not settled", current.revision, current.status);
    }
    if let Some(run) = last_run.filter(|r| r.result != RunResult::Succeeded) {
        bail!(
            "{name}'s latest flow ({} {}, by {}) is {}: what runs there is not verified; finish it first \
             (`cargo xtask status --env {name}`)",
            run.flow,
            run.id,
            run.actor,
            run.result
        );
    }
    if drifted {
        bail!("{name}'s Deployment runs something other than its Helm record (a hand change): `cargo xtask doctor --env {name}`");
    }
    let tag = record.stable_tag().unwrap_or_default();
    let Some(pinned) = record.values.pinned(tag) else {
        bail!("{name} runs {tag} without a recorded digest (deployed before digests were pinned): deploy it there again first");
    };
    Ok(pinned)
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
    // One name per check, not per process: a second check from the same process (two deploys
    // in a row) met the first one's pod still terminating ("object is being deleted").
    static CHECKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let check = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("shipshape-image-check-{:x}-{check}", std::process::id());
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
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => {}
        // Refused at admission (a full ResourceQuota, a LimitRange, a webhook): in its words.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let advice = wait::refused_pods_advice(&status.message, namespace);
            bail!(
                "the cluster refused the pod that checks it can pull {image} ({}): {advice} (the check needs one short-lived pod \
                 unless a node has the image)",
                status.message
            );
        }
        Err(err) => return Err(err).with_context(|| format!("creating pod {name} to pull {image}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::Revision;

    fn record(status: &str, tag: &str, digest: Option<&str>) -> ReleaseRecord {
        let mut values = serde_json::json!({"image": {"repository": "r/m", "tag": tag}});
        if let Some(digest) = digest {
            values["imageDigests"] = serde_json::json!({tag: digest});
        }
        let revision = Revision {
            revision: 4,
            updated: String::new(),
            status: status.into(),
            chart: String::new(),
            app_version: "0.1.0".into(),
            description: String::new(),
        };
        ReleaseRecord {
            history: vec![revision],
            values: crate::chart::Values::of(&values).unwrap(),
            values_json: values,
            manifest: String::new(),
        }
    }

    fn run(result: RunResult) -> Entry {
        Entry { id: "r1".into(), flow: "canary".into(), actor: "ci".into(), result, ..Default::default() }
    }

    /// A plan names the image as it will be checked: a tag in the target's registry, or the
    /// digest an earlier environment runs, said as coming from there.
    #[test]
    fn a_source_is_said_in_the_plan_as_where_it_comes_from() {
        let tag = Source::Tag("v3".into());
        assert_eq!(
            (tag.tag(), tag.in_words("localhost:5001/shipshape/model-server")),
            ("v3", "localhost:5001/shipshape/model-server:v3".into())
        );
        let digest = format!("sha256:{}", "c".repeat(64));
        let promoted = Source::Promoted {
            pinned: Pinned { repository: "r/m".into(), tag: "v2".into(), digest: digest.clone() },
            environment: Env::Staging,
            evidence: String::new(),
        };
        assert_eq!(promoted.tag(), "v2");
        assert_eq!(promoted.in_words("ignored/when/promoted"), format!("r/m:v2@{digest} (what staging runs)"));
        let [resolve, check] = plan_steps(&promoted.in_words(""));
        assert!(resolve.description.contains("verify its signature and provenance"), "{}", resolve.description);
        assert!(check.description.contains("@<digest>") && check.id == "check-image", "{}", check.description);
    }

    /// Issue 19: prod gets what staging verified, by digest, and only what is settled there.
    #[test]
    fn only_a_settled_image_is_taken_from_an_earlier_environment() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let good = record("deployed", "v2", Some(&digest));
        let pinned = settled_image(Env::Staging, &good, Some(&run(RunResult::Succeeded)), false).unwrap();
        assert_eq!(pinned, Pinned { repository: "r/m".into(), tag: "v2".into(), digest: digest.clone() });
        assert!(settled_image(Env::Staging, &good, None, false).is_ok(), "a release no flow has run on yet");
        let cases: [(ReleaseRecord, Option<Entry>, bool, &str); 6] = [
            (good.clone(), Some(run(RunResult::Paused)), false, "is paused"),
            (good.clone(), Some(run(RunResult::Running)), false, "is running"),
            (good.clone(), Some(run(RunResult::FailedNeedsAttention)), false, "is failed-needs-attention"),
            (good.clone(), Some(run(RunResult::Succeeded)), true, "a hand change"),
            (record("pending-upgrade", "v2", Some(&digest)), None, false, "is pending-upgrade"),
            (record("deployed", "v2", None), None, false, "without a recorded digest"),
        ];
        for (record, last, drifted, said) in cases {
            let refused = settled_image(Env::Staging, &record, last.as_ref(), drifted).unwrap_err().to_string();
            assert!(refused.contains(said) && refused.starts_with("staging"), "{said}: {refused}");
        }
    }
}
