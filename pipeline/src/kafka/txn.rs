//! Consume-transform-produce transactions (`siem-export`).
//!
//! ```text
//! init_transactions (once)
//! loop:
//!     msg = consumer.recv()
//!     begin(producer)
//!     producer.send(reply) ...            (the reply, the shared verdict, a dead letter)
//!     commit_with_offsets(producer, next_offsets(&[&msg]), consumer.group_metadata())
//!         Ok                -> the output and the consumed offsets are committed together
//!         Err(Aborted)      -> nothing of it is visible; rewind_to_committed(consumer), go on
//!         Err(Fatal)        -> drop this producer, create a new one (fences the old one)
//! ```
//!
//! librdkafka's transaction calls block for up to their timeout; the async
//! functions here run them on tokio's blocking pool (the producer is an
//! `Arc` inside, cloned into the task). [`rewind_to_committed`] blocks for
//! one broker round trip; call it where a short block is acceptable.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::KafkaSetupError;

/// What went wrong with a transaction, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The transaction was aborted: none of its messages will be visible to
    /// `read_committed` readers, and its offsets were not committed.
    /// Rewind the consumer ([`rewind_to_committed`]) and process again.
    #[error("transaction aborted during {operation}: {source}")]
    Aborted {
        operation: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The producer cannot go on (fenced by a newer instance with the same
    /// `transactional.id`, or a fatal error): drop it, create a new one and
    /// init it; rewind the consumer.
    #[error("transactional producer unusable ({operation}): {source}")]
    Fatal {
        operation: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A blocking-pool task failed (panic or runtime shutdown).
    #[error("transaction task for {operation} did not finish: {message}")]
    Task {
        operation: &'static str,
        message: String,
    },
}

/// What librdkafka says about an error of a transaction call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorKind {
    /// Try the same call again.
    Retriable,
    /// Abort the transaction, then go on.
    Abortable,
    /// Recreate the producer.
    Fatal,
}

/// Classifies an error of a transaction call (`KafkaError::Transaction`
/// carries librdkafka's flags; anything else is treated as abortable).
pub fn classify(e: &KafkaError) -> TxnErrorKind {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => TxnErrorKind::Fatal,
        KafkaError::Transaction(t) if t.txn_requires_abort() => TxnErrorKind::Abortable,
        KafkaError::Transaction(t) if t.is_retriable() => TxnErrorKind::Retriable,
        _ => TxnErrorKind::Abortable,
    }
}

async fn blocking<T, F>(operation: &'static str, f: F) -> Result<T, TxnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TxnError::Task {
            operation,
            message: e.to_string(),
        })
}

/// Initialises transactions (once per producer, before the first
/// [`begin`]); fences older producers with the same `transactional.id` and
/// aborts what they left open. Retried while librdkafka calls the error
/// retriable, within `timeout`.
pub async fn init_transactions(
    producer: &FutureProducer,
    transactional_id: &str,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let deadline = Instant::now() + timeout;
    loop {
        let p = producer.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::task::spawn_blocking(move || p.init_transactions(left))
            .await
            .map_err(|e| KafkaSetupError::Task {
                what: format!("init_transactions of `{transactional_id}`"),
                message: e.to_string(),
            });
        match r? {
            Ok(()) => return Ok(()),
            Err(e) if classify(&e) == TxnErrorKind::Retriable && Instant::now() < deadline => {
                tracing::debug!(transactional_id, error = %e, "init_transactions: retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => {
                return Err(KafkaSetupError::InitTransactions {
                    transactional_id: transactional_id.to_string(),
                    source: Box::new(source),
                })
            }
        }
    }
}

/// Begins a transaction (local state only; does not block on the broker).
pub fn begin(producer: &FutureProducer) -> Result<(), TxnError> {
    producer
        .begin_transaction()
        .map_err(|source| match classify(&source) {
            TxnErrorKind::Fatal => TxnError::Fatal {
                operation: "begin_transaction",
                source,
            },
            _ => TxnError::Aborted {
                operation: "begin_transaction",
                source,
            },
        })
}

/// The offsets to commit after processing `messages`: for each partition,
/// one past the highest offset seen.
pub fn next_offsets<M: Message>(messages: &[&M]) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for m in messages {
        let next = m.offset() + 1;
        let known = tpl
            .find_partition(m.topic(), m.partition())
            .map(|e| e.offset());
        match known {
            None => tpl.add_partition_offset(m.topic(), m.partition(), Offset::Offset(next))?,
            Some(Offset::Offset(o)) if o >= next => {}
            Some(_) => tpl.set_partition_offset(m.topic(), m.partition(), Offset::Offset(next))?,
        }
    }
    Ok(tpl)
}

/// Ends a consume-transform-produce step: sends the consumed `offsets` to
/// the transaction (as the consumer `group`'s commit) and commits it, so
/// the produced messages and the offsets become visible together.
///
/// Retriable errors are retried within `timeout`. On an abortable error
/// (or one that stays retriable past `timeout`) the transaction is aborted
/// and [`TxnError::Aborted`] returned: rewind the consumer. A fatal error
/// returns [`TxnError::Fatal`].
pub async fn commit_with_offsets(
    producer: &FutureProducer,
    offsets: TopicPartitionList,
    group: ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<(), TxnError> {
    let deadline = Instant::now() + timeout;
    let p = producer.clone();
    let sent = retry(deadline, "send_offsets_to_transaction", move |left| {
        p.send_offsets_to_transaction(&offsets, &group, left)
    })
    .await;
    if let Err(e) = sent {
        return fail(producer, "send_offsets_to_transaction", e, timeout).await;
    }
    let p = producer.clone();
    let committed = retry(deadline, "commit_transaction", move |left| {
        p.commit_transaction(left)
    })
    .await;
    match committed {
        Ok(()) => Ok(()),
        Err(e) => fail(producer, "commit_transaction", e, timeout).await,
    }
}

/// Aborts the current transaction: its messages are discarded (never
/// visible to `read_committed` readers), its offsets not committed.
pub async fn abort(producer: &FutureProducer, timeout: Duration) -> Result<(), TxnError> {
    let deadline = Instant::now() + timeout;
    let p = producer.clone();
    match retry(deadline, "abort_transaction", move |left| {
        p.abort_transaction(left)
    })
    .await
    {
        Ok(()) => Ok(()),
        Err(Failure::Kafka(source)) => Err(TxnError::Fatal {
            operation: "abort_transaction",
            source,
        }),
        Err(Failure::Task(e)) => Err(e),
    }
}

enum Failure {
    Kafka(KafkaError),
    Task(TxnError),
}

/// Runs a blocking transaction call, again while it fails retriably and
/// time is left. The call gets the time left as its timeout.
async fn retry<F>(deadline: Instant, operation: &'static str, f: F) -> Result<(), Failure>
where
    F: Fn(Duration) -> Result<(), KafkaError> + Send + Sync + 'static,
{
    let f = std::sync::Arc::new(f);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let g = std::sync::Arc::clone(&f);
        match blocking(operation, move || g(left)).await {
            Err(e) => return Err(Failure::Task(e)),
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if classify(&e) == TxnErrorKind::Retriable && Instant::now() < deadline => {
                tracing::debug!(operation, error = %e, "retrying a transaction call");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(Failure::Kafka(e)),
        }
    }
}

/// After a failed `send_offsets` or commit: fatal stays fatal; anything
/// else aborts the transaction.
async fn fail(
    producer: &FutureProducer,
    operation: &'static str,
    failure: Failure,
    timeout: Duration,
) -> Result<(), TxnError> {
    let source = match failure {
        Failure::Task(e) => return Err(e),
        Failure::Kafka(source) => source,
    };
    if classify(&source) == TxnErrorKind::Fatal {
        return Err(TxnError::Fatal { operation, source });
    }
    tracing::warn!(operation, error = %source, "aborting the transaction");
    abort(producer, timeout).await?;
    Err(TxnError::Aborted { operation, source })
}

/// Moves the consumer back to its group's committed offsets on every
/// assigned partition (the start, per `auto.offset.reset`, where nothing
/// is committed): what to do after an aborted transaction, so the
/// messages of the aborted step are consumed again. Blocks for one broker
/// round trip (at most `timeout`).
pub fn rewind_to_committed<C, K>(
    consumer: &K,
    client_id: &str,
    timeout: Duration,
) -> Result<(), KafkaSetupError>
where
    C: ConsumerContext,
    K: Consumer<C>,
{
    let err = |operation: &str| {
        let operation = operation.to_string();
        move |source: KafkaError| KafkaSetupError::Offsets {
            client: client_id.to_string(),
            operation,
            source: Box::new(source),
        }
    };
    let assignment = consumer
        .assignment()
        .map_err(err("reading the assignment"))?;
    if assignment.count() == 0 {
        return Ok(());
    }
    let committed = consumer
        .committed_offsets(assignment, timeout)
        .map_err(err("reading the committed offsets"))?;
    let mut target = TopicPartitionList::with_capacity(committed.count());
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        target
            .add_partition_offset(e.topic(), e.partition(), offset)
            .map_err(err("rewinding"))?;
    }
    let result = consumer
        .seek_partitions(target, timeout)
        .map_err(err("rewinding"))?;
    for e in result.elements() {
        e.error()
            .map_err(err(&format!("rewinding {} [{}]", e.topic(), e.partition())))?;
    }
    Ok(())
}
