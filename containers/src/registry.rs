//! The containers this agent protects, and the ones that recently went.
//!
//! Read by the control socket (`portcullis containers`) and, for
//! attribution, by whoever needs a container's metadata by id: a lookup is
//! one hash probe under a short lock, never a runtime call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use portcullis_schemas::{ContainerDiscovery as Discovery, ContainerRef};
use serde::{Deserialize, Serialize};

use crate::meta::ContainerMeta;

/// One protected container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub container: ContainerRef,
    pub meta: ContainerMeta,
    /// The process its root was marked through (its init when known).
    pub pid: u32,
    /// `st_dev` of its root overlay (the filesystem mark).
    pub root_device: u64,
    /// The one filesystem all its layers live on, if they share one: the
    /// overlay then reports the real inode numbers of its files (a file
    /// of a lower layer keeps its number in every container of the image,
    /// and through a copy up), so a verdict is keyed by this device
    /// instead of the overlay's ([`Registry::layer_device`]).
    #[serde(default)]
    pub layer_device: Option<u64>,
    /// Volumes with a mount mark, as `/proc/<pid>/root/<dest>`.
    pub volumes: Vec<PathBuf>,
    pub via: Discovery,
    /// Milliseconds since the epoch.
    pub protected_at_ms: u64,
    /// Set once the container is gone.
    pub gone_at_ms: Option<u64>,
    /// The agent's policies that select it, in order (filled when the
    /// agent lists its containers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<String, Container>,
    /// The labels of each running container, shared with every access.
    labels: HashMap<String, Labels>,
    gone: VecDeque<Container>,
}

/// A container's labels, shared (one allocation per container, not per
/// access).
pub type Labels = Arc<BTreeMap<String, String>>;

/// The registry: running containers, and a bounded list of recently gone
/// ones (their metadata still attributes late events).
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Root overlay device -> its layers' one device: read for every
    /// access, so under a lock of its own (`retire` holds `inner` while it
    /// reads `/proc`).
    layers: RwLock<HashMap<u64, u64>>,
    gone_capacity: usize,
}

impl Container {
    /// The container with every field its metadata fills.
    pub fn reference(&self) -> ContainerRef {
        let mut c = self.container.clone();
        self.meta.apply_to(&mut c);
        c
    }

    /// Its labels as the events carry them.
    pub fn label_pairs(&self) -> Vec<(String, String)> {
        self.meta
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Registry {
    /// Fills what `c` lacks from what the registry knows of container
    /// `c.id` (running or recently gone), and returns its labels if it
    /// runs: the hot path's attribution, one hash probe under a short lock.
    pub fn describe(&self, c: &mut ContainerRef) -> Option<Labels> {
        let inner = self.inner.lock();
        if let Some(k) = inner.running.get(&c.id) {
            k.meta.apply_to(c);
            return inner.labels.get(&c.id).cloned();
        }
        if let Some(g) = inner.gone.iter().rev().find(|g| g.container.id == c.id) {
            g.meta.apply_to(c);
        }
        None
    }

    pub fn new(gone_capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            layers: RwLock::new(HashMap::new()),
            gone_capacity: gone_capacity.max(1),
        }
    }

    /// `true` when container `id` is protected now.
    pub fn is_running(&self, id: &str) -> bool {
        self.inner.lock().running.contains_key(id)
    }

    /// Adds (or replaces) a running container.
    pub fn insert(&self, c: Container) {
        let mut inner = self.inner.lock();
        inner.gone.retain(|g| g.container.id != c.container.id);
        inner
            .labels
            .insert(c.container.id.clone(), Arc::new(c.meta.labels.clone()));
        let mut layers = self.layers.write();
        match c.layer_device {
            Some(d) => layers.insert(c.root_device, d),
            None => layers.remove(&c.root_device),
        };
        inner.running.insert(c.container.id.clone(), c);
    }

    /// The layers' device of the container overlay `device` (`st_dev` of
    /// a file), if `device` is the root of a protected container whose
    /// layers share one filesystem. One hash probe under a read lock.
    pub fn layer_device(&self, device: u64) -> Option<u64> {
        self.layers.read().get(&device).copied()
    }

    /// The container `id`, running or recently gone.
    pub fn get(&self, id: &str) -> Option<Container> {
        let inner = self.inner.lock();
        inner.running.get(id).cloned().or_else(|| {
            inner
                .gone
                .iter()
                .rev()
                .find(|g| g.container.id == id)
                .cloned()
        })
    }

    /// Merges `meta` into container `id`'s; returns the result.
    pub fn merge_meta(&self, id: &str, meta: ContainerMeta) -> Option<Container> {
        let mut inner = self.inner.lock();
        let Inner {
            running,
            labels,
            gone,
        } = &mut *inner;
        let c = match running.get_mut(id) {
            Some(c) => {
                c.meta.merge(meta);
                labels.insert(id.to_string(), Arc::new(c.meta.labels.clone()));
                c
            }
            None => {
                let g = gone.iter_mut().rev().find(|g| g.container.id == id)?;
                g.meta.merge(meta);
                g
            }
        };
        Some(c.clone())
    }

    /// Running containers, sorted by id.
    pub fn running(&self) -> Vec<Container> {
        let mut v: Vec<Container> = self.inner.lock().running.values().cloned().collect();
        v.sort_by(|a, b| a.container.id.cmp(&b.container.id));
        v
    }

    /// How many containers are running, and how many gone ones are kept.
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.running.len(), inner.gone.len())
    }

    /// Moves every running container for which `alive` says no to the
    /// gone list; returns them.
    pub fn retire(&self, alive: impl Fn(&Container) -> bool) -> Vec<Container> {
        let mut inner = self.inner.lock();
        let dead: Vec<String> = inner
            .running
            .values()
            .filter(|c| !alive(c))
            .map(|c| c.container.id.clone())
            .collect();
        let now = now_ms();
        let mut out = Vec::with_capacity(dead.len());
        for id in dead {
            inner.labels.remove(&id);
            if let Some(mut c) = inner.running.remove(&id) {
                let shared = inner
                    .running
                    .values()
                    .any(|o| o.root_device == c.root_device);
                if !shared {
                    self.layers.write().remove(&c.root_device);
                }
                c.gone_at_ms = Some(now);
                inner.gone.push_back(c.clone());
                out.push(c);
            }
        }
        while inner.gone.len() > self.gone_capacity {
            inner.gone.pop_front();
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_schemas::ContainerRuntime;

    fn c(id: &str) -> Container {
        Container {
            container: ContainerRef::new(ContainerRuntime::Podman, id),
            meta: ContainerMeta::default(),
            pid: 1,
            root_device: 7,
            layer_device: Some(65024),
            volumes: vec![],
            via: Discovery::Scan,
            protected_at_ms: 0,
            gone_at_ms: None,
            policies: Vec::new(),
        }
    }

    #[test]
    fn gone_containers_keep_their_metadata_within_a_bound() {
        let r = Registry::new(2);
        for id in ["a", "b", "c"] {
            r.insert(c(id));
        }
        r.merge_meta(
            "a",
            ContainerMeta {
                name: Some("web".into()),
                ..Default::default()
            },
        );
        assert_eq!(r.retire(|c| c.container.id != "a").len(), 1);
        assert_eq!(r.retire(|c| c.container.id == "c").len(), 1, "b");
        assert!(!r.is_running("a"));
        assert_eq!(r.get("a").unwrap().meta.name.as_deref(), Some("web"));
        let mut probe = ContainerRef::new(ContainerRuntime::Podman, "a");
        assert!(
            r.describe(&mut probe).is_none(),
            "no labels for a gone container"
        );
        assert_eq!(
            probe.name.as_deref(),
            Some("web"),
            "gone containers still attribute"
        );
        assert!(r.get("a").unwrap().gone_at_ms.is_some());
        r.insert(c("d"));
        r.retire(|c| c.container.id == "c");
        assert_eq!(r.sizes(), (1, 2), "the oldest gone entry was dropped");
        assert!(r.get("a").is_none());
        assert!(r.get("d").is_some());
    }

    #[test]
    fn layer_devices_follow_the_running_containers() {
        let r = Registry::new(4);
        r.insert(c("a"));
        assert_eq!(r.layer_device(7), Some(65024));
        assert_eq!(r.layer_device(8), None);
        let mut other = c("b");
        other.root_device = 8;
        other.layer_device = None;
        r.insert(other);
        assert_eq!(
            r.layer_device(8),
            None,
            "layers on several filesystems: no mapping"
        );
        r.retire(|c| c.container.id != "a");
        assert_eq!(r.layer_device(7), None, "gone with its container");
    }
}
