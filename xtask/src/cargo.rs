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
}
