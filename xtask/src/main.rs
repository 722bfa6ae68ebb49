//! `cargo xtask`: parse the command line, open one shell at the repository root, dispatch.
use clap::Parser;
use xtask::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.no_install {
        xtask::host::forbid_installs();
    }
    let result = xtask::repo_shell().and_then(|sh| match cli.command {
        Command::Up(cmd) => cmd.run(&sh),
        Command::Preflight(cmd) => cmd.run(&sh),
        Command::Deploy(cmd) => cmd.run(&sh),
        Command::Verify(cmd) => cmd.run(&sh),
        Command::Rollback(cmd) => cmd.run(&sh),
        Command::Reload(cmd) => cmd.run(&sh),
        Command::RotateSecret(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
        Command::Status(cmd) => cmd.run(&sh),
        Command::Canary(cmd) => cmd.run(&sh),
        Command::Bluegreen(cmd) => cmd.run(&sh),
        Command::Cluster(cmd) => cmd.run(&sh),
        Command::Image(cmd) => cmd.run(&sh),
        Command::Tools(cmd) => cmd.run(&sh),
        Command::Render(cmd) => cmd.run(&sh),
        Command::Test(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Env(cmd) => cmd.run(&sh),
        Command::Keys(cmd) => cmd.run(&sh),
        Command::Release(cmd) => cmd.run(&sh),
        Command::Completions(cmd) => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(cmd.shell, &mut Cli::command(), "xtask", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    });
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
