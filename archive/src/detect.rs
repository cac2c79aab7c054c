//! Recognising archives and compressed streams by their content.

use serde::{Deserialize, Serialize};

use crate::formats::{sevenz, zip};

/// Which files are walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveMode {
    /// Every format the crate knows, anywhere (the default).
    #[default]
    All,
    /// Only archives embedded in an executable: an ELF or MZ/PE header at
    /// offset 0 with a zip (found by its end record) or a 7z archive
    /// inside: self-extracting archives and droppers. Once inside, nested
    /// archives of every format are walked.
    Sfx,
    /// Nothing is walked: [`walk`](crate::walk) answers
    /// [`NotArchive`](crate::WalkOutcome::NotArchive).
    Off,
}

/// A container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Zip and everything built on it (jar, apk, docx, ...), including zips
    /// with data before them (self-extracting executables).
    Zip,
    /// ustar, GNU and pax tar.
    Tar,
    /// gzip, possibly of several members.
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    #[serde(rename = "7z")]
    SevenZ,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::SevenZ => "7z",
        }
    }

    /// Whether the format is a single compressed stream (transparent in
    /// member paths) rather than an archive of named members.
    pub fn is_stream(self) -> bool {
        matches!(self, Self::Gzip | Self::Bzip2 | Self::Xz | Self::Zstd)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The format of `data` if it is an archive or compressed stream that
/// [`walk`](crate::walk) would open under `mode`.
///
/// Detection is by content only: magic bytes (zip `PK\3\4`/`PK\5\6`, gzip
/// `1f 8b 08`, bzip2 `BZh`, xz `fd 37 7a 58 5a 00`, zstd `28 b5 2f fd`, 7z
/// `7z\xbc\xaf\x27\x1c`), tar by `ustar` at offset 257 or a valid header
/// checksum, and a zip end-of-central-directory record at the end of the
/// data for zips with data before them. RAR is not recognised (see the
/// crate documentation).
pub fn detect(data: &[u8], mode: ArchiveMode) -> Option<Format> {
    locate(data, mode).map(|f| f.format)
}

/// A recognised container and where it starts in the data (non-zero only
/// for a 7z archive inside an executable; a zip finds its own start from
/// its end record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub format: Format,
    pub offset: usize,
}

const SEVEN_Z: &[u8] = b"7z\xbc\xaf\x27\x1c";
const XZ: &[u8] = b"\xfd7zXZ\x00";
const ZSTD: &[u8] = b"\x28\xb5\x2f\xfd";

pub(crate) fn locate(data: &[u8], mode: ArchiveMode) -> Option<Found> {
    let at = |format| Some(Found { format, offset: 0 });
    match mode {
        ArchiveMode::Off => None,
        ArchiveMode::Sfx => sfx(data),
        ArchiveMode::All => {
            if data.starts_with(SEVEN_Z) {
                at(Format::SevenZ)
            } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
                at(Format::Zip)
            } else if is_gzip(data) {
                at(Format::Gzip)
            } else if is_bzip2(data) {
                at(Format::Bzip2)
            } else if data.starts_with(XZ) {
                at(Format::Xz)
            } else if data.starts_with(ZSTD) {
                at(Format::Zstd)
            } else if is_tar(data) {
                at(Format::Tar)
            } else if let Some(found) = sfx(data) {
                Some(found)
            } else if zip::has_end_record(data) {
                // A zip after data of any other kind (a zip appended to an
                // image, say): unzip opens it, so we do too.
                at(Format::Zip)
            } else {
                None
            }
        }
    }
}

/// A zip or 7z archive inside an ELF or MZ executable.
fn sfx(data: &[u8]) -> Option<Found> {
    if !(data.starts_with(b"\x7fELF") || data.starts_with(b"MZ")) {
        return None;
    }
    if zip::has_end_record(data) {
        return Some(Found {
            format: Format::Zip,
            offset: 0,
        });
    }
    // A 7z SFX is the stub with the archive appended: the first signature
    // followed by a valid start header is the archive.
    let mut from = 0;
    while let Some(i) = data
        .get(from..)
        .and_then(|rest| memchr::memmem::find(rest, SEVEN_Z))
    {
        let offset = from + i;
        if data.get(offset..).is_some_and(sevenz::valid_start_header) {
            return Some(Found {
                format: Format::SevenZ,
                offset,
            });
        }
        from = offset + 1;
    }
    None
}

fn is_gzip(data: &[u8]) -> bool {
    // Magic, deflate, no reserved flag bits.
    matches!(data, [0x1f, 0x8b, 0x08, flags, ..] if flags & 0xe0 == 0)
}

fn is_bzip2(data: &[u8]) -> bool {
    const BLOCK: &[u8] = b"\x31\x41\x59\x26\x53\x59";
    const END: &[u8] = b"\x17\x72\x45\x38\x50\x90";
    matches!(data, [b'B', b'Z', b'h', b'1'..=b'9', rest @ ..] if rest.starts_with(BLOCK) || rest.starts_with(END))
}

/// `ustar` magic at 257, or a header whose checksum is right (v7 tar).
pub(crate) fn is_tar(data: &[u8]) -> bool {
    let Some(header) = data.get(..512) else {
        return false;
    };
    if header.get(257..262) == Some(b"ustar") {
        return true;
    }
    tar_checksum_ok(header)
}

fn tar_checksum_ok(header: &[u8]) -> bool {
    let Some(field) = header.get(148..156) else {
        return false;
    };
    let Some(Some(stored)) = crate::formats::tar::octal_field(field) else {
        return false;
    };
    let Ok(stored) = u32::try_from(stored) else {
        return false;
    };
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    // A header of only the checksum field's spaces is no header.
    stored != 8 * u32::from(b' ') && (stored == unsigned || i64::from(stored) == i64::from(signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(
            detect(b"PK\x03\x04rest", ArchiveMode::All),
            Some(Format::Zip)
        );
        assert_eq!(
            detect(b"\x1f\x8b\x08\x00rest", ArchiveMode::All),
            Some(Format::Gzip)
        );
        assert_eq!(detect(b"\x1f\x8b\x07\x00", ArchiveMode::All), None);
        assert_eq!(
            detect(b"BZh91AY&SYrest", ArchiveMode::All),
            Some(Format::Bzip2)
        );
        assert_eq!(detect(b"BZh9 text", ArchiveMode::All), None);
        assert_eq!(
            detect(b"\xfd7zXZ\x00rest", ArchiveMode::All),
            Some(Format::Xz)
        );
        assert_eq!(
            detect(b"\x28\xb5\x2f\xfdrest", ArchiveMode::All),
            Some(Format::Zstd)
        );
        assert_eq!(detect(b"#!/bin/sh\necho hi\n", ArchiveMode::All), None);
        assert_eq!(detect(b"", ArchiveMode::All), None);
        assert_eq!(detect(b"PK\x03\x04rest", ArchiveMode::Off), None);
        assert_eq!(detect(b"PK\x03\x04rest", ArchiveMode::Sfx), None);
    }

    #[test]
    fn zeros_are_not_tar() {
        assert!(!is_tar(&[0u8; 1024]));
        assert!(!is_tar(&[b' '; 1024]));
    }

    #[test]
    fn format_names() {
        assert_eq!(Format::SevenZ.as_str(), "7z");
        assert_eq!(Format::Gzip.to_string(), "gzip");
        assert!(Format::Zstd.is_stream());
        assert!(!Format::Tar.is_stream());
    }
}
