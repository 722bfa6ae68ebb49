//! Running an external command whose failure must explain itself. xshell's own errors carry the
//! exit status but not stderr, which is where helm and go say what went wrong.
use anyhow::{bail, Result};

/// Runs `cmd`, returns its stdout; on failure the error holds the tool's stderr.
pub(crate) fn read_or_explain(cmd: xshell::Cmd<'_>) -> Result<String> {
    let shown = cmd.to_string();
    let output = cmd.ignore_status().quiet().output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("`{shown}` failed ({}):\n{}", output.status, stderr.trim_end());
    }
    Ok(String::from_utf8(output.stdout)?)
}
