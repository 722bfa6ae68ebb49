//! Cargo run from inside cargo: `cargo xtask`, and the end-to-end tests, build the xtask binary,
//! the model-server image and the suite with the cargo that started them.
use xshell::{cmd, Cmd, Shell};

/// Cargo sets these for the crate it runs (`cargo run`, `cargo test`); they describe that crate,
/// not the build a nested cargo is asked for. Build scripts that track them (ring's tracks
/// `CARGO_MANIFEST_DIR`) would rerun whenever the nested build starts from another crate's
/// process, and the whole TLS stack would be rebuilt: `cargo xtask test` built the e2e xtask
/// binary from xtask's process, then every end-to-end test rebuilt it from the tests' process.
const RUNNING_CRATE_PREFIXES: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// The cargo that runs us (`CARGO`), else the one on PATH.
pub fn program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The target directory of the builds made from inside a running `cargo test` (the e2e xtask
/// binary, the model-server image's release build): `cargo test` holds the lock on the
/// workspace's own.
pub fn image_build_target_dir() -> std::path::PathBuf {
    crate::repo_root().join("target/image-build")
}

/// `cargo <args>`, with the running crate's variables removed (see [`RUNNING_CRATE_PREFIXES`]),
/// so the same build is fresh whichever process asks for it.
pub fn command<'a, A: AsRef<std::ffi::OsStr>>(sh: &'a Shell, args: impl IntoIterator<Item = A>) -> Cmd<'a> {
    let cargo = program();
    without_running_crate(cmd!(sh, "{cargo} {args...}"))
}

/// `cmd` (a cargo subcommand's own binary, such as cargo-auditable) with the running crate's
/// variables removed and `CARGO` pointing at our cargo.
pub fn without_running_crate(cmd: Cmd<'_>) -> Cmd<'_> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| describes_running_crate(name))
        .fold(cmd, |cmd, name| cmd.env_remove(name))
        .env("CARGO", program())
}

fn describes_running_crate(variable: &str) -> bool {
    RUNNING_CRATE_PREFIXES.iter().any(|prefix| variable.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_running_crates_variables_are_told_from_cargos_own_settings() {
        for set_by_cargo_run in
            ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_PKG_NAME", "CARGO_CRATE_NAME", "CARGO_BIN_EXE_xtask", "OUT_DIR"]
        {
            assert!(super::describes_running_crate(set_by_cargo_run), "{set_by_cargo_run}");
        }
        for setting in ["CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS", "CARGO_NET_OFFLINE", "CARGO_REGISTRIES_X_INDEX"] {
            assert!(!super::describes_running_crate(setting), "{setting}");
        }
    }

    /// `cargo xtask` (xtask alone) and `cargo test --workspace` must compile xtask's
    /// dependencies with the same features, or the suite compiles them all a second time:
    /// every feature the workspace turns on for a crate in xtask's tree is on when xtask is
    /// built alone (xtask/Cargo.toml's unification section).
    #[test]
    fn xtask_alone_is_built_with_the_workspaces_features() {
        use std::collections::{BTreeMap, BTreeSet};
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(crate::repo_root());
        let features = |selection: &[&str]| -> BTreeMap<String, BTreeSet<String>> {
            let args = ["tree", "--locked", "--offline", "--prefix", "none", "--no-dedupe", "--format", "{p}|{f}"];
            let out = super::command(&sh, args.iter().chain(selection)).read().unwrap();
            let mut by_package: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for line in out.lines() {
                let (package, features) = line.split_once('|').unwrap_or((line, ""));
                let package = package.split(" (").next().unwrap().trim().to_owned();
                by_package.entry(package).or_default().extend(features.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
            }
            by_package
        };
        let alone = features(&["--package", "xtask", "--edges", "normal,build"]);
        let workspace = features(&["--workspace", "--edges", "normal,build,dev"]);
        assert!(alone.len() > 100, "cargo tree listed too few packages: {alone:?}");
        let missing: Vec<String> = alone
            .iter()
            .filter_map(|(package, on)| {
                let more: Vec<&String> = workspace.get(package)?.difference(on).collect();
                (!more.is_empty()).then(|| format!("{package}: {more:?}"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the workspace turns on features xtask alone does not; add them to xtask/Cargo.toml's unification section:\n{}",
            missing.join("\n")
        );
    }
}
