//! Dead letters: messages a consumer cannot handle go to `<topic>.dlq`
//! with the original key and payload, and headers saying where they came
//! from and why; the consumer goes on.
//!
//! | header | value |
//! |---|---|
//! | `portcullis.origin.topic` | the topic it was read from |
//! | `portcullis.origin.partition` | its partition (decimal) |
//! | `portcullis.origin.offset` | its offset (decimal) |
//! | `portcullis.origin.error` | what went wrong (at most 4 KiB) |
//! | `portcullis.origin.stage` | `decode`, `process` or `produce` |
//! | `portcullis.origin.service` | the service that gave up on it |
//! | `portcullis.origin.timestamp` | when, RFC 3339 (UTC) |
//!
//! The original headers (trace context, ...) are kept after these, except
//! any `portcullis.origin.*` of a message dead-lettered before.
//!
//! With a transactional producer (in an open transaction), the dead letter
//! and the consumed offset are committed together.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::Message;

use super::topics::{Topic, Topics};
use super::KafkaSetupError;

/// Header names.
pub mod header {
    pub const PREFIX: &str = "portcullis.origin.";
    pub const TOPIC: &str = "portcullis.origin.topic";
    pub const PARTITION: &str = "portcullis.origin.partition";
    pub const OFFSET: &str = "portcullis.origin.offset";
    pub const ERROR: &str = "portcullis.origin.error";
    pub const STAGE: &str = "portcullis.origin.stage";
    pub const SERVICE: &str = "portcullis.origin.service";
    pub const TIMESTAMP: &str = "portcullis.origin.timestamp";
}

/// The longest error text kept in a header.
pub const MAX_ERROR_LEN: usize = 4096;
/// Default bound of one [`DeadLetters::send`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where handling a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DlqStage {
    /// It could not be decoded.
    Decode,
    /// It was decoded but could not be handled.
    Process,
    /// Its result could not be produced.
    Produce,
}

impl DlqStage {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqStage::Decode => "decode",
            DlqStage::Process => "process",
            DlqStage::Produce => "produce",
        }
    }
}

impl fmt::Display for DlqStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dead letter, owned (so that sending it holds no borrowed message
/// across an `.await`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Which topic's DLQ it goes to.
    pub origin: Topic,
    /// The topic it was read from (its name).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The original headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub stage: DlqStage,
    pub error: String,
}

impl DeadLetter {
    /// A dead letter of a consumed message.
    pub fn of<M: Message>(origin: Topic, msg: &M, stage: DlqStage, error: &str) -> Self {
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|Header { key, value }| (key.to_string(), value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            origin,
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
            stage,
            error: error.to_string(),
        }
    }
}

/// Sends dead letters for one service.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topics: Topics,
    service: String,
    timeout: Duration,
}

impl fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topics", &self.topics)
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// `producer`: idempotent, or transactional (then every send must be
    /// inside an open transaction). `service` names the sender in the
    /// `portcullis.origin.service` header.
    pub fn new(producer: FutureProducer, topics: Topics, service: &str) -> Self {
        Self {
            producer,
            topics,
            service: service.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds each send (queueing and delivery) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `msg` (read from `origin`) to `origin`'s DLQ and waits for the
    /// broker's acknowledgement. The returned future owns its data: it
    /// does not borrow `msg`.
    pub fn send<M: Message>(
        &self,
        origin: Topic,
        msg: &M,
        stage: DlqStage,
        error: &str,
    ) -> impl Future<Output = Result<(), KafkaSetupError>> + Send + 'static {
        let letter = DeadLetter::of(origin, msg, stage, error);
        let this = self.clone();
        async move { this.send_letter(letter).await }
    }

    /// Sends a dead letter built by hand (e.g. from a message already
    /// detached).
    pub async fn send_letter(&self, letter: DeadLetter) -> Result<(), KafkaSetupError> {
        let dlq = self.topics.dlq(letter.origin);
        let headers = self.headers(&letter);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq).headers(headers);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &letter.payload {
            record = record.payload(p.as_slice());
        }
        let send = self.producer.send(record, Timeout::After(self.timeout));
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(_)) => {
                count(letter.stage);
                tracing::warn!(
                    dlq = %dlq, origin = %letter.topic, partition = letter.partition,
                    offset = letter.offset, stage = %letter.stage, error = %letter.error,
                    "dead-lettered a message"
                );
                Ok(())
            }
            Ok(Err((source, _))) => Err(KafkaSetupError::Produce {
                topic: dlq,
                source: Box::new(source),
            }),
            Err(_) => Err(KafkaSetupError::Timeout {
                what: format!("topic `{dlq}`: delivering a dead letter"),
                waited: self.timeout,
            }),
        }
    }

    fn headers(&self, letter: &DeadLetter) -> OwnedHeaders {
        letter.headers_from(&self.service)
    }
}

/// `portcullis_dlq_messages_total{stage}`: one dead letter the broker took.
pub fn count(stage: DlqStage) {
    metrics::counter!(portcullis_telemetry::catalog::DLQ_MESSAGES.name, "stage" => stage.as_str())
        .increment(1);
}

impl DeadLetter {
    /// Its headers as a DLQ message carries them: the origin (with
    /// `service` as the sender), then the original headers. For a sender
    /// with its own producer (the scanner service's, with delivery
    /// reports); [`DeadLetters`] uses the same.
    pub fn headers_from(&self, service: &str) -> OwnedHeaders {
        let letter = self;
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let error = truncate(&letter.error, MAX_ERROR_LEN);
        let mut h = OwnedHeaders::new_with_capacity(7 + letter.headers.len());
        for (key, value) in [
            (header::TOPIC, letter.topic.as_str()),
            (header::PARTITION, partition.as_str()),
            (header::OFFSET, offset.as_str()),
            (header::ERROR, error),
            (header::STAGE, letter.stage.as_str()),
            (header::SERVICE, service),
            (header::TIMESTAMP, now.as_str()),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value),
            });
        }
        for (key, value) in &letter.headers {
            if key.starts_with(header::PREFIX) {
                continue;
            }
            h = h.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        h
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The headers of a message as text (lossy UTF-8; a header without a value
/// maps to ""; of repeated keys the last wins). For tests and tools reading
/// a DLQ back: `dlq_headers(&msg)["portcullis.origin.offset"]`.
pub fn dlq_headers(msg: &impl Message) -> BTreeMap<String, String> {
    msg.headers()
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| {
                    (
                        key.to_string(),
                        value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    #[test]
    fn stages_have_stable_names() {
        assert_eq!(DlqStage::Decode.as_str(), "decode");
        assert_eq!(DlqStage::Process.to_string(), "process");
        assert_eq!(DlqStage::Produce.as_str(), "produce");
    }

    #[test]
    fn errors_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn a_letter_keeps_the_message() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-abc"),
            })
            .insert(Header::<&str> {
                key: "empty",
                value: None,
            });
        let msg = OwnedMessage::new(
            Some(b"payload".to_vec()),
            Some(b"key".to_vec()),
            "p.scan-requests.v1".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(headers),
        );
        let letter = DeadLetter::of(Topic::ScanRequests, &msg, DlqStage::Decode, "bad magic");
        assert_eq!(letter.topic, "p.scan-requests.v1");
        assert_eq!((letter.partition, letter.offset), (3, 42));
        assert_eq!(letter.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(letter.payload.as_deref(), Some(&b"payload"[..]));
        assert_eq!(
            letter.headers,
            vec![
                ("traceparent".to_string(), Some(b"00-abc".to_vec())),
                ("empty".to_string(), None)
            ]
        );
        let read = dlq_headers(&msg);
        assert_eq!(read["traceparent"], "00-abc");
        assert_eq!(read["empty"], "");
    }
}
