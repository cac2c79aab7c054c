//! The in-flight bound of the pipeline scenario's injector.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bounds the requests in flight: `acquire` blocks while `limit` are
/// outstanding; every answer `release`s one.
#[derive(Debug, Default)]
pub struct Window {
    state: Mutex<WindowState>,
    changed: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct WindowState {
    sent: u64,
    done: u64,
}

impl Window {
    /// Waits until fewer than `limit` are in flight (or `until` passes),
    /// then counts one more sent. Returns false on timeout (nothing counted).
    pub fn acquire(&self, limit: u64, until: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        while s.sent.saturating_sub(s.done) >= limit.max(1) {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match self.changed.wait_timeout(s, until - now) {
                Ok((g, _)) => s = g,
                Err(_) => return false,
            }
        }
        s.sent += 1;
        true
    }

    /// Takes back one `acquire` whose request was never sent.
    pub fn unsend(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.sent = s.sent.saturating_sub(1);
        }
        self.changed.notify_all();
    }

    /// One answer arrived.
    pub fn release(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.done += 1;
        }
        self.changed.notify_all();
    }

    /// (sent, done).
    pub fn counts(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.sent, s.done))
            .unwrap_or((0, 0))
    }

    /// Waits until every sent request is answered or `until` passes;
    /// returns whether all were.
    pub fn wait_all(&self, until: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        while s.done < s.sent {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match self
                .changed
                .wait_timeout(s, (until - now).min(Duration::from_millis(100)))
            {
                Ok((g, _)) => s = g,
                Err(_) => return false,
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_window_bounds_requests_in_flight() {
        let w = Arc::new(Window::default());
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(w.acquire(2, soon));
        assert!(w.acquire(2, soon));
        assert!(!w.acquire(2, soon), "a third must wait and time out");
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w2.release();
        });
        assert!(w.acquire(2, Instant::now() + Duration::from_secs(5)));
        t.join().unwrap();
        assert_eq!(w.counts(), (3, 1));
        assert!(!w.wait_all(Instant::now() + Duration::from_millis(10)));
        w.release();
        w.unsend();
        assert!(w.wait_all(Instant::now() + Duration::from_millis(10)));
    }
}
