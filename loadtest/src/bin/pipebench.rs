//! `portcullis-pipebench`: scan throughput and decision latency through the
//! real Enforcer, without the kernel.
//!
//! Synthetic accesses (4 KiB of distinct content each, so no verdict cache
//! answers) go into an `Enforcer` in Enforce mode with the built-in ruleset
//! and a journal in a temporary directory, in three modes measured in the
//! same run:
//! - **embedded**: local scanner threads (`start_scanners`);
//! - **kafka-1**: the node side of distributed mode (`distributed::remote`)
//!   and one `portcullis scanner` service (a child process);
//! - **kafka-2**: the same with two scanner services in one group.
//!
//! Each mode is warmed up, then measures (a) throughput: `--requests`
//! accesses with at most `--window` in flight, and (b) latency at a fixed
//! `--rate` for `--latency-secs`. Latency is from the access's creation to
//! its decision arriving on the responder channel; in the paced phase it is
//! counted from when the access was *due*, so a stalled injector does not
//! hide queueing (no coordinated omission). Results: a Markdown table,
//! ratios to the embedded mode of the same run, and `--json FILE`.
//!
//! Kafka modes need `KAFKA_BOOTSTRAP` (a local broker); without it they are
//! skipped, loudly.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use portcullis_actors::enforcer::{
    AccessRequest, Enforcer, EnforcerConfig, EnforcerStats, GetStats, Responder, Shutdown,
};
use portcullis_actors::journal::{Journal, JournalConfig, JournalStore, Sync as JournalSync};
use portcullis_actors::policy::Policies;
use portcullis_actors::scanner::{start_scanners, Ruleset, ScanContent, ScanFile, ScanLimits};
use portcullis_loadtest::pipe::{
    due, fill_content, last_field, latency_histogram, ratio, record, Latency, Window,
};
use portcullis_pipeline::config::{ConfigFile, Overrides};
use portcullis_pipeline::distributed::remote::{self, RemoteHandles};
use portcullis_pipeline::kafka::{ensure_topics, KafkaSettings, Topic};
use portcullis_schemas::{
    AccessKind, Decision, EventId, FileInfo, FilePath, Mode, NodeId, ProcessInfo,
};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis-pipebench",
    about = "Scan throughput and decision latency through the Enforcer: embedded, Kafka with 1 and 2 scanner services"
)]
struct Args {
    /// Accesses in the throughput phase of each mode.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Most accesses in flight in the throughput phase.
    #[arg(long, default_value_t = 2048)]
    window: u64,
    /// Accesses per second in the latency phase.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Length of the latency phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    latency_secs: f64,
    /// Accesses per warm-up round (two rounds per mode).
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Bytes of content per access.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Scanner threads of the embedded mode (default: one per core, like
    /// `scan.threads = 0`).
    #[arg(long)]
    scan_threads: Option<usize>,
    /// Partitions of the scan-requests and verdicts topics (Kafka modes).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Scanner services of each Kafka mode, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    kafka_scanners: Vec<usize>,
    /// librdkafka `linger.ms` of every producer in the Kafka modes.
    #[arg(long, default_value = "1")]
    linger_ms: String,
    /// Run the embedded mode only, even with KAFKA_BOOTSTRAP set.
    #[arg(long)]
    embedded_only: bool,
    /// The portcullis binary (default: beside this one).
    #[arg(long)]
    portcullis: Option<PathBuf>,
    /// Bound on each phase (injection and the wait for the last decision).
    #[arg(long, default_value_t = 120)]
    phase_timeout_secs: u64,
    /// Keep the Kafka topics of each mode (default: deleted at its end).
    #[arg(long)]
    keep_topics: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The Enforcer's settings for every mode.
fn enforcer_config() -> EnforcerConfig {
    EnforcerConfig {
        mode: Mode::Enforce,
        deadline: Duration::from_secs(10),
        max_pending: 8192,
        mailbox: 8192,
        skip_unchanged: true,
        ..EnforcerConfig::default()
    }
}

#[derive(Debug, Clone, Copy)]
enum ModeSpec {
    Embedded,
    Kafka { scanners: usize },
}

impl ModeSpec {
    fn name(self) -> String {
        match self {
            Self::Embedded => "embedded".into(),
            Self::Kafka { scanners } => format!("kafka-{scanners}"),
        }
    }
}

/// One phase of a mode.
#[derive(Debug, Clone, Copy)]
struct PhaseSpec {
    name: &'static str,
    count: u64,
    /// Paced at this many per second; flat out (bounded by `window`) if None.
    rate: Option<f64>,
    window: u64,
    timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
struct PhaseReport {
    name: String,
    target_rate: Option<f64>,
    planned: u64,
    sent: u64,
    decided: u64,
    /// Sent but no decision within the phase bound.
    missing: u64,
    allowed: u64,
    denied: u64,
    /// From the first send to the last decision.
    wall_s: f64,
    /// Decisions received / wall time.
    decisions_per_s: f64,
    /// Sends / injection time.
    send_rate: f64,
    /// Times the Enforcer's mailbox was full and a send was retried.
    mailbox_full_retries: u64,
    latency: Latency,
    /// Decisions by reason (Enforcer counters, difference over the phase).
    by_reason: BTreeMap<String, u64>,
    scans: u64,
    infected: u64,
    /// Time the journal then took to commit its backlog (records are
    /// journaled asynchronously; not part of `wall_s`).
    journal_drain_s: f64,
}

impl PhaseReport {
    /// Decisions that were not verdicts in time.
    fn alarms(&self) -> Vec<String> {
        let mut out = vec![];
        for (r, n) in &self.by_reason {
            if r != "verdict" && *n > 0 {
                out.push(format!("{n} `{r}` decisions"));
            }
        }
        if self.missing > 0 {
            out.push(format!("{} accesses without a decision", self.missing));
        }
        if self.denied > 0 {
            out.push(format!("{} denied (content should be clean)", self.denied));
        }
        if let Some(rate) = self.target_rate {
            if self.send_rate < 0.95 * rate {
                out.push(format!(
                    "saturated: sent {:.0}/s of the {rate:.0}/s target (pending bound reached)",
                    self.send_rate
                ));
            }
        }
        if self.sent < self.planned {
            out.push(format!(
                "only {} of {} sent within the bound",
                self.sent, self.planned
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
struct RemoteReport {
    requested: u64,
    answered_from_shared: u64,
    replies: u64,
    local: u64,
    failed: u64,
}

#[derive(Debug, Clone, Serialize)]
struct ScannerReport {
    instance: String,
    /// From the service's stop log line.
    scanned: Option<u64>,
    aborted_batches: Option<u64>,
    exit: String,
}

#[derive(Debug, Clone, Serialize)]
struct ModeReport {
    mode: String,
    scanner_services: usize,
    /// Scanner threads (embedded) or per service (Kafka).
    scan_threads: usize,
    topic_prefix: Option<String>,
    setup_s: f64,
    warmup: Vec<PhaseReport>,
    throughput: PhaseReport,
    latency: PhaseReport,
    remote: Option<RemoteReport>,
    scanners: Vec<ScannerReport>,
    enforcer_total: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
struct RatioReport {
    mode: String,
    throughput_vs_embedded: f64,
    throughput_p99_vs_embedded: f64,
    latency_p50_vs_embedded: f64,
    latency_p99_vs_embedded: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    requests: u64,
    window: u64,
    rate: f64,
    latency_secs: f64,
    size: usize,
    cores: usize,
    kafka_bootstrap: Option<String>,
    kafka_skipped: Option<String>,
    modes: Vec<ModeReport>,
    ratios: Vec<RatioReport>,
    alarms: Vec<String>,
}

/// What every mode shares.
struct Ctx {
    args: Args,
    ruleset: Arc<Ruleset>,
    policies: Arc<Policies>,
    work: tempfile::TempDir,
    seed: u64,
    /// Access counter over the whole run: content and inodes never repeat.
    counter: Arc<AtomicU64>,
    portcullis: PathBuf,
    bootstrap: Option<String>,
    threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.requests == 0 || args.window == 0 || args.rate <= 0.0 || args.size == 0 {
        bail!("--requests, --window, --rate and --size must be positive");
    }
    if !(args.latency_secs > 0.0 && args.latency_secs <= 600.0) {
        bail!("--latency-secs must be in (0, 600]");
    }
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let portcullis = match &args.portcullis {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("portcullis"),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.scan_threads.unwrap_or(cores).max(1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let ruleset = Arc::new(portcullis_pipeline::rules::load_ruleset(None)?);
    let policies = Arc::new(Policies::build(&[])?);
    let work = tempfile::Builder::new()
        .prefix("portcullis-pipebench-")
        .tempdir()?;

    let mut modes = vec![ModeSpec::Embedded];
    let mut kafka_skipped = None;
    match (&bootstrap, args.embedded_only) {
        (_, true) => kafka_skipped = Some("--embedded-only".to_string()),
        (None, false) => kafka_skipped = Some("KAFKA_BOOTSTRAP not set".to_string()),
        (Some(_), false) => {
            if !portcullis.exists() {
                bail!(
                    "{} not found (build it with `cargo build --release -p portcullis-pipeline`, or pass --portcullis)",
                    portcullis.display()
                );
            }
            for &n in &args.kafka_scanners {
                if n == 0 || n > 8 {
                    bail!("--kafka-scanners: {n} is not in 1..=8");
                }
                modes.push(ModeSpec::Kafka { scanners: n });
            }
        }
    }
    if let Some(why) = &kafka_skipped {
        eprintln!("!!! SKIPPED kafka modes: {why} !!!");
    }
    let ctx = Ctx {
        args,
        ruleset,
        policies,
        work,
        seed,
        counter: Arc::new(AtomicU64::new(1)),
        portcullis,
        bootstrap: bootstrap.clone(),
        threads,
    };

    let system = actix_rt::System::new();
    let reports = system.block_on(async {
        let mut reports = vec![];
        for spec in modes {
            eprintln!("== mode {}", spec.name());
            reports.push(run_mode(&ctx, spec).await?);
        }
        Ok::<_, anyhow::Error>(reports)
    })?;

    let base = reports.first().context("no modes ran")?;
    let ratios: Vec<RatioReport> = reports
        .iter()
        .skip(1)
        .map(|m| RatioReport {
            mode: m.mode.clone(),
            throughput_vs_embedded: ratio(
                m.throughput.decisions_per_s,
                base.throughput.decisions_per_s,
            ),
            throughput_p99_vs_embedded: ratio(
                m.throughput.latency.p99_us,
                base.throughput.latency.p99_us,
            ),
            latency_p50_vs_embedded: ratio(m.latency.latency.p50_us, base.latency.latency.p50_us),
            latency_p99_vs_embedded: ratio(m.latency.latency.p99_us, base.latency.latency.p99_us),
        })
        .collect();
    let mut alarms = vec![];
    for m in &reports {
        for p in m.warmup.iter().chain([&m.throughput, &m.latency]) {
            for a in p.alarms() {
                alarms.push(format!("{} / {}: {a}", m.mode, p.name));
            }
        }
        if let Some(r) = &m.remote {
            if r.failed > 0 {
                alarms.push(format!("{}: {} remote scans failed", m.mode, r.failed));
            }
        }
    }
    let report = Report {
        requests: ctx.args.requests,
        window: ctx.args.window,
        rate: ctx.args.rate,
        latency_secs: ctx.args.latency_secs,
        size: ctx.args.size,
        cores,
        kafka_bootstrap: bootstrap,
        kafka_skipped,
        modes: reports,
        ratios,
        alarms,
    };
    print_markdown(&report);
    if let Some(path) = &ctx.args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A running Kafka mode's moving parts.
struct KafkaParts {
    settings: Arc<KafkaSettings>,
    remote: RemoteHandles,
    children: Vec<(String, Child, PathBuf)>,
}

async fn run_mode(ctx: &Ctx, spec: ModeSpec) -> Result<ModeReport> {
    let setup = Instant::now();
    let name = spec.name();
    let node = NodeId(format!("pipebench-{name}"));
    let jdir = ctx.work.path().join(format!("journal-{name}"));
    let jcfg = JournalConfig::new(&jdir, node.clone());
    let store = JournalStore::open(&jcfg).with_context(|| format!("journal {}", jdir.display()))?;
    let journal = Journal::new(store, &jcfg).start_on_own_thread();

    let mut kafka: Option<KafkaParts> = None;
    let (scanner, scanner_services, scan_threads, prefix): (Recipient<ScanFile>, usize, usize, _) =
        match spec {
            ModeSpec::Embedded => {
                let local = start_scanners(ctx.threads, ctx.ruleset.clone(), ScanLimits::default());
                (local.recipient(), 0, ctx.threads, None)
            }
            ModeSpec::Kafka { scanners } => {
                let parts = start_kafka(ctx, &name, &node, scanners).await?;
                let r = parts.remote.addr.clone().recipient();
                let prefix = parts.settings.topics.prefix().to_string();
                kafka = Some(parts);
                (r, scanners, ctx.threads, Some(prefix))
            }
        };
    let result = measure(ctx, scanner, &journal, setup).await;

    // Tear down whatever happened.
    let mut scanners = vec![];
    let mut remote_report = None;
    if let Some(parts) = kafka {
        let s = parts
            .remote
            .stats
            .lock()
            .map(|s| *s)
            .map_err(|_| anyhow!("remote stats poisoned"))?;
        remote_report = Some(RemoteReport {
            requested: s.requested,
            answered_from_shared: s.answered_from_shared,
            replies: s.replies,
            local: s.local,
            failed: s.failed,
        });
        parts.remote.stop();
        for (instance, child, log) in parts.children {
            let exit = stop_child(child);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            scanners.push(ScannerReport {
                instance,
                scanned: last_field(&text, "scanned"),
                aborted_batches: last_field(&text, "aborted"),
                exit,
            });
        }
        if !ctx.args.keep_topics {
            delete_topics(&parts.settings).await;
        }
    }
    let (warmup, throughput, latency, total, ready_s) = result?;
    Ok(ModeReport {
        mode: name,
        scanner_services,
        scan_threads,
        topic_prefix: prefix,
        setup_s: ready_s,
        warmup,
        throughput,
        latency,
        remote: remote_report,
        scanners,
        enforcer_total: total,
    })
}

/// Warm-up rounds, throughput, latency, the Enforcer's totals by reason,
/// seconds from the start of the mode until it was warm.
type Measured = (
    Vec<PhaseReport>,
    PhaseReport,
    PhaseReport,
    BTreeMap<String, u64>,
    f64,
);

/// Starts the Enforcer on `scanner`, runs the phases, stops it.
async fn measure(
    ctx: &Ctx,
    scanner: Recipient<ScanFile>,
    journal: &Addr<Journal>,
    setup: Instant,
) -> Result<Measured> {
    let enforcer = Enforcer::new(
        enforcer_config(),
        ctx.policies.clone(),
        ctx.ruleset.version().clone(),
        scanner,
        journal.clone().recipient(),
    )
    .start();
    let timeout = Duration::from_secs(ctx.args.phase_timeout_secs);
    let mut warmup = vec![];
    for round in 0..2 {
        let p = run_phase(
            ctx,
            &enforcer,
            journal,
            PhaseSpec {
                name: if round == 0 { "warm-up 1" } else { "warm-up 2" },
                count: ctx.args.warmup,
                rate: None,
                window: 256,
                timeout: timeout.min(Duration::from_secs(60)),
            },
        )
        .await?;
        eprintln!(
            "   {}: {} decided in {:.2} s (p99 {:.0} µs)",
            p.name, p.decided, p.wall_s, p.latency.p99_us
        );
        warmup.push(p);
    }
    let ready_s = setup.elapsed().as_secs_f64();
    eprintln!("   warm after {ready_s:.1} s");
    let throughput = run_phase(
        ctx,
        &enforcer,
        journal,
        PhaseSpec {
            name: "throughput",
            count: ctx.args.requests,
            rate: None,
            window: ctx.args.window,
            timeout,
        },
    )
    .await?;
    eprintln!(
        "   throughput: {:.0}/s, p50 {:.0} µs, p99 {:.0} µs",
        throughput.decisions_per_s, throughput.latency.p50_us, throughput.latency.p99_us
    );
    let count = (ctx.args.rate * ctx.args.latency_secs).round().max(1.0) as u64;
    let latency = run_phase(
        ctx,
        &enforcer,
        journal,
        PhaseSpec {
            name: "latency",
            count,
            rate: Some(ctx.args.rate),
            // Never more than the Enforcer's bound on pending decisions:
            // past it, the injector waits (and the wait counts as latency).
            window: enforcer_config().max_pending as u64,
            timeout,
        },
    )
    .await?;
    eprintln!(
        "   latency at {:.0}/s: achieved {:.0}/s, p50 {:.0} µs, p99 {:.0} µs",
        ctx.args.rate, latency.send_rate, latency.latency.p50_us, latency.latency.p99_us
    );
    let total = by_reason(&enforcer.send(GetStats).await?);
    let _ = enforcer.send(Shutdown).await;
    Ok((warmup, throughput, latency, total, ready_s))
}

fn by_reason(s: &EnforcerStats) -> BTreeMap<String, u64> {
    s.by_reason
        .iter()
        .map(|(r, n)| ((*r).to_string(), *n))
        .collect()
}

/// Runs one phase on a blocking thread, with the Enforcer's counters
/// before and after, and the journal synced after (so its backlog does not
/// spill into the next phase).
async fn run_phase(
    ctx: &Ctx,
    enforcer: &Addr<Enforcer>,
    journal: &Addr<Journal>,
    spec: PhaseSpec,
) -> Result<PhaseReport> {
    let before = enforcer.send(GetStats).await?;
    let (enf, counter, seed, size) = (
        enforcer.clone(),
        ctx.counter.clone(),
        ctx.seed,
        ctx.args.size,
    );
    let mut report = actix_rt::task::spawn_blocking(move || inject(enf, counter, seed, size, spec))
        .await
        .map_err(|e| anyhow!("the injector panicked: {e}"))??;
    let after = enforcer.send(GetStats).await?;
    let (b, a) = (by_reason(&before), by_reason(&after));
    report.by_reason = a
        .iter()
        .map(|(r, n)| (r.clone(), n - b.get(r).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    report.scans = after.scans - before.scans;
    report.infected = after.infected - before.infected;
    let drain = Instant::now();
    match journal.send(JournalSync).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("!!! journal commit failed: {e}"),
        Err(e) => eprintln!("!!! journal unavailable: {e}"),
    }
    report.journal_drain_s = drain.elapsed().as_secs_f64();
    Ok(report)
}

/// The injector (this thread) and the receiver (its own thread).
fn inject(
    enforcer: Addr<Enforcer>,
    counter: Arc<AtomicU64>,
    seed: u64,
    size: usize,
    spec: PhaseSpec,
) -> Result<PhaseReport> {
    let (tx, rx) = sync_channel::<(EventId, Decision)>(1 << 17);
    let window = Arc::new(Window::default());
    let started: Arc<Mutex<HashMap<EventId, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(16_384)));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (window, started, stop) = (window.clone(), started.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pipebench-recv".into())
            .spawn(move || {
                let mut hist = latency_histogram();
                let (mut allowed, mut denied, mut last) = (0u64, 0u64, None);
                while !stop.load(Ordering::Relaxed) {
                    match rx.recv_timeout(Duration::from_millis(20)) {
                        Ok((id, decision)) => {
                            let now = Instant::now();
                            let t0 = started.lock().ok().and_then(|mut m| m.remove(&id));
                            if let (Some(t0), Some(h)) = (t0, hist.as_mut()) {
                                record(h, now.saturating_duration_since(t0));
                            }
                            match decision {
                                Decision::Allow => allowed += 1,
                                Decision::Deny => denied += 1,
                            }
                            last = Some(now);
                            window.release();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                (hist, allowed, denied, last)
            })?
    };

    let t_start = Instant::now();
    let bound = t_start + spec.timeout;
    let mut buf = vec![0u8; size];
    let (mut sent, mut retries) = (0u64, 0u64);
    let mut closed = false;
    for i in 0..spec.count {
        let intended = match spec.rate {
            Some(rate) => {
                let d = due(t_start, i, rate);
                let now = Instant::now();
                if d > now + Duration::from_micros(50) {
                    std::thread::sleep(d - now);
                }
                Some(d)
            }
            None => None,
        };
        if !window.acquire(spec.window, bound) {
            break;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        fill_content(&mut buf, seed, n);
        let id = EventId::new();
        let now = Instant::now();
        let t0 = intended.map_or(now, |d| d.min(now));
        if let Ok(mut m) = started.lock() {
            m.insert(id, t0);
        }
        let mut req = AccessRequest {
            event_id: id,
            kind: AccessKind::Open,
            file: FileInfo {
                path: FilePath::from_bytes(format!("/pipebench/f{n}").into_bytes()),
                device: 1,
                inode: n,
                size: size as u64,
                mtime_ns: 1_700_000_000_000_000_000,
                ctime_ns: 1_700_000_000_000_000_000,
            },
            process: ProcessInfo {
                pid: 4242,
                ..ProcessInfo::default()
            },
            container: None,
            content: ScanContent::Bytes(buf.clone()),
            responder: Responder::Channel(tx.clone()),
            received: now,
        };
        // Like the bridge: try_send into the bounded mailbox; when it is
        // full, wait a little and retry (backpressure, no lock-step).
        loop {
            match enforcer.try_send(req) {
                Ok(()) => break,
                Err(SendError::Full(r)) => {
                    retries += 1;
                    req = r;
                    if Instant::now() > bound {
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
        if closed {
            window.unsend();
            break;
        }
        sent += 1;
        if Instant::now() > bound {
            break;
        }
    }
    let injected = t_start.elapsed();
    drop(tx);
    // Late decisions get the rest of the bound, and at least the
    // Enforcer's deadline plus a margin.
    window.wait_all(bound.max(Instant::now() + Duration::from_secs(15)));
    stop.store(true, Ordering::Relaxed);
    let (hist, allowed, denied, last) = receiver
        .join()
        .map_err(|_| anyhow!("the receiver thread panicked"))?;
    if closed {
        bail!("the Enforcer's mailbox is closed");
    }
    let (_, done) = window.counts();
    let wall = last.map_or(injected, |l| l.saturating_duration_since(t_start));
    let secs = wall.as_secs_f64().max(1e-9);
    Ok(PhaseReport {
        name: spec.name.to_string(),
        target_rate: spec.rate,
        planned: spec.count,
        sent,
        decided: done,
        missing: sent.saturating_sub(done),
        allowed,
        denied,
        wall_s: wall.as_secs_f64(),
        decisions_per_s: done as f64 / secs,
        send_rate: sent as f64 / injected.as_secs_f64().max(1e-9),
        mailbox_full_retries: retries,
        latency: hist.as_ref().map(Latency::of).unwrap_or_default(),
        by_reason: BTreeMap::new(),
        scans: 0,
        infected: 0,
        journal_drain_s: 0.0,
    })
}

/// The config file of a Kafka mode (node and scanner services read it).
fn kafka_config(ctx: &Ctx, name: &str, node: &NodeId, prefix: &str) -> String {
    let p = ctx.args.partitions;
    let bootstrap = ctx.bootstrap.as_deref().unwrap_or_default();
    format!(
        r#"# portcullis-pipebench, mode {name}
node_id = "{node}"

[kafka]
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"
scanner_group = "{prefix}-scanners"

[kafka.partitions]
scan_requests = {p}
verdicts = {p}
verdict_cache = {p}
events = 1

[kafka.librdkafka]
"linger.ms" = "{linger}"
"#,
        linger = ctx.args.linger_ms,
    )
}

async fn start_kafka(ctx: &Ctx, name: &str, node: &NodeId, scanners: usize) -> Result<KafkaParts> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("pipebench-{name}-{}", &run[run.len() - 10..]);
    let text = kafka_config(ctx, name, node, &prefix);
    let file = ctx.work.path().join(format!("{name}.toml"));
    std::fs::write(&file, &text)?;
    let settings = ConfigFile::parse(&text)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?
        .build(&file.display().to_string(), Overrides::default())?
        .kafka
        .context("no [kafka] section")?;
    ensure_topics(&settings)
        .await
        .context("creating the Kafka topics")?;
    eprintln!("   topics under {prefix} created");
    let mut children: Vec<(String, Child, PathBuf)> = vec![];
    let started = (|| -> Result<()> {
        for i in 1..=scanners {
            let instance = format!("{prefix}-s{i}");
            let ready = ctx.work.path().join(format!("{instance}.ready"));
            let log = ctx.work.path().join(format!("{instance}.log"));
            let child = Command::new(&ctx.portcullis)
                .args([
                    "--log",
                    "info",
                    "scanner",
                    "--instance",
                    &instance,
                    "--config",
                ])
                .arg(&file)
                .arg("--ready-file")
                .arg(&ready)
                .env_remove("PORTCULLIS_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log)?))
                .spawn()
                .with_context(|| format!("starting {}", ctx.portcullis.display()))?;
            children.push((instance, child, ready));
        }
        Ok(())
    })();
    let waited = match started {
        Ok(()) => wait_ready(&mut children, Duration::from_secs(60)),
        Err(e) => Err(e),
    };
    // The third field was the ready file; from here on it is the log.
    let children: Vec<(String, Child, PathBuf)> = children
        .into_iter()
        .map(|(instance, child, _)| {
            let log = ctx.work.path().join(format!("{instance}.log"));
            (instance, child, log)
        })
        .collect();
    if let Err(e) = waited {
        for (instance, child, log) in children {
            let _ = stop_child(child);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("--- {instance} log:\n{text}");
        }
        if !ctx.args.keep_topics {
            delete_topics(&settings).await;
        }
        return Err(e);
    }
    eprintln!("   {scanners} scanner service(s) ready");
    let local = start_scanners(1, ctx.ruleset.clone(), ScanLimits::default());
    let remote = remote::start(
        settings.clone(),
        node.clone(),
        ctx.ruleset.version().clone(),
        local.recipient(),
        Duration::from_secs(60),
    )?;
    Ok(KafkaParts {
        settings,
        remote,
        children,
    })
}

fn wait_ready(children: &mut [(String, Child, PathBuf)], bound: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let mut all = true;
        for (instance, child, ready) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("scanner service {instance} exited before it was ready: {status}");
            }
            all &= ready.exists();
        }
        if all {
            return Ok(());
        }
        if t.elapsed() > bound {
            bail!("scanner services not ready after {} s", bound.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then SIGKILL after 15 s; returns how it ended.
fn stop_child(child: Child) -> String {
    portcullis_loadtest::stop_child(child, Duration::from_secs(15)).0
}

/// Deletes the mode's topics (and their dead-letter topics), best effort.
async fn delete_topics(settings: &KafkaSettings) {
    use rdkafka::admin::AdminOptions;
    let admin = match portcullis_pipeline::kafka::admin_client(settings, "pipebench-cleanup") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("   topics not deleted: {e}");
            return;
        }
    };
    let mut names: Vec<String> = vec![];
    for t in Topic::ALL {
        names.push(settings.topics.name(t));
        names.push(settings.topics.dlq(t));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match tokio::time::timeout(Duration::from_secs(15), admin.delete_topics(&refs, &opts)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("   topics not deleted: {e}"),
        Err(_) => eprintln!("   topics not deleted: timed out"),
    }
    let _ = actix_rt::task::spawn_blocking(move || drop(admin)).await;
}

fn print_markdown(r: &Report) {
    println!(
        "\n## portcullis-pipebench: {} requests of {} B, window {}, latency phase {:.0}/s for {} s, {} cores\n",
        r.requests, r.size, r.window, r.rate, r.latency_secs, r.cores
    );
    if let Some(why) = &r.kafka_skipped {
        println!("**SKIPPED kafka modes: {why}**\n");
    }
    println!("| mode | phase | decisions/s | sent/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | decided / sent | reasons |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for m in &r.modes {
        let mode = if m.scanner_services == 0 {
            format!("{} ({} scan threads)", m.mode, m.scan_threads)
        } else {
            format!(
                "{} ({} service(s) × {} threads)",
                m.mode, m.scanner_services, m.scan_threads
            )
        };
        for p in [&m.throughput, &m.latency] {
            let phase = match p.target_rate {
                Some(rate) => format!("latency @ {rate:.0}/s"),
                None => "throughput".to_string(),
            };
            let reasons: Vec<String> = p
                .by_reason
                .iter()
                .map(|(k, v)| {
                    if k == "verdict" {
                        format!("{k} {v}")
                    } else {
                        format!("**{k} {v}**")
                    }
                })
                .collect();
            let l = &p.latency;
            println!(
                "| {mode} | {phase} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} | {} |",
                p.decisions_per_s,
                p.send_rate,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                p.decided,
                p.sent,
                reasons.join(", ")
            );
        }
    }
    if !r.ratios.is_empty() {
        println!("\n| mode vs embedded (same run) | throughput | p99 (throughput phase) | p50 (latency phase) | p99 (latency phase) |");
        println!("|---|---|---|---|---|");
        for x in &r.ratios {
            println!(
                "| {} | {:.3}× | {:.2}× | {:.2}× | {:.2}× |",
                x.mode,
                x.throughput_vs_embedded,
                x.throughput_p99_vs_embedded,
                x.latency_p50_vs_embedded,
                x.latency_p99_vs_embedded
            );
        }
    }
    println!();
    for m in &r.modes {
        let warm: Vec<String> = m
            .warmup
            .iter()
            .map(|p| format!("{:.2} s (p99 {:.0} µs)", p.wall_s, p.latency.p99_us))
            .collect();
        print!("- {}: warm-up rounds {}", m.mode, warm.join(", "));
        if let Some(rm) = &m.remote {
            print!(
                "; remote: {} requested, {} replies, {} from shared verdicts, {} local, {} failed",
                rm.requested, rm.replies, rm.answered_from_shared, rm.local, rm.failed
            );
        }
        for s in &m.scanners {
            print!(
                "; {}: scanned {} ({})",
                s.instance,
                s.scanned.map_or("?".into(), |n| n.to_string()),
                s.exit
            );
        }
        print!(
            "; journal backlog committed {:.2} s after the throughput phase, {:.2} s after the latency phase",
            m.throughput.journal_drain_s, m.latency.journal_drain_s
        );
        let retries = m.throughput.mailbox_full_retries + m.latency.mailbox_full_retries;
        if retries > 0 {
            print!("; mailbox-full retries {retries}");
        }
        println!();
    }
    if r.alarms.is_empty() {
        println!("\nNo deadline, overload or missing decisions.");
    } else {
        println!("\n**!!! ALARMS !!!**");
        for a in &r.alarms {
            println!("- **{a}**");
            eprintln!("!!! {a}");
        }
    }
}
