//! The journal actor: group commit on its own arbiter thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, Addr, Arbiter, AsyncContext, Context, Handler, Recipient, Running, SpawnHandle,
};
use portcullis_schemas::{Envelope, EventId};
use portcullis_telemetry::trace;

use super::config::JournalConfig;
use super::error::JournalError;
use super::record::Record;
use super::store::{AppendFailure, JournalStore};

/// While commits fail, at most `max_batch * RETAINED_BATCHES` records wait
/// for a retry; beyond that new records are dropped, each counted and
/// logged.
const RETAINED_BATCHES: usize = 64;

/// Longest wait between two retries of a failing commit.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Commit attempts when the actor stops with records still buffered.
const STOP_ATTEMPTS: u32 = 3;

/// Journal one record. Fire-and-forget: send it with `do_send`. It is
/// durable once a later [`Sync`] returns a seq at or past it, or once a
/// [`Committed`] notification carries it.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Append(pub Record);

/// Commit everything received so far; returns the last durable seq.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "Result<u64, JournalError>")]
pub struct Sync;

/// Sent to subscribers after a batch is durable, with the stored envelopes
/// in seq order. Every committed envelope is sent exactly once.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct Committed(pub Arc<Vec<Envelope>>);

/// Register an observer of committed envelopes (e.g. the live console).
/// It is dropped once its actor is gone.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Committed>);

impl fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribe").finish_non_exhaustive()
    }
}

/// The journal actor. See the [module docs](super) for the storage layout.
///
/// Group commit: an [`Append`] goes into a buffer, and a commit is
/// scheduled: at once after a quiet period, otherwise `commit_interval`
/// after the previous commit. Everything buffered by then goes into one
/// batch with one fsync. A full buffer (`max_batch`) commits at once.
///
/// A failed commit is logged, and its records stay buffered for a retry
/// with exponential backoff; a store poisoned by a storage error is
/// reopened first, and records that did reach the disk are not written
/// twice. On stop, the rest is committed.
pub struct Journal {
    cfg: JournalConfig,
    /// `None` after a failed commit dropped a poisoned store, until the
    /// next attempt reopens it.
    store: Option<JournalStore>,
    buffer: Vec<Record>,
    scheduled: Option<SpawnHandle>,
    last_commit: Option<Instant>,
    /// Consecutive failed commits, for the retry backoff.
    failures: u32,
    /// After a storage failure, buffered records may be on disk already.
    recheck_ids: bool,
    subscribers: Vec<Recipient<Committed>>,
    dropped: u64,
    own_arbiter: bool,
    metrics: JournalMetrics,
    /// `journal append` spans of buffered records (traces on), ended by
    /// their commit.
    spans: HashMap<EventId, tracing::Span>,
}

/// The journal's metrics (docs/observability.md).
struct JournalMetrics {
    appends: metrics::Counter,
    batch: portcullis_telemetry::Histogram,
    commit: portcullis_telemetry::Histogram,
    last_seq: metrics::Gauge,
}

impl JournalMetrics {
    fn new() -> Self {
        use portcullis_telemetry::catalog;
        Self {
            appends: metrics::counter!(catalog::JOURNAL_APPENDS.name),
            batch: portcullis_telemetry::Histogram::new(&catalog::JOURNAL_COMMIT_BATCH, &[]),
            commit: portcullis_telemetry::Histogram::new(&catalog::JOURNAL_COMMIT_DURATION, &[]),
            last_seq: metrics::gauge!(catalog::JOURNAL_LAST_SEQ.name),
        }
    }
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.cfg.dir)
            .field("last_seq", &self.store.as_ref().map(JournalStore::last_seq))
            .field("buffered", &self.buffer.len())
            .field("failures", &self.failures)
            .field("subscribers", &self.subscribers.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// An actor over an open store. `cfg` gives the group-commit settings,
    /// and is used to reopen the store after a storage failure.
    pub fn new(store: JournalStore, cfg: &JournalConfig) -> Self {
        let metrics = JournalMetrics::new();
        metrics.last_seq.set(store.last_seq() as f64);
        Self {
            cfg: cfg.clone(),
            store: Some(store),
            buffer: Vec::new(),
            scheduled: None,
            last_commit: None,
            failures: 0,
            recheck_ids: false,
            subscribers: Vec::new(),
            dropped: 0,
            own_arbiter: false,
            metrics,
            spans: HashMap::new(),
        }
    }

    /// Starts the actor on a new `Arbiter` (its own thread), so its
    /// blocking fsyncs never stall another actor's executor. The thread
    /// ends when the actor stops. Must be called inside a running actix
    /// `System`.
    pub fn start_on_own_thread(mut self) -> Addr<Journal> {
        self.own_arbiter = true;
        let arbiter = Arbiter::new();
        Journal::start_in_arbiter(&arbiter.handle(), move |_| self)
    }

    fn max_buffered(&self) -> usize {
        self.cfg.max_batch.saturating_mul(RETAINED_BATCHES)
    }

    /// The store, reopened if a storage failure poisoned it. The poisoned
    /// handle is dropped first: it holds sled's lock.
    fn store(&mut self) -> Result<&mut JournalStore, JournalError> {
        if self.store.as_ref().is_some_and(JournalStore::is_poisoned) {
            self.store = None;
        }
        match &mut self.store {
            Some(store) => Ok(store),
            slot @ None => {
                let store = JournalStore::open(&self.cfg)?;
                tracing::info!(dir = %self.cfg.dir.display(), last_seq = store.last_seq(), "journal reopened");
                Ok(slot.insert(store))
            }
        }
    }

    /// Commits everything buffered, in batches of at most `max_batch`.
    /// Returns the last durable seq.
    fn commit_all(&mut self) -> Result<u64, JournalError> {
        let result = self.commit_buffer();
        self.last_commit = Some(Instant::now());
        match &result {
            Ok(_) => self.failures = 0,
            Err(_) => self.failures = self.failures.saturating_add(1),
        }
        result
    }

    fn commit_buffer(&mut self) -> Result<u64, JournalError> {
        loop {
            if self.recheck_ids && !self.buffer.is_empty() {
                self.drop_already_journaled()?;
            }
            if self.buffer.is_empty() {
                return Ok(self.store()?.last_seq());
            }
            // Open (or reopen) before taking records out of the buffer.
            self.store()?;
            let take = self.buffer.len().min(self.cfg.max_batch);
            let chunk: Vec<Record> = self.buffer.drain(..take).collect();
            let started = Instant::now();
            let result = match self.store.as_mut() {
                Some(store) => store.try_append(chunk),
                None => Err(AppendFailure {
                    error: JournalError::Poisoned {
                        dir: self.cfg.dir.clone(),
                        cause: "the store is closed".to_owned(),
                    },
                    records: chunk,
                }),
            };
            match result {
                Ok(envelopes) => {
                    if !self.spans.is_empty() {
                        for e in &envelopes {
                            if let Some(span) = self.spans.remove(&e.event_id) {
                                span.record("portcullis.journal.seq", e.seq);
                            }
                        }
                    }
                    self.metrics.commit.record(started.elapsed().as_secs_f64());
                    self.metrics.batch.record(envelopes.len() as f64);
                    self.metrics.appends.increment(envelopes.len() as u64);
                    if let Some(last) = envelopes.last() {
                        self.metrics.last_seq.set(last.seq as f64);
                    }
                    self.publish(envelopes)
                }
                Err(AppendFailure { error, records }) => {
                    self.buffer.splice(0..0, records);
                    match &error {
                        JournalError::Encode { event_id, .. } => {
                            // Retrying cannot help: this record can never
                            // be journaled.
                            tracing::error!(%event_id, %error, "journal drops an unencodable record");
                            self.remove_all(*event_id);
                        }
                        JournalError::DuplicateId { event_id, .. } => {
                            self.drop_duplicate(*event_id)?;
                        }
                        _ => {
                            self.recheck_ids = true;
                            return Err(error);
                        }
                    }
                }
            }
        }
    }

    /// After a storage failure: drops buffered records that reached the
    /// journal anyway, so a retry does not store them twice.
    fn drop_already_journaled(&mut self) -> Result<(), JournalError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => {
                self.buffer = buffer;
                return Err(e);
            }
        };
        let before = buffer.len();
        let mut error = None;
        buffer.retain(|r| match store.seq_of_id(&r.event_id) {
            Ok(found) => found.is_none(),
            Err(e) => {
                error.get_or_insert(e);
                true
            }
        });
        self.buffer = buffer;
        if let Some(e) = error {
            return Err(e);
        }
        self.recheck_ids = false;
        if before != self.buffer.len() {
            tracing::info!(
                count = before - self.buffer.len(),
                "journal: records of a failed commit were stored after all; not writing them again"
            );
        }
        Ok(())
    }

    /// A record with this id is already journaled, or is buffered twice.
    fn drop_duplicate(&mut self, event_id: EventId) -> Result<(), JournalError> {
        let journaled = self.store()?.seq_of_id(&event_id)?;
        if let Some(seq) = journaled {
            tracing::warn!(%event_id, seq, "journal drops a record already journaled");
            self.remove_all(event_id);
        } else {
            tracing::warn!(%event_id, "journal drops a record appended twice");
            let mut first = true;
            self.buffer
                .retain(|r| r.event_id != event_id || std::mem::take(&mut first));
        }
        Ok(())
    }

    fn remove_all(&mut self, event_id: EventId) {
        self.buffer.retain(|r| r.event_id != event_id);
        self.spans.remove(&event_id);
    }

    /// The `journal append` span of `record`, under the span that produced
    /// it (traces on and its trace sampled).
    fn trace_append(&mut self, record: &Record) {
        if !trace::exported(&record.trace) {
            return;
        }
        if self.spans.len() >= self.max_buffered() {
            // Commits fail: the spans of what waits are not worth memory.
            self.spans.clear();
        }
        let span = tracing::info_span!(
            target: trace::TARGET,
            parent: None,
            "journal append",
            portcullis.event_id = %record.event_id,
            portcullis.event.kind = record.body.kind().as_str(),
            portcullis.journal.seq = tracing::field::Empty,
        );
        trace::set_parent(&span, &record.trace);
        self.spans.insert(record.event_id, span);
    }

    fn publish(&mut self, envelopes: Vec<Envelope>) {
        if envelopes.is_empty() {
            return;
        }
        self.subscribers.retain(Recipient::connected);
        if self.subscribers.is_empty() {
            return;
        }
        let batch = Arc::new(envelopes);
        for subscriber in &self.subscribers {
            subscriber.do_send(Committed(Arc::clone(&batch)));
        }
    }

    fn commit_logged(&mut self) {
        if let Err(error) = self.commit_all() {
            tracing::error!(
                %error,
                buffered = self.buffer.len(),
                failures = self.failures,
                "journal commit failed; records kept for a retry"
            );
        }
    }

    /// Makes sure a commit is scheduled while records are buffered, and
    /// none when nothing is.
    fn reschedule(&mut self, ctx: &mut Context<Self>) {
        if self.buffer.is_empty() {
            if let Some(handle) = self.scheduled.take() {
                ctx.cancel_future(handle);
            }
            return;
        }
        if self.scheduled.is_some() {
            return;
        }
        let delay = if self.failures > 0 {
            let base = self.cfg.commit_interval.max(Duration::from_millis(10));
            base.saturating_mul(1 << self.failures.min(10))
                .min(MAX_RETRY_DELAY)
        } else {
            self.last_commit
                .map(|t| (t + self.cfg.commit_interval).saturating_duration_since(Instant::now()))
                .unwrap_or_default()
        };
        self.scheduled = Some(ctx.run_later(delay, |journal, ctx| {
            journal.scheduled = None;
            journal.commit_logged();
            journal.reschedule(ctx);
        }));
    }

    /// Last chance for buffered records: a few attempts, then they are lost
    /// (and logged as such).
    fn commit_before_exit(&mut self) {
        for attempt in 1..=STOP_ATTEMPTS {
            if self.buffer.is_empty() {
                return;
            }
            match self.commit_all() {
                Ok(_) => return,
                Err(error) => {
                    tracing::error!(%error, attempt, "journal commit at stop failed");
                    std::thread::sleep(Duration::from_millis(50) * attempt);
                }
            }
        }
        if !self.buffer.is_empty() {
            tracing::error!(
                lost = self.buffer.len(),
                "journal stopped with records it could not store"
            );
        }
    }
}

impl Actor for Journal {
    type Context = Context<Self>;

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.commit_logged();
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.commit_before_exit();
        if self.dropped > 0 {
            tracing::error!(
                dropped = self.dropped,
                "journal dropped records while commits failed"
            );
        }
        if self.own_arbiter {
            Arbiter::current().stop();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Normally `stopped` has emptied the buffer already.
        self.commit_before_exit();
    }
}

impl Handler<Append> for Journal {
    type Result = ();

    fn handle(&mut self, Append(record): Append, ctx: &mut Self::Context) {
        if self.buffer.len() >= self.max_buffered() {
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_multiple_of(1000) {
                tracing::error!(
                    event_id = %record.event_id,
                    dropped = self.dropped,
                    "journal buffer full while commits fail: dropping records"
                );
            }
            return;
        }
        self.trace_append(&record);
        self.buffer.push(record);
        if self.buffer.len() >= self.cfg.max_batch && self.failures == 0 {
            self.commit_logged();
        }
        self.reschedule(ctx);
    }
}

impl Handler<Sync> for Journal {
    type Result = Result<u64, JournalError>;

    fn handle(&mut self, _: Sync, ctx: &mut Self::Context) -> Self::Result {
        let result = self.commit_all();
        self.reschedule(ctx);
        result
    }
}

impl Handler<Subscribe> for Journal {
    type Result = ();

    fn handle(&mut self, Subscribe(recipient): Subscribe, _ctx: &mut Self::Context) {
        self.subscribers.push(recipient);
    }
}

/// Stops the actor from a test (dropping every `Addr` does the same).
#[cfg(test)]
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
struct Stop;

#[cfg(test)]
impl Handler<Stop> for Journal {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        actix::ActorContext::stop(ctx);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use portcullis_schemas::{EventBody, NodeId, OverflowSource, QueueOverflowed};

    use super::*;

    fn body(n: u64) -> EventBody {
        EventBody::QueueOverflowed(QueueOverflowed {
            source: OverflowSource::Mailbox,
            count: n,
        })
    }

    fn cfg(dir: &std::path::Path) -> JournalConfig {
        JournalConfig::new(dir, NodeId("node-actor".into()))
    }

    type Seen = Arc<Mutex<Vec<Arc<Vec<Envelope>>>>>;

    struct Collector(Seen);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<Committed> for Collector {
        type Result = ();
        fn handle(&mut self, Committed(batch): Committed, _: &mut Self::Context) {
            self.0.lock().unwrap().push(batch);
        }
    }

    fn collector() -> (Recipient<Committed>, Seen) {
        let seen = Seen::default();
        (Collector(Arc::clone(&seen)).start().recipient(), seen)
    }

    fn flat(seen: &Seen) -> Vec<Envelope> {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.iter().cloned())
            .collect()
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reopens once the stopped actor has released sled's lock.
    async fn reopen(cfg: &JournalConfig) -> JournalStore {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match JournalStore::open(cfg) {
                Ok(store) => return store,
                Err(JournalError::InUse { .. }) if Instant::now() < deadline => {
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("reopen failed: {e}"),
            }
        }
    }

    #[actix_rt::test]
    async fn journal_actor_sync_returns_the_number_appended() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        for n in 0..5000 {
            journal.do_send(Append(Record::new(body(n))));
        }
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 5000);
        for n in 0..10 {
            journal.do_send(Append(Record::new(body(n))));
        }
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 5010);
        assert_eq!(
            journal.send(Sync).await.unwrap().unwrap(),
            5010,
            "idle sync"
        );
        drop(journal);

        let store = reopen(&cfg).await;
        assert_eq!(store.last_seq(), 5010);
        let seqs: Vec<u64> = store.iter_from(0).map(|r| r.unwrap().seq).collect();
        assert_eq!(seqs, (1..=5010).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn journal_actor_subscribers_see_every_envelope_once_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = cfg(tmp.path());
        cfg.max_batch = 64;
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        let (first, seen_first) = collector();
        let (second, seen_second) = collector();
        journal.do_send(Subscribe(first));
        journal.do_send(Subscribe(second));

        let mut ids = Vec::new();
        for n in 0..3000 {
            let record = Record::new(body(n));
            ids.push(record.event_id);
            journal.do_send(Append(record));
            if n % 700 == 0 {
                journal.send(Sync).await.unwrap().unwrap();
            }
        }
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 3000);

        for seen in [&seen_first, &seen_second] {
            wait_until("every notification", || flat(seen).len() >= 3000).await;
            let got = flat(seen);
            assert_eq!(
                got.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (1..=3000).collect::<Vec<_>>()
            );
            assert_eq!(got.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
            assert!(seen
                .lock()
                .unwrap()
                .iter()
                .all(|b| !b.is_empty() && b.len() <= 64));
        }
        // Nothing more arrives later (no duplicates).
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(flat(&seen_first).len(), 3000);
    }

    #[actix_rt::test]
    async fn journal_actor_groups_records_into_few_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = cfg(tmp.path());
        cfg.commit_interval = Duration::from_millis(200);
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        let (observer, seen) = collector();
        journal.send(Subscribe(observer)).await.unwrap();
        for n in 0..100 {
            journal.do_send(Append(Record::new(body(n))));
        }
        // No Sync: the timer commits.
        wait_until("the timer's commit", || flat(&seen).len() >= 100).await;
        let batches = seen.lock().unwrap().len();
        assert!(batches <= 5, "{batches} commits for 100 records");
    }

    #[actix_rt::test]
    async fn journal_actor_commits_a_full_batch_without_waiting() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = cfg(tmp.path());
        cfg.max_batch = 10;
        cfg.commit_interval = Duration::from_secs(3600);
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        let (observer, seen) = collector();
        journal.send(Subscribe(observer)).await.unwrap();
        for n in 0..35 {
            journal.do_send(Append(Record::new(body(n))));
        }
        // The interval is an hour: only full batches get committed.
        wait_until("full batches", || flat(&seen).len() >= 30).await;
        assert!(flat(&seen).len() < 35);
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 35);
    }

    #[actix_rt::test]
    async fn journal_actor_commits_the_rest_when_it_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = cfg(tmp.path());
        cfg.commit_interval = Duration::from_secs(3600);
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        for n in 0..10 {
            journal.do_send(Append(Record::new(body(n))));
        }
        journal.do_send(Stop);
        drop(journal);
        let store = reopen(&cfg).await;
        assert_eq!(store.last_seq(), 10);
    }

    #[actix_rt::test]
    async fn journal_actor_drops_duplicate_ids_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let journal = Journal::new(JournalStore::open(&cfg).unwrap(), &cfg).start_on_own_thread();
        let record = Record::new(body(1));
        journal.do_send(Append(record.clone()));
        journal.do_send(Append(record.clone()));
        journal.do_send(Append(Record::new(body(2))));
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 2);
        journal.do_send(Append(record));
        journal.do_send(Append(Record::new(body(3))));
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 3);
    }

    #[actix_rt::test]
    async fn journal_actor_reopens_a_poisoned_store_and_does_not_write_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let mut store = JournalStore::open(&cfg).unwrap();
        let stored = store.append_batch(vec![Record::new(body(0))]).unwrap();
        store.poison_for_test();
        let mut journal = Journal::new(store, &cfg);
        // As after a failed commit: buffered records may be on disk.
        journal.recheck_ids = true;
        let journal = journal.start_on_own_thread();
        // A record of the "failed" commit that did reach the disk...
        journal.do_send(Append(Record {
            event_id: stored[0].event_id,
            timestamp: stored[0].timestamp,
            trace: stored[0].trace,
            body: stored[0].body.clone(),
        }));
        journal.do_send(Append(Record::new(body(1))));
        assert_eq!(journal.send(Sync).await.unwrap().unwrap(), 2);
        drop(journal);
        let store = reopen(&cfg).await;
        assert_eq!(store.get_by_seq(1).unwrap().unwrap(), stored[0]);
        assert_eq!(store.last_seq(), 2);
    }
}
