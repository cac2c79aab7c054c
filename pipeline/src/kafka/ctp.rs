//! The consume-transform-produce driver: exactly once per committed input.
//!
//! The loop of a service that reads a topic in a consumer group and
//! produces what it makes of each batch exactly once: `portcullis
//! siem-export` ([`siem`](crate::siem)). What differs between such
//! services is a [`Transform`]; the loop is here. (The scanner service
//! does not use it: its replies are at-least-once, without transactions,
//! for latency; see [`distributed::service`](crate::distributed::service).)
//!
//! ```text
//! session: transactional producer (init_transactions fences older ones),
//!          consumer in the group (read_committed), subscribe
//! loop:
//!     batch  = first message, then more for BATCH_WINDOW (at most max_batch)
//!     begin
//!     dead-letter messages already in MAX_ATTEMPTS failed transactions
//!     transform(batch)   -> messages + dead letters + side work
//!     produce them all, wait for every delivery
//!     before_commit(side work)   (e.g. syslog: written and flushed here)
//!     commit with the consumed offsets
//!         ok        -> outputs and offsets visible together
//!         aborted   -> rewind to the committed offsets, consume again
//!         fatal     -> new session (new producer, new consumer)
//! ```
//!
//! A message that was in [`MAX_ATTEMPTS`] failed transactions goes to the
//! DLQ (stage `process`) instead of being retried again, so a partition
//! never blocks. Failures of a sink outside Kafka
//! ([`StepError::Unavailable`]) do not count as attempts: the batch is
//! retried with a backoff until the sink is back (nothing is dead-lettered
//! because a SIEM collector is down).
//!
//! Stop: the loop checks the stop signal between batches only, so a batch
//! in progress is committed or aborted, never left half done.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::txn::{self, TxnError};
use super::{
    group_consumer, transactional_producer, DeadLetter, DeadLetters, DlqStage, GroupContext,
};
use super::{KafkaSettings, Topic};

/// Failed transactions after which a message is dead-lettered instead.
pub const MAX_ATTEMPTS: u32 = 3;
/// Bound of each transaction call (init, commit, abort).
pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of one produced message's delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause after a failed batch; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two attempts at a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One message a transform produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    /// `None`: the partitioner picks one from the key.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// What a transform makes of one batch.
#[derive(Debug)]
pub struct Output<S> {
    /// Produced in the batch's transaction.
    pub messages: Vec<Outgoing>,
    /// Sent to their DLQ in the same transaction.
    pub dead: Vec<DeadLetter>,
    /// Work for [`Transform::before_commit`].
    pub side: S,
}

/// Why a batch was not committed.
#[derive(Debug)]
pub enum StepError {
    /// Something about the batch failed: counts as a failed attempt of
    /// each of its messages.
    Batch(anyhow::Error),
    /// A sink outside Kafka is unavailable: the batch is retried after a
    /// backoff, and this does not count as an attempt.
    Unavailable(anyhow::Error),
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Batch(e)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Batch(e) => write!(f, "{e:#}"),
            StepError::Unavailable(e) => write!(f, "sink unavailable: {e:#}"),
        }
    }
}

/// What a service does with a batch inside its transaction.
pub trait Transform {
    /// Work done after the outputs are delivered and before the commit.
    type Side;

    /// Turns a batch into messages and dead letters. May run more than
    /// once for the same messages (after an abort), so it must not have
    /// effects outside its return value.
    fn transform(
        &mut self,
        batch: &[&OwnedMessage],
    ) -> impl Future<Output = Result<Output<Self::Side>, StepError>>;

    /// Delivers `side` outside Kafka once every output is acknowledged
    /// and before the offsets are committed. A failure aborts the
    /// transaction (so a delivery here is at least once).
    fn before_commit(&mut self, side: Self::Side) -> impl Future<Output = Result<(), StepError>>;

    /// The last batch's transaction is committed (for counters).
    fn committed(&mut self) {}
}

/// How the driver reads.
#[derive(Debug, Clone)]
pub struct CtpOptions {
    /// The topic consumed.
    pub input: Topic,
    /// The consumer group.
    pub group: String,
    /// Client id, stable per instance. The transactional id is
    /// [`transactional_id`](Self::transactional_id).
    pub client: String,
    /// The most messages in one transaction.
    pub max_batch: usize,
    /// How long a batch stays open after its first message: the trade
    /// between transactions per second (each commit costs broker round
    /// trips) and the latency a message waits for its batch.
    pub batch_window: Duration,
    /// Stop once this many inputs are committed (a batch never takes more
    /// than what is left).
    pub max_inputs: Option<u64>,
    /// Stop after this long without a message.
    pub idle_exit: Option<Duration>,
    /// Beaten every second while the loop waits for messages (`/healthz`).
    pub heartbeat: Option<portcullis_telemetry::Heartbeat>,
}

impl CtpOptions {
    /// `<group>.<client>`: a restarted instance fences its zombie, and
    /// instances of other groups (another deployment on the same broker,
    /// with the same instance name) are never fenced by it. Transactional
    /// ids are global to the cluster; group names are per deployment.
    pub fn transactional_id(&self) -> String {
        format!("{}.{}", self.group, self.client)
    }
}

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CtpStats {
    /// Inputs whose offsets were committed (handled or dead-lettered).
    pub committed: u64,
    /// Messages produced in committed transactions.
    pub produced: u64,
    /// Dead letters in committed transactions.
    pub dead_lettered: u64,
    /// Batches that were aborted (and consumed again).
    pub aborted_batches: u64,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtpEnd {
    Stopped,
    MaxInputs,
    Idle,
}

/// Runs the loop until `stop` changes to true, `max_inputs` inputs are
/// committed or `idle_exit` passes without a message. `ready` runs once,
/// when the group first assigns this member its partitions (possibly
/// none). Must run inside a tokio runtime.
pub async fn run<T: Transform>(
    kafka: &KafkaSettings,
    opts: &CtpOptions,
    transform: &mut T,
    ready: impl FnOnce() -> anyhow::Result<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(CtpStats, CtpEnd)> {
    let client = opts.client.as_str();
    let topic = kafka.topics.name(opts.input);
    let mut stats = CtpStats::default();
    let mut ready = Some(ready);
    let mut attempts: HashMap<(i32, i64), u32> = HashMap::new();
    let mut backoff = FIRST_BACKOFF;
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message = tokio::time::Instant::now();

    let end = 'session: loop {
        if *stop.borrow() {
            break CtpEnd::Stopped;
        }
        let producer = transactional_producer(kafka, client, &opts.transactional_id())?;
        txn::init_transactions(&producer, client, TXN_TIMEOUT).await?;
        let consumer = group_consumer(kafka, client, &opts.group)?;
        consumer
            .subscribe(&[&topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        let dlq = DeadLetters::new(producer.clone(), kafka.topics.clone(), client);
        // Ready once the group has assigned this member its partitions
        // (maybe none): before that, a request sent to the service waits
        // for the group to form, which can take seconds.
        let mut assigned = consumer.context().assignments();
        tracing::info!(client, group = %opts.group, topic, "joining the group");
        let session = Session {
            producer: &producer,
            consumer: &consumer,
            dlq: &dlq,
            input: opts.input,
        };
        loop {
            let left = opts
                .max_inputs
                .map(|max| max.saturating_sub(stats.committed));
            if left == Some(0) {
                break 'session CtpEnd::MaxInputs;
            }
            let room = left.map_or(opts.max_batch, |l| {
                usize::try_from(l).map_or(opts.max_batch, |l| l.min(opts.max_batch))
            });
            let idle = async {
                match opts.idle_exit {
                    Some(d) => tokio::time::sleep_until(last_message + d).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = stop.changed() => break 'session CtpEnd::Stopped,
                _ = idle => break 'session CtpEnd::Idle,
                _ = beat.tick() => {
                    if let Some(h) = &opts.heartbeat {
                        h.beat();
                    }
                    continue;
                }
                Ok(()) = assigned.changed(), if ready.is_some() => {
                    if let Some(r) = ready.take() {
                        tracing::info!(client, group = %opts.group, topic, "consuming");
                        r()?;
                    }
                    continue;
                }
            };
            last_message = tokio::time::Instant::now();
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer");
                    continue;
                }
            };
            // A batch closes batch_window after its first message (or when
            // full): under load it never waits to fill up, and a lone
            // message waits at most the window.
            let mut batch = vec![first];
            let close_at = tokio::time::Instant::now() + opts.batch_window;
            while batch.len() < room.max(1) {
                match tokio::time::timeout_at(close_at, consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            match session.step(transform, &batch, &attempts).await {
                Ok((produced, dead)) => {
                    transform.committed();
                    stats.committed += batch.len() as u64;
                    stats.produced += produced;
                    stats.dead_lettered += dead;
                    for m in &batch {
                        attempts.remove(&(m.partition(), m.offset()));
                    }
                    backoff = FIRST_BACKOFF;
                }
                Err(f) => {
                    stats.aborted_batches += 1;
                    if f.counts {
                        for m in &batch {
                            *attempts.entry((m.partition(), m.offset())).or_default() += 1;
                        }
                    }
                    tracing::warn!(error = %f.error, batch = batch.len(), retry_in = ?backoff,
                        "batch not committed; it will be consumed again");
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if f.fatal {
                        pause_or_stop(pause, &mut stop).await;
                        continue 'session;
                    }
                    if let Err(e) = txn::rewind_to_committed(&consumer, client, TXN_TIMEOUT) {
                        tracing::warn!(error = %e, "rewind failed; starting a new session");
                        pause_or_stop(pause, &mut stop).await;
                        continue 'session;
                    }
                    if pause_or_stop(pause, &mut stop).await {
                        break 'session CtpEnd::Stopped;
                    }
                }
            }
        }
    };
    Ok((stats, end))
}

/// Sleeps `d` unless `stop` changes first; true when stopping.
async fn pause_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// A failed step: whether it counts as an attempt of the batch's messages,
/// and whether the producer must be replaced.
struct Failure {
    error: anyhow::Error,
    counts: bool,
    fatal: bool,
}

impl Failure {
    fn of_txn(e: TxnError) -> Self {
        let fatal = !matches!(e, TxnError::Aborted { .. });
        Failure {
            error: e.into(),
            counts: true,
            fatal,
        }
    }
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Batch(error) => Failure {
                error,
                counts: true,
                fatal: false,
            },
            StepError::Unavailable(error) => Failure {
                error: error.context("sink unavailable"),
                counts: false,
                fatal: false,
            },
        }
    }
}

/// The clients of one session.
struct Session<'a> {
    producer: &'a FutureProducer,
    consumer: &'a StreamConsumer<GroupContext>,
    dlq: &'a DeadLetters,
    input: Topic,
}

impl Session<'_> {
    /// One transaction over `batch`. Returns (produced, dead-lettered).
    async fn step<T: Transform>(
        &self,
        transform: &mut T,
        batch: &[OwnedMessage],
        attempts: &HashMap<(i32, i64), u32>,
    ) -> Result<(u64, u64), Failure> {
        txn::begin(self.producer).map_err(Failure::of_txn)?;
        let produced = match self.produce(transform, batch, attempts).await {
            Ok(n) => n,
            Err(f) => {
                // Nothing of the batch may become visible.
                if let Err(e) = txn::abort(self.producer, TXN_TIMEOUT).await {
                    tracing::warn!(error = %e, "abort failed; starting a new session");
                    return Err(Failure { fatal: true, ..f });
                }
                return Err(f);
            }
        };
        let refs: Vec<&OwnedMessage> = batch.iter().collect();
        let offsets = txn::next_offsets(&refs).map_err(|e| Failure {
            error: e.into(),
            counts: true,
            fatal: false,
        })?;
        let group = self.consumer.group_metadata().ok_or_else(|| Failure {
            error: anyhow::anyhow!("the consumer has no group metadata"),
            counts: true,
            fatal: true,
        })?;
        txn::commit_with_offsets(self.producer, offsets, group, TXN_TIMEOUT)
            .await
            .map_err(Failure::of_txn)?;
        Ok(produced)
    }

    /// Everything of a step inside the open transaction.
    async fn produce<T: Transform>(
        &self,
        transform: &mut T,
        batch: &[OwnedMessage],
        attempts: &HashMap<(i32, i64), u32>,
    ) -> Result<(u64, u64), Failure> {
        let mut dead = Vec::new();
        let mut fresh = Vec::with_capacity(batch.len());
        for m in batch {
            let tried = attempts
                .get(&(m.partition(), m.offset()))
                .copied()
                .unwrap_or(0);
            if tried >= MAX_ATTEMPTS {
                let why = format!("in {tried} failed transactions");
                dead.push(DeadLetter::of(self.input, m, DlqStage::Process, &why));
            } else {
                fresh.push(m);
            }
        }
        let out = if fresh.is_empty() {
            None
        } else {
            Some(transform.transform(&fresh).await?)
        };
        let (messages, side) = match out {
            Some(o) => {
                dead.extend(o.dead);
                (o.messages, Some(o.side))
            }
            None => (Vec::new(), None),
        };
        let letters = dead.iter().cloned().map(|l| self.dlq.send_letter(l));
        for r in futures::future::join_all(letters).await {
            r.map_err(|e| anyhow::Error::from(e).context("dead-lettering"))?;
        }
        let headers: Vec<OwnedHeaders> = messages.iter().map(|m| headers(&m.headers)).collect();
        let deliveries = messages.iter().zip(&headers).map(|(m, h)| {
            let mut record = FutureRecord::to(&m.topic)
                .key(&m.key)
                .payload(&m.payload)
                .headers(h.clone());
            if let Some(p) = m.partition {
                record = record.partition(p);
            }
            self.producer.send(record, DELIVERY_TIMEOUT)
        });
        for (d, m) in futures::future::join_all(deliveries)
            .await
            .into_iter()
            .zip(&messages)
        {
            if let Err((e, _)) = d {
                return Err(anyhow::anyhow!("producing to {} failed: {e}", m.topic).into());
            }
        }
        if let Some(side) = side {
            transform.before_commit(side).await?;
        }
        Ok((messages.len() as u64, dead.len() as u64))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        StepError::Batch(e).into()
    }
}

fn headers(list: &[(&'static str, Vec<u8>)]) -> OwnedHeaders {
    list.iter()
        .fold(OwnedHeaders::new_with_capacity(list.len()), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(group: &str, client: &str) -> CtpOptions {
        CtpOptions {
            input: Topic::ScanRequests,
            group: group.into(),
            client: client.into(),
            max_batch: 1,
            batch_window: Duration::ZERO,
            max_inputs: None,
            idle_exit: None,
            heartbeat: None,
        }
    }

    #[test]
    fn transactional_ids_are_scoped_by_group() {
        // The same instance name in two deployments: no fencing.
        let east = opts("east.siem", "portcullis-siem-s1");
        let west = opts("west.siem", "portcullis-siem-s1");
        assert_ne!(east.transactional_id(), west.transactional_id());
        // A restart of one instance: the same id, so it fences its zombie.
        assert_eq!(
            east.transactional_id(),
            opts("east.siem", "portcullis-siem-s1").transactional_id()
        );
        assert_eq!(east.transactional_id(), "east.siem.portcullis-siem-s1");
    }
}
