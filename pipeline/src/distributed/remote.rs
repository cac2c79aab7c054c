//! The node side of distributed scanning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_actors::scanner::{hash_list_verdict, LiveRules, Loaded, ScanFile, ScanOutcome};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest, VerdictShared};
use portcullis_schemas::{EventId, NodeId, RulesetVersion, SkipReason, Timestamp, Verdict};
use portcullis_telemetry::catalog;
use rdkafka::client::ClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::Offset;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::kafka::stats::{self, ClientStats};
use crate::kafka::trace as kafka_trace;
use crate::kafka::{
    idempotent_producer, reply_consumer, request_producer, shared_verdict_consumer,
    AssignedConsumer, DeadLetter, DeadLetters, DlqStage, KafkaSettings, LargeFiles, Topic,
};

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
    /// Replies nothing waited for: a second reply to a request (scanned
    /// again after a scanner crash or rebalance), or one after the request
    /// gave up. Dropped.
    pub unclaimed_replies: u64,
}

/// Answers `ScanFile` through Kafka. Runs on its own Arbiter thread, so
/// reading and hashing the (inline-limited) content never stalls the
/// Enforcer's executor.
pub struct RemoteScanner {
    settings: Arc<KafkaSettings>,
    node_id: NodeId,
    request_topic: String,
    reply_topic: String,
    reply_partition: i32,
    /// The node's ruleset: its version keys the shared verdicts, its hash
    /// lists answer before any request is sent.
    rules: LiveRules,
    producer: Requests,
    local: Recipient<ScanFile>,
    waiting: Waiting,
    shared: SharedVerdicts,
    stats: Arc<Mutex<RemoteStats>>,
    reply_timeout: Duration,
    metrics: RemoteMetrics,
}

/// `portcullis_remote_*` (docs/observability.md).
#[derive(Clone)]
struct RemoteMetrics {
    latency: portcullis_telemetry::Histogram,
    replied: metrics::Counter,
    failed: metrics::Counter,
    timed_out: metrics::Counter,
}

impl RemoteMetrics {
    fn new() -> Self {
        let result =
            |r: &'static str| metrics::counter!(catalog::REMOTE_REQUESTS.name, "result" => r);
        Self {
            latency: portcullis_telemetry::Histogram::new(&catalog::REMOTE_SCAN_DURATION, &[]),
            replied: result("replied"),
            failed: result("failed"),
            timed_out: result("timed_out"),
        }
    }
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
    /// Tells the reader threads to stop.
    stopping: Arc<AtomicBool>,
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

    /// Stops the remote scanner and its readers (they leave within one
    /// poll, 100 ms).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.arbiter.stop();
    }
}

/// Starts the remote scanner on a new Arbiter thread, and its two readers
/// on threads of their own: this node's reply partition (from its end, as
/// the broker reports it now, so that no reply to a request of this run is
/// skipped) and the shared verdicts (from the beginning). Both read
/// `read_uncommitted` with a polled `BaseConsumer`
/// ([`reply_consumer`]): a reply is handed to its waiting request as soon
/// as the broker has it. Must run inside an actix System.
pub async fn start(
    settings: Arc<KafkaSettings>,
    node_id: NodeId,
    rules: LiveRules,
    local: Recipient<ScanFile>,
    reply_timeout: Duration,
) -> anyhow::Result<RemoteHandles> {
    let client = format!("portcullis-node-{}", node_id.0);
    let waiting = Waiting::default();
    // Its own thread hands delivery failures to the waiting requests.
    let producer = request_producer(
        &settings,
        &client,
        RequestDeliveries {
            waiting: waiting.clone(),
            stats: ClientStats::new(stats::role::NODE_REQUESTS),
        },
    )?;
    // Dead letters are rare: a producer of their own, off the hot path.
    let dlq = Arc::new(DeadLetters::new(
        idempotent_producer(&settings, &format!("{client}-dlq"))?,
        settings.topics.clone(),
        &client,
    ));
    let shared = SharedVerdicts::default();
    let stats = Arc::new(Mutex::new(RemoteStats::default()));
    let partition = settings.reply_partition_for(&node_id.0);
    let reply_topic = settings.topics.name(Topic::Verdicts);
    let shared_topic = settings.topics.name(Topic::VerdictCache);
    let arbiter = Arbiter::new();
    let stopping = Arc::new(AtomicBool::new(false));

    // "The end" is resolved before the first request can be sent.
    let start_at = match high_watermark(&settings, &client, &reply_topic, partition).await {
        Ok(h) => Offset::Offset(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the reply partition's end; reading it from the beginning");
            Offset::Beginning
        }
    };
    let replies = reply_consumer(
        &settings,
        &format!("{client}-replies"),
        &reply_topic,
        &[partition],
        start_at,
        false,
    )?;
    let parts: Vec<i32> = (0..settings.partitions.verdict_cache).collect();
    let verdicts = shared_verdict_consumer(
        &settings,
        &format!("{client}-shared"),
        &shared_topic,
        &parts,
        Offset::Beginning,
    )?;

    let reader = ReplyReader {
        node: node_id.clone(),
        waiting: waiting.clone(),
        stats: stats.clone(),
        dlq: dlq.clone(),
        arbiter: arbiter.handle(),
        stopping: stopping.clone(),
        unclaimed: metrics::counter!(catalog::REMOTE_REPLIES_UNCLAIMED.name),
    };
    std::thread::Builder::new()
        .name("portcullis-replies".into())
        .spawn(move || reader.run(&replies))?;
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let loader = SharedReader {
        shared: shared.clone(),
        dlq,
        arbiter: arbiter.handle(),
        stopping: stopping.clone(),
    };
    std::thread::Builder::new()
        .name("portcullis-shared-verdicts".into())
        .spawn(move || loader.run(&verdicts, parts, loaded_tx))?;

    let actor = RemoteScanner {
        settings: settings.clone(),
        node_id,
        request_topic: settings.topics.name(Topic::ScanRequests),
        reply_topic,
        reply_partition: partition,
        rules,
        producer,
        local,
        waiting,
        shared: shared.clone(),
        stats: stats.clone(),
        reply_timeout,
        metrics: RemoteMetrics::new(),
    };
    let addr = RemoteScanner::start_in_arbiter(&arbiter.handle(), move |_| actor);
    Ok(RemoteHandles {
        addr,
        stats,
        shared,
        arbiter,
        stopping,
        shared_loaded: Some(loaded_rx),
    })
}

/// Bound of one poll of a reader thread (the stop flag is looked at
/// between polls).
const READER_POLL: Duration = Duration::from_millis(100);

/// The requests waiting for their reply, by access id. The first reply to
/// a request is handed over; any later one (a scanner that scanned the
/// request again after a crash or a rebalance, or a reply after the
/// request gave up) finds nothing waiting and is dropped.
#[derive(Clone, Default, Debug)]
struct Waiting(Arc<Mutex<HashMap<EventId, ReplySender>>>);

/// Where a request's reply (or why it failed) goes.
type ReplySender = oneshot::Sender<Result<ScanReplied, String>>;

impl Waiting {
    fn wait(&self, request: EventId) -> oneshot::Receiver<Result<ScanReplied, String>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.0.lock() {
            p.insert(request, tx);
        }
        rx
    }

    fn forget(&self, request: &EventId) {
        if let Ok(mut p) = self.0.lock() {
            p.remove(request);
        }
    }

    /// Hands `reply` to its request; `false` if none waits for it.
    fn deliver(&self, reply: ScanReplied) -> bool {
        let tx = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&reply.request));
        tx.is_some_and(|tx| tx.send(Ok(reply)).is_ok())
    }

    /// Tells `request` it failed (its message was not delivered).
    fn fail(&self, request: &EventId, why: String) {
        let tx = self.0.lock().ok().and_then(|mut p| p.remove(request));
        if let Some(tx) = tx {
            let _ = tx.send(Err(why));
        }
    }
}

/// The request producer's context: a request the broker did not take
/// fails at once instead of waiting for its reply's timeout.
struct RequestDeliveries {
    waiting: Waiting,
    stats: ClientStats,
}

impl ClientContext for RequestDeliveries {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.record(&statistics);
    }
}

impl ProducerContext for RequestDeliveries {
    type DeliveryOpaque = Box<EventId>;

    fn delivery(&self, result: &DeliveryResult<'_>, request: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.waiting
                .fail(&request, format!("scan request not delivered: {e}"));
        }
    }
}

type Requests = ThreadedProducer<RequestDeliveries>;

/// The thread reading this node's reply partition.
struct ReplyReader {
    node: NodeId,
    waiting: Waiting,
    stats: Arc<Mutex<RemoteStats>>,
    dlq: Arc<DeadLetters>,
    arbiter: ArbiterHandle,
    stopping: Arc<AtomicBool>,
    unclaimed: metrics::Counter,
}

impl ReplyReader {
    fn run(self, consumer: &AssignedConsumer) {
        while !self.stopping.load(Ordering::Relaxed) {
            match consumer.poll(READER_POLL) {
                Some(Ok(m)) => match wire::decode::<ScanReplied>(m.payload().unwrap_or_default()) {
                    // Another node's reply on a shared partition.
                    Ok(reply) if reply.node_id != self.node => {}
                    Ok(reply) => {
                        let request = reply.request;
                        let _process =
                            kafka_trace::process_span(&m, None, &request.to_string(), None);
                        let handed = self.waiting.deliver(reply);
                        if let Ok(mut s) = self.stats.lock() {
                            if handed {
                                s.replies += 1;
                            } else {
                                s.unclaimed_replies += 1;
                            }
                        }
                        if !handed {
                            self.unclaimed.increment(1);
                            tracing::debug!(event_id = %request, "a reply nothing waits for (already answered, or given up): dropped");
                        }
                    }
                    Err(e) => dead_letter(
                        &self.dlq,
                        &self.arbiter,
                        Topic::Verdicts,
                        &m,
                        &e.to_string(),
                    ),
                },
                Some(Err(e)) => tracing::debug!(error = %e, "reply consumer"),
                None => {}
            }
        }
    }
}

/// The thread reading the shared verdicts.
struct SharedReader {
    shared: SharedVerdicts,
    dlq: Arc<DeadLetters>,
    arbiter: ArbiterHandle,
    stopping: Arc<AtomicBool>,
}

impl SharedReader {
    fn run(self, consumer: &AssignedConsumer, parts: Vec<i32>, loaded: oneshot::Sender<usize>) {
        // Until every partition reached its end once, the node is still
        // loading what the cluster already knows.
        let mut loading: std::collections::HashSet<i32> = parts.into_iter().collect();
        let mut loaded = Some(loaded);
        while !self.stopping.load(Ordering::Relaxed) {
            match consumer.poll(READER_POLL) {
                Some(Ok(m)) => match wire::decode::<VerdictShared>(m.payload().unwrap_or_default())
                {
                    Ok(v) => self
                        .shared
                        .put(wire::shared_verdict_key(&v.sha256, &v.ruleset), v.verdict),
                    Err(e) => dead_letter(
                        &self.dlq,
                        &self.arbiter,
                        Topic::VerdictCache,
                        &m,
                        &e.to_string(),
                    ),
                },
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    loading.remove(&p);
                    if loading.is_empty() {
                        if let Some(tx) = loaded.take() {
                            let _ = tx.send(self.shared.len());
                        }
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "shared verdict consumer"),
                None => {}
            }
        }
    }
}

/// The next offset of a partition, asked of the broker.
async fn high_watermark(
    settings: &KafkaSettings,
    client: &str,
    topic: &str,
    partition: i32,
) -> anyhow::Result<i64> {
    use rdkafka::consumer::Consumer;
    let consumer: BaseConsumer =
        crate::kafka::base_config(settings, &format!("{client}-watermarks")).create()?;
    let topic = topic.to_owned();
    let (_, high) = actix_rt::task::spawn_blocking(move || {
        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))
    })
    .await??;
    Ok(high)
}

/// Sends an undecodable message to its DLQ from the arbiter (the reader
/// thread goes on at once).
fn dead_letter(
    dlq: &Arc<DeadLetters>,
    arbiter: &ArbiterHandle,
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
    let letter = DeadLetter::of(origin, m, DlqStage::Decode, error);
    let dlq = dlq.clone();
    arbiter.spawn(async move {
        if let Err(e) = dlq.send_letter(letter).await {
            tracing::error!(error = %e, "dead-lettering failed");
        }
    });
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
        hash_list: None,
        members: Vec::new(),
    }
}

impl Handler<ScanFile> for RemoteScanner {
    type Result = ResponseFuture<ScanOutcome>;

    fn handle(&mut self, msg: ScanFile, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let span = tracing::debug_span!("remote_scan", event_id = %msg.access);
        let _guard = span.enter();
        let rules = self.rules.current();
        let ruleset = rules.version().clone();
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
        // The node's own hash lists decide first: no request at all.
        if let Some(hit) = rules.hash_lists().lookup(&sha256) {
            let mut o = outcome(
                hash_list_verdict(&hit, &sha256),
                Some(sha256),
                size,
                ruleset,
                started,
            );
            o.hash_list = Some(hit.kind);
            return Box::pin(async move { o });
        }
        if let Some(v) = self
            .shared
            .get(&wire::shared_verdict_key(&sha256, &ruleset))
        {
            bump(|s| s.answered_from_shared += 1);
            let o = outcome(v, Some(sha256), size, ruleset, started);
            return Box::pin(async move { o });
        }
        // `send <topic>` under the scan's span; the request carries its
        // context, in its `trace` field and its `traceparent` header.
        let send = kafka_trace::send_span(
            &self.request_topic,
            None,
            &msg.access.to_string(),
            &msg.trace,
        );
        let trace = portcullis_telemetry::trace::context_of(&send).unwrap_or(msg.trace);
        let request = ScanRequest {
            request: msg.access,
            node_id: self.node_id.clone(),
            reply_topic: self.reply_topic.clone(),
            reply_partition: self.reply_partition,
            sha256,
            size,
            content,
            trace,
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
        let rx = self.waiting.wait(msg.access);
        bump(|s| s.requested += 1);
        let sent = Instant::now();
        // Queued here, sent by librdkafka at once (linger 0); a refusal
        // now, or a failed delivery later, fails the request.
        let queued = self.producer.send(
            BaseRecord::with_opaque_to(&self.request_topic, Box::new(msg.access))
                .key(&sha256[..])
                .payload(&payload)
                .headers(kafka_trace::with_traceparent(OwnedHeaders::new(), &trace)),
        );
        drop(send);
        if let Err((e, _)) = queued {
            self.waiting
                .fail(&msg.access, format!("scan request not queued: {e}"));
        }
        let waiting = self.waiting.clone();
        let stats = self.stats.clone();
        let timeout = self.reply_timeout;
        let access = msg.access;
        let m = self.metrics.clone();
        Box::pin(async move {
            let failed = |message: String| {
                waiting.forget(&access);
                if let Ok(mut s) = stats.lock() {
                    s.failed += 1;
                }
                Verdict::Error { message }
            };
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(reply))) => {
                    m.latency.record(sent.elapsed().as_secs_f64());
                    m.replied.increment(1);
                    ScanOutcome {
                        verdict: reply.verdict,
                        sha256: Some(reply.sha256),
                        size: reply.size,
                        ruleset: reply.ruleset,
                        duration: Duration::from_micros(reply.scan_duration_us),
                        hash_list: None,
                        members: Vec::new(),
                    }
                }
                Ok(Ok(Err(why))) => {
                    m.failed.increment(1);
                    outcome(failed(why), Some(sha256), size, ruleset, started)
                }
                Ok(Err(_)) => {
                    m.failed.increment(1);
                    outcome(
                        failed("reply channel closed".into()),
                        Some(sha256),
                        size,
                        ruleset,
                        started,
                    )
                }
                Err(_) => {
                    m.timed_out.increment(1);
                    outcome(
                        failed(format!(
                            "no verdict from the scanner service within {}",
                            humantime::format_duration(timeout)
                        )),
                        Some(sha256),
                        size,
                        ruleset,
                        started,
                    )
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reply(request: EventId, scanner: &str) -> ScanReplied {
        ScanReplied {
            request,
            node_id: NodeId("n1".into()),
            sha256: [7; 32],
            size: 4,
            verdict: Verdict::Clean,
            ruleset: RulesetVersion("r1".into()),
            scanner: scanner.into(),
            scan_duration_us: 3,
        }
    }

    #[test]
    fn the_first_reply_to_a_request_wins_and_a_second_is_dropped() {
        let waiting = Waiting::default();
        let (a, b) = (EventId::new(), EventId::new());
        let mut rx_a = waiting.wait(a);
        let mut rx_b = waiting.wait(b);
        // The same request answered twice (scanned again after a scanner
        // crash): handed over once.
        assert!(waiting.deliver(reply(a, "s1")));
        assert!(!waiting.deliver(reply(a, "s2")));
        assert_eq!(rx_a.try_recv().unwrap().unwrap().scanner, "s1");
        // A request that gave up: its late reply is dropped.
        waiting.forget(&b);
        assert!(!waiting.deliver(reply(b, "s1")));
        assert!(rx_b.try_recv().is_err());
        // A reply to a request never sent from here.
        assert!(!waiting.deliver(reply(EventId::new(), "s1")));
        // A request whose message was not delivered fails at once, and a
        // reply after that is dropped.
        let c = EventId::new();
        let mut rx_c = waiting.wait(c);
        waiting.fail(&c, "not delivered".into());
        assert_eq!(rx_c.try_recv().unwrap().unwrap_err(), "not delivered");
        assert!(!waiting.deliver(reply(c, "s1")));
    }
}
