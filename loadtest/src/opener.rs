//! The openers of the node and cluster scenarios: K child processes, each
//! with T threads that open-read-close or execute files of the set, and
//! one reporter thread.
//!
//! Why processes: an open waiting for a permission decision sleeps in the
//! kernel, where no timeout of ours reaches it. The tool's main process
//! never opens a protected file, so it can always stop the phase and
//! report; the openers' reporter threads never open one either, so they can
//! always tell the main process which operation is taking too long. A hung
//! open (slower than the watchdog bound) aborts the phase; the openers are
//! then stopped and, if need be, killed (the wait for a permission decision
//! is killable), and the responder is stopped (its fanotify fd closing
//! allows everything still pending).
//!
//! Protocol (one line each, over the child's stdin and stdout):
//! - child → parent `ready` once its plan is loaded;
//! - parent → child `go T0`, T0 the common start (CLOCK_MONOTONIC ns);
//! - child → parent `progress DONE HUNG` every 100 ms;
//! - parent → child `stop` (or closing stdin): stop now;
//! - child → parent `done` once its result file is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::content::SplitMix64;
use crate::error::{Error, IoContext, Result};
use crate::fileset::{FileEntry, Picker};
use crate::latency::{due, precise_timers, read_histogram, record, wait_until, write_histogram};
use crate::process::die_with_parent;
use crate::progress::Progress;
use crate::report::{Counts, OpKind, Outcome, Phase, PhaseRun, Timeline};

/// How often openers report, and the parent looks.
const TICK: Duration = Duration::from_millis(100);

/// What one opener process does in one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenerPlan {
    pub opener: usize,
    pub threads: usize,
    /// The directory of the files.
    pub dir: PathBuf,
    /// The file set (JSON list of [`FileEntry`]).
    pub files: PathBuf,
    /// Cold: per thread, the indices of the files to access once, in
    /// order. Warm (`None`): files drawn at random from `warm_pool`.
    pub cold_order: Option<Vec<Vec<u32>>>,
    /// The files a warm phase draws from (those the cold pass accessed);
    /// empty = the whole set.
    pub warm_pool: Vec<u32>,
    pub seed: u64,
    pub rate_per_thread: Option<f64>,
    /// Per thread.
    pub max_ops: Vec<Option<u64>>,
    pub duration_ms: u64,
    pub interval_ms: u64,
    pub watchdog_ms: u64,
}

/// What one opener process measured (the histograms are beside it, one
/// file per kind: `<result>.<kind>.hist`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpenerResult {
    pub kinds: BTreeMap<OpKind, Counts>,
    pub timeline: Timeline,
    pub hung_opens: u64,
    /// From the start to the last completed operation.
    pub wall_us: u64,
    pub error_samples: Vec<String>,
    /// Told to stop before its plan was done.
    pub stopped: bool,
    /// Cold: the files accessed (started), in no particular order.
    pub accessed: Vec<u32>,
}

fn hist_path(result: &Path, kind: OpKind) -> PathBuf {
    let mut s = result.as_os_str().to_owned();
    s.push(format!(".{}.hist", kind.as_str()));
    PathBuf::from(s)
}

/// CLOCK_MONOTONIC in nanoseconds: the one clock every process agrees on.
fn mono_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return 0;
    }
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The `Instant` of a CLOCK_MONOTONIC time (std's `Instant` is that clock
/// on Linux, but offers no conversion).
fn instant_of(mono: u64) -> Instant {
    let now_mono = mono_ns();
    let now = Instant::now();
    if mono <= now_mono {
        now.checked_sub(Duration::from_nanos(now_mono - mono))
            .unwrap_or(now)
    } else {
        now + Duration::from_nanos(mono - now_mono)
    }
}

/// How an access failed: EPERM/EACCES are denials; an exec of a file that
/// is not a program (ENOEXEC) was allowed.
fn classify(e: &std::io::Error, exec: bool) -> Outcome {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Outcome::Denied,
        Some(libc::ENOEXEC) if exec => Outcome::Ok,
        _ => Outcome::Error,
    }
}

/// One access: open, read to the end, close; or run the file and wait.
fn access(path: &Path, exec: bool, buf: &mut Vec<u8>) -> (Outcome, Option<String>) {
    let r = if exec {
        Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|_| ())
    } else {
        File::open(path).and_then(|mut f| {
            buf.clear();
            f.read_to_end(buf).map(|_| ())
        })
    };
    match r {
        Ok(()) => (Outcome::Ok, None),
        Err(e) => {
            let o = classify(&e, exec);
            let msg = (o == Outcome::Error).then(|| {
                format!(
                    "{} {}: {e}",
                    if exec { "exec" } else { "open/read" },
                    path.display()
                )
            });
            (o, msg)
        }
    }
}

/// Per op thread: what the reporter watches.
#[derive(Debug, Default)]
struct Slot {
    /// Start of the operation in flight, ns since T0 plus one; 0 = idle.
    started: AtomicU64,
    /// Operations started.
    seq: AtomicU64,
    done: AtomicU64,
    finished: AtomicBool,
}

struct Shared {
    stop: AtomicBool,
    slots: Vec<Slot>,
    runs: Vec<Mutex<PhaseRun>>,
    last_done: AtomicU64,
}

fn op_thread(
    t: usize,
    plan: &OpenerPlan,
    files: &[FileEntry],
    paths: &[PathBuf],
    shared: &Shared,
    t0: Instant,
) {
    let slot = &shared.slots[t];
    if plan.rate_per_thread.is_some() {
        precise_timers();
    }
    let mut picker = match plan.cold_order.as_ref().and_then(|o| o.get(t)) {
        Some(list) => Picker::Cold(list),
        None => Picker::Warm {
            pool: &plan.warm_pool,
            files: files.len(),
            rng: SplitMix64::derive(plan.seed, (plan.opener * 1000 + t) as u64),
        },
    };
    let cold = plan.cold_order.is_some();
    let max_ops = plan.max_ops.get(t).copied().flatten().unwrap_or(u64::MAX);
    let end = t0 + Duration::from_millis(plan.duration_ms);
    let mut buf = Vec::with_capacity(64 << 10);
    for i in 0u64.. {
        if i >= max_ops || shared.stop.load(Relaxed) {
            break;
        }
        let Some(idx) = picker.pick(i) else {
            break;
        };
        let intended = plan.rate_per_thread.map(|r| due(t0, i, r));
        if let Some(d) = intended {
            wait_until(d.min(end), || shared.stop.load(Relaxed));
        }
        let start = Instant::now();
        if start >= end || shared.stop.load(Relaxed) {
            break;
        }
        let Some((file, path)) = files.get(idx).zip(paths.get(idx)) else {
            break;
        };
        slot.seq.fetch_add(1, Relaxed);
        if cold {
            if let Ok(mut run) = shared.runs[t].lock() {
                run.accessed.push(u32::try_from(idx).unwrap_or(u32::MAX));
            }
        }
        let since = u64::try_from(start.saturating_duration_since(t0).as_nanos()).unwrap_or(0);
        slot.started.store(since + 1, Relaxed);
        let (outcome, error) = access(path, file.exec, &mut buf);
        let finish = Instant::now();
        slot.started.store(0, Relaxed);
        // Latency from when it was due (a late start is queueing too: no
        // coordinated omission), else from its start.
        let from = intended.map_or(start, |d| d.min(start));
        let kind = if file.exec {
            OpKind::Exec
        } else {
            OpKind::Read
        };
        if let Ok(mut run) = shared.runs[t].lock() {
            if let Some(k) = run.kind_mut(kind) {
                record(&mut k.hist, finish.saturating_duration_since(from));
                k.counts.count(outcome, file.infected);
            }
            run.timeline.count_at(finish.saturating_duration_since(t0));
            if let Some(e) = error {
                run.note_error(e);
            }
        }
        let at = u64::try_from(finish.saturating_duration_since(t0).as_micros()).unwrap_or(0);
        shared.last_done.fetch_max(at, Relaxed);
        slot.done.fetch_add(1, Relaxed);
    }
    slot.finished.store(true, Relaxed);
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Io {
        context: format!("parsing {}", path.display()),
        source: std::io::Error::other(e),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Io {
        context: format!("encoding {}", path.display()),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, bytes).ctx(|| format!("writing {}", path.display()))
}

/// The opener process (`portcullis-loadtest opener`): runs its plan,
/// writes its result, says `done`.
pub fn child_main(plan_path: &Path, result_path: &Path) -> Result<()> {
    let plan: OpenerPlan = read_json(plan_path)?;
    let files: Vec<FileEntry> = read_json(&plan.files)?;
    let paths: Vec<PathBuf> = files.iter().map(|f| plan.dir.join(&f.name)).collect();
    let threads = plan.threads.max(1);
    let interval = Duration::from_millis(plan.interval_ms.max(1));
    let phase = if plan.cold_order.is_some() {
        Phase::Cold
    } else {
        Phase::Warm
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        slots: (0..threads).map(|_| Slot::default()).collect(),
        runs: (0..threads)
            .map(|_| Mutex::new(PhaseRun::new(phase, None, interval)))
            .collect(),
        last_done: AtomicU64::new(0),
    });
    let mut out = std::io::stdout();
    let say = |out: &mut std::io::Stdout, line: &str| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(&mut out, "ready");
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    input
        .read_line(&mut line)
        .ctx(|| "reading the start line".to_string())?;
    let Some(t0) = line
        .trim()
        .strip_prefix("go ")
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Err(Error::Opener {
            opener: plan.opener,
            message: format!("expected `go T0`, got {:?}", line.trim()),
        });
    };
    let t0 = instant_of(t0);
    {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match input.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.trim() == "stop" => break,
                    Ok(_) => {}
                }
            }
            shared.stop.store(true, Relaxed);
        });
    }
    let plan = Arc::new(plan);
    let (files, paths) = (Arc::new(files), Arc::new(paths));
    for t in 0..threads {
        let (plan, files, paths, shared) = (
            Arc::clone(&plan),
            Arc::clone(&files),
            Arc::clone(&paths),
            Arc::clone(&shared),
        );
        std::thread::Builder::new()
            .name(format!("opener-{t}"))
            .spawn(move || op_thread(t, &plan, &files, &paths, &shared, t0))
            .ctx(|| "starting an opener thread".to_string())?;
    }

    // The reporter: never touches a protected file.
    let watchdog = Duration::from_millis(plan.watchdog_ms);
    let mut hung_seen: Vec<u64> = vec![u64::MAX; threads];
    let mut hung = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        std::thread::sleep(TICK);
        let now_since = Instant::now().saturating_duration_since(t0);
        for (i, s) in shared.slots.iter().enumerate() {
            let seq = s.seq.load(Relaxed);
            let started = s.started.load(Relaxed);
            if started == 0 || s.seq.load(Relaxed) != seq || hung_seen[i] == seq {
                continue;
            }
            let age = now_since.saturating_sub(Duration::from_nanos(started - 1));
            if age > watchdog {
                hung_seen[i] = seq;
                hung += 1;
            }
        }
        let done: u64 = shared.slots.iter().map(|s| s.done.load(Relaxed)).sum();
        say(&mut out, &format!("progress {done} {hung}"));
        if shared.slots.iter().all(|s| s.finished.load(Relaxed)) {
            break;
        }
        if shared.stop.load(Relaxed) {
            // Threads notice the flag between operations; one stuck in
            // the kernel is left behind (exit kills it).
            let t = *stopped_at.get_or_insert_with(Instant::now);
            if t.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
    }

    let mut result = OpenerResult {
        hung_opens: hung,
        wall_us: shared.last_done.load(Relaxed),
        stopped: shared.stop.load(Relaxed),
        ..OpenerResult::default()
    };
    let mut merged = PhaseRun::new(phase, None, interval);
    for run in &shared.runs {
        // A thread stuck in the kernel does not hold its lock.
        if let Ok(r) = run.lock() {
            for (kind, k) in &r.kinds {
                merged.absorb(*kind, &k.counts, &k.hist);
            }
            merged.timeline.add(&r.timeline);
            merged.accessed.extend_from_slice(&r.accessed);
            for e in &r.error_samples {
                merged.note_error(e.clone());
            }
        }
    }
    for (kind, k) in &merged.kinds {
        result.kinds.insert(*kind, k.counts);
        let p = hist_path(result_path, *kind);
        let mut f = File::create(&p).ctx(|| format!("creating {}", p.display()))?;
        write_histogram(&k.hist, &mut f).ctx(|| format!("writing {}", p.display()))?;
    }
    result.timeline = merged.timeline;
    result.error_samples = merged.error_samples;
    result.accessed = merged.accessed;
    write_json(result_path, &result)?;
    say(&mut out, "done");
    Ok(())
}

// ------------------------------------------------------------ parent

/// One phase of the openers, as the scenario asks for it.
#[derive(Debug, Clone)]
pub struct PhaseSpec<'a> {
    pub phase: Phase,
    /// `target/phase`, for file names and the progress line.
    pub label: String,
    /// Where plans, results and logs go (not the protected mount).
    pub work: &'a Path,
    /// The protected directory with the files.
    pub dir: &'a Path,
    /// The file set as JSON (see [`FileEntry`]).
    pub files_json: &'a Path,
    /// A cold pass: the files to access once (indices into the set);
    /// `None` for a warm one.
    pub cold_range: Option<std::ops::Range<usize>>,
    pub openers: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub max_ops: Option<u64>,
    pub duration: Duration,
    pub watchdog: Duration,
    pub interval: Duration,
    pub seed: u64,
    /// The opener program (this tool).
    pub exe: &'a Path,
    /// Warm: the files to draw from (empty = every file of the set).
    pub warm_pool: &'a [u32],
}

enum Line {
    Ready,
    Progress { done: u64, hung: u64 },
    Done,
    Eof,
    Other(String),
}

fn parse_line(l: &str) -> Line {
    let l = l.trim();
    match l {
        "ready" => return Line::Ready,
        "done" => return Line::Done,
        _ => {}
    }
    let mut it = l.split_whitespace();
    if it.next() == Some("progress") {
        if let (Some(Ok(done)), Some(Ok(hung))) =
            (it.next().map(str::parse), it.next().map(str::parse))
        {
            return Line::Progress { done, hung };
        }
    }
    Line::Other(l.to_string())
}

/// `max` split over `n` workers as evenly as possible.
pub fn split_max(max: Option<u64>, n: usize) -> Vec<Option<u64>> {
    let n64 = n.max(1) as u64;
    (0..n.max(1) as u64)
        .map(|i| max.map(|m| m / n64 + u64::from(i < m % n64)))
        .collect()
}

/// The cold order: every file of `range` once, shuffled by the seed, cut
/// to `max`, dealt round-robin to `workers` lists.
pub fn cold_lists(
    range: std::ops::Range<usize>,
    max: Option<u64>,
    workers: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    let lo = u32::try_from(range.start).unwrap_or(u32::MAX);
    let hi = u32::try_from(range.end).unwrap_or(u32::MAX);
    let mut order: Vec<u32> = (lo..hi).collect();
    SplitMix64::derive(seed, 0xC01D).shuffle(&mut order);
    if let Some(m) = max {
        order.truncate(usize::try_from(m).unwrap_or(usize::MAX));
    }
    let workers = workers.max(1);
    let mut out = vec![Vec::with_capacity(order.len() / workers + 1); workers];
    for (i, f) in order.into_iter().enumerate() {
        out[i % workers].push(f);
    }
    out
}

struct Opener {
    child: Child,
    stdin: Option<ChildStdin>,
    result: PathBuf,
    done: u64,
    hung: u64,
    ready: bool,
    finished: bool,
    gone: bool,
    log: PathBuf,
}

impl Opener {
    fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            if writeln!(s, "{line}").and_then(|()| s.flush()).is_err() {
                self.stdin = None;
            }
        }
    }
}

fn spawn_openers(spec: &PhaseSpec, tx: &Sender<(usize, Line)>) -> Result<Vec<Opener>> {
    let workers = spec.openers.max(1) * spec.threads.max(1);
    let cold = spec
        .cold_range
        .clone()
        .map(|r| cold_lists(r, spec.max_ops, workers, spec.seed));
    let maxes = split_max(spec.max_ops, workers);
    let slug = spec.label.replace('/', "-");
    let mut out: Vec<Opener> = vec![];
    for i in 0..spec.openers.max(1) {
        let range = i * spec.threads.max(1)..(i + 1) * spec.threads.max(1);
        let plan = OpenerPlan {
            opener: i,
            threads: spec.threads.max(1),
            dir: spec.dir.to_path_buf(),
            files: spec.files_json.to_path_buf(),
            cold_order: cold.as_ref().map(|c| c[range.clone()].to_vec()),
            warm_pool: if cold.is_some() {
                vec![]
            } else {
                spec.warm_pool.to_vec()
            },
            seed: spec.seed ^ (u64::from(spec.phase == Phase::Warm) << 40),
            rate_per_thread: spec.rate.map(|r| r / workers as f64),
            max_ops: maxes[range].to_vec(),
            duration_ms: u64::try_from(spec.duration.as_millis()).unwrap_or(u64::MAX),
            interval_ms: u64::try_from(spec.interval.as_millis()).unwrap_or(1000),
            watchdog_ms: u64::try_from(spec.watchdog.as_millis()).unwrap_or(u64::MAX),
        };
        let plan_path = spec.work.join(format!("plan-{slug}-{i}.json"));
        let result = spec.work.join(format!("result-{slug}-{i}.json"));
        let log = spec.work.join(format!("opener-{slug}-{i}.log"));
        write_json(&plan_path, &plan)?;
        let mut child = die_with_parent(&mut Command::new(spec.exe))
            .arg("opener")
            .arg("--plan")
            .arg(&plan_path)
            .arg("--result")
            .arg(&result)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).ctx(|| format!("creating {}", log.display()))?)
            .spawn()
            .ctx(|| format!("starting opener {i} ({})", spec.exe.display()))?;
        let stdin = child.stdin.take();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines() {
                    match l {
                        Ok(l) => {
                            if tx.send((i, parse_line(&l))).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send((i, Line::Eof));
            });
        }
        out.push(Opener {
            child,
            stdin,
            result,
            done: 0,
            hung: 0,
            ready: false,
            finished: false,
            gone: false,
            log,
        });
    }
    Ok(out)
}

/// Kills what is left and reaps everything.
fn reap(openers: &mut [Opener]) {
    for o in openers.iter_mut() {
        o.stdin = None;
        let t = Instant::now();
        loop {
            match o.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if t.elapsed() > Duration::from_secs(2) => {
                    let _ = o.child.kill();
                    let _ = o.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Runs one phase of the openers and merges what they measured. Never
/// waits unboundedly: at most `duration + watchdog + 10 s` after the
/// start, whatever the openers do.
pub fn run_phase(spec: &PhaseSpec, progress: &Progress) -> Result<PhaseRun> {
    let (tx, rx) = channel::<(usize, Line)>();
    let mut openers = spawn_openers(spec, &tx)?;
    drop(tx);
    let mut run = PhaseRun::new(spec.phase, spec.rate, spec.interval);

    // Everyone loaded its plan?
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !openers.iter().all(|o| o.ready) {
        let left = ready_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(TICK)) {
            Ok((i, Line::Ready)) => openers[i].ready = true,
            Ok((i, Line::Eof)) => {
                reap(&mut openers);
                return Err(Error::Opener {
                    opener: i,
                    message: format!(
                        "exited before it was ready{}",
                        crate::process::log_tail(Some(&openers[i].log), 10)
                    ),
                });
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= ready_by {
            reap(&mut openers);
            return Err(Error::Opener {
                opener: 0,
                message: "openers not ready after 60 s".into(),
            });
        }
    }

    let t0_mono = mono_ns();
    let t0 = instant_of(t0_mono);
    for o in openers.iter_mut() {
        o.send(&format!("go {t0_mono}"));
    }
    progress.start_phase(&spec.label, spec.duration, spec.max_ops);
    let hard_end = t0 + spec.duration + spec.watchdog + Duration::from_secs(10);
    let mut stop_sent: Option<Instant> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok((i, Line::Progress { done, hung })) => {
                openers[i].done = done;
                openers[i].hung = hung;
            }
            Ok((i, Line::Done)) => openers[i].finished = true,
            Ok((i, Line::Eof)) => openers[i].gone = true,
            Ok((i, Line::Other(l))) => run.note_error(format!("opener {i} said: {l}")),
            Ok((_, Line::Ready)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let done: u64 = openers.iter().map(|o| o.done).sum();
        progress.update(done, t0.elapsed());
        if openers.iter().all(|o| o.finished || o.gone) {
            break;
        }
        let now = Instant::now();
        let hung: u64 = openers.iter().map(|o| o.hung).sum();
        let why = if hung > 0 {
            Some(format!(
                "{hung} operation(s) took longer than the {:.1} s watchdog",
                spec.watchdog.as_secs_f64()
            ))
        } else if now >= hard_end {
            Some("the openers did not finish within the phase bound".to_string())
        } else if let Some(why) = crate::interrupt::aborted() {
            Some(why)
        } else {
            openers.iter().position(|o| o.gone && !o.finished).map(|o| {
                format!(
                    "opener {o} exited without a result{}",
                    crate::process::log_tail(Some(&openers[o].log), 10)
                )
            })
        };
        match (why, stop_sent) {
            (Some(why), None) => {
                run.aborted = Some(why);
                for o in openers.iter_mut() {
                    o.send("stop");
                }
                stop_sent = Some(now);
            }
            (_, Some(t)) if now.duration_since(t) > Duration::from_secs(5) => break,
            _ => {}
        }
    }
    reap(&mut openers);
    progress.finish_phase();

    let mut wall_us = 0;
    for (i, o) in openers.iter().enumerate() {
        run.hung_opens += o.hung;
        if !o.finished {
            // Killed with an operation still in flight: at least one.
            if o.hung == 0 {
                run.hung_opens += 1;
            }
            continue;
        }
        let r: OpenerResult = read_json(&o.result)?;
        for (kind, counts) in &r.kinds {
            let p = hist_path(&o.result, *kind);
            let mut f = File::open(&p).ctx(|| format!("opening {}", p.display()))?;
            let h = read_histogram(&mut f).ctx(|| format!("reading {}", p.display()))?;
            run.absorb(*kind, counts, &h);
        }
        run.timeline.add(&r.timeline);
        run.accessed.extend(r.accessed);
        for e in r.error_samples {
            run.note_error(format!("opener {i}: {e}"));
        }
        wall_us = wall_us.max(r.wall_us);
    }
    run.wall = Duration::from_micros(wall_us);
    Ok(run)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn maxima_and_cold_lists_are_split_evenly() {
        assert_eq!(split_max(Some(10), 3), [Some(4), Some(3), Some(3)]);
        assert_eq!(split_max(None, 2), [None, None]);
        let l = cold_lists(0..10, None, 3, 1);
        assert_eq!(l.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3, 3]);
        let mut all: Vec<u32> = l.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(cold_lists(0..10, Some(4), 2, 1).concat().len(), 4);
        assert_eq!(l, cold_lists(0..10, None, 3, 1));
        let mut w = cold_lists(10..13, None, 2, 1).concat();
        w.sort_unstable();
        assert_eq!(w, [10, 11, 12]);
    }

    #[test]
    fn lines_are_parsed() {
        assert!(matches!(parse_line("ready\n"), Line::Ready));
        assert!(matches!(
            parse_line("progress 12 1"),
            Line::Progress { done: 12, hung: 1 }
        ));
        assert!(matches!(parse_line("progress x"), Line::Other(_)));
    }

    #[test]
    fn denials_and_noexec_are_told_apart() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::EPERM), false), Outcome::Denied);
        assert_eq!(classify(&e(libc::EACCES), true), Outcome::Denied);
        assert_eq!(classify(&e(libc::ENOEXEC), true), Outcome::Ok);
        assert_eq!(classify(&e(libc::ENOEXEC), false), Outcome::Error);
        assert_eq!(classify(&e(libc::ENOENT), false), Outcome::Error);
    }

    #[test]
    fn monotonic_times_convert_to_instants() {
        let m = mono_ns();
        let i = instant_of(m);
        assert!(i.elapsed() < Duration::from_secs(1));
        let later = instant_of(m + 2_000_000_000);
        assert!(later > Instant::now());
    }
}
