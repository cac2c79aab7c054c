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
    init_tracing(&cli.log);
    match commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs collected from a file or a pipe
    // stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
