//! The host machine: what shipshape needs from it (a Docker engine that runs privileged
//! containers, the node image's build tools, PostgreSQL's server for the service tests), found
//! where it is, installed where it is missing, and nothing else touched.
//!
//! Architecture invariant: the host is not ours. A package is installed only when what it
//! provides is missing. Every install is simulated first (`apt-get -s`) and refused when it
//! would upgrade, downgrade or remove a package the host has; the dpkg database is compared
//! before and after, and a changed version fails the setup loudly. Nothing is written to
//! `/etc/apt`: where a package must come from another Debian release (Docker on bookworm), its
//! sources live in the cache and are passed to apt for that one call.
pub mod disk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::{read_or_explain, run_logged, spawn_detached};

/// Set by `--no-install` (or SHIPSHAPE_NO_INSTALL=true): report what is missing, install nothing.
static NO_INSTALL: AtomicBool = AtomicBool::new(false);

pub fn forbid_installs() {
    NO_INSTALL.store(true, Ordering::SeqCst);
}

fn installs_forbidden() -> bool {
    NO_INSTALL.load(Ordering::SeqCst)
}

/// The lowest Docker engine that runs `--privileged` on machines whose capability bounding set
/// lacks CAP_SYS_RESOURCE: 20.10 asks for every capability the kernel knows (moby#42906, fixed
/// in 23 by moby#42933).
pub const DOCKER_MIN_MAJOR: u32 = 23;
/// How long a freshly started dockerd may take to answer.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Something the host must provide, and the Debian package that provides it.
pub struct Need {
    pub what: &'static str,
    pub package: &'static str,
    present: fn(&Shell) -> bool,
}

pub const DEBOOTSTRAP: Need = Need { what: "debootstrap", package: "debootstrap", present: |sh| on_path(sh, "debootstrap") };
pub const GCC: Need = Need { what: "gcc", package: "gcc", present: |sh| on_path(sh, "gcc") };
/// The pause binary is linked statically.
pub const STATIC_LIBC: Need = Need {
    what: "static libc (libc.a)",
    package: "libc6-dev",
    present: |sh| read_or_explain(cmd!(sh, "gcc -print-file-name=libc.a")).is_ok_and(|p| Path::new(p.trim()).is_absolute()),
};
/// model-server's service tests start a real PostgreSQL server (server/tests/support/postgres.rs).
pub const POSTGRES_SERVER: Need = Need {
    what: "PostgreSQL server (initdb, pg_ctl)",
    package: "postgresql",
    present: |_| {
        std::fs::read_dir("/usr/lib/postgresql").map(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").is_file())).unwrap_or(false)
    },
};
/// What building the kind node image needs (cluster/node_image.rs).
pub const NODE_IMAGE_BUILD: [&Need; 3] = [&DEBOOTSTRAP, &GCC, &STATIC_LIBC];

fn on_path(sh: &Shell, tool: &str) -> bool {
    cmd!(sh, "sh -c 'command -v \"$1\"' _ {tool}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Whether this process runs as root (installing packages and building a node image need it).
pub fn is_root(sh: &Shell) -> Result<bool> {
    Ok(read_or_explain(cmd!(sh, "id -u"))?.trim() == "0")
}

/// Installs the packages of whichever `needs` are missing, announcing each; `purpose` says why.
pub fn require(sh: &Shell, needs: &[&Need], purpose: &str) -> Result<()> {
    let missing: Vec<&&Need> = needs.iter().filter(|n| !(n.present)(sh)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = missing.iter().map(|n| n.what).collect();
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    println!("==> {purpose} needs {}, which this machine lacks", what.join(", "));
    Apt::host(sh, &packages)?.install(&packages, &format!("{purpose} needs {}", what.join(", ")))?;
    if let Some(still) = missing.iter().find(|n| !(n.present)(sh)) {
        bail!("installed {} but {} is still not found", still.package, still.what);
    }
    Ok(())
}

/// The Go toolchain, which the host must already have: shipshape builds its tools with it and
/// does not install a compiler.
pub fn require_go(sh: &Shell) -> Result<()> {
    crate::go::Go::detect(sh).require(crate::go::GO_MIN, "shipshape (helm, kind and the cluster's Kubernetes are built from Go modules)")
}

/// A Docker engine that answers and runs privileged containers: the one that already runs, else
/// the host's dockerd started, else the engine's packages installed (only those) and started.
pub fn require_docker(sh: &Shell) -> Result<()> {
    if let Some(version) = server_version(sh) {
        return check_engine_version(&version, "the running Docker engine");
    }
    let installed = read_or_explain(cmd!(sh, "dockerd --version")).ok();
    match installed {
        Some(reported) => {
            let version = reported.split_whitespace().nth(2).unwrap_or("").trim_end_matches(',').to_owned();
            check_engine_version(&version, "this machine's dockerd")?;
        }
        None => install_docker(sh)?,
    }
    start_dockerd(sh)
}

/// The engine's version when one answers on the default socket (or $DOCKER_HOST).
fn server_version(sh: &Shell) -> Option<String> {
    let format = "{{.Server.Version}}";
    read_or_explain(cmd!(sh, "docker version --format {format}")).ok().map(|v| v.trim().to_owned())
}

fn check_engine_version(version: &str, which: &str) -> Result<()> {
    if major(version) >= DOCKER_MIN_MAJOR {
        return Ok(());
    }
    bail!(
        "{which} is Docker {version}: Docker < {DOCKER_MIN_MAJOR} cannot run privileged containers (kind's nodes) on machines \
         whose capability set lacks CAP_SYS_RESOURCE (moby#42906). shipshape does not replace a package the host has: \
         upgrade Docker yourself (or remove docker.io and let `cargo xtask up` install an engine that works), then rerun"
    )
}

fn major(version: &str) -> u32 {
    version.trim().split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Installs Docker's engine packages: from the host's own release when it has Docker >= 23,
/// else (Debian bookworm, whose docker.io is 20.10) docker.io alone from Debian trixie, every
/// dependency it can take from bookworm staying bookworm.
fn install_docker(sh: &Shell) -> Result<()> {
    println!("==> no Docker engine on this machine: kind runs each node as a privileged container");
    let apt = Apt::host(sh, &["docker.io"])?;
    match apt.candidate("docker.io")? {
        Some(candidate) if major(&candidate) >= DOCKER_MIN_MAJOR => apt.install(&["docker.io"], "kind needs a Docker engine"),
        candidate => {
            let os = OsRelease::read()?;
            if os.id != "debian" || os.version_codename != "bookworm" {
                bail!(
                    "this machine's docker.io is {} (need Docker >= {DOCKER_MIN_MAJOR}) and shipshape knows no other source for {} {}: \
                     install Docker >= {DOCKER_MIN_MAJOR} yourself (docs.docker.com/engine/install), then rerun",
                    candidate.as_deref().unwrap_or("not available"),
                    os.id,
                    os.version_codename
                );
            }
            println!(
                "    bookworm's docker.io is {} (cannot run privileged containers here): installing docker.io from Debian trixie, \
                 pinned so that every dependency bookworm has stays bookworm",
                candidate.as_deref().unwrap_or("missing")
            );
            Apt::with_trixie(sh)?.install(&["docker.io/trixie"], "kind needs a Docker engine")
        }
    }
}

/// Starts dockerd in the background, detached from this process, its log in the cache.
fn start_dockerd(sh: &Shell) -> Result<()> {
    let log_path = crate::cache::root()?.join("logs/dockerd.log");
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    println!("==> starting dockerd (log {})", log_path.display());
    spawn_detached(cmd!(sh, "dockerd"), &log_path)?;
    let started = Instant::now();
    let mut next_report = Duration::from_secs(10);
    while started.elapsed() < DOCKERD_START_TIMEOUT {
        if let Some(version) = server_version(sh) {
            println!("    Docker engine {version} answers ({:.1}s)", started.elapsed().as_secs_f64());
            return check_engine_version(&version, "the Docker engine just started");
        }
        if started.elapsed() >= next_report {
            println!("    ... waiting for dockerd to answer ({}s)", started.elapsed().as_secs());
            next_report += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    bail!("dockerd did not answer within {DOCKERD_START_TIMEOUT:?}; last lines of {}:\n{}", log_path.display(), tail.join("\n"))
}

/// The fields of /etc/os-release that decide where packages come from.
struct OsRelease {
    id: String,
    id_like: String,
    version_codename: String,
}

impl OsRelease {
    fn read() -> Result<OsRelease> {
        let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        Ok(OsRelease { id: field("ID"), id_like: field("ID_LIKE"), version_codename: field("VERSION_CODENAME") })
    }

    fn is_debian_family(&self) -> bool {
        ["debian", "ubuntu"].iter().any(|d| self.id == *d || self.id_like.split_whitespace().any(|l| l == *d))
    }
}

/// apt-get, either with the host's configuration or with extra sources kept in the cache.
struct Apt<'a> {
    sh: &'a Shell,
    /// `-o` options that point apt at the cache's sources, lists and archives (empty: the host's).
    options: Vec<String>,
}

impl<'a> Apt<'a> {
    /// The host's apt, after checking that installing `packages` is allowed and possible here;
    /// where it is not, the error names the exact command to run instead.
    fn host(sh: &'a Shell, packages: &[&str]) -> Result<Apt<'a>> {
        let command = format!("sudo apt-get install --no-install-recommends {}", packages.join(" "));
        if installs_forbidden() {
            bail!("--no-install: shipshape installs nothing. Install it yourself (`{command}`), then rerun");
        }
        let os = OsRelease::read()?;
        if !os.is_debian_family() {
            bail!(
                "shipshape installs packages on Debian and Ubuntu only (this is {:?}): install {} with your package manager, then rerun",
                os.id,
                packages.join(", ")
            );
        }
        if !is_root(sh)? {
            bail!("installing packages needs root: rerun as root, or run `{command}` and rerun");
        }
        Ok(Apt { sh, options: Vec::new() })
    }

    /// apt with Debian trixie added at a priority below every installed release (100), so only a
    /// package asked for as `name/trixie` comes from trixie, and only the dependencies bookworm
    /// cannot satisfy. The host's own sources are copied beside it; /etc/apt is not written.
    fn with_trixie(sh: &'a Shell) -> Result<Apt<'a>> {
        let mut apt = Apt::host(sh, &["docker.io/trixie"])?;
        let root = crate::cache::root()?.join("apt");
        let parts = root.join("sources.list.d");
        let prefs = root.join("preferences.d");
        for dir in [&parts, &prefs, &root.join("lists/partial"), &root.join("cache/archives/partial")] {
            std::fs::create_dir_all(dir)?;
        }
        // The host's sources, so everything but the engine resolves exactly as it would for the host.
        let mut host_sources = vec![PathBuf::from("/etc/apt/sources.list")];
        if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
            host_sources.extend(entries.flatten().map(|e| e.path()));
        }
        for source in host_sources {
            let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("");
            if source.is_file() && (ext == "list" || ext == "sources") {
                let name = format!("host-{}", source.file_name().unwrap().to_string_lossy());
                std::fs::copy(&source, parts.join(name))?;
            }
        }
        std::fs::write(
            parts.join("shipshape-trixie.sources"),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )?;
        std::fs::write(prefs.join("shipshape-trixie"), "Package: *\nPin: release n=trixie\nPin-Priority: 100\n")?;
        let empty_list = root.join("sources.list");
        std::fs::write(&empty_list, "")?;
        apt.options = [
            format!("Dir::Etc::sourcelist={}", empty_list.display()),
            format!("Dir::Etc::sourceparts={}", parts.display()),
            format!("Dir::Etc::preferencesparts={}", prefs.display()),
            format!("Dir::State::Lists={}", root.join("lists").display()),
            format!("Dir::Cache={}", root.join("cache").display()),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        Ok(apt)
    }

    fn update(&self) -> Result<()> {
        let options = &self.options;
        read_or_explain(cmd!(self.sh, "apt-get {options...} update -qq")).context("apt-get update failed")?;
        Ok(())
    }

    /// The version apt would install for `package`, if any.
    fn candidate(&self, package: &str) -> Result<Option<String>> {
        self.update()?;
        let options = &self.options;
        let out = read_or_explain(cmd!(self.sh, "apt-cache {options...} policy {package}"))?;
        Ok(out.lines().find_map(|l| l.trim().strip_prefix("Candidate:")).map(str::trim).filter(|v| *v != "(none)").map(str::to_owned))
    }

    /// Installs `packages` (and the new packages they depend on) after proving, by simulation,
    /// that no installed package changes; then checks the same against the dpkg database.
    fn install(&self, packages: &[&str], why: &str) -> Result<()> {
        self.update()?;
        let options = &self.options;
        let plan_text = read_or_explain(
            cmd!(self.sh, "apt-get {options...} --simulate --no-install-recommends install {packages...}")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("apt cannot install {}", packages.join(" ")))?;
        let plan = AptPlan::parse(&plan_text);
        if !plan.changed.is_empty() {
            bail!(
                "refusing to install {}: apt would change packages this machine already has ({}). \
                 shipshape never upgrades, downgrades or removes a host's package: install {} yourself, then rerun",
                packages.join(" "),
                plan.changed.join(", "),
                packages.join(" ")
            );
        }
        println!("    apt-get install {} ({why}): {} new packages: {}", packages.join(" "), plan.new.len(), plan.new.join(" "));
        let before = dpkg_versions(self.sh)?;
        let log = crate::cache::root()?.join("logs/apt.log");
        std::fs::create_dir_all(log.parent().expect("logs dir"))?;
        let started = Instant::now();
        run_logged(
            cmd!(self.sh, "apt-get {options...} install --yes --quiet --no-install-recommends {packages...}")
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &log,
            &format!("apt-get install {}", packages.join(" ")),
        )?;
        let after = dpkg_versions(self.sh)?;
        let changed = changed_versions(&before, &after);
        if !changed.is_empty() {
            bail!(
                "installing {} changed packages this machine already had, against what apt simulated: {} (log {}). \
                 Check the host before going on",
                packages.join(" "),
                changed.join(", "),
                log.display()
            );
        }
        let added = after.len() - before.len();
        println!(
            "    installed in {:.0?}: {added} new packages, no package the host had changed (log {})",
            started.elapsed(),
            log.display()
        );
        Ok(())
    }
}

/// What `apt-get --simulate install` says it would do.
#[derive(Debug, Default, PartialEq)]
struct AptPlan {
    /// Packages that would be newly installed.
    new: Vec<String>,
    /// Installed packages it would upgrade, downgrade or remove, with versions.
    changed: Vec<String>,
}

impl AptPlan {
    /// Reads `Inst name [old] (new ...)` (an upgrade or downgrade: the bracket is the installed
    /// version), `Inst name (new ...)` (new) and `Remv name [old]` lines.
    fn parse(text: &str) -> AptPlan {
        let mut plan = AptPlan::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(action), Some(name)) = (words.next(), words.next()) else { continue };
            let rest: Vec<&str> = words.collect();
            let installed = rest.first().filter(|w| w.starts_with('[')).map(|w| w.trim_matches(['[', ']']));
            let new = rest.iter().find(|w| w.starts_with('(')).map(|w| w.trim_start_matches('('));
            match (action, installed) {
                ("Inst", None) => plan.new.push(name.to_owned()),
                ("Inst", Some(old)) => plan.changed.push(format!("{name} {old} -> {}", new.unwrap_or("?"))),
                ("Remv", old) => plan.changed.push(format!("{name} {} removed", old.unwrap_or(""))),
                _ => {}
            }
        }
        plan
    }
}

/// What setting the host up did to its packages, measured: dpkg's list before `before` and now.
/// Fails when a package the host had changed version or went away (the host is not ours).
pub fn packages_unchanged_since(sh: &Shell, before: &Option<BTreeMap<String, String>>) -> Result<()> {
    let Some(before) = before else { return Ok(()) };
    let after = dpkg_versions(sh)?;
    let changed = changed_versions(before, &after);
    if !changed.is_empty() {
        bail!("setting up this machine changed packages it already had: {}", changed.join(", "));
    }
    println!("host packages: {} before set-up, {} after, none of those it had changed", before.len(), after.len());
    Ok(())
}

/// Whether this machine keeps a dpkg database (Debian and its derivatives).
pub fn has_dpkg(sh: &Shell) -> bool {
    on_path(sh, "dpkg-query")
}

/// The dpkg database's packages and versions, on a machine that has dpkg (None elsewhere).
pub fn package_snapshot(sh: &Shell) -> Option<BTreeMap<String, String>> {
    has_dpkg(sh).then(|| dpkg_versions(sh).ok()).flatten()
}

/// Every installed package and its version, from the dpkg database.
fn dpkg_versions(sh: &Shell) -> Result<BTreeMap<String, String>> {
    let format = "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\n";
    let out = read_or_explain(cmd!(sh, "dpkg-query --show --showformat {format}"))?;
    Ok(parse_dpkg(&out))
}

fn parse_dpkg(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, version, status) = (w.next()?, w.next()?, w.next()?);
            // "ii" installed; "rc" (removed, config left) is not an installed package.
            status.starts_with('i').then(|| (name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// Packages present before whose version differs after, or which are gone.
fn changed_versions(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    before
        .iter()
        .filter_map(|(name, old)| match after.get(name) {
            Some(new) if new == old => None,
            Some(new) => Some(format!("{name} {old} -> {new}")),
            None => Some(format!("{name} {old} removed")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_install_of_new_packages_changes_nothing() {
        let text = "NOTE: This is only a simulation!\n\
            Inst containerd (1.7.24~ds1-6+deb13u1 Debian:13.8/stable [amd64])\n\
            Inst docker.io (26.1.5+dfsg1-9+deb13u1+b1 Debian:13.8/stable [amd64])\n\
            Conf docker.io (26.1.5+dfsg1-9+deb13u1+b1 Debian:13.8/stable [amd64])\n";
        let plan = AptPlan::parse(text);
        assert_eq!(plan.new, ["containerd", "docker.io"]);
        assert!(plan.changed.is_empty());
    }

    #[test]
    fn upgrades_and_removals_in_a_simulation_are_changes() {
        // What `apt-get -s install postgresql` answered on a machine with postgresql-common 248+deb12u1.
        let text = "Inst postgresql-common [248+deb12u1] (248+deb12u2 Debian-Security:12/oldstable-security [all]) []\n\
            Inst libc6 [2.36-9+deb12u14] (2.41-12 Debian:13.8/stable [amd64])\n\
            Inst debootstrap (1.0.128+nmu2+deb12u2 Debian:12.15/oldstable [all])\n\
            Remv docker.io [20.10.24+dfsg1-1+deb12u1+b6]\n";
        let plan = AptPlan::parse(text);
        assert_eq!(plan.new, ["debootstrap"]);
        assert_eq!(
            plan.changed,
            [
                "postgresql-common 248+deb12u1 -> 248+deb12u2",
                "libc6 2.36-9+deb12u14 -> 2.41-12",
                "docker.io 20.10.24+dfsg1-1+deb12u1+b6 removed"
            ]
        );
    }

    #[test]
    fn the_dpkg_comparison_names_every_changed_or_removed_package() {
        let before = parse_dpkg("libc6:amd64 2.36-9 ii \nperl:amd64 5.36.0-7 ii \nold:amd64 1.0 rc \n");
        let after = parse_dpkg("libc6:amd64 2.41-12 ii \ndocker.io:amd64 26.1.5 ii \n");
        assert_eq!(changed_versions(&before, &after), ["libc6:amd64 2.36-9 -> 2.41-12", "perl:amd64 5.36.0-7 removed"]);
        assert!(changed_versions(&before, &before).is_empty());
    }

    #[test]
    fn no_install_names_the_exact_command() {
        forbid_installs();
        let sh = Shell::new().unwrap();
        let err = Apt::host(&sh, &["debootstrap", "gcc"]).err().unwrap().to_string();
        assert!(err.contains("`sudo apt-get install --no-install-recommends debootstrap gcc`"), "{err}");
    }

    #[test]
    fn docker_twenty_is_refused_with_what_to_do() {
        let err = check_engine_version("20.10.24+dfsg1", "this machine's dockerd").unwrap_err().to_string();
        assert!(err.contains("moby#42906") && err.contains("does not replace"), "{err}");
        assert!(check_engine_version("26.1.5+dfsg1", "x").is_ok());
    }
}
