//! Pinned external tools: where they live, which version they must report, how to build them.
//!
//! Architecture invariant: every other module gets a tool's path from [`Tool::find`], which
//! refuses a missing binary or one that reports another version. Nothing on PATH is assumed.
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::go::{Go, WrapperBuild};
use crate::process::read_or_explain;

/// A tool built from a Go module at a pinned version.
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    /// `go install` target, without the `@version`.
    package: &'static str,
    /// The lowest Go the module's go.mod accepts (GOTOOLCHAIN=local: Go is never downloaded).
    go_min: (u32, u32),
    /// Linker flags that stamp the version a plain `go install` would leave unset.
    ldflags: &'static str,
    version_args: &'static [&'static str],
    /// Picks the version out of what `version_args` prints.
    parse_version: fn(&str) -> Option<&str>,
    /// Where the module is published, when its go.mod names another path (`go install` then
    /// refuses it): it is built through a wrapper module that replaces one by the other.
    renamed: Option<Renamed>,
    /// GOEXPERIMENT the module's source needs to compile (Trivy's: `jsonv2`).
    go_experiment: Option<&'static str>,
}

/// A module whose go.mod path differs from the path it is published under.
pub struct Renamed {
    /// The path its go.mod declares.
    pub module: &'static str,
    /// The path the module proxy serves it under.
    pub published_as: &'static str,
}

/// Helm 4: Helm 3 leaves security support in November 2026, and Helm 4's `--wait` watcher
/// strategy and `--rollback-on-failure` are what the flows are written against.
pub const HELM: Tool = Tool {
    name: "helm",
    version: "v4.3.1",
    package: "helm.sh/helm/v4/cmd/helm",
    go_min: (1, 26),
    ldflags: "-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.1 \
              -X helm.sh/helm/v4/internal/version.gitTreeState=clean",
    version_args: &["version", "--template", "{{.Version}}"],
    parse_version: |out| Some(out.trim()),
    renamed: None,
    go_experiment: None,
};

/// kind v0.30.0: its default node is Kubernetes 1.34, the newest that still runs on a cgroup v1
/// host without `failCgroupV1: false` (our CI machines are cgroup v1).
pub const KIND: Tool = Tool {
    name: "kind",
    version: "v0.30.0",
    package: "sigs.k8s.io/kind",
    go_min: (1, 17),
    // kind's version string is in its source at the tag; only the commit is stamped by make.
    ldflags: "-s -w",
    version_args: &["version"],
    // "kind v0.30.0 go1.26.8 linux/amd64"
    parse_version: |out| out.split_whitespace().nth(1),
    renamed: None,
    go_experiment: None,
};

/// kubeseal, the Sealed Secrets client: `rotate-secret --method sealed` encrypts with it, for the
/// controller built from the same module (cluster/sealed_secrets.rs). Its go.mod says
/// github.com/bitnami/sealed-secrets; the proxy serves it as github.com/bitnami-labs/....
pub const KUBESEAL: Tool = Tool {
    name: "kubeseal",
    version: "v0.40.0",
    package: "github.com/bitnami/sealed-secrets/cmd/kubeseal",
    go_min: (1, 26),
    // The version comes from the module's build information.
    ldflags: "-s -w",
    version_args: &["--version"],
    // "kubeseal version: v0.40.0"
    parse_version: |out| out.split_whitespace().last(),
    renamed: Some(Renamed { module: "github.com/bitnami/sealed-secrets", published_as: "github.com/bitnami-labs/sealed-secrets" }),
    go_experiment: None,
};

/// actionlint: the test suite checks every GitHub workflow in .github/ with it.
pub const ACTIONLINT: Tool = Tool {
    name: "actionlint",
    version: "v1.7.12",
    package: "github.com/rhysd/actionlint/cmd/actionlint",
    go_min: (1, 24),
    // The version comes from the module's build information.
    ldflags: "-s -w",
    version_args: &["-version"],
    // "v1.7.12\ninstalled by building from source\n..."
    parse_version: |out| out.lines().next().map(str::trim),
    renamed: None,
    go_experiment: None,
};

/// act (nektos/act): the test suite runs the GitHub workflows with it, as a runner would (jobs,
/// `needs:`, `if:`, outputs, secrets), its jobs on this machine (`-P <label>=-self-hosted`).
pub const ACT: Tool = Tool {
    name: "act",
    version: "v0.2.89",
    package: "github.com/nektos/act",
    go_min: (1, 25),
    ldflags: "-s -w -X main.version=v0.2.89",
    version_args: &["--version"],
    // "act version v0.2.89"
    parse_version: |out| out.lines().find_map(|l| l.trim().strip_prefix("act version")).map(str::trim),
    renamed: None,
    go_experiment: None,
};

/// crane (go-containerregistry): resolves an image tag to the digest every release change
/// deploys, against the image's own registry (the local one, or a user's, with Docker's login).
pub const CRANE: Tool = Tool {
    name: "crane",
    version: "v0.22.1",
    package: "github.com/google/go-containerregistry/cmd/crane",
    go_min: (1, 25),
    ldflags: "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=v0.22.1",
    version_args: &["version"],
    parse_version: |out| out.lines().next().map(str::trim),
    renamed: None,
    go_experiment: None,
};

/// cosign v3: signs releases and their SLSA provenance with a key pair, and verifies both before
/// any change to what runs (offline: no transparency log, no certificate authority).
pub const COSIGN: Tool = Tool {
    name: "cosign",
    version: "v3.1.3",
    package: "github.com/sigstore/cosign/v3/cmd/cosign",
    go_min: (1, 26),
    ldflags: "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=v3.1.3",
    version_args: &["version"],
    // "GitVersion:    v3.1.3"
    parse_version: |out| out.lines().find_map(|l| l.trim().strip_prefix("GitVersion:")).map(str::trim),
    renamed: None,
    go_experiment: None,
};

/// Trivy, the canary runbook's scanner: the vulnerability gate of `release` (HIGH and CRITICAL
/// fail it) and the image's SBOM, in one scan of the image's archive: the crates cargo-auditable
/// embeds in model-server's binary and the Debian packages of the libraries beside it. v0.74's
/// source uses Go's encoding/json/v2, behind GOEXPERIMENT=jsonv2 in Go 1.26 (without it: "build
/// constraints exclude all Go files").
pub const TRIVY: Tool = Tool {
    name: "trivy",
    version: "v0.74.0",
    package: "github.com/aquasecurity/trivy/cmd/trivy",
    go_min: (1, 26),
    ldflags: "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=0.74.0",
    version_args: &["--version"],
    // "Version: 0.74.0" (then the database's, when it has one)
    parse_version: |out| out.lines().find_map(|l| l.trim().strip_prefix("Version:")).map(str::trim),
    renamed: None,
    go_experiment: Some("jsonv2"),
};

pub const ALL: [&Tool; 8] = [&HELM, &KIND, &CRANE, &COSIGN, &TRIVY, &KUBESEAL, &ACTIONLINT, &ACT];

/// A tool installed with `cargo install` from crates.io at a pinned version.
pub struct CargoTool {
    pub name: &'static str,
    pub version: &'static str,
}

/// cargo-auditable: model-server is built with it, so the crates in its binary are readable by
/// scanners (the image's SBOM and vulnerability gate come from them).
pub const CARGO_AUDITABLE: CargoTool = CargoTool { name: "cargo-auditable", version: "0.7.7" };

impl CargoTool {
    pub fn dir(&self) -> Result<PathBuf> {
        tool_dir(self.name, self.version)
    }

    pub fn find(&self) -> Result<PathBuf> {
        let path = self.dir()?.join("bin").join(self.name);
        if !path.is_file() {
            bail!("{} {} is not installed (looked for {}): run `cargo xtask tools install`", self.name, self.version, path.display());
        }
        Ok(path)
    }

    /// `cargo install --locked` into a `.partial` root, renamed into place when it succeeded.
    pub fn install(&self, sh: &Shell) -> Result<()> {
        let (name, version) = (self.name, self.version);
        let binary = format!("bin/{name}");
        build_into_place(sh, name, version, &binary, "building with cargo install (cold: about a minute)", |partial| {
            crate::cargo::command(sh, ["install", "--quiet", "--locked", name, "--version", version, "--root"])
                .arg(partial)
                .run()
                .with_context(|| format!("cargo install {name} {version} failed: cargo's error is above"))
        })
    }
}

/// A tool from the Python package index at a pinned version: judges no one here wrote, run
/// over what the project makes (checkov over the rendered manifests, zizmor over the workflows).
/// Each lives in a virtual environment of its own, made with the host's python3: nothing is
/// installed into the host's Python.
pub struct PythonTool {
    pub name: &'static str,
    pub version: &'static str,
    /// How the environment runs it.
    entry: PythonEntry,
}

enum PythonEntry {
    /// `python -m <module>`: works from wherever the environment was moved (its scripts'
    /// `#!` lines name the `.partial` directory it was built in).
    Module(&'static str),
    /// A compiled program the package installs in `bin/` (a Rust tool's wheel).
    Binary,
}

/// checkov (Prisma Cloud's Kubernetes and Helm policy scanner) over each environment's rendered
/// manifests, in the suite.
pub const CHECKOV: PythonTool = PythonTool { name: "checkov", version: "3.3.30", entry: PythonEntry::Module("checkov.main") };

/// zizmor (a GitHub Actions security linter) over .github/workflows, in the suite; offline.
pub const ZIZMOR: PythonTool = PythonTool { name: "zizmor", version: "1.33.1", entry: PythonEntry::Binary };

pub const PYTHON_TOOLS: [&PythonTool; 2] = [&CHECKOV, &ZIZMOR];

impl PythonTool {
    /// The command that runs the pinned tool (after checking it is installed).
    pub fn command<'s>(&self, sh: &'s Shell) -> Result<xshell::Cmd<'s>> {
        let dir = tool_dir(self.name, self.version)?;
        let python = dir.join("bin/python");
        if !python.exists() {
            bail!("{} {} is not installed (looked for {}): run `cargo xtask tools install`", self.name, self.version, dir.display());
        }
        Ok(match self.entry {
            PythonEntry::Module(module) => cmd!(sh, "{python} -m {module}"),
            PythonEntry::Binary => {
                let binary = dir.join("bin").join(self.name);
                cmd!(sh, "{binary}")
            }
        })
    }

    /// `python3 -m venv` and `pip install <name>==<version>` into a `.partial` directory, checked
    /// (it reports the pinned version), then moved into place.
    pub fn install(&self, sh: &Shell) -> Result<()> {
        let (name, version) = (self.name, self.version);
        let how = "installing from the Python package index into a virtual environment of its own";
        build_into_place(sh, name, version, "bin/python", how, |partial| {
            let python3 = "python3";
            read_or_explain(cmd!(sh, "{python3} -m venv {partial}"))
                .context("python3 could not make a virtual environment (Debian: the python3-venv package)")?;
            let python = partial.join("bin/python");
            let wanted = format!("{name}=={version}");
            read_or_explain(cmd!(sh, "{python} -m pip install --quiet --no-input --disable-pip-version-check {wanted}"))
                .with_context(|| format!("pip install {wanted}"))?;
            let reported = match self.entry {
                PythonEntry::Module(module) => read_or_explain(cmd!(sh, "{python} -m {module} --version"))?,
                PythonEntry::Binary => read_or_explain(cmd!(sh, "{partial}/bin/{name} --version"))?,
            };
            if !reported.split_whitespace().any(|word| word == version) {
                bail!("{name} installed, but reports {reported:?}, not {version}");
            }
            Ok(())
        })
    }
}

/// `<cache>/tools/<name>-<version>/`: keyed by version, so pins never collide.
pub(crate) fn tool_dir(name: &str, version: &str) -> Result<PathBuf> {
    Ok(crate::cache::root()?.join("tools").join(format!("{name}-{version}")))
}

/// The one way a tool gets into the cache: `build` fills a fresh `<dir>.partial`, which is
/// renamed into place only when `build` succeeded (it checks what it built), so an interrupted
/// build never leaves something `find` would accept. A tool whose `binary` (a path inside its
/// directory) is already there is left as it is.
pub(crate) fn build_into_place(
    sh: &Shell,
    name: &str,
    version: &str,
    binary: &str,
    how: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = tool_dir(name, version)?;
    let _held = crate::cache::hold(&beside(&dir, "lock"), name)?;
    if dir.join(binary).is_file() {
        println!("{name:<8} {version:<8} already installed ({})", dir.display());
        return Ok(());
    }
    let partial = beside(&dir, "partial");
    if partial.exists() {
        sh.remove_path(&partial)?;
    }
    println!("{name:<8} {version:<8} {how}");
    let started = Instant::now();
    build(&partial)?;
    std::fs::rename(&partial, &dir).with_context(|| format!("moving {} into place", dir.display()))?;
    println!("{name:<8} {version:<8} built in {:.0?} -> {}", started.elapsed(), dir.display());
    Ok(())
}

/// `<dir>.<suffix>`: `<dir>.partial`, where a build goes until it is checked, and `<dir>.lock`,
/// held while it is made (`with_extension` would eat a version's last component:
/// `helm-v4.3.1` -> `helm-v4.3.partial`).
fn beside(dir: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", dir.display()))
}

/// Tools already verified in this process: `find` runs the binary once, not on every call.
static VERIFIED: Mutex<Vec<&str>> = Mutex::new(Vec::new());

impl Tool {
    /// `<cache>/tools/<name>-<version>/`: keyed by version, so pins never collide.
    pub fn dir(&self) -> Result<PathBuf> {
        tool_dir(self.name, self.version)
    }

    /// The pinned binary, after checking it reports the pinned version.
    pub fn find(&self, sh: &Shell) -> Result<PathBuf> {
        let path = self.dir()?.join(self.name);
        if !path.is_file() {
            bail!("{} {} is not installed (looked for {}): run `cargo xtask tools install`", self.name, self.version, path.display());
        }
        if !VERIFIED.lock().unwrap().contains(&self.name) {
            self.verify(sh, &path)?;
            VERIFIED.lock().unwrap().push(self.name);
        }
        Ok(path)
    }

    fn reported_version(&self, sh: &Shell, path: &PathBuf) -> Result<String> {
        let args = self.version_args;
        let out = read_or_explain(cmd!(sh, "{path} {args...}"))?;
        (self.parse_version)(&out)
            .map(str::to_owned)
            .with_context(|| format!("cannot read a version from `{} {}`: {out:?}", path.display(), args.join(" ")))
    }

    fn verify(&self, sh: &Shell, path: &PathBuf) -> Result<()> {
        let reported = self.reported_version(sh, path)?;
        // Some tools print their version without the `v` of their module tag.
        if reported.trim_start_matches('v') == self.version.trim_start_matches('v') {
            return Ok(());
        }
        let major = |v: &str| v.split('.').next().unwrap_or_default().to_owned();
        let why = if major(&reported) != major(self.version) {
            format!("wrong major version: shipshape is written for {} {}.x", self.name, major(self.version))
        } else {
            "not the pinned version".to_owned()
        };
        bail!(
            "{} reports {reported}, expected {} ({why}): delete {} and run `cargo xtask tools install`",
            path.display(),
            self.version,
            self.dir()?.display()
        )
    }

    /// Builds the tool into a `.partial` directory, checks it, then renames it into place, so an
    /// interrupted build never leaves something `find` would accept.
    fn install(&self, sh: &Shell, go: &Go) -> Result<()> {
        let how = format!("building {}@{} with go (cold: minutes on 2 cores; go's output follows)", self.package, self.version);
        build_into_place(sh, self.name, self.version, self.name, &how, |partial| {
            go.require(self.go_min, &format!("building {} {}", self.name, self.version))?;
            sh.create_dir(partial)?;
            match &self.renamed {
                None => go.install(&format!("{}@{}", self.package, self.version), self.ldflags, self.go_experiment, partial, None)?,
                Some(renamed) => {
                    let source = go.download(&format!("{}@{}", renamed.published_as, self.version))?;
                    let replace = format!("replace {} => {}", renamed.module, source.dir.display());
                    let log = crate::cache::root()?.join("logs").join(format!("{}-{}.log", self.name, self.version));
                    std::fs::create_dir_all(log.parent().expect("logs dir"))?;
                    let build = WrapperBuild {
                        go_mod_extra: replace,
                        ldflags: self.ldflags.to_owned(),
                        ..WrapperBuild::new(renamed.module, self.version, &[self.package.to_owned()])
                    };
                    go.build_in_wrapper(&build, partial, &log)?;
                }
            }
            self.verify(sh, &partial.join(self.name))
        })
    }
}

pub fn install_all(sh: &Shell) -> Result<()> {
    install(sh, &ALL)?;
    for tool in PYTHON_TOOLS {
        tool.install(sh)?;
    }
    CARGO_AUDITABLE.install(sh)
}

/// Builds whichever of `tools` are not in the cache yet.
pub fn install(sh: &Shell, tools: &[&Tool]) -> Result<()> {
    let go = Go::detect(sh);
    for tool in tools {
        tool.install(sh, &go)?;
    }
    Ok(())
}

pub fn check_all(sh: &Shell) -> Result<()> {
    let mut missing = Vec::new();
    for tool in ALL {
        match tool.find(sh) {
            Ok(path) => println!("ok      {:<8} {:<8} {}", tool.name, tool.version, path.display()),
            Err(err) => {
                println!("MISSING {:<8} {:<8} {err:#}", tool.name, tool.version);
                missing.push(tool.name);
            }
        }
    }
    match CARGO_AUDITABLE.find() {
        Ok(path) => println!("ok      {:<8} {:<8} {}", CARGO_AUDITABLE.name, CARGO_AUDITABLE.version, path.display()),
        Err(err) => {
            println!("MISSING {:<8} {:<8} {err:#}", CARGO_AUDITABLE.name, CARGO_AUDITABLE.version);
            missing.push(CARGO_AUDITABLE.name);
        }
    }
    for tool in PYTHON_TOOLS {
        match tool.command(sh) {
            Ok(_) => println!("ok      {:<8} {:<8} {}", tool.name, tool.version, tool_dir(tool.name, tool.version)?.display()),
            Err(err) => {
                println!("MISSING {:<8} {:<8} {err:#}", tool.name, tool.version);
                missing.push(tool.name);
            }
        }
    }
    // kubectl is a tool for people (the project never runs it): the pinned one is built with the
    // node image, from the same Kubernetes source as the cluster.
    let kubectl_version = crate::cluster::node_image::KUBERNETES_VERSION;
    match crate::cluster::node_image::built_kubectl()? {
        Some(path) => println!("ok      kubectl {kubectl_version:<8} {}", path.display()),
        None => println!("info    kubectl {kubectl_version:<8} not built yet: `cargo xtask cluster image` builds it with the node image"),
    }
    let go = Go::detect(sh);
    match go.is_usable() {
        Ok(()) => println!("ok      go    {:<8} (builds the tools and a local kind node image)", go.reported),
        Err(why) => println!("info    go    {why}: needed by `cargo xtask tools install` and `cluster image`"),
    }
    // kind runs each node as a privileged container; without an engine no cluster can start.
    match crate::cluster::docker::Docker::connect(sh) {
        Ok(_) => println!("ok      docker engine answers (runs kind's node containers)"),
        Err(err) => println!("info    {err:#}"),
    }
    if !missing.is_empty() {
        bail!("{} missing or wrong: run `cargo xtask tools install`", missing.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions_parse_from_their_output() {
        assert_eq!((KIND.parse_version)("kind v0.30.0 go1.26.8 linux/amd64\n"), Some("v0.30.0"));
        assert_eq!((HELM.parse_version)("v4.3.1\n"), Some("v4.3.1"));
    }

    #[test]
    fn helm_is_stamped_with_its_pinned_version() {
        // An unstamped `go install` of helm reports only "v4.3": the stamp must match the pin.
        assert!(HELM.ldflags.contains(&format!("version.version={}", HELM.version)));
    }
}

/// `cargo xtask env`: export lines for the pinned tools and a cluster's kubeconfig.
pub fn print_shell_env(cluster_name: &str, kubeconfig: &std::path::Path) -> Result<()> {
    let mut dirs = Vec::new();
    for tool in ALL {
        let dir = tool.dir()?;
        if dir.join(tool.name).is_file() {
            dirs.push(dir);
        }
    }
    if let Some(kubectl) = crate::cluster::node_image::built_kubectl()? {
        dirs.push(kubectl.parent().expect("kubectl's directory").to_path_buf());
    }
    print!("{}", shell_exports(&dirs, kubeconfig));
    if dirs.is_empty() {
        eprintln!("# no pinned tool is built yet: `cargo xtask tools install` builds them");
    }
    if !kubeconfig.is_file() {
        eprintln!("# cluster {cluster_name} has no kubeconfig yet: `cargo xtask up` creates the cluster");
    }
    Ok(())
}

/// POSIX shell lines (bash, zsh, dash) that prepend `dirs` to PATH and set KUBECONFIG.
fn shell_exports(dirs: &[PathBuf], kubeconfig: &std::path::Path) -> String {
    let quote = |p: &std::path::Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut out = String::from("# eval \"$(cargo xtask env)\": shipshape's pinned tools and the local cluster\n");
    if !dirs.is_empty() {
        let joined: Vec<String> = dirs.iter().map(|d| quote(d)).collect();
        out.push_str(&format!("export PATH={}:\"$PATH\"\n", joined.join(":")));
    }
    out.push_str(&format!("export KUBECONFIG={}\n", quote(kubeconfig)));
    out.push_str(&xtask_function(&crate::repo_root(), &std::env::current_exe().unwrap_or_default()));
    out
}

/// `xtask`: this checkout's `cargo xtask` from any directory (`cargo xtask completions`
/// completes it), without cargo's ~250 ms freshness check on every call (measured: a verify
/// through `cargo xtask` 400 ms, the binary alone 70 ms). cargo rebuilds the binary only when a
/// file it is built from (xtask/, Cargo.toml, Cargo.lock) is newer than it.
pub fn xtask_function(root: &std::path::Path, binary: &std::path::Path) -> String {
    let quote = |p: &std::path::Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let sources = [root.join("xtask"), root.join("Cargo.toml"), root.join("Cargo.lock")];
    let sources: Vec<String> = sources.iter().map(|p| quote(p)).collect();
    let (manifest, binary) = (quote(&root.join("Cargo.toml")), quote(binary));
    format!(
        "xtask() {{\n  \
         if [ ! -x {binary} ] || [ -n \"$(find {} -newer {binary} -print -quit 2>/dev/null)\" ]; then\n    \
         cargo build --quiet --manifest-path {manifest} --package xtask && touch {binary} || return\n  \
         fi\n  \
         {binary} \"$@\"\n}}\n",
        sources.join(" ")
    )
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn exports_are_quoted_for_any_path() {
        let out = shell_exports(&[PathBuf::from("/c/tools/helm-v4"), PathBuf::from("/it's")], std::path::Path::new("/k/kubeconfig"));
        assert!(out.contains("export PATH='/c/tools/helm-v4':'/it'\\''s':\"$PATH\"\n"), "{out}");
        assert!(out.contains("export KUBECONFIG='/k/kubeconfig'\n"), "{out}");
        assert!(out.contains("xtask() {\n"), "{out}");
    }

    /// The function rebuilds only when a source is newer than the binary, then runs the binary.
    #[test]
    fn the_xtask_function_rebuilds_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("xtask/src")).unwrap();
        for file in ["Cargo.toml", "Cargo.lock", "xtask/src/main.rs"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        // A stand-in binary and a stand-in cargo on PATH that records it was asked to build.
        let binary = root.join("target/debug/xtask");
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        let bin_dir = root.join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let script = |path: &std::path::Path, body: &str| {
            std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        };
        script(&bin_dir.join("cargo"), &format!("echo built >> '{}'; touch '{}'", root.join("builds").display(), binary.display()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        script(&binary, "echo \"ran $*\"");
        let sh = Shell::new().unwrap();
        let path = format!("{}:/usr/bin:/bin", bin_dir.display());
        let run = |args: &str| {
            let shell = format!("{}xtask {args}", xtask_function(root, &binary));
            format!("{}\n", cmd!(sh, "sh -c {shell}").env("PATH", &path).read().unwrap())
        };
        assert_eq!(run("verify --namespace 'a b'"), "ran verify --namespace a b\n");
        assert!(!root.join("builds").exists(), "nothing changed: no build");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(root.join("xtask/src/main.rs"), "changed").unwrap();
        assert_eq!(run("status"), "ran status\n");
        assert_eq!(std::fs::read_to_string(root.join("builds")).unwrap(), "built\n", "a changed source: one build");
    }
}
