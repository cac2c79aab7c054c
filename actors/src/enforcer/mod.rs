//! The Enforcer: holds each pending permission decision, keyed by the event
//! id of the access, until a verdict or its deadline arrives.
//!
//! Rules it keeps (DESIGN.md §3):
//! - every pending decision has a deadline; past it `on_timeout` answers
//!   and the decision is journaled with reason `deadline`;
//! - the pending set is bounded; past it `on_overload` answers at once;
//! - the answer is written before anything is journaled about it;
//! - on shutdown every pending decision is answered.
//!
//! Verdicts of unchanged files are reused: a user-space cache keyed by
//! (device, inode, size, mtime, ctime) for the loaded ruleset, and, for
//! clean files, a kernel ignore mark that the kernel clears when the file
//! is modified, so the next open of an unchanged clean file costs no round
//! trip at all. Opens of a file whose scan is already running wait for that
//! scan instead of starting another.
//!
//! A rules reload ([`SwapRules`]) empties both caches (the kernel's ignore
//! marks are flushed) and every opener decided after it is judged by the
//! new ruleset: a verdict of the old ruleset that arrives later is not used,
//! its file is scanned again (locally, in distributed mode: a node decides
//! only by the ruleset it runs).

mod config;
mod messages;
mod metrics;
mod spans;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_interceptor::Fanotify;
use portcullis_schemas::{
    AccessKind, ContainerRef, Decision, DecisionMade, DecisionReason, EventBody, EventId,
    FileAccessed, FileInfo, FilePath, Mode, OverflowSource, QueueOverflowed, RuleMatch,
    RulesetVersion, ScanRequested, SkipReason, Timestamp, TraceContext, Verdict, VerdictClass,
    VerdictIssued,
};

pub use config::{EnforcerConfig, Fallback, ScanMode};
pub use messages::{
    AccessRequest, ContainerLabels, EnforcerStats, GetStats, OverflowNoticed, Responder, Shutdown,
    SwapRules, Swapped,
};
pub(crate) use metrics::mailbox_gauge;

use crate::actions::ActOnDetection;
use crate::journal::{Append, Record};
use crate::policy::{Policies, Scope, Subject};
use crate::scanner::{HashListKind, LiveRules, ScanContent, ScanFile, ScanOutcome};

/// Identity of a file version: a verdict is reused while all of it holds.
///
/// `device` is the filesystem the inode number belongs to: the file's own,
/// or for a file on a container overlay whose layers share one filesystem,
/// that filesystem ([`AccessRequest::layer_device`]). Such an overlay
/// reports each file's real inode number, also after a copy up (where the
/// size and times then tell the versions apart), so the same layer file
/// has one key in every container of its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    device: u64,
    inode: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileKey {
    fn of(f: &FileInfo, layer_device: Option<u64>) -> Self {
        Self {
            device: layer_device.unwrap_or(f.device),
            inode: f.inode,
            size: f.size,
            mtime_ns: f.mtime_ns,
            ctime_ns: f.ctime_ns,
        }
    }
}

/// How many times one scan is started again because its verdict came from
/// another ruleset.
const MAX_RESCANS: u8 = 2;

#[derive(Clone, Debug)]
enum Cached {
    Clean,
    /// An archive past a walk limit, decided by `on_archive_limit`: not
    /// walked again on every open (a bomb costs its time limit once), and
    /// never marked in the kernel (it was not wholly scanned).
    Unprocessed(Decision),
    Infected {
        matches: Arc<[RuleMatch]>,
        sha256: Option<[u8; 32]>,
    },
}

/// One opener waiting for a scan.
struct Waiter {
    access: EventId,
    trace: TraceContext,
    responder: Responder,
    received: Instant,
    /// The access's span (traces on): ends once answered.
    span: Option<tracing::Span>,
}

/// One running scan and the openers waiting for it.
struct PendingScan {
    key: FileKey,
    path: FilePath,
    content: ScanContent,
    trace: TraceContext,
    waiters: Vec<Waiter>,
    /// Any opener of this scan was let through without a verdict.
    allowed_early: bool,
    first_pid: u32,
    /// The first opener's container, kept only when actions may run (the
    /// quarantine records it).
    container: Option<ContainerRef>,
    /// The `scan` span (traces on): ends with the verdict.
    span: Option<tracing::Span>,
    /// Times its verdict came from another ruleset and it was scanned again.
    rescans: u8,
}

#[derive(Default)]
struct Counters {
    scans: u64,
    coalesced: u64,
    allowed: u64,
    denied: u64,
    by_reason: HashMap<DecisionReason, u64>,
    infected: u64,
    overflows: u64,
    kernel_cache_marks: u64,
}

/// The Enforcer actor.
pub struct Enforcer {
    cfg: EnforcerConfig,
    policies: Arc<Policies>,
    ruleset: RulesetVersion,
    fanotify: Option<Arc<Fanotify>>,
    scanner: Recipient<ScanFile>,
    /// Where verdicts of another ruleset are scanned again: the local
    /// scanners (in embedded mode, `scanner` itself).
    rescanner: Option<Recipient<ScanFile>>,
    /// Where [`SwapRules`] publishes the new ruleset to the scanners.
    live: Option<LiveRules>,
    /// The last other ruleset a stale verdict came from (logged once).
    stale_logged: Option<RulesetVersion>,
    journal: Recipient<Append>,
    actions: Option<Recipient<ActOnDetection>>,
    /// Running scans, keyed by the event id of the access that started them.
    scans: HashMap<EventId, PendingScan>,
    inflight: HashMap<FileKey, EventId>,
    /// (deadline, scan, access), in deadline order (one constant deadline).
    deadlines: VecDeque<(Instant, EventId, EventId)>,
    waiting: usize,
    cache: HashMap<FileKey, Cached>,
    unreported_overflows: HashMap<OverflowSource, u64>,
    counters: Counters,
    metrics: metrics::EnforcerMetrics,
    heartbeat: Option<portcullis_telemetry::Heartbeat>,
    /// systemd's watchdog, pinged from the tick.
    watchdog: Option<Arc<portcullis_telemetry::Watchdog>>,
    /// `portcullis.scan.location` of the scan spans: local or remote.
    scan_location: &'static str,
    stopping: bool,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("mode", &self.cfg.mode)
            .field("scans", &self.scans.len())
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl Enforcer {
    pub fn new(
        cfg: EnforcerConfig,
        policies: Arc<Policies>,
        ruleset: RulesetVersion,
        scanner: Recipient<ScanFile>,
        journal: Recipient<Append>,
    ) -> Self {
        Self {
            cfg,
            policies,
            ruleset,
            fanotify: None,
            scanner,
            rescanner: None,
            live: None,
            stale_logged: None,
            journal,
            actions: None,
            scans: HashMap::new(),
            inflight: HashMap::new(),
            deadlines: VecDeque::new(),
            waiting: 0,
            cache: HashMap::new(),
            unreported_overflows: HashMap::new(),
            counters: Counters::default(),
            metrics: metrics::EnforcerMetrics::new(),
            heartbeat: None,
            watchdog: None,
            scan_location: "local",
            stopping: false,
        }
    }

    /// Scans go to scanner services over Kafka (the scan spans say so).
    pub fn with_remote_scans(mut self) -> Self {
        self.scan_location = "remote";
        self
    }

    /// Beats on every tick (`/healthz`).
    pub fn with_heartbeat(mut self, hb: portcullis_telemetry::Heartbeat) -> Self {
        self.heartbeat = Some(hb);
        self
    }

    /// Pings systemd's watchdog from the tick: while this actor answers
    /// opens, and only then.
    pub fn with_watchdog(mut self, w: Arc<portcullis_telemetry::Watchdog>) -> Self {
        self.watchdog = Some(w);
        self
    }

    /// Rules reloads: [`SwapRules`] publishes to `live`, and verdicts of a
    /// ruleset other than the one in force are scanned again by
    /// `rescanner` (the local scanners).
    pub fn with_live_rules(mut self, live: LiveRules, rescanner: Recipient<ScanFile>) -> Self {
        self.live = Some(live);
        self.rescanner = Some(rescanner);
        self
    }

    /// Kernel verdict cache: ignore marks are placed through this group.
    pub fn with_fanotify(mut self, fan: Arc<Fanotify>) -> Self {
        self.fanotify = Some(fan);
        self
    }

    /// Where detections in Enforce mode are acted on.
    pub fn with_actions(mut self, actions: Recipient<ActOnDetection>) -> Self {
        self.actions = Some(actions);
        self
    }

    fn record(&self, id: EventId, trace: TraceContext, body: EventBody) {
        self.journal.do_send(Append(Record {
            event_id: id,
            timestamp: Timestamp::now(),
            trace,
            body,
        }));
    }

    fn record_child(&self, parent: &TraceContext, body: EventBody) {
        let id = EventId::new();
        self.record(id, spans::child_context(parent, &id), body);
    }

    /// Answers at once, then journals the access and the decision (in that
    /// order, so the journal reads as it happened).
    #[allow(clippy::too_many_arguments)]
    fn decide_now(
        &mut self,
        access: EventId,
        trace: TraceContext,
        accessed: EventBody,
        responder: Responder,
        received: Instant,
        decision: Decision,
        reason: DecisionReason,
        span: Option<&tracing::Span>,
    ) {
        let blocking = write_answer(access, responder, decision);
        spans::decided(span, decision, reason);
        self.record(access, trace, accessed);
        self.journal_decision(access, &trace, received, blocking, decision, reason);
    }

    /// Writes the answer, then journals the decision.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        access: EventId,
        trace: &TraceContext,
        responder: Responder,
        received: Instant,
        decision: Decision,
        reason: DecisionReason,
        span: Option<&tracing::Span>,
    ) {
        let blocking = write_answer(access, responder, decision);
        spans::decided(span, decision, reason);
        self.journal_decision(access, trace, received, blocking, decision, reason);
    }

    fn journal_decision(
        &mut self,
        access: EventId,
        trace: &TraceContext,
        received: Instant,
        blocking: bool,
        decision: Decision,
        reason: DecisionReason,
    ) {
        let latency = received.elapsed();
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.metrics.decision(decision, reason, latency);
        if blocking {
            match decision {
                Decision::Allow => self.counters.allowed += 1,
                Decision::Deny => self.counters.denied += 1,
            }
        }
        *self.counters.by_reason.entry(reason).or_default() += 1;
        self.record_child(
            trace,
            EventBody::DecisionMade(DecisionMade {
                access,
                decision,
                reason,
                latency_us,
            }),
        );
    }

    fn overflow(&mut self, source: OverflowSource, count: u64) {
        self.counters.overflows += count;
        self.metrics.overflow(source, count);
        *self.unreported_overflows.entry(source).or_default() += count;
    }

    fn on_access(&mut self, req: AccessRequest, ctx: &mut Context<Self>) {
        let AccessRequest {
            event_id: access,
            kind,
            file,
            layer_device,
            process,
            container,
            labels,
            content,
            responder,
            received,
        } = req;
        let span = tracing::debug_span!("access", event_id = %access);
        let _guard = span.enter();
        let (otel, trace) = spans::access(
            access,
            kind,
            self.cfg.mode,
            &file.path,
            process.pid,
            container.as_ref(),
            received,
        );
        let otel = otel.as_ref();
        let scope = self.policies.scope(&Subject {
            path: &file.path,
            executable: process.executable.as_ref(),
            container: container.as_ref(),
            labels: labels.as_deref(),
        });
        let blocking = responder.is_blocking();
        let key = FileKey::of(&file, layer_device);
        let path = file.path.clone();
        let pid = process.pid;
        let policy = match &scope {
            Scope::In(p) => Some(p.clone()),
            _ => None,
        };
        spans::policy(otel, policy.as_ref().map(|p| p.name.as_str()));
        let accessed = EventBody::FileAccessed(FileAccessed {
            kind,
            file,
            process,
            container,
            interceptor_mode: self.cfg.mode,
            policy,
            blocking,
        });

        // Out of scope: answered at once.
        if !matches!(scope, Scope::In(_)) {
            self.decide_now(
                access,
                trace,
                accessed,
                responder,
                received,
                Decision::Allow,
                DecisionReason::NotInScope,
                otel,
            );
            if let Scope::Excluded { policy, field } = scope {
                tracing::trace!(%policy, field, "excluded");
            }
            return;
        }

        // Audit: nobody is blocked (notification events); the decision is
        // recorded once, then the scan runs on the side.
        if self.cfg.mode == Mode::Audit && kind != AccessKind::CloseWrite {
            self.decide_now(
                access,
                trace,
                accessed,
                responder,
                received,
                Decision::Allow,
                DecisionReason::AuditMode,
                otel,
            );
            self.start_or_join_scan(
                access,
                trace,
                key,
                path,
                content,
                None,
                otel,
                (pid, None),
                ctx,
            );
            return;
        }

        // A verdict for this exact file version is known.
        if self.cfg.skip_unchanged {
            let cached = self.cache.get(&key).cloned();
            if cached.is_none() && blocking {
                self.metrics.cache_misses.increment(1);
            }
            if let Some(cached) = cached {
                self.metrics.cache_hits.increment(1);
                let decision = match cached {
                    Cached::Clean => Decision::Allow,
                    Cached::Unprocessed(d) => d,
                    Cached::Infected { .. } => Decision::Deny,
                };
                let fd = responder.kernel_fd();
                let acting = match cached {
                    Cached::Infected { .. } => self.acting_container(&accessed),
                    _ => None,
                };
                self.decide_now(
                    access,
                    trace,
                    accessed,
                    responder,
                    received,
                    decision,
                    DecisionReason::CacheHit,
                    otel,
                );
                match cached {
                    Cached::Clean => {
                        if let Some(fd) = fd {
                            self.mark_clean_in_kernel(access, &fd, key);
                        }
                    }
                    Cached::Unprocessed(_) => {}
                    Cached::Infected { matches, sha256 } => {
                        self.act(
                            access,
                            trace,
                            path,
                            key,
                            (pid, acting),
                            content,
                            sha256,
                            &matches,
                            decision == Decision::Deny,
                        );
                    }
                }
                return;
            }
        }

        if !blocking {
            // close-after-write in Enforce mode: scan, nobody waits.
            let acting = self.container_if_scan_starts(&accessed, key);
            self.record(access, trace, accessed);
            self.start_or_join_scan(
                access,
                trace,
                key,
                path,
                content,
                None,
                otel,
                (pid, acting),
                ctx,
            );
            return;
        }

        if self.waiting >= self.cfg.max_pending || self.scans.len() >= self.cfg.max_pending {
            self.overflow(OverflowSource::PendingSet, 1);
            let decision = self.cfg.on_overload.decision();
            self.decide_now(
                access,
                trace,
                accessed,
                responder,
                received,
                decision,
                DecisionReason::Overload,
                otel,
            );
            return;
        }

        let acting = self.container_if_scan_starts(&accessed, key);
        self.record(access, trace, accessed);
        let waiter = Waiter {
            access,
            trace,
            responder,
            received,
            span: otel.cloned(),
        };
        self.start_or_join_scan(
            access,
            trace,
            key,
            path,
            content,
            Some(waiter),
            otel,
            (pid, acting),
            ctx,
        );
    }

    /// The container the actions record with a detected object: a copy
    /// only in Enforce mode with actions, and only where actions may follow
    /// (a scan starting, a cached infected verdict): never on the path of a
    /// cached clean open.
    fn acting_container(&self, accessed: &EventBody) -> Option<ContainerRef> {
        if self.cfg.mode != Mode::Enforce || self.actions.is_none() {
            return None;
        }
        match accessed {
            EventBody::FileAccessed(a) => a.container.clone(),
            _ => None,
        }
    }

    /// [`acting_container`](Self::acting_container) when this access starts
    /// a scan of `key`; an opener joining a scan in flight adds nothing.
    fn container_if_scan_starts(&self, accessed: &EventBody, key: FileKey) -> Option<ContainerRef> {
        if self.inflight.contains_key(&key) {
            return None;
        }
        self.acting_container(accessed)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_or_join_scan(
        &mut self,
        access: EventId,
        trace: TraceContext,
        key: FileKey,
        path: FilePath,
        content: ScanContent,
        waiter: Option<Waiter>,
        access_span: Option<&tracing::Span>,
        (pid, container): (u32, Option<ContainerRef>),
        ctx: &mut Context<Self>,
    ) {
        if let Some(w) = &waiter {
            self.waiting += 1;
            self.deadlines.push_back((
                w.received + self.cfg.deadline,
                *self.inflight.get(&key).unwrap_or(&access),
                access,
            ));
        }
        if let Some(scan_id) = self.inflight.get(&key).copied() {
            if let Some(scan) = self.scans.get_mut(&scan_id) {
                self.counters.coalesced += 1;
                self.metrics.coalesced.increment(1);
                spans::coalesced(access_span);
                scan.waiters.extend(waiter);
                return;
            }
        }
        if self.scans.len() >= self.cfg.max_pending {
            // Audit and close-write scans beyond the bound are dropped and
            // counted; nobody waits on them.
            self.overflow(OverflowSource::PendingSet, 1);
            return;
        }
        self.counters.scans += 1;
        self.inflight.insert(key, access);
        let (span, trace) = spans::scan(
            access_span,
            &trace,
            access,
            self.scan_location,
            key.size,
            &self.ruleset.0,
        );
        self.record_child(
            &trace,
            EventBody::ScanRequested(ScanRequested {
                access,
                size: key.size,
                ruleset: self.ruleset.clone(),
            }),
        );
        self.scans.insert(
            access,
            PendingScan {
                key,
                path,
                content: content.clone(),
                trace,
                waiters: waiter.into_iter().collect(),
                allowed_early: false,
                first_pid: pid,
                container,
                span,
                rescans: 0,
            },
        );
        let scanner = self.scanner.clone();
        self.dispatch(&scanner, access, content, trace, ctx);
    }

    /// Sends a scan and routes its outcome to [`Self::on_verdict`].
    fn dispatch(
        &self,
        scanner: &Recipient<ScanFile>,
        access: EventId,
        content: ScanContent,
        trace: TraceContext,
        ctx: &mut Context<Self>,
    ) {
        let req = scanner.send(ScanFile {
            access,
            content,
            trace,
        });
        ctx.spawn(req.into_actor(self).map(move |res, act, ctx| match res {
            Ok(outcome) => act.on_verdict(access, outcome, ctx),
            Err(e) => {
                let outcome = ScanOutcome {
                    verdict: Verdict::Error {
                        message: format!("scanner unavailable: {e}"),
                    },
                    sha256: None,
                    size: 0,
                    ruleset: act.ruleset.clone(),
                    duration: Duration::ZERO,
                    hash_list: None,
                    members: Vec::new(),
                };
                act.on_verdict(access, outcome, ctx)
            }
        }));
    }

    /// A verdict of a ruleset other than the one in force (it was running
    /// when the rules were swapped, or a scanner service runs other rules):
    /// the scan starts again on the local scanners, its openers keep
    /// waiting under their deadlines. Returns `false` when it cannot (no
    /// local scanners, or stopping): the verdict is then used as it is.
    fn rescan_stale(
        &mut self,
        scan_id: EventId,
        outcome: &ScanOutcome,
        ctx: &mut Context<Self>,
    ) -> bool {
        if outcome.ruleset == self.ruleset || self.stopping {
            return false;
        }
        let (Some(rescanner), Some(scan)) = (self.rescanner.clone(), self.scans.get_mut(&scan_id))
        else {
            return false;
        };
        // Bounded: a scan slower than the reloads around it is not scanned
        // again forever; past the bound its verdict is used (and, being of
        // another ruleset, not cached).
        if scan.rescans >= MAX_RESCANS {
            return false;
        }
        scan.rescans += 1;
        // Said once per other ruleset met (a swap, or a service still on
        // other rules), then only at debug: a fleet mid-update would flood
        // the log; portcullis_rescans_total counts every one.
        if self.stale_logged.as_ref() != Some(&outcome.ruleset) {
            self.stale_logged = Some(outcome.ruleset.clone());
            tracing::info!(
                event_id = %scan_id,
                verdict_ruleset = %outcome.ruleset,
                ruleset = %self.ruleset,
                "verdict of another ruleset: scanning again with the rules in force"
            );
        } else {
            tracing::debug!(
                event_id = %scan_id,
                verdict_ruleset = %outcome.ruleset,
                "verdict of another ruleset: scanning again"
            );
        }
        self.metrics.rescans.increment(1);
        let (content, trace) = (scan.content.clone(), scan.trace);
        self.dispatch(&rescanner, scan_id, content, trace, ctx);
        true
    }

    fn on_verdict(&mut self, scan_id: EventId, outcome: ScanOutcome, ctx: &mut Context<Self>) {
        if self.rescan_stale(scan_id, &outcome, ctx) {
            return;
        }
        let Some(scan) = self.scans.remove(&scan_id) else {
            return;
        };
        if self.inflight.get(&scan.key) == Some(&scan_id) {
            self.inflight.remove(&scan.key);
        }
        let span = tracing::debug_span!("verdict", event_id = %scan_id);
        let _guard = span.enter();
        let class = outcome.verdict.class();
        self.metrics.verdict(class);
        spans::verdict(scan.span.as_ref(), &outcome.verdict);
        let by_verdict = match outcome.hash_list {
            Some(HashListKind::Trusted) => DecisionReason::TrustedHash,
            Some(HashListKind::KnownBad) => DecisionReason::KnownBadHash,
            None => DecisionReason::Verdict,
        };
        let (decision, reason) = match class {
            VerdictClass::Skipped
                if matches!(
                    outcome.verdict,
                    Verdict::Skipped {
                        reason: SkipReason::ArchiveLimit { .. }
                    }
                ) =>
            {
                match (self.cfg.on_archive_limit.decision(), self.cfg.mode) {
                    (Decision::Deny, Mode::Audit) => (Decision::Allow, DecisionReason::AuditMode),
                    (decision, _) => (decision, by_verdict),
                }
            }
            VerdictClass::Clean | VerdictClass::Skipped => (Decision::Allow, by_verdict),
            VerdictClass::Infected => match self.cfg.mode {
                Mode::Enforce => (Decision::Deny, by_verdict),
                Mode::Audit => (Decision::Allow, DecisionReason::AuditMode),
            },
            VerdictClass::Error => (self.cfg.on_scan_error.decision(), DecisionReason::Verdict),
        };
        let kernel_fd: Option<Arc<OwnedFd>> =
            scan.waiters.iter().find_map(|w| w.responder.kernel_fd());
        let any_denied = decision == Decision::Deny && !scan.waiters.is_empty();
        // Answers first.
        for w in scan.waiters {
            self.waiting = self.waiting.saturating_sub(1);
            self.decide(
                w.access,
                &w.trace,
                w.responder,
                w.received,
                decision,
                reason,
                w.span.as_ref(),
            );
        }
        // Then the verdict caches.
        // A verdict of another ruleset (past MAX_RESCANS) is used, never cached.
        if self.cfg.skip_unchanged && outcome.ruleset == self.ruleset {
            match &outcome.verdict {
                Verdict::Clean => {
                    self.remember(scan.key, Cached::Clean);
                    if let Some(fd) = &kernel_fd {
                        self.mark_clean_in_kernel(scan_id, fd, scan.key);
                    }
                }
                Verdict::Infected { matches } | Verdict::InfectedMember { matches, .. } => self
                    .remember(
                        scan.key,
                        Cached::Infected {
                            matches: matches.clone().into(),
                            sha256: outcome.sha256,
                        },
                    ),
                // Not the time limit: it depends on the machine's load, and
                // a busy minute must not decide an archive for good.
                Verdict::Skipped {
                    reason: SkipReason::ArchiveLimit { limit, .. },
                } if limit != "timeout" => self.remember(scan.key, Cached::Unprocessed(decision)),
                _ => {}
            }
        }
        // Then the journal.
        let log = match class {
            VerdictClass::Clean => self.cfg.log_clean,
            VerdictClass::Skipped => self.cfg.log_unprocessed,
            VerdictClass::Infected | VerdictClass::Error => true,
        };
        if class == VerdictClass::Infected {
            self.counters.infected += 1;
        }
        let matches = outcome.verdict.matches().map(<[RuleMatch]>::to_vec);
        // `scan.archives.log_archived`: each member's verdict, under the
        // archive's path with the member (`/srv/a.tar.gz!dir/x.sh`), before
        // the archive's own.
        for m in outcome.members {
            let mut path = scan.path.as_bytes().to_vec();
            path.push(b'!');
            path.extend_from_slice(m.member.as_bytes());
            self.record_child(
                &scan.trace,
                EventBody::VerdictIssued(VerdictIssued {
                    access: scan_id,
                    path: FilePath::from_bytes(path),
                    verdict: m.verdict,
                    sha256: None,
                    size: m.size,
                    ruleset: outcome.ruleset.clone(),
                    scan_duration_us: 0,
                }),
            );
        }
        if log {
            self.record_child(
                &scan.trace,
                EventBody::VerdictIssued(VerdictIssued {
                    access: scan_id,
                    path: scan.path.clone(),
                    verdict: outcome.verdict,
                    sha256: outcome.sha256,
                    size: outcome.size,
                    ruleset: outcome.ruleset,
                    scan_duration_us: u64::try_from(outcome.duration.as_micros())
                        .unwrap_or(u64::MAX),
                }),
            );
        }
        // Last, the actions on a detection (Enforce mode only).
        if let Some(matches) = matches {
            if self.cfg.mode == Mode::Enforce {
                let denied = any_denied && !scan.allowed_early;
                self.act(
                    scan_id,
                    scan.trace,
                    scan.path,
                    scan.key,
                    (scan.first_pid, scan.container),
                    scan.content,
                    outcome.sha256,
                    &matches,
                    denied,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        access: EventId,
        trace: TraceContext,
        path: FilePath,
        key: FileKey,
        (pid, container): (u32, Option<ContainerRef>),
        content: ScanContent,
        sha256: Option<[u8; 32]>,
        matches: &[RuleMatch],
        denied: bool,
    ) {
        if self.cfg.mode != Mode::Enforce {
            return;
        }
        if let Some(actions) = &self.actions {
            actions.do_send(ActOnDetection {
                access,
                trace,
                path,
                file: (key.device, key.inode),
                pid,
                container,
                content,
                sha256,
                matches: matches.to_vec(),
                denied,
            });
        }
    }

    fn remember(&mut self, key: FileKey, v: Cached) {
        if self.cache.len() >= self.cfg.cache_entries {
            // Simple and bounded: start over. Unchanged clean files stay
            // cached in the kernel regardless.
            self.cache.clear();
        }
        self.cache.insert(key, v);
    }

    /// Places a kernel ignore mark, then checks the file is still the
    /// version that was scanned; if it changed in between, the mark is taken
    /// off again so the new content is scanned on its next open.
    fn mark_clean_in_kernel(&mut self, access: EventId, fd: &Arc<OwnedFd>, key: FileKey) {
        let Some(fan) = &self.fanotify else { return };
        if let Err(e) = fan.ignore_until_modified(fd.as_fd()) {
            tracing::debug!(%access, error = %e, "kernel ignore mark not placed");
            return;
        }
        match portcullis_interceptor::procfs::file_identity(fd.as_fd()) {
            // The same open file: only its version can have changed.
            Ok(now) if FileKey::of(&now, Some(key.device)) == key => {
                self.counters.kernel_cache_marks += 1;
                self.metrics.ignore_marks.increment(1);
            }
            _ => {
                if let Err(e) = fan.remove_ignore(fd.as_fd()) {
                    tracing::warn!(%access, error = %e, "could not take back an ignore mark on a changed file");
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, scan_id, access)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(scan) = self.scans.get_mut(&scan_id) else {
                continue;
            };
            let Some(i) = scan.waiters.iter().position(|w| w.access == access) else {
                continue;
            };
            let w = scan.waiters.swap_remove(i);
            let decision = self.cfg.on_timeout.decision();
            if decision == Decision::Allow {
                scan.allowed_early = true;
            }
            self.waiting = self.waiting.saturating_sub(1);
            tracing::warn!(%access, "no verdict before the deadline; answering on_timeout");
            self.decide(
                w.access,
                &w.trace,
                w.responder,
                w.received,
                decision,
                DecisionReason::Deadline,
                w.span.as_ref(),
            );
        }
    }

    fn report_overflows(&mut self) {
        for (source, count) in std::mem::take(&mut self.unreported_overflows) {
            if count > 0 {
                self.record_child(
                    &TraceContext::root_for(&EventId::new()),
                    EventBody::QueueOverflowed(QueueOverflowed { source, count }),
                );
            }
        }
    }

    fn answer_all_pending(&mut self) -> u64 {
        let mut answered = 0;
        let decision = self.cfg.on_timeout.decision();
        let ids: Vec<EventId> = self.scans.keys().copied().collect();
        for id in ids {
            if let Some(scan) = self.scans.get_mut(&id) {
                let waiters = std::mem::take(&mut scan.waiters);
                for w in waiters {
                    answered += 1;
                    self.decide(
                        w.access,
                        &w.trace,
                        w.responder,
                        w.received,
                        decision,
                        DecisionReason::Shutdown,
                        w.span.as_ref(),
                    );
                }
            }
        }
        self.waiting = 0;
        self.deadlines.clear();
        answered
    }
}

/// Writes the answer; returns whether somebody was waiting for it.
fn write_answer(access: EventId, responder: Responder, decision: Decision) -> bool {
    let blocking = responder.is_blocking();
    if let Err(e) = responder.answer(access, decision) {
        tracing::error!(%access, error = %e, "writing the fanotify response failed");
    }
    blocking
}

impl Actor for Enforcer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        let tick = self.cfg.tick;
        ctx.run_interval(tick, |act, _| {
            act.expire(Instant::now());
            act.report_overflows();
            act.metrics.pending.set(act.waiting as f64);
            act.metrics.running_scans.set(act.scans.len() as f64);
            act.metrics.cache_entries.set(act.cache.len() as f64);
            if let Some(hb) = &act.heartbeat {
                hb.beat();
            }
            if let Some(w) = &act.watchdog {
                w.tick();
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        let n = self.answer_all_pending();
        if n > 0 {
            tracing::info!(answered = n, "answered pending decisions while stopping");
        }
        Running::Stop
    }
}

impl Handler<AccessRequest> for Enforcer {
    type Result = ();

    fn handle(&mut self, req: AccessRequest, ctx: &mut Self::Context) {
        self.metrics.mailbox.decrement(1.0);
        if self.stopping {
            let access = req.event_id;
            let trace = TraceContext::root_for(&access);
            self.decide(
                access,
                &trace,
                req.responder,
                req.received,
                self.cfg.on_timeout.decision(),
                DecisionReason::Shutdown,
                None,
            );
            return;
        }
        self.on_access(req, ctx);
    }
}

impl Handler<OverflowNoticed> for Enforcer {
    type Result = ();

    fn handle(&mut self, msg: OverflowNoticed, _: &mut Self::Context) {
        self.overflow(msg.source, msg.count);
    }
}

impl Handler<Shutdown> for Enforcer {
    type Result = u64;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> u64 {
        self.stopping = true;
        let n = self.answer_all_pending();
        self.report_overflows();
        // Let go of the group: once every holder has, its fd closes and the
        // kernel allows whatever is still queued.
        self.fanotify = None;
        n
    }
}

impl Handler<SwapRules> for Enforcer {
    type Result = ResponseFuture<Option<Swapped>>;

    /// The swap itself is one step of the actor (no verdict is handled in
    /// between): the version, the publish, the user-space cache. The
    /// kernel's flush (about 0.45 µs per mark, 45 ms for 100,000) runs on a
    /// blocking thread meanwhile, so the Enforcer keeps answering opens; an
    /// open the kernel answers from an old mark before the flush ends would
    /// have been answered so by a flush in this step too.
    fn handle(&mut self, SwapRules(ruleset): SwapRules, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            // Shutdown answered everything; nothing is decided any more.
            return Box::pin(std::future::ready(None));
        }
        let old = std::mem::replace(&mut self.ruleset, ruleset.version().clone());
        if let Some(live) = &self.live {
            live.publish(ruleset);
        }
        let cache_entries = self.cache.len();
        self.cache.clear();
        let fan = self.fanotify.clone();
        let new = self.ruleset.clone();
        Box::pin(async move {
            let started = Instant::now();
            let kernel_marks_flushed = match fan {
                Some(fan) => {
                    match tokio::task::spawn_blocking(move || fan.flush_ignore_marks()).await {
                        Ok(Ok(())) => true,
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "could not flush the kernel ignore marks: files found clean by the old rules are not scanned again until modified");
                            false
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the kernel ignore mark flush did not run");
                            false
                        }
                    }
                }
                None => false,
            };
            let flush = started.elapsed();
            tracing::info!(
                from = %old,
                to = %new,
                cache_entries,
                kernel_marks_flushed,
                flush_us = u64::try_from(flush.as_micros()).unwrap_or(u64::MAX),
                "rules swapped: verdict caches emptied"
            );
            Some(Swapped {
                cache_entries,
                kernel_marks_flushed,
                flush,
            })
        })
    }
}

impl Handler<GetStats> for Enforcer {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut by_reason: Vec<(&'static str, u64)> = self
            .counters
            .by_reason
            .iter()
            .map(|(r, n)| (r.as_str(), *n))
            .collect();
        by_reason.sort();
        MessageResult(EnforcerStats {
            pending: self.waiting,
            scans: self.counters.scans,
            coalesced: self.counters.coalesced,
            allowed: self.counters.allowed,
            denied: self.counters.denied,
            by_reason,
            infected: self.counters.infected,
            overflows: self.counters.overflows,
            kernel_cache_marks: self.counters.kernel_cache_marks,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
