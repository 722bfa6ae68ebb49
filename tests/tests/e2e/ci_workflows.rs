//! The GitHub workflows, played as GitHub would run them: each job a separate process on a
//! fresh runner (no stdin, GitHub's environment variables), in the order the workflow sets.
use std::path::Path;
use std::process::Output;

use crate::fixture::{self, image, unpinned, LoadGenerator, OrPanic, TestNamespace};

/// Each job's `cargo xtask` command lines in `.github/workflows/<file>`, by job name.
fn job_commands(file: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(xtask::repo_root().join(".github/workflows").join(file)).unwrap();
    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_jobs = false;
    for line in text.lines() {
        if line == "jobs:" {
            in_jobs = true;
            continue;
        }
        if !in_jobs {
            continue;
        }
        if line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':') {
            jobs.push((line.trim().trim_end_matches(':').to_owned(), Vec::new()));
        } else if let Some(command) =
            line.trim_start().trim_start_matches("- ").trim_start_matches("run:").trim().strip_prefix("cargo xtask ")
        {
            jobs.last_mut().unwrap().1.push(command.to_owned());
        }
    }
    jobs
}

/// Runs one job's command as a GitHub runner would, in the test's namespace.
fn run_job(ns: &TestNamespace, command: &str, vars: &[(&str, &str)], summary: &Path) -> Output {
    let mut args: Vec<String> = command
        .split_whitespace()
        .map(|w| {
            let w = w.trim_matches('"');
            vars.iter().find(|(name, _)| w == format!("${name}")).map(|(_, v)| v.to_string()).unwrap_or_else(|| w.to_owned())
        })
        .collect();
    args.extend(["--namespace".to_owned(), ns.name.clone()]);
    fixture::xtask_command(ns)
        .args(&args)
        .env("GITHUB_ACTIONS", "true")
        .env("CI", "true")
        .env("GITHUB_ACTOR", "e2e-approver")
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_REPOSITORY", "shipshape/shipshape")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_STEP_SUMMARY", summary)
        .output()
        .unwrap()
}

use fixture::said as text;

#[test]
fn the_deploy_workflow_crosses_its_gate_job_by_job_and_its_abort_job_stops_a_canary() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("workflow-deploy");
    let flow = fixture::stable_at(&ns, &shared.v1);
    let load = LoadGenerator::start(&ns);
    let jobs = job_commands("deploy.yml");
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["preflight", "canary", "promote", "abort"], "{jobs:?}");
    let summaries = tempfile::tempdir().unwrap();

    // The happy path: preflight, canary to the gate, then (after the reviewers approve) promote.
    let vars = [("ENVIRONMENT", "dev"), ("TAG", shared.v2.as_str())];
    for (job, commands) in jobs.iter().take(3) {
        let summary = summaries.path().join(format!("{job}.md"));
        for command in commands {
            // The canary's analysis needs less traffic than production's default minimum.
            let command =
                if job == "canary" { format!("{command} --steps 50 --analysis-seconds 8 --min-requests 20") } else { command.clone() };
            let out = run_job(&ns, &command, &vars, &summary);
            let said = text(&out);
            assert!(out.status.success(), "job {job}: `{command}` failed: {said}");
        }
        let written = std::fs::read_to_string(&summary).unwrap_or_default();
        assert!(!written.trim().is_empty(), "job {job} wrote no step summary");
        if job == "canary" {
            assert!(written.contains("waiting at the approval gate"), "{written}");
        }
        if job == "promote" {
            assert!(written.contains("promoted"), "{written}");
        }
    }
    let state = flow.record().or_panic();
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "the gate was crossed");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let canary = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(canary.actor.starts_with("e2e-approver via https://github.example/shipshape/shipshape/actions/runs/4242"), "{canary:#?}");
    assert_eq!(canary.result, xtask::journal::RunResult::Succeeded);

    // A rejected or cancelled promotion: the abort job stops the next canary; stable unchanged.
    let vars = [("ENVIRONMENT", "dev"), ("TAG", shared.v1.as_str())];
    let canary_command = format!("{} --steps 50 --analysis-seconds 8 --min-requests 20", jobs[1].1[0]);
    let out = run_job(&ns, &canary_command, &vars, &summaries.path().join("canary-2.md"));
    assert!(out.status.success(), "{}", text(&out));
    let out = run_job(&ns, &jobs[3].1[0], &vars, &summaries.path().join("abort.md"));
    assert!(out.status.success(), "{}", text(&out));
    let state = flow.record().or_panic();
    assert!(!state.values.canary.enabled);
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "stable unchanged by the abort");
    load.stats().assert_none_failed();
}
