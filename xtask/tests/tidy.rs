//! Repository rules, checked as tests so they stay true.
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use xtask::cli::Cli;

fn read(path: &str) -> String {
    std::fs::read_to_string(xtask::repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Every command in the CLI appears in docs/runbook.md, with each of its subcommands.
#[test]
fn runbook_map_names_every_command() {
    let map = read("docs/runbook.md");
    for command in Cli::command().get_subcommands() {
        let name = command.get_name();
        assert!(map.contains(&format!("`{name}")), "docs/runbook.md does not mention `{name}`");
        for sub in command.get_subcommands() {
            assert!(map.contains(&format!("{name} {}", sub.get_name())), "docs/runbook.md does not mention `{name} {}`", sub.get_name());
        }
    }
}

/// External programs run through `xshell::cmd!` from their one module each, never through
/// `std::process::Command`, and kubectl never runs as a subprocess (API work goes through kube-rs).
#[test]
fn external_tools_run_only_from_their_modules() {
    let src = xtask::repo_root().join("xtask/src");
    // module -> what it runs
    let allowed = [
        ("tools.rs", "<tool> version"),
        ("go.rs", "go"),
        ("helm.rs", "helm"),
        ("kubeseal.rs", "kubeseal"),
        ("crane.rs", "crane"),
        ("cosign.rs", "cosign"),
        ("git.rs", "git"),
        ("scan.rs", "osv-scanner"),
        ("bench.rs", "the runbook's script, cargo xtask and the xtask binaries it times"),
        ("host/mod.rs", "apt-get, apt-cache, dpkg-query, dockerd (setting up a machine)"),
        ("host/disk.rs", "df"),
        ("cargo.rs", "cargo (nested builds: the suite, the e2e xtask binary, cargo install)"),
        ("cluster/docker.rs", "docker"),
        ("cluster/kind.rs", "kind"),
        ("cluster/node_image.rs", "debootstrap, chroot, gcc (the node image recipe)"),
        ("cluster/app_images.rs", "cargo build, ldd, debootstrap (the application images)"),
        ("cluster/layout.rs", "tar"),
    ];
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        // process.rs turns a cmd! into a child whose output streams to a log; nothing else may.
        if name != "process.rs" {
            assert!(!text.contains("process::Command"), "{name}: use xshell::cmd!, not std::process::Command");
        }
        if text.contains("cmd!(") {
            assert!(allowed.iter().any(|(m, _)| *m == name), "{name} runs an external command: move it to the tool's module");
        }
        for line in text.lines().filter(|l| l.contains("cmd!(")) {
            assert!(!line.contains("kubectl"), "{name}: kubectl is a user-facing tool, not an implementation detail: {line}");
        }
    }
}

/// The README names the test command, and .ci/run runs exactly that command.
#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    assert!(readme.contains("\n    cargo xtask test\n"), "README.md must show `cargo xtask test`");
    assert!(ci.lines().any(|l| l.trim() == "cargo xtask test"), ".ci/run must run `cargo xtask test`");
}

/// Every command's --help says something beyond its name.
#[test]
fn every_command_has_help() {
    fn walk(command: &clap::Command, path: &str) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(about.len() > 20, "`{path}` needs a /// doc comment that teaches (it has {about:?})");
            walk(sub, &path);
        }
    }
    walk(&Cli::command(), "cargo xtask");
}

/// `cargo fmt --check` passes (rustfmt.toml sets the width).
#[test]
fn code_is_formatted() {
    let output =
        std::process::Command::new(env!("CARGO")).args(["fmt", "--all", "--check"]).current_dir(xtask::repo_root()).output().unwrap();
    assert!(output.status.success(), "run `cargo fmt`:\n{}", String::from_utf8_lossy(&output.stdout));
}

/// The GitHub workflow and action files, as (path, text).
fn workflow_files() -> Vec<(String, String)> {
    let root = xtask::repo_root();
    let mut files = Vec::new();
    for dir in [".github/workflows", ".github/actions/shipshape"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(!files.is_empty());
    files
}

/// A sample value for a shell variable passed to `flag`, valid for that flag's type.
fn sample_for(flag: &str) -> &'static str {
    match flag {
        "--env" => "staging",
        "--to-revision" => "3",
        _ => "v1",
    }
}

/// Every `cargo xtask ...` line in a workflow parses with the real command line, so renaming a
/// flag breaks this test, not a release. Shell variables become sample values.
#[test]
fn every_workflow_command_parses_with_the_cli() {
    use clap::Parser;
    let mut seen = 0;
    for (name, text) in workflow_files() {
        for line in text.lines() {
            // A command is a `run:` value or a line of a `run: |` block; prose mentioning one is not.
            let command = line.trim_start().trim_start_matches("- ").trim_start_matches("run:").trim_start();
            if !command.starts_with("cargo xtask ") {
                continue;
            }
            let words: Vec<String> = command.split_whitespace().map(|w| w.trim_matches('"').to_owned()).collect();
            let mut args = vec!["cargo xtask".to_owned()];
            for (i, word) in words.iter().enumerate().skip(2) {
                args.push(if word.starts_with('$') { sample_for(&words[i - 1]).to_owned() } else { word.clone() });
            }
            if let Err(err) = Cli::try_parse_from(&args) {
                panic!("{name}: `{}` does not parse: {err}", line.trim());
            }
            seen += 1;
        }
    }
    assert!(seen >= 8, "expected the deploy, rollback and ci workflows' commands, found {seen}");
}

/// The deploy workflow plays the canary runbook in order: preflight, canary to the gate, a
/// promotion bound to a GitHub environment (required reviewers), and an abort on failure.
#[test]
fn deploy_workflow_gates_promotion_on_an_environment() {
    let text = read(".github/workflows/deploy.yml");
    // Each job's lines, by name: a job starts at a line indented by exactly two spaces under `jobs:`.
    let mut jobs: std::collections::BTreeMap<String, String> = Default::default();
    let mut current = String::new();
    for line in text[text.find("\njobs:\n").expect("deploy.yml has jobs")..].lines().skip(2) {
        if line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':') {
            current = line.trim().trim_end_matches(':').to_owned();
        } else {
            jobs.entry(current.clone()).or_default().push_str(&format!("{line}\n"));
        }
    }
    let job = |name: &str| jobs.get(name).cloned().unwrap_or_else(|| panic!("deploy.yml has no job {name}"));
    assert!(job("canary").contains("--approval pause"));
    let promote = job("promote");
    assert!(promote.contains("needs: canary") && promote.contains("environment:") && promote.contains("canary promote"), "{promote}");
    let abort = job("abort");
    assert!(abort.contains("failure") && abort.contains("cancelled") && abort.contains("canary abort"), "{abort}");
    assert!(text.contains("concurrency:") && text.contains("cancel-in-progress: false"));
}

/// The pinned actionlint finds nothing wrong in any workflow (syntax, expressions, inputs).
#[test]
fn workflows_pass_actionlint() {
    let sh = xtask::repo_shell().unwrap();
    let actionlint = xtask::tools::ACTIONLINT.find(&sh).unwrap_or_else(|e| panic!("{e:#} (`cargo xtask test` installs it)"));
    let output = std::process::Command::new(actionlint).arg("-no-color").current_dir(xtask::repo_root()).output().unwrap();
    assert!(
        output.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
