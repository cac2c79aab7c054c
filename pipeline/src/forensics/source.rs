//! Where replayed records come from: a node's journal (through the running
//! agent's export socket, or the database itself when no agent holds it),
//! an export file, or the Kafka events topic.
//!
//! A source runs on its own thread and hands batches of undecoded records
//! to the caller over a bounded channel, so reading (sled, sockets,
//! librdkafka) and decoding/formatting overlap on two cores.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use crossbeam_channel::{bounded, Receiver, Sender};
use portcullis_actors::journal::export::ExportError;
use portcullis_actors::journal::{ExportReader, JournalStore};
use portcullis_schemas::{SourcePosition, Timestamp};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::{replay_consumer, KafkaSettings, Topic};

/// Records per batch handed to the caller.
const BATCH: usize = 2048;
/// Batches in flight between the source thread and the caller.
const QUEUE: usize = 8;
/// Bound of each Kafka metadata call.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// What to read.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A journal directory.
    Journal(PathBuf),
    /// An export file (`-` = stdin).
    Export(PathBuf),
    /// The events topic of `settings`.
    Kafka(Arc<KafkaSettings>),
}

impl SourceSpec {
    /// Names the source in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Journal(d) => format!("journal {}", d.display()),
            Self::Export(f) => format!("export {}", f.display()),
            Self::Kafka(k) => format!("topic {} on {}", k.topics.name(Topic::Events), k.bootstrap),
        }
    }
}

/// How to read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Keep reading new records after the end.
    pub follow: bool,
}

/// One undecoded record.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub pos: SourcePosition,
    /// The node it belongs to, when the source says so (journal header,
    /// Kafka key). Undecodable records are counted against it.
    pub node: Option<Arc<str>>,
    pub bytes: Vec<u8>,
}

/// What the source thread sends.
#[derive(Debug)]
pub enum SourceMsg {
    Records(Vec<RawRecord>),
    /// Something the reader should know (the journal is live, a partition
    /// is empty, …).
    Note(String),
}

/// A running source.
#[derive(Debug)]
pub struct SourceHandle {
    pub rx: Receiver<SourceMsg>,
    /// Spent batches go back to the source thread, which refills their
    /// records in place (no allocation per record on a fast source).
    recycle: Sender<Vec<RawRecord>>,
    /// Records the source expects to deliver (for a progress bar), when
    /// known.
    pub total: Option<u64>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl SourceHandle {
    /// Hands a processed batch back for reuse.
    pub fn recycle(&self, batch: Vec<RawRecord>) {
        let _ = self.recycle.try_send(batch);
    }

    /// Waits for the source thread; its error, if it failed.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(std::mem::replace(&mut self.rx, crossbeam_channel::never()));
        match self.thread.take() {
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(_) => bail!("the source thread panicked"),
            },
            None => Ok(()),
        }
    }
}

/// The body of a source thread.
type SourceBody = Box<dyn FnOnce(Sender<SourceMsg>) -> anyhow::Result<()> + Send>;

/// Starts reading `spec`.
pub fn open(spec: &SourceSpec, opts: ReadOptions) -> anyhow::Result<SourceHandle> {
    let (tx, rx) = bounded(QUEUE);
    let (recycle, recycled) = bounded(QUEUE + 2);
    let (total, body): (Option<u64>, SourceBody) = match spec {
        SourceSpec::Journal(dir) => match ExportReader::connect(dir, 1, opts.follow) {
            Ok(reader) => {
                let total = Some(reader.header().last_seq);
                let _ = tx.send(SourceMsg::Note(format!(
                    "{} is in use by a running agent: reading its export (snapshot up to seq {})",
                    dir.display(),
                    reader.header().last_seq
                )));
                (total, Box::new(move |tx| from_export(reader, &tx)))
            }
            Err(ExportError::Io { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                if opts.follow {
                    bail!(
                            "--follow on {} needs the running agent's export socket ({}), and no agent answers there",
                            dir.display(),
                            portcullis_actors::journal::export::socket_path(dir).display()
                        );
                }
                let store = JournalStore::open_existing(dir).with_context(|| {
                    format!(
                        "opening the journal in {} (no agent serves it)",
                        dir.display()
                    )
                })?;
                let last = store.last_seq();
                (Some(last), Box::new(move |tx| from_store(store, &tx)))
            }
            Err(e) => return Err(e).context(format!("reading {}", dir.display())),
        },
        SourceSpec::Export(file) => {
            if opts.follow {
                bail!(
                    "--follow cannot follow an export file; use --journal DIR of a running agent"
                );
            }
            let origin = file.display().to_string();
            let input: Box<dyn io::Read + Send> = if file.as_os_str() == "-" {
                Box::new(io::stdin())
            } else {
                Box::new(File::open(file).with_context(|| format!("opening {origin}"))?)
            };
            let reader = ExportReader::new(input, origin)?;
            let total = Some(
                reader
                    .header()
                    .last_seq
                    .saturating_sub(reader.header().from_seq)
                    + 1,
            );
            (total, Box::new(move |tx| from_export(reader, &tx)))
        }
        SourceSpec::Kafka(settings) => {
            let plan = KafkaPlan::resolve(settings, opts)?;
            let total = Some(plan.expected());
            (total, Box::new(move |tx| from_kafka(plan, &tx, recycled)))
        }
    };
    let thread = std::thread::Builder::new()
        .name("replay-source".into())
        .spawn(move || body(tx))
        .context("starting the source thread")?;
    Ok(SourceHandle {
        rx,
        recycle,
        total,
        thread: Some(thread),
    })
}

/// Sends a batch; false when the caller stopped listening.
fn send(tx: &Sender<SourceMsg>, batch: &mut Vec<RawRecord>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
    tx.send(SourceMsg::Records(full)).is_ok()
}

fn from_store(store: JournalStore, tx: &Sender<SourceMsg>) -> anyhow::Result<()> {
    let node: Arc<str> = Arc::from(store.node_id().0.as_str());
    let reader = store.reader();
    let last = store.last_seq();
    let mut next = 1u64;
    while next <= last {
        let raw = reader.raw_from(next, BATCH)?;
        if raw.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(raw.len());
        for (seq, bytes) in raw {
            if seq > last {
                break;
            }
            next = seq + 1;
            batch.push(RawRecord {
                pos: SourcePosition::Journal { seq },
                node: Some(node.clone()),
                bytes,
            });
        }
        if !send(tx, &mut batch) {
            return Ok(());
        }
    }
    Ok(())
}

fn from_export<R: io::Read>(
    mut reader: ExportReader<R>,
    tx: &Sender<SourceMsg>,
) -> anyhow::Result<()> {
    let node: Arc<str> = Arc::from(reader.header().node_id.0.as_str());
    let mut batch = Vec::with_capacity(BATCH);
    while let Some((seq, bytes)) = reader.next_record()? {
        batch.push(RawRecord {
            pos: SourcePosition::Journal { seq },
            node: Some(node.clone()),
            bytes,
        });
        // A follow stream sends what it has as soon as it stalls; a
        // snapshot sends full batches.
        if (batch.len() >= BATCH || (reader.is_idle() && !batch.is_empty()))
            && !send(tx, &mut batch)
        {
            return Ok(());
        }
    }
    send(tx, &mut batch);
    Ok(())
}

/// Per partition: where to start, and where to stop (exclusive; `None`
/// while following).
struct KafkaPlan {
    consumer: crate::kafka::AssignedConsumer,
    topic: String,
    ranges: Vec<(i32, i64, Option<i64>)>,
}

impl KafkaPlan {
    fn resolve(settings: &KafkaSettings, opts: ReadOptions) -> anyhow::Result<Self> {
        let topic = settings.topics.name(Topic::Events);
        let consumer = replay_consumer(settings, "portcullis-replay")?;
        let md = consumer
            .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)
            .with_context(|| {
                format!("reading the metadata of {topic} on {}", settings.bootstrap)
            })?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!(
                "topic {topic} does not exist on {} (or has no partitions)",
                settings.bootstrap
            );
        }
        let at = |t: Timestamp| -> anyhow::Result<Vec<Option<i64>>> {
            let mut tpl = TopicPartitionList::new();
            for &p in &partitions {
                tpl.add_partition_offset(&topic, p, Offset::Offset(t.0.div_euclid(1_000_000)))?;
            }
            let found = consumer
                .offsets_for_times(tpl, KAFKA_TIMEOUT)
                .with_context(|| format!("resolving offsets for times on {topic}"))?;
            Ok(partitions
                .iter()
                .map(
                    |&p| match found.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        // No message at or after the time: the partition's end.
                        _ => None,
                    },
                )
                .collect())
        };
        // `--from` is exact: offsets-for-times gives the earliest offset
        // whose timestamp is at or after it. `--to` cannot be resolved the
        // same way: partitions mix nodes whose outboxes publish at
        // different moments (a backlog after an outage comes late), so a
        // later offset can hold an earlier event. The replay reads to the
        // high watermark and drops records past `--to` by their timestamp.
        let starts = opts.from.map(at).transpose()?;
        let mut ranges = Vec::with_capacity(partitions.len());
        for (i, &p) in partitions.iter().enumerate() {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, KAFKA_TIMEOUT)
                .with_context(|| format!("reading the watermarks of {topic}/{p}"))?;
            let start = match starts.as_ref().map(|s| s[i]) {
                None => low,
                Some(Some(o)) => o.max(low),
                Some(None) => high,
            };
            let end = if opts.follow { None } else { Some(high) };
            ranges.push((p, start, end));
        }
        Ok(Self {
            consumer,
            topic,
            ranges,
        })
    }

    fn expected(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(_, s, e)| e.map_or(0, |e| u64::try_from(e - s).unwrap_or(0)))
            .sum()
    }
}

/// Fills batches with records taken from spent batches when there are
/// some, so a steady stream reuses its buffers instead of allocating (and
/// freeing on another thread) a payload, a topic name and a node id per
/// record.
struct Batcher {
    out: Vec<RawRecord>,
    spare: Vec<RawRecord>,
    recycled: Receiver<Vec<RawRecord>>,
}

impl Batcher {
    fn new(recycled: Receiver<Vec<RawRecord>>) -> Self {
        Self {
            out: Vec::with_capacity(BATCH),
            spare: Vec::new(),
            recycled,
        }
    }

    /// The next record to fill (its old contents are to be overwritten).
    fn slot(&mut self) -> &mut RawRecord {
        if self.spare.is_empty() {
            if let Ok(spent) = self.recycled.try_recv() {
                self.spare = spent;
            }
        }
        let record = self.spare.pop().unwrap_or_else(|| RawRecord {
            pos: SourcePosition::Journal { seq: 0 },
            node: None,
            bytes: Vec::new(),
        });
        self.out.push(record);
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    fn len(&self) -> usize {
        self.out.len()
    }

    /// Sends what is filled; false when the caller stopped listening.
    fn send(&mut self, tx: &Sender<SourceMsg>) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let mut next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        // The records of a recycled batch are spares; its vector the next
        // batch.
        self.spare.append(&mut next);
        let full = std::mem::replace(&mut self.out, next);
        tx.send(SourceMsg::Records(full)).is_ok()
    }
}

fn from_kafka(
    plan: KafkaPlan,
    tx: &Sender<SourceMsg>,
    recycled: Receiver<Vec<RawRecord>>,
) -> anyhow::Result<()> {
    let KafkaPlan {
        consumer,
        topic,
        ranges,
    } = plan;
    let mut tpl = TopicPartitionList::new();
    let mut open = 0usize;
    // The last offset to deliver, per partition (None: no end).
    let mut last: std::collections::HashMap<i32, Option<i64>> = Default::default();
    for &(p, start, end) in &ranges {
        if end.is_some_and(|e| e <= start) {
            continue;
        }
        tpl.add_partition_offset(&topic, p, Offset::Offset(start))?;
        last.insert(p, end.map(|e| e - 1));
        open += 1;
    }
    if open == 0 {
        return Ok(());
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assigning the partitions of {topic}"))?;
    let mut batch = Batcher::new(recycled);
    // Node ids are message keys: one shared string per node.
    let mut nodes: Vec<Arc<str>> = Vec::new();
    let mut idle = false;
    while open > 0 {
        // While messages flow, take them without a timeout (no clock
        // reads); when none is ready, send what there is and wait.
        let polled = if idle {
            consumer.poll(Duration::from_millis(100))
        } else {
            consumer.poll(Duration::ZERO)
        };
        let msg = match polled {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                if !idle {
                    idle = true;
                    if !batch.send(tx) {
                        return Ok(());
                    }
                    continue;
                }
                // The end offset can be a transaction marker, which is
                // never delivered: a partition whose position passed its
                // last offset is done.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements_for_topic(&topic) {
                        if let (Offset::Offset(at), Some(Some(end))) =
                            (e.offset(), last.get(&e.partition()))
                        {
                            if at > *end {
                                last.remove(&e.partition());
                                open -= 1;
                            }
                        }
                    }
                }
                continue;
            }
            Some(Err(e)) => {
                let _ = tx.send(SourceMsg::Note(format!("consumer: {e}")));
                continue;
            }
            Some(Ok(m)) => m,
        };
        idle = false;
        let p = msg.partition();
        let Some(end) = last.get(&p).copied() else {
            continue;
        };
        if end.is_some_and(|e| msg.offset() > e) {
            continue;
        }
        let node = msg.key().map(|k| {
            match nodes.iter().find(|n| n.as_bytes() == k) {
                Some(n) => n.clone(),
                None => {
                    let n: Arc<str> = Arc::from(String::from_utf8_lossy(k).as_ref());
                    // A bounded cache: node ids are few, garbage keys are not.
                    if nodes.len() < 1024 {
                        nodes.push(n.clone());
                    }
                    n
                }
            }
        });
        let slot = batch.slot();
        match &mut slot.pos {
            SourcePosition::Kafka {
                topic: t,
                partition,
                offset,
            } if *t == topic => {
                *partition = p;
                *offset = msg.offset();
            }
            pos => {
                *pos = SourcePosition::Kafka {
                    topic: topic.clone(),
                    partition: p,
                    offset: msg.offset(),
                }
            }
        }
        slot.node = node;
        slot.bytes.clear();
        slot.bytes
            .extend_from_slice(msg.payload().unwrap_or_default());
        if end == Some(msg.offset()) {
            last.remove(&p);
            open -= 1;
        }
        if batch.len() >= BATCH && !batch.send(tx) {
            return Ok(());
        }
    }
    batch.send(tx);
    Ok(())
}
