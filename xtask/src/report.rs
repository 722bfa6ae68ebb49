//! What a command found, for people (one line per check), for machines (`--output json`) and
//! for GitHub Actions (the job's step summary), and the exit code that goes with it.
use std::io::Write;

use serde::Serialize;

/// How a check came out. Exit codes: 0 all passed, 5 passed with warnings, 1 something failed;
/// never 2, clap's usage error (a script must tell a warning from a mistyped flag).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Warn => 5,
            Outcome::Fail => 1,
        }
    }
}

/// One line of a report: what was checked, how it came out, and (for failures) what to do.
#[derive(Serialize, Clone, Debug)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub seconds: f64,
}

impl Check {
    pub fn new(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> Check {
        Check { name: name.into(), outcome, detail: detail.into(), fix: None, seconds: 0.0 }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// The worst outcome of a set of checks (Pass for none).
pub fn overall(checks: &[Check]) -> Outcome {
    checks.iter().map(|c| c.outcome).max().unwrap_or(Outcome::Pass)
}

/// Human output: `[n/N] PASS name: detail`, with the fix under a failure.
pub fn print_checks(checks: &[Check]) {
    for (n, check) in checks.iter().enumerate() {
        println!("[{}/{}] {} {}: {} ({:.2}s)", n + 1, checks.len(), check.outcome.label(), check.name, check.detail, check.seconds);
        if let Some(fix) = &check.fix {
            println!("      fix: {fix}");
        }
    }
}

/// Human lines or one JSON document on stdout (`--output`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Human,
    Json,
}

/// How often a report repeats (`--watch --interval`): None reports once. With `until`, the
/// watch ends when the release settles, or at the latest after that long (`--timeout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    pub every_seconds: Option<u64>,
    pub until: Option<std::time::Duration>,
}

/// Where a release stands, for a watch that waits for it to settle (`status --watch --timeout`,
/// as `kubectl argo rollouts status --timeout`): each has its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// Its latest change went through (or a canary waits at the approval gate, every step
    /// passed): exit 0.
    Healthy,
    /// Its latest change failed, was aborted or was interrupted: a person must look. Exit 1.
    Degraded,
    /// Stopped on purpose until a person decides (a canary paused without evidence): exit 3,
    /// as `canary start`'s.
    Paused,
    /// A flow is under way: the watch goes on; at its timeout, exit 4.
    Changing,
}

/// The exit code of a watch whose timeout passed while the release was still changing.
pub const EXIT_STILL_CHANGING: u8 = 4;

impl Standing {
    pub fn exit_code(self) -> u8 {
        match self {
            Standing::Healthy => 0,
            Standing::Degraded => 1,
            Standing::Paused => 3,
            Standing::Changing => EXIT_STILL_CHANGING,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Standing::Healthy => "healthy",
            Standing::Degraded => "degraded",
            Standing::Paused => "paused",
            Standing::Changing => "changing",
        }
    }

    /// Where a release stands from its latest run (None: no run journaled) and whether a flow
    /// holds it now.
    pub fn of(latest: Option<crate::journal::RunResult>, held: bool) -> Standing {
        use crate::journal::RunResult;
        match (latest, held) {
            (_, true) => Standing::Changing,
            (None | Some(RunResult::Succeeded | RunResult::RolledBack), false) => Standing::Healthy,
            (Some(RunResult::Paused), false) => Standing::Paused,
            // Running with nobody holding the release: its process is gone (resume or undo it).
            // Closed: the journal's last word no longer describes the release (`status` says why).
            (
                Some(RunResult::Running | RunResult::Failed | RunResult::FailedNeedsAttention | RunResult::Aborted | RunResult::Closed),
                false,
            ) => Standing::Degraded,
        }
    }
}

/// One round of a watched report: its outcome (the exit code of a report run once, or at a
/// timeout), and where the release stands, for reports that say (status, canary status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    pub outcome: Outcome,
    pub standing: Option<Standing>,
}

impl From<Outcome> for Round {
    fn from(outcome: Outcome) -> Round {
        Round { outcome, standing: None }
    }
}

impl Round {
    /// Whether a watch with a timeout ends on this round, and with which exit code: a report that
    /// says where the release stands ends once it has settled; one of checks once they pass.
    fn settles(self) -> Option<u8> {
        match self.standing {
            Some(Standing::Changing) => None,
            Some(standing) => Some(standing.exit_code()),
            None => (self.outcome == Outcome::Pass).then_some(0),
        }
    }

    /// The exit code when the timeout passes on this round.
    fn at_timeout(self) -> u8 {
        match self.standing {
            Some(standing) => standing.exit_code(),
            None => self.outcome.exit_code(),
        }
    }
}

/// Runs `report` once and exits with its outcome's code; with a watch, runs it every interval
/// until Ctrl-C (the process ends on the signal), each round under a time stamp; with a watch
/// and a timeout, until the round settles ([`Round::settles`]) or the timeout passes.
pub fn repeat<R: Into<Round>>(watch: Watch, mut report: impl FnMut() -> anyhow::Result<R>) -> anyhow::Result<()> {
    let Some(interval) = watch.every_seconds else {
        return exit_for(report()?.into().outcome);
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let started = std::time::Instant::now();
    let mut last: Option<Round> = None;
    loop {
        if terminal {
            // Clear the screen and home the cursor: the newest report in place of the last.
            print!("\x1b[2J\x1b[H");
        }
        match watch.until {
            Some(until) => eprintln!(
                "{}  every {interval} s until it settles or {} s have passed ({:.0} s so far)",
                crate::journal::now(),
                until.as_secs(),
                started.elapsed().as_secs_f64()
            ),
            None => eprintln!("{}  every {interval} s (Ctrl-C stops)", crate::journal::now()),
        }
        match report() {
            Ok(round) => last = Some(round.into()),
            Err(err) => eprintln!("this round failed: {err:#}"),
        }
        let _ = std::io::stdout().flush();
        if let Some(until) = watch.until {
            if let Some(code) = last.and_then(Round::settles) {
                return exit_with(code);
            }
            if started.elapsed() >= until {
                let code = last.map(Round::at_timeout).unwrap_or(1);
                let standing = last.and_then(|r| r.standing).map(|s| s.word()).unwrap_or("not passing");
                eprintln!("--timeout {} s passed, the release still {standing}: exit {code}", until.as_secs());
                return exit_with(code);
            }
            let left = until.saturating_sub(started.elapsed());
            std::thread::sleep(left.min(std::time::Duration::from_secs(interval)));
        } else {
            std::thread::sleep(std::time::Duration::from_secs(interval));
        }
    }
}

/// Ok for 0, else an [`Exit`] carrying `code`.
fn exit_with(code: u8) -> anyhow::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Exit(code).into())
    }
}

/// The process's own stdout while `--output json` has pointed stdout at stderr.
static JSON_STDOUT: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// `--output json`: stdout carries the JSON document alone, as with kubectl and helm, so
/// `cargo xtask deploy -o json | jq` works. Everything else written to stdout from here on (the
/// target line, progress, the external tools' own output, which they inherit) goes to stderr;
/// [`print_json`] writes to the stdout kept aside.
pub fn json_only_on_stdout() -> anyhow::Result<()> {
    std::io::stdout().flush()?;
    let original = rustix::io::dup(std::io::stdout())?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    *JSON_STDOUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::fs::File::from(original));
    Ok(())
}

/// Writes one JSON document, pretty, to stdout (the one kept aside by [`json_only_on_stdout`]).
pub fn print_json(document: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(document)?;
    match JSON_STDOUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut() {
        Some(stdout) => {
            writeln!(stdout, "{text}")?;
            stdout.flush()?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// Appends markdown to `$GITHUB_STEP_SUMMARY` when running in GitHub Actions.
pub fn github_step_summary(markdown: &str) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else { return };
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| writeln!(f, "{markdown}"));
    if let Err(err) = written {
        eprintln!("warning: could not write the GitHub step summary: {err}");
    }
}

/// Appends `name=value` lines to `$GITHUB_OUTPUT` when running in GitHub Actions: what a later
/// job of the workflow reads (`needs.<job>.outputs.<name>`). Values are one line each.
pub fn github_output(pairs: &[(&str, &str)]) {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else { return };
    let lines: String = pairs.iter().map(|(name, value)| format!("{name}={}\n", value.replace(['\n', '\r'], " "))).collect();
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(lines.as_bytes()));
    if let Err(err) = written {
        eprintln!("warning: could not write the GitHub step outputs: {err}");
    }
}

/// Markdown table of checks for a step summary.
pub fn markdown_checks(title: &str, checks: &[Check]) -> String {
    let mut md = format!("### {title}: {}\n\n| check | result | detail |\n| --- | --- | --- |\n", overall(checks).label());
    for check in checks {
        md.push_str(&format!("| {} | {} | {} |\n", check.name, check.outcome.label(), check.detail.replace('|', "\\|")));
    }
    md
}

/// An error that only carries an exit code: the command has already said what happened.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The exit code the process ends with for `result` (main.rs gives it).
pub fn exit_code_of<T>(result: &anyhow::Result<T>) -> u8 {
    match result {
        Ok(_) => 0,
        Err(err) => err.downcast_ref::<Exit>().map(|e| e.0).unwrap_or(1),
    }
}

/// What a command that changes the release did, for `--output json`: the command, its exit
/// code, its error (none when it only carries an exit code, like a canary paused without
/// evidence: the runs say why), and the journal entries of the runs it ended, as the journal
/// holds them (`id`, `flow`, `args`, `actor`, `started`, `finished`, `result`, `steps`, `facts`,
/// `error`). Its fields only ever grow.
pub fn command_document(command: &str, result: &anyhow::Result<()>, runs: &[crate::journal::Entry]) -> serde_json::Value {
    let error = result.as_ref().err().filter(|err| err.downcast_ref::<Exit>().is_none()).map(|err| format!("{err:#}"));
    serde_json::json!({"command": command, "exit_code": exit_code_of(result), "error": error, "runs": runs})
}

/// Ok for a pass, else the [`Exit`] code for the outcome.
pub fn exit_for(outcome: Outcome) -> anyhow::Result<()> {
    exit_with(outcome.exit_code())
}

/// How a command made of checks reports, in one place: on a terminal each check on its line and
/// a last line saying `verdict`; with `--output json` one document (`{namespace, outcome, <list>:
/// [...]}`); in GitHub Actions a step summary too. Returns the overall outcome.
pub fn emit(
    title: &str,
    namespace: &str,
    checks: &[Check],
    output: Output,
    list: &str,
    verdict: impl Fn(Outcome) -> String,
) -> anyhow::Result<Outcome> {
    let outcome = overall(checks);
    match output {
        Output::Human => {
            print_checks(checks);
            println!("{title}: {}", verdict(outcome));
        }
        Output::Json => {
            let doc = serde_json::json!({"namespace": namespace, "outcome": outcome, list: checks});
            print_json(&doc)?;
        }
    }
    github_step_summary(&markdown_checks(&format!("{title} {namespace}"), checks));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, RunResult};

    #[test]
    fn a_changing_command_s_document_holds_its_exit_code_error_and_runs() {
        let run = Entry {
            id: "20261205T120000Z-deploy-0001".to_owned(),
            flow: "deploy".to_owned(),
            result: RunResult::Failed,
            facts: [("to_digest".to_owned(), "sha256:ab".to_owned())].into(),
            ..Default::default()
        };
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("rollout timed out").context("deploy of v2 failed"));
        let document = command_document("deploy", &failed, std::slice::from_ref(&run));
        assert_eq!(document["command"], "deploy");
        assert_eq!(document["exit_code"], 1);
        assert_eq!(document["error"], "deploy of v2 failed: rollout timed out");
        assert_eq!(document["runs"][0]["id"], "20261205T120000Z-deploy-0001");
        assert_eq!(document["runs"][0]["result"], "failed");
        assert_eq!(document["runs"][0]["facts"]["to_digest"], "sha256:ab");

        // An exit code alone (a canary paused without evidence) is no error: the runs say why.
        let paused: anyhow::Result<()> = Err(Exit(3).into());
        let document = command_document("canary start", &paused, &[]);
        assert_eq!((document["exit_code"].as_u64(), document["error"].is_null()), (Some(3), true));
        assert_eq!(command_document("reload", &Ok(()), &[])["exit_code"], 0);
    }

    #[test]
    fn a_watch_with_a_timeout_settles_as_argo_rollouts_status_does() {
        use RunResult::*;
        assert_eq!(Standing::of(Some(Succeeded), true), Standing::Changing, "a flow holds it");
        assert_eq!(Standing::of(Some(Succeeded), false), Standing::Healthy);
        assert_eq!(Standing::of(Some(RolledBack), false), Standing::Healthy);
        assert_eq!(Standing::of(None, false), Standing::Healthy, "installed by hand, nothing journaled");
        assert_eq!(Standing::of(Some(Paused), false), Standing::Paused);
        for degraded in [Failed, FailedNeedsAttention, Aborted, Running] {
            assert_eq!(Standing::of(Some(degraded), false), Standing::Degraded, "{degraded:?}");
        }
        let codes: Vec<u8> = [Standing::Healthy, Standing::Degraded, Standing::Paused, Standing::Changing].map(Standing::exit_code).into();
        assert_eq!(codes, [0, 1, 3, EXIT_STILL_CHANGING], "never 2: clap's usage error");
        assert_eq!([Outcome::Pass, Outcome::Fail, Outcome::Warn].map(Outcome::exit_code), [0, 1, 5], "never 2 either");

        let status = |standing| Round { outcome: Outcome::Pass, standing: Some(standing) };
        assert_eq!(status(Standing::Changing).settles(), None, "watched on");
        assert_eq!(status(Standing::Changing).at_timeout(), 4);
        assert_eq!(status(Standing::Paused).settles(), Some(3));
        assert_eq!(status(Standing::Degraded).settles(), Some(1));
        // Checks (verify, doctor) settle once they pass; at the timeout, their last code.
        assert_eq!(Round::from(Outcome::Pass).settles(), Some(0));
        assert_eq!(Round::from(Outcome::Fail).settles(), None);
        assert_eq!(Round::from(Outcome::Warn).at_timeout(), 5);
    }
}
