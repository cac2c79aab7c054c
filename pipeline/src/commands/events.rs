//! `portcullis events`: read the local journal.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_actors::journal::JournalStore;
use portcullis_schemas::{ecs, EventBody, EventId, Timestamp, VerdictClass};

use crate::cli::{EventsArgs, EventsFormat};
use crate::render;

/// `--since`: RFC 3339, or an age such as `15m`.
pub fn parse_since(s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    let age = humantime::parse_duration(s)
        .with_context(|| format!("--since: `{s}` is neither RFC 3339 nor an age like `10m`"))?;
    let age_ns = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
    Ok(Timestamp(Timestamp::now().0.saturating_sub(age_ns)))
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let verdict: Option<VerdictClass> = match &args.verdict {
        Some(v) => Some(
            v.parse()
                .map_err(|e: String| anyhow::anyhow!("--verdict: {e}"))?,
        ),
        None => None,
    };
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let store = JournalStore::open_existing(&args.journal)?;

    // With --verdict, keep the accesses that had such a verdict, and their
    // whole story (access, scan, verdict, decision, actions).
    let keep: Option<HashSet<EventId>> = match verdict {
        None => None,
        Some(class) => {
            let mut ids = HashSet::new();
            for env in store.iter_from(1).flatten() {
                if let EventBody::VerdictIssued(v) = &env.body {
                    if v.verdict.class() == class {
                        ids.insert(v.access);
                    }
                }
            }
            Some(ids)
        }
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.format == EventsFormat::Table {
        writeln!(out, "{}", render::HEADER)?;
    }
    let mut bad = 0usize;
    for env in store.iter_from(1) {
        let env = match env {
            Ok(e) => e,
            Err(e) => {
                bad += 1;
                eprintln!("warning: {e}");
                continue;
            }
        };
        if since.is_some_and(|t| env.timestamp < t) {
            continue;
        }
        if let Some(keep) = &keep {
            if !env.access_id().is_some_and(|id| keep.contains(&id)) {
                continue;
            }
        }
        match args.format {
            EventsFormat::Table => writeln!(out, "{}", render::row(&env))?,
            EventsFormat::Jsonl => writeln!(out, "{}", ecs::to_ecs_line(&env))?,
        }
    }
    Ok(if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
