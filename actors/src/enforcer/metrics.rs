//! The Enforcer's metrics (docs/observability.md): handles taken once, so
//! that an access costs a few atomic adds (nothing without a recorder).

use std::time::Duration;

use metrics::{Counter, Gauge};
use portcullis_schemas::{Decision, DecisionReason, OverflowSource, VerdictClass};
use portcullis_telemetry::catalog;
use portcullis_telemetry::Histogram;

const REASONS: usize = DecisionReason::ALL.len();

pub(crate) struct EnforcerMetrics {
    /// [outcome][reason]
    decisions: [[Counter; REASONS]; 2],
    latency: [Histogram; REASONS],
    overflows: [Counter; OverflowSource::ALL.len()],
    verdicts: [Counter; VerdictClass::ALL.len()],
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) ignore_marks: Counter,
    pub(crate) rescans: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) pending: Gauge,
    pub(crate) running_scans: Gauge,
    pub(crate) cache_entries: Gauge,
    /// Bridge to Enforcer (the Bridge adds, the Enforcer takes off).
    pub(crate) mailbox: Gauge,
}

impl EnforcerMetrics {
    pub(crate) fn new() -> Self {
        Self {
            decisions: Decision::ALL.map(|d| {
                DecisionReason::ALL.map(|r| {
                    metrics::counter!(catalog::DECISIONS.name, "outcome" => d.as_str(), "reason" => r.as_str())
                })
            }),
            latency: DecisionReason::ALL
                .map(|r| Histogram::new(&catalog::DECISION_LATENCY, &[("reason", r.as_str())])),
            overflows: OverflowSource::ALL
                .map(|s| metrics::counter!(catalog::OVERFLOWS.name, "source" => s.as_str())),
            verdicts: VerdictClass::ALL
                .map(|c| metrics::counter!(catalog::VERDICTS.name, "class" => c.as_str())),
            cache_hits: metrics::counter!(catalog::VERDICT_CACHE_LOOKUPS.name, "result" => "hit"),
            cache_misses: metrics::counter!(catalog::VERDICT_CACHE_LOOKUPS.name, "result" => "miss"),
            ignore_marks: metrics::counter!(catalog::KERNEL_IGNORE_MARKS.name),
            rescans: metrics::counter!(catalog::RESCANS.name),
            coalesced: metrics::counter!(catalog::SCANS_COALESCED.name),
            pending: metrics::gauge!(catalog::PENDING_DECISIONS.name),
            running_scans: metrics::gauge!(catalog::RUNNING_SCANS.name),
            cache_entries: metrics::gauge!(catalog::VERDICT_CACHE_ENTRIES.name),
            mailbox: mailbox_gauge("enforcer"),
        }
    }

    pub(crate) fn decision(&self, d: Decision, r: DecisionReason, latency: Duration) {
        self.decisions[d as usize][r as usize].increment(1);
        self.latency[r as usize].record(latency.as_secs_f64());
    }

    pub(crate) fn overflow(&self, s: OverflowSource, n: u64) {
        self.overflows[s as usize].increment(n);
    }

    pub(crate) fn verdict(&self, c: VerdictClass) {
        self.verdicts[c as usize].increment(1);
    }
}

/// `portcullis_mailbox_depth{mailbox}`.
pub(crate) fn mailbox_gauge(mailbox: &'static str) -> Gauge {
    metrics::gauge!(catalog::MAILBOX_DEPTH.name, "mailbox" => mailbox)
}
