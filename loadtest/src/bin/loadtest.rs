//! `portcullis-loadtest`: see `docs/loadtest.md`. Exit status 0 when the
//! run's checks passed, 1 when they failed (the report is written either
//! way), 2 when the run could not be made, 130 when it was interrupted
//! (Ctrl-C; the partial report is written).

use std::process::ExitCode;

use clap::Parser;
use portcullis_loadtest::cli::{run, Cli};

/// A phase was cut short by Ctrl-C (one during teardown, after every
/// phase finished, leaves a complete report).
fn interrupted(report: &portcullis_loadtest::report::Report) -> bool {
    report
        .targets
        .iter()
        .flat_map(|t| &t.phases)
        .any(|p| p.aborted.as_deref() == Some(portcullis_loadtest::interrupt::WHY))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(Some(done)) if interrupted(&done.report) => {
            eprintln!("portcullis-loadtest: interrupted; the partial report is written");
            ExitCode::from(130)
        }
        Ok(Some(done)) if !done.report.checks.passed => {
            eprintln!("portcullis-loadtest: CHECKS FAILED:");
            for f in &done.report.checks.failures {
                eprintln!("  - {f}");
            }
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
