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
        ("helm/mod.rs", "helm"),
        ("kubeseal.rs", "kubeseal"),
        ("crane.rs", "crane"),
        ("cosign.rs", "cosign"),
        ("git.rs", "git"),
        ("scan.rs", "trivy"),
        ("bench.rs", "the runbook's script, cargo xtask and the xtask binaries it times"),
        ("host/mod.rs", "apt-get, apt-cache, dpkg-query, dockerd (setting up a machine)"),
        ("host/disk.rs", "df"),
        ("cargo.rs", "cargo (nested builds: the suite, the e2e xtask binary, cargo install)"),
        ("cluster/docker.rs", "docker"),
        ("cluster/kind.rs", "kind"),
        ("cluster/node_image.rs", "debootstrap, chroot, gcc (the node image recipe)"),
        (
            "cluster/app_images.rs",
            "cargo build, ldd, dpkg -S, dpkg-query, debootstrap, chroot, python3 -m venv and pip (the application images)",
        ),
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

/// A source file's module path (`flows/canary/mod.rs` -> `flows::canary`).
fn module_of(relative: &Path) -> String {
    let text = relative.with_extension("").display().to_string();
    text.trim_end_matches("/mod").replace('/', "::")
}

/// The layer a module belongs to (docs/architecture.md): commands 3, flows 2, cluster, k8s and
/// the tool wrappers 1, base 0.
fn layer_of(module: &str) -> u8 {
    let top = module.split("::").next().unwrap_or_default();
    match top {
        "cli" | "commands" | "main" | "up" | "test" | "bench" | "render" => 3,
        "flows" => 2,
        "process" | "report" | "progress" | "cache" | "journal" | "image" | "lib" => 0,
        _ => 1,
    }
}

/// Every `crate::a::b` and `super::x` a file refers to (tests modules excluded), resolved to the
/// longest module path that exists.
fn module_references(src: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let files = rust_files(src);
    let modules: std::collections::BTreeSet<String> = files.iter().map(|f| module_of(f.strip_prefix(src).unwrap())).collect();
    let resolve = |path: &[&str]| -> Option<String> {
        (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|candidate| modules.contains(candidate))
    };
    let mut graph = std::collections::BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap();
        let module = module_of(relative);
        let mut text = std::fs::read_to_string(file).unwrap();
        if let Some(tests) = text.find("#[cfg(test)]\nmod ") {
            text.truncate(tests);
        }
        // `super` of a mod.rs is its parent's parent module; of a plain file, its parent.
        let mut own: Vec<&str> = module.split("::").collect();
        own.pop();
        let mut targets = std::collections::BTreeSet::new();
        let mut add = |path: Vec<&str>| {
            if let Some(target) = resolve(&path).filter(|t| *t != module) {
                targets.insert(target);
            }
        };
        let words = |rest: &str| -> Vec<String> {
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for item in group.split('}').next().unwrap_or_default().split(',') {
                    add(words(item.trim()).iter().map(String::as_str).collect());
                }
            } else {
                add(words(rest).iter().map(String::as_str).collect());
            }
        }
        for (i, _) in text.match_indices("super::") {
            // `super::super::x` is read once, from its first `super`.
            if text[..i].ends_with("super::") {
                continue;
            }
            // `super` is the parent of this file's module (for a mod.rs, of its directory's).
            let mut base = own.clone();
            let mut rest = &text[i + "super::".len()..];
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            let items: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or_default().split(',').map(|s| s.trim().to_owned()).collect(),
                None => vec![rest.to_owned()],
            };
            for item in items {
                let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                path.extend(words(&item));
                add(path.iter().map(String::as_str).collect());
            }
        }
        graph.insert(module, targets);
    }
    graph
}

/// Layers point down: commands -> flows -> cluster, k8s and tool wrappers -> base. Nothing below
/// the command layer imports the command line's types (`cli`); cluster and the tools never
/// import flows; base imports nothing above it.
#[test]
fn layers_point_down() {
    let graph = module_references(&xtask::repo_root().join("xtask/src"));
    let mut upward = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            if layer_of(target) > layer_of(module) {
                upward.push(format!("{module} (layer {}) uses {target} (layer {})", layer_of(module), layer_of(target)));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up (docs/architecture.md, Layers):\n{}", upward.join("\n"));
    assert!(graph.values().filter(|t| t.contains("cli")).count() >= 1, "the parser finds `crate::cli` where it is used");
}

/// No two source files import each other, directly or around a loop.
#[test]
fn no_import_circles_between_files() {
    let graph = module_references(&xtask::repo_root().join("xtask/src"));
    // Tarjan's strongly connected components.
    struct Walk<'g> {
        graph: &'g std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        index: std::collections::BTreeMap<&'g str, usize>,
        low: std::collections::BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        circles: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for next in w.graph.get(v).into_iter().flatten() {
            let next = next.as_str();
            if !w.index.contains_key(next) {
                visit(w, next);
                let low = w.low[v].min(w.low[next]);
                w.low.insert(v, low);
            } else if w.stack.contains(&next) {
                let low = w.low[v].min(w.index[next]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut circle = Vec::new();
            while let Some(top) = w.stack.pop() {
                circle.push(top);
                if top == v {
                    break;
                }
            }
            if circle.len() > 1 {
                w.circles.push(circle);
            }
        }
    }
    let mut walk = Walk { graph: &graph, index: Default::default(), low: Default::default(), stack: Vec::new(), circles: Vec::new() };
    for module in graph.keys() {
        if !walk.index.contains_key(module.as_str()) {
            visit(&mut walk, module);
        }
    }
    assert!(walk.circles.is_empty(), "files that import each other: {:?}", walk.circles);
}

/// docs/architecture.md names every source file of xtask/src (as `dir/file.rs`), so the code
/// map stays true as files come and go.
#[test]
fn every_source_file_is_in_the_code_map() {
    let map = read("docs/architecture.md");
    let src = xtask::repo_root().join("xtask/src");
    let missing: Vec<String> = rust_files(&src)
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .filter(|name| !map.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "docs/architecture.md does not name: {missing:?}");
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
#[allow(clippy::disallowed_methods)] // a test runs cargo as a developer would
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
            // The command ends where the shell goes on (`|| test "$?" -eq 3`).
            let command = command.split(" || ").next().unwrap_or(command).split(" && ").next().unwrap_or(command);
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
#[allow(clippy::disallowed_methods)] // a test runs actionlint as a developer would
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

/// A tool's exit status and output, for an assertion message.
fn tool_report(what: &str, out: &std::process::Output) -> String {
    format!("{what} exited {}:\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// zizmor (GitHub Actions security: pinned actions, credentials left on disk, secrets outside an
/// environment), pinned, offline, finds nothing in .github/; what it is told to ignore is in
/// .github/zizmor.yml, each rule with its reason.
#[test]
fn zizmor_finds_nothing_in_the_workflows_and_every_ignore_has_its_reason() {
    let sh = xtask::repo_shell().unwrap();
    let zizmor = xtask::tools::ZIZMOR.command(&sh).unwrap_or_else(|e| panic!("{e:#}"));
    // --offline: no GitHub API (the audits that need it, such as impostor commits, are skipped).
    let out = zizmor.args(["--offline", "--format", "json", ".github/"]).ignore_status().quiet().output().unwrap();
    let findings: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", tool_report("zizmor", &out)));
    let findings = findings.as_array().unwrap_or_else(|| panic!("not a list of findings: {}", tool_report("zizmor", &out)));
    let named: Vec<String> =
        findings.iter().map(|f| format!("{} ({}): {}", f["ident"], f["determinations"]["severity"], f["desc"])).collect();
    assert!(findings.is_empty(), "zizmor finds {} problem(s) in .github/:\n{}", named.len(), named.join("\n"));
    assert!(out.status.success(), "{}", tool_report("zizmor", &out));

    // Each rule that ignores findings says why, in a comment above its `ignore:`.
    let config = std::fs::read_to_string(xtask::repo_root().join(".github/zizmor.yml")).unwrap();
    let lines: Vec<&str> = config.lines().collect();
    for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == "ignore:") {
        let reason: Vec<&str> = lines[..i].iter().rev().take_while(|l| l.trim_start().starts_with('#')).copied().collect();
        assert!(reason.join(" ").len() > 80, ".github/zizmor.yml line {}: an ignore without its reason above it", i + 1);
    }
}
