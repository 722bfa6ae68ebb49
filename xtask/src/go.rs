//! The Go toolchain: builds the pinned tools and the node image's components from Go modules.
//! Every go call is here. GOTOOLCHAIN=local everywhere: Go itself is never downloaded.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::{read_or_explain, run_logged};

/// Compiler flags of every build: no DWARF. Every binary is linked with `-s -w`, which drops it
/// anyway; not generating it in the first place takes 11-15 % off the compiler's CPU time
/// (crane, kind, actionlint from an empty build cache, twice each), minutes on a first run.
/// Stack traces come from the symbol table Go keeps either way.
const GCFLAGS: &str = "all=-dwarf=false";

/// GOGC for every go call (see `Go::env`).
const COMPILER_GOGC: &str = "400";

/// The Go shipshape needs: the highest `go` line among the pinned tools' go.mod files (helm v4.3).
pub const GO_MIN: (u32, u32) = (1, 26);

pub struct Go<'a> {
    sh: &'a Shell,
    /// (major, minor), or why there is no usable Go.
    version: Result<(u32, u32), String>,
    pub reported: String,
}

/// Where `go mod download` put a module.
pub struct Module {
    /// The extracted module source.
    pub dir: PathBuf,
    /// Its go.mod file.
    pub go_mod: PathBuf,
}

impl<'a> Go<'a> {
    pub fn detect(sh: &'a Shell) -> Go<'a> {
        match read_or_explain(cmd!(sh, "go env GOVERSION").env("GOTOOLCHAIN", "local")) {
            Ok(out) => {
                let reported = out.trim().to_owned();
                let version = parse_version(&reported).ok_or_else(|| format!("unrecognised Go version {reported:?}"));
                Go { sh, version, reported }
            }
            Err(_) => Go { sh, version: Err("no `go` on PATH".to_owned()), reported: "missing".to_owned() },
        }
    }

    pub fn is_usable(&self) -> Result<(), &str> {
        self.version.as_ref().map(drop).map_err(String::as_str)
    }

    /// Fails with the fix unless Go >= `min` is installed; `what` says what needs it.
    pub fn require(&self, min: (u32, u32), what: &str) -> Result<()> {
        let (maj, minor) = min;
        match &self.version {
            Ok(have) if *have >= min => Ok(()),
            Ok(_) => bail!("{what} needs Go >= {maj}.{minor}, this machine has {}: install a newer Go and rerun", self.reported),
            Err(why) => bail!("{what} needs Go >= {maj}.{minor}: {why}. Install Go (your package manager or go.dev/dl) and rerun"),
        }
    }

    /// Where go keeps its build cache and its downloaded modules (GOCACHE, GOMODCACHE).
    pub fn caches(&self) -> Result<(PathBuf, PathBuf)> {
        let out = read_or_explain(self.env(cmd!(self.sh, "go env GOCACHE GOMODCACHE")))?;
        match out.lines().collect::<Vec<_>>()[..] {
            [build, modules] => Ok((build.into(), modules.into())),
            _ => bail!("unexpected `go env GOCACHE GOMODCACHE` output: {out:?}"),
        }
    }

    fn env<'c>(&self, command: xshell::Cmd<'c>) -> xshell::Cmd<'c> {
        let command = command.env("GOTOOLCHAIN", "local").env("CGO_ENABLED", "0");
        // The compiler collects its garbage less often: measured from an empty build cache, kind
        // took 25.0 user-s at GOGC=400 against 29.8 at the default 100 (wall 16.5 s against 19.2;
        // twice each), k8s.io/api/core/v1 33.4 against 41.7, its compiler's peak memory 644 MB
        // against 378. 800 bought nothing more; off doubled the memory. A GOGC you set wins.
        if std::env::var_os("GOGC").is_some() {
            command
        } else {
            command.env("GOGC", COMPILER_GOGC)
        }
    }

    /// `go install target` into `gobin` (with `experiment` as GOEXPERIMENT), quietly when `log`
    /// is given.
    pub fn install(&self, target: &str, ldflags: &str, experiment: Option<&str>, gobin: &Path, log: Option<&Path>) -> Result<()> {
        let command = self.env(cmd!(self.sh, "go install -trimpath -gcflags={GCFLAGS} -ldflags {ldflags} {target}")).env("GOBIN", gobin);
        let command = match experiment {
            Some(experiment) => command.env("GOEXPERIMENT", experiment),
            None => command,
        };
        match log {
            Some(log) => run_logged(command, log, &format!("go install {target}")),
            None => command.run().with_context(|| format!("go install {target} failed: go's error is above")),
        }
    }

    /// Builds `build.packages` of `build.module` at `build.version` through a throwaway wrapper
    /// module (in `out/wrapper`, removed afterwards), binaries into `out`. This works where
    /// `go install pkg@version` does not: a module whose go.mod has replace directives (they
    /// apply only to the main module), or a proxy that refuses the lookup of a package path as
    /// a module with 403 instead of 404 (go falls back to the parent module only on 404/410).
    pub fn build_in_wrapper(&self, build: &WrapperBuild, out: &Path, log: &Path) -> Result<()> {
        let wrapper = out.join("wrapper");
        std::fs::create_dir_all(&wrapper)?;
        // The running toolchain's own version: a module may require any Go up to it.
        let go_line = self.reported.strip_prefix("go").unwrap_or("1.24.0");
        let WrapperBuild { module, version, go_mod_extra, packages, ldflags, tags, sums_from } = build;
        let go_mod = format!("module shipshape.local/build\n\ngo {go_line}\n\nrequire {module} {version}\n\n{go_mod_extra}\n");
        std::fs::write(wrapper.join("go.mod"), go_mod)?;
        if let Some(sums) = sums_from {
            std::fs::copy(sums, wrapper.join("go.sum")).with_context(|| format!("copying {}", sums.display()))?;
        }
        let target = format!("{}/", out.display());
        let tags = tags.join(",");
        {
            let _dir = self.sh.push_dir(&wrapper);
            // -mod=mod: go completes the wrapper's requirements and go.sum from the proxy.
            let command = self
                .env(cmd!(self.sh, "go build -trimpath -gcflags={GCFLAGS} -tags={tags} -ldflags {ldflags} -o {target} {packages...}"))
                .env("GOFLAGS", "-mod=mod");
            run_logged(command, log, &format!("go build {}", packages.join(" ")))?;
        }
        std::fs::remove_dir_all(&wrapper)?;
        Ok(())
    }

    /// `go build` of the main package of a module of this repository (`module_dir`, with its
    /// go.mod and go.sum) into the binary `out`, go's output in `log`.
    pub fn build_local(&self, module_dir: &Path, out: &Path, log: &Path) -> Result<()> {
        let _dir = self.sh.push_dir(module_dir);
        let command = self.env(cmd!(self.sh, "go build -trimpath -gcflags={GCFLAGS} -ldflags=-s -o {out} ."));
        run_logged(command, log, &format!("go build {}", module_dir.display()))
    }

    /// `go mod download` of one module version: where its source and go.mod are.
    pub fn download(&self, module_at_version: &str) -> Result<Module> {
        let json = read_or_explain(self.env(cmd!(self.sh, "go mod download -json {module_at_version}")))
            .with_context(|| format!("downloading Go module {module_at_version}"))?;
        let field = |name: &str| -> Result<PathBuf> {
            let pattern = format!("\"{name}\": \"");
            let start = json.find(&pattern).with_context(|| format!("no {name} in go mod download output: {json}"))? + pattern.len();
            let end = json[start..].find('"').context("unterminated string in go mod download output")?;
            Ok(PathBuf::from(&json[start..start + end]))
        };
        Ok(Module { dir: field("Dir")?, go_mod: field("GoMod")? })
    }
}

/// What [`Go::build_in_wrapper`] builds, and how.
pub struct WrapperBuild {
    pub module: String,
    pub version: String,
    pub packages: Vec<String>,
    /// Appended to the wrapper's go.mod (replace and godebug lines).
    pub go_mod_extra: String,
    pub ldflags: String,
    /// Build tags, e.g. those that leave out a server's optional plugins.
    pub tags: Vec<String>,
    /// A go.sum to start the wrapper's from: the module's own, with the hashes its authors
    /// committed, so go verifies against them instead of asking the checksum database (whose
    /// mirror here lacks some modules).
    pub sums_from: Option<PathBuf>,
}

impl WrapperBuild {
    /// `packages` of `module@version`, stripped (`-s -w`), nothing else added.
    pub fn new(module: &str, version: &str, packages: &[String]) -> WrapperBuild {
        WrapperBuild {
            module: module.to_owned(),
            version: version.to_owned(),
            packages: packages.to_vec(),
            go_mod_extra: String::new(),
            ldflags: "-s -w".to_owned(),
            tags: Vec::new(),
            sums_from: None,
        }
    }
}

/// "go1.26.8" -> (1, 26)
fn parse_version(reported: &str) -> Option<(u32, u32)> {
    let mut parts = reported.strip_prefix("go")?.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions_parse() {
        assert_eq!(parse_version("go1.26.8"), Some((1, 26)));
        assert_eq!(parse_version("go1.22rc1"), Some((1, 22)));
        assert_eq!(parse_version("devel"), None);
    }
}
