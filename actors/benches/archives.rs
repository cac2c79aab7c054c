//! What walking archives costs: a 10 MiB zip of 1,000 files and a 100 MiB
//! tar.gz scanned with the shipped rules, against the same bytes unpacked
//! and scanned flat (each member on its own), in the same run.
//!
//! `cargo bench -p portcullis-actors --bench archives`

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use portcullis_actors::scanner::{ArchiveScan, Ruleset, ScanContent, ScanEngine, ScanLimits};
use portcullis_schemas::Verdict;

fn ruleset() -> Arc<Ruleset> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    match Ruleset::compile_dir(&dir) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("cannot compile the default ruleset: {e}"),
    }
}

/// `n` members of `len` bytes of text-like, poorly compressible content.
fn members(n: usize, len: usize) -> Vec<(String, Vec<u8>)> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            let data = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    b"abcdefghijklmnopqrstuvwxyz0123456789 \n/._-"[(state >> 58) as usize % 42]
                })
                .collect();
            (format!("dir{}/file{i}.txt", i % 10), data)
        })
        .collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    for (name, data) in files {
        w.start_file(name.as_str(), opts).expect("zip entry");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

fn tar_gz_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice())
            .expect("tar entry");
    }
    let tar = b.into_inner().expect("tar finish");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip finish")
}

fn engine(archives: ArchiveScan) -> ScanEngine {
    ScanEngine::new(
        ruleset(),
        ScanLimits {
            max_size: 0,
            timeout: Duration::from_secs(60),
            archives,
        },
    )
}

fn bench_case(c: &mut Criterion, name: &str, archive: Vec<u8>, files: &[(String, Vec<u8>)]) {
    let unpacked: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    // The 100 MiB tar is one decompressed stream: it needs room past the
    // default 32 MiB per member and 48 MiB of memory.
    let roomy = ArchiveScan {
        limits: portcullis_archive::Limits {
            max_member_bytes: 256 << 20,
            max_memory: 512 << 20,
            timeout: Duration::from_secs(60),
            ..portcullis_archive::Limits::default()
        },
        ..ArchiveScan::default()
    };
    let mut walking = engine(roomy);
    let check = walking.scan(&ScanContent::Bytes(archive.clone()));
    assert_eq!(
        check.verdict,
        Verdict::Clean,
        "{name}: the walk must complete"
    );
    let mut flat = engine(ArchiveScan::default());

    let mut group = c.benchmark_group(format!("archive_{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(unpacked));
    let content = ScanContent::Bytes(archive);
    group.bench_function(BenchmarkId::new("walked", name), |b| {
        b.iter(|| walking.scan(&content))
    });
    let flat_files: Vec<ScanContent> = files
        .iter()
        .map(|(_, d)| ScanContent::Bytes(d.clone()))
        .collect();
    group.bench_function(BenchmarkId::new("flat", name), |b| {
        b.iter(|| {
            for f in &flat_files {
                flat.scan(f);
            }
        })
    });
    group.finish();
}

fn archives(c: &mut Criterion) {
    let small = members(1_000, 10 * 1024);
    bench_case(c, "zip_1000x10KiB", zip_of(&small), &small);
    let big = members(100, 1024 * 1024);
    bench_case(c, "tar_gz_100x1MiB", tar_gz_of(&big), &big);
}

criterion_group!(benches, archives);
criterion_main!(benches);
