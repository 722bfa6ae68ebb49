//! `cargo xtask`: parse the command line, open one shell at the repository root, run the command
//! (commands.rs), print `error: {:#}` (the whole context chain) on failure.
use clap::Parser;
use xtask::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.no_install {
        xtask::host::forbid_installs();
    }
    // This process is the command a person or a CI job runs: Ctrl-C and a cancel stop its flows
    // at a safe point. (A library user, such as the test binary running flows side by side, keeps
    // the default: a signal ends it.)
    xtask::interrupt::stop_flows_safely_on_signals();
    let result = xtask::repo_shell().and_then(|sh| xtask::commands::run(cli.command, &sh));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The command has printed its findings; only the exit code is left to give.
        Err(err) if err.downcast_ref::<xtask::report::Exit>().is_some() => {
            std::process::ExitCode::from(err.downcast_ref::<xtask::report::Exit>().map(|e| e.0).unwrap_or(1))
        }
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed, and why.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
