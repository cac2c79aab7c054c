//! `portcullis-floor --protect MOUNTPOINT [--ready-file PATH]`
//!
//! The minimal fanotify responder: a permission group on one mount point
//! (opens and execs), and a reader thread that answers ALLOW at once for every
//! event, in the sink itself. No scan, no journal, no actors: it is the
//! latency floor the benchmarks compare the real agent against. Runs until
//! SIGINT/SIGTERM. Refuses a path that is not a mount point, and `/`.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use portcullis_actors::scanner::{Loaded, ScanContent};
use portcullis_interceptor::{
    spawn_reader, Fanotify, GroupClass, MarkScope, ReaderMsg, Ticket, Watch,
};
use portcullis_loadtest::kafka_floor::RoundTrip;
use portcullis_pipeline::config::{ConfigFile, Overrides};
use portcullis_schemas::EventId;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis-floor",
    version,
    about = "Minimal fanotify responder (always ALLOW): the latency floor"
)]
struct Args {
    /// Mount point to protect (must be a mount point, never `/`; use a tmpfs
    /// in a private mount namespace).
    #[arg(long, value_name = "MOUNTPOINT")]
    protect: PathBuf,
    /// File to write our pid into once the mark is in place.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Also place a kernel ignore mark on every answered file (cleared on
    /// modify), as portcullis does for clean files: the floor of a warm open.
    #[arg(long)]
    cache: bool,
    /// Do not answer: hold every event until stopped, or for at most
    /// `STALL_LIMIT` (then ALLOW), so even this test mode keeps a deadline.
    /// Only for testing the load test's own watchdog; never on a mount
    /// anything else uses.
    #[arg(long, hide = true, conflicts_with = "cache")]
    stall: bool,
    /// The Kafka floor: before answering, send each event's content
    /// through the Kafka round trip portcullis's remote scans make (the
    /// `[kafka]` section of this file: its broker and topic prefix).
    #[arg(long, value_name = "CONFIG", conflicts_with = "stall")]
    kafka: Option<PathBuf>,
}

/// The Kafka round trip of `--kafka CONFIG`.
fn kafka_round_trip(path: &std::path::Path) -> Result<RoundTrip> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let settings = ConfigFile::parse(&text)
        .with_context(|| format!("{}", path.display()))?
        .build(&path.display().to_string(), Overrides::default())?
        .kafka
        .with_context(|| format!("{}: no [kafka] section", path.display()))?;
    Ok(RoundTrip::start(settings)?)
}

/// The longest `--stall` holds an event before answering ALLOW.
const STALL_LIMIT: Duration = Duration::from_secs(120);

fn main() -> Result<()> {
    let args = Args::parse();
    // Block the stop signals before any thread exists: only sigwait sees them.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block().context("blocking SIGINT/SIGTERM")?;

    let fan = Fanotify::init(GroupClass::Permission)?;
    let (answered, failed, overflows) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (a, f, o) = (
        Arc::clone(&answered),
        Arc::clone(&failed),
        Arc::clone(&overflows),
    );
    let cache = args.cache.then(|| Arc::clone(&fan));
    // With --kafka: a worker thread reads each event's content through its
    // fd (the reader thread never reads) and sends it round; the reply
    // thread answers the ticket.
    let round = match &args.kafka {
        Some(path) => Some(Arc::new(kafka_round_trip(path)?)),
        None => None,
    };
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Ticket>(4096);
    let worker = round.as_ref().map(|round| {
        let (round, cache, a, f) = (
            Arc::clone(round),
            cache.clone(),
            Arc::clone(&answered),
            Arc::clone(&failed),
        );
        std::thread::spawn(move || {
            for ticket in work_rx.iter() {
                let fd = Arc::clone(ticket.fd());
                let content =
                    match ScanContent::Fd(Arc::clone(&fd)).read_up_to(round.inline_limit()) {
                        Ok(Loaded::Whole(b)) => b,
                        _ => Vec::new(),
                    };
                let (cache, a, f) = (cache.clone(), Arc::clone(&a), Arc::clone(&f));
                round.send(
                    EventId::new(),
                    content,
                    Box::new(move || {
                        let counter = match ticket.answer(true) {
                            Ok(()) => {
                                if let Some(fan) = &cache {
                                    let _ = fan.ignore_until_modified(fd.as_fd());
                                }
                                &a
                            }
                            Err(_) => &f,
                        };
                        counter.fetch_add(1, Relaxed);
                    }),
                );
            }
        })
    });
    let to_worker = round.is_some().then_some(work_tx);
    // Held tickets are answered (ALLOW) when dropped: past STALL_LIMIT, or
    // at exit.
    let held: Arc<Mutex<Vec<(Instant, Ticket)>>> = Arc::default();
    let hold = args.stall.then(|| Arc::clone(&held));
    let reader = spawn_reader(
        Arc::clone(&fan),
        std::process::id(),
        Box::new(move |msg| {
            let counter = match msg {
                ReaderMsg::Event(ev) if hold.is_some() => {
                    if let Some(Ok(mut h)) = hold.as_ref().map(|h| h.lock()) {
                        h.push((Instant::now(), ev.ticket));
                    }
                    &a
                }
                ReaderMsg::Event(ev) if to_worker.is_some() => {
                    if let Some(tx) = &to_worker {
                        // A full queue or a gone worker: the ticket is
                        // dropped, which answers ALLOW.
                        let _ = tx.try_send(ev.ticket);
                    }
                    return;
                }
                ReaderMsg::Event(ev) => {
                    let fd = Arc::clone(ev.ticket.fd());
                    match ev.ticket.answer(true) {
                        Ok(()) => {
                            if let Some(fan) = &cache {
                                let _ = fan.ignore_until_modified(fd.as_fd());
                            }
                            &a
                        }
                        Err(_) => &f,
                    }
                }
                ReaderMsg::Overflow => &o,
            };
            counter.fetch_add(1, Relaxed);
        }),
    )?;
    let watch = Watch {
        open: true,
        exec: true,
        close_write: false,
    };
    fan.mark(&args.protect, MarkScope::Mount, watch, false)?;
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }
    eprintln!(
        "portcullis-floor: protecting {} (pid {})",
        args.protect.display(),
        std::process::id()
    );

    let stopped = Arc::new(AtomicBool::new(false));
    let expiry = args.stall.then(|| {
        let (held, stopped) = (Arc::clone(&held), Arc::clone(&stopped));
        std::thread::spawn(move || {
            while !stopped.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(mut h) = held.lock() {
                    h.retain(|(since, _)| since.elapsed() < STALL_LIMIT);
                }
            }
        })
    });

    let signal = stop.wait().context("waiting for SIGINT/SIGTERM")?;
    stopped.store(true, Relaxed);
    if let Some(t) = expiry {
        let _ = t.join();
    }
    reader.stop();
    if let Some(w) = worker {
        let _ = w.join();
    }
    if let Some(round) = round.and_then(Arc::into_inner) {
        round.stop();
    }
    drop(held);
    drop(fan);
    eprintln!(
        "portcullis-floor: {signal}: answered {} events ({} answer errors, {} kernel queue overflows)",
        answered.load(Relaxed),
        failed.load(Relaxed),
        overflows.load(Relaxed)
    );
    Ok(())
}
