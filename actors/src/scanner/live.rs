//! The ruleset in force, swapped atomically by a reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::rules::Ruleset;

/// The ruleset every scanner of a process uses, and its generation.
///
/// A reload compiles the new ruleset off the hot path, then
/// [`publish`](Self::publish)es it: one pointer swap under a write lock
/// held for nothing else, so no scan ever waits on a compile. Engines
/// compare the generation (one atomic load) before each scan and take the
/// new ruleset when it moved; a scan already running finishes with the
/// ruleset it started with, and its verdict says which one that was.
#[derive(Clone)]
pub struct LiveRules(Arc<Inner>);

struct Inner {
    current: RwLock<Arc<Ruleset>>,
    generation: AtomicU64,
}

impl LiveRules {
    pub fn new(ruleset: Arc<Ruleset>) -> Self {
        Self(Arc::new(Inner {
            current: RwLock::new(ruleset),
            generation: AtomicU64::new(0),
        }))
    }

    /// The ruleset in force.
    pub fn current(&self) -> Arc<Ruleset> {
        self.0.current.read().clone()
    }

    /// Bumped by every [`publish`](Self::publish).
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Puts `ruleset` in force; returns the one it replaces.
    pub fn publish(&self, ruleset: Arc<Ruleset>) -> Arc<Ruleset> {
        let old = std::mem::replace(&mut *self.0.current.write(), ruleset);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        old
    }
}

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRules")
            .field("ruleset", self.current().version())
            .field("generation", &self.generation())
            .finish()
    }
}
