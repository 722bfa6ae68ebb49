//! The GitHub workflows as a runner runs them. Under act (nektos/act), a real runner: the job
//! graph, `needs:`, `if:`, outputs and secrets as GitHub's syntax says ([`ActRun`]). Played job
//! by job too, where a test needs to step between jobs (another run's abort): each job a
//! separate process on a fresh runner (no stdin, GitHub's environment variables, a step summary
//! and an outputs file), with each step's shell tail (`|| test "$?" -eq 3`) evaluated here.
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

/// A cancelled promotion, job by job: the abort job stops this run's canary, and only this
/// run's (another run's `RUN` is refused). The whole workflow under a runner, the happy path and
/// a failing canary's abort job: [`act_runs_the_deploy_workflow_through_its_gate_and_its_abort_job_after_a_failing_canary_then_the_rollback_workflow`].
#[test]
fn the_deploy_workflow_s_abort_job_stops_only_its_own_run_s_canary() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("workflow-deploy");
    let flow = fixture::stable_at(&ns, &shared.v2);
    let load = LoadGenerator::start(&ns);
    let jobs = job_commands("deploy.yml");
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["preflight", "canary", "promote", "abort"], "{jobs:?}");
    let command = |job: usize| jobs[job].1[0].clone();

    let mut run = WorkflowRun::new(&ns, "dev", &shared.v1);
    let out = run.job("canary", &command(1).0, SHORT_ANALYSIS);
    assert!(step_succeeded(&out, &command(1).1), "{}", text(&out));
    assert_eq!(run.output("canary", "outcome"), "gate", "the promote job's `if:` reads this");
    assert!(run.summary("canary").contains("waiting at the approval gate"), "{}", run.summary("canary"));
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
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let canary = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(canary.actor.starts_with("e2e-approver via https://github.example/shipshape/shipshape/actions/runs/4242"), "{canary:#?}");
    load.stats().assert_none_failed();
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

/// One workflow run by act (nektos/act), a GitHub Actions runner, its jobs on this machine
/// (`-P ubuntu-24.04=-self-hosted`): the job graph, `needs:`, `if:`, outputs, `env:`, secrets
/// and the composite action are evaluated by act, not by this file. Stand-ins, each said in
/// tests/act/README.md: the third-party actions (no machine here can clone them), and `cargo
/// xtask`, which runs the suite's xtask binary (built from this tree) instead of compiling it
/// again in each job's copy of the tree (80 s a job).
struct ActRun {
    out: Output,
    /// act's log, stdout and stderr.
    log: String,
    _dir: tempfile::TempDir,
}

impl ActRun {
    /// `workflow_dispatch` of `.github/workflows/<file>` as `request` says, with the
    /// namespace's cluster as the KUBECONFIG secret.
    fn dispatch(ns: &TestNamespace, file: &str, request: &ActRequest) -> ActRun {
        let sh = xtask::repo_shell().unwrap();
        let act = xtask::tools::ACT.find(&sh).or_panic();
        let dir = tempfile::tempdir().unwrap();
        // The KUBECONFIG secret: the kubeconfig as one line of JSON, single-quoted (dotenv).
        let kubeconfig = kube::config::Kubeconfig::read_from(&ns.kubeconfig).unwrap();
        let secrets = dir.path().join("secrets");
        let mut dotenv = format!("KUBECONFIG='{}'\n", serde_json::to_string(&kubeconfig).unwrap());
        for (name, value) in &request.secrets {
            // Double-quoted, newlines escaped: a PEM key is several lines.
            dotenv.push_str(&format!("{name}=\"{}\"\n", value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")));
        }
        std::fs::write(&secrets, dotenv).unwrap();
        // `cargo xtask` in a job: the suite's binary; any other cargo command: cargo itself.
        let shims = dir.path().join("bin");
        std::fs::create_dir(&shims).unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let shim = shims.join("cargo");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\n# The suite's xtask binary for `cargo xtask` (tests/act/README.md).\nif [ \"$1\" = xtask ]; then shift; exec '{}' \"$@\"; fi\nexec '{cargo}' \"$@\"\n",
                fixture::xtask_binary().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        for (name, from) in &request.artifacts {
            let copied = std::process::Command::new("cp").arg("-R").arg(from).arg(artifacts.join(name)).status().unwrap();
            assert!(copied.success(), "copying artifact {name} from {}", from.display());
        }

        let mut command = std::process::Command::new(act);
        command
            .current_dir(xtask::repo_root())
            .args(["workflow_dispatch", "-W", &format!(".github/workflows/{file}"), "-P", "ubuntu-24.04=-self-hosted"])
            .args(["--secret-file", secrets.to_str().unwrap(), "--actor", "e2e-approver", "--action-offline-mode"])
            .env("PATH", format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default()))
            .env("SHIPSHAPE_ACT_ARTIFACTS", &artifacts)
            .stdin(std::process::Stdio::null());
        for (action, stand_in) in stand_ins() {
            command.args(["--local-repository", &format!("{action}={}", stand_in.display())]);
        }
        for (name, value) in &request.inputs {
            command.args(["--input", &format!("{name}={value}")]);
        }
        for (name, value) in &request.env {
            command.args(["--env", &format!("{name}={value}")]);
        }
        for (name, value) in &request.vars {
            command.args(["--var", &format!("{name}={value}")]);
        }
        let out = command.output().unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        ActRun { out, log, _dir: dir }
    }

    /// How act ended the job named `name` (its `name:`): Some("succeeded"), Some("failed"), or
    /// None when it never ran (its `if:` was false).
    fn job(&self, name: &str) -> Option<&'static str> {
        // act prefixes each line with `[<workflow>/<job name, padded to the longest>]`.
        let of_job = |line: &&str| {
            let prefix = line.strip_prefix('[').and_then(|l| l.split_once(']')).map(|(inside, _)| inside);
            prefix.and_then(|p| p.split_once('/')).is_some_and(|(_, job)| job.trim_end() == name)
        };
        let lines = self.log.lines().filter(of_job);
        let mut ended = None;
        for line in lines {
            if line.contains("Job succeeded") {
                ended = Some("succeeded");
            } else if line.contains("Job failed") {
                ended = Some("failed");
            }
        }
        ended
    }
}

/// What a dispatch gives act besides the KUBECONFIG secret.
#[derive(Default)]
struct ActRequest {
    /// The workflow's `inputs`.
    inputs: Vec<(String, String)>,
    /// The jobs' environment (act's `--env`).
    env: Vec<(String, String)>,
    /// Secrets besides KUBECONFIG.
    secrets: Vec<(String, String)>,
    /// Repository variables (`vars.*`).
    vars: Vec<(String, String)>,
    /// Artifacts of an earlier run, by name: directories the download stand-in finds.
    artifacts: Vec<(String, std::path::PathBuf)>,
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every third-party action the workflows use, pinned as they pin it (`owner/repo@sha`), and its
/// stand-in in tests/act; `actions/checkout` needs none (act copies the local tree).
fn stand_ins() -> Vec<(String, std::path::PathBuf)> {
    let known = [
        ("actions/setup-go", "setup-go"),
        ("actions/cache", "cache"),
        ("actions/upload-artifact", "upload-artifact"),
        ("actions/download-artifact", "download-artifact"),
        ("docker/login-action", "login"),
    ];
    let mut found = std::collections::BTreeMap::new();
    let github = xtask::repo_root().join(".github");
    let files =
        ["workflows/ci.yml", "workflows/deploy.yml", "workflows/release.yml", "workflows/rollback.yml", "actions/shipshape/action.yml"];
    for file in files {
        let text = std::fs::read_to_string(github.join(file)).unwrap();
        for line in text.lines() {
            let Some(uses) = line.split("uses:").nth(1).map(|u| u.split('#').next().unwrap_or_default().trim()) else { continue };
            let Some((action, _)) = uses.split_once('@') else { continue };
            if action == "actions/checkout" {
                continue;
            }
            let stand_in = known.iter().find(|(name, _)| *name == action).map(|(_, dir)| xtask::repo_root().join("tests/act").join(dir));
            let stand_in = stand_in.unwrap_or_else(|| panic!("{file} uses {action}, which has no stand-in in tests/act (see its README)"));
            found.insert(uses.to_owned(), stand_in);
        }
    }
    found.into_iter().collect()
}

/// The deploy workflow as a runner runs it: preflight, the canary to the gate, promotion (act
/// does not hold a job for an environment's reviewers: the approval is taken as given), the
/// abort job skipped; then a canary that fails its analysis fails its job, promotion is
/// skipped, and the abort job runs and says the canary aborted itself (exit 0); then the
/// rollback workflow returns to the release before, verified.
#[test]
fn act_runs_the_deploy_workflow_through_its_gate_and_its_abort_job_after_a_failing_canary_then_the_rollback_workflow() {
    let shared = fixture::shared();
    let ns = TestNamespace::new("act-deploy");
    let flow = fixture::stable_at(&ns, &shared.v1);
    let load = LoadGenerator::start(&ns);
    // The workflow's commands are as committed; the namespace and a short analysis come from
    // the job's environment, as a team sets them per GitHub environment.
    let env = [
        ("SHIPSHAPE_NAMESPACE", ns.name.as_str()),
        ("SHIPSHAPE_CANARY_STEPS", "50"),
        ("SHIPSHAPE_CANARY_ANALYSIS_SECONDS", "8"),
        ("SHIPSHAPE_CANARY_MIN_REQUESTS", "20"),
    ];
    let (preflight, canary, promote, abort) =
        ("Preflight (cluster, namespace, Secrets, RBAC)", "Canary to the approval gate", "Promote (approved)", "Abort this run's canary");

    let dispatch = |file: &str, inputs: &[(&str, &str)], env: &[(&str, &str)]| {
        ActRun::dispatch(&ns, file, &ActRequest { inputs: pairs(inputs), env: pairs(env), ..Default::default() })
    };
    let run = dispatch("deploy.yml", &[("environment", "dev"), ("tag", &shared.v2)], &env);
    assert!(run.out.status.success(), "act: {}", run.log);
    let ended = [preflight, canary, promote, abort].map(|job| run.job(job));
    assert_eq!(ended, [Some("succeeded"), Some("succeeded"), Some("succeeded"), None], "{}", run.log);
    let state = flow.record().or_panic();
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "the gate was crossed");
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let last = runs.iter().rev().find(|r| r.flow == "canary").unwrap();
    assert!(last.actor.starts_with("e2e-approver via "), "{last:#?}");
    assert_eq!(last.result, xtask::journal::RunResult::Succeeded);

    let run = dispatch("deploy.yml", &[("environment", "dev"), ("tag", &shared.failing_half)], &env);
    assert!(!run.out.status.success(), "a failed job fails the run: {}", run.log);
    let ended = [canary, promote, abort].map(|job| run.job(job));
    assert_eq!(ended, [Some("failed"), None, Some("succeeded")], "{}", run.log);
    assert!(run.log.contains("already aborted"), "the abort job after a self-abort: {}", run.log);
    let state = flow.record().or_panic();
    assert!(!state.values.canary.enabled);
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v2), "stable unchanged");

    // The rollback workflow: back to the release before (v1), verified.
    let run = dispatch("rollback.yml", &[("environment", "dev"), ("target", "previous")], &env[..1]);
    assert!(run.out.status.success(), "act: {}", run.log);
    assert_eq!(run.job("Roll back and verify"), Some("succeeded"), "{}", run.log);
    let state = flow.record().or_panic();
    assert_eq!(unpinned(&state.stable_image().unwrap()), image(&shared.v1), "rolled back to the release before");
    let stats = load.stats();
    let bad_canary = stats.by_version.get(&shared.failing_half).map_or(0, |v| v.failed);
    assert_eq!(stats.failed, bad_canary, "the failing canary's own answers are the only failures: {}", stats.failures_in_words());
}

/// The release workflow as a runner runs it: `build` (no secret) builds and scans the image
/// with the database an earlier run uploaded and leaves it as an artifact; `publish` (the key
/// and its password from secrets, the registry from a repository variable) pushes, signs and
/// attests it, building nothing. A deploy that requires the environment's signature then runs
/// what was published, by digest.
#[test]
fn act_runs_the_release_workflow_s_two_jobs_and_a_deploy_verifies_what_they_published() {
    let shared = fixture::shared();
    let key = fixture::environment_key();
    let database = fixture::clean_vulnerability_database();
    let tag = format!("{}-act-release", shared.v1);
    let ns = TestNamespace::new("act-release");
    let request = ActRequest {
        inputs: pairs(&[("tag", &tag), ("vuln_db_artifact", "vuln-db"), ("vuln_db_run_id", "4242")]),
        secrets: vec![
            ("COSIGN_KEY".to_owned(), std::fs::read_to_string(&key.private).unwrap()),
            ("COSIGN_PASSWORD".to_owned(), std::env::var("COSIGN_PASSWORD").unwrap()),
        ],
        vars: pairs(&[("REGISTRY", xtask::cluster::registry::HOST)]),
        artifacts: vec![("vuln-db".to_owned(), database.dir.clone())],
        ..Default::default()
    };
    let run = {
        let _heavy = fixture::cpu_heavy();
        ActRun::dispatch(&ns, "release.yml", &request)
    };
    assert!(run.out.status.success(), "act: {}", run.log);
    let ended = ["Build and scan (no secrets)", "Push, sign, attest (builds nothing)"].map(|job| run.job(job));
    assert_eq!(ended, [Some("succeeded"), Some("succeeded")], "{}", run.log);
    assert!(!run.log.contains(&std::env::var("COSIGN_PASSWORD").unwrap()), "the password never reaches the log");

    let mut flow = ns.flow();
    flow.signature = xtask::signing::Request { public_keys: vec![key.public.clone()], require: true, ..Default::default() };
    xtask::flows::deploy::deploy(&flow, &tag, false).or_panic();
    let runs = flow.block_on(flow.journal().entries()).or_panic();
    let deployed = runs.last().unwrap();
    assert!(
        deployed.facts["signature"].contains("is signed with") && deployed.facts["signature"].contains("provenance"),
        "{:#?}",
        deployed.facts
    );
    assert_eq!(unpinned(&flow.record().or_panic().stable_image().unwrap()), image(&tag));
}
