//! What telemetry costs an access: a cold access (a file version never
//! seen, so scanned by a real YARA-X worker on 4 KiB) through the real
//! Enforcer and Journal, answered on a channel, with
//!
//! - `metrics_off`: every metric handle returns after one relaxed load
//!   (the recorder below is switched off; without `metrics_listen` the
//!   handles are no-ops, which costs no more);
//! - `metrics_on`: the Prometheus recorder of `portcullis run` (the
//!   catalog's buckets), histograms drained every 5 s as the listener does;
//! - `metrics_on_traces_1`: metrics, and every access traced (ratio 1.0)
//!   through the OpenTelemetry layer and a batch span processor whose
//!   exporter drops the batches (the cost stays in the process), sampled
//!   as `portcullis run` samples (before the first span);
//! - `metrics_on_traces_0.01`: the same, ratio 0.01;
//!
//! measured twice: by criterion, each variant on a fresh node one after the
//! other (absolute figures), then interleaved on one node, a batch of each
//! variant per round, for the ratios against `metrics_off` (see
//! [`interleaved`]; `cargo bench -p portcullis-actors --bench enforcer --
//! interleaved` runs that alone). On this VM the time per batch drifts by
//! tens of percent over a minute with nothing else changing, so only the
//! interleaved ratios are comparable; BENCHMARKS.md quotes them.
//!
//! Its own bench binary: it installs a global metrics recorder and a
//! global tracing subscriber, which must not touch the other benches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use portcullis_actors::enforcer::{AccessRequest, Enforcer, EnforcerConfig, Responder};
use portcullis_actors::journal::{Journal, JournalConfig, JournalStore};
use portcullis_actors::policy::Policies;
use portcullis_actors::scanner::{start_scanners, LiveRules, Ruleset, ScanContent, ScanLimits};
use portcullis_schemas::{AccessKind, Decision, EventId, FileInfo, FilePath, NodeId, ProcessInfo};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Drops every batch: the spans are built, sampled, queued and handed to
/// the exporter thread, and go nowhere.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        drop(batch);
        std::future::ready(Ok(()))
    }
}

/// A recorder whose handles do nothing while `ON` is false.
struct Switchable(metrics_exporter_prometheus::PrometheusRecorder);

static ON: AtomicBool = AtomicBool::new(false);

struct Sw<T>(T);

impl metrics::CounterFn for Sw<metrics::Counter> {
    fn increment(&self, v: u64) {
        if ON.load(Ordering::Relaxed) {
            self.0.increment(v);
        }
    }
    fn absolute(&self, v: u64) {
        if ON.load(Ordering::Relaxed) {
            self.0.absolute(v);
        }
    }
}

impl metrics::GaugeFn for Sw<metrics::Gauge> {
    fn increment(&self, v: f64) {
        if ON.load(Ordering::Relaxed) {
            self.0.increment(v);
        }
    }
    fn decrement(&self, v: f64) {
        if ON.load(Ordering::Relaxed) {
            self.0.decrement(v);
        }
    }
    fn set(&self, v: f64) {
        if ON.load(Ordering::Relaxed) {
            self.0.set(v);
        }
    }
}

impl metrics::HistogramFn for Sw<metrics::Histogram> {
    fn record(&self, v: f64) {
        if ON.load(Ordering::Relaxed) {
            self.0.record(v);
        }
    }
}

impl metrics::Recorder for Switchable {
    fn describe_counter(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_counter(k, u, d)
    }
    fn describe_gauge(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_gauge(k, u, d)
    }
    fn describe_histogram(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_histogram(k, u, d)
    }
    fn register_counter(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(Sw(self.0.register_counter(k, m))))
    }
    fn register_gauge(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(Arc::new(Sw(self.0.register_gauge(k, m))))
    }
    fn register_histogram(
        &self,
        k: &metrics::Key,
        m: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Sw(self.0.register_histogram(k, m))))
    }
}

/// A running Enforcer with a real scanner and journal, in its own system.
struct Node {
    enforcer: Addr<Enforcer>,
    system: System,
    thread: Option<std::thread::JoinHandle<()>>,
    _journal_dir: tempfile::TempDir,
}

impl Drop for Node {
    /// Stops the node's actors and waits for its thread: an idle node left
    /// behind would still wake up (journal ticks, enforcer ticks) during
    /// the next variant's measurement.
    fn drop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static INODE: AtomicU64 = AtomicU64::new(1);

fn start_node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = Arc::new(
        Ruleset::compile_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"))
            .expect("rules"),
    );
    let cfg = JournalConfig {
        dir: dir.path().join("journal"),
        node_id: NodeId("bench".into()),
        max_batch: 1024,
        commit_interval: Duration::from_millis(5),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let system = System::new();
        let handle = System::current();
        system.block_on(async move {
            let store = JournalStore::open(&cfg).expect("journal");
            let journal = Journal::new(store, &cfg).start_on_own_thread();
            let scanner = start_scanners(
                1,
                LiveRules::new(rules.clone()),
                ScanLimits {
                    max_size: 0,
                    timeout: Duration::from_secs(10),
                    ..ScanLimits::default()
                },
            );
            let enforcer = Enforcer::new(
                EnforcerConfig::default(),
                Arc::new(Policies::build(&[]).expect("policies")),
                rules.version().clone(),
                scanner.recipient(),
                journal.recipient(),
            )
            .start();
            tx.send((enforcer, handle))
                .expect("handing the enforcer over");
        });
        system.run().expect("actix system");
    });
    let (enforcer, system) = rx.recv().expect("enforcer");
    Node {
        enforcer,
        system,
        thread: Some(thread),
        _journal_dir: dir,
    }
}

fn content() -> Vec<u8> {
    (0..4096u32)
        .map(|i| b"echo export ls grep\n"[(i % 20) as usize])
        .collect()
}

/// Accesses in flight at once: the Enforcer, scanner and journal threads
/// stay busy, so what is measured is the work per access rather than the
/// wake-up latency of four threads handing one access along (which on this
/// VM moves by tens of microseconds with nothing else changing).
const BATCH: usize = 256;

/// `BATCH` cold accesses: sent, scanned, answered.
fn accesses(
    node: &Node,
    bytes: &[u8],
    rx: &Receiver<(EventId, Decision)>,
    tx: &std::sync::mpsc::SyncSender<(EventId, Decision)>,
) {
    for _ in 0..BATCH {
        let inode = INODE.fetch_add(1, Ordering::Relaxed);
        node.enforcer.do_send(AccessRequest {
            event_id: EventId::new(),
            kind: AccessKind::Open,
            file: FileInfo {
                path: FilePath::from_bytes(b"/srv/app/bench.sh"),
                device: 7,
                inode,
                size: bytes.len() as u64,
                mtime_ns: 1,
                ctime_ns: 1,
            },
            layer_device: None,
            process: ProcessInfo {
                pid: 4242,
                ppid: 1,
                ..ProcessInfo::default()
            },
            container: None,
            labels: None,
            content: ScanContent::Bytes(bytes.to_vec()),
            responder: Responder::Channel(tx.clone()),
            received: Instant::now(),
        });
    }
    // Polled with short sleeps: a receiver spinning in `recv` would take
    // one of the machine's two cores from the threads being measured.
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < BATCH {
        match rx.try_recv() {
            Ok((_, d)) => {
                assert_eq!(d, Decision::Allow);
                got += 1;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "decisions missing");
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

/// The variants measured, with the switches each sets.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    metrics: bool,
    /// Trace sampling ratio; `None`: traces off.
    traces: Option<f64>,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "metrics_off",
        metrics: false,
        traces: None,
    },
    Variant {
        name: "metrics_on",
        metrics: true,
        traces: None,
    },
    Variant {
        name: "metrics_on_traces_1",
        metrics: true,
        traces: Some(1.0),
    },
    Variant {
        name: "metrics_on_traces_0.01",
        metrics: true,
        traces: Some(0.01),
    },
];

impl Variant {
    /// Every switch is a global atomic: it takes effect at the next access.
    fn apply(self) {
        ON.store(self.metrics, Ordering::Relaxed);
        portcullis_telemetry::histogram::pause(!self.metrics);
        portcullis_telemetry::trace::set_enabled(self.traces.is_some());
        portcullis_telemetry::trace::set_ratio(self.traces.unwrap_or(1.0));
    }
}

/// Installs the telemetry of `portcullis run` (metrics recorder, trace
/// layer), every switch off. Returns the tracer provider to shut down.
fn install_telemetry() -> SdkTracerProvider {
    // Traces: the layer of `portcullis run` (same options), installed
    // once; off until switched on.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(Discard).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_target(false)
                .with_tracer(provider.tracer("portcullis"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target(portcullis_telemetry::trace::TARGET, tracing::Level::TRACE),
                ),
        )
        .init();

    let recorder = portcullis_telemetry::prometheus_recorder();
    portcullis_telemetry::set_metrics_on(true);
    let handle = recorder.handle();
    metrics::set_global_recorder(Switchable(recorder)).expect("recorder");
    portcullis_telemetry::describe();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(5));
        handle.run_upkeep();
    });
    VARIANTS[0].apply();
    provider
}

/// Criterion's figures: each variant on a fresh node (the one before
/// stopped), one after the other. Absolute times per batch; the ratios
/// come from [`interleaved`], which this VM's drift cannot bias.
fn telemetry_cost(c: &mut Criterion) {
    let bytes = content();
    let (tx, rx) = sync_channel(BATCH);
    let mut group = c.benchmark_group("enforcer_cold_access");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    for v in VARIANTS {
        // A fresh node (and journal) per variant: a journal that grew by
        // the millions of events of the variants before would slow the
        // later ones.
        let node = start_node();
        v.apply();
        group.bench_function(v.name, |b| b.iter(|| accesses(&node, &bytes, &rx, &tx)));
        drop(node);
    }
    group.finish();
    VARIANTS[0].apply();
}

/// The ratios: one node, and rounds in which every variant runs one batch
/// (in an order shuffled every round), so that whatever the machine
/// does to one variant it does to the others within a few milliseconds.
/// Each variant's cost is the median over rounds of its time divided by
/// `metrics_off`'s time in the same round, with a 95 % confidence interval
/// of that median (order statistics, no assumption on the distribution).
/// `PORTCULLIS_BENCH_ROUNDS` sets the rounds (default 1500; criterion's
/// `--test` mode runs 4).
///
/// Every batch's time includes a flush of the batch span processor (the
/// exporter drops the spans), for every variant alike: a traced batch's
/// spans are processed on the processor's thread, and left pending that
/// work would land in the next variant's batch; an empty flush costs the
/// untraced variants the same thread round trip. The order of the variants
/// is shuffled every round (fixed seed), so no variant always follows the
/// same one.
fn interleaved(rounds: usize, provider: &SdkTracerProvider) {
    let node = start_node();
    let bytes = content();
    let (tx, rx) = sync_channel(BATCH);
    // Warm-up: every variant twice, unmeasured.
    for v in VARIANTS.iter().chain(VARIANTS.iter()) {
        v.apply();
        accesses(&node, &bytes, &rx, &tx);
        let _ = provider.force_flush();
    }
    let mut times = vec![Vec::with_capacity(rounds); VARIANTS.len()];
    let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..rounds {
        shuffle(&mut order, &mut rng);
        for &i in &order {
            VARIANTS[i].apply();
            let t = Instant::now();
            accesses(&node, &bytes, &rx, &tx);
            let _ = provider.force_flush();
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    VARIANTS[0].apply();
    drop(node);
    println!(
        "\ninterleaved: {rounds} rounds of {BATCH} cold accesses per variant, one node, shuffled order"
    );
    let per_access = |v: &[f64]| median(v) / BATCH as f64 * 1e6;
    println!(
        "  {:<24} {:>10} {:>10}  95% CI of the median ratio",
        "variant", "µs/access", "ratio"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let ratios: Vec<f64> = times[i]
            .iter()
            .zip(&times[0])
            .map(|(t, off)| t / off)
            .collect();
        let (lo, mid, hi) = median_ci(&ratios);
        println!(
            "  {:<24} {:>10.2} {:>10.4}  [{lo:.4}, {hi:.4}]",
            v.name,
            per_access(&times[i]),
            mid
        );
    }
}

/// Fisher–Yates with xorshift64: a fixed sequence of orders, no crate.
fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (*state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

fn median(v: &[f64]) -> f64 {
    median_ci(v).1
}

/// The median of `v` and the 95 % confidence interval of it: the order
/// statistics at n/2 ± 1.96·√n/2.
fn median_ci(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let half = 1.96 * (n as f64).sqrt() / 2.0;
    let at = |x: f64| s[(x.round().max(0.0) as usize).min(n - 1)];
    let mid = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (at(n as f64 / 2.0 - half), mid, at(n as f64 / 2.0 + half))
}

criterion_group!(benches, telemetry_cost);

fn main() {
    let provider = install_telemetry();
    benches();
    let test_mode = std::env::args().any(|a| a == "--test");
    let rounds = std::env::var("PORTCULLIS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if test_mode { 4 } else { 1500 });
    // Only when asked for the whole bench (or no filter at all).
    let filtered = std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"interleaved".contains(a.as_str()));
    if !filtered {
        interleaved(rounds, &provider);
    }
    Criterion::default().configure_from_args().final_summary();
    let _ = provider.shutdown();
}
