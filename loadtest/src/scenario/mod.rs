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

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::content::SizeMix;
use crate::error::{IoContext, Result};
use crate::fileset::FileSpec;
use crate::progress::{Progress, ProgressMode};
use crate::report::{Params, Phase, PhaseRun, TargetName};

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
    /// Untimed accesses to extra files before each target's phases.
    pub warmup: usize,
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
            warmup: self.warmup,
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
            warmup: self.warmup as u64,
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

/// One pass over the files, as a scenario's runner is asked for it.
#[derive(Debug, Clone)]
pub struct Pass<'a> {
    /// What the report calls it.
    pub phase: Phase,
    /// `target/phase`, for the progress display and file names.
    pub label: String,
    /// A cold pass: the files to access once (indices into the set).
    /// `None`: a warm pass, drawing from `pool`.
    pub cold: Option<Range<usize>>,
    pub pool: &'a [u32],
    pub max_ops: Option<u64>,
}

/// The phases of one target, in order: an untimed warm-up pass over the
/// extra files, an untimed cold pass when only the warm phase is asked
/// for, then the measured phases; a warm phase draws from the files the
/// cold pass reached. Stops at the first aborted pass (reported, as
/// `warmup` if untimed). Returns the passes to report and whether the run
/// must stop.
pub async fn run_phases(
    c: &Common,
    target: TargetName,
    progress: &Progress,
    mut pass: impl AsyncFnMut(Pass<'_>) -> Result<PhaseRun>,
) -> Result<(Vec<PhaseRun>, bool)> {
    let mut out = vec![];
    let mut untimed = vec![];
    if c.warmup > 0 {
        untimed.push(("warm-up", c.files..c.files + c.warmup, None));
    }
    if c.phases == [Phase::Warm] {
        untimed.push(("prewarm", 0..c.files, c.max_ops));
    }
    let mut seen: Vec<u32> = vec![];
    for (label, range, max_ops) in untimed {
        let run = pass(Pass {
            phase: Phase::Warmup,
            label: format!("{target}/{label}"),
            cold: Some(range.clone()),
            pool: &[],
            max_ops,
        })
        .await?;
        if run.aborted.is_some() {
            out.push(run);
            return Ok((out, true));
        }
        if range.start == 0 {
            seen = run.accessed;
        }
    }
    let all: Vec<u32> = (0..u32::try_from(c.files).unwrap_or(u32::MAX)).collect();
    for &phase in &c.phases {
        let pool = if seen.is_empty() { &all } else { &seen };
        let mut run = pass(Pass {
            phase,
            label: format!("{target}/{phase}"),
            cold: (phase == Phase::Cold).then_some(0..c.files),
            pool,
            max_ops: c.max_ops,
        })
        .await?;
        progress.say(&phase_line(target.as_str(), &run));
        let aborted = run.aborted.is_some();
        if phase == Phase::Cold {
            seen = std::mem::take(&mut run.accessed);
        }
        out.push(run);
        if aborted {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// One line about a finished phase, for the progress output.
pub fn phase_line(target: &str, run: &crate::report::PhaseRun) -> String {
    let r = run.report();
    format!(
        "{target:>10} {:<4}: {:>8} ops in {:>6.2} s = {:>9.0}/s; p50 {:>9.1} µs, p99 {:>9.1} µs, max {:>10.1} µs; denied {} (infected {}/{}), errors {}, hung {}{}",
        r.name.as_str(),
        r.counts.ops,
        r.wall_s,
        r.throughput_ops_s,
        r.latency_us.p50_us,
        r.latency_us.p99_us,
        r.latency_us.max_us,
        r.counts.denied,
        r.counts.infected_denied,
        r.counts.infected_total,
        r.counts.errors,
        r.hung_opens,
        r.aborted
            .as_ref()
            .map_or(String::new(), |a| format!("; ABORTED: {a}"))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn common(phases: Vec<Phase>, warmup: usize) -> Common {
        Common {
            seed: 1,
            duration: Duration::from_secs(1),
            max_ops: Some(7),
            files: 10,
            sizes: "4k".parse().unwrap(),
            infected_fraction: 0.0,
            exec_fraction: 0.0,
            phases,
            rate: None,
            deadline: Duration::from_secs(1),
            watchdog: Duration::from_secs(3),
            warmup,
            progress: ProgressMode::Never,
        }
    }

    /// Runs the phases with a fake pass that "accesses" the first half of
    /// a cold range, and aborts the pass named `abort`.
    fn passes(c: &Common, abort: &str) -> (Vec<String>, Vec<PhaseRun>, bool) {
        let progress = Progress::new(ProgressMode::Never);
        let mut log = vec![];
        let (runs, stop) = futures::executor::block_on(run_phases(
            c,
            TargetName::Portcullis,
            &progress,
            async |p: Pass<'_>| {
                log.push(format!(
                    "{} {:?} pool={} max={:?}",
                    p.label,
                    p.cold,
                    p.pool.len(),
                    p.max_ops
                ));
                let mut run = PhaseRun::new(p.phase, None, Duration::from_secs(1));
                if let Some(r) = &p.cold {
                    run.accessed = (r.start as u32..(r.start + r.len() / 2) as u32).collect();
                }
                if p.label.ends_with(abort) {
                    run.aborted = Some("hung".into());
                }
                Ok(run)
            },
        ))
        .unwrap();
        (log, runs, stop)
    }

    #[test]
    fn warm_up_then_cold_then_warm_from_what_cold_reached() {
        let (log, runs, stop) = passes(&common(vec![Phase::Cold, Phase::Warm], 3), "none");
        assert_eq!(
            log,
            [
                "portcullis/warm-up Some(10..13) pool=0 max=None",
                "portcullis/cold Some(0..10) pool=10 max=Some(7)",
                "portcullis/warm None pool=5 max=Some(7)",
            ]
        );
        assert!(!stop);
        let names: Vec<Phase> = runs.iter().map(|r| r.phase).collect();
        assert_eq!(
            names,
            [Phase::Cold, Phase::Warm],
            "untimed passes are not reported"
        );
    }

    #[test]
    fn a_warm_only_run_has_an_untimed_cold_pass_first() {
        let (log, runs, _) = passes(&common(vec![Phase::Warm], 0), "none");
        assert_eq!(
            log,
            [
                "portcullis/prewarm Some(0..10) pool=0 max=Some(7)",
                "portcullis/warm None pool=5 max=Some(7)",
            ]
        );
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn an_aborted_pass_ends_the_target_and_is_reported() {
        let (log, runs, stop) = passes(&common(vec![Phase::Cold, Phase::Warm], 3), "warm-up");
        assert_eq!(log.len(), 1);
        assert!(stop);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].phase, Phase::Warmup);
        let (log, runs, stop) = passes(&common(vec![Phase::Cold, Phase::Warm], 0), "cold");
        assert_eq!((log.len(), runs.len(), stop), (1, 1, true));
    }
}
