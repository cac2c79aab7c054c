//! Decompression bombs, each walked with the default limits in a child
//! process (this test binary run again on `child_runner`, the bomb named
//! by `ARCHIVE_BOMB`), which measures the walk's time and the resident
//! memory it added: VmRSS before the walk (after generating the input),
//! VmHWM reset through /proc/self/clear_refs, VmHWM after.
//!
//! `cargo test --release -p portcullis-archive --test bombs -- --nocapture`
//! prints the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{central_header, end_record, noise, raw_zip, RawEntry};
use portcullis_archive::{walk, ArchiveMode, Flow, LimitKind, Limits, WalkOutcome};

const ENV: &str = "ARCHIVE_BOMB";
const MIB: u64 = 1024 * 1024;
/// Peak resident memory a walk may add with the default limits.
const MAX_RSS_ADDED: u64 = 64 * MIB;

/// Runs one bomb in a child; one child at a time.
fn run_bomb(name: &str) -> (String, Duration, u64) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runner", "--nocapture", "--test-threads=1"])
        .env(ENV, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("BOMB-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "child for {name} printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut parts = line.splitn(3, ' ');
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    let rss_added: u64 = parts.next().unwrap().parse().unwrap();
    let outcome = parts.next().unwrap().to_string();
    println!(
        "bomb {name}: {outcome}; walk {secs:.3} s, peak RSS added {:.1} MiB (child {:.1} s in all)",
        rss_added as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );
    (outcome, Duration::from_secs_f64(secs), rss_added)
}

fn assert_bounded(name: &str, time: Duration, rss_added: u64) {
    let limits = Limits::default();
    assert!(
        time <= limits.timeout + Duration::from_secs(1),
        "{name}: the walk took {time:?}"
    );
    assert!(
        rss_added <= MAX_RSS_ADDED,
        "{name}: the walk added {} MiB of resident memory",
        rss_added / MIB
    );
}

#[test]
fn bomb_nested_42() {
    let (outcome, time, rss) = run_bomb("nested_42");
    assert!(
        outcome.contains(&format!("{:?}", LimitKind::Ratio)),
        "{outcome}"
    );
    assert_bounded("nested_42", time, rss);
}

#[test]
fn bomb_overlapping_zip() {
    let (outcome, time, rss) = run_bomb("overlapping_zip");
    assert!(
        outcome.starts_with("Corrupt") && outcome.contains("overlap"),
        "{outcome}"
    );
    assert_bounded("overlapping_zip", time, rss);
}

#[test]
fn bomb_gzip_10_gib_of_zeros() {
    let (outcome, time, rss) = run_bomb("gzip_zeros");
    assert!(
        outcome.contains(&format!("{:?}", LimitKind::Ratio)),
        "{outcome}"
    );
    assert_bounded("gzip_zeros", time, rss);
}

#[test]
fn bomb_million_member_zip() {
    let (outcome, time, rss) = run_bomb("million_members");
    assert!(
        outcome.contains(&format!("{:?}", LimitKind::Members)),
        "{outcome}"
    );
    assert!(time < Duration::from_millis(100), "{time:?}");
    assert_bounded("million_members", time, rss);
}

#[test]
fn bomb_solid_7z_of_zeros() {
    let (outcome, time, rss) = run_bomb("sevenz_zeros");
    assert!(
        outcome.contains(&format!("{:?}", LimitKind::Ratio)),
        "{outcome}"
    );
    assert_bounded("sevenz_zeros", time, rss);
}

/// Not a bomb: nested buffers that fill `max_memory` (24 MiB of noise in
/// a gzip, in a tar, in a gzip: 48 MiB held with the decoder), the worst
/// the accounting lets through.
#[test]
fn bomb_memory_budget_filled() {
    let (outcome, time, rss) = run_bomb("budget_fill");
    assert!(
        outcome.contains(&format!("{:?}", LimitKind::Memory)),
        "{outcome}"
    );
    assert!(rss > 40 * MIB, "the walk held less than it should: {rss}");
    assert_bounded("budget_fill", time, rss);
}

/// The child side: generates the bomb, walks it, prints the figures.
/// Without `ARCHIVE_BOMB` it does nothing.
#[test]
fn child_runner() {
    let Ok(name) = std::env::var(ENV) else {
        return;
    };
    let input = match name.as_str() {
        "nested_42" => nested_42(),
        "overlapping_zip" => overlapping_zip(1000, 256 * MIB),
        "gzip_zeros" => gzip_of_zeros(10 << 30),
        "million_members" => million_member_zip(),
        "sevenz_zeros" => sevenz_of_zeros(8 << 20),
        "budget_fill" => {
            let inner = gzip_fast(&noise(24 << 20));
            gzip_fast(&common::tar(&[("noise.gz", &inner)]))
        }
        other => panic!("no bomb {other}"),
    };
    trim_heap();
    let before = status_kib("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let started = Instant::now();
    let mut members = 0u64;
    let outcome = walk(&input, ArchiveMode::All, &Limits::default(), &mut |_| {
        members += 1;
        Flow::Continue
    });
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    let added = peak.saturating_sub(before) * 1024;
    let outcome = match outcome {
        WalkOutcome::Limit(hit) => format!(
            "Limit {:?} at {:?} after {members} members",
            hit.kind,
            hit.member.to_string()
        ),
        other => format!("{other:?}"),
    };
    println!("BOMB-RESULT {secs} {added} {outcome}");
}

/// A solid 7z of one file of zeros, LZMA2 at its fastest preset.
fn sevenz_of_zeros(len: usize) -> Vec<u8> {
    let mut w = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    w.set_content_methods(vec![sevenz_rust2::EncoderConfiguration::new(
        sevenz_rust2::EncoderMethod::LZMA2,
    )
    .with_options(sevenz_rust2::encoder_options::EncoderOptions::Lzma2(
        sevenz_rust2::encoder_options::Lzma2Options::from_level(0),
    ))]);
    w.push_archive_entry(
        sevenz_rust2::ArchiveEntry::new_file("zeros"),
        Some(&vec![0u8; len][..]),
    )
    .unwrap();
    w.finish().unwrap().into_inner()
}

/// gzip in stored blocks: the content is noise anyway.
fn gzip_fast(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Gives the generator's freed memory back, so the walk cannot reuse it
/// unseen.
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and is thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

/// A raw deflate stream of `len` zeros (a multiple of 1 MiB), built from
/// one sync-flushed megabyte repeated: every block is byte-aligned and
/// looks back only at zeros, so copies of it chain into a valid stream.
fn deflate_zeros(len: u64) -> Vec<u8> {
    let piece = zeros_piece();
    let count = (len / MIB) as usize;
    let mut out = Vec::with_capacity(piece.len() * count + 2);
    for _ in 0..count {
        out.extend_from_slice(&piece);
    }
    out.extend_from_slice(&[0x03, 0x00]); // an empty final fixed block
    out
}

fn zeros_piece() -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; MIB as usize]).unwrap();
    e.flush().unwrap();
    e.get_ref().clone()
}

/// gzip of `len` zeros, with the right CRC and size.
fn gzip_of_zeros(len: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&deflate_zeros(len));
    let mut one = crc32fast::Hasher::new();
    one.update(&vec![0u8; MIB as usize]);
    let one = one.finalize();
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..len / MIB {
        crc.combine(&crc32fast::Hasher::new_with_initial_len(one, MIB));
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// 42.zip's shape: five levels of zips holding 16 copies of the level
/// below, the last holding 16 files of 256 MiB of zeros each (42.zip's
/// are 4.3 GB: the walk stops at the first file either way).
fn nested_42() -> Vec<u8> {
    let leaf = deflate_zeros(256 * MIB);
    let mut level = zip_of_16(&leaf, 256 * MIB, "0.dll");
    for depth in 0..4 {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&level).unwrap();
        let compressed = e.finish().unwrap();
        level = zip_of_16(&compressed, level.len() as u64, &format!("lib{depth}.zip"));
    }
    level
}

fn zip_of_16(deflated: &[u8], uncompressed: u64, stem: &str) -> Vec<u8> {
    let entries: Vec<RawEntry> = (0..16)
        .map(|i| RawEntry {
            name: format!("{i:x}-{stem}").into_bytes(),
            method: 8,
            flags: 0,
            compressed: deflated.to_vec(),
            uncompressed_len: uncompressed,
            external_attr: 0,
            made_by: 20,
        })
        .collect();
    raw_zip(&entries)
}

/// David Fifield's overlapping zip bomb: `files` central directory
/// entries, each local file's data quoting (as a stored deflate block) the
/// local headers after it and ending in one shared kernel of zeros.
fn overlapping_zip(files: usize, kernel_len: u64) -> Vec<u8> {
    let kernel = deflate_zeros(kernel_len);
    let names: Vec<Vec<u8>> = (0..files).map(|i| format!("{i:04}").into_bytes()).collect();
    let header_len = |i: usize| 30 + names[i].len();
    // Uncompressed size of file i: the quoted headers after it + kernel.
    let mut uncompressed = vec![kernel_len; files];
    for i in (0..files.saturating_sub(1)).rev() {
        uncompressed[i] = uncompressed[i + 1] + header_len(i + 1) as u64;
    }
    // Layout: LH_0 Q_1 LH_1 Q_2 ... LH_{n-1} kernel.
    let total: usize = (0..files).map(header_len).sum::<usize>() + 5 * (files - 1) + kernel.len();
    let mut out = Vec::with_capacity(total + files * 60 + 22);
    let mut central = Vec::new();
    for i in 0..files {
        let offset = out.len();
        let data_start = offset + header_len(i);
        let compressed = (total - data_start) as u32;
        let entry = RawEntry {
            name: names[i].clone(),
            method: 8,
            flags: 0,
            compressed: Vec::new(),
            uncompressed_len: uncompressed[i],
            external_attr: 0,
            made_by: 20,
        };
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // time, date, crc
        out.extend_from_slice(&compressed.to_le_bytes());
        out.extend_from_slice(&(uncompressed[i] as u32).to_le_bytes());
        out.extend_from_slice(&(names[i].len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&names[i]);
        if i + 1 < files {
            let quoted = header_len(i + 1) as u16;
            out.push(0x00); // a stored, non-final block
            out.extend_from_slice(&quoted.to_le_bytes());
            out.extend_from_slice(&(!quoted).to_le_bytes());
        }
        central_header(
            &mut central,
            &entry,
            0,
            compressed,
            uncompressed[i] as u32,
            offset as u32,
        );
    }
    out.extend_from_slice(&kernel);
    assert_eq!(out.len(), total);
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    end_record(&mut out, files as u16, central.len() as u32, cd_offset);
    out
}

/// A real zip of 1 000 000 empty stored files (zip64 end records).
fn million_member_zip() -> Vec<u8> {
    const N: u64 = 1_000_000;
    let mut out = Vec::with_capacity(95 << 20);
    let mut central = Vec::with_capacity(55 << 20);
    for i in 0..N {
        let offset = out.len() as u32;
        let name = format!("f{i:06}");
        let entry = RawEntry::stored(name.as_bytes(), b"");
        out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00");
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        central_header(&mut central, &entry, 0, 0, 0, offset);
    }
    let cd_offset = out.len() as u64;
    out.extend_from_slice(&central);
    let eocd64 = out.len() as u64;
    out.extend_from_slice(b"PK\x06\x06");
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // disks
    out.extend_from_slice(&N.to_le_bytes());
    out.extend_from_slice(&N.to_le_bytes());
    out.extend_from_slice(&(central.len() as u64).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(b"PK\x06\x07");
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&eocd64.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    end_record(&mut out, u16::MAX, u32::MAX, u32::MAX);
    out
}
