//! The command line of `portcullis-loadtest`, and running it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::content::SizeMix;
use crate::error::{Error, IoContext, Result};
use crate::kafka::KafkaSpec;
use crate::progress::ProgressMode;
use crate::report::{Meta, Phase, Report, Scenario};
use crate::responder::Binaries;
use crate::scenario::node::NodeSpec;
use crate::scenario::pipeline::PipelineSpec;
use crate::scenario::Common;

/// Load tests of portcullis: each run measures the baseline (no agent),
/// the floor (a responder that answers ALLOW at once) and portcullis, in
/// the same run, and writes report.json, report.md, latency.png and
/// throughput.png.
#[derive(Debug, Parser)]
#[command(name = "portcullis-loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthetic accesses into the Enforcer, no kernel: actors, journal and
    /// scans alone (optionally with scans over Kafka).
    Pipeline(PipelineArgs),
    /// Real fanotify on a private tmpfs: opener processes read and execute
    /// files against the agent (needs root).
    Node(NodeArgs),
    /// The node scenario with the agent in distributed mode: scans through
    /// Kafka by N scanner services (needs root and a local broker).
    Cluster(ClusterArgs),
    /// (internal) One opener process of the node scenario.
    #[command(hide = true)]
    Opener(OpenerArgs),
}

/// What every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Seed of the files, their order and the infected ones.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bound on each phase of each target (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Bound on the operations of each phase of each target.
    #[arg(long)]
    pub max_ops: Option<u64>,
    /// Files in the set (a cold phase accesses each once).
    #[arg(long, default_value_t = 2000)]
    pub files: usize,
    /// File-size mix: SIZE:WEIGHT,... (sizes like 4096, 4k, 1m).
    #[arg(long, default_value = "4k:70,64k:25,1m:5")]
    pub sizes: SizeMix,
    /// Fraction of the files that are infected (the EICAR test file).
    #[arg(long, default_value_t = 0.01)]
    pub infected_fraction: f64,
    /// Fraction of the files that are executed rather than read.
    #[arg(long, default_value_t = 0.05)]
    pub exec_fraction: f64,
    /// Only the cold phase (every file once, for the first time).
    #[arg(long)]
    pub cold: bool,
    /// Only the warm phase (files again, at random; preceded by an
    /// untimed cold pass).
    #[arg(long)]
    pub warm: bool,
    /// Untimed accesses to extra (clean, 4 KiB) files before each target's
    /// phases: connections, caches and consumer groups settle first.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Operations per second, all workers together (default: flat out).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The agent's decision deadline (`enforcer.deadline`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// An operation slower than this is a hung open and stops the run
    /// (default: twice the deadline plus 5 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub watchdog: Option<Duration>,
    /// Directory of the report (report.json, report.md, *.png).
    #[arg(long, default_value = "loadtest-report")]
    pub out: PathBuf,
    /// No progress and no summary on the terminal.
    #[arg(long)]
    pub quiet: bool,
    /// Progress even when stderr is not a terminal (a line a second).
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Opener processes.
    #[arg(long, default_value_t = 2)]
    pub openers: usize,
    /// Threads per opener process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Scanner threads of the agent (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub scan_threads: usize,
    /// The portcullis binary (default: beside this one).
    #[arg(long)]
    pub portcullis: Option<PathBuf>,
    /// The floor responder (default: portcullis-floor beside this one).
    #[arg(long)]
    pub floor: Option<PathBuf>,
    /// (testing) The floor never answers, so that the watchdog must stop
    /// the run.
    #[arg(long, hide = true)]
    pub stall_floor: bool,
    /// Adds a target after portcullis: the agent with its metrics listener
    /// on, scraped by the tool (and traces with --trace-ratio), to set
    /// against portcullis without telemetry in the same run.
    #[arg(long)]
    pub telemetry: bool,
    /// With --telemetry: traces sampled at this ratio (0 to 1), exported
    /// over OTLP/HTTP to a receiver in the tool (default: traces off).
    #[arg(long, requires = "telemetry", value_parser = parse_ratio)]
    pub trace_ratio: Option<f64>,
    /// With --telemetry: between two scrapes of /metrics.
    #[arg(long, requires = "telemetry", default_value = "1s", value_parser = humantime::parse_duration)]
    pub scrape_interval: Duration,
}

fn parse_ratio(s: &str) -> std::result::Result<f64, String> {
    let r: f64 = s.parse().map_err(|e| format!("{e}"))?;
    crate::telemetry::ratio_flag(r).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// The broker (loopback only).
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// Scanner services to start.
    #[arg(long, default_value_t = 2)]
    pub scanners: usize,
    /// Use the scanner services already consuming the topics under this
    /// prefix instead of starting any.
    #[arg(long, value_name = "TOPIC_PREFIX")]
    pub scanners_at: Option<String>,
    /// Consumer group of the scanner services (default `<prefix>.scanners`,
    /// the agent's default).
    #[arg(long)]
    pub scanner_group: Option<String>,
    /// Partitions of the scan-requests, verdicts and verdict-cache topics.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Scanner threads per scanner service (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub scanner_threads: usize,
    /// Keep the run's topics (default: deleted at the end).
    #[arg(long)]
    pub keep_topics: bool,
    /// A librdkafka setting for every client of the run (the agent, the
    /// scanner services and the kafka floor), as in `[kafka.librdkafka]`
    /// (e.g. `linger.ms=0`). Repeatable.
    #[arg(long = "librdkafka", value_name = "KEY=VALUE")]
    pub librdkafka: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Most accesses in flight.
    #[arg(long, default_value_t = 256)]
    pub window: u64,
    /// Local scanner threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub scan_threads: usize,
    /// Scan through scanner services over Kafka instead of locally.
    #[arg(long)]
    pub kafka: bool,
    #[command(flatten)]
    pub kafka_args: KafkaArgs,
    /// The portcullis binary, for the scanner services (default: beside
    /// this one).
    #[arg(long)]
    pub portcullis: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct OpenerArgs {
    #[arg(long)]
    pub plan: PathBuf,
    #[arg(long)]
    pub result: PathBuf,
}

impl CommonArgs {
    fn build(&self) -> Result<Common> {
        let fraction = |flag: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(Error::flag(flag, format!("{v} is not within 0..=1")))
            }
        };
        if self.files == 0 || self.files > 10_000_000 {
            return Err(Error::flag("files", "must be within 1..=10000000"));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
            return Err(Error::flag("duration", "must be within (0, 1h]"));
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(Error::flag("rate", "must be a positive number"));
            }
        }
        if self.max_ops == Some(0) {
            return Err(Error::flag("max-ops", "must be positive"));
        }
        if self.deadline < Duration::from_millis(10) || self.deadline > Duration::from_secs(600) {
            return Err(Error::flag("deadline", "must be within 10ms..=10m"));
        }
        let watchdog = self
            .watchdog
            .unwrap_or_else(|| Common::default_watchdog(self.deadline));
        if watchdog <= self.deadline {
            return Err(Error::flag(
                "watchdog",
                "must be longer than --deadline (the agent answers by then)",
            ));
        }
        let phases = match (self.cold, self.warm) {
            (true, false) => vec![Phase::Cold],
            (false, true) => vec![Phase::Warm],
            _ => vec![Phase::Cold, Phase::Warm],
        };
        Ok(Common {
            seed: self.seed,
            duration: self.duration,
            max_ops: self.max_ops,
            files: self.files,
            sizes: self.sizes.clone(),
            infected_fraction: fraction("infected-fraction", self.infected_fraction)?,
            exec_fraction: fraction("exec-fraction", self.exec_fraction)?,
            phases,
            rate: self.rate,
            deadline: self.deadline,
            watchdog,
            warmup: self.warmup.min(1_000_000),
            progress: if self.quiet {
                ProgressMode::Never
            } else if self.progress {
                ProgressMode::Always
            } else {
                ProgressMode::Auto
            },
        })
    }
}

impl KafkaArgs {
    fn build(&self, scenario: &'static str) -> Result<KafkaSpec> {
        let bootstrap = self
            .bootstrap
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| Error::Unavailable {
                scenario,
                why: "no broker: set KAFKA_BOOTSTRAP or --bootstrap (scripts/kafka start runs one)"
                    .into(),
            })?;
        if self.scanners_at.is_none() && !(1..=16).contains(&self.scanners) {
            return Err(Error::flag("scanners", "must be within 1..=16"));
        }
        if !(1..=64).contains(&self.partitions) {
            return Err(Error::flag("partitions", "must be within 1..=64"));
        }
        let mut librdkafka = Vec::with_capacity(self.librdkafka.len());
        for kv in &self.librdkafka {
            match kv.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !k.contains('"') && !v.contains('"') => {
                    librdkafka.push((k.trim().to_string(), v.trim().to_string()));
                }
                _ => {
                    return Err(Error::flag(
                        "librdkafka",
                        format!("`{kv}`: expected KEY=VALUE (no quotes)"),
                    ))
                }
            }
        }
        Ok(KafkaSpec {
            librdkafka,
            bootstrap,
            scanners: self.scanners,
            scanners_at: self.scanners_at.clone(),
            scanner_group: self.scanner_group.clone(),
            partitions: self.partitions,
            scanner_threads: self.scanner_threads,
            keep_topics: self.keep_topics,
        })
    }
}

impl NodeArgs {
    fn build(&self, kafka: Option<KafkaSpec>) -> Result<NodeSpec> {
        if !(1..=256).contains(&self.openers) {
            return Err(Error::flag("openers", "must be within 1..=256"));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(Error::flag("threads", "must be within 1..=64"));
        }
        Ok(NodeSpec {
            common: self.common.build()?,
            openers: self.openers,
            threads: self.threads,
            bins: Binaries::locate(self.portcullis.clone(), self.floor.clone())?,
            scan_threads: self.scan_threads,
            kafka,
            floor_stalls: self.stall_floor,
            telemetry: self.telemetry.then_some(crate::telemetry::TelemetrySpec {
                trace_ratio: self.trace_ratio,
                scrape_interval: self.scrape_interval,
            }),
        })
    }
}

/// How a run ended: whether its checks passed.
#[derive(Debug, Clone)]
pub struct Finished {
    pub report: Report,
    pub out: PathBuf,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs the command. `Ok(None)` for the internal opener.
pub fn run(cli: Cli) -> Result<Option<Finished>> {
    if !matches!(cli.command, Command::Opener(_)) {
        crate::interrupt::install().ctx(|| "installing the SIGINT handler".to_string())?;
    }
    let started_at = now_rfc3339();
    let command: Vec<String> = std::env::args().collect();
    let (scenario, common, (params, targets)) = match &cli.command {
        Command::Opener(o) => {
            crate::opener::child_main(&o.plan, &o.result)?;
            return Ok(None);
        }
        Command::Node(a) => {
            let spec = a.build(None)?;
            let out = crate::scenario::node::run(&spec)?;
            (Scenario::Node, &a.common, out)
        }
        Command::Cluster(a) => {
            let spec = a.node.build(Some(a.kafka.build("cluster")?))?;
            let out = crate::scenario::node::run(&spec)?;
            (Scenario::Cluster, &a.node.common, out)
        }
        Command::Pipeline(a) => {
            if !(1..=65_536).contains(&a.window) {
                return Err(Error::flag("window", "must be within 1..=65536"));
            }
            let kafka = if a.kafka {
                Some(a.kafka_args.build("pipeline --kafka")?)
            } else {
                None
            };
            let portcullis = match &a.portcullis {
                Some(p) => p.clone(),
                None => crate::responder::sibling("portcullis")?,
            };
            let spec = PipelineSpec {
                common: a.common.build()?,
                window: a.window,
                scan_threads: a.scan_threads,
                kafka,
                portcullis,
            };
            let out = crate::scenario::pipeline::run(&spec)?;
            (Scenario::Pipeline, &a.common, out)
        }
    };
    let meta = Meta {
        scenario,
        started_at,
        command,
        seed: common.seed,
        params,
    };
    let report = Report::build(meta, &targets);
    let written = crate::output::write(&report, &common.out)?;
    if !common.quiet {
        println!("{}", crate::markdown::render(&report));
        eprintln!(
            "report: {} ({}, {}, {})",
            written.json.display(),
            written.markdown.display(),
            written.latency_png.display(),
            written.throughput_png.display()
        );
    }
    Ok(Some(Finished {
        report,
        out: common.out.clone(),
    }))
}
