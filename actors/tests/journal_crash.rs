//! kill -9 in the middle of appends loses nothing that was acknowledged.
//!
//! The test re-executes its own binary (`std::env::current_exe()`) with
//! `JOURNAL_CRASH_CHILD_DIR` set, running only `journal_crash_child`: that
//! child appends batches in a loop and prints `ACK <seq>` after each
//! acknowledged batch. The parent reads a few hundred acks, sends SIGKILL
//! (`Child::kill` is SIGKILL on Unix), reopens the journal and checks it.
//! Three rounds on the same directory, so recovery is checked after a
//! recovery too.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_actors::journal::{JournalConfig, JournalError, JournalStore, Record};
use portcullis_schemas::{AgentStopped, EventBody, NodeId};

const CHILD_ENV: &str = "JOURNAL_CRASH_CHILD_DIR";
/// The child stops by itself after this many batches or this long.
const CHILD_MAX_BATCHES: u64 = 50_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(120);
const ACKS_BEFORE_KILL: usize = 300;
const ROUNDS: usize = 3;

fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir, NodeId("crash-node".into()))
}

/// The child's body; a no-op in a normal test run.
#[test]
fn journal_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut store = JournalStore::open(&config(Path::new(&dir))).unwrap();
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    for batch in 0..CHILD_MAX_BATCHES {
        if started.elapsed() > CHILD_MAX_TIME {
            break;
        }
        // Batches of 1..=37 records, of varying sizes.
        let size = 1 + (batch * 7 % 37) as usize;
        let records: Vec<Record> = (0..size)
            .map(|i| {
                Record::new(EventBody::AgentStopped(AgentStopped {
                    answered_pending: batch,
                    signal: Some("x".repeat(i * 13 % 200)),
                }))
            })
            .collect();
        let stored = store.append_batch(records).unwrap();
        let last = stored.last().unwrap().seq;
        writeln!(out, "ACK {last}").unwrap();
        out.flush().unwrap();
    }
}

/// Kills the child if the test fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_when_released(cfg: &JournalConfig) -> JournalStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JournalStore::open(cfg) {
            Ok(store) => return store,
            Err(JournalError::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen after kill failed: {e}"),
        }
    }
}

/// Runs one child until it has acked `ACKS_BEFORE_KILL` batches, kills it
/// and returns the last acked seq (including acks read after the kill).
fn crash_one_child(dir: &Path) -> u64 {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal_crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();

    let (tx, rx) = mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("ACK ") {
                if tx.send(seq.trim().parse().unwrap()).is_err() {
                    break;
                }
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = 0;
    let mut acks = 0;
    while acks < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(seq) => {
                assert!(seq > acked, "acks go up: {seq} after {acked}");
                acked = seq;
                acks += 1;
            }
            Err(e) => panic!("child gave only {acks} acks: {e}"),
        }
    }
    // SIGKILL, at a varying point of the next batches (encode, write,
    // fsync): up to 3 ms later.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 3_000_000;
    std::thread::sleep(Duration::from_nanos(u64::from(jitter)));
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status}"
    );
    // Acks printed before the kill that we had not read yet.
    reader.join().unwrap();
    acked = rx.try_iter().fold(acked, u64::max);
    acked
}

fn check_journal(store: &JournalStore, acked: u64) {
    let last = store.last_seq();
    assert!(
        last >= acked,
        "acknowledged seq {acked} lost: last_seq is {last}"
    );
    let mut expected = 1;
    let mut ids = HashSet::new();
    for item in store.iter_from(0) {
        let env = item.unwrap_or_else(|e| panic!("undecodable record after kill -9: {e}"));
        assert_eq!(env.seq, expected, "gap in seqs");
        assert!(
            ids.insert(env.event_id),
            "event {} stored twice",
            env.event_id
        );
        let by_id = store.get_by_id(env.event_id).unwrap();
        assert_eq!(by_id.as_ref(), Some(&env), "id index of seq {}", env.seq);
        expected += 1;
    }
    assert_eq!(expected - 1, last, "iteration ends at last_seq");
}

#[test]
fn journal_survives_kill9_without_losing_acked_records() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let mut previous_last = 0;
    for round in 0..ROUNDS {
        let acked = crash_one_child(tmp.path());
        assert!(
            acked > previous_last,
            "round {round}: the child continued the seq"
        );
        let store = open_when_released(&cfg);
        check_journal(&store, acked);
        eprintln!(
            "round {round}: acked {acked}, recovered last_seq {}",
            store.last_seq()
        );
        previous_last = store.last_seq();
    }
}
