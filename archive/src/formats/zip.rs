//! Zip, read from its central directory by our own parser (see the crate
//! documentation for why not the `zip` crate's reader), members inflated
//! by the codec crates.
//!
//! Before anything is inflated the whole central directory is checked:
//! the entry count against `max_members` (from the end record, before a
//! single entry is parsed), every entry's local header, and that no two
//! entries' data overlap and none runs into the central directory.

use std::io::Read;

use crate::detect::Format;
use crate::formats::stream;
use crate::limits::LimitKind;
use crate::walk::{Counted, DecoderMemory, Halt, RatioBase, Walker};

const EOCD: &[u8] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD: &[u8] = b"PK\x06\x06";
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL: &[u8] = b"PK\x01\x02";
const CENTRAL_LEN: usize = 46;
const LOCAL: &[u8] = b"PK\x03\x04";
const LOCAL_LEN: usize = 30;

/// Whether `data` ends with a valid zip end-of-central-directory record.
pub(crate) fn has_end_record(data: &[u8]) -> bool {
    find_end(data).is_some()
}

/// What the end records say, with offsets made absolute in `data`.
#[derive(Debug, Clone, Copy)]
struct End {
    entries: u64,
    /// Where the central directory starts and ends in `data`.
    cd_start: usize,
    cd_end: usize,
    /// Bytes before the zip (a self-extractor's stub): added to every
    /// offset the archive declares.
    base: u64,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// The last end record in the final 64 KiB (the comment's maximum) that
/// describes a central directory that is there.
fn find_end(data: &[u8]) -> Option<End> {
    let last = data.len().checked_sub(EOCD_LEN)?;
    let lowest = last.saturating_sub(usize::from(u16::MAX));
    let window = data.get(lowest..last + EOCD.len())?;
    let mut upto = window.len();
    while let Some(i) = memchr::memmem::rfind(window.get(..upto)?, EOCD) {
        if let Some(end) = parse_end(data, lowest + i) {
            return Some(end);
        }
        upto = i + EOCD.len() - 1;
    }
    None
}

fn parse_end(data: &[u8], at: usize) -> Option<End> {
    let rec = data.get(at..at + EOCD_LEN)?;
    let disk = u16_at(rec, 4)?;
    let cd_disk = u16_at(rec, 6)?;
    let mut entries = u64::from(u16_at(rec, 10)?);
    let mut cd_size = u64::from(u32_at(rec, 12)?);
    let mut cd_offset = u64::from(u32_at(rec, 16)?);
    // Where the central directory's end must be: just before the end
    // record, or before the zip64 end record.
    let mut cd_end_actual = at;
    let locator = at
        .checked_sub(ZIP64_LOCATOR_LEN)
        .filter(|&l| data.get(l..l + 4) == Some(ZIP64_LOCATOR));
    if let Some(loc_at) = locator {
        let declared = u64_at(data, loc_at + 8)?;
        // The zip64 end record at its declared offset, else just before
        // the locator (with data prepended, offsets are off by its size).
        let rec64_at = usize::try_from(declared)
            .ok()
            .filter(|&p| data.get(p..p + 4) == Some(ZIP64_EOCD))
            .or_else(|| {
                let p = loc_at.checked_sub(ZIP64_EOCD_LEN)?;
                (data.get(p..p + 4) == Some(ZIP64_EOCD)).then_some(p)
            })?;
        let rec64 = data.get(rec64_at..rec64_at + ZIP64_EOCD_LEN)?;
        if u32_at(rec64, 16)? != 0 || u32_at(rec64, 20)? != 0 {
            return None; // multi-disk
        }
        entries = u64_at(rec64, 32)?;
        cd_size = u64_at(rec64, 40)?;
        cd_offset = u64_at(rec64, 48)?;
        cd_end_actual = rec64_at;
    } else if disk != 0 || cd_disk != 0 {
        return None;
    }
    // The central directory at its declared offset, or (data prepended)
    // right before the end records.
    let declared_start = usize::try_from(cd_offset).ok();
    let cd_size_usize = usize::try_from(cd_size).ok()?;
    let at_declared = declared_start.filter(|&s| {
        s.checked_add(cd_size_usize)
            .is_some_and(|e| e <= cd_end_actual)
            && (entries == 0 || data.get(s..s + 4) == Some(CENTRAL))
    });
    let cd_start = match at_declared {
        Some(s) => s,
        None => {
            let s = cd_end_actual.checked_sub(cd_size_usize)?;
            if entries > 0 && data.get(s..s + 4) != Some(CENTRAL) {
                return None;
            }
            s
        }
    };
    let base = (cd_start as u64).checked_sub(cd_offset)?;
    Some(End {
        entries,
        cd_start,
        cd_end: cd_start + cd_size_usize,
        base,
    })
}

/// One central directory entry, checked against its local header.
#[derive(Debug, Clone)]
struct Entry {
    name: (usize, usize),
    flags: u16,
    method: u16,
    uncompressed: u64,
    /// The compressed data in `data`.
    data: (usize, usize),
    /// The entry's whole extent: local header to end of data.
    extent: (usize, usize),
    skip: bool,
}

pub(crate) fn walk(w: &mut Walker<'_>, data: &[u8], depth: u32) -> Result<(), Halt> {
    let end =
        find_end(data).ok_or_else(|| w.corrupt(Format::Zip, "no end of central directory"))?;
    if end.entries > w.limits.max_members {
        return Err(w.limit(LimitKind::Members, w.limits.max_members));
    }
    let entries = read_directory(w, data, end)?;
    for entry in &entries {
        w.check_time()?;
        let name = data.get(entry.name.0..entry.name.1).unwrap_or_default();
        w.path.push(name);
        let r = if entry.skip {
            Ok(())
        } else {
            member(w, data, entry, depth)
        };
        w.path.pop();
        r?;
    }
    Ok(())
}

/// Parses and checks the whole central directory (at most `max_members`
/// entries, as the end record said).
fn read_directory(w: &mut Walker<'_>, data: &[u8], end: End) -> Result<Vec<Entry>, Halt> {
    let bad = |w: &Walker<'_>, what: String| w.corrupt(Format::Zip, what);
    let cd = data.get(end.cd_start..end.cd_end).unwrap_or_default();
    let count = usize::try_from(end.entries).unwrap_or(usize::MAX);
    if count.saturating_mul(CENTRAL_LEN) > cd.len() {
        return Err(bad(
            w,
            format!("central directory too small for {count} entries"),
        ));
    }
    let mut entries = Vec::with_capacity(count);
    let mut pos = 0usize;
    for i in 0..count {
        if (i + 1).is_multiple_of(1024) {
            w.check_time()?;
        }
        let h = cd
            .get(pos..pos + CENTRAL_LEN)
            .filter(|h| h.starts_with(CENTRAL))
            .ok_or_else(|| bad(w, format!("central directory entry {i} is missing")))?;
        let field16 = |at| u16_at(h, at).unwrap_or_default();
        let field32 = |at| u32_at(h, at).unwrap_or_default();
        let made_by = field16(4);
        let flags = field16(8);
        let method = field16(10);
        let mut compressed = u64::from(field32(20));
        let mut uncompressed = u64::from(field32(24));
        let name_len = usize::from(field16(28));
        let extra_len = usize::from(field16(30));
        let comment_len = usize::from(field16(32));
        let external = field32(38);
        let mut local = u64::from(field32(42));
        let name_start = end.cd_start + pos + CENTRAL_LEN;
        let extra = cd
            .get(pos + CENTRAL_LEN + name_len..pos + CENTRAL_LEN + name_len + extra_len)
            .ok_or_else(|| bad(w, format!("central directory entry {i} is truncated")))?;
        // zip64 extended information: the 64-bit values of the fields
        // that are saturated, in this order.
        if let Some(mut z) = zip64_extra(extra) {
            let mut next = |field: &mut u64| {
                if *field == u64::from(u32::MAX) {
                    if let Some(v) = z.get(..8).and_then(|b| b.try_into().ok()) {
                        *field = u64::from_le_bytes(v);
                        z = z.get(8..).unwrap_or_default();
                    }
                }
            };
            next(&mut uncompressed);
            next(&mut compressed);
            next(&mut local);
        }
        pos += CENTRAL_LEN + name_len + extra_len + comment_len;
        let name = data
            .get(name_start..name_start + name_len)
            .unwrap_or_default();

        let lh_at = end
            .base
            .checked_add(local)
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(|| bad(w, format!("entry {i}: local header offset out of range")))?;
        let lh = data
            .get(lh_at..lh_at + LOCAL_LEN)
            .filter(|h| h.starts_with(LOCAL))
            .ok_or_else(|| bad(w, format!("entry {i}: no local header at {lh_at}")))?;
        let data_start = lh_at
            + LOCAL_LEN
            + usize::from(u16_at(lh, 26).unwrap_or_default())
            + usize::from(u16_at(lh, 28).unwrap_or_default());
        let data_end = usize::try_from(compressed)
            .ok()
            .and_then(|c| data_start.checked_add(c))
            .filter(|&e| e <= end.cd_start)
            .ok_or_else(|| {
                bad(
                    w,
                    format!("entry {i}: data runs past the central directory"),
                )
            })?;

        let unix_type = if made_by >> 8 == 3 {
            (external >> 16) & 0o170000
        } else {
            0
        };
        let is_dir = name.ends_with(b"/") || unix_type == 0o040000;
        let not_file = unix_type != 0 && unix_type != 0o100000;
        entries.push(Entry {
            name: (name_start, name_start + name_len),
            flags,
            method,
            uncompressed,
            data: (data_start, data_end),
            extent: (lh_at, data_end),
            skip: is_dir || not_file,
        });
    }
    check_overlaps(w, &entries)?;
    Ok(entries)
}

fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = usize::from(u16_at(extra, 2)?);
        let body = extra.get(4..4 + len)?;
        if id == 1 {
            return Some(body);
        }
        extra = extra.get(4 + len..)?;
    }
    None
}

/// Entries whose local header and data overlap another's: never written
/// by an archiver, and the core of the overlapping-entry ("better") zip
/// bomb. Corrupt, before anything is inflated.
fn check_overlaps(w: &Walker<'_>, entries: &[Entry]) -> Result<(), Halt> {
    let mut extents: Vec<(usize, usize, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.extent.0, e.extent.1, i))
        .collect();
    extents.sort_unstable();
    for pair in extents.windows(2) {
        let [(_, a_end, a), (b_start, _, b)] = pair else {
            continue;
        };
        if b_start < a_end {
            let (first, second) = ((*a).min(*b), (*a).max(*b));
            return Err(w.corrupt(
                Format::Zip,
                format!("entries {first} and {second} overlap (overlapping-entry zip bomb)"),
            ));
        }
    }
    Ok(())
}

fn member(w: &mut Walker<'_>, data: &[u8], entry: &Entry, depth: u32) -> Result<(), Halt> {
    let compressed = data.get(entry.data.0..entry.data.1).unwrap_or_default();
    if entry.flags & 1 != 0 || entry.method == 99 {
        w.unsupported(Format::Zip, "encrypted");
        return Ok(());
    }
    if entry.method == 0 {
        // Stored: the member is the slice itself.
        return w.member(compressed, Format::Zip, depth);
    }
    let input = Counted::new(compressed);
    let consumed = input.counter();
    let ratio = RatioBase {
        prior_out: 0,
        input: &|| consumed.get(),
    };
    let small = |n| DecoderMemory::SMALL.at(n);
    let out = match entry.method {
        8 => w.read_capped(
            &mut flate2::bufread::DeflateDecoder::new(input),
            Format::Zip,
            &small,
            &ratio,
        )?,
        9 => w.read_capped(
            &mut deflate64::Deflate64Decoder::with_buffer(input),
            Format::Zip,
            &small,
            &ratio,
        )?,
        12 => w.read_capped(
            &mut bzip2::bufread::BzDecoder::new(input),
            Format::Zip,
            &|n| DecoderMemory::BZIP2.at(n),
            &ratio,
        )?,
        14 => {
            let (mut reader, dict) = lzma_reader(w, input, entry)?;
            w.read_capped(
                &mut reader,
                Format::Zip,
                &|n| DecoderMemory::lzma(dict).at(n),
                &ratio,
            )?
        }
        93 => stream::decode(w, compressed, Format::Zstd)?,
        95 => stream::decode(w, compressed, Format::Xz)?,
        method => {
            w.unsupported(Format::Zip, format!("compression method {method}"));
            return Ok(());
        }
    };
    w.decoded_member(&out, Format::Zip, depth)
}

/// Zip's LZMA: a 4-byte header (version, properties length) and the
/// 5-byte LZMA properties before the data; the size from the directory,
/// or an end marker (flag bit 1).
fn lzma_reader<'a>(
    w: &Walker<'_>,
    mut input: Counted<'a>,
    entry: &Entry,
) -> Result<(lzma_rust2::LzmaReader<Counted<'a>>, u64), Halt> {
    let mut header = [0u8; 9];
    input
        .read_exact(&mut header)
        .map_err(|e| w.corrupt(Format::Zip, e))?;
    let [_, _, 5, 0, props, d0, d1, d2, d3] = header else {
        return Err(w.corrupt(Format::Zip, "invalid LZMA header"));
    };
    let dict = u32::from_le_bytes([d0, d1, d2, d3]);
    let need_kb = lzma_rust2::lzma_get_memory_usage_by_props(dict, props)
        .map_err(|e| w.corrupt(Format::Zip, e))?;
    if u64::from(need_kb) * 1024 > w.memory_free() {
        return Err(w.limit(LimitKind::Memory, w.limits.max_memory));
    }
    let size = if entry.flags & 2 != 0 {
        u64::MAX
    } else {
        entry.uncompressed
    };
    let reader = lzma_rust2::LzmaReader::new_with_props(input, size, props, dict, None)
        .map_err(|e| w.corrupt(Format::Zip, e))?;
    Ok((reader, u64::from(dict)))
}
