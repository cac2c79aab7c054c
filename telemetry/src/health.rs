//! `/healthz` and `/readyz`.
//!
//! - Alive (`/healthz` 200) while every registered [`Heartbeat`] has beaten
//!   within its allowed silence: the agent's Enforcer beats on each tick,
//!   the scanner service's and siem-export's poll loops on each poll. A
//!   stalled loop answers 503 and names itself.
//! - Ready (`/readyz` 200) once the process said so and while it is
//!   alive: the agent once its marks are in place, the scanner service and
//!   siem-export once their group assigned them partitions. Until then 503
//!   with what it waits for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The health of one process.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    ready: AtomicBool,
    waiting_for: Mutex<String>,
    beats: Mutex<Vec<Heartbeat>>,
}

/// One loop that must keep running.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    name: &'static str,
    max_silence: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last beat.
    last: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Cheap: one relaxed store.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn silence(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        now.saturating_duration_since(self.started)
            .saturating_sub(last)
    }
}

/// What a probe answers: HTTP status and a one-line body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    pub body: String,
}

impl Health {
    pub fn new(waiting_for: &str) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            waiting_for: Mutex::new(waiting_for.to_string()),
            beats: Mutex::new(Vec::new()),
        })
    }

    /// Registers a loop; it counts as beating now.
    pub fn heartbeat(&self, name: &'static str, max_silence: Duration) -> Heartbeat {
        let hb = Heartbeat {
            name,
            max_silence,
            started: self.started,
            last: Arc::new(AtomicU64::new(0)),
        };
        hb.beat();
        self.beats.lock().push(hb.clone());
        hb
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Not ready any more (stopping, or a group lost every partition),
    /// with what it waits for.
    pub fn set_not_ready(&self, waiting_for: &str) {
        *self.waiting_for.lock() = waiting_for.to_string();
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.live().ok
    }

    /// `/healthz`.
    pub fn live(&self) -> Probe {
        let now = Instant::now();
        let stalled: Vec<String> = self
            .beats
            .lock()
            .iter()
            .filter_map(|b| {
                let s = b.silence(now);
                (s > b.max_silence)
                    .then(|| format!("{} silent for {:.1}s", b.name, s.as_secs_f64()))
            })
            .collect();
        if stalled.is_empty() {
            Probe {
                ok: true,
                body: "ok".into(),
            }
        } else {
            Probe {
                ok: false,
                body: format!("stalled: {}", stalled.join(", ")),
            }
        }
    }

    /// `/readyz`.
    pub fn ready(&self) -> Probe {
        let live = self.live();
        if !live.ok {
            return live;
        }
        if self.ready.load(Ordering::Acquire) {
            Probe {
                ok: true,
                body: "ready".into(),
            }
        } else {
            Probe {
                ok: false,
                body: format!("not ready: {}", self.waiting_for.lock()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_said_and_while_alive() {
        let h = Health::new("marks not placed yet");
        assert!(h.live().ok);
        assert_eq!(h.ready().body, "not ready: marks not placed yet");
        h.set_ready();
        assert_eq!(
            h.ready(),
            Probe {
                ok: true,
                body: "ready".into()
            }
        );
        h.set_not_ready("stopping");
        assert_eq!(h.ready().body, "not ready: stopping");
    }

    #[test]
    fn a_silent_loop_is_not_alive() {
        let h = Health::new("x");
        let hb = h.heartbeat("enforcer", Duration::from_millis(30));
        h.set_ready();
        assert!(h.live().ok);
        std::thread::sleep(Duration::from_millis(80));
        let p = h.live();
        assert!(!p.ok);
        assert!(
            p.body.starts_with("stalled: enforcer silent for"),
            "{}",
            p.body
        );
        assert!(!h.ready().ok);
        assert!(!h.is_ready());
        hb.beat();
        assert!(h.live().ok);
        assert!(h.is_ready());
    }
}
