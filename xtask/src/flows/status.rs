//! `cargo xtask status`: Helm's revisions beside the journal's account of each run.
use anyhow::Result;
use serde::Serialize;

use super::Flow;
use crate::helm::Revision;
use crate::journal::Entry;
use crate::report::{self, Outcome, Output};

#[derive(Serialize)]
struct Standing {
    release: String,
    namespace: String,
    running_now: Option<String>,
    /// Healthy, degraded, paused or changing, from the latest run and the Lease.
    standing: report::Standing,
    revisions: Vec<Revision>,
    runs: Vec<Entry>,
}

/// `cargo xtask status`: Helm's revisions and the last `last` journal entries. Its outcome is
/// always a pass (it could say); where the release stands ends a `--watch --timeout`.
pub fn show(flow: &Flow, last: usize, output: Output) -> Result<report::Round> {
    let t = &flow.target;
    let state = flow.record()?;
    let mut runs = flow.block_on(flow.journal().entries())?;
    let running_now = flow.lease_holder()?;
    let standing = match runs.last() {
        None if !state.is_installed() => report::Standing::Degraded,
        latest => report::Standing::of(latest.map(|r| r.result), running_now.is_some()),
    };
    runs.drain(..runs.len().saturating_sub(last));
    let standing =
        Standing { release: t.release.clone(), namespace: t.namespace.clone(), running_now, standing, revisions: state.history, runs };
    match output {
        Output::Json => report::print_json(&standing)?,
        Output::Human => print(&standing),
    }
    Ok(report::Round { outcome: Outcome::Pass, standing: Some(standing.standing) })
}

fn print(s: &Standing) {
    println!("release {} in {}: {}", s.release, s.namespace, s.standing.word());
    if s.revisions.is_empty() {
        println!("  not installed");
    }
    println!("helm revisions:");
    for r in &s.revisions {
        let description = r.description.lines().next().unwrap_or_default();
        let description: String = description.chars().take(100).collect();
        println!("  {:>3}  {:<16} {:<20} {description}", r.revision, r.status, r.updated.get(..19).unwrap_or(&r.updated));
    }
    println!("shipshape runs (journal, newest last):");
    if s.runs.is_empty() {
        println!("  none recorded");
    }
    for run in &s.runs {
        // "running" with no live process holding the release for it: killed mid-flow.
        let held = s.running_now.as_deref().is_some_and(|holder| holder.contains(&run.id));
        let result = match run.result {
            crate::journal::RunResult::Running if !held => "interrupted".to_owned(),
            result => result.word().to_owned(),
        };
        let facts: Vec<String> = ["from_image", "to_image", "promoted_from", "drift"]
            .iter()
            .filter_map(|k| run.facts.get(*k).map(|v| format!("{}={v}", k)))
            .collect();
        println!(
            "  {}  {:<13} {:<24} by {}  {} {}",
            run.started,
            run.flow,
            result,
            run.actor,
            run.args,
            if facts.is_empty() { String::new() } else { format!("[{}]", facts.join(", ")) }
        );
        if let Some(error) = &run.error {
            println!("      error: {error}");
        }
        if run.result == crate::journal::RunResult::Paused {
            if let Some(why) = run.facts.get("paused").filter(|w| !w.is_empty()) {
                println!("      paused: {why}");
            }
        }
        if run.result == crate::journal::RunResult::Running {
            if let Some(step) = run.steps.last() {
                println!("      at step {}: {} ({})", step.id, step.description, step.status.word());
            }
            if !held {
                println!("      its process is gone: {}", way_on_after_a_kill(&run.flow));
            }
        }
    }
    match &s.running_now {
        Some(holder) => println!("running now: {holder}"),
        None => println!("running now: nothing"),
    }
}

/// What carries on, or undoes, a run of `flow` whose process died.
fn way_on_after_a_kill(flow: &str) -> String {
    match flow {
        "bluegreen" => "`cargo xtask bluegreen resume` carries it on, `cargo xtask bluegreen rollback` undoes it".to_owned(),
        "canary" => "`cargo xtask canary resume` carries it on, `cargo xtask canary abort` undoes it".to_owned(),
        other => format!("`cargo xtask doctor` shows what it left; run `{other}` again, or `cargo xtask rollback` to undo it"),
    }
}
