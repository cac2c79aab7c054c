//! The three scenarios. Each measures three targets in one run — the
//! baseline, the floor and portcullis — over the same files, phases and
//! load, and returns what it measured; [`crate::output`] turns that into
//! the report.
//!
//! - [`pipeline`]: synthetic accesses injected into the Enforcer (no
//!   kernel): the cost of the actors, the journal and the scans alone;
//! - [`node`]: real fanotify on a private tmpfs, with opener processes
//!   reading and executing files; with Kafka settings, it is the
//!   **cluster** scenario (the agent in distributed mode, N scanner
//!   services).

use std::path::PathBuf;
use std::time::Duration;

use crate::content::SizeMix;
use crate::error::{IoContext, Result};
use crate::fileset::FileSpec;
use crate::progress::ProgressMode;
use crate::report::{Params, Phase};

pub mod node;
pub mod pipeline;

/// What every scenario is given.
#[derive(Debug, Clone)]
pub struct Common {
    pub seed: u64,
    /// Bound on each phase of each target.
    pub duration: Duration,
    /// Bound on the operations of each phase of each target.
    pub max_ops: Option<u64>,
    pub files: usize,
    pub sizes: SizeMix,
    pub infected_fraction: f64,
    pub exec_fraction: f64,
    pub phases: Vec<Phase>,
    /// Operations per second, all workers together; flat out if `None`.
    pub rate: Option<f64>,
    /// The agent's decision deadline.
    pub deadline: Duration,
    /// An operation slower than this is a hung open.
    pub watchdog: Duration,
    pub progress: ProgressMode,
}

impl Common {
    /// The watchdog bound by default: twice the deadline, plus slack for a
    /// busy machine.
    pub fn default_watchdog(deadline: Duration) -> Duration {
        deadline * 2 + Duration::from_secs(5)
    }

    /// Width of a throughput-timeline interval: about a hundred points per
    /// phase, between 100 ms and 2 s.
    pub fn interval(&self) -> Duration {
        (self.duration / 100).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    pub fn file_spec(&self) -> FileSpec {
        FileSpec {
            files: self.files,
            sizes: self.sizes.clone(),
            infected_fraction: self.infected_fraction,
            exec_fraction: self.exec_fraction,
            seed: self.seed,
        }
    }

    /// The report's parameters (the scenario fills in its own fields).
    pub fn params(&self) -> Params {
        Params {
            files: self.files as u64,
            sizes: self.sizes.entries().to_vec(),
            infected_fraction: self.infected_fraction,
            exec_fraction: self.exec_fraction,
            phases: self.phases.clone(),
            duration_s: self.duration.as_secs_f64(),
            max_ops: self.max_ops,
            rate: self.rate,
            openers: 0,
            threads_per_opener: 0,
            window: None,
            deadline_s: self.deadline.as_secs_f64(),
            watchdog_s: self.watchdog.as_secs_f64(),
            kafka: None,
        }
    }
}

/// A fresh work directory (under the system's temporary directory, never
/// on a protected mount) with an empty subdirectory `sub`.
pub fn work_dir(sub: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let work = tempfile::Builder::new()
        .prefix("portcullis-loadtest-")
        .tempdir()
        .ctx(|| "creating the work directory".to_string())?;
    let dir = work.path().join(sub);
    std::fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
    Ok((work, dir))
}

/// One line about a finished phase, for the progress output.
pub fn phase_line(target: &str, run: &crate::report::PhaseRun) -> String {
    let r = run.report();
    format!(
        "{target:>10} {:<4}: {:>8} ops in {:>6.2} s = {:>9.0}/s; p50 {:>9.1} µs, p99 {:>9.1} µs, max {:>10.1} µs; denied {} (infected {}/{}), errors {}, hung {}{}",
        r.name.as_str(),
        r.ops,
        r.wall_s,
        r.throughput_ops_s,
        r.latency_us.p50_us,
        r.latency_us.p99_us,
        r.latency_us.max_us,
        r.denied,
        r.infected_denied,
        r.infected_total,
        r.errors,
        r.hung_opens,
        r.aborted
            .as_ref()
            .map_or(String::new(), |a| format!("; ABORTED: {a}"))
    )
}
