//! The node scenario (and, with Kafka settings, the cluster scenario):
//! real fanotify permission events on a tmpfs in the tool's own private
//! mount namespace.
//!
//! For each target — no agent, `portcullis-floor --cache`, `portcullis
//! run` — the responder starts on the tmpfs, the opener processes run the
//! phases (cold: every file once; warm: files again at random), and the
//! responder stops; its CPU time and peak RSS are read just before, and
//! the agent's journal just after. The same files, openers, seed and load
//! serve every target.
//!
//! Safety (DESIGN.md §3): the namespace is entered before any thread
//! exists, the only mark is on the run's tmpfs mount, nothing of the tool's
//! main process ever opens a file there while a responder runs, and every
//! wait is bounded (see [`crate::opener`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_interceptor::sandbox;

use crate::error::{Error, IoContext, Result};
use crate::fileset::FileSpec;
use crate::kafka::{KafkaRig, KafkaSpec};
use crate::opener::{self, PhaseSpec};
use crate::progress::Progress;
use crate::report::{Params, Phase, ProcessReport, Scenario, TargetName, TargetRun};
use crate::responder::{self, Binaries, ResponderSettings};
use crate::scenario::{run_phases, work_dir, Common, Pass};
use crate::telemetry::{TelemetryRig, TelemetrySpec};

/// A node or cluster run.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub common: Common,
    /// Opener processes.
    pub openers: usize,
    /// Threads per opener process.
    pub threads: usize,
    pub bins: Binaries,
    /// Scanner threads of the agent (0 = one per core).
    pub scan_threads: usize,
    /// Present for the cluster scenario.
    pub kafka: Option<KafkaSpec>,
    /// The floor never answers (tests the watchdog).
    pub floor_stalls: bool,
    /// Adds the `portcullis+telemetry` target.
    pub telemetry: Option<TelemetrySpec>,
}

impl NodeSpec {
    pub fn scenario(&self) -> Scenario {
        if self.kafka.is_some() {
            Scenario::Cluster
        } else {
            Scenario::Node
        }
    }

    fn description(&self, target: TargetName, rig: Option<&KafkaRig>) -> String {
        match target {
            TargetName::Baseline => "no agent: the openers alone on the tmpfs".into(),
            TargetName::Floor if self.floor_stalls => {
                "portcullis-floor --stall: never answers (a test of the watchdog)".into()
            }
            TargetName::Floor => {
                "portcullis-floor --cache: answers ALLOW at once and places kernel ignore marks"
                    .into()
            }
            TargetName::KafkaFloor => "portcullis-floor --cache --kafka: each event's content (read through its fd on a worker thread) goes through the Kafka round trip alone (portcullis's request producer, an echo in a consumer group with its reply producer, its reply reader) before ALLOW".into(),
            TargetName::Portcullis | TargetName::PortcullisTelemetry => {
                let how = match rig {
                    Some(r) if r.params.scanners_started => format!(
                        "distributed mode, {} scanner service(s) over Kafka",
                        r.params.scanners
                    ),
                    Some(r) => format!(
                        "distributed mode, the scanner services already consuming `{}`",
                        r.params.topic_prefix
                    ),
                    None => "embedded scanners".into(),
                };
                let telemetry = match (target, &self.telemetry) {
                    (TargetName::PortcullisTelemetry, Some(t)) => format!(
                        "; telemetry on: /metrics scraped every {:.1} s, {}",
                        t.scrape_interval.as_secs_f64(),
                        match t.trace_ratio {
                            Some(r) => format!("traces sampled at {r} exported over OTLP/HTTP to a receiver in the tool"),
                            None => "traces off".into(),
                        }
                    ),
                    _ => String::new(),
                };
                format!(
                    "portcullis run, Enforce, built-in ruleset, block on detection, deadline {:.1} s, {how}{telemetry}",
                    self.common.deadline.as_secs_f64()
                )
            }
        }
    }

    pub fn params(&self, rig: Option<&KafkaRig>) -> Params {
        Params {
            openers: self.openers,
            threads_per_opener: self.threads,
            kafka: rig.map(|r| r.params.clone()),
            ..self.common.params()
        }
    }
}

/// Unmounts the run's tmpfs when the run ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs the scenario. Returns the parameters as resolved and what each
/// target measured (a target cut short by a hung open ends the run).
pub fn run(spec: &NodeSpec) -> Result<(Params, Vec<TargetRun>)> {
    let scenario = spec.scenario().as_str();
    sandbox::fanotify_permission_available().map_err(|why| Error::Unavailable { scenario, why })?;
    // First, while this process has a single thread: the namespace covers
    // every thread and child started from here on.
    sandbox::enter_private_mount_namespace()
        .ctx(|| "entering a private mount namespace".to_string())?;
    let c = &spec.common;
    let progress = Progress::new(c.progress);
    let exe = std::env::current_exe().ctx(|| "locating this executable".to_string())?;

    let (work, mnt) = work_dir("mnt")?;
    let fspec = c.file_spec();
    let entries = fspec.plan(FileSpec::true_size());
    let bytes = FileSpec::bytes_needed(&entries) + (64 << 20);
    sandbox::mount_tmpfs(&mnt, bytes).ctx(|| format!("mounting a tmpfs on {}", mnt.display()))?;
    let _mounted = Mounted(mnt.clone());
    progress.say(&format!(
        "{scenario}: {} files ({} executables, {} infected) on a {} MiB tmpfs at {} (private mount namespace)",
        entries.len(),
        entries.iter().filter(|e| e.exec).count(),
        entries.iter().filter(|e| e.infected).count(),
        bytes >> 20,
        mnt.display()
    ));
    fspec.write(&mnt, &entries)?;
    let files_json = work.path().join("files.json");
    std::fs::write(
        &files_json,
        serde_json::to_vec(&entries).map_err(|e| Error::Io {
            context: "encoding the file list".into(),
            source: std::io::Error::other(e),
        })?,
    )
    .ctx(|| format!("writing {}", files_json.display()))?;

    let rig = match &spec.kafka {
        Some(k) => {
            progress.say(&format!(
                "{scenario}: Kafka at {}: creating topics, starting {} scanner service(s)",
                k.bootstrap,
                if k.scanners_at.is_some() {
                    0
                } else {
                    k.scanners
                }
            ));
            Some(Arc::new(KafkaRig::start(
                k,
                work.path(),
                &spec.bins.portcullis,
            )?))
        }
        None => None,
    };
    let telemetry = spec.telemetry.map(TelemetryRig::start).transpose()?;
    let agent = ResponderSettings {
        deadline: c.deadline,
        kafka_section: rig.as_ref().map(|r| r.section.clone()),
        scan_threads: spec.scan_threads,
        floor_stalls: spec.floor_stalls,
        telemetry_section: telemetry.as_ref().map(TelemetryRig::section),
    };

    let base = PhaseSpec {
        phase: Phase::Cold,
        label: String::new(),
        work: work.path(),
        dir: &mnt,
        files_json: &files_json,
        cold_range: None,
        openers: spec.openers,
        threads: spec.threads,
        rate: c.rate,
        max_ops: c.max_ops,
        duration: c.duration,
        watchdog: c.watchdog,
        interval: c.interval(),
        seed: c.seed,
        exe: &exe,
        warm_pool: &[],
    };

    let mut targets = vec![];
    let mut names: Vec<TargetName> = if rig.is_some() {
        TargetName::OVER_KAFKA.to_vec()
    } else {
        TargetName::ALL.to_vec()
    };
    if telemetry.is_some() {
        // Right after portcullis: the two agent runs stay close in time.
        names.push(TargetName::PortcullisTelemetry);
    }
    'targets: for name in names {
        let mut t = TargetRun::new(name, spec.description(name, rig.as_deref()));
        let running = responder::start(name, &spec.bins, &mnt, work.path(), &agent)?;
        let at_start = running.usage();
        let scraper = match &telemetry {
            Some(rig) if name == TargetName::PortcullisTelemetry => Some(rig.scrape()),
            _ => None,
        };
        let kafka_here = name.is_agent();
        let sampler = match &rig {
            Some(r) if kafka_here => {
                r.mark_start();
                Some(r.sample_lag(Duration::from_millis(500)))
            }
            _ => None,
        };
        let (phases, aborted) =
            futures::executor::block_on(run_phases(c, name, &progress, async |p: Pass<'_>| {
                let spec = PhaseSpec {
                    phase: p.phase,
                    label: p.label,
                    cold_range: p.cold,
                    warm_pool: p.pool,
                    max_ops: p.max_ops,
                    ..base.clone()
                };
                opener::run_phase(&spec, &progress)
            }))?;
        t.phases = phases;
        let at_end = running.usage();
        let seen = match (&telemetry, scraper) {
            (Some(rig), Some(s)) => Some(rig.report(s)),
            _ => None,
        };
        if let (Some(s), Some(r)) = (sampler, rig.as_deref()) {
            t.kafka = Some(s.finish(r));
            t.scanners = r.scanner_reports();
        }
        let stopped = running.stop();
        if let (Some(pid), Some(end)) = (stopped.pid, at_end) {
            // CPU while the phases ran (the agent's start-up, mostly the
            // ruleset compile, is left out); the peak covers everything.
            t.process = Some(ProcessReport::new(
                pid,
                end.since(at_start.unwrap_or_default()),
            ));
        }
        t.tally = stopped.tally;
        t.problems.extend(stopped.trouble);
        if let (Some(rig), Some(mut seen)) = (&telemetry, seen) {
            // The agent flushed its last spans as it stopped.
            rig.add_traces(&mut seen);
            let decisions = t.tally.decisions.allow + t.tally.decisions.deny;
            t.problems.extend(crate::telemetry::check(&seen, decisions));
            t.telemetry = Some(seen);
        }
        targets.push(t);
        if aborted {
            progress.say(&format!(
                "{scenario}: {name} aborted: stopping the run and reporting"
            ));
            break 'targets;
        }
    }
    let params = spec.params(rig.as_deref());
    if let Some(rig) = rig {
        KafkaRig::stop_shared(rig, &mut targets);
    }
    progress.finish();
    Ok((params, targets))
}
