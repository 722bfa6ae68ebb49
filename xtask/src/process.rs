//! Running an external command whose failure must explain itself. xshell's own errors carry the
//! exit status but not stderr, which is where helm and go say what went wrong.
use anyhow::{bail, Result};

/// Runs `cmd`, returns its stdout; on failure the error holds the tool's stderr.
pub(crate) fn read_or_explain(cmd: xshell::Cmd<'_>) -> Result<String> {
    let shown = cmd.to_string();
    stdout_or_explain(&shown, cmd.ignore_status().quiet().output()?)
}

/// A finished command's stdout, or an error naming it with its stderr.
fn stdout_or_explain(shown: &str, output: std::process::Output) -> Result<String> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("`{shown}` failed ({}):\n{}", output.status, stderr.trim_end());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// [`read_or_explain`] for a command that must not stop halfway (a helm write): it runs in a
/// process group of its own, so the Ctrl-C a terminal sends to its whole foreground group does
/// not reach it; the flow stops at its next safe point instead (interrupt.rs).
pub(crate) fn read_or_explain_shielded(cmd: xshell::Cmd<'_>) -> Result<String> {
    use std::os::unix::process::CommandExt;
    let shown = cmd.to_string();
    let output = std::process::Command::from(cmd).process_group(0).stdin(std::process::Stdio::null()).output()?;
    stdout_or_explain(&shown, output)
}

/// How often a long command reports that it is still running.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `cmd` with stdout and stderr appended to `log`, showing that it runs (a live line on a
/// terminal, else a heartbeat line every [`HEARTBEAT`]) so a long build never looks hung. On failure the error names the log and
/// quotes its last lines.
pub(crate) fn run_logged(cmd: xshell::Cmd<'_>, log: &std::path::Path, what: &str) -> Result<()> {
    use std::io::Write;
    let shown = cmd.to_string();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(file, "$ {shown}")?;
    let mut child = std::process::Command::from(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .map_err(|e| anyhow::anyhow!("{what}: cannot start `{shown}`: {e}"))?;
    let mut progress = crate::progress::Spinner::start(HEARTBEAT);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        progress.still(&format!("{what}: still running (log {})", log.display()));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    drop(progress);
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{what} failed ({status}); last lines of {}:\n{}", log.display(), tail.join("\n"));
    }
    Ok(())
}

/// Starts `cmd` in the background, in its own process group (Ctrl-C on shipshape does not stop
/// it) and outliving shipshape, with stdout and stderr appended to `log`.
pub(crate) fn spawn_detached(cmd: xshell::Cmd<'_>, log: &std::path::Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let shown = cmd.to_string();
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    std::process::Command::from(cmd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `{shown}`: {e}"))?;
    Ok(())
}
