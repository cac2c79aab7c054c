//! The fanotify group: init, marks, responses, the kernel verdict cache.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fanotify::low_level as fan;

use crate::error::InterceptError;
use crate::{mountinfo, sys};

/// Permission events (the opener waits for our answer) or plain
/// notifications (audit mode: nobody waits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupClass {
    /// `FAN_CLASS_CONTENT`: the opener waits for our answer.
    Permission,
    /// `FAN_CLASS_NOTIF`: audit mode, nobody waits.
    Notification,
}

/// Which accesses to intercept on a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Watch {
    /// Opens (`FAN_OPEN_PERM` / `FAN_OPEN`).
    pub open: bool,
    /// Opens for execution (`FAN_OPEN_EXEC_PERM` / `FAN_OPEN_EXEC`).
    pub exec: bool,
    /// Closes of a file opened for writing (`FAN_CLOSE_WRITE`, never blocks).
    pub close_write: bool,
}

/// What a mark covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkScope {
    /// `FAN_MARK_MOUNT`: this mount only (other bind mounts of the same
    /// filesystem are not covered).
    Mount,
    /// `FAN_MARK_FILESYSTEM`: the whole filesystem, through every mount.
    Filesystem,
}

/// Mask of the permission events a group answers.
pub(crate) const PERM_EVENTS: u64 =
    fan::FAN_OPEN_PERM | fan::FAN_OPEN_EXEC_PERM | fan::FAN_ACCESS_PERM;

/// A fanotify group. Owns the group fd; dropping the last `Arc` closes it,
/// which makes the kernel ALLOW every event still pending.
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
    class: GroupClass,
}

impl Fanotify {
    /// `fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | class, O_RDONLY |
    /// O_LARGEFILE | O_CLOEXEC | O_NOATIME)`; retried without `O_NOATIME`
    /// if the kernel refuses it. The kernel queue stays bounded (no
    /// `FAN_UNLIMITED_QUEUE`): an overflow is reported as
    /// [`crate::ReaderMsg::Overflow`] and counted, not hidden behind
    /// unbounded kernel memory.
    ///
    /// Also raises the soft `RLIMIT_NOFILE` of the process to its hard limit
    /// (best effort): every event read creates an fd, and when the kernel
    /// cannot create one it *denies* the permission event.
    pub fn init(class: GroupClass) -> Result<Arc<Self>, InterceptError> {
        let class_flag = match class {
            GroupClass::Permission => fan::FAN_CLASS_CONTENT,
            GroupClass::Notification => fan::FAN_CLASS_NOTIF,
        };
        let flags = fan::FAN_CLOEXEC | fan::FAN_NONBLOCK | class_flag;
        let base = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        let raw = match fan::fanotify_init(flags, base | libc::O_NOATIME as u32) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)) => {
                tracing::debug!(error = %e, "fanotify_init refused O_NOATIME; retrying without it");
                fan::fanotify_init(flags, base)
                    .map_err(|source| InterceptError::Init { class, source })?
            }
            Err(source) => return Err(InterceptError::Init { class, source }),
        };
        // SAFETY: fanotify_init returned a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        match sys::raise_nofile_limit() {
            Ok(limit) => tracing::debug!(limit, "RLIMIT_NOFILE soft limit"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE; large event batches may fail with EMFILE")
            }
        }
        Ok(Arc::new(Self { fd, class }))
    }

    pub fn class(&self) -> GroupClass {
        self.class
    }

    /// The event mask a [`Watch`] asks for in this group's class.
    pub fn mask_for(&self, watch: Watch) -> u64 {
        let mut mask = 0;
        match self.class {
            GroupClass::Permission => {
                if watch.open {
                    mask |= fan::FAN_OPEN_PERM;
                }
                if watch.exec {
                    mask |= fan::FAN_OPEN_EXEC_PERM;
                }
            }
            GroupClass::Notification => {
                if watch.open {
                    mask |= fan::FAN_OPEN;
                }
                if watch.exec {
                    mask |= fan::FAN_OPEN_EXEC;
                }
            }
        }
        if watch.close_write {
            mask |= fan::FAN_CLOSE_WRITE;
        }
        mask
    }

    /// Mark a mount point (or its whole filesystem).
    ///
    /// Permission class: `FAN_OPEN_PERM` / `FAN_OPEN_EXEC_PERM`;
    /// notification class: `FAN_OPEN` / `FAN_OPEN_EXEC`; `close_write` adds
    /// `FAN_CLOSE_WRITE` in both.
    ///
    /// Refuses a path that is not a mount point in `/proc/self/mountinfo`
    /// (fanotify would silently mark the mount that contains it), and refuses
    /// the root filesystem — the mount `/`, or with [`MarkScope::Filesystem`]
    /// any mount of the filesystem `/` lives on — unless `allow_root`.
    pub fn mark(
        &self,
        path: &Path,
        scope: MarkScope,
        watch: Watch,
        allow_root: bool,
    ) -> Result<(), InterceptError> {
        let mask = self.mask_for(watch);
        if mask == 0 {
            return Err(InterceptError::EmptyWatch {
                path: path.to_owned(),
            });
        }
        let canonical = check_mount_point(path, scope, allow_root)?;
        let flags = fan::FAN_MARK_ADD
            | fan::FAN_MARK_DONT_FOLLOW
            | match scope {
                MarkScope::Mount => fan::FAN_MARK_MOUNT,
                MarkScope::Filesystem => fan::FAN_MARK_FILESYSTEM,
            };
        fan::fanotify_mark(
            self.fd.as_raw_fd(),
            flags,
            mask,
            libc::AT_FDCWD,
            canonical.as_path(),
        )
        .map_err(|source| InterceptError::Mark {
            path: canonical.clone(),
            scope,
            mask,
            source,
        })?;
        tracing::info!(path = %canonical.display(), ?scope, mask = format_args!("{mask:#x}"), "fanotify mark added");
        Ok(())
    }

    /// Write the permission response (`FAN_ALLOW` / `FAN_DENY`) for an event
    /// fd. Must happen while `event_fd` is still open. Never blocks.
    pub fn respond(&self, event_fd: RawFd, allow: bool) -> io::Result<()> {
        let response = if allow { fan::FAN_ALLOW } else { fan::FAN_DENY };
        sys::respond(self.fd.as_fd(), event_fd, response)
    }

    /// Kernel verdict cache: add an ignore mark on the inode behind
    /// `event_fd` for the open/exec events of this group's class, so the next
    /// opens of that file produce no event at all. No
    /// `FAN_MARK_IGNORED_SURV_MODIFY`: the kernel clears the ignore mask on
    /// the first modification (write, truncate) of the file.
    ///
    /// Each such mark pins the inode in memory and counts against the
    /// per-user mark limit (`fs.fanotify.max_user_marks`): `ENOSPC` means the
    /// cache is full, which is harmless (the file is just not cached).
    pub fn ignore_until_modified(&self, event_fd: BorrowedFd<'_>) -> io::Result<()> {
        sys::mark_fd(
            self.fd.as_fd(),
            fan::FAN_MARK_ADD | fan::FAN_MARK_IGNORED_MASK,
            self.ignore_mask(),
            event_fd,
        )
    }

    /// Takes back an ignore mark placed by [`Self::ignore_until_modified`]
    /// (the file changed between its scan and the mark), so the next open is
    /// intercepted again. `ENOENT` if the inode has no mark of this group.
    pub fn remove_ignore(&self, event_fd: BorrowedFd<'_>) -> io::Result<()> {
        sys::mark_fd(
            self.fd.as_fd(),
            fan::FAN_MARK_REMOVE | fan::FAN_MARK_IGNORED_MASK,
            self.ignore_mask(),
            event_fd,
        )
    }

    /// Takes back every ignore mark of the group at once (a rules reload:
    /// files found clean by the old rules must be scanned by the new ones).
    ///
    /// `FAN_MARK_FLUSH` without `FAN_MARK_MOUNT`/`FAN_MARK_FILESYSTEM`
    /// removes the group's inode marks, and the only inode marks a group
    /// ever gets are these ignore marks: the mount and filesystem marks
    /// that intercept stay.
    pub fn flush_ignore_marks(&self) -> io::Result<()> {
        sys::flush_inode_marks(self.fd.as_fd())
    }

    fn ignore_mask(&self) -> u64 {
        match self.class {
            GroupClass::Permission => fan::FAN_OPEN_PERM | fan::FAN_OPEN_EXEC_PERM,
            GroupClass::Notification => fan::FAN_OPEN | fan::FAN_OPEN_EXEC,
        }
    }

    pub(crate) fn group_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Resolve `path` and check it may be marked; returns the canonical path.
fn check_mount_point(
    path: &Path,
    scope: MarkScope,
    allow_root: bool,
) -> Result<PathBuf, InterceptError> {
    let canonical = std::fs::canonicalize(path).map_err(|source| InterceptError::Resolve {
        path: path.to_owned(),
        source,
    })?;
    let is_root = canonical == Path::new("/")
        || (matches!(scope, MarkScope::Filesystem) && same_filesystem_as_root(&canonical)?);
    if is_root && !allow_root {
        return Err(InterceptError::RootRefused {
            path: canonical,
            scope,
        });
    }
    let entry = mountinfo::find(&canonical).map_err(|source| InterceptError::MountInfo {
        path: canonical.clone(),
        source,
    })?;
    if entry.is_none() {
        return Err(InterceptError::NotAMountPoint { path: canonical });
    }
    Ok(canonical)
}

fn same_filesystem_as_root(path: &Path) -> Result<bool, InterceptError> {
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|source| InterceptError::Resolve {
                path: p.to_owned(),
                source,
            })
    };
    Ok(dev(path)? == dev(Path::new("/"))?)
}
