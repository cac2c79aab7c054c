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

use super::config::{ArchiveScan, ScanLimits};
use super::content::{self, ScanContent};
use super::hashes::{HashListHit, HashListKind};
use super::live::LiveRules;
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
    /// Set when a hash list decided, without running the rules.
    pub hash_list: Option<HashListKind>,
    /// Each archive member's verdict, in walk order, when
    /// `scan.archives.log_archived` asks for them (else empty).
    pub members: Vec<MemberVerdict>,
}

/// The verdict of one archive member.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberVerdict {
    /// Its path in the archive (`dir/inner.zip!evil.sh`).
    pub member: String,
    pub verdict: Verdict,
    /// Its decompressed size.
    pub size: u64,
}

/// A reusable scanner for one thread: owns a YARA-X scanner over the rules
/// of its [`Ruleset`] and a read buffer it reuses from scan to scan. One
/// per worker thread; it scans one object at a time.
///
/// Built on [`LiveRules`], it follows reloads: before each scan it compares
/// the generation and, when it moved, takes the new ruleset.
pub struct ScanEngine {
    /// Borrows the rules of `ruleset`: declared first so it is dropped
    /// first (see [`scanner_over`]).
    scanner: yara_x::Scanner<'static>,
    ruleset: Arc<Ruleset>,
    live: Option<(LiveRules, u64)>,
    limits: ScanLimits,
    buf: Vec<u8>,
    metrics: ScanMetrics,
}

/// A YARA-X scanner over the rules of `ruleset`.
///
/// `yara_x::Scanner<'r>` borrows its rules. The rules sit in a `Box` owned
/// by the `Ruleset`, so their address is stable for as long as the
/// `Arc<Ruleset>` lives; every holder of the returned scanner also holds
/// that `Arc` and drops the scanner first (field order in [`ScanEngine`],
/// and [`ScanEngine::take`] replaces the scanner before the ruleset).
fn scanner_over(ruleset: &Arc<Ruleset>, limits: ScanLimits) -> yara_x::Scanner<'static> {
    let rules: *const yara_x::Rules = ruleset.rules();
    // SAFETY: see above: the pointee outlives the scanner, never moves, and
    // is never mutated (a `Ruleset` has no `&mut` access to its rules).
    let rules: &'static yara_x::Rules = unsafe { &*rules };
    let mut scanner = yara_x::Scanner::new(rules);
    if !limits.timeout.is_zero() {
        scanner.set_timeout(limits.timeout);
    }
    scanner
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
    /// An engine on a fixed ruleset.
    pub fn new(ruleset: Arc<Ruleset>, limits: ScanLimits) -> Self {
        Self {
            scanner: scanner_over(&ruleset, limits),
            ruleset,
            live: None,
            limits,
            buf: Vec::new(),
            metrics: ScanMetrics::new(),
        }
    }

    /// An engine that follows the reloads of `live`.
    pub fn live(live: LiveRules, limits: ScanLimits) -> Self {
        let generation = live.generation();
        let mut engine = Self::new(live.current(), limits);
        engine.live = Some((live, generation));
        engine
    }

    /// A fresh engine on the same rules (following the same reloads) and
    /// limits: after a scan panicked, nothing of the old one is reused.
    pub fn renewed(&self) -> Self {
        match &self.live {
            Some((live, _)) => Self::live(live.clone(), self.limits),
            None => Self::new(self.ruleset.clone(), self.limits),
        }
    }

    /// Takes the published ruleset if a reload moved the generation.
    fn follow(&mut self) {
        let Some((live, seen)) = &mut self.live else {
            return;
        };
        let now = live.generation();
        if now != *seen {
            *seen = now;
            let ruleset = live.current();
            self.take(ruleset);
        }
    }

    fn take(&mut self, ruleset: Arc<Ruleset>) {
        if Arc::ptr_eq(&ruleset, &self.ruleset) {
            return;
        }
        // Both fields are replaced before anything is dropped, and the old
        // scanner (which borrows the old ruleset) is dropped first: even a
        // panicking drop leaves the engine's scanner over its own ruleset.
        let scanner = std::mem::replace(&mut self.scanner, scanner_over(&ruleset, self.limits));
        let old = std::mem::replace(&mut self.ruleset, ruleset);
        drop(scanner);
        drop(old);
        tracing::debug!(ruleset = %self.ruleset.version(), "scanner took the reloaded rules");
    }

    pub fn ruleset(&self) -> &Arc<Ruleset> {
        &self.ruleset
    }

    pub fn limits(&self) -> ScanLimits {
        self.limits
    }

    /// Scans `content` against the ruleset, within the limits.
    pub fn scan(&mut self, content: &ScanContent) -> ScanOutcome {
        self.follow();
        let started = Instant::now();
        let judged = match content {
            ScanContent::Bytes(bytes) => self.scan_bytes(bytes),
            ScanContent::Fd(fd) => self.scan_fd(fd.as_fd(), &"event fd"),
        };
        self.outcome(started, judged)
    }

    /// Opens `path` and scans it, for one-shot scans from the CLI. The path
    /// is opened read-only and non-blocking (a FIFO must not hang the scan);
    /// anything but a regular file is an error. Never used for intercepted
    /// accesses: those are read through the event fd.
    pub fn scan_path(&mut self, path: &Path) -> ScanOutcome {
        self.follow();
        let started = Instant::now();
        let what = format!("`{}`", path.display());
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path);
        let judged = match opened {
            Ok(file) => self.scan_fd(file.as_fd(), &what),
            Err(err) => Judged::unread(error(format!("cannot open {what}: {err}")), 0),
        };
        self.outcome(started, judged)
    }

    fn outcome(&self, started: Instant, judged: Judged) -> ScanOutcome {
        let Judged {
            verdict,
            sha256,
            size,
            hash_list,
            members,
        } = judged;
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
            hash_list,
            members,
        }
    }

    fn too_large(&self, size: u64) -> Option<Verdict> {
        let limit = self.limits.max_size;
        (limit > 0 && size > limit).then_some(Verdict::Skipped {
            reason: SkipReason::TooLarge { size, limit },
        })
    }

    fn scan_bytes(&mut self, bytes: &[u8]) -> Judged {
        let size = bytes.len() as u64;
        if let Some(skipped) = self.too_large(size) {
            return Judged::unread(skipped, size);
        }
        judge(&mut self.scanner, &self.ruleset, &self.limits, bytes)
    }

    /// Reads and scans an fd; `what` names it in error messages.
    fn scan_fd(&mut self, fd: BorrowedFd<'_>, what: &dyn fmt::Display) -> Judged {
        let stat = match content::fstat(fd) {
            Ok(stat) => stat,
            Err(err) => return Judged::unread(error(format!("cannot stat {what}: {err}")), 0),
        };
        if !stat.regular {
            return Judged::unread(
                error(format!("cannot scan {what}: not a regular file")),
                stat.size,
            );
        }
        if let Some(skipped) = self.too_large(stat.size) {
            return Judged::unread(skipped, stat.size);
        }

        // Read one byte past the limit, to notice a file that grew over it
        // since `fstat`.
        let cap = (self.limits.max_size > 0).then(|| self.limits.max_size.saturating_add(1));
        let read = content::read_to_buf(fd, &mut self.buf, cap, stat.size);
        let result = match read {
            Err(err) => Judged::unread(error(format!("cannot read {what}: {err}")), stat.size),
            Ok(n) => {
                let size = n as u64;
                if let Some(skipped) = self.too_large(size) {
                    Judged::unread(skipped, size.max(stat.size))
                } else {
                    let data = self.buf.get(..n).unwrap_or_default();
                    judge(&mut self.scanner, &self.ruleset, &self.limits, data)
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

/// What a scan found, before it becomes a [`ScanOutcome`].
struct Judged {
    verdict: Verdict,
    sha256: Option<[u8; 32]>,
    size: u64,
    hash_list: Option<HashListKind>,
    members: Vec<MemberVerdict>,
}

impl Judged {
    /// A verdict reached without reading the content.
    fn unread(verdict: Verdict, size: u64) -> Self {
        Self {
            verdict,
            sha256: None,
            size,
            hash_list: None,
            members: Vec::new(),
        }
    }
}

/// Judges content read whole: its digest against the hash lists first,
/// then the rules on the content as it is, then, for an archive, on each
/// member (see [`judge_members`]).
fn judge(
    scanner: &mut yara_x::Scanner<'static>,
    ruleset: &Ruleset,
    limits: &ScanLimits,
    data: &[u8],
) -> Judged {
    let started = Instant::now();
    let sha256: [u8; 32] = Sha256::digest(data).into();
    let size = data.len() as u64;
    let mut judged = Judged {
        verdict: Verdict::Clean,
        sha256: Some(sha256),
        size,
        hash_list: None,
        members: Vec::new(),
    };
    if let Some(hit) = ruleset.hash_lists().lookup(&sha256) {
        judged.verdict = hash_list_verdict(&hit, &sha256);
        judged.hash_list = Some(hit.kind);
        return judged;
    }
    judged.verdict = run_rules(scanner, data);
    if judged.verdict == Verdict::Clean {
        // One time budget for the whole scan: the walk gets what the scan
        // of the file as it is left of `scan.timeout` (at most its own
        // limit), and each member's scan what the walk has left.
        let budget =
            (!limits.timeout.is_zero()).then(|| limits.timeout.saturating_sub(started.elapsed()));
        judge_members(scanner, &limits.archives, budget, data, &mut judged);
        if !limits.timeout.is_zero() {
            scanner.set_timeout(limits.timeout);
        }
    }
    judged
}

/// Walks `data` as an archive (when it is one, and `scan.archives` says
/// so) and runs the rules on every member, nested archives included. The
/// first infected member makes the archive infected (the walk stops
/// there); a limit makes it unprocessed, naming the limit. A truncated or
/// corrupt archive, or members that cannot be decoded (encrypted, an
/// unsupported method), leave the verdict of what could be scanned, as
/// ClamAV does by default: the content as a whole was scanned anyway.
fn judge_members(
    scanner: &mut yara_x::Scanner<'static>,
    archives: &ArchiveScan,
    budget: Option<Duration>,
    data: &[u8],
    judged: &mut Judged,
) {
    use portcullis_archive::{walk, Flow, WalkOutcome};
    if archives.mode == portcullis_archive::ArchiveMode::Off
        || portcullis_archive::detect(data, archives.mode).is_none()
    {
        return;
    }
    let mut limits = archives.limits;
    if let Some(left) = budget {
        limits.timeout = limits.timeout.min(left);
    }
    if limits.timeout.is_zero() {
        judged.verdict = Verdict::Skipped {
            reason: SkipReason::ArchiveLimit {
                limit: portcullis_archive::LimitKind::Time.as_str().to_owned(),
                value: 0,
                member: String::new(),
            },
        };
        return;
    }
    let walk_ends = Instant::now() + limits.timeout;
    let mut found: Option<(String, Vec<RuleMatch>)> = None;
    let mut timed_out: Option<(String, u64)> = None;
    let log = archives.log_archived;
    let members = &mut judged.members;
    let outcome = walk(data, archives.mode, &limits, &mut |m| {
        // A member's scan gets what is left of the walk's time (YARA-X
        // rounds it up to whole seconds).
        let left = walk_ends.saturating_duration_since(Instant::now());
        scanner.set_timeout(left.max(Duration::from_millis(1)));
        // A compressed stream's content (the tar of a .tar.gz) has the
        // archive's own path: its rules ran on it as a member too.
        let verdict = run_rules(scanner, m.data);
        let path = m.path.to_string();
        let flow = match &verdict {
            Verdict::Infected { matches } => {
                found = Some((path.clone(), matches.clone()));
                Flow::Stop
            }
            Verdict::Skipped {
                reason: SkipReason::ScanTimeout { after_ms },
            } => {
                timed_out.get_or_insert((path.clone(), *after_ms));
                Flow::Continue
            }
            _ => Flow::Continue,
        };
        // The infected member is named by the archive's own verdict: not
        // journaled twice.
        if log && !path.is_empty() && !matches!(flow, Flow::Stop) {
            members.push(MemberVerdict {
                member: path,
                verdict,
                size: m.data.len() as u64,
            });
        }
        flow
    });
    if let Some((member, matches)) = found {
        judged.verdict = if member.is_empty() {
            Verdict::Infected { matches }
        } else {
            Verdict::InfectedMember { member, matches }
        };
        return;
    }
    match outcome {
        WalkOutcome::Limit(hit) => {
            judged.verdict = Verdict::Skipped {
                reason: SkipReason::ArchiveLimit {
                    limit: hit.kind.as_str().to_owned(),
                    value: hit.limit,
                    member: hit.member.to_string(),
                },
            };
        }
        WalkOutcome::Corrupt {
            member,
            format,
            error,
        } => {
            tracing::debug!(%member, format = format.as_str(), %error, "archive walk ended early: corrupt");
        }
        WalkOutcome::Unsupported { member, reason, .. } => {
            tracing::debug!(%member, %reason, "archive member not decoded");
        }
        WalkOutcome::NotArchive | WalkOutcome::Complete { .. } | WalkOutcome::Stopped { .. } => {}
    }
    // A member the rules could not finish is not scanned either.
    if judged.verdict == Verdict::Clean {
        if let Some((_, after_ms)) = timed_out {
            judged.verdict = Verdict::Skipped {
                reason: SkipReason::ScanTimeout { after_ms },
            };
        }
    }
}

/// The verdict of a digest found on a hash list.
pub fn hash_list_verdict(hit: &HashListHit, sha256: &[u8; 32]) -> Verdict {
    match hit.kind {
        HashListKind::Trusted => Verdict::Clean,
        HashListKind::KnownBad => Verdict::Infected {
            matches: vec![hit.rule_match(sha256)],
        },
    }
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
