//! Histograms with fixed buckets, kept in atomic counters.
//!
//! metrics-exporter-prometheus keeps every observation of a histogram in a
//! lock-free bucket list until its upkeep, and each observation pins the
//! process-wide crossbeam epoch. sled uses that same epoch, so a pinning
//! thread also runs sled's deferred frees: on the Enforcer's thread that
//! cost a cold access 20-40 % of its throughput (BENCHMARKS.md). Here an
//! observation is three relaxed atomic adds, nothing is allocated, and the
//! listener renders the buckets at scrape time next to the recorder's own
//! output.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::catalog::Metric;

struct Inner {
    metric: &'static Metric,
    labels: Vec<(&'static str, String)>,
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is +Inf.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum, as f64 bits.
    sum: AtomicU64,
}

static REGISTRY: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

/// Observations are dropped while set (benches compare on and off in one
/// process with the same handles).
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Drops (true) or counts (false) observations from now on.
pub fn pause(paused: bool) {
    PAUSED.store(paused, Ordering::Relaxed);
}

/// A handle to one labelled series of a catalog histogram: a no-op when
/// metrics are off at its creation (no listener).
#[derive(Clone, Default)]
pub struct Histogram(Option<Arc<Inner>>);

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram")
            .field(&self.0.as_ref().map(|i| i.metric.name))
            .finish()
    }
}

impl Histogram {
    /// The series of `metric` with `labels` (the catalog's label names, in
    /// its order). Taken once, used for every observation.
    pub fn new(metric: &'static Metric, labels: &[(&'static str, &str)]) -> Histogram {
        if !crate::metrics_on() {
            return Histogram(None);
        }
        Histogram(Some(register(metric, labels)))
    }

    /// Counts one observation (seconds, bytes or a count, as the metric's
    /// name says).
    #[inline]
    pub fn record(&self, value: f64) {
        let Some(h) = &self.0 else { return };
        if PAUSED.load(Ordering::Relaxed) {
            return;
        }
        let i = h
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(h.bounds.len());
        h.buckets[i].fetch_add(1, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
        let _ = h
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + value).to_bits())
            });
    }
}

fn register(metric: &'static Metric, labels: &[(&'static str, &str)]) -> Arc<Inner> {
    let labels: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
    let mut reg = REGISTRY.lock();
    if let Some(h) = reg
        .iter()
        .find(|h| h.metric.name == metric.name && h.labels == labels)
    {
        return h.clone();
    }
    let bounds = metric.buckets.map(|b| b.bounds()).unwrap_or(&[]);
    let h = Arc::new(Inner {
        metric,
        labels,
        bounds,
        buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
        count: AtomicU64::new(0),
        sum: AtomicU64::new(0f64.to_bits()),
    });
    reg.push(h.clone());
    h
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends every registered histogram in the Prometheus text format.
pub fn render(out: &mut String) {
    let reg = REGISTRY.lock();
    let mut names: Vec<&'static str> = reg.iter().map(|h| h.metric.name).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let series: Vec<&Arc<Inner>> = reg.iter().filter(|h| h.metric.name == name).collect();
        let Some(first) = series.first() else {
            continue;
        };
        let _ = writeln!(out, "# HELP {name} {}", first.metric.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for h in series {
            let labels: String = h
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\",", escape(v)))
                .collect();
            let mut cumulative = 0u64;
            for (i, b) in h.buckets.iter().enumerate() {
                cumulative += b.load(Ordering::Relaxed);
                let le = match h.bounds.get(i) {
                    Some(bound) => bound.to_string(),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
            }
            let bare = labels.trim_end_matches(',');
            let braces = if bare.is_empty() {
                String::new()
            } else {
                format!("{{{bare}}}")
            };
            let _ = writeln!(
                out,
                "{name}_sum{braces} {}",
                f64::from_bits(h.sum.load(Ordering::Relaxed))
            );
            let _ = writeln!(
                out,
                "{name}_count{braces} {}",
                h.count.load(Ordering::Relaxed)
            );
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram(Some(register(&catalog::SCAN_SIZE, &[])));
        for v in [10.0, 2048.0, 2048.0, 5e9] {
            h.record(v);
        }
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains("# TYPE portcullis_scan_size_bytes histogram"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_scan_size_bytes_bucket{le=\"1024\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_scan_size_bytes_bucket{le=\"16384\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_scan_size_bytes_bucket{le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_scan_size_bytes_count 4\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_scan_size_bytes_sum 5000004106\n"),
            "{out}"
        );
        let l = Histogram(Some(register(
            &catalog::DECISION_LATENCY,
            &[("reason", "verdict")],
        )));
        l.record(0.0003);
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains(
                "portcullis_decision_latency_seconds_bucket{reason=\"verdict\",le=\"0.0005\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("portcullis_decision_latency_seconds_count{reason=\"verdict\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn off_without_a_listener() {
        let h = Histogram::new(&catalog::SCAN_SIZE, &[]);
        assert!(h.0.is_none());
        h.record(1.0);
    }
}
