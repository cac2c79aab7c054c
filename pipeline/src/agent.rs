//! The node agent in embedded mode: every actor in one process.
//!
//! ```text
//! fanotify fd ─► reader thread ─► Bridge ─► Enforcer ─► Scanner workers (SyncArbiter)
//!                                              │  ▲──────── verdict ─┘
//!                                              ├─► Actions (SyncArbiter)
//!                                              └─► Journal (own thread, sled)
//! ```

use std::path::Path;
use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use portcullis_actors::actions::control::QuarantineServer;
use portcullis_actors::actions::{Actions, PurgeQuarantine, PURGE_EVERY};
use portcullis_actors::bridge::{self, Bridge};
use portcullis_actors::enforcer::{Enforcer, EnforcerStats, GetStats, Shutdown, SwapRules};
use portcullis_actors::journal::{
    export, Append, ExportServer, Journal, JournalReader, JournalStore, Record, Sync,
};
use portcullis_actors::scanner::{start_scanners, LiveRules, Ruleset};
use portcullis_interceptor::{spawn_reader, Fanotify, GroupClass, ReaderHandle, Watch};
use portcullis_schemas::{AgentStarted, AgentStopped, EventBody, FilePath, Mode, RulesLoaded};

use crate::config::Settings;
use crate::containers::{self, ContainerProtection};
use crate::distributed::outbox::Outbox;
use crate::distributed::remote::{self, RemoteHandles};
use crate::rules::{hangups, load_ruleset, reload_loop, ReloadTarget};
use portcullis_containers::Registry;
use portcullis_telemetry::{catalog, Telemetry};

/// How long a starting node waits for the shared verdicts of the cluster
/// before protecting anyway.
const SHARED_VERDICTS_LOAD: std::time::Duration = std::time::Duration::from_secs(10);

/// A running agent.
pub struct Agent {
    remote: Option<RemoteHandles>,
    outbox: Option<Outbox>,
    enforcer: Addr<Enforcer>,
    journal: Addr<Journal>,
    reader: Option<ReaderHandle>,
    fanotify: Option<Arc<Fanotify>>,
    ruleset: Arc<Ruleset>,
    /// Serves exports of the journal to `portcullis replay`/`investigate`
    /// while the agent holds the database.
    export: Option<ExportServer>,
    /// `[containers]`: every container on the node.
    containers: Option<ContainerProtection>,
    /// The reload task (SIGHUP, the rules directory watch).
    reloads: Option<actix_rt::task::JoinHandle<()>>,
    /// `portcullis quarantine restore|delete` of an operator, while the
    /// agent holds the journal.
    quarantine: Option<QuarantineServer>,
    /// Applies the quarantine's retention settings every [`PURGE_EVERY`].
    purges: Option<actix_rt::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

impl Agent {
    /// Builds every actor, marks the protected mounts and starts reading.
    /// Must run inside an actix `System`.
    /// `telemetry`: where the agent's scrape-time gauges and the Enforcer's
    /// heartbeat (`/healthz`) go; the caller says ready once this returns.
    pub async fn start(
        settings: &Settings,
        journal: JournalHandle,
        telemetry: Option<&Telemetry>,
    ) -> anyhow::Result<Agent> {
        let JournalHandle {
            addr: journal,
            reader,
        } = journal;
        // First: from here on a SIGHUP (a reload) never kills the agent.
        let hup = hangups()?;
        let ruleset = Arc::new(load_ruleset(settings.rules.as_deref())?);
        ruleset_metrics(&ruleset);
        let append = |body| journal.do_send(Append(Record::new(body)));
        let export = match ExportServer::start(
            &settings.journal.dir,
            reader.clone(),
            settings.node_id.clone(),
        ) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    socket = %export::socket_path(&settings.journal.dir).display(),
                    "the journal export socket is not available: replay and investigate cannot read this journal while the agent runs"
                );
                None
            }
        };

        let class = match settings.enforcer.mode {
            Mode::Enforce => GroupClass::Permission,
            Mode::Audit => GroupClass::Notification,
        };
        let fan = Fanotify::init(class).context("creating the fanotify group")?;
        let live = LiveRules::new(ruleset.clone());
        let local = start_scanners(settings.scan_threads, live.clone(), settings.limits);
        // Distributed mode swaps the transport between Enforcer and scanners.
        let (scanner, remote, outbox) = match &settings.kafka {
            None => (local.clone().recipient(), None, None),
            Some(kafka) => {
                crate::kafka::ensure_topics(kafka)
                    .await
                    .context("creating the Kafka topics")?;
                // A reply may come long after the opener was answered; it is
                // still journaled and shared. Past this, the scan counts as
                // failed.
                let reply_timeout = settings
                    .enforcer
                    .deadline
                    .saturating_mul(5)
                    .max(std::time::Duration::from_secs(60));
                let mut remote = remote::start(
                    kafka.clone(),
                    settings.node_id.clone(),
                    live.clone(),
                    local.clone().recipient(),
                    reply_timeout,
                )
                .await?;
                // Load what the cluster already scanned before protecting:
                // a file scanned on another node is then answered from the
                // shared verdicts from the first open here.
                match remote.wait_for_shared(SHARED_VERDICTS_LOAD).await {
                    Some(n) => tracing::info!(shared_verdicts = n, "shared verdicts loaded"),
                    None => tracing::warn!(
                        waited = ?SHARED_VERDICTS_LOAD,
                        "the shared verdicts are not loaded yet; until they are, files other nodes scanned are scanned again"
                    ),
                }
                let outbox = Outbox::start(kafka, reader.clone(), settings.node_id.clone())?;
                tracing::info!(
                    bootstrap = %kafka.bootstrap,
                    topics = kafka.topics.prefix(),
                    reply_partition = kafka.reply_partition_for(&settings.node_id.0),
                    "distributed mode: scans through Kafka, journal published"
                );
                (remote.addr.clone().recipient(), Some(remote), Some(outbox))
            }
        };
        if let Some(t) = telemetry {
            let reader = reader.clone();
            let published = outbox.as_ref().map(Outbox::published_counter);
            let lag = metrics::gauge!(catalog::OUTBOX_LAG.name);
            t.add_collector(Box::new(move || {
                if let (Some(p), Ok(last)) = (&published, reader.last_seq()) {
                    lag.set(
                        last.saturating_sub(p.load(std::sync::atomic::Ordering::Relaxed)) as f64,
                    );
                }
            }));
        }
        let actions = Actions::start(settings.actions.clone(), journal.clone().recipient());
        let quarantine = match QuarantineServer::start(
            &settings.journal.dir,
            &settings.actions.quarantine_dir,
            actions.clone(),
        ) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the quarantine socket is not available: `portcullis quarantine restore|delete` cannot reach this agent"
                );
                None
            }
        };
        // The retention settings: at start, then every PURGE_EVERY (and the
        // size limit after every new entry).
        let purges = {
            let actions = actions.clone();
            actix_rt::spawn(async move {
                let mut every = actix_rt::time::interval(PURGE_EVERY);
                loop {
                    every.tick().await;
                    actions.do_send(PurgeQuarantine);
                }
            })
        };
        let mut enforcer = Enforcer::new(
            settings.enforcer.clone(),
            settings.policies.clone(),
            ruleset.version().clone(),
            scanner,
            journal.clone().recipient(),
        )
        .with_fanotify(fan.clone())
        .with_live_rules(live.clone(), local.recipient())
        .with_actions(actions.recipient());
        if settings.kafka.is_some() {
            enforcer = enforcer.with_remote_scans();
        }
        if let Some(t) = telemetry {
            // The Enforcer beats on every tick; a second without one means
            // the actor system is stuck and opens wait for their deadline.
            enforcer = enforcer.with_heartbeat(
                t.health()
                    .heartbeat("enforcer", std::time::Duration::from_secs(10)),
            );
            if let Some(w) = t.watchdog() {
                tracing::info!(every = ?w.every(), "systemd watchdog pinged from the Enforcer's tick");
                enforcer = enforcer.with_watchdog(w);
            }
        }
        let enforcer = enforcer.start();
        // Attribution: the Bridge names each access's container from the
        // registry the container protection fills (never a runtime call).
        let registry = settings
            .containers
            .enabled
            .then(|| Arc::new(Registry::new(settings.containers.recently_gone)));
        let mut bridge = Bridge::new(
            enforcer.clone().recipient(),
            enforcer.clone().recipient(),
            settings.scan_mode,
            settings.enforcer.on_overload,
            settings.enforcer.mailbox,
        );
        if let Some(r) = &registry {
            let (names, layers) = (r.clone(), r.clone());
            bridge = bridge
                .with_container_directory(Arc::new(move |c| names.describe(c)))
                .with_layer_devices(Arc::new(move |d| layers.layer_device(d)));
        }
        let dropped = bridge.dropped_counter();
        let bridge = bridge.start();
        let reader = spawn_reader(
            fan.clone(),
            std::process::id(),
            bridge::sink(bridge, dropped, settings.enforcer.on_overload),
        )
        .context("starting the fanotify reader thread")?;

        let watch = Watch {
            open: true,
            exec: true,
            close_write: settings.scan_mode.watches_close_write(),
        };
        for path in &settings.protect {
            fan.mark(path, settings.mark_scope, watch, settings.allow_root_mount)
                .with_context(|| format!("protecting {}", path.display()))?;
        }
        if let (Some(t), Some(r)) = (telemetry, &registry) {
            let r = r.clone();
            let protected = metrics::gauge!(catalog::CONTAINERS_PROTECTED.name);
            t.add_collector(Box::new(move || protected.set(r.sizes().0 as f64)));
        }
        let containers = match registry {
            Some(registry) => {
                let journal = journal.clone();
                Some(ContainerProtection::start(
                    &settings.containers,
                    fan.clone(),
                    watch,
                    containers::devices_of(&settings.protect),
                    registry,
                    Arc::new(move |body| journal.do_send(Append(Record::new(body)))),
                    Some({
                        let policies = settings.policies.clone();
                        Arc::new(move |c, labels| {
                            policies
                                .selecting(Some(c), Some(labels))
                                .into_iter()
                                .map(str::to_string)
                                .collect()
                        })
                    }),
                )?)
            }
            None => None,
        };
        append(EventBody::AgentStarted(AgentStarted {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            interceptor_mode: settings.enforcer.mode,
            protected: settings
                .protect
                .iter()
                .map(|p| FilePath::from(p.as_path()))
                .collect(),
        }));
        append(EventBody::RulesLoaded(RulesLoaded {
            ruleset: ruleset.version().clone(),
            rules: ruleset.rule_count(),
            files: ruleset.files().to_vec(),
        }));
        // Reloads (SIGHUP, and the directory watch): compiled off the
        // executor, then swapped in by the Enforcer.
        let target = AgentRules {
            enforcer: enforcer.clone(),
            journal: journal.clone(),
        };
        let (dir, watch, first) = (
            settings.rules.clone(),
            settings.rules_watch,
            ruleset.clone(),
        );
        let reloads = actix_rt::spawn(async move {
            if let Err(e) = reload_loop(hup, dir, watch, first, target).await {
                tracing::error!("rules reloads are off: {e:#}");
            }
        });
        tracing::info!(
            mode = %settings.enforcer.mode,
            protected = ?settings.protect,
            ruleset = %ruleset.version(),
            rules = ruleset.rule_count(),
            "portcullis agent ready"
        );
        Ok(Agent {
            remote,
            outbox,
            enforcer,
            journal,
            reader: Some(reader),
            fanotify: Some(fan),
            ruleset,
            export,
            containers,
            reloads: Some(reloads),
            quarantine,
            purges: Some(purges),
        })
    }

    pub fn journal(&self) -> &Addr<Journal> {
        &self.journal
    }

    pub fn ruleset(&self) -> &Arc<Ruleset> {
        &self.ruleset
    }

    pub async fn stats(&self) -> anyhow::Result<EnforcerStats> {
        Ok(self.enforcer.send(GetStats).await?)
    }

    /// Stops reading, answers every pending decision, journals the stop and
    /// waits until the journal is durable. Returns how many pending
    /// decisions were answered.
    pub async fn shutdown(mut self, signal: Option<&str>) -> anyhow::Result<u64> {
        // No reload from here: nothing is journaled after the stop.
        if let Some(r) = self.reloads.take() {
            r.abort();
        }
        // Nor a quarantine change (a restore in progress finishes first:
        // the server's thread is joined).
        if let Some(p) = self.purges.take() {
            p.abort();
        }
        if let Some(q) = self.quarantine.take() {
            actix_rt::task::spawn_blocking(move || drop(q))
                .await
                .context("stopping the quarantine socket")?;
        }
        // No new marks from here: the hook's requests are refused (the hook
        // then follows on_agent_unavailable).
        if let Some(c) = self.containers.take() {
            actix_rt::task::spawn_blocking(move || c.stop())
                .await
                .context("stopping container protection")?;
        }
        // First answer everything pending, while the reader still runs: what
        // arrives meanwhile is answered at once (reason `shutdown`).
        let answered = self
            .enforcer
            .send(Shutdown)
            .await
            .context("stopping the enforcer")?;
        if let Some(reader) = self.reader.take() {
            // Joined on a blocking thread: it returns within one poll interval.
            actix_rt::task::spawn_blocking(move || reader.stop())
                .await
                .context("joining the fanotify reader")?;
        }
        // Then close the group: the kernel allows anything still queued.
        self.fanotify.take();
        self.journal
            .do_send(Append(Record::new(EventBody::AgentStopped(AgentStopped {
                answered_pending: answered,
                signal: signal.map(str::to_owned),
            }))));
        let last = self
            .journal
            .send(Sync)
            .await
            .context("journal")?
            .context("final journal commit")?;
        if let Some(outbox) = self.outbox.take() {
            // Give the outbox a moment to publish the last events (the rest
            // goes out from the cursor at the next start).
            if !outbox
                .drain_until(last, std::time::Duration::from_secs(5))
                .await
            {
                tracing::warn!(
                    published = outbox.published(),
                    last_seq = last,
                    "outbox backlog left for the next start"
                );
            }
            actix_rt::task::spawn_blocking(move || outbox.stop(std::time::Duration::from_secs(2)))
                .await
                .context("stopping the outbox")?;
        }
        if let Some(remote) = self.remote.take() {
            remote.stop();
        }
        if let Some(export) = self.export.take() {
            // Joins the export threads (bounded by their write timeout).
            actix_rt::task::spawn_blocking(move || drop(export))
                .await
                .context("stopping the journal export")?;
        }
        tracing::info!(
            answered_pending = answered,
            last_seq = last,
            "portcullis agent stopped"
        );
        Ok(answered)
    }
}

/// Where the agent's reloads go: the Enforcer swaps, the journal records.
struct AgentRules {
    enforcer: Addr<Enforcer>,
    journal: Addr<Journal>,
}

impl ReloadTarget for AgentRules {
    fn apply(&mut self, ruleset: Arc<Ruleset>) -> futures::future::LocalBoxFuture<'_, bool> {
        Box::pin(async move {
            match self.enforcer.send(SwapRules(ruleset)).await {
                Ok(Some(s)) => {
                    tracing::info!(
                        cache_entries = s.cache_entries,
                        kernel_marks_flushed = s.kernel_marks_flushed,
                        flush_us = u64::try_from(s.flush.as_micros()).unwrap_or(u64::MAX),
                        "verdict caches emptied for the new rules"
                    );
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::error!(error = %e, "the Enforcer did not take the new rules");
                    false
                }
            }
        })
    }

    fn record(&mut self, body: EventBody) {
        self.journal.do_send(Append(Record::new(body)));
    }
}

/// `portcullis_rules_info` and `portcullis_rules_loaded` of a ruleset.
pub fn ruleset_metrics(ruleset: &Ruleset) {
    metrics::gauge!(catalog::RULES_INFO.name, "ruleset" => ruleset.version().to_string()).set(1.0);
    metrics::gauge!(catalog::RULES_LOADED.name).set(ruleset.rule_count() as f64);
}

/// The journal actor and a reader on the same database.
#[derive(Debug, Clone)]
pub struct JournalHandle {
    pub addr: Addr<Journal>,
    pub reader: JournalReader,
}

/// Opens the journal of `settings` and starts its actor on its own thread.
pub fn open_journal(settings: &Settings) -> anyhow::Result<JournalHandle> {
    let store = JournalStore::open(&settings.journal)
        .with_context(|| format!("opening the journal in {}", settings.journal.dir.display()))?;
    let reader = store.reader();
    Ok(JournalHandle {
        addr: Journal::new(store, &settings.journal).start_on_own_thread(),
        reader,
    })
}

/// Raises the soft limit of open files to the hard limit: every pending
/// decision holds an event fd.
pub fn raise_fd_limit() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Writes `ready` into `path` (tests and scripts wait for it).
pub fn signal_ready(path: Option<&Path>) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, b"ready\n")
            .with_context(|| format!("writing the ready file {}", p.display()))?;
    }
    Ok(())
}
