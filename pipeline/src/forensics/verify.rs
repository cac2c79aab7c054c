//! `replay --verify`: is a node's event log whole?
//!
//! Per node: the seq range seen, gaps inside it (seqs are contiguous from 1
//! per node, so a gap is a lost record), duplicates (the same seq twice:
//! Kafka's at-least-once outbox after a retry, or two journals mixed up),
//! the same event id under two seqs, and records that do not decode (with
//! their positions). A range that does not start at 1 is reported, not
//! counted as a gap: a time window, or Kafka retention, cuts the start.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use portcullis_schemas::{Envelope, EventId, SourcePosition};
use serde::Serialize;

/// At most this many gaps and positions are listed per node (all are
/// counted).
const LIST: usize = 20;

#[derive(Debug, Default)]
struct NodeLog {
    seqs: Vec<u64>,
    ids: HashSet<EventId>,
    duplicate_ids: u64,
    undecodable: Vec<(SourcePosition, String)>,
    undecodable_count: u64,
}

/// Collects what `--verify` reports.
#[derive(Debug, Default)]
pub struct Verifier {
    nodes: BTreeMap<String, NodeLog>,
}

/// A range of missing seqs, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// One node's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub missing: u64,
    pub gaps: Vec<Gap>,
    pub duplicate_seqs: u64,
    pub duplicate_event_ids: u64,
    pub undecodable: u64,
    pub undecodable_at: Vec<String>,
}

impl NodeReport {
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicate_seqs == 0
            && self.duplicate_event_ids == 0
            && self.undecodable == 0
    }
}

/// Every node's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub nodes: Vec<NodeReport>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.nodes.iter().all(NodeReport::is_clean)
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.nodes.is_empty() {
            s.push_str("verify: no records\n");
        }
        for n in &self.nodes {
            let range = match (n.first_seq, n.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no decodable records".into(),
            };
            let _ = writeln!(
                s,
                "node {}: {} records, {range}: {}",
                n.node,
                n.records,
                if n.is_clean() { "OK" } else { "PROBLEMS" }
            );
            if n.first_seq.is_some_and(|f| f > 1) {
                let _ = writeln!(
                    s,
                    "  starts at seq {} (earlier records are outside the window or expired)",
                    n.first_seq.unwrap_or_default()
                );
            }
            if n.missing > 0 {
                let _ = writeln!(
                    s,
                    "  missing: {} records in {} gaps",
                    n.missing,
                    n.gaps.len()
                );
                for g in n.gaps.iter().take(LIST) {
                    if g.from == g.to {
                        let _ = writeln!(s, "    gap: seq {}", g.from);
                    } else {
                        let _ = writeln!(s, "    gap: seq {}..={}", g.from, g.to);
                    }
                }
            }
            if n.duplicate_seqs > 0 {
                let _ = writeln!(s, "  duplicate seqs: {}", n.duplicate_seqs);
            }
            if n.duplicate_event_ids > 0 {
                let _ = writeln!(s, "  duplicate event ids: {}", n.duplicate_event_ids);
            }
            if n.undecodable > 0 {
                let _ = writeln!(s, "  undecodable records: {}", n.undecodable);
                for at in &n.undecodable_at {
                    let _ = writeln!(s, "    {at}");
                }
            }
        }
        s
    }
}

impl Verifier {
    /// Counts a decoded record.
    pub fn record(&mut self, env: &Envelope) {
        let log = self.nodes.entry(env.node_id.0.clone()).or_default();
        log.seqs.push(env.seq);
        if !log.ids.insert(env.event_id) {
            log.duplicate_ids += 1;
        }
    }

    /// Counts a record that did not decode.
    pub fn undecodable(&mut self, node: Option<&str>, pos: &SourcePosition, error: &str) {
        let log = self
            .nodes
            .entry(node.unwrap_or("<unknown node>").to_string())
            .or_default();
        log.undecodable_count += 1;
        if log.undecodable.len() < LIST {
            log.undecodable.push((pos.clone(), error.to_string()));
        }
    }

    pub fn finish(self) -> VerifyReport {
        let nodes = self
            .nodes
            .into_iter()
            .map(|(node, mut log)| {
                log.seqs.sort_unstable();
                let mut gaps = Vec::new();
                let mut missing = 0u64;
                let mut dups = 0u64;
                for w in log.seqs.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    if a == b {
                        dups += 1;
                    } else if b > a + 1 {
                        missing += b - a - 1;
                        gaps.push(Gap {
                            from: a + 1,
                            to: b - 1,
                        });
                    }
                }
                // A seq seen twice is one duplicate, not also a duplicate id.
                let duplicate_event_ids = log.duplicate_ids.saturating_sub(dups);
                NodeReport {
                    node,
                    records: log.seqs.len() as u64,
                    first_seq: log.seqs.first().copied(),
                    last_seq: log.seqs.last().copied(),
                    missing,
                    gaps: gaps.into_iter().take(LIST).collect(),
                    duplicate_seqs: dups,
                    duplicate_event_ids,
                    undecodable: log.undecodable_count,
                    undecodable_at: log
                        .undecodable
                        .into_iter()
                        .map(|(p, e)| format!("{p}: {e}"))
                        .collect(),
                }
            })
            .collect();
        VerifyReport { nodes }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_schemas::{
        EventBody, NodeId, OverflowSource, QueueOverflowed, Timestamp, TraceContext,
    };

    use super::*;

    fn env(node: &str, seq: u64) -> Envelope {
        let id = EventId::new();
        Envelope {
            schema: portcullis_schemas::SCHEMA_VERSION,
            event_id: id,
            node_id: NodeId(node.into()),
            seq,
            timestamp: Timestamp(0),
            trace: TraceContext::root_for(&id),
            body: EventBody::QueueOverflowed(QueueOverflowed {
                source: OverflowSource::Kernel,
                count: 1,
            }),
        }
    }

    #[test]
    fn reports_gaps_duplicates_and_undecodable_per_node() {
        let mut v = Verifier::default();
        for s in [1, 2, 3, 5, 6, 9] {
            v.record(&env("a", s));
        }
        let again = env("a", 6);
        v.record(&again);
        v.record(&again); // the same event delivered twice
        for s in 4..=6 {
            v.record(&env("b", s));
        }
        v.undecodable(
            Some("b"),
            &SourcePosition::Kafka {
                topic: "t".into(),
                partition: 2,
                offset: 41,
            },
            "bad magic",
        );
        let r = v.finish();
        assert!(!r.is_clean());
        let a = &r.nodes[0];
        assert_eq!(a.node, "a");
        assert_eq!(a.missing, 3);
        assert_eq!(a.gaps, vec![Gap { from: 4, to: 4 }, Gap { from: 7, to: 8 }]);
        assert_eq!(a.duplicate_seqs, 2);
        assert_eq!(a.duplicate_event_ids, 0);
        let b = &r.nodes[1];
        assert_eq!((b.first_seq, b.last_seq, b.missing), (Some(4), Some(6), 0));
        assert_eq!(b.undecodable, 1);
        let text = r.render();
        assert!(text.contains("gap: seq 7..=8"), "{text}");
        assert!(text.contains("starts at seq 4"), "{text}");
        assert!(text.contains("bad magic"), "{text}");
    }

    #[test]
    fn a_whole_log_is_clean() {
        let mut v = Verifier::default();
        for s in 1..=100 {
            v.record(&env("a", s));
        }
        let r = v.finish();
        assert!(r.is_clean());
        assert!(r.render().contains("100 records, seq 1..=100: OK"));
    }
}
