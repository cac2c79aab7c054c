//! The protector: marks container roots (and volumes), keeps the
//! [`Registry`], resolves metadata off the marking path, and retires
//! containers that are gone.
//!
//! Three ways in, all idempotent (marking an overlay twice is harmless):
//! - the runtime's hook ([`Protector::protect`] from the control socket):
//!   synchronous, before the container's entrypoint runs;
//! - the `/proc` scan at start ([`Protector::scan`]): containers that ran
//!   before the agent, or while it was restarting;
//! - the watcher ([`Protector::spawn_watcher`]): a scan after every mount
//!   change of the host (`POLLPRI` on `/proc/1/mountinfo`; a runtime
//!   mounts a container's root there before starting it) and every
//!   `rescan` interval, for runtimes without a hook.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use portcullis_interceptor::{mountinfo, Fanotify, Watch};
use portcullis_schemas::ContainerRef;

use crate::discover;
use crate::error::ContainersError;
use crate::meta::ContainerMeta;
use crate::registry::{now_ms, Container, Registry};
use crate::runtime::Runtime;
use crate::skip::{SkipDecision, SkipRules};
use portcullis_schemas::ContainerDiscovery as Discovery;

/// What happened to a container: the agent journals these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerEvent {
    /// Its root (and volumes) are marked.
    Protected(Container),
    /// Its metadata arrived from the runtime after it was protected.
    Described(Container),
    /// It could not be protected (not an overlay, a refused filesystem, a
    /// vanished process, ...).
    Refused {
        container: ContainerRef,
        pid: u32,
        reason: String,
    },
    /// It is gone (its process exited; the kernel dropped the marks with
    /// the unmount).
    Gone(Container),
}

/// Settings of the protector.
#[derive(Clone, Debug)]
pub struct ProtectorConfig {
    pub watch: Watch,
    /// Mount marks on each container's volumes too.
    pub volumes: bool,
    /// Filesystems never marked as a container root (`st_dev`): the
    /// agent's protected mounts. `/` is always refused.
    pub refused_devices: Vec<u64>,
    /// The longest metadata resolution is retried after a container is
    /// protected.
    pub metadata_timeout: Duration,
    /// How often the watcher rescans `/proc` without a mount change.
    pub rescan: Duration,
    /// Scan after every mount change of the host (the asynchronous
    /// fallback for runtimes without a synchronous hook). Off, only the
    /// `rescan` interval runs.
    pub watch_mounts: bool,
    /// How many gone containers keep their metadata.
    pub gone_capacity: usize,
    /// Containers left unmarked on purpose ([`crate::skip`]).
    pub skip: SkipRules,
}

/// Called for every [`ContainerEvent`]; must not block.
pub type Observer = Arc<dyn Fn(ContainerEvent) + Send + Sync>;

/// See the module docs.
pub struct Protector {
    fan: Arc<Fanotify>,
    config: ProtectorConfig,
    registry: Arc<Registry>,
    observer: Observer,
    describe: Sender<ContainerRef>,
    /// Local metadata sources, read while marking.
    local: Vec<Box<dyn Runtime>>,
    /// Runtimes with an API: the metadata thread asks them after marking;
    /// a skip rule that needs more than the local sources know asks them
    /// before.
    remote: Arc<Vec<Box<dyn Runtime>>>,
    /// The agent's own container, when it runs in one: never marked.
    own_container: Option<String>,
    /// Containers skipped, by id, with their latest pid: a rescan does not
    /// decide (and journal) them again while they run.
    skipped: parking_lot::Mutex<std::collections::HashMap<String, (u32, String)>>,
    /// Containers the scan could not mark, by id: since when, and whether
    /// that was journaled ([`Self::report_refusal`]).
    refused: parking_lot::Mutex<std::collections::HashMap<String, (Instant, bool)>>,
    /// Serializes marking: the hook and the watcher may race for one
    /// container.
    marking: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Protector {
    /// Builds the protector and starts its metadata thread.
    ///
    /// Local runtime sources ([`Runtime::is_local`]) are read while marking;
    /// the others (APIs) on the metadata thread afterwards.
    pub fn start(
        fan: Arc<Fanotify>,
        config: ProtectorConfig,
        registry: Arc<Registry>,
        runtimes: Vec<Box<dyn Runtime>>,
        observer: Observer,
    ) -> Result<Arc<Self>, ContainersError> {
        let (local, remote): (Vec<_>, Vec<_>) = runtimes.into_iter().partition(|r| r.is_local());
        let remote = Arc::new(remote);
        let (tx, rx) = bounded(1024);
        let timeout = config.metadata_timeout;
        let reg = registry.clone();
        let obs = observer.clone();
        let apis = remote.clone();
        let own_container =
            portcullis_interceptor::procfs::container_of(std::process::id()).map(|c| c.id);
        if let Some(id) = &own_container {
            tracing::info!(container = %id, "the agent runs in a container; that container is never marked");
        }
        std::thread::Builder::new()
            .name("pc-containers-meta".into())
            .spawn(move || describe_loop(rx, &apis, reg, obs, timeout))
            .map_err(|source| ContainersError::Io {
                what: "starting the container metadata thread".into(),
                source,
            })?;
        Ok(Arc::new(Self {
            fan,
            config,
            registry,
            observer,
            describe: tx,
            local,
            remote,
            own_container,
            skipped: parking_lot::Mutex::new(std::collections::HashMap::new()),
            refused: parking_lot::Mutex::new(std::collections::HashMap::new()),
            marking: parking_lot::Mutex::new(()),
        }))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn fanotify(&self) -> &Arc<Fanotify> {
        &self.fan
    }

    /// Marks the root of `container` and, if configured, its volumes;
    /// records it and asks for its metadata.
    ///
    /// `root` is the container's root as the host sees it (a hook passes
    /// the bundle's `root.path`: the init has not switched to it yet);
    /// `None` marks through `/proc/<pid>/root` (a running container).
    /// `meta` is what the caller already knows (a hook's bundle
    /// annotations, NRI's container and pod); local runtime sources fill
    /// the rest. A container already protected with this pid is not marked
    /// again; what `meta` adds to it is merged ([`Self::describe`]).
    pub fn protect(
        &self,
        container: ContainerRef,
        pid: u32,
        root: Option<PathBuf>,
        via: Discovery,
        meta: ContainerMeta,
    ) -> Result<Container, ContainersError> {
        self.protect_found(container, pid, root, via, meta, false)
    }

    /// [`Self::protect`]; `by_proc_scan` when the container was found in
    /// `/proc`, maybe while its runtime still creates it
    /// ([`Self::report_refusal`]).
    fn protect_found(
        &self,
        container: ContainerRef,
        pid: u32,
        root: Option<PathBuf>,
        via: Discovery,
        meta: ContainerMeta,
        by_proc_scan: bool,
    ) -> Result<Container, ContainersError> {
        let guard = self.marking.lock();
        if let Some(c) = self.registry.get(&container.id) {
            if c.gone_at_ms.is_none() && c.pid == pid {
                drop(guard);
                return Ok(self.describe(&container.id, meta).unwrap_or(c));
            }
        }
        if let Some(reason) = self.skipped_already(&container.id, pid) {
            return Err(ContainersError::Skipped {
                container: container.id,
                reason,
            });
        }
        // What the local sources say, before marking: the skip rules need
        // it, and the first accesses then carry the container's name.
        let mut meta = meta;
        fill_meta(&self.local, &container, &mut meta);
        if let Some(reason) = self.skip_reason(&container, &mut meta) {
            self.skipped
                .lock()
                .insert(container.id.clone(), (pid, reason.clone()));
            let mut named = container;
            meta.apply_to(&mut named);
            tracing::info!(container = %named.id, name = ?named.name, image = ?named.image, pid, %reason, "container skipped");
            (self.observer)(ContainerEvent::Refused {
                container: named.clone(),
                pid,
                reason: reason.clone(),
            });
            return Err(ContainersError::Skipped {
                container: named.id,
                reason,
            });
        }
        let root = root.unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/root")));
        let layers = backing_devices(&root);
        let refused = self.refused_for(&root, &layers);
        let mark = match self
            .fan
            .mark_container_root(&root, self.config.watch, &refused)
        {
            Ok(m) => {
                self.refused.lock().remove(&container.id);
                m
            }
            Err(source) => {
                let e = ContainersError::Mark {
                    what: format!(
                        "protecting {} container {} (pid {pid})",
                        container.runtime.as_str(),
                        container.id
                    ),
                    source,
                };
                if self.report_refusal(&container.id, by_proc_scan) {
                    (self.observer)(ContainerEvent::Refused {
                        container,
                        pid,
                        reason: e.to_string(),
                    });
                }
                return Err(e);
            }
        };
        let mut volumes = Vec::new();
        if self.config.volumes {
            let in_table = if root.starts_with("/proc") {
                PathBuf::from("/")
            } else {
                std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone())
            };
            for v in discover::volumes(pid, &in_table) {
                match self.fan.mark_container_volume(&v, self.config.watch) {
                    Ok(()) => volumes.push(v),
                    Err(e) => {
                        tracing::warn!(container = %container.id, volume = %v.display(), error = %e, "volume not marked")
                    }
                }
            }
        }
        let c = Container {
            container: container.clone(),
            meta: meta.clone(),
            pid,
            root_device: mark.device,
            layer_device: match layers.as_slice() {
                [one] => Some(*one),
                _ => None,
            },
            volumes,
            via,
            protected_at_ms: now_ms(),
            gone_at_ms: None,
            policies: Vec::new(),
        };
        self.registry.insert(c.clone());
        tracing::info!(
            container = %container.id,
            runtime = container.runtime.as_str(),
            pid,
            device = mark.device,
            volumes = c.volumes.len(),
            ?via,
            "container protected"
        );
        (self.observer)(ContainerEvent::Protected(c.clone()));
        if self.remote.iter().any(|r| r.kind() == container.runtime) {
            if let Err(TrySendError::Full(_)) = self.describe.try_send(container) {
                tracing::warn!("the container metadata queue is full; the runtime is not asked about this container");
            }
        }
        Ok(c)
    }

    /// Whether a failure to mark container `id` is journaled now. A hook's
    /// (or NRI's) is, at once. The `/proc` scan finds a container while its
    /// runtime creates it (`runc init` is in the container's cgroup before
    /// it has switched to the container's root): its failures are journaled
    /// only once they last [`SETTLE`], and then once while it runs.
    fn report_refusal(&self, id: &str, by_proc_scan: bool) -> bool {
        if !by_proc_scan {
            return true;
        }
        let mut refused = self.refused.lock();
        let (first, reported) = refused
            .entry(id.to_string())
            .or_insert((Instant::now(), false));
        if *reported || first.elapsed() < SETTLE {
            tracing::debug!(container = %id, "not marked (yet); a later scan tries again");
            return false;
        }
        *reported = true;
        true
    }

    /// The reason container `id` was skipped, if it was. A container's
    /// processes come and go while it starts (`runc init`, then its init),
    /// so the pid is only updated.
    fn skipped_already(&self, id: &str, pid: u32) -> Option<String> {
        self.skipped.lock().get_mut(id).map(|(p, reason)| {
            *p = pid;
            reason.clone()
        })
    }

    /// Why `container` must not be marked, if it must not: it is the
    /// agent's own, or a skip rule matches. A rule that needs a field the
    /// local sources did not give asks the runtime's API once (bounded by
    /// its timeout); what is still unknown then does not match.
    fn skip_reason(&self, container: &ContainerRef, meta: &mut ContainerMeta) -> Option<String> {
        if self.own_container.as_deref() == Some(container.id.as_str()) {
            return Some(OWN_CONTAINER.into());
        }
        let rules = &self.config.skip;
        if rules.is_empty() {
            return None;
        }
        let mut decision = rules.decide(meta);
        if decision == SkipDecision::Undecided {
            fill_meta(&self.remote, container, meta);
            decision = rules.decide_final(meta);
        }
        match decision {
            SkipDecision::Skip { reason, .. } => Some(reason),
            SkipDecision::Protect | SkipDecision::Undecided => None,
        }
    }

    /// Merges `meta` into what is known of container `id`; journals a
    /// `Described` event when that changed anything. `None` when the
    /// container is unknown.
    pub fn describe(&self, id: &str, meta: ContainerMeta) -> Option<Container> {
        describe(&self.registry, &self.observer, id, meta)
    }

    /// Devices that must not be marked as this container's root: the
    /// configured ones, and every filesystem another of our marks covers
    /// (an overlay's backing filesystem among them would hang the node).
    fn refused_for(&self, root: &Path, layers: &[u64]) -> Vec<u64> {
        let mut refused = self.config.refused_devices.clone();
        // An overlay whose layers live on a filesystem we mark: marking it
        // would put the backing file's open inside our own event.
        let marked: Vec<u64> = self
            .registry
            .running()
            .iter()
            .map(|c| c.root_device)
            .chain(self.config.refused_devices.iter().copied())
            .collect();
        if layers.iter().any(|d| marked.contains(d)) {
            if let Ok(m) = std::fs::metadata(root) {
                refused.push(m.dev());
            }
        }
        refused
    }

    /// Protects every running container not protected yet, and retires the
    /// ones that are gone. Returns how many were newly protected.
    pub fn scan(&self) -> usize {
        let mut added = 0;
        let running = discover::running();
        // Forget skipped containers that are gone (a new container with the
        // id is decided again).
        self.skipped.lock().retain(|id, (pid, _)| {
            running.iter().any(|f| f.container.id == *id)
                || portcullis_interceptor::procfs::container_of(*pid).is_some_and(|c| c.id == *id)
        });
        self.refused
            .lock()
            .retain(|id, _| running.iter().any(|f| f.container.id == *id));
        for found in running {
            if self.registry.is_running(&found.container.id) {
                continue;
            }
            if self
                .protect_found(
                    found.container,
                    found.pid,
                    None,
                    Discovery::Scan,
                    ContainerMeta::default(),
                    true,
                )
                .is_ok()
            {
                added += 1;
            }
        }
        self.retire();
        added
    }

    /// Retires containers whose marked process is gone, or no longer in
    /// the container's cgroup (the pid was reused). The kernel dropped
    /// their marks with the unmount of the overlay.
    pub fn retire(&self) -> Vec<Container> {
        let gone = self.registry.retire(|c| {
            portcullis_interceptor::procfs::container_of(c.pid)
                .is_some_and(|now| now.id == c.container.id)
        });
        for c in &gone {
            tracing::info!(container = %c.container.id, "container gone");
            (self.observer)(ContainerEvent::Gone(c.clone()));
        }
        gone
    }

    /// Starts the watcher thread (see the module docs). It stops when
    /// `stop` turns true, within 250 ms.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> Result<std::thread::JoinHandle<()>, ContainersError> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("pc-containers-watch".into())
            .spawn(move || me.watch_loop(&stop))
            .map_err(|source| ContainersError::Io {
                what: "starting the container watcher".into(),
                source,
            })
    }

    fn watch_loop(&self, stop: &AtomicBool) {
        let mountinfo = if self.config.watch_mounts {
            // pid 1's table: the host's mount namespace, where runtimes
            // mount container roots, also when the agent runs in a container
            // of its own (with the host's pid namespace) or in a private
            // mount namespace.
            HOST_MOUNT_TABLES
                .iter()
                .find_map(|t| match File::open(t) {
                    Ok(f) => {
                        tracing::debug!(table = t, "watching the mount table");
                        Some(f)
                    }
                    Err(e) => {
                        tracing::warn!(table = t, error = %e, "cannot watch this mount table");
                        None
                    }
                })
                .or_else(|| {
                    tracing::warn!("no mount table to watch; rescanning on the interval only");
                    None
                })
        } else {
            tracing::info!("mount watcher off; rescanning on the interval only");
            None
        };
        let mut last_scan = Instant::now();
        // After a mount change the container's process may not exist yet:
        // scan again at each of FOLLOWUPS_MS after the latest change.
        let mut changed_at: Option<Instant> = None;
        let mut next_followup = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = changed_at.and_then(|at| {
                FOLLOWUPS_MS
                    .get(next_followup)
                    .map(|ms| at + Duration::from_millis(*ms))
            });
            // Wake for the next follow-up scan, or at the latest after 250 ms
            // (the stop flag).
            let wait = due
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(250))
                .min(Duration::from_millis(250));
            let changed = match &mountinfo {
                Some(f) => poll_pri(f, i32::try_from(wait.as_millis()).unwrap_or(250)),
                None => {
                    std::thread::sleep(wait);
                    false
                }
            };
            let now = Instant::now();
            let followup = due.is_some_and(|t| t <= now);
            if changed {
                changed_at = Some(now);
                next_followup = 0;
            } else if followup {
                next_followup += 1;
            }
            if changed || followup || now.duration_since(last_scan) >= self.config.rescan {
                let n = self.scan();
                if n > 0 {
                    tracing::debug!(added = n, changed, "watcher protected new containers");
                }
                last_scan = now;
            }
        }
    }
}

/// Merges what `runtimes` of `container`'s kind say about it into `meta`
/// (one inspect each; failures are logged and left out).
fn fill_meta(runtimes: &[Box<dyn Runtime>], container: &ContainerRef, meta: &mut ContainerMeta) {
    for rt in runtimes.iter().filter(|r| r.kind() == container.runtime) {
        match rt.inspect(&container.id) {
            Ok(Some(m)) => meta.merge(m),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container = %container.id, runtime = container.runtime.as_str(), error = %e, "container metadata unreadable")
            }
        }
    }
}

/// How long a container found by a scan may stay unmarkable before that is
/// journaled: its runtime is still setting it up until then.
const SETTLE: Duration = Duration::from_secs(3);

/// The mount tables the watcher polls, the first it can open: the host's
/// (pid 1's), else the agent's own.
const HOST_MOUNT_TABLES: [&str; 2] = ["/proc/1/mountinfo", "/proc/self/mountinfo"];

/// The reason journaled for the agent's own container.
const OWN_CONTAINER: &str = "the agent's own container (never marked)";

/// Scans after a mount change of the host, in ms: a runtime mounts a
/// container's root before it creates the container's process, and the
/// scan can only find the container once that process is in its cgroup.
/// Dense at first (a container without a hook runs unprotected until one
/// of these finds it: `scripts/bench-watch-window`), each a walk of
/// `/proc/*/cgroup`.
const FOLLOWUPS_MS: [u64; 11] = [5, 15, 30, 50, 75, 100, 150, 200, 300, 500, 1000];

/// Waits up to `timeout_ms` for `POLLPRI` (a mount table change); rearms
/// by reading the file again.
fn poll_pri(f: &File, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc > 0 && p.revents & (libc::POLLPRI | libc::POLLERR) != 0 {
        // Rearm: the kernel reports a change until the file is read again.
        let _ = rearm(f);
        return true;
    }
    false
}

fn rearm(f: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::Start(0))?;
    let mut sink = [0u8; 64 * 1024];
    while f.read(&mut sink)? > 0 {}
    Ok(())
}

/// The devices of the layers (`upperdir`, `lowerdir`s, as the host sees
/// them) of the overlay at `root`: `/proc/<pid>/root` (read from that
/// process' mount table) or a host path (from ours).
fn backing_devices(root: &Path) -> Vec<u64> {
    let (table, mount_point) = match root
        .strip_prefix("/proc")
        .ok()
        .and_then(|r| r.to_str())
        .and_then(|r| r.strip_suffix("/root"))
    {
        Some(pid) => (format!("/proc/{pid}/mountinfo"), PathBuf::from("/")),
        None => (
            "/proc/self/mountinfo".to_string(),
            std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        ),
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return Vec::new();
    };
    let Some(root) = mountinfo::parse(&text).into_iter().rev().find(|m| {
        m.fstype == "overlay"
            && Path::new(std::ffi::OsStr::from_bytes(&m.mount_point)) == mount_point
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in layer_dirs(&root.super_options) {
        if let Ok(m) = std::fs::metadata(&dir) {
            if !out.contains(&m.dev()) {
                out.push(m.dev());
            }
        }
    }
    out
}

/// The absolute layer directories named in an overlay's super options.
pub fn layer_dirs(super_options: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for opt in super_options.split(',') {
        let Some((key, value)) = opt.split_once('=') else {
            continue;
        };
        if matches!(
            key,
            "lowerdir" | "upperdir" | "workdir" | "lowerdir+" | "datadir+"
        ) {
            out.extend(
                value
                    .split(':')
                    .map(Path::new)
                    .filter(|p| p.is_absolute())
                    .map(Path::to_path_buf),
            );
        }
    }
    out
}

fn describe(
    registry: &Registry,
    observer: &Observer,
    id: &str,
    meta: ContainerMeta,
) -> Option<Container> {
    let before = registry.get(id)?.meta;
    let c = registry.merge_meta(id, meta)?;
    if before != c.meta {
        tracing::info!(container = %id, name = ?c.meta.name, image = ?c.meta.image, labels = c.meta.labels.len(), "container described");
        observer(ContainerEvent::Described(c.clone()));
    }
    Some(c)
}

fn describe_loop(
    rx: Receiver<ContainerRef>,
    runtimes: &[Box<dyn Runtime>],
    registry: Arc<Registry>,
    observer: Observer,
    timeout: Duration,
) {
    for container in rx {
        let Some(rt) = runtimes.iter().find(|r| r.kind() == container.runtime) else {
            continue;
        };
        let start = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match rt.inspect(&container.id) {
                Ok(Some(meta)) => {
                    describe(&registry, &observer, &container.id, meta);
                    break;
                }
                Ok(None) => {
                    tracing::debug!(container = %container.id, "runtime does not know the container (yet)")
                }
                Err(e) => tracing::debug!(container = %container.id, error = %e, "inspect failed"),
            }
            if start.elapsed() + delay > timeout {
                tracing::warn!(container = %container.id, runtime = container.runtime.as_str(), waited = ?timeout, "no metadata from the runtime; the container is protected without a name");
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_dirs_of_overlay_options() {
        assert_eq!(
            layer_dirs("rw,lowerdir=/a/l/X:/a/l/Y,upperdir=/a/u,workdir=/a/w,index=off"),
            vec![
                PathBuf::from("/a/l/X"),
                PathBuf::from("/a/l/Y"),
                PathBuf::from("/a/u"),
                PathBuf::from("/a/w")
            ]
        );
        assert!(layer_dirs("rw,lowerdir=l/X:l/Y").is_empty());
    }
}
