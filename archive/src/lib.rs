//! A bounded, in-memory walker of archives and compressed streams, for
//! scanning their members (portcullis runs its YARA rules on each).
//!
//! [`walk`] takes the bytes of a file, already in memory, recognises an
//! archive or compressed stream by its content ([`detect()`]), and hands
//! every member's decompressed bytes to a visitor, walking members that
//! are containers in turn, in any nesting (a zip in a tar in a gzip in a
//! 7z...). Nothing is written to disk. The input is hostile: every limit
//! is hard, and no header's declared size or count is trusted.
//!
//! # Formats
//!
//! | format | recognised by | read with |
//! |---|---|---|
//! | zip (jar, apk, docx, ...) | `PK\3\4`/`PK\5\6` at 0, or an end-of-central-directory record at the end (zips after an ELF/PE stub or other data) | our own central-directory parser; stored, deflate (`flate2`), deflate64 (`deflate64`), bzip2, LZMA and xz (`lzma-rust2`), zstd (`ruzstd`) |
//! | tar (ustar, GNU, pax) | `ustar` at 257 or a valid header checksum | `tar` (members are slices of the tar, not copies) |
//! | gzip, several members too | `1f 8b 08` | `flate2` (miniz_oxide) |
//! | bzip2, several streams too | `BZh1`..`BZh9` and a block magic | `bzip2` on `libbz2-rs-sys` (pure Rust) |
//! | xz | `fd 37 7a 58 5a 00` | `lzma-rust2` |
//! | zstd, several frames too | `28 b5 2f fd` | `ruzstd` |
//! | 7z | `7z\xbc\xaf\x27\x1c` at 0, or inside an ELF/PE with a valid start header | `sevenz-rust2` (LZMA, LZMA2, PPMd, bzip2, deflate, BCJ filters) |
//!
//! Every codec is pure Rust: no C library is built.
//!
//! Encrypted members, and members in a method not listed (zip PPMd, 7z
//! zstd/brotli/lz4), are skipped and the walk goes on; it then ends in
//! [`WalkOutcome::Unsupported`] naming the first. Trailing data after the
//! last gzip member or zstd frame is ignored, as gzip(1) does. Members
//! with no data (empty files, directories, links, devices) are not
//! visited.
//!
//! **RAR is not walked.** `unrar` binds RARLAB's unRAR source, whose
//! licence is not open source; `rar` (0.4) extracts only stored RAR5
//! members; `rars` is pure Rust and Apache-2.0 but months old and
//! self-described as "kinda works": not a parser to expose to hostile
//! input on the hot path yet. A RAR file is [`WalkOutcome::NotArchive`]
//! (the caller still scans its raw bytes).
//!
//! # Member paths
//!
//! A member's [`MemberPath`] is the names of the archive members leading
//! to it joined with `!`: `dir/inner.zip!evil.sh`. The caller prepends
//! the outer file's name. Compression layers add no component, but the
//! content of a stream is a member of its own, visited with the stream's
//! path: for `outer.tar.gz` the visitor sees the decompressed tar (empty
//! path, [`Format::Gzip`]), then `dir/inner.zip` ([`Format::Tar`]), then
//! `dir/inner.zip!evil.sh` ([`Format::Zip`]). Names are lossy UTF-8 with
//! control characters removed; `../../etc/passwd` stays a name, never a
//! path on disk.
//!
//! # Limits
//!
//! [`Limits`] (defaults in parentheses), each reported as a
//! [`LimitKind`] named after its field:
//!
//! - `max_depth` (8): nesting levels; each archive and each compression
//!   layer is one (`x.tar.gz` is two).
//! - `max_members` (10 000): entries of one archive. A zip's count is
//!   taken from its end record (zip64 too) before a single entry is
//!   parsed, so a million-entry zip is refused at once.
//! - `max_total_bytes` (512 MiB): bytes handed to the visitor over the
//!   walk.
//! - `max_member_bytes` (32 MiB): decompressed bytes of one member or
//!   stream. Reads stop one chunk past it: what exceeds a limit is never
//!   visited in part.
//! - `max_ratio` (200): output over input consumed, checked as a member
//!   inflates once it is past 1 MiB (for a 7z solid block, over the
//!   block's output and packed size).
//! - `max_memory` (48 MiB): what the walk holds at once, see below.
//! - `timeout` (10 s): the whole walk, the visitor's time included,
//!   checked between 64 KiB chunks of output, between members, and every
//!   1 024 headers of a zip directory or tar.
//!
//! Zip entries whose data overlap another's (the "better zip bomb", many
//! central directory entries over one deflate kernel) or run into the
//! central directory end the walk as [`WalkOutcome::Corrupt`] before
//! anything is inflated: archivers never write them.
//!
//! # Memory
//!
//! The caller's input is not counted or copied; stored zip members and
//! tar members are slices of their container. Everything the walk
//! allocates that can grow with the input is charged against
//! `max_memory` before or while it grows, and the walk ends with
//! [`LimitKind::Memory`] past it:
//!
//! - the decompressed buffer of the member being inflated, and those of
//!   every container it is nested in (held while they are walked);
//! - the decoder's state: 256 KiB for deflate and friends, 3.7 MiB for
//!   bzip2, and for LZMA, xz and zstd the dictionary or window as it
//!   grows with the output, capped by its declared size (`lzma-rust2`
//!   grows its window by doubling, so up to twice the output is charged;
//!   ruzstd touches only what it writes). A dictionary larger than what is
//!   free is refused before decoding. A 7z block's dictionary (for the
//!   block's declared size) and PPMd model are charged for the whole block:
//!   a solid block keeps them across its members;
//! - a 7z header: its decoded size (read from the start header and the
//!   encoded header's streams info before `sevenz-rust2` is called) times
//!   160, the most its tables take per header byte. With the defaults a
//!   7z whose header is past about 300 KiB (some 3 000 files) ends with
//!   `Memory`;
//! - tar long names and pax records (read whole by the `tar` crate) are
//!   refused past 1 MiB; a zip's central directory is parsed in place.
//!
//! With the defaults the extra resident memory of a walk stays under
//! 64 MiB whatever the input (`tests/bombs.rs` measures it).
//!
//! # Panics
//!
//! None on any input: no `unwrap`, `expect` or slice indexing outside
//! tests, and the codec crates were fuzzed here through the walk
//! (`tests/props.rs`: arbitrary bytes behind every magic, and random
//! nestings truncated and bit-flipped, 30 000 cases each) without a
//! panic, so no `catch_unwind` is used.
//!
//! # Why our own zip parser
//!
//! The `zip` crate (9.x) keys entries by name, so a second entry of the
//! same name hides the first (a way to smuggle a member past a scanner),
//! allocates every entry before the first can be read, and falls back to
//! earlier end records when one fails. Reading the central directory in
//! place lets the walk check the count, every local header and the
//! overlaps first, and visit duplicate names each. The `zip` crate
//! writes the tests' archives.

#![cfg_attr(
    not(test),
    deny(clippy::expect_used, clippy::indexing_slicing, clippy::panic)
)]

mod detect;
mod formats;
mod limits;
mod path;
mod walk;

pub use detect::{detect, ArchiveMode, Format};
pub use limits::{LimitHit, LimitKind, Limits, LimitsError};
pub use path::MemberPath;
pub use walk::{walk, Flow, Member, WalkOutcome};
