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
use portcullis_actors::enforcer::{AccessRequest, Responder};
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
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::Offset;

use crate::error::{Error, Result};

/// The node id the floor's requests carry (sizes as portcullis's).
const NODE: &str = "loadtest";
/// Bound of every broker call while starting and stopping.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

type Waiting = Arc<Mutex<HashMap<[u8; 16], (EventId, Responder)>>>;

/// A running Kafka floor.
pub struct KafkaFloor {
    pub addr: Recipient<AccessRequest>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    arbiter: Arbiter,
    settings: Arc<KafkaSettings>,
    topics: [String; 2],
}

impl std::fmt::Debug for KafkaFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFloor")
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

impl KafkaFloor {
    /// Creates the topics, starts the echo and the reply reader, and
    /// returns once both are in place (the echo's group has assigned it
    /// its partitions). Must run inside an actix System.
    pub async fn start(settings: Arc<KafkaSettings>, mailbox: usize) -> Result<Self> {
        let names = topics(&settings);
        create_topics(&settings, &names).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let reply_partition = settings.reply_partition_for(NODE);
        let err = |what: &str, e: &dyn std::fmt::Display| {
            Error::kafka(format!("kafka floor: {what}"), e.to_string())
        };

        // The echo: in a group, like a scanner service.
        let group = format!("{}.kafka-floor", settings.topics.prefix());
        let client = "loadtest-kafka-floor-echo";
        let echo_in =
            request_consumer(&settings, client, &group, GroupContext::new(client, &group))
                .map_err(|e| err("the echo's consumer", &e))?;
        echo_in
            .subscribe(&[&names[0]])
            .map_err(|e| err("subscribing the echo", &e))?;
        let mut assigned = echo_in.context().assignments();
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

        // The node's side: the reply reader from the partition's end.
        let high = {
            let s = Arc::clone(&settings);
            let topic = names[1].clone();
            actix_rt::task::spawn_blocking(move || {
                let c: BaseConsumer = kafka::base_config(&s, "loadtest-kafka-floor-watermarks")
                    .create()
                    .map_err(|e| e.to_string())?;
                c.fetch_watermarks(&topic, reply_partition, BROKER_TIMEOUT)
                    .map(|(_, h)| h)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| err("the watermark task", &e))?
            .map_err(|e| err("reading the reply partition's end", &e))?
        };
        let replies = reply_consumer(
            &settings,
            "loadtest-kafka-floor-replies",
            &names[1],
            &[reply_partition],
            Offset::Offset(high),
            false,
        )
        .map_err(|e| err("the reply reader", &e))?;
        let waiting: Waiting = Arc::default();
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
                    if let Some((id, responder)) = found {
                        let _ = responder.answer(id, Decision::Allow);
                    }
                }
            })
            .map_err(|e| err("starting the reply reader", &e))?;

        // Ready once the echo's group formed.
        let t0 = Instant::now();
        while *assigned.borrow_and_update() == 0 {
            if t0.elapsed() > BROKER_TIMEOUT {
                stop.store(true, Ordering::Relaxed);
                return Err(err("the echo's group", &"no assignment within 30 s"));
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }

        let producer = request_producer(&settings, "loadtest-kafka-floor-node")
            .map_err(|e| err("the request producer", &e))?;
        let arbiter = Arbiter::new();
        let actor = FloorKafka {
            producer,
            topic: names[0].clone(),
            replies_topic: names[1].clone(),
            reply_partition,
            inline_limit: settings.inline_limit,
            waiting,
            mailbox,
        };
        let addr = FloorKafka::start_in_arbiter(&arbiter.handle(), move |_| actor).recipient();
        Ok(Self {
            addr,
            stop,
            threads: vec![echo, reader],
            arbiter,
            settings,
            topics: names,
        })
    }

    /// Stops the threads and deletes the floor's topics.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.arbiter.stop();
        let threads = self.threads;
        let _ = actix_rt::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Ok(admin) = kafka::admin_client(&self.settings, "loadtest-kafka-floor-cleanup") {
            let refs: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
            let _ =
                actix_rt::time::timeout(BROKER_TIMEOUT, admin.delete_topics(&refs, &opts)).await;
        }
    }
}

async fn create_topics(settings: &KafkaSettings, names: &[String; 2]) -> Result<()> {
    let admin = kafka::admin_client(settings, "loadtest-kafka-floor-admin")
        .map_err(|e| Error::kafka("kafka floor: admin client", e.to_string()))?;
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
    let results = actix_rt::time::timeout(BROKER_TIMEOUT, admin.create_topics(&new, &opts))
        .await
        .map_err(|_| Error::kafka("kafka floor: creating the topics", "timed out"))?
        .map_err(|e| Error::kafka("kafka floor: creating the topics", e.to_string()))?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(Error::kafka(
                    format!("kafka floor: creating {topic}"),
                    code.to_string(),
                ));
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

/// The node's side of the floor: one produce per access.
struct FloorKafka {
    producer: FutureProducer,
    topic: String,
    replies_topic: String,
    reply_partition: i32,
    inline_limit: u64,
    waiting: Waiting,
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

    fn handle(&mut self, req: AccessRequest, ctx: &mut Self::Context) {
        // The same message as portcullis sends: the content inline (read
        // through the fd), no hash.
        let content = match req.content.read_up_to(self.inline_limit) {
            Ok(Loaded::Whole(b)) => b,
            _ => Vec::new(),
        };
        let request = ScanRequest {
            request: req.event_id,
            node_id: NodeId(NODE.into()),
            reply_topic: self.replies_topic.clone(),
            reply_partition: self.reply_partition,
            sha256: [0; 32],
            size: content.len() as u64,
            content,
            trace: TraceContext::root_for(&req.event_id),
            sent_at: Timestamp::now(),
        };
        let Ok(payload) = wire::encode(&request) else {
            let _ = req.responder.answer(req.event_id, Decision::Allow);
            return;
        };
        let key = *req.event_id.as_bytes();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(key, (req.event_id, req.responder));
        }
        let delivery = self.producer.send_result(
            FutureRecord::to(&self.topic)
                .key(key.as_slice())
                .payload(payload.as_slice()),
        );
        // The delivery report is not waited for (the reply is what
        // answers), but a refused message must not leave the access hanging.
        let waiting = Arc::clone(&self.waiting);
        match delivery {
            Ok(d) => {
                ctx.spawn(
                    async move {
                        if !matches!(d.await, Ok(Ok(_))) {
                            if let Some((id, r)) =
                                waiting.lock().ok().and_then(|mut w| w.remove(&key))
                            {
                                let _ = r.answer(id, Decision::Allow);
                            }
                        }
                    }
                    .into_actor(self),
                );
            }
            Err(_) => {
                if let Some((id, r)) = waiting.lock().ok().and_then(|mut w| w.remove(&key)) {
                    let _ = r.answer(id, Decision::Allow);
                }
            }
        }
    }
}
