//! The exporter: a [`Transform`] of the events topic into SIEM topics and a
//! CEF syslog stream, run by the consume-transform-produce driver.
//!
//! Per input message (an encoded [`Envelope`] from the outbox):
//! - undecodable: a dead letter to `<prefix>.events.v1.dlq` (stage
//!   `decode`), in the batch's transaction;
//! - else one ECS document to `<prefix>.siem.ecs.v1` and, when the event
//!   has an OCSF class, one OCSF document to `<prefix>.siem.ocsf.v1`: key
//!   the node id, headers `portcullis.event_id`, `portcullis.seq`,
//!   `portcullis.source` (`kafka:<topic>/<partition>@<offset>` of the
//!   input), the document's `portcullis.source` the same position;
//! - and one CEF line in an RFC 5424 message for the syslog collector,
//!   written and flushed after the Kafka outputs are acknowledged and
//!   before the transaction commits.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use portcullis_schemas::cef::{self, CefHeader};
use portcullis_schemas::{codec, ecs, ocsf, Envelope, SourcePosition};
use rdkafka::message::{Message, OwnedMessage};

use super::config::{Facility, SiemSettings};
use super::rfc5424::{self, Severity};
use super::transport::SyslogSink;
use crate::kafka::ctp::{self, CtpEnd, CtpOptions, Outgoing, Output, StepError, Transform};
use crate::kafka::{DeadLetter, DlqStage, KafkaSettings, SiemTopic, Topic};

/// Header names of the SIEM topics' messages.
pub mod header {
    /// The event id (UUID, text).
    pub const EVENT_ID: &str = "portcullis.event_id";
    /// The event's per-node sequence number (decimal).
    pub const SEQ: &str = "portcullis.seq";
    /// Where the input was read, in [`SourcePosition`]'s text form:
    /// `kafka:<topic>/<partition>@<offset>`.
    pub const SOURCE: &str = "portcullis.source";
}

/// The most events in one transaction.
pub const MAX_BATCH: usize = 512;
/// How long a batch stays open after its first event.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// What `siem-export` runs with.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub kafka: Arc<KafkaSettings>,
    pub siem: SiemSettings,
    /// This instance's stable name: its client id is
    /// `portcullis-siem-export-<instance>`, its transactional id
    /// `<group>.portcullis-siem-export-<instance>`.
    pub instance: String,
    /// Stop after this many input events are committed.
    pub max_events: Option<u64>,
    /// Stop after this long without an event.
    pub idle_exit: Option<Duration>,
    /// The consumer loop's heartbeat (`/healthz`).
    pub heartbeat: Option<portcullis_telemetry::Heartbeat>,
}

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    /// Input events committed (exported or dead-lettered).
    pub committed: u64,
    /// Documents produced to the SIEM topics.
    pub produced: u64,
    /// Undecodable (or unexportable) events sent to the DLQ.
    pub dead_lettered: u64,
    /// Batches aborted and consumed again.
    pub aborted_batches: u64,
    /// Syslog messages written (duplicates after a failure included).
    pub syslog_sent: u64,
}

/// Runs the exporter until `stop`, `max_events` or `idle_exit`. `ready`
/// runs once it consumes.
pub async fn run(
    opts: ExportOptions,
    ready: impl FnOnce() -> anyhow::Result<()>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ExportStats> {
    let kafka = &opts.kafka;
    crate::kafka::ensure_siem_topics(kafka, &opts.siem.topics, opts.siem.partitions)
        .await
        .context("creating the SIEM topics")?;
    let sink = match &opts.siem.syslog {
        None => None,
        Some(s) => {
            let mut sink = SyslogSink::new(s.clone())?;
            // Fail early when the collector is not there at start; later
            // outages are retried.
            let target = sink.target().to_string();
            let sink = tokio::task::spawn_blocking(move || sink.connect().map(|()| sink))
                .await?
                .with_context(|| format!("connecting to the syslog collector {target}"))?;
            Some(Arc::new(Mutex::new(sink)))
        }
    };
    let mut exporter = Exporter {
        ecs_topic: opts
            .siem
            .topics
            .contains(&SiemTopic::Ecs)
            .then(|| kafka.topics.siem(SiemTopic::Ecs)),
        ocsf_topic: opts
            .siem
            .topics
            .contains(&SiemTopic::Ocsf)
            .then(|| kafka.topics.siem(SiemTopic::Ocsf)),
        syslog: sink.map(|sink| Syslog {
            sink,
            facility: opts
                .siem
                .syslog
                .as_ref()
                .map_or(Facility::default(), |s| s.facility),
            cef: CefHeader::default(),
        }),
        sent: 0,
        in_flight: [0; 2],
        group: opts.siem.group.clone(),
        outputs: ["ecs", "ocsf", "cef"].map(
            |o| metrics::counter!(portcullis_telemetry::catalog::SIEM_EVENTS.name, "output" => o),
        ),
    };
    let ctp_opts = CtpOptions {
        input: Topic::Events,
        group: opts.siem.group.clone(),
        client: format!("portcullis-siem-export-{}", opts.instance),
        max_batch: MAX_BATCH,
        batch_window: BATCH_WINDOW,
        max_inputs: opts.max_events,
        idle_exit: opts.idle_exit,
        heartbeat: opts.heartbeat.clone(),
    };
    tracing::info!(
        instance = %opts.instance,
        group = %opts.siem.group,
        ecs = ?exporter.ecs_topic,
        ocsf = ?exporter.ocsf_topic,
        syslog = ?opts.siem.syslog.as_ref().map(|s| s.target.to_string()),
        "siem-export starting"
    );
    let (s, end) = ctp::run(kafka, &ctp_opts, &mut exporter, ready, stop).await?;
    let stats = ExportStats {
        committed: s.committed,
        produced: s.produced,
        dead_lettered: s.dead_lettered,
        aborted_batches: s.aborted_batches,
        syslog_sent: exporter.sent,
    };
    let why = match end {
        CtpEnd::Stopped => "signal",
        CtpEnd::MaxInputs => "max-events",
        CtpEnd::Idle => "idle-exit",
    };
    tracing::info!(
        committed = stats.committed,
        produced = stats.produced,
        dead_lettered = stats.dead_lettered,
        aborted = stats.aborted_batches,
        syslog = stats.syslog_sent,
        why,
        "siem-export stopped"
    );
    Ok(stats)
}

struct Syslog {
    sink: Arc<Mutex<SyslogSink>>,
    facility: Facility,
    cef: CefHeader,
}

struct Exporter {
    ecs_topic: Option<String>,
    ocsf_topic: Option<String>,
    syslog: Option<Syslog>,
    sent: u64,
    /// Documents of the batch in flight (ECS, OCSF), counted once its
    /// transaction commits.
    in_flight: [u64; 2],
    outputs: [metrics::Counter; 3],
    /// The exporter group (span attribute).
    group: String,
}

impl Transform for Exporter {
    /// The batch's syslog messages.
    type Side = Vec<Vec<u8>>;

    async fn transform(
        &mut self,
        batch: &[&OwnedMessage],
    ) -> Result<Output<Self::Side>, StepError> {
        let mut out = Output {
            messages: Vec::with_capacity(batch.len() * 2),
            dead: Vec::new(),
            side: Vec::new(),
        };
        self.in_flight = [0; 2];
        for &m in batch {
            let failed = match codec::decode(m.payload().unwrap_or_default()) {
                Err(e) => Some((DlqStage::Decode, e.to_string())),
                Ok(env) => {
                    // Continues the event's trace: `process <events topic>`
                    // under the span that produced the event.
                    let _span = crate::kafka::trace::process_span(
                        m,
                        Some(&self.group),
                        &env.event_id.to_string(),
                        Some(&env.trace),
                    );
                    let pos = SourcePosition::Kafka {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    self.export(&env, &pos, &mut out)
                        .err()
                        .map(|e| (DlqStage::Process, e.to_string()))
                }
            };
            if let Some((stage, error)) = failed {
                tracing::warn!(partition = m.partition(), offset = m.offset(), %stage, %error,
                    "event not exportable: dead-lettered");
                out.dead
                    .push(DeadLetter::of(Topic::Events, m, stage, &error));
            }
        }
        Ok(out)
    }

    async fn before_commit(&mut self, lines: Vec<Vec<u8>>) -> Result<(), StepError> {
        let Some(syslog) = &self.syslog else {
            return Ok(());
        };
        if lines.is_empty() {
            return Ok(());
        }
        let n = lines.len() as u64;
        let sink = Arc::clone(&syslog.sink);
        let sent = tokio::task::spawn_blocking(move || {
            let mut sink = sink
                .lock()
                .map_err(|_| io::Error::other("the syslog connection's lock is poisoned"))?;
            sink.send(&lines)
        })
        .await
        .map_err(|e| StepError::Unavailable(e.into()))?;
        sent.map_err(|e| StepError::Unavailable(anyhow::Error::from(e).context("syslog")))?;
        self.sent += n;
        self.outputs[2].increment(n);
        Ok(())
    }

    fn committed(&mut self) {
        for (i, n) in std::mem::take(&mut self.in_flight).into_iter().enumerate() {
            self.outputs[i].increment(n);
        }
    }
}

impl Exporter {
    /// The outputs of one event. An error leaves `out` as it was.
    fn export(
        &mut self,
        env: &Envelope,
        pos: &SourcePosition,
        out: &mut Output<Vec<Vec<u8>>>,
    ) -> io::Result<()> {
        // One document for a topic: key the node id, the same headers.
        let message = |topic: &String, payload: Vec<u8>| Outgoing {
            topic: topic.clone(),
            partition: None,
            key: env.node_id.0.as_bytes().to_vec(),
            payload,
            headers: vec![
                (header::EVENT_ID, env.event_id.to_string().into_bytes()),
                (header::SEQ, env.seq.to_string().into_bytes()),
                (header::SOURCE, pos.to_string().into_bytes()),
            ],
        };
        let mut messages = Vec::with_capacity(2);
        let mut counts = [0; 2];
        if let Some(topic) = &self.ecs_topic {
            let mut doc = Vec::with_capacity(1024);
            ecs::write_ecs_line(env, Some(pos), &mut doc)?;
            messages.push(message(topic, doc));
            counts[0] += 1;
        }
        if let Some(topic) = &self.ocsf_topic {
            let mut doc = Vec::with_capacity(1024);
            if ocsf::write_ocsf_line(env, Some(pos), &mut doc)? {
                messages.push(message(topic, doc));
                counts[1] += 1;
            }
        }
        let line = match &self.syslog {
            None => None,
            Some(s) => Some(syslog_message(env, pos, s.facility, &s.cef)?),
        };
        self.in_flight[0] += counts[0];
        self.in_flight[1] += counts[1];
        out.messages.extend(messages);
        out.side.extend(line);
        Ok(())
    }
}

/// The RFC 5424 message carrying an event's CEF line.
fn syslog_message(
    env: &Envelope,
    pos: &SourcePosition,
    facility: Facility,
    header: &CefHeader,
) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(512);
    cef::write_cef(env, Some(pos), header, &mut line)?;
    let (signature, _, severity) = cef::signature(env);
    Ok(rfc5424::message(
        &rfc5424::Header {
            facility,
            severity: Severity::of_cef(severity),
            timestamp: env.timestamp,
            hostname: &env.node_id.0,
            msgid: signature,
        },
        &line,
    ))
}
