//! Latency histograms (hdrhistogram, nanoseconds) and their summaries.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value a histogram holds: 10 minutes, in nanoseconds.
const MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds (1 ns .. 10 min, 3 significant
/// digits). `None` only if hdrhistogram refuses these constant bounds.
pub fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).ok()
}

/// Records `d` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// Adds `from` into `into` (values beyond the range are clamped by the
/// histograms' identical bounds, so this cannot fail in practice).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

/// Writes a histogram in hdrhistogram's V2 format (uncompressed).
pub fn write_histogram(h: &Histogram<u64>, out: &mut impl Write) -> std::io::Result<()> {
    V2Serializer::new()
        .serialize(h, out)
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("serializing a histogram: {e:?}")))
}

/// Reads a histogram written by [`write_histogram`].
pub fn read_histogram(input: &mut impl Read) -> std::io::Result<Histogram<u64>> {
    Deserializer::new()
        .deserialize(input)
        .map_err(|e| std::io::Error::other(format!("reading a histogram: {e:?}")))
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
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

/// The percentiles a latency-distribution curve is drawn through: 0 to
/// 99.999 %, denser towards the tail (hdrhistogram's "nines" scale).
pub const CURVE_PERCENTILES: [f64; 25] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0,
    98.0, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999,
];

/// One point of a latency-distribution curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    /// 0 ..= 100.
    pub percentile: f64,
    pub latency_us: f64,
}

/// The latency at each of [`CURVE_PERCENTILES`] (those the sample count
/// can resolve), then the maximum at 100 %.
pub fn curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return vec![];
    }
    let n = h.len() as f64;
    let mut out: Vec<CurvePoint> = CURVE_PERCENTILES
        .iter()
        // A percentile needs at least one sample beyond it to mean much.
        .filter(|p| (1.0 - **p / 100.0) * n >= 1.0 - 1e-6)
        .map(|p| CurvePoint {
            percentile: *p,
            latency_us: h.value_at_quantile(p / 100.0) as f64 / 1000.0,
        })
        .collect();
    out.push(CurvePoint {
        percentile: 100.0,
        latency_us: h.max() as f64 / 1000.0,
    });
    out
}

/// When operation `i` of a paced stream is due: `start + i / rate`.
pub fn due(start: Instant, i: u64, rate: f64) -> Instant {
    if rate <= 0.0 || !rate.is_finite() {
        return start;
    }
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// How long before a due time [`wait_until`] stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(150);

/// Above this rate a paced loop does not spin ([`wait_until_sleeping`]):
/// with due times less than 1 ms apart the spin would take most of a core
/// from what is measured (on a 2-core machine, half of it).
pub const SPIN_MAX_RATE: f64 = 1000.0;

/// Lowers this thread's timer slack to 1 ns (from the default 50 µs), so
/// that a paced worker's sleeps end when asked: otherwise every paced
/// operation would start late and the lateness, counted as latency (see
/// [`due`]), would be the harness's, not the system's.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only
    // the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Waits until `t`: sleeps until shortly before it, then spins, so that
/// a paced operation starts on time. Returns early (false) as soon as
/// `stop()` says so; it is asked at least every 50 ms.
pub fn wait_until(t: Instant, stop: impl Fn() -> bool) -> bool {
    wait_with_spin(t, stop, SPIN)
}

/// [`wait_until`] without the spin: sleeps until `t` (1 ns timer slack,
/// see [`precise_timers`]); the wake-up comes a few tens of µs late, and
/// that lateness counts in the operation's latency. For rates above
/// [`SPIN_MAX_RATE`].
pub fn wait_until_sleeping(t: Instant, stop: impl Fn() -> bool) -> bool {
    wait_with_spin(t, stop, Duration::ZERO)
}

fn wait_with_spin(t: Instant, stop: impl Fn() -> bool, spin: Duration) -> bool {
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        let left = t - now;
        if left > spin {
            std::thread::sleep((left - spin).min(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// `a / b`, or `None` when either is not a positive finite number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0).then(|| a / b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    fn curves_rise_and_end_at_the_maximum() {
        let mut h = latency_histogram().unwrap();
        assert!(curve(&h).is_empty());
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let c = curve(&h);
        // 1000 samples resolve up to 99.9 %, not 99.95 %.
        assert_eq!(c.iter().rev().nth(1).unwrap().percentile, 99.9);
        assert_eq!(c.last().unwrap().percentile, 100.0);
        assert!(c.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
    }

    #[test]
    fn histograms_survive_a_round_trip_and_merge() {
        let mut a = latency_histogram().unwrap();
        record(&mut a, Duration::from_micros(10));
        record(&mut a, Duration::from_millis(3));
        let mut buf = vec![];
        write_histogram(&a, &mut buf).unwrap();
        let b = read_histogram(&mut buf.as_slice()).unwrap();
        assert_eq!(Latency::of(&a), Latency::of(&b));
        let mut c = latency_histogram().unwrap();
        merge(&mut c, &a);
        merge(&mut c, &b);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn paced_operations_are_due_at_regular_times() {
        let t = Instant::now();
        assert_eq!(due(t, 0, 1000.0), t);
        assert_eq!(due(t, 1500, 1000.0), t + Duration::from_millis(1500));
        assert_eq!(due(t, 5, 0.0), t);
    }

    #[test]
    fn waits_end_on_time_or_when_stopped() {
        precise_timers();
        let t = Instant::now() + Duration::from_millis(20);
        assert!(wait_until(t, || false));
        let t = Instant::now() + Duration::from_millis(2);
        assert!(wait_until_sleeping(t, || false));
        assert!(Instant::now() >= t);
        assert!(Instant::now() >= t);
        let far = Instant::now() + Duration::from_secs(60);
        let start = Instant::now();
        assert!(!wait_until(far, || start.elapsed() > Duration::from_millis(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn ratios_need_two_positive_numbers() {
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(0.0, 1.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }
}
