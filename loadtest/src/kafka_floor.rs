//! The Kafka floor: the physical cost of a remote verdict's round trip on
//! this broker, measured in the same run as portcullis.
//!
//! A target that does only produce → consume → produce → consume, with the
//! clients portcullis uses on the request/reply path and messages of the
//! same sizes, and nothing else (no hash, no scan, no journal, no
//! Enforcer):
//!
//! ```text
//! injector ─AccessRequest─► FloorKafka actor (own arbiter)
//!     reads the content through the access's fd (as the node does),
//!     produces a ScanRequest-sized message (request_producer, key = access id)
//!          ─► <prefix>.kafka-floor-requests ─► echo thread (request_consumer, in a group)
//!                  produces a ScanReplied-sized message at once (reply_producer)
//!          ◄─ <prefix>.kafka-floor-replies [reply partition] ◄─┘
//!     reply thread (reply_consumer, read_uncommitted) answers ALLOW
//! ```
//!
//! The echo runs in the load tool's process on a thread of its own (the
//! scanner services are processes of their own: the floor does not pay
//! their process hop, only the broker's). Its topics are created on the
//! run's prefix and deleted at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use portcullis_actors::enforcer::AccessRequest;
use portcullis_actors::scanner::Loaded;
use portcullis_pipeline::kafka::{
    self, reply_consumer, reply_producer, request_consumer, request_producer, GroupContext,
    KafkaSettings,
};
use portcullis_schemas::wire::{self, ScanReplied, ScanRequest};
use portcullis_schemas::{
    Decision, EventId, NodeId, RulesetVersion, Timestamp, TraceContext, Verdict,
};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, ProducerContext, ThreadedProducer,
};
use rdkafka::Offset;

use crate::error::{Error, Result};
use crate::kafka::block_on_thread;

/// The node id the floor's requests carry (sizes as portcullis's).
const NODE: &str = "loadtest";
/// Bound of every broker call while starting and stopping.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do when a request's reply arrives (or its request failed).
pub type OnReply = Box<dyn FnOnce() + Send>;

type Waiting = Arc<Mutex<HashMap<[u8; 16], OnReply>>>;

/// The round trip itself, without actors: the echo and reply threads,
/// the node's request producer. Used by the pipeline's `kafka-floor`
/// target (through [`KafkaFloor`]) and by `portcullis-floor --kafka`
/// (the cluster scenario's).
pub struct RoundTrip {
    producer: Arc<ThreadedProducer<Refusals>>,
    request_topic: String,
    reply_topic: String,
    reply_partition: i32,
    inline_limit: u64,
    waiting: Waiting,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    settings: Arc<KafkaSettings>,
    topics: [String; 2],
}

impl std::fmt::Debug for RoundTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundTrip")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// The topic names of the floor on a prefix: requests, replies.
pub fn topics(settings: &KafkaSettings) -> [String; 2] {
    let p = settings.topics.prefix();
    [
        format!("{p}.kafka-floor-requests.v1"),
        format!("{p}.kafka-floor-replies.v1"),
    ]
}

fn err(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::kafka(format!("kafka floor: {what}"), e.to_string())
}

impl RoundTrip {
    /// Creates the topics, starts the echo and the reply reader, and
    /// returns once both are in place (the echo's group has assigned it
    /// its partitions). Blocks (at most about a minute); call it from a
    /// thread that may block.
    pub fn start(settings: Arc<KafkaSettings>) -> Result<Self> {
        let names = topics(&settings);
        {
            let (s, n) = (Arc::clone(&settings), names.clone());
            block_on_thread(async move { create_topics(&s, &n).await })??;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reply_partition = settings.reply_partition_for(NODE);

        // The echo: in a group, like a scanner service.
        let group = format!("{}.kafka-floor", settings.topics.prefix());
        let client = "loadtest-kafka-floor-echo";
        let echo_in =
            request_consumer(&settings, client, &group, GroupContext::new(client, &group))
                .map_err(|e| err("the echo's consumer", &e))?;
        echo_in
            .subscribe(&[&names[0]])
            .map_err(|e| err("subscribing the echo", &e))?;
        let assigned = echo_in.context().assignments();
        let echo_out = reply_producer(&settings, client, DefaultProducerContext)
            .map_err(|e| err("the echo's producer", &e))?;
        let reply_bytes = wire::encode(&sample_reply()).map_err(|e| err("encoding a reply", &e))?;
        let (replies_topic, s) = (names[1].clone(), stop.clone());
        let echo = std::thread::Builder::new()
            .name("kafka-floor-echo".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = echo_in.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let key = m.key().unwrap_or_default();
                    let mut record = BaseRecord::to(&replies_topic)
                        .partition(reply_partition)
                        .key(key)
                        .payload(reply_bytes.as_slice());
                    while let Err((_, r)) = echo_out.send(record) {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
            .map_err(|e| err("starting the echo", &e))?;
        let mut threads = vec![echo];
        let fail = |threads: Vec<JoinHandle<()>>, stop: &AtomicBool, e: Error| {
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                let _ = t.join();
            }
            e
        };

        // The node's side: the reply reader from the partition's end.
        let high = kafka::base_config(&settings, "loadtest-kafka-floor-watermarks")
            .create::<BaseConsumer>()
            .map_err(|e| err("the watermark reader", &e))
            .and_then(|c| {
                // A topic created a moment ago may not be in the broker's
                // metadata yet (UnknownPartition): ask again, bounded.
                let until = std::time::Instant::now() + BROKER_TIMEOUT;
                loop {
                    match c.fetch_watermarks(&names[1], reply_partition, BROKER_TIMEOUT) {
                        Ok((_, h)) => break Ok(h),
                        Err(_) if std::time::Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(e) => break Err(err("reading the reply partition's end", &e)),
                    }
                }
            });
        let high = match high {
            Ok(h) => h,
            Err(e) => return Err(fail(threads, &stop, e)),
        };
        let replies = match reply_consumer(
            &settings,
            "loadtest-kafka-floor-replies",
            &names[1],
            &[reply_partition],
            Offset::Offset(high),
            false,
        ) {
            Ok(r) => r,
            Err(e) => return Err(fail(threads, &stop, err("the reply reader", &e))),
        };
        let waiting: Waiting = Arc::default();
        // As the node's: delivery failures answer at once.
        let producer = match request_producer(
            &settings,
            "loadtest-kafka-floor-node",
            Refusals {
                waiting: Arc::clone(&waiting),
            },
        ) {
            Ok(p) => Arc::new(p),
            Err(e) => return Err(fail(threads, &stop, err("the request producer", &e))),
        };
        let (w, s) = (Arc::clone(&waiting), stop.clone());
        let reader = std::thread::Builder::new()
            .name("kafka-floor-replies".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = replies.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let Some(key) = m.key().and_then(|k| <[u8; 16]>::try_from(k).ok()) else {
                        continue;
                    };
                    let found = w.lock().ok().and_then(|mut w| w.remove(&key));
                    if let Some(done) = found {
                        done();
                    }
                }
            });
        match reader {
            Ok(r) => threads.push(r),
            Err(e) => return Err(fail(threads, &stop, err("starting the reply reader", &e))),
        }

        // Ready once the echo's group formed.
        let t0 = Instant::now();
        while *assigned.borrow() == 0 {
            if t0.elapsed() > BROKER_TIMEOUT {
                return Err(fail(
                    threads,
                    &stop,
                    err("the echo's group", &"no assignment within 30 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            producer,
            request_topic: names[0].clone(),
            reply_topic: names[1].clone(),
            reply_partition,
            inline_limit: settings.inline_limit,
            waiting,
            stop,
            threads,
            settings,
            topics: names,
        })
    }

    /// The most content a request carries inline (as the node's).
    pub fn inline_limit(&self) -> u64 {
        self.inline_limit
    }

    /// Sends `content` as a scan request keyed `id`; `done` runs when its
    /// reply arrives, or at once if the request cannot be queued.
    pub fn send(&self, id: EventId, content: Vec<u8>, done: OnReply) {
        let request = ScanRequest {
            request: id,
            node_id: NodeId(NODE.into()),
            reply_topic: self.reply_topic.clone(),
            reply_partition: self.reply_partition,
            sha256: [0; 32],
            size: content.len() as u64,
            content,
            trace: TraceContext::root_for(&id),
            sent_at: Timestamp::now(),
        };
        let Ok(payload) = wire::encode(&request) else {
            done();
            return;
        };
        let key = *id.as_bytes();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(key, done);
        }
        // The reply is what answers; a message that cannot be queued (or,
        // through its delivery report, delivered) answers at once.
        let queued = self.producer.send(
            BaseRecord::with_opaque_to(&self.request_topic, Box::new(key))
                .key(key.as_slice())
                .payload(payload.as_slice()),
        );
        if queued.is_err() {
            if let Some(done) = self.waiting.lock().ok().and_then(|mut w| w.remove(&key)) {
                done();
            }
        }
    }

    /// Stops the threads, answers what still waits, and deletes the
    /// floor's topics. Blocks (bounded).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        if let Ok(mut w) = self.waiting.lock() {
            for (_, done) in w.drain() {
                done();
            }
        }
        let (settings, names) = (self.settings, self.topics);
        let _ = block_on_thread(async move {
            if let Ok(admin) = kafka::admin_client(&settings, "loadtest-kafka-floor-cleanup") {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
                let _ =
                    tokio::time::timeout(BROKER_TIMEOUT, admin.delete_topics(&refs, &opts)).await;
                let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
            }
        });
    }
}

/// The request producer's context: a request not delivered answers at
/// once (the run then counts no hung open that Kafka caused).
struct Refusals {
    waiting: Waiting,
}

impl ClientContext for Refusals {}

impl ProducerContext for Refusals {
    type DeliveryOpaque = Box<[u8; 16]>;

    fn delivery(&self, result: &DeliveryResult<'_>, key: Self::DeliveryOpaque) {
        if result.is_err() {
            if let Some(done) = self.waiting.lock().ok().and_then(|mut w| w.remove(&*key)) {
                done();
            }
        }
    }
}

/// The pipeline's `kafka-floor` target: an actor in front of a
/// [`RoundTrip`], on an arbiter of its own (as the remote scanner).
pub struct KafkaFloor {
    pub addr: Recipient<AccessRequest>,
    arbiter: Arbiter,
    round: Arc<Mutex<Option<RoundTrip>>>,
}

impl std::fmt::Debug for KafkaFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFloor").finish_non_exhaustive()
    }
}

impl KafkaFloor {
    /// Starts the round trip and the actor. Must run inside an actix
    /// System.
    pub async fn start(settings: Arc<KafkaSettings>, mailbox: usize) -> Result<Self> {
        let round = actix_rt::task::spawn_blocking(move || RoundTrip::start(settings))
            .await
            .map_err(|e| err("the start task", &e))??;
        let round = Arc::new(Mutex::new(Some(round)));
        let arbiter = Arbiter::new();
        let actor = FloorKafka {
            round: Arc::clone(&round),
            mailbox,
        };
        let addr = FloorKafka::start_in_arbiter(&arbiter.handle(), move |_| actor).recipient();
        Ok(Self {
            addr,
            arbiter,
            round,
        })
    }

    /// Stops the actor and the round trip; deletes the floor's topics.
    pub async fn stop(self) {
        self.arbiter.stop();
        let round = self.round.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = round {
            let _ = actix_rt::task::spawn_blocking(move || r.stop()).await;
        }
    }
}

async fn create_topics(settings: &KafkaSettings, names: &[String; 2]) -> Result<()> {
    let admin = kafka::admin_client(settings, "loadtest-kafka-floor-admin")
        .map_err(|e| err("admin client", &e))?;
    let max = settings.max_message_bytes().to_string();
    let new = [
        NewTopic::new(
            &names[0],
            settings.partitions.scan_requests,
            TopicReplication::Fixed(1),
        )
        .set("max.message.bytes", &max),
        NewTopic::new(
            &names[1],
            settings.partitions.verdicts,
            TopicReplication::Fixed(1),
        ),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = tokio::time::timeout(BROKER_TIMEOUT, admin.create_topics(&new, &opts)).await;
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    let results = results
        .map_err(|_| err("creating the topics", &"timed out"))?
        .map_err(|e| err("creating the topics", &e))?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(err(&format!("creating {topic}"), &code));
            }
        }
    }
    Ok(())
}

/// A reply as a scanner service sends it for a clean file: its size is
/// what the echo sends back.
fn sample_reply() -> ScanReplied {
    ScanReplied {
        request: EventId::new(),
        node_id: NodeId(NODE.into()),
        sha256: [0; 32],
        size: 4096,
        verdict: Verdict::Clean,
        ruleset: RulesetVersion("builtin-0000000000000000".into()),
        scanner: "loadtest-0000000000-s1".into(),
        scan_duration_us: 5,
    }
}

/// The node's side of the pipeline's floor: one produce per access.
struct FloorKafka {
    round: Arc<Mutex<Option<RoundTrip>>>,
    mailbox: usize,
}

impl Actor for FloorKafka {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<AccessRequest> for FloorKafka {
    type Result = ();

    fn handle(&mut self, req: AccessRequest, _: &mut Self::Context) {
        let Ok(guard) = self.round.lock() else {
            return;
        };
        let Some(round) = guard.as_ref() else {
            let _ = req.responder.answer(req.event_id, Decision::Allow);
            return;
        };
        // The same message as portcullis sends: the content inline (read
        // through the fd), no hash.
        let content = match req.content.read_up_to(round.inline_limit()) {
            Ok(Loaded::Whole(b)) => b,
            _ => Vec::new(),
        };
        let (id, responder) = (req.event_id, req.responder);
        round.send(
            id,
            content,
            Box::new(move || {
                let _ = responder.answer(id, Decision::Allow);
            }),
        );
    }
}
