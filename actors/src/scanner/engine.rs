//! [`ScanEngine`]: one thread's YARA-X scanner and read buffer.

use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_schemas::{MetaValue, RuleMatch, RulesetVersion, SkipReason, Verdict, VerdictClass};
use sha2::{Digest, Sha256};

use super::config::ScanLimits;
use super::content::{self, ScanContent};
use super::rules::Ruleset;

/// After a scan that needed a read buffer larger than this, the buffer is
/// released rather than kept for the next scan, so one huge file does not pin
/// its size in memory for the life of the worker.
const RETAINED_BUFFER: usize = 16 * 1024 * 1024;

/// The result of one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOutcome {
    pub verdict: Verdict,
    /// The sha256 of the content scanned; `None` if it was not read (too
    /// large, or an error before reading).
    pub sha256: Option<[u8; 32]>,
    /// The size of the object in bytes: the bytes scanned, or the size seen
    /// by `fstat` when the object was skipped without reading it.
    pub size: u64,
    /// The ruleset the verdict was issued with.
    pub ruleset: RulesetVersion,
    /// Time spent reading, hashing and scanning.
    pub duration: Duration,
}

/// A reusable scanner for one thread: owns a `yara_x::Scanner<'static>`
/// (over the leaked rules of its [`Ruleset`]) and a read buffer it reuses
/// from scan to scan. One per worker thread; it scans one object at a time.
pub struct ScanEngine {
    ruleset: Arc<Ruleset>,
    limits: ScanLimits,
    scanner: yara_x::Scanner<'static>,
    buf: Vec<u8>,
    metrics: ScanMetrics,
}

/// `portcullis_scans_total`, `portcullis_scan_duration_seconds` and
/// `portcullis_scan_size_bytes`, wherever the engine runs (the agent's
/// scanner threads, a scanner service).
struct ScanMetrics {
    scans: [metrics::Counter; VerdictClass::ALL.len()],
    duration: [portcullis_telemetry::Histogram; VerdictClass::ALL.len()],
    size: portcullis_telemetry::Histogram,
}

impl ScanMetrics {
    fn new() -> Self {
        use portcullis_telemetry::catalog;
        Self {
            scans: VerdictClass::ALL
                .map(|c| metrics::counter!(catalog::SCANS.name, "class" => c.as_str())),
            duration: VerdictClass::ALL.map(|c| {
                portcullis_telemetry::Histogram::new(
                    &catalog::SCAN_DURATION,
                    &[("class", c.as_str())],
                )
            }),
            size: portcullis_telemetry::Histogram::new(&catalog::SCAN_SIZE, &[]),
        }
    }
}

impl ScanEngine {
    pub fn new(ruleset: Arc<Ruleset>, limits: ScanLimits) -> Self {
        let mut scanner = yara_x::Scanner::new(ruleset.rules());
        if !limits.timeout.is_zero() {
            scanner.set_timeout(limits.timeout);
        }
        Self {
            ruleset,
            limits,
            scanner,
            buf: Vec::new(),
            metrics: ScanMetrics::new(),
        }
    }

    pub fn ruleset(&self) -> &Arc<Ruleset> {
        &self.ruleset
    }

    pub fn limits(&self) -> ScanLimits {
        self.limits
    }

    /// Scans `content` against the ruleset, within the limits.
    pub fn scan(&mut self, content: &ScanContent) -> ScanOutcome {
        let started = Instant::now();
        let (verdict, sha256, size) = match content {
            ScanContent::Bytes(bytes) => self.scan_bytes(bytes),
            ScanContent::Fd(fd) => self.scan_fd(fd.as_fd(), &"event fd"),
        };
        self.outcome(started, verdict, sha256, size)
    }

    /// Opens `path` and scans it, for one-shot scans from the CLI. The path
    /// is opened read-only and non-blocking (a FIFO must not hang the scan);
    /// anything but a regular file is an error. Never used for intercepted
    /// accesses: those are read through the event fd.
    pub fn scan_path(&mut self, path: &Path) -> ScanOutcome {
        let started = Instant::now();
        let what = format!("`{}`", path.display());
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path);
        let (verdict, sha256, size) = match opened {
            Ok(file) => self.scan_fd(file.as_fd(), &what),
            Err(err) => (error(format!("cannot open {what}: {err}")), None, 0),
        };
        self.outcome(started, verdict, sha256, size)
    }

    fn outcome(
        &self,
        started: Instant,
        verdict: Verdict,
        sha256: Option<[u8; 32]>,
        size: u64,
    ) -> ScanOutcome {
        let duration = started.elapsed();
        let class = verdict.class() as usize;
        self.metrics.scans[class].increment(1);
        self.metrics.duration[class].record(duration.as_secs_f64());
        self.metrics.size.record(size as f64);
        ScanOutcome {
            verdict,
            sha256,
            size,
            ruleset: self.ruleset.version().clone(),
            duration,
        }
    }

    fn too_large(&self, size: u64) -> Option<Verdict> {
        let limit = self.limits.max_size;
        (limit > 0 && size > limit).then_some(Verdict::Skipped {
            reason: SkipReason::TooLarge { size, limit },
        })
    }

    fn scan_bytes(&mut self, bytes: &[u8]) -> (Verdict, Option<[u8; 32]>, u64) {
        let size = bytes.len() as u64;
        if let Some(skipped) = self.too_large(size) {
            return (skipped, None, size);
        }
        let sha256 = Sha256::digest(bytes).into();
        let verdict = run_rules(&mut self.scanner, bytes);
        (verdict, Some(sha256), size)
    }

    /// Reads and scans an fd; `what` names it in error messages.
    fn scan_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        what: &dyn fmt::Display,
    ) -> (Verdict, Option<[u8; 32]>, u64) {
        let stat = match content::fstat(fd) {
            Ok(stat) => stat,
            Err(err) => return (error(format!("cannot stat {what}: {err}")), None, 0),
        };
        if !stat.regular {
            return (
                error(format!("cannot scan {what}: not a regular file")),
                None,
                stat.size,
            );
        }
        if let Some(skipped) = self.too_large(stat.size) {
            return (skipped, None, stat.size);
        }

        // Read one byte past the limit, to notice a file that grew over it
        // since `fstat`.
        let cap = (self.limits.max_size > 0).then(|| self.limits.max_size.saturating_add(1));
        let read = content::read_to_buf(fd, &mut self.buf, cap, stat.size);
        let result = match read {
            Err(err) => (error(format!("cannot read {what}: {err}")), None, stat.size),
            Ok(n) => {
                let size = n as u64;
                if let Some(skipped) = self.too_large(size) {
                    (skipped, None, size.max(stat.size))
                } else {
                    let data = self.buf.get(..n).unwrap_or_default();
                    let sha256 = Sha256::digest(data).into();
                    let verdict = run_rules(&mut self.scanner, data);
                    (verdict, Some(sha256), size)
                }
            }
        };
        if self.buf.len() > RETAINED_BUFFER {
            self.buf = Vec::new();
        }
        result
    }
}

impl fmt::Debug for ScanEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanEngine")
            .field("ruleset", self.ruleset.version())
            .field("limits", &self.limits)
            .field("buffer", &self.buf.len())
            .finish_non_exhaustive()
    }
}

fn error(message: String) -> Verdict {
    Verdict::Error { message }
}

/// Runs the rules over `data` and turns the result into a verdict.
fn run_rules(scanner: &mut yara_x::Scanner<'static>, data: &[u8]) -> Verdict {
    let started = Instant::now();
    let results = match scanner.scan(data) {
        Ok(results) => results,
        Err(yara_x::errors::ScanError::Timeout) => {
            let after_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            return Verdict::Skipped {
                reason: SkipReason::ScanTimeout { after_ms },
            };
        }
        Err(err) => return error(format!("yara-x scan failed: {err}")),
    };
    let matches: Vec<RuleMatch> = results.matching_rules().map(rule_match).collect();
    if matches.is_empty() {
        Verdict::Clean
    } else {
        Verdict::Infected { matches }
    }
}

/// Everything YARA-X reports about a matching rule.
fn rule_match(rule: yara_x::Rule<'_, '_>) -> RuleMatch {
    RuleMatch {
        rule: rule.identifier().to_owned(),
        namespace: rule.namespace().to_owned(),
        tags: rule.tags().map(|t| t.identifier().to_owned()).collect(),
        metadata: rule
            .metadata()
            .map(|(name, value)| (name.to_owned(), meta_value(value)))
            .collect(),
    }
}

fn meta_value(value: yara_x::MetaValue<'_>) -> MetaValue {
    match value {
        yara_x::MetaValue::Integer(i) => MetaValue::Int(i),
        yara_x::MetaValue::Float(f) => MetaValue::Float(f),
        yara_x::MetaValue::Bool(b) => MetaValue::Bool(b),
        yara_x::MetaValue::String(s) => MetaValue::Str(s.to_owned()),
        yara_x::MetaValue::Bytes(b) => MetaValue::Bytes(b.to_vec()),
    }
}
