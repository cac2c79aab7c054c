//! Single compressed streams: gzip, bzip2, xz, zstd. Their content is one
//! member, with the path of the stream itself.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use crate::detect::Format;
use crate::walk::{Counted, DecoderMemory, Halt, RatioBase, Walker};

pub(crate) fn walk(
    w: &mut Walker<'_>,
    data: &[u8],
    format: Format,
    depth: u32,
) -> Result<(), Halt> {
    let out = decode(w, data, format)?;
    w.decoded_member(&out, format, depth)
}

/// Decodes a whole stream within the walk's limits.
pub(crate) fn decode(w: &mut Walker<'_>, data: &[u8], format: Format) -> Result<Vec<u8>, Halt> {
    let input = Counted::new(data);
    let consumed = input.counter();
    let ratio = RatioBase {
        prior_out: 0,
        input: &|| consumed.get(),
    };
    match format {
        Format::Gzip => {
            let mut r = LenientMultiGz::new(input);
            w.read_capped(&mut r, format, &|n| DecoderMemory::SMALL.at(n), &ratio)
        }
        Format::Bzip2 => {
            let mut r = bzip2::bufread::MultiBzDecoder::new(input);
            w.read_capped(&mut r, format, &|n| DecoderMemory::BZIP2.at(n), &ratio)
        }
        Format::Xz => {
            let dict = xz_dict(data).ok_or_else(|| w.corrupt(format, "invalid xz block header"))?;
            let mut r = xz_reader(w, input, dict)?;
            w.read_capped(&mut r, format, &|n| DecoderMemory::lzma(dict).at(n), &ratio)
        }
        Format::Zstd => {
            let window = Rc::new(Cell::new(0));
            let max_window = w.memory_free();
            let mut r = LenientMultiZstd {
                input: Some(input),
                frame: None,
                window: Rc::clone(&window),
                max_window,
            };
            // The window is only known frame by frame: charge the largest
            // met so far, and refuse frames past what is free.
            let memory = |n| DecoderMemory::window(window.get()).at(n);
            w.read_capped(&mut r, format, &memory, &ratio)
        }
        Format::Zip | Format::Tar | Format::SevenZ => Err(w.corrupt(format, "not a stream")),
    }
}

/// An xz reader whose LZMA2 dictionaries may not exceed `dict` (the first
/// block's, which the memory accounting charges).
pub(crate) fn xz_reader<'a>(
    w: &Walker<'_>,
    input: Counted<'a>,
    dict: u64,
) -> Result<lzma_rust2::XzReader<Counted<'a>>, Halt> {
    let dict32 = u32::try_from(dict).unwrap_or(u32::MAX);
    let need_kb = lzma_rust2::lzma2_get_memory_usage(dict32);
    if u64::from(need_kb) * 1024 > w.memory_free() {
        return Err(w.limit(crate::LimitKind::Memory, w.limits.max_memory));
    }
    Ok(lzma_rust2::XzReader::new_mem_limit(input, true, need_kb))
}

/// The LZMA2 dictionary size of the first block of an xz stream (0 for a
/// stream without blocks), or `None` if the headers are invalid.
pub(crate) fn xz_dict(data: &[u8]) -> Option<u64> {
    let header = data.get(12..)?;
    let size_byte = *header.first()?;
    if size_byte == 0 {
        return Some(0); // the index: no blocks
    }
    let size = (usize::from(size_byte) + 1) * 4;
    let block = header.get(..size)?;
    let flags = *block.get(1)?;
    let filters = usize::from(flags & 3) + 1;
    let mut pos = 2;
    let vli = |pos: &mut usize| -> Option<u64> {
        let mut value: u64 = 0;
        for i in 0..9 {
            let b = *block.get(*pos)?;
            *pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    if flags & 0x40 != 0 {
        vli(&mut pos)?;
    }
    if flags & 0x80 != 0 {
        vli(&mut pos)?;
    }
    for _ in 0..filters {
        let id = vli(&mut pos)?;
        let props_len = usize::try_from(vli(&mut pos)?).ok()?;
        let props = block.get(pos..pos.checked_add(props_len)?)?;
        pos += props_len;
        if id == 0x21 {
            let bits = u32::from(*props.first()?);
            return match bits {
                0..=39 => Some(u64::from(2 | (bits & 1)) << (bits / 2 + 11)),
                40 => Some(u64::from(u32::MAX)),
                _ => None,
            };
        }
    }
    None
}

/// gzip members one after another, like `MultiGzDecoder`, but data after
/// the last member that is not another member is ignored (as gzip(1)
/// does, with a warning) rather than an error, so that a byte appended to
/// a `.tar.gz` does not hide its content.
struct LenientMultiGz<'a> {
    decoder: Option<flate2::bufread::GzDecoder<Counted<'a>>>,
}

impl<'a> LenientMultiGz<'a> {
    fn new(input: Counted<'a>) -> Self {
        Self {
            decoder: Some(flate2::bufread::GzDecoder::new(input)),
        }
    }
}

impl Read for LenientMultiGz<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let Some(decoder) = self.decoder.take() else {
                return Ok(0);
            };
            let mut rest = decoder.into_inner();
            if rest.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
                self.decoder = Some(flate2::bufread::GzDecoder::new(rest));
            }
        }
    }
}

/// zstd frames one after another, skippable frames skipped, trailing data
/// that is no frame ignored. Each frame's window may not exceed
/// `max_window`; the largest so far is published in `window`.
struct LenientMultiZstd<'a> {
    input: Option<Counted<'a>>,
    frame: Option<ruzstd::decoding::StreamingDecoder<Counted<'a>, ruzstd::decoding::FrameDecoder>>,
    window: Rc<Cell<u64>>,
    max_window: u64,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Read for LenientMultiZstd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(frame) = self.frame.as_mut() {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if let Some(frame) = self.frame.take() {
                    self.input = Some(frame.into_inner());
                }
            }
            let Some(mut input) = self.input.take() else {
                return Ok(0);
            };
            let rest = input.rest();
            match rest.get(..4) {
                Some(m) if m == ZSTD_MAGIC => {
                    if let Some(window) = zstd_window(rest) {
                        self.window.set(self.window.get().max(window));
                    }
                    let frame = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                        input,
                        self.max_window,
                    )
                    .map_err(|e| {
                        let kind = if matches!(
                            e,
                            ruzstd::decoding::errors::FrameDecoderError::WindowSizeTooBig { .. }
                        ) {
                            io::ErrorKind::OutOfMemory
                        } else {
                            io::ErrorKind::InvalidData
                        };
                        io::Error::new(kind, e.to_string())
                    })?;
                    self.frame = Some(frame);
                }
                Some([0x50..=0x5f, 0x2a, 0x4d, 0x18]) => {
                    let len = rest
                        .get(4..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_le_bytes)
                        .ok_or_else(|| {
                            io::Error::new(io::ErrorKind::UnexpectedEof, "skippable frame")
                        })?;
                    let skip = 8 + len as usize;
                    if skip > rest.len() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "skippable frame",
                        ));
                    }
                    input.skip(skip);
                    self.input = Some(input);
                }
                _ => return Ok(0),
            }
        }
    }
}

/// The window size a zstd frame header declares.
fn zstd_window(frame: &[u8]) -> Option<u64> {
    let descriptor = *frame.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let wd = *frame.get(5)?;
        let exponent = u32::from(wd >> 3);
        let base = 1u64 << (10 + exponent);
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    let dict_id_len = match descriptor & 3 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let fcs_len = match descriptor >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let start = 5 + dict_id_len;
    let field = frame.get(start..start + fcs_len)?;
    let mut value = [0u8; 8];
    value.get_mut(..fcs_len)?.copy_from_slice(field);
    let fcs = u64::from_le_bytes(value);
    Some(if fcs_len == 2 { fcs + 256 } else { fcs })
}
