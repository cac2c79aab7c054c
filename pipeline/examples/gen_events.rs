//! Writes a synthetic journal of N events for the replay benchmark, and
//! optionally publishes it to a Kafka events topic the way the outbox does.
//!
//! ```sh
//! cargo run --release -p portcullis-pipeline --example gen_events -- \
//!     --journal /var/tmp/pc-replay --events 1000000 [--kafka-config cfg.toml]
//! ```
//!
//! The events are realistic stories of four: a file access (with process
//! and container facts), a scan request, a verdict (1 in 50 infected) and
//! a decision, across 200 containers and 5,000 paths, with fixed seeds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use portcullis_actors::journal::{JournalConfig, JournalStore, Record};
use portcullis_pipeline::config::{ConfigFile, Overrides};
use portcullis_pipeline::kafka::{ensure_topics, idempotent_producer, Topic};
use portcullis_schemas::{
    AccessKind, ContainerRef, ContainerRuntime, Decision, DecisionMade, DecisionReason, EventBody,
    EventId, FileAccessed, FileInfo, FilePath, Mode, NodeId, ProcessInfo, RuleMatch,
    RulesetVersion, ScanRequested, Verdict, VerdictIssued,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer as _};

#[derive(Debug, Parser)]
struct Args {
    /// The journal directory to create (must not exist).
    #[arg(long)]
    journal: PathBuf,
    /// Events to write (rounded up to a multiple of 4).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value = "bench-node")]
    node: String,
    /// Also publish every event to the events topic of this config's
    /// `[kafka]` section.
    #[arg(long)]
    kafka_config: Option<PathBuf>,
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn story(rng: &mut Rng) -> Vec<EventBody> {
    let access = EventId::new();
    let c = rng.next() % 200;
    let p = rng.next() % 5000;
    let pid = 1000 + (rng.next() % 30_000) as u32;
    let path = FilePath::from_bytes(format!(
        "/var/lib/containerd/rootfs/{c}/usr/lib/file-{p}.so"
    ));
    let infected = rng.next().is_multiple_of(50);
    let sha = {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&rng.next().to_be_bytes());
        h
    };
    vec![
        EventBody::FileAccessed(FileAccessed {
            kind: if p.is_multiple_of(10) {
                AccessKind::Exec
            } else {
                AccessKind::Open
            },
            file: FileInfo {
                path: path.clone(),
                device: 42,
                inode: p,
                size: 4096 + p,
                mtime_ns: 1_700_000_000_000_000_000,
                ctime_ns: 1_700_000_000_000_000_000,
            },
            process: ProcessInfo {
                pid,
                ppid: pid - 1,
                uid: 1000,
                gid: 1000,
                executable: Some(FilePath::from_bytes(&b"/usr/bin/python3"[..])),
                command: Some("python3".into()),
            },
            container: Some(ContainerRef::new(
                ContainerRuntime::Containerd,
                format!("{c:064x}"),
            )),
            interceptor_mode: Mode::Enforce,
            policy: None,
            blocking: true,
        }),
        EventBody::ScanRequested(ScanRequested {
            access,
            size: 4096 + p,
            ruleset: RulesetVersion("bench".into()),
        }),
        EventBody::VerdictIssued(VerdictIssued {
            access,
            path,
            verdict: if infected {
                Verdict::Infected {
                    matches: vec![RuleMatch {
                        rule: "eicar_test_file".into(),
                        namespace: "eicar".into(),
                        tags: vec!["test".into()],
                        metadata: vec![],
                    }],
                }
            } else {
                Verdict::Clean
            },
            sha256: Some(sha),
            size: 4096 + p,
            ruleset: RulesetVersion("bench".into()),
            scan_duration_us: 5,
        }),
        EventBody::DecisionMade(DecisionMade {
            access,
            decision: if infected {
                Decision::Deny
            } else {
                Decision::Allow
            },
            reason: DecisionReason::Verdict,
            latency_us: 60,
        }),
    ]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.journal.exists(),
        "{} exists; give a new directory",
        args.journal.display()
    );
    let mut store = JournalStore::open(&JournalConfig::new(
        &args.journal,
        NodeId(args.node.clone()),
    ))?;
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let t = Instant::now();
    let mut written = 0u64;
    while written < args.events {
        let mut batch = Vec::with_capacity(4096);
        while batch.len() < 4096 && written + (batch.len() as u64) < args.events {
            let bodies = story(&mut rng);
            let access = bodies[1].access_id().context("a story has an access")?;
            let mut first = Record::new(bodies[0].clone());
            first.event_id = access;
            first.trace = portcullis_schemas::TraceContext::root_for(&access);
            batch.push(first);
            batch.extend(bodies[1..].iter().cloned().map(Record::new));
        }
        written += batch.len() as u64;
        store.append_batch(batch)?;
    }
    eprintln!(
        "wrote {written} events to {} in {:.1?}",
        args.journal.display(),
        t.elapsed()
    );

    if let Some(cfg) = &args.kafka_config {
        let origin = cfg.display().to_string();
        let settings = ConfigFile::load(cfg)?.build(&origin, Overrides::default())?;
        let kafka = settings
            .kafka
            .context("--kafka-config needs a [kafka] section")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(ensure_topics(&kafka))?;
        let producer = idempotent_producer(&kafka, "gen-events")?;
        let topic = kafka.topics.name(Topic::Events);
        let t = Instant::now();
        let reader = store.reader();
        let mut next = 1;
        let mut sent = 0u64;
        loop {
            let batch = reader.raw_from(next, 10_000)?;
            if batch.is_empty() {
                break;
            }
            let mut pending = Vec::with_capacity(batch.len());
            for (seq, bytes) in &batch {
                let env = portcullis_schemas::codec::decode(bytes)?;
                let headers = OwnedHeaders::new().insert(Header {
                    key: "portcullis.seq",
                    value: Some(seq.to_string().as_bytes()),
                });
                pending.push(
                    producer.send(
                        FutureRecord::to(&topic)
                            .key(args.node.as_bytes())
                            .payload(bytes)
                            .timestamp(env.timestamp.0 / 1_000_000)
                            .headers(headers),
                        Duration::from_secs(30),
                    ),
                );
                next = seq + 1;
            }
            // `send` is lazy: join_all puts the whole batch in flight
            // (awaiting one by one made a broker round trip per event).
            for r in rt.block_on(futures::future::join_all(pending)) {
                r.map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
                sent += 1;
            }
        }
        producer.flush(Duration::from_secs(30))?;
        eprintln!("published {sent} events to {topic} in {:.1?}", t.elapsed());
    }
    Ok(())
}
