//! The report of a run: what was measured ([`PhaseRun`], [`TargetRun`]),
//! and its stable, machine-readable form ([`Report`], written as
//! `report.json`).
//!
//! # JSON shape (`schema_version` 1)
//!
//! Field names are stable: new fields may be added, none is renamed or
//! removed without bumping `schema_version`. Durations are seconds (`_s`),
//! latencies microseconds (`_us`), sizes bytes or KiB (`_kib`).
//!
//! ```text
//! {
//!   "schema_version": 1,
//!   "tool_version": "0.1.0",
//!   "scenario": "pipeline" | "node" | "cluster",
//!   "started_at": "2026-11-28T22:00:00Z",
//!   "command": ["portcullis-loadtest", "node", ...],
//!   "seed": 1,
//!   "host": { "cores": 2, "kernel": "6.18.0" },
//!   "params": { "files", "sizes": [{"bytes","weight"}], "infected_fraction",
//!               "exec_fraction", "phases": ["cold","warm"], "duration_s",
//!               "max_ops", "rate", "openers", "threads_per_opener",
//!               "window", "warmup", "deadline_s", "watchdog_s",
//!               "kafka": null | { "bootstrap", "topic_prefix",
//!                                 "scanner_group", "scanners",
//!                                 "scanners_started", "partitions" } },
//!   "targets": [ {
//!       "name": "baseline" | "floor" | "portcullis",
//!       "description": "...",
//!       "phases": [ {
//!           "name": "cold" | "warm" | "warmup", "target_rate": null | 1000.0,
//!           "ops", "ok", "denied", "errors",
//!           "infected_total", "infected_denied", "clean_denied",
//!           "hung_opens", "wall_s", "throughput_ops_s",
//!           "latency_us": { "count", "p50_us", "p90_us", "p99_us",
//!                           "p999_us", "max_us", "mean_us" },
//!           "latency_curve": [ { "percentile", "latency_us" } ],
//!           "by_kind": { "read" | "exec" | "access":
//!                        { "ops", "ok", "denied", "errors",
//!                          "infected_total", "infected_denied",
//!                          "clean_denied", "latency_us": {...} } },
//!           "timeline": { "interval_s", "completed": [n, ...] },
//!           "aborted": null | "why",
//!           "error_samples": ["..."] } ],
//!       "process": null | { "pid", "cpu_s", "peak_rss_kib" },
//!       "scanners": [ { "instance", "pid", "cpu_s", "peak_rss_kib",
//!                       "scanned", "exit" } ],
//!       "decisions_by_reason": { "verdict": n, "cache_hit": n, ... },
//!       "decisions": { "allow": n, "deny": n },
//!       "verdicts": { "clean": n, "infected": n, "skipped": n, "error": n },
//!       "kafka": null | { "lag_max", "lag_final",
//!                         "samples": [ { "t_s", "lag" } ] },
//!       "problems": ["..."] } ],
//!   "ratios": [ { "phase", "versus": "baseline" | "floor",
//!                 "p50", "p90", "p99", "p999", "throughput" } ],
//!   "checks": { "hung_opens", "infected_total", "infected_denied",
//!               "clean_denied", "errors", "passed", "failures": ["..."] }
//! }
//! ```
//!
//! `ratios` compare the `portcullis` target with each reference target, per
//! phase: latency ratios are portcullis / reference (higher is slower),
//! `throughput` is portcullis / reference (lower is slower); `null` where a
//! side has nothing to compare.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::content::SizeWeight;
use crate::latency::{curve, latency_histogram, merge, ratio, CurvePoint, Latency};
use crate::process::Usage;

/// Bumped when a field is renamed or removed, or changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Error messages kept per phase (the first ones).
pub const ERROR_SAMPLES: usize = 8;

/// A unit enum written in the report by a stable name, with `as_str`
/// and `Display` giving the same name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// The scenario of a run.
    pub enum Scenario {
        Pipeline = "pipeline",
        Node = "node",
        Cluster = "cluster",
    }
}

named_enum! {
    /// What answered the accesses of a target.
    pub enum TargetName {
        /// No agent (node, cluster), or the injector answering itself
        /// (pipeline): the harness alone.
        Baseline = "baseline",
        /// A minimal responder that answers ALLOW at once.
        Floor = "floor",
        /// Over Kafka: only the round trip (produce, consume, produce,
        /// consume) with portcullis's clients and message sizes.
        KafkaFloor = "kafka-floor",
        /// The real thing.
        Portcullis = "portcullis",
        /// The real thing with its metrics scraped and, when asked, its
        /// traces exported (`--telemetry`).
        PortcullisTelemetry = "portcullis+telemetry",
    }
}

impl TargetName {
    /// The targets of every scenario ([`KafkaFloor`](Self::KafkaFloor) is
    /// added over Kafka: [`Self::over_kafka`]).
    pub const ALL: [TargetName; 3] = [Self::Baseline, Self::Floor, Self::Portcullis];

    /// The targets of a run over Kafka (pipeline `--kafka`, cluster).
    pub const OVER_KAFKA: [TargetName; 4] = [
        Self::Baseline,
        Self::Floor,
        Self::KafkaFloor,
        Self::Portcullis,
    ];

    /// Whether the target is the agent (with or without telemetry).
    pub fn is_agent(self) -> bool {
        matches!(self, Self::Portcullis | Self::PortcullisTelemetry)
    }
}

named_enum! {
    /// A pass over the files.
    pub enum Phase {
        /// Every file accessed once, for the first time since the
        /// responder started.
        Cold = "cold",
        /// Files accessed again, at random (verdicts cached).
        Warm = "warm",
        /// An untimed pass before the measured phases (warm-up files, or
        /// the cold pass before a warm-only run). Reported only when it
        /// was cut short by a hung open or a broken opener.
        Warmup = "warmup",
    }
}

named_enum! {
    /// The kind of one operation.
    pub enum OpKind {
        /// open, read to the end, close (node, cluster).
        Read = "read",
        /// fork + execve + wait (node, cluster).
        Exec = "exec",
        /// One synthetic access through the Enforcer (pipeline).
        Access = "access",
    }
}

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (an exec of a non-executable file that was allowed counts
    /// here too: ENOEXEC).
    Ok,
    /// EPERM or EACCES: the responder said no.
    Denied,
    /// Anything else (a harness problem).
    Error,
}

/// Counters of a set of operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ops: u64,
    pub ok: u64,
    pub denied: u64,
    pub errors: u64,
    /// Operations on infected files.
    pub infected_total: u64,
    /// ... that were denied.
    pub infected_denied: u64,
    /// Operations on clean files that were denied.
    pub clean_denied: u64,
}

impl Counts {
    pub fn count(&mut self, outcome: Outcome, infected: bool) {
        self.ops += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::Error => self.errors += 1,
        }
        if infected {
            self.infected_total += 1;
            if outcome == Outcome::Denied {
                self.infected_denied += 1;
            }
        } else if outcome == Outcome::Denied {
            self.clean_denied += 1;
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.ops += o.ops;
        self.ok += o.ok;
        self.denied += o.denied;
        self.errors += o.errors;
        self.infected_total += o.infected_total;
        self.infected_denied += o.infected_denied;
        self.clean_denied += o.clean_denied;
    }
}

/// Operations completed per interval since the start of a phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub interval_s: f64,
    pub completed: Vec<u64>,
}

impl Timeline {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_s: interval.as_secs_f64(),
            completed: vec![],
        }
    }

    /// Counts one completion `at` after the start.
    pub fn count_at(&mut self, at: Duration) {
        let i = if self.interval_s > 0.0 {
            (at.as_secs_f64() / self.interval_s) as usize
        } else {
            0
        };
        // Bounded: a phase is bounded in time, and so is this vector.
        let i = i.min(1_000_000);
        if self.completed.len() <= i {
            self.completed.resize(i + 1, 0);
        }
        self.completed[i] += 1;
    }

    pub fn add(&mut self, o: &Timeline) {
        if self.completed.len() < o.completed.len() {
            self.completed.resize(o.completed.len(), 0);
        }
        for (a, b) in self.completed.iter_mut().zip(&o.completed) {
            *a += b;
        }
        if self.interval_s == 0.0 {
            self.interval_s = o.interval_s;
        }
    }
}

/// One kind of operation in a phase, as measured.
#[derive(Debug, Clone)]
pub struct KindRun {
    pub counts: Counts,
    pub hist: Histogram<u64>,
}

/// One phase of one target, as measured.
#[derive(Debug, Clone)]
pub struct PhaseRun {
    pub phase: Phase,
    pub target_rate: Option<f64>,
    pub wall: Duration,
    pub kinds: BTreeMap<OpKind, KindRun>,
    pub timeline: Timeline,
    pub hung_opens: u64,
    /// Why the phase stopped early (hung operations, a broken opener).
    pub aborted: Option<String>,
    pub error_samples: Vec<String>,
    /// The files (indices into the set) this phase accessed, when it was
    /// a cold pass: a warm phase draws from them only, so it stays warm
    /// even when the cold pass was cut short by its bounds.
    pub accessed: Vec<u32>,
}

impl PhaseRun {
    pub fn new(phase: Phase, target_rate: Option<f64>, interval: Duration) -> Self {
        Self {
            phase,
            target_rate,
            wall: Duration::ZERO,
            kinds: BTreeMap::new(),
            timeline: Timeline::new(interval),
            hung_opens: 0,
            aborted: None,
            error_samples: vec![],
            accessed: vec![],
        }
    }

    /// The histogram and counters of `kind` (created empty).
    pub fn kind_mut(&mut self, kind: OpKind) -> Option<&mut KindRun> {
        match self.kinds.entry(kind) {
            std::collections::btree_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => Some(e.insert(KindRun {
                counts: Counts::default(),
                hist: latency_histogram()?,
            })),
        }
    }

    /// Adds what another worker measured in the same phase.
    pub fn absorb(&mut self, kind: OpKind, counts: &Counts, hist: &Histogram<u64>) {
        if let Some(k) = self.kind_mut(kind) {
            k.counts.add(counts);
            merge(&mut k.hist, hist);
        }
    }

    pub fn note_error(&mut self, message: String) {
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    pub fn totals(&self) -> Counts {
        let mut c = Counts::default();
        for k in self.kinds.values() {
            c.add(&k.counts);
        }
        c
    }

    pub fn merged_histogram(&self) -> Option<Histogram<u64>> {
        let mut h = latency_histogram()?;
        for k in self.kinds.values() {
            merge(&mut h, &k.hist);
        }
        Some(h)
    }

    pub fn report(&self) -> PhaseReport {
        let c = self.totals();
        let merged = self.merged_histogram();
        let secs = self.wall.as_secs_f64();
        PhaseReport {
            name: self.phase,
            target_rate: self.target_rate,
            counts: c,
            hung_opens: self.hung_opens,
            wall_s: secs,
            throughput_ops_s: if secs > 0.0 { c.ops as f64 / secs } else { 0.0 },
            latency_us: merged.as_ref().map(Latency::of).unwrap_or_default(),
            latency_curve: merged.as_ref().map(curve).unwrap_or_default(),
            by_kind: self
                .kinds
                .iter()
                .map(|(k, r)| {
                    (
                        *k,
                        KindReport {
                            counts: r.counts,
                            latency_us: Latency::of(&r.hist),
                        },
                    )
                })
                .collect(),
            timeline: self.timeline.clone(),
            aborted: self.aborted.clone(),
            error_samples: self.error_samples.clone(),
        }
    }
}

/// What the journal (or the Enforcer) said about a target's accesses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub decisions_by_reason: BTreeMap<String, u64>,
    pub decisions: Decisions,
    pub verdicts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    pub allow: u64,
    pub deny: u64,
}

impl Tally {
    /// Counts one journal event (decisions and verdicts; others ignored).
    pub fn add(&mut self, body: &portcullis_schemas::EventBody) {
        use portcullis_schemas::{Decision, EventBody};
        match body {
            EventBody::DecisionMade(d) => {
                *self
                    .decisions_by_reason
                    .entry(d.reason.as_str().to_string())
                    .or_default() += 1;
                match d.decision {
                    Decision::Allow => self.decisions.allow += 1,
                    Decision::Deny => self.decisions.deny += 1,
                }
            }
            EventBody::VerdictIssued(v) => {
                *self
                    .verdicts
                    .entry(v.verdict.class().as_str().to_string())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// A process's usage with its pid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

impl ProcessReport {
    pub fn new(pid: u32, u: Usage) -> Self {
        Self {
            pid,
            cpu_s: u.cpu_s,
            peak_rss_kib: u.peak_rss_kib,
        }
    }
}

/// A scanner service of the cluster scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannerReport {
    pub instance: String,
    pub pid: u32,
    /// CPU seconds while the portcullis target ran.
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    /// Requests it scanned (from its stop log line).
    pub scanned: Option<u64>,
    /// How it stopped.
    pub exit: String,
}

/// Consumer-group lag of the scanner services on the scan-requests topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KafkaLag {
    /// Highest sampled lag (messages).
    pub lag_max: u64,
    /// Lag after the last phase.
    pub lag_final: u64,
    pub samples: Vec<LagSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LagSample {
    /// Seconds since the target started.
    pub t_s: f64,
    pub lag: u64,
}

/// One target, as measured.
#[derive(Debug, Clone)]
pub struct TargetRun {
    pub name: TargetName,
    pub description: String,
    pub phases: Vec<PhaseRun>,
    pub process: Option<ProcessReport>,
    pub scanners: Vec<ScannerReport>,
    pub tally: Tally,
    pub kafka: Option<KafkaLag>,
    /// The telemetry target's scrapes and traces.
    pub telemetry: Option<crate::telemetry::TelemetryReport>,
    /// What went wrong around the measurement (a responder that did not
    /// stop cleanly); each is a check failure.
    pub problems: Vec<String>,
}

impl TargetRun {
    pub fn new(name: TargetName, description: impl Into<String>) -> Self {
        Self {
            name,
            description: description.into(),
            phases: vec![],
            process: None,
            scanners: vec![],
            tally: Tally::default(),
            kafka: None,
            telemetry: None,
            problems: vec![],
        }
    }

    pub fn report(&self) -> TargetReport {
        TargetReport {
            name: self.name,
            description: self.description.clone(),
            phases: self.phases.iter().map(PhaseRun::report).collect(),
            process: self.process,
            scanners: self.scanners.clone(),
            decisions_by_reason: self.tally.decisions_by_reason.clone(),
            decisions: self.tally.decisions,
            verdicts: self.tally.verdicts.clone(),
            kafka: self.kafka.clone(),
            telemetry: self.telemetry.clone(),
            problems: self.problems.clone(),
        }
    }
}

// ------------------------------------------------------------ JSON form

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool_version: String,
    pub scenario: Scenario,
    pub started_at: String,
    pub command: Vec<String>,
    pub seed: u64,
    pub host: Host,
    pub params: Params,
    pub targets: Vec<TargetReport>,
    pub ratios: Vec<RatioReport>,
    pub checks: Checks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cores: usize,
    pub kernel: String,
}

impl Host {
    pub fn here() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The run's parameters (what the command line asked for, resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub files: u64,
    pub sizes: Vec<SizeWeight>,
    pub infected_fraction: f64,
    pub exec_fraction: f64,
    pub phases: Vec<Phase>,
    /// Bound on each phase of each target.
    pub duration_s: f64,
    /// Bound on the operations of each phase of each target.
    pub max_ops: Option<u64>,
    /// Target operations per second (all openers together); `null` = flat
    /// out.
    pub rate: Option<f64>,
    /// Opener processes (node, cluster); 0 in the pipeline scenario.
    pub openers: usize,
    pub threads_per_opener: usize,
    /// Most accesses in flight (pipeline).
    pub window: Option<u64>,
    /// Untimed warm-up accesses (to extra files) before each target's
    /// phases.
    pub warmup: u64,
    /// The agent's decision deadline.
    pub deadline_s: f64,
    /// An operation slower than this is a hung open.
    pub watchdog_s: f64,
    pub kafka: Option<KafkaParams>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaParams {
    pub bootstrap: String,
    pub topic_prefix: String,
    pub scanner_group: String,
    pub scanners: usize,
    /// Whether this tool started the scanner services (else they were
    /// already consuming `topic_prefix`).
    pub scanners_started: bool,
    pub partitions: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub name: TargetName,
    pub description: String,
    pub phases: Vec<PhaseReport>,
    pub process: Option<ProcessReport>,
    pub scanners: Vec<ScannerReport>,
    pub decisions_by_reason: BTreeMap<String, u64>,
    pub decisions: Decisions,
    pub verdicts: BTreeMap<String, u64>,
    pub kafka: Option<KafkaLag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::telemetry::TelemetryReport>,
    pub problems: Vec<String>,
}

impl TargetReport {
    pub fn phase(&self, phase: Phase) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == phase)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: Phase,
    pub target_rate: Option<f64>,
    /// ops, ok, denied, errors, infected_total, infected_denied,
    /// clean_denied (flattened into the phase's object).
    #[serde(flatten)]
    pub counts: Counts,
    pub hung_opens: u64,
    pub wall_s: f64,
    pub throughput_ops_s: f64,
    pub latency_us: Latency,
    pub latency_curve: Vec<CurvePoint>,
    pub by_kind: BTreeMap<OpKind, KindReport>,
    pub timeline: Timeline,
    pub aborted: Option<String>,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    #[serde(flatten)]
    pub counts: Counts,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioReport {
    /// The target set against `versus` (absent in reports before
    /// `--telemetry`: portcullis).
    #[serde(default = "portcullis")]
    pub target: TargetName,
    pub phase: Phase,
    pub versus: TargetName,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub throughput: Option<f64>,
}

/// What must hold whatever the speed: no hung open, every infected file
/// denied by portcullis, no clean file denied, no harness error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub hung_opens: u64,
    /// Operations on infected files under the portcullis target.
    pub infected_total: u64,
    pub infected_denied: u64,
    /// Clean files denied, under any target.
    pub clean_denied: u64,
    /// Operations that failed otherwise, under any target.
    pub errors: u64,
    pub passed: bool,
    pub failures: Vec<String>,
}

/// Everything about a run except its measurements.
#[derive(Debug, Clone)]
pub struct Meta {
    pub scenario: Scenario,
    pub started_at: String,
    pub command: Vec<String>,
    pub seed: u64,
    pub params: Params,
}

impl Report {
    pub fn build(meta: Meta, targets: &[TargetRun]) -> Self {
        let targets: Vec<TargetReport> = targets.iter().map(TargetRun::report).collect();
        let ratios = ratios(&targets);
        let checks = checks(&targets);
        Self {
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: meta.scenario,
            started_at: meta.started_at,
            command: meta.command,
            seed: meta.seed,
            host: Host::here(),
            params: meta.params,
            targets,
            ratios,
            checks,
        }
    }

    pub fn target(&self, name: TargetName) -> Option<&TargetReport> {
        self.targets.iter().find(|t| t.name == name)
    }
}

fn portcullis() -> TargetName {
    TargetName::Portcullis
}

/// Each agent target against the references of the same run; the
/// telemetry target also against the agent without it.
fn ratios(targets: &[TargetReport]) -> Vec<RatioReport> {
    let mut out = vec![];
    let refs = [
        TargetName::Baseline,
        TargetName::Floor,
        TargetName::KafkaFloor,
    ];
    for (name, versus) in [
        (TargetName::Portcullis, &refs[..]),
        (
            TargetName::PortcullisTelemetry,
            &[TargetName::Portcullis][..],
        ),
    ] {
        if let Some(p) = targets.iter().find(|t| t.name == name) {
            ratios_of(p, versus, targets, &mut out);
        }
    }
    out
}

fn ratios_of(
    p: &TargetReport,
    versus: &[TargetName],
    targets: &[TargetReport],
    out: &mut Vec<RatioReport>,
) {
    for phase in &p.phases {
        for &versus in versus {
            let Some(r) = targets
                .iter()
                .find(|t| t.name == versus)
                .and_then(|t| t.phase(phase.name))
            else {
                continue;
            };
            let (a, b) = (&phase.latency_us, &r.latency_us);
            out.push(RatioReport {
                target: p.name,
                phase: phase.name,
                versus,
                p50: ratio(a.p50_us, b.p50_us),
                p90: ratio(a.p90_us, b.p90_us),
                p99: ratio(a.p99_us, b.p99_us),
                p999: ratio(a.p999_us, b.p999_us),
                throughput: ratio(phase.throughput_ops_s, r.throughput_ops_s),
            });
        }
    }
}

fn checks(targets: &[TargetReport]) -> Checks {
    let mut c = Checks {
        hung_opens: 0,
        infected_total: 0,
        infected_denied: 0,
        clean_denied: 0,
        errors: 0,
        passed: true,
        failures: vec![],
    };
    for t in targets {
        for why in &t.problems {
            c.failures.push(format!("{}: {why}", t.name));
        }
        for p in &t.phases {
            c.hung_opens += p.hung_opens;
            c.clean_denied += p.counts.clean_denied;
            c.errors += p.counts.errors;
            if t.name.is_agent() {
                c.infected_total += p.counts.infected_total;
                c.infected_denied += p.counts.infected_denied;
            }
            if let Some(why) = &p.aborted {
                c.failures
                    .push(format!("{} {}: aborted: {why}", t.name, p.name));
            }
        }
    }
    if c.hung_opens > 0 {
        c.failures.push(format!(
            "{} hung opens (no answer within the watchdog bound)",
            c.hung_opens
        ));
    }
    if c.infected_denied != c.infected_total {
        c.failures.push(format!(
            "portcullis denied {} of {} accesses to infected files",
            c.infected_denied, c.infected_total
        ));
    }
    if c.clean_denied > 0 {
        c.failures
            .push(format!("{} accesses to clean files denied", c.clean_denied));
    }
    if c.errors > 0 {
        c.failures.push(format!(
            "{} operations failed otherwise (see error_samples)",
            c.errors
        ));
    }
    c.passed = c.failures.is_empty();
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::latency::record;

    /// A small run: three targets, cold and warm, portcullis denying the
    /// infected accesses.
    pub(crate) fn sample_runs() -> Vec<TargetRun> {
        TargetName::ALL
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut t = TargetRun::new(*name, format!("{name} target"));
                for phase in [Phase::Cold, Phase::Warm] {
                    let mut p = PhaseRun::new(phase, None, Duration::from_millis(100));
                    for n in 0..200u64 {
                        let infected = n % 50 == 0;
                        let outcome = if infected && *name == TargetName::Portcullis {
                            Outcome::Denied
                        } else {
                            Outcome::Ok
                        };
                        let kind = if n % 10 == 0 {
                            OpKind::Exec
                        } else {
                            OpKind::Read
                        };
                        let k = p.kind_mut(kind).unwrap();
                        k.counts.count(outcome, infected);
                        record(&mut k.hist, Duration::from_micros(10 * (i as u64 + 1) + n));
                        p.timeline.count_at(Duration::from_millis(n));
                    }
                    p.wall = Duration::from_millis(200 * (i as u64 + 1));
                    t.phases.push(p);
                }
                t
            })
            .collect()
    }

    pub(crate) fn sample_meta() -> Meta {
        Meta {
            scenario: Scenario::Node,
            started_at: "2026-11-28T22:00:00Z".into(),
            command: vec!["portcullis-loadtest".into(), "node".into()],
            seed: 1,
            params: Params {
                files: 200,
                sizes: vec![SizeWeight {
                    bytes: 4096,
                    weight: 1,
                }],
                infected_fraction: 0.02,
                exec_fraction: 0.1,
                phases: vec![Phase::Cold, Phase::Warm],
                duration_s: 10.0,
                max_ops: None,
                rate: None,
                openers: 2,
                threads_per_opener: 1,
                window: None,
                warmup: 0,
                deadline_s: 5.0,
                watchdog_s: 15.0,
                kafka: None,
            },
        }
    }

    #[test]
    fn counts_split_denials_by_infection() {
        let mut c = Counts::default();
        c.count(Outcome::Denied, true);
        c.count(Outcome::Ok, true);
        c.count(Outcome::Denied, false);
        c.count(Outcome::Error, false);
        assert_eq!(
            c,
            Counts {
                ops: 4,
                ok: 1,
                denied: 2,
                errors: 1,
                infected_total: 2,
                infected_denied: 1,
                clean_denied: 1,
            }
        );
    }

    #[test]
    fn a_report_has_ratios_and_passing_checks() {
        let r = Report::build(sample_meta(), &sample_runs());
        assert_eq!(r.schema_version, SCHEMA_VERSION);
        assert_eq!(r.targets.len(), 3);
        assert_eq!(r.ratios.len(), 4, "{:?}", r.ratios);
        let cold_base = &r.ratios[0];
        assert_eq!(
            (cold_base.phase, cold_base.versus),
            (Phase::Cold, TargetName::Baseline)
        );
        assert!(cold_base.p50.unwrap() > 1.0);
        assert!((cold_base.throughput.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert!(r.checks.passed, "{:?}", r.checks);
        assert_eq!(r.checks.infected_total, 8);
        let p = r
            .target(TargetName::Portcullis)
            .unwrap()
            .phase(Phase::Cold)
            .unwrap();
        assert_eq!(p.counts.ops, 200);
        assert_eq!(p.by_kind[&OpKind::Exec].counts.ops, 20);
        assert_eq!(p.timeline.completed.iter().sum::<u64>(), 200);
        assert_eq!(p.latency_curve.last().unwrap().percentile, 100.0);
        // Stable names on the wire.
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["scenario"], "node");
        assert_eq!(v["targets"][2]["name"], "portcullis");
        assert_eq!(v["targets"][2]["phases"][0]["by_kind"]["exec"]["ops"], 20);
        assert!(v["targets"][2]["phases"][0]["latency_us"]["p999_us"].is_number());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn checks_fail_on_hangs_misses_and_clean_denials() {
        let mut runs = sample_runs();
        let p = &mut runs[2].phases[0];
        p.hung_opens = 1;
        p.kind_mut(OpKind::Read)
            .unwrap()
            .counts
            .count(Outcome::Ok, true);
        runs[0].phases[1]
            .kind_mut(OpKind::Read)
            .unwrap()
            .counts
            .count(Outcome::Denied, false);
        let r = Report::build(sample_meta(), &runs);
        assert!(!r.checks.passed);
        assert_eq!(r.checks.failures.len(), 3, "{:?}", r.checks.failures);
        assert_eq!(r.checks.clean_denied, 1);
    }
}
