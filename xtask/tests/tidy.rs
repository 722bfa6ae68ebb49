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
        ("test.rs", "cargo test"),
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
