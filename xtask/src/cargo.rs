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

/// `cargo <args>`, with the running crate's variables removed (see [`RUNNING_CRATE_PREFIXES`]),
/// so the same build is fresh whichever process asks for it.
pub fn command<'a>(sh: &'a Shell, args: &[&str]) -> Cmd<'a> {
    let cargo = program();
    without_running_crate(cmd!(sh, "{cargo} {args...}"))
}

/// `cmd` (a cargo subcommand's own binary, such as cargo-auditable) with the running crate's
/// variables removed and `CARGO` pointing at our cargo.
pub fn without_running_crate(cmd: Cmd<'_>) -> Cmd<'_> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| RUNNING_CRATE_PREFIXES.iter().any(|prefix| name.starts_with(prefix)))
        .fold(cmd, |cmd, name| cmd.env_remove(name))
        .env("CARGO", program())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_running_crates_variables_are_removed_and_cargos_own_settings_kept() {
        let sh = xshell::Shell::new().unwrap();
        // Set by `cargo test` for this very test binary.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command: std::process::Command = super::command(&sh, &["--version"]).into();
        let removed: Vec<_> = command.get_envs().filter(|(_, value)| value.is_none()).map(|(name, _)| name.to_owned()).collect();
        assert!(removed.iter().any(|name| name == "CARGO_MANIFEST_DIR"), "{removed:?}");
        assert!(removed.iter().any(|name| name == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(!removed.iter().any(|name| name == "CARGO_HOME" || name == "CARGO_TARGET_DIR"), "{removed:?}");
    }
}
