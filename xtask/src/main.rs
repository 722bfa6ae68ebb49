//! `cargo xtask`: parse the command line, open one shell at the repository root, dispatch.
use clap::Parser;
use xtask::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = xtask::repo_shell().and_then(|sh| match cli.command {
        Command::Up(cmd) => cmd.run(&sh),
        Command::Cluster(cmd) => cmd.run(&sh),
        Command::Image(cmd) => cmd.run(&sh),
        Command::Tools(cmd) => cmd.run(&sh),
        Command::Render(cmd) => cmd.run(&sh),
        Command::Test(cmd) => cmd.run(&sh),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed, and why.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
