//! Load tests and bench helpers for portcullis.
//!
//! - `portcullis-floor`: the minimal fanotify responder (always ALLOW), the
//!   latency floor every measurement is compared against;
//! - `portcullis-openbench`: the open-path benchmark (no agent, floor,
//!   portcullis cold and warm, side by side in one run);
//! - `portcullis-pipebench`: scan throughput and decision latency through
//!   the real Enforcer with synthetic accesses (no kernel), embedded and
//!   over Kafka with one and two scanner services, in one run.
//!
//! The open pass, its statistics and the pipebench helpers ([`pipe`]) live
//! here so they can be tested.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

pub mod charts;
pub mod content;
pub mod error;
pub mod latency;
pub mod markdown;
pub mod pipe;
pub mod process;
pub mod report;

/// What one pass over the files measured.
#[derive(Debug, Clone, Serialize)]
pub struct PassStats {
    pub opens: u64,
    pub failures: u64,
    pub wall: Duration,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl PassStats {
    /// Mean wall time per open, in microseconds.
    pub fn per_open_us(&self) -> f64 {
        if self.opens == 0 {
            return 0.0;
        }
        self.wall.as_secs_f64() * 1e6 / self.opens as f64
    }
}

/// Opens, reads to the end and closes every file once, timing each.
pub fn open_pass(files: &[PathBuf], buf: &mut Vec<u8>) -> PassStats {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
    let mut failures = 0;
    let start = Instant::now();
    for f in files {
        let t = Instant::now();
        let ok = File::open(f).and_then(|mut h| {
            buf.clear();
            h.read_to_end(buf)
        });
        if ok.is_err() {
            failures += 1;
        }
        if let Some(h) = hist.as_mut() {
            let _ = h.record(
                u64::try_from(t.elapsed().as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
    }
    let wall = start.elapsed();
    let q = |p: f64| {
        hist.as_ref()
            .map(|h| h.value_at_quantile(p) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    PassStats {
        opens: files.len() as u64,
        failures,
        wall,
        p50_us: q(0.50),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: hist
            .as_ref()
            .map(|h| h.max() as f64 / 1000.0)
            .unwrap_or(0.0),
    }
}

/// Creates `count` files of `size` bytes (deterministic content) in `dir`.
pub fn make_files(dir: &Path, count: usize, size: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::with_capacity(count);
    let mut content = vec![0u8; size];
    for i in 0..count {
        for (j, b) in content.iter_mut().enumerate() {
            *b = ((i.wrapping_mul(31) + j.wrapping_mul(7)) % 251) as u8;
        }
        let p = dir.join(format!("f{i:06}.bin"));
        std::fs::write(&p, &content)?;
        out.push(p);
    }
    Ok(out)
}

/// Stops a child process: SIGTERM, then SIGKILL past `bound`. Returns how it
/// ended (`had exited: …`, its exit status, or `killed after N s`), and
/// whether it stopped on its own.
pub fn stop_child(mut child: std::process::Child, bound: Duration) -> (String, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (format!("had exited: {status}"), true);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let t = Instant::now();
    while t.elapsed() < bound {
        match child.try_wait() {
            Ok(Some(status)) => return (status.to_string(), true),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return (format!("wait failed: {e}"), false),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (format!("killed after {} s", bound.as_secs()), false)
}

/// The median of a non-empty list of values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_opens_every_file_and_counts_failures() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = make_files(dir.path(), 20, 4096).unwrap();
        assert_eq!(std::fs::read(&files[3]).unwrap().len(), 4096);
        files.push(dir.path().join("missing"));
        let s = open_pass(&files, &mut Vec::new());
        assert_eq!((s.opens, s.failures), (21, 1));
        assert!(s.p50_us > 0.0 && s.p50_us <= s.p99_us && s.p99_us <= s.max_us);
    }

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
