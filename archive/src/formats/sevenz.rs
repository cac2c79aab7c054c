//! 7z through `sevenz-rust2`, decoding only, one block (folder) at a time,
//! with its dictionary/model memory limit set to what is free.
//!
//! Before the crate reads the header, its (decoded) size is taken from
//! the start header and, for an encoded header, from the streams info in
//! front of it: the crate allocates its tables from counts bounded by the
//! header's length, so the header's size times [`HEADER_FACTOR`] is
//! charged against `max_memory` first.

use std::io::Cursor;

use sevenz_rust2::{Archive, BlockDecoder, Error, Password};

use crate::detect::Format;
use crate::limits::LimitKind;
use crate::walk::{DecoderMemory, Halt, RatioBase, Walker};

const SIGNATURE: &[u8] = b"7z\xbc\xaf\x27\x1c";
const START_HEADER_LEN: usize = 32;

/// Bytes of the crate's tables per byte of header, at most: one file
/// entry (`ArchiveEntry`, about 130 bytes with its name) per header byte.
const HEADER_FACTOR: u64 = 160;

/// Whether `data` starts with a 7z signature and a start header whose
/// CRC is right.
pub(crate) fn valid_start_header(data: &[u8]) -> bool {
    let Some(start) = data.get(..START_HEADER_LEN) else {
        return false;
    };
    if !start.starts_with(SIGNATURE) {
        return false;
    }
    let (Some(crc), Some(rest)) = (start.get(8..12), start.get(12..)) else {
        return false;
    };
    let mut c = flate2::Crc::new();
    c.update(rest);
    crc == c.sum().to_le_bytes() && rest.iter().any(|&b| b != 0)
}

pub(crate) fn walk(w: &mut Walker<'_>, data: &[u8], depth: u32) -> Result<(), Halt> {
    let header = header_size(data).ok_or_else(|| w.corrupt(Format::SevenZ, "invalid header"))?;
    let tables = header.saturating_mul(HEADER_FACTOR);
    w.charged(tables, |w| walk_archive(w, data, depth))
}

fn walk_archive(w: &mut Walker<'_>, data: &[u8], depth: u32) -> Result<(), Halt> {
    let mut source = Cursor::new(data);
    let password = Password::empty();
    let archive = Archive::read_with_memory_limit(&mut source, &password, free_kb(w))
        .map_err(|e| error(w, e))?;
    if archive.files.len() as u64 > w.limits.max_members {
        return Err(w.limit(LimitKind::Members, w.limits.max_members));
    }
    let pack_sizes = archive.pack_sizes();
    let first_pack = archive.stream_map.block_first_pack_stream_index();
    for (index, block) in archive.blocks.iter().enumerate() {
        w.check_time()?;
        let packs = first_pack.get(index).copied().unwrap_or(0)
            ..first_pack
                .get(index + 1)
                .copied()
                .unwrap_or(pack_sizes.len());
        let packed: u64 = pack_sizes.get(packs).unwrap_or_default().iter().sum();
        // A solid block's decoder keeps its window across its members:
        // charge it for the whole block's output.
        let window = block_memory(block).at(block.get_unpack_size());
        let decoder = BlockDecoder::new_with_memory_limit(
            1,
            free_kb(w),
            index,
            &archive,
            &password,
            &mut source,
        );
        w.charged(window, |w| walk_block(w, decoder, packed, depth))?;
    }
    Ok(())
}

fn walk_block(
    w: &mut Walker<'_>,
    decoder: BlockDecoder<'_, Cursor<&[u8]>>,
    packed: u64,
    depth: u32,
) -> Result<(), Halt> {
    let mut halt: Option<Halt> = None;
    let mut block_out: u64 = 0;
    let result = decoder.for_each_entries(&mut |entry, reader| {
        if entry.is_directory() || !entry.has_stream || entry.size() == 0 {
            return Ok(true);
        }
        w.path.push(entry.name().as_bytes());
        let r = (|| {
            if entry.size() > w.limits.max_member_bytes {
                return Err(w.limit(LimitKind::MemberBytes, w.limits.max_member_bytes));
            }
            let ratio = RatioBase {
                prior_out: block_out,
                input: &|| packed,
            };
            let out = w.read_capped(reader, Format::SevenZ, &|_| 0, &ratio)?;
            block_out = block_out.saturating_add(out.len() as u64);
            w.decoded_member(&out, Format::SevenZ, depth)
        })();
        if r.is_err() {
            halt = r.err();
            return Ok(false);
        }
        w.path.pop();
        Ok(true)
    });
    if let Some(h) = halt {
        w.path.pop();
        return Err(h);
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unsupported(&e) => {
            w.unsupported(Format::SevenZ, e.to_string());
            Ok(())
        }
        Err(e) => Err(error(w, e)),
    }
}

fn is_unsupported(e: &Error) -> bool {
    matches!(
        e,
        Error::UnsupportedCompressionMethod(_)
            | Error::PasswordRequired
            | Error::MaybeBadPassword(_)
            | Error::Unsupported(_)
            | Error::ExternalUnsupported
    )
}

fn error(w: &Walker<'_>, e: Error) -> Halt {
    match e {
        Error::MaxMemLimited { .. } => w.limit(LimitKind::Memory, w.limits.max_memory),
        Error::Io(ref io, _) if io.kind() == std::io::ErrorKind::OutOfMemory => {
            w.limit(LimitKind::Memory, w.limits.max_memory)
        }
        e => w.corrupt(Format::SevenZ, e),
    }
}

fn free_kb(w: &Walker<'_>) -> usize {
    usize::try_from(w.memory_free() / 1024).unwrap_or(usize::MAX)
}

/// What a block's decoders hold: the largest LZMA/LZMA2 dictionary (grown
/// with the output), and PPMd's model or bzip2's tables (at once).
fn block_memory(block: &sevenz_rust2::Block) -> DecoderMemory {
    let mut dict = 0u64;
    let mut fixed = DecoderMemory::SMALL.fixed;
    for c in &block.coders {
        let props = c.properties();
        let u32_at = |at: usize| {
            props
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
        };
        match c.encoder_method_id() {
            // LZMA: lc/lp/pb, then the dictionary size.
            [3, 1, 1] => dict = dict.max(u32_at(1)),
            // LZMA2: the dictionary size byte.
            [0x21] => {
                dict = dict.max(props.first().map_or(0, |&b| match b {
                    0..=39 => u64::from(2 | (u32::from(b) & 1)) << (u32::from(b) / 2 + 11),
                    _ => u64::from(u32::MAX),
                }))
            }
            // PPMd: order, then the model's size, allocated at once.
            [3, 4, 1] => fixed = fixed.saturating_add(u32_at(1)),
            [4, 2, 2] => fixed = fixed.saturating_add(DecoderMemory::BZIP2.fixed),
            _ => {}
        }
    }
    DecoderMemory {
        fixed,
        ..DecoderMemory::lzma(dict)
    }
}

/// The decoded size of the header: the next header's size, or for an
/// encoded header the largest unpack size its streams info declares.
fn header_size(data: &[u8]) -> Option<u64> {
    let start = data.get(..START_HEADER_LEN)?;
    let offset = u64::from_le_bytes(start.get(12..20)?.try_into().ok()?);
    let size = u64::from_le_bytes(start.get(20..28)?.try_into().ok()?);
    let at = usize::try_from(offset)
        .ok()?
        .checked_add(START_HEADER_LEN)?;
    let raw = data.get(at..at.checked_add(usize::try_from(size).ok()?)?)?;
    match raw.first()? {
        0x01 => Some(size),
        0x17 => {
            let mut r = HeaderReader {
                rest: raw.get(1..)?,
            };
            r.max_unpack_size()
        }
        _ => None,
    }
}

struct HeaderReader<'a> {
    rest: &'a [u8],
}

impl HeaderReader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.rest = self.rest.get(usize::try_from(n).ok()?..)?;
        Some(())
    }

    /// 7z's variable-length number.
    fn number(&mut self) -> Option<u64> {
        let first = self.byte()?;
        let mut mask = 0x80u8;
        let mut value: u64 = 0;
        for i in 0..8 {
            if first & mask == 0 {
                let high = u64::from(first & mask.wrapping_sub(1));
                return Some(value | high.checked_shl(8 * i)?);
            }
            value |= u64::from(self.byte()?) << (8 * i);
            mask >>= 1;
        }
        Some(value)
    }

    /// A count, which cannot exceed the bytes left (each item takes one).
    fn count(&mut self) -> Option<u64> {
        self.number()
            .filter(|&n| n <= self.rest.len() as u64 * 8 + 8)
    }

    fn digests(&mut self, n: u64) -> Option<()> {
        let all = self.byte()?;
        let defined = if all != 0 {
            n
        } else {
            let mut d = 0;
            for i in 0..n {
                if i % 8 == 0 {
                    d += u64::from(self.byte()?.count_ones());
                }
            }
            d
        };
        self.skip(defined.checked_mul(4)?)
    }

    /// Streams info (pack info, unpack info): the largest unpack size.
    fn max_unpack_size(&mut self) -> Option<u64> {
        let mut max = None;
        loop {
            match self.byte()? {
                0x00 => return max,
                0x06 => {
                    self.number()?; // pack position
                    let n = self.count()?;
                    loop {
                        match self.byte()? {
                            0x00 => break,
                            0x09 => {
                                for _ in 0..n {
                                    self.number()?;
                                }
                            }
                            0x0a => self.digests(n)?,
                            _ => return None,
                        }
                    }
                }
                0x07 => {
                    if self.byte()? != 0x0b {
                        return None;
                    }
                    let folders = self.count()?;
                    if self.byte()? != 0 {
                        return None; // external
                    }
                    let mut outputs: u64 = 0;
                    for _ in 0..folders {
                        outputs = outputs.checked_add(self.folder_outputs()?)?;
                    }
                    if self.byte()? != 0x0c {
                        return None;
                    }
                    for _ in 0..outputs {
                        let size = self.number()?;
                        max = Some(max.map_or(size, |m: u64| m.max(size)));
                    }
                    loop {
                        match self.byte()? {
                            0x00 => break,
                            0x0a => self.digests(folders)?,
                            _ => return None,
                        }
                    }
                }
                _ => return max,
            }
        }
    }

    /// Parses a folder; the number of its coders' output streams.
    fn folder_outputs(&mut self) -> Option<u64> {
        let coders = self.count()?;
        let (mut inputs, mut outputs) = (0u64, 0u64);
        for _ in 0..coders {
            let flags = self.byte()?;
            self.skip(u64::from(flags & 0x0f))?;
            if flags & 0x10 != 0 {
                inputs = inputs.checked_add(self.count()?)?;
                outputs = outputs.checked_add(self.count()?)?;
            } else {
                inputs += 1;
                outputs += 1;
            }
            if flags & 0x20 != 0 {
                let n = self.count()?;
                self.skip(n)?;
            }
        }
        let bind_pairs = outputs.checked_sub(1)?;
        for _ in 0..bind_pairs {
            self.number()?;
            self.number()?;
        }
        let packed = inputs.checked_sub(bind_pairs)?;
        if packed > 1 {
            for _ in 0..packed {
                self.number()?;
            }
        }
        Some(outputs)
    }
}
