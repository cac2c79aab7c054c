//! What a rules reload costs: compiling a 10,000-rule ruleset (on a
//! blocking thread, never where opens are answered), the swap itself
//! (`LiveRules::publish`), and the first scan after it (each scanner
//! builds its YARA-X scanner over the new rules), against a steady scan,
//! in the same run.
//!
//! `cargo bench -p portcullis-actors --bench reload`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_actors::scanner::{LiveRules, Ruleset, ScanContent, ScanEngine, ScanLimits};

/// `n` rules with distinct strings (a mix of text, hex and regex), one
/// file, the shape of a real signature feed.
fn sources(n: usize, seed: u32) -> Vec<(PathBuf, String)> {
    let mut text = String::with_capacity(n * 120);
    for i in 0..n {
        let k = i as u32 ^ seed;
        let cond = match i % 3 {
            0 => format!("$a = \"sig-{k:08x}-payload\"\n    condition: $a"),
            1 => format!(
                "$a = {{ {:02x} {:02x} {:02x} {:02x} ?? 5a 4d }}\n    condition: $a",
                k & 0xff,
                (k >> 8) & 0xff,
                (k >> 16) & 0xff,
                (k >> 24) & 0xff
            ),
            _ => {
                format!("$a = /evil_{k:x}[0-9]{{2,4}}\\.sh/\n    condition: $a and filesize < 1MB")
            }
        };
        text.push_str(&format!(
            "rule r{i}_{seed} {{\n  strings:\n    {cond}\n}}\n"
        ));
    }
    vec![(PathBuf::from("feed.yar"), text)]
}

fn compile(n: usize, seed: u32) -> Arc<Ruleset> {
    match Ruleset::compile_sources(Path::new("/bench"), &sources(n, seed)) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("{e}"),
    }
}

fn reload(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules_reload");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for n in [100, 10_000] {
        group.bench_function(BenchmarkId::new("compile", n), |b| {
            let mut seed = 0;
            b.iter(|| {
                seed += 1;
                compile(n, seed)
            })
        });
    }
    let content = ScanContent::Bytes(b"#!/bin/sh\necho hello from a clean script\n".repeat(100));
    let limits = ScanLimits::default();
    let (a, b_rules) = (compile(10_000, 1), compile(10_000, 2));
    let live = LiveRules::new(a.clone());
    let mut engine = ScanEngine::live(live.clone(), limits);
    engine.scan(&content);
    group.bench_function("steady_scan/10000", |b| b.iter(|| engine.scan(&content)));
    let mut flip = false;
    group.bench_function("publish_then_first_scan/10000", |b| {
        b.iter(|| {
            flip = !flip;
            live.publish(if flip { b_rules.clone() } else { a.clone() });
            engine.scan(&content)
        })
    });
    group.bench_function("publish/10000", |b| {
        b.iter(|| {
            flip = !flip;
            live.publish(if flip { b_rules.clone() } else { a.clone() })
        })
    });
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
