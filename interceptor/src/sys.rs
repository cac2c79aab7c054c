//! Thin `libc` wrappers for the parts of fanotify that `fanotify-rs` 0.3.1
//! does not cover safely.
//!
//! We use `fanotify-rs` (`fanotify::low_level`) for `fanotify_init`, for
//! path-based `fanotify_mark` and for the flag constants. It falls short here:
//!
//! - `fanotify_read` swallows every error (it returns an empty `Vec` on
//!   `EAGAIN`, `EINTR`, `EMFILE`, ... alike) and copies into a fixed
//!   200-event buffer; its high-level `Event` turns the fd into a `String`
//!   path and panics on non-UTF-8 names. We read the raw buffer ourselves and
//!   parse it with [`EventIter`], which never touches a path.
//! - its `fanotify_mark` always passes a path; marking the inode behind an
//!   event fd needs a NULL path with `dirfd` = the fd ([`mark_fd`]).
//! - it has no helper to write a `struct fanotify_response` ([`respond`]).
//!
//! Everything here is a direct syscall: no allocation, no path lookup, no
//! blocking other than what the caller asked for (`poll`).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Size of `struct fanotify_event_metadata` (24 bytes).
pub(crate) const EVENT_METADATA_LEN: usize = mem::size_of::<libc::fanotify_event_metadata>();

/// One fixed-size event header, copied out of the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub vers: u8,
    pub mask: u64,
    pub fd: RawFd,
    pub pid: i32,
}

/// Iterates the events of one `read(2)` of a fanotify fd (the `FAN_EVENT_OK`
/// / `FAN_EVENT_NEXT` loop of the man page). Stops at a truncated or
/// malformed header.
#[derive(Debug)]
pub(crate) struct EventIter<'a> {
    buf: &'a [u8],
}

impl<'a> EventIter<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl Iterator for EventIter<'_> {
    type Item = RawEvent;

    fn next(&mut self) -> Option<RawEvent> {
        if self.buf.len() < EVENT_METADATA_LEN {
            return None;
        }
        // SAFETY: the buffer holds at least EVENT_METADATA_LEN bytes;
        // `read_unaligned` has no alignment requirement and the struct is
        // plain old data (every bit pattern is valid).
        let meta: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(self.buf.as_ptr().cast()) };
        let len = meta.event_len as usize;
        if len < EVENT_METADATA_LEN || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        self.buf = &self.buf[len..];
        Some(RawEvent {
            vers: meta.vers,
            mask: meta.mask,
            fd: meta.fd,
            pid: meta.pid,
        })
    }
}

/// `read(2)` into `buf`. Errors are returned as they are (`EAGAIN`, `EINTR`,
/// `EMFILE`, ...), unlike `fanotify::low_level::fanotify_read`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Write one `struct fanotify_response` for `event_fd` to the group.
pub(crate) fn respond(group: BorrowedFd<'_>, event_fd: RawFd, response: u32) -> io::Result<()> {
    let resp = libc::fanotify_response {
        fd: event_fd,
        response,
    };
    let len = mem::size_of::<libc::fanotify_response>();
    // SAFETY: `resp` is a valid, initialised struct of `len` bytes.
    let n = unsafe {
        libc::write(
            group.as_raw_fd(),
            (&resp as *const libc::fanotify_response).cast(),
            len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else if n as usize != len {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write of a fanotify response ({n} of {len} bytes)"),
        ))
    } else {
        Ok(())
    }
}

/// `fanotify_mark(group, flags, mask, fd, NULL)`: mark the object `fd` refers
/// to (its inode), without any path lookup.
pub(crate) fn mark_fd(
    group: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    // SAFETY: a NULL pathname is documented: `dirfd` names the object.
    let rc = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            flags,
            mask,
            fd.as_raw_fd(),
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fanotify_mark(group, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL)`: removes every
/// inode mark of the group (mount and filesystem marks stay).
pub(crate) fn flush_inode_marks(group: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: FAN_MARK_FLUSH ignores mask and path; no pointer is read.
    let rc = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_FLUSH,
            0,
            libc::AT_FDCWD,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking, close-on-exec eventfd (the reader's stop signal).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add 1 to an eventfd (never blocks: the counter cannot realistically
/// overflow, and EAGAIN would mean it is already signalled).
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// Readiness of the fds given to [`poll`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// POLLIN (or an error condition: a read will tell which).
    pub readable: bool,
    /// POLLNVAL: the fd is not open.
    pub invalid: bool,
}

/// `poll(2)` for input on up to two fds. `timeout_ms` < 0 waits forever.
pub(crate) fn poll(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<[Ready; 2]> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    let n = fds.len().min(2);
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds` holds `n` initialised pollfd entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = [Ready::default(); 2];
    for (o, p) in out.iter_mut().zip(&pfds[..n]) {
        o.readable = p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
        o.invalid = p.revents & libc::POLLNVAL != 0;
    }
    Ok(out)
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid out pointer; fstat fills it on success.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so the struct is initialised.
    Ok(unsafe { st.assume_init() })
}

/// `fstatfs(2)`: the filesystem type (`f_type`) of an open file.
pub(crate) fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut st = mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a valid out pointer; fstatfs fills it on success.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs returned 0, so the struct is initialised.
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, other widths elsewhere
    Ok(unsafe { st.assume_init() }.f_type as i64)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit. One `read(2)` of a
/// fanotify fd creates one fd per event it returns (up to ~2700 for a 64 KiB
/// buffer); if that fails with `EMFILE` the kernel *denies* the permission
/// event and drops notification events. Returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: valid pointer to an initialised rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, vers: u8, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.push(vers);
        v.push(0);
        v.extend_from_slice(&(EVENT_METADATA_LEN as u16).to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&fd.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v
    }

    #[test]
    fn metadata_is_24_bytes() {
        assert_eq!(EVENT_METADATA_LEN, 24);
    }

    #[test]
    fn iterates_events_and_stops_at_garbage() {
        let mut buf = header(24, 3, 0x1_0000, 7, 42);
        buf.extend(header(24, 3, 0x4000, -1, 0));
        buf.extend(header(4, 3, 0x20, 9, 1)); // event_len too small
        let evs: Vec<_> = EventIter::new(&buf).collect();
        assert_eq!(
            evs,
            vec![
                RawEvent {
                    vers: 3,
                    mask: 0x1_0000,
                    fd: 7,
                    pid: 42
                },
                RawEvent {
                    vers: 3,
                    mask: 0x4000,
                    fd: -1,
                    pid: 0
                },
            ]
        );
    }

    #[test]
    fn truncated_buffer_yields_nothing() {
        let buf = header(24, 3, 0x20, 3, 1);
        assert_eq!(EventIter::new(&buf[..20]).count(), 0);
        let long = header(48, 3, 0x20, 3, 1);
        assert_eq!(EventIter::new(&long).count(), 0);
    }
}
