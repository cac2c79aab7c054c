use std::io;
use std::path::PathBuf;

use crate::group::{GroupClass, MarkScope};

/// Errors of the interceptor. Every variant names the path or the operation.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("fanotify_init ({class:?} class) failed: {source} (needs root / CAP_SYS_ADMIN and a kernel with fanotify{})",
        if matches!(class, GroupClass::Permission) { " permission events" } else { "" })]
    Init {
        class: GroupClass,
        #[source]
        source: io::Error,
    },

    #[error("cannot resolve the path to protect {path}: {source}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot read /proc/self/mountinfo to check that {path} is a mount point: {source}")]
    MountInfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("refusing to mark {path}: it is not a mount point (fanotify would mark the whole mount containing it); mount a filesystem there or pick its mount point")]
    NotAMountPoint { path: PathBuf },

    #[error("refusing to mark {path} ({scope:?} scope): it is the root filesystem; marking it can hang the whole machine (pass allow_root only on a dedicated node)")]
    RootRefused { path: PathBuf, scope: MarkScope },

    #[error("refusing to mark {path} as a container root: it is not an overlay (filesystem type {fs_type:#x}); a container whose root is a host directory is not marked")]
    NotAnOverlay { path: PathBuf, fs_type: i64 },

    #[error("refusing to mark {path} (device {device:#x}) as a container root: that filesystem is the host's root or one the agent must not mark (its protected mounts, the filesystems beneath its overlays)")]
    HostFilesystemRefused { path: PathBuf, device: u64 },

    #[error("nothing to watch on {path}: open, exec and close_write are all off")]
    EmptyWatch { path: PathBuf },

    #[error("fanotify_mark ({scope:?} scope, mask {mask:#x}) on {path} failed: {source}")]
    Mark {
        path: PathBuf,
        scope: MarkScope,
        mask: u64,
        #[source]
        source: io::Error,
    },

    #[error("cannot start the fanotify reader thread ({op}): {source}")]
    Reader {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}
