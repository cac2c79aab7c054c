//! One module per subcommand.

use std::process::ExitCode;

use portcullis_telemetry::LogOptions;

use crate::cli::Command;

mod containers;
pub mod demo;
mod events;
mod investigate;
mod oci_hook;
mod quarantine;
mod replay;
mod rules;
mod run;
mod scan;
mod scanner;
mod siem_export;

/// Runs `cmd`. `run`, `scanner` and `siem-export` install the log output
/// with the telemetry of their configuration; the others install it first.
pub fn dispatch(cmd: Command, logs: &LogOptions) -> anyhow::Result<ExitCode> {
    match &cmd {
        Command::Run(_) | Command::Scanner(_) | Command::SiemExport(_) => {}
        _ => portcullis_telemetry::init_logs(logs)?,
    }
    match cmd {
        Command::Run(args) => run::run(args, logs),
        Command::Demo(args) => demo::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Scanner(args) => scanner::run(args, logs),
        Command::SiemExport(args) => siem_export::run(args, logs),
        Command::Events(args) => events::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Investigate(args) => investigate::run(args),
        Command::Containers(args) => containers::run(args),
        Command::OciHook(args) => oci_hook::run(args),
        Command::Rules { command } => rules::run(command),
        Command::Quarantine(args) => quarantine::run(args),
    }
}
