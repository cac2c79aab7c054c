//! `portcullis scanner`: the scanner service.
//!
//! One consumer group reads the scan-requests topic; N instances share its
//! partitions. Each batch of requests is scanned on a `SyncArbiter`, and
//! the replies (to each request's reply topic and partition) and shared
//! verdicts are produced in one transaction together with the consumed
//! offsets: consume-transform-produce, exactly once per committed input.
//!
//! A request that cannot be decoded goes to `<topic>.dlq` (in the same
//! transaction) with its origin in headers. A batch whose transaction keeps
//! failing is retried; a message that was in three failed attempts goes to
//! the DLQ instead of being retried again. The partition never blocks. The
//! loop itself is [`ctp`](crate::kafka::ctp), shared with `siem-export`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use portcullis_actors::scanner::{
    start_scanners, Ruleset, ScanContent, ScanFile, ScanLimits, ScanOutcome, ScannerWorker,
};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest, VerdictShared};
use portcullis_schemas::{Timestamp, Verdict};
use rdkafka::message::{Message, OwnedMessage};

use crate::kafka::ctp::{self, CtpOptions, Outgoing, Output, StepError, Transform};
use crate::kafka::{DeadLetter, DlqStage, KafkaSettings, Topic};

const MAX_BATCH: usize = 256;
/// How long a batch stays open after its first message: the trade between
/// transactions per second (each commit costs broker round trips) and the
/// latency a request waits for its batch.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// What a scanner service needs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub kafka: Arc<KafkaSettings>,
    pub ruleset: Arc<Ruleset>,
    pub limits: ScanLimits,
    pub threads: usize,
    /// This instance's stable name, in its client id and transactional id
    /// ([`CtpOptions::transactional_id`]).
    pub instance: String,
}

/// Counters, logged at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceStats {
    pub scanned: u64,
    pub dead_lettered: u64,
    pub aborted_batches: u64,
}

/// Runs until `stop` resolves. Must run inside an actix System.
pub async fn run(
    opts: ServiceOptions,
    ready: impl FnOnce() -> anyhow::Result<()>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ServiceStats> {
    let kafka = &opts.kafka;
    crate::kafka::ensure_topics(kafka)
        .await
        .context("creating the Kafka topics")?;
    let client = format!("portcullis-scanner-{}", opts.instance);
    let mut scan = Scan {
        scanners: start_scanners(opts.threads, opts.ruleset.clone(), opts.limits),
        shared_topic: kafka.topics.name(Topic::VerdictCache),
        instance: opts.instance.clone(),
        scanned: 0,
    };
    let ctp_opts = CtpOptions {
        input: Topic::ScanRequests,
        group: kafka.scanner_group.clone(),
        client,
        max_batch: MAX_BATCH,
        batch_window: BATCH_WINDOW,
        max_inputs: None,
        idle_exit: None,
    };
    tracing::info!(instance = %opts.instance, group = %kafka.scanner_group, "scanner service starting");
    let (s, _) = ctp::run(kafka, &ctp_opts, &mut scan, ready, stop).await?;
    let stats = ServiceStats {
        scanned: scan.scanned,
        dead_lettered: s.dead_lettered,
        aborted_batches: s.aborted_batches,
    };
    tracing::info!(
        scanned = stats.scanned,
        dead_lettered = stats.dead_lettered,
        aborted = stats.aborted_batches,
        "scanner service stopped"
    );
    Ok(stats)
}

/// The scanner service's transform: scan each request of a batch, reply to
/// its reply partition and share clean/infected verdicts.
struct Scan {
    scanners: Addr<ScannerWorker>,
    shared_topic: String,
    instance: String,
    /// Requests scanned (in batches that may still abort: an aborted batch
    /// is scanned again).
    scanned: u64,
}

impl Transform for Scan {
    type Side = ();

    async fn transform(&mut self, batch: &[&OwnedMessage]) -> Result<Output<()>, StepError> {
        let mut dead = Vec::new();
        let mut work = Vec::with_capacity(batch.len());
        for &m in batch {
            match wire::decode::<ScanRequest>(m.payload().unwrap_or_default()) {
                Ok(mut request) => {
                    let content = ScanContent::Bytes(std::mem::take(&mut request.content));
                    let scan = self.scanners.send(ScanFile {
                        access: request.request,
                        content,
                    });
                    work.push((request, scan));
                }
                Err(e) => {
                    tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "undecodable scan request: dead-lettered");
                    dead.push(DeadLetter::of(
                        Topic::ScanRequests,
                        m,
                        DlqStage::Decode,
                        &e.to_string(),
                    ));
                }
            }
        }
        let mut messages = Vec::with_capacity(work.len() * 2);
        for (request, scan) in work {
            let outcome = scan.await.context("scanner workers unavailable")?;
            self.scanned += 1;
            self.outgoing(&request, &outcome, &mut messages)?;
        }
        Ok(Output {
            messages,
            dead,
            side: (),
        })
    }

    async fn before_commit(&mut self, (): ()) -> Result<(), StepError> {
        Ok(())
    }
}

impl Scan {
    /// The reply to `request`, and its shared verdict if it has one.
    fn outgoing(
        &self,
        request: &ScanRequest,
        outcome: &ScanOutcome,
        out: &mut Vec<Outgoing>,
    ) -> anyhow::Result<()> {
        let reply = ScanReplied {
            request: request.request,
            node_id: request.node_id.clone(),
            sha256: outcome.sha256.unwrap_or(request.sha256),
            size: outcome.size,
            verdict: outcome.verdict.clone(),
            ruleset: outcome.ruleset.clone(),
            scanner: self.instance.clone(),
            scan_duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
        };
        out.push(Outgoing {
            topic: request.reply_topic.clone(),
            partition: Some(request.reply_partition),
            key: request.request.as_bytes().to_vec(),
            payload: wire::encode(&reply)?,
            headers: Vec::new(),
        });
        if matches!(outcome.verdict, Verdict::Clean | Verdict::Infected { .. }) {
            if let Some(sha) = outcome.sha256 {
                let shared = VerdictShared {
                    sha256: sha,
                    ruleset: outcome.ruleset.clone(),
                    verdict: outcome.verdict.clone(),
                    scanned_at: Timestamp::now(),
                };
                out.push(Outgoing {
                    topic: self.shared_topic.clone(),
                    partition: None,
                    key: wire::shared_verdict_key(&sha, &outcome.ruleset),
                    payload: wire::encode(&shared)?,
                    headers: Vec::new(),
                });
            }
        }
        Ok(())
    }
}
