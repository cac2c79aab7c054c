//! Model test of the journal store: random operations against a `Vec`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use portcullis_actors::journal::{JournalConfig, JournalStore, Record};
use portcullis_schemas::{
    AgentStopped, Envelope, EventBody, EventId, NodeId, OverflowSource, QueueOverflowed,
    SCHEMA_VERSION,
};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<EventBody>),
    Reopen,
    GetBySeq(u64),
    GetById(Index),
    GetUnknownId,
    IterFrom(u64),
}

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (0u8..3, any::<u64>()).prop_map(|(s, count)| {
            let source = match s {
                0 => OverflowSource::Kernel,
                1 => OverflowSource::Mailbox,
                _ => OverflowSource::PendingSet,
            };
            EventBody::QueueOverflowed(QueueOverflowed { source, count })
        }),
        (any::<u64>(), proptest::option::of(".{0,300}")).prop_map(|(answered_pending, signal)| {
            EventBody::AgentStopped(AgentStopped {
                answered_pending,
                signal,
            })
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(body(), 0..40).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        2 => any::<u64>().prop_map(Op::GetBySeq),
        2 => any::<Index>().prop_map(Op::GetById),
        1 => Just(Op::GetUnknownId),
        2 => any::<u64>().prop_map(Op::IterFrom),
    ]
}

fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir, NodeId("model-node".into()))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let mut store = Some(JournalStore::open(&cfg).unwrap());
    let mut model: Vec<Envelope> = Vec::new();

    for op in ops {
        let s = store.as_mut().unwrap();
        match op {
            Op::Append(bodies) => {
                let records: Vec<Record> = bodies.into_iter().map(Record::new).collect();
                let expected: Vec<(EventId, EventBody)> = records
                    .iter()
                    .map(|r| (r.event_id, r.body.clone()))
                    .collect();
                let stored = s.append_batch(records).unwrap();
                prop_assert_eq!(stored.len(), expected.len());
                for (i, (env, (id, body))) in stored.iter().zip(expected).enumerate() {
                    prop_assert_eq!(env.seq, model.len() as u64 + 1 + i as u64);
                    prop_assert_eq!(env.event_id, id);
                    prop_assert_eq!(&env.body, &body);
                    prop_assert_eq!(&env.node_id, &cfg.node_id);
                    prop_assert_eq!(env.schema, SCHEMA_VERSION);
                }
                model.extend(stored);
                prop_assert_eq!(s.last_seq(), model.len() as u64);
            }
            Op::Reopen => {
                drop(store.take());
                let s = JournalStore::open(&cfg).unwrap();
                prop_assert_eq!(s.last_seq(), model.len() as u64);
                store = Some(s);
            }
            Op::GetBySeq(raw) => {
                let seq = raw % (model.len() as u64 + 3);
                let expected = seq.checked_sub(1).and_then(|i| model.get(i as usize));
                let got = s.get_by_seq(seq).unwrap();
                prop_assert_eq!(got.as_ref(), expected);
            }
            Op::GetById(index) => {
                if !model.is_empty() {
                    let env = index.get(&model);
                    let got = s.get_by_id(env.event_id).unwrap();
                    prop_assert_eq!(got.as_ref(), Some(env));
                }
            }
            Op::GetUnknownId => {
                prop_assert_eq!(s.get_by_id(EventId::new()).unwrap(), None);
            }
            Op::IterFrom(raw) => {
                let from = raw % (model.len() as u64 + 2);
                let got: Vec<Envelope> = s.iter_from(from).map(Result::unwrap).collect();
                let skip = from.saturating_sub(1) as usize;
                prop_assert_eq!(&got[..], &model[skip.min(model.len())..]);
            }
        }
    }

    // Finally the whole journal, after a reopen, is the model.
    drop(store);
    let s = JournalStore::open(&cfg).unwrap();
    let all: Vec<Envelope> = s.iter_from(0).map(Result::unwrap).collect();
    prop_assert_eq!(all, model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn journal_store_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..30)) {
        run(ops)?;
    }
}
