//! Kafka plumbing for distributed mode: settings, topics, clients,
//! transactions and dead letters.
//!
//! - [`config`]: the `[kafka]` section of the config file ([`KafkaSection`])
//!   and its validated form ([`KafkaSettings`]);
//! - [`topics`]: topic names ([`Topic`], [`Topics`]) and [`ensure_topics`];
//! - [`clients`]: every producer and consumer portcullis creates, with the
//!   settings the exactly-once guarantees depend on;
//! - [`txn`]: consume-transform-produce transactions (commit with offsets,
//!   abort, rewind);
//! - [`ctp`]: the consume-transform-produce loop around them, shared by
//!   the scanner service and `siem-export` (a [`ctp::Transform`] per
//!   service);
//! - [`dlq`]: dead letters with origin headers ([`DeadLetters`]).
//!
//! Clients: producers are [`FutureProducer`](rdkafka::producer::FutureProducer)s
//! (cheap to clone, their own polling thread, one future per delivery);
//! consumers are [`StreamConsumer`](rdkafka::consumer::StreamConsumer)s
//! (`recv().await`, created inside a tokio runtime: actix-rt is one).
//! librdkafka's transaction calls block; [`txn`] runs them on tokio's
//! blocking pool.

pub mod clients;
pub mod config;
pub mod ctp;
pub mod dlq;
mod error;
pub mod stats;
pub mod topics;
pub mod trace;
pub mod txn;

pub use clients::{
    admin_client, assigned_consumer, base_config, group_consumer, idempotent_producer,
    replay_consumer, reply_consumer, reply_producer, request_consumer, request_producer,
    shared_verdict_consumer, shared_verdict_producer, transactional_producer, AssignedConsumer,
    EofExpected, GroupContext, RevokeHook, REQUEST_REPLY_CONSUMER, REQUEST_REPLY_PRODUCER,
    SHARED_VERDICT_CONSUMER, SHARED_VERDICT_PRODUCER,
};
pub use config::{KafkaSection, KafkaSettings, LargeFiles, Passthrough, TopicPartitions};
pub use dlq::{dlq_headers, DeadLetter, DeadLetters, DlqStage};
pub use error::KafkaSetupError;
pub use topics::{
    ensure_siem_topics, ensure_topics, ensure_topics_within, SiemTopic, Topic, Topics,
};
pub use txn::TxnError;
