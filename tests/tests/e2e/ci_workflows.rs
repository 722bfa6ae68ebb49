//! The GitHub workflows, played as GitHub would run them: each job a separate process on a
//! fresh runner (no stdin, GitHub's environment variables, a step summary and an outputs file),
//! in the order the workflow sets, with each job's `if:` and each step's shell tail (`|| test
//! "$?" -eq 3`) evaluated here the way the runner would (these expressions are simple; a real
//! runner is issue 24's).
use std::process::Output;

use xtask::flows::canary::EXIT_PAUSED_WITHOUT_EVIDENCE;

use crate::fixture::{self, image, unpinned, LoadGenerator, OrPanic, TestNamespace};

/// Each job's `cargo xtask` commands in `.github/workflows/<file>`, by job name, each with the
/// shell after it (`|| test "$?" -eq 3`), if any.
fn job_commands(file: &str) -> Vec<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(xtask::repo_root().join(".github/workflows").join(file)).unwrap();
    let mut jobs: Vec<(String, Vec<(String, String)>)> = Vec::new();
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
            let (command, tail) = command.split_once(" || ").unwrap_or((command, ""));
            jobs.last_mut().unwrap().1.push((command.to_owned(), tail.to_owned()));
        }
    }
    jobs
}

/// A job's step as the runner ends it: its exit code, after the shell tail.
fn step_succeeded(out: &Output, tail: &str) -> bool {
    match tail {
        "" => out.status.success(),
        // The canary job's tail: a canary paused without evidence is not a failure of the job.
        r#"test "$?" -eq 3"# => out.status.success() || out.status.code() == Some(EXIT_PAUSED_WITHOUT_EVIDENCE.into()),
        other => panic!("the workflow's step ends with shell this replay does not know: `|| {other}`"),
    }
}

/// One run of the workflow: GitHub's variables, and the files a job writes for the next.
struct WorkflowRun<'n> {
    ns: &'n TestNamespace,
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl<'n> WorkflowRun<'n> {
    fn new(ns: &'n TestNamespace, environment: &str, tag: &str) -> WorkflowRun<'n> {
        let vars = vec![("ENVIRONMENT".to_owned(), environment.to_owned()), ("TAG".to_owned(), tag.to_owned())];
        WorkflowRun { ns, dir: tempfile::tempdir().unwrap(), vars }
    }

    /// Runs one job's command as a GitHub runner would, in the test's namespace; the job's
    /// outputs (`$GITHUB_OUTPUT`) and summary go to files named after it.
    fn job(&mut self, job: &str, command: &str, extra_args: &str) -> Output {
        let mut args: Vec<String> = command
            .split_whitespace()
            .map(|w| {
                let w = w.trim_matches('"');
                self.vars.iter().find(|(name, _)| w == format!("${name}")).map(|(_, v)| v.to_string()).unwrap_or_else(|| w.to_owned())
            })
            .collect();
        args.extend(extra_args.split_whitespace().map(str::to_owned));
        args.extend(["--namespace".to_owned(), self.ns.name.clone()]);
        fixture::xtask_command(self.ns)
            .args(&args)
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("GITHUB_ACTOR", "e2e-approver")
            .env("GITHUB_SERVER_URL", "https://github.example")
            .env("GITHUB_REPOSITORY", "shipshape/shipshape")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_STEP_SUMMARY", self.dir.path().join(format!("{job}.md")))
            .env("GITHUB_OUTPUT", self.dir.path().join(format!("{job}.outputs")))
            .output()
            .unwrap()
    }

    fn summary(&self, job: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{job}.md"))).unwrap_or_default()
    }

    /// `needs.<job>.outputs.<name>`: the last value the job wrote.
    fn output(&self, job: &str, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{job}.outputs"))).unwrap_or_default();
        text.lines().rev().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
    }

    /// The canary job's outputs as the later jobs' `RUN` (their `env:`).
    fn take_canary_outputs(&mut self) {
        let run = self.output("canary", "run");
        self.vars.push(("RUN".to_owned(), run));
    }
}

use fixture::said as text;

/// The canary's analysis in these tests needs less traffic than production's default minimum.
const SHORT_ANALYSIS: &str = "--steps 50 --analysis-seconds 8 --min-requests 20";

#[test]
fn the_deploy_workflow_crosses_its_gate_job_by_job_and_its_abort_job_stops_a_failing_canary() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("workflow-deploy");
    let flow = fixture::stable_at(&ns, &shared.v1);
    let load = LoadGenerator::start(&ns);
    let jobs = job_commands("deploy.yml");
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["preflight", "canary", "promote", "abort"], "{jobs:?}");
    let command = |job: usize| jobs[job].1[0].clone();

    // The happy path: preflight, canary to the gate, then (after the reviewers approve) promote.
    let mut run = WorkflowRun::new(&ns, "dev", &shared.v2);
    let out = run.job("preflight", &command(0).0, "");
    assert!(step_succeeded(&out, &command(0).1), "preflight: {}", text(&out));
    let out = run.job("canary", &command(1).0, SHORT_ANALYSIS);
    assert!(step_succeeded(&out, &command(1).1), "canary: {}", text(&out));
    assert_eq!(run.output("canary", "outcome"), "gate", "the promote job's `if:` reads this");
    assert!(run.summary("canary").contains("waiting at the approval gate"), "{}", run.summary("canary"));
    run.take_canary_outputs();
    let out = run.job("promote", &command(2).0, "");
    assert!(step_succeeded(&out, &command(2).1), "promote: {}", text(&out));
    assert!(run.summary("promote").contains("promoted"), "{}", run.summary("promote"));
    let state = flow.record().or_panic();
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "the gate was crossed");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let canary = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(canary.actor.starts_with("e2e-approver via https://github.example/shipshape/shipshape/actions/runs/4242"), "{canary:#?}");
    assert_eq!(canary.result, xtask::journal::RunResult::Succeeded);

    // A canary that fails its analysis aborts itself and fails its job; the abort job (failure
    // in `needs`) then runs and says it is already aborted: exit 0, not a second red.
    let mut run = WorkflowRun::new(&ns, "dev", &shared.failing_half);
    let out = run.job("canary", &command(1).0, SHORT_ANALYSIS);
    assert!(!step_succeeded(&out, &command(1).1), "a failing canary fails its job: {}", text(&out));
    assert_eq!(run.output("canary", "outcome"), "aborted");
    run.take_canary_outputs();
    let out = run.job("abort", &command(3).0, "");
    let said = text(&out);
    assert!(out.status.success() && said.contains("already aborted"), "the abort job after a self-abort: {said}");
    let state = flow.record().or_panic();
    assert!(!state.values.canary.enabled);
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "stable unchanged");

    // A cancelled promotion: the abort job stops this run's canary, and only this run's.
    let mut run = WorkflowRun::new(&ns, "dev", &shared.v1);
    let out = run.job("canary", &command(1).0, SHORT_ANALYSIS);
    assert!(step_succeeded(&out, &command(1).1), "{}", text(&out));
    run.take_canary_outputs();
    let mut other = WorkflowRun::new(&ns, "dev", &shared.v1);
    other.vars.push(("RUN".to_owned(), "20261205T000000Z-canary-0000".to_owned()));
    let out = other.job("abort", &command(3).0, "");
    assert!(!out.status.success() && text(&out).contains("not run 20261205T000000Z-canary-0000"), "{}", text(&out));
    assert!(flow.record().or_panic().values.canary.enabled, "another run's abort left this canary alone");
    let out = run.job("abort", &command(3).0, "");
    assert!(out.status.success(), "{}", text(&out));
    let state = flow.record().or_panic();
    assert!(!state.values.canary.enabled);
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "stable unchanged by the abort");
    // The failing canary answered some requests with its own 500s before its analysis stopped
    // it; those are the only failures the users saw.
    let stats = load.stats();
    let bad_canary = stats.by_version.get(&shared.failing_half).map_or(0, |v| v.failed);
    assert!(stats.ok > 100, "{stats:?}");
    assert_eq!(stats.failed, bad_canary, "the failing canary's own answers are the only failures: {}", stats.failures_in_words());
}

/// Too little traffic for the analysis: the canary pauses without evidence (exit 3). The job
/// does not fail, so the abort job does not run, and the promote job's `if:` skips it: the
/// canary waits for a person, who resumes, promotes or aborts it.
#[test]
fn an_inconclusive_canary_in_the_deploy_workflow_stays_paused_for_a_person() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("workflow-paused");
    let flow = fixture::stable_at(&ns, &shared.v1);
    let jobs = job_commands("deploy.yml");
    let canary = jobs[1].1[0].clone();
    let mut run = WorkflowRun::new(&ns, "dev", &shared.v2);
    // No load generator: the analysis sees no canary traffic at all.
    let out = run.job("canary", &canary.0, "--steps 50 --analysis-seconds 4 --min-requests 20");
    assert_eq!(out.status.code(), Some(EXIT_PAUSED_WITHOUT_EVIDENCE.into()), "{}", text(&out));
    assert!(step_succeeded(&out, &canary.1), "the job succeeds: the pause is for a person");
    assert_eq!(run.output("canary", "outcome"), "paused", "promote's `if:` skips it; abort's sees no failure");
    assert!(run.summary("canary").contains("paused without evidence"), "{}", run.summary("canary"));
    let state = flow.record().or_panic();
    assert!(state.values.canary.enabled, "the canary still runs, waiting for a person");
    let status = fixture::xtask_command(&ns).args(["canary", "status", "--namespace", &ns.name]).output().unwrap();
    assert!(text(&status).contains("paused without evidence") && text(&status).contains("canary resume"), "{}", text(&status));
    // The person decides: abort.
    let aborted = xtask::flows::canary::continue_canary(&ns.flow(), xtask::flows::canary::Request::Abort, None).or_panic();
    assert_eq!(aborted.phase, xtask::flows::canary::Phase::Aborted);
}
