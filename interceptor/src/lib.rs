//! Linux fanotify interception for portcullis.
//!
//! - [`Fanotify`]: the group (init, marks on mount points, responses, the
//!   kernel verdict cache with ignore marks that clear on modify);
//! - [`spawn_reader`]: the reader thread turning events into [`ReaderMsg`]s
//!   carrying a [`Ticket`] — the duty to answer a permission event exactly
//!   once (an unanswered ticket answers its fallback on drop);
//! - container marks ([`Fanotify::mark_container_root`], volumes) and the
//!   group's [`MarkCounts`];
//! - [`procfs`]: file, process and container facts for an event;
//! - [`sandbox`]: private mount namespace + tmpfs, for tests and demos;
//! - [`mountinfo`]: `/proc/self/mountinfo` parsing.
//!
//! Safety rules (DESIGN.md §3): never mark `/` or a filesystem in use
//! ([`Fanotify::mark`] refuses non-mount-points and, unless told otherwise,
//! the root filesystem); the reader never opens a path and answers this
//! process' own accesses at once; the kernel has no timeout on permission
//! events, so every ticket is answered — by its owner or by its `Drop`.
#![cfg(target_os = "linux")]

mod error;
mod group;
pub mod local_socket;
pub mod mountinfo;
mod overlay;
pub mod procfs;
mod reader;
pub mod sandbox;
mod sys;
mod ticket;

pub use error::InterceptError;
pub use group::{Fanotify, GroupClass, MarkScope, Watch};
pub use overlay::{MarkCounts, RootMark, OVERLAYFS_SUPER_MAGIC};
pub use reader::{spawn_reader, Intercepted, ReaderHandle, ReaderMsg};
pub use ticket::Ticket;
