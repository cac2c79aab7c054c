//! Tar (ustar, GNU, pax) through the `tar` crate. Members are slices of
//! the tar itself (no copy); GNU sparse members are read through the
//! crate, which fills their holes.

use std::io::{Cursor, Read};

use crate::detect::Format;
use crate::limits::LimitKind;
use crate::walk::{DecoderMemory, Halt, RatioBase, Walker};

/// GNU long names and links and pax records are read into memory by the
/// `tar` crate; a larger one ends the walk (no name is that long).
const MAX_EXTENSION: u64 = 1024 * 1024;

pub(crate) fn walk(w: &mut Walker<'_>, data: &[u8], depth: u32) -> Result<(), Halt> {
    prescan(w, data)?;
    let mut archive = tar::Archive::new(Cursor::new(data));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| w.corrupt(Format::Tar, e))?;
    let mut count: u64 = 0;
    for entry in entries {
        w.check_time()?;
        let mut entry = entry.map_err(|e| w.corrupt(Format::Tar, e))?;
        count += 1;
        if count > w.limits.max_members {
            return Err(w.limit(LimitKind::Members, w.limits.max_members));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
            continue;
        }
        let name = entry.path_bytes().into_owned();
        w.path.push(&name);
        let r = if kind.is_gnu_sparse() {
            sparse(w, &mut entry, depth)
        } else {
            let start = entry.raw_file_position();
            let size = entry.size();
            let slice = usize::try_from(start)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(s, n)| data.get(s..s.checked_add(n)?));
            match slice {
                Some(member) => w.member(member, Format::Tar, depth),
                None => Err(w.corrupt(Format::Tar, "member data runs past the end")),
            }
        };
        w.path.pop();
        r?;
    }
    Ok(())
}

/// Bounds what the `tar` crate will read into memory before handing out
/// an entry (long names, long links and pax records), walking the headers
/// on our own first: the crate reads those records whole.
fn prescan(w: &Walker<'_>, data: &[u8]) -> Result<(), Halt> {
    // Extension headers count too: at most a few per member.
    let max_headers = w.limits.max_members.saturating_mul(4);
    let mut pos = 0usize;
    let mut headers: u64 = 0;
    let mut pax_size: Option<u64> = None;
    while let Some(h) = data.get(pos..pos + BLOCK) {
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        headers += 1;
        if headers > max_headers {
            return Err(w.limit(LimitKind::Members, w.limits.max_members));
        }
        if headers.is_multiple_of(1024) {
            w.check_time()?;
        }
        let Some(mut size) = header_size(h) else {
            return Ok(()); // the walk reports the bad header
        };
        let kind = h.get(156).copied().unwrap_or(0);
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if extension && size > MAX_EXTENSION {
            return Err(w.limit(LimitKind::Memory, w.limits.max_memory));
        }
        if !extension {
            if let Some(s) = pax_size.take() {
                size = s;
            }
        }
        pos += BLOCK;
        if kind == b'x' {
            let len = usize::try_from(size).unwrap_or(usize::MAX);
            pax_size = data
                .get(pos..pos.saturating_add(len))
                .and_then(pax_record_size);
        }
        if kind == b'S' && h.get(482) == Some(&1) {
            // GNU sparse extension headers follow the header.
            while let Some(ext) = data.get(pos..pos + BLOCK) {
                pos += BLOCK;
                if ext.get(504) != Some(&1) {
                    break;
                }
            }
        }
        let padded = size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
        pos = usize::try_from(padded)
            .ok()
            .and_then(|p| pos.checked_add(p))
            .unwrap_or(usize::MAX);
    }
    Ok(())
}

const BLOCK: usize = 512;

/// A header's size field: octal, or GNU base-256.
fn header_size(h: &[u8]) -> Option<u64> {
    let field = h.get(124..136)?;
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { b };
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    Some(octal_field(field)?.unwrap_or(0))
}

/// A tar octal field: leading spaces, then digits up to the first other
/// byte. `Some(None)` when it has no digits; `None` when it overflows.
pub(crate) fn octal_field(field: &[u8]) -> Option<Option<u64>> {
    let mut value: u64 = 0;
    let mut digits = false;
    for d in field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
    {
        digits = true;
        value = value.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(digits.then_some(value))
}

/// The `size` record of a pax extended header.
fn pax_record_size(records: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(records);
    text.split('\n').find_map(|record| {
        let (_, kv) = record.split_once(' ')?;
        let value = kv.strip_prefix("size=")?;
        value.trim().parse().ok()
    })
}

/// A GNU sparse member: its holes are zeros the crate produces, so it can
/// be far larger than what it takes in the tar (ratio-checked against
/// that).
fn sparse<R: Read>(
    w: &mut Walker<'_>,
    entry: &mut tar::Entry<'_, R>,
    depth: u32,
) -> Result<(), Halt> {
    let stored = entry.header().entry_size().unwrap_or(0);
    let ratio = RatioBase {
        prior_out: 0,
        input: &|| stored,
    };
    let out = w.read_capped(entry, Format::Tar, &|n| DecoderMemory::SMALL.at(n), &ratio)?;
    w.decoded_member(&out, Format::Tar, depth)
}
