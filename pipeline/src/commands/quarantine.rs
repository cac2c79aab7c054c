//! `portcullis quarantine`: the backup copies of removed objects.
//!
//! `list` and `show` read the (root-only) directory. `restore` and
//! `delete` change it and journal the change: through the running agent's
//! quarantine socket (`<journal dir>/quarantine.sock`; the agent does the
//! change on its Actions thread and journals it), or, when no agent holds
//! the journal, here, appending to the journal directly (the agent's
//! outbox publishes it to Kafka at its next start).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_actors::actions::control::{self, ClientError, Request, Response};
use portcullis_actors::actions::{Quarantine, QuarantineRecord, RestoreTo};
use portcullis_actors::journal::{JournalStore, Record};
use portcullis_interceptor::procfs;
use portcullis_schemas::{EventBody, FilePath, Operator, QuarantineDeletion};

use crate::cli::{ContainersFormat, QuarantineArgs, QuarantineCommand};
use crate::config::{ConfigFile, Overrides, Settings};
use crate::render;

pub fn run(args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(&args)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| settings.actions.quarantine_dir.clone());
    match args.command {
        QuarantineCommand::List { format } => list(&store(&dir)?, format),
        QuarantineCommand::Show { id } => {
            let record = store(&dir)?.record(&id)?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Restore {
            id,
            to,
            force,
            keep_mode,
        } => {
            let to = to.map(|p| absolute(&p)).transpose()?;
            change(
                &settings,
                &dir,
                Request::Restore {
                    id,
                    to: to.map(|p| FilePath::from(p.as_path())),
                    replace: force,
                    keep_mode,
                },
            )
        }
        QuarantineCommand::Delete { id } => change(&settings, &dir, Request::Delete { id }),
    }
}

fn settings(args: &QuarantineArgs) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        journal: args.journal.clone(),
        ..Overrides::default()
    };
    Ok(match &args.config {
        Some(file) => ConfigFile::load(file)?.build(&file.display().to_string(), overrides)?,
        None => ConfigFile::default().build("the defaults", overrides)?,
    })
}

fn store(dir: &Path) -> anyhow::Result<Quarantine> {
    Quarantine::existing(dir).context(
        "the quarantine (is this the agent's `actions.quarantine_dir`? see --config and --dir)",
    )
}

/// `--to` relative to where the command runs.
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("the current directory, for --to")?
        .join(p))
}

fn list(q: &Quarantine, format: ContainersFormat) -> anyhow::Result<ExitCode> {
    let listed = q.list()?;
    let unreadable = listed.iter().filter(|l| l.record.is_err()).count();
    match format {
        ContainersFormat::Json => {
            let records: Vec<serde_json::Value> = listed
                .iter()
                .map(|l| match &l.record {
                    Ok(r) => serde_json::to_value(r).unwrap_or_default(),
                    Err(e) => serde_json::json!({ "id": l.id, "error": e.to_string() }),
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&records)?);
        }
        ContainersFormat::Table => {
            println!(
                "{:<36}  {:<20}  {:>10}  {:<24}  {:<13}  PATH",
                "ID", "QUARANTINED", "SIZE", "RULES", "CONTAINER"
            );
            let mut bytes = 0;
            for l in &listed {
                bytes += l.bytes;
                match &l.record {
                    Ok(r) => println!("{}", row(r)),
                    Err(e) => println!(
                        "{:<36}  unreadable: {}",
                        l.id,
                        render::printable(&e.to_string())
                    ),
                }
            }
            println!(
                "{} entries, {} bytes in {}",
                listed.len(),
                bytes,
                q.dir().display()
            );
        }
    }
    if unreadable > 0 {
        eprintln!("{unreadable} entries have no readable record (kept; see above)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn row(r: &QuarantineRecord) -> String {
    let when = r.quarantined_at.get(..19).unwrap_or(&r.quarantined_at);
    let container = r
        .container
        .as_ref()
        .map(|c| {
            c.name
                .clone()
                .unwrap_or_else(|| c.id.chars().take(12).collect())
        })
        .unwrap_or_else(|| "-".into());
    // No control character in a name reaches the terminal.
    format!(
        "{:<36}  {:<20}  {:>10}  {:<24}  {:<13}  {}",
        r.id,
        when,
        r.size,
        render::printable(&r.rules.join(",")),
        render::printable(&container),
        render::printable(&r.original_path)
    )
}

/// Restore or delete: through the agent when one holds the journal, else
/// here.
fn change(settings: &Settings, dir: &Path, req: Request) -> anyhow::Result<ExitCode> {
    let mut answer = None;
    // The agent the quarantine names, then the one of our journal.
    for socket in control::candidate_sockets(&settings.journal.dir, dir) {
        match control::request(&socket, &req) {
            Err(ClientError::NoAgent { .. }) => {
                tracing::debug!(socket = %socket.display(), "no agent answers here");
            }
            other => {
                answer = Some(other?);
                break;
            }
        }
    }
    let event = match answer {
        Some(Response::Done { event }) => *event,
        Some(Response::Error { message }) => anyhow::bail!("the agent refused: {message}"),
        None => {
            tracing::info!("no agent serves this quarantine: changing it here");
            locally(settings, dir, req)?
        }
    };
    println!("{}", render::printable(&render::details(&event)));
    Ok(ExitCode::SUCCESS)
}

/// The change without an agent: the journal is ours for the moment (a
/// starting agent waits for its lock).
fn locally(settings: &Settings, dir: &Path, req: Request) -> anyhow::Result<EventBody> {
    let q = store(dir)?;
    let pid = std::process::id();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let operator = Some(Operator {
        uid,
        login_uid: procfs::login_uid(pid),
        pid,
    });
    // Open the journal first: a change that could not be journaled is not
    // made.
    let mut journal = JournalStore::open(&settings.journal).with_context(|| {
        format!(
            "the journal {} (to record the change)",
            settings.journal.dir.display()
        )
    })?;
    let body = match req {
        Request::Restore {
            id,
            to,
            replace,
            keep_mode,
        } => EventBody::QuarantineRestored(q.restore(
            &id,
            &RestoreTo {
                to,
                replace,
                keep_mode,
            },
            operator,
        )?),
        Request::Delete { id } => {
            EventBody::QuarantineDeleted(q.delete(&id, QuarantineDeletion::Operator, operator)?)
        }
    };
    journal
        .append_batch(vec![Record::new(body.clone())])
        .context("journaling the change (it was made)")?;
    Ok(body)
}
