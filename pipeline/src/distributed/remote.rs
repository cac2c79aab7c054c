//! The node side of distributed scanning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_actors::scanner::{Loaded, ScanFile, ScanOutcome};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest, VerdictShared};
use portcullis_schemas::{
    EventId, NodeId, RulesetVersion, SkipReason, Timestamp, TraceContext, Verdict,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::kafka::{
    assigned_consumer, assigned_consumer_reporting, idempotent_producer, DeadLetters, DlqStage,
    KafkaSettings, LargeFiles, Topic,
};

type Pending = Arc<Mutex<HashMap<EventId, oneshot::Sender<ScanReplied>>>>;

/// Shared verdicts known to this node, by `wire::shared_verdict_key`.
/// Bounded: when full it starts over (the compacted topic still has them).
#[derive(Clone, Default, Debug)]
pub struct SharedVerdicts(Arc<Mutex<HashMap<Vec<u8>, Verdict>>>);

const SHARED_MAX: usize = 262_144;

impl SharedVerdicts {
    fn get(&self, key: &[u8]) -> Option<Verdict> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: Vec<u8>, v: Verdict) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= SHARED_MAX {
                m.clear();
            }
            m.insert(key, v);
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of the remote scanner.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemoteStats {
    pub requested: u64,
    pub answered_from_shared: u64,
    pub replies: u64,
    pub local: u64,
    pub skipped_large: u64,
    pub failed: u64,
}

/// Answers `ScanFile` through Kafka. Runs on its own Arbiter thread, so
/// reading and hashing the (inline-limited) content never stalls the
/// Enforcer's executor.
pub struct RemoteScanner {
    settings: Arc<KafkaSettings>,
    node_id: NodeId,
    reply_topic: String,
    reply_partition: i32,
    ruleset: RulesetVersion,
    producer: FutureProducer,
    local: Recipient<ScanFile>,
    pending: Pending,
    shared: SharedVerdicts,
    stats: Arc<Mutex<RemoteStats>>,
    reply_timeout: Duration,
}

impl std::fmt::Debug for RemoteScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteScanner")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Actor for RemoteScanner {
    type Context = Context<Self>;
}

/// What the node needs to run the remote scanner: the actor address, its
/// arbiter (which also runs the two listeners), and its counters.
pub struct RemoteHandles {
    pub addr: Addr<RemoteScanner>,
    pub stats: Arc<Mutex<RemoteStats>>,
    pub shared: SharedVerdicts,
    arbiter: Arbiter,
    /// Resolves (with the number of shared verdicts known) once the node
    /// read the shared-verdict topic to its end; dropped unresolved when
    /// it cannot be read. See [`RemoteHandles::wait_for_shared`].
    shared_loaded: Option<oneshot::Receiver<usize>>,
}

impl std::fmt::Debug for RemoteHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHandles").finish_non_exhaustive()
    }
}

impl RemoteHandles {
    /// Waits, at most `bound`, until the verdicts the cluster already
    /// shares are loaded, so a file scanned on another node is not scanned
    /// again here right after start. Returns how many were loaded, or
    /// `None` when they were not (in time): files are then scanned until
    /// the verdicts arrive, which costs scans, never correctness.
    pub async fn wait_for_shared(&mut self, bound: Duration) -> Option<usize> {
        let rx = self.shared_loaded.take()?;
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(n)) => Some(n),
            _ => None,
        }
    }

    /// Stops the remote scanner and its listeners.
    pub fn stop(self) {
        self.arbiter.stop();
    }
}

/// Starts the remote scanner and its two listeners (this node's reply
/// partition from its end; the shared verdicts from the beginning) on one
/// new Arbiter thread. Must run inside an actix System.
pub fn start(
    settings: Arc<KafkaSettings>,
    node_id: NodeId,
    ruleset: RulesetVersion,
    local: Recipient<ScanFile>,
    reply_timeout: Duration,
) -> anyhow::Result<RemoteHandles> {
    let client = format!("portcullis-node-{}", node_id.0);
    let producer = idempotent_producer(&settings, &client)?;
    let dlq = Arc::new(DeadLetters::new(
        producer.clone(),
        settings.topics.clone(),
        &client,
    ));
    let pending: Pending = Arc::default();
    let shared = SharedVerdicts::default();
    let stats = Arc::new(Mutex::new(RemoteStats::default()));
    let partition = settings.reply_partition_for(&node_id.0);
    let reply_topic = settings.topics.name(Topic::Verdicts);
    let shared_topic = settings.topics.name(Topic::VerdictCache);
    let arbiter = Arbiter::new();
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();

    let actor = RemoteScanner {
        settings: settings.clone(),
        node_id: node_id.clone(),
        reply_topic: reply_topic.clone(),
        reply_partition: partition,
        ruleset,
        producer,
        local,
        pending: pending.clone(),
        shared: shared.clone(),
        stats: stats.clone(),
        reply_timeout,
    };
    let addr = RemoteScanner::start_in_arbiter(&arbiter.handle(), move |_| actor);

    // Consumers are created inside the arbiter's runtime.
    let (s2, c2, st2, d2, sh2) = (
        settings.clone(),
        client.clone(),
        stats.clone(),
        dlq.clone(),
        shared.clone(),
    );
    let ok = arbiter.spawn(async move {
        // Only replies to this run's requests matter. "The end" is resolved
        // now, not whenever the consumer gets to it: a reply produced in
        // between would be skipped.
        let start_at = match high_watermark(&s2, &c2, &reply_topic, partition).await {
            Ok(h) => Offset::Offset(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the reply partition's end; reading it from the beginning");
                Offset::Beginning
            }
        };
        let replies = match assigned_consumer(&s2, &format!("{c2}-replies"), &reply_topic, &[partition], start_at) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the reply partition; remote scans will time out");
                return;
            }
        };
        let parts: Vec<i32> = (0..s2.partitions.verdict_cache).collect();
        let verdicts = match assigned_consumer_reporting(&s2, &format!("{c2}-shared"), &shared_topic, &parts, Offset::Beginning, true) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the shared verdicts; every file is scanned");
                return;
            }
        };
        let node = node_id.clone();
        let dlq_r = d2.clone();
        actix_rt::spawn(async move {
            loop {
                match replies.recv().await {
                    Ok(m) => match wire::decode::<ScanReplied>(m.payload().unwrap_or_default()) {
                        Ok(reply) if reply.node_id == node => {
                            let tx = pending.lock().ok().and_then(|mut p| p.remove(&reply.request));
                            if let Some(tx) = tx {
                                if let Ok(mut s) = st2.lock() {
                                    s.replies += 1;
                                }
                                let _ = tx.send(reply);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => dead_letter(&dlq_r, Topic::Verdicts, &m, &e.to_string()).await,
                    },
                    Err(e) => tracing::debug!(error = %e, "reply consumer"),
                }
            }
        });
        actix_rt::spawn(async move {
            // Until every partition reached its end once, the node is
            // still loading what the cluster already knows.
            let mut loading: std::collections::HashSet<i32> = parts.iter().copied().collect();
            let mut loaded = Some(loaded_tx);
            loop {
                match verdicts.recv().await {
                    Ok(m) => match wire::decode::<VerdictShared>(m.payload().unwrap_or_default()) {
                        Ok(v) => sh2.put(wire::shared_verdict_key(&v.sha256, &v.ruleset), v.verdict),
                        Err(e) => dead_letter(&d2, Topic::VerdictCache, &m, &e.to_string()).await,
                    },
                    Err(KafkaError::PartitionEOF(p)) => {
                        loading.remove(&p);
                        if loading.is_empty() {
                            if let Some(tx) = loaded.take() {
                                let _ = tx.send(sh2.len());
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "shared verdict consumer"),
                }
            }
        });
    });
    if !ok {
        anyhow::bail!("the remote scanner's arbiter stopped before it started");
    }
    Ok(RemoteHandles {
        addr,
        stats,
        shared,
        arbiter,
        shared_loaded: Some(loaded_rx),
    })
}

/// The next offset of a partition, asked of the broker.
async fn high_watermark(
    settings: &KafkaSettings,
    client: &str,
    topic: &str,
    partition: i32,
) -> anyhow::Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        crate::kafka::base_config(settings, &format!("{client}-watermarks")).create()?;
    let topic = topic.to_owned();
    let (_, high) = actix_rt::task::spawn_blocking(move || {
        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))
    })
    .await??;
    Ok(high)
}

async fn dead_letter(
    dlq: &DeadLetters,
    origin: Topic,
    m: &rdkafka::message::BorrowedMessage<'_>,
    error: &str,
) {
    tracing::warn!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        error,
        "undecodable message: dead-lettered"
    );
    if let Err(e) = dlq.send(origin, m, DlqStage::Decode, error).await {
        tracing::error!(error = %e, "dead-lettering failed");
    }
}

fn outcome(
    verdict: Verdict,
    sha256: Option<[u8; 32]>,
    size: u64,
    ruleset: RulesetVersion,
    started: Instant,
) -> ScanOutcome {
    ScanOutcome {
        verdict,
        sha256,
        size,
        ruleset,
        duration: started.elapsed(),
    }
}

impl Handler<ScanFile> for RemoteScanner {
    type Result = ResponseFuture<ScanOutcome>;

    fn handle(&mut self, msg: ScanFile, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let span = tracing::debug_span!("remote_scan", event_id = %msg.access);
        let _guard = span.enter();
        let ruleset = self.ruleset.clone();
        let bump = |f: fn(&mut RemoteStats)| {
            if let Ok(mut s) = self.stats.lock() {
                f(&mut s);
            }
        };
        let content = match msg.content.read_up_to(self.settings.inline_limit) {
            Ok(Loaded::Whole(b)) => b,
            Ok(Loaded::TooLarge { size }) => match self.settings.large_files {
                LargeFiles::Local => {
                    bump(|s| s.local += 1);
                    let local = self.local.clone();
                    return Box::pin(async move {
                        match local.send(msg).await {
                            Ok(o) => o,
                            Err(e) => outcome(
                                Verdict::Error {
                                    message: format!("local scanner unavailable: {e}"),
                                },
                                None,
                                size,
                                ruleset,
                                started,
                            ),
                        }
                    });
                }
                LargeFiles::Skip => {
                    bump(|s| s.skipped_large += 1);
                    let limit = self.settings.inline_limit;
                    let o = outcome(
                        Verdict::Skipped {
                            reason: SkipReason::TooLarge { size, limit },
                        },
                        None,
                        size,
                        ruleset,
                        started,
                    );
                    return Box::pin(async move { o });
                }
            },
            Err(e) => {
                let o = outcome(
                    Verdict::Error {
                        message: format!("reading the content: {e}"),
                    },
                    None,
                    0,
                    ruleset,
                    started,
                );
                return Box::pin(async move { o });
            }
        };
        let sha256: [u8; 32] = Sha256::digest(&content).into();
        let size = content.len() as u64;
        if let Some(v) = self
            .shared
            .get(&wire::shared_verdict_key(&sha256, &ruleset))
        {
            bump(|s| s.answered_from_shared += 1);
            let o = outcome(v, Some(sha256), size, ruleset, started);
            return Box::pin(async move { o });
        }
        let request = ScanRequest {
            request: msg.access,
            node_id: self.node_id.clone(),
            reply_topic: self.reply_topic.clone(),
            reply_partition: self.reply_partition,
            sha256,
            size,
            content,
            trace: TraceContext::root_for(&msg.access),
            sent_at: Timestamp::now(),
        };
        let payload = match wire::encode(&request) {
            Ok(p) => p,
            Err(e) => {
                let o = outcome(
                    Verdict::Error {
                        message: e.to_string(),
                    },
                    Some(sha256),
                    size,
                    ruleset,
                    started,
                );
                return Box::pin(async move { o });
            }
        };
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(msg.access, tx);
        }
        bump(|s| s.requested += 1);
        let topic = self.settings.topics.name(Topic::ScanRequests);
        let producer = self.producer.clone();
        let pending = self.pending.clone();
        let stats = self.stats.clone();
        let timeout = self.reply_timeout;
        let access = msg.access;
        Box::pin(async move {
            let record = FutureRecord::to(&topic).key(&sha256[..]).payload(&payload);
            let delivery = producer.send(record, Duration::from_secs(0));
            let failed = |message: String| {
                if let Ok(mut p) = pending.lock() {
                    p.remove(&access);
                }
                if let Ok(mut s) = stats.lock() {
                    s.failed += 1;
                }
                Verdict::Error { message }
            };
            if let Err((e, _)) = delivery.await {
                let v = failed(format!("scan request not delivered: {e}"));
                return outcome(v, Some(sha256), size, ruleset, started);
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => ScanOutcome {
                    verdict: reply.verdict,
                    sha256: Some(reply.sha256),
                    size: reply.size,
                    ruleset: reply.ruleset,
                    duration: Duration::from_micros(reply.scan_duration_us),
                },
                Ok(Err(_)) => outcome(
                    failed("reply channel closed".into()),
                    Some(sha256),
                    size,
                    ruleset,
                    started,
                ),
                Err(_) => outcome(
                    failed(format!(
                        "no verdict from the scanner service within {}",
                        humantime::format_duration(timeout)
                    )),
                    Some(sha256),
                    size,
                    ruleset,
                    started,
                ),
            }
        })
    }
}
