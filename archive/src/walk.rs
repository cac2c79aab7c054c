//! The walk: recursion through containers, the visitor, and the
//! accounting every limit is checked against.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;
use std::time::Instant;

use crate::detect::{self, ArchiveMode, Format, Found};
use crate::formats;
use crate::limits::{LimitHit, LimitKind, Limits};
use crate::path::MemberPath;

/// The visitor's answer for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the walk (into this member too, if it is a container).
    Continue,
    /// End the walk at once, e.g. because the member matched a rule.
    Stop,
}

/// A member handed to the visitor: a file of an archive, or the content of
/// a compressed stream.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    /// Where it is (see [`MemberPath`]). The content of a compressed
    /// stream has the path of the stream itself: the empty path for a
    /// top-level `x.gz`, `a.zip!x.gz` for a `x.gz` in `a.zip`.
    pub path: &'a MemberPath,
    /// The member's decompressed bytes.
    pub data: &'a [u8],
    /// The nesting level of the container it came from: 1 for the members
    /// of the outer file, 2 for the tar inside a `.tar.gz`.
    pub depth: u32,
    /// The format of the container it came from.
    pub format: Format,
}

impl std::fmt::Debug for Member<'_> {
    /// The data's length, not its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("path", &self.path.to_string())
            .field("len", &self.data.len())
            .field("depth", &self.depth)
            .field("format", &self.format)
            .finish()
    }
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkOutcome {
    /// The data is no archive or compressed stream (under the mode); the
    /// visitor was not called.
    NotArchive,
    /// Every member was visited. `members` counts the visitor's calls,
    /// `bytes` the bytes handed to it.
    Complete { members: u64, bytes: u64 },
    /// The visitor answered [`Flow::Stop`].
    Stopped { members: u64, bytes: u64 },
    /// A limit was reached and the walk abandoned there; the members
    /// visited before stay visited.
    Limit(LimitHit),
    /// The container at `member` (or the member itself) is truncated or
    /// invalid; the walk ended there, and the members visited before stay
    /// visited. Zip entries whose data overlap (the "better zip bomb"
    /// construction) end here too, before anything is inflated.
    Corrupt {
        member: MemberPath,
        format: Format,
        error: String,
    },
    /// The walk went through, but at least one member could not be read:
    /// encrypted, or compressed with a method this crate does not decode
    /// (zip PPMd, 7z zstd/brotli, ...). `member` is the first such; the
    /// others were visited (`members`, `bytes`).
    Unsupported {
        member: MemberPath,
        format: Format,
        reason: String,
        members: u64,
        bytes: u64,
    },
}

/// Walks `data`: if it is an archive or compressed stream (see
/// [`detect`](crate::detect())), every member is decompressed in memory and
/// handed to `visit`, and every member that is itself a container is then
/// walked in turn, all within `limits` (which should have passed
/// [`Limits::validate`]).
///
/// The top-level data is not visited itself (the caller has it).
pub fn walk(
    data: &[u8],
    mode: ArchiveMode,
    limits: &Limits,
    visit: &mut dyn FnMut(&Member<'_>) -> Flow,
) -> WalkOutcome {
    let Some(found) = detect::locate(data, mode) else {
        return WalkOutcome::NotArchive;
    };
    let mut walker = Walker {
        limits,
        deadline: Instant::now().checked_add(limits.timeout),
        visit,
        path: MemberPath::new(),
        members: 0,
        bytes: 0,
        held: 0,
        unsupported: None,
    };
    match walker.open(data, found, 1) {
        Ok(()) => match walker.unsupported {
            Some((member, format, reason)) => WalkOutcome::Unsupported {
                member,
                format,
                reason,
                members: walker.members,
                bytes: walker.bytes,
            },
            None => WalkOutcome::Complete {
                members: walker.members,
                bytes: walker.bytes,
            },
        },
        Err(Halt::Stop) => WalkOutcome::Stopped {
            members: walker.members,
            bytes: walker.bytes,
        },
        Err(Halt::Limit(hit)) => WalkOutcome::Limit(hit),
        Err(Halt::Corrupt {
            member,
            format,
            error,
        }) => WalkOutcome::Corrupt {
            member,
            format,
            error,
        },
    }
}

/// Why the walk ends early.
#[derive(Debug)]
pub(crate) enum Halt {
    Stop,
    Limit(LimitHit),
    Corrupt {
        member: MemberPath,
        format: Format,
        error: String,
    },
}

/// Output is read in chunks of this size; limits and the deadline are
/// checked between chunks.
pub(crate) const CHUNK: u64 = 64 * 1024;

/// Ratio checks start once a member is past this much output.
const RATIO_FLOOR: u64 = 1024 * 1024;

pub(crate) struct Walker<'w> {
    pub limits: &'w Limits,
    deadline: Option<Instant>,
    visit: &'w mut dyn FnMut(&Member<'_>) -> Flow,
    /// The path of the member being read or walked.
    pub path: MemberPath,
    members: u64,
    bytes: u64,
    /// Bytes charged against `max_memory` now.
    held: u64,
    unsupported: Option<(MemberPath, Format, String)>,
}

/// What a decoder holds besides its output, as a function of the output
/// so far (what [`Walker::read_capped`] is given): `fixed` at once, plus a
/// window that grows with the output up to `window` bytes (LZMA
/// dictionaries, zstd windows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecoderMemory {
    pub fixed: u64,
    pub window: u64,
    /// The window is grown by doubling and zero-filled (`lzma-rust2`):
    /// it may hold twice the output.
    pub doubling: bool,
}

impl DecoderMemory {
    pub const SMALL: Self = Self {
        fixed: 256 * 1024,
        window: 0,
        doubling: false,
    };

    /// libbzip2's decoder at block size 9 (the tt array and tables).
    pub const BZIP2: Self = Self {
        fixed: 3_700_000,
        window: 0,
        doubling: false,
    };

    /// A window that holds what was written, up to `window` (ruzstd
    /// reserves it at once but touches only what it writes).
    pub fn window(window: u64) -> Self {
        Self {
            window,
            ..Self::SMALL
        }
    }

    /// An `lzma-rust2` dictionary of `dict` bytes.
    pub fn lzma(dict: u64) -> Self {
        Self {
            window: dict,
            doubling: true,
            ..Self::SMALL
        }
    }

    /// What the decoder holds after `out` bytes of output.
    pub fn at(self, out: u64) -> u64 {
        let grown = if self.doubling {
            out.saturating_mul(2).saturating_add(64 * 1024)
        } else {
            out
        };
        self.fixed.saturating_add(grown.min(self.window))
    }
}

/// The compressed side of a member for the ratio check: the input
/// consumed so far, and output that came before this member from the same
/// input (a 7z solid block).
pub(crate) struct RatioBase<'a> {
    pub prior_out: u64,
    pub input: &'a dyn Fn() -> u64,
}

impl<'w> Walker<'w> {
    pub fn limit(&self, kind: LimitKind, limit: u64) -> Halt {
        Halt::Limit(LimitHit {
            kind,
            limit,
            member: self.path.clone(),
        })
    }

    pub fn corrupt(&self, format: Format, error: impl std::fmt::Display) -> Halt {
        Halt::Corrupt {
            member: self.path.clone(),
            format,
            error: error.to_string(),
        }
    }

    /// A decoder's I/O error: out of its memory limit, or corrupt input.
    pub fn io_error(&self, format: Format, e: &io::Error) -> Halt {
        if e.kind() == io::ErrorKind::OutOfMemory {
            self.limit(LimitKind::Memory, self.limits.max_memory)
        } else {
            self.corrupt(format, e)
        }
    }

    /// Notes a member that cannot be read; the walk goes on.
    pub fn unsupported(&mut self, format: Format, reason: impl Into<String>) {
        if self.unsupported.is_none() {
            self.unsupported = Some((self.path.clone(), format, reason.into()));
        }
    }

    pub fn check_time(&self) -> Result<(), Halt> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(self.limit(
                LimitKind::Time,
                u64::try_from(self.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            )),
            _ => Ok(()),
        }
    }

    /// Memory still free under `max_memory`.
    pub fn memory_free(&self) -> u64 {
        self.limits.max_memory.saturating_sub(self.held)
    }

    /// Charges `bytes` against `max_memory` (the path names where).
    pub fn charge(&mut self, bytes: u64) -> Result<(), Halt> {
        if bytes > self.memory_free() {
            return Err(self.limit(LimitKind::Memory, self.limits.max_memory));
        }
        self.held += bytes;
        Ok(())
    }

    pub fn release(&mut self, bytes: u64) {
        self.held = self.held.saturating_sub(bytes);
    }

    /// Runs `f` with `bytes` charged, releasing them after, whatever `f`
    /// answers.
    pub fn charged<T>(
        &mut self,
        bytes: u64,
        f: impl FnOnce(&mut Self) -> Result<T, Halt>,
    ) -> Result<T, Halt> {
        self.charge(bytes)?;
        let r = f(self);
        self.release(bytes);
        r
    }

    /// Walks the container `found` in `data` at nesting level `depth`.
    pub fn open(&mut self, data: &[u8], found: Found, depth: u32) -> Result<(), Halt> {
        if depth > self.limits.max_depth {
            return Err(self.limit(LimitKind::Depth, u64::from(self.limits.max_depth)));
        }
        self.check_time()?;
        let data = data.get(found.offset..).unwrap_or_default();
        match found.format {
            Format::Zip => formats::zip::walk(self, data, depth),
            Format::Tar => formats::tar::walk(self, data, depth),
            Format::SevenZ => formats::sevenz::walk(self, data, depth),
            Format::Gzip | Format::Bzip2 | Format::Xz | Format::Zstd => {
                formats::stream::walk(self, data, found.format, depth)
            }
        }
    }

    /// Hands a member (at `self.path`) to the visitor, then walks it if it
    /// is a container. Its bytes count against `max_total_bytes` here.
    pub fn member(&mut self, data: &[u8], format: Format, depth: u32) -> Result<(), Halt> {
        let len = data.len() as u64;
        if len == 0 {
            return Ok(());
        }
        if len > self.limits.max_member_bytes {
            return Err(self.limit(LimitKind::MemberBytes, self.limits.max_member_bytes));
        }
        if self.bytes.saturating_add(len) > self.limits.max_total_bytes {
            return Err(self.limit(LimitKind::TotalBytes, self.limits.max_total_bytes));
        }
        self.bytes += len;
        self.members += 1;
        let member = Member {
            path: &self.path,
            data,
            depth,
            format,
        };
        if (self.visit)(&member) == Flow::Stop {
            return Err(Halt::Stop);
        }
        match detect::locate(data, ArchiveMode::All) {
            Some(found) => self.open(data, found, depth + 1),
            None => Ok(()),
        }
    }

    /// Reads a decoder's whole output, checking every limit between
    /// chunks: the member's size, the walk's total, memory (the output,
    /// the decoder's own and everything already held), the ratio against
    /// the input consumed, and the deadline.
    pub fn read_capped(
        &mut self,
        reader: &mut dyn Read,
        format: Format,
        memory: &dyn Fn(u64) -> u64,
        ratio: &RatioBase<'_>,
    ) -> Result<Vec<u8>, Halt> {
        let limits = self.limits;
        let mut out = Vec::new();
        loop {
            let before = out.len();
            let read = (&mut *reader).take(CHUNK).read_to_end(&mut out);
            let len = out.len() as u64;
            if let Err(e) = read {
                return Err(self.io_error(format, &e));
            }
            if out.len() == before {
                return Ok(out);
            }
            self.check_time()?;
            if len > limits.max_member_bytes {
                return Err(self.limit(LimitKind::MemberBytes, limits.max_member_bytes));
            }
            if self.bytes.saturating_add(len) > limits.max_total_bytes {
                return Err(self.limit(LimitKind::TotalBytes, limits.max_total_bytes));
            }
            if len.saturating_add(memory(len)) > self.memory_free() {
                return Err(self.limit(LimitKind::Memory, limits.max_memory));
            }
            let total_out = ratio.prior_out.saturating_add(len);
            if total_out > RATIO_FLOOR
                && total_out > limits.max_ratio.saturating_mul((ratio.input)().max(1))
            {
                return Err(self.limit(LimitKind::Ratio, limits.max_ratio));
            }
        }
    }

    /// Charges a decoded member's buffer while it is visited and walked.
    pub fn decoded_member(&mut self, data: &[u8], format: Format, depth: u32) -> Result<(), Halt> {
        self.charged(data.len() as u64, |w| w.member(data, format, depth))
    }
}

/// A slice read through `Read` and `BufRead`, counting what the decoder
/// consumed (for the ratio check).
#[derive(Debug, Clone)]
pub(crate) struct Counted<'a> {
    rest: &'a [u8],
    consumed: Rc<Cell<u64>>,
}

impl<'a> Counted<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            rest: data,
            consumed: Rc::new(Cell::new(0)),
        }
    }

    /// A handle on the count that outlives moving `self` into a decoder.
    pub fn counter(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.consumed)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn skip(&mut self, n: usize) {
        self.consume(n);
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rest.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

impl BufRead for Counted<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self.rest)
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.rest.len());
        self.rest = self.rest.get(amt..).unwrap_or_default();
        self.consumed.set(self.consumed.get() + amt as u64);
    }
}
