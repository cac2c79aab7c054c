//! Marks on container filesystems: one filesystem mark per container root
//! overlay, mount marks on its volumes, and the group's mark count.
//!
//! A container's root is an overlay mounted in the container's own mount
//! namespace; a mount mark on the host-side copy of that mount sees nothing
//! the container does. A filesystem mark on the overlay's superblock sees
//! every open and exec in it, through every copy of the mount (DESIGN.md
//! §2b). Both marks are taken through an fd of the target, opened and
//! checked once, so a pid that exits between the check and the mark cannot
//! redirect the mark elsewhere.
//!
//! Safety (DESIGN.md §3): a container root must be an overlay, and never the
//! filesystem `/` lives on nor one the caller names (its own protected
//! mounts, the filesystems beneath the overlays: marking an overlay and its
//! backing filesystem in one group hangs the node).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use fanotify::low_level as fan;

use crate::error::InterceptError;
use crate::group::{Fanotify, MarkScope, Watch};
use crate::sys;

/// `OVERLAYFS_SUPER_MAGIC` from `<linux/magic.h>`.
pub const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// The filesystem mark placed on a container's root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RootMark {
    /// `st_dev` of the overlay: the key of the mark (one per superblock).
    pub device: u64,
}

/// The marks a group holds, counted from `/proc/self/fdinfo/<group fd>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarkCounts {
    /// Filesystem (superblock) marks: container roots, `mark_scope =
    /// "filesystem"` mounts.
    pub filesystems: usize,
    /// Mount marks: protected mounts, container volumes.
    pub mounts: usize,
    /// Inode marks: the kernel verdict cache (ignore marks).
    pub inodes: usize,
}

impl MarkCounts {
    /// Counts the `fanotify ...` lines of an fdinfo text.
    pub fn parse(fdinfo: &str) -> Self {
        let mut c = Self::default();
        for line in fdinfo.lines() {
            let Some(rest) = line.strip_prefix("fanotify ") else {
                continue;
            };
            if rest.starts_with("ino:") {
                c.inodes += 1;
            } else if rest.starts_with("mnt_id:") {
                c.mounts += 1;
            } else if rest.starts_with("sdev:") {
                c.filesystems += 1;
            }
        }
        c
    }
}

fn open_dir(path: &Path) -> Result<File, InterceptError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| InterceptError::Resolve {
            path: path.to_owned(),
            source,
        })
}

impl Fanotify {
    /// Puts a filesystem mark on the overlay that is a container's root,
    /// e.g. `/proc/<pid>/root` (followed, so the mark lands on the
    /// container's root, not on procfs) or the host-side `merged` directory.
    ///
    /// Refuses anything but an overlay, the filesystem of this process' `/`,
    /// and the filesystems in `refused_devices`. Marking the same overlay
    /// again is harmless (the kernel merges the masks).
    pub fn mark_container_root(
        &self,
        root: &Path,
        watch: Watch,
        refused_devices: &[u64],
    ) -> Result<RootMark, InterceptError> {
        let mask = self.mask_for(watch);
        if mask == 0 {
            return Err(InterceptError::EmptyWatch {
                path: root.to_owned(),
            });
        }
        let dir = open_dir(root)?;
        let fs_type = sys::fstatfs_type(dir.as_fd()).map_err(|source| InterceptError::Resolve {
            path: root.to_owned(),
            source,
        })?;
        if fs_type != OVERLAYFS_SUPER_MAGIC {
            return Err(InterceptError::NotAnOverlay {
                path: root.to_owned(),
                fs_type,
            });
        }
        let resolve = |p: &Path, f: &dyn Fn() -> io::Result<std::fs::Metadata>| {
            f().map_err(|source| InterceptError::Resolve {
                path: p.to_owned(),
                source,
            })
        };
        let device = resolve(root, &|| dir.metadata())?.dev();
        let host_root = resolve(Path::new("/"), &|| std::fs::metadata("/"))?.dev();
        if device == host_root || refused_devices.contains(&device) {
            return Err(InterceptError::HostFilesystemRefused {
                path: root.to_owned(),
                device,
            });
        }
        sys::mark_fd(
            self.group_fd(),
            fan::FAN_MARK_ADD | fan::FAN_MARK_FILESYSTEM,
            mask,
            dir.as_fd(),
        )
        .map_err(|source| InterceptError::Mark {
            path: root.to_owned(),
            scope: MarkScope::Filesystem,
            mask,
            source,
        })?;
        tracing::debug!(root = %root.display(), device, mask = format_args!("{mask:#x}"), "container root marked");
        Ok(RootMark { device })
    }

    /// Puts a mount mark on a volume of a container, through its path in the
    /// container's mount namespace (`/proc/<pid>/root/<dest>`). The mark
    /// covers the container's copy of that mount only: the host's accesses
    /// to the same directory are not intercepted.
    pub fn mark_container_volume(&self, path: &Path, watch: Watch) -> Result<(), InterceptError> {
        let mask = self.mask_for(watch);
        if mask == 0 {
            return Err(InterceptError::EmptyWatch {
                path: path.to_owned(),
            });
        }
        let dir = open_dir(path)?;
        sys::mark_fd(
            self.group_fd(),
            fan::FAN_MARK_ADD | fan::FAN_MARK_MOUNT,
            mask,
            dir.as_fd(),
        )
        .map_err(|source| InterceptError::Mark {
            path: path.to_owned(),
            scope: MarkScope::Mount,
            mask,
            source,
        })
    }

    /// The marks this group holds now (`/proc/self/fdinfo`). Marks vanish
    /// with their filesystem or mount, which nothing reports to us: this is
    /// the kernel's own count.
    pub fn mark_counts(&self) -> io::Result<MarkCounts> {
        let text =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.group_fd().as_raw_fd()))?;
        Ok(MarkCounts::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_of_mark() {
        let text = "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\n\
            fanotify flags:11 event-flags:8000\n\
            fanotify sdev:2c mflags:0 mask:50000 ignored_mask:0\n\
            fanotify sdev:2d mflags:0 mask:50000 ignored_mask:0\n\
            fanotify mnt_id:61 mflags:0 mask:10000 ignored_mask:0\n\
            fanotify ino:3 sdev:2c mflags:0 mask:0 ignored_mask:50000 fhandle-bytes:8 fhandle-type:1 f_handle:0300000000000000\n";
        assert_eq!(
            MarkCounts::parse(text),
            MarkCounts {
                filesystems: 2,
                mounts: 1,
                inodes: 1
            }
        );
        assert_eq!(MarkCounts::parse("pos:\t0\n"), MarkCounts::default());
    }
}
