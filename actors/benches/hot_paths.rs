//! Criterion benches of the hot paths, one `criterion_group!` per actor.
//! Add a group in its own section and list it in `criterion_main!` at the
//! bottom.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

// ------------------------------------------------------------------ scanner

use portcullis_actors::scanner::{Ruleset, ScanContent, ScanEngine, ScanLimits};
use portcullis_schemas::Verdict;

const SCAN_SIZES: [(&str, usize); 2] = [("4KiB", 4 * 1024), ("1MiB", 1024 * 1024)];

/// The shipped ruleset (`rules/` at the repository root).
fn default_ruleset() -> Arc<Ruleset> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    match Ruleset::compile_dir(&dir) {
        Ok(ruleset) => Arc::new(ruleset),
        Err(err) => panic!("cannot compile the default ruleset: {err}"),
    }
}

/// Deterministic, text-like content that no default rule matches: lines of
/// shell-ish words from a small LCG.
fn clean_buffer(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "echo",
        "export",
        "PATH=/usr/bin",
        "if",
        "then",
        "fi",
        "ls",
        "-la",
        "/var/lib",
        "grep",
        "config",
        "\n",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let word = WORDS[(state >> 33) as usize % WORDS.len()];
        out.extend_from_slice(word.as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn scan_limits() -> ScanLimits {
    ScanLimits {
        max_size: 0,
        timeout: Duration::from_secs(60),
        ..ScanLimits::default()
    }
}

/// Read (for fds), sha256 and YARA-X scan of clean content with the default
/// ruleset: the cost of every file open in Enforce mode on a cache miss.
fn scan_clean(c: &mut Criterion) {
    let ruleset = default_ruleset();
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("cannot create a temporary directory: {err}"),
    };
    let mut group = c.benchmark_group("scan_clean");
    for (name, len) in SCAN_SIZES {
        let data = clean_buffer(len);
        let path = dir.path().join(name);
        let fd = match std::fs::write(&path, &data).and_then(|()| std::fs::File::open(&path)) {
            Ok(file) => ScanContent::Fd(Arc::new(file.into())),
            Err(err) => panic!("cannot write {}: {err}", path.display()),
        };
        let mut engine = ScanEngine::new(Arc::clone(&ruleset), scan_limits());
        group.throughput(Throughput::Bytes(len as u64));
        for (kind, content) in [("bytes", ScanContent::Bytes(data)), ("fd", fd)] {
            let verdict = engine.scan(&content).verdict;
            assert_eq!(verdict, Verdict::Clean, "bench content must be clean");
            group.bench_with_input(BenchmarkId::new(kind, name), &content, |b, content| {
                b.iter(|| engine.scan(content))
            });
        }
    }
    group.finish();
}

criterion_group!(scan_benches, scan_clean);

// ------------------------------------------------------------------ journal

use portcullis_actors::journal::{JournalConfig, JournalStore, Record};
use portcullis_schemas::{Decision, DecisionMade, DecisionReason, EventBody, EventId, NodeId};

/// Records per `append_batch` call: one fsync each, so the batch of 1 shows
/// the fsync cost and the batch of 256 what group commit buys.
const JOURNAL_BATCHES: [usize; 2] = [1, 256];

/// A decision, the most frequent record on a busy node.
fn journal_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|n| {
            Record::new(EventBody::DecisionMade(DecisionMade {
                access: EventId::new(),
                decision: Decision::Allow,
                reason: DecisionReason::Verdict,
                latency_us: n as u64,
            }))
        })
        .collect()
}

/// `JournalStore::append_batch` (encode, one sled transaction, fsync) into a
/// fresh journal in a temporary directory.
fn journal_append(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("cannot create a temporary directory: {err}"),
    };
    let cfg = JournalConfig::new(dir.path(), NodeId("bench-node".into()));
    let mut store = match JournalStore::open(&cfg) {
        Ok(store) => store,
        Err(err) => panic!("cannot open the journal: {err}"),
    };
    let mut group = c.benchmark_group("journal_append");
    group.sample_size(20);
    for batch in JOURNAL_BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_batched(
                || journal_records(batch),
                |records| match store.append_batch(records) {
                    Ok(stored) => stored,
                    Err(err) => panic!("append failed: {err}"),
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Baselines measured in the same run, for ratios: the sha256 every scan
/// does anyway, and one 4 KiB write + fsync in the journal's filesystem
/// (the floor of any durable append).
fn baselines(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut group = c.benchmark_group("baseline");
    for (name, len) in [("4KiB", 4096usize), ("1MiB", 1 << 20)] {
        let buf = clean_buffer(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("sha256", name), |b| {
            b.iter(|| Sha256::digest(criterion::black_box(&buf)))
        });
    }
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("cannot create a temporary directory: {err}"),
    };
    let mut file = match std::fs::File::create(dir.path().join("fsync")) {
        Ok(f) => f,
        Err(err) => panic!("cannot create a file: {err}"),
    };
    let page = vec![7u8; 4096];
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("write_fsync_4KiB", |b| {
        b.iter(|| {
            if let Err(err) = file.write_all(&page).and_then(|_| file.sync_data()) {
                panic!("fsync failed: {err}");
            }
        })
    });
    group.finish();
}

criterion_group!(journal_benches, journal_append, baselines);

// ------------------------------------------------------------------ main

criterion_main!(scan_benches, journal_benches);
