//! Archive builders (the format crates' writers, and hand-made zips) and
//! a recording visitor, shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};

use portcullis_archive::{walk, ArchiveMode, Flow, Format, Limits, Member, WalkOutcome};

/// What the visitor saw of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub data: Vec<u8>,
    pub depth: u32,
    pub format: Format,
}

pub fn walk_all(data: &[u8], mode: ArchiveMode, limits: &Limits) -> (WalkOutcome, Vec<Seen>) {
    let mut seen = Vec::new();
    let outcome = walk(data, mode, limits, &mut |m: &Member<'_>| {
        seen.push(Seen {
            path: m.path.to_string(),
            data: m.data.to_vec(),
            depth: m.depth,
            format: m.format,
        });
        Flow::Continue
    });
    (outcome, seen)
}

pub fn walk_default(data: &[u8]) -> (WalkOutcome, Vec<Seen>) {
    walk_all(data, ArchiveMode::All, &Limits::default())
}

/// Zip compression methods the tests write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZipMethod {
    Stored,
    Deflated,
    Bzip2,
    Xz,
    /// Written by hand (the zip crate cannot): method 14.
    Lzma,
    /// Written by hand: method 93.
    Zstd,
}

pub fn zip(entries: &[(&str, &[u8])], method: ZipMethod) -> Vec<u8> {
    if matches!(method, ZipMethod::Lzma | ZipMethod::Zstd) {
        let raw: Vec<RawEntry> = entries
            .iter()
            .map(|(name, data)| {
                let (m, compressed) = match method {
                    ZipMethod::Lzma => (14, lzma_for_zip(data)),
                    _ => (93, zstd(data)),
                };
                RawEntry {
                    name: name.as_bytes().to_vec(),
                    method: m,
                    flags: if m == 14 { 2 } else { 0 },
                    compressed,
                    uncompressed_len: data.len() as u64,
                    external_attr: 0,
                    made_by: 20,
                }
            })
            .collect();
        return raw_zip(&raw);
    }
    let m = match method {
        ZipMethod::Stored => zip::CompressionMethod::Stored,
        ZipMethod::Deflated => zip::CompressionMethod::Deflated,
        ZipMethod::Bzip2 => zip::CompressionMethod::Bzip2,
        _ => zip::CompressionMethod::Xz,
    };
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(m)
            .large_file(false);
        if name.ends_with('/') {
            w.add_directory(*name, options).unwrap();
        } else {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

/// An entry of a hand-made zip.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub method: u16,
    pub flags: u16,
    pub compressed: Vec<u8>,
    pub uncompressed_len: u64,
    pub external_attr: u32,
    pub made_by: u16,
}

impl RawEntry {
    pub fn stored(name: &[u8], data: &[u8]) -> Self {
        Self {
            name: name.to_vec(),
            method: 0,
            flags: 0,
            compressed: data.to_vec(),
            uncompressed_len: data.len() as u64,
            external_attr: 0,
            made_by: 20,
        }
    }
}

/// A zip written by hand (sizes up to 4 GiB, fewer than 65 535 entries).
pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let crc = 0u32;
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&e.method.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // time, date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(e.compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.uncompressed_len as u32).to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.compressed);
        central_header(
            &mut central,
            e,
            crc,
            e.compressed.len() as u32,
            e.uncompressed_len as u32,
            offset,
        );
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    end_record(
        &mut out,
        entries.len() as u16,
        central.len() as u32,
        cd_offset,
    );
    out
}

pub fn central_header(
    out: &mut Vec<u8>,
    e: &RawEntry,
    crc: u32,
    compressed: u32,
    uncompressed: u32,
    offset: u32,
) {
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&e.made_by.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&e.flags.to_le_bytes());
    out.extend_from_slice(&e.method.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&compressed.to_le_bytes());
    out.extend_from_slice(&uncompressed.to_le_bytes());
    out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
    out.extend_from_slice(&e.external_attr.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&e.name);
}

pub fn end_record(out: &mut Vec<u8>, entries: u16, cd_size: u32, cd_offset: u32) {
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Zip's LZMA: version, properties length, properties, data with an end
/// marker.
pub fn lzma_for_zip(data: &[u8]) -> Vec<u8> {
    let options = lzma_rust2::LzmaOptions::with_preset(6);
    let mut out = vec![9, 20, 5, 0, options.get_props()];
    out.extend_from_slice(&options.dict_size.to_le_bytes());
    let mut w = lzma_rust2::LzmaWriter::new_no_header(out, &options, true).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut w =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A 7z archive, solid (one block) or one block per file.
pub fn sevenz(entries: &[(&str, &[u8])], solid: bool) -> Vec<u8> {
    let mut w = sevenz_rust2::ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    if solid {
        let (files, readers): (Vec<_>, Vec<_>) = entries
            .iter()
            .map(|(name, data)| {
                (
                    sevenz_rust2::ArchiveEntry::new_file(name),
                    sevenz_rust2::SourceReader::new(*data),
                )
            })
            .unzip();
        w.push_archive_entries(files, readers).unwrap();
    } else {
        for (name, data) in entries {
            w.push_archive_entry(sevenz_rust2::ArchiveEntry::new_file(name), Some(*data))
                .unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

/// Wraps `data` as a single member of `format` named `name` (streams
/// ignore the name).
pub fn wrap(format: Format, name: &str, data: &[u8]) -> Vec<u8> {
    match format {
        Format::Zip => zip(&[(name, data)], ZipMethod::Deflated),
        Format::Tar => tar(&[(name, data)]),
        Format::Gzip => gzip(data),
        Format::Bzip2 => bzip2(data),
        Format::Xz => xz(data),
        Format::Zstd => zstd(data),
        Format::SevenZ => sevenz(&[(name, data)], true),
    }
}

/// A minimal ELF header, as a self-extractor's stub.
pub fn elf_stub() -> Vec<u8> {
    let mut stub = b"\x7fELF\x02\x01\x01\x00".to_vec();
    stub.resize(4096, 0x90);
    stub
}

/// Bytes that do not compress.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
