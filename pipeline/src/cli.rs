//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// On-access file threat protection for container nodes: fanotify
/// permission events, YARA-X scans, an event-sourced journal.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `portcullis=debug`.
    #[arg(long, global = true, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent (embedded mode) until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Show the agent at work on a private tmpfs, in a private mount namespace.
    Demo(DemoArgs),
    /// Run a scanner service (distributed mode; needs `[kafka]` in the config).
    Scanner(ScannerArgs),
    /// Scan files or directories once.
    Scan(ScanArgs),
    /// Read the local journal.
    Events(EventsArgs),
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (see portcullis.example.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Mount point to protect (repeatable); replaces `protect` of the file.
    #[arg(long = "protect", value_name = "PATH")]
    pub protect: Vec<PathBuf>,
    /// Interceptor mode; overrides `interceptor_mode` of the file.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Directory of .yar rule files; overrides `scan.rules`.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Journal directory; overrides `journal.dir`.
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Write "ready" to this file once the mounts are protected.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ScannerArgs {
    /// Configuration file with a `[kafka]` section.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Directory of .yar rule files; overrides `scan.rules`.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// This instance's stable name (client id and transactional id).
    /// Default: the host name and pid.
    #[arg(long)]
    pub instance: Option<String>,
    /// Write "ready" to this file once the service consumes.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's journal here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Directory of .yar rule files (default: the built-in ruleset).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ScanFormat,
    /// Skip files larger than this many MiB (0 = no limit).
    #[arg(long, default_value_t = 100)]
    pub max_size_mb: u64,
    /// Stop a scan after this long.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Files or directories (directories are walked; symlinks not followed).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The journal directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/portcullis/journal"
    )]
    pub journal: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: EventsFormat,
    /// Only verdicts of this class (clean, infected, skipped, error) and the
    /// events of the same accesses.
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Option<String>,
    /// Only events at or after this time: RFC 3339, or an age like `10m`.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile every rule file of DIR and report.
    Check { dir: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ScanFormat {
    Text,
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EventsFormat {
    Table,
    Jsonl,
}
