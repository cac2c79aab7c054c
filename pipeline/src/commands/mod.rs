//! One module per subcommand.

use std::process::ExitCode;

use crate::cli::Command;

mod containers;
pub mod demo;
mod events;
mod investigate;
mod oci_hook;
mod replay;
mod rules;
mod run;
mod scan;
mod scanner;
mod siem_export;

pub fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Scanner(args) => scanner::run(args),
        Command::SiemExport(args) => siem_export::run(args),
        Command::Events(args) => events::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Investigate(args) => investigate::run(args),
        Command::Containers(args) => containers::run(args),
        Command::OciHook(args) => oci_hook::run(args),
        Command::Rules { command } => rules::run(command),
    }
}
