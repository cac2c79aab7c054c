//! The pipeline scenario: synthetic accesses injected into the Enforcer,
//! no kernel involved, to measure what the actors, the journal and the
//! scans cost by themselves.
//!
//! The files of the set are written to the work directory (an ordinary
//! one: nothing is marked); each access carries a fresh read-only fd of its
//! file, as the kernel would give the agent, and a channel responder. The
//! targets, in one run, with the same accesses:
//! - **baseline**: the injector answers each access itself (the harness:
//!   picking, opening, building the request, the answer channel);
//! - **floor**: a minimal actor answers ALLOW at once (one mailbox hop);
//! - **portcullis**: the real Enforcer, scanners (embedded, or remote over
//!   Kafka through scanner services) and journal.
//!
//! Cold accesses are to files the Enforcer has not seen (each is scanned);
//! warm ones repeat files at random (answered from the verdict cache).
//! Latency runs from the access's creation, or from when it was due at a
//! fixed `--rate` (no coordinated omission), to its decision arriving.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_actors::enforcer::{AccessRequest, Enforcer, EnforcerConfig, Responder, Shutdown};
use portcullis_actors::journal::{
    Committed, Journal, JournalConfig, JournalStore, Subscribe, Sync as JournalSync,
};
use portcullis_actors::policy::Policies;
use portcullis_actors::scanner::{
    start_scanners, LiveRules, Ruleset, ScanContent, ScanFile, ScanLimits,
};
use portcullis_pipeline::distributed::remote;
use portcullis_schemas::{
    AccessKind, Decision, EventId, FileInfo, FilePath, Mode, NodeId, ProcessInfo,
};

use crate::content::SplitMix64;
use crate::error::{Error, IoContext, Result};
use crate::fileset::{FileEntry, FileSpec, Picker};
use crate::kafka::{KafkaRig, KafkaSpec};
use crate::kafka_floor::KafkaFloor;
use crate::latency::{due, precise_timers, record, wait_until, wait_until_sleeping, SPIN_MAX_RATE};
use crate::opener::{cold_lists, split_max};
use crate::process::own_usage;
use crate::progress::Progress;
use crate::report::{
    OpKind, Outcome, Params, Phase, PhaseRun, ProcessReport, Scenario, Tally, TargetName, TargetRun,
};
use crate::scenario::{run_phases, work_dir, Common, Pass};
use crate::window::Window;

/// A pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub common: Common,
    /// Most accesses in flight.
    pub window: u64,
    /// Local scanner threads (0 = one per core).
    pub scan_threads: usize,
    /// Scans go to scanner services over Kafka.
    pub kafka: Option<KafkaSpec>,
    /// The `portcullis` binary (scanner services).
    pub portcullis: PathBuf,
}

impl PipelineSpec {
    pub fn scenario(&self) -> Scenario {
        Scenario::Pipeline
    }

    fn threads(&self) -> usize {
        if self.scan_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.scan_threads
        }
    }

    fn enforcer_config(&self) -> EnforcerConfig {
        EnforcerConfig {
            mode: Mode::Enforce,
            deadline: self.common.deadline,
            max_pending: 8192,
            mailbox: 8192,
            skip_unchanged: true,
            ..EnforcerConfig::default()
        }
    }
}

/// The floor: answers ALLOW at once, in its handler.
#[derive(Debug)]
struct FloorResponder {
    mailbox: usize,
}

impl Actor for FloorResponder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<AccessRequest> for FloorResponder {
    type Result = ();

    fn handle(&mut self, req: AccessRequest, _: &mut Self::Context) {
        let _ = req.responder.answer(req.event_id, Decision::Allow);
    }
}

/// Counts the decisions and verdicts the journal commits.
#[derive(Debug, Default)]
struct TallyActor {
    tally: Arc<Mutex<Tally>>,
}

impl Actor for TallyActor {
    type Context = Context<Self>;
}

impl Handler<Committed> for TallyActor {
    type Result = ();

    fn handle(&mut self, msg: Committed, _: &mut Self::Context) {
        if let Ok(mut t) = self.tally.lock() {
            for env in msg.0.iter() {
                t.add(&env.body);
            }
        }
    }
}

/// Asks the tally actor for nothing, so that every `Committed` queued
/// before is counted once this returns.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for TallyActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}

/// Where the injector sends accesses.
#[derive(Clone)]
enum Sink {
    /// The injector answers itself.
    Direct,
    Actor(Recipient<AccessRequest>),
}

/// One phase, as the injector runs it.
#[derive(Debug, Clone)]
struct InjectSpec {
    phase: Phase,
    label: String,
    rate: Option<f64>,
    max_ops: Option<u64>,
    duration: Duration,
    watchdog: Duration,
    interval: Duration,
    window: u64,
    seed: u64,
    /// Added to every inode: the targets never share a cache entry.
    inode_base: u64,
    /// A cold pass: the files to access once; `None`: a warm one.
    cold: Option<std::ops::Range<usize>>,
    /// Warm: the files to draw from (empty = all).
    pool: Vec<u32>,
}

/// Runs the scenario.
pub fn run(spec: &PipelineSpec) -> Result<(Params, Vec<TargetRun>)> {
    let c = &spec.common;
    let progress = Progress::new(c.progress);
    let (work, dir) = work_dir("files")?;
    let fspec = c.file_spec();
    let entries = fspec.plan(FileSpec::true_size());
    fspec.write(&dir, &entries)?;
    progress.say(&format!(
        "pipeline: {} files ({} infected) in {}",
        entries.len(),
        entries.iter().filter(|e| e.infected).count(),
        dir.display()
    ));
    let ruleset = Arc::new(
        portcullis_pipeline::rules::load_ruleset(None)
            .map_err(|e| Error::pipeline("loading the built-in ruleset", e))?,
    );
    let policies = Arc::new(
        Policies::build(&[]).map_err(|e| Error::pipeline("building the default policy", e))?,
    );
    let rig = match &spec.kafka {
        Some(k) => Some(Arc::new(KafkaRig::start(k, work.path(), &spec.portcullis)?)),
        None => None,
    };
    let entries = Arc::new(entries);

    let system = actix_rt::System::new();
    let targets = system.block_on(async {
        let mut targets = vec![];
        let names: &[TargetName] = if rig.is_some() {
            &TargetName::OVER_KAFKA
        } else {
            &TargetName::ALL
        };
        for (n, &name) in names.iter().enumerate() {
            let t = run_target(
                spec,
                name,
                n as u64,
                &entries,
                &dir,
                &ruleset,
                &policies,
                rig.as_ref(),
                work.path(),
                &progress,
            )
            .await?;
            let aborted = t.phases.iter().any(|p| p.aborted.is_some());
            targets.push(t);
            if aborted {
                break;
            }
        }
        Ok::<_, Error>(targets)
    })?;
    let mut targets = targets;
    let params = Params {
        window: Some(spec.window),
        kafka: rig.as_ref().map(|r| r.params.clone()),
        ..c.params()
    };
    if let Some(rig) = rig {
        KafkaRig::stop_shared(rig, &mut targets);
    }
    progress.finish();
    Ok((params, targets))
}

#[allow(clippy::too_many_arguments)]
async fn run_target(
    spec: &PipelineSpec,
    name: TargetName,
    n: u64,
    entries: &Arc<Vec<FileEntry>>,
    dir: &Path,
    ruleset: &Arc<Ruleset>,
    policies: &Arc<Policies>,
    rig: Option<&Arc<KafkaRig>>,
    work: &Path,
    progress: &Progress,
) -> Result<TargetRun> {
    let c = &spec.common;
    let threads = spec.threads();
    let cfg = spec.enforcer_config();
    let description = match name {
        TargetName::Baseline => {
            "the injector answers each access itself (the harness alone)".to_string()
        }
        TargetName::Floor => "a minimal actor answers ALLOW at once (one mailbox hop)".to_string(),
        TargetName::KafkaFloor => "the Kafka round trip alone: each access's content produced as a scan request, an echo thread in a consumer group answers with a reply of a scanner's size, read back on the reply partition (portcullis's clients and settings, same broker)".to_string(),
        TargetName::PortcullisTelemetry => {
            return Err(Error::flag(
                "telemetry",
                "the telemetry target runs in the node and cluster scenarios",
            ))
        }
        TargetName::Portcullis => format!(
            "the Enforcer (Enforce, deadline {:.1} s), the journal (sled) and {}",
            c.deadline.as_secs_f64(),
            match rig {
                Some(r) => format!(
                    "{} scanner service(s) over Kafka (remote scans)",
                    r.params.scanners
                ),
                None => format!("{threads} local scanner threads (built-in ruleset)"),
            }
        ),
    };
    let mut t = TargetRun::new(name, description);

    // The target's actors.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut journal = None;
    let mut enforcer = None;
    let mut remote_handles = None;
    let mut tally_addr = None;
    let mut kafka_floor = None;
    let sink = match name {
        TargetName::Baseline => Sink::Direct,
        TargetName::Floor => Sink::Actor(
            FloorResponder {
                mailbox: cfg.mailbox,
            }
            .start()
            .recipient(),
        ),
        TargetName::KafkaFloor => {
            let Some(r) = rig else {
                return Err(Error::pipeline("the kafka floor", "needs --kafka"));
            };
            let f = KafkaFloor::start(Arc::clone(&r.settings), cfg.mailbox).await?;
            let sink = Sink::Actor(f.addr.clone());
            kafka_floor = Some(f);
            sink
        }
        // (the telemetry target is refused above)
        TargetName::Portcullis | TargetName::PortcullisTelemetry => {
            let node = NodeId("loadtest".into());
            let jcfg = JournalConfig::new(work.join("journal"), node.clone());
            let store =
                JournalStore::open(&jcfg).map_err(|e| Error::pipeline("opening the journal", e))?;
            let j = Journal::new(store, &jcfg).start_on_own_thread();
            let ta = TallyActor {
                tally: Arc::clone(&tally),
            }
            .start();
            j.do_send(Subscribe(ta.clone().recipient()));
            // Over Kafka the local scanner only takes files past the inline
            // limit (none here): one thread.
            let local_threads = if rig.is_some() { 1 } else { threads };
            let live = LiveRules::new(Arc::clone(ruleset));
            let local = start_scanners(local_threads, live.clone(), ScanLimits::default());
            let scanner: Recipient<ScanFile> = match rig {
                Some(r) => {
                    let h = remote::start(
                        Arc::clone(&r.settings),
                        node,
                        live,
                        local.recipient(),
                        c.deadline,
                    )
                    .await
                    .map_err(|e| Error::pipeline("starting the remote scanner", e))?;
                    let addr = h.addr.clone().recipient();
                    remote_handles = Some(h);
                    r.mark_start();
                    addr
                }
                None => local.recipient(),
            };
            let e = Enforcer::new(
                cfg,
                Arc::clone(policies),
                ruleset.version().clone(),
                scanner,
                j.clone().recipient(),
            )
            .start();
            let sink = Sink::Actor(e.clone().recipient());
            journal = Some(j);
            enforcer = Some(e);
            tally_addr = Some(ta);
            sink
        }
    };

    let at_start = own_usage();
    let lag = match (rig, name) {
        (Some(r), TargetName::Portcullis) => Some(r.sample_lag(Duration::from_millis(500))),
        _ => None,
    };
    let (phases, _) = run_phases(c, name, progress, async |p: Pass<'_>| {
        let spec = InjectSpec {
            phase: p.phase,
            label: p.label,
            rate: c.rate,
            max_ops: p.max_ops,
            duration: c.duration,
            watchdog: c.watchdog,
            interval: c.interval(),
            window: spec.window,
            seed: c.seed ^ (u64::from(p.phase == Phase::Warm) << 40),
            inode_base: (n + 1) << 32,
            cold: p.cold,
            pool: p.pool.to_vec(),
        };
        inject_phase(&sink, entries, dir, spec, progress).await
    })
    .await?;
    t.phases = phases;
    let usage = own_usage().since(at_start);
    t.process = Some(ProcessReport::new(std::process::id(), usage));

    if let Some(f) = kafka_floor {
        f.stop().await;
    }
    if let Some(e) = enforcer {
        let _ = e.send(Shutdown).await;
    }
    if let Some(j) = &journal {
        match j.send(JournalSync).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => t.problems.push(format!("journal commit failed: {e}")),
            Err(e) => t.problems.push(format!("journal unavailable: {e}")),
        }
    }
    if let Some(ta) = tally_addr {
        let _ = ta.send(Flush).await;
    }
    if let Ok(tally) = tally.lock() {
        t.tally = tally.clone();
    }
    if let (Some(r), Some(s)) = (rig, lag) {
        t.kafka = Some(s.finish(r));
        t.scanners = r.scanner_reports();
    }
    if let Some(h) = remote_handles {
        h.stop();
    }
    Ok(t)
}

/// Runs one phase on a blocking thread (the actors keep the async one).
async fn inject_phase(
    sink: &Sink,
    entries: &Arc<Vec<FileEntry>>,
    dir: &Path,
    spec: InjectSpec,
    progress: &Progress,
) -> Result<PhaseRun> {
    let (sink, entries, dir) = (sink.clone(), Arc::clone(entries), dir.to_path_buf());
    // The injector reports through a counter; this task shows it.
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (Arc::clone(&done), Arc::clone(&finished));
    let label = spec.label.clone();
    let (duration, max_ops) = (spec.duration, spec.max_ops);
    let handle = actix_rt::task::spawn_blocking(move || {
        let r = inject(&sink, &entries, &dir, &spec, &d);
        f.store(true, Ordering::Relaxed);
        r
    });
    progress.start_phase(&label, duration, max_ops);
    let t0 = Instant::now();
    while !finished.load(Ordering::Relaxed) {
        progress.update(done.load(Ordering::Relaxed), t0.elapsed());
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish_phase();
    handle
        .await
        .map_err(|e| Error::pipeline("the injector", format!("panicked: {e}")))?
}

/// The injector (this thread) and the receiver of decisions (its own
/// thread).
fn inject(
    sink: &Sink,
    entries: &[FileEntry],
    dir: &Path,
    spec: &InjectSpec,
    done: &Arc<AtomicU64>,
) -> Result<PhaseRun> {
    let (tx, rx) = sync_channel::<(EventId, Decision)>(1 << 16);
    let window = Arc::new(Window::default());
    // id → (latency origin, infected)
    let started: Arc<Mutex<HashMap<EventId, (Instant, bool)>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(4096)));
    let stop = Arc::new(AtomicBool::new(false));
    let t_start = Instant::now();
    let receiver = {
        let (window, started, stop, done) = (
            Arc::clone(&window),
            Arc::clone(&started),
            Arc::clone(&stop),
            Arc::clone(done),
        );
        let mut run = PhaseRun::new(spec.phase, spec.rate, spec.interval);
        std::thread::Builder::new()
            .name("loadtest-recv".into())
            .spawn(move || {
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    match rx.recv_timeout(Duration::from_millis(20)) {
                        Ok((id, decision)) => {
                            let now = Instant::now();
                            let origin = started.lock().ok().and_then(|mut m| m.remove(&id));
                            if let Some((t0, infected)) = origin {
                                if let Some(k) = run.kind_mut(OpKind::Access) {
                                    record(&mut k.hist, now.saturating_duration_since(t0));
                                    k.counts.count(
                                        match decision {
                                            Decision::Allow => Outcome::Ok,
                                            Decision::Deny => Outcome::Denied,
                                        },
                                        infected,
                                    );
                                }
                                run.timeline
                                    .count_at(now.saturating_duration_since(t_start));
                            }
                            last = Some(now);
                            done.fetch_add(1, Ordering::Relaxed);
                            window.release();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                (run, last)
            })
            .ctx(|| "starting the decision receiver".to_string())?
    };

    let end = t_start + spec.duration;
    if spec.rate.is_some() {
        precise_timers();
    }
    let cold = spec.cold.clone().map(|range| {
        cold_lists(range, spec.max_ops, 1, spec.seed)
            .into_iter()
            .next()
            .unwrap_or_default()
    });
    let mut picker = match &cold {
        Some(list) => Picker::Cold(list),
        None => Picker::Warm {
            pool: &spec.pool,
            files: entries.len(),
            rng: SplitMix64::derive(spec.seed, 0x1AB),
        },
    };
    let mut accessed = vec![];
    let max_ops = split_max(spec.max_ops, 1)[0].unwrap_or(u64::MAX);
    let mut closed = false;
    let mut errors: Vec<String> = vec![];
    let mut sent = 0u64;
    for i in 0u64.. {
        if i >= max_ops || Instant::now() >= end || crate::interrupt::requested() {
            break;
        }
        let Some((idx, e)) = picker.pick(i).and_then(|x| Some((x, entries.get(x)?))) else {
            break;
        };
        let intended = spec.rate.map(|r| due(t_start, i, r));
        if let Some(d) = intended {
            if spec.rate.is_some_and(|r| r > SPIN_MAX_RATE) {
                wait_until_sleeping(d.min(end), || false);
            } else {
                wait_until(d.min(end), || false);
            }
        }
        if !window.acquire(spec.window, end + spec.watchdog) {
            break;
        }
        let path = dir.join(&e.name);
        let fd: OwnedFd = match std::fs::File::open(&path) {
            Ok(f) => f.into(),
            Err(err) => {
                window.unsend();
                if errors.len() < 8 {
                    errors.push(format!("open {}: {err}", path.display()));
                }
                continue;
            }
        };
        let id = EventId::new();
        let now = Instant::now();
        let origin = intended.map_or(now, |d| d.min(now));
        if let Ok(mut m) = started.lock() {
            m.insert(id, (origin, e.infected));
        }
        let req = AccessRequest {
            event_id: id,
            kind: if e.exec {
                AccessKind::Exec
            } else {
                AccessKind::Open
            },
            file: FileInfo {
                path: FilePath::from_bytes(format!("/loadtest/{}", e.name).into_bytes()),
                device: 1,
                inode: spec.inode_base + e.index,
                size: e.size,
                mtime_ns: 1_700_000_000_000_000_000,
                ctime_ns: 1_700_000_000_000_000_000,
            },
            layer_device: None,
            process: ProcessInfo {
                pid: 4242,
                ..ProcessInfo::default()
            },
            container: None,
            labels: None,
            content: ScanContent::Fd(Arc::new(fd)),
            responder: Responder::Channel(tx.clone()),
            received: now,
        };
        match sink {
            Sink::Direct => {
                let _ = req.responder.answer(id, Decision::Allow);
            }
            Sink::Actor(r) => {
                // Like the bridge: try_send into the bounded mailbox; when
                // it is full, wait a little and retry (backpressure).
                let mut req = req;
                loop {
                    match r.try_send(req) {
                        Ok(()) => break,
                        Err(SendError::Full(back)) => {
                            req = back;
                            if Instant::now() > end + spec.watchdog {
                                closed = true;
                                break;
                            }
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        Err(SendError::Closed(_)) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
        }
        if closed {
            window.unsend();
            break;
        }
        sent += 1;
        if cold.is_some() {
            accessed.push(u32::try_from(idx).unwrap_or(u32::MAX));
        }
    }
    drop(tx);
    // Late decisions get the watchdog bound.
    window.wait_all(Instant::now() + spec.watchdog);
    stop.store(true, Ordering::Relaxed);
    let (mut run, last) = receiver
        .join()
        .map_err(|_| Error::pipeline("the decision receiver", "panicked"))?;
    let (_, answered) = window.counts();
    run.hung_opens = sent.saturating_sub(answered);
    if run.hung_opens > 0 {
        run.aborted = Some(format!(
            "{} access(es) without a decision within the {:.1} s watchdog",
            run.hung_opens,
            spec.watchdog.as_secs_f64()
        ));
    }
    if closed {
        run.aborted = Some("the responder's mailbox closed or stayed full".into());
    }
    if run.aborted.is_none() {
        run.aborted = crate::interrupt::aborted();
    }
    for e in errors {
        run.note_error(e);
        if let Some(k) = run.kind_mut(OpKind::Access) {
            k.counts.count(Outcome::Error, false);
        }
    }
    run.wall = last.map_or(t_start.elapsed(), |l| l.saturating_duration_since(t_start));
    run.accessed = accessed;
    Ok(run)
}
