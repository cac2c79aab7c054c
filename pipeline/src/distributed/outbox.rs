//! The outbox: every durable journal event goes to the events topic.
//!
//! It reads committed records from the journal after its cursor, produces
//! them (key: node id; header `portcullis.event_id`; payload: the journal's
//! own encoded bytes) with an idempotent producer (`acks=all`), waits until
//! every one is delivered, and only then stores the cursor. After a broker
//! outage or a restart the backlog drains from the cursor. A crash between
//! delivery and the cursor write re-sends a batch: consumers drop
//! duplicates by event id.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_actors::journal::JournalReader;
use portcullis_schemas::{codec, NodeId};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::kafka::config::KafkaSettings;
use crate::kafka::topics::Topic;

/// The cursor's name in the journal.
pub const CURSOR: &str = "outbox.events";
const BATCH: usize = 512;

/// A running outbox.
#[derive(Debug)]
pub struct Outbox {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outbox {
    /// Starts publishing on its own thread.
    pub fn start(
        settings: &KafkaSettings,
        reader: JournalReader,
        node_id: NodeId,
    ) -> anyhow::Result<Outbox> {
        let producer = crate::kafka::clients::idempotent_producer(
            settings,
            &format!("portcullis-outbox-{}", node_id.0),
        )?;
        let topic = settings.topics.name(Topic::Events);
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(reader.cursor(CURSOR)?));
        let (flag, count) = (stop.clone(), published.clone());
        let thread = std::thread::Builder::new()
            .name("portcullis-outbox".into())
            .spawn(move || run(&producer, &topic, &reader, &node_id, &flag, &count))?;
        Ok(Outbox {
            stop,
            published,
            thread: Some(thread),
        })
    }

    /// The last seq known delivered.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The last seq known delivered, as it moves (for the lag gauge).
    pub fn published_counter(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }

    /// Waits (bounded) until everything up to `seq` is delivered.
    pub async fn drain_until(&self, seq: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.published() < seq {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops the publisher. Waits at most `within` for the batch in
    /// flight (deliveries can wait minutes while the broker is gone): past
    /// that the thread is left to die with the process, and what it was
    /// sending goes out again from the cursor at the next start.
    pub fn stop(mut self, within: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + within;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("outbox still waiting for deliveries; leaving it (its backlog resumes at the next start)");
            }
        }
    }
}

fn run(
    producer: &FutureProducer,
    topic: &str,
    reader: &JournalReader,
    node: &NodeId,
    stop: &AtomicBool,
    published: &AtomicU64,
) {
    let mut backoff = Duration::from_millis(50);
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let from = published.load(Ordering::Relaxed) + 1;
        let batch = match reader.raw_from(from, BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "outbox: reading the journal failed");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match publish(producer, topic, node, &batch) {
            Ok(last) => {
                if let Err(e) = reader.set_cursor(CURSOR, last) {
                    tracing::error!(error = %e, "outbox: storing the cursor failed");
                }
                published.store(last, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                if std::mem::take(&mut failing) {
                    tracing::info!(from_seq = from, to_seq = last, "outbox: publishing again");
                }
            }
            Err((delivered, e)) => {
                if let Some(last) = delivered {
                    if reader.set_cursor(CURSOR, last).is_ok() {
                        published.store(last, Ordering::Relaxed);
                    }
                }
                failing = true;
                tracing::warn!(error = %e, from_seq = from, delivered_to = ?delivered, retry_in = ?backoff, "outbox: publishing failed; will retry");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Produces a batch; returns its last seq, or the last seq delivered in
/// order before the first failure.
fn publish(
    producer: &FutureProducer,
    topic: &str,
    node: &NodeId,
    batch: &[(u64, Vec<u8>)],
) -> Result<u64, (Option<u64>, String)> {
    let mut futures = Vec::with_capacity(batch.len());
    for (seq, bytes) in batch {
        let decoded = codec::decode(bytes).ok();
        let id = decoded
            .as_ref()
            .map(|e| e.event_id.to_string())
            .unwrap_or_default();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "portcullis.event_id",
                value: Some(id.as_bytes()),
            })
            .insert(Header {
                key: "portcullis.seq",
                value: Some(seq.to_string().as_bytes()),
            });
        // The event's own trace context, for its consumers
        // (docs/observability.md).
        if let Some(env) = &decoded {
            headers = crate::kafka::trace::with_traceparent(headers, &env.trace);
        }
        let mut record = FutureRecord::to(topic)
            .key(node.0.as_bytes())
            .payload(bytes)
            .headers(headers);
        // The message's timestamp is the event's time (not the publish
        // time), so `replay --from/--to` on Kafka resolves a time window
        // with offsets-for-times even after a backlog was published late.
        if let Some(env) = &decoded {
            record = record.timestamp(env.timestamp.0.div_euclid(1_000_000));
        }
        futures.push(async move { (*seq, producer.send(record, Duration::from_secs(5)).await) });
    }
    // `send` is lazy: a message is handed to librdkafka when its future is
    // first polled. join_all polls them all at once, so the whole batch is
    // in flight together (awaiting them one by one made a broker round trip
    // per event).
    let mut last_ok = None;
    for (seq, result) in futures::executor::block_on(futures::future::join_all(futures)) {
        match result {
            Ok(_) => last_ok = Some(seq),
            Err((e, _)) => return Err((last_ok, e.to_string())),
        }
    }
    last_ok.ok_or((None, "empty batch".into()))
}
