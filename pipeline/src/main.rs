//! `portcullis`: parse, build, run.

use std::process::ExitCode;

use clap::Parser;

use portcullis_pipeline::{cli, commands};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The demo must enter its private mount namespace while the process
    // still has a single thread.
    if let cli::Command::Demo(_) = &cli.command {
        if let Err(e) = commands::demo::prepare() {
            eprintln!("portcullis demo: {e:#}");
            return ExitCode::from(2);
        }
    }
    // Each command installs the log output (and, for the long-running ones,
    // the telemetry of their configuration file).
    let logs = cli.log_options();
    match commands::dispatch(cli.command, &logs) {
        Ok(code) => code,
        Err(e) => {
            // Paths and names in errors come from outside: no control
            // character reaches the terminal.
            eprintln!(
                "error: {}",
                portcullis_pipeline::render::printable(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
