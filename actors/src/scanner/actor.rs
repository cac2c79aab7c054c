//! [`ScannerWorker`]: the actor that owns a [`ScanEngine`] on a
//! `SyncArbiter` thread.

use std::fmt;

use actix::{Actor, Addr, Handler, MessageResult, SyncArbiter, SyncContext};

use super::config::ScanLimits;
use super::engine::ScanEngine;
use super::live::LiveRules;
use super::messages::ScanFile;

/// One scanner worker. Scans are CPU-bound, so workers run on a
/// [`SyncArbiter`] (one OS thread each), off the async executor; each owns
/// its engine, so workers share nothing but the compiled rules.
pub struct ScannerWorker {
    engine: ScanEngine,
}

impl ScannerWorker {
    pub fn new(engine: ScanEngine) -> Self {
        Self { engine }
    }
}

impl fmt::Debug for ScannerWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScannerWorker")
            .field("engine", &self.engine)
            .finish()
    }
}

impl Actor for ScannerWorker {
    type Context = SyncContext<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(ruleset = %self.engine.ruleset().version(), "scanner worker started");
    }
}

impl Handler<ScanFile> for ScannerWorker {
    type Result = MessageResult<ScanFile>;

    fn handle(&mut self, msg: ScanFile, _ctx: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!("scan", access = %msg.access);
        let _entered = span.enter();
        let outcome = self.engine.scan(&msg.content);
        tracing::debug!(
            verdict = outcome.verdict.class().as_str(),
            size = outcome.size,
            ruleset = %outcome.ruleset,
            duration_us = u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
            "scanned"
        );
        MessageResult(outcome)
    }
}

/// Starts `threads` scanner workers (at least one) on a [`SyncArbiter`],
/// each with its own [`ScanEngine`] following `rules` (a reload published
/// there is taken by each worker before its next scan). Messages sent to
/// the returned address go to the next idle worker. Must be called from
/// within a running actix `System`.
pub fn start_scanners(threads: usize, rules: LiveRules, limits: ScanLimits) -> Addr<ScannerWorker> {
    SyncArbiter::start(threads.max(1), move || {
        ScannerWorker::new(ScanEngine::live(rules.clone(), limits))
    })
}
