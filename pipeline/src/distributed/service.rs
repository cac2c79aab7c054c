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
//! the DLQ instead of being retried again. The partition never blocks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use portcullis_actors::scanner::{
    start_scanners, Ruleset, ScanContent, ScanFile, ScanLimits, ScanOutcome, ScannerWorker,
};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest, VerdictShared};
use portcullis_schemas::{Timestamp, Verdict};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::kafka::txn::{self, TxnError};
use crate::kafka::{
    group_consumer, transactional_producer, DeadLetters, DlqStage, KafkaSettings, Topic,
};

const MAX_BATCH: usize = 256;
/// How long a batch stays open after its first message: the trade between
/// transactions per second (each commit costs broker round trips) and the
/// latency a request waits for its batch.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed attempts after which a message is dead-lettered instead.
const MAX_ATTEMPTS: u32 = 3;

/// What a scanner service needs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub kafka: Arc<KafkaSettings>,
    pub ruleset: Arc<Ruleset>,
    pub limits: ScanLimits,
    pub threads: usize,
    /// This instance's stable name: its client id and transactional id.
    pub instance: String,
}

/// Counters, logged at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceStats {
    pub scanned: u64,
    pub dead_lettered: u64,
    pub aborted_batches: u64,
}

struct Reply {
    request: ScanRequest,
    outcome: ScanOutcome,
}

/// (topic, partition, key, payload) of one message a step produces.
type Outgoing = (String, Option<i32>, Vec<u8>, Vec<u8>);

/// Runs until `stop` resolves. Must run inside an actix System.
pub async fn run(
    opts: ServiceOptions,
    ready: impl FnOnce() -> anyhow::Result<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ServiceStats> {
    let kafka = &opts.kafka;
    crate::kafka::ensure_topics(kafka)
        .await
        .context("creating the Kafka topics")?;
    let client = format!("portcullis-scanner-{}", opts.instance);
    let scanners = start_scanners(opts.threads, opts.ruleset.clone(), opts.limits);
    let mut stats = ServiceStats::default();
    let mut ready = Some(ready);
    let mut attempts: HashMap<(i32, i64), u32> = HashMap::new();

    'session: loop {
        let producer = transactional_producer(kafka, &client, &client)?;
        txn::init_transactions(&producer, &client, TXN_TIMEOUT).await?;
        let consumer = group_consumer(kafka, &client, &kafka.scanner_group)?;
        let topic = kafka.topics.name(Topic::ScanRequests);
        consumer
            .subscribe(&[&topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        let dlq = DeadLetters::new(producer.clone(), kafka.topics.clone(), &client);
        if let Some(r) = ready.take() {
            r()?;
        }
        tracing::info!(instance = %opts.instance, group = %kafka.scanner_group, topic, "scanner service ready");
        loop {
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = stop.changed() => break 'session,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer");
                    continue;
                }
            };
            // A batch closes BATCH_WINDOW after its first message (or when
            // full): under load it never waits to fill up, and a lone request
            // waits at most the window.
            let mut batch = vec![first];
            let close_at = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(close_at, consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            match step(
                &producer,
                &consumer,
                &dlq,
                &scanners,
                kafka,
                &opts.instance,
                &batch,
                &mut attempts,
            )
            .await
            {
                Ok((scanned, dead)) => {
                    stats.scanned += scanned;
                    stats.dead_lettered += dead;
                    for m in &batch {
                        attempts.remove(&(m.partition(), m.offset()));
                    }
                }
                Err(e) => {
                    stats.aborted_batches += 1;
                    for m in &batch {
                        *attempts.entry((m.partition(), m.offset())).or_default() += 1;
                    }
                    tracing::warn!(error = %e, batch = batch.len(), "batch not committed; it will be consumed again");
                    let fatal =
                        matches!(e.downcast_ref::<TxnError>(), Some(TxnError::Fatal { .. }));
                    if let Err(e) = txn::rewind_to_committed(&consumer, &client, TXN_TIMEOUT) {
                        tracing::warn!(error = %e, "rewind failed; starting a new session");
                        continue 'session;
                    }
                    if fatal {
                        continue 'session;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tracing::info!(
        scanned = stats.scanned,
        dead_lettered = stats.dead_lettered,
        aborted = stats.aborted_batches,
        "scanner service stopped"
    );
    Ok(stats)
}

/// One transaction: scan the batch, produce replies and shared verdicts,
/// commit them with the offsets. Returns (scanned, dead-lettered).
#[allow(clippy::too_many_arguments)]
async fn step(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    dlq: &DeadLetters,
    scanners: &Addr<ScannerWorker>,
    kafka: &KafkaSettings,
    instance: &str,
    batch: &[OwnedMessage],
    attempts: &mut HashMap<(i32, i64), u32>,
) -> anyhow::Result<(u64, u64)> {
    txn::begin(producer)?;
    let mut dead = 0u64;
    let mut work = Vec::with_capacity(batch.len());
    for m in batch {
        let tried = attempts
            .get(&(m.partition(), m.offset()))
            .copied()
            .unwrap_or(0);
        if tried >= MAX_ATTEMPTS {
            dlq.send(
                Topic::ScanRequests,
                m,
                DlqStage::Process,
                &format!("in {tried} failed transactions"),
            )
            .await?;
            dead += 1;
            continue;
        }
        match wire::decode::<ScanRequest>(m.payload().unwrap_or_default()) {
            Ok(mut request) => {
                let content = ScanContent::Bytes(std::mem::take(&mut request.content));
                let scan = scanners.send(ScanFile {
                    access: request.request,
                    content,
                });
                work.push((request, scan));
            }
            Err(e) => {
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "undecodable scan request: dead-lettered");
                dlq.send(Topic::ScanRequests, m, DlqStage::Decode, &e.to_string())
                    .await?;
                dead += 1;
            }
        }
    }
    let mut replies = Vec::with_capacity(work.len());
    for (request, scan) in work {
        let outcome = scan.await.context("scanner workers unavailable")?;
        replies.push(Reply { request, outcome });
    }
    let shared_topic = kafka.topics.name(Topic::VerdictCache);
    let mut out: Vec<Outgoing> = Vec::with_capacity(replies.len() * 2);
    for Reply { request, outcome } in &replies {
        let reply = ScanReplied {
            request: request.request,
            node_id: request.node_id.clone(),
            sha256: outcome.sha256.unwrap_or(request.sha256),
            size: outcome.size,
            verdict: outcome.verdict.clone(),
            ruleset: outcome.ruleset.clone(),
            scanner: instance.to_string(),
            scan_duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
        };
        out.push((
            request.reply_topic.clone(),
            Some(request.reply_partition),
            request.request.as_bytes().to_vec(),
            wire::encode(&reply)?,
        ));
        if matches!(outcome.verdict, Verdict::Clean | Verdict::Infected { .. }) {
            if let Some(sha) = outcome.sha256 {
                let shared = VerdictShared {
                    sha256: sha,
                    ruleset: outcome.ruleset.clone(),
                    verdict: outcome.verdict.clone(),
                    scanned_at: Timestamp::now(),
                };
                out.push((
                    shared_topic.clone(),
                    None,
                    wire::shared_verdict_key(&sha, &outcome.ruleset),
                    wire::encode(&shared)?,
                ));
            }
        }
    }
    let deliveries = out.iter().map(|(topic, partition, key, payload)| {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(p) = partition {
            record = record.partition(*p);
        }
        producer.send(record, Duration::from_secs(5))
    });
    for d in futures::future::join_all(deliveries).await {
        if let Err((e, _)) = d {
            txn::abort(producer, TXN_TIMEOUT).await?;
            anyhow::bail!("producing a reply failed: {e}");
        }
    }
    let refs: Vec<&OwnedMessage> = batch.iter().collect();
    let offsets = txn::next_offsets(&refs)?;
    let group = consumer
        .group_metadata()
        .context("the consumer has no group metadata")?;
    txn::commit_with_offsets(producer, offsets, group, TXN_TIMEOUT).await?;
    Ok((replies.len() as u64, dead))
}
