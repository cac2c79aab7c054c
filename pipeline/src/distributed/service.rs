//! `portcullis scanner`: the scanner service.
//!
//! One consumer group reads the scan-requests topic; N instances share its
//! partitions. The request/reply path is **at-least-once** and built for
//! latency (no transactions, no batching window):
//!
//! ```text
//! poll thread ── BaseConsumer in the group, read_uncommitted
//!   │  each message polled: decode ─ undecodable → <topic>.dlq (stage decode)
//!   ▼
//! scan threads (N, one ScanEngine each; a bounded queue in front)
//!   │  scan, produce the reply (to the request's reply partition) and the
//!   ▼  shared verdict, with idempotent producers (linger.ms 0; 20 for
//!      the shared verdicts, which nothing waits for)
//! producer threads ── delivery reports
//!      reply acknowledged → the request is done
//!      reply refused      → the request goes to <topic>.dlq (stage produce)
//! poll thread, every COMMIT_INTERVAL and before partitions are revoked:
//!      commit, per partition, the offset below which every request is done
//! ```
//!
//! A request's offset is committed only after its reply was acknowledged
//! by the broker, so a crash or a rebalance scans again what was in flight:
//! a reply may be sent twice, never lost. Verdicts are idempotent (same
//! content and ruleset, same verdict) and the node keeps the first reply to
//! each request, so a second one changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use portcullis_actors::scanner::{LiveRules, ScanContent, ScanEngine, ScanLimits, ScanOutcome};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest, VerdictShared};
use portcullis_schemas::{Timestamp, Verdict};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::stats::{self, ClientStats};
use crate::kafka::trace as kafka_trace;
use crate::kafka::{
    reply_producer, request_consumer, shared_verdict_producer, DeadLetter, DlqStage, GroupContext,
    KafkaSettings, Topic, Topics,
};
use portcullis_telemetry::catalog;

/// How often the poll thread commits the offsets of the requests done.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Bound of one poll (the stop flag and the delivery failures are looked at
/// between polls).
const POLL: Duration = Duration::from_millis(50);
/// Requests read but not yet done (reply unacknowledged) at most: past
/// this the poll thread stops reading until replies are acknowledged.
const MAX_IN_FLIGHT: usize = 16_384;
/// Requests waiting for a scan thread, at most.
const SCAN_QUEUE: usize = 1024;
/// How long a stop waits for the replies in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// Pause before a dead letter that could not be delivered is sent again.
const DLQ_RETRY: Duration = Duration::from_secs(1);

/// What a scanner service needs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub kafka: Arc<KafkaSettings>,
    /// The rules in force; a reload published there is taken by every scan
    /// thread before its next scan.
    pub rules: LiveRules,
    pub limits: ScanLimits,
    pub threads: usize,
    /// This instance's stable name, in its client id.
    pub instance: String,
    /// Beaten by the request poll loop (`/healthz`).
    pub heartbeat: Option<portcullis_telemetry::Heartbeat>,
}

/// Counters, logged at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStats {
    /// Requests scanned (a request redelivered after a crash or a
    /// rebalance is scanned again).
    pub scanned: u64,
    /// Replies the broker acknowledged.
    pub replied: u64,
    /// Requests sent to the DLQ (undecodable, or their reply refused).
    pub dead_lettered: u64,
    /// Replies the broker refused (their requests were dead-lettered).
    pub reply_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    scanned: AtomicU64,
    replied: AtomicU64,
    dead_lettered: AtomicU64,
    reply_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServiceStats {
        ServiceStats {
            scanned: self.scanned.load(Ordering::Relaxed),
            replied: self.replied.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            reply_failures: self.reply_failures.load(Ordering::Relaxed),
        }
    }
}

/// Runs until `stop` changes to true. `ready` runs once, when the group
/// first assigns this member its partitions (possibly none). Must run
/// inside a tokio runtime (the work itself runs on threads of its own).
pub async fn run(
    opts: ServiceOptions,
    ready: impl FnOnce() -> anyhow::Result<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ServiceStats> {
    let kafka = opts.kafka.clone();
    crate::kafka::ensure_topics(&kafka)
        .await
        .context("creating the Kafka topics")?;
    let client = format!("portcullis-scanner-{}", opts.instance);
    let group = kafka.scanner_group.clone();
    let topic = kafka.topics.name(Topic::ScanRequests);
    let offsets = Arc::new(Mutex::new(Offsets::default()));
    let counters = Arc::new(Counters::default());
    let (failed_tx, failed_rx) = crossbeam_channel::unbounded();

    let (revoke_offsets, revoke_topic) = (offsets.clone(), topic.clone());
    let context = GroupContext::new(&client, &group)
        .with_stats(stats::role::SCANNER_REQUESTS)
        .on_revoke(Box::new(move |consumer, tpl| {
            // The last moment to commit what was done with these partitions;
            // what is still in flight is scanned again by their next owner.
            let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            commit(
                consumer,
                &revoke_topic,
                &revoke_offsets,
                Some(&revoked),
                CommitMode::Sync,
            );
            if let Ok(mut o) = revoke_offsets.lock() {
                o.forget(&revoked);
            }
        }));
    let consumer = request_consumer(&kafka, &client, &group, context)?;
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    let mut assigned = consumer.context().assignments();
    let deliveries = |role| Deliveries {
        offsets: offsets.clone(),
        failed: failed_tx.clone(),
        counters: counters.clone(),
        stats: ClientStats::new(role),
    };
    let producer = Arc::new(reply_producer(
        &kafka,
        &client,
        deliveries(stats::role::SCANNER_REPLIES),
    )?);
    // Shared verdicts linger (nothing waits for them) on a producer of
    // their own, so the replies never wait behind them.
    let sharing = Arc::new(shared_verdict_producer(
        &kafka,
        &format!("{client}-shared"),
        deliveries(stats::role::SCANNER_SHARED),
    )?);

    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(SCAN_QUEUE);
    // The config resolves `scan.threads = 0` to one per core.
    let threads = opts.threads.max(1);
    let mut scan_threads = Vec::with_capacity(threads);
    for n in 0..threads {
        let (rules, limits) = (opts.rules.clone(), opts.limits);
        let worker = ScanThread {
            producer: producer.clone(),
            sharing: sharing.clone(),
            failed: failed_tx.clone(),
            counters: counters.clone(),
            shared_topic: kafka.topics.name(Topic::VerdictCache),
            instance: opts.instance.clone(),
        };
        let jobs = jobs_rx.clone();
        scan_threads.push(
            std::thread::Builder::new()
                .name(format!("portcullis-scan-{n}"))
                .spawn(move || {
                    // A YARA-X scanner is not Send: each thread makes its own.
                    worker.run(ScanEngine::live(rules, limits), &jobs)
                })
                .context("starting a scan thread")?,
        );
    }
    drop(jobs_rx);
    drop(failed_tx);

    let stopping = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let poller = PollThread {
        consumer,
        producer: producer.clone(),
        jobs: jobs_tx,
        failed: failed_rx,
        offsets: offsets.clone(),
        topics: kafka.topics.clone(),
        topic: topic.clone(),
        client: client.clone(),
        group: group.clone(),
        stopping: stopping.clone(),
        heartbeat: opts.heartbeat.clone(),
    };
    let poll_thread = std::thread::Builder::new()
        .name("portcullis-requests".into())
        .spawn(move || {
            poller.run();
            let _ = done_tx.send(());
        })
        .context("starting the request poll thread")?;
    tracing::info!(instance = %opts.instance, %group, %topic, threads, "scanner service starting");

    let mut ready = Some(ready);
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = &mut done_rx => {
                outcome = Err(anyhow::anyhow!("the request poll thread stopped"));
                break;
            }
            Ok(()) = assigned.changed(), if ready.is_some() => {
                if let Some(r) = ready.take() {
                    tracing::info!(%group, %topic, "consuming");
                    if let Err(e) = r() {
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
    }
    stopping.store(true, Ordering::Relaxed);
    // The poll thread drains the replies in flight, commits and leaves the
    // group; then the scan threads see their queue closed.
    let joined = tokio::task::spawn_blocking(move || {
        let _ = poll_thread.join();
        for t in scan_threads {
            let _ = t.join();
        }
        let _ = sharing.flush(Duration::from_secs(5));
        producer.flush(Duration::from_secs(5))
    })
    .await;
    if let Ok(Err(e)) = joined {
        tracing::warn!(error = %e, "replies still unacknowledged at stop");
    }
    let stats = counters.snapshot();
    tracing::info!(
        scanned = stats.scanned,
        replied = stats.replied,
        dead_lettered = stats.dead_lettered,
        reply_failures = stats.reply_failures,
        "scanner service stopped"
    );
    outcome.map(|()| stats)
}

/// One request for a scan thread.
struct Job {
    request: ScanRequest,
    /// The message it came in, for a dead letter if its reply is refused.
    origin: OwnedMessage,
    /// `process <topic>` (traces on): ends once the reply is queued.
    span: tracing::Span,
}

/// What a delivery report is about.
enum Token {
    /// The reply to the request `origin`: when acknowledged, the request
    /// is done.
    Reply { origin: OwnedMessage },
    /// A shared verdict: nothing waits for it.
    Shared,
    /// A dead letter of the request at `partition`/`offset`: when
    /// acknowledged, the request is done.
    Dead(Box<DeadLetter>),
}

/// What the poll thread must still deal with.
enum Failed {
    /// A request that could not be answered (its scan panicked, or its
    /// reply was refused): dead-letter it.
    Request {
        origin: OwnedMessage,
        stage: DlqStage,
        error: String,
    },
    /// A dead letter that could not be delivered: send it again.
    Dead(Box<DeadLetter>),
}

/// The offsets of the requests read and not yet done, per partition of
/// the scan-requests topic.
#[derive(Debug, Default)]
struct Offsets {
    parts: HashMap<i32, Part>,
}

#[derive(Debug, Default)]
struct Part {
    /// Read, reply not yet acknowledged.
    open: BTreeSet<i64>,
    /// One past the highest offset read.
    next: i64,
    /// The last position committed.
    committed: i64,
}

impl Offsets {
    fn start(&mut self, partition: i32, offset: i64) {
        let p = self.parts.entry(partition).or_default();
        p.open.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    fn done(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.open.remove(&offset);
        }
    }

    fn open(&self) -> usize {
        self.parts.values().map(|p| p.open.len()).sum()
    }

    /// The positions to commit (of `only` these partitions, or all): below
    /// each, every request read is done. Marks them committed. With
    /// `only` (partitions being revoked) a position is returned even if
    /// already committed: an asynchronous commit may have been refused
    /// (a rebalance in progress), and this is the last chance.
    fn take_commit(&mut self, only: Option<&[i32]>) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.parts {
            if only.is_some_and(|o| !o.contains(&partition)) {
                continue;
            }
            let position = p.open.first().copied().unwrap_or(p.next);
            if position > p.committed || only.is_some() && p.next > 0 {
                p.committed = position;
                out.push((partition, position));
            }
        }
        out
    }

    fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }
}

/// Commits what is done (of `only` these partitions, or all).
fn commit<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    offsets: &Mutex<Offsets>,
    only: Option<&[i32]>,
    mode: CommitMode,
) {
    let Ok(positions) = offsets.lock().map(|mut o| o.take_commit(only)) else {
        return;
    };
    if positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (partition, position) in positions {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(position)) {
            tracing::warn!(error = %e, partition, "cannot commit");
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // A partition no longer ours, or the broker away: its next owner
        // (or this one, later) reads again from the last commit.
        tracing::debug!(error = %e, "committing request offsets");
    }
}

/// The producer's context: turns delivery reports into done requests.
struct Deliveries {
    offsets: Arc<Mutex<Offsets>>,
    failed: Sender<Failed>,
    counters: Arc<Counters>,
    stats: ClientStats,
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.record(&statistics);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Self::DeliveryOpaque) {
        let done = |partition, offset| {
            if let Ok(mut o) = self.offsets.lock() {
                o.done(partition, offset);
            }
        };
        match (*token, result) {
            (Token::Reply { origin }, Ok(_)) => {
                self.counters.replied.fetch_add(1, Ordering::Relaxed);
                done(origin.partition(), origin.offset());
            }
            (Token::Reply { origin }, Err((e, _))) => {
                self.counters.reply_failures.fetch_add(1, Ordering::Relaxed);
                let _ = self.failed.send(Failed::Request {
                    origin,
                    stage: DlqStage::Produce,
                    error: format!("producing the reply failed: {e}"),
                });
            }
            (Token::Shared, Ok(_)) => {}
            (Token::Shared, Err((e, _))) => {
                tracing::warn!(error = %e, "a shared verdict was not delivered (other nodes scan the file again)");
            }
            (Token::Dead(letter), Ok(_)) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                crate::kafka::dlq::count(letter.stage);
                tracing::warn!(origin = %letter.topic, partition = letter.partition,
                    offset = letter.offset, stage = %letter.stage, error = %letter.error,
                    "dead-lettered a scan request");
                done(letter.partition, letter.offset);
            }
            (Token::Dead(letter), Err((e, _))) => {
                tracing::warn!(error = %e, offset = letter.offset, "a dead letter was not delivered; sending it again");
                let _ = self.failed.send(Failed::Dead(letter));
            }
        }
    }
}

type Replies = ThreadedProducer<Deliveries>;

/// The `scan` span of a request, under its `process` span (disabled with
/// traces off).
fn scan_span(process: &tracing::Span, request: &ScanRequest) -> tracing::Span {
    if process.is_disabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: portcullis_telemetry::trace::TARGET,
        parent: process,
        "scan",
        portcullis.event_id = %request.request,
        portcullis.scan.location = "remote",
        file.size = request.size,
        portcullis.verdict = tracing::field::Empty,
        portcullis.rule = tracing::field::Empty,
    )
}

/// Produces `record`, waiting while librdkafka's queue is full. A refusal
/// comes back as the error.
fn produce(
    producer: &Replies,
    mut record: BaseRecord<'_, [u8], [u8], Box<Token>>,
) -> Result<(), (KafkaError, Box<Token>)> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, r)) => return Err((e, r.delivery_opaque)),
        }
    }
}

/// The thread that reads the requests, dead-letters what cannot be
/// decoded or answered, and commits.
struct PollThread {
    consumer: BaseConsumer<GroupContext>,
    producer: Arc<Replies>,
    jobs: Sender<Job>,
    failed: Receiver<Failed>,
    offsets: Arc<Mutex<Offsets>>,
    topics: Topics,
    /// The scan-requests topic.
    topic: String,
    client: String,
    group: String,
    stopping: Arc<AtomicBool>,
    heartbeat: Option<portcullis_telemetry::Heartbeat>,
}

impl PollThread {
    fn run(self) {
        let mut last_commit = Instant::now();
        let mut retry_dead: Vec<(Instant, Box<DeadLetter>)> = Vec::new();
        let mut paused = false;
        let unacked = metrics::gauge!(catalog::SCANNER_UNACKED.name);
        let partitions = metrics::gauge!(catalog::SCANNER_PARTITIONS.name);
        while !self.stopping.load(Ordering::Relaxed) {
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            self.failures(&mut retry_dead);
            // Too many replies unacknowledged (a reply partition without a
            // leader, say): read no more, but keep polling, so the group
            // keeps this member and rebalances still run.
            let open = self.open();
            unacked.set(open as f64);
            if !paused && open >= MAX_IN_FLIGHT || paused && open < MAX_IN_FLIGHT / 2 {
                paused = !paused;
                self.pause(paused);
            }
            match self.consumer.poll(POLL) {
                Some(Ok(m)) if !self.request(m.detach()) => {
                    tracing::error!("every scan thread is gone: stopping");
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "request consumer"),
                None => {}
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                commit(
                    &self.consumer,
                    &self.topic,
                    &self.offsets,
                    None,
                    CommitMode::Async,
                );
                last_commit = Instant::now();
                if portcullis_telemetry::metrics_on() {
                    if let Ok(a) = self.consumer.assignment() {
                        partitions.set(a.count() as f64);
                    }
                }
            }
        }
        // Stop: no more reading; the scans queued finish and their replies
        // are delivered (bounded), then what is done is committed and the
        // group is left. The scan threads end when `self.jobs` is dropped.
        let until = Instant::now() + DRAIN;
        while self.open() > 0 && Instant::now() < until {
            self.failures(&mut retry_dead);
            // Keep the membership alive while draining.
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(10)) {
                // Not ours to handle any more: its offset is not committed.
                tracing::debug!(offset = m.offset(), "left for the next owner");
            }
        }
        if self.open() > 0 {
            tracing::warn!(
                open = self.open(),
                "stopping with replies unacknowledged; their requests will be scanned again"
            );
        }
        commit(
            &self.consumer,
            &self.topic,
            &self.offsets,
            None,
            CommitMode::Sync,
        );
        self.consumer.unsubscribe();
    }

    fn open(&self) -> usize {
        self.offsets.lock().map_or(0, |o| o.open())
    }

    /// Pauses (or resumes) fetching on every assigned partition.
    fn pause(&self, pause: bool) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let done = if pause {
            self.consumer.pause(&assigned)
        } else {
            self.consumer.resume(&assigned)
        };
        match done {
            Ok(()) if pause => tracing::warn!(
                max = MAX_IN_FLIGHT,
                "too many replies unacknowledged: reading paused"
            ),
            Ok(()) => tracing::info!("reading resumed"),
            Err(e) => tracing::warn!(error = %e, pause, "pausing or resuming the requests"),
        }
    }

    /// Hands one request to the scan threads (or the DLQ); `false` when
    /// no scan thread is left to take it.
    fn request(&self, m: OwnedMessage) -> bool {
        if let Ok(mut o) = self.offsets.lock() {
            o.start(m.partition(), m.offset());
        }
        match wire::decode::<ScanRequest>(m.payload().unwrap_or_default()) {
            Ok(request) => {
                let span = kafka_trace::process_span(
                    &m,
                    Some(&self.group),
                    &request.request.to_string(),
                    Some(&request.trace),
                );
                let job = Job {
                    request,
                    origin: m,
                    span,
                };
                // Blocks while every scan thread is busy and the queue is
                // full: the backpressure that keeps memory bounded.
                match self.jobs.try_send(job) {
                    Ok(()) => true,
                    Err(TrySendError::Full(job)) => self.jobs.send(job).is_ok(),
                    Err(TrySendError::Disconnected(_)) => false,
                }
            }
            Err(e) => {
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "undecodable scan request");
                let letter =
                    DeadLetter::of(Topic::ScanRequests, &m, DlqStage::Decode, &e.to_string());
                self.dead_letter(Box::new(letter));
                true
            }
        }
    }

    fn failures(&self, retry: &mut Vec<(Instant, Box<DeadLetter>)>) {
        while let Ok(f) = self.failed.try_recv() {
            match f {
                Failed::Request {
                    origin,
                    stage,
                    error,
                } => {
                    tracing::warn!(partition = origin.partition(), offset = origin.offset(), %stage, %error, "request not answered");
                    let letter = DeadLetter::of(Topic::ScanRequests, &origin, stage, &error);
                    self.dead_letter(Box::new(letter));
                }
                Failed::Dead(letter) => retry.push((Instant::now() + DLQ_RETRY, letter)),
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = retry.drain(..).partition(|(at, _)| *at <= now);
        *retry = later;
        for (_, letter) in due {
            self.dead_letter(letter);
        }
    }

    fn dead_letter(&self, letter: Box<DeadLetter>) {
        let dlq = self.topics.dlq(letter.origin);
        let headers = letter.headers_from(&self.client);
        let (key, payload) = (letter.key.clone(), letter.payload.clone());
        let mut record =
            BaseRecord::with_opaque_to(&dlq, Box::new(Token::Dead(letter))).headers(headers);
        if let Some(k) = &key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &payload {
            record = record.payload(p.as_slice());
        }
        if let Err((e, token)) = produce(&self.producer, record) {
            tracing::warn!(error = %e, %dlq, "cannot queue a dead letter; retrying");
            if let Token::Dead(letter) = *token {
                // Back through `failures`, sent again after DLQ_RETRY.
                let _ = self.producer.context().failed.send(Failed::Dead(letter));
            }
        }
    }
}

/// One scan thread: its own engine; scans, replies and shares.
struct ScanThread {
    producer: Arc<Replies>,
    sharing: Arc<Replies>,
    failed: Sender<Failed>,
    counters: Arc<Counters>,
    shared_topic: String,
    instance: String,
}

impl ScanThread {
    fn run(self, mut engine: ScanEngine, jobs: &Receiver<Job>) {
        for Job {
            mut request,
            origin,
            span: process,
        } in jobs.iter()
        {
            let span = tracing::debug_span!("remote_scan", event_id = %request.request);
            let _entered = span.enter();
            let scan_span = scan_span(&process, &request);
            let content = ScanContent::Bytes(std::mem::take(&mut request.content));
            let scanned =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.scan(&content)));
            let outcome = match scanned {
                Ok(o) => o,
                Err(_) => {
                    // Never lose the request (its offset would stay open
                    // and hold back its partition's commits): dead-letter
                    // it, and start over with a fresh engine.
                    tracing::error!(event_id = %request.request, "the scan panicked: request dead-lettered");
                    engine = engine.renewed();
                    let _ = self.failed.send(Failed::Request {
                        origin,
                        stage: DlqStage::Process,
                        error: "the scan panicked".into(),
                    });
                    continue;
                }
            };
            if !scan_span.is_disabled() {
                scan_span.record("portcullis.verdict", outcome.verdict.class().as_str());
                if let Some(matches) = outcome.verdict.matches() {
                    if let Some(m) = matches.first() {
                        scan_span.record("portcullis.rule", m.rule.as_str());
                    }
                }
            }
            drop(scan_span);
            self.counters.scanned.fetch_add(1, Ordering::Relaxed);
            self.reply(&request, &outcome, origin, &process);
            self.share(&outcome);
        }
    }

    fn reply(
        &self,
        request: &ScanRequest,
        outcome: &ScanOutcome,
        origin: OwnedMessage,
        process: &tracing::Span,
    ) {
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
        let payload = match wire::encode(&reply) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.failed.send(Failed::Request {
                    origin,
                    stage: DlqStage::Process,
                    error: format!("encoding the reply: {e}"),
                });
                return;
            }
        };
        let key = request.request.as_bytes().to_vec();
        // `send <reply topic>` under `process <request topic>`; the reply's
        // traceparent is its context (else the request's).
        let parent = portcullis_telemetry::trace::context_of(process).unwrap_or(request.trace);
        let send = kafka_trace::send_span(
            &request.reply_topic,
            Some(request.reply_partition),
            &request.request.to_string(),
            &parent,
        );
        let trace = portcullis_telemetry::trace::context_of(&send).unwrap_or(parent);
        let record =
            BaseRecord::with_opaque_to(&request.reply_topic, Box::new(Token::Reply { origin }))
                .partition(request.reply_partition)
                .key(key.as_slice())
                .payload(payload.as_slice())
                .headers(kafka_trace::with_traceparent(OwnedHeaders::new(), &trace));
        if let Err((e, token)) = produce(&self.producer, record) {
            if let Token::Reply { origin } = *token {
                self.counters.reply_failures.fetch_add(1, Ordering::Relaxed);
                let _ = self.failed.send(Failed::Request {
                    origin,
                    stage: DlqStage::Produce,
                    error: format!(
                        "producing the reply to {} [{}]: {e}",
                        request.reply_topic, request.reply_partition
                    ),
                });
            }
        }
    }

    fn share(&self, outcome: &ScanOutcome) {
        if !matches!(
            outcome.verdict,
            Verdict::Clean | Verdict::Infected { .. } | Verdict::InfectedMember { .. }
        ) {
            return;
        }
        let Some(sha) = outcome.sha256 else { return };
        let shared = VerdictShared {
            sha256: sha,
            ruleset: outcome.ruleset.clone(),
            verdict: outcome.verdict.clone(),
            scanned_at: Timestamp::now(),
        };
        let Ok(payload) = wire::encode(&shared) else {
            return;
        };
        let key = wire::shared_verdict_key(&sha, &outcome.ruleset);
        let record = BaseRecord::with_opaque_to(&self.shared_topic, Box::new(Token::Shared))
            .key(key.as_slice())
            .payload(payload.as_slice());
        if let Err((e, _)) = produce(&self.sharing, record) {
            tracing::warn!(error = %e, "a shared verdict was not queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_offsets_below_every_open_request_are_committed() {
        let mut o = Offsets::default();
        for off in 10..15 {
            o.start(0, off);
        }
        o.start(1, 7);
        assert_eq!(o.open(), 6);
        // Done out of order: 11 and 12 finish before 10.
        o.done(0, 11);
        o.done(0, 12);
        assert_eq!(o.take_commit(Some(&[0])), vec![(0, 10)]);
        o.done(0, 10);
        assert_eq!(o.take_commit(Some(&[0])), vec![(0, 13)]);
        // Partition 1: nothing done yet, its position is its first open
        // request. Then nothing new: nothing to commit, except when a
        // partition is being revoked (an asynchronous commit may have
        // been refused).
        assert_eq!(o.take_commit(None), vec![(1, 7)]);
        assert_eq!(o.take_commit(None), vec![]);
        assert_eq!(o.take_commit(Some(&[0])), vec![(0, 13)]);
        o.done(0, 13);
        o.done(0, 14);
        o.done(1, 7);
        let mut all = o.take_commit(None);
        all.sort_unstable();
        assert_eq!(all, vec![(0, 15), (1, 8)]);
        assert_eq!(o.open(), 0);
        // A revoked partition is forgotten; a late acknowledgement of one
        // of its requests changes nothing.
        o.start(2, 3);
        o.forget(&[2]);
        o.done(2, 3);
        assert_eq!(o.take_commit(None), vec![]);
    }
}
