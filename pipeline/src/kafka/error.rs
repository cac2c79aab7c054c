//! Errors of Kafka setup and plumbing. Every variant names what failed: the
//! topic, the client or the setting.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A librdkafka setting was refused (unknown name, bad value, or a
    /// conflict between settings).
    #[error("Kafka client `{client}`: setting `{setting}`: {message}")]
    Setting {
        client: String,
        setting: String,
        message: String,
    },
    /// librdkafka could not create the client.
    #[error("Kafka client `{client}`: cannot create it: {source}")]
    Client {
        client: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// A `StreamConsumer` needs a tokio runtime (actix-rt is one).
    #[error("Kafka client `{client}`: consumers must be created inside a tokio runtime")]
    NoRuntime { client: String },
    /// `assign()` or `subscribe()` failed.
    #[error("Kafka client `{client}`: cannot read topic `{topic}`: {source}")]
    Assign {
        client: String,
        topic: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// An admin request failed as a whole.
    #[error("Kafka admin `{client}`: {operation}: {source}")]
    Admin {
        client: String,
        operation: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// The broker refused to create a topic.
    #[error("topic `{topic}`: cannot create it: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// An existing topic does not match what portcullis needs.
    #[error("topic `{topic}`: {setting} is {found}, portcullis needs {expected}")]
    TopicMismatch {
        topic: String,
        setting: String,
        expected: String,
        found: String,
    },
    /// A bounded wait ran out.
    #[error("{what}: no answer within {}", humantime::format_duration(*.waited))]
    Timeout { what: String, waited: Duration },
    /// A message could not be produced.
    #[error("topic `{topic}`: cannot produce: {source}")]
    Produce {
        topic: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// `init_transactions` failed.
    #[error("transactional producer `{transactional_id}`: init_transactions: {source}")]
    InitTransactions {
        transactional_id: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// A task on tokio's blocking pool did not finish (panic, shutdown).
    #[error("{what}: the task did not finish: {message}")]
    Task { what: String, message: String },
    /// Committed offsets could not be read or the consumer could not seek.
    #[error("Kafka client `{client}`: {operation}: {source}")]
    Offsets {
        client: String,
        operation: String,
        #[source]
        source: Box<KafkaError>,
    },
}

impl KafkaSetupError {
    pub(crate) fn setting_or_client(client: &str, source: KafkaError) -> Self {
        match source {
            KafkaError::ClientConfig(_, desc, key, _) => KafkaSetupError::Setting {
                client: client.to_string(),
                setting: key,
                message: desc,
            },
            source => KafkaSetupError::Client {
                client: client.to_string(),
                source: Box::new(source),
            },
        }
    }
}
