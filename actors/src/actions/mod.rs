//! Actions on detected objects, as in the model product: a first action,
//! and a second one that runs only if the first fails.
//!
//! - `block`: the open was denied (EPERM). It succeeds when the opener got
//!   a deny; it fails when the access had already been let through (audit
//!   deadline, close-after-write scan).
//! - `remove`: a backup copy goes to the root-only quarantine with a
//!   metadata record, then the file is unlinked — only if the path still
//!   names the scanned inode.
//! - `terminate`: SIGKILL to the process that opened the object (never the
//!   agent itself, never pid 1).
//! - `disinfect`: not possible with YARA rules; recorded as such, and the
//!   second action runs.
//!
//! Every attempt is journaled as an `ActionTaken` event with its outcome.
//! File work is blocking, so the actor runs on a `SyncArbiter`.

mod config;
pub mod control;
mod quarantine;

use std::os::unix::fs::MetadataExt;

use actix::{Actor, Addr, Handler, Message, Recipient, SyncArbiter, SyncContext};
use portcullis_schemas::{
    ActionKind, ActionOutcome, ActionStep, ActionTaken, ContainerRef, EventBody, EventId, FilePath,
    MetaValue, Operator, QuarantineDeletion, QuarantineEntry, RuleMatch, Timestamp, TraceContext,
};

pub use config::{ActionChoice, ActionsConfig};
pub use quarantine::{
    Detected, Listed, Quarantine, QuarantineError, QuarantineRecord, RestoreError, RestoreTo,
    Retention,
};

use portcullis_telemetry::trace;

use crate::journal::{Append, Record};
use crate::scanner::ScanContent;

/// Run the configured actions on an infected object.
#[derive(Message)]
#[rtype(result = "Vec<ActionTaken>")]
pub struct ActOnDetection {
    pub access: EventId,
    pub trace: TraceContext,
    pub path: FilePath,
    /// (device, inode) of the scanned object.
    pub file: (u64, u64),
    pub pid: u32,
    /// The container of the (first) opener.
    pub container: Option<ContainerRef>,
    pub content: ScanContent,
    pub sha256: Option<[u8; 32]>,
    pub matches: Vec<RuleMatch>,
    /// Whether the opener was answered with a deny.
    pub denied: bool,
}

impl std::fmt::Debug for ActOnDetection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActOnDetection")
            .field("access", &self.access)
            .field("path", &self.path)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// The actions actor.
#[derive(Debug)]
pub struct Actions {
    cfg: ActionsConfig,
    quarantine: Result<Quarantine, String>,
    journal: Recipient<Append>,
    own_pid: u32,
}

impl Actions {
    /// A quarantine directory that cannot be opened is not fatal: `remove`
    /// then fails with that reason and the second action runs.
    pub fn new(cfg: ActionsConfig, journal: Recipient<Append>) -> Self {
        let quarantine = Quarantine::open(&cfg.quarantine_dir).map_err(|e| e.to_string());
        if let Err(e) = &quarantine {
            tracing::warn!(error = %e, "quarantine unavailable; `remove` will fail over to the second action");
        }
        Self {
            cfg,
            quarantine,
            journal,
            own_pid: std::process::id(),
        }
    }

    /// Starts one worker thread.
    pub fn start(cfg: ActionsConfig, journal: Recipient<Append>) -> Addr<Actions> {
        SyncArbiter::start(1, move || Actions::new(cfg.clone(), journal.clone()))
    }

    fn resolve(choice: ActionChoice, matches: &[RuleMatch]) -> Option<ActionKind> {
        match choice {
            ActionChoice::Block => Some(ActionKind::Block),
            ActionChoice::Remove => Some(ActionKind::Remove),
            ActionChoice::Terminate => Some(ActionKind::Terminate),
            ActionChoice::Disinfect => Some(ActionKind::Disinfect),
            ActionChoice::None => None,
            ActionChoice::Recommended => Some(recommended(matches)),
        }
    }

    fn perform(
        &self,
        kind: ActionKind,
        msg: &ActOnDetection,
    ) -> (ActionOutcome, Option<QuarantineEntry>) {
        match kind {
            ActionKind::Block => {
                if msg.denied {
                    (ActionOutcome::Succeeded, None)
                } else {
                    (
                        ActionOutcome::Failed {
                            error: "the access had already been allowed (deadline or close-after-write scan)"
                                .into(),
                        },
                        None,
                    )
                }
            }
            ActionKind::Disinfect => (
                ActionOutcome::NotPossible {
                    why: "YARA rules detect objects but cannot disinfect them".into(),
                },
                None,
            ),
            ActionKind::Terminate => (self.terminate(msg.pid), None),
            ActionKind::Remove => match self.remove(msg) {
                Ok(entry) => (ActionOutcome::Succeeded, Some(entry)),
                Err((error, entry)) => (ActionOutcome::Failed { error }, entry),
            },
        }
    }

    fn terminate(&self, pid: u32) -> ActionOutcome {
        if pid <= 1 || pid == self.own_pid {
            return ActionOutcome::Failed {
                error: format!("refusing to kill pid {pid}"),
            };
        }
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return ActionOutcome::Failed {
                error: format!("pid {pid} out of range"),
            };
        };
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(raw, libc::SIGKILL) };
        if rc == 0 {
            ActionOutcome::Succeeded
        } else {
            ActionOutcome::Failed {
                error: format!("kill({pid}, SIGKILL): {}", std::io::Error::last_os_error()),
            }
        }
    }

    fn remove(
        &self,
        msg: &ActOnDetection,
    ) -> Result<QuarantineEntry, (String, Option<QuarantineEntry>)> {
        let q = self.quarantine.as_ref().map_err(|e| (e.clone(), None))?;
        let path = msg.path.to_path_buf();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| (format!("lstat {}: {e}", msg.path), None))?;
        if (meta.dev(), meta.ino()) != msg.file {
            return Err((
                format!("{} no longer names the scanned file; not removed", msg.path),
                None,
            ));
        }
        let entry = q
            .store(Detected {
                access: msg.access,
                path: &msg.path,
                content: &msg.content,
                sha256: msg.sha256,
                file: msg.file,
                owner: Some((meta.mode(), meta.uid(), meta.gid())),
                pid: msg.pid,
                container: msg.container.as_ref(),
                matches: &msg.matches,
            })
            .map_err(|e| (e.to_string(), None))?;
        std::fs::remove_file(&path).map_err(|e| {
            (
                format!("unlink {}: {e} (backup kept as {})", msg.path, entry.id),
                Some(entry.clone()),
            )
        })?;
        // The new entry may take the store past its size.
        self.purge();
        Ok(entry)
    }

    /// Applies the retention settings, journaling each deletion.
    fn purge(&self) {
        let Ok(q) = &self.quarantine else { return };
        let (deleted, errors) = q.purge(self.cfg.retention(), Timestamp::now());
        for e in errors {
            tracing::warn!(error = %e, "quarantine retention: an entry could not be deleted");
        }
        for d in deleted {
            self.journal(EventBody::QuarantineDeleted(d));
        }
    }

    fn journal(&self, body: EventBody) {
        self.journal.do_send(Append(Record::new(body)));
    }

    fn store(&self) -> Result<&Quarantine, String> {
        self.quarantine
            .as_ref()
            .map_err(|e| format!("the quarantine is not available: {e}"))
    }
}

/// A change an operator asks of the quarantine (through the agent's
/// control socket): done on the Actions thread, so it never races a store
/// or a purge, and journaled there.
#[derive(Debug)]
pub enum QuarantineChange {
    Restore { id: String, to: RestoreTo },
    Delete { id: String },
}

/// Runs a [`QuarantineChange`] and journals it; the reply is the
/// journaled event's body, or what went wrong.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ChangeQuarantine {
    pub change: QuarantineChange,
    pub operator: Option<Operator>,
    pub reply: std::sync::mpsc::SyncSender<Result<EventBody, String>>,
}

impl Handler<ChangeQuarantine> for Actions {
    type Result = ();

    fn handle(&mut self, msg: ChangeQuarantine, _: &mut Self::Context) {
        let done = self.store().and_then(|q| {
            match msg.change {
                QuarantineChange::Restore { id, to } => q
                    .restore(&id, &to, msg.operator)
                    .map(EventBody::QuarantineRestored),
                QuarantineChange::Delete { id } => q
                    .delete(&id, QuarantineDeletion::Operator, msg.operator)
                    .map(EventBody::QuarantineDeleted),
            }
            .map_err(|e| e.to_string())
        });
        if let Ok(body) = &done {
            self.journal(body.clone());
        }
        // The asker may have given up waiting: the change is journaled anyway.
        let _ = msg.reply.send(done);
    }
}

/// Applies the retention settings now (the agent sends it at start and
/// then every [`PURGE_EVERY`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PurgeQuarantine;

/// How often a running agent applies the age limit.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Handler<PurgeQuarantine> for Actions {
    type Result = ();

    fn handle(&mut self, _: PurgeQuarantine, _: &mut Self::Context) {
        self.purge();
    }
}

/// The matching rules' `recommended_action` metadata, else `block`.
fn recommended(matches: &[RuleMatch]) -> ActionKind {
    for m in matches {
        for (k, v) in &m.metadata {
            if k == "recommended_action" {
                if let MetaValue::Str(s) = v {
                    match s.as_str() {
                        "remove" => return ActionKind::Remove,
                        "terminate" => return ActionKind::Terminate,
                        "block" => return ActionKind::Block,
                        _ => {}
                    }
                }
            }
        }
    }
    ActionKind::Block
}

/// The `act` span of one action, under the scan that found the object
/// (disabled with traces off).
fn act_span(msg: &ActOnDetection, kind: ActionKind) -> tracing::Span {
    if !trace::exported(&msg.trace) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: trace::TARGET,
        parent: None,
        "act",
        portcullis.event_id = %msg.access,
        portcullis.action = kind.as_str(),
        portcullis.action.outcome = tracing::field::Empty,
    );
    trace::set_parent(&span, &msg.trace);
    span
}

impl Actor for Actions {
    type Context = SyncContext<Self>;
}

impl Handler<ActOnDetection> for Actions {
    type Result = Vec<ActionTaken>;

    fn handle(&mut self, msg: ActOnDetection, _: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!("actions", access = %msg.access);
        let _guard = span.enter();
        let mut taken = Vec::with_capacity(2);
        for (step, choice) in [
            (ActionStep::First, self.cfg.first),
            (ActionStep::Second, self.cfg.second),
        ] {
            let Some(kind) = Self::resolve(choice, &msg.matches) else {
                break;
            };
            let act = act_span(&msg, kind);
            let (outcome, quarantine) = self.perform(kind, &msg);
            let ok = outcome == ActionOutcome::Succeeded;
            if !act.is_disabled() {
                act.record("portcullis.action.outcome", outcome.as_str());
            }
            metrics::counter!(
                portcullis_telemetry::catalog::ACTIONS.name,
                "action" => kind.as_str(),
                "outcome" => outcome.as_str()
            )
            .increment(1);
            tracing::info!(
                access = %msg.access,
                action = kind.as_str(),
                outcome = outcome.as_str(),
                "action on detected object"
            );
            let event = ActionTaken {
                access: msg.access,
                path: msg.path.clone(),
                pid: msg.pid,
                action: kind,
                step,
                outcome,
                quarantine,
            };
            let id = EventId::new();
            self.journal.do_send(Append(Record {
                event_id: id,
                timestamp: Timestamp::now(),
                // The act span's context with traces on.
                trace: trace::context_of(&act).unwrap_or_else(|| msg.trace.child(&id)),
                body: EventBody::ActionTaken(event.clone()),
            }));
            taken.push(event);
            if ok {
                break;
            }
        }
        taken
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
