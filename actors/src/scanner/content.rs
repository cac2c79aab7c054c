//! What a scan reads, and reading it safely through a file descriptor.
//!
//! Content behind an fd is read with `pread(2)` from offset 0, never through
//! a reopened path (it may have been replaced since the event) and never
//! through `mmap(2)` (a file truncated while mapped raises `SIGBUS` in the
//! scanner). `std` cannot `pread`/`fstat` a descriptor it does not own, and
//! the fanotify event fd is shared (`Arc<OwnedFd>`) with whoever answers the
//! kernel, so these two calls are wrapped here around `libc`, rather than
//! `dup(2)`-ing the fd on every scan.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Where the content of a scan comes from.
#[derive(Clone)]
pub enum ScanContent {
    /// The fanotify event fd (or any fd open for reading). Read with `pread`
    /// from offset 0; its size is taken from `fstat` first, so an object over
    /// the size limit is skipped without reading it.
    Fd(Arc<OwnedFd>),
    /// Content already in memory (for example, a remote scan request that
    /// carried the file inline).
    Bytes(Vec<u8>),
}

impl fmt::Debug for ScanContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fd(fd) => f.debug_tuple("Fd").field(&fd.as_raw_fd()).finish(),
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

/// Content read into memory by [`ScanContent::read_up_to`].
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// The whole content.
    Whole(Vec<u8>),
    /// Larger than the cap (`size` as far as it was seen).
    TooLarge { size: u64 },
}

impl ScanContent {
    /// Reads the whole content into memory if it is at most `cap` bytes
    /// (through the fd with `pread`, like a scan). Used to send content
    /// inline to a remote scanner.
    pub fn read_up_to(&self, cap: u64) -> io::Result<Loaded> {
        match self {
            Self::Bytes(b) if b.len() as u64 > cap => Ok(Loaded::TooLarge {
                size: b.len() as u64,
            }),
            Self::Bytes(b) => Ok(Loaded::Whole(b.clone())),
            Self::Fd(fd) => {
                let st = fstat(fd.as_fd())?;
                if !st.regular {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file",
                    ));
                }
                if st.size > cap {
                    return Ok(Loaded::TooLarge { size: st.size });
                }
                let mut buf = Vec::new();
                let n = read_to_buf(fd.as_fd(), &mut buf, Some(cap.saturating_add(1)), st.size)?;
                if n as u64 > cap {
                    return Ok(Loaded::TooLarge { size: n as u64 });
                }
                buf.truncate(n);
                Ok(Loaded::Whole(buf))
            }
        }
    }
}

/// What `fstat(2)` says about an fd, as far as a scan cares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FdStat {
    pub size: u64,
    pub regular: bool,
}

/// `fstat(2)` on a borrowed fd.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<FdStat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` points to writable memory for one `libc::stat`, and `fd`
    // is a valid open descriptor for the duration of the borrow.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fstat` returned 0, so it filled in `st`.
    let st = unsafe { st.assume_init() };
    Ok(FdStat {
        size: u64::try_from(st.st_size).unwrap_or(0),
        regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
}

/// `pread(2)` into `buf` at `offset`, retrying on `EINTR`.
fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "read offset out of range"))?;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and `fd`
        // is a valid open descriptor for the duration of the borrow.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The first read is this large at least, so that small files that grew
/// since `fstat` rarely need a second allocation.
const MIN_READ: usize = 64 * 1024;

/// Reads `fd` from offset 0 until end of file, or until `cap` bytes were read
/// (`None` = no cap), into `buf`, and returns how many bytes were read: the
/// content is `buf[..n]`.
///
/// `buf` is a reusable work area: it only grows here, its bytes beyond `n`
/// are stale, and its first `size_hint + 1` bytes are made available up
/// front, so a file that did not change since `fstat` is read without
/// reallocating (the extra byte sees end of file, or growth).
pub(crate) fn read_to_buf(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    cap: Option<u64>,
    size_hint: u64,
) -> io::Result<usize> {
    let cap = cap.map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
    let first = usize::try_from(size_hint)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .max(MIN_READ)
        .min(cap);
    if buf.len() < first {
        buf.resize(first, 0);
    }
    let mut filled = 0usize;
    while filled < cap {
        if filled == buf.len() {
            let grown = buf.len().saturating_mul(2).max(MIN_READ).min(cap);
            buf.resize(grown, 0);
        }
        let end = buf.len().min(cap);
        let Some(window) = buf.get_mut(filled..end) else {
            break;
        };
        let n = pread(fd, window, filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    fn file_with(len: usize) -> (std::fs::File, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        (file, data)
    }

    #[test]
    fn reads_whole_file_even_when_the_size_hint_is_stale() {
        // A file that grew after fstat: a hint of 0 must still read it all.
        let (file, data) = file_with(300_000);
        let mut buf = Vec::new();
        let n = read_to_buf(file.as_fd(), &mut buf, None, 0).unwrap();
        assert_eq!(&buf[..n], &data[..]);

        // The buffer is reused, with stale bytes past `n`.
        let (small, small_data) = file_with(10);
        let n = read_to_buf(small.as_fd(), &mut buf, None, 10).unwrap();
        assert_eq!(&buf[..n], &small_data[..]);
        assert!(buf.len() >= 300_000);
    }

    #[test]
    fn never_reads_past_the_cap() {
        let (file, data) = file_with(200_000);
        let mut buf = Vec::new();
        let n = read_to_buf(file.as_fd(), &mut buf, Some(100_001), 50).unwrap();
        assert_eq!(n, 100_001);
        assert_eq!(&buf[..n], &data[..n]);
        assert!(buf.len() <= 100_001);
    }

    #[test]
    fn fstat_sees_size_and_type() {
        let (file, _) = file_with(1234);
        let stat = fstat(file.as_fd()).unwrap();
        assert_eq!(stat.size, 1234);
        assert!(stat.regular);
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        assert!(!fstat(dir.as_fd()).unwrap().regular);
    }

    #[test]
    fn read_up_to_loads_small_content_and_refuses_large() {
        let (file, data) = file_with(5000);
        let content = ScanContent::Fd(Arc::new(OwnedFd::from(file)));
        assert_eq!(
            content.read_up_to(5000).unwrap(),
            Loaded::Whole(data.clone())
        );
        assert_eq!(
            content.read_up_to(4999).unwrap(),
            Loaded::TooLarge { size: 5000 }
        );
        let bytes = ScanContent::Bytes(data.clone());
        assert_eq!(
            bytes.read_up_to(10).unwrap(),
            Loaded::TooLarge { size: 5000 }
        );
        assert_eq!(bytes.read_up_to(5000).unwrap(), Loaded::Whole(data));
    }
}
