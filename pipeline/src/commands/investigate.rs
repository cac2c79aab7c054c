//! `portcullis investigate EVENT_ID`: the detection with the adjacent
//! events, as a terminal timeline, JSON or an HTML report.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_schemas::{codec, EventId, Timestamp};

use crate::cli::{InvestigateArgs, InvestigateFormat};
use crate::forensics::filter::Filter;
use crate::forensics::investigate::{build, render_html, render_text};
use crate::forensics::progress::Progress;
use crate::forensics::source::{self, ReadOptions, SourceMsg};

/// The time an event id was made: UUIDv7 ids carry their millisecond.
fn time_of(id: &EventId) -> anyhow::Result<Timestamp> {
    let ts = id.0.get_timestamp().with_context(|| {
        format!("{id} is not a portcullis event id (a UUIDv7 carries its time)")
    })?;
    let (secs, nanos) = ts.to_unix();
    Ok(Timestamp(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(nanos)),
    ))
}

pub fn run(args: InvestigateArgs) -> anyhow::Result<ExitCode> {
    let id = EventId(
        args.event_id
            .parse()
            .with_context(|| format!("EVENT_ID: `{}` is not a UUID", args.event_id))?,
    );
    let window = humantime::parse_duration(&args.window)
        .with_context(|| format!("--window: `{}` is not a duration like `5m`", args.window))?;
    let w = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX / 4);
    let t0 = time_of(&id)?;
    // The id's time is when the event was made; its recorded timestamp is a
    // moment later. A second of slack on both sides covers that.
    let from = Timestamp(t0.0.saturating_sub(w).saturating_sub(1_000_000_000));
    let to = Timestamp(t0.0.saturating_add(w).saturating_add(1_000_000_000));
    let spec = args.source.spec()?;
    let handle = source::open(
        &spec,
        ReadOptions {
            from: Some(from),
            to: Some(to),
            follow: false,
        },
    )?;
    let mut pb = Progress::new(handle.total, args.progress, &spec.describe());
    let window_filter = Filter {
        from: Some(from),
        to: Some(to),
        ..Filter::default()
    };
    let mut events = Vec::new();
    let mut bad = 0u64;
    for msg in handle.rx.iter() {
        match msg {
            SourceMsg::Note(n) => pb.note(format_args!("note: {n}")),
            SourceMsg::Records(batch) => {
                pb.inc(batch.len() as u64);
                for raw in batch {
                    match codec::decode(&raw.bytes) {
                        Ok(env) if !window_filter.outside_window(&env) => {
                            events.push((raw.pos, env))
                        }
                        Ok(_) => {}
                        Err(e) => {
                            bad += 1;
                            pb.note(format_args!(
                                "warning: {}: undecodable record: {e}",
                                raw.pos
                            ));
                        }
                    }
                }
            }
        }
    }
    pb.finish();
    handle
        .finish()
        .with_context(|| format!("reading {}", spec.describe()))?;
    let inv = build(id, &events, &spec.describe(), (from, to)).map_err(anyhow::Error::msg)?;
    let text = match args.format {
        InvestigateFormat::Timeline => render_text(&inv),
        InvestigateFormat::Json => {
            let mut s = serde_json::to_string_pretty(&inv)?;
            s.push('\n');
            s
        }
        InvestigateFormat::Html => render_html(&inv),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    if bad > 0 {
        eprintln!("{bad} records in the window did not decode (see the warnings)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
