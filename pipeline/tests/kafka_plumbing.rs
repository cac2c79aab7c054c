//! The Kafka plumbing against a real broker (`KAFKA_BOOTSTRAP`; start one
//! with `scripts/kafka start`). Without it every test prints a loud
//! SKIPPED line and passes. Each test works under its own random topic
//! prefix and consumer groups; every wait is bounded.

#![allow(clippy::unwrap_used)]

mod common;

use common::kafka_bootstrap as bootstrap;
use std::collections::BTreeSet;
use std::time::Duration;

use portcullis_pipeline::kafka::dlq::header;
use portcullis_pipeline::kafka::topics::{topic_config, DLQ_RETENTION, SCAN_REQUEST_RETENTION};
use portcullis_pipeline::kafka::txn::{self, TxnError};
use portcullis_pipeline::kafka::{
    admin_client, assigned_consumer, base_config, dlq_headers, ensure_topics, ensure_topics_within,
    group_consumer, idempotent_producer, reply_consumer, transactional_producer, DeadLetters,
    DlqStage, KafkaSection, KafkaSettings, KafkaSetupError, Topic, TopicPartitions,
};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// The bound of every single wait.
const WAIT: Duration = Duration::from_secs(30);

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

/// Settings under a fresh prefix, with small partition counts.
fn settings(bootstrap: &str) -> KafkaSettings {
    KafkaSection {
        bootstrap: Some(bootstrap.to_string()),
        topic_prefix: unique("t"),
        partitions: TopicPartitions {
            scan_requests: 3,
            verdicts: 4,
            verdict_cache: 2,
            events: 2,
        },
        scanner_group: Some(unique("scanners")),
        ..KafkaSection::default()
    }
    .build()
    .unwrap()
}

async fn recv<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    what: &str,
) -> OwnedMessage {
    match tokio::time::timeout(WAIT, consumer.recv()).await {
        Ok(Ok(m)) => m.detach(),
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// The next message of a polled reader (the node's reply reader), within
/// `within`; `None` if none comes.
fn poll_within(
    consumer: &portcullis_pipeline::kafka::AssignedConsumer,
    within: Duration,
) -> Option<OwnedMessage> {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => return Some(m.detach()),
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    None
}

/// The next message, or `None` if none comes within `quiet`.
async fn recv_none<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    quiet: Duration,
) -> Option<OwnedMessage> {
    match tokio::time::timeout(quiet, consumer.recv()).await {
        Ok(Ok(m)) => Some(m.detach()),
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => None,
    }
}

async fn produce(p: &FutureProducer, topic: &str, partition: i32, key: &str, payload: &str) -> i64 {
    let record = FutureRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(payload);
    match tokio::time::timeout(WAIT, p.send(record, WAIT)).await {
        Ok(Ok(delivery)) => delivery.offset,
        Ok(Err((e, _))) => panic!("producing to {topic}: {e}"),
        Err(_) => panic!("producing to {topic}: no delivery within {WAIT:?}"),
    }
}

fn payload(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

/// Partition counts by topic name (metadata of the whole cluster).
async fn partition_counts(s: &KafkaSettings) -> std::collections::BTreeMap<String, usize> {
    let admin = admin_client(s, "test-metadata").unwrap();
    // Only this test's topics: the other tests create theirs meanwhile.
    let prefix = format!("{}.", s.topics.prefix());
    tokio::task::spawn_blocking(move || {
        let md = admin.inner().fetch_metadata(None, WAIT).unwrap();
        md.topics()
            .iter()
            .filter(|t| t.name().starts_with(&prefix))
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    })
    .await
    .unwrap()
}

/// The group's committed offset of one partition.
fn committed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let c = consumer.committed_offsets(tpl, WAIT).unwrap();
    c.find_partition(topic, partition).unwrap().offset()
}

/// Named `kafka::*` so that `cargo test kafka` runs them.
mod kafka {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ensure_topics_creates_every_topic_and_is_idempotent() {
        let Some(b) = bootstrap("ensure_topics_creates_every_topic_and_is_idempotent") else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();

        let counts = partition_counts(&s).await;
        for (t, name) in s.topics.all() {
            assert_eq!(
                counts.get(&name).copied(),
                Some(usize::try_from(s.partitions.of(t)).unwrap()),
                "{name}"
            );
            assert_eq!(counts.get(&s.topics.dlq(t)).copied(), Some(1), "{name}.dlq");
        }

        let admin = admin_client(&s, "test-describe").unwrap();
        let cfg = |t: String, key: &'static str| {
            let admin = &admin;
            async move { topic_config(admin, &t, key, WAIT).await.unwrap() }
        };
        assert_eq!(
            cfg(s.topics.name(Topic::VerdictCache), "cleanup.policy")
                .await
                .as_deref(),
            Some("compact")
        );
        assert_eq!(
            cfg(s.topics.name(Topic::Verdicts), "cleanup.policy")
                .await
                .as_deref(),
            Some("delete")
        );
        assert_eq!(
            cfg(s.topics.name(Topic::Events), "retention.ms").await,
            Some((7u128 * 24 * 3600 * 1000).to_string())
        );
        assert_eq!(
            cfg(s.topics.name(Topic::ScanRequests), "retention.ms").await,
            Some(SCAN_REQUEST_RETENTION.as_millis().to_string())
        );
        assert_eq!(
            cfg(s.topics.name(Topic::ScanRequests), "max.message.bytes").await,
            Some(s.max_message_bytes().to_string())
        );
        assert_eq!(
            cfg(s.topics.dlq(Topic::ScanRequests), "max.message.bytes").await,
            Some(s.max_message_bytes().to_string())
        );
        assert_eq!(
            cfg(s.topics.dlq(Topic::Events), "retention.ms").await,
            Some(DLQ_RETENTION.as_millis().to_string())
        );

        // Again: nothing to do, no error, nothing changed.
        ensure_topics(&s).await.unwrap();
        assert_eq!(partition_counts(&s).await, counts);

        // More verdict partitions than exist: replies would go nowhere.
        let mut more = s.clone();
        more.partitions.verdicts = 8;
        match ensure_topics(&more).await {
            Err(KafkaSetupError::TopicMismatch { topic, .. }) => {
                assert_eq!(topic, s.topics.name(Topic::Verdicts))
            }
            other => panic!("expected a partition mismatch, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verdict_cache_that_is_not_compacted_is_refused() {
        let Some(b) = bootstrap("a_verdict_cache_that_is_not_compacted_is_refused") else {
            return;
        };
        let s = settings(&b);
        let cache = s.topics.name(Topic::VerdictCache);
        let admin = admin_client(&s, "test-precreate").unwrap();
        let topic =
            NewTopic::new(&cache, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "delete");
        let r = admin
            .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(WAIT)))
            .await
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        match ensure_topics_within(&s, WAIT).await {
            Err(KafkaSetupError::TopicMismatch {
                topic,
                setting,
                found,
                ..
            }) => {
                assert_eq!(
                    (topic.as_str(), setting.as_str()),
                    (cache.as_str(), "cleanup.policy")
                );
                assert_eq!(found, "delete");
            }
            other => panic!("expected a cleanup.policy mismatch, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consume_transform_produce_commits_the_offsets_in_the_transaction() {
        let Some(b) = bootstrap("consume_transform_produce_commits_the_offsets_in_the_transaction")
        else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();
        let requests = s.topics.name(Topic::ScanRequests);
        let verdicts = s.topics.name(Topic::Verdicts);

        let input = idempotent_producer(&s, "test-node").unwrap();
        let first = produce(&input, &requests, 1, "sha-1", "request-1").await;

        let consumer = group_consumer(&s, "test-scanner", &s.scanner_group).unwrap();
        consumer.subscribe(&[&requests]).unwrap();
        let msg = recv(&consumer, "the scan request").await;
        assert_eq!(
            (payload(&msg), msg.partition(), msg.offset()),
            ("request-1".into(), 1, first)
        );
        assert_eq!(committed(&consumer, &requests, 1), Offset::Invalid);

        let txid = unique("scanner-txn");
        let producer = transactional_producer(&s, "test-scanner", &txid).unwrap();
        txn::init_transactions(&producer, &txid, WAIT)
            .await
            .unwrap();
        txn::begin(&producer).unwrap();
        produce(&producer, &verdicts, 2, "sha-1", "verdict-for-request-1").await;
        let offsets = txn::next_offsets(&[&msg]).unwrap();
        txn::commit_with_offsets(&producer, offsets, consumer.group_metadata().unwrap(), WAIT)
            .await
            .unwrap();

        // The reply is visible to a read_committed reader of its partition...
        let replies =
            assigned_consumer(&s, "test-node-replies", &verdicts, &[2], Offset::Beginning).unwrap();
        let reply = recv(&replies, "the committed reply").await;
        assert_eq!(payload(&reply), "verdict-for-request-1");
        assert_eq!(reply.key(), Some(&b"sha-1"[..]));

        // ...and the group's offset moved past the request, in the same commit.
        assert_eq!(
            committed(&consumer, &requests, 1),
            Offset::Offset(first + 1)
        );

        // A new member of the group starts after it.
        drop(consumer);
        produce(&input, &requests, 1, "sha-2", "request-2").await;
        let again = group_consumer(&s, "test-scanner-2", &s.scanner_group).unwrap();
        again.subscribe(&[&requests]).unwrap();
        let next = recv(&again, "the request after the committed one").await;
        assert_eq!(payload(&next), "request-2");
        assert_eq!(next.offset(), first + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_transaction_is_invisible_to_read_committed_readers() {
        let Some(b) = bootstrap("an_aborted_transaction_is_invisible_to_read_committed_readers")
        else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();
        let requests = s.topics.name(Topic::ScanRequests);
        let verdicts = s.topics.name(Topic::Verdicts);

        let input = idempotent_producer(&s, "test-node").unwrap();
        let offset = produce(&input, &requests, 0, "sha-1", "request-1").await;
        let consumer = group_consumer(&s, "test-scanner", &s.scanner_group).unwrap();
        consumer.subscribe(&[&requests]).unwrap();
        let msg = recv(&consumer, "the scan request").await;
        assert_eq!(msg.offset(), offset);

        let txid = unique("scanner-txn");
        let producer = transactional_producer(&s, "test-scanner", &txid).unwrap();
        txn::init_transactions(&producer, &txid, WAIT)
            .await
            .unwrap();
        txn::begin(&producer).unwrap();
        produce(&producer, &verdicts, 0, "sha-1", "aborted-verdict").await;
        txn::abort(&producer, WAIT).await.unwrap();

        // After the abort, the request is read again from the committed offset
        // (none yet: the start).
        txn::rewind_to_committed(&consumer, "test-scanner", WAIT).unwrap();
        let again = recv(&consumer, "the request after the rewind").await;
        assert_eq!(
            (again.offset(), payload(&again)),
            (offset, "request-1".into())
        );

        txn::begin(&producer).unwrap();
        produce(&producer, &verdicts, 0, "sha-1", "committed-verdict").await;
        txn::commit_with_offsets(
            &producer,
            txn::next_offsets(&[&again]).unwrap(),
            consumer.group_metadata().unwrap(),
            WAIT,
        )
        .await
        .unwrap();

        // read_committed: only the committed verdict.
        let committed_reader =
            assigned_consumer(&s, "test-reader", &verdicts, &[0], Offset::Beginning).unwrap();
        let first = recv(&committed_reader, "the committed verdict").await;
        assert_eq!(payload(&first), "committed-verdict");
        if let Some(m) = recv_none(&committed_reader, Duration::from_secs(2)).await {
            panic!("read_committed saw {:?} at {}", payload(&m), m.offset());
        }

        // read_uncommitted sees the aborted one: it was written, then aborted.
        let mut c = base_config(&s, "test-uncommitted");
        c.set("group.id", unique("uncommitted"))
            .set("isolation.level", "read_uncommitted")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        let uncommitted: StreamConsumer = c.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&verdicts, 0, Offset::Beginning)
            .unwrap();
        uncommitted.assign(&tpl).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(payload(
                &recv(&uncommitted, "every verdict, uncommitted").await,
            ));
        }
        assert_eq!(seen, ["aborted-verdict", "committed-verdict"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_of_a_fenced_producer_is_refused() {
        let Some(b) = bootstrap("a_transaction_of_a_fenced_producer_is_refused") else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();
        let requests = s.topics.name(Topic::ScanRequests);
        let verdicts = s.topics.name(Topic::Verdicts);
        let input = idempotent_producer(&s, "test-node").unwrap();
        produce(&input, &requests, 0, "sha-1", "request-1").await;
        let consumer = group_consumer(&s, "test-scanner", &s.scanner_group).unwrap();
        consumer.subscribe(&[&requests]).unwrap();
        let msg = recv(&consumer, "the scan request").await;

        let txid = unique("scanner-txn");
        let old = transactional_producer(&s, "test-old", &txid).unwrap();
        txn::init_transactions(&old, &txid, WAIT).await.unwrap();
        txn::begin(&old).unwrap();
        produce(&old, &verdicts, 0, "sha-1", "zombie-verdict").await;
        // A new instance with the same transactional.id fences the old one and
        // aborts what it left open.
        let new = transactional_producer(&s, "test-new", &txid).unwrap();
        txn::init_transactions(&new, &txid, WAIT).await.unwrap();
        let r = txn::commit_with_offsets(
            &old,
            txn::next_offsets(&[&msg]).unwrap(),
            consumer.group_metadata().unwrap(),
            WAIT,
        )
        .await;
        assert!(matches!(r, Err(TxnError::Fatal { .. })), "{r:?}");
        assert_eq!(committed(&consumer, &requests, 0), Offset::Invalid);
        let reader =
            assigned_consumer(&s, "test-reader", &verdicts, &[0], Offset::Beginning).unwrap();
        if let Some(m) = recv_none(&reader, Duration::from_secs(3)).await {
            panic!("read_committed saw {:?} of a fenced producer", payload(&m));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_letters_keep_the_message_and_say_where_it_came_from() {
        let Some(b) = bootstrap("dead_letters_keep_the_message_and_say_where_it_came_from") else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();
        let requests = s.topics.name(Topic::ScanRequests);
        let producer = idempotent_producer(&s, "test-node").unwrap();
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        });
        let record = FutureRecord::to(&requests)
            .partition(2)
            .key("sha-x")
            .payload(&b"\x00\x01not a scan request"[..])
            .headers(headers);
        let (partition, offset) = tokio::time::timeout(WAIT, producer.send(record, WAIT))
            .await
            .unwrap()
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
            .unwrap();

        let consumer =
            assigned_consumer(&s, "test-scanner", &requests, &[2], Offset::Beginning).unwrap();
        let msg = recv(&consumer, "the undecodable request").await;
        let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let dlq =
            DeadLetters::new(producer.clone(), s.topics.clone(), "scanner-test").with_timeout(WAIT);
        dlq.send(
            Topic::ScanRequests,
            &msg,
            DlqStage::Decode,
            "ScanRequest: magic [00, 01] at offset 0",
        )
        .await
        .unwrap();

        let reader = assigned_consumer(
            &s,
            "test-dlq-reader",
            &s.topics.dlq(Topic::ScanRequests),
            &[0],
            Offset::Beginning,
        )
        .unwrap();
        let letter = recv(&reader, "the dead letter").await;
        assert_eq!(letter.key(), Some(&b"sha-x"[..]));
        assert_eq!(letter.payload(), Some(&b"\x00\x01not a scan request"[..]));
        let h = dlq_headers(&letter);
        assert_eq!(h[header::TOPIC], requests);
        assert_eq!(h[header::PARTITION], partition.to_string());
        assert_eq!(h[header::OFFSET], offset.to_string());
        assert_eq!(h[header::ERROR], "ScanRequest: magic [00, 01] at offset 0");
        assert_eq!(h[header::STAGE], "decode");
        assert_eq!(h[header::SERVICE], "scanner-test");
        let at = time::OffsetDateTime::parse(
            &h[header::TIMESTAMP],
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(
            at >= before && at <= time::OffsetDateTime::now_utc(),
            "{at}"
        );
        assert_eq!(
            h["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(h.len(), 8, "{h:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reply_reader_reads_only_its_partition_and_uncommitted() {
        let Some(b) = bootstrap("the_reply_reader_reads_only_its_partition_and_uncommitted") else {
            return;
        };
        let s = settings(&b);
        ensure_topics(&s).await.unwrap();
        let verdicts = s.topics.name(Topic::Verdicts);
        let producer = idempotent_producer(&s, "test-scanner").unwrap();
        for round in 0..3 {
            for p in 0..s.partitions.verdicts {
                produce(&producer, &verdicts, p, "k", &format!("p{p}-{round}")).await;
            }
        }
        // A transaction left open on partition 2: a read_committed reader
        // would wait for its end; the reply reader does not.
        let txp = transactional_producer(&s, "test-open-txn", &unique("open-txn")).unwrap();
        txn::init_transactions(&txp, "test-open-txn", WAIT)
            .await
            .unwrap();
        txn::begin(&txp).unwrap();
        produce(&txp, &verdicts, 2, "k", "p2-open").await;

        let mine =
            reply_consumer(&s, "test-node", &verdicts, &[2], Offset::Beginning, false).unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            let m = poll_within(&mine, WAIT).expect("a reply on partition 2");
            assert_eq!(m.partition(), 2);
            got.push(payload(&m));
        }
        assert_eq!(got, ["p2-0", "p2-1", "p2-2", "p2-open"]);
        if let Some(m) = poll_within(&mine, Duration::from_secs(3)) {
            panic!("read {:?} from partition {}", payload(&m), m.partition());
        }
        txn::abort(&txp, WAIT).await.unwrap();

        // From a given offset, and from two partitions.
        let from = reply_consumer(
            &s,
            "test-node-2",
            &verdicts,
            &[1, 3],
            Offset::Offset(2),
            false,
        )
        .unwrap();
        let mut got = BTreeSet::new();
        for _ in 0..2 {
            got.insert(payload(
                &poll_within(&from, WAIT).expect("replies from offset 2"),
            ));
        }
        assert_eq!(
            got,
            BTreeSet::from(["p1-2".to_string(), "p3-2".to_string()])
        );
        assert!(poll_within(&from, Duration::from_secs(2)).is_none());
    }
}
