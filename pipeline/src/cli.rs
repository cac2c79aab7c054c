//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// On-access file threat protection for container nodes.
///
/// portcullis holds every open and exec of a protected file (a container's
/// root filesystem, or a mount you name) until YARA-X rules find it clean,
/// and denies it when they find malware (enforce mode), or lets it through
/// and records what they find (audit mode). Every access, decision, verdict
/// and action is an event in a local journal and, in distributed mode, on
/// Kafka, where SIEMs read it as ECS, OCSF or CEF.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    after_help = "Try it:   portcullis demo\n\
                  Protect:  portcullis run --config /etc/portcullis/portcullis.toml --containers\n\
                  Read:     portcullis events --journal /var/lib/portcullis/journal\n\
                  Docs:     README.md and docs/ (configuration: portcullis.example.toml)"
)]
pub struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `portcullis=debug`.
    #[arg(long, global = true, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,
    /// Log output: `text` (colours only on a terminal) or `json` (one
    /// object per line, with the fields of the current spans).
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl Cli {
    /// What `--log` and `--log-format` say.
    pub fn log_options(&self) -> portcullis_telemetry::LogOptions {
        portcullis_telemetry::LogOptions {
            filter: self.log.clone(),
            format: match self.log_format {
                LogFormatArg::Text => portcullis_telemetry::LogFormat::Text,
                LogFormatArg::Json => portcullis_telemetry::LogFormat::Json,
            },
        }
    }
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
    /// Read the local journal as a table (a shortcut for `replay --format table`).
    Events(EventsArgs),
    /// Export the Kafka events topic to SIEMs: ECS (and OCSF) topics,
    /// exactly once per event, and CEF over syslog (docs/siem.md).
    SiemExport(SiemExportArgs),
    /// Replay events from a journal, an export or the Kafka events topic:
    /// filtered, as ECS, OCSF, CEF or a table; or verify the log is whole.
    Replay(ReplayArgs),
    /// Show one detection with the events around it: same container (or
    /// process tree), within a time window, as a timeline.
    Investigate(InvestigateArgs),
    /// List the containers a running agent protects (id, name, image,
    /// pod, marks), through its control socket.
    Containers(ContainersArgs),
    /// OCI runtime hook (`createRuntime` stage) for Podman and CRI-O: reads
    /// the container's state on stdin and returns once the agent protects
    /// it (docs/containers.md).
    OciHook(OciHookArgs),
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// List, show, restore or delete the backup copies of removed objects
    /// (docs/quarantine.md). Restores and deletions are journaled.
    Quarantine(QuarantineArgs),
}

#[derive(Debug, clap::Args)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    pub command: QuarantineCommand,
    /// Configuration file: `actions.quarantine_dir`, `journal.dir`, `node_id`.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The quarantine directory; overrides `actions.quarantine_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The journal directory (a running agent serves its quarantine socket
    /// there); overrides `journal.dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Every entry, oldest first: id, time, size, rules, container, path.
    List {
        /// `table` (default) or `json` (the records).
        #[arg(long, value_enum, default_value = "table")]
        format: ContainersFormat,
    },
    /// One entry's record, as JSON.
    Show {
        /// The entry's id (the detection's access event id).
        id: String,
    },
    /// Write an entry back where it was, with its original mode and owner;
    /// the entry stays in the quarantine. Never follows a symlink.
    Restore {
        id: String,
        /// Restore here instead: a file path, or an existing directory (the
        /// original name is kept). Written as a sample to examine: owned by
        /// you, the owner's permission bits only, no set-id bits.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// With --to: the original owner and mode (set-id bits included).
        #[arg(long, requires = "to")]
        keep_mode: bool,
        /// Replace a file that is there (never a directory).
        #[arg(long)]
        force: bool,
    },
    /// Delete an entry (its copy and record).
    Delete { id: String },
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
    /// Protect every container on the node (`containers.enabled`): running
    /// ones at start, new ones before their first open (docs/containers.md).
    #[arg(long)]
    pub containers: bool,
    /// Write "ready" to this file once the mounts are protected.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here: `PORT` (127.0.0.1) or
    /// `HOST:PORT`; overrides `telemetry.metrics_listen`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    /// The agent's control socket; default `containers.control_socket` of
    /// the config file, else /run/portcullis/agent.sock.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Configuration file (for `containers.control_socket`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ContainersFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContainersFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct OciHookArgs {
    /// Configuration file: `containers.control_socket` and
    /// `[containers.hook]`; flags override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's control socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The longest the hook holds the container's start (`containers.hook.timeout`).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// What to do when the agent does not answer
    /// (`containers.hook.on_agent_unavailable`).
    #[arg(long, value_enum)]
    pub on_agent_unavailable: Option<crate::containers::OnAgentUnavailable>,
    /// Where starts are recorded while the agent is down (`containers.hook.spool_dir`).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// The runtime this hook is installed for, when its cgroups and
    /// annotations do not tell: podman, docker, containerd or cri-o.
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ScannerArgs {
    /// Configuration file with a `[kafka]` section.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Directory of .yar rule files; overrides `scan.rules`.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// This instance's stable name: client id `portcullis-scanner-<instance>`,
    /// transactional id `<kafka.scanner_group>.portcullis-scanner-<instance>`.
    /// Default: the host name and pid.
    #[arg(long)]
    pub instance: Option<String>,
    /// Write "ready" to this file once the scanner group has assigned this
    /// service its partitions (a readiness probe: requests are read from then).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here: `PORT` (127.0.0.1) or
    /// `HOST:PORT`; overrides `telemetry.metrics_listen`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SiemExportArgs {
    /// Configuration file with `[kafka]` and `[siem]`. Without one, the
    /// defaults of both apply (bootstrap from env KAFKA_BOOTSTRAP).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This instance's stable name: client id
    /// `portcullis-siem-export-<instance>`, transactional id
    /// `<group>.portcullis-siem-export-<instance>`. Default: the node id.
    #[arg(long)]
    pub instance: Option<String>,
    /// Consumer group; overrides `siem.group`.
    #[arg(long)]
    pub group: Option<String>,
    /// Do not produce the ECS topic (`siem.ecs = false`).
    #[arg(long)]
    pub no_ecs: bool,
    /// Also produce the OCSF topic (`siem.ocsf = true`).
    #[arg(long)]
    pub ocsf: bool,
    /// CEF over syslog to `udp://HOST:PORT`, `tcp://HOST:PORT` or
    /// `tls://HOST:PORT`; overrides `siem.syslog.url`.
    #[arg(long, value_name = "URL")]
    pub syslog: Option<String>,
    /// Syslog facility; overrides `siem.syslog.facility` (default local4).
    #[arg(long, value_enum, value_name = "FACILITY")]
    pub syslog_facility: Option<crate::siem::Facility>,
    /// TLS: CA certificates (PEM) to verify the collector with.
    #[arg(long, value_name = "FILE")]
    pub syslog_ca: Option<PathBuf>,
    /// TLS: client certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub syslog_client_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub syslog_client_key: Option<PathBuf>,
    /// Stop after this many events are committed (a one-shot export).
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
    /// Stop after this long without an event: seconds, or a duration like
    /// `30s`.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<String>,
    /// Write "ready" to this file once the exporter group has assigned this
    /// exporter its partitions.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here: `PORT` (127.0.0.1) or
    /// `HOST:PORT`; overrides `telemetry.metrics_listen`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
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
    /// Which archives to walk: all, sfx (only archives inside an
    /// executable) or off (docs/archives.md). Members are reported as
    /// `ARCHIVE!MEMBER`.
    #[arg(long, value_enum, default_value = "all")]
    pub archives: ArchivesArg,
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
    /// decisions and actions that followed them.
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Option<String>,
    /// Only events at or after this time: RFC 3339, or an age like `10m`.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

/// Where `replay` and `investigate` read events.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// A journal directory. While an agent runs, it is read through the
    /// agent's export socket (`<DIR>/export.sock`), never opened twice.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/portcullis/journal",
        conflicts_with_all = ["export", "kafka"]
    )]
    pub journal: PathBuf,
    /// A journal export (written by `replay --format export`; `-` = stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "kafka")]
    pub export: Option<PathBuf>,
    /// Read the Kafka events topic named by the `[kafka]` section of
    /// `--config`.
    #[arg(long, requires = "config")]
    pub kafka: bool,
    /// Configuration file (for `--kafka`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "ecs")]
    pub format: crate::forensics::output::Format,
    /// Only events at or after this time: RFC 3339, or an age like `1h`.
    /// On Kafka, resolved per partition with offsets-for-times.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Only events at or before this time: RFC 3339, or an age.
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Only this node (repeatable).
    #[arg(long, value_name = "NODE")]
    pub node: Vec<String>,
    /// Only accesses from this container (id or id prefix; repeatable),
    /// with their scans, verdicts, decisions and actions.
    #[arg(long, value_name = "ID")]
    pub container: Vec<String>,
    /// Only containers whose name matches this glob (repeatable): their
    /// accesses with what followed, and their `container_observed` events.
    /// A name a later `described` event brings applies from then on.
    #[arg(long, value_name = "GLOB")]
    pub container_name: Vec<String>,
    /// Only containers of an image matching this glob, by name or digest
    /// (`sha256:...`; repeatable).
    #[arg(long, value_name = "GLOB")]
    pub image: Vec<String>,
    /// Only containers of pods in a namespace matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub namespace: Vec<String>,
    /// Only containers of a pod matching this glob, as `name` or
    /// `namespace/name` (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub pod: Vec<String>,
    /// Only accesses by this process id (repeatable), with what followed.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only events about paths matching this glob (repeatable), e.g.
    /// `/var/lib/**/*.so`.
    #[arg(long, value_name = "GLOB")]
    pub path: Vec<String>,
    /// Only these event kinds (repeatable or comma-separated), e.g.
    /// `verdict_issued,decision_made`.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
    /// Only accesses with this verdict (clean, infected, skipped, error):
    /// the verdict and the decision and actions that followed it.
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Vec<String>,
    /// Only accesses where a rule matching this glob matched (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub rule: Vec<String>,
    /// Check the log instead of printing it: sequence gaps, duplicates and
    /// undecodable records per node. Exit code 1 when anything is wrong.
    #[arg(long)]
    pub verify: bool,
    /// Keep reading new events (a running agent's journal, or Kafka).
    #[arg(long)]
    pub follow: bool,
    /// Report progress on stderr even when it is not a terminal (a plain
    /// line a second instead of the bar).
    #[arg(long)]
    pub progress: bool,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InvestigateArgs {
    /// The event to investigate (any event of the access: the access, its
    /// verdict, decision or action).
    pub event_id: String,
    #[command(flatten)]
    pub source: SourceArgs,
    /// How far before and after the event to look.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "timeline")]
    pub format: InvestigateFormat,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Report progress on stderr even when it is not a terminal (a plain
    /// line a second instead of the bar).
    #[arg(long)]
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum InvestigateFormat {
    /// A timeline for the terminal.
    Timeline,
    /// The investigation as one JSON document (schemas/json/investigation.schema.json).
    Json,
    /// A self-contained HTML report (no external assets).
    Html,
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

/// `portcullis scan --archives`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ArchivesArg {
    All,
    Sfx,
    Off,
}

impl From<ArchivesArg> for portcullis_archive::ArchiveMode {
    fn from(a: ArchivesArg) -> Self {
        match a {
            ArchivesArg::All => Self::All,
            ArchivesArg::Sfx => Self::Sfx,
            ArchivesArg::Off => Self::Off,
        }
    }
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
