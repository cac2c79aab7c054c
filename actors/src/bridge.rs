//! The bridge between the fanotify reader thread and the actor system.
//!
//! The reader thread hands each event to [`sink`], which never blocks: it
//! `try_send`s into the bridge's bounded mailbox, and when that is full it
//! answers the event itself with `on_overload` and counts the overflow.
//! The bridge actor then does what the reader thread must not: it looks at
//! the file through the event fd (`fstat`, `readlink` of `/proc/self/fd`)
//! and at the process in `/proc/<pid>`, and forwards an [`AccessRequest`]
//! to the Enforcer.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_interceptor::{procfs, Intercepted, ReaderMsg};
use portcullis_schemas::{
    AccessKind, ContainerRef, EventId, FileInfo, OverflowSource, ProcessInfo,
};

use crate::enforcer::mailbox_gauge;
use crate::enforcer::{
    AccessRequest, ContainerLabels, Fallback, OverflowNoticed, Responder, ScanMode,
};
use crate::scanner::ScanContent;

/// One message from the reader thread.
#[allow(missing_debug_implementations)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Intercept(pub ReaderMsg);

/// How long what `/proc` said about a process is reused. A process that
/// opens many files (tar, a compiler, a scan) costs four `/proc` reads once,
/// not per file. An exec drops the entry (the image changes); pid reuse
/// within this window would need the whole pid space to cycle.
const PROCESS_TTL: Duration = Duration::from_millis(250);
const PROCESS_CACHE_MAX: usize = 4096;

/// Fills in what is known of a container (name, image, pod) from its id
/// and returns its labels: a lookup in memory, never a call to a runtime.
pub type ContainerDirectory =
    Arc<dyn Fn(&mut ContainerRef) -> Option<ContainerLabels> + Send + Sync>;

/// Maps a file's `st_dev` to the filesystem of a container overlay's
/// layers ([`AccessRequest::layer_device`]): a lookup in memory.
pub type LayerDevices = Arc<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// What `/proc` (and the container directory) said about a process.
#[derive(Clone)]
struct Seen {
    at: Instant,
    process: ProcessInfo,
    container: Option<ContainerRef>,
    labels: Option<ContainerLabels>,
}

/// The bridge actor.
pub struct Bridge {
    processes: HashMap<u32, Seen>,
    containers: Option<ContainerDirectory>,
    layers: Option<LayerDevices>,
    enforcer: Recipient<AccessRequest>,
    overflows: Recipient<OverflowNoticed>,
    scan_mode: ScanMode,
    on_overload: Fallback,
    dropped: Arc<AtomicU64>,
    mailbox: usize,
    /// `portcullis_mailbox_depth`: this mailbox, and the Enforcer's.
    depth: metrics::Gauge,
    enforcer_depth: metrics::Gauge,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("scan_mode", &self.scan_mode)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    pub fn new(
        enforcer: Recipient<AccessRequest>,
        overflows: Recipient<OverflowNoticed>,
        scan_mode: ScanMode,
        on_overload: Fallback,
        mailbox: usize,
    ) -> Self {
        Self {
            processes: HashMap::new(),
            containers: None,
            layers: None,
            enforcer,
            overflows,
            scan_mode,
            on_overload,
            dropped: Arc::new(AtomicU64::new(0)),
            mailbox,
            depth: mailbox_gauge("bridge"),
            enforcer_depth: mailbox_gauge("enforcer"),
        }
    }

    /// Names each access's container through `directory`.
    pub fn with_container_directory(mut self, directory: ContainerDirectory) -> Self {
        self.containers = Some(directory);
        self
    }

    /// Keys verdicts of container layer files by their layers' filesystem.
    pub fn with_layer_devices(mut self, layers: LayerDevices) -> Self {
        self.layers = Some(layers);
        self
    }

    /// Overflows counted by [`sink`] when this mailbox was full.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    fn forward(&mut self, ev: Intercepted) {
        let Intercepted {
            ticket,
            pid,
            kind,
            received,
        } = ev;
        let fd = ticket.fd().clone();
        let event_id = EventId::new();
        let file = match procfs::file_info(fd.as_fd()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(access = %event_id, pid, error = %e, "fstat of an event fd failed; scanning without file identity");
                FileInfo::default()
            }
        };
        if kind == AccessKind::CloseWrite
            && self.scan_mode == ScanMode::Smart
            && !portcullis_interceptor::procfs::is_last_writer(fd.as_fd())
        {
            // Smart mode: another writer still has the file open; its close
            // will bring the rescan.
            return;
        }
        let Seen {
            process,
            container,
            labels,
            ..
        } = self.process(pid, kind, received);
        let responder = if ticket.needs_response() {
            Responder::Kernel(ticket)
        } else {
            Responder::Notified(ticket)
        };
        let layer_device = self.layers.as_ref().and_then(|l| l(file.device));
        let req = AccessRequest {
            event_id,
            kind,
            file,
            layer_device,
            process,
            container,
            labels,
            content: ScanContent::Fd(fd),
            responder,
            received,
        };
        // Counted before it can be taken off.
        self.enforcer_depth.increment(1.0);
        if let Err(e) = self.enforcer.try_send(req) {
            self.enforcer_depth.decrement(1.0);
            let req = match e {
                SendError::Full(r) | SendError::Closed(r) => r,
            };
            // Reported with the reader thread's overflows (the Enforcer's
            // mailbox is the full one).
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = req
                .responder
                .answer(req.event_id, self.on_overload.decision())
            {
                tracing::error!(access = %req.event_id, error = %e, "answering an overflowed event failed");
            }
        }
    }
}

impl Bridge {
    /// The process facts of `pid`, from `/proc` or from the short-lived cache.
    fn process(&mut self, pid: u32, kind: AccessKind, now: Instant) -> Seen {
        if kind != AccessKind::Exec {
            if let Some(seen) = self.processes.get(&pid) {
                if now.saturating_duration_since(seen.at) < PROCESS_TTL {
                    return seen.clone();
                }
            }
        }
        let process = procfs::process_info(pid);
        let mut container = procfs::container_of(pid);
        let labels = match (container.as_mut(), &self.containers) {
            (Some(c), Some(directory)) => directory(c),
            _ => None,
        };
        let seen = Seen {
            at: now,
            process,
            container,
            labels,
        };
        if kind == AccessKind::Exec {
            // The image is about to change: what we read is the old one.
            self.processes.remove(&pid);
        } else {
            if self.processes.len() >= PROCESS_CACHE_MAX {
                self.processes
                    .retain(|_, s| now.saturating_duration_since(s.at) < PROCESS_TTL);
                if self.processes.len() >= PROCESS_CACHE_MAX {
                    self.processes.clear();
                }
            }
            self.processes.insert(pid, seen.clone());
        }
        seen
    }
}

impl Actor for Bridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        // Report overflows counted on the reader thread.
        let dropped = self.dropped.clone();
        ctx.run_interval(std::time::Duration::from_millis(100), move |act, _| {
            let n = dropped.swap(0, Ordering::Relaxed);
            if n > 0 {
                let _ = act.overflows.try_send(OverflowNoticed {
                    source: OverflowSource::Mailbox,
                    count: n,
                });
            }
        });
    }
}

impl Handler<Intercept> for Bridge {
    type Result = ();

    fn handle(&mut self, Intercept(msg): Intercept, _: &mut Self::Context) {
        self.depth.decrement(1.0);
        match msg {
            ReaderMsg::Overflow => {
                tracing::warn!("fanotify queue overflowed: the kernel allowed events we never saw");
                let _ = self.overflows.try_send(OverflowNoticed {
                    source: OverflowSource::Kernel,
                    count: 1,
                });
            }
            ReaderMsg::Event(ev) => self.forward(ev),
        }
    }
}

/// The reader thread's sink: never blocks.
pub fn sink(
    bridge: Addr<Bridge>,
    dropped: Arc<AtomicU64>,
    on_overload: Fallback,
) -> Box<dyn FnMut(ReaderMsg) + Send> {
    let allow = on_overload == Fallback::Allow;
    let depth = mailbox_gauge("bridge");
    Box::new(move |msg| {
        // Counted before the Bridge can take it off.
        depth.increment(1.0);
        if let Err(e) = bridge.try_send(Intercept(msg)) {
            depth.decrement(1.0);
            let Intercept(msg) = match e {
                SendError::Full(m) | SendError::Closed(m) => m,
            };
            dropped.fetch_add(1, Ordering::Relaxed);
            if let ReaderMsg::Event(ev) = msg {
                if let Err(e) = ev.ticket.answer(allow) {
                    tracing::error!(error = %e, "answering an overflowed event failed");
                }
            }
        }
    })
}
