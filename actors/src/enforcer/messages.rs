use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use actix::Message;
use portcullis_interceptor::Ticket;
use portcullis_schemas::{
    AccessKind, ContainerRef, Decision, EventId, FileInfo, OverflowSource, ProcessInfo,
};

use crate::scanner::ScanContent;

/// A container's labels, shared between every access of the container.
pub type ContainerLabels = Arc<std::collections::BTreeMap<String, String>>;

/// Who gets the answer of an access.
pub enum Responder {
    /// A fanotify permission event: the opener waits for us.
    Kernel(Ticket),
    /// A fanotify notification event (audit mode, close-after-write): the
    /// kernel waits for nothing; the ticket only keeps the fd open.
    Notified(Ticket),
    /// Synthetic accesses (load tests, unit tests): the decision is sent
    /// on the channel.
    Channel(std::sync::mpsc::SyncSender<(EventId, Decision)>),
    /// Nobody waits.
    Detached,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kernel(_) => "Kernel",
            Self::Notified(_) => "Notified",
            Self::Channel(_) => "Channel",
            Self::Detached => "Detached",
        })
    }
}

impl Responder {
    /// Whether somebody is blocked until we answer.
    pub fn is_blocking(&self) -> bool {
        matches!(self, Self::Kernel(_) | Self::Channel(_))
    }

    /// The event fd, when the access came from the kernel.
    pub fn kernel_fd(&self) -> Option<Arc<OwnedFd>> {
        match self {
            Self::Kernel(t) | Self::Notified(t) => Some(t.fd().clone()),
            _ => None,
        }
    }

    /// Answers (at most once, it consumes the responder).
    pub fn answer(self, access: EventId, decision: Decision) -> std::io::Result<()> {
        let allow = decision == Decision::Allow;
        match self {
            Self::Kernel(t) | Self::Notified(t) => t.answer(allow),
            Self::Channel(tx) => {
                // A receiver that went away is not our failure to answer.
                let _ = tx.try_send((access, decision));
                Ok(())
            }
            Self::Detached => Ok(()),
        }
    }
}

/// One intercepted access, with what the bridge learned about it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AccessRequest {
    /// The id of the `FileAccessed` event; decisions are keyed by it.
    pub event_id: EventId,
    pub kind: AccessKind,
    pub file: FileInfo,
    /// The filesystem the file really lives on, when it is on a container
    /// overlay whose layers share one (the overlay then reports the real
    /// inode numbers): verdicts are keyed by it, so a layer file scanned in
    /// one container is not scanned again in the next of the same image.
    pub layer_device: Option<u64>,
    pub process: ProcessInfo,
    pub container: Option<ContainerRef>,
    /// The container's labels (for policies scoped by pod labels), shared.
    pub labels: Option<ContainerLabels>,
    /// Where the scanner reads the content (the event fd, never the path).
    pub content: ScanContent,
    pub responder: Responder,
    /// When the interceptor received the event.
    pub received: Instant,
}

/// Overflows seen outside the Enforcer (kernel queue, bridge mailbox).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct OverflowNoticed {
    pub source: OverflowSource,
    pub count: u64,
}

/// Answer every pending decision (with `on_timeout`) and stop accepting
/// work; returns how many were answered.
#[derive(Message, Debug)]
#[rtype(result = "u64")]
pub struct Shutdown;

/// Puts a reloaded ruleset in force: publishes it to the scanners, empties
/// the user-space verdict cache and flushes the kernel's ignore marks, in
/// one step of the actor (no verdict is handled in between); the kernel
/// flush completes before the answer. `None` once the Enforcer is
/// stopping: the rules were not taken.
#[derive(Message)]
#[rtype(result = "Option<Swapped>")]
pub struct SwapRules(pub Arc<crate::scanner::Ruleset>);

impl std::fmt::Debug for SwapRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SwapRules").field(self.0.version()).finish()
    }
}

/// What a [`SwapRules`] cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swapped {
    /// User-space cache entries dropped.
    pub cache_entries: usize,
    /// The kernel's ignore marks were flushed (`false` without a group, or
    /// when the flush failed: logged).
    pub kernel_marks_flushed: bool,
    /// How long the flush took (the Enforcer answers nothing meanwhile).
    pub flush: std::time::Duration,
}

/// A snapshot of the Enforcer's counters.
#[derive(Message, Debug)]
#[rtype(result = "EnforcerStats")]
pub struct GetStats;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforcerStats {
    pub pending: usize,
    pub scans: u64,
    pub coalesced: u64,
    pub allowed: u64,
    pub denied: u64,
    pub by_reason: Vec<(&'static str, u64)>,
    pub infected: u64,
    pub overflows: u64,
    pub kernel_cache_marks: u64,
}
