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
//! each on a fresh node, in two interleaved rounds (`r1/...`, `r2/...`).
//!
//! Its own bench binary: it installs a global metrics recorder and a
//! global tracing subscriber, which must not touch the other benches.
//! BENCHMARKS.md gives the ratios against `metrics_off` of the same run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use portcullis_actors::enforcer::{AccessRequest, Enforcer, EnforcerConfig, Responder};
use portcullis_actors::journal::{Journal, JournalConfig, JournalStore};
use portcullis_actors::policy::Policies;
use portcullis_actors::scanner::{start_scanners, Ruleset, ScanContent, ScanLimits};
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
    _journal_dir: tempfile::TempDir,
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
    std::thread::spawn(move || {
        let system = System::new();
        system.block_on(async move {
            let store = JournalStore::open(&cfg).expect("journal");
            let journal = Journal::new(store, &cfg).start_on_own_thread();
            let scanner = start_scanners(
                1,
                rules.clone(),
                ScanLimits {
                    max_size: 0,
                    timeout: Duration::from_secs(10),
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
            tx.send(enforcer).expect("handing the enforcer over");
        });
        system.run().expect("actix system");
    });
    Node {
        enforcer: rx.recv().expect("enforcer"),
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

fn telemetry_cost(c: &mut Criterion) {
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

    let bytes = content();
    let (tx, rx) = sync_channel(BATCH);
    let mut group = c.benchmark_group("enforcer_cold_access");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(8));
    // A fresh node (and journal) per variant: a journal that grew by the
    // millions of events of the variants before would slow the later ones.
    // Two rounds, interleaved: compare within a round.
    let mut run = |name: String, metrics: bool, ratio: Option<f64>| {
        let node = start_node();
        ON.store(metrics, Ordering::Relaxed);
        portcullis_telemetry::histogram::pause(!metrics);
        portcullis_telemetry::trace::set_enabled(ratio.is_some());
        portcullis_telemetry::trace::set_ratio(ratio.unwrap_or(1.0));
        group.bench_function(name, |b| b.iter(|| accesses(&node, &bytes, &rx, &tx)));
    };
    for round in 1..=2 {
        run(format!("r{round}/metrics_off"), false, None);
        run(format!("r{round}/metrics_on"), true, None);
        run(format!("r{round}/metrics_on_traces_1"), true, Some(1.0));
        run(format!("r{round}/metrics_on_traces_0.01"), true, Some(0.01));
    }
    group.finish();
    let _ = provider.shutdown();
}

criterion_group!(benches, telemetry_cost);
criterion_main!(benches);
