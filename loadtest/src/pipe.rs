//! Shared pieces of `portcullis-pipebench`: synthetic content, the
//! in-flight window, latency summaries and log parsing. Kept here (not in
//! the binary) so they are unit-tested.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Fills `buf` with bytes that depend on `(seed, n)`: every request gets
/// distinct content (so no verdict cache can answer), cheaply (splitmix64).
pub fn fill_content(buf: &mut [u8], seed: u64, n: u64) {
    let mut state = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = next().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
    // The counter itself, in clear, at the start: distinct even if two
    // pseudo-random streams ever collided.
    let tag = n.to_le_bytes();
    let k = tag.len().min(buf.len());
    buf[..k].copy_from_slice(&tag[..k]);
}

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

/// A latency histogram in nanoseconds (1 ns .. 10 min, 3 significant digits).
pub fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).ok()
}

/// Records `d` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// Percentiles of one phase, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max() as f64 / 1000.0,
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// When request `i` of a paced phase is due: `start + i / rate`.
pub fn due(start: Instant, i: u64, rate: f64) -> Instant {
    if rate <= 0.0 || !rate.is_finite() {
        return start;
    }
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// Removes ANSI escape sequences (coloured log lines).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The last `name=<integer>` field in a log text (ANSI colours ignored).
pub fn last_field(log: &str, name: &str) -> Option<u64> {
    let clean = strip_ansi(log);
    let pat = format!("{name}=");
    let mut found = None;
    for (i, _) in clean.match_indices(&pat) {
        let before_ok = i == 0
            || !clean[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !before_ok {
            continue;
        }
        let digits: String = clean[i + pat.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(v) = digits.parse() {
            found = Some(v);
        }
    }
    found
}

/// `a / b`, or NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn content_is_distinct_per_request_and_deterministic() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        fill_content(&mut a, 7, 1);
        fill_content(&mut b, 7, 2);
        assert_ne!(a, b);
        let mut c = vec![0u8; 4096];
        fill_content(&mut c, 7, 1);
        assert_eq!(a, c);
        fill_content(&mut c, 8, 1);
        assert_ne!(a, c);
        // Odd sizes and tiny buffers work.
        let mut d = vec![0u8; 13];
        fill_content(&mut d, 1, 1);
        let mut e = vec![0u8; 3];
        fill_content(&mut e, 1, 1);
        assert_eq!(e, [1, 0, 0]);
    }

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

    #[test]
    fn latency_percentiles_are_ordered() {
        let mut h = latency_histogram().unwrap();
        assert_eq!(Latency::of(&h), Latency::default());
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 2.0, "{l:?}");
        assert!(l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.p999_us);
        assert!(l.p999_us <= l.max_us && (l.max_us - 1000.0).abs() < 2.0);
    }

    #[test]
    fn paced_requests_are_due_at_regular_times() {
        let t = Instant::now();
        assert_eq!(due(t, 0, 1000.0), t);
        assert_eq!(due(t, 1500, 1000.0), t + Duration::from_millis(1500));
        assert_eq!(due(t, 5, 0.0), t);
    }

    #[test]
    fn fields_are_read_from_coloured_log_lines() {
        let plain = "INFO portcullis: scanner service stopped scanned=1234 dead_lettered=0";
        assert_eq!(last_field(plain, "scanned"), Some(1234));
        assert_eq!(last_field(plain, "dead_lettered"), Some(0));
        let coloured =
            "\u{1b}[32m INFO\u{1b}[0m \u{1b}[3mscanned\u{1b}[0m\u{1b}[2m=\u{1b}[0m77 \u{1b}[3mrescanned\u{1b}[0m\u{1b}[2m=\u{1b}[0m5";
        assert_eq!(last_field(coloured, "scanned"), Some(77));
        assert_eq!(last_field("nothing here", "scanned"), None);
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m"), "red");
    }

    #[test]
    fn ratios_of_zero_are_nan() {
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(ratio(3.0, 2.0), 1.5);
    }
}
