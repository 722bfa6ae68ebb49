//! `cargo xtask reload`: the canary runbook's "refresh the running pods with the new model":
//! the admin token from its Secret (only its length shown), `POST /admin/reload` on every pod.
use anyhow::{bail, Result};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde::Serialize;

use super::{print_plan, step, Ending, Flow, Run, Undo};
use crate::k8s::{pods, proxy, secrets};

/// One pod's answer to `POST /admin/reload`.
#[derive(Serialize, Clone, Debug)]
pub struct PodAnswer {
    pub pod: String,
    pub track: String,
    pub status: u16,
    pub body: String,
}

pub fn reload(flow: &Flow, dry_run: bool) -> Result<Vec<PodAnswer>> {
    let t = &flow.target;
    let state = flow.record()?;
    if !state.is_installed() {
        bail!("release {} is not installed in namespace {}", t.release, t.namespace);
    }
    let (secret, key) = state.values.admin_token_secret();
    if state.values.env.model_auto_refresh_seconds > 0 {
        println!("note: the release reloads its model by itself (env.modelAutoRefreshSeconds); reloading now anyway");
    }
    let plan = vec![
        step("read-token", format!("read the admin token from Secret {secret}, key {key} (only its length is printed)")),
        step("reload", "POST /admin/reload with X-Admin-Token on every ready pod of stable and canary"),
    ];
    if dry_run {
        print_plan("reload", t, &plan);
        return Ok(Vec::new());
    }
    let mut run = Run::begin(flow, "reload", String::new(), plan)?;
    let body = (|| -> Result<Ending<Vec<PodAnswer>>> {
        let token = run.step("read-token", |flow| {
            let token = flow.block_on(secrets::read_key(&Api::<Secret>::namespaced(flow.client().clone(), &t.namespace), &secret, &key))?;
            println!("  admin token retrieved (length: {})", token.len());
            Ok(token)
        })?;
        run.step("reload", |flow| {
            let answers = flow.block_on(post_reload(&flow.pod_client, &t.namespace, &t.release, &token))?;
            for a in &answers {
                println!("  {:<7} {} -> {} {}", a.track, a.pod, a.status, a.body.trim());
            }
            let failed = answers.iter().filter(|a| a.status != 200).count();
            if failed > 0 {
                bail!("{failed} of {} pods did not reload", answers.len());
            }
            Ok(Ending::Succeeded(answers))
        })
    })();
    // A reload changes no desired state; there is nothing to undo.
    run.end(body, Undo::Nothing)
}

/// `POST /admin/reload` with `token` on every ready pod of the release.
pub async fn post_reload(client: &kube::Client, namespace: &str, release_name: &str, token: &str) -> Result<Vec<PodAnswer>> {
    let pods = pods::ready(client, namespace, release_name).await?;
    if pods.is_empty() {
        bail!("release {release_name} has no ready pods to reload");
    }
    let answers = join_all(pods.iter().map(|pod| {
        let name = pod.metadata.name.clone().unwrap_or_default();
        async move { proxy::post_pod(client, namespace, &name, pods::http_port(pod), "/admin/reload", ("X-Admin-Token", token)).await }
    }))
    .await;
    pods.iter()
        .zip(answers)
        .map(|(pod, answer)| {
            let answer = answer?;
            Ok(PodAnswer {
                pod: pod.metadata.name.clone().unwrap_or_default(),
                track: pods::track_of(pod),
                status: answer.status,
                body: answer.body,
            })
        })
        .collect()
}
