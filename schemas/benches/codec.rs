//! The per-event hot path of the journal and the SIEM outbox: binary
//! encode/decode of an envelope, and its ECS, OCSF and CEF lines.
//!
//! ```sh
//! cargo bench -p portcullis-schemas --bench codec
//! cargo bench -p portcullis-schemas --bench codec -- 'ecs|ocsf|cef'
//! ```
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use portcullis_schemas::{cef, codec, ecs, ocsf, *};
use uuid::Uuid;

/// 2025-11-28T20:33:04.123456789Z
const T0: i64 = 1_764_361_984_123_456_789;

fn envelope(n: u16, body: EventBody) -> Envelope {
    let event_id = EventId(Uuid::from_u128(
        0x019a_cc2b_587b_7c3d_8a1b_2c3d_4e5f_6000 | u128::from(n),
    ));
    Envelope {
        schema: SCHEMA_VERSION,
        event_id,
        node_id: NodeId("node-a.example.internal".to_owned()),
        seq: 1_000_000 + u64::from(n),
        timestamp: Timestamp(T0),
        trace: TraceContext::root_for(&event_id),
        body,
    }
}

/// A typical open of a file in a container, by a process waiting on us.
fn file_accessed() -> Envelope {
    envelope(
        1,
        EventBody::FileAccessed(FileAccessed {
            kind: AccessKind::Open,
            file: FileInfo {
                path: FilePath::from_bytes(
                    &b"/var/lib/containerd/rootfs/srv/upload/invoice-2025-11.pdf"[..],
                ),
                device: 2049,
                inode: 1_310_722,
                size: 184_320,
                mtime_ns: T0 - 5_000_000_000,
                ctime_ns: T0 - 4_000_000_000,
            },
            process: ProcessInfo {
                pid: 31337,
                ppid: 1000,
                uid: 1001,
                gid: 1001,
                executable: Some(FilePath::from_bytes(&b"/usr/bin/python3.12"[..])),
                command: Some("python3".to_owned()),
            },
            container: Some(ContainerRef::new(
                ContainerRuntime::Containerd,
                "3f4e9a1c2b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f".to_owned(),
            )),
            interceptor_mode: Mode::Enforce,
            policy: Some(PolicyRef {
                name: "uploads".to_owned(),
                mode: Mode::Enforce,
            }),
            blocking: true,
        }),
    )
}

/// An infected verdict with one fully described match.
fn verdict_infected() -> Envelope {
    let access = EventId(Uuid::from_u128(0x019a_cc2b_587b_7c3d_8a1b_2c3d_4e5f_6001));
    envelope(
        2,
        EventBody::VerdictIssued(VerdictIssued {
            access,
            path: FilePath::from_bytes(
                &b"/var/lib/containerd/rootfs/srv/upload/invoice-2025-11.pdf"[..],
            ),
            verdict: Verdict::Infected {
                matches: vec![RuleMatch {
                    rule: "EICAR_Test_File".to_owned(),
                    namespace: "default".to_owned(),
                    tags: vec!["test".to_owned(), "eicar".to_owned()],
                    metadata: vec![
                        (
                            "description".to_owned(),
                            MetaValue::Str("EICAR anti-malware test file".to_owned()),
                        ),
                        ("author".to_owned(), MetaValue::Str("portcullis".to_owned())),
                        ("severity".to_owned(), MetaValue::Int(5)),
                        ("score".to_owned(), MetaValue::Float(7.25)),
                    ],
                }],
            },
            sha256: Some([0x27; 32]),
            size: 184_320,
            ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
            scan_duration_us: 431,
        }),
    )
}

fn bench_codec(c: &mut Criterion) {
    for (name, env) in [
        ("file_accessed", file_accessed()),
        ("verdict_infected", verdict_infected()),
    ] {
        let bytes = codec::encode(&env).unwrap();
        assert_eq!(
            codec::decode(&bytes).unwrap(),
            env,
            "{name} does not round-trip"
        );

        let mut group = c.benchmark_group(format!("codec/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("encode", |b| {
            b.iter(|| codec::encode(black_box(&env)).unwrap())
        });
        // The journal's path: one reused buffer.
        group.bench_function("encode_into", |b| {
            let mut buf = Vec::with_capacity(512);
            b.iter(|| {
                buf.clear();
                codec::encode_into(black_box(&env), &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| codec::decode(black_box(&bytes)).unwrap())
        });
        // Baseline in the same run: serde's derived JSON of the same value.
        group.bench_function("baseline_serde_json", |b| {
            b.iter(|| serde_json::to_vec(black_box(&env)).unwrap())
        });
        group.finish();

        let mut group = c.benchmark_group(format!("ecs/{name}"));
        group.bench_function("to_ecs_line", |b| {
            b.iter(|| ecs::to_ecs_line(black_box(&env)))
        });
        // The SIEM outbox's path: one reused buffer, with a source position.
        let source = SourcePosition::Journal { seq: env.seq };
        group.bench_function("write_ecs_line", |b| {
            let mut buf = Vec::with_capacity(2048);
            b.iter(|| {
                buf.clear();
                ecs::write_ecs_line(black_box(&env), Some(&source), &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        // Including the decode, as the SIEM forwarder does it.
        group.bench_function("decode_to_ecs_line", |b| {
            b.iter(|| ecs::to_ecs_line(&codec::decode(black_box(&bytes)).unwrap()))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("ocsf/{name}"));
        group.bench_function("write_ocsf_line", |b| {
            let mut buf = Vec::with_capacity(2048);
            b.iter(|| {
                buf.clear();
                ocsf::write_ocsf_line(black_box(&env), Some(&source), &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.finish();

        let header = cef::CefHeader::default();
        let mut group = c.benchmark_group(format!("cef/{name}"));
        group.bench_function("write_cef", |b| {
            let mut buf = Vec::with_capacity(1024);
            b.iter(|| {
                buf.clear();
                cef::write_cef(black_box(&env), Some(&source), &header, &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
